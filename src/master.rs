//! The master (arbiter): binds the listeners, forks and supervises the
//! workers, and turns signals into lifecycle changes. It is single-threaded
//! and never initializes Python unless `--preload` asks for it.
//!
//! Signal handlers only enqueue (see `sys::SignalQueue`); `run` is the one
//! loop that dispatches them, one handler per signal. The verbs follow
//! gunicorn's arbiter: spawn, reap, murder (timed-out workers), manage
//! (worker count), reload, stop.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};
use pyo3::prelude::*;
use thiserror::Error;

use crate::config::{self, Action, Settings};
use crate::listeners::{self, ListenError, Listener};
use crate::sys::{self, Forked, Scoreboard, Signal, SignalQueue};
use crate::wsgi::{self, APP_LOAD_ERROR, WORKER_BOOT_ERROR};
use crate::{critical, debug, error, info, warning};

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
}

/// The master's lifecycle. Each change is logged at debug level as
/// `master phase: <phase>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Listeners bound, first workers being forked.
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

struct WorkerInfo {
    /// Spawn order; the oldest workers are retired first.
    age: u64,
    /// Configuration generation (bumped by each HUP).
    generation: u64,
    /// Scoreboard slot.
    slot: usize,
    /// Sent TERM to reduce the worker count or end its generation.
    retiring: bool,
    /// Sent SIGABRT for a timeout, at this time.
    aborted: Option<Instant>,
}

/// Identity the workers switch to.
#[derive(Clone, Copy)]
struct Identity {
    uid: Option<Uid>,
    gid: Option<Gid>,
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

/// Most workers the scoreboard can track at once (old and new generations
/// during a reload included).
const MAX_SLOTS: usize = 1024;

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
    pid: u32,
}

fn resolve_identity(s: &Settings) -> Result<Identity, MasterError> {
    let uid = match &s.user {
        None => None,
        Some(u) => Some(match u.parse::<u32>() {
            Ok(n) => Uid::from_raw(n),
            Err(_) => {
                nix::unistd::User::from_name(u)
                    .ok()
                    .flatten()
                    .ok_or_else(|| MasterError::NoUser(u.clone()))?
                    .uid
            }
        }),
    };
    let gid = match &s.group {
        None => match (&s.user, uid) {
            // Like gunicorn: --user alone also takes that user's group.
            (Some(u), Some(_)) if u.parse::<u32>().is_err() => nix::unistd::User::from_name(u)
                .ok()
                .flatten()
                .map(|u| u.gid),
            _ => None,
        },
        Some(g) => Some(match g.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => {
                nix::unistd::Group::from_name(g)
                    .ok()
                    .flatten()
                    .ok_or_else(|| MasterError::NoGroup(g.clone()))?
                    .gid
            }
        }),
    };
    Ok(Identity { uid, gid })
}

/// Refuse a pidfile naming a live process; write ours atomically.
fn write_pidfile(path: &Path, pid: u32) -> Result<(), MasterError> {
    let err = |reason: String| MasterError::Pidfile {
        path: path.to_path_buf(),
        reason,
    };
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Ok(old) = text.trim().parse::<i32>() {
            if old > 0 && old as u32 != pid && kill(Pid::from_raw(old), None).is_ok() {
                return Err(err(format!("already running as pid {old}")));
            }
        }
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{pid}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, format!("{pid}\n")).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e.to_string())
    })
}

