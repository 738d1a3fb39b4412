//! The seams between the connection engine and the code that runs a
//! request: an [`App`] interface turns a [`Job`] into a response (WSGI
//! today, ASGI next), and an [`Executor`] decides where and when that runs
//! (inline on the loop's thread for `sync`, a thread pool for `gthread`,
//! greenlets for `gevent` and `eventlet`, an asyncio loop for ASGI). What
//! crosses them:
//!
//! - engine → executor → app: a [`Job`]: the owned request head, its body
//!   ([`Body`]: complete, or the rest still on the socket), the peer, and a
//!   [`Reply`] saying how the response is to be written (descriptor,
//!   HTTP version, HEAD, keep-alive, output still queued before it);
//! - app → executor → engine: a [`Done`]: what the app left unwritten,
//!   whether the connection can carry another request, the bytes after the
//!   body, or that the app took the connection over.
//!
//! An executor that runs requests while the loop goes on hands them back
//! through [`Executor::take_done`] and wakes the loop through its `Waker`.
//! One whose threads take turns running the loop itself (gthread: the
//! loop's thread runs a request when no other is running, so a fast app
//! pays no hand-off) provides a [`Runner`], which drives the engine
//! through the [`Loop`] trait.

pub mod asyncio;
pub mod green;
mod inline;
mod threads;

pub use asyncio::Asyncio;
pub use green::Green;
pub use inline::Inline;
pub use threads::Threads;

use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;

use crate::http::{Body, RequestHead};
use crate::wsgi::Peer;

/// How the response to a request is to be written.
pub struct Reply {
    /// The connection (its descriptor open for as long as the request
    /// runs), plain or TLS.
    pub wire: crate::tls::Wire,
    /// HTTP/1.`minor` of the request.
    pub minor: u8,
    pub is_head: bool,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
    /// The `Date` header value for this second.
    pub date: String,
    /// Output of a pipelined predecessor still to be written first.
    pub pending: Vec<u8>,
    /// Longest wait for the client to accept output.
    pub timeout: Duration,
}

/// A request ready for the app.
pub struct Job {
    /// The connection's slot in the engine.
    pub idx: usize,
    pub head: RequestHead,
    pub body: Body,
    pub peer: Peer,
    /// Index of the listener it arrived on.
    pub listener: usize,
    pub reply: Reply,
    /// Bytes read past the request head (a pipelined request, or what a
    /// client sends right after an upgrade request).
    pub early: Vec<u8>,
    /// `Expect: 100-continue` is still to be answered, when the app first
    /// asks for the body (`Executor::defers_continue`).
    pub continue_pending: bool,
    /// What the connection's edge protocols said (PROXY header, uwsgi).
    pub edge: Edge,
    /// Since when the request has waited: the connection's accept, or on a
    /// reused connection the request's first byte (or the end of the
    /// previous response, when it was pipelined). The queue time is from
    /// here to the app being called.
    pub received: std::time::Instant,
}

/// What a request's connection said beyond HTTP/1.1 (`worker/edge.rs`):
/// the PROXY header it began with, a uwsgi request's vars, and whether it
/// is an HTTP/2 stream. All None unless `--proxy-protocol` /
/// `--protocol uwsgi` / HTTP/2 are on.
#[derive(Debug, Clone, Default)]
pub struct Edge {
    pub proxy: Option<std::sync::Arc<crate::proxy::Header>>,
    pub uwsgi: Option<Box<crate::uwsgi::Vars>>,
    /// The request is an HTTP/2 stream (through the gateway, `gateway/`);
    /// true when its `:scheme` was https.
    pub http2: Option<bool>,
    /// The connection is TLS (`--certfile`).
    pub tls: bool,
}

impl Edge {
    /// The client as the app is to see it (REMOTE_ADDR and REMOTE_PORT,
    /// the ASGI `client`, the access log's `h`): the uwsgi vars'
    /// `REMOTE_ADDR`/`REMOTE_PORT`, else a PROXY header's source, else
    /// the connection's peer. Trust in forwarded headers stays with the
    /// peer itself (the proxy).
    pub fn client(&self, peer: &Peer) -> Peer {
        if let Some(a) = self.uwsgi.as_ref().and_then(|v| v.remote()) {
            return Peer::Tcp(a);
        }
        match self.proxy.as_ref().and_then(|h| h.source) {
            Some(a) => Peer::Tcp(a),
            None => peer.clone(),
        }
    }

