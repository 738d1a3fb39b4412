//! `environ["gunicorn.socket"]`: the request's connection as a socket
//! object, which an app may take over (a WebSocket after its `101`, with
//! flask-sock or simple-websocket, or any raw protocol).
//!
//! Taking over: the first `recv`, `recv_into`, `send`, `sendall`,
//! `fileno`, `dup`, `makefile` or `shutdown` hands the connection to the
//! app. What the response writer still holds goes out first; bytes the
//! worker had already read past the request head are what `recv` returns
//! first; the descriptor is put in blocking mode (as gunicorn's socket is)
//! and this object owns a duplicate of it, closed by `close()` or when the
//! object goes away. From then on the worker writes nothing on the
//! connection and lets go of it once the app returns; the access log shows
//! the status the app sent itself (`101`). A socket never taken over is
//! only usable during its request.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyByteArray, PyBytes};

use super::response::Responder;
use super::sockio::note_progress;
use crate::sys;

/// Largest single read `recv` makes.
const RECV_MAX: usize = 256 * 1024;

/// The connection of one request, as a socket object.
#[pyclass(module = "ferrocorn", name = "Socket")]
pub struct ConnSocket {
    responder: Py<Responder>,
    /// The connection's descriptor, valid while the request is active.
    fd: RawFd,
    /// Ours once the app took the connection over (until it closes it).
    owned: Option<OwnedFd>,
    /// The app took the connection over (even if it closed it since).
    taken: bool,
    closed: bool,
    /// Bytes already read past the request head.
    early: Vec<u8>,
    /// `settimeout`: None blocks, zero never waits.
    timeout: Option<Duration>,
    #[pyo3(get)]
    family: i32,
}

impl ConnSocket {
    /// `family`: AF_INET, AF_INET6 or AF_UNIX, as the connection is.
    pub fn new(responder: Py<Responder>, fd: RawFd, early: Vec<u8>, family: i32) -> ConnSocket {
        ConnSocket {
            responder,
            fd,
            owned: None,
            taken: false,
            closed: false,
            early,
            timeout: None,
            family,
        }
    }

    /// At the end of the request: whether the app took the connection
    /// over, and if not, the bytes past the head it did not consume.
    pub fn release(&mut self) -> (bool, Vec<u8>) {
        (self.taken, std::mem::take(&mut self.early))
    }

    /// The descriptor to use, taking the connection over on first use.
    fn take_over(&mut self, py: Python<'_>) -> PyResult<RawFd> {
        if self.closed {
            return Err(PyOSError::new_err((libc::EBADF, "Bad file descriptor")));
        }
        if let Some(fd) = &self.owned {
            return Ok(fd.as_raw_fd());
        }
        self.responder.bind(py).borrow_mut().hand_over(py)?;
        // SAFETY: the request is active (hand_over checked it), so the
        // worker keeps the connection's descriptor open meanwhile.
        let conn = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let dup = conn
            .try_clone_to_owned()
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        sys::set_blocking(dup.as_fd(), true).map_err(|e| PyOSError::new_err(e.to_string()))?;
        let raw = dup.as_raw_fd();
        self.owned = Some(dup);
        self.taken = true;
        Ok(raw)
    }

    /// Wait until the socket is ready (GIL released), honouring the timeout.
    fn wait(&self, py: Python<'_>, fd: RawFd, write: bool) -> PyResult<()> {
        let Some(t) = self.timeout else {
            return Ok(());
        };
        // SAFETY: `fd` is our own duplicate, open while `self` is.
        let sock = unsafe { BorrowedFd::borrow_raw(fd) };
        match py.detach(|| sys::wait_fd(sock, write, t)) {
            Ok(true) => Ok(()),
            Ok(false) => Err(PyTimeoutError::new_err("timed out")),
            Err(e) => Err(PyOSError::new_err(e.to_string())),
        }
    }

    fn recv_some(&mut self, py: Python<'_>, max: usize) -> PyResult<Vec<u8>> {
        let fd = self.take_over(py)?;
        if !self.early.is_empty() {
            let n = max.min(self.early.len());
            return Ok(self.early.drain(..n).collect());
        }
        self.wait(py, fd, false)?;
        // recv() may return fewer bytes than asked; a huge `bufsize` must
        // not become a huge allocation.
        let mut buf = vec![0u8; max.min(RECV_MAX)];
        let n = py
            .detach(|| loop {
                // SAFETY: reading into our own buffer from our descriptor.
                let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if r >= 0 {
                    return Ok(r as usize);
                }
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            })
            .map_err(PyErr::from)?;
        buf.truncate(n);
        note_progress();
        Ok(buf)
    }

    fn send_some(&mut self, py: Python<'_>, data: &[u8], all: bool) -> PyResult<usize> {
        let fd = self.take_over(py)?;
        self.responder.bind(py).borrow_mut().saw_raw_output(data);
        let mut sent = 0;
        while sent < data.len() {
            self.wait(py, fd, true)?;
            let rest = &data[sent..];
            let r = py.detach(|| {
                // SAFETY: writing from a live slice to our own descriptor.
                unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) }
            });
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            sent += r as usize;
            note_progress();
            if !all {
                break;
            }
        }
        Ok(sent)
    }
}

