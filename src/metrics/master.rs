//! The master's side of the metrics: the shared counters (mapped before
//! the first fork), the counts of workers that are gone (a reaped
//! worker's slot is folded into `retired` before the slot is reused),
//! restarts by reason, the `--metrics-bind` listener, and the master's
//! statsd metrics (`gunicorn.workers`, `gunicorn.backlog`). The arbiter
//! calls [`MasterMetrics::tick`] once per pass of its loop.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use super::counters::{Counters, ExitReason, Totals};
use super::prometheus::{self, Snapshot, REASONS, STATES};
use super::server::{BindError, Server};
use super::{statsd, COUNTERS};
use crate::config::{parse_bind, BindAddr, Settings};
use crate::master::listeners::{Kind, Listener};
use crate::{info, warning};

/// Why a worker was replaced (indexed like [`prometheus::REASONS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    /// `--timeout`: the master aborted it.
    Timeout = 0,
    /// It served `--max-requests`.
    MaxRequests = 1,
    /// Its RSS passed `--max-worker-memory`.
    Memory = 2,
    /// It died without being asked to (a signal, a non-zero exit).
    Crash = 3,
    /// HUP replaced its generation, or `--reload` saw a file change.
    Reload = 4,
}

/// What the master knows about a worker that exited.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerEnd {
    /// The master is stopping: no exit is a restart.
    pub stopping: bool,
    pub timed_out: bool,
    /// The master sent it TERM (fewer workers, or a new generation).
    pub retiring: bool,
    /// It belongs to a generation a HUP replaced.
    pub old_generation: bool,
    /// It exited with WORKER_BOOT_ERROR or APP_LOAD_ERROR (the master
    /// stops, or rolls the reload back: nothing is restarted).
    pub boot_failure: bool,
}

/// Whether, and why, a worker's exit counts as a restart.
pub fn restart_reason(end: WorkerEnd, said: ExitReason) -> Option<RestartReason> {
    if end.stopping {
        return None;
    }
    if end.timed_out {
        return Some(RestartReason::Timeout);
    }
    match said {
        ExitReason::MaxRequests => return Some(RestartReason::MaxRequests),
        ExitReason::Memory => return Some(RestartReason::Memory),
        ExitReason::CodeReload => return Some(RestartReason::Reload),
        ExitReason::None => {}
    }
    if end.retiring {
        // TTOU or WINCH retires workers without replacing them.
        return end.old_generation.then_some(RestartReason::Reload);
    }
    if end.boot_failure {
        return None;
    }
    Some(RestartReason::Crash)
}

/// A live worker as a scrape shows it.
pub struct WorkerView {
    pub pid: i32,
    pub slot: usize,
    pub ready: bool,
    pub retiring: bool,
    pub timed_out: bool,
}

pub struct MasterMetrics {
    counters: Counters,
    retired: Totals,
    restarts: [u64; REASONS.len()],
    server: Option<Server>,
    /// `metrics_bind` as configured, parsed.
    bind: Option<BindAddr>,
    /// Binding waits for another process to let the address go (this
    /// master is a successor whose predecessor still serves it): the next
    /// attempt is due then.
    retry_bind: Option<Instant>,
    /// The last `gunicorn.workers` value sent.
    workers_sent: Option<u64>,
    /// The master has started logging its addresses (`announce`).
    announced: bool,
    next_backlog: Instant,
}

fn parse_metrics_bind(s: &Settings) -> Result<Option<BindAddr>, String> {
    match &s.metrics_bind {
        None => Ok(None),
        Some(a) => parse_bind(a).map(Some).map_err(|e| e.to_string()),
    }
}

