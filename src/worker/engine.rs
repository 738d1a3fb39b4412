//! The connection engine of a worker: one mio (epoll) loop that owns the
//! listeners, the connection table, timers (header, body, keep-alive,
//! linger deadlines), eviction at the connection limit, backpressure, the
//! worker's signals and its heartbeat. Requests go to the executor
//! (`executor`); the HTTP/1.1 protocol (`h1`) drives each connection;
//! the accept policy lives in `accept`; PROXY headers and uwsgi in `edge`.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token, Waker};
use pyo3::prelude::*;

use super::accept::FRESH_WAIT;
use super::conn::{Conn, ListenSock, Next, State, Stream, WorkerListener};
use super::edge::EdgeConfig;
use super::executor::green::Library;
use super::executor::{Asyncio, Done, Executor, Green, Inline, Job, Loop, ReopenLogs, Threads};
use super::{current_rss, jitter, WorkerArgs};
use crate::http::{self, Limits};
use crate::log::access::AccessLog;
use crate::log::timefmt::DateCache;
use crate::master::listeners::Kind;
use crate::sys::{self, Scoreboard, Signal, SignalQueue};
use crate::wsgi::{Forwarding, Peer, ServerInfo, Wsgi, WsgiApp};
use crate::{debug, error, info, warning};

/// A sync worker polls for new events after serving this many requests,
/// so that requests are served first come, first served (a turn through
/// every ready connection would let some wait two turns).
const SYNC_TURN: u64 = 4;

const SIGNAL_TOKEN: Token = Token(0);
pub(super) const LISTENER_BASE: usize = 1;
pub(super) const CONN_BASE: usize = 1 << 16;
const WAKER_TOKEN: Token = Token(CONN_BASE - 1);
/// The `ctl stacks` link, until the stacks thread starts.
const STACKS_TOKEN: Token = Token(CONN_BASE - 2);
/// The timer that ends a wait for a sibling (`Worker::balance_timer`).
pub(super) const BALANCE_TOKEN: Token = Token(CONN_BASE - 3);

pub struct Worker {
    pub(super) poll: Poll,
    pub(super) listeners: Vec<WorkerListener>,
    pub(super) conns: Vec<Option<Conn>>,
    pub(super) free: Vec<usize>,
    pub(super) live: usize,
    /// Connections with work that no new event will announce.
    pub(super) again: Vec<usize>,
    /// Connections with events not yet handled, oldest first, each once
    /// (`Conn::queued`). A sync worker serves at most SYNC_TURN requests
    /// from it before it polls again, so requests are served in the order
    /// they became ready, new connections' included.
    pub(super) ready: VecDeque<usize>,
    /// Where requests run (inline for sync, threads for gthread).
    pub(super) exec: Box<dyn Executor>,
    /// The log files the app interface writes (USR1).
    pub(super) app: Arc<dyn ReopenLogs>,
    pub(super) limits: Limits,
    pub(super) keepalive: Duration,
    /// --header-timeout and --body-timeout.
    pub(super) head_timeout: Duration,
    pub(super) stall_timeout: Duration,
    pub(super) max_conns: usize,
    pub(super) date: DateCache,
    pub(super) signals: SignalQueue,
    pub(super) stopping: bool,
    pub(super) accept_paused: bool,
    /// The last accept batch was full: try again on the next turn.
    pub(super) accept_more: bool,
    /// sync: the connection accepted last, and when, until its first
    /// request starts (see FRESH_WAIT).
    pub(super) fresh: Option<(usize, Instant)>,
    /// sync: accepting waits for `fresh`.
    pub(super) accept_held: bool,
    /// A concurrent class with siblings: until when this worker, holding
    /// more connections than a sibling, leaves the waiting ones to it (see
    /// `accept.rs`).
    pub(super) defer: Option<Instant>,
    /// Where an asyncio loop or a greenlet hub runs the engine (they wait
    /// on its epoll descriptor, not for a turn's timeout): a timer in the
    /// epoll set that fires when `defer` ends. Made at the first wait.
    pub(super) balance_timer: Option<nix::sys::timerfd::TimerFd>,
    /// The siblings' scoreboard slots, looked up once a second, and more
    /// often while fewer are seen than the master wants workers
    /// (`Worker::siblings_wanted`).
    pub(super) sibling_slots: Vec<usize>,
    pub(super) siblings_seen_at: Instant,
    /// Read buffer shared by every connection of this worker.
    pub(super) scratch: Box<[u8]>,
    pub(super) master: nix::unistd::Pid,
    pub(super) requests: u64,
    pub(super) scoreboard: Scoreboard,
    pub(super) slot: usize,
    /// Recycle after this many requests (0: never).
    pub(super) max_requests: u64,
    /// Recycle once RSS exceeds this many bytes (0: never).
    pub(super) max_rss: u64,
    pub(super) next_rss_check: Instant,
    /// The poll's event buffer.
    pub(super) events: Events,
    /// When the next sweep for timed-out connections is due.
    pub(super) next_sweep: Instant,
    /// PROXY protocol and uwsgi (`edge.rs`).
    pub(super) edge: EdgeConfig,
    /// HTTP/2: its settings, and the gateway once started (`h2c.rs`).
    pub(super) h2: super::h2c::H2,
    /// TLS (`--certfile`): every new connection gets a session, right at
    /// accept, or after its PROXY header.
    pub(super) tls: Option<Arc<crate::tls::Tls>>,
}

