//! The master (arbiter): binds the listeners, forks and supervises the
//! workers, and turns signals into lifecycle changes. It is single-threaded
//! and never initializes Python unless `--preload` asks for it.
//!
//! Signal handlers only enqueue (see `sys::SignalQueue`); `run` is the one
//! loop that dispatches them, one handler per signal. The verbs follow
//! gunicorn's arbiter: spawn, reap, murder (timed-out workers), manage
//! (worker count), reload, stop.
//!
//! This file owns the [`Arbiter`] and its state, the lifecycle [`Phase`],
//! the loop and the signal dispatch, and the stop and exit paths. The rest,
//! by concern (each file adds `impl Arbiter` methods):
//! - `workers.rs`: the worker table, spawn/reap/kill, timeouts via the
//!   scoreboard, and the identity workers switch to.
//! - `reload.rs`: HUP, a new generation of workers, and rollback.
//! - `successor.rs`: USR2 (starting a successor master), the readiness
//!   acknowledgement between the two masters, promotion, WINCH.
//! - `status.rs`: what systemd is told (`READY=1`, `STATUS=`, watchdog).
//! - `inherit.rs`: what the environment hands the master at start.
//! - `pidfile.rs`: the pidfile and the successor's `<pidfile>.2`.
//! - `ctl.rs`: the control socket (`crate::control`): opening it, what it
//!   reads of the master, and its commands, applied as the signals are.
//! - [`listeners`], [`sdnotify`]: the sockets and the `sd_notify` protocol.
//! - [`upgrade_cmd`]: the `ferrocorn upgrade` command (the operator's side).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::unistd::Pid;
use pyo3::prelude::*;
use thiserror::Error;

use crate::config::{self, Settings};
use crate::sys::{self, Scoreboard, Signal, SignalQueue};
use crate::wsgi;
use crate::{debug, error, info, warning};
use listeners::{ListenError, Listener};
use sdnotify::{Notifier, NotifyError};

mod ctl;
mod inherit;
pub mod listeners;
mod pidfile;
mod reload;
pub mod sdnotify;
mod status;
mod successor;
pub mod upgrade_cmd;
mod workers;

pub use successor::started_from;

use inherit::take_inherited;
use pidfile::{remove_pidfile, write_pidfile};
use successor::{Successor, SuccessorState};
use workers::{chown_log_files, resolve_identity, Identity, WorkerInfo, MAX_SLOTS};

/// Errors that stop the master before it serves.
#[derive(Debug, Error)]
pub enum MasterError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot map the worker scoreboard: {0}")]
    Scoreboard(std::io::Error),
    #[error("pidfile {path}: {reason}")]
    Pidfile { path: PathBuf, reason: String },
    #[error("--user {0}: no such user")]
    NoUser(String),
    #[error("--group {0}: no such group")]
    NoGroup(String),
    #[error("cannot daemonize: {0}")]
    Daemon(std::io::Error),
    #[error("{0}")]
    Preload(String),
    /// What a worker could not boot without (`--preload` found it first):
    /// the greenlet library is missing or too old.
    #[error("{0}")]
    Boot(String),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error("FERROCORN_UPGRADE_FD={0}: not an open socket from the previous master: {1}")]
    UpgradeLink(String, std::io::Error),
    #[error("{0}")]
    Metrics(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// The master's lifecycle. Each change is logged at debug level as
/// `master phase: <phase>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Listeners bound, first workers booting; `READY=1` is sent to systemd
    /// (or the previous master, after USR2) once every one of them serves.
    Booting,
    /// Supervising workers.
    Running,
    /// HUP: a new generation is booting; the old one serves until every new
    /// worker reports ready (or the reload fails and is rolled back).
    Reloading { generation: u64, deadline: Instant },
    /// TERM: workers finish in-flight requests until `deadline`.
    Draining { deadline: Instant },
    /// INT/QUIT: workers exit now; stragglers are killed at `deadline`.
    Quitting { deadline: Instant },
    /// Every worker is gone; the master exits with this code.
    Exiting { code: i32 },
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Booting => write!(f, "booting"),
            Phase::Running => write!(f, "running"),
            Phase::Reloading { generation, .. } => write!(f, "reloading (generation {generation})"),
            Phase::Draining { .. } => write!(f, "draining"),
            Phase::Quitting { .. } => write!(f, "quitting"),
            Phase::Exiting { code } => write!(f, "exiting ({code})"),
        }
    }
}

