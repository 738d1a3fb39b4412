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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyByteArray, PyBytes};

use super::response::Responder;
use super::sockio::note_progress;
use crate::sys;

/// Largest single read `recv` makes.
const RECV_MAX: usize = 256 * 1024;

/// The connection of one request, as a socket object. Usable from several
/// Python threads at once (simple-websocket reads in a thread of its own
/// while the app sends): blocking calls hold no borrow, only a reference
/// to the descriptor, which stays open until the last of them returns.
#[pyclass(module = "ferrocorn", name = "Socket", frozen)]
pub struct ConnSocket {
    responder: Py<Responder>,
    /// The connection's descriptor, valid while the request is active.
    fd: RawFd,
    /// The connection is TLS: it cannot be taken over (the session's
    /// state is the server's).
    tls: bool,
    #[pyo3(get)]
    family: i32,
    state: Mutex<SockState>,
}

struct SockState {
    /// Ours once the app took the connection over (until it closes it).
    owned: Option<Arc<OwnedFd>>,
    /// The app took the connection over (even if it closed it since).
    taken: bool,
    closed: bool,
    /// Bytes already read past the request head.
    early: Vec<u8>,
    /// `settimeout`: None blocks, zero never waits.
    timeout: Option<Duration>,
}

fn bad_fd() -> PyErr {
    PyOSError::new_err((libc::EBADF, "Bad file descriptor"))
}

impl ConnSocket {
    /// `family`: AF_INET, AF_INET6 or AF_UNIX, as the connection is.
    pub fn new(
        responder: Py<Responder>,
        wire: &crate::tls::Wire,
        early: Vec<u8>,
        family: i32,
    ) -> ConnSocket {
        ConnSocket {
            responder,
            fd: wire.fd(),
            tls: wire.is_tls(),
            family,
            state: Mutex::new(SockState {
                owned: None,
                taken: false,
                closed: false,
                early,
                timeout: None,
            }),
        }
    }

    /// The state; its lock is held only briefly, with the GIL, and never
    /// across a wait.
    fn state(&self) -> std::sync::MutexGuard<'_, SockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// At the end of the request: whether the app took the connection
    /// over, and if not, the bytes past the head it did not consume.
    pub fn release(&self) -> (bool, Vec<u8>) {
        let mut st = self.state();
        (st.taken, std::mem::take(&mut st.early))
    }

    /// The descriptor to use, taking the connection over on first use.
    fn take_over(&self, py: Python<'_>) -> PyResult<Arc<OwnedFd>> {
        if self.tls {
            return Err(PyOSError::new_err(
                "gunicorn.socket cannot be taken over on a TLS connection (the TLS session \
                 belongs to the server); serve WebSockets with -k asgi",
            ));
        }
        {
            let st = self.state();
            if st.closed {
                return Err(bad_fd());
            }
            if let Some(fd) = &st.owned {
                return Ok(fd.clone());
            }
        }
        let pending = self
            .responder
            .bind(py)
            .try_borrow_mut()
            .map_err(|_| PyOSError::new_err("the response is being written by another thread"))?
            .hand_over()?;
        // SAFETY: the request is active (hand_over checked it), so the
        // worker keeps the connection's descriptor open meanwhile.
        let conn = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let dup = conn
            .try_clone_to_owned()
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        sys::set_blocking(dup.as_fd(), true).map_err(|e| PyOSError::new_err(e.to_string()))?;
        let fd = {
            let mut st = self.state();
            st.taken = true;
            st.owned.get_or_insert_with(|| Arc::new(dup)).clone()
        };
        // What the response writer still held goes first.
        if !pending.is_empty() {
            let timeout = self.state().timeout;
            send_on(py, &fd, &pending, true, timeout)?;
        }
        Ok(fd)
    }

