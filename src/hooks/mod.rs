//! Python config files and gunicorn's master-side server hooks, without
//! Python in the master: a *config host*, a process forked from the master
//! while it is still single-threaded (during config loading), runs the
//! config file (`-c FILE.py`, `-c python:module`, `./gunicorn.conf.py`)
//! and reports its settings, then stays up and runs the hooks the file
//! defines (`on_starting`, `when_ready`, `pre_fork`, `child_exit`, ...)
//! whenever the master asks, waiting for each with a bound. HUP re-runs
//! the file in the same host, so threads a hook started (a metrics server
//! from `when_ready`) live on. Changes a hook makes to `os.environ` are
//! copied into the master's environment, so the workers forked after it
//! see them, as under gunicorn.
//!
//! This module owns the host process and the line-delimited JSON protocol
//! to it (`host.py` is its Python side). The host is the process-wide
//! [`HOST`]: the master is single-threaded, and a worker drops its copy
//! right after fork ([`after_fork`]).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use pyo3::prelude::*;
use serde_json::{json, Value};
use thiserror::Error;

use crate::sys::{self, Forked};
use crate::{error, warning};

mod signal_hooks;
mod worker_side;
pub use signal_hooks::{SignalHooks, INT_DONE, INT_PENDING};
pub use worker_side::{RequestHooks, RequestInfo, WorkerHooks};

/// The hook names gunicorn defines, and whether each runs in the master
/// (here: in the config host) or in the worker.
pub const HOOKS: &[(&str, Side)] = &[
    ("on_starting", Side::Master),
    ("on_reload", Side::Master),
    ("when_ready", Side::Master),
    ("pre_fork", Side::Master),
    ("post_fork", Side::Worker),
    ("post_worker_init", Side::Worker),
    ("worker_int", Side::Worker),
    ("worker_abort", Side::Worker),
    ("pre_exec", Side::Master),
    ("pre_request", Side::Worker),
    ("post_request", Side::Worker),
    ("child_exit", Side::Master),
    ("worker_exit", Side::Worker),
    ("nworkers_changed", Side::Master),
    ("on_exit", Side::Master),
    ("ssl_context", Side::Worker),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Master,
    Worker,
}

/// How long loading the config file may take.
const LOAD_BOUND: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum HookError {
    #[error("cannot start the config host: {0}")]
    Start(io::Error),
    #[error("{0}")]
    Config(String),
    #[error("the config host {0}")]
    Host(String),
}

/// What a config file set.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Settings with plain values (str, int, float, bool, list, dict).
    pub settings: Vec<(String, Value)>,
    /// Known settings given an object ferrocorn cannot take from Python.
    pub objects: Vec<String>,
    /// Hooks the file defines.
    pub hooks: Vec<String>,
    /// What the file changed in `os.environ`.
    pub env: Vec<(String, Option<String>)>,
}

/// The config host: its pid and the master's end of the link.
pub struct Host {
    pid: Option<Pid>,
    sock: OwnedFd,
    buf: Vec<u8>,
    next_id: u64,
    /// Hooks the loaded file defines.
    hooks: Vec<String>,
    /// The loaded file (absolute) or python:module.
    spec: String,
    /// The link broke (the host died): hooks are skipped from then on.
    broken: bool,
    /// A call that outlasted its bound, still running in the host: later
    /// hooks are skipped (not waited for) until it answers.
    stuck: Option<(u64, String)>,
}

/// The master's config host, if the configuration is a Python file.
pub static HOST: Mutex<Option<Host>> = Mutex::new(None);

fn host() -> std::sync::MutexGuard<'static, Option<Host>> {
    HOST.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run the Python config file `spec` (a path, or `python:module`) in the
