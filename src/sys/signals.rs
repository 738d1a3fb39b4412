//! Signals: `SignalQueue`, whose handlers only enqueue for the process's
//! one loop, and the dispositions a forked process resets or overrides.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::SigId;

pub use nix::sys::signal::Signal;

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

/// Ignore `sig` (the config host outlives the master's stop signals, so
/// the master's last hooks can still run).
pub fn ignore_signal(sig: Signal) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let act = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_IGN involves no handler code at all.
    let _ = unsafe { sigaction(sig, &act) };
}

/// The real-time signal the master sends a worker with its first `ctl
/// stacks` request, which starts the worker's stacks thread (see
/// `control/stacks.rs`). glibc keeps the two below SIGRTMIN for itself;
/// nothing else in ferrocorn uses real-time signals.
pub fn stacks_signal() -> i32 {
    libc::SIGRTMIN() + 2
}

/// Ignore signal number `sig` (for real-time signals, which [`Signal`]
/// does not name).
pub fn ignore_signal_number(sig: i32) {
    // SAFETY: a zeroed sigaction with SIG_IGN and an empty mask installs
    // no handler code; the old action is not asked for.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = libc::SIG_IGN;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(sig, &act, std::ptr::null_mut());
    }
}

/// Unblock every signal (a forked child inherits the parent's mask).
pub fn unblock_all_signals() {
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

/// While `busy` is set, `sig` ends the process at once (exit code 0)
/// instead of waiting in the queue: a worker stuck in the app can't drain
/// its queue, and INT/QUIT mean "now". When idle, the queue handles it.
pub fn exit_now_when_busy(
    sig: Signal,
    busy: &'static std::sync::atomic::AtomicBool,
) -> io::Result<()> {
    // SAFETY: the action reads an atomic and calls _exit(2), both
    // async-signal-safe.
    unsafe {
        signal_hook::low_level::register(sig as i32, move || {
            if busy.load(Ordering::SeqCst) {
                libc::_exit(0);
            }
        })
    }?;
    Ok(())
}
