//! One ASGI HTTP request/response cycle: the `receive` and `send` an app
//! gets for one request, on the loop's thread.
//!
//! The cycle does its connection's I/O itself, never blocking: it reads
//! the body only when the app asks for it (`receive`; so a slow app holds
//! the client back: backpressure), writes what the app sends at once and
//! makes `send` wait only while more than HIGH_WATER is unwritten, and
//! notices the client going away (`http.disconnect`). Readiness events of
//! its connection reach it through `on_io`; `on_tick` enforces the stall
//! deadline and the disconnect grace period. When the response is complete
//! the connection goes back to the engine (a `Done`, with what the socket
//! has not taken yet), even if the app's coroutine carries on (background
//! work after the response); from then on `receive` says
//! `http.disconnect` and `send` is refused.

use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::ready::Ready;
use super::Hub;
use crate::http::{reason_phrase, Body, BodyRest, RequestHead};
use crate::worker::executor::asyncio::hand_back;
use crate::worker::executor::{Done, Job, Outcome};
use crate::worker::timeout_reply::Waiting;
use crate::wsgi::Peer;
use crate::{error, warning};

/// `send` waits while more than this is unwritten.
pub(super) const HIGH_WATER: usize = 64 * 1024;
/// Bytes after the body kept while the app runs (a pipelined request).
const EXTRA_CAP: usize = 64 * 1024;
/// One read of a streamed body.
pub(super) const READ_CHUNK: usize = 64 * 1024;

enum ReqBody {
    /// Complete; None once handed to the app.
    Whole(Option<Vec<u8>>),
    /// Arriving: decoded and not yet handed over, raw bytes not decoded.
    Stream {
        decoded: Vec<u8>,
        raw: Vec<u8>,
        rest: BodyRest,
    },
}

enum Pull {
    Data(Vec<u8>, bool),
    Wait,
    Eof,
    Bad,
}

/// A file going out with sendfile(2).
struct FileOut {
    /// Owned for pathsend; zerocopysend borrows the app's descriptor.
    _owned: Option<std::fs::File>,
    fd: RawFd,
    offset: i64,
    left: u64,
    /// The response is complete once the file is out.
    last: bool,
}

#[pyclass(unsendable)]
pub struct HttpCycle {
    hub: Rc<Hub>,
    /// Unique in the worker (the `running` list's key).
    id: u64,
    idx: usize,
    fd: RawFd,
    head: RequestHead,
    peer: Peer,
    is_head: bool,
    keep_alive: bool,
    date: String,
    body: ReqBody,
    continue_pending: bool,
    /// Bytes read after the body.
    extra: Vec<u8>,
    /// The client closed its side.
    eof: bool,
    /// Writing to the client failed: it is gone.
    gone: bool,
    /// The response start, until the head is written.
    start: Option<(u16, Vec<(Vec<u8>, Vec<u8>)>)>,
    trailers: bool,
    status: u16,
    log_headers: Vec<(String, String)>,
    head_sent: bool,
    no_body: bool,
    chunked: bool,
    remaining: Option<u64>,
    complete: bool,
    body_bytes: u64,
    out: Vec<u8>,
    opos: usize,
    file: Option<FileOut>,
    recv_waiter: Option<Py<PyAny>>,
    send_waiter: Option<Py<PyAny>>,
    /// The connection went back to the engine.
    finished: bool,
    /// The app's coroutine ended.
    returned: bool,
    task: Option<Py<PyAny>>,
    started: Instant,
    last_progress: Instant,
    disconnected_at: Option<Instant>,
    waiting: Waiting,
}

