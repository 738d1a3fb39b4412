//! The process itself: fork, daemonizing, dropping privileges, the title
//! `ps` shows, and whether another process is still running.

use std::io;
use std::os::fd::AsRawFd;

use nix::unistd::Pid;

pub enum Forked {
    Parent(Pid),
    Child,
}

/// fork(2).
///
/// The master calls this only from its single thread (no runtime, no
/// helper threads exist in the master), so the child gets a consistent copy
/// of every lock and allocator state.
///
/// When this process runs a Python interpreter (the wheel's command, whose
/// Python process is the master, or a `--preload` master), the fork goes
/// through CPython's fork hooks, as `os.fork()` does: PyOS_BeforeFork
/// takes the interpreter's locks, and the child's PyOS_AfterFork_Child
/// makes the forking thread the interpreter's only one, so a worker goes
/// on with the interpreter it already has (it never initializes another).
pub fn fork() -> nix::Result<Forked> {
    // SAFETY: Py_IsInitialized may be called at any time, GIL or not.
    if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
        return fork_plain();
    }
    pyo3::Python::attach(|_py| {
        // SAFETY: the GIL is held (inside attach), as PyOS_BeforeFork and
        // PyOS_AfterFork_* require; after fork exactly one AfterFork
        // function runs on each side, the child's first of all.
        unsafe { pyo3::ffi::PyOS_BeforeFork() };
        let r = fork_plain();
        match r {
            // SAFETY: see above; we are the child.
            Ok(Forked::Child) => unsafe { pyo3::ffi::PyOS_AfterFork_Child() },
            // SAFETY: see above; the parent, also when fork failed.
            _ => unsafe { pyo3::ffi::PyOS_AfterFork_Parent() },
        }
        r
    })
}

fn fork_plain() -> nix::Result<Forked> {
    // SAFETY: the caller is the single-threaded master (principle 1 of the
    // architecture: no threads before fork), so no other thread can hold a
    // lock, the allocator's or anyone else's, at the instant of fork. The
    // child only runs ordinary Rust code after this returns.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
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

/// Detach from the terminal: fork, setsid, fork again, stdin to
/// /dev/null, and stdout and stderr too unless `keep_output`
/// (`--enable-stdio-inheritance`: they stay where they were, e.g. a shell
/// redirection). Returns only in the final daemon process.
pub fn daemonize(keep_output: bool) -> io::Result<()> {
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
    let last = if keep_output { 0 } else { 2 };
    for target in 0..=last {
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
