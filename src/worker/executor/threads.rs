//! The `gthread` executor: `--threads` + 1 OS threads, each attached to
//! the interpreter for its life, share the event loop and the requests.
//!
//! One thread holds the loop's *seat* and runs the loop (`Loop::turn`,
//! GIL released). When a turn leaves requests to run and no other request
//! is running, the holder runs them itself, one after the other, as the
//! sync worker would: no hand-off to another thread, no wake-up, and the
//! GIL is free. While it does, the seat is vacant, and a standby thread
//! looks at it every `STANDBY_TICK`; if the same request still holds it at
//! the next look (it blocks, or computes for a millisecond or more), the
//! standby takes the loop over, and the old holder, once its request is
//! done, hands the result back like any other thread and joins them.
//! Requests that arrive while another is running go to waiting threads
//! through a queue; their results go back to the loop, which a `Waker`
//! rouses once per batch. At most `--threads` run the app at once: one
//! thread always holds the seat or has left it for the request it runs.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use mio::Waker;
use pyo3::prelude::*;

use super::{lock, App, Done, Executor, Job, Loop, Runner};
use crate::error;
use crate::sys;
use crate::worker::IN_APP;
use crate::wsgi::{self, Progress};

/// Stack of a gthread worker's threads (CPython's own threads get the
/// system default, 8 MiB on Linux; deep recursion must not crash here).
const THREAD_STACK: usize = 8 << 20;

/// How often a standby thread looks at a vacant seat. A request the
/// loop's thread runs itself holds the loop for at most about two ticks.
const STANDBY_TICK: Duration = Duration::from_millis(1);

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
    /// Threads waiting for a job (no wake-up needed when there are none).
    idle: usize,
    /// The holder left the seat to run a request while no thread watched
    /// the seat: the next thread to look at the queue does.
    want_standby: bool,
}

/// What the threads share.
struct Mailbox {
    queue: Mutex<Queue>,
    cv: Condvar,
    done: Mutex<Vec<Done>>,
    /// Per thread: monotonic ms when its current request started or last
    /// showed progress, 0 idle.
    busy_since: Arc<Vec<AtomicU64>>,
    /// A wake-up of the loop is already on its way.
    wake_pending: AtomicBool,
    waker: Arc<Waker>,
    /// The loop's seat, moved on (+1) at every change: even while a thread
    /// holds it (runs the loop), odd while its holder runs a request
    /// itself. Whoever moves it from odd to even (the holder, back from
    /// the request, or a standby relieving it) holds it next.
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
        // Pairs with the standby's second look after it stops watching:
        // one of the two sees the other, so a vacant seat is always
        // watched.
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