/// Start the cycle of a request from the engine.
pub fn start(py: Python<'_>, hub: &Rc<Hub>, job: Job) {
    if job
        .head
        .header("upgrade")
        .is_some_and(|u| u.split(',').any(|t| t.trim().eq_ignore_ascii_case("websocket")))
    {
        return super::websocket::start(py, hub, job);
    }
    let Job {
        idx,
        head,
        body,
        peer,
        listener,
        reply,
        early,
        continue_pending,
    } = job;
    let (body, extra) = match body {
        Body::Buffered(b) => (ReqBody::Whole(Some(b)), early),
        Body::Streaming {
            decoded, raw, rest, ..
        } => (ReqBody::Stream { decoded, raw, rest }, Vec::new()),
    };
    let now = Instant::now();
    let id = hub.new_id();
    let mut cycle = HttpCycle {
        hub: hub.clone(),
        id,
        idx,
        fd: reply.fd,
        is_head: head.method == "HEAD",
        keep_alive: reply.keep_alive,
        date: reply.date,
        peer,
        body,
        continue_pending,
        extra,
        eof: false,
        gone: false,
        start: None,
        trailers: false,
        status: 0,
        log_headers: Vec::new(),
        head_sent: false,
        no_body: false,
        chunked: false,
        remaining: None,
        complete: false,
        body_bytes: 0,
        out: reply.pending,
        opos: 0,
        file: None,
        recv_waiter: None,
        send_waiter: None,
        finished: false,
        returned: false,
        task: None,
        started: now,
        last_progress: now,
        disconnected_at: None,
        waiting: Waiting::claim(reply.fd, head.method == "HEAD"),
        head,
    };
    // Requests a trusted proxy's headers make ambiguous are refused before
    // the app, as for WSGI.
    let refused = hub.forwarding.refused(&cycle.head, &cycle.peer).map(|n| {
        format!("Invalid HTTP header name: '{}'", n.to_ascii_uppercase())
    });
    let refused = refused.or_else(|| {
        hub.forwarding
            .contradictory_scheme(&cycle.head, &cycle.peer)
            .then(|| "Contradictory scheme headers".to_string())
    });
    if let Some(problem) = refused {
        warning!("Invalid request from ip={}: {problem}", remote_ip(&cycle.peer));
        cycle.returned = true;
        cycle.error_response(400, &format!("{problem}\n"));
        cycle.flush();
        cycle.finish(py);
        return;
    }
    let scope = hub.scope.build(
        py,
        &cycle.head,
        &cycle.peer,
        listener,
        &hub.forwarding,
        false,
        &[],
    );
    let result = scope.and_then(|scope| {
        let cy = Py::new(py, cycle)?;
        let b = cy.bind(py);
        let task = spawn(py, hub, scope, b.as_any())?;
        b.borrow_mut().task = Some(task);
        let mut by_conn = hub.by_conn.borrow_mut();
        if by_conn.len() <= idx {
            by_conn.resize_with(idx + 1, || None);
        }
        by_conn[idx] = Some(super::CycleRef::Http(cy.clone_ref(py)));
        hub.running.borrow_mut().push((id, super::CycleRef::Http(cy)));
        Ok(())
    });
    if let Err(e) = result {
        error!(
            "Cannot start the ASGI app:\n{}",
            crate::wsgi::format_exception(py, &e).trim_end()
        );
        // The cycle went into Python and is dropped with the error: the
        // connection closes without a response.
        hand_back(
            &hub.inbox,
            Done {
                idx,
                outcome: Err(e.to_string()),
            },
        );
        hub.wake.soon(py);
    }
}

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
    let coro = hub
        .run_app
        .bind(py)
        .call1((hub.app.bind(py), scope, receive, send, cycle, hub.version))?;
    let task = hub
        .ev
        .bind(py)
        .call_method1(pyo3::intern!(py, "create_task"), (coro,))?;
    Ok(task.unbind())
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

#[pymethods]
impl HttpCycle {
    /// ASGI `receive()`.
    fn receive(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let mut me = slf.borrow_mut();
        if let Some(msg) = me.try_receive(py)? {
            return Ok(Py::new(py, Ready::new(msg))?.into_any());
        }
        let fut = me
            .hub
            .ev
            .bind(py)
            .call_method0(pyo3::intern!(py, "create_future"))?;
        me.recv_waiter = Some(fut.clone().unbind());
        Ok(fut.unbind())
    }

    /// ASGI `send(message)`.
    fn send(slf: &Bound<'_, Self>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let mut me = slf.borrow_mut();
        let message = message
            .cast::<PyDict>()
            .map_err(|_| PyValueError::new_err("an ASGI message is a dict"))?;
        let kind = match message.get_item(pyo3::intern!(py, "type"))? {
            Some(t) => t.extract::<String>()?,
            None => return Err(PyValueError::new_err("the ASGI message has no 'type'")),
        };
        let wait = me.handle_send(py, &kind, message)?;
        if wait && !me.gone && !me.finished {
            let fut = me
                .hub
                .ev
                .bind(py)
                .call_method0(pyo3::intern!(py, "create_future"))?;
            me.send_waiter = Some(fut.clone().unbind());
            return Ok(fut.unbind());
        }
        Ok(Py::new(py, Ready::new(py.None()))?.into_any())
    }

