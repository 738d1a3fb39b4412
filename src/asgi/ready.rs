//! An awaitable whose result is already there: what `receive()` and
//! `send()` return when they need not wait (the body has arrived, the
//! socket took the bytes). Awaiting it yields nothing to the loop, so a
//! request whose I/O never blocks runs its task in one step, with no
//! future made and no callback scheduled.

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

#[pyclass(freelist = 128)]
pub struct Ready {
    value: Option<Py<PyAny>>,
}

impl Ready {
    pub fn new(value: Py<PyAny>) -> Ready {
        Ready { value: Some(value) }
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let v = self.value.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((v,)))
    }

    fn send(&mut self, py: Python<'_>, _value: Py<PyAny>) -> PyResult<Py<PyAny>> {
        self.__next__(py)
    }

    #[pyo3(signature = (*_args))]
    fn throw(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<Py<PyAny>> {
        Err(pyo3::exceptions::PyRuntimeError::new_err(
            "cannot throw into a completed ASGI awaitable",
        ))
    }

    fn close(&mut self) {}
}
