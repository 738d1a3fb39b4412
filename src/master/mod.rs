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
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};
use pyo3::prelude::*;
use thiserror::Error;

use crate::config::{self, Action, Settings};
use crate::sys::{self, Forked, Scoreboard, Signal, SignalQueue};
use crate::wsgi::{self, APP_LOAD_ERROR, WORKER_BOOT_ERROR};
use crate::{critical, debug, error, info, warning};
use listeners::{ListenError, Listener};
use sdnotify::{Notifier, NotifyError};

pub mod listeners;
pub mod sdnotify;
pub mod upgrade_cmd;

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
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error("FERROCORN_UPGRADE_FD={0}: not an open socket from the previous master: {1}")]
    UpgradeLink(String, std::io::Error),
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

/// A successor master started by USR2, as the master that started it sees
/// it. The old master keeps serving until the successor reports ready over
/// `link`, and stays ready to take over again (rollback) until it exits.
struct Successor {
    pid: i32,
    link: OwnedFd,
    state: SuccessorState,
    /// Boot deadline: a successor not ready by then is stopped.
    deadline: Instant,
    started: Instant,
    /// When it was told to quit for missing its deadline (SIGKILL follows).
    quit_sent: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SuccessorState {
    Booting,
    Ready,
}

/// How the process-wide environment handed us sockets and systemd.
struct Inherited {
    notifier: Option<Notifier>,
    watchdog_usec: Option<String>,
    watchdog: Option<Duration>,
    /// Link to the master that started this one with USR2.
    predecessor: Option<OwnedFd>,
    listeners: Option<(listeners::Origin, Vec<Listener>)>,
}

/// Variables meant for the master only, removed from the environment once
/// read so that neither workers nor the app see them.
const MASTER_ONLY_VARS: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    sys::UPGRADE_FD_ENV,
];

/// Read (and remove) what the environment hands the master: systemd's
/// notification socket and watchdog, inherited listeners, and the link to
/// a predecessor master.
fn take_inherited(pid: u32) -> Result<Inherited, MasterError> {
    let env = |k: &str| std::env::var(k).ok();
    let notifier = match env("NOTIFY_SOCKET").filter(|v| !v.is_empty()) {
        Some(name) => Some(Notifier::new(&name)?),
        None => None,
    };
    let watchdog_usec = env("WATCHDOG_USEC");
    let watchdog = sdnotify::watchdog_interval(
        watchdog_usec.as_deref(),
        env("WATCHDOG_PID").as_deref(),
        pid,
    );
    let listeners = listeners::inherited(&env, pid)?;
    let predecessor = match env(sys::UPGRADE_FD_ENV) {
        Some(v) => {
            let bad = |why: &str| {
                MasterError::UpgradeLink(v.clone(), std::io::Error::other(why.to_string()))
            };
            let fd: i32 = v.trim().parse().map_err(|_| bad("not a number"))?;
            let taken = listeners
                .as_ref()
                .is_some_and(|(_, ls)| ls.iter().any(|l| l.fd().as_raw_fd() == fd));
            if fd <= 2 || taken {
                return Err(bad("that descriptor is stdio or a listener"));
            }
            let owned = sys::adopt_fd(fd).map_err(|e| MasterError::UpgradeLink(v.clone(), e))?;
            if !nix::sys::stat::fstat(&owned)
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
            {
                return Err(bad("not a socket"));
            }
            sys::set_cloexec(owned.as_fd(), true)
                .map_err(|e| MasterError::UpgradeLink(v.clone(), e))?;
            Some(owned)
        }
        None => None,
    };
    for var in MASTER_ONLY_VARS.iter().chain(listeners::INHERIT_VARS) {
        // The master is still single-threaded.
        std::env::remove_var(var);
    }
    Ok(Inherited {
        notifier,
        watchdog_usec,
        watchdog,
        predecessor,
        listeners,
    })
}