    /// From runtime.run_app: the app's coroutine returned.
    fn app_returned(&mut self, py: Python<'_>) {
        self.ended(py, None);
    }

    /// From runtime.run_app: the app raised.
    fn app_failed(&mut self, py: Python<'_>, _exc: &Bound<'_, PyAny>, tb: &str) {
        self.ended(py, Some(tb));
    }
}

impl HttpCycle {
    fn disconnect_msg(py: Python<'_>) -> PyResult<Py<PyAny>> {
        let d = PyDict::new(py);
        d.set_item(pyo3::intern!(py, "type"), pyo3::intern!(py, "http.disconnect"))?;
        Ok(d.into_any().unbind())
    }

    fn request_msg(py: Python<'_>, body: &[u8], more: bool) -> PyResult<Py<PyAny>> {
        let d = PyDict::new(py);
        d.set_item(pyo3::intern!(py, "type"), pyo3::intern!(py, "http.request"))?;
        d.set_item(pyo3::intern!(py, "body"), PyBytes::new(py, body))?;
        d.set_item(pyo3::intern!(py, "more_body"), more)?;
        Ok(d.into_any().unbind())
    }

    /// The message `receive()` returns now, or None to wait.
    fn try_receive(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if self.finished || self.complete || self.gone {
            return Ok(Some(Self::disconnect_msg(py)?));
        }
        if std::mem::take(&mut self.continue_pending) && !self.head_sent {
            let mut c = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
            c.extend_from_slice(&self.out[self.opos..]);
            self.out = c;
            self.opos = 0;
            self.flush();
        }
        if let ReqBody::Whole(b) = &mut self.body {
            return match b.take() {
                Some(b) => Ok(Some(Self::request_msg(py, &b, false)?)),
                None if self.eof => Ok(Some(Self::disconnect_msg(py)?)),
                None => Ok(None),
            };
        }
        match self.pull() {
            Pull::Data(chunk, more) => Ok(Some(Self::request_msg(py, &chunk, more)?)),
            Pull::Wait => Ok(None),
            Pull::Eof => {
                self.eof = true;
                self.mark_disconnected();
                Ok(Some(Self::disconnect_msg(py)?))
            }
            Pull::Bad => {
                // A malformed body: the request cannot go on.
                self.keep_alive = false;
                self.eof = true;
                self.mark_disconnected();
                Ok(Some(Self::disconnect_msg(py)?))
            }
        }
    }

