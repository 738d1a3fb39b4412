//! One TLS connection's state: a rustls `ServerConnection` over the
//! connection's non-blocking socket, behind a mutex so that the engine's
//! loop and the thread (or greenlet, or asyncio task) running the request
//! can both use it, one at a time. Every operation here is non-blocking:
//! "would block" comes back as `io::ErrorKind::WouldBlock`, and the caller
//! waits on the socket's descriptor as it does for plain TCP. The lock is
//! never held across a wait.
//!
//! Ciphertext that the socket did not take stays inside the session
//! ([`Session::pending`]); the engine counts it as queued output, so a
//! connection is not closed or called idle while its last TLS records are
//! still on their way.

use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::{ServerConfig, ServerConnection};

/// Most plaintext and ciphertext a session buffers for sending; a write
/// beyond it would block (backpressure, as a full socket buffer gives).
const SEND_BUFFER: usize = 256 * 1024;

/// The socket as rustls reads and writes it: non-blocking recv and send.
struct Sock(RawFd);

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is writable for its length; the descriptor is the
        // connection's, open for as long as the session is in use (the
        // engine drops the session before it closes the socket).
        let n = unsafe { libc::recv(self.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is readable for its length; descriptor as above.
        let n = unsafe { libc::send(self.0, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Inner {
    conn: ServerConnection,
    /// Decrypted bytes waiting in rustls (from the last processing, less
    /// what was read since).
    plaintext: usize,
    /// A record the client sent was refused; the connection is done.
    failed: bool,
}

/// A TLS connection's state, shared by the engine and the request.
pub struct Session {
    fd: RawFd,
    /// `--suppress-ragged-eofs`: a TCP close without close_notify reads as
    /// the end of the stream (true) or as an error (false).
    suppress_ragged: bool,
    inner: Mutex<Inner>,
}

impl Session {
    /// A new server-side session on the (non-blocking) socket `fd`.
    pub fn new(
        config: &Arc<ServerConfig>,
        fd: RawFd,
        suppress_ragged: bool,
    ) -> Result<Session, rustls::Error> {
        let mut conn = ServerConnection::new(config.clone())?;
        conn.set_buffer_limit(Some(SEND_BUFFER));
        Ok(Session {
            fd,
            suppress_ragged,
            inner: Mutex::new(Inner {
                conn,
                plaintext: 0,
                failed: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves rustls in a state that is
        // still memory-safe; carry on with it (the connection will fail).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The same session over another descriptor of its socket (a `dup`,
    /// when the connection moves to the HTTP/2 gateway and the engine
    /// closes its own).
    pub fn rebind(mut self, fd: RawFd) -> Session {
        self.fd = fd;
        self
    }

    /// The socket's descriptor (to wait on).
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Feed bytes already read from the socket (after a PROXY header) to
    /// the TLS layer, as if they had just arrived.
    pub fn feed(&self, mut bytes: &[u8]) -> io::Result<()> {
        let mut g = self.lock();
        while !bytes.is_empty() {
            g.conn.read_tls(&mut bytes)?;
            process(&mut g, self.fd)?;
        }
        Ok(())
    }

    /// Read decrypted bytes. Ok(0): the end of the stream (close_notify,
    /// or a TCP close with `--suppress-ragged-eofs`).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut g = self.lock();
        loop {
            match g.conn.reader().read(buf) {
                Ok(n) => {
                    g.plaintext = g.plaintext.saturating_sub(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return if self.suppress_ragged { Ok(0) } else { Err(e) };
                }
                Err(e) => return Err(e),
            }
            if g.failed {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS connection failed",
                ));
            }
            match g.conn.read_tls(&mut Sock(self.fd)) {
                // The peer closed TCP; the reader says whether it was clean.
                Ok(0) => {}
                Ok(_) => process(&mut g, self.fd)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Handshake replies (or alerts) may be waiting.
                    let _ = drain(&mut g, self.fd);
                    return Err(e);
                }
            }
        }
    }

    /// Encrypt and send what the session takes of `data` now: the count,
    /// or WouldBlock when it is full and the socket takes nothing.
    pub fn write(&self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let mut g = self.lock();
        drain(&mut g, self.fd)?;
        let n = g.conn.writer().write(data)?;
        drain(&mut g, self.fd)?;
        if n == 0 {
            let n = g.conn.writer().write(data)?;
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            drain(&mut g, self.fd)?;
            return Ok(n);
        }
        Ok(n)
    }

    /// Send the ciphertext waiting in the session. Ok(true): none is left.
    pub fn flush(&self) -> io::Result<bool> {
        let mut g = self.lock();
        drain(&mut g, self.fd)
    }

    /// Ciphertext is waiting for the socket.
    pub fn pending(&self) -> bool {
        self.lock().conn.wants_write()
    }

    /// Decrypted input is waiting in the session (no socket event will
    /// announce it).
    pub fn buffered(&self) -> bool {
        self.lock().plaintext > 0
    }

    /// Queue close_notify and send what can go now (before a TCP
    /// half-close or close).
    pub fn close_notify(&self) {
        let mut g = self.lock();
        g.conn.send_close_notify();
        let _ = drain(&mut g, self.fd);
    }

    /// The handshake is done.
    pub fn established(&self) -> bool {
        !self.lock().conn.is_handshaking()
    }

    /// The protocol the client and server agreed on by ALPN.
    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.lock().conn.alpn_protocol().map(<[u8]>::to_vec)
    }
}

/// Process newly read records; a protocol error sends its alert and fails
/// the session.
fn process(g: &mut Inner, fd: RawFd) -> io::Result<()> {
    match g.conn.process_new_packets() {
        Ok(state) => {
            g.plaintext = state.plaintext_bytes_to_read();
            let _ = drain(g, fd);
            Ok(())
        }
        Err(e) => {
            g.failed = true;
            let _ = drain(g, fd);
            Err(io::Error::new(io::ErrorKind::InvalidData, e))
        }
    }
}

/// Write ciphertext until none is left (true) or the socket is full
/// (false).
fn drain(g: &mut Inner, fd: RawFd) -> io::Result<bool> {
    while g.conn.wants_write() {
        match g.conn.write_tls(&mut Sock(fd)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
