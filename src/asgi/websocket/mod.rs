//! One ASGI WebSocket session (`websocket` scope): the upgrade checked
//! (`ws::parse_upgrade`; a bad one is answered 400 or 426 before the app),
//! `websocket.connect` → `websocket.accept` (the `101`, with the app's
//! subprotocol and headers, and permessage-deflate when the client offered
//! it) or `websocket.close` before accepting (403) or the
//! `websocket.http.response` extension (any HTTP response), then
//! `websocket.receive` / `websocket.send` over the Rust frame codec, pings
//! answered here, the close handshake with its codes, and
//! `websocket.disconnect`. What the app sends is checked and applied in
//! `send.rs`; the receive side, I/O and the end of the session are here.
//!
//! A private extension for the Tornado adapter (`tornado.py`): a
//! `websocket.accept` with `"ferrocorn.control_frames": True` has the
//! client's pings and pongs delivered too (`ferrocorn.websocket.ping` /
//! `.pong` with their `bytes`; pings are still answered here), and a
//! `ferrocorn.websocket.ping` message sends a ping.
//!
//! Backpressure both ways: frames are read only while fewer than
//! QUEUE_CAP bytes of messages wait for the app's `receive`, and `send`
//! waits while more than HIGH_WATER is unwritten. On a graceful stop the
//! session closes with 1001.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::cycle::HIGH_WATER;
use super::io::{message_kind, plain_head, ready, wait_in};
use super::io::{peer_closed, read_into, remote_ip, resolve, spawn, write_some};
use super::{CycleRef, Hub};
use crate::http::RequestHead;
use crate::worker::executor::asyncio::hand_back;
use crate::worker::executor::{Done, Job, Outcome};
use crate::worker::timeout_reply::Waiting;
use crate::ws::{self, Decoder, Encoder, Event, Upgrade};

mod send;
use crate::wsgi::Peer;
use crate::{debug, error, warning};

/// Messages waiting for `receive` before reading stops.
const QUEUE_CAP: usize = 1 << 20;
/// How long a close handshake may take.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Before `websocket.accept`.
    Connecting,
    /// Sending an HTTP response instead (`websocket.http.response`).
    Denying,
    Open,
    /// Our close frame is out; waiting for the client's.
    Closing(Instant),
    /// Over (the close handshake ended, or the connection failed).
    Closed,
}

#[pyclass(unsendable)]
pub struct WsCycle {
    hub: Rc<Hub>,
    id: u64,
    idx: usize,
    wire: crate::tls::Wire,
    head: RequestHead,
    peer: Peer,
    /// Who the request is from (a PROXY header's client, else `peer`).
    client: Peer,
    date: String,
    up: Upgrade,
    phase: Phase,
    connect_delivered: bool,
    /// Pings and pongs from the client are delivered to the app as
    /// `ferrocorn.websocket.ping` / `.pong` (asked for in `websocket.accept`
    /// with `"ferrocorn.control_frames": True`; the Tornado adapter does).
    control: bool,
    dec: Option<Decoder>,
    enc: Option<Encoder>,
    /// Bytes that arrived with the upgrade request.
    early: Vec<u8>,
    queue: VecDeque<Event>,
    queued_bytes: usize,
    /// What `websocket.disconnect` says, once the session is over.
    disconnect: Option<(u16, String)>,
    close_sent: Option<u16>,
    out: Vec<u8>,
    opos: usize,
    gone: bool,
    recv_waiter: Option<Py<PyAny>>,
    send_waiter: Option<Py<PyAny>>,
    finished: bool,
    returned: bool,
    task: Option<Py<PyAny>>,
    status: u16,
    log_headers: Vec<(String, String)>,
    body_bytes: u64,
    started: Instant,
    /// How long the request waited before the app was called.
    queued: std::time::Duration,
    last_progress: Instant,
    disconnected_at: Option<Instant>,
    /// The app ended on the disconnect (ClientDisconnected, or cancelled).
    quiet_end: bool,
    waiting: Waiting,
}