const MASTER_SIGNALS: &[Signal] = &[
    Signal::SIGCHLD,
    Signal::SIGQUIT,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

pub struct Arbiter {
    settings: Settings,
    /// The command line, re-read on HUP.
    args: Vec<OsString>,
    /// Where ferrocorn was started: relative paths on the command line
    /// (the config file above all) are read from here on HUP too.
    start_dir: PathBuf,
    listeners: Vec<Listener>,
    workers: BTreeMap<i32, WorkerInfo>,
    signals: Option<SignalQueue>,
    scoreboard: Scoreboard,
    free_slots: Vec<usize>,
    phase: Phase,
    next_age: u64,
    generation: u64,
    /// Settings of the generation being replaced during a reload.
    previous: Option<(Settings, Vec<Listener>)>,
    /// Set when a worker failed to boot: stop everything with this code.
    halt: Option<(i32, &'static str)>,
    exit_code: i32,
    identity: Identity,
    pidfile: Option<PathBuf>,
    preloaded: Option<Py<PyAny>>,
    /// What every interpreter of this master start shares (sys.path
    /// directories, the hash seed); kept across HUP.
    python: wsgi::PyBase,
    pid: u32,
    /// The binary USR2 re-executes.
    exe: PathBuf,
    /// Its arguments before `args`: the interpreter's options and the
    /// entry point when the wheel's Python command is the master.
    exec_prefix: Vec<OsString>,
    /// systemd's notification socket (`Type=notify`).
    notifier: Option<Notifier>,
    /// `WATCHDOG_USEC` as received, handed on to a successor.
    watchdog_usec: Option<String>,
    /// Ping interval and next due time when systemd's watchdog is on.
    watchdog: Option<(Duration, Instant)>,
    /// Last `STATUS=` sent, and when.
    status_sent: (String, Instant),
    /// Requests finished by workers that have exited.
    retired_requests: u64,
    /// The shared counters, the metrics listener and the master's statsd.
    metrics: crate::metrics::MasterMetrics,
    /// The master started by our USR2.
    successor: Option<Successor>,
    /// While this master is an unpromoted successor: the link to the master
    /// that started it (end-of-file means it is gone).
    predecessor: Option<OwnedFd>,
    /// This master sent `READY=1` (or its ready message) already.
    announced: bool,
    /// Stopping with a successor to hand the service to.
    handing_over: bool,
    /// The control socket (`ferrocorn ctl`, gunicornc), when open.
    control: Option<crate::control::Server>,
    /// The control socket (path, mode) that could not be opened, and in
    /// which generation.
    control_failed: Option<(PathBuf, u32, u64)>,
    /// Workers sent TERM or KILL (`show stats`).
    workers_killed: u64,
}

fn proc_name(s: &Settings) -> String {
    s.proc_name
        .clone()
        .unwrap_or_else(|| s.default_proc_name.clone())
}

/// How long the master waits for one master-side server hook: --timeout
/// (30 s when that is off).
pub fn hook_bound(s: &Settings) -> Duration {
    if s.timeout > 0.0 {
        config::seconds(s.timeout)
    } else {
        Duration::from_secs(30)
    }
}

impl Arbiter {
    /// Bind the listeners (before any fork), daemonize if asked, write the
    /// pidfile, preload the app if asked, and install the signal queue.
    pub fn new(
        settings: Settings,
        args: Vec<OsString>,
        start_dir: PathBuf,
        exe: PathBuf,
        python: wsgi::PyBase,
    ) -> Result<Arbiter, MasterError> {
        let identity = resolve_identity(&settings)?;
        // TLS: certificates and keys are checked now (each worker loads
        // them again after fork, before it gives up root).
        if crate::tls::Tls::load(&settings)?.is_some() {
            crate::tls::prepare();
            for w in crate::tls::warnings(&settings) {
                warning!("{w}");
            }
        }
        chown_log_files(&settings, identity);
        let umask = config::parse_umask(&settings.umask).unwrap_or(0);
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            umask as libc::mode_t,
        ));
        let inherited = take_inherited(std::process::id())?;
        let listeners = match inherited.listeners {
            Some((origin, listeners)) => {
                let from = match (origin, inherited.predecessor.is_some()) {
                    (_, true) => "the previous master",
                    (listeners::Origin::ListenFds, false) => "systemd (LISTEN_FDS)",
                    (listeners::Origin::GunicornFd, false) => "GUNICORN_FD",
                };
                info!(
                    "Using {} inherited socket(s) from {from}; bind settings are not applied",
                    listeners.len()
                );
                listeners
            }
            None => listeners::bind_all(&settings)?,
        };
        // A successor is detached already (its predecessor was): forking
        // again would break the link between the two.
        if settings.daemon && inherited.predecessor.is_none() {
            sys::daemonize(settings.enable_stdio_inheritance).map_err(MasterError::Daemon)?;
        }
        let pid = std::process::id();
        let pidfile = settings.pidfile.as_ref().map(PathBuf::from);
        // A successor writes `<pidfile>.2` once it serves, and takes the
        // pidfile itself when promoted.
        if let (Some(p), None) = (&pidfile, &inherited.predecessor) {
            write_pidfile(p, pid)?;
        }
        let scoreboard = Scoreboard::new(MAX_SLOTS).map_err(MasterError::Scoreboard)?;
        let metrics = crate::metrics::MasterMetrics::new(
            MAX_SLOTS,
            &settings,
            inherited.predecessor.is_some(),
        )
        .map_err(|e| {
            if let (Some(p), None) = (&pidfile, &inherited.predecessor) {
                remove_pidfile(p, pid);
            }
            MasterError::Metrics(e)
        })?;
        let preloaded = if settings.preload_app {
            let setup = wsgi::PySetup {
                base: &python,
                pythonpath: settings.pythonpath.as_deref().unwrap_or(""),
                virtualenv: settings.virtualenv.as_deref(),
                app: settings.app(),
                paste_global: &settings.raw_paste_global_conf,
            };
            // A greenlet worker's app is imported patched here too.
            if let Some(lib) = crate::worker::executor::green::Library::of(&settings.worker_class) {
                let patched = wsgi::init_python(&setup)
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        Python::attach(|py| crate::worker::executor::green::prepare(py, lib))
                    });
                if let Err(reason) = patched {
                    if let Some(p) = &pidfile {
                        remove_pidfile(p, pid);
                    }
                    return Err(MasterError::Boot(reason));
                }
            }
            match wsgi::load_app(&setup) {
                Ok(app) => Some(app),
                Err(e) => {
                    if let Some(p) = &pidfile {
                        remove_pidfile(p, pid);
                    }
                    return Err(MasterError::Preload(e.to_string()));
                }
            }
        } else {
            None
        };
        let signals = SignalQueue::install(MASTER_SIGNALS).map_err(MasterError::Signals)?;
        let watchdog = inherited.watchdog.map(|every| (every, Instant::now()));
        let arbiter = Arbiter {
            settings,
            args,
            start_dir,
            listeners,
            workers: BTreeMap::new(),
            signals: Some(signals),
            scoreboard,
            free_slots: (0..MAX_SLOTS).rev().collect(),
            phase: Phase::Booting,
            next_age: 0,
            generation: 0,
            previous: None,
            halt: None,
            exit_code: 0,
            identity,
            pidfile,
            preloaded,
            python,
            pid,
            exe,
            exec_prefix: Vec::new(),
            notifier: inherited.notifier,
            watchdog_usec: inherited.watchdog_usec,
            watchdog,
            status_sent: (String::new(), Instant::now()),
            retired_requests: 0,
            metrics,
            successor: None,
            predecessor: inherited.predecessor,
            announced: false,
            handing_over: false,
            control: None,
            control_failed: None,
            workers_killed: 0,
        };
        arbiter.retitle();
        Ok(arbiter)
    }

    /// Set the process title: `master [name]`, marked while this master is
    /// an unpromoted successor.
    fn retitle(&self) {
        let mark = if self.predecessor.is_some() {
            " (upgrading)"
        } else {
            ""
        };
        sys::set_proc_title(&format!(
            "ferrocorn: master [{}]{mark}",
            proc_name(&self.settings)
        ));
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    fn set_phase(&mut self, phase: Phase) {
        if std::mem::discriminant(&phase) != std::mem::discriminant(&self.phase) {
            debug!("master phase: {phase}");
        }
        self.phase = phase;
    }

    /// Run until stopped; returns the process exit code.
    /// A USR2 successor is `exe` with `prefix` then the command line
    /// (the wheel's command: `python -m ferrocorn ARGS...`).
    pub fn with_exec_prefix(mut self, prefix: Vec<OsString>) -> Arbiter {
        self.exec_prefix = prefix;
        self
    }

    pub fn run(mut self) -> i32 {
        info!("Starting ferrocorn {}", env!("CARGO_PKG_VERSION"));
        for l in &self.listeners {
            info!(
                "Listening at: {} ({})",
                l.url(self.settings.certfile.is_some()),
                self.pid
            );
        }
        self.metrics.announce();
        info!("Using worker: {}", self.settings.worker_class);
        if self.settings.http_parser != "auto" {
            info!(
                "http_parser = {}: ferrocorn always uses its own HTTP parser",
                self.settings.http_parser
            );
        }
        if let Some(dir) = &self.settings.tmp_upload_dir {
            warning!(
                "tmp_upload_dir = {dir} has no effect: request bodies are never spooled to disk (gunicorn 27 does not use it either)"
            );
        }
        if self.predecessor.is_some() {
            info!(
                "Upgrade: booting as the successor of master {}",
                nix::unistd::getppid()
            );
        }
        if !self.hook("when_ready", None, &[]) {
            // As gunicorn, which stops when a start-up hook raises.
            error!("Stopping: the when_ready hook raised");
            return self.exit(1);
        }
        self.status(true);
        self.sync_control();
        self.manage_workers();
        loop {
            self.wait_for_events();
            let pending = self
                .signals
                .as_ref()
                .map(SignalQueue::drain)
                .unwrap_or_default();
            for sig in pending {
                self.handle_signal(sig);
            }
            self.serve_control();
            self.reap();
            self.check_successor();
            self.check_predecessor();
            if let Some((code, reason)) = self.halt.take() {
                if matches!(self.phase, Phase::Reloading { .. }) {
                    self.abort_reload(reason);
                } else {
                    error!("Reason: {reason}");
                    self.stop(true, code);
                }
            }
            self.murder_workers();
            match self.phase {
                Phase::Booting => {
                    self.manage_workers();
                    if self.all_ready(self.generation) {
                        self.set_phase(Phase::Running);
                        self.announce_ready();
                    }
                }
                Phase::Running => self.manage_workers(),
                Phase::Reloading {
                    generation,
                    deadline,
                } => {
                    self.manage_workers();
                    self.check_reload(generation, deadline);
                }
                Phase::Draining { deadline } | Phase::Quitting { deadline } => {
                    // With a successor still booting, wait for its verdict
                    // (bounded by its boot deadline) before exiting, so the
                    // service can be handed over rather than stopped.
                    let waiting = self
                        .successor
                        .as_ref()
                        .is_some_and(|s| s.state == SuccessorState::Booting);
                    if self.workers.is_empty() && !waiting {
                        let code = self.exit_code;
                        self.set_phase(Phase::Exiting { code });
                    } else if Instant::now() >= deadline {
                        self.kill_workers(Signal::SIGKILL);
                    }
                }
                Phase::Exiting { .. } => {}
            }
            if let Phase::Exiting { code } = self.phase {
                return self.exit(code);
            }
            self.metrics_tick();
            self.sync_control();
            self.status(false);
            self.watchdog();
        }
    }

    /// Sleep until a signal arrives, a link to another master has news, or
    /// the next periodic check is due.
    fn wait_for_events(&mut self) {
        let mut timeout = match self.phase {
            Phase::Running => Duration::from_secs(1),
            _ => Duration::from_millis(100),
        };
        if self.successor.is_some() {
            timeout = timeout.min(Duration::from_millis(250));
        }
        // An unpromoted successor does not ping (systemd would not accept
        // it), so its due time must not shorten the wait either.
        if let (Some((_, due)), None) = (self.watchdog, &self.predecessor) {
            timeout = timeout.min(due.saturating_duration_since(Instant::now()));
        }
        if let Some(t) = self.metrics.timeout() {
            timeout = timeout.min(t);
        }
        let Some(sigq) = &self.signals else {
            return;
        };
        let mut fds = vec![(sigq.fd(), false)];
        if let Some(s) = &self.successor {
            fds.push((s.link.as_fd(), false));
        }
        if let Some(p) = &self.predecessor {
            fds.push((p.as_fd(), false));
        }
        fds.extend(self.metrics.poll_fds());
        match &self.control {
            Some(c) => {
                c.wait(&fds, timeout);
            }
            None => {
                let _ = sys::wait_io(&fds, timeout);
            }
        }
    }

    /// One handler per signal.
    fn handle_signal(&mut self, sig: Signal) {
        if sig != Signal::SIGCHLD {
            info!("Handling signal: {}", signal_name(sig));
        }
        match sig {
            Signal::SIGCHLD => {} // reaped right after the queue is drained
            Signal::SIGTERM => self.stop(true, 0),
            Signal::SIGINT | Signal::SIGQUIT => self.stop(false, 0),
            Signal::SIGHUP => self.reload(),
            Signal::SIGTTIN => self.set_workers(self.settings.workers + 1),
            Signal::SIGTTOU => self.set_workers(self.settings.workers.saturating_sub(1).max(1)),
            Signal::SIGUSR1 => {
                if let Err(e) = crate::log::reopen() {
                    warning!("Cannot reopen the error log: {e}");
                }
                self.kill_workers(Signal::SIGUSR1);
            }
            Signal::SIGWINCH => self.winch(),
            Signal::SIGUSR2 => self.upgrade(),
            _ => {}
        }
    }

    /// Begin a graceful (TERM) or quick (INT/QUIT) stop.
    fn stop(&mut self, graceful: bool, code: i32) {
        let now = Instant::now();
        let grace = config::seconds(self.settings.graceful_timeout);
        match self.phase {
            Phase::Quitting { .. } | Phase::Exiting { .. } => return,
            Phase::Draining { deadline } if !graceful => {
                // A second INT/QUIT during a graceful stop makes it quick.
                self.set_phase(Phase::Quitting { deadline });
                self.kill_workers(Signal::SIGQUIT);
                return;
            }
            Phase::Draining { .. } => return,
            Phase::Booting | Phase::Running | Phase::Reloading { .. } => {}
        }
        self.exit_code = code;
        self.handing_over = self.successor.is_some();
        if self.successor.is_some() {
            // The successor serves these sockets: never unlink their files.
            for l in &mut self.listeners {
                l.disown();
            }
            info!("Retiring: the new master takes over once this one exits");
        } else {
            self.notify("STOPPING=1\nSTATUS=Stopping");
        }
        // Close our copies of the listeners now: unix socket files go away
        // and the sockets close as soon as the workers let go of them.
        self.listeners.clear();
        self.previous = None;
        if graceful {
            self.set_phase(Phase::Draining {
                deadline: now + grace,
            });
            self.kill_workers(Signal::SIGTERM);
        } else {
            self.set_phase(Phase::Quitting {
                deadline: now + grace,
            });
            self.kill_workers(Signal::SIGQUIT);
        }
    }

    /// The last steps of the master: hand the service to a ready successor
    /// (systemd learns the new main pid before this process is gone), or
    /// remove the pidfile.
    fn exit(&mut self, mut code: i32) -> i32 {
        let heir = self
            .successor
            .as_ref()
            .filter(|s| s.state == SuccessorState::Ready)
            .map(|s| s.pid);
        match heir {
            Some(heir) => {
                info!("Handing over to the new master (pid {heir})");
                if let Some(n) = &self.notifier {
                    if self.predecessor.is_none() {
                        let msg = format!("MAINPID={heir}\nSTATUS=Handed over to master {heir}");
                        match n.notify(&msg) {
                            // Wait until systemd has processed MAINPID=
                            // (bounded): exiting first could let it see
                            // its main process die before it knows the heir.
                            Ok(()) => match n.barrier(Duration::from_secs(5)) {
                                Ok(true) => {}
                                Ok(false) => {
                                    warning!("systemd did not acknowledge MAINPID={heir} within 5s")
                                }
                                Err(e) => warning!("sd_notify barrier failed: {e}"),
                            },
                            Err(e) => warning!("Cannot notify systemd of MAINPID={heir}: {e}"),
                        }
                    }
                }
                // The successor renames `<pidfile>.2` over ours when it
                // sees us go; removing it here could race with that.
            }
            None => {
                if let Some(s) = &self.successor {
                    // Never ready: it must not outlive us half-started.
                    let _ = kill(Pid::from_raw(s.pid), Signal::SIGTERM);
                }
                if self.handing_over {
                    // We meant to hand over and nobody is left to take the
                    // service: say so, and exit non-zero so that systemd's
                    // Restart=on-failure brings it back.
                    error!("Handover failed: the new master is gone; nothing serves after this master exits");
                    self.notify("STOPPING=1\nSTATUS=Handover failed: the new master is gone");
                    code = code.max(1);
                }
                if let Some(p) = self.own_pidfile() {
                    remove_pidfile(&p, self.pid);
                }
                // A failed upgrade's verdict (successor.rs), if still there.
                if let Some(p) = &self.pidfile {
                    let _ = std::fs::remove_file(pidfile::pidfile_failed(p));
                }
            }
        }
        if let Some(c) = self.control.take() {
            c.close();
        }
        self.hook("on_exit", None, &[]);
        crate::hooks::shutdown();
        info!("Shutting down: Master");
        code
    }

    /// Run a master-side server hook in the config host (if the config
    /// file defines it), waiting up to `hook_bound`. Returns false if the
    /// hook raised (the host logged it).
    fn hook(
        &self,
        name: &str,
        worker: Option<&crate::hooks::WorkerState>,
        args: &[serde_json::Value],
    ) -> bool {
        let server = crate::hooks::ServerState {
            pid: self.pid,
            num_workers: self.settings.workers,
            proc_name: &proc_name(&self.settings),
        };
        crate::hooks::call(name, &server, worker, args, hook_bound(&self.settings))
    }
}

pub fn signal_name(sig: Signal) -> String {
    sig.as_str().trim_start_matches("SIG").to_ascii_lowercase()
}
