//! HTTP/2 at the engine: which connections speak it, and the hand-over
//! to the worker's gateway (`gateway/`). With `--http2-cleartext
//! prior-knowledge` (or `both`), a new connection from a peer in
//! `--forwarded-allow-ips` (a unix-socket peer always) waits in
//! `State::Preface` until its first bytes show whether they are the
//! HTTP/2 connection preface; if they are, the socket and those bytes go
//! to the gateway (started then, so a worker that never sees HTTP/2
//! stays single-threaded) and the engine lets go of the connection. As
//! in gunicorn 27, anything else from a trusted peer is refused with 400
//! under `prior-knowledge` (such a peer is expected to speak HTTP/2),
//! and served as HTTP/1.1 under `both`; other peers are served HTTP/1.1
//! as if h2c were off. With `upgrade` (or `both`), an HTTP/1.1 request
//! from such a peer that asks for `Upgrade: h2c` hands the connection
//! over in the same way once its head is parsed (`h2c_upgrade`; the
//! switch itself is `gateway/upgrade.rs`).
//!
//! Under TLS (`--certfile`) with h2 in `--http-protocols`, ALPN offers h2,
//! and a connection that agreed on it goes to the gateway in the same way
//! once its handshake is done, with its rustls session.
//!
//! The gateway's internal connections come back here (`take_internal`)
//! and are served like accepted ones, kept open between streams.

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Waker;

use super::conn::{Conn, Next, State, Stream};
use super::engine::Worker;
use crate::config::{AllowList, Settings};
use crate::gateway::upgrade::Upgrade;
use crate::gateway::{self, Gateway, Incoming, Transport};
use crate::http::{HttpError, RequestHead};
use crate::wsgi::Peer;
use crate::{debug, warning};

/// RFC 9113 3.4.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A preface that started must be complete within this (as gunicorn).
const PREFACE_BUDGET: Duration = Duration::from_secs(1);

/// Whether prior-knowledge h2c is on (the settings were validated).
pub(super) fn prior_knowledge(s: &Settings) -> bool {
    matches!(s.http2_cleartext.as_str(), "prior-knowledge" | "both")
        && s.http_protocols.split(',').any(|p| p == "h2")
        && s.protocol == "http"
        && s.certfile.is_none()
}

/// Whether HTTP/1.1 `Upgrade: h2c` is honoured (the settings were
/// validated).
pub(super) fn upgrade(s: &Settings) -> bool {
    matches!(s.http2_cleartext.as_str(), "upgrade" | "both")
        && s.http_protocols.split(',').any(|p| p == "h2")
        && s.protocol == "http"
        && s.certfile.is_none()
}

/// Whether HTTP/2 is offered by ALPN (TLS on, h2 in --http-protocols).
pub(super) fn alpn_h2(s: &Settings) -> bool {
    s.certfile.is_some() && s.http_protocols.split(',').any(|p| p == "h2") && s.protocol == "http"
}

/// The engine's HTTP/2 state.
pub(super) struct H2 {
    /// None: HTTP/2 is off.
    cfg: Option<gateway::Config>,
    /// Prior knowledge alone: a trusted peer must speak HTTP/2.
    only: bool,
    /// `Upgrade: h2c` is honoured.
    upgrade: bool,
    allow: AllowList,
    waker: Arc<Waker>,
    gateway: Option<Gateway>,
    /// Internal connections in the engine's table.
    pub(super) internal: usize,
}

impl H2 {
    pub(super) fn from_settings(s: &Settings, waker: Arc<Waker>) -> H2 {
        let on = prior_knowledge(s) || alpn_h2(s) || upgrade(s);
        H2 {
            cfg: on.then(|| gateway::Config::from_settings(s)),
            only: s.http2_cleartext == "prior-knowledge",
            upgrade: upgrade(s),
            allow: AllowList::new(&s.forwarded_allow_ips),
            waker,
            gateway: None,
            internal: 0,
        }
    }

    /// The gateway, started on first use.
    fn gateway(&mut self) -> std::io::Result<&Gateway> {
        if self.gateway.is_none() {
            let cfg = self
                .cfg
                .clone()
                .ok_or_else(|| std::io::Error::other("HTTP/2 is off"))?;
            let waker = self.waker.clone();
            let wake: gateway::Wake = Arc::new(move || {
                let _ = waker.wake();
            });
            self.gateway = Some(Gateway::start(cfg, wake)?);
            debug!("HTTP/2 gateway started");
        }
        self.gateway
            .as_ref()
            .ok_or_else(|| std::io::Error::other("no gateway"))
    }

    pub(super) fn drain(&self) {
        if let Some(g) = &self.gateway {
            g.drain();
        }
    }

    /// HTTP/2 connections open (they count toward --worker-connections).
    pub(super) fn open(&self) -> usize {
        self.gateway.as_ref().map_or(0, Gateway::open)
    }

    /// No HTTP/2 connection is open.
    pub(super) fn idle(&self) -> bool {
        self.gateway.as_ref().is_none_or(Gateway::idle)
    }
}

fn peer_ip(peer: &Peer) -> Option<IpAddr> {
    match peer {
        Peer::Tcp(a) => Some(a.ip()),
        Peer::Unix => None,
    }
}