    /// The client spoke HTTPS: to us (TLS), or to the proxy, which said
    /// so (uwsgi's `HTTPS`, `UWSGI_SCHEME`).
    pub fn https(&self) -> bool {
        self.tls || self.uwsgi.as_ref().is_some_and(|v| v.https()) || self.http2 == Some(true)
    }
}

/// What became of a finished request's response and connection.
pub struct Outcome {
    /// Output the loop still has to write.
    pub out: Vec<u8>,
    pub keep_alive: bool,
    /// The client went away.
    pub broken: bool,
    /// The app took the connection over (`gunicorn.socket`).
    pub taken: bool,
    /// The bytes after the body (the connection's next input), or None
    /// when the connection cannot be reused.
    pub leftover: Option<Vec<u8>>,
}

/// A finished request, handed back to the engine.
pub struct Done {
    pub idx: usize,
    /// What became of the response, or why the app could not run.
    pub outcome: Result<Outcome, String>,
}

/// The log files an app interface writes (the access log).
pub trait ReopenLogs: Send + Sync {
    /// USR1: reopen them.
    fn reopen_logs(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An app interface that runs one request at a time on a thread (with the
/// GIL held), writing what the socket takes at once: WSGI. (ASGI runs on
/// the asyncio executor instead: `asyncio::AsyncInterface`.)
pub trait App: ReopenLogs {
    fn call(&self, py: Python<'_>, job: Job) -> Done;
}

/// Where requests run.
pub trait Executor: Send {
    /// Run `job`, or queue it: Some(done) when it ran to completion here
    /// (inline), None when it comes back through `take_done`.
    fn submit(&mut self, job: Job) -> Option<Done>;
    /// Requests that finished since the last call.
    fn take_done(&mut self) -> Vec<Done> {
        Vec::new()
    }
    /// Requests run while the loop goes on (the loop then accepts in
    /// batches and never waits for a request).
    fn concurrent(&self) -> bool;
    /// The oldest running request's last sign of life (monotonic ms), for
    /// the heartbeat of a concurrent executor.
    fn oldest_busy(&self) -> Option<u64> {
        None
    }
    /// The worker is done: let the threads end once idle.
    fn close(&self) {}
    /// A request submitted in this turn that the caller (the thread
    /// running the loop) is to run itself now, having left the loop for
    /// another thread to take over if it lasts. None: nothing to run here.
    fn next_local(&mut self) -> Option<Job> {
        None
    }
    /// A request from `next_local` is done (its result goes to
    /// `Loop::finish_local`).
    fn local_done(&mut self) {}
    /// Threads that run the loop themselves, taken once at start; None:
    /// the worker's main thread runs the loop (`Worker::serve`).
    fn take_runner(&mut self) -> Option<Box<dyn Runner>> {
        None
    }
    /// A connection whose request runs here (`State::Busy`) had a
    /// readiness event. True: the executor takes it (its app interface does
    /// that connection's I/O itself, without blocking, on the loop's
    /// thread: asyncio); false: the engine makes up for it once the request
    /// comes back.
    fn busy_event(&mut self, _idx: usize) -> bool {
        false
    }
    /// The worker began its graceful stop (TERM, max-requests): long-lived
    /// exchanges (websockets) are asked to end.
    fn drain(&mut self) {}
    /// The loop never waits in `turn` (the executor's own event loop waits
    /// on the engine's descriptor, `Loop::fd`, and calls `turn` when it is
    /// readable).
    fn external_wait(&self) -> bool {
        false
    }
    /// A request with `Expect: 100-continue` is handed over as soon as its
    /// head arrives, with its body still on the socket; the app interface
    /// answers `100 Continue` when the app first asks for the body.
    fn defers_continue(&self) -> bool {
        false
    }
}

/// The engine, as seen by an executor's threads that take turns running
/// its loop. Called with the GIL released.
pub trait Loop: Send {
    /// One turn of the loop; Some(exit code) once the worker is done.
    fn turn(&mut self) -> Option<i32>;
    /// `Executor::next_local` of the engine's executor.
    fn next_local(&mut self) -> Option<Job>;
    /// Take back the result of a request from `next_local`.
    fn finish_local(&mut self, done: Done);
    /// The epoll descriptor an external event loop waits on
    /// (`Executor::external_wait`).
    fn fd(&self) -> RawFd;
    /// Work is queued that no event will announce: call `turn` again soon.
    fn pending(&self) -> bool;
    /// The worker is ready to serve (tells the master).
    fn ready(&mut self);
}

/// Runs the loop on an executor's own threads until the worker is done.
pub trait Runner {
    /// Returns the worker's exit code.
    fn run(self: Box<Self>, lp: Box<dyn Loop>) -> std::io::Result<i32>;
}

/// Asks an executor's own event loop (asyncio's, a greenlet hub) to run
/// its pump soon, at most once until the pump has run: `target.METHOD(pump,
/// False)` (`loop.call_soon`, the hub's `soon`). Lives on the loop's
/// thread.
pub struct Wake {
    target: Py<PyAny>,
    method: &'static str,
    pump: std::cell::RefCell<Option<Py<PyAny>>>,
    scheduled: std::cell::Cell<bool>,
}

impl Wake {
    pub fn new(target: Py<PyAny>, method: &'static str) -> Wake {
        Wake {
            target,
            method,
            pump: std::cell::RefCell::new(None),
            scheduled: std::cell::Cell::new(false),
        }
    }

    /// The event loop (or hub backend) the pump runs on.
    pub fn target<'py>(&self, py: Python<'py>) -> &Bound<'py, PyAny> {
        self.target.bind(py)
    }

    /// The pump to schedule (None once the loop is over).
    pub fn set_pump(&self, pump: Option<Py<PyAny>>) {
        *self.pump.borrow_mut() = pump;
    }

    /// The pump is running: the next `soon` schedules it again.
    pub fn fired(&self) {
        self.scheduled.set(false);
    }

    pub fn soon(&self, py: Python<'_>) {
        if self.scheduled.replace(true) {
            return;
        }
        let pump = self.pump.borrow();
        let Some(pump) = pump.as_ref() else { return };
        if let Err(e) = self
            .target
            .bind(py)
            .call_method1(self.method, (pump, false))
        {
            crate::error!("Cannot schedule the event loop: {e}");
        }
    }
}

/// The engine, borrowed by a pump for one turn.
pub type Turning<'a> = std::cell::RefMut<'a, Box<dyn Loop>>;

/// What the asyncio and greenlet executors' pumps share: the engine they
/// drive, the way to ask for the next pump, and the exit code once the
/// engine is done.
pub struct PumpCore {
    lp: std::cell::RefCell<Box<dyn Loop>>,
    pub wake: std::rc::Rc<Wake>,
    code: std::cell::Cell<Option<i32>>,
}

impl PumpCore {
    pub fn new(lp: Box<dyn Loop>, wake: std::rc::Rc<Wake>) -> PumpCore {
        PumpCore {
            lp: std::cell::RefCell::new(lp),
            wake,
            code: std::cell::Cell::new(None),
        }
    }

    /// Run one turn of the engine (GIL released). None: nothing to do (the
    /// engine is done, or this is a nested call); else the engine, still
    /// borrowed, for [`PumpCore::finish`], and its exit code if it is done.
    pub fn turn(&self, py: Python<'_>) -> Option<(Turning<'_>, Option<i32>)> {
        self.wake.fired();
        if self.code.get().is_some() {
            return None;
        }
        let mut lp = self.lp.try_borrow_mut().ok()?;
        let code = {
            let lp: &mut Box<dyn Loop> = &mut lp;
            py.detach(move || lp.turn())
        };
        Some((lp, code))
    }

    /// After the executor handled what the turn produced: stop the event
    /// loop once the engine is done, or ask for another pump when work is
    /// waiting that no event will announce (`more`: results in the inbox).
    pub fn finish(&self, py: Python<'_>, lp: &dyn Loop, code: Option<i32>, more: bool) {
        if let Some(code) = code {
            self.code.set(Some(code));
            if let Err(e) = self.wake.target(py).call_method0("stop") {
                crate::error!("Cannot stop the event loop: {e}");
            }
            return;
        }
        if lp.pending() || more {
            self.wake.soon(py);
        }
    }

    /// The engine's exit code, once it is done.
    pub fn code(&self) -> Option<i32> {
        self.code.get()
    }
}

/// Lock a mutex whose data stays consistent even if a holder panicked (a
/// queue, a list of results, a log file).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
