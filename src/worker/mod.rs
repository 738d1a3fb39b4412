//! A worker process: after fork it embeds CPython, imports the app, and
//! serves from a non-blocking epoll loop (mio). Connections live in Rust;
//! Python runs only once a request has fully arrived (or its body is too
//! large to buffer), and the GIL is not held while the loop waits.
//!
//! The pieces (see ARCHITECTURE.md): [`engine`] (the loop: listeners,
//! connection table, timers, signals, heartbeat), [`accept`] (how new
//! connections are taken), [`conn`] (one connection's socket and buffers),
//! [`h1`] (HTTP/1.1 on a connection), [`edge`] (PROXY headers and uwsgi
//! before or instead of it), and [`executor`] (where requests run:
//! inline for `sync`, a thread pool for `gthread`, behind the `Executor`
//! and `App` seams).
//!
//! The `sync` worker runs the app on the loop's thread, one request at a
//! time, like gunicorn's sync worker; but idle keep-alive connections and
//! slow clients still arriving cost nothing but a slot in the loop.
//!
//! The `gthread` worker keeps the same loop and hands each request, once
//! it has arrived, to a pool of `--threads` OS threads that run the app
//! (at most that many execute Python at once). While a request runs its
//! connection is parked in the loop; the thread sends back what is left of
//! the response and the loop writes it, so idle keep-alive connections and
//! slow readers never hold a thread.

mod accept;
mod conn;
mod edge;
mod engine;
pub mod executor;
mod h1;
mod h2c;
mod reload;
pub mod timeout_reply;

use std::sync::atomic::AtomicBool;

use pyo3::prelude::*;

use crate::config::Settings;
use crate::hooks;
use crate::master::listeners::Listener;
use crate::sys::{self, Scoreboard, Signal, SignalQueue};
use crate::wsgi::{self, Progress};
use crate::{error, info};
use engine::Worker;

/// Set while the app runs, so INT/QUIT end the worker at once.
pub(crate) static IN_APP: AtomicBool = AtomicBool::new(false);

/// What the master hands a freshly forked worker.
pub struct WorkerArgs<'a> {
    pub settings: &'a Settings,
    pub listeners: &'a [Listener],
    pub master: nix::unistd::Pid,
    pub scoreboard: &'a Scoreboard,
    pub slot: usize,
    /// The app, when the master imported it (`--preload`).
    pub preloaded: Option<Py<PyAny>>,
    /// What the master's interpreters share (sys.path, hash seed).
    pub python: &'a wsgi::PyBase,
    /// The config file to take worker-side hooks from, and the ones it
    /// defines, if it has any.
    pub hooks: Option<(String, Vec<String>)>,
    /// gunicorn's `worker.age`: this worker's number in spawn order.
    pub age: u64,
    /// TLS, as the master's settings describe it (loaded after fork, before
    /// the switch to `--user`); an `ssl_context` hook may replace it.
    pub tls: Option<std::sync::Arc<crate::tls::Tls>>,
}