impl Worker {
    pub(super) fn new(
        args: WorkerArgs<'_>,
        app: Py<PyAny>,
        signals: SignalQueue,
        hooks: Option<crate::hooks::RequestHooks>,
    ) -> io::Result<Worker> {
        let settings = args.settings;
        let listeners = args.listeners;
        let poll = Poll::new()?;
        let sigfd = signals.fd().as_raw_fd();
        poll.registry().register(
            &mut mio::unix::SourceFd(&sigfd),
            SIGNAL_TOKEN,
            Interest::READABLE,
        )?;
        // A `ctl stacks` request arriving while the loop waits starts the
        // stacks thread (the stacks signal does while the app runs).
        if let Some(link) = crate::control::stacks::link_fd() {
            poll.registry().register(
                &mut mio::unix::SourceFd(&link.as_raw_fd()),
                STACKS_TOKEN,
                Interest::READABLE,
            )?;
        }
        // One waker per poll: the gthread pool's and the HTTP/2 gateway's.
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        let mut wl = Vec::new();
        let mut servers = Vec::new();
        for (i, l) in listeners.iter().enumerate() {
            let fd = l.try_clone_fd()?;
            let mut sock = match l.kind {
                Kind::Tcp => {
                    ListenSock::Tcp(TcpListener::from_std(std::net::TcpListener::from(fd)))
                }
                Kind::Unix => ListenSock::Unix(UnixListener::from_std(
                    std::os::unix::net::UnixListener::from(fd),
                )),
            };
            let token = Token(LISTENER_BASE + i);
            match &mut sock {
                ListenSock::Tcp(s) => poll.registry().register(s, token, Interest::READABLE)?,
                ListenSock::Unix(s) => poll.registry().register(s, token, Interest::READABLE)?,
            }
            let (name, port) = l.server_name_port();
            servers.push(ServerInfo {
                name,
                port,
                unix: l.kind == Kind::Unix,
            });
            wl.push(WorkerListener { sock, ready: true });
        }
        // As in gunicorn, there is an access log when it has a file or
        // goes to syslog.
        let to_syslog = settings.syslog && !settings.disable_redirect_access_to_syslog;
        let python_logging = settings.logconfig.is_some()
            || settings.logconfig_json.is_some()
            || !settings.logconfig_dict.is_empty();
        let access = if settings.accesslog.is_some() || to_syslog || python_logging {
            let format = if settings.access_log_json {
                crate::log::access::Format::json(&settings.access_log_format)
            } else {
                crate::log::access::Format::parse(&settings.access_log_format)
            }
            .map_err(io::Error::other)?;
            // With a Python logging config, the `gunicorn.access` logger
            // takes every line (call.rs).
            Some(AccessLog::open(
                settings.accesslog.as_deref().filter(|_| !python_logging),
                format,
                to_syslog && !python_logging,
            )?)
        } else {
            None
        };
        let (exec, logs): (Box<dyn Executor>, Arc<dyn ReopenLogs>) =
            if crate::asgi::runs_on_asyncio(&settings.worker_class) {
                let access = access.map(|a| Arc::new(std::sync::Mutex::new(a)));
                let iface = crate::asgi::AsgiInterface {
                    app,
                    servers,
                    access: access.clone(),
                    forwarding: Forwarding::from_settings(settings),
                    opts: crate::asgi::Options::from_settings(settings),
                };
                (
                    Box::new(Asyncio::new(Box::new(iface), settings.graceful_timeout)),
                    Arc::new(crate::asgi::AccessLogs(access)),
                )
            } else {
                let threaded = settings.worker_class == "gthread";
                let green = Library::of(&settings.worker_class).is_some();
                let wsgi = Python::attach(|py| {
                    Wsgi::new(
                        py,
                        app,
                        settings.workers > 1,
                        // As in gunicorn's gevent worker.
                        threaded || green,
                        Forwarding::from_settings(settings),
                    )
                    .map(|mut w| {
                        w.sendfile = settings.sendfile.0;
                        w
                    })
                })
                .map_err(|e| io::Error::other(e.to_string()))?;
                let app = Arc::new(WsgiApp {
                    wsgi,
                    servers,
                    access: access.map(std::sync::Mutex::new),
                    hooks,
                });
                let exec: Box<dyn Executor> = if green {
                    Box::new(Green::new(app.clone()))
                } else if threaded {
                    Box::new(Threads::new(
                        settings.threads.max(1) as usize,
                        app.clone(),
                        waker.clone(),
                    ))
                } else {
                    Box::new(Inline::new(app.clone()))
                };
                (exec, app)
            };
        Ok(Worker {
            poll,
            listeners: wl,
            conns: Vec::new(),
            free: Vec::new(),
            live: 0,
            again: Vec::new(),
            ready: VecDeque::new(),
            exec,
            app: logs,
            head_timeout: crate::config::seconds(settings.header_timeout),
            stall_timeout: crate::config::seconds(settings.body_timeout),
            limits: Limits {
                max_line: settings.limit_request_line as usize,
                max_fields: settings.limit_request_fields as usize,
                max_field_size: settings.limit_request_field_size as usize,
                leniency: http::Leniency {
                    obsolete_folding: settings.permit_obsolete_folding,
                    strip_header_spaces: settings.strip_header_spaces,
                    unconventional_method: settings.permit_unconventional_http_method,
                    unconventional_version: settings.permit_unconventional_http_version,
                    casefold_method: settings.casefold_http_method,
                },
            },
            keepalive: crate::config::seconds(settings.keepalive),
            max_conns: settings.worker_connections.max(1) as usize,
            date: DateCache::default(),
            signals,
            stopping: false,
            accept_paused: false,
            accept_more: false,
            fresh: None,
            accept_held: false,
            defer: None,
            balance_timer: None,
            sibling_slots: Vec::new(),
            siblings_seen_at: Instant::now(),
            scratch: vec![0u8; 64 * 1024].into_boxed_slice(),
            master: args.master,
            requests: 0,
            scoreboard: args.scoreboard.clone(),
            slot: args.slot,
            max_requests: if settings.max_requests > 0 {
                settings.max_requests + jitter(settings.max_requests_jitter)
            } else {
                0
            },
            max_rss: settings.max_worker_memory * 1024 * 1024,
            next_rss_check: Instant::now(),
            events: Events::with_capacity(256),
            next_sweep: Instant::now() + Duration::from_secs(1),
            edge: EdgeConfig::from_settings(settings),
            h2: super::h2c::H2::from_settings(settings, waker),
            tls: args.tls.clone(),
        })
    }

