//! Metrics: statsd as gunicorn sends it, and a Prometheus endpoint served
//! by the master from shared memory.
//!
//! - [`counters`]: the per-worker counters in shared memory (status codes,
//!   duration and queue-time histograms, requests in flight, why a worker
//!   is exiting), updated with relaxed atomics only;
//! - [`statsd`]: gunicorn's statsd client (`--statsd-host`);
//! - [`prometheus`]: the text exposition of one scrape;
//! - [`server`]: the master's non-blocking `--metrics-bind` listener;
//! - `master`: what the master keeps (retired workers' counts, restarts by
//!   reason) and does each pass of its loop ([`MasterMetrics`]).
//!
//! A worker reports through the functions here, which find its slot in a
//! process-wide static (set after fork): [`request_done`] from the app
//! interfaces' completion paths (WSGI and ASGI), [`request_started`] and
//! [`request_finished`] from the engine, [`exiting`] before a worker ends
//! itself, and [`log_event`] from the error log.

pub mod counters;
mod master;
pub mod prometheus;
pub mod server;
pub mod statsd;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

pub use counters::ExitReason;
pub use master::{restart_reason, MasterMetrics, RestartReason, WorkerEnd, WorkerView};

use counters::{Counters, Slot};

/// The shared counters, mapped once by the master before it forks.
static COUNTERS: OnceLock<Counters> = OnceLock::new();
/// This worker's slot (usize::MAX: not a worker).
static SLOT: AtomicUsize = AtomicUsize::new(usize::MAX);

fn my_slot() -> Option<Slot> {
    match SLOT.load(Ordering::Relaxed) {
        usize::MAX => None,
        i => COUNTERS.get()?.slot(i),
    }
}

/// In a freshly forked worker: count in `slot` from now on.
pub fn worker_init(slot: usize) {
    SLOT.store(slot, Ordering::Relaxed);
}

/// A request is finished: `status` sent (0 if none), `duration` from the
/// app being called until the response was complete, `queue` waited
/// before that. Updates this worker's shared counters and sends gunicorn's
/// per-request statsd metrics.
pub fn request_done(status: u16, duration: Duration, queue: Duration) {
    if let Some(s) = my_slot() {
        s.record(status, duration, queue);
    }
    statsd::request(status, duration);
}

/// The engine handed a request to the app interface.
pub fn request_started() {
    if let Some(s) = my_slot() {
        s.started();
    }
}

/// The engine took a request back.
pub fn request_finished() {
    if let Some(s) = my_slot() {
        s.finished();
    }
}

/// The worker is about to stop on its own, for this reason (the master
/// counts the restart under it).
pub fn exiting(reason: ExitReason) {
    if let Some(s) = my_slot() {
        s.set_exit_reason(reason);
    }
}

/// An error-log message at `level` (or, `exception`, a traceback logged at
/// error level): gunicorn's `gunicorn.log.*` counters.
pub fn log_event(level: crate::log::Level, exception: bool) {
    use crate::log::Level;
    let kind = match level {
        _ if exception => "exception",
        Level::Critical => "critical",
        Level::Error => "error",
        Level::Warning => "warning",
        Level::Info | Level::Debug => return,
    };
    statsd::log_event(kind);
}