impl MasterMetrics {
    /// Map the counters for `slots` workers, open the statsd client and
    /// bind `--metrics-bind`. `successor`: another master may still hold
    /// the address (USR2), so an address in use is retried rather than
    /// fatal.
    pub fn new(slots: usize, s: &Settings, successor: bool) -> Result<MasterMetrics, String> {
        let counters = match COUNTERS.get() {
            Some(c) => *c,
            None => {
                let c = Counters::map(slots)
                    .map_err(|e| format!("cannot map the metrics counters: {e}"))?;
                *COUNTERS.get_or_init(|| c)
            }
        };
        if let Err(e) = statsd::configure(s) {
            warning!("--statsd-host: {e}; no statsd metrics are sent");
        }
        let mut m = MasterMetrics {
            counters,
            retired: Totals::default(),
            restarts: [0; REASONS.len()],
            server: None,
            bind: parse_metrics_bind(s)?,
            retry_bind: None,
            workers_sent: None,
            announced: false,
            next_backlog: Instant::now(),
        };
        if let Some(addr) = m.bind.clone() {
            match Server::bind(&addr) {
                Ok(server) => m.bound(server),
                Err(BindError::InUse) if successor => {
                    info!("Metrics: {} is still served by the previous master; binding once it lets go", describe(&addr));
                    m.retry_bind = Some(Instant::now() + Duration::from_secs(1));
                }
                Err(e) => {
                    return Err(format!(
                        "cannot bind --metrics-bind {}: {e}",
                        describe(&addr)
                    ))
                }
            }
        }
        Ok(m)
    }

    fn bound(&mut self, server: Server) {
        if self.announced {
            info!("Metrics at: {}/metrics", server.name());
        }
        self.server = Some(server);
        self.retry_bind = None;
    }

    /// Log the metrics address (after the master's "Listening at" lines).
    pub fn announce(&mut self) {
        self.announced = true;
        if let Some(s) = &self.server {
            info!("Metrics at: {}/metrics", s.name());
        }
    }

    /// HUP: the statsd client anew, and the listener if `metrics_bind`
    /// changed (if the new address cannot be bound, the old one stays).
    pub fn reconfigure(&mut self, s: &Settings) {
        if let Err(e) = statsd::configure(s) {
            warning!("--statsd-host: {e}; no statsd metrics are sent");
        }
        self.workers_sent = None;
        let bind = match parse_metrics_bind(s) {
            Ok(b) => b,
            Err(e) => {
                warning!("Reload: --metrics-bind: {e}; the metrics address is unchanged");
                return;
            }
        };
        if bind == self.bind {
            return;
        }
        match &bind {
            None => {
                self.server = None;
                self.retry_bind = None;
            }
            Some(addr) => {
                // Let go of the old address first: the new one may be the
                // same socket file or port under another spelling.
                let old = self.server.take();
                match Server::bind(addr) {
                    Ok(server) => self.bound(server),
                    Err(e) => {
                        warning!(
                            "Reload: cannot bind --metrics-bind {}: {e}; the metrics address is unchanged",
                            describe(addr)
                        );
                        self.server = old;
                        return;
                    }
                }
            }
        }
        self.bind = bind;
    }

    /// A worker is about to be forked into `slot`.
    pub fn spawned(&self, slot: usize) {
        if let Some(s) = self.counters.slot(slot) {
            s.reset();
        }
    }

    /// What the worker in `slot` said about its own end.
    pub fn exit_reason(&self, slot: usize) -> ExitReason {
        self.counters
            .slot(slot)
            .map_or(ExitReason::None, |s| s.exit_reason())
    }

    /// The worker in `slot` is gone: keep its counts, count the restart.
    pub fn reaped(&mut self, slot: usize, reason: Option<RestartReason>) {
        if let Some(s) = self.counters.slot(slot) {
            self.retired.add_slot(&s);
        }
        if let Some(r) = reason {
            self.restarts[r as usize] += 1;
        }
    }

    /// In a freshly forked worker: let go of the master's sockets.
    pub fn after_fork(&mut self) {
        // Closed here; the socket file stays (it is the master's, and a
        // Server unlinks it only in the process that bound it).
        self.server = None;
        self.retry_bind = None;
    }

