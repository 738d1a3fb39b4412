//! One client connection as the worker's loop holds it: the socket (TCP,
//! unix, TCP under TLS, or one end of an HTTP/2 gateway's internal
//! connection), its buffers, where it is in its
//! request/response cycle, and its deadlines. Reading and writing here
//! never blocks; the protocol drivers (`h1`, and `edge` for PROXY headers
//! and uwsgi) decide what the bytes mean.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use std::sync::Arc;

use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::http::{self, BodyRest, RequestHead};
use crate::tls::{Session, Wire};
use crate::wsgi::Peer;

/// Stop reading from a connection whose unprocessed input exceeds this.
pub(super) const READ_CAP: usize = super::h1::BUFFER_BODY + 64 * 1024;
/// At the connection limit, a connection sitting idle or on an incomplete
/// head for at least this long may be closed to admit a new one.
const EVICT_AFTER: Duration = Duration::from_millis(500);
/// Buffers of idle connections larger than this are released, so a burst
/// of large requests does not leave every connection holding its peak.
pub(super) const KEEP_BUFFER: usize = 64 * 1024;

pub(super) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub(super) fn raw(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
    pub(super) fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }
    fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(super) enum ListenSock {
    Tcp(TcpListener),
    Unix(UnixListener),
}

pub(super) struct WorkerListener {
    pub(super) sock: ListenSock,
    /// Connections may be waiting: the last accept found one, or the
    /// listener signalled since the last accept came back empty.
    pub(super) ready: bool,
}

/// Where a connection is in its request/response cycle.
pub(super) enum State {
    /// `--proxy-protocol`: waiting to see whether the connection starts
    /// with a PROXY header, and for the rest of it (`edge.rs`).
    Proxy,
    /// `--protocol uwsgi`: waiting for (the rest of) a uwsgi request
    /// packet (`edge.rs`).
    Uwsgi,
    /// `--http2-cleartext prior-knowledge`: waiting to see whether a
    /// connection from a trusted peer opens with the HTTP/2 preface
    /// (`h2c.rs`).
    Preface,
    /// Waiting for (the rest of) a request head.
    Head,
    /// Reading a body that will be handed to the app in one piece.
    Body {
        head: Box<RequestHead>,
        body: Vec<u8>,
        rest: BodyRest,
    },
    /// Response sent with `Connection: close`; draining input until EOF.
    Lingering,
    /// A gthread thread is running the request and owns the socket's I/O
    /// until it hands the request back; the loop leaves it alone.
    Busy,
}

pub(super) struct Conn {
    pub(super) stream: Stream,
    pub(super) peer: Peer,
    pub(super) listener: usize,
    pub(super) rbuf: Vec<u8>,
    pub(super) wbuf: Vec<u8>,
    pub(super) wpos: usize,
    pub(super) state: State,
    pub(super) deadline: Instant,
    /// Close once `wbuf` is written.
    pub(super) close_after_write: bool,
    /// The peer closed its side.
    pub(super) eof: bool,
    /// A plain read came back short (the kernel's buffer was empty then)
    /// and no event has come for the connection since: edge-triggered,
    /// anything arriving later brings one, so reading now would only
    /// return EAGAIN. Saves that system call on every request.
    pub(super) drained: bool,
    /// An event said the peer closed its side (EPOLLRDHUP/HUP): read to
    /// the end rather than stop at a short read, so the EOF is seen.
    pub(super) peer_closed: bool,
    /// Remembers how far an incomplete head was already scanned.
    pub(super) parser: http::HeadParser,
    /// When the connection started waiting for its current head (accept,
    /// or the end of the previous response).
    pub(super) since: Instant,
    /// A request was served on this connection before.
    pub(super) reused: bool,
    /// The app took the connection over: close our descriptor, nothing else.
    pub(super) dead: bool,
    /// In the worker's `ready` queue.
    pub(super) queued: bool,
    /// Busy, and an event or a turn for it was dropped meanwhile (or its
    /// body is streamed, so the app may leave input unannounced in the
    /// kernel): it is driven again once the request comes back.
    pub(super) missed: bool,
    /// The request being dispatched still owes `100 Continue`.
    pub(super) continue_pending: bool,
    /// The PROXY header the connection began with (`--proxy-protocol`).
    pub(super) proxied: Option<std::sync::Arc<crate::proxy::Header>>,
    /// The vars of the uwsgi request being read, until it is dispatched.
    pub(super) uwsgi: Option<Box<crate::uwsgi::Vars>>,
    /// An internal connection of the HTTP/2 gateway (`h2c.rs`): its
    /// requests are HTTP/2 streams, of a client that named `https` as its
    /// scheme (true) or not.
    pub(super) h2: Option<bool>,
    /// Under TLS, the session that reads and writes `stream` (shared with
    /// the request while Busy). Set at accept, or after a PROXY header.
    pub(super) tls: Option<Arc<Session>>,
}

