//! The greenlet executor (`-k gevent`, `-k eventlet` and gunicorn's other
//! names for them): the library's hub runs on the worker's main thread,
//! the engine runs inside it, and each request runs the WSGI app in a
//! greenlet of its own.
//!
//! As with the asyncio executor, the hub waits on the engine's epoll
//! descriptor (`Loop::fd`); when it is readable, and once a second, the
//! *pump* runs one `Loop::turn` with the GIL released (the engine never
//! waits in it: `external_wait`) and spawns a greenlet for each request
//! the turn submitted. A request's waits on its socket (a body still
//! arriving, a client slow to take the response) park its greenlet on the
//! hub (`wsgi::set_green`), so the others run meanwhile; when the app
//! returns, the greenlet puts its [`Done`] in the inbox and asks the hub
//! for a pump (`soon`), which hands it to the engine. Neither side polls:
//! the hub sleeps until a descriptor is ready.
//!
//! The library is imported and the standard library monkey-patched when
//! the worker's Python starts ([`prepare`]), before the config file, the
//! hooks and the app run; the Python half is `green.py`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;

use super::{lock, App, Done, Executor, Job, Loop, PumpCore, Runner, Wake};
use crate::error;
use crate::wsgi::WORKER_BOOT_ERROR;

/// The greenlet libraries, by the worker-class names gunicorn knows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Library {
    Gevent,
    Eventlet,
}

impl Library {
    /// The library a worker class runs on, if it is a greenlet worker.
    pub fn of(class: &str) -> Option<Library> {
        match class {
            "gevent"
            | "gevent_wsgi"
            | "gevent_pywsgi"
            | "gunicorn.workers.ggevent.GeventWorker"
            | "gunicorn.workers.ggevent.GeventPyWSGIWorker"
            | "egg:gunicorn#gevent" => Some(Library::Gevent),
            "eventlet" | "gunicorn.workers.geventlet.EventletWorker" | "egg:gunicorn#eventlet" => {
                Some(Library::Eventlet)
            }
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Library::Gevent => "gevent",
            Library::Eventlet => "eventlet",
        }
    }
}

const GREEN_SRC: &std::ffi::CStr = pyo3::ffi::c_str!(include_str!("green.py"));

static BACKEND: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

/// Import `lib`, check its version and monkey-patch the standard library
/// (once per process; the worker calls it again after a `--preload`
/// master did, which reinits the hub). Err: a one-line reason naming the
/// package and the virtualenv.
pub fn prepare(py: Python<'_>, lib: Library) -> Result<(), String> {
    let backend = BACKEND
        .get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            let m = PyModule::from_code(py, GREEN_SRC, c"ferrocorn_green.py", c"ferrocorn_green")?;
            Ok(m.call_method1("backend", (lib.name(),))?.unbind())
        })
        .map_err(|e| reason(py, &e))?;
    backend
        .bind(py)
        .call_method0("patch")
        .map(|_| ())
        .map_err(|e| reason(py, &e))
}

/// A BootError's message as it is; anything else with its type and
/// traceback.
fn reason(py: Python<'_>, e: &PyErr) -> String {
    let boot = e
        .get_type(py)
        .name()
        .map(|n| n == "BootError")
        .unwrap_or(false);
    if boot {
        e.value(py).to_string()
    } else {
        crate::wsgi::format_exception(py, e).trim_end().to_string()
    }
}

#[derive(Default)]
struct Inbox {
    jobs: Vec<Job>,
    done: Vec<Done>,
}

type Shared = Arc<Mutex<Inbox>>;

pub struct Green {
    inbox: Shared,
    app: Arc<dyn App>,
    started: bool,
}

impl Green {
    pub fn new(app: Arc<dyn App>) -> Green {
        Green {
            inbox: Shared::default(),
            app,
            started: false,
        }
    }
}