#[pymethods]
impl ConnSocket {
    #[getter(r#type)]
    fn sock_type(&self) -> i32 {
        libc::SOCK_STREAM
    }

    #[pyo3(signature = (bufsize, flags=0))]
    fn recv<'py>(
        &mut self,
        py: Python<'py>,
        bufsize: usize,
        flags: i32,
    ) -> PyResult<Bound<'py, PyBytes>> {
        if flags != 0 {
            return Err(PyValueError::new_err("recv() flags are not supported"));
        }
        let data = self.recv_some(py, bufsize)?;
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (buffer, nbytes=0, flags=0))]
    fn recv_into(
        &mut self,
        py: Python<'_>,
        buffer: &Bound<'_, PyByteArray>,
        nbytes: usize,
        flags: i32,
    ) -> PyResult<usize> {
        if flags != 0 {
            return Err(PyValueError::new_err("recv_into() flags are not supported"));
        }
        let room = buffer.len();
        let want = if nbytes == 0 { room } else { nbytes.min(room) };
        let data = self.recv_some(py, want)?;
        // SAFETY: no Python code runs between taking the slice and the
        // copy, so the bytearray cannot be resized meanwhile.
        unsafe { buffer.as_bytes_mut()[..data.len()].copy_from_slice(&data) };
        Ok(data.len())
    }

    #[pyo3(signature = (data, flags=0))]
    fn send(&mut self, py: Python<'_>, data: &[u8], flags: i32) -> PyResult<usize> {
        let _ = flags;
        self.send_some(py, data, false)
    }

    #[pyo3(signature = (data, flags=0))]
    fn sendall(&mut self, py: Python<'_>, data: &[u8], flags: i32) -> PyResult<()> {
        let _ = flags;
        self.send_some(py, data, true).map(|_| ())
    }

    fn fileno(&mut self, py: Python<'_>) -> PyResult<RawFd> {
        self.take_over(py)
    }

    /// A real `socket.socket` on a new duplicate of the connection.
    fn dup<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let fd = self.take_over(py)?;
        let os = py.import("os")?;
        let copy = os.call_method1("dup", (fd,))?;
        py.import("socket")?
            .getattr("socket")?
            .call((), Some(&[("fileno", copy)].into_py_dict(py)?))
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn makefile<'py>(
        &mut self,
        py: Python<'py>,
        args: &Bound<'py, pyo3::types::PyTuple>,
        kwargs: Option<&Bound<'py, pyo3::types::PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let sock = self.dup(py)?;
        let file = sock.call_method("makefile", args, kwargs)?;
        // The file keeps the socket's descriptor; the socket object itself
        // can go.
        sock.call_method0("close")?;
        Ok(file)
    }

    fn settimeout(&mut self, value: Option<f64>) -> PyResult<()> {
        self.timeout = match value {
            None => None,
            Some(t) if t >= 0.0 && t.is_finite() => Some(Duration::from_secs_f64(t)),
            Some(_) => return Err(PyValueError::new_err("Timeout value out of range")),
        };
        Ok(())
    }

    fn gettimeout(&self) -> Option<f64> {
        self.timeout.map(|t| t.as_secs_f64())
    }

    fn setblocking(&mut self, flag: bool) {
        self.timeout = if flag { None } else { Some(Duration::ZERO) };
    }

    fn shutdown(&mut self, py: Python<'_>, how: i32) -> PyResult<()> {
        let fd = self.take_over(py)?;
        // SAFETY: shutdown(2) on our own descriptor.
        if unsafe { libc::shutdown(fd, how) } < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    fn getpeername<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.address(py, true)
    }

    fn getsockname<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.address(py, false)
    }

    /// Close our duplicate (a socket never taken over belongs to the
    /// worker, which closes it).
    fn close(&mut self) {
        self.closed = true;
        self.owned = None;
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.close();
    }
}

impl ConnSocket {
    fn address<'py>(&self, py: Python<'py>, peer: bool) -> PyResult<Bound<'py, PyAny>> {
        use nix::sys::socket::{getpeername, getsockname, SockaddrStorage};
        let fd = match &self.owned {
            Some(fd) => fd.as_raw_fd(),
            None if self.responder.bind(py).borrow().is_active() && !self.closed => self.fd,
            None => return Err(PyOSError::new_err((libc::EBADF, "Bad file descriptor"))),
        };
        let addr: SockaddrStorage = if peer {
            getpeername(fd)
        } else {
            getsockname(fd)
        }
        .map_err(|e| PyOSError::new_err(e.to_string()))?;
        if let Some(v4) = addr.as_sockaddr_in() {
            return Ok((v4.ip().to_string(), v4.port())
                .into_pyobject(py)?
                .into_any());
        }
        if let Some(v6) = addr.as_sockaddr_in6() {
            return Ok(
                (v6.ip().to_string(), v6.port(), v6.flowinfo(), v6.scope_id())
                    .into_pyobject(py)?
                    .into_any(),
            );
        }
        let path = addr
            .as_unix_addr()
            .and_then(|u| u.path())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        Ok(path.into_pyobject(py)?.into_any())
    }
}
