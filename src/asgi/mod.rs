//! ASGI as an app interface on the asyncio executor
//! (`worker/executor/asyncio.rs`): `-k asgi` and its uvicorn and gunicorn
//! aliases. Rust does all socket I/O and HTTP parsing (the same engine,
//! parser and limits as WSGI); the app runs as one asyncio task per
//! request.
//!
//! - [`AsgiInterface`]: the app and the settings, made with the worker;
//!   started on the loop's thread it runs the lifespan startup and becomes
//!   the [`Session`] that starts each request's cycle.
//! - `scope`: the `http` and `websocket` scopes.
//! - `cycle`: one HTTP request/response (`receive`, `send`, body
//!   streaming with backpressure, `http.disconnect`, pathsend and
//!   zerocopysend with sendfile, 100-continue, trailers).
//! - `websocket`: one WebSocket session (the handshake, `websocket.*`
//!   messages over the `ws` codec, close codes, backpressure, going away
//!   with 1001 on a graceful stop).
//! - `ready`: an awaitable that is already done (no future, no task).
//! - `runtime.py`: the Python half: making the loop, the per-request
//!   coroutine, lifespan, the end of the loop.
//! - `tornado.py`: `-k tornado`, a `tornado.web.Application` (its
//!   handlers and `WebSocketHandler`s) adapted to ASGI.

mod cycle;
mod io;
mod ready;
mod scope;
mod websocket;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule};

use crate::log::access::AccessLog;
use crate::worker::executor::asyncio::{AsyncInterface, AsyncSession, Shared, Wake};
use crate::worker::executor::{lock, Job, Outcome, ReopenLogs};
use crate::wsgi::{Forwarding, ServerInfo, WORKER_BOOT_ERROR};
use crate::{debug, error, info, warning};

pub use cycle::HttpCycle;
pub use ready::Ready;
pub use websocket::WsCycle;

/// The worker classes served by this interface: gunicorn's, uvicorn's
/// and uvicorn-worker's names for an ASGI worker.
pub const WORKER_CLASSES: &[&str] = &[
    "asgi",
    "uvicorn.workers.UvicornWorker",
    "uvicorn.workers.UvicornH11Worker",
    "uvicorn_worker.UvicornWorker",
    "uvicorn_worker.UvicornH11Worker",
    "gunicorn.workers.gasgi.ASGIWorker",
];

/// Whether `class` names the ASGI worker.
pub fn is_asgi_class(class: &str) -> bool {
    WORKER_CLASSES.contains(&class)
}

/// Whether `class` runs on this interface: the ASGI worker, or `tornado`
/// (a `tornado.web.Application` adapted to ASGI in tornado.py).
pub fn runs_on_asyncio(class: &str) -> bool {
    is_asgi_class(class) || class == "tornado"
}

/// The worker's `runtime.py` module (made on first use).
pub fn runtime(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    static MODULE: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();
    let src = pyo3::ffi::c_str!(include_str!("runtime.py"));
    crate::wsgi::embedded_module(py, &MODULE, src, c"ferrocorn_asgi_runtime", |m| {
        m.setattr("_log", pyo3::wrap_pyfunction!(py_log, m)?)
    })
}

/// `tornado.py`, the `-k tornado` adapter (made on first use; it imports
/// tornado).
fn tornado_adapter(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    static MODULE: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();
    let src = pyo3::ffi::c_str!(include_str!("tornado.py"));
    crate::wsgi::embedded_module(py, &MODULE, src, c"ferrocorn_tornado", |_| Ok(()))
}

/// `_log(level, message)` for runtime.py: the worker's error log.
#[pyfunction]
#[pyo3(name = "_log")]
fn py_log(level: &str, message: &str) {
    match level {
        "debug" => debug!("{message}"),
        "info" => info!("{message}"),
        "warning" => warning!("{message}"),
        _ => error!("{message}"),
    }
}

/// The settings a cycle reads.
pub struct Options {
    pub loop_kind: String,
    /// `auto`, `on` or `off`.
    pub lifespan: String,
    pub root_path: String,
    /// --body-timeout: the longest a body or a response may stall.
    pub stall: Duration,
    /// --asgi-disconnect-grace-period.
    pub disconnect_grace: Duration,
    pub ws_max_message: usize,
    /// --no-sendfile turns pathsend and zerocopysend into plain writes.
    pub sendfile: bool,
    /// `-k tornado`: the app is a tornado.web.Application.
    pub tornado: bool,
}

impl Options {
    pub fn from_settings(s: &crate::config::Settings) -> Options {
        Options {
            loop_kind: s.asgi_loop.clone(),
            lifespan: s.asgi_lifespan.clone(),
            root_path: s.root_path.clone(),
            stall: crate::config::seconds(s.body_timeout),
            disconnect_grace: Duration::from_secs(s.asgi_disconnect_grace_period),
            ws_max_message: s.websocket_max_message_size as usize,
            sendfile: s.sendfile.0,
            tornado: s.worker_class == "tornado",
        }
    }
}

