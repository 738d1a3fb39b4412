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

use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

mod send;

use super::io::{message_kind, peer_closed, read_into, ready, remote_ip, resolve, spawn, wait_in};
use super::Hub;
use crate::http::{Body, BodyRest, RequestHead};
use crate::worker::executor::asyncio::hand_back;
use crate::worker::executor::{Done, Job, Outcome};
use crate::worker::timeout_reply::Waiting;
use crate::wsgi::Peer;
use crate::{error, warning};

/// `send` waits while more than this is unwritten.
pub(super) const HIGH_WATER: usize = 64 * 1024;
/// Bytes after the body kept while the app runs (a pipelined request).
const EXTRA_CAP: usize = 64 * 1024;

/// Response fields as the app sent them.
type Headers = Vec<(Vec<u8>, Vec<u8>)>;

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
    wire: crate::tls::Wire,
    head: RequestHead,
    peer: Peer,
    /// Who the request is from (a PROXY header's or uwsgi's client, else
    /// `peer`): the scope's `client`, the logs.
    client: Peer,
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
    start: Option<(u16, Headers)>,
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
    /// How long the request waited before the app was called.
    queued: std::time::Duration,
    last_progress: Instant,
    disconnected_at: Option<Instant>,
    /// The app ended on the disconnect (ClientDisconnected, or cancelled).
    quiet_end: bool,
    waiting: Waiting,
}

/// Start the cycle of a request from the engine.
pub fn start(py: Python<'_>, hub: &Rc<Hub>, job: Job) {
    // A uwsgi request is never a WebSocket: the proxy speaks uwsgi, not
    // the client's protocol, on this connection.
    if job.edge.uwsgi.is_none()
        && job.head.header("upgrade").is_some_and(|u| {
            u.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
        })
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
        edge,
        received,
    } = job;
    let client = edge.client(&peer);
    let (body, extra) = match body {
        Body::Buffered(b) => (ReqBody::Whole(Some(b)), early),
        Body::Streaming {
            decoded, raw, rest, ..
        } => (ReqBody::Stream { decoded, raw, rest }, Vec::new()),
    };
    let now = Instant::now();
    let id = hub.new_id();
    let mut cycle = HttpCycle {
        queued: now.saturating_duration_since(received),
        hub: hub.clone(),
        id,
        idx,
        wire: reply.wire.clone(),
        is_head: head.method == "HEAD",
        keep_alive: reply.keep_alive,
        date: reply.date,
        peer,
        client,
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
        quiet_end: false,
        waiting: Waiting::claim(&reply.wire, head.method == "HEAD"),
        head,
    };
    // Requests a trusted proxy's headers make ambiguous are refused before
    // the app, as for WSGI.
    let refused = hub
        .forwarding
        .refused(&cycle.head, &cycle.peer)
        .map(|n| format!("Invalid HTTP header name: '{}'", n.to_ascii_uppercase()));
    let refused = refused.or_else(|| {
        hub.forwarding
            .contradictory_scheme(&cycle.head, &cycle.peer)
            .then(|| "Contradictory scheme headers".to_string())
    });
    if let Some(problem) = refused {
        warning!(
            "Invalid request from ip={}: {problem}",
            remote_ip(&cycle.client)
        );
        cycle.returned = true;
        cycle.error_response(400, &format!("{problem}\n"));
        cycle.flush();
        cycle.finish(py);
        return;
    }
    let scope = hub.scope.build(
        py,
        &cycle.head,
        (&cycle.peer, &cycle.client, &edge),
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
        hub.running
            .borrow_mut()
            .push((id, super::CycleRef::Http(cy)));
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

#[pymethods]
impl HttpCycle {
    /// ASGI `receive()`.
    fn receive(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let mut me = slf.borrow_mut();
        if let Some(msg) = me.try_receive(py)? {
            return ready(py, msg);
        }
        let hub = me.hub.clone();
        wait_in(py, &hub, &mut me.recv_waiter)
    }

    /// ASGI `send(message)`.
    fn send(slf: &Bound<'_, Self>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let mut me = slf.borrow_mut();
        let (message, kind) = message_kind(message)?;
        let wait = me.handle_send(py, &kind, message)?;
        if wait && !me.gone && !me.finished {
            let hub = me.hub.clone();
            return wait_in(py, &hub, &mut me.send_waiter);
        }
        ready(py, py.None())
    }

    /// From runtime.run_app: the app's coroutine returned.
    fn app_returned(&mut self, py: Python<'_>) {
        self.ended(py, None);
    }

    /// From runtime.run_app: the app raised.
    fn app_failed(&mut self, py: Python<'_>, _exc: &Bound<'_, PyAny>, tb: &str, quiet: bool) {
        self.quiet_end = quiet;
        self.ended(py, Some(tb));
    }
}

impl HttpCycle {
    fn disconnect_msg(py: Python<'_>) -> PyResult<Py<PyAny>> {
        let d = PyDict::new(py);
        d.set_item(
            pyo3::intern!(py, "type"),
            pyo3::intern!(py, "http.disconnect"),
        )?;
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
            if let Some(b) = b.take() {
                return Ok(Some(Self::request_msg(py, &b, false)?));
            }
            // The body is over: what is left to wait for is the client
            // going away (or the response completing).
            self.watch_input();
            return if self.eof || self.gone {
                Ok(Some(Self::disconnect_msg(py)?))
            } else {
                Ok(None)
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
        let wire = self.wire.clone();
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
            match read_into(&wire, raw) {
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
                    match read_into(&self.wire, &mut self.extra) {
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
                if peer_closed(&self.wire) {
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
    pub fn task(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.task.as_ref().map(|t| t.clone_ref(py))
    }

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
        let cancelled = self.quiet_end && self.disconnected_at.is_some();
        if let Some(tb) = tb {
            if !cancelled {
                crate::exception!("Exception in ASGI application\n{}", tb.trim_end());
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
        let head = super::io::plain_head(status, &self.date, "", body.len());
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
        // A buffered body arrived whole (read or not); a streamed one only
        // once the app read it to its end.
        let body_read = matches!(self.body, ReqBody::Whole(_));
        let leftover =
            (body_read && !self.eof && self.complete).then(|| std::mem::take(&mut self.extra));
        let keep_alive = self.keep_alive && leftover.is_some() && !self.gone;
        let out = if self.opos == 0 {
            std::mem::take(&mut self.out)
        } else {
            self.out[self.opos..].to_vec()
        };
        self.out = Vec::new();
        self.opos = 0;
        let outcome = Outcome {
            out,
            keep_alive,
            broken: self.gone,
            taken: false,
            leftover,
        };
        let hub = self.hub.clone();
        hub.give_back(
            py,
            self.idx,
            outcome,
            super::Logged {
                head: &self.head,
                peer: &self.client,
                status: self.status,
                headers: &self.log_headers,
                body_bytes: self.body_bytes,
                started: self.started,
                queue: self.queued,
            },
        );
        if let Ok(msg) = Self::disconnect_msg(py) {
            resolve(py, &mut self.recv_waiter, msg);
        }
        resolve(py, &mut self.send_waiter, py.None());
    }
}
