//! What the wheel's extension module (feature `wheel`, CPython's stable
//! ABI from 3.9) needs beyond the limited API pyo3 offers it: borrowing a
//! `str`'s UTF-8 text without a copy.
//!
//! pyo3 leaves `to_str` out below abi3-py310 because
//! `PyUnicode_AsUTF8AndSize` joined the limited API only in 3.10, yet every
//! CPython from 3.3 exports it with the same signature and meaning (the
//! UTF-8 buffer cached in the str object, alive as long as the object).
//! Declaring it here keeps the request path as cheap in the wheel as in
//! the standalone binary, on every interpreter the wheel supports (3.9+);
//! `to_cow` would encode a new bytes object per header instead.

use pyo3::prelude::*;
use pyo3::types::PyString;

extern "C" {
    fn PyUnicode_AsUTF8AndSize(
        unicode: *mut pyo3::ffi::PyObject,
        size: *mut pyo3::ffi::Py_ssize_t,
    ) -> *const std::os::raw::c_char;
}

/// `PyStringMethods::to_str` for the stable-ABI build (the standalone
/// build uses pyo3's own, which takes precedence where both exist).
pub trait ToStr {
    fn to_str(&self) -> PyResult<&str>;
}

impl ToStr for Bound<'_, PyString> {
    fn to_str(&self) -> PyResult<&str> {
        let mut size: pyo3::ffi::Py_ssize_t = 0;
        // SAFETY: `self` is a live str (the GIL is held, as a Bound proves);
        // CPython returns its cached UTF-8 buffer, or NULL with an
        // exception set (unpaired surrogates).
        let data = unsafe { PyUnicode_AsUTF8AndSize(self.as_ptr(), &mut size) };
        if data.is_null() {
            return Err(PyErr::fetch(self.py()));
        }
        // SAFETY: the buffer is `size` bytes of valid UTF-8 owned by the str
        // object, which outlives the borrow of `self`.
        Ok(unsafe {
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(data.cast(), size as usize))
        })
    }
}
