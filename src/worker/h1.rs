//! HTTP/1.1 on one connection, as the worker drives it: read request
//! heads and bodies into the connection's buffers (bodies up to
//! BUFFER_BODY first, larger ones streamed to the app), answer
//! `Expect: 100-continue` and malformed requests, build the [`Job`] for the
//! executor (keep-alive, upgrade and HEAD decided here), and take the
//! [`Done`] back: queue what is left to write, keep the connection, linger
//! on it, or let it go. TLS will sit below this (in `conn`), HTTP/2 beside
//! it as another driver.

use std::time::{Duration, Instant};

use super::conn::{Conn, Next, State, KEEP_BUFFER, READ_CAP};
use super::engine::Worker;
use super::executor::{Done, Edge, Job, Reply};
use crate::http::{Body, BodyKind, BodyRest, ChunkedDecoder, HttpError, RequestHead};
use crate::{debug, error};

/// Bodies up to this size are read completely before the app runs.
pub(super) const BUFFER_BODY: usize = 256 * 1024;
/// Don't start the next pipelined request while this much output is queued.
const WRITE_HIGH: usize = 1 << 20;
/// After a response with `Connection: close`, how long unread input is
/// drained so the client sees the response rather than a reset.
const LINGER: Duration = Duration::from_secs(2);

