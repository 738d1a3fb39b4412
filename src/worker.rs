//! A worker process: after fork it embeds CPython, imports the app, and
//! serves HTTP/1.1 from a non-blocking epoll loop (mio). Connections live in
//! Rust; Python runs only once a request has fully arrived (or its body is
//! too large to buffer), and the GIL is not held while the loop waits.
//!
//! The `sync` worker runs the app on the loop's thread, one request at a
//! time, like gunicorn's sync worker; but idle keep-alive connections and
//! slow clients still arriving cost nothing but a slot in the loop.
//!
//! The `gthread` worker keeps the same loop, run by one of `--threads` + 1
//! OS threads, and at most `--threads` of them run the app at once (see
//! `Hub`). A request that arrives while no other runs is run by the loop's
//! own thread, as in sync, with no hand-off; if it lasts more than a
//! millisecond or two, another thread takes the loop over. Requests that
//! arrive while others run go to idle threads. While a request runs its
//! connection is parked in the loop; the thread sends back what is left of
//! the response and the loop writes it, so idle keep-alive connections and
//! slow readers never hold a thread.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::accesslog::{AccessLog, Record};
use crate::config::Settings;
use crate::http::{self, BodyKind, ChunkedDecoder, HttpError, Limits, RequestHead};
use crate::listeners::{Kind, Listener};
use crate::sys::{self, Scoreboard, Signal, SignalQueue};
use crate::timefmt::DateCache;
use crate::wsgi::{self, BodyRest, FileWrapper, Input, Peer, Responder, ServerInfo, Wsgi};
use crate::{debug, error, info, warning};

/// Bodies up to this size are read completely before the app runs.
const BUFFER_BODY: usize = 256 * 1024;
/// Stop reading from a connection whose unprocessed input exceeds this.
const READ_CAP: usize = BUFFER_BODY + 64 * 1024;
/// Don't start the next pipelined request while this much output is queued.
const WRITE_HIGH: usize = 1 << 20;
/// At the connection limit, a connection sitting idle or on an incomplete
/// head for at least this long may be closed to admit a new one.
const EVICT_AFTER: Duration = Duration::from_millis(500);
/// Stack of a gthread worker's threads (CPython's own threads get the
/// system default, 8 MiB on Linux; deep recursion must not crash here).
const THREAD_STACK: usize = 8 << 20;
/// After a response with `Connection: close`, how long unread input is
/// drained so the client sees the response rather than a reset.
const LINGER: Duration = Duration::from_secs(2);
/// Buffers of idle connections larger than this are released, so a burst
/// of large requests does not leave every connection holding its peak.
const KEEP_BUFFER: usize = 64 * 1024;
/// Connections accepted per wake-up. Accepting a whole burst would queue
/// it behind one busy worker while its siblings idle; the rest are taken
/// on the next turn of the loop, or by another worker.
const ACCEPT_BATCH: usize = 16;
/// An unread request body up to this size is read and discarded so the
/// connection can be reused.
const DRAIN_LIMIT: u64 = 1 << 20;

