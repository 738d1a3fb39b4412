//! The master (arbiter): binds the listeners, forks and supervises the
//! workers, and turns signals into lifecycle changes. It is single-threaded
//! and never initializes Python.
//!
//! Signal handlers only enqueue (see `sys::SignalQueue`); `run` is the one
//! loop that dispatches them, one handler per signal.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use thiserror::Error;

use crate::config::Settings;
use crate::listeners::{self, ListenError, Listener};
use crate::sys::{self, Forked, Signal, SignalQueue};
use crate::wsgi::{APP_LOAD_ERROR, WORKER_BOOT_ERROR};
use crate::{debug, error, info, warning};

#[derive(Debug, Error)]
pub enum MasterError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// The master's lifecycle. Each change is logged at debug level as
/// `master phase: <phase>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Listeners bound, first workers being forked.
    Booting,
    /// Supervising workers.
    Running,
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
            Phase::Draining { .. } => write!(f, "draining"),
            Phase::Quitting { .. } => write!(f, "quitting"),
            Phase::Exiting { code } => write!(f, "exiting ({code})"),
        }
    }
}

struct WorkerInfo {
    /// Spawn order; the oldest workers are retired first.
    age: u64,
    /// Sent TERM to reduce the worker count; no longer counted.
    retiring: bool,
}

pub struct Arbiter {
    settings: Settings,
    listeners: Vec<Listener>,
    workers: BTreeMap<i32, WorkerInfo>,
    signals: Option<SignalQueue>,
    phase: Phase,
    next_age: u64,
    /// Set when a worker failed to boot: stop everything with this code.
    halt: Option<(i32, &'static str)>,
    exit_code: i32,
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

impl Arbiter {
    /// Bind the listeners (before any fork) and install the signal queue.
    pub fn new(settings: Settings) -> Result<Arbiter, MasterError> {
        let listeners = listeners::bind_all(&settings)?;
        let signals = SignalQueue::install(MASTER_SIGNALS).map_err(MasterError::Signals)?;
        Ok(Arbiter {
            settings,
            listeners,
            workers: BTreeMap::new(),
            signals: Some(signals),
            phase: Phase::Booting,
            next_age: 0,
            halt: None,
            exit_code: 0,
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
            info!("Listening at: {} ({})", l.describe(), std::process::id());
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
                error!("{reason}");
                self.stop(true, code);
            }
            match self.phase {
                Phase::Booting | Phase::Running => self.manage_workers(),
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
            Signal::SIGHUP | Signal::SIGUSR2 | Signal::SIGWINCH => {
                warning!(
                    "Signal {} is not handled by ferrocorn {} yet; ignored",
                    signal_name(sig),
                    env!("CARGO_PKG_VERSION")
                );
            }
            _ => {}
        }
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
            Phase::Booting | Phase::Running => {}
        }
        self.exit_code = code;
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
            self.workers.remove(&pid);
        }
    }

    /// Collect exited workers; note boot failures.
    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    if self.workers.remove(&pid.as_raw()).is_none() {
                        continue;
                    }
                    if code != 0 {
                        warning!("Worker (pid:{pid}) exited with code {code}");
                    }
                    match code {
                        WORKER_BOOT_ERROR => {
                            self.halt = Some((WORKER_BOOT_ERROR, "Worker failed to boot."))
                        }
                        APP_LOAD_ERROR => self.halt = Some((APP_LOAD_ERROR, "App failed to load.")),
                        _ => {}
                    }
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    if self.workers.remove(&pid.as_raw()).is_none() {
                        continue;
                    }
                    if sig == Signal::SIGKILL {
                        error!("Worker (pid:{pid}) was sent SIGKILL! Perhaps out of memory?");
                    } else {
                        warning!("Worker (pid:{pid}) was sent {}!", signal_name(sig));
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
        self.next_age += 1;
        let master = nix::unistd::getpid();
        match sys::fork() {
            Ok(Forked::Parent(pid)) => {
                self.workers.insert(
                    pid.as_raw(),
                    WorkerInfo {
                        age: self.next_age,
                        retiring: false,
                    },
                );
            }
            Ok(Forked::Child) => {
                // After fork, in the worker: drop the master's signal queue
                // (its handlers and pipe), then become a worker and never
                // return to the master's loop.
                drop(self.signals.take());
                let code = crate::worker::run(&self.settings, &self.listeners, master);
                std::process::exit(code);
            }
            Err(e) => {
                error!("Cannot fork a worker: {e}");
                self.halt = Some((WORKER_BOOT_ERROR, "Worker failed to boot."));
            }
        }
    }
}

pub fn signal_name(sig: Signal) -> String {
    sig.as_str().trim_start_matches("SIG").to_ascii_lowercase()
}