/// config host, starting it on first use (importing from `virtualenv` and
/// `pythonpath`); `known` are the setting names.
pub fn load(
    spec: &str,
    known: &[&str],
    virtualenv: Option<&str>,
    pythonpath: Option<&str>,
) -> Result<Loaded, HookError> {
    let mut guard = host();
    if guard.as_ref().is_none_or(|h| h.broken) {
        *guard = Some(Host::start(virtualenv, pythonpath.unwrap_or(""))?);
    }
    let Some(h) = guard.as_mut() else {
        return Err(HookError::Host("did not start".into()));
    };
    if let Some(busy) = h.still_stuck() {
        return Err(HookError::Host(format!(
            "is still running the {busy} hook; cannot read the config file"
        )));
    }
    let hooks: Vec<&str> = HOOKS.iter().map(|(n, _)| *n).collect();
    let reply = h.request(
        json!({"op": "load", "spec": spec, "known": known, "hooks": hooks}),
        LOAD_BOUND,
    )?;
    if reply["ok"] != Value::Bool(true) {
        return Err(HookError::Config(
            reply["error"]
                .as_str()
                .unwrap_or("cannot read it")
                .to_string(),
        ));
    }
    let mut loaded = Loaded::default();
    if let Some(m) = reply["settings"].as_object() {
        loaded.settings = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    loaded.objects = strings(&reply["objects"]);
    loaded.hooks = strings(&reply["hooks"]);
    loaded.env = env_of(&reply);
    h.hooks = loaded.hooks.clone();
    h.spec = spec.to_string();
    Ok(loaded)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The changes a config file or hook made to `os.environ`: set (name,
/// Some(value)) or removed (name, None).
fn env_of(reply: &Value) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = reply["env_set"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), Some(v.to_string()))))
                .collect()
        })
        .unwrap_or_default();
    out.extend(strings(&reply["env_unset"]).into_iter().map(|k| (k, None)));
    out
}

/// Whether the loaded config file defines `hook`.
pub fn defines(hook: &str) -> bool {
    host()
        .as_ref()
        .is_some_and(|h| !h.broken && h.hooks.iter().any(|n| n == hook))
}

/// The config file to run in each worker and the worker-side hooks it
/// defines, when it defines any (the workers then run the file too, to
/// get them).
pub fn worker_spec() -> Option<(String, Vec<String>)> {
    let defined: Vec<String> = HOOKS
        .iter()
        .filter(|(n, side)| *side == Side::Worker && defines(n))
        .map(|(n, _)| n.to_string())
        .collect();
    if defined.is_empty() {
        return None;
    }
    host().as_ref().map(|h| (h.spec.clone(), defined))
}

/// After the master resolved the configuration: tell the host the final
/// settings (`server.cfg`) and where the error log goes.
/// `raw_env` (`-e K=V`) goes into the host's `os.environ` too, as it is
/// in gunicorn's master, where the hooks run.
pub fn setup(cfg_toml: &str, errorlog: &str, loglevel: &str, raw_env: &[String]) {
    let mut guard = host();
    let Some(h) = guard.as_mut() else {
        return;
    };
    let msg = json!({"op": "setup", "cfg": cfg_toml, "errorlog": errorlog, "loglevel": loglevel, "raw_env": raw_env});
    if let Err(e) = h.request(msg, LOAD_BOUND) {
        warning!("Config host: {e}");
    }
}

/// The master as hooks see it (`server`).
pub struct ServerState<'a> {
    pub pid: u32,
    pub num_workers: u32,
    pub proc_name: &'a str,
}

/// A worker as master-side hooks see it (`worker`).
pub struct WorkerState {
    /// None before it is forked (gunicorn's `"[booting]"`).
    pub pid: Option<i32>,
    pub ppid: u32,
    pub age: u64,
    pub alive: bool,
}

/// Run the master-side hook `hook` if the config file defines it, waiting
/// up to `bound`. A hook that raises is logged (with its traceback) by
/// the host; one that outlasts the bound is logged here and the master
/// carries on. Returns false if the hook raised.
pub fn call(
    hook: &str,
    server: &ServerState<'_>,
    worker: Option<&WorkerState>,
    args: &[Value],
    bound: Duration,
) -> bool {
    if !defines(hook) {
        return true;
    }
    let mut guard = host();
    let Some(h) = guard.as_mut() else {
        return true;
    };
    let worker = worker.map(|w| {
        json!({"pid": w.pid.map(Value::from).unwrap_or_else(|| Value::from("[booting]")),
               "ppid": w.ppid, "age": w.age, "alive": w.alive})
    });
    if let Some(busy) = h.still_stuck() {
        error!("{hook} hook skipped: the config host is still running the {busy} hook");
        return true;
    }
    let msg = json!({
        "op": "call", "hook": hook,
        "server": {"pid": server.pid, "num_workers": server.num_workers, "proc_name": server.proc_name},
        "worker": worker, "args": args,
    });
    match h.request(msg, bound) {
        Ok(reply) => {
            apply_env(&env_of(&reply));
            reply.get("failed").is_none()
        }
        Err(e) => {
            if !h.broken {
                h.stuck = Some((h.next_id - 1, hook.to_string()));
            }
            error!("{hook} hook: {e}; carrying on");
            true
        }
    }
}