impl Worker {
    pub(super) fn drive(
        &mut self,
        idx: usize,
        conn: &mut Conn,
        readable: bool,
        writable: bool,
    ) -> Next {
        if matches!(conn.state, State::Busy) {
            // The request's app interface owns the socket's I/O: an
            // asyncio executor takes the event; otherwise the connection
            // is driven again once the request comes back.
            if !self.exec.busy_event(idx) {
                conn.missed = true;
            }
            return Next::Keep;
        }
        if conn.dead {
            return Next::Close;
        }
        if (writable || conn.pending_write() > 0) && !conn.flush(self.stall_timeout) {
            return Next::Close;
        }
        let before = conn.rbuf.len();
        if readable && !conn.fill(&mut self.scratch) {
            return Next::Close;
        }
        if conn.rbuf.len() > before {
            match conn.state {
                // A new request head on a reused connection starts: it gets
                // --header-timeout in total, however slowly it trickles in.
                // (A new connection's first head is timed from accept.)
                State::Head if before == 0 && conn.reused => {
                    let now = Instant::now();
                    conn.deadline = now + self.head_timeout;
                    conn.since = now;
                }
                State::Body { .. } => conn.deadline = Instant::now() + self.stall_timeout,
                _ => {}
            }
        }
        if conn.rbuf.len() >= READ_CAP && !conn.eof {
            // More may be waiting in the kernel; come back without an event.
            self.again.push(idx);
        }
        loop {
            if conn.dead {
                return Next::Close;
            }
            if conn.close_after_write {
                if conn.pending_write() > 0 {
                    return Next::Keep;
                }
                if !matches!(conn.state, State::Lingering) {
                    conn.shutdown_write();
                    conn.state = State::Lingering;
                    conn.deadline = Instant::now() + LINGER;
                }
                conn.rbuf.clear();
                return if conn.eof { Next::Close } else { Next::Keep };
            }
            match std::mem::replace(&mut conn.state, State::Head) {
                State::Lingering => {
                    conn.state = State::Lingering;
                    return Next::Keep;
                }
                State::Busy => {
                    conn.state = State::Busy;
                    return Next::Keep;
                }
                State::Proxy => {
                    if let Some(next) = self.proxy_preface(conn) {
                        return next;
                    }
                }
                State::Uwsgi => {
                    if let Some(next) = self.uwsgi_request(idx, conn) {
                        return next;
                    }
                }
                State::Preface => {
                    if let Some(next) = self.h2c_preface(conn) {
                        return next;
                    }
                }
                State::Head => {
                    if conn.pending_write() >= WRITE_HIGH {
                        return Next::Keep;
                    }
                    if conn.rbuf.is_empty() {
                        if conn.eof {
                            return Next::Close;
                        }
                        return Next::Keep;
                    }
                    match conn.parser.parse(&conn.rbuf, &self.limits) {
                        Ok(None) => {
                            if conn.eof {
                                return Next::Close;
                            }
                            return Next::Keep;
                        }
                        Err(e) => {
                            self.reject(conn, &e);
                        }
                        Ok(Some((head, used))) => {
                            conn.rbuf.drain(..used);
                            conn.deadline = Instant::now() + self.stall_timeout;
                            if let Some(next) = self.h2c_upgrade(conn, &head) {
                                return next;
                            }
                            let expects = head.expect_continue
                                && head.minor_version >= 1
                                && head.body != BodyKind::None;
                            if expects && self.exec.defers_continue() {
                                // Handed over now; `100 Continue` goes out
                                // when the app asks for the body.
                                let rest = match head.body {
                                    BodyKind::Chunked => BodyRest::Chunked(ChunkedDecoder::new()),
                                    BodyKind::Length(n) => BodyRest::Length(n),
                                    BodyKind::None => BodyRest::Length(0),
                                };
                                let body = Body::Streaming {
                                    decoded: Vec::new(),
                                    raw: std::mem::take(&mut conn.rbuf),
                                    rest,
                                    wire: conn.wire(),
                                    timeout: self.stall_timeout,
                                };
                                conn.continue_pending = true;
                                self.dispatch(idx, conn, head, body);
                                continue;
                            }
                            if expects {
                                conn.wbuf
                                    .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                                if !conn.flush(self.stall_timeout) {
                                    return Next::Close;
                                }
                            }
                            let rest = match head.body {
                                BodyKind::None => {
                                    self.dispatch(idx, conn, head, Body::Buffered(Vec::new()));
                                    continue;
                                }
                                BodyKind::Length(n) => BodyRest::Length(n),
                                BodyKind::Chunked => BodyRest::Chunked(ChunkedDecoder::new()),
                            };
                            conn.state = State::Body {
                                head: Box::new(head),
                                body: Vec::new(),
                                rest,
                            };
                        }
                    }
                }
                State::Body {
                    head,
                    mut body,
                    mut rest,
                } => {
                    let mut failed = None;
                    match &mut rest {
                        BodyRest::Length(n) => {
                            let take = (*n).min(conn.rbuf.len() as u64) as usize;
                            body.extend_from_slice(&conn.rbuf[..take]);
                            conn.rbuf.drain(..take);
                            *n -= take as u64;
                        }
                        BodyRest::Chunked(d) => match d.decode(&conn.rbuf, &mut body) {
                            Ok((used, _)) => {
                                conn.rbuf.drain(..used);
                            }
                            Err(e) => failed = Some(e),
                        },
                    }
                    if let Some(e) = failed {
                        self.reject(conn, &e);
                        continue;
                    }
                    if rest.is_done() {
                        self.dispatch(idx, conn, *head, Body::Buffered(body));
                    } else if body.len() >= BUFFER_BODY || conn.rbuf.len() >= READ_CAP {
                        let raw = std::mem::take(&mut conn.rbuf);
                        let body = Body::Streaming {
                            decoded: body,
                            raw,
                            rest,
                            wire: conn.wire(),
                            timeout: self.stall_timeout,
                        };
                        self.dispatch(idx, conn, *head, body);
                    } else {
                        conn.state = State::Body { head, body, rest };
                        if conn.eof {
                            return Next::Close;
                        }
                        return Next::Keep;
                    }
                }
            }
        }
    }

    /// Answer a request the parser refused, and close.
    pub(super) fn reject(&mut self, conn: &mut Conn, e: &HttpError) {
        debug!("Invalid request: {e}");
        let body = format!("{}\n", e.reason);
        let resp = format!(
            "HTTP/1.1 {} {}\r\nServer: ferrocorn\r\nDate: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            e.status,
            e.reason,
            self.date.get(),
            body.len(),
            body
        );
        conn.wbuf.extend_from_slice(resp.as_bytes());
        conn.close_after_write = true;
        let _ = conn.flush(self.stall_timeout);
    }

