//! The small module where the process-level `unsafe` lives: fork, signal
//! registration, and adopting inherited file descriptors. Everything else in
//! the crate works with owned types (`OwnedFd`, `BorrowedFd`).
//!
//! Every item is re-exported here, so callers write `sys::fork`,
//! `sys::SignalQueue`, ... whatever file it lives in:
//! - `process`: fork, daemonize, privileges, the process title, liveness;
//! - `handoff`: fork and exec of a successor master (USR2) with the
//!   listeners placed at fds 3..;
//! - `signals`: the signal queue and the handlers' dispositions;
//! - `fd`: adopting inherited descriptors, fd flags, waiting on fds;
//! - `scoreboard`: the shared-memory heartbeat slots of the workers, and
//!   the shared words the metrics count in;
//! - `backlog`: how many connections wait in a listen queue (TCP_INFO,
//!   sock_diag).
//!
//! Every `unsafe` block carries a `// SAFETY:` comment.

mod backlog;
mod fd;
mod handoff;
mod process;
mod scoreboard;
mod signals;

pub use backlog::listen_queue;
pub use fd::{adopt_fd, on_interrupt, set_blocking, set_cloexec, wait_any, wait_fd, wait_io};
pub use handoff::{socketpair, spawn_successor, Handoff, UPGRADE_FD_ENV};
pub use process::{daemonize, drop_privileges, fork, process_running, set_proc_title, Forked};
pub use scoreboard::{shared_words, Scoreboard, SLOT_BOOTING, SLOT_READY};
pub use signals::{
    default_signal, exit_now_when_busy, ignore_signal, ignore_signal_number, stacks_signal,
    unblock_all_signals, Signal, SignalQueue,
};

/// Milliseconds on the system-wide monotonic clock (comparable across
/// processes, unlike `Instant`).
pub fn monotonic_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}
