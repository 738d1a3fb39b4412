//! The worker table: one entry per live worker (spawn order, generation,
//! scoreboard slot, retiring, timed out), kept at the configured count by
//! spawning and retiring workers. Each worker beats its slot of the shared
//! scoreboard; a worker silent for longer than `--timeout` gets SIGABRT,
//! then SIGKILL. Reaping notes workers that failed to boot or to load the
//! app (which stops the master, or rolls a reload back). Also the identity
//! workers switch to after fork.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};
use pyo3::prelude::*;

use super::{proc_name, Arbiter, MasterError};
use crate::config::Settings;
use crate::sys::{self, Forked, Signal};
use crate::wsgi::{APP_LOAD_ERROR, WORKER_BOOT_ERROR};
use crate::{critical, error, warning};

/// One live worker, as the master tracks it.
pub(super) struct WorkerInfo {
    /// Spawn order; the oldest workers are retired first.
    pub(super) age: u64,
    /// Configuration generation (bumped by each HUP).
    pub(super) generation: u64,
    /// Scoreboard slot.
    pub(super) slot: usize,
    /// Sent TERM to reduce the worker count or end its generation.
    pub(super) retiring: bool,
    /// Sent SIGABRT for a timeout, at this time.
    pub(super) aborted: Option<Instant>,
}

/// Identity the workers switch to.
#[derive(Clone, Copy)]
pub(super) struct Identity {
    uid: Option<Uid>,
    gid: Option<Gid>,
}

/// Most workers the scoreboard can track at once (old and new generations
/// during a reload included).
pub(super) const MAX_SLOTS: usize = 1024;

