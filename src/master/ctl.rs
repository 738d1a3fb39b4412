//! The master's side of the control socket (`crate::control`): opening it
//! as the settings say (and again when a reload changes them), the view of
//! the master it reads ([`Supervisor`]), and carrying out the [`Action`]s
//! it hands back through the paths the signals take.

use std::os::fd::AsRawFd;

use serde_json::Value;

use super::listeners::Kind;
use super::{Arbiter, Phase};
use crate::control::{self, Action, ListenerView, StatsView, StopMode, Supervisor, WorkerView};
use crate::sys::{self, Signal};
use crate::{info, warning};

/// The settings `show config` reports, as gunicorn's does.
const CONFIG_KEYS: &[&str] = &[
    "bind",
    "workers",
    "worker_class",
    "threads",
    "timeout",
    "graceful_timeout",
    "keepalive",
    "max_requests",
    "max_requests_jitter",
    "worker_connections",
    "preload_app",
    "daemon",
    "pidfile",
    "proc_name",
    "reload",
    "dirty_workers",
    "dirty_apps",
    "dirty_timeout",
    "control_socket",
    "control_socket_disable",
];

impl Arbiter {
    /// Open, close or move the control socket to match the settings (at
    /// start, and after a reload changed them).
    pub(super) fn sync_control(&mut self) {
        let s = &self.settings;
        let want = (!s.control_socket_disable).then(|| {
            let path = std::path::absolute(&s.control_socket)
                .unwrap_or_else(|_| s.control_socket.clone().into());
            (path, s.control_socket_mode.0 & 0o777)
        });
        let mut have = self
            .control
            .as_ref()
            .map(|c| (c.path().to_path_buf(), c.mode()));
        // A successor took the path over during an upgrade that then
        // failed (and removed its socket): serve it again. Only while no
        // successor runs, and never once stopping.
        let serving = matches!(
            self.phase,
            Phase::Booting | Phase::Running | Phase::Reloading { .. }
        );
        if serving
            && self.successor.is_none()
            && self.control.as_ref().is_some_and(|c| !c.still_there())
        {
            info!("Control socket: taking the path back after the upgrade");
            have = None;
        }
        // A socket that could not be opened is tried again after a reload.
        let failed = self
            .control_failed
            .as_ref()
            .filter(|(_, _, generation)| *generation == self.generation)
            .map(|(p, m, _)| (p.clone(), *m));
        if want == have || (want.is_some() && failed == want) {
            return;
        }
        if let Some(old) = self.control.take() {
            old.close();
        }
        let Some((path, mode)) = want else {
            return;
        };
        match control::Server::bind(
            &path.display().to_string(),
            mode,
            self.predecessor.is_some(),
        ) {
            Ok(c) => {
                self.control = Some(c);
                self.control_failed = None;
            }
            Err(e) => {
                warning!("Control socket not started: {e}");
                self.control_failed = Some((path, mode, self.generation));
            }
        }
    }

    /// One pass of the control socket, then what its commands asked for.
    pub(super) fn serve_control(&mut self) {
        let Some(mut c) = self.control.take() else {
            return;
        };
        let actions = c.service(self);
        self.control = Some(c);
        for a in actions {
            match a {
                Action::SetWorkers(n) => self.set_workers(n),
                Action::KillWorker(pid) => {
                    if self.workers.contains_key(&pid) {
                        self.kill_worker(pid, Signal::SIGTERM);
                    }
                }
                Action::Reload => self.handle_signal(Signal::SIGHUP),
                Action::Reopen => self.handle_signal(Signal::SIGUSR1),
                Action::Shutdown(StopMode::Graceful) => self.handle_signal(Signal::SIGTERM),
                Action::Shutdown(StopMode::Quick) => self.handle_signal(Signal::SIGINT),
            }
        }
    }

    /// Set the worker count, as TTIN and TTOU do (one `nworkers_changed`).
    pub(super) fn set_workers(&mut self, n: u32) {
        let old = self.settings.workers;
        if n != old {
            self.settings.workers = n;
            info!("Number of workers: {old} -> {n}");
            self.hook("nworkers_changed", None, &[n.into(), old.into()]);
        }
        self.manage_workers();
    }
}

fn toml_to_json(text: Option<String>) -> Value {
    let Some(text) = text else {
        return Value::Null;
    };
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or(Value::String(text))
}

impl Supervisor for Arbiter {
    fn workers(&self) -> Vec<WorkerView> {
        let now = sys::monotonic_ms();
        self.workers
            .iter()
            .map(|(pid, w)| {
                let beat = self.scoreboard.last_beat(w.slot);
                WorkerView {
                    pid: *pid,
                    age: w.age,
                    booted: self.scoreboard.is_ready(w.slot),
                    aborted: w.aborted.is_some(),
                    last_heartbeat: (beat > 0)
                        .then(|| (now.saturating_sub(beat) as f64 / 10.0).round() / 100.0),
                    requests: self.scoreboard.requests(w.slot),
                    generation: w.generation,
                    retiring: w.retiring,
                }
            })
            .collect()
    }

    fn stats(&self) -> StatsView {
        StatsView {
            pid: self.pid,
            workers_target: self.settings.workers,
            workers_spawned: self.next_age,
            workers_killed: self.workers_killed,
            reloads: self.generation,
            requests: self.requests_served(),
            phase: self.phase.to_string(),
        }
    }

    fn config(&self) -> serde_json::Map<String, Value> {
        let rendered = self.settings.rendered();
        CONFIG_KEYS
            .iter()
            .filter_map(|k| {
                rendered
                    .iter()
                    .find(|(name, _)| name == k)
                    .map(|(name, v)| (name.to_string(), toml_to_json(v.clone())))
            })
            .collect()
    }

    fn listeners(&self) -> Vec<ListenerView> {
        self.listeners
            .iter()
            .map(|l| ListenerView {
                address: l.describe(),
                fd: l.fd().as_raw_fd(),
                kind: match (l.kind, l.local) {
                    (Kind::Unix, _) => "unix",
                    (Kind::Tcp, Some(a)) if a.is_ipv6() => "tcp6",
                    (Kind::Tcp, _) => "tcp",
                },
            })
            .collect()
    }
}
