//! The HTTP/2 gateway of a worker. The engine (`worker/h2c.rs`) hands it
//! every connection that speaks HTTP/2 (the h2c preface, an HTTP/1.1
//! `Upgrade: h2c`, TLS with ALPN `h2`) and forgets it. The gateway is one thread, started on
//! the first such connection, running a current-thread tokio runtime with
//! the `h2` crate: it serves the HTTP/2 framing, flow control and the
//! defences (`serve.rs`), and turns each stream into one HTTP/1.1 request
//! on an *internal connection*, a Unix socket pair whose other end the
//! engine takes as if it were accepted (`stream.rs`). So every executor
//! (sync, gthread, asgi, gevent, eventlet) serves HTTP/2 through the
//! paths it already has, and their blocking writes are the backpressure:
//! the gateway reads an internal connection only while the stream's send
//! window is open, and writes a request body into it only as the app
//! reads. A worker that never sees HTTP/2 never starts the thread.
//!
//! What the engine learns about an internal connection's client (its
//! address, the PROXY header it began with, the scheme it named) comes
//! with it in [`Internal`], not in-band, so no header can forge it.

mod response;
mod serve;
mod stream;
mod tls;
pub mod upgrade;

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use crate::config::Settings;
use crate::wsgi::Peer;

/// One definition of the HTTP/2 settings a gateway serves with.
#[derive(Debug, Clone)]
pub struct Config {
    pub max_concurrent_streams: u32,
    pub initial_window_size: u32,
    pub max_frame_size: u32,
    /// None: the h2 crate's own bound (gunicorn's 0, "unlimited").
    pub max_header_list_size: Option<u32>,
    /// Internal connections one HTTP/2 connection may hold at once: how
    /// many of its streams the executor can run together.
    pub internal_per_conn: usize,
    /// A connection without an open stream this long gets GOAWAY
    /// (`--keep-alive`, at least 1 s).
    pub idle_timeout: std::time::Duration,
}

impl Config {
    pub fn from_settings(s: &Settings) -> Config {
        // Enough requests waiting in the engine that each of its turns
        // serves several (bench/h2.sh: sync hello with 2 per connection
        // made half of what 8 make).
        let internal_per_conn = match s.worker_class.as_str() {
            "sync" => 8,
            "gthread" => (2 * s.threads.max(1) as usize).max(8),
            _ => s.http2_max_concurrent_streams.clamp(1, 256) as usize,
        };
        Config {
            max_concurrent_streams: s.http2_max_concurrent_streams,
            initial_window_size: s.http2_initial_window_size,
            max_frame_size: s.http2_max_frame_size,
            max_header_list_size: (s.http2_max_header_list_size > 0)
                .then_some(s.http2_max_header_list_size),
            internal_per_conn,
            idle_timeout: std::time::Duration::from_secs_f64(s.keepalive.max(1.0)),
        }
    }
}

/// What the gateway says about the client of an internal connection's
/// requests.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The client named the `https` scheme (`:scheme`), from a peer
    /// trusted to speak h2c (or over TLS).
    pub https: bool,
    /// The PROXY header the HTTP/2 connection began with.
    pub proxied: Option<Arc<crate::proxy::Header>>,
}

/// The HTTP/2 connection's byte stream as the engine hands it over.
pub enum Transport {
    Tcp(std::net::TcpStream),
    Unix(UnixStream),
    /// TLS that negotiated `h2` by ALPN: the socket and its session (over
    /// that socket's descriptor).
    Tls(std::net::TcpStream, Box<crate::tls::Session>),
}

/// A connection handed to the gateway: its socket, the bytes the engine
/// already read from it (the preface at least), who it is.
pub struct Incoming {
    pub transport: Transport,
    pub read: Vec<u8>,
    pub peer: Peer,
    pub listener: usize,
    pub proxied: Option<Arc<crate::proxy::Header>>,
    /// An HTTP/1.1 request that asked for h2c (`upgrade.rs`); `read` then
    /// holds what followed its head.
    pub upgrade: Option<Box<upgrade::Upgrade>>,
}

/// An internal connection for the engine to serve as an accepted one.
pub struct Internal {
    pub stream: UnixStream,
    pub peer: Peer,
    pub listener: usize,
    pub facts: Facts,
}

enum ToGateway {
    Conn(Incoming),
    Drain,
}

/// Wakes the engine's loop (its mio `Waker`), from the gateway thread.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// The engine's handle on its gateway.
pub struct Gateway {
    to: tokio::sync::mpsc::UnboundedSender<ToGateway>,
    from: mpsc::Receiver<Internal>,
    open: Arc<AtomicUsize>,
}

impl Gateway {
    /// Start the gateway thread.
    pub fn start(cfg: Config, wake: Wake) -> std::io::Result<Gateway> {
        let (to, rx) = tokio::sync::mpsc::unbounded_channel();
        let (tx, from) = mpsc::channel();
        let open = Arc::new(AtomicUsize::new(0));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let shared = serve::Shared {
            cfg: Arc::new(cfg),
            engine: tx,
            wake,
            open: open.clone(),
            drain: tokio::sync::watch::channel(false).0,
        };
        std::thread::Builder::new()
            .name("ferrocorn-h2".into())
            .spawn(move || rt.block_on(serve::run(rx, Arc::new(shared))))?;
        Ok(Gateway { to, from, open })
    }

    /// Hand a connection over.
    pub fn hand_over(&self, conn: Incoming) {
        self.open.fetch_add(1, Ordering::SeqCst);
        if self.to.send(ToGateway::Conn(conn)).is_err() {
            self.open.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The worker stops: GOAWAY on every connection, and open streams
    /// finish.
    pub fn drain(&self) {
        let _ = self.to.send(ToGateway::Drain);
    }

    /// Internal connections made since the last call.
    pub fn take_new(&self) -> Vec<Internal> {
        self.from.try_iter().collect()
    }

    /// No HTTP/2 connection is open (all handed over have ended).
    pub fn idle(&self) -> bool {
        self.open() == 0
    }

    /// HTTP/2 connections open.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}
