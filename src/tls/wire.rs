//! [`Wire`]: how a request's code reaches its client. The app interfaces
//! (WSGI's response writer and `wsgi.input`, the ASGI cycle, WebSocket
//! sessions) read and write through it, from the request's thread, and wait
//! on [`Wire::fd`] when it would block. Plain TCP or unix: a non-blocking
//! send/recv on the descriptor. TLS: the connection's [`Session`], which
//! encrypts and decrypts on the way.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use super::Session;

/// A connection's transport, as a request's code uses it. Cheap to clone.
#[derive(Clone)]
pub struct Wire {
    fd: RawFd,
    tls: Option<Arc<Session>>,
}

impl Wire {
    /// A plain socket.
    pub fn plain(fd: RawFd) -> Wire {
        Wire { fd, tls: None }
    }

    /// A TLS connection.
    pub fn tls(session: Arc<Session>) -> Wire {
        Wire {
            fd: session.fd(),
            tls: Some(session),
        }
    }

    /// The socket's descriptor: to wait on, or for socket options.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn session(&self) -> Option<&Arc<Session>> {
        self.tls.as_ref()
    }

    /// Send what can go now, never waiting: the count, or WouldBlock.
    pub fn send(&self, data: &[u8]) -> io::Result<usize> {
        match &self.tls {
            None => {
                // SAFETY: `data` is readable for its length; the descriptor
                // is the connection's, which the engine keeps open while a
                // request holds its wire.
                let n = unsafe {
                    libc::send(
                        self.fd,
                        data.as_ptr().cast(),
                        data.len(),
                        libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }
            Some(s) => s.write(data),
        }
    }

    /// Read what is there now, never waiting: the count (0: end of
    /// stream), or WouldBlock.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            None => {
                // SAFETY: `buf` is writable for its length; descriptor as in
                // `send`.
                let n = unsafe {
                    libc::recv(
                        self.fd,
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }
            Some(s) => s.read(buf),
        }
    }

    /// Append what can be read now (up to `chunk` bytes) to `buf`.
    pub fn recv_into(&self, buf: &mut Vec<u8>, chunk: usize) -> io::Result<usize> {
        if self.tls.is_some() {
            let start = buf.len();
            buf.resize(start + chunk, 0);
            let r = self.recv(&mut buf[start..]);
            buf.truncate(start + *r.as_ref().unwrap_or(&0));
            return r;
        }
        // Plain: straight into the spare capacity, with no zeroing.
        buf.reserve(chunk);
        let spare = buf.spare_capacity_mut();
        let len = spare.len().min(chunk);
        // SAFETY: `spare` is writable for `len` bytes; recv writes at most
        // that many, which are then marked initialised.
        let n = unsafe { libc::recv(self.fd, spare.as_mut_ptr().cast(), len, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        // SAFETY: recv initialised `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }

    /// Ciphertext is still waiting to go out (always false for plain
    /// sockets, whose output is the kernel's once sent).
    pub fn pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|s| s.pending())
    }

    /// Push waiting ciphertext out. Ok(true): none is left.
    pub fn flush(&self) -> io::Result<bool> {
        match &self.tls {
            None => Ok(true),
            Some(s) => s.flush(),
        }
    }

    /// Input is waiting: decrypted in the session, or in the kernel.
    pub fn has_input(&self) -> bool {
        self.tls.as_ref().is_some_and(|s| s.buffered()) || self.peek() > 0
    }

    /// The peer closed its side (a zero-byte peek on the socket).
    pub fn peer_closed(&self) -> bool {
        !self.tls.as_ref().is_some_and(|s| s.buffered()) && self.peek() == 0
    }

    /// A one-byte peek at the socket: 1 (input waiting), 0 (closed), or
    /// negative (nothing yet, or an error).
    fn peek(&self) -> isize {
        let mut b = [0u8; 1];
        // SAFETY: one writable byte; MSG_PEEK consumes nothing.
        unsafe {
            libc::recv(
                self.fd,
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        }
    }
}