    /// Hand one request to the executor: it runs here (sync), or on a
    /// thread (gthread) while the connection is parked until it comes back.
    pub(super) fn dispatch(
        &mut self,
        idx: usize,
        conn: &mut Conn,
        mut head: RequestHead,
        body: Body,
    ) {
        self.requests += 1;
        if self.fresh.is_some_and(|(f, _)| f == idx) {
            self.release_fresh();
        }
        // After an upgrade request (WebSocket, h2c) or a CONNECT, what the
        // client sends next is not another HTTP/1.1 request: whatever the
        // app answers (a 101 it then takes over, or a refusal), the
        // connection ends with the response.
        let upgrade = head.method == "CONNECT" || head.header("upgrade").is_some();
        // An internal connection of the HTTP/2 gateway is kept between
        // streams whatever --keep-alive says (that applies to clients),
        // and its requests are HTTP/2 as the app sees them.
        let keep_alive = head.keep_alive
            && !upgrade
            && !self.stopping
            && (!self.keepalive.is_zero() || conn.h2.is_some());
        if conn.h2.is_some() {
            head.protocol = Some("HTTP/2.0".to_string());
        }
        let is_head = head.method == "HEAD";
        // The app reads a streamed body from the socket itself and may
        // leave input there that no new event will announce.
        conn.missed = matches!(body, Body::Streaming { .. });
        // Output still queued from a pipelined predecessor goes first.
        let pending = if conn.wpos == 0 {
            std::mem::take(&mut conn.wbuf)
        } else {
            let v = conn.wbuf[conn.wpos..].to_vec();
            conn.wbuf.clear();
            v
        };
        conn.wpos = 0;
        let reply = Reply {
            wire: conn.wire(),
            minor: head.minor_version,
            is_head,
            keep_alive,
            date: self.date.get().to_string(),
            pending,
            timeout: self.stall_timeout,
        };
        let job = Job {
            idx,
            peer: conn.peer.clone(),
            listener: conn.listener,
            head,
            body,
            reply,
            early: std::mem::take(&mut conn.rbuf),
            continue_pending: std::mem::take(&mut conn.continue_pending),
            edge: Edge {
                proxy: conn.proxied.clone(),
                uwsgi: conn.uwsgi.take(),
                http2: conn.h2,
                tls: conn.tls.is_some(),
            },
            received: conn.since,
        };
        crate::metrics::request_started();
        match self.exec.submit(job) {
            Some(done) => {
                self.after_request();
                self.finish(conn, done);
                self.accept_after_request();
            }
            // The connection (and so its descriptor, which the thread
            // uses) stays open while Busy: nothing closes a Busy one.
            None => conn.state = State::Busy,
        }
    }

    /// Queue what is left of a finished request's response and decide
    /// what happens to the connection.
    pub(super) fn finish(&mut self, conn: &mut Conn, done: Done) {
        conn.reused = true;
        // One clock read serves the whole bookkeeping (flush() does not
        // block).
        let now = Instant::now();
        conn.since = now;
        match done.outcome {
            Ok(o) if o.taken => {
                // The app owns the connection now (through its own
                // duplicate of the descriptor): let go without a byte.
                conn.dead = true;
                return;
            }
            Ok(o) => {
                conn.wbuf = o.out;
                if o.broken {
                    conn.wbuf.clear();
                    conn.eof = true;
                    conn.close_after_write = true;
                    return;
                }
                match o.leftover {
                    Some(rest) => conn.rbuf = rest,
                    None => conn.close_after_write = true,
                }
                if !o.keep_alive {
                    conn.close_after_write = true;
                }
            }
            Err(e) => {
                error!("Cannot run the app: {e}");
                conn.close_after_write = true;
            }
        }
        if conn.rbuf.is_empty() && conn.rbuf.capacity() > KEEP_BUFFER {
            conn.rbuf = Vec::new();
        }
        // While output is queued, flush() moves the deadline on each
        // progress; once all is written an open connection idles for
        // --keep-alive.
        conn.deadline = now + self.stall_timeout;
        let _ = conn.flush(self.stall_timeout);
        if conn.pending_write() == 0 && !conn.close_after_write {
            conn.deadline = now + self.keepalive;
        }
    }
}