impl Executor for Green {
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
    fn external_wait(&self) -> bool {
        true
    }
    fn take_runner(&mut self) -> Option<Box<dyn Runner>> {
        if std::mem::replace(&mut self.started, true) {
            return None;
        }
        Some(Box::new(GreenRunner {
            inbox: self.inbox.clone(),
            app: self.app.clone(),
        }))
    }
}

struct GreenRunner {
    inbox: Shared,
    app: Arc<dyn App>,
}

/// The hub's callback that runs the engine and starts the requests.
#[pyclass(unsendable)]
struct Pump {
    core: PumpCore,
    inbox: Shared,
    app: Arc<dyn App>,
}

#[pymethods]
impl Pump {
    fn __call__(&self, py: Python<'_>, _tick: bool) {
        let Some((lp, code)) = self.core.turn(py) else {
            return;
        };
        let jobs = std::mem::take(&mut lock(&self.inbox).jobs);
        let backend = self.core.wake.target(py);
        for job in jobs {
            let idx = job.idx;
            let run = Request {
                job: RefCell::new(Some(job)),
                app: self.app.clone(),
                inbox: self.inbox.clone(),
                wake: self.core.wake.clone(),
            };
            let spawned = Bound::new(py, run)
                .and_then(|run| backend.call_method1(pyo3::intern!(py, "spawn"), (run,)));
            if let Err(e) = spawned {
                error!("Cannot start a greenlet: {e}");
                lock(&self.inbox).done.push(Done {
                    idx,
                    outcome: Err(format!("cannot start a greenlet: {e}")),
                });
            }
        }
        let more = !lock(&self.inbox).done.is_empty();
        self.core.finish(py, &**lp, code, more);
    }
}

/// One request, run in its own greenlet.
#[pyclass(unsendable)]
struct Request {
    job: RefCell<Option<Job>>,
    app: Arc<dyn App>,
    inbox: Shared,
    wake: Rc<Wake>,
}

#[pymethods]
impl Request {
    fn __call__(&self, py: Python<'_>) {
        let Some(job) = self.job.borrow_mut().take() else {
            return;
        };
        let done = self.app.call(py, job);
        lock(&self.inbox).done.push(done);
        self.wake.soon(py);
    }
}

impl Runner for GreenRunner {
    fn run(self: Box<Self>, mut lp: Box<dyn Loop>) -> std::io::Result<i32> {
        let GreenRunner { inbox, app } = *self;
        Python::attach(|py| -> std::io::Result<i32> {
            let Some(backend) = BACKEND.get(py) else {
                error!("The greenlet library was not prepared");
                return Ok(WORKER_BOOT_ERROR);
            };
            let backend = backend.bind(py).clone();
            let attr = |name: &str| -> std::io::Result<Py<PyAny>> {
                backend
                    .getattr(name)
                    .map(Bound::unbind)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            };
            crate::wsgi::set_green(crate::wsgi::GreenWaits {
                wait: attr("wait")?,
                sleep: attr("sleep")?,
            });
            // `ferrocorn ctl stacks` lists the greenlets too.
            crate::control::register_provider("greenlets", attr("greenlets")?);
            let wake = Rc::new(Wake::new(backend.clone().unbind(), "soon"));
            lp.ready();
            let fd = lp.fd();
            let pump = Pump {
                core: PumpCore::new(lp, wake.clone()),
                inbox,
                app,
            };
            let pump = Bound::new(py, pump).map_err(|e| std::io::Error::other(e.to_string()))?;
            wake.set_pump(Some(pump.clone().into_any().unbind()));
            let served = backend.call_method1("serve", (fd, &pump, 1.0));
            wake.set_pump(None);
            if let Err(e) = served {
                error!(
                    "The hub failed:\n{}",
                    crate::wsgi::format_exception(py, &e).trim_end()
                );
            }
            let code = pump.borrow().core.code();
            Ok(code.unwrap_or(1))
        })
    }
}