    /// Decode what has arrived of a streamed body, reading the socket
    /// when nothing is decoded yet.
    fn pull(&mut self) -> Pull {
        let fd = self.fd;
        loop {
            let ReqBody::Stream { decoded, raw, rest } = &mut self.body else {
                return Pull::Wait;
            };
            if !raw.is_empty() && !rest.is_done() {
                match rest {
                    BodyRest::Length(n) => {
                        let take = (*n).min(raw.len() as u64) as usize;
                        decoded.extend_from_slice(&raw[..take]);
                        raw.drain(..take);
                        *n -= take as u64;
                    }
                    BodyRest::Chunked(d) => match d.decode(raw, decoded) {
                        Ok((used, _)) => {
                            raw.drain(..used);
                        }
                        Err(e) => {
                            warning!("Invalid request body: {}", e.reason);
                            return Pull::Bad;
                        }
                    },
                }
            }
            if !decoded.is_empty() || rest.is_done() {
                let chunk = std::mem::take(decoded);
                let more = !rest.is_done();
                if !more {
                    self.extra = std::mem::take(raw);
                    self.body = ReqBody::Whole(None);
                }
                return Pull::Data(chunk, more);
            }
            match read_into(fd, raw) {
                Ok(0) => return Pull::Eof,
                Ok(_) => self.last_progress = Instant::now(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Pull::Wait,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Pull::Eof,
            }
        }
    }

    fn mark_disconnected(&mut self) {
        if self.disconnected_at.is_none() {
            self.disconnected_at = Some(Instant::now());
        }
    }

    /// Act on one message from `send`; true: the caller waits for the
    /// socket to take what is queued.
    fn handle_send(
        &mut self,
        py: Python<'_>,
        kind: &str,
        message: &Bound<'_, PyDict>,
    ) -> PyResult<bool> {
        if self.finished && kind != "http.response.start" && !self.complete {
            // The client is gone: what the app sends is dropped.
            return Ok(false);
        }
        match kind {
            "http.response.start" => {
                if self.start.is_some() || self.head_sent || self.complete {
                    return Err(runtime_error(
                        "Unexpected ASGI message 'http.response.start' sent, after response already started.",
                    ));
                }
                let status: u16 = match message.get_item(pyo3::intern!(py, "status"))? {
                    Some(s) => s.extract()?,
                    None => return Err(PyValueError::new_err("http.response.start has no 'status'")),
                };
                if !(100..=999).contains(&status) {
                    return Err(PyValueError::new_err(format!("invalid HTTP status {status}")));
                }
                let mut headers = Vec::new();
                if let Some(h) = message.get_item(pyo3::intern!(py, "headers"))? {
                    for pair in h.try_iter()? {
                        let (n, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
                        headers.push((header_bytes(&n)?, header_bytes(&v)?));
                    }
                }
                self.trailers = match message.get_item(pyo3::intern!(py, "trailers"))? {
                    Some(t) => t.is_truthy()?,
                    None => false,
                };
                self.status = status;
                self.start = Some((status, headers));
                Ok(false)
            }
            "http.response.body" => {
                self.expect_started("http.response.body")?;
                let body = match message.get_item(pyo3::intern!(py, "body"))? {
                    Some(b) => b.extract::<&[u8]>().map(<[u8]>::to_vec).or_else(|_| {
                        b.extract::<Vec<u8>>()
                    })?,
                    None => Vec::new(),
                };
                let more = match message.get_item(pyo3::intern!(py, "more_body"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                self.write_body(&body, more)?;
                self.after_send(py)
            }
            "http.response.trailers" => {
                if !self.trailers || self.complete || !self.head_sent {
                    return Err(runtime_error(
                        "Unexpected ASGI message 'http.response.trailers': the response start did not announce trailers, or the body is not complete",
                    ));
                }
                let more = match message.get_item(pyo3::intern!(py, "more_trailers"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                if self.chunked && !self.no_body && !self.is_head && !self.gone {
                    if let Some(h) = message.get_item(pyo3::intern!(py, "headers"))? {
                        for pair in h.try_iter()? {
                            let (n, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
                            let (n, v) = (header_bytes(&n)?, header_bytes(&v)?);
                            check_field(&n, &v)?;
                            self.out.extend_from_slice(&n);
                            self.out.extend_from_slice(b": ");
                            self.out.extend_from_slice(&v);
                            self.out.extend_from_slice(b"\r\n");
                        }
                    }
                    if !more {
                        self.out.extend_from_slice(b"\r\n");
                    }
                }
                if !more {
                    self.complete = true;
                }
                self.after_send(py)
            }
            "http.response.pathsend" => {
                self.expect_started("http.response.pathsend")?;
                let path: std::path::PathBuf = match message.get_item(pyo3::intern!(py, "path"))? {
                    Some(p) => p.extract()?,
                    None => return Err(PyValueError::new_err("http.response.pathsend has no 'path'")),
                };
                let file = std::fs::File::open(&path).map_err(|e| {
                    PyOSError::new_err(format!("cannot open {}: {e}", path.display()))
                })?;
                let len = file.metadata().map(|m| m.len()).map_err(|e| {
                    PyOSError::new_err(format!("cannot read {}: {e}", path.display()))
                })?;
                self.send_file(Some(file), None, 0, len, true)?;
                self.after_send(py)
            }
            "http.response.zerocopysend" => {
                self.expect_started("http.response.zerocopysend")?;
                let file = match message.get_item(pyo3::intern!(py, "file"))? {
                    Some(f) => f,
                    None => return Err(PyValueError::new_err("http.response.zerocopysend has no 'file'")),
                };
                let fd: RawFd = file.call_method0(pyo3::intern!(py, "fileno"))?.extract()?;
                let offset: Option<i64> = message
                    .get_item(pyo3::intern!(py, "offset"))?
                    .map(|o| o.extract())
                    .transpose()?;
                let count: Option<u64> = message
                    .get_item(pyo3::intern!(py, "count"))?
                    .map(|o| o.extract())
                    .transpose()?;
                let more = match message.get_item(pyo3::intern!(py, "more_body"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                // The file's own position when no offset is given.
                // SAFETY: lseek on a descriptor the app handed over; it
                // touches no memory.
                let pos = offset.unwrap_or_else(|| unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) }.max(0));
                // SAFETY: the app's descriptor, borrowed for this call.
                let size = nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
                    .map(|st| st.st_size.max(0) as u64)
                    .map_err(|e| PyOSError::new_err(format!("zerocopysend: {e}")))?;
                let avail = size.saturating_sub(pos as u64);
                let count = count.map_or(avail, |c| c.min(avail));
                self.send_file(None, Some(fd), pos, count, !more)?;
                // The app's file must stay open until it is out: wait.
                self.after_send(py).map(|_| self.file.is_some())
            }
            other => Err(runtime_error(format!(
                "Unexpected ASGI message '{other}' sent, for an HTTP connection."
            ))),
        }
    }

    fn expect_started(&self, kind: &str) -> PyResult<()> {
        if self.complete {
            return Err(runtime_error(format!(
                "Unexpected ASGI message '{kind}' sent, after response already completed."
            )));
        }
        if self.start.is_none() && !self.head_sent {
            return Err(runtime_error(format!(
                "Expected ASGI message 'http.response.start', but got '{kind}'."
            )));
        }
        Ok(())
    }

    /// After a body message: write, and hand the connection back once
    /// the response is complete. True: `send` waits.
    fn after_send(&mut self, py: Python<'_>) -> PyResult<bool> {
        self.flush();
        if self.complete && self.file.is_none() {
            self.finish(py);
            return Ok(false);
        }
        Ok(self.pending() > HIGH_WATER || self.file.is_some())
    }

    fn pending(&self) -> usize {
        self.out.len() - self.opos
    }

    /// Write the response head (once), with the framing decided now:
    /// `final_len` is the whole body's length when the first body message
    /// is also the last.
    fn write_head(&mut self, final_len: Option<u64>) -> PyResult<()> {
        if self.head_sent {
            return Ok(());
        }
        let Some((status, headers)) = self.start.take() else {
            return Err(runtime_error("no response start"));
        };
        let mut h = Vec::with_capacity(160 + headers.len() * 32);
        h.extend_from_slice(b"HTTP/1.1 ");
        h.extend_from_slice(status.to_string().as_bytes());
        h.push(b' ');
        h.extend_from_slice(reason_phrase(status).as_bytes());
        h.extend_from_slice(b"\r\n");
        self.no_body = status < 200 || status == 204 || status == 304;
        let (mut has_server, mut has_date) = (false, false);
        let mut length: Option<u64> = None;
        for (n, v) in &headers {
            check_field(n, v)?;
            let lname = n.to_ascii_lowercase();
            match lname.as_slice() {
                b"content-length" => {
                    let s = std::str::from_utf8(v).unwrap_or("").trim();
                    let len = s.parse::<u64>().map_err(|_| {
                        PyValueError::new_err(format!("invalid content-length header: {s:?}"))
                    })?;
                    if status < 200 || status == 204 {
                        continue;
                    }
                    length = Some(len);
                }
                // The framing is this server's.
                b"transfer-encoding" => continue,
                b"connection" => {
                    if v.to_ascii_lowercase().windows(5).any(|w| w == b"close") {
                        self.keep_alive = false;
                    }
                    continue;
                }
                b"server" => has_server = true,
                b"date" => has_date = true,
                _ => {}
            }
            self.log_headers.push((latin1_string(n), latin1_string(v)));
            h.extend_from_slice(n);
            h.extend_from_slice(b": ");
            h.extend_from_slice(v);
            h.extend_from_slice(b"\r\n");
        }
        if !has_server {
            h.extend_from_slice(b"Server: ferrocorn\r\n");
        }
        if !has_date {
            h.extend_from_slice(b"Date: ");
            h.extend_from_slice(self.date.as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        let minor = self.head.minor_version;
        if self.no_body {
            self.remaining = Some(0);
        } else if let Some(n) = length {
            self.remaining = Some(n);
        } else if self.is_head {
            self.remaining = Some(0);
        } else if self.trailers && minor >= 1 {
            h.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            self.chunked = true;
        } else if let Some(n) = final_len {
            h.extend_from_slice(b"Content-Length: ");
            h.extend_from_slice(n.to_string().as_bytes());
            h.extend_from_slice(b"\r\n");
            self.remaining = Some(n);
        } else if minor >= 1 {
            h.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            self.chunked = true;
        } else {
            self.keep_alive = false;
        }
        if self.eof || self.hub.draining.get() {
            self.keep_alive = false;
        }
        if !self.keep_alive {
            h.extend_from_slice(b"Connection: close\r\n");
        } else if minor == 0 {
            h.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        h.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&h);
        self.head_sent = true;
        self.waiting.release();
        Ok(())
    }

    fn write_body(&mut self, body: &[u8], more: bool) -> PyResult<()> {
        if !self.head_sent {
            self.write_head((!more).then_some(body.len() as u64))?;
        }
        let silent = self.no_body || self.is_head || self.gone;
        if !body.is_empty() && !self.no_body && !self.is_head {
            if let Some(rem) = self.remaining.as_mut() {
                if body.len() as u64 > *rem {
                    return Err(runtime_error("Response content longer than Content-Length"));
                }
                *rem -= body.len() as u64;
            }
            self.body_bytes += body.len() as u64;
        }
        if !silent && !body.is_empty() {
            if self.chunked {
                self.out
                    .extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                self.out.extend_from_slice(body);
                self.out.extend_from_slice(b"\r\n");
            } else {
                self.out.extend_from_slice(body);
            }
        }
        if !more {
            self.end_body();
        }
        Ok(())
    }

    /// The last body bytes were sent.
    fn end_body(&mut self) {
        if self.remaining.is_some_and(|r| r > 0) && !self.is_head {
            // Shorter than its Content-Length: only closing can end it.
            warning!("ASGI response shorter than its Content-Length; closing the connection");
            self.keep_alive = false;
        }
        if self.trailers && self.chunked {
            if !self.gone && !self.is_head && !self.no_body {
                self.out.extend_from_slice(b"0\r\n");
            }
            // Complete with the trailers message.
            return;
        }
        if self.chunked && !self.gone && !self.is_head {
            self.out.extend_from_slice(b"0\r\n\r\n");
        }
        self.complete = true;
    }

    fn send_file(
        &mut self,
        owned: Option<std::fs::File>,
        fd: Option<RawFd>,
        offset: i64,
        len: u64,
        last: bool,
    ) -> PyResult<()> {
        if !self.head_sent {
            let has_length = self.start.as_ref().is_some_and(|(_, h)| {
                h.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"content-length"))
            });
            if let (false, Some((_, h))) = (has_length || !last, self.start.as_mut()) {
                h.push((b"content-length".to_vec(), len.to_string().into_bytes()));
            }
            self.write_head(None)?;
        }
        let fd = match (&owned, fd) {
            (Some(f), _) => f.as_raw_fd(),
            (None, Some(fd)) => fd,
            (None, None) => return Err(runtime_error("no file to send")),
        };
        let silent = self.no_body || self.is_head || self.gone;
        if let Some(rem) = self.remaining.as_mut() {
            if !silent && len > *rem {
                return Err(runtime_error("Response content longer than Content-Length"));
            }
            *rem = rem.saturating_sub(len);
        }
        if silent || len == 0 {
            if last {
                self.end_body();
            }
            return Ok(());
        }
        self.body_bytes += len;
        if self.chunked {
            self.out
                .extend_from_slice(format!("{len:x}\r\n").as_bytes());
        }
        self.file = Some(FileOut {
            _owned: owned,
            fd,
            offset,
            left: len,
            last,
        });
        Ok(())
    }

    /// Write what the socket takes now; a failed write means the client
    /// is gone.
    fn flush(&mut self) {
        if self.gone {
            return;
        }
        loop {
            while self.opos < self.out.len() {
                match write_some(self.fd, &self.out[self.opos..]) {
                    Ok(n) => {
                        self.opos += n;
                        self.last_progress = Instant::now();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.lost();
                        return;
                    }
                }
            }
            self.out.clear();
            self.opos = 0;
            let Some(f) = self.file.as_mut() else { return };
            if f.left == 0 {
                let last = f.last;
                self.file = None;
                if self.chunked {
                    self.out.extend_from_slice(b"\r\n");
                }
                if last {
                    self.end_body();
                }
                if self.out.is_empty() {
                    return;
                }
                continue;
            }
            let step = f.left.min(1 << 20) as usize;
            let r = if self.hub.opts.sendfile {
                let mut off = f.offset as libc::off_t;
                // SAFETY: both descriptors are open (the connection's is the
                // engine's until this cycle hands it back; the file's is
                // owned or kept open by the waiting app); `off` is a valid
                // pointer for the call's duration.
                let n = unsafe { libc::sendfile(self.fd, f.fd, &mut off, step) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            } else {
                let mut buf = vec![0u8; step.min(READ_CHUNK)];
                match nix::sys::uio::pread(
                    // SAFETY: the descriptor stays open while it is sent
                    // (see above); borrowed for this call only.
                    unsafe { std::os::fd::BorrowedFd::borrow_raw(f.fd) },
                    &mut buf,
                    f.offset,
                ) {
                    Ok(n) => {
                        buf.truncate(n);
                        match write_some(self.fd, &buf) {
                            Ok(w) => {
                                // What the socket did not take is queued.
                                self.out.extend_from_slice(&buf[w..]);
                                Ok(n)
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(std::io::Error::from(e)),
                }
            };
            match r {
                Ok(0) => {
                    // The file is shorter than announced.
                    warning!("File for the ASGI response ended early");
                    self.keep_alive = false;
                    self.file = None;
                    self.complete = true;
                    return;
                }
                Ok(n) => {
                    let f = self.file.as_mut().expect("file in progress");
                    f.offset += n as i64;
                    f.left -= n as u64;
                    self.last_progress = Instant::now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.lost();
                    return;
                }
            }
        }
    }

    /// The client is gone: nothing more is written.
    fn lost(&mut self) {
        self.gone = true;
        self.eof = true;
        self.keep_alive = false;
        self.file = None;
        self.out.clear();
        self.opos = 0;
        self.mark_disconnected();
    }

    /// A readiness event of the connection.
    pub fn on_io(&mut self, py: Python<'_>) {
        if self.finished {
            return;
        }
        if self.pending() > 0 || self.file.is_some() {
            self.flush();
        }
        if self.recv_waiter.is_some() {
            match self.try_receive(py) {
                Ok(Some(msg)) => resolve(py, &mut self.recv_waiter, msg),
                Ok(None) => {}
                Err(e) => error!("ASGI receive: {e}"),
            }
        } else {
            self.watch_input();
            if self.eof {
                if let Ok(msg) = Self::disconnect_msg(py) {
                    resolve(py, &mut self.recv_waiter, msg);
                }
            }
        }
        self.settle(py);
    }

    /// While the app does not read: keep what follows the body (to a
    /// limit) and notice the client closing.
    fn watch_input(&mut self) {
        if self.eof {
            return;
        }
        match &self.body {
            ReqBody::Whole(_) => {
                while self.extra.len() < EXTRA_CAP {
                    match read_into(self.fd, &mut self.extra) {
                        Ok(0) => {
                            self.eof = true;
                            self.mark_disconnected();
                            return;
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                        Err(_) => {
                            self.lost();
                            return;
                        }
                    }
                }
            }
            ReqBody::Stream { .. } => {
                // Body bytes stay in the kernel until the app asks; only
                // a closed connection is noticed.
                if peer_closed(self.fd) {
                    self.eof = true;
                    self.mark_disconnected();
                }
            }
        }
    }

    /// After I/O: wake a waiting `send`, hand the connection back when
    /// the response is complete or the client gone.
    fn settle(&mut self, py: Python<'_>) {
        if self.send_waiter.is_some()
            && (self.gone || (self.pending() <= HIGH_WATER && self.file.is_none()))
        {
            resolve(py, &mut self.send_waiter, py.None());
        }
        if self.gone {
            if let Ok(msg) = Self::disconnect_msg(py) {
                resolve(py, &mut self.recv_waiter, msg);
            }
            self.finish(py);
        } else if self.complete && self.file.is_none() {
            self.finish(py);
        }
    }

    /// Once a second: the stall deadline and the disconnect grace period.
    pub fn on_tick(&mut self, py: Python<'_>) {
        let now = Instant::now();
        if !self.finished {
            let stalled = now.duration_since(self.last_progress) > self.hub.opts.stall;
            let reading = self.recv_waiter.is_some() && matches!(self.body, ReqBody::Stream { .. });
            let writing = self.pending() > 0 || self.file.is_some();
            if stalled && (reading || writing) {
                crate::debug!("ASGI request stalled for --body-timeout: closing");
                self.lost();
                self.settle(py);
            }
        }
        if let (Some(at), false) = (self.disconnected_at, self.returned) {
            if now.duration_since(at) > self.hub.opts.disconnect_grace {
                if let Some(t) = self.task.take() {
                    crate::debug!("Cancelling an ASGI task after its client disconnected");
                    let _ = t.bind(py).call_method0("cancel");
                }
            }
        }
    }

    /// The app's coroutine ended (`tb`: it raised).
    fn ended(&mut self, py: Python<'_>, tb: Option<&str>) {
        self.returned = true;
        self.task = None;
        let id = self.id;
        self.hub.running.borrow_mut().retain(|(i, _)| *i != id);
        let cancelled = tb.is_some_and(|t| t.contains("CancelledError")) && self.disconnected_at.is_some();
        if let Some(tb) = tb {
            if !cancelled {
                error!("Exception in ASGI application\n{}", tb.trim_end());
            }
        }
        if self.finished {
            return;
        }
        if !self.head_sent {
            if tb.is_none() {
                error!("ASGI callable returned without sending a response.");
            }
            self.start = None;
            self.error_response(500, "Internal Server Error\n");
        } else if !self.complete {
            if tb.is_none() {
                error!("ASGI callable returned without completing response.");
            }
            self.keep_alive = false;
            self.complete = true;
            self.file = None;
        }
        self.flush();
        self.settle(py);
        if !self.finished && self.complete {
            self.finish(py);
        }
    }

    /// A plain error response (when the app has sent nothing).
    fn error_response(&mut self, status: u16, body: &str) {
        self.keep_alive = false;
        self.status = status;
        self.no_body = false;
        let head = format!(
            "HTTP/1.1 {status} {}\r\nServer: ferrocorn\r\nDate: {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            reason_phrase(status),
            self.date,
            body.len()
        );
        self.out.extend_from_slice(head.as_bytes());
        if !self.is_head {
            self.out.extend_from_slice(body.as_bytes());
            self.body_bytes = body.len() as u64;
        }
        self.head_sent = true;
        self.complete = true;
        self.waiting.release();
    }

    /// Hand the connection back to the engine (once).
    fn finish(&mut self, py: Python<'_>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.waiting.release();
        if let Some(slot) = self.hub.by_conn.borrow_mut().get_mut(self.idx) {
            *slot = None;
        }
        // A buffered body arrived whole (read or not); a streamed one only
        // once the app read it to its end.
        let body_read = matches!(self.body, ReqBody::Whole(_));
        let leftover = (body_read && !self.eof && self.complete).then(|| std::mem::take(&mut self.extra));
        let keep_alive = self.keep_alive && leftover.is_some() && !self.gone;
        let out = if self.opos == 0 {
            std::mem::take(&mut self.out)
        } else {
            self.out[self.opos..].to_vec()
        };
        self.out = Vec::new();
        self.opos = 0;
        if let Some(access) = &self.hub.access {
            let status = if self.status == 0 { 500 } else { self.status };
            crate::wsgi::log_access_head(
                py,
                access,
                &self.head,
                &self.peer,
                status,
                &self.log_headers,
                self.body_bytes,
                self.started.elapsed(),
            );
        }
        hand_back(
            &self.hub.inbox,
            Done {
                idx: self.idx,
                outcome: Ok(Outcome {
                    out,
                    keep_alive,
                    broken: self.gone,
                    taken: false,
                    leftover,
                }),
            },
        );
        self.hub.wake.soon(py);
        if let Ok(msg) = Self::disconnect_msg(py) {
            resolve(py, &mut self.recv_waiter, msg);
        }
        resolve(py, &mut self.send_waiter, py.None());
    }
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
            .map(|c| u8::try_from(c as u32).map_err(|_| PyValueError::new_err("header is not latin-1")))
            .collect();
    }
    Ok(v.extract::<Vec<u8>>()?)
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

pub(super) fn write_some(fd: RawFd, buf: &[u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes; the descriptor is the
    // connection's, open while this cycle holds it.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Append what can be read now (one read of up to READ_CHUNK).
pub(super) fn read_into(fd: RawFd, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    buf.reserve(READ_CHUNK);
    let spare = buf.spare_capacity_mut();
    // SAFETY: `spare` is writable for its length; recv writes at most that
    // many bytes, which are then marked initialised.
    let n = unsafe {
        libc::recv(
            fd,
            spare.as_mut_ptr().cast(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: recv initialised `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// The peer closed the connection (a zero-byte peek).
pub(super) fn peer_closed(fd: RawFd) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: one writable byte; MSG_PEEK consumes nothing.
    let n = unsafe {
        libc::recv(
            fd,
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0
}