/// Start a WebSocket session from the engine.
pub fn start(py: Python<'_>, hub: &Rc<Hub>, job: Job) {
    let Job {
        idx,
        head,
        peer,
        listener,
        reply,
        early,
        edge,
        received,
        ..
    } = job;
    let client = edge.client(&peer);
    let up = match ws::parse_upgrade(&head, true) {
        Ok(up) => up,
        Err(e) => {
            debug!(
                "Invalid WebSocket upgrade from ip={}: {e}",
                remote_ip(&client)
            );
            let status = e.status();
            let extra = if status == 426 {
                "Sec-WebSocket-Version: 13\r\n"
            } else {
                ""
            };
            let body = format!("{e}\n");
            let out = plain_head(status, &reply.date, extra, body.len()) + &body;
            let mut out = reply
                .pending
                .into_iter()
                .chain(out.into_bytes())
                .collect::<Vec<u8>>();
            let n = write_some(&reply.wire, &out).unwrap_or(0);
            out.drain(..n);
            hand_back(
                &hub.inbox,
                Done {
                    idx,
                    outcome: Ok(Outcome {
                        out,
                        keep_alive: false,
                        broken: false,
                        taken: false,
                        leftover: None,
                    }),
                },
            );
            hub.wake.soon(py);
            return;
        }
    };
    let now = Instant::now();
    let id = hub.new_id();
    let is_head = head.method == "HEAD";
    let cycle = WsCycle {
        queued: now.saturating_duration_since(received),
        hub: hub.clone(),
        id,
        idx,
        wire: reply.wire.clone(),
        peer,
        client,
        date: reply.date,
        up,
        phase: Phase::Connecting,
        connect_delivered: false,
        control: false,
        dec: None,
        enc: None,
        early,
        queue: VecDeque::new(),
        queued_bytes: 0,
        disconnect: None,
        close_sent: None,
        out: reply.pending,
        opos: 0,
        gone: false,
        recv_waiter: None,
        send_waiter: None,
        finished: false,
        returned: false,
        task: None,
        status: 0,
        log_headers: Vec::new(),
        body_bytes: 0,
        started: now,
        last_progress: now,
        disconnected_at: None,
        quiet_end: false,
        waiting: Waiting::claim(&reply.wire, is_head),
        head,
    };
    let subprotocols = cycle.up.subprotocols.clone();
    let scope = hub.scope.build(
        py,
        &cycle.head,
        (&cycle.peer, &cycle.client, &edge),
        listener,
        &hub.forwarding,
        true,
        &subprotocols,
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
        by_conn[idx] = Some(CycleRef::Ws(cy.clone_ref(py)));
        hub.running.borrow_mut().push((id, CycleRef::Ws(cy)));
        Ok(())
    });
    if let Err(e) = result {
        error!(
            "Cannot start the ASGI app:\n{}",
            crate::wsgi::format_exception(py, &e).trim_end()
        );
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

fn msg<'py>(py: Python<'py>, kind: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(pyo3::intern!(py, "type"), kind)?;
    Ok(d)
}

#[pymethods]
impl WsCycle {
    /// ASGI `receive()`.
    fn receive(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let mut me = slf.borrow_mut();
        if let Some(m) = me.try_receive(py)? {
            return ready(py, m);
        }
        let hub = me.hub.clone();
        wait_in(py, &hub, &mut me.recv_waiter)
    }

    /// ASGI `send(message)`.
    fn send(slf: &Bound<'_, Self>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let mut me = slf.borrow_mut();
        let (message, kind) = message_kind(message)?;
        me.handle_send(py, &kind, message)?;
        me.flush();
        me.settle(py);
        if me.pending() > HIGH_WATER && !me.gone && !me.finished {
            let hub = me.hub.clone();
            return wait_in(py, &hub, &mut me.send_waiter);
        }
        ready(py, py.None())
    }

    fn app_returned(&mut self, py: Python<'_>) {
        self.ended(py, None);
    }

    fn app_failed(&mut self, py: Python<'_>, _exc: &Bound<'_, PyAny>, tb: &str, quiet: bool) {
        self.quiet_end = quiet;
        self.ended(py, Some(tb));
    }
}

impl WsCycle {
    fn pending(&self) -> usize {
        self.out.len() - self.opos
    }

    fn disconnect_msg(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let d = msg(py, pyo3::intern!(py, "websocket.disconnect"))?;
        let (code, reason) = self.disconnect.clone().unwrap_or((1006, String::new()));
        d.set_item(pyo3::intern!(py, "code"), code)?;
        d.set_item(pyo3::intern!(py, "reason"), reason)?;
        Ok(d.into_any().unbind())
    }

