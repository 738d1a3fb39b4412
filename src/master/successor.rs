//! Binary upgrade between two masters. USR2 starts a successor master from
//! the path ferrocorn was started from, handing it every listener and one
//! end of a socket pair (the link). The successor boots its workers, writes
//! `<pidfile>.2` and acknowledges with `READY <pid>` on the link; until then
//! the old master serves alone, and a successor that misses its deadline is
//! stopped. Once the old master exits (after TERM, handing systemd the new
//! `MAINPID=` on its way), the successor sees end-of-file on the link and
//! promotes itself: it takes the pidfile and speaks to systemd. WINCH stops
//! the old master's workers once the successor serves.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::pidfile::{pidfile2, pidfile_failed, write_pidfile};
use super::{Arbiter, Phase, MASTER_SIGNALS};
use crate::config;
use crate::sys::{self, Signal};
use crate::{error, info, warning};

/// A successor master started by USR2, as the master that started it sees
/// it. The old master keeps serving until the successor reports ready over
/// `link`, and stays ready to take over again (rollback) until it exits.
pub(super) struct Successor {
    pub(super) pid: i32,
    pub(super) link: OwnedFd,
    pub(super) state: SuccessorState,
    /// Boot deadline: a successor not ready by then is stopped.
    deadline: Instant,
    started: Instant,
    /// When it was told to quit for missing its deadline (SIGKILL follows).
    quit_sent: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SuccessorState {
    Booting,
    Ready,
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

impl Arbiter {
    /// The first workers serve: tell whoever waits for us. Under systemd
    /// that is `READY=1`; an unpromoted successor writes `<pidfile>.2` and
    /// tells the master that started it instead.
    pub(super) fn announce_ready(&mut self) {
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

    /// WINCH: stop this master's workers gracefully and keep the master,
    /// when it is daemonized or a successor serves already.
    pub(super) fn winch(&mut self) {
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

    /// USR2: start a successor master from the binary at the path we were
    /// started from, handing it every listener. We keep serving; the
    /// successor reports ready over the link, and the operator then retires
    /// this master (WINCH, TERM).
    pub(super) fn upgrade(&mut self) {
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
        self.hook("pre_exec", None, &[]);
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
        let argv: Vec<OsString> = self.exec_prefix.iter().chain(&self.args).cloned().collect();
        let handoff = sys::Handoff {
            exe: &self.exe,
            args: &argv,
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
                // The wheel's master names the interpreter, its options
                // and the entry point it re-ran.
                let prefix: Vec<_> = self
                    .exec_prefix
                    .iter()
                    .map(|a| format!(" {}", a.to_string_lossy()))
                    .collect();
                info!(
                    "Upgrade: started new master (pid {pid}) from {}{}",
                    self.exe.display(),
                    prefix.concat()
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
    pub(super) fn check_successor(&mut self) {
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
    pub(super) fn successor_exited(&mut self, how: String) {
        let Some(s) = self.successor.take() else {
            return;
        };
        match s.state {
            SuccessorState::Booting => {
                // The verdict for `ferrocorn upgrade`, which may never have
                // seen the new master alive: `<pidfile>.failed` names it.
                // Written before the log line, so that whoever reads the
                // line finds the file.
                if let Some(p) = &self.pidfile {
                    if let Err(e) = write_pidfile(&pidfile_failed(p), s.pid as u32) {
                        warning!("{e}");
                    }
                }
                error!(
                    "Upgrade failed: new master (pid {}) {how} before it was ready; this master keeps serving",
                    s.pid
                );
            }
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
    pub(super) fn check_predecessor(&mut self) {
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
}
