//! Handing the listeners to a successor master (USR2): a socketpair for
//! the link, then fork and exec of the new binary with the listening
//! sockets placed at fds 3.. the systemd way.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::unistd::Pid;

use super::process::{fork, Forked};
use super::signals::{default_signal, unblock_all_signals, Signal};

/// A connected pair of stream sockets (close-on-exec): the link between a
/// master and the successor it starts on USR2.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType};
    Ok(nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// Everything a successor master (USR2) is started with.
pub struct Handoff<'a> {
    /// The binary to run: the path ferrocorn was started from, so a new
    /// binary installed there since is what runs.
    pub exe: &'a std::path::Path,
    /// The original arguments (without argv[0]).
    pub args: &'a [std::ffi::OsString],
    /// The original working directory.
    pub dir: &'a std::path::Path,
    /// The environment, without the inherited-socket variables (added here).
    pub env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// Listening sockets, with their `LISTEN_FDNAMES` names.
    pub listeners: Vec<(BorrowedFd<'a>, String)>,
    /// The successor's end of the link to this master.
    pub link: BorrowedFd<'a>,
    /// Signals this process handles: back to their default action in the
    /// child before it execs.
    pub handled: &'a [Signal],
}

/// Environment variable naming the successor's end of the link.
pub const UPGRADE_FD_ENV: &str = "FERROCORN_UPGRADE_FD";

/// Fork and exec a successor master that inherits the listeners as fds
/// 3.., the systemd way (`LISTEN_FDS`, `LISTEN_PID` = its own pid,
/// `LISTEN_FDNAMES`), and the link right after them. Returns its pid; a
/// failed exec shows up as the child exiting with code 127.
pub fn spawn_successor(h: Handoff<'_>) -> io::Result<Pid> {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    use std::os::unix::process::CommandExt;
    let n = h.listeners.len() as i32;
    // Between fork and exec the child still has this master's handlers,
    // which would swallow a signal meant for it into our queue: block
    // everything across fork; the child resets the handlers, then unblocks.
    let mut saved = SigSet::empty();
    sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut saved),
    )?;
    let forked = fork();
    if !matches!(forked, Ok(Forked::Child)) {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&saved), None);
    }
    match forked? {
        Forked::Parent(pid) => Ok(pid),
        Forked::Child => {
            for &sig in h.handled {
                default_signal(sig);
            }
            // In the child of the single-threaded master: plain Rust is
            // fine here (no other thread held a lock at fork).
            let first = 3;
            let above = first + n + 1;
            let mut high = Vec::new();
            for fd in h
                .listeners
                .iter()
                .map(|(fd, _)| fd.as_raw_fd())
                .chain([h.link.as_raw_fd()])
            {
                // SAFETY: F_DUPFD_CLOEXEC duplicates an fd we own (borrowed
                // from the parent's owners, which this child inherited) to
                // the lowest free number >= `above`, so the targets 3..above
                // can be overwritten below without losing a source.
                let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, above) };
                if d < 0 {
                    successor_failed("cannot duplicate a listener");
                }
                high.push(d);
            }
            for (i, d) in high.iter().enumerate() {
                // SAFETY: dup2 onto 3+i replaces whatever the child had
                // there (only close-on-exec descriptors of the old master,
                // which the new program would not see anyway); the copy
                // made by dup2 has close-on-exec cleared, so it survives
                // exec, which is the point.
                if unsafe { libc::dup2(*d, first + i as i32) } < 0 {
                    successor_failed("cannot place a listener");
                }
            }
            let pid = std::process::id().to_string();
            let names: Vec<&str> = h.listeners.iter().map(|(_, n)| n.as_str()).collect();
            let mut cmd = std::process::Command::new(h.exe);
            cmd.args(h.args)
                .current_dir(h.dir)
                .env_clear()
                .envs(h.env.iter().map(|(k, v)| (k, v)))
                .env("LISTEN_FDS", n.to_string())
                .env("LISTEN_PID", &pid)
                .env("LISTEN_FDNAMES", names.join(":"))
                .env(UPGRADE_FD_ENV, (first + n).to_string());
            if h.env.iter().any(|(k, _)| k == "WATCHDOG_USEC") {
                cmd.env("WATCHDOG_PID", &pid);
            }
            unblock_all_signals();
            let err = cmd.exec();
            let msg = format!("cannot execute {}: {err}", h.exe.display());
            successor_failed(&msg)
        }
    }
}

fn successor_failed(msg: &str) -> ! {
    crate::log::write_raw(format!("ferrocorn: upgrade: {msg}\n").as_bytes());
    // SAFETY: _exit ends this forked child without running the parent's
    // atexit handlers or flushing its buffers a second time.
    unsafe { libc::_exit(127) }
}
