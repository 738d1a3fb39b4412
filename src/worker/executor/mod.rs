//! The seams between the connection engine and the code that runs a
//! request: an [`App`] interface turns a [`Job`] into a response (WSGI
//! today, ASGI next), and an [`Executor`] decides where and when that runs
//! (inline on the loop's thread for `sync`, a thread pool for `gthread`;
//! greenlets and an asyncio loop next). What crosses them:
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

mod inline;
mod threads;

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
    /// The connection's descriptor (open for as long as the request runs).
    pub fd: RawFd,
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

/// An app interface: runs one request (with the GIL held), writing what
/// the socket takes at once.
pub trait App: Send + Sync {
    fn call(&self, py: Python<'_>, job: Job) -> Done;
    /// USR1: reopen the log files this interface writes.
    fn reopen_logs(&self) -> std::io::Result<()> {
        Ok(())
    }
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
}

/// Runs the loop on an executor's own threads until the worker is done.
pub trait Runner {
    /// Returns the worker's exit code.
    fn run(self: Box<Self>, lp: Box<dyn Loop>) -> std::io::Result<i32>;
}

/// Lock a mutex whose data stays consistent even if a holder panicked (a
/// queue, a list of results, a log file).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