pub(super) fn resolve_identity(s: &Settings) -> Result<Identity, MasterError> {
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
pub(super) fn chown_log_files(s: &Settings, id: Identity) {
    if id.uid.is_none() && id.gid.is_none() {
        return;
    }
    let files = [Some(s.errorlog.as_str()), s.accesslog.as_deref()];
    for path in files.into_iter().flatten().filter(|p| *p != "-") {
        let _ = nix::unistd::chown(path, id.uid, id.gid);
    }
}

impl Arbiter {
    /// Every non-retiring worker of `generation` is booted and serving.
    pub(super) fn all_ready(&self, generation: u64) -> bool {
        let slots: Vec<usize> = self
            .workers
            .values()
            .filter(|w| w.generation == generation && !w.retiring)
            .map(|w| w.slot)
            .collect();
        slots.len() >= self.settings.workers as usize
            && slots.iter().all(|&slot| self.scoreboard.is_ready(slot))
    }

    /// Requests finished by all workers so far.
    pub(super) fn requests_served(&self) -> u64 {
        self.retired_requests
            + self
                .workers
                .values()
                .map(|w| self.scoreboard.requests(w.slot))
                .sum::<u64>()
    }

    pub(super) fn kill_workers(&mut self, sig: Signal) {
        let pids: Vec<i32> = self.workers.keys().copied().collect();
        for pid in pids {
            self.kill_worker(pid, sig);
        }
    }

    pub(super) fn kill_worker(&mut self, pid: i32, sig: Signal) {
        if matches!(sig, Signal::SIGTERM | Signal::SIGKILL) {
            self.workers_killed += 1;
        }
        if let Err(nix::errno::Errno::ESRCH) = kill(Pid::from_raw(pid), sig) {
            if let Some(w) = self.workers.remove(&pid) {
                self.retired_requests += self.scoreboard.requests(w.slot);
                self.metrics.reaped(w.slot, None);
                self.scoreboard.vacate(w.slot);
                self.free_slots.push(w.slot);
            }
        }
    }

    /// Workers silent for longer than the timeout get SIGABRT (they dump
    /// their Python stacks to the error log), and SIGKILL on a later pass.
    pub(super) fn murder_workers(&mut self) {
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
    pub(super) fn reap(&mut self) {
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
                    self.child_exit(pid.as_raw(), &w);
                    self.retired_requests += self.scoreboard.requests(w.slot);
                    let boot_failure = matches!(code, WORKER_BOOT_ERROR | APP_LOAD_ERROR);
                    self.worker_metrics_end(&w, boot_failure);
                    self.scoreboard.vacate(w.slot);
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
                    self.child_exit(pid.as_raw(), &w);
                    self.retired_requests += self.scoreboard.requests(w.slot);
                    self.worker_metrics_end(&w, false);
                    self.scoreboard.vacate(w.slot);
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
    pub(super) fn manage_workers(&mut self) {
        if self.halt.is_some() {
            return;
        }
        let want = self.settings.workers as usize;
        self.scoreboard.set_wanted(want);
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
        self.metrics.spawned(slot);
        self.next_age += 1;
        let booting = crate::hooks::WorkerState {
            pid: None,
            ppid: self.pid,
            age: self.next_age,
            alive: true,
        };
        self.hook("pre_fork", Some(&booting), &[]);
        if let Some(c) = &mut self.control {
            c.before_fork();
        }
        let forked = match &self.preloaded {
            None => sys::fork(),
            // sys::fork runs CPython's fork hooks (the interpreter is up).
            Some(_) => Python::attach(|py| {
                let r = sys::fork();
                if let Ok(Forked::Child) = r {
                    // Release the GIL for the worker's loop, which
                    // attaches per request.
                    py.detach(|| self.become_worker(slot));
                }
                r
            }),
        };
        match forked {
            Ok(Forked::Parent(pid)) => {
                if let Some(c) = &mut self.control {
                    c.after_fork(pid.as_raw());
                }
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

    /// A reaped worker's counters join the retired ones, and its exit is
    /// counted as a restart, by reason, unless nothing replaces it.
    fn worker_metrics_end(&mut self, w: &WorkerInfo, boot_failure: bool) {
        let end = crate::metrics::WorkerEnd {
            stopping: matches!(
                self.phase,
                super::Phase::Draining { .. }
                    | super::Phase::Quitting { .. }
                    | super::Phase::Exiting { .. }
            ),
            timed_out: w.aborted.is_some(),
            retiring: w.retiring,
            old_generation: w.generation != self.generation,
            boot_failure,
        };
        let reason = crate::metrics::restart_reason(end, self.metrics.exit_reason(w.slot));
        self.metrics.reaped(w.slot, reason);
    }

    /// Once per pass of the loop: scrapes, the master's statsd metrics.
    pub(super) fn metrics_tick(&mut self) {
        let view: Vec<crate::metrics::WorkerView> = self
            .workers
            .iter()
            .map(|(pid, w)| crate::metrics::WorkerView {
                pid: *pid,
                slot: w.slot,
                ready: self.scoreboard.is_ready(w.slot),
                retiring: w.retiring,
                timed_out: w.aborted.is_some(),
            })
            .collect();
        let active = self.workers.values().filter(|w| !w.retiring).count() as u64;
        self.metrics
            .tick(&view, active, &self.listeners, &self.settings);
    }

    /// A worker is gone: `child_exit(server, worker)`.
    fn child_exit(&self, pid: i32, w: &WorkerInfo) {
        let gone = crate::hooks::WorkerState {
            pid: Some(pid),
            ppid: self.pid,
            age: w.age,
            alive: false,
        };
        self.hook("child_exit", Some(&gone), &[]);
    }

    /// After fork, in the worker: drop the master's signal queue (its
    /// handlers and pipe) and old-generation listeners, switch identity, and
    /// serve. Never returns to the master's loop.
    fn become_worker(&mut self, slot: usize) -> ! {
        let hooks = crate::hooks::worker_spec();
        crate::hooks::after_fork();
        drop(self.signals.take());
        drop(self.previous.take());
        // Links to other masters: a worker holding them would hide this
        // master's exit from its successor (or predecessor).
        drop(self.successor.take());
        drop(self.predecessor.take());
        drop(self.notifier.take());
        self.metrics.after_fork();
        if let Some(c) = self.control.take() {
            c.in_child();
        }
        crate::log::after_fork();
        // Read as root, before the switch below (a key is often readable
        // by root alone); a HUP's new workers read renewed files.
        let tls = match crate::tls::Tls::load(&self.settings) {
            Ok(t) => t.map(std::sync::Arc::new),
            Err(e) => {
                error!("{e}");
                std::process::exit(WORKER_BOOT_ERROR);
            }
        };
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
            hooks,
            age: self.next_age,
            python: &self.python,
            tls,
        };
        let code = crate::worker::run(ctx);
        std::process::exit(code);
    }
}