/// The ASGI app of a worker, before its event loop exists.
pub struct AsgiInterface {
    pub app: Py<PyAny>,
    pub servers: Vec<ServerInfo>,
    pub access: Option<Arc<Mutex<AccessLog>>>,
    pub forwarding: Forwarding,
    pub opts: Options,
}

/// USR1 for the access log an ASGI worker writes.
pub struct AccessLogs(pub Option<Arc<Mutex<AccessLog>>>);

impl ReopenLogs for AccessLogs {
    fn reopen_logs(&self) -> std::io::Result<()> {
        match &self.0 {
            Some(log) => lock(log).reopen(),
            None => Ok(()),
        }
    }
}

/// What every cycle of a worker shares (on the loop's thread).
pub struct Hub {
    pub app: Py<PyAny>,
    pub version: u8,
    pub run_app: Py<PyAny>,
    pub ev: Py<PyAny>,
    pub inbox: Shared,
    pub wake: Rc<Wake>,
    pub scope: scope::ScopeBase,
    pub forwarding: Forwarding,
    pub access: Option<Arc<Mutex<AccessLog>>>,
    pub opts: Options,
    /// Cycles by connection slot, while their connection is theirs.
    pub by_conn: RefCell<Vec<Option<CycleRef>>>,
    /// Cycles whose app has not returned yet (deadlines, grace period).
    pub running: RefCell<Vec<(u64, CycleRef)>>,
    pub next_id: std::cell::Cell<u64>,
    pub draining: std::cell::Cell<bool>,
}

/// A request's cycle, HTTP or WebSocket.
pub enum CycleRef {
    Http(Py<HttpCycle>),
    Ws(Py<WsCycle>),
}

impl CycleRef {
    fn clone_ref(&self, py: Python<'_>) -> CycleRef {
        match self {
            CycleRef::Http(c) => CycleRef::Http(c.clone_ref(py)),
            CycleRef::Ws(c) => CycleRef::Ws(c.clone_ref(py)),
        }
    }

    fn io(&self, py: Python<'_>) {
        match self {
            CycleRef::Http(c) => {
                if let Ok(mut c) = c.bind(py).try_borrow_mut() {
                    c.on_io(py);
                }
            }
            CycleRef::Ws(c) => {
                if let Ok(mut c) = c.bind(py).try_borrow_mut() {
                    c.on_io(py);
                }
            }
        }
    }

    fn tick(&self, py: Python<'_>) {
        match self {
            CycleRef::Http(c) => {
                if let Ok(mut c) = c.bind(py).try_borrow_mut() {
                    c.on_tick(py);
                }
            }
            CycleRef::Ws(c) => {
                if let Ok(mut c) = c.bind(py).try_borrow_mut() {
                    c.on_tick(py);
                }
            }
        }
    }

    /// The task running the app for this cycle.
    fn task(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        match self {
            CycleRef::Http(c) => c.bind(py).try_borrow().ok()?.task(py),
            CycleRef::Ws(c) => c.bind(py).try_borrow().ok()?.task(py),
        }
    }

    fn drain(&self, py: Python<'_>) {
        if let CycleRef::Ws(c) = self {
            if let Ok(mut c) = c.bind(py).try_borrow_mut() {
                c.going_away(py);
            }
        }
    }
}

/// What the access-log line of a finished cycle says.
pub struct Logged<'a> {
    pub head: &'a crate::http::RequestHead,
    pub peer: &'a crate::wsgi::Peer,
    /// 0: no response was made (logged as 500).
    pub status: u16,
    pub headers: &'a [(String, String)],
    pub body_bytes: u64,
    pub started: std::time::Instant,
    /// How long the request waited before the app was called.
    pub queue: Duration,
}

impl Hub {
    /// A cycle is done with connection `idx`: write its access-log line and
    /// give the connection back to the engine (its next turn takes it).
    pub fn give_back(&self, py: Python<'_>, idx: usize, outcome: Outcome, log: Logged<'_>) {
        if let Some(slot) = self.by_conn.borrow_mut().get_mut(idx) {
            *slot = None;
        }
        let status = if log.status == 0 { 500 } else { log.status };
        let timing = crate::wsgi::Timing {
            duration: log.started.elapsed(),
            queue: log.queue,
        };
        crate::metrics::request_done(status, timing.duration, timing.queue);
        if let Some(access) = &self.access {
            crate::wsgi::log_access_head(
                py,
                access,
                log.head,
                log.peer,
                status,
                log.headers,
                log.body_bytes,
                timing,
            );
        }
        crate::worker::executor::asyncio::hand_back(
            &self.inbox,
            crate::worker::executor::Done {
                idx,
                outcome: Ok(outcome),
            },
        );
        self.wake.soon(py);
    }

    /// A new cycle's id.
    pub fn new_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }
}

impl AsyncInterface for AsgiInterface {
    fn loop_kind(&self) -> &str {
        &self.opts.loop_kind
    }