impl Worker {
    /// `State::Preface`: is this an h2c connection? Returns what to do with
    /// the connection when it must wait or is gone; None when the state
    /// moved on (the driver carries on with HTTP/1.1).
    pub(super) fn h2c_preface(&mut self, conn: &mut Conn) -> Option<Next> {
        if let Some(t) = &conn.tls {
            // Under TLS, ALPN decides, once the handshake is done.
            if !t.established() && !conn.reused {
                conn.state = State::Preface;
                return Some(if conn.eof { Next::Close } else { Next::Keep });
            }
            if t.alpn().as_deref() == Some(b"h2") && !conn.reused {
                return Some(self.hand_over(conn, None));
            }
            conn.state = State::Head;
            return None;
        }
        if conn.reused || !self.h2.allow.allows(peer_ip(&conn.peer)) {
            conn.state = State::Head;
            return None;
        }
        let n = conn.rbuf.len().min(PREFACE.len());
        if conn.rbuf[..n] != PREFACE[..n] {
            if self.h2.only {
                warning!("Invalid HTTP/2 connection preface from a peer expected to speak HTTP/2");
                self.reject(
                    conn,
                    &HttpError::bad_request("Invalid HTTP/2 connection preface"),
                );
                return None;
            }
            conn.state = State::Head;
            return None;
        }
        if n < PREFACE.len() {
            conn.state = State::Preface;
            if n > 0 {
                // A peer that started the preface has a second for it.
                conn.deadline = conn.deadline.min(Instant::now() + PREFACE_BUDGET);
            }
            return Some(if conn.eof { Next::Close } else { Next::Keep });
        }
        Some(self.hand_over(conn, None))
    }

    /// An HTTP/1.1 request head just parsed: if it asks for h2c and may
    /// have it (`upgrade` or `both`, a peer trusted as for prior
    /// knowledge, a request `gateway::upgrade::offer` takes), the
    /// connection goes to the gateway, which answers 101 and serves the
    /// request as stream 1 (Some). Otherwise it is served as HTTP/1.1
    /// (None).
    pub(super) fn h2c_upgrade(&mut self, conn: &mut Conn, head: &RequestHead) -> Option<Next> {
        if !self.h2.upgrade
            || conn.tls.is_some()
            || conn.h2.is_some()
            || head.header("upgrade").is_none()
            || !self.h2.allow.allows(peer_ip(&conn.peer))
        {
            return None;
        }
        let Some(mut up) = gateway::upgrade::offer(head, self.stall_timeout) else {
            debug!("Upgrade: h2c not taken; serving HTTP/1.1");
            return None;
        };
        // A pipelined predecessor's response still queued goes out first.
        up.pending = conn.wbuf[conn.wpos..].to_vec();
        conn.wbuf.clear();
        conn.wpos = 0;
        debug!("Upgrading a connection to HTTP/2 (h2c)");
        Some(self.hand_over(conn, Some(Box::new(up))))
    }

    /// Give an h2c connection to the gateway; the engine closes its own
    /// descriptor for it.
    fn hand_over(&mut self, conn: &mut Conn, upgrade: Option<Box<Upgrade>>) -> Next {
        let dup = match &conn.stream {
            Stream::Tcp(s) => s.as_fd().try_clone_to_owned(),
            Stream::Unix(s) => s.as_fd().try_clone_to_owned(),
        };
        let fd = match dup {
            Ok(fd) => fd,
            Err(e) => {
                warning!("Cannot hand a connection to the HTTP/2 gateway: {e}");
                return Next::Close;
            }
        };
        let transport = match (&conn.stream, conn.tls.take()) {
            (Stream::Tcp(_), Some(session)) => {
                // The session moves with the socket; the engine keeps no
                // reference to it (it is not shared while not Busy).
                let Ok(session) = Arc::try_unwrap(session) else {
                    warning!("A TLS session for HTTP/2 is still shared; closing");
                    return Next::Close;
                };
                let session = session.rebind(fd.as_raw_fd());
                Transport::Tls(std::net::TcpStream::from(fd), Box::new(session))
            }
            (Stream::Tcp(_), None) => Transport::Tcp(std::net::TcpStream::from(fd)),
            (Stream::Unix(_), _) => Transport::Unix(std::os::unix::net::UnixStream::from(fd)),
        };
        let incoming = Incoming {
            transport,
            read: std::mem::take(&mut conn.rbuf),
            peer: conn.peer.clone(),
            listener: conn.listener,
            proxied: conn.proxied.clone(),
            upgrade,
        };
        match self.h2.gateway() {
            Ok(g) => g.hand_over(incoming),
            Err(e) => warning!("Cannot start the HTTP/2 gateway: {e}"),
        }
        Next::Close
    }

    /// Client connections, for --worker-connections: the HTTP/2 ones count
    /// once, their internal connections not at all.
    pub(super) fn clients(&self) -> usize {
        self.live - self.h2.internal + self.h2.open()
    }

    /// Serve the internal connections the gateway made.
    pub(super) fn take_internal(&mut self) {
        let Some(g) = &self.h2.gateway else { return };
        for i in g.take_new() {
            let stream = Stream::Unix(mio::net::UnixStream::from_std(i.stream));
            let Some(idx) = self.add_conn(stream, i.peer, i.listener, Some(i.facts.https)) else {
                continue;
            };
            self.h2.internal += 1;
            self.publish_conns();
            if let Some(c) = self.conns[idx].as_mut() {
                c.proxied = i.facts.proxied;
            }
        }
    }
}
