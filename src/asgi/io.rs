//! Small pieces the ASGI cycles share: non-blocking socket reads and
//! writes on a connection's descriptor, completing futures, response
//! header checks, and starting a request's task.

use crate::tls::Wire;

#[cfg(feature = "wheel")]
use crate::wsgi::abi::ToStr as _;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::Hub;
use crate::error;
use crate::wsgi::Peer;

/// One read of a streamed body or of websocket frames.
pub(super) const READ_CHUNK: usize = 64 * 1024;

/// Run the app for `scope` as a task, with the cycle's `receive` and
/// `send`; returns the task.
pub(super) fn spawn(
    py: Python<'_>,
    hub: &Hub,
    scope: Bound<'_, PyDict>,
    cycle: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let receive = cycle.getattr(pyo3::intern!(py, "receive"))?;
    let send = cycle.getattr(pyo3::intern!(py, "send"))?;
    let coro =
        hub.run_app
            .bind(py)
            .call1((hub.app.bind(py), scope, receive, send, cycle, hub.version))?;
    let task = hub
        .ev
        .bind(py)
        .call_method1(pyo3::intern!(py, "create_task"), (coro,))?;
    Ok(task.unbind())
}

/// `ClientDisconnected` (an OSError, from runtime.py) for a `send` after
/// the client went away.
pub(super) fn client_disconnected(py: Python<'_>) -> PyErr {
    match super::runtime(py)
        .and_then(|rt| rt.getattr("ClientDisconnected"))
        .and_then(|c| c.call1(("the client disconnected",)))
    {
        Ok(e) => PyErr::from_value(e),
        Err(e) => e,
    }
}

/// A new future on the worker's loop: kept in `slot` (the cycle completes
/// it later) and returned to the app to await.
pub(super) fn wait_in(
    py: Python<'_>,
    hub: &Hub,
    slot: &mut Option<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    let fut = hub
        .ev
        .bind(py)
        .call_method0(pyo3::intern!(py, "create_future"))?;
    *slot = Some(fut.clone().unbind());
    Ok(fut.unbind())
}

/// An awaitable already done with `value`.
pub(super) fn ready(py: Python<'_>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
    Ok(Py::new(py, super::ready::Ready::new(value))?.into_any())
}

/// An ASGI message and its `type`.
pub(super) fn message_kind<'a, 'py>(
    message: &'a Bound<'py, PyAny>,
) -> PyResult<(&'a Bound<'py, PyDict>, String)> {
    let py = message.py();
    let message = message
        .cast::<PyDict>()
        .map_err(|_| PyValueError::new_err("an ASGI message is a dict"))?;
    let kind = match message.get_item(pyo3::intern!(py, "type"))? {
        Some(t) => t.extract::<String>()?,
        None => return Err(PyValueError::new_err("the ASGI message has no 'type'")),
    };
    Ok((message, kind))
}

/// The head of a plain-text answer this server makes itself (a refused
/// handshake, a 500 for an app that sent nothing), with `Connection:
/// close`; `extra` is more header lines, each ending in CRLF.
pub(super) fn plain_head(status: u16, date: &str, extra: &str, body_len: usize) -> String {
    format!(
        "HTTP/1.1 {status} {}\r\nServer: ferrocorn\r\nDate: {date}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n",
        crate::http::reason_phrase(status),
    )
}

pub(super) fn remote_ip(peer: &Peer) -> String {
    match peer {
        Peer::Tcp(a) => a.ip().to_string(),
        Peer::Unix => String::new(),
    }
}

pub(super) fn runtime_error(msg: impl Into<String>) -> PyErr {
    PyRuntimeError::new_err(msg.into())
}

/// Complete a waiting future (unless the app cancelled it).
pub(super) fn resolve(py: Python<'_>, waiter: &mut Option<Py<PyAny>>, value: Py<PyAny>) {
    let Some(fut) = waiter.take() else { return };
    let fut = fut.bind(py);
    if fut
        .call_method0(pyo3::intern!(py, "done"))
        .and_then(|d| d.is_truthy())
        .unwrap_or(true)
    {
        return;
    }
    if let Err(e) = fut.call_method1(pyo3::intern!(py, "set_result"), (value,)) {
        error!("ASGI: cannot complete a future: {e}");
    }
}

pub(super) fn header_bytes(v: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = v.cast::<PyString>() {
        // Some apps send str; latin-1 as in HTTP.
        let s = s.to_str()?;
        return s
            .chars()
            .map(|c| {
                u8::try_from(c as u32).map_err(|_| PyValueError::new_err("header is not latin-1"))
            })
            .collect();
    }
    v.extract::<Vec<u8>>()
}

/// A response field must not break the framing.
pub(super) fn check_field(n: &[u8], v: &[u8]) -> PyResult<()> {
    let bad_name = n.is_empty()
        || n.iter()
            .any(|&b| b <= b' ' || b == b':' || b >= 0x7f || b"\"(),/;<=>?@[\\]{}".contains(&b));
    if bad_name {
        return Err(PyValueError::new_err(format!(
            "invalid HTTP header name {:?}",
            String::from_utf8_lossy(n)
        )));
    }
    if v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(PyValueError::new_err(format!(
            "invalid HTTP header value for {:?}",
            String::from_utf8_lossy(n)
        )));
    }
    Ok(())
}

pub(super) fn latin1_string(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

pub(super) fn write_some(wire: &Wire, buf: &[u8]) -> std::io::Result<usize> {
    wire.send(buf)
}

/// Append what can be read now (one read of up to READ_CHUNK).
pub(super) fn read_into(wire: &Wire, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    wire.recv_into(buf, READ_CHUNK)
}

/// The peer closed the connection (a zero-byte peek).
pub(super) fn peer_closed(wire: &Wire) -> bool {
    wire.peer_closed()
}
