//! The gateway thread's runtime: it takes connections from the engine,
//! serves HTTP/2 on each with the `h2` crate (the settings, and the
//! defences: a cap on concurrent streams, on streams reset before they
//! were accepted (rapid reset), on header lists (HPACK bombs and
//! CONTINUATION floods), on buffered output, and on locally reset
//! streams), sends GOAWAY when the worker drains, and keeps each
//! connection's pool of internal connections.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

use super::{Config, Facts, Incoming, Internal, ToGateway, Transport, Wake};
use crate::wsgi::Peer;
use crate::{debug, warning};

/// Streams reset by the client before the server took them that are
/// tolerated at once (the h2 crate's rapid-reset guard, CVE-2023-44487):
/// beyond this the connection gets GOAWAY(ENHANCE_YOUR_CALM).
const MAX_PENDING_RESETS: usize = 20;
/// Streams the server itself reset because of the client's errors,
/// before the connection is closed.
const MAX_LOCAL_RESETS: usize = 256;
/// Output buffered per stream in the crate beyond the peer's window.
const MAX_SEND_BUFFER: usize = 256 * 1024;

/// What the gateway's tasks share.
pub(super) struct Shared {
    pub(super) cfg: Arc<Config>,
    pub(super) engine: mpsc::Sender<Internal>,
    pub(super) wake: Wake,
    /// HTTP/2 connections open (the engine waits for none before exiting).
    pub(super) open: Arc<AtomicUsize>,
    /// True once the worker drains.
    pub(super) drain: tokio::sync::watch::Sender<bool>,
}

pub(super) async fn run(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<ToGateway>,
    shared: Arc<Shared>,
) {
    while let Some(msg) = rx.recv().await {
        match msg {
            ToGateway::Drain => {
                shared.drain.send_replace(true);
            }
            ToGateway::Conn(c) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(c, &shared).await {
                        debug!("HTTP/2 connection: {e}");
                    }
                    shared.open.fetch_sub(1, Ordering::SeqCst);
                    (shared.wake)();
                });
            }
        }
    }
}

/// A connection's byte stream with the bytes already read in front of it.
pub(super) struct Rewind<T> {
    pre: Vec<u8>,
    pos: usize,
    io: T,
}

