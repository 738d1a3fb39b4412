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

/// Milliseconds on the system-wide monotonic clock (comparable across
/// processes, unlike `Instant`).
pub fn monotonic_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

/// Shared memory the master maps before forking: one slot per worker in
/// which the worker reports its heartbeat and whether it has booted. Cheaper than gunicorn's fchmod'ed temp files
/// and readable without a syscall. A clone is another handle on the same
/// mapping, which is never unmapped.
#[derive(Clone)]
pub struct Scoreboard {
    base: std::ptr::NonNull<std::sync::atomic::AtomicU64>,
    slots: usize,
}

// SAFETY: the mapping is only accessed through atomics.
unsafe impl Send for Scoreboard {}
// SAFETY: as above; concurrent access is atomic.
unsafe impl Sync for Scoreboard {}

const SLOT_WORDS: usize = 4;
const BEAT: usize = 0;
const STATE: usize = 1;
const REQUESTS: usize = 2;

/// A worker's state as seen in its slot.
pub const SLOT_BOOTING: u64 = 0;
pub const SLOT_READY: u64 = 1;

impl Scoreboard {
    pub fn new(slots: usize) -> io::Result<Scoreboard> {
        let len = std::num::NonZeroUsize::new(slots * SLOT_WORDS * 8)
            .ok_or_else(|| io::Error::other("empty scoreboard"))?;
        // SAFETY: a fresh anonymous mapping aliases no Rust object; it is
        // zero-filled, which is a valid AtomicU64 bit pattern, and stays
        // mapped for the life of the process (never unmapped).
        let ptr = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                len,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_SHARED,
            )
        }?;
        Ok(Scoreboard {
            base: ptr.cast(),
            slots,
        })
    }

    fn word(&self, slot: usize, w: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(slot < self.slots, "scoreboard slot out of range");
        // SAFETY: the index is within the mapping (checked above), the
        // mapping is aligned (page-aligned) and lives forever.
        unsafe { &*self.base.as_ptr().add(slot * SLOT_WORDS + w) }
    }

    /// Reset a slot for a worker about to be forked.
    pub fn reset(&self, slot: usize) {
        self.word(slot, BEAT)
            .store(monotonic_ms(), Ordering::SeqCst);
        self.word(slot, STATE).store(SLOT_BOOTING, Ordering::SeqCst);
        self.word(slot, REQUESTS).store(0, Ordering::SeqCst);
    }

    /// A worker finished one more request.
    pub fn count_request(&self, slot: usize) {
        self.word(slot, REQUESTS).fetch_add(1, Ordering::Relaxed);
    }

    /// Requests the worker in `slot` has finished.
    pub fn requests(&self, slot: usize) -> u64 {
        self.word(slot, REQUESTS).load(Ordering::Relaxed)
    }

    pub fn beat(&self, slot: usize) {
        self.word(slot, BEAT)
            .store(monotonic_ms(), Ordering::Relaxed);
    }

    /// A heartbeat dated `ms` (CLOCK_MONOTONIC, as `monotonic_ms`), which
    /// may be in the past: a gthread worker reports when its oldest running
    /// request started, so one stuck thread still trips the timeout.
    pub fn beat_at(&self, slot: usize, ms: u64) {
        self.word(slot, BEAT).store(ms, Ordering::Relaxed);
    }

    pub fn set_ready(&self, slot: usize) {
        self.beat(slot);
        self.word(slot, STATE).store(SLOT_READY, Ordering::SeqCst);
    }

    pub fn last_beat(&self, slot: usize) -> u64 {
        self.word(slot, BEAT).load(Ordering::Relaxed)
    }

    pub fn is_ready(&self, slot: usize) -> bool {
        self.word(slot, STATE).load(Ordering::SeqCst) == SLOT_READY
    }
}

/// Set the process title shown by `ps` (by rewriting the argv area, as
/// setproctitle does) and the kernel's short name (`top`, `ps -o comm`).
pub fn set_proc_title(title: &str) {
    let short: Vec<u8> = title
        .bytes()
        .filter(|&b| b != 0)
        .take(15)
        .chain(std::iter::once(0))
        .collect();
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, short.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
    let Ok(cmdline) = std::fs::read("/proc/self/cmdline") else {
        return;
    };
    let area = cmdline.len();
    if area < 2 {
        return;
    }
    extern "C" {
        static mut program_invocation_name: *mut libc::c_char;
    }
    // SAFETY: glibc sets program_invocation_name to argv[0], the start of
    // the contiguous argv strings the kernel placed on the initial stack;
    // /proc/self/cmdline reports exactly that area's length, so writing
    // `area` bytes stays inside memory that belongs to this process and
    // that nothing else reads after startup (arguments were parsed
    // already, and the originals are kept in Rust strings).
    unsafe {
        let start = program_invocation_name as *mut u8;
        if start.is_null() {
            return;
        }
        let bytes = title.as_bytes();
        let n = bytes.len().min(area - 1);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), start, n);
        std::ptr::write_bytes(start.add(n), 0, area - n);
    }
}

/// Detach from the terminal: fork, setsid, fork again, stdio to /dev/null.
/// Returns only in the final daemon process.
pub fn daemonize() -> io::Result<()> {
    match fork()? {
        Forked::Parent(_) => std::process::exit(0),
        Forked::Child => {}
    }
    nix::unistd::setsid()?;
    match fork()? {
        Forked::Parent(_) => std::process::exit(0),
        Forked::Child => {}
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for target in 0..=2 {
        // SAFETY: 0, 1 and 2 are the standard descriptors, always ours to
        // replace; dup2 closes what was there atomically.
        if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Switch to `uid`/`gid` (and `uid`'s supplementary groups when
/// `initgroups`). Called in a worker, after fork, before Python starts.
pub fn drop_privileges(
    uid: Option<nix::unistd::Uid>,
    gid: Option<nix::unistd::Gid>,
    initgroups_user: Option<&str>,
) -> io::Result<()> {
    if let Some(gid) = gid {
        if let Some(user) = initgroups_user {
            let name = std::ffi::CString::new(user).map_err(io::Error::other)?;
            nix::unistd::initgroups(&name, gid)?;
        } else if nix::unistd::geteuid().is_root() {
            nix::unistd::setgroups(&[gid])?;
        }
        nix::unistd::setgid(gid)?;
    }
    if let Some(uid) = uid {
        nix::unistd::setuid(uid)?;
    }
    Ok(())
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

/// `pid` exists and has not exited: a zombie, waiting for its parent to
/// reap it, has exited.
pub fn process_running(pid: i32) -> bool {
    if pid <= 0 || nix::sys::signal::kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

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

/// Wait until any of `fds` is readable (or hung up), at most `timeout`.
/// Returns which ones are.
pub fn wait_any(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<Vec<bool>> {
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        match nix::poll::poll(
            &mut polls,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(polls
        .iter()
        .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
        .collect())
}