/// Entry point of a freshly forked worker. Returns the process exit code.
pub fn run(mut args: WorkerArgs<'_>) -> i32 {
    // After fork, in the worker: nothing here may touch the master's state.
    let settings = args.settings;
    args.scoreboard.beat(args.slot);
    crate::metrics::worker_init(args.slot);
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
    // worker_int / worker_abort: handlers that hand the signal to a
    // thread running the hook (installed before Python's faulthandler).
    let defined = |name: &str| {
        args.hooks
            .as_ref()
            .is_some_and(|(_, d)| d.iter().any(|n| n == name))
    };
    // The master's timeout signal answers the requests whose response has
    // not started with a 500 (before the worker_abort hook's hand-off).
    if let Err(e) = timeout_reply::install(defined("worker_abort")) {
        error!("Cannot install signal handlers: {e}");
        return wsgi::WORKER_BOOT_ERROR;
    }
    let signal_hooks = if defined("worker_int") || defined("worker_abort") {
        match hooks::SignalHooks::install(defined("worker_int"), defined("worker_abort")) {
            Ok(h) => Some(h),
            Err(e) => {
                error!("Cannot install signal handlers: {e}");
                return wsgi::WORKER_BOOT_ERROR;
            }
        }
    } else {
        None
    };
    if !signal_hooks
        .as_ref()
        .is_some_and(hooks::SignalHooks::handles_int)
    {
        for sig in [Signal::SIGINT, Signal::SIGQUIT] {
            if let Err(e) = sys::exit_now_when_busy(sig, &IN_APP) {
                error!("Cannot install signal handlers: {e}");
                return wsgi::WORKER_BOOT_ERROR;
            }
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

    let setup = wsgi::PySetup {
        base: args.python,
        pythonpath: settings.pythonpath.as_deref().unwrap_or(""),
        virtualenv: settings.virtualenv.as_deref(),
        app: settings.app(),
        paste_global: &settings.raw_paste_global_conf,
    };
    // A greenlet worker patches the standard library first, before the
    // config file, the hooks or the app run (gunicorn patches after its
    // config and post_fork; here nothing Python runs unpatched).
    if let Some(lib) = executor::green::Library::of(&settings.worker_class) {
        if let Err(e) = wsgi::init_python(&setup) {
            error!("Exception in worker process:\n{}", e.to_string().trim_end());
            return e.exit_code();
        }
        if let Err(reason) = Python::attach(|py| executor::green::prepare(py, lib)) {
            error!("{reason}");
            return wsgi::WORKER_BOOT_ERROR;
        }
    }
    // --log-config: gunicorn's master sets logging up before forking;
    // here each worker does, before the hooks and the app.
    let logconfig = wsgi::LogConfig::from_settings(
        settings.logconfig.as_deref(),
        settings.logconfig_json.as_deref(),
        (!settings.logconfig_dict.is_empty())
            .then(|| serde_json::Value::Object(settings.logconfig_dict.0.clone()).to_string()),
    );
    if let Some(conf) = &logconfig {
        if let Err(e) = wsgi::init_python(&setup).and_then(|()| wsgi::configure_logging(conf)) {
            crate::exception!("Exception in worker process:\n{}", e.to_string().trim_end());
            return e.exit_code();
        }
    }
    // Worker-side hooks: the config file runs here too, then post_fork,
    // before the app is imported (as in gunicorn).
    let proc_name = settings
        .proc_name
        .clone()
        .unwrap_or_else(|| settings.app().to_string());
    let hooks = match &args.hooks {
        Some((spec, _)) => match wsgi::init_python(&setup) {
            Ok(()) => hooks::WorkerHooks::load(
                spec,
                &settings.to_toml_string(),
                args.master.as_raw() as u32,
                args.age,
            ),
            Err(e) => {
                crate::exception!("Exception in worker process:\n{}", e.to_string().trim_end());
                return e.exit_code();
            }
        },
        None => None,
    };
    let hooks = hooks.map(std::sync::Arc::new);
    if let (Some(sh), Some(h)) = (signal_hooks, &hooks) {
        sh.start(h.clone(), &IN_APP, settings.workers, proc_name.clone());
    }
    // A post_fork or post_worker_init that raises fails the boot, as in
    // gunicorn (the master then stops: "Worker failed to boot.").
    if let Some(h) = &hooks {
        if !h.call("post_fork", settings.workers, &proc_name) {
            return wsgi::WORKER_BOOT_ERROR;
        }
    }
    if settings.spew {
        // Traced from the app's import on (the interpreter starts first).
        if let Err(e) = wsgi::init_python(&setup) {
            crate::exception!("Exception in worker process:\n{}", e.to_string().trim_end());
            return e.exit_code();
        }
        wsgi::SPEW.store(true, std::sync::atomic::Ordering::Relaxed);
        Python::attach(wsgi::spew_this_thread);
    }
    let app = match args.preloaded.take() {
        Some(app) => Ok(app),
        None => wsgi::load_app(&setup),
    };
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            crate::exception!("Exception in worker process:\n{}", e.to_string().trim_end());
            return e.exit_code();
        }
    };
    // gunicorn's ssl_context hook: the SSLContext it returns, as rustls
    // can have it.
    if let (Some(tls), Some(h)) = (&args.tls, &hooks) {
        match h.ssl_context() {
            None => {}
            Some(Ok((opts, warnings))) => {
                for w in warnings {
                    crate::warning!("ssl_context: {w}");
                }
                match crate::tls::build(&opts) {
                    Ok(config) => {
                        args.tls = Some(std::sync::Arc::new(crate::tls::Tls {
                            config,
                            suppress_ragged: tls.suppress_ragged,
                        }))
                    }
                    Err(e) => {
                        error!("ssl_context: {e}");
                        return wsgi::WORKER_BOOT_ERROR;
                    }
                }
            }
            Some(Err(e)) => {
                error!("{e}");
                return wsgi::WORKER_BOOT_ERROR;
            }
        }
    }
    let request_hooks = hooks.as_deref().and_then(hooks::WorkerHooks::request_hooks);
    let mut worker = match Worker::new(args, app, signals, request_hooks) {
        Ok(w) => w,
        Err(e) => {
            error!("Worker failed to start: {e}");
            return wsgi::WORKER_BOOT_ERROR;
        }
    };
    if let Some(h) = &hooks {
        if !h.call("post_worker_init", settings.workers, &proc_name) {
            return wsgi::WORKER_BOOT_ERROR;
        }
    }
    if settings.reload {
        reload::start(&settings.reload_engine, settings.reload_extra_files.clone());
    }
    // `ferrocorn ctl stacks`: answered from a thread of its own, started
    // by the first request (the worker stays single-threaded until then).
    crate::control::stacks::arm();
    let code = match worker.exec.take_runner() {
        // The executor's threads run the loop (gthread, asyncio); the
        // runner says when the worker is ready (`Loop::ready`).
        Some(runner) => match runner.run(Box::new(worker)) {
            Ok(code) => code,
            Err(e) => {
                error!("Worker failed to start: {e}");
                return wsgi::WORKER_BOOT_ERROR;
            }
        },
        None => {
            worker.scoreboard.set_ready(worker.slot);
            if !worker.exec.concurrent() {
                // A sync worker streaming a response keeps beating while
                // bytes reach the client (gunicorn's would time out
                // mid-stream).
                wsgi::set_progress(Some(Progress::Beat(
                    worker.scoreboard.beat_cell(worker.slot),
                )));
            }
            worker.serve()
        }
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
    if hooks::INT_PENDING.load(std::sync::atomic::Ordering::SeqCst) {
        // worker_int runs on its thread: let it finish first (bounded by
        // the alarm its signal armed).
        while !hooks::INT_DONE.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    if let Some(h) = &hooks {
        h.call("worker_exit", settings.workers, &proc_name);
    }
    code
}

/// A random number in 0..=max (for --max-requests-jitter).
pub(super) fn jitter(max: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    if max == 0 {
        return 0;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() % (max + 1)
}

/// Resident set size of this process in bytes.
pub(super) fn current_rss() -> u64 {
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