/// Make in the master's environment the changes the config file or a
/// hook made to the host's `os.environ`, so the workers forked from now
/// on see them (the master is single-threaded: set_var is sound here).
pub fn apply_env(changes: &[(String, Option<String>)]) {
    for (k, v) in changes {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            continue;
        }
        match v {
            Some(v) if !v.contains('\0') => std::env::set_var(k, v),
            Some(_) => {}
            None => std::env::remove_var(k),
        }
    }
}

/// In a freshly forked worker: let go of the link (the host must see it
/// close when the master exits).
pub fn after_fork() {
    if let Ok(mut g) = HOST.try_lock() {
        g.take();
    }
}

/// When the master exits: end the host (it also exits when the link
/// closes, unless a hook keeps it busy).
pub fn shutdown() {
    let Some(h) = host().take() else {
        return;
    };
    drop(h.sock);
    let Some(pid) = h.pid else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if nix::sys::signal::kill(pid, None).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    warning!("The config host (pid {pid}) did not exit; killing it");
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
}

impl Host {
    /// Fork the host. Called by the single-threaded master. The host is
    /// forked twice so that it is not the master's child: the master's
    /// children are its workers, as tools watching it expect.
    fn start(virtualenv: Option<&str>, pythonpath: &str) -> Result<Host, HookError> {
        let (ours, theirs) = sys::socketpair().map_err(HookError::Start)?;
        match sys::fork().map_err(|e| HookError::Start(e.into()))? {
            Forked::Parent(middle) => {
                drop(theirs);
                let _ = nix::sys::wait::waitpid(middle, None);
                Ok(Host {
                    // Learnt from the host's first reply.
                    pid: None,
                    sock: ours,
                    buf: Vec::new(),
                    next_id: 1,
                    hooks: Vec::new(),
                    spec: String::new(),
                    broken: false,
                    stuck: None,
                })
            }
            Forked::Child => {
                drop(ours);
                let code = match sys::fork() {
                    Ok(Forked::Child) => host_main(theirs, virtualenv, pythonpath),
                    Ok(Forked::Parent(_)) => 0,
                    Err(_) => 1,
                };
                // SAFETY: _exit ends this forked process at once, without
                // running the master's atexit handlers or destructors.
                unsafe { libc::_exit(code) }
            }
        }
    }

    /// The hook a call that outlasted its bound is still running, if so
    /// (its reply, once there, is read and dropped here).
    fn still_stuck(&mut self) -> Option<String> {
        let (id, hook) = self.stuck.clone()?;
        match self.wait_reply(id, Duration::ZERO) {
            Ok(_) => {
                self.stuck = None;
                None
            }
            Err(_) if self.broken => None,
            Err(_) => Some(hook),
        }
    }

    /// Send one request and wait up to `bound` for its reply.
    fn request(&mut self, mut msg: Value, bound: Duration) -> Result<Value, HookError> {
        if self.broken {
            return Err(HookError::Host("is gone".into()));
        }
        let id = self.next_id;
        self.next_id += 1;
        msg["id"] = Value::from(id);
        let mut line = msg.to_string().into_bytes();
        line.push(b'\n');
        let mut f = std::fs::File::from(self.sock.try_clone().map_err(HookError::Start)?);
        if let Err(e) = f.write_all(&line) {
            self.broken = true;
            return Err(HookError::Host(format!("is gone ({e})")));
        }
        self.wait_reply(id, bound)
    }