    /// Descriptors for the master's wait.
    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        self.server
            .as_ref()
            .map(Server::poll_fds)
            .unwrap_or_default()
    }

    /// The longest the master may wait before `tick` has work.
    pub fn timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        [
            self.server.as_ref().and_then(Server::next_deadline),
            self.retry_bind,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|t| t.saturating_duration_since(now))
    }

    /// Once per pass of the master's loop: serve scrapes, send the
    /// master's statsd metrics, retry a pending bind.
    pub fn tick(
        &mut self,
        workers: &[WorkerView],
        active: u64,
        listeners: &[Listener],
        s: &Settings,
    ) {
        let now = Instant::now();
        if let (Some(due), Some(addr)) = (self.retry_bind, self.bind.clone()) {
            if now >= due {
                match Server::bind(&addr) {
                    Ok(server) => self.bound(server),
                    Err(BindError::InUse) => self.retry_bind = Some(now + Duration::from_secs(1)),
                    Err(e) => {
                        warning!("Cannot bind --metrics-bind {}: {e}", describe(&addr));
                        self.retry_bind = Some(now + Duration::from_secs(5));
                    }
                }
            }
        }
        if statsd::enabled() {
            if self.workers_sent != Some(active) {
                self.workers_sent = Some(active);
                statsd::gauge("gunicorn.workers", active);
            }
            if s.enable_backlog_metric && now >= self.next_backlog {
                self.next_backlog = now + Duration::from_secs(1);
                let waiting: u64 = listeners
                    .iter()
                    .filter_map(|l| crate::sys::listen_queue(l.fd(), l.kind == Kind::Unix))
                    .map(|(n, _)| n)
                    .sum();
                statsd::histogram("gunicorn.backlog", waiting);
            }
        }
        if let Some(mut server) = self.server.take() {
            server.serve(&mut || self.render(workers, listeners));
            self.server = Some(server);
        }
    }

    /// The exposition text for the workers and listeners as they are now.
    pub fn render(&self, workers: &[WorkerView], listeners: &[Listener]) -> String {
        let mut totals = self.retired.clone();
        let mut in_flight = 0;
        let mut states = [0u64; STATES.len()];
        let mut rss = Vec::with_capacity(workers.len());
        for w in workers {
            let Some(slot) = self.counters.slot(w.slot) else {
                continue;
            };
            totals.add_slot(&slot);
            let busy = slot.in_flight();
            in_flight += busy;
            let state = if w.timed_out {
                4
            } else if w.retiring {
                3
            } else if !w.ready {
                0
            } else if busy > 0 {
                2
            } else {
                1
            };
            states[state] += 1;
            if let Some(bytes) = rss_of(w.pid) {
                rss.push((w.pid, bytes));
            }
        }
        let listeners = listeners
            .iter()
            .map(|l| {
                (
                    l.describe(),
                    crate::sys::listen_queue(l.fd(), l.kind == Kind::Unix),
                )
            })
            .collect();
        prometheus::render(&Snapshot {
            totals: &totals,
            in_flight,
            workers: states,
            restarts: self.restarts,
            listeners,
            rss,
        })
    }
}

fn describe(a: &BindAddr) -> String {
    a.to_string()
}

/// Resident bytes of process `pid` (/proc/PID/statm).
fn rss_of(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Some(pages * page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_reasons() {
        let none = ExitReason::None;
        let end = WorkerEnd::default();
        assert_eq!(restart_reason(end, none), Some(RestartReason::Crash));
        let stopping = WorkerEnd {
            stopping: true,
            timed_out: true,
            ..end
        };
        assert_eq!(restart_reason(stopping, ExitReason::MaxRequests), None);
        let timed_out = WorkerEnd {
            timed_out: true,
            ..end
        };
        assert_eq!(
            restart_reason(timed_out, none),
            Some(RestartReason::Timeout)
        );
        assert_eq!(
            restart_reason(end, ExitReason::MaxRequests),
            Some(RestartReason::MaxRequests)
        );
        assert_eq!(
            restart_reason(end, ExitReason::Memory),
            Some(RestartReason::Memory)
        );
        assert_eq!(
            restart_reason(end, ExitReason::CodeReload),
            Some(RestartReason::Reload)
        );
        let hup = WorkerEnd {
            retiring: true,
            old_generation: true,
            ..end
        };
        assert_eq!(restart_reason(hup, none), Some(RestartReason::Reload));
        let ttou = WorkerEnd {
            retiring: true,
            ..end
        };
        assert_eq!(restart_reason(ttou, none), None);
        let boot = WorkerEnd {
            boot_failure: true,
            ..end
        };
        assert_eq!(restart_reason(boot, none), None);
    }
}
