//! The asyncio executor (`-k asgi` and the workers built on it): an
//! asyncio (or uvloop) event loop on the worker's main thread runs the
//! app, and the engine runs inside it.
//!
//! The loop waits on the engine's epoll descriptor (`Loop::fd`); when it
//! is readable, and once a second, the *pump* runs one `Loop::turn` with
//! the GIL released (the engine never waits in it: `external_wait`). What
//! the turn produced crosses back through the [`Inbox`]: requests to start
//! (`submit`), readiness events of connections whose request is running
//! (`busy_event`: the app interface does their I/O itself, without
//! blocking, between turns), and the graceful stop (`drain`). The pump
//! hands them to the app interface's [`AsyncSession`]; a request's cycle
//! puts its [`Done`] in the inbox when its response is complete and asks
//! for another pump ([`Wake::soon`]), which the next turn collects
//! (`take_done`). No thread, no hand-off: one request costs a task on the
//! loop and the engine's own work.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;

pub use super::Wake;
use super::{lock, Done, Executor, Job, Loop, PumpCore, Runner};
use crate::{error, info};

/// What the engine's turns and the loop's tasks leave for each other.
#[derive(Default)]
pub struct Inbox {
    jobs: Vec<Job>,
    events: Vec<usize>,
    done: Vec<Done>,
    drain: bool,
}

/// The inbox, shared by the engine (inside `turn`) and the session (between
/// turns); both run on the loop's thread, so the lock is never contended.
pub type Shared = Arc<Mutex<Inbox>>;

/// Give a finished request back to the engine (its next turn takes it).
pub fn hand_back(inbox: &Shared, done: Done) {
    lock(inbox).done.push(done);
}

/// An app interface that runs on an asyncio loop, before the loop exists:
/// made with the worker (so it is `Send`), started on the loop's thread.
pub trait AsyncInterface: Send {
    /// Which loop to make: `auto`, `asyncio` or `uvloop` (`--asgi-loop`).
    fn loop_kind(&self) -> &str;
    /// The loop exists: prepare the session, and run the app's startup
    /// (lifespan). Err: the worker's exit code (the app cannot serve).
    fn start(
        self: Box<Self>,
        py: Python<'_>,
        ev: &Bound<'_, PyAny>,
        inbox: Shared,
        wake: Rc<Wake>,
    ) -> Result<Box<dyn AsyncSession>, i32>;
}