const SIGNAL_TOKEN: Token = Token(0);
const LISTENER_BASE: usize = 1;
const CONN_BASE: usize = 1 << 16;
const WAKER_TOKEN: Token = Token(CONN_BASE - 1);

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn raw(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
    fn source(&mut self) -> &mut dyn mio::event::Source {
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

enum ListenSock {
    Tcp(TcpListener),
    Unix(UnixListener),
}

struct WorkerListener {
    sock: ListenSock,
}

/// Where a connection is in its request/response cycle.
enum State {
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

struct Conn {
    stream: Stream,
    peer: Peer,
    listener: usize,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    state: State,
    deadline: Instant,
    /// Close once `wbuf` is written.
    close_after_write: bool,
    /// The peer closed its side.
    eof: bool,
    /// Remembers how far an incomplete head was already scanned.
    parser: http::HeadParser,
    /// When the connection started waiting for its current head (accept,
    /// or the end of the previous response).
    since: Instant,
    /// A request was served on this connection before.
    reused: bool,
    /// Busy, and an event or a turn for it was dropped meanwhile.
    missed: bool,
}

impl Conn {
    fn pending_write(&self) -> usize {
        self.wbuf.len() - self.wpos
    }
    fn idle(&self) -> bool {
        matches!(self.state, State::Head) && self.rbuf.is_empty() && self.pending_write() == 0
    }
    /// May be closed to make room for a new connection: idle, lingering,
    /// or stuck on an incomplete head for a while.
    fn evictable(&self, now: Instant) -> bool {
        match self.state {
            State::Lingering => true,
            State::Head => {
                self.pending_write() == 0
                    && now.saturating_duration_since(self.since) >= EVICT_AFTER
            }
            _ => false,
        }
    }
}

/// What to do with a connection after driving it.
enum Next {
    Keep,
    Close,
}

pub struct Worker {
    poll: Poll,
    listeners: Vec<WorkerListener>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    live: usize,
    /// Connections with work that no new event will announce.
    again: Vec<usize>,
    shared: Arc<Shared>,
    /// The gthread worker's threads (None: sync, the app runs here).
    pool: Option<Pool>,
    limits: Limits,
    keepalive: Duration,
    /// --header-timeout and --body-timeout.
    head_timeout: Duration,
    stall_timeout: Duration,
    max_conns: usize,
    date: DateCache,
    signals: SignalQueue,
    stopping: bool,
    accept_paused: bool,
    /// The last accept batch was full: try again on the next turn.
    accept_more: bool,
    /// Read buffer shared by every connection of this worker.
    scratch: Box<[u8]>,
    master: nix::unistd::Pid,
    requests: u64,
    scoreboard: Scoreboard,
    slot: usize,
    /// Recycle after this many requests (0: never).
    max_requests: u64,
    /// Recycle once RSS exceeds this many bytes (0: never).
    max_rss: u64,
    next_rss_check: Instant,
    /// When the loop next closes timed-out connections.
    next_sweep: Instant,
    access: Option<AccessLog>,
}

/// Set while the app runs, so INT/QUIT end the worker at once.
static IN_APP: AtomicBool = AtomicBool::new(false);

/// What every request needs, shared with the gthread threads.
struct Shared {
    wsgi: Wsgi,
    /// Indexed like the worker's listeners (which a graceful stop drops).
    servers: Vec<ServerInfo>,
    log_access: bool,
}

/// A request ready for the app.
struct Job {
    idx: usize,
    head: RequestHead,
    input: Input,
    peer: Peer,
    listener: usize,
    responder: Responder,
    streamed: bool,
}

/// What the loop needs for the access log.
struct LogData {
    status: u16,
    headers: Vec<(String, String)>,
    body_bytes: u64,
    duration: Duration,
}

/// A finished request, handed back to the loop.
struct Done {
    idx: usize,
    head: RequestHead,
    peer: Peer,
    streamed: bool,
    /// (output not yet written, keep-alive, client gone, bytes after the
    /// body), or why the app could not run.
    outcome: Result<Outcome, String>,
    log: Option<LogData>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
    /// Threads waiting for a job (no wake-up needed when there are none).
    idle: usize,
    /// The loop's thread left its seat to run a request while no thread
    /// watched the seat: the next thread to look at the queue does.
    want_standby: bool,
}

/// How often a standby thread looks at a vacant loop seat. A request the
/// loop's thread runs itself holds the loop for at most about two ticks;
/// then a standby thread takes the loop over.
const STANDBY_TICK: Duration = Duration::from_millis(1);
/// A standby thread that saw the loop idle (no request started) for this
/// many ticks in a row goes back to sleep; the next request run on the
/// loop's thread wakes one again.
const STANDBY_QUIET: u32 = 1;

/// What the gthread worker's threads share.
struct Mailbox {
    queue: Mutex<Queue>,
    cv: Condvar,
    done: Mutex<Vec<Done>>,
    /// Per thread: monotonic ms when its current request started, 0 idle.
    busy_since: Vec<AtomicU64>,
    /// A wake-up of the loop is already on its way.
    wake_pending: AtomicBool,
    waker: Waker,
    /// The event loop's seat, changed (+1) on every move: even while a
    /// thread holds it (runs the loop), odd while its holder runs a request
    /// itself. Whoever moves it from odd to even (the holder, done with the
    /// request, or a standby thread relieving it) holds it next.
    seat: AtomicU64,
    /// Threads watching the seat.
    standbys: AtomicUsize,
}

impl Mailbox {
    /// Give a finished request back to the loop.
    fn hand_back(&self, done: Done) {
        lock(&self.done).push(done);
        if !self.wake_pending.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.waker.wake() {
                error!("Cannot wake the event loop: {e}");
            }
        }
    }

    /// The holder leaves the seat to run a request. Returns the seat's
    /// value while vacant, for `reclaim`.
    fn vacate(&self) -> u64 {
        let seat = self.seat.fetch_add(1, Ordering::SeqCst) + 1;
        // Pairs with the standby's check after it gives up watching: one
        // of the two sees the other, so a vacant seat is always watched.
        if self.standbys.load(Ordering::SeqCst) == 0 {
            let mut q = lock(&self.queue);
            if !q.want_standby {
                q.want_standby = true;
                if q.idle > 0 {
                    drop(q);
                    self.cv.notify_one();
                }
            }
        }
        seat
    }

    /// Back from the request: take the seat again, unless a standby
    /// thread took it meanwhile.
    fn reclaim(&self, seat: u64) -> bool {
        self.seat
            .compare_exchange(seat, seat + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// The loop's side of the gthread worker's threads.
struct Pool {
    mail: Arc<Mailbox>,
    /// Requests dispatched in this turn and not handed out yet: the loop's
    /// own thread runs them when no other request is running.
    local: VecDeque<Job>,
    /// Requests handed out (or run by the loop's thread) and not yet
    /// returned.
    inflight: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind
    // (a queue, a list of results) that is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// Mailboxes for `threads` threads (started later, by `Hub::start`).
    fn new(threads: usize, waker: Waker) -> Pool {
        Pool {
            mail: Arc::new(Mailbox {
                queue: Mutex::new(Queue::default()),
                cv: Condvar::new(),
                done: Mutex::new(Vec::new()),
                busy_since: (0..threads).map(|_| AtomicU64::new(0)).collect(),
                wake_pending: AtomicBool::new(false),
                waker,
                seat: AtomicU64::new(0),
                standbys: AtomicUsize::new(0),
            }),
            local: VecDeque::new(),
            inflight: 0,
        }
    }

    /// The next request for the loop's own thread: one of this turn's, if
    /// no other request is running (then the GIL is free, and running it
    /// here costs no hand-off). Otherwise this turn's requests go to the
    /// other threads.
    fn next_inline(&mut self) -> Option<Job> {
        if self.local.is_empty() {
            return None;
        }
        if self.inflight == 0 {
            self.inflight = 1;
            IN_APP.store(true, Ordering::SeqCst);
            return self.local.pop_front();
        }
        self.hand_out();
        None
    }

    /// Queue this turn's requests for the threads.
    fn hand_out(&mut self) {
        let n = self.local.len();
        let idle = {
            let mut q = lock(&self.mail.queue);
            q.jobs.extend(self.local.drain(..));
            q.idle
        };
        for _ in 0..n.min(idle) {
            self.mail.cv.notify_one();
        }
        self.inflight += n;
        IN_APP.store(true, Ordering::SeqCst);
    }

    fn take_done(&mut self) -> Vec<Done> {
        // Cleared before taking: a result pushed after the take wakes the
        // loop again.
        self.mail.wake_pending.store(false, Ordering::SeqCst);
        let done = std::mem::take(&mut *lock(&self.mail.done));
        self.inflight -= done.len();
        done
    }

    /// When the longest-running current request started (monotonic ms).
    fn oldest_start(&self) -> Option<u64> {
        self.mail
            .busy_since
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .filter(|&since| since != 0)
            .min()
    }

    /// Let idle threads end (busy ones end after their request).
    fn close(&self) {
        lock(&self.mail.queue).closed = true;
        self.mail.cv.notify_all();
    }
}

/// The gthread worker's `--threads` + 1 threads, sharing the event loop
/// and the requests. One of them holds the loop's seat and runs the loop
/// (`Worker::turn`, GIL released). When a turn leaves requests to run and
/// no other request is running, the holder runs them itself, one by one,
/// as the sync worker would: no hand-off to another thread, no wake-up.
/// While it does, the seat is vacant, and a standby thread looks at it
/// every `STANDBY_TICK`; if the same request still holds it at the next
/// look (it blocks or computes for a millisecond or more), the standby
/// takes the loop over, and the old holder, once its request is done,
/// hands the result back like any thread and joins the others. Requests
/// that arrive while another is running are handed to waiting threads.
/// At most `--threads` run the app at once: one thread always holds the
/// loop or has left it vacant for a request.
struct Hub {
    /// The loop; locked by the seat's holder.
    core: Mutex<Worker>,
    mail: Arc<Mailbox>,
    app: Arc<Shared>,
    exit: Mutex<Option<i32>>,
    exited: Condvar,
}

impl Hub {
    /// Start the threads; the first holds the seat. Called in the worker,
    /// after fork.
    fn start(worker: Worker) -> io::Result<Arc<Hub>> {
        let Some(pool) = &worker.pool else {
            return Err(io::Error::other("not a gthread worker"));
        };
        let hub = Arc::new(Hub {
            mail: pool.mail.clone(),
            app: worker.shared.clone(),
            core: Mutex::new(worker),
            exit: Mutex::new(None),
            exited: Condvar::new(),
        });
        for i in 0..hub.mail.busy_since.len() {
            let hub = hub.clone();
            std::thread::Builder::new()
                .name(format!("ferrocorn-{i}"))
                .stack_size(THREAD_STACK)
                .spawn(move || hub.thread_main(i))?;
        }
        Ok(hub)
    }

    /// Wait until the loop ends; returns the exit code.
    fn wait(&self) -> i32 {
        let mut exit = lock(&self.exit);
        let code = loop {
            if let Some(code) = *exit {
                break code;
            }
            exit = self.exited.wait(exit).unwrap_or_else(|e| e.into_inner());
        };
        drop(exit);
        if let Some(log) = &mut lock(&self.core).access {
            log.flush();
        }
        code
    }

    /// A thread: attached to the interpreter for its whole life (so
    /// `threading.local` and the thread state persist between requests),
    /// but holding the GIL only while it runs a request.
    fn thread_main(&self, i: usize) {
        // A thread that dies would take the loop, or a parked connection,
        // with it: end the worker instead, so the master replaces it.
        struct ExitOnPanic;
        impl Drop for ExitOnPanic {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    error!("A worker thread panicked; exiting");
                    std::process::exit(1);
                }
            }
        }
        let _exit_on_panic = ExitOnPanic;
        Python::attach(|py| {
            py.detach(|| {
                let mut events = Events::with_capacity(256);
                let mut holder = i == 0;
                loop {
                    holder = if holder {
                        match self.lead(i, &mut events) {
                            Some(()) => false,
                            None => return,
                        }
                    } else if self.follow(i) {
                        true
                    } else {
                        return;
                    };
                }
            })
        })
    }

    /// Hold the seat: run the loop, and the requests it leaves when no
    /// other is running. Returns None once the worker is done, Some when
    /// this thread lost the seat while running a request.
    fn lead(&self, i: usize, events: &mut Events) -> Option<()> {
        let mut w = lock(&self.core);
        loop {
            if let Some(job) = w.pool.as_mut().and_then(Pool::next_inline) {
                drop(w);
                let seat = self.mail.vacate();
                let done = self.run(i, job, false);
                if !self.mail.reclaim(seat) {
                    if let Some(done) = done {
                        self.mail.hand_back(done);
                    }
                    return Some(());
                }
                w = lock(&self.core);
                if let Some(done) = done {
                    w.finish_inline(done);
                }
                continue;
            }
            if let Some(code) = w.turn(events) {
                if let Some(pool) = &w.pool {
                    pool.close();
                }
                drop(w);
                *lock(&self.exit) = Some(code);
                self.exited.notify_all();
                return None;
            }
        }
    }

    /// Wait for requests to run, or for the seat to take over. Returns
    /// true when this thread now holds the seat, false once the pool
    /// closed.
    fn follow(&self, i: usize) -> bool {
        let m = &*self.mail;
        let mut q = lock(&m.queue);
        // While watching: the seat at the last look, and for how many
        // looks in a row the loop was idle.
        let mut watch: Option<(u64, u32)> = None;
        loop {
            if let Some(job) = q.jobs.pop_front() {
                if watch.take().is_some() {
                    m.standbys.fetch_sub(1, Ordering::SeqCst);
                }
                drop(q);
                self.run(i, job, true);
                q = lock(&m.queue);
                continue;
            }
            if q.closed {
                if watch.is_some() {
                    m.standbys.fetch_sub(1, Ordering::SeqCst);
                }
                return false;
            }
            if watch.is_none() && q.want_standby {
                q.want_standby = false;
                m.standbys.fetch_add(1, Ordering::SeqCst);
                // Usually the vacancy that asked for a watch is still open.
                watch = Some((m.seat.load(Ordering::SeqCst), 0));
            }
            let Some((last, quiet)) = watch else {
                q.idle += 1;
                q = m.cv.wait(q).unwrap_or_else(|e| e.into_inner());
                q.idle -= 1;
                continue;
            };
            q =
                m.cv.wait_timeout(q, STANDBY_TICK)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            let seat = m.seat.load(Ordering::SeqCst);
            if seat == last && seat % 2 == 1 && m.reclaim(seat) {
                // The same request has held the loop since the last look.
                m.standbys.fetch_sub(1, Ordering::SeqCst);
                return true;
            }
            // Idle: the seat is held, and at most the vacancy open at the
            // last look has ended since (no request started since).
            let idle = seat % 2 == 0 && seat.wrapping_sub(last) <= 1;
            let quiet = if idle { quiet + 1 } else { 0 };
            watch = Some((seat, quiet));
            if quiet >= STANDBY_QUIET {
                m.standbys.fetch_sub(1, Ordering::SeqCst);
                let now = m.seat.load(Ordering::SeqCst);
                if now == seat {
                    watch = None;
                } else {
                    // The holder left the seat just now and may have seen
                    // this thread still watching: keep watching.
                    m.standbys.fetch_add(1, Ordering::SeqCst);
                    watch = Some((now, 0));
                }
            }
        }
    }

    /// Run `job` with the GIL held. A thread of the pool (`queued`) hands
    /// the result back itself and takes the next queued job, if there is
    /// one, without releasing the GIL in between (the queue lock is never
    /// held by anyone waiting for the GIL, so taking it here cannot
    /// deadlock); the loop's thread returns it.
    fn run(&self, i: usize, job: Job, queued: bool) -> Option<Done> {
        let busy = &self.mail.busy_since[i];
        Python::attach(|py| {
            let mut job = job;
            loop {
                busy.store(sys::monotonic_ms().max(1), Ordering::Relaxed);
                let done = run_job(py, &self.app, job);
                busy.store(0, Ordering::Relaxed);
                if !queued {
                    return Some(done);
                }
                self.mail.hand_back(done);
                match lock(&self.mail.queue).jobs.pop_front() {
                    Some(next) => job = next,
                    None => return None,
                }
            }
        })
    }
}

/// Run the app for one request (with the GIL held) and collect its
/// response: what was not written yet comes back in the outcome.
fn run_job(py: Python<'_>, shared: &Shared, job: Job) -> Done {
    let Job {
        idx,
        head,
        input,
        peer,
        listener,
        responder,
        streamed,
    } = job;
    let started = Instant::now();
    let no_server = ServerInfo::default();
    let server = shared.servers.get(listener).unwrap_or(&no_server);
    let wsgi = &shared.wsgi;
    let mut log = None;
    let outcome = (|| -> PyResult<Outcome> {
        let input = Bound::new(py, input)?;
        let responder = Bound::new(py, responder)?;
        let result = wsgi
            .environ(py, &head, &peer, server, input.clone())
            .and_then(|environ| wsgi.app.bind(py).call1((environ, &responder)));
        let res = match result {
            Ok(iterable) => write_iterable(py, &responder, &iterable),
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            error!(
                "Error handling request {}\n{}",
                head.target,
                wsgi::format_exception(py, &e).trim_end()
            );
            responder
                .borrow_mut()
                .error_response("500 Internal Server Error", "Internal Server Error\n");
        }
        let mut r = responder.borrow_mut();
        r.deactivate();
        let leftover = input.borrow_mut().finish(py, DRAIN_LIMIT);
        if shared.log_access {
            log = Some(LogData {
                status: r.status_code,
                headers: r.headers().to_vec(),
                body_bytes: r.body_bytes,
                duration: started.elapsed(),
            });
        }
        Ok((std::mem::take(&mut r.out), r.keep_alive, r.broken, leftover))
    })();
    Done {
        idx,
        head,
        peer,
        streamed,
        outcome: outcome.map_err(|e| e.to_string()),
        log,
    }
}

/// What the master hands a freshly forked worker.
pub struct WorkerArgs<'a> {
    pub settings: &'a Settings,
    pub listeners: &'a [Listener],
    pub master: nix::unistd::Pid,
    pub scoreboard: &'a Scoreboard,
    pub slot: usize,
    /// The app, when the master imported it (`--preload`).
    pub preloaded: Option<Py<PyAny>>,
}

/// Entry point of a freshly forked worker. Returns the process exit code.
pub fn run(mut args: WorkerArgs<'_>) -> i32 {
    // After fork, in the worker: nothing here may touch the master's state.
    let settings = args.settings;
    args.scoreboard.beat(args.slot);
    let signals = match SignalQueue::install(&[
        Signal::SIGQUIT,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGUSR1,
    ]) {
        Ok(s) => s,
        Err(e) => {
            error!("Cannot install signal handlers: {e}");
            return wsgi::WORKER_BOOT_ERROR;
        }
    };
    for sig in [Signal::SIGINT, Signal::SIGQUIT] {
        if let Err(e) = sys::exit_now_when_busy(sig, &IN_APP) {
            error!("Cannot install signal handlers: {e}");
            return wsgi::WORKER_BOOT_ERROR;
        }
    }
    for sig in [
        Signal::SIGHUP,
        Signal::SIGCHLD,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGWINCH,
        Signal::SIGUSR2,
    ] {
        sys::default_signal(sig);
    }
    sys::unblock_all_signals();
    // SIGABRT is the master's timeout signal: faulthandler (armed when
    // Python starts) writes the Python stacks to the error log and the
    // worker dies. That abort is deliberate, so it leaves no core file.
    if let Ok((_, hard)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE)
    {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, hard);
    }
    info!("Booting worker with pid: {}", std::process::id());
    if settings.capture_output {
        crate::log::capture_stdio();
    }

    let app = match args.preloaded.take() {
        Some(app) => Ok(app),
        None => {
            let cwd = std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| ".".into());
            wsgi::load_app(&wsgi::PySetup {
                cwd,
                pythonpath: settings.pythonpath.as_deref().unwrap_or(""),
                virtualenv: settings.virtualenv.as_deref(),
                app: settings.app(),
            })
        }
    };
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            error!("Exception in worker process:\n{}", e.to_string().trim_end());
            return e.exit_code();
        }
    };
    let mut worker = match Worker::new(args, app, signals) {
        Ok(w) => w,
        Err(e) => {
            error!("Worker failed to start: {e}");
            return wsgi::WORKER_BOOT_ERROR;
        }
    };
    let (scoreboard, slot) = (worker.scoreboard.clone(), worker.slot);
    let code = if worker.pool.is_some() {
        let hub = match Hub::start(worker) {
            Ok(hub) => hub,
            Err(e) => {
                error!("Worker failed to start: {e}");
                return wsgi::WORKER_BOOT_ERROR;
            }
        };
        scoreboard.set_ready(slot);
        hub.wait()
    } else {
        scoreboard.set_ready(slot);
        let code = worker.serve();
        if let Some(log) = &mut worker.access {
            log.flush();
        }
        code
    };
    Python::attach(|py| {
        // Let the app's atexit handlers run and its print() output out.
        let _ = py.run(
            c"import atexit, sys\natexit._run_exitfuncs()\nfor s in (sys.stdout, sys.stderr):\n    try:\n        s.flush()\n    except Exception:\n        pass\n",
            None,
            None,
        );
    });
    info!("Worker exiting (pid: {})", std::process::id());
    code
}

