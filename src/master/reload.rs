//! HUP: re-read the configuration (from the directory ferrocorn started
//! in) and replace the workers with a new generation. The old generation
//! keeps serving until every new worker reports ready. If the new
//! configuration cannot be loaded or its sockets cannot be bound, nothing
//! changes; if its workers fail to boot or are not ready in time, they are
//! killed and the previous settings and listeners are restored (rollback).

use std::time::{Duration, Instant};

use super::workers::chown_log_files;
use super::{listeners, sdnotify, Arbiter, Phase};
use crate::config::{self, Action};
use crate::sys::Signal;
use crate::{error, info, warning};

impl Arbiter {
    /// HUP: re-read the configuration and replace the workers with a new
    /// generation. The old generation keeps serving until every new worker
    /// is ready; if the new configuration cannot be loaded or its workers
    /// fail to boot, the old one simply carries on.
    pub(super) fn reload(&mut self) {
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
            if let Err(e) = crate::log::access::check(path) {
                error!("Reload failed, keeping the current configuration: {e}");
                return false;
            }
        }
        if let Some(level) = crate::log::Level::parse(&fresh.loglevel) {
            if let Err(e) = crate::log::init(&fresh.errorlog, level) {
                error!("Reload: cannot open the error log {}: {e}", fresh.errorlog);
            }
        }
        if let Err(e) = crate::tls::Tls::load(&fresh) {
            error!("Reload failed, keeping the current configuration: {e}");
            return false;
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
                        info!(
                            "Listening at: {} ({})",
                            l.url(fresh.certfile.is_some()),
                            self.pid
                        );
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
        self.metrics.reconfigure(&fresh);
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
        crate::hooks::setup(
            &self.settings.to_toml_string(),
            &self.settings.errorlog,
            &self.settings.loglevel,
            &self.settings.raw_env,
        );
        // As gunicorn: the reloaded worker count is reported (even when
        // unchanged), then on_reload.
        let old_workers = self.previous.as_ref().map_or(0, |(s, _)| s.workers);
        self.hook(
            "nworkers_changed",
            None,
            &[self.settings.workers.into(), old_workers.into()],
        );
        self.hook("on_reload", None, &[]);
        self.manage_workers();
        true
    }

    pub(super) fn check_reload(&mut self, generation: u64, deadline: Instant) {
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
    pub(super) fn abort_reload(&mut self, reason: &str) {
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
            self.metrics.reconfigure(&settings);
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
}