/// A running app interface on the loop's thread.
pub trait AsyncSession {
    /// Start a request.
    fn start(&mut self, py: Python<'_>, job: Job);
    /// A running request's connection is ready for I/O.
    fn io(&mut self, py: Python<'_>, idx: usize);
    /// Once a second: deadlines of running requests.
    fn tick(&mut self, py: Python<'_>);
    /// The graceful stop began.
    fn drain(&mut self, py: Python<'_>);
    /// The loop stopped: finish what is left (background tasks, the app's
    /// shutdown) within `graceful` seconds.
    fn shutdown(&mut self, py: Python<'_>, ev: &Bound<'_, PyAny>, graceful: f64);
}

pub struct Asyncio {
    inbox: Shared,
    iface: Option<Box<dyn AsyncInterface>>,
    graceful: f64,
}

impl Asyncio {
    pub fn new(iface: Box<dyn AsyncInterface>, graceful: f64) -> Asyncio {
        Asyncio {
            inbox: Shared::default(),
            iface: Some(iface),
            graceful,
        }
    }
}

impl Executor for Asyncio {
    fn submit(&mut self, job: Job) -> Option<Done> {
        lock(&self.inbox).jobs.push(job);
        None
    }
    fn take_done(&mut self) -> Vec<Done> {
        std::mem::take(&mut lock(&self.inbox).done)
    }
    fn concurrent(&self) -> bool {
        true
    }
    fn busy_event(&mut self, idx: usize) -> bool {
        lock(&self.inbox).events.push(idx);
        true
    }
    fn drain(&mut self) {
        lock(&self.inbox).drain = true;
    }
    fn external_wait(&self) -> bool {
        true
    }
    fn defers_continue(&self) -> bool {
        true
    }
    fn take_runner(&mut self) -> Option<Box<dyn Runner>> {
        let iface = self.iface.take()?;
        Some(Box::new(AsyncioRunner {
            iface,
            inbox: self.inbox.clone(),
            graceful: self.graceful,
        }))
    }
}

struct AsyncioRunner {
    iface: Box<dyn AsyncInterface>,
    inbox: Shared,
    graceful: f64,
}

/// The loop's callback that runs the engine.
#[pyclass(unsendable)]
struct Pump {
    core: PumpCore,
    session: RefCell<Option<Box<dyn AsyncSession>>>,
    inbox: Shared,
}

#[pymethods]
impl Pump {
    fn __call__(&self, py: Python<'_>, tick: bool) {
        let Some((lp, code)) = self.core.turn(py) else {
            return;
        };
        let (events, jobs, drain) = {
            let mut inbox = lock(&self.inbox);
            (
                std::mem::take(&mut inbox.events),
                std::mem::take(&mut inbox.jobs),
                std::mem::take(&mut inbox.drain),
            )
        };
        if let Ok(mut session) = self.session.try_borrow_mut() {
            if let Some(s) = session.as_mut() {
                if drain {
                    s.drain(py);
                }
                // Events concern requests already running; then the new ones.
                for idx in events {
                    s.io(py, idx);
                }
                for job in jobs {
                    s.start(py, job);
                }
                if tick {
                    s.tick(py);
                }
            }
        }
        let more = !lock(&self.inbox).done.is_empty();
        self.core.finish(py, &**lp, code, more);
    }
}

impl Runner for AsyncioRunner {
    fn run(self: Box<Self>, mut lp: Box<dyn Loop>) -> std::io::Result<i32> {
        let AsyncioRunner {
            iface,
            inbox,
            graceful,
        } = *self;
        Python::attach(|py| -> std::io::Result<i32> {
            let rt = crate::asgi::runtime(py).map_err(|e| std::io::Error::other(e.to_string()))?;
            let made = rt
                .call_method1("new_loop", (iface.loop_kind(),))
                .and_then(|r| r.extract::<(Bound<'_, PyAny>, String)>());
            let (ev, name) = match made {
                Ok(v) => v,
                Err(e) => {
                    error!("Cannot create the event loop: {}", e.value(py));
                    return Ok(crate::wsgi::WORKER_BOOT_ERROR);
                }
            };
            crate::debug!("Event loop: {name}");
            crate::control::register_asyncio_loop(py, &ev);
            let wake = Rc::new(Wake::new(ev.clone().unbind(), "call_soon"));
            let mut session = match iface.start(py, &ev, inbox.clone(), wake.clone()) {
                Ok(s) => s,
                Err(code) => {
                    let _ = rt.call_method1("close_loop", (&ev,));
                    return Ok(code);
                }
            };
            lp.ready();
            let fd = lp.fd();
            let pump = Pump {
                core: PumpCore::new(lp, wake.clone()),
                session: RefCell::new(None),
                inbox,
            };
            let pump = Bound::new(py, pump).map_err(|e| std::io::Error::other(e.to_string()))?;
            wake.set_pump(Some(pump.clone().into_any().unbind()));
            // The session goes into the pump for the loop's life, and comes
            // back for the shutdown.
            *pump.borrow().session.borrow_mut() = Some(session);
            let served = rt.call_method1("serve", (&ev, fd, &pump, 1.0));
            session = match pump.borrow().session.borrow_mut().take() {
                Some(s) => s,
                None => return Ok(1),
            };
            let code = pump.borrow().core.code();
            wake.set_pump(None);
            if let Err(e) = served {
                error!(
                    "The event loop failed:\n{}",
                    crate::wsgi::format_exception(py, &e).trim_end()
                );
            }
            session.shutdown(py, &ev, graceful);
            if let Err(e) = rt.call_method1("close_loop", (&ev,)) {
                info!("Closing the event loop: {e}");
            }
            Ok(code.unwrap_or(1))
        })
    }
}