    /// Take the vacant seat `seat`, unless another thread took it first.
    fn reclaim(&self, seat: u64) -> bool {
        self.seat
            .compare_exchange(seat, seat + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    fn close(&self) {
        lock(&self.queue).closed = true;
        self.cv.notify_all();
    }
}

/// The loop's side of the threads: the executor the engine holds.
pub struct Threads {
    mail: Arc<Mailbox>,
    /// Requests submitted in this turn and not handed out yet: the loop's
    /// thread runs them itself when no other request is running.
    local: VecDeque<Job>,
    /// Requests handed out (or run by the loop's thread) and not yet
    /// returned.
    inflight: usize,
    /// The threads, until `take_runner`.
    team: Option<Team>,
}

impl Threads {
    /// The executor for `threads` concurrent requests; the threads start
    /// when the runner runs. Called in the worker, after fork.
    pub fn new(threads: usize, app: Arc<dyn App>, waker: Arc<Waker>) -> Threads {
        // One thread more than --threads: one always holds the seat.
        let n = threads.max(1) + 1;
        let mail = Arc::new(Mailbox {
            queue: Mutex::new(Queue::default()),
            cv: Condvar::new(),
            done: Mutex::new(Vec::new()),
            busy_since: Arc::new((0..n).map(|_| AtomicU64::new(0)).collect()),
            wake_pending: AtomicBool::new(false),
            waker,
            seat: AtomicU64::new(0),
            standbys: AtomicUsize::new(0),
        });
        Threads {
            mail: mail.clone(),
            local: VecDeque::new(),
            inflight: 0,
            team: Some(Team { mail, app, n }),
        }
    }

    /// Queue this turn's requests for the other threads.
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

    fn returned(&mut self, n: usize) {
        self.inflight -= n;
        if self.inflight == 0 {
            IN_APP.store(false, Ordering::SeqCst);
        }
    }
}

impl Executor for Threads {
    fn submit(&mut self, job: Job) -> Option<Done> {
        self.local.push_back(job);
        None
    }

    /// One of this turn's requests, if no other request is running (the
    /// GIL is then free, and running it here costs no hand-off).
    /// Otherwise this turn's requests go to the other threads.
    fn next_local(&mut self) -> Option<Job> {
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

    fn local_done(&mut self) {
        self.returned(1);
    }

    fn take_done(&mut self) -> Vec<Done> {
        // Cleared before taking: a result pushed after the take wakes the
        // loop again.
        self.mail.wake_pending.store(false, Ordering::SeqCst);
        let done = std::mem::take(&mut *lock(&self.mail.done));
        self.returned(done.len());
        done
    }

    fn concurrent(&self) -> bool {
        true
    }

    fn oldest_busy(&self) -> Option<u64> {
        self.mail
            .busy_since
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .filter(|&since| since != 0)
            .min()
    }

    /// Let idle threads end (busy ones end after their request).
    fn close(&self) {
        self.mail.close();
    }

    fn take_runner(&mut self) -> Option<Box<dyn Runner>> {
        self.team.take().map(|t| Box::new(t) as Box<dyn Runner>)
    }
}

/// The threads, before they start.
struct Team {
    mail: Arc<Mailbox>,
    app: Arc<dyn App>,
    /// How many (--threads + 1).
    n: usize,
}

impl Runner for Team {
    fn run(self: Box<Self>, mut lp: Box<dyn Loop>) -> io::Result<i32> {
        lp.ready();
        let hub = Arc::new(Hub {
            core: Mutex::new(lp),
            mail: self.mail,
            app: self.app,
            exit: Mutex::new(None),
            exited: Condvar::new(),
        });
        for i in 0..self.n {
            let mine = hub.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ferrocorn-{i}"))
                .stack_size(THREAD_STACK)
                .spawn(move || mine.thread_main(i));
            if let Err(e) = spawned {
                // The worker exits; the threads started go with it.
                hub.mail.close();
                return Err(e);
            }
        }
        Ok(hub.wait())
    }
}

/// The running threads' shared state.
struct Hub {
    /// The loop; locked by the seat's holder.
    core: Mutex<Box<dyn Loop>>,
    mail: Arc<Mailbox>,
    app: Arc<dyn App>,
    exit: Mutex<Option<i32>>,
    exited: Condvar,
}

impl Hub {
    fn finish(&self, code: i32) {
        *lock(&self.exit) = Some(code);
        self.exited.notify_all();
    }

    /// Wait until the loop ends; returns the exit code.
    fn wait(&self) -> i32 {
        let mut exit = lock(&self.exit);
        loop {
            if let Some(code) = *exit {
                return code;
            }
            exit = self.exited.wait(exit).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A thread: attached to the interpreter for its whole life (so
    /// `threading.local` and the thread state persist between requests),
    /// holding the GIL only while it runs a request.
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
        // A request streaming to (or from) its client is not stuck: its
        // progress re-dates this thread's stamp.
        wsgi::set_progress(Some(Progress::Thread(self.mail.busy_since.clone(), i)));
        Python::attach(|py| {
            wsgi::spew_this_thread(py);
            py.detach(|| {
                let mut holder = i == 0;
                loop {
                    holder = if holder {
                        if !self.lead(i) {
                            return;
                        }
                        false
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
    /// other is running. Returns false once the worker is done, true when
    /// this thread lost the seat while it ran a request.
    fn lead(&self, i: usize) -> bool {
        let mut lp = lock(&self.core);
        loop {
            if let Some(job) = lp.next_local() {
                drop(lp);
                let seat = self.mail.vacate();
                let done = self.run(i, job, false);
                if !self.mail.reclaim(seat) {
                    if let Some(done) = done {
                        self.mail.hand_back(done);
                    }
                    return true;
                }
                lp = lock(&self.core);
                if let Some(done) = done {
                    lp.finish_local(done);
                }
                continue;
            }
            if let Some(code) = lp.turn() {
                self.mail.close();
                drop(lp);
                self.finish(code);
                return false;
            }
        }
    }

    /// Wait for requests to run, or for the seat to take over. Returns
    /// true when this thread now holds the seat, false once closed.
    fn follow(&self, i: usize) -> bool {
        let m = &*self.mail;
        let mut q = lock(&m.queue);
        // While watching: the seat at the last look.
        let mut watch: Option<u64> = None;
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
                watch = Some(m.seat.load(Ordering::SeqCst));
            }
            let Some(last) = watch else {
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
            // last look has ended since (no request started since): go
            // back to sleep; the next vacancy wakes a standby again.
            if seat % 2 == 0 && seat.wrapping_sub(last) <= 1 {
                m.standbys.fetch_sub(1, Ordering::SeqCst);
                let now = m.seat.load(Ordering::SeqCst);
                if now == seat {
                    watch = None;
                } else {
                    // The holder left the seat just now and may have seen
                    // this thread still watching: keep watching.
                    m.standbys.fetch_add(1, Ordering::SeqCst);
                    watch = Some(now);
                }
            } else {
                watch = Some(seat);
            }
        }
    }

    /// Run `job` with the GIL held. A thread from the queue (`queued`)
    /// hands the result back itself and takes the next queued job, if there
    /// is one, without releasing the GIL in between (the queue lock is
    /// never held by anyone waiting for the GIL, so taking it here cannot
    /// deadlock); the seat's holder gets the result.
    fn run(&self, i: usize, job: Job, queued: bool) -> Option<Done> {
        let busy = &self.mail.busy_since[i];
        Python::attach(|py| {
            let mut job = job;
            loop {
                busy.store(sys::monotonic_ms().max(1), Ordering::Relaxed);
                let done = self.app.call(py, job);
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
