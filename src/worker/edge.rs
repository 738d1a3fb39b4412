//! The protocols at a connection's edge, before (or instead of) HTTP/1.1:
//! a PROXY protocol header at the start of a connection
//! (`--proxy-protocol`), and uwsgi requests (`--protocol uwsgi`). The
//! parsers are socket-free (`proxy/`, `uwsgi/`); this drives them on a
//! connection's buffered input, checks who may speak them
//! (`--proxy-allow-from`, `--uwsgi-allow-from`: 403 and close otherwise),
//! and hands on what they said: the PROXY header stays with the
//! connection and goes with every request's [`Job`](super::executor::Job)
//! as [`Edge`](super::executor::Edge); a uwsgi request becomes a
//! `RequestHead` (with its vars beside it) that continues through the same
//! body reading and dispatch as an HTTP one.
//!
//! With both settings at their defaults, a new connection starts in
//! `State::Head` and nothing here runs.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::conn::{Conn, Next, State};
use super::engine::Worker;
use crate::config::{AllowList, Settings};
use crate::http::{Body, BodyKind, BodyRest, HttpError};
use crate::proxy::{self, Mode, Parsed};
use crate::wsgi::Peer;
use crate::{debug, warning};

/// The edge protocols of a worker, from the settings.
#[derive(Debug, Clone, Default)]
pub(super) struct EdgeConfig {
    pub(super) proxy: Mode,
    pub(super) proxy_allow: AllowList,
    pub(super) uwsgi: bool,
    pub(super) uwsgi_allow: AllowList,
    /// h2c with prior knowledge, or ALPN h2 under TLS (`h2c.rs`).
    pub(super) h2c: bool,
}

impl EdgeConfig {
    pub(super) fn from_settings(s: &Settings) -> EdgeConfig {
        EdgeConfig {
            proxy: s.proxy_protocol,
            proxy_allow: AllowList::new(&s.proxy_allow_ips),
            uwsgi: s.protocol == "uwsgi",
            uwsgi_allow: AllowList::new(&s.uwsgi_allow_ips),
            h2c: super::h2c::prior_knowledge(s) || super::h2c::alpn_h2(s),
        }
    }

    /// A connection may start with a PROXY header (which comes before
    /// any TLS).
    pub(super) fn proxy_first(&self) -> bool {
        self.proxy != Mode::Off
    }

    /// Where a new connection starts.
    pub(super) fn first_state(&self) -> State {
        if self.proxy != Mode::Off {
            State::Proxy
        } else {
            self.request_state()
        }
    }

    /// Where a connection waits for its (first) request.
    fn request_state(&self) -> State {
        if self.uwsgi {
            State::Uwsgi
        } else if self.h2c {
            State::Preface
        } else {
            State::Head
        }
    }
}

fn peer_ip(peer: &Peer) -> Option<IpAddr> {
    match peer {
        Peer::Tcp(a) => Some(a.ip()),
        Peer::Unix => None,
    }
}

impl Worker {
    /// `State::Proxy`: look for a PROXY header at the start of the
    /// connection. Returns what to do with the connection when it must
    /// wait; None when the state moved on (the driver carries on).
    pub(super) fn proxy_preface(&mut self, conn: &mut Conn) -> Option<Next> {
        let parsed = proxy::parse(&conn.rbuf, self.edge.proxy);
        let started = !matches!(
            parsed,
            Ok(Parsed::Absent) | Ok(Parsed::Incomplete { started: false })
        );
        if started && !self.edge.proxy_allow.allows(peer_ip(&conn.peer)) {
            // As gunicorn: a header from a peer that may not send one is
            // refused, before the rest of it is read.
            let ip = peer_ip(&conn.peer)
                .map(|i| i.to_string())
                .unwrap_or_default();
            warning!("Forbidden PROXY request from {ip} (not in --proxy-allow-from)");
            self.reject(
                conn,
                &HttpError::new(403, format!("Proxy request from {ip} not allowed")),
            );
            return None;
        }
        match parsed {
            Ok(Parsed::Incomplete { .. }) => {
                conn.state = State::Proxy;
                // A truncated header: the peer gave up. A slow one is cut
                // off by the header timeout, which runs from accept.
                Some(if conn.eof { Next::Close } else { Next::Keep })
            }
            Ok(Parsed::Absent) => {
                conn.state = self.edge.request_state();
                self.after_preface(conn)
            }
            Ok(Parsed::Done { header, len }) => {
                debug!(
                    "PROXY v{} {}: client {:?}",
                    header.version,
                    header.kind.name(),
                    header.source
                );
                conn.rbuf.drain(..len);
                conn.proxied = Some(Arc::new(header));
                conn.state = self.edge.request_state();
                self.after_preface(conn)
            }
            Err(e) => {
                self.reject(conn, &HttpError::bad_request(e.to_string()));
                None
            }
        }
    }

    /// After the PROXY preface: under TLS, the rest is the handshake and
    /// what follows, so the session starts here, with the bytes already
    /// read. Returns as `proxy_preface` does.
    fn after_preface(&mut self, conn: &mut Conn) -> Option<Next> {
        let tls = self.tls.clone()?;
        if let Err(e) = conn.start_tls(&tls) {
            debug!("TLS after a PROXY header failed: {e}");
            return Some(Next::Close);
        }
        // Decrypt what is there already (the next read would otherwise wait
        // for an event that came before).
        if !conn.fill(&mut self.scratch) {
            return Some(Next::Close);
        }
        None
    }

    /// `State::Uwsgi`: wait for a uwsgi request packet; once it is here,
    /// its head goes the way of an HTTP one (body, then dispatch). Returns
    /// what to do with the connection when it must wait; None when the
    /// state moved on.
    pub(super) fn uwsgi_request(&mut self, idx: usize, conn: &mut Conn) -> Option<Next> {
        if !self.edge.uwsgi_allow.allows(peer_ip(&conn.peer)) {
            let ip = peer_ip(&conn.peer)
                .map(|i| i.to_string())
                .unwrap_or_default();
            warning!("Forbidden uWSGI request from {ip} (not in --uwsgi-allow-from)");
            self.reject(
                conn,
                &HttpError::new(403, format!("uWSGI request from {ip} not allowed")),
            );
            return None;
        }
        let wait = |conn: &mut Conn| {
            conn.state = State::Uwsgi;
            Some(if conn.eof { Next::Close } else { Next::Keep })
        };
        if conn.rbuf.is_empty() {
            return wait(conn);
        }
        let (vars, len) = match crate::uwsgi::parse(&conn.rbuf) {
            Ok(Some(p)) => p,
            Ok(None) => return wait(conn),
            Err(e) => {
                self.reject(conn, &HttpError::new(e.status(), e.to_string()));
                return None;
            }
        };
        let head = match vars.to_head() {
            Ok(h) => h,
            Err(e) => {
                self.reject(conn, &HttpError::new(e.status(), e.to_string()));
                return None;
            }
        };
        conn.rbuf.drain(..len);
        conn.deadline = Instant::now() + self.stall_timeout;
        conn.uwsgi = Some(Box::new(vars));
        match head.body {
            BodyKind::Length(n) => {
                conn.state = State::Body {
                    head: Box::new(head),
                    body: Vec::new(),
                    rest: BodyRest::Length(n),
                }
            }
            _ => self.dispatch(idx, conn, head, Body::Buffered(Vec::new())),
        }
        None
    }
}