/// Remove the pidfile only if it still holds our pid.
fn remove_pidfile(path: &Path, pid: u32) {
    if let Ok(text) = std::fs::read_to_string(path) {
        if text.trim().parse::<u32>().ok() == Some(pid) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn proc_name(s: &Settings) -> String {
    s.proc_name.clone().unwrap_or_else(|| s.app().to_string())
}

impl Arbiter {
    /// Bind the listeners (before any fork), daemonize if asked, write the
    /// pidfile, preload the app if asked, and install the signal queue.
    pub fn new(
        settings: Settings,
        args: Vec<OsString>,
        start_dir: PathBuf,
    ) -> Result<Arbiter, MasterError> {
        let identity = resolve_identity(&settings)?;
        let umask = config::parse_umask(&settings.umask).unwrap_or(0);
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            umask as libc::mode_t,
        ));
        let listeners = listeners::bind_all(&settings)?;
        if settings.daemon {
            sys::daemonize().map_err(MasterError::Daemon)?;
        }
        let pid = std::process::id();
        let pidfile = settings.pidfile.as_ref().map(PathBuf::from);
        if let Some(p) = &pidfile {
            write_pidfile(p, pid)?;
        }
        let scoreboard = Scoreboard::new(MAX_SLOTS).map_err(MasterError::Scoreboard)?;
        let preloaded = if settings.preload_app {
            let setup = wsgi::PySetup {
                cwd: std::env::current_dir()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                pythonpath: settings.pythonpath.as_deref().unwrap_or(""),
                virtualenv: settings.virtualenv.as_deref(),
                app: settings.app(),
            };
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
        sys::set_proc_title(&format!("ferrocorn: master [{}]", proc_name(&settings)));
        Ok(Arbiter {
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
            pid,
        })
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
    pub fn run(mut self) -> i32 {
        info!("Starting ferrocorn {}", env!("CARGO_PKG_VERSION"));
        for l in &self.listeners {
            info!("Listening at: {} ({})", l.describe(), self.pid);
        }
        info!("Using worker: {}", self.settings.worker_class);
        self.manage_workers();
        if matches!(self.phase, Phase::Booting) {
            self.set_phase(Phase::Running);
        }
        loop {
            if let Some(sigq) = &self.signals {
                sigq.wait(match self.phase {
                    Phase::Running | Phase::Booting => Duration::from_secs(1),
                    _ => Duration::from_millis(100),
                });
            }
            let pending = self
                .signals
                .as_ref()
                .map(SignalQueue::drain)
                .unwrap_or_default();
            for sig in pending {
                self.handle_signal(sig);
            }
            self.reap();
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
                Phase::Booting | Phase::Running => self.manage_workers(),
                Phase::Reloading {
                    generation,
                    deadline,
                } => {
                    self.manage_workers();
                    self.check_reload(generation, deadline);
                }
                Phase::Draining { deadline } | Phase::Quitting { deadline } => {
                    if self.workers.is_empty() {
                        let code = self.exit_code;
                        self.set_phase(Phase::Exiting { code });
                    } else if Instant::now() >= deadline {
                        self.kill_workers(Signal::SIGKILL);
                    }
                }
                Phase::Exiting { .. } => {}
            }
            if let Phase::Exiting { code } = self.phase {
                info!("Shutting down: Master");
                if let Some(p) = &self.pidfile {
                    remove_pidfile(p, self.pid);
                }
                return code;
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
            Signal::SIGTTIN => {
                self.settings.workers += 1;
                self.manage_workers();
            }
            Signal::SIGTTOU => {
                if self.settings.workers > 1 {
                    self.settings.workers -= 1;
                }
                self.manage_workers();
            }
            Signal::SIGUSR1 => {
                if let Err(e) = crate::log::reopen() {
                    warning!("Cannot reopen the error log: {e}");
                }
                self.kill_workers(Signal::SIGUSR1);
            }
            Signal::SIGWINCH => {
                if self.settings.daemon {
                    info!("graceful stop of workers");
                    self.settings.workers = 0;
                    self.manage_workers();
                } else {
                    info!("SIGWINCH ignored. Not daemonized");
                }
            }
            Signal::SIGUSR2 => {
                warning!(
                    "USR2 (binary upgrade) is not available in ferrocorn {} yet; ignored",
                    env!("CARGO_PKG_VERSION")
                );
            }
            _ => {}
        }
    }

    /// HUP: re-read the configuration and replace the workers with a new
    /// generation. The old generation keeps serving until every new worker
    /// is ready; if the new configuration cannot be loaded or its workers
    /// fail to boot, the old one simply carries on.
    fn reload(&mut self) {
        if !matches!(self.phase, Phase::Running) {
            warning!("Reload ignored while {}", self.phase);
            return;
        }
        let env = |k: &str| std::env::var(k).ok();
        let here = std::env::current_dir().ok();
        let _ = std::env::set_current_dir(&self.start_dir);
        let loaded = config::load(self.args.clone(), &env);
        if let Some(here) = &here {
            let _ = std::env::set_current_dir(here);
        }
        let fresh = match loaded {
            Ok(Action::Run(mut s)) => {
                if let Some(v) = &s.virtualenv {
                    s.virtualenv = Some(self.start_dir.join(v).display().to_string());
                }
                *s
            }
            Ok(_) => {
                error!("Reload failed: the command line no longer describes a server; keeping the current configuration");
                return;
            }
            Err(e) => {
                error!("Reload failed, keeping the current configuration: {e}");
                return;
            }
        };
        if let Some(level) = crate::log::Level::parse(&fresh.loglevel) {
            if let Err(e) = crate::log::init(&fresh.errorlog, level) {
                error!("Reload: cannot open the error log {}: {e}", fresh.errorlog);
            }
        }
        for kv in &fresh.raw_env {
            if let Some((k, v)) = kv.split_once('=') {
                // Still single-threaded.
                std::env::set_var(k, v);
            }
        }
        let new_listeners = if fresh.binds != self.settings.binds {
            match listeners::bind_all(&fresh) {
                Ok(l) => {
                    for l in &l {
                        info!("Listening at: {} ({})", l.describe(), self.pid);
                    }
                    Some(l)
                }
                Err(e) => {
                    error!("Reload failed, keeping the current configuration: {e}");
                    return;
                }
            }
        } else {
            None
        };
        let old_settings = std::mem::replace(&mut self.settings, fresh);
        let old_listeners = match new_listeners {
            Some(l) => std::mem::replace(&mut self.listeners, l),
            None => Vec::new(),
        };
        self.previous = Some((old_settings, old_listeners));
        self.generation += 1;
        for w in self.workers.values_mut() {
            // Old-generation workers are no longer counted; they are sent
            // TERM once the new generation is ready.
            w.retiring = true;
        }
        let boot = Duration::from_secs_f64(if self.settings.timeout > 0.0 {
            self.settings.timeout
        } else {
            30.0
        });
        self.set_phase(Phase::Reloading {
            generation: self.generation,
            deadline: Instant::now() + boot + Duration::from_secs(5),
        });
        self.manage_workers();
    }

    fn check_reload(&mut self, generation: u64, deadline: Instant) {
        let new: Vec<usize> = self
            .workers
            .values()
            .filter(|w| w.generation == generation)
            .map(|w| w.slot)
            .collect();
        let ready = new.len() >= self.settings.workers as usize
            && new.iter().all(|&slot| self.scoreboard.is_ready(slot));
        if ready {
            let old: Vec<(u64, i32)> = self
                .workers
                .iter()
                .filter(|(_, w)| w.generation != generation)
                .map(|(pid, w)| (w.age, *pid))
                .collect();
            let mut old = old;
            old.sort();
            for (_, pid) in old {
                self.kill_worker(pid, Signal::SIGTERM);
            }
            self.previous = None;
            info!("Reload complete: {} new workers serving", new.len());
            self.set_phase(Phase::Running);
        } else if Instant::now() >= deadline {
            self.abort_reload("the new workers did not become ready in time");
        }
    }

    /// The new generation failed: stop it and restore the old one.
    fn abort_reload(&mut self, reason: &str) {
        let Phase::Reloading { generation, .. } = self.phase else {
            return;
        };
        error!("Reload failed ({reason}); the previous configuration keeps serving");
        let new: Vec<i32> = self
            .workers
            .iter()
            .filter(|(_, w)| w.generation == generation)
            .map(|(p, _)| *p)
            .collect();
        for pid in new {
            self.kill_worker(pid, Signal::SIGKILL);
            if let Some(w) = self.workers.get_mut(&pid) {
                w.retiring = true;
            }
        }
        if let Some((settings, listeners)) = self.previous.take() {
            self.settings = settings;
            if !listeners.is_empty() {
                self.listeners = listeners;
            }
        }
        self.generation += 1;
        for w in self.workers.values_mut() {
            if w.generation != generation && w.aborted.is_none() {
                w.retiring = false;
                w.generation = self.generation;
            }
        }
        self.set_phase(Phase::Running);
    }

    /// Begin a graceful (TERM) or quick (INT/QUIT) stop.
    fn stop(&mut self, graceful: bool, code: i32) {
        let now = Instant::now();
        let grace = Duration::from_secs_f64(self.settings.graceful_timeout);
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

    fn kill_workers(&mut self, sig: Signal) {
        let pids: Vec<i32> = self.workers.keys().copied().collect();
        for pid in pids {
            self.kill_worker(pid, sig);
        }
    }

    fn kill_worker(&mut self, pid: i32, sig: Signal) {
        if let Err(nix::errno::Errno::ESRCH) = kill(Pid::from_raw(pid), sig) {
            if let Some(w) = self.workers.remove(&pid) {
                self.free_slots.push(w.slot);
            }
        }
    }

    /// Workers silent for longer than the timeout get SIGABRT (they dump
    /// their Python stacks to the error log), and SIGKILL on a later pass.
    fn murder_workers(&mut self) {
        if self.settings.timeout <= 0.0 {
            return;
        }
        let limit = (self.settings.timeout * 1000.0) as u64;
        let now_ms = sys::monotonic_ms();
        let now = Instant::now();
        let mut abort = Vec::new();
        let mut kill9 = Vec::new();
        for (pid, w) in &self.workers {
            let silent = now_ms.saturating_sub(self.scoreboard.last_beat(w.slot));
            match w.aborted {
                None if silent > limit => abort.push(*pid),
                Some(t) if now.duration_since(t) >= Duration::from_secs(1) => kill9.push(*pid),
                _ => {}
            }
        }
        for pid in abort {
            critical!("WORKER TIMEOUT (pid:{pid})");
            if let Some(w) = self.workers.get_mut(&pid) {
                w.aborted = Some(now);
            }
            self.kill_worker(pid, Signal::SIGABRT);
        }
        for pid in kill9 {
            self.kill_worker(pid, Signal::SIGKILL);
        }
    }

    /// Collect exited workers; note boot failures.
    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    let Some(w) = self.workers.remove(&pid.as_raw()) else {
                        continue;
                    };
                    self.free_slots.push(w.slot);
                    if code != 0 {
                        warning!("Worker (pid:{pid}) exited with code {code}");
                    }
                    // A timed-out worker's exit code says nothing about booting.
                    if w.aborted.is_none() {
                        match code {
                            WORKER_BOOT_ERROR => {
                                self.halt = Some((WORKER_BOOT_ERROR, "Worker failed to boot."))
                            }
                            APP_LOAD_ERROR => {
                                self.halt = Some((APP_LOAD_ERROR, "App failed to load."))
                            }
                            _ => {}
                        }
                    }
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    let Some(w) = self.workers.remove(&pid.as_raw()) else {
                        continue;
                    };
                    self.free_slots.push(w.slot);
                    if sig == Signal::SIGKILL {
                        if w.aborted.is_none() {
                            error!("Worker (pid:{pid}) was sent SIGKILL! Perhaps out of memory?");
                        }
                    } else {
                        warning!("Worker (pid:{pid}) was sent {}!", sig.as_str());
                    }
                }
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    warning!("waitpid failed: {e}");
                    break;
                }
            }
        }
    }

    /// Bring the number of workers to the configured count.
    fn manage_workers(&mut self) {
        if self.halt.is_some() {
            return;
        }
        let want = self.settings.workers as usize;
        let active = |w: &BTreeMap<i32, WorkerInfo>| w.values().filter(|i| !i.retiring).count();
        while active(&self.workers) < want {
            self.spawn_worker();
            if self.halt.is_some() {
                return;
            }
        }
        while active(&self.workers) > want {
            let oldest = self
                .workers
                .iter()
                .filter(|(_, w)| !w.retiring)
                .min_by_key(|(_, w)| w.age)
                .map(|(pid, _)| *pid);
            match oldest {
                Some(pid) => {
                    if let Some(w) = self.workers.get_mut(&pid) {
                        w.retiring = true;
                    }
                    self.kill_worker(pid, Signal::SIGTERM);
                }
                None => break,
            }
        }
    }

    fn spawn_worker(&mut self) {
        let Some(slot) = self.free_slots.pop() else {
            warning!("Too many workers: the scoreboard has {MAX_SLOTS} slots");
            return;
        };
        self.scoreboard.reset(slot);
        self.next_age += 1;
        let forked = match &self.preloaded {
            None => sys::fork(),
            Some(_) => Python::attach(|py| {
                // SAFETY: the GIL is held (inside attach), as
                // PyOS_BeforeFork/AfterFork require; each path after fork
                // calls the matching AfterFork function exactly once.
                unsafe { pyo3::ffi::PyOS_BeforeFork() };
                let r = sys::fork();
                match r {
                    Ok(Forked::Child) => {
                        // SAFETY: see above; we are the child.
                        unsafe { pyo3::ffi::PyOS_AfterFork_Child() };
                        // Release the GIL for the worker's loop, which
                        // attaches per request.
                        py.detach(|| self.become_worker(slot));
                    }
                    // SAFETY: see above; we are the parent.
                    _ => unsafe { pyo3::ffi::PyOS_AfterFork_Parent() },
                }
                r
            }),
        };
        match forked {
            Ok(Forked::Parent(pid)) => {
                self.workers.insert(
                    pid.as_raw(),
                    WorkerInfo {
                        age: self.next_age,
                        generation: self.generation,
                        slot,
                        retiring: false,
                        aborted: None,
                    },
                );
            }
            Ok(Forked::Child) => self.become_worker(slot),
            Err(e) => {
                self.free_slots.push(slot);
                error!("Cannot fork a worker: {e}");
                self.halt = Some((WORKER_BOOT_ERROR, "Worker failed to boot."));
            }
        }
    }

    /// After fork, in the worker: drop the master's signal queue (its
    /// handlers and pipe) and old-generation listeners, switch identity, and
    /// serve. Never returns to the master's loop.
    fn become_worker(&mut self, slot: usize) -> ! {
        drop(self.signals.take());
        drop(self.previous.take());
        crate::log::after_fork();
        sys::set_proc_title(&format!(
            "ferrocorn: worker [{}]",
            proc_name(&self.settings)
        ));
        if let Err(e) = sys::drop_privileges(
            self.identity.uid,
            self.identity.gid,
            self.settings
                .initgroups
                .then_some(self.settings.user.as_deref())
                .flatten(),
        ) {
            error!("Cannot switch to the configured user/group: {e}");
            std::process::exit(WORKER_BOOT_ERROR);
        }
        let master = Pid::from_raw(self.pid as i32);
        let ctx = crate::worker::WorkerArgs {
            settings: &self.settings,
            listeners: &self.listeners,
            master,
            scoreboard: &self.scoreboard,
            slot,
            preloaded: self.preloaded.take(),
        };
        let code = crate::worker::run(ctx);
        std::process::exit(code);
    }
}

pub fn signal_name(sig: Signal) -> String {
    sig.as_str().trim_start_matches("SIG").to_ascii_lowercase()
}