    fn recv_some(&self, py: Python<'_>, max: usize) -> PyResult<Vec<u8>> {
        let fd = self.take_over(py)?;
        let timeout = {
            let mut st = self.state();
            if !st.early.is_empty() {
                let n = max.min(st.early.len());
                return Ok(st.early.drain(..n).collect());
            }
            st.timeout
        };
        wait(py, &fd, false, timeout)?;
        // recv() may return fewer bytes than asked; a huge `bufsize` must
        // not become a huge allocation.
        let mut buf = vec![0u8; max.min(RECV_MAX)];
        let raw = fd.as_raw_fd();
        let n = py
            .detach(|| loop {
                // SAFETY: reading into our own buffer from a descriptor
                // that `fd` keeps open.
                let r = unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
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

    fn send_some(&self, py: Python<'_>, data: &[u8], all: bool) -> PyResult<usize> {
        let fd = self.take_over(py)?;
        if let Ok(mut r) = self.responder.bind(py).try_borrow_mut() {
            r.saw_raw_output(data);
        }
        let timeout = self.state().timeout;
        send_on(py, &fd, data, all, timeout)
    }

    fn address<'py>(&self, py: Python<'py>, peer: bool) -> PyResult<Bound<'py, PyAny>> {
        use nix::sys::socket::{getpeername, getsockname, SockaddrStorage};
        let (owned, closed) = {
            let st = self.state();
            (st.owned.clone(), st.closed)
        };
        let active = self
            .responder
            .bind(py)
            .try_borrow()
            .is_ok_and(|r| r.is_active());
        let fd = match &owned {
            Some(fd) => fd.as_raw_fd(),
            None if active && !closed => self.fd,
            None => return Err(bad_fd()),
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

/// Wait until `fd` is ready (GIL released), when a timeout is set.
fn wait(py: Python<'_>, fd: &OwnedFd, write: bool, timeout: Option<Duration>) -> PyResult<()> {
    // Without a timeout the socket blocks; in a greenlet worker the wait
    // is on the hub instead, with no limit.
    if timeout.is_none() && !super::sockio::green() {
        return Ok(());
    }
    match super::sockio::wait_ready(py, fd.as_raw_fd(), write, timeout) {
        Ok(true) => Ok(()),
        Ok(false) => Err(PyTimeoutError::new_err("timed out")),
        Err(e) => Err(PyOSError::new_err(e.to_string())),
    }
}

/// Send `data` (all of it, or what one send takes), GIL released.
fn send_on(
    py: Python<'_>,
    fd: &OwnedFd,
    data: &[u8],
    all: bool,
    timeout: Option<Duration>,
) -> PyResult<usize> {
    let raw = fd.as_raw_fd();
    let mut sent = 0;
    while sent < data.len() {
        wait(py, fd, true, timeout)?;
        let rest = &data[sent..];
        let r = py.detach(|| {
            // SAFETY: writing from a live slice to a descriptor `fd` keeps
            // open.
            unsafe { libc::send(raw, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) }
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

#[pymethods]
impl ConnSocket {
    #[getter(r#type)]
    fn sock_type(&self) -> i32 {
        libc::SOCK_STREAM
    }

    #[pyo3(signature = (bufsize, flags=0))]
    fn recv<'py>(
        &self,
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
        &self,
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
        // The bytearray may have shrunk while the GIL was released.
        let n = data.len().min(buffer.len());
        // SAFETY: no Python code runs between taking the slice and the
        // copy, so the bytearray cannot be resized meanwhile.
        unsafe { buffer.as_bytes_mut()[..n].copy_from_slice(&data[..n]) };
        Ok(n)
    }

    #[pyo3(signature = (data, flags=0))]
    fn send(&self, py: Python<'_>, data: &[u8], flags: i32) -> PyResult<usize> {
        let _ = flags;
        self.send_some(py, data, false)
    }

    #[pyo3(signature = (data, flags=0))]
    fn sendall(&self, py: Python<'_>, data: &[u8], flags: i32) -> PyResult<()> {
        let _ = flags;
        self.send_some(py, data, true).map(|_| ())
    }

    fn fileno(&self, py: Python<'_>) -> PyResult<RawFd> {
        Ok(self.take_over(py)?.as_raw_fd())
    }

    /// A real `socket.socket` on a new duplicate of the connection.
    fn dup<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let fd = self.take_over(py)?;
        let os = py.import("os")?;
        let copy = os.call_method1("dup", (fd.as_raw_fd(),))?;
        py.import("socket")?
            .getattr("socket")?
            .call((), Some(&[("fileno", copy)].into_py_dict(py)?))
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn makefile<'py>(
        &self,
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

    fn settimeout(&self, value: Option<f64>) -> PyResult<()> {
        let t = match value {
            None => None,
            Some(t) if t >= 0.0 && t.is_finite() => Some(Duration::from_secs_f64(t)),
            Some(_) => return Err(PyValueError::new_err("Timeout value out of range")),
        };
        self.state().timeout = t;
        Ok(())
    }

    fn gettimeout(&self) -> Option<f64> {
        self.state().timeout.map(|t| t.as_secs_f64())
    }

    fn setblocking(&self, flag: bool) {
        self.state().timeout = if flag { None } else { Some(Duration::ZERO) };
    }

    fn shutdown(&self, py: Python<'_>, how: i32) -> PyResult<()> {
        let fd = self.take_over(py)?;
        // SAFETY: shutdown(2) on a descriptor `fd` keeps open.
        if unsafe { libc::shutdown(fd.as_raw_fd(), how) } < 0 {
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
    /// worker, which closes it). A call blocked in another thread is woken
    /// (shutdown), and the descriptor closes when the last one returns.
    fn close(&self) {
        let owned = {
            let mut st = self.state();
            st.closed = true;
            st.owned.take()
        };
        if let Some(fd) = owned {
            if Arc::strong_count(&fd) > 1 {
                // SAFETY: shutdown(2) on a descriptor `fd` keeps open.
                unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
            }
        }
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.close();
    }
}
