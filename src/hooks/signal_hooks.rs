//! `worker_int` (SIGINT/SIGQUIT) and `worker_abort` (SIGABRT, the master's
//! timeout signal) in the worker. A signal handler may not run Python, so
//! the handlers installed here only write one byte to a pipe (and arm an
//! alarm that ends the process if the hook does not return in time); a
//! thread of the worker reads it and runs the hook, then ends the worker
//! the way gunicorn's does (INT/QUIT: exit 0; ABRT: exit 1). For SIGABRT
//! the handler is installed before faulthandler, which dumps the stacks
//! first and then hands the signal on to it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::WorkerHooks;
use crate::error;

/// Seconds a signal hook gets before the alarm ends the worker anyway.
const HOOK_ALARM: u32 = 5;

/// A worker's pipe from its signal handlers to the hook thread.
pub struct SignalHooks {
    read: OwnedFd,
    int: bool,
    abort: bool,
}

/// Set once worker_int has run (or was given up on).
pub static INT_DONE: AtomicBool = AtomicBool::new(false);
/// A worker_int is being handled.
pub static INT_PENDING: AtomicBool = AtomicBool::new(false);

impl SignalHooks {
    /// Install the handlers (before Python starts, so faulthandler's
    /// SIGABRT handler chains to ours). `busy` is set while the app runs.
    pub fn install(int: bool, abort: bool) -> std::io::Result<SignalHooks> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let wfd = write.as_raw_fd();
        // The write end lives as long as the process.
        std::mem::forget(write);
        let send = move |b: u8| {
            // SAFETY: write(2) and alarm(2) are async-signal-safe; the
            // descriptor stays open for the life of the process.
            unsafe {
                libc::write(wfd, (&b as *const u8).cast(), 1);
                libc::alarm(HOOK_ALARM);
            }
        };
        if int {
            for sig in [libc::SIGINT, libc::SIGQUIT] {
                // SAFETY: the action only calls async-signal-safe functions
                // and reads/writes atomics.
                unsafe {
                    signal_hook::low_level::register(sig, move || {
                        if !INT_PENDING.swap(true, Ordering::SeqCst) {
                            send(b'i');
                        }
                    })
                }?;
            }
        }
        if abort {
            // SAFETY: as above.
            unsafe { signal_hook::low_level::register(libc::SIGABRT, move || send(b'a')) }?;
        }
        Ok(SignalHooks { read, int, abort })
    }

    /// Whether INT/QUIT are handled here (the worker then does not exit
    /// at once on them while busy).
    pub fn handles_int(&self) -> bool {
        self.int
    }

    /// Start the thread that runs the hooks. `busy` tells whether a
    /// request is running (then the worker ends here once worker_int ran;
    /// when idle, its loop ends it as usual).
    pub fn start(
        self,
        hooks: Arc<WorkerHooks>,
        busy: &'static AtomicBool,
        num_workers: u32,
        proc_name: String,
    ) {
        let spawned = std::thread::Builder::new()
            .name("ferrocorn-sighooks".into())
            .spawn(move || loop {
                let mut b = [0u8; 1];
                match nix::unistd::read(&self.read, &mut b) {
                    Ok(1) => {}
                    Ok(_) => return,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return,
                }
                match b[0] {
                    b'i' if self.int => {
                        hooks.call("worker_int", num_workers, &proc_name);
                        INT_DONE.store(true, Ordering::SeqCst);
                        if busy.load(Ordering::SeqCst) {
                            // Stuck in the app: end now, as the worker does
                            // without the hook.
                            hooks.call("worker_exit", num_workers, &proc_name);
                            // SAFETY: ends the process at once.
                            unsafe { libc::_exit(0) };
                        }
                        // SAFETY: the alarm armed by the handler is no
                        // longer needed; the loop ends the worker.
                        unsafe { libc::alarm(0) };
                    }
                    b'a' if self.abort => {
                        hooks.call("worker_abort", num_workers, &proc_name);
                        // SAFETY: ends the process at once (gunicorn's
                        // worker exits 1 after worker_abort).
                        unsafe { libc::_exit(1) };
                    }
                    _ => {}
                }
            });
        if let Err(e) = spawned {
            error!("Cannot start the thread for worker_int/worker_abort: {e}");
        }
    }
}