    fn try_receive(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if !self.connect_delivered {
            self.connect_delivered = true;
            return Ok(Some(
                msg(py, pyo3::intern!(py, "websocket.connect"))?
                    .into_any()
                    .unbind(),
            ));
        }
        if self.queue.is_empty() && matches!(self.phase, Phase::Open | Phase::Closing(_)) {
            self.read_frames();
        }
        if let Some(ev) = self.queue.pop_front() {
            let d = msg(py, pyo3::intern!(py, "websocket.receive"))?;
            let ev_kind = match &ev {
                Event::Ping(_) => Some(true),
                Event::Pong(_) => Some(false),
                _ => None,
            };
            match ev {
                Event::Text(t) => {
                    self.queued_bytes -= t.len();
                    d.set_item(pyo3::intern!(py, "text"), t)?;
                }
                Event::Binary(b) => {
                    self.queued_bytes -= b.len();
                    d.set_item(pyo3::intern!(py, "bytes"), PyBytes::new(py, &b))?;
                }
                Event::Ping(p) | Event::Pong(p) => {
                    self.queued_bytes -= p.len();
                    let kind = if matches!(ev_kind, Some(true)) {
                        pyo3::intern!(py, "ferrocorn.websocket.ping")
                    } else {
                        pyo3::intern!(py, "ferrocorn.websocket.pong")
                    };
                    d.set_item(pyo3::intern!(py, "type"), kind)?;
                    d.set_item(pyo3::intern!(py, "bytes"), PyBytes::new(py, &p))?;
                }
                Event::Close { .. } => {}
            }
            return Ok(Some(d.into_any().unbind()));
        }
        if self.disconnect.is_some() {
            return Ok(Some(self.disconnect_msg(py)?));
        }
        Ok(None)
    }

    /// Read and decode what has arrived, answering pings and the close
    /// handshake, while the app's queue has room.
    fn read_frames(&mut self) {
        let mut buf = std::mem::take(&mut self.early);
        loop {
            if self.queued_bytes >= QUEUE_CAP || self.disconnect.is_some() {
                return;
            }
            if buf.is_empty() {
                match read_into(&self.wire, &mut buf) {
                    Ok(0) => {
                        self.failed(1006, "", false);
                        return;
                    }
                    Ok(_) => self.last_progress = Instant::now(),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                    Err(_) => {
                        self.gone = true;
                        self.failed(1006, "", false);
                        return;
                    }
                }
            }
            let (Some(dec), Some(enc)) = (self.dec.as_mut(), self.enc.as_mut()) else {
                return;
            };
            dec.feed(&buf);
            buf.clear();
            loop {
                match dec.next_event() {
                    Ok(None) => break,
                    Ok(Some(Event::Ping(p))) => {
                        enc.pong(&p, &mut self.out);
                        if self.control {
                            self.queued_bytes += p.len();
                            self.queue.push_back(Event::Ping(p));
                        }
                    }
                    Ok(Some(Event::Pong(p))) => {
                        if self.control {
                            self.queued_bytes += p.len();
                            self.queue.push_back(Event::Pong(p));
                        }
                    }
                    Ok(Some(Event::Close { code, reason })) => {
                        match self.close_sent {
                            // The answer to our close.
                            Some(ours) => {
                                self.disconnect = Some((ours, String::new()));
                            }
                            None => {
                                let echo = code.unwrap_or(1000);
                                enc.close(echo, "", &mut self.out);
                                self.close_sent = Some(echo);
                                self.disconnect = Some((code.unwrap_or(1005), reason));
                            }
                        }
                        self.phase = Phase::Closed;
                        self.mark_disconnected();
                        return;
                    }
                    Ok(Some(ev @ (Event::Text(_) | Event::Binary(_)))) => {
                        self.queued_bytes += match &ev {
                            Event::Text(t) => t.len(),
                            Event::Binary(b) => b.len(),
                            _ => 0,
                        };
                        self.queue.push_back(ev);
                    }
                    Err(e) => {
                        debug!(
                            "WebSocket protocol error from ip={}: {e}",
                            remote_ip(&self.client)
                        );
                        self.failed(e.close_code(), "", true);
                        return;
                    }
                }
            }
        }
    }

    /// The session is over with `code` (sent to the client when `send`).
    fn failed(&mut self, code: u16, reason: &str, send: bool) {
        if send && self.close_sent.is_none() {
            if let Some(enc) = self.enc.as_mut() {
                enc.close(code, reason, &mut self.out);
                self.close_sent = Some(code);
            }
        }
        if self.disconnect.is_none() {
            self.disconnect = Some((code, reason.to_string()));
        }
        self.phase = Phase::Closed;
        self.mark_disconnected();
    }

    fn mark_disconnected(&mut self) {
        if self.disconnected_at.is_none() {
            self.disconnected_at = Some(Instant::now());
        }
    }

    /// A plain HTTP answer instead of the handshake.
    fn http_error(&mut self, status: u16, body: &str) {
        let head = plain_head(status, &self.date, "", body.len()) + body;
        self.out.extend_from_slice(head.as_bytes());
        self.body_bytes = body.len() as u64;
        self.status = status;
        self.waiting.release();
        self.phase = Phase::Closed;
        if self.disconnect.is_none() {
            self.disconnect = Some((1000, String::new()));
        }
        self.mark_disconnected();
    }