/// The binary a USR2 re-executes: the path ferrocorn was started from (not
/// the file it resolved to), so replacing or re-pointing that path is how a
/// new version gets in.
pub fn started_from(argv0: Option<&std::ffi::OsStr>, start_dir: &Path) -> PathBuf {
    if let Some(a) = argv0.map(Path::new) {
        if a.components().count() > 1 {
            return start_dir.join(a);
        }
        if let Some(paths) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&paths) {
                let candidate = dir.join(a);
                if candidate.is_file() {
                    return if candidate.is_absolute() {
                        candidate
                    } else {
                        start_dir.join(candidate)
                    };
                }
            }
        }
    }
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ferrocorn"))
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
    /// What every interpreter of this master start shares (sys.path
    /// directories, the hash seed); kept across HUP.
    python: wsgi::PyBase,
    pid: u32,
    /// The binary USR2 re-executes.
    exe: PathBuf,
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
    /// The master started by our USR2.
    successor: Option<Successor>,
    /// While this master is an unpromoted successor: the link to the master
    /// that started it (end-of-file means it is gone).
    predecessor: Option<OwnedFd>,
    /// This master sent `READY=1` (or its ready message) already.
    announced: bool,
    /// Stopping with a successor to hand the service to.
    handing_over: bool,
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

/// Like gunicorn, give the log files to the workers' user and group, so
/// that they can reopen them (USR1). Failures are ignored: the path may be
/// /dev/null or a file the user owns already.
fn chown_log_files(s: &Settings, id: Identity) {
    if id.uid.is_none() && id.gid.is_none() {
        return;
    }
    let files = [Some(s.errorlog.as_str()), s.accesslog.as_deref()];
    for path in files.into_iter().flatten().filter(|p| *p != "-") {
        let _ = nix::unistd::chown(path, id.uid, id.gid);
    }
}

/// Refuse a pidfile naming a live process; write ours atomically.
fn write_pidfile(path: &Path, pid: u32) -> Result<(), MasterError> {
    let err = |reason: String| MasterError::Pidfile {
        path: path.to_path_buf(),
        reason,
    };
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Ok(old) = text.trim().parse::<i32>() {
            if old > 0 && old as u32 != pid && sys::process_running(old) {
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
    // 0644 whatever the umask (gunicorn's default umask is 0): only the
    // owner may change which process the pidfile names.
    std::fs::write(&tmp, format!("{pid}\n")).map_err(|e| err(e.to_string()))?;
    let perms = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(&tmp, perms).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e.to_string())
    })
}

