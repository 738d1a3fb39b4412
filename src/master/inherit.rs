//! What the process environment hands the master at start, read once and
//! then removed so that neither workers nor the app see it: systemd's
//! notification socket and watchdog, inherited listeners (`LISTEN_FDS`,
//! `GUNICORN_FD`), and the link to the master that started this one with
//! USR2.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use super::listeners::{self, Listener};
use super::sdnotify::{self, Notifier};
use super::MasterError;
use crate::sys;

/// How the process-wide environment handed us sockets and systemd.
pub(super) struct Inherited {
    pub(super) notifier: Option<Notifier>,
    pub(super) watchdog_usec: Option<String>,
    pub(super) watchdog: Option<Duration>,
    /// Link to the master that started this one with USR2.
    pub(super) predecessor: Option<OwnedFd>,
    pub(super) listeners: Option<(listeners::Origin, Vec<Listener>)>,
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
pub(super) fn take_inherited(pid: u32) -> Result<Inherited, MasterError> {
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