impl Conn {
    /// Output queued: plaintext not yet handed to the socket (or to the
    /// TLS session), plus one for ciphertext still in the session.
    pub(super) fn pending_write(&self) -> usize {
        self.wbuf.len() - self.wpos + usize::from(self.tls.as_ref().is_some_and(|t| t.pending()))
    }

    /// How a request's code reads and writes this connection.
    pub(super) fn wire(&self) -> Wire {
        match &self.tls {
            Some(t) => Wire::tls(t.clone()),
            None => Wire::plain(self.stream.raw()),
        }
    }

    /// Put the connection under TLS, with the bytes already read from it
    /// (after a PROXY header) fed to the session first.
    pub(super) fn start_tls(&mut self, tls: &crate::tls::Tls) -> io::Result<()> {
        let session = tls
            .session(self.stream.raw())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let early = std::mem::take(&mut self.rbuf);
        if !early.is_empty() {
            session.feed(&early)?;
        }
        self.tls = Some(Arc::new(session));
        Ok(())
    }

    /// Under TLS: decrypted input is waiting in the session, which no
    /// socket event will announce.
    pub(super) fn tls_buffered(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.buffered())
    }

    /// Input is waiting (in the kernel, or decrypted in the session).
    pub(super) fn has_input(&self) -> bool {
        self.tls_buffered() || has_pending_input(self.stream.raw())
    }

    /// Half-close: no more output (close_notify first under TLS).
    pub(super) fn shutdown_write(&self) {
        if let Some(t) = &self.tls {
            t.close_notify();
        }
        self.stream.shutdown_write();
    }

    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            Some(t) => t.read(buf),
            None => self.stream.read(buf),
        }
    }

    fn write_some(&mut self, from: usize) -> io::Result<usize> {
        match &self.tls {
            Some(t) => t.write(&self.wbuf[from..]),
            None => self.stream.write(&self.wbuf[from..]),
        }
    }
    pub(super) fn idle(&self) -> bool {
        matches!(self.state, State::Head) && self.rbuf.is_empty() && self.pending_write() == 0
    }
    /// May be closed to make room for a new connection: idle, lingering,
    /// or stuck on an incomplete head for a while.
    pub(super) fn evictable(&self, now: Instant) -> bool {
        match self.state {
            State::Lingering => true,
            State::Head | State::Proxy | State::Uwsgi | State::Preface => {
                self.h2.is_none()
                    && self.pending_write() == 0
                    && now.saturating_duration_since(self.since) >= EVICT_AFTER
            }
            _ => false,
        }
    }

    /// Read what is available into `rbuf`, through the worker's scratch
    /// buffer (allocated once, so no per-read zeroing). Returns false on a
    /// hard error.
    pub(super) fn fill(&mut self, scratch: &mut [u8]) -> bool {
        // A short plain read empties the kernel's buffer (stream sockets);
        // under TLS the session may hold more than one read showed.
        let plain = self.tls.is_none();
        if plain && self.drained {
            return true;
        }
        while self.rbuf.len() < READ_CAP && !self.eof {
            match self.read_some(scratch) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.rbuf.extend_from_slice(&scratch[..n]);
                    if plain && n < scratch.len() && !self.peer_closed {
                        self.drained = true;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Write queued output; progress extends the deadline by `stall`.
    /// Returns false on a hard error.
    pub(super) fn flush(&mut self, stall: Duration) -> bool {
        while self.wpos < self.wbuf.len() {
            match self.write_some(self.wpos) {
                Ok(0) => return false,
                Ok(n) => {
                    self.wpos += n;
                    self.deadline = Instant::now() + stall;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if self.wbuf.capacity() > KEEP_BUFFER {
            self.wbuf = Vec::new();
        } else {
            self.wbuf.clear();
        }
        self.wpos = 0;
        if let Some(tls) = &self.tls {
            if tls.pending() {
                match tls.flush() {
                    Ok(true) => self.deadline = Instant::now() + stall,
                    Ok(false) => {}
                    Err(_) => return false,
                }
            }
        }
        true
    }
}

/// What to do with a connection after driving it.
pub(super) enum Next {
    Keep,
    Close,
}

/// Whether bytes are waiting to be read on `fd` (without consuming them).
pub(super) fn has_pending_input(fd: RawFd) -> bool {
    let mut b = [0u8; 1];
    matches!(
        nix::sys::socket::recv(
            fd,
            &mut b,
            nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT
        ),
        Ok(n) if n > 0
    )
}