impl Worker {
    fn new(args: WorkerArgs<'_>, app: Py<PyAny>, signals: SignalQueue) -> io::Result<Worker> {
        let settings = args.settings;
        let listeners = args.listeners;
        let poll = Poll::new()?;
        let sigfd = signals.fd().as_raw_fd();
        poll.registry().register(
            &mut mio::unix::SourceFd(&sigfd),
            SIGNAL_TOKEN,
            Interest::READABLE,
        )?;
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
            servers.push(ServerInfo { name, port });
            wl.push(WorkerListener { sock });
        }
        let access = match &settings.accesslog {
            Some(path) => {
                let format = crate::accesslog::Format::parse(&settings.access_log_format)
                    .map_err(io::Error::other)?;
                Some(AccessLog::open(path, format)?)
            }
            None => None,
        };
        let threaded = settings.worker_class == "gthread";
        let wsgi = Python::attach(|py| {
            Wsgi::new(
                py,
                app,
                settings.workers > 1,
                threaded,
                &settings.forwarded_allow_ips,
            )
        })
        .map_err(|e| io::Error::other(e.to_string()))?;
        let shared = Arc::new(Shared {
            wsgi,
            servers,
            log_access: access.is_some(),
        });
        let pool = if threaded {
            let waker = Waker::new(poll.registry(), WAKER_TOKEN)?;
            // One thread more than --threads: one always holds the loop.
            Some(Pool::new(settings.threads.max(1) as usize + 1, waker))
        } else {
            None
        };
        Ok(Worker {
            poll,
            listeners: wl,
            conns: Vec::new(),
            free: Vec::new(),
            live: 0,
            again: Vec::new(),
            shared,
            pool,
            head_timeout: crate::config::seconds(settings.header_timeout),
            stall_timeout: crate::config::seconds(settings.body_timeout),
            limits: Limits {
                max_line: settings.limit_request_line as usize,
                max_fields: settings.limit_request_fields as usize,
                max_field_size: settings.limit_request_field_size as usize,
            },
            keepalive: crate::config::seconds(settings.keepalive),
            max_conns: settings.worker_connections.max(1) as usize,
            date: DateCache::default(),
            signals,
            stopping: false,
            accept_paused: false,
            accept_more: false,
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
            next_sweep: Instant::now() + Duration::from_secs(1),
            access,
        })
    }

    /// The sync worker's loop. Returns the exit code.
    fn serve(&mut self) -> i32 {
        let mut events = Events::with_capacity(256);
        loop {
            if let Some(code) = self.turn(&mut events) {
                return code;
            }
        }
    }

    /// One turn of the loop: wait for events (up to 1 s), handle them and
    /// the housekeeping. Returns the exit code once the worker is done.
    fn turn(&mut self, events: &mut Events) -> Option<i32> {
        let timeout = if self.again.is_empty() && !self.accept_more {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        };
        if let Err(e) = self.poll.poll(events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                error!("epoll failed: {e}");
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
                Token(t) if t >= CONN_BASE => self.on_conn_event(
                    t - CONN_BASE,
                    ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    ev.is_writable(),
                ),
                Token(t) => self.accept(t - LISTENER_BASE),
            }
        }
        if std::mem::take(&mut self.accept_more) {
            for i in 0..self.listeners.len() {
                self.accept(i);
            }
        }
        self.collect_done();
        for idx in std::mem::take(&mut self.again) {
            self.on_conn_event(idx, true, true);
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
                    if let Some(log) = &mut self.access {
                        if let Err(e) = log.reopen() {
                            warning!("Cannot reopen the access log: {e}");
                        }
                    }
                }
                _ => {}
            }
        }
        if self.accept_paused && !self.stopping && self.live < self.max_conns {
            self.accept_paused = false;
            for i in 0..self.listeners.len() {
                self.accept(i);
            }
        }
        // A gthread thread stuck in the app must still trip the
        // master's timeout: the heartbeat is dated no later than the
        // start of the oldest running request, so the master sees the
        // worker silent for as long as that request has run (as the
        // sync worker is while its one request runs).
        match self.pool.as_ref().and_then(Pool::oldest_start) {
            Some(start) => self
                .scoreboard
                .beat_at(self.slot, start.min(sys::monotonic_ms())),
            None => self.scoreboard.beat(self.slot),
        }
        let now = Instant::now();
        if now >= self.next_sweep {
            self.next_sweep = now + Duration::from_secs(1);
            self.sweep(now);
            if let Some(log) = &mut self.access {
                log.flush();
            }
            if nix::unistd::getppid() != self.master {
                info!("Parent changed, shutting down: {}", std::process::id());
                return Some(0);
            }
        }
        if self.stopping && self.live == 0 {
            return Some(0);
        }
        None
    }

    fn begin_graceful_stop(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
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

    fn accept(&mut self, li: usize) {
        if self.stopping {
            return;
        }
        for _ in 0..ACCEPT_BATCH {
            if self.live >= self.max_conns && !self.evict_one() {
                self.accept_paused = true;
                return;
            }
            let Some(l) = self.listeners.get(li) else {
                return;
            };
            let accepted = match &l.sock {
                ListenSock::Tcp(s) => s.accept().map(|(st, addr)| {
                    let _ = st.set_nodelay(true);
                    (Stream::Tcp(st), Peer::Tcp(addr))
                }),
                ListenSock::Unix(s) => s.accept().map(|(st, _)| (Stream::Unix(st), Peer::Unix)),
            };
            match accepted {
                Ok((stream, peer)) => self.add_conn(stream, peer, li),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: back off until a connection closes.
                    warning!("accept() failed: {e}");
                    self.accept_paused = true;
                    return;
                }
            }
        }
        // The batch is used up and more may be waiting.
        self.accept_more = true;
    }

    /// At the connection limit: close the connection that has waited
    /// longest on an incomplete head or idled on keep-alive (at least
    /// EVICT_AFTER), so clients that trickle bytes cannot lock others out.
    /// Returns whether one was closed.
    fn evict_one(&mut self) -> bool {
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

    fn add_conn(&mut self, mut stream: Stream, peer: Peer, listener: usize) {
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
            return;
        }
        self.conns[idx] = Some(Conn {
            stream,
            peer,
            listener,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            state: State::Head,
            deadline: Instant::now() + self.head_timeout,
            close_after_write: false,
            eof: false,
            parser: http::HeadParser::new(),
            since: Instant::now(),
            reused: false,
            missed: false,
        });
        self.live += 1;
        // The request may already be waiting (edge-triggered: read now).
        self.again.push(idx);
    }

    fn close(&mut self, idx: usize) {
        if let Some(mut c) = self.conns.get_mut(idx).and_then(Option::take) {
            let _ = self.poll.registry().deregister(c.stream.source());
            self.free.push(idx);
            self.live -= 1;
        }
    }

    /// Close connections whose deadline passed.
    fn sweep(&mut self, now: Instant) {
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_mut() else {
                continue;
            };
            // A running request is bounded by the app and by the I/O
            // timeouts of its thread, not by the loop.
            if c.deadline > now || matches!(c.state, State::Busy) {
                continue;
            }
            // An idle keep-alive connection whose next request is already
            // waiting in the kernel (the loop was busy running the app) is
            // not idle: serve it rather than cut it off.
            if c.idle() && has_pending_input(c.stream.raw()) {
                c.deadline = now + self.head_timeout;
                self.again.push(idx);
                continue;
            }
            debug!("Closing a connection that timed out");
            self.close(idx);
        }
    }

    fn on_conn_event(&mut self, idx: usize, readable: bool, writable: bool) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let next = self.drive(idx, &mut conn, readable, writable);
        self.conns[idx] = Some(conn);
        if matches!(next, Next::Close) {
            self.close(idx);
        }
    }

    /// Read what is available into `rbuf`, through the worker's scratch
    /// buffer (allocated once, so no per-read zeroing). Returns false on a
    /// hard error.
    fn fill(conn: &mut Conn, scratch: &mut [u8]) -> bool {
        while conn.rbuf.len() < READ_CAP && !conn.eof {
            match conn.stream.read(scratch) {
                Ok(0) => conn.eof = true,
                Ok(n) => conn.rbuf.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Write queued output; progress extends the deadline by `stall`.
    /// Returns false on a hard error.
    fn flush(conn: &mut Conn, stall: Duration) -> bool {
        while conn.wpos < conn.wbuf.len() {
            match conn.stream.write(&conn.wbuf[conn.wpos..]) {
                Ok(0) => return false,
                Ok(n) => {
                    conn.wpos += n;
                    conn.deadline = Instant::now() + stall;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if conn.wbuf.capacity() > KEEP_BUFFER {
            conn.wbuf = Vec::new();
        } else {
            conn.wbuf.clear();
        }
        conn.wpos = 0;
        true
    }

    fn drive(&mut self, idx: usize, conn: &mut Conn, readable: bool, writable: bool) -> Next {
        if matches!(conn.state, State::Busy) {
            // A thread owns the socket; it is driven again once the
            // request comes back.
            conn.missed = true;
            return Next::Keep;
        }
        if (writable || conn.pending_write() > 0) && !Self::flush(conn, self.stall_timeout) {
            return Next::Close;
        }
        let before = conn.rbuf.len();
        if readable && !Self::fill(conn, &mut self.scratch) {
            return Next::Close;
        }
        if conn.rbuf.len() > before {
            match conn.state {
                // A new request head on a reused connection starts: it gets
                // --header-timeout in total, however slowly it trickles in.
                // (A new connection's first head is timed from accept.)
                State::Head if before == 0 && conn.reused => {
                    conn.deadline = Instant::now() + self.head_timeout;
                    conn.since = Instant::now();
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
            if conn.close_after_write {
                if conn.pending_write() > 0 {
                    return Next::Keep;
                }
                if !matches!(conn.state, State::Lingering) {
                    conn.stream.shutdown_write();
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
                            if head.expect_continue
                                && head.minor_version >= 1
                                && head.body != BodyKind::None
                            {
                                conn.wbuf
                                    .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                                if !Self::flush(conn, self.stall_timeout) {
                                    return Next::Close;
                                }
                            }
                            let rest = match head.body {
                                BodyKind::None => {
                                    self.dispatch(
                                        idx,
                                        conn,
                                        head,
                                        Input::buffered(Vec::new()),
                                        false,
                                    );
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
                    let complete = match &rest {
                        BodyRest::Length(n) => *n == 0,
                        BodyRest::Chunked(d) => d.is_finished(),
                    };
                    if complete {
                        self.dispatch(idx, conn, *head, Input::buffered(body), false);
                    } else if body.len() >= BUFFER_BODY || conn.rbuf.len() >= READ_CAP {
                        let raw = std::mem::take(&mut conn.rbuf);
                        let input = Input::streaming(
                            body,
                            raw,
                            rest,
                            conn.stream.raw(),
                            self.stall_timeout,
                        );
                        self.dispatch(idx, conn, *head, input, true);
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
    fn reject(&mut self, conn: &mut Conn, e: &HttpError) {
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
        let _ = Self::flush(conn, self.stall_timeout);
    }

    /// After a request: recycle the worker when it reached its request
    /// limit or memory limit (it finishes what it has, then exits).
    fn after_request(&mut self) {
        self.scoreboard.count_request(self.slot);
        if self.stopping {
            return;
        }
        if self.max_requests > 0 && self.requests >= self.max_requests {
            info!("Autorestarting worker after current request.");
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
                    self.begin_graceful_stop();
                }
            }
        }
    }

    /// Hand one request to the app: run it here (sync), or give it to a
    /// thread (gthread) and park the connection until it comes back.
    fn dispatch(
        &mut self,
        idx: usize,
        conn: &mut Conn,
        head: RequestHead,
        input: Input,
        streamed: bool,
    ) {
        self.requests += 1;
        let keep_alive = head.keep_alive && !self.stopping && !self.keepalive.is_zero();
        let is_head = head.method == "HEAD";
        // Output still queued from a pipelined predecessor goes first.
        let pending = if conn.wpos == 0 {
            std::mem::take(&mut conn.wbuf)
        } else {
            let v = conn.wbuf[conn.wpos..].to_vec();
            conn.wbuf.clear();
            v
        };
        conn.wpos = 0;
        let responder = Responder::new(
            conn.stream.raw(),
            head.minor_version,
            is_head,
            keep_alive,
            self.date.get(),
            pending,
            self.stall_timeout,
        );
        let job = Job {
            idx,
            head,
            input,
            peer: conn.peer.clone(),
            listener: conn.listener,
            responder,
            streamed,
        };
        if let Some(pool) = &mut self.pool {
            // The connection (and so its descriptor, which the thread
            // uses) stays open while Busy: nothing closes a Busy one.
            conn.state = State::Busy;
            pool.local.push_back(job);
            return;
        }
        let shared = &self.shared;
        let done = Python::attach(|py| {
            IN_APP.store(true, Ordering::SeqCst);
            let done = run_job(py, shared, job);
            IN_APP.store(false, Ordering::SeqCst);
            done
        });
        self.after_request();
        self.finish(conn, done);
    }

    /// Take back the requests the gthread threads finished.
    fn collect_done(&mut self) {
        let Some(pool) = &mut self.pool else {
            return;
        };
        let finished = pool.take_done();
        if pool.inflight == 0 {
            IN_APP.store(false, Ordering::SeqCst);
        }
        for done in finished {
            self.returned(done);
        }
    }

    /// Take back a request the loop's thread ran itself (gthread).
    fn finish_inline(&mut self, done: Done) {
        if let Some(pool) = &mut self.pool {
            pool.inflight -= 1;
            if pool.inflight == 0 {
                IN_APP.store(false, Ordering::SeqCst);
            }
        }
        self.returned(done);
    }

    /// A Busy connection's request is back: finish it, and give the
    /// connection a turn if it needs one.
    fn returned(&mut self, done: Done) {
        let (idx, streamed) = (done.idx, done.streamed);
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        conn.state = State::Head;
        let missed = std::mem::take(&mut conn.missed);
        self.after_request();
        self.finish(&mut conn, done);
        // An event (or turn) dropped while Busy is made up for now. Other
        // new input is announced by an event. What else needs a turn:
        // input already buffered, input a streamed body's reader left in
        // the kernel, a closed peer, a connection to close.
        let again =
            missed || streamed || !conn.rbuf.is_empty() || conn.eof || conn.close_after_write;
        self.conns[idx] = Some(conn);
        if again {
            self.again.push(idx);
        }
    }

    /// Queue what is left of a finished request's response and decide
    /// what happens to the connection.
    fn finish(&mut self, conn: &mut Conn, done: Done) {
        let Done {
            head,
            peer,
            streamed,
            outcome,
            log,
            ..
        } = done;
        if let (Some(access), Some(l)) = (&mut self.access, log) {
            let remote = match &peer {
                Peer::Tcp(a) => a.ip().to_string(),
                Peer::Unix => String::new(),
            };
            access.log(&Record {
                remote: &remote,
                method: &head.method,
                target: &head.target,
                path: &head.path,
                query: &head.query,
                minor_version: head.minor_version,
                req_headers: &head.headers,
                status: l.status,
                resp_headers: &l.headers,
                body_bytes: l.body_bytes,
                duration: l.duration,
            });
        }
        conn.reused = true;
        conn.since = Instant::now();
        match outcome {
            Ok((out, keep, broken, leftover)) => {
                conn.wbuf = out;
                if broken {
                    conn.wbuf.clear();
                    conn.eof = true;
                    conn.close_after_write = true;
                    return;
                }
                let reusable = match leftover {
                    Some(rest) => {
                        if streamed {
                            conn.rbuf = rest;
                        }
                        true
                    }
                    None => false,
                };
                if !keep || !reusable {
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
        conn.deadline = Instant::now() + self.stall_timeout;
        let _ = Self::flush(conn, self.stall_timeout);
        if conn.pending_write() == 0 && !conn.close_after_write {
            conn.deadline = Instant::now() + self.keepalive;
        }
    }
}

/// Send the app's response iterable, calling its `close()` in every case.
fn write_iterable(
    py: Python<'_>,
    responder: &Bound<'_, Responder>,
    iterable: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let res = send_iterable(py, responder, iterable);
    let closed = match iterable.getattr(pyo3::intern!(py, "close")) {
        Ok(close) => close.call0().map(|_| ()),
        Err(_) => Ok(()),
    };
    res.and(closed)
}

fn send_iterable(
    py: Python<'_>,
    responder: &Bound<'_, Responder>,
    iterable: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if let Ok(fw) = iterable.cast::<FileWrapper>() {
        if send_file(py, responder, &fw.borrow())? {
            return responder.borrow_mut().finish(py);
        }
    }
    let not_bytes = |item: &Bound<'_, PyAny>| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "the response iterable must yield bytes, not {}",
            item.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    };
    if let Ok(list) = iterable.cast::<PyList>() {
        let single = list.len() == 1;
        for item in list.iter() {
            let b = item.cast::<PyBytes>().map_err(|_| not_bytes(&item))?;
            let data = b.as_bytes();
            let total = single.then_some(data.len() as u64);
            let mut r = responder.borrow_mut();
            r.send_body(py, data, total)?;
            if r.broken {
                return Ok(());
            }
        }
    } else {
        for item in iterable.try_iter()? {
            let item = item?;
            let b = item.cast::<PyBytes>().map_err(|_| not_bytes(&item))?;
            let mut r = responder.borrow_mut();
            r.send_body(py, b.as_bytes(), None)?;
            if r.broken {
                return Ok(());
            }
        }
    }
    responder.borrow_mut().finish(py)
}

/// The sendfile(2) path for `wsgi.file_wrapper` around a regular file.
/// Returns false when the object is not a real file (then it is iterated).
fn send_file(py: Python<'_>, responder: &Bound<'_, Responder>, fw: &FileWrapper) -> PyResult<bool> {
    let f = fw.filelike.bind(py);
    let Ok(fileno) = f
        .call_method0(pyo3::intern!(py, "fileno"))
        .and_then(|n| n.extract::<RawFd>())
    else {
        return Ok(false);
    };
    // SAFETY: the descriptor belongs to the Python file object, which the
    // FileWrapper keeps alive for the whole duration of this call.
    let file = unsafe { std::os::fd::BorrowedFd::borrow_raw(fileno) };
    let Ok(st) = nix::sys::stat::fstat(file) else {
        return Ok(false);
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(false);
    }
    let offset = match f
        .call_method0(pyo3::intern!(py, "tell"))
        .and_then(|t| t.extract::<i64>())
    {
        Ok(o) => o,
        Err(_) => nix::unistd::lseek(file, 0, nix::unistd::Whence::SeekCur).unwrap_or(0),
    };
    let size = (st.st_size - offset).max(0) as u64;
    responder.borrow_mut().send_file(py, file, offset, size)?;
    Ok(true)
}

/// A finished request: (output, keep-alive, client gone, bytes after the body).
type Outcome = (Vec<u8>, bool, bool, Option<Vec<u8>>);

/// A random number in 0..=max (for --max-requests-jitter).
fn jitter(max: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    if max == 0 {
        return 0;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() % (max + 1)
}

/// Resident set size of this process in bytes.
fn current_rss() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    pages * page
}

/// Whether bytes are waiting to be read on `fd` (without consuming them).
fn has_pending_input(fd: RawFd) -> bool {
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
