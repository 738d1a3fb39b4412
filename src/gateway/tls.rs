//! A TLS connection that negotiated `h2` by ALPN, as tokio I/O for the h2
//! crate: the rustls session the engine did the handshake with
//! (`tls::Session`, non-blocking over the socket's descriptor), with the
//! socket registered in the gateway's reactor for readiness. A
//! "would block" from the session clears the readiness it was polled on,
//! so the task waits for the next event rather than spinning.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::tls::Session;

pub(super) struct TlsIo {
    tcp: TcpStream,
    session: Session,
}

impl TlsIo {
    pub(super) fn new(tcp: TcpStream, session: Session) -> TlsIo {
        TlsIo { tcp, session }
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            // Decrypted bytes may already wait in the session.
            let dst = buf.initialize_unfilled();
            match this
                .tcp
                .try_io(Interest::READABLE, || this.session.read(dst))
            {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(this.tcp.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this
                .tcp
                .try_io(Interest::WRITABLE, || this.session.write(data))
            {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(this.tcp.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let r = this.tcp.try_io(Interest::WRITABLE, || {
                if this.session.flush()? {
                    Ok(())
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                }
            });
            match r {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(this.tcp.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.session.close_notify();
        ready!(self.as_mut().poll_flush(cx))?;
        let _ = self.tcp.try_io(Interest::WRITABLE, || {
            nix::sys::socket::shutdown(
                std::os::fd::AsRawFd::as_raw_fd(&self.tcp),
                nix::sys::socket::Shutdown::Write,
            )
            .map_err(io::Error::from)
        });
        Poll::Ready(Ok(()))
    }
}