    /// The loop, run on this thread alone (sync). Returns the exit code.
    pub(super) fn serve(&mut self) -> i32 {
        let code = loop {
            if let Some(code) = self.turn() {
                break code;
            }
        };
        self.exec.close();
        code
    }

    /// One turn of the loop: wait for events (at most 1 s), drive the
    /// connections they concern, take back finished requests, handle
    /// signals, beat, and sweep timed-out connections once a second.
    /// Returns the exit code once the worker is done. The GIL is not held.
    pub(super) fn turn(&mut self) -> Option<i32> {
        let mut timeout = if self.again.is_empty()
            && self.ready.is_empty()
            && !self.accept_more
            && !self.exec.external_wait()
        {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        };
        if let Some((_, at)) = self.fresh {
            let left = FRESH_WAIT.saturating_sub(at.elapsed()) + Duration::from_millis(1);
            timeout = timeout.min(left);
        }
        if let Some(until) = self.defer {
            timeout = timeout.min(until.saturating_duration_since(Instant::now()));
        }
        // The buffer is lent out for the turn (an empty one allocates
        // nothing), so the events can be handled with `self` borrowed.
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                error!("epoll failed: {e}");
                self.events = events;
                return Some(1);
            }
        }
        // The signal pipe is read only when it has something: one system
        // call less per turn.
        let mut signalled = false;
        for ev in events.iter() {
            match ev.token() {
                SIGNAL_TOKEN => signalled = true,
                WAKER_TOKEN => {}
                BALANCE_TOKEN => self.balance_timer_fired(),
                STACKS_TOKEN => {
                    // The thread reads the link from now on (the
                    // descriptor stays open, so it is still ours to drop).
                    if let Some(link) = crate::control::stacks::link_fd() {
                        let _ = self
                            .poll
                            .registry()
                            .deregister(&mut mio::unix::SourceFd(&link.as_raw_fd()));
                    }
                    crate::control::stacks::start();
                }
                Token(t) if t >= CONN_BASE => {
                    let idx = t - CONN_BASE;
                    if let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) {
                        c.drained = false;
                        c.peer_closed |= ev.is_read_closed() || ev.is_error();
                    }
                    self.enqueue(idx);
                }
                Token(t) => {
                    if let Some(l) = self.listeners.get_mut(t - LISTENER_BASE) {
                        l.ready = true;
                    }
                    self.accept(t - LISTENER_BASE, true);
                }
            }
        }
        self.events = events;
        if self
            .fresh
            .is_some_and(|(idx, at)| at.elapsed() >= FRESH_WAIT || self.conns[idx].is_none())
        {
            self.release_fresh();
        }
        let more = std::mem::take(&mut self.accept_more);
        if more || self.defer.is_some() {
            for i in 0..self.listeners.len() {
                if more || self.listeners[i].ready {
                    self.accept(i, true);
                }
            }
            // A wait for a sibling ends with its time, whatever stopped
            // this worker from accepting meanwhile.
            if self.defer.is_some_and(|until| until <= Instant::now()) {
                self.defer = None;
            }
        }
        self.collect_done();
        self.take_internal();
        for idx in std::mem::take(&mut self.again) {
            self.enqueue(idx);
        }
        let served = self.requests;
        while let Some(idx) = self.ready.pop_front() {
            if let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) {
                c.queued = false;
            }
            // Edge-triggered: driving reads and writes whatever can be.
            self.on_conn_event(idx, true, true);
            if !self.exec.concurrent() && self.requests - served >= SYNC_TURN {
                break;
            }
        }
        let signals = if signalled {
            self.signals.drain()
        } else {
            Vec::new()
        };
        for sig in signals {
            match sig {
                Signal::SIGTERM => self.begin_graceful_stop(),
                Signal::SIGINT | Signal::SIGQUIT => return Some(0),
                Signal::SIGUSR1 => {
                    if let Err(e) = crate::log::reopen() {
                        warning!("Cannot reopen log files: {e}");
                    }
                    if let Err(e) = self.app.reopen_logs() {
                        warning!("Cannot reopen the access log: {e}");
                    }
                }
                _ => {}
            }
        }
        if self.accept_paused && !self.stopping && self.clients() < self.max_conns {
            self.accept_paused = false;
            self.publish_conns();
            for i in 0..self.listeners.len() {
                self.accept(i, true);
            }
        }
        // A gthread thread stuck in the app must still trip the master's
        // timeout: the heartbeat is dated no later than the oldest running
        // request's last sign of life, so the master sees the worker
        // silent for as long as that request has been (as the sync worker
        // is while its one request runs).
        match self.exec.oldest_busy() {
            Some(start) => self
                .scoreboard
                .beat_at(self.slot, start.min(sys::monotonic_ms())),
            None => self.scoreboard.beat(self.slot),
        }
        let now = Instant::now();
        if now >= self.next_sweep {
            self.next_sweep = now + Duration::from_secs(1);
            self.sweep(now);
            self.find_siblings();
            // HTTP/2 streams come and go without a connection doing so.
            self.publish_conns();
            if nix::unistd::getppid() != self.master {
                info!("Parent changed, shutting down: {}", std::process::id());
                return Some(0);
            }
        }
        if self.stopping && self.live == 0 && self.h2.idle() {
            return Some(0);
        }
        None
    }

    pub(super) fn begin_graceful_stop(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.defer = None;
        self.scoreboard.stop_accepting(self.slot);
        self.exec.drain();
        self.h2.drain();
        for mut l in self.listeners.drain(..) {
            let _ = match &mut l.sock {
                ListenSock::Tcp(s) => self.poll.registry().deregister(s),
                ListenSock::Unix(s) => self.poll.registry().deregister(s),
            };
        }
        // Idle keep-alive connections are not cut off: a client under load
        // may have its next request on the wire right now, and closing
        // would lose it. Each gets until its keep-alive deadline to send
        // one more request, which is answered with `Connection: close`;
        // the sweep closes the rest.
    }

    /// At the connection limit: close the connection that has waited
    /// longest on an incomplete head or idled on keep-alive (at least
    /// EVICT_AFTER), so clients that trickle bytes cannot lock others out.
    /// Returns whether one was closed.
    pub(super) fn evict_one(&mut self) -> bool {
        let now = Instant::now();
        let victim = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .filter(|(_, c)| c.evictable(now))
            .min_by_key(|(_, c)| (!matches!(c.state, State::Lingering), c.since))
            .map(|(i, _)| i);
        match victim {
            Some(idx) => {
                debug!("Connection limit reached: closing a stalled or idle connection");
                self.close(idx);
                true
            }
            None => false,
        }
    }

    /// Returns the new connection's index (None if it could not be added).
    /// `h2`: an internal connection of the HTTP/2 gateway (no edge
    /// protocols, no TLS: it starts at the request head), with its
    /// client's scheme.
    pub(super) fn add_conn(
        &mut self,
        mut stream: Stream,
        peer: Peer,
        listener: usize,
        h2: Option<bool>,
    ) -> Option<usize> {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if let Err(e) = self.poll.registry().register(
            stream.source(),
            Token(CONN_BASE + idx),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warning!("Cannot register a connection: {e}");
            self.free.push(idx);
            return None;
        }
        let mut conn = Conn {
            stream,
            peer,
            listener,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            state: if h2.is_some() {
                State::Head
            } else {
                self.edge.first_state()
            },
            deadline: Instant::now() + self.head_timeout,
            close_after_write: false,
            eof: false,
            drained: false,
            peer_closed: false,
            parser: http::HeadParser::new(),
            proxied: None,
            uwsgi: None,
            h2,
            since: Instant::now(),
            reused: false,
            dead: false,
            queued: true,
            missed: false,
            continue_pending: false,
            tls: None,
        };
        if let Some(tls) = self
            .tls
            .as_ref()
            .filter(|_| !self.edge.proxy_first() && h2.is_none())
        {
            if let Err(e) = conn.start_tls(tls) {
                warning!("Cannot start TLS on a connection: {e}");
                let _ = self.poll.registry().deregister(conn.stream.source());
                self.free.push(idx);
                return None;
            }
        }
        self.conns[idx] = Some(conn);
        self.live += 1;
        self.publish_conns();
        // The request may already be waiting (edge-triggered: read now).
        // It goes to the front of the queue: a connection that waited in
        // the listen backlog holds the oldest request there is, so serving
        // it first keeps the order first come, first served across the
        // backlog and the connections already open.
        self.ready.push_front(idx);
        Some(idx)
    }

    pub(super) fn close(&mut self, idx: usize) {
        if self.fresh.is_some_and(|(f, _)| f == idx) {
            self.release_fresh();
        }
        if let Some(mut c) = self.conns.get_mut(idx).and_then(Option::take) {
            if c.h2.is_some() {
                self.h2.internal -= 1;
            }
            let _ = self.poll.registry().deregister(c.stream.source());
            self.free.push(idx);
            self.live -= 1;
            self.publish_conns();
        }
    }

    /// Close connections whose deadline passed.
    pub(super) fn sweep(&mut self, now: Instant) {
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_mut() else {
                continue;
            };
            // A running request is bounded by the app and by the I/O
            // timeouts of its thread, not by the loop.
            // The gateway's idle internal connections wait for its next
            // stream; it closes them.
            if c.deadline > now || matches!(c.state, State::Busy) || (c.h2.is_some() && c.idle()) {
                continue;
            }
            // An idle keep-alive connection whose next request is already
            // waiting in the kernel (the loop was busy running the app) is
            // not idle: serve it rather than cut it off.
            if c.idle() && c.has_input() {
                c.deadline = now + self.head_timeout;
                self.again.push(idx);
                continue;
            }
            debug!("Closing a connection that timed out");
            self.close(idx);
        }
    }

    /// Queue connection `idx` to be driven (once, however many events).
    pub(super) fn enqueue(&mut self, idx: usize) {
        if let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) {
            if !c.queued {
                c.queued = true;
                self.ready.push_back(idx);
            }
        }
    }

    pub(super) fn on_conn_event(&mut self, idx: usize, readable: bool, writable: bool) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let next = self.drive(idx, &mut conn, readable, writable);
        self.conns[idx] = Some(conn);
        if matches!(next, Next::Close) {
            self.close(idx);
        }
    }

    /// After a request: recycle the worker when it reached its request
    /// limit or memory limit (it finishes what it has, then exits).
    pub(super) fn after_request(&mut self) {
        self.scoreboard.count_request(self.slot);
        crate::metrics::request_finished();
        if self.stopping {
            return;
        }
        if self.max_requests > 0 && self.requests >= self.max_requests {
            info!("Autorestarting worker after current request.");
            crate::metrics::exiting(crate::metrics::ExitReason::MaxRequests);
            self.begin_graceful_stop();
            return;
        }
        if self.max_rss > 0 {
            let now = Instant::now();
            if now >= self.next_rss_check {
                self.next_rss_check = now + Duration::from_millis(250);
                let rss = current_rss();
                if rss > self.max_rss {
                    info!(
                        "Autorestarting worker: RSS {} MiB exceeds --max-worker-memory {} MiB",
                        rss >> 20,
                        self.max_rss >> 20
                    );
                    crate::metrics::exiting(crate::metrics::ExitReason::Memory);
                    self.begin_graceful_stop();
                }
            }
        }
    }

    /// Take back the requests a concurrent executor finished.
    pub(super) fn collect_done(&mut self) {
        for done in self.exec.take_done() {
            self.returned(done);
        }
    }

    /// A request the loop's own thread ran for a concurrent executor
    /// (`Executor::next_local`) is done.
    pub(super) fn finish_local(&mut self, done: Done) {
        self.exec.local_done();
        self.returned(done);
    }

    /// A Busy connection's request is back: finish it, and give the
    /// connection a turn if it needs one.
    fn returned(&mut self, done: Done) {
        let idx = done.idx;
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        conn.state = State::Head;
        let missed = std::mem::take(&mut conn.missed);
        self.after_request();
        self.finish(&mut conn, done);
        // An event (or turn) dropped while Busy is made up for now; other
        // new input is announced by an event. What else needs a turn:
        // input already buffered (pipelined), a closed peer, a connection
        // to close or linger on.
        let again = missed
            || !conn.rbuf.is_empty()
            || conn.eof
            || conn.close_after_write
            || conn.tls_buffered();
        self.conns[idx] = Some(conn);
        if again {
            self.again.push(idx);
        }
    }
}

impl Loop for Worker {
    fn turn(&mut self) -> Option<i32> {
        Worker::turn(self)
    }

    fn next_local(&mut self) -> Option<Job> {
        self.exec.next_local()
    }

    fn finish_local(&mut self, done: Done) {
        Worker::finish_local(self, done)
    }

    fn fd(&self) -> std::os::fd::RawFd {
        self.poll.as_raw_fd()
    }

    fn pending(&self) -> bool {
        !self.again.is_empty() || !self.ready.is_empty() || self.accept_more
    }

    fn ready(&mut self) {
        self.scoreboard.set_ready(self.slot);
        self.find_siblings();
    }
}