/// Where a successor master writes its pid until it is promoted.
fn pidfile2(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".2");
    PathBuf::from(s)
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
        exe: PathBuf,
        python: wsgi::PyBase,
    ) -> Result<Arbiter, MasterError> {
        let identity = resolve_identity(&settings)?;
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
            sys::daemonize().map_err(MasterError::Daemon)?;
        }
        let pid = std::process::id();
        let pidfile = settings.pidfile.as_ref().map(PathBuf::from);
        // A successor writes `<pidfile>.2` once it serves, and takes the
        // pidfile itself when promoted.
        if let (Some(p), None) = (&pidfile, &inherited.predecessor) {
            write_pidfile(p, pid)?;
        }
        let scoreboard = Scoreboard::new(MAX_SLOTS).map_err(MasterError::Scoreboard)?;
        let preloaded = if settings.preload_app {
            let setup = wsgi::PySetup {
                base: &python,
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
            notifier: inherited.notifier,
            watchdog_usec: inherited.watchdog_usec,
            watchdog,
            status_sent: (String::new(), Instant::now()),
            retired_requests: 0,
            successor: None,
            predecessor: inherited.predecessor,
            announced: false,
            handing_over: false,
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
    pub fn run(mut self) -> i32 {
        info!("Starting ferrocorn {}", env!("CARGO_PKG_VERSION"));
        for l in &self.listeners {
            info!("Listening at: {} ({})", l.describe(), self.pid);
        }
        info!("Using worker: {}", self.settings.worker_class);
        if self.predecessor.is_some() {
            info!(
                "Upgrade: booting as the successor of master {}",
                nix::unistd::getppid()
            );
        }
        self.status(true);
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
        let Some(sigq) = &self.signals else {
            return;
        };
        let mut fds = vec![sigq.fd()];
        if let Some(s) = &self.successor {
            fds.push(s.link.as_fd());
        }
        if let Some(p) = &self.predecessor {
            fds.push(p.as_fd());
        }
        let _ = sys::wait_any(&fds, timeout);
    }

    /// Every non-retiring worker of `generation` is booted and serving.
    fn all_ready(&self, generation: u64) -> bool {
        let slots: Vec<usize> = self
            .workers
            .values()
            .filter(|w| w.generation == generation && !w.retiring)
            .map(|w| w.slot)
            .collect();
        slots.len() >= self.settings.workers as usize
            && slots.iter().all(|&slot| self.scoreboard.is_ready(slot))
    }

    /// The first workers serve: tell whoever waits for us. Under systemd
    /// that is `READY=1`; an unpromoted successor writes `<pidfile>.2` and
    /// tells the master that started it instead.
    fn announce_ready(&mut self) {
        if self.announced {
            return;
        }
        self.announced = true;
        let n = self.workers.len();
        match &self.predecessor {
            Some(link) => {
                if let Some(p) = &self.pidfile {
                    let p2 = pidfile2(p);
                    if let Err(e) = write_pidfile(&p2, self.pid) {
                        warning!("Upgrade: cannot write {}: {e}", p2.display());
                    }
                }
                // A few bytes on a fresh stream socket: never blocks.
                let _ = nix::unistd::write(link, format!("READY {}\n", self.pid).as_bytes());
                info!("Upgrade: {n} workers serving; the previous master may be retired now");
            }
            None => {
                info!("Ready: {n} workers serving");
                self.notify_ready();
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
                let heir_ready = self
                    .successor
                    .as_ref()
                    .is_some_and(|s| s.state == SuccessorState::Ready);
                if self.settings.daemon || heir_ready {
                    info!("graceful stop of workers");
                    self.settings.workers = 0;
                    self.manage_workers();
                } else if self.successor.is_some() {
                    info!("SIGWINCH ignored: the new master is not serving yet");
                } else {
                    info!("SIGWINCH ignored. Not daemonized");
                }
            }
            Signal::SIGUSR2 => self.upgrade(),
            _ => {}
        }
    }

    /// HUP: re-read the configuration and replace the workers with a new
    /// generation. The old generation keeps serving until every new worker
    /// is ready; if the new configuration cannot be loaded or its workers
    /// fail to boot, the old one simply carries on.
    fn reload(&mut self) {
        // While booting too: the new generation replaces the booting one,
        // and readiness is announced once it serves.
        if !matches!(self.phase, Phase::Running | Phase::Booting) {
            warning!("Reload ignored while {}", self.phase);
            return;
        }
        if self.announced {
            self.notify(&format!(
                "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=Reloading the configuration",
                sdnotify::monotonic_usec()
            ));
        }
        if !self.start_reload() && self.announced {
            // Nothing changed: the current generation keeps serving.
            self.notify_ready();
        }
    }

    /// Load the configuration again and start the new generation; false
    /// when the reload failed before anything changed.
    fn start_reload(&mut self) -> bool {
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
                return false;
            }
            Err(e) => {
                error!("Reload failed, keeping the current configuration: {e}");
                return false;
            }
        };
        // Relative log paths are relative to --chdir (where the master is),
        // as at start; the access log is checked before any worker forks.
        let mut fresh = fresh;
        fresh.errorlog = crate::log::resolve_path(&fresh.errorlog);
        if let Some(path) = &mut fresh.accesslog {
            *path = crate::log::resolve_path(path);
            if let Err(e) = crate::accesslog::check(path) {
                error!("Reload failed, keeping the current configuration: {e}");
                return false;
            }
        }
        if let Some(level) = crate::log::Level::parse(&fresh.loglevel) {
            if let Err(e) = crate::log::init(&fresh.errorlog, level) {
                error!("Reload: cannot open the error log {}: {e}", fresh.errorlog);
            }
        }
        chown_log_files(&fresh, self.identity);
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
                    return false;
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
        let boot = config::seconds(if self.settings.timeout > 0.0 {
            self.settings.timeout
        } else {
            30.0
        });
        self.set_phase(Phase::Reloading {
            generation: self.generation,
            deadline: Instant::now() + boot + Duration::from_secs(5),
        });
        self.manage_workers();
        true
    }

    fn check_reload(&mut self, generation: u64, deadline: Instant) {
        let new = self
            .workers
            .values()
            .filter(|w| w.generation == generation)
            .count();
        if self.all_ready(generation) {
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
            info!("Reload complete: {new} new workers serving");
            self.set_phase(Phase::Running);
            if self.announced {
                self.notify_ready();
            } else {
                self.announce_ready();
            }
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
        if self.announced {
            self.set_phase(Phase::Running);
            self.notify(&format!(
                "READY=1\nSTATUS=Reload failed ({reason}); {}",
                self.status_text()
            ));
        } else {
            self.set_phase(Phase::Booting);
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
            }
        }
        info!("Shutting down: Master");
        code
    }

    /// The pidfile this master currently holds: `<pidfile>.2` while it is
    /// an unpromoted successor.
    fn own_pidfile(&self) -> Option<PathBuf> {
        let p = self.pidfile.as_ref()?;
        Some(if self.predecessor.is_some() {
            pidfile2(p)
        } else {
            p.clone()
        })
    }

    /// Send a notification to systemd, if it asked for them and this master
    /// is the service's main process (a successor is not, until promoted).
    fn notify(&self, msg: &str) {
        if self.predecessor.is_some() {
            return;
        }
        if let Some(n) = &self.notifier {
            if let Err(e) = n.notify(msg) {
                debug!("sd_notify to {} failed: {e}", n.name());
            }
        }
    }

    /// `READY=1` with a fresh `STATUS=`.
    fn notify_ready(&mut self) {
        let text = self.status_text();
        self.notify(&format!("READY=1\nSTATUS={text}"));
        self.status_sent = (text, Instant::now());
    }

    /// Requests finished by all workers so far.
    fn requests_served(&self) -> u64 {
        self.retired_requests
            + self
                .workers
                .values()
                .map(|w| self.scoreboard.requests(w.slot))
                .sum::<u64>()
    }

    /// The one-line live summary shown by `systemctl status`.
    fn status_text(&self) -> String {
        let version = env!("CARGO_PKG_VERSION");
        let workers = self.workers.values().filter(|w| !w.retiring).count();
        let served = self.requests_served();
        let mut text = match self.phase {
            Phase::Booting => format!(
                "ferrocorn {version} booting {} workers",
                self.settings.workers
            ),
            Phase::Reloading { generation, .. } => {
                format!("ferrocorn {version} reloading (generation {generation}); {served} requests served")
            }
            Phase::Draining { .. } | Phase::Quitting { .. } | Phase::Exiting { .. } => {
                format!(
                    "ferrocorn {version} stopping; {} workers finishing",
                    self.workers.len()
                )
            }
            Phase::Running => {
                format!("ferrocorn {version} serving: {workers} workers, {served} requests served")
            }
        };
        if let Some(s) = &self.successor {
            text.push_str(&match s.state {
                SuccessorState::Booting => format!("; upgrade: new master {} booting", s.pid),
                SuccessorState::Ready => format!(
                    "; upgrade: new master {} ready, TERM {} to finish",
                    s.pid, self.pid
                ),
            });
        }
        text
    }

    /// Refresh `STATUS=` when the summary changed (at most once a second
    /// unless `now`).
    fn status(&mut self, now: bool) {
        if self.notifier.is_none() || self.predecessor.is_some() {
            return;
        }
        if !now && self.status_sent.1.elapsed() < Duration::from_secs(1) {
            return;
        }
        let text = self.status_text();
        if text != self.status_sent.0 {
            self.notify(&format!("STATUS={text}"));
            self.status_sent = (text, Instant::now());
        }
    }

    /// `WATCHDOG=1` when due: the loop is alive and turning.
    fn watchdog(&mut self) {
        if self.predecessor.is_some() {
            return;
        }
        if let Some((every, due)) = self.watchdog {
            let now = Instant::now();
            if now >= due {
                self.notify("WATCHDOG=1");
                self.watchdog = Some((every, now + every));
            }
        }
    }

    /// USR2: start a successor master from the binary at the path we were
    /// started from, handing it every listener. We keep serving; the
    /// successor reports ready over the link, and the operator then retires
    /// this master (WINCH, TERM).
    fn upgrade(&mut self) {
        if let Some(s) = &self.successor {
            info!(
                "USR2 ignored: an upgrade to master {} is already under way",
                s.pid
            );
            return;
        }
        if self.predecessor.is_some() {
            info!("USR2 ignored: this master is itself an upgrade awaiting its predecessor's exit");
            return;
        }
        if !matches!(self.phase, Phase::Running | Phase::Booting) {
            warning!("USR2 ignored while {}", self.phase);
            return;
        }
        let (ours, theirs) = match sys::socketpair() {
            Ok(pair) => pair,
            Err(e) => {
                error!("Upgrade failed: cannot create the link to the new master: {e}");
                return;
            }
        };
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        if let Some(n) = &self.notifier {
            env.push(("NOTIFY_SOCKET".into(), n.name().into()));
        }
        if let (Some(w), Some(_)) = (&self.watchdog_usec, self.watchdog) {
            env.push(("WATCHDOG_USEC".into(), w.into()));
        }
        let handoff = sys::Handoff {
            exe: &self.exe,
            args: &self.args,
            dir: &self.start_dir,
            env,
            listeners: self
                .listeners
                .iter()
                .map(|l| {
                    (
                        l.fd(),
                        l.fdname.clone().unwrap_or_else(|| "ferrocorn".into()),
                    )
                })
                .collect(),
            link: theirs.as_fd(),
            handled: MASTER_SIGNALS,
        };
        match sys::spawn_successor(handoff) {
            Ok(pid) => {
                drop(theirs);
                info!(
                    "Upgrade: started new master (pid {pid}) from {}",
                    self.exe.display()
                );
                let boot =
                    config::seconds(self.settings.timeout.max(30.0)) + Duration::from_secs(30);
                self.successor = Some(Successor {
                    pid: pid.as_raw(),
                    link: ours,
                    state: SuccessorState::Booting,
                    deadline: Instant::now() + boot,
                    started: Instant::now(),
                    quit_sent: None,
                });
                // The successor serves these sockets from now on: whatever
                // this master does next (a reload that changes `bind`, its
                // exit), it must not unlink their files.
                for l in &mut self.listeners {
                    l.disown();
                }
                self.status(true);
            }
            Err(e) => error!("Upgrade failed: cannot start the new master: {e}"),
        }
    }

    /// Read the successor's news: `READY <pid>` once its workers serve.
    /// Stop it if it is not ready by its deadline.
    fn check_successor(&mut self) {
        let Some(s) = &mut self.successor else {
            return;
        };
        let mut buf = [0u8; 64];
        let mut ready = false;
        loop {
            match nix::sys::socket::recv(
                std::os::fd::AsRawFd::as_raw_fd(&s.link),
                &mut buf,
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => break,
                Ok(n) => ready |= buf[..n].windows(5).any(|w| w == b"READY"),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        if ready && s.state == SuccessorState::Booting {
            s.state = SuccessorState::Ready;
            let (pid, took) = (s.pid, s.started.elapsed());
            info!(
                "Upgrade: new master (pid {pid}) is serving after {:.1}s; send TERM to this master (pid {}) to finish, or WINCH to stop only its workers",
                took.as_secs_f64(),
                self.pid
            );
            self.status(true);
        } else if s.state == SuccessorState::Booting && Instant::now() >= s.deadline {
            let pid = s.pid;
            let now = Instant::now();
            // QUIT first; a successor that ignores it gets SIGKILL, so a
            // retiring master waiting for the verdict cannot hang.
            s.deadline = now + Duration::from_secs(5);
            if s.quit_sent.is_none() {
                s.quit_sent = Some(now);
                let rest = if matches!(self.phase, Phase::Running) {
                    ", this master keeps serving"
                } else {
                    ""
                };
                error!("Upgrade failed: new master (pid {pid}) is not ready in time; stopping it{rest}");
                let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
            } else {
                warning!("New master (pid {pid}) did not quit; killing it");
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    /// The successor process ended (reaped).
    fn successor_exited(&mut self, how: String) {
        let Some(s) = self.successor.take() else {
            return;
        };
        match s.state {
            SuccessorState::Booting => error!(
                "Upgrade failed: new master (pid {}) {how} before it was ready; this master keeps serving",
                s.pid
            ),
            SuccessorState::Ready => info!(
                "New master (pid {}) {how}; this master is the only one again",
                s.pid
            ),
        }
        if matches!(self.phase, Phase::Running) && self.settings.workers == 0 {
            warning!("This master has no workers (WINCH): send HUP to start them again");
        }
        self.status(true);
    }

    /// An unpromoted successor watches the link to its predecessor: when
    /// that master is gone, this one takes its place.
    fn check_predecessor(&mut self) {
        let Some(link) = &self.predecessor else {
            return;
        };
        let mut buf = [0u8; 16];
        let gone = match nix::sys::socket::recv(
            std::os::fd::AsRawFd::as_raw_fd(link),
            &mut buf,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) => true,
            Ok(_) => false,
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => false,
            Err(_) => true,
        };
        if gone {
            self.promote();
        }
    }

    /// Become the only master: take the pidfile, drop the upgrade mark from
    /// the title, and speak to systemd from now on (the old master told it
    /// our pid before exiting).
    fn promote(&mut self) {
        drop(self.predecessor.take());
        if let Some(p) = &self.pidfile {
            if self.announced {
                let p2 = pidfile2(p);
                if let Err(e) = std::fs::rename(&p2, p) {
                    warning!("Cannot move {} to {}: {e}", p2.display(), p.display());
                    let _ = write_pidfile(p, self.pid);
                }
            } else if let Err(e) = write_pidfile(p, self.pid) {
                warning!("{e}");
            }
        }
        self.retitle();
        info!(
            "Promoted: the previous master is gone; this master (pid {}) is now the only one",
            self.pid
        );
        if self.announced {
            if matches!(
                self.phase,
                Phase::Draining { .. } | Phase::Quitting { .. } | Phase::Exiting { .. }
            ) {
                self.notify("STOPPING=1\nSTATUS=Stopping");
            } else {
                self.notify_ready();
            }
        }
        if self.watchdog.is_some() {
            self.watchdog = self.watchdog.map(|(every, _)| (every, Instant::now()));
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
                self.retired_requests += self.scoreboard.requests(w.slot);
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
                    if self
                        .successor
                        .as_ref()
                        .is_some_and(|s| s.pid == pid.as_raw())
                    {
                        self.successor_exited(format!("exited with code {code}"));
                        continue;
                    }
                    let Some(w) = self.workers.remove(&pid.as_raw()) else {
                        continue;
                    };
                    self.retired_requests += self.scoreboard.requests(w.slot);
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
                    if self
                        .successor
                        .as_ref()
                        .is_some_and(|s| s.pid == pid.as_raw())
                    {
                        self.successor_exited(format!("was killed by {}", sig.as_str()));
                        continue;
                    }
                    let Some(w) = self.workers.remove(&pid.as_raw()) else {
                        continue;
                    };
                    self.retired_requests += self.scoreboard.requests(w.slot);
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
        // Links to other masters: a worker holding them would hide this
        // master's exit from its successor (or predecessor).
        drop(self.successor.take());
        drop(self.predecessor.take());
        drop(self.notifier.take());
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
            python: &self.python,
        };
        let code = crate::worker::run(ctx);
        std::process::exit(code);
    }
}

pub fn signal_name(sig: Signal) -> String {
    sig.as_str().trim_start_matches("SIG").to_ascii_lowercase()
}
