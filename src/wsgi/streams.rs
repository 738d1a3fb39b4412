//! `wsgi.errors` (text to the error log) and `wsgi.file_wrapper` (a file
//! iterated in blocks; the worker sends real files with sendfile(2)).

#[cfg(feature = "wheel")]
use super::abi::ToStr as _;
use pyo3::exceptions::{PyStopIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

/// `wsgi.errors`: text written here goes to the error log.
#[pyclass(module = "ferrocorn", name = "ErrorStream")]
pub struct ErrorStream;

#[pymethods]
impl ErrorStream {
    fn write(&self, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        if let Ok(s) = data.cast::<PyString>() {
            let s = s.to_str()?;
            crate::log::write_raw(s.as_bytes());
            Ok(s.len())
        } else if let Ok(b) = data.cast::<PyBytes>() {
            crate::log::write_raw(b.as_bytes());
            Ok(b.as_bytes().len())
        } else {
            Err(PyTypeError::new_err("write() argument must be str"))
        }
    }
    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?)?;
        }
        Ok(())
    }
    fn flush(&self) {}
}

// ---------------------------------------------------------------------------
// wsgi.file_wrapper

/// `wsgi.file_wrapper`: iterates a file in blocks; the worker sends real
/// files with sendfile(2) instead of iterating.
#[pyclass(module = "ferrocorn", name = "FileWrapper")]
pub struct FileWrapper {
    pub filelike: Py<PyAny>,
    pub blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        if data.len().unwrap_or(0) == 0 {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(data.unbind())
    }
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr("close")? {
            f.call_method0("close")?;
        }
        Ok(())
    }
}