    /// Wait up to `bound` for the reply to request `id`, dropping replies
    /// to earlier requests that outlasted theirs.
    fn wait_reply(&mut self, id: u64, bound: Duration) -> Result<Value, HookError> {
        let mut f = std::fs::File::from(self.sock.try_clone().map_err(HookError::Start)?);
        let deadline = Instant::now() + bound;
        loop {
            while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let Ok(reply) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                if let Some(pid) = reply["pid"].as_i64() {
                    self.pid = Some(Pid::from_raw(pid as i32));
                }
                if reply["id"].as_u64() == Some(id) {
                    return Ok(reply);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let ready = sys::wait_any(&[self.sock.as_fd()], left).unwrap_or_default();
            if !ready.first().copied().unwrap_or(false) {
                if Instant::now() >= deadline {
                    return Err(HookError::Host(format!(
                        "did not answer within {:.0} s",
                        bound.as_secs_f64()
                    )));
                }
                continue;
            }
            let mut chunk = [0u8; 64 * 1024];
            match f.read(&mut chunk) {
                Ok(0) => {
                    self.broken = true;
                    return Err(HookError::Host("exited".into()));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.broken = true;
                    return Err(HookError::Host(format!("is gone ({e})")));
                }
            }
        }
    }
}

/// `_ferrocorn_log(level, text)`: hooks' `server.log` lines go to the
/// error log.
#[pyfunction]
fn _ferrocorn_log(level: &str, text: &str) {
    let level = crate::log::Level::parse(level).unwrap_or(crate::log::Level::Info);
    crate::log::log(level, format_args!("{text}"));
}

/// `_ferrocorn_log_init(path, level)`: the host's error log goes where
/// the master's does (the host was forked before the log was opened).
#[pyfunction]
fn _ferrocorn_log_init(path: &str, level: &str) {
    let level = crate::log::Level::parse(level).unwrap_or(crate::log::Level::Info);
    if let Err(e) = crate::log::init(path, level) {
        warning!("Config host: cannot open the error log {path}: {e}");
    }
}

/// The host process: Python up, then serve the master's requests until the
/// link closes.
fn host_main(sock: OwnedFd, virtualenv: Option<&str>, pythonpath: &str) -> i32 {
    sys::set_proc_title("ferrocorn: config host");
    // The host lives until the master lets go of the link (then it sees
    // end-of-file): stop signals sent to the whole group (a terminal's ^C,
    // systemd's KillMode=control-group) must not end it before the
    // master's last hooks (child_exit, on_exit) have run.
    for sig in [
        sys::Signal::SIGTERM,
        sys::Signal::SIGINT,
        sys::Signal::SIGQUIT,
        sys::Signal::SIGHUP,
        sys::Signal::SIGUSR1,
        sys::Signal::SIGUSR2,
        sys::Signal::SIGTTIN,
        sys::Signal::SIGTTOU,
        sys::Signal::SIGWINCH,
    ] {
        sys::ignore_signal(sig);
    }
    sys::unblock_all_signals();
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| ".".into());
    let base = crate::wsgi::PyBase {
        chdir: cwd.clone(),
        launch_dir: cwd,
        hash_seed: crate::wsgi::new_hash_seed(),
    };
    let setup = crate::wsgi::PySetup {
        base: &base,
        pythonpath,
        virtualenv,
        app: "",
        paste_global: &[],
    };
    if let Err(e) = crate::wsgi::init_python(&setup) {
        error!("Config host: {e}");
        return 1;
    }
    let fd = sock.as_raw_fd();
    let result = Python::attach(|py| -> PyResult<()> {
        let module = host_module(py)?;
        let os = py.import("os")?;
        let r = os.call_method1("fdopen", (fd, "r"))?;
        let dup = nix::unistd::dup(&sock).map_err(io::Error::from)?;
        let w = os.call_method1("fdopen", (dup.as_raw_fd(), "w"))?;
        std::mem::forget(dup);
        std::mem::forget(sock);
        module.getattr("serve")?.call1((r, w))?;
        Ok(())
    });
    if let Err(e) = result {
        Python::attach(|py| error!("Config host: {}", crate::wsgi::format_exception(py, &e)));
        return 1;
    }
    0
}

/// The host's Python module (`host.py`), with `_ferrocorn_log` in it.
pub(crate) fn host_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let modules = py.import("sys")?.getattr("modules")?;
    if let Ok(m) = modules.get_item("_ferrocorn_host") {
        return Ok(m.cast_into::<PyModule>()?);
    }
    let m = PyModule::new(py, "_ferrocorn_host")?;
    m.add_function(wrap_pyfunction!(_ferrocorn_log, &m)?)?;
    m.add_function(wrap_pyfunction!(_ferrocorn_log_init, &m)?)?;
    let code = std::ffi::CString::new(include_str!("host.py"))
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    py.run(&code, Some(&m.dict()), None)?;
    modules.set_item("_ferrocorn_host", &m)?;
    Ok(m)
}
