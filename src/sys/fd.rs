//! File descriptors: adopting inherited ones, their close-on-exec and
//! non-blocking flags, and waiting (bounded) for them to be ready.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};

/// Take ownership of an inherited descriptor (`fd://N`, socket activation).
///
/// Returns an error unless `fd` is open in this process.
pub fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // fcntl(F_GETFD) fails with EBADF when the number is not open.
    // SAFETY: F_GETFD only queries flags; any integer is acceptable input.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and was inherited from
    // our parent for us to use; nothing else in this process has wrapped it
    // in an owner, because fds are adopted once, at startup, from the bind
    // list.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let flags = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD)?);
    let flags = if on {
        flags | FdFlag::FD_CLOEXEC
    } else {
        flags - FdFlag::FD_CLOEXEC
    };
    fcntl(fd, FcntlArg::F_SETFD(flags))?;
    Ok(())
}

/// Run by the waits below when a signal interrupts them (before they wait
/// again): a worker's main thread blocked here runs no Python, so the
/// `ctl stacks` signal's Python handler cannot start the stacks thread;
/// this does (see `control/stacks.rs`).
static ON_INTERRUPT: OnceLock<fn()> = OnceLock::new();

/// Have `f` run whenever a signal interrupts [`wait_fd`] or [`wait_io`].
pub fn on_interrupt(f: fn()) {
    let _ = ON_INTERRUPT.set(f);
}

fn interrupted() {
    if let Some(f) = ON_INTERRUPT.get() {
        f();
    }
}

/// Wait until `fd` is readable (or `POLLOUT` writable), at most `timeout`.
/// Returns false on timeout.
pub fn wait_fd(fd: BorrowedFd<'_>, writable: bool, timeout: Duration) -> io::Result<bool> {
    let flags = if writable {
        PollFlags::POLLOUT
    } else {
        PollFlags::POLLIN
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let mut fds = [PollFd::new(fd, flags)];
    loop {
        match nix::poll::poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => interrupted(),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Set or clear O_NONBLOCK on `fd` (on its open file description, so every
/// duplicate of it too).
pub fn set_blocking(fd: BorrowedFd<'_>, blocking: bool) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    let flags = if blocking {
        flags - OFlag::O_NONBLOCK
    } else {
        flags | OFlag::O_NONBLOCK
    };
    fcntl(fd, FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// Wait until any of `fds` is readable (or hung up), at most `timeout`.
/// Returns which ones are.
pub fn wait_any(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<Vec<bool>> {
    let reads: Vec<(BorrowedFd<'_>, bool)> = fds.iter().map(|fd| (*fd, false)).collect();
    wait_io(&reads, timeout)
}

/// Wait until any of `fds` is ready, each for reading or (`true`) for
/// writing, at most `timeout`. Returns which ones are (hang-ups and errors
/// count as ready).
pub fn wait_io(fds: &[(BorrowedFd<'_>, bool)], timeout: Duration) -> io::Result<Vec<bool>> {
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|(fd, w)| {
            PollFd::new(
                *fd,
                if *w {
                    PollFlags::POLLOUT
                } else {
                    PollFlags::POLLIN
                },
            )
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        match nix::poll::poll(
            &mut polls,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => interrupted(),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(polls
        .iter()
        .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
        .collect())
}