impl<T> Rewind<T> {
    /// `io`, with the bytes the engine already read from it first.
    fn new(pre: Vec<u8>, io: T) -> Rewind<T> {
        Rewind { pre, pos: 0, io }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.pre.len() {
            let n = (self.pre.len() - self.pos).min(buf.remaining());
            let at = self.pos;
            buf.put_slice(&self.pre[at..at + n]);
            self.pos += n;
            if self.pos == self.pre.len() {
                self.pre = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

async fn serve(c: Incoming, shared: &Arc<Shared>) -> io::Result<()> {
    let Incoming {
        transport,
        read,
        peer,
        listener,
        proxied,
        upgrade,
    } = c;
    let link = |tls: bool, first_body: Option<bytes::Bytes>| {
        Arc::new(Link {
            tls,
            shared: shared.clone(),
            peer,
            listener,
            proxied,
            first_body: Mutex::new(first_body),
            idle: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            slots: Arc::new(tokio::sync::Semaphore::new(shared.cfg.internal_per_conn)),
        })
    };
    match transport {
        Transport::Tcp(s) => {
            s.set_nonblocking(true)?;
            let _ = s.set_nodelay(true);
            let mut io = tokio::net::TcpStream::from_std(s)?;
            let (read, body) = super::upgrade::begin(&mut io, upgrade, read).await?;
            serve_h2(Rewind::new(read, io), link(false, body)).await
        }
        Transport::Tls(s, session) => {
            s.set_nonblocking(true)?;
            let _ = s.set_nodelay(true);
            let io = super::tls::TlsIo::new(tokio::net::TcpStream::from_std(s)?, *session);
            serve_h2(Rewind::new(read, io), link(true, None)).await
        }
        Transport::Unix(s) => {
            s.set_nonblocking(true)?;
            let mut io = UnixStream::from_std(s)?;
            let (read, body) = super::upgrade::begin(&mut io, upgrade, read).await?;
            serve_h2(Rewind::new(read, io), link(false, body)).await
        }
    }
}

/// Serve HTTP/2 on any byte stream (plain TCP or unix today; a TLS
/// stream that negotiated `h2` by ALPN plugs in here).
pub(super) async fn serve_h2<T>(io: T, link: Arc<Link>) -> io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = &link.shared.cfg;
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(cfg.max_concurrent_streams)
        .initial_window_size(cfg.initial_window_size)
        .max_frame_size(cfg.max_frame_size)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_RESETS))
        .max_send_buffer_size(MAX_SEND_BUFFER);
    if let Some(n) = cfg.max_header_list_size {
        b.max_header_list_size(n);
    }
    let mut conn = b.handshake::<_, bytes::Bytes>(io).await.map_err(to_io)?;
    let mut drain = link.shared.drain.subscribe();
    let mut stopping = Box::pin(async move {
        let _ = drain.wait_for(|d| *d).await;
    });
    let mut goaway = false;
    let idle_for = cfg.idle_timeout;
    let mut idle = Box::pin(tokio::time::sleep(idle_for));
    loop {
        let next = std::future::poll_fn(|cx| {
            if !goaway && stopping.as_mut().poll(cx).is_ready() {
                goaway = true;
                conn.graceful_shutdown();
            }
            // Idle: no stream open when the timer fires (so between one
            // and two --keep-alive periods after the last one ended).
            while !goaway && idle.as_mut().poll(cx).is_ready() {
                if link.active.load(Ordering::SeqCst) == 0 {
                    debug!("Closing an idle HTTP/2 connection");
                    goaway = true;
                    conn.graceful_shutdown();
                } else {
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_for);
                }
            }
            conn.poll_accept(cx)
        })
        .await;
        match next {
            None => return Ok(()),
            Some(Ok((req, respond))) => {
                let link = link.clone();
                tokio::spawn(super::stream::handle(req, respond, link));
            }
            Some(Err(e)) => {
                if e.is_go_away() || e.is_io() {
                    debug!("HTTP/2 connection ended: {e}");
                } else {
                    warning!("HTTP/2 connection closed: {e}");
                }
                return Ok(());
            }
        }
    }
}

fn to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        e.into_io()
            .unwrap_or_else(|| io::Error::other("HTTP/2 I/O"))
    } else {
        io::Error::other(e)
    }
}

/// One HTTP/2 connection's side of its internal connections.
pub(super) struct Link {
    shared: Arc<Shared>,
    /// The connection is TLS: every stream is https.
    pub(super) tls: bool,
    peer: Peer,
    listener: usize,
    proxied: Option<Arc<crate::proxy::Header>>,
    /// After an h2c upgrade: the body of the request that asked for it,
    /// for stream 1 (it came over HTTP/1.1, not as DATA frames).
    pub(super) first_body: Mutex<Option<bytes::Bytes>>,
    /// Internal connections between requests, by scheme.
    idle: Mutex<Vec<(bool, UnixStream)>>,
    /// Streams being served.
    pub(super) active: AtomicUsize,
    /// One permit per internal connection in use.
    pub(super) slots: Arc<tokio::sync::Semaphore>,
}

impl Link {
    /// An internal connection for a request with this scheme: an idle one,
    /// or a new socket pair whose other end goes to the engine.
    pub(super) fn internal(&self, https: bool) -> io::Result<UnixStream> {
        if let Ok(mut idle) = self.idle.lock() {
            if let Some(i) = idle.iter().position(|(h, _)| *h == https) {
                return Ok(idle.swap_remove(i).1);
            }
        }
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        theirs.set_nonblocking(true)?;
        self.shared
            .engine
            .send(Internal {
                stream: theirs,
                peer: self.peer.clone(),
                listener: self.listener,
                facts: Facts {
                    https,
                    proxied: self.proxied.clone(),
                },
            })
            .map_err(|_| io::Error::other("the engine is gone"))?;
        (self.shared.wake)();
        UnixStream::from_std(ours)
    }

    /// An internal connection that can carry another request.
    pub(super) fn give_back(&self, https: bool, s: UnixStream) {
        if *self.shared.drain.borrow() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push((https, s));
        }
    }
}
