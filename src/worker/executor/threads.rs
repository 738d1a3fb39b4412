//! The `gthread` executor: `--threads` OS threads, each attached to the
//! interpreter for its life, take requests from a queue and run them with
//! the GIL held only while the app runs; results go back to the loop,
//! which a `Waker` rouses once per batch.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use mio::Waker;
use pyo3::prelude::*;

use super::{lock, App, Done, Executor, Job};
use crate::error;
use crate::sys;
use crate::worker::IN_APP;
use crate::wsgi::{self, Progress};

/// Stack of a gthread worker's threads (CPython's own threads get the
/// system default, 8 MiB on Linux; deep recursion must not crash here).
const THREAD_STACK: usize = 8 << 20;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
    /// Threads waiting for a job (no wake-up needed when there are none).
    idle: usize,
}

/// The gthread worker's threads and their mailboxes.
pub struct Threads {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    done: Arc<Mutex<Vec<Done>>>,
    /// Per thread: monotonic ms when its current request started, 0 idle.
    busy_since: Arc<Vec<AtomicU64>>,
    /// A wake-up of the loop is already on its way.
    wake_pending: Arc<AtomicBool>,
    /// Requests handed out and not yet returned.
    inflight: usize,
}

impl Threads {
    /// Start `n` threads. Called in the worker, after fork.
    pub fn start(n: usize, app: Arc<dyn App>, waker: Arc<Waker>) -> io::Result<Threads> {
        let pool = Threads {
            queue: Arc::new((Mutex::new(Queue::default()), Condvar::new())),
            done: Arc::new(Mutex::new(Vec::new())),
            busy_since: Arc::new((0..n).map(|_| AtomicU64::new(0)).collect()),
            wake_pending: Arc::new(AtomicBool::new(false)),
            inflight: 0,
        };
        for i in 0..n {
            let queue = pool.queue.clone();
            let done = pool.done.clone();
            let busy = pool.busy_since.clone();
            let app = app.clone();
            let wake = (waker.clone(), pool.wake_pending.clone());
            std::thread::Builder::new()
                .name(format!("ferrocorn-{i}"))
                .stack_size(THREAD_STACK)
                .spawn(move || {
                    // A request streaming to (or from) its client is not
                    // stuck: its progress re-dates this thread's stamp.
                    wsgi::set_progress(Some(Progress::Thread(busy.clone(), i)));
                    thread_main(i, &queue, &done, &busy, app.as_ref(), &wake)
                })?;
        }
        Ok(pool)
    }
}

impl Executor for Threads {
    fn submit(&mut self, job: Job) -> Option<Done> {
        let (m, cv) = &*self.queue;
        let idle = {
            let mut q = lock(m);
            q.jobs.push_back(job);
            q.idle
        };
        if idle > 0 {
            cv.notify_one();
        }
        self.inflight += 1;
        IN_APP.store(true, Ordering::SeqCst);
        None
    }

    fn take_done(&mut self) -> Vec<Done> {
        // Cleared before taking: a result pushed after the take wakes the
        // loop again.
        self.wake_pending.store(false, Ordering::SeqCst);
        let done = std::mem::take(&mut *lock(&self.done));
        self.inflight -= done.len();
        if self.inflight == 0 {
            IN_APP.store(false, Ordering::SeqCst);
        }
        done
    }

    fn concurrent(&self) -> bool {
        true
    }

    /// When the longest-running current request started or last showed
    /// progress (monotonic ms).
    fn oldest_busy(&self) -> Option<u64> {
        self.busy_since
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .filter(|&since| since != 0)
            .min()
    }

    /// Let idle threads end (busy ones end after their request).
    fn close(&self) {
        let (m, cv) = &*self.queue;
        lock(m).closed = true;
        cv.notify_all();
    }
}

/// A gthread thread: attached to the interpreter for its whole life (so
/// `threading.local` and the thread state persist between requests), but
/// holding the GIL only while it runs a request.
fn thread_main(
    i: usize,
    queue: &(Mutex<Queue>, Condvar),
    done: &Mutex<Vec<Done>>,
    busy: &[AtomicU64],
    app: &dyn App,
    (waker, wake_pending): &(Arc<Waker>, Arc<AtomicBool>),
) {
    let (m, cv) = queue;
    Python::attach(|py| {
        // The next job, if one is already queued, is taken without
        // releasing the GIL in between.
        let mut next: Option<Job> = None;
        loop {
            let job = match next.take() {
                Some(job) => job,
                None => {
                    let job = py.detach(|| {
                        let mut q = lock(m);
                        loop {
                            if let Some(job) = q.jobs.pop_front() {
                                return Some(job);
                            }
                            if q.closed {
                                return None;
                            }
                            q.idle += 1;
                            q = cv.wait(q).unwrap_or_else(|e| e.into_inner());
                            q.idle -= 1;
                        }
                    });
                    let Some(job) = job else {
                        return;
                    };
                    job
                }
            };
            busy[i].store(sys::monotonic_ms().max(1), Ordering::Relaxed);
            let result = app.call(py, job);
            busy[i].store(0, Ordering::Relaxed);
            lock(done).push(result);
            if !wake_pending.swap(true, Ordering::SeqCst) {
                if let Err(e) = waker.wake() {
                    error!("Cannot wake the event loop: {e}");
                }
            }
            // The queue lock is never held by anyone waiting for the GIL,
            // so taking it here (GIL held) cannot deadlock.
            next = lock(m).jobs.pop_front();
        }
    })
}