    fn flush(&mut self) {
        if self.gone {
            return;
        }
        while self.opos < self.out.len() {
            match write_some(&self.wire, &self.out[self.opos..]) {
                Ok(n) => {
                    self.opos += n;
                    self.last_progress = Instant::now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.gone = true;
                    self.out.clear();
                    self.opos = 0;
                    self.failed(1006, "", false);
                    return;
                }
            }
        }
        self.out.clear();
        self.opos = 0;
    }

    pub fn on_io(&mut self, py: Python<'_>) {
        if self.finished {
            return;
        }
        self.flush();
        if matches!(self.phase, Phase::Open | Phase::Closing(_)) {
            self.read_frames();
        } else if matches!(self.phase, Phase::Connecting | Phase::Denying)
            && peer_closed(&self.wire)
        {
            self.failed(1006, "", false);
        }
        self.flush();
        if self.recv_waiter.is_some() {
            match self.try_receive(py) {
                Ok(Some(m)) => resolve(py, &mut self.recv_waiter, m),
                Ok(None) => {}
                Err(e) => error!("ASGI websocket receive: {e}"),
            }
        }
        self.settle(py);
    }

    /// Wake a waiting `send`; end the session once it is closed and its
    /// output is out.
    fn settle(&mut self, py: Python<'_>) {
        if self.send_waiter.is_some() && (self.gone || self.pending() <= HIGH_WATER) {
            resolve(py, &mut self.send_waiter, py.None());
        }
        if self.phase == Phase::Closed {
            if self.recv_waiter.is_some() {
                if let Ok(Some(m)) = self.try_receive(py) {
                    resolve(py, &mut self.recv_waiter, m);
                }
            }
            if self.pending() == 0 || self.gone {
                self.finish(py);
            }
        }
    }

    pub fn task(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.task.as_ref().map(|t| t.clone_ref(py))
    }

    pub fn on_tick(&mut self, py: Python<'_>) {
        let now = Instant::now();
        if !self.finished {
            if let Phase::Closing(since) = self.phase {
                if now.duration_since(since) > CLOSE_WAIT {
                    let code = self.close_sent.unwrap_or(1006);
                    self.disconnect.get_or_insert((code, String::new()));
                    self.phase = Phase::Closed;
                    self.mark_disconnected();
                }
            }
            if self.pending() > 0 && now.duration_since(self.last_progress) > self.hub.opts.stall {
                debug!("WebSocket client stopped reading for --body-timeout: closing");
                self.gone = true;
                self.out.clear();
                self.opos = 0;
                self.failed(1006, "", false);
            }
            self.settle(py);
        }
        if let (Some(at), false) = (self.disconnected_at, self.returned) {
            if now.duration_since(at) > self.hub.opts.disconnect_grace {
                if let Some(t) = self.task.take() {
                    debug!("Cancelling an ASGI websocket task after its client disconnected");
                    let _ = t.bind(py).call_method0("cancel");
                }
            }
        }
    }

    /// The graceful stop: close with 1001 (going away).
    pub fn going_away(&mut self, py: Python<'_>) {
        if self.phase == Phase::Open {
            if let Some(enc) = self.enc.as_mut() {
                enc.close(1001, "", &mut self.out);
            }
            self.close_sent = Some(1001);
            self.phase = Phase::Closing(Instant::now());
            self.flush();
            self.settle(py);
        }
    }

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
        match self.phase {
            Phase::Connecting => {
                if tb.is_some() {
                    self.http_error(500, "Internal Server Error\n");
                } else {
                    self.http_error(403, "");
                }
            }
            Phase::Open => {
                // Returned without closing: close normally (1011 on error).
                let code = if tb.is_some() { 1011 } else { 1000 };
                if let Some(enc) = self.enc.as_mut() {
                    enc.close(code, "", &mut self.out);
                }
                self.close_sent = Some(code);
                self.phase = Phase::Closing(Instant::now());
            }
            Phase::Denying => {
                warning!("ASGI callable returned without completing its websocket.http.response.");
                self.phase = Phase::Closed;
            }
            Phase::Closing(_) | Phase::Closed => {}
        }
        self.flush();
        self.settle(py);
    }

    fn finish(&mut self, py: Python<'_>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.waiting.release();
        let out = self.out[self.opos..].to_vec();
        self.out = Vec::new();
        self.opos = 0;
        let outcome = Outcome {
            out,
            keep_alive: false,
            broken: self.gone,
            taken: false,
            leftover: None,
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
        if self.disconnect.is_none() {
            self.disconnect = Some((1006, String::new()));
        }
        if let Ok(m) = self.disconnect_msg(py) {
            resolve(py, &mut self.recv_waiter, m);
        }
        resolve(py, &mut self.send_waiter, py.None());
    }
}