    fn start(
        self: Box<Self>,
        py: Python<'_>,
        ev: &Bound<'_, PyAny>,
        inbox: Shared,
        wake: Rc<Wake>,
    ) -> Result<Box<dyn AsyncSession>, i32> {
        let fail = |what: &str, e: PyErr| {
            error!(
                "{what}:\n{}",
                crate::wsgi::format_exception(py, &e).trim_end()
            );
            WORKER_BOOT_ERROR
        };
        let rt = runtime(py).map_err(|e| fail("Cannot start ASGI", e))?;
        let mut me = self;
        if me.opts.tornado {
            let wrapped = tornado_adapter(py)
                .and_then(|t| t.call_method1("tornado_app", (me.app.bind(py),)))
                .map_err(|e| fail("Cannot serve the Tornado application", e))?;
            me.app = wrapped.unbind();
            me.opts.lifespan = "off".to_string();
        }
        let this = me;
        let version: u8 = rt
            .call_method1("asgi_version", (this.app.bind(py),))
            .and_then(|v| v.extract())
            .map_err(|e| fail("Cannot inspect the ASGI app", e))?;
        let state = PyDict::new(py);
        let lifespan = if this.opts.lifespan != "off" {
            let ls = rt
                .getattr("Lifespan")
                .and_then(|c| c.call1((this.app.bind(py), version, &this.opts.lifespan, &state)))
                .map_err(|e| fail("Cannot start the lifespan", e))?;
            let ok = ls
                .call_method0("startup")
                .and_then(|coro| ev.call_method1("run_until_complete", (coro,)))
                .and_then(|r| r.is_truthy())
                .map_err(|e| fail("Application startup failed", e))?;
            if !ok {
                return Err(WORKER_BOOT_ERROR);
            }
            Some(ls.unbind())
        } else {
            None
        };
        let scope = scope::ScopeBase::new(
            py,
            version,
            &this.opts.root_path,
            &this.servers,
            state.unbind(),
        )
        .map_err(|e| fail("Cannot start ASGI", e))?;
        let run_app = rt
            .getattr("run_app")
            .map_err(|e| fail("Cannot start ASGI", e))?
            .unbind();
        let AsgiInterface {
            app,
            access,
            forwarding,
            opts,
            ..
        } = *this;
        let hub = Rc::new(Hub {
            app,
            version,
            run_app,
            ev: ev.clone().unbind(),
            inbox,
            wake,
            scope,
            forwarding,
            access,
            opts,
            by_conn: RefCell::new(Vec::new()),
            running: RefCell::new(Vec::new()),
            next_id: std::cell::Cell::new(0),
            draining: std::cell::Cell::new(false),
        });
        Ok(Box::new(Session { hub, lifespan }))
    }
}

/// The running ASGI interface of a worker.
pub struct Session {
    hub: Rc<Hub>,
    lifespan: Option<Py<PyAny>>,
}

impl AsyncSession for Session {
    fn start(&mut self, py: Python<'_>, job: Job) {
        cycle::start(py, &self.hub, job);
    }

    fn io(&mut self, py: Python<'_>, idx: usize) {
        let c = self
            .hub
            .by_conn
            .borrow()
            .get(idx)
            .and_then(|c| c.as_ref().map(|c| c.clone_ref(py)));
        if let Some(c) = c {
            c.io(py);
        }
    }

    fn tick(&mut self, py: Python<'_>) {
        let running: Vec<CycleRef> = self
            .hub
            .running
            .borrow()
            .iter()
            .map(|(_, c)| c.clone_ref(py))
            .collect();
        for c in running {
            c.tick(py);
        }
    }

    fn drain(&mut self, py: Python<'_>) {
        self.hub.draining.set(true);
        let running: Vec<CycleRef> = self
            .hub
            .running
            .borrow()
            .iter()
            .map(|(_, c)| c.clone_ref(py))
            .collect();
        for c in running {
            c.drain(py);
        }
    }

    fn shutdown(&mut self, py: Python<'_>, ev: &Bound<'_, PyAny>, graceful: f64) {
        let started = std::time::Instant::now();
        if let Ok(rt) = runtime(py) {
            let tasks: Vec<Py<PyAny>> = self
                .hub
                .running
                .borrow()
                .iter()
                .filter_map(|(_, c)| c.task(py))
                .collect();
            if let Err(e) = rt.call_method1("finish", (ev, graceful.max(1.0), tasks)) {
                warning!("Waiting for the app's tasks: {e}");
            }
            if let Some(ls) = &self.lifespan {
                let left = (graceful - started.elapsed().as_secs_f64()).max(1.0);
                let r = ls
                    .bind(py)
                    .call_method1("shutdown", (left,))
                    .and_then(|coro| ev.call_method1("run_until_complete", (coro,)));
                if let Err(e) = r {
                    error!("Application shutdown failed: {e}");
                }
            }
        }
    }
}
