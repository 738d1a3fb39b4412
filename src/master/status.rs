//! What the master tells systemd (`Type=notify`): `READY=1`, `RELOADING=1`
//! and `STOPPING=1` go out through [`Arbiter::notify`]; `STATUS=` carries a
//! one-line summary refreshed at most once a second; `WATCHDOG=1` pings
//! while the loop turns. An unpromoted successor stays silent: it is not
//! the service's main process yet.

use std::time::{Duration, Instant};

use super::{Arbiter, Phase, SuccessorState};
use crate::debug;

impl Arbiter {
    /// Send a notification to systemd, if it asked for them and this master
    /// is the service's main process (a successor is not, until promoted).
    pub(super) fn notify(&self, msg: &str) {
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
    pub(super) fn notify_ready(&mut self) {
        let text = self.status_text();
        self.notify(&format!("READY=1\nSTATUS={text}"));
        self.status_sent = (text, Instant::now());
    }

    /// The one-line live summary shown by `systemctl status`.
    pub(super) fn status_text(&self) -> String {
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
    pub(super) fn status(&mut self, now: bool) {
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
    pub(super) fn watchdog(&mut self) {
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
}
