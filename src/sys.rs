//! The small module where the process-level `unsafe` lives: fork, signal
//! registration, and adopting inherited file descriptors. Everything else in
//! the crate works with owned types (`OwnedFd`, `BorrowedFd`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;
use signal_hook::SigId;

pub use nix::sys::signal::Signal;

pub enum Forked {
    Parent(Pid),
    Child,
}

/// fork(2).
///
/// The master calls this only from its single thread (no runtime, no
/// helper threads exist in the master), so the child gets a consistent copy
/// of every lock and allocator state.
pub fn fork() -> nix::Result<Forked> {
    // SAFETY: the caller is the single-threaded master (principle 1 of the
    // architecture: no threads before fork), so no other thread can hold a
    // lock, the allocator's or anyone else's, at the instant of fork. The
    // child only runs ordinary Rust code after this returns.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

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

pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    let flags = if on {
        flags | OFlag::O_NONBLOCK
    } else {
        flags - OFlag::O_NONBLOCK
    };
    fcntl(fd, FcntlArg::F_SETFL(flags))?;
    Ok(())
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
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Signals turned into a queue: the handler only counts the signal and
/// writes one byte to a self-pipe; the process's one loop drains the queue
/// and dispatches (principle 2: signals only enqueue).
pub struct SignalQueue {
    counts: Arc<[AtomicUsize; 65]>,
    order: Vec<Signal>,
    ids: Vec<SigId>,
    read: OwnedFd,
    _write: OwnedFd,
}

impl SignalQueue {
    /// Install handlers for `signals`; `drain` reports them in this order.
    pub fn install(signals: &[Signal]) -> io::Result<SignalQueue> {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)?;
        let counts: Arc<[AtomicUsize; 65]> = Arc::new(std::array::from_fn(|_| AtomicUsize::new(0)));
        let mut ids = Vec::new();
        let wfd = write.as_raw_fd();
        for &sig in signals {
            let counts = counts.clone();
            let n = sig as usize;
            // SAFETY: the action only does async-signal-safe things: an
            // atomic increment and write(2) of one byte to a non-blocking
            // pipe that lives as long as the registration (both are
            // unregistered / closed together in Drop).
            let id = unsafe {
                signal_hook::low_level::register(sig as i32, move || {
                    counts[n].fetch_add(1, Ordering::SeqCst);
                    let b = [n as u8];
                    libc::write(wfd, b.as_ptr().cast(), 1);
                })
            }?;
            ids.push(id);
        }
        Ok(SignalQueue {
            counts,
            order: signals.to_vec(),
            ids,
            read,
            _write: write,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Wait for a signal for at most `timeout`.
    pub fn wait(&self, timeout: Duration) {
        let _ = wait_fd(self.read.as_fd(), false, timeout);
    }

    /// Every signal received since the last call, in installation order,
    /// repeated as often as it arrived.
    pub fn drain(&self) -> Vec<Signal> {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(&self.read, &mut buf), Ok(n) if n > 0) {}
        let mut out = Vec::new();
        for &sig in &self.order {
            let n = self.counts[sig as usize].swap(0, Ordering::SeqCst);
            out.extend(std::iter::repeat_n(sig, n));
        }
        out
    }
}

impl Drop for SignalQueue {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Restore the default disposition of `sig` (used in a freshly forked
/// worker for signals it does not handle itself).
pub fn default_signal(sig: Signal) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let act = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_DFL involves no handler code at all.
    let _ = unsafe { sigaction(sig, &act) };
}

/// Unblock every signal (a forked child inherits the parent's mask).
pub fn unblock_all_signals() {
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}
