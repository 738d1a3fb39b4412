//! `ctl stacks`: the link between the master and each worker that carries
//! a request for the worker's Python stacks and the answer, and the
//! worker's half, a thread that waits on the link, started by the first
//! request.
//!
//! Before each fork the master makes a socket pair ([`LinkPair`]); it keeps
//! one end ([`Link`], non-blocking, polled by its loop) and the worker the
//! other. A request is 4 bytes, its id; the *stacks thread* reads it,
//! takes the GIL (the app's thread releases it in `time.sleep`, in I/O,
//! and every switch interval while computing), runs `stacks.py` over
//! `sys._current_frames()` and the registered providers, and writes `id,
//! length, JSON` back. The worker never stops serving meanwhile. The
//! master answers its client when every worker did or at its deadline,
//! whichever comes first; a late answer carries an old id and is dropped.
//!
//! The thread is not there until the first request: a standing thread
//! makes the worker a multi-threaded process, and glibc and CPython then
//! take slower paths (a CPU-bound sync worker served hello-world about
//! 8 % slower with it). So with its first request the master also sends
//! the worker the stacks signal (a real-time signal,
//! [`crate::sys::stacks_signal`]; it ignores it itself from before fork,
//! so a worker is not killed by it before it is ready). Three things in
//! the worker start the thread ([`start`], once), whichever comes first: a
//! Python-level handler of the signal ([`arm`], installed once the app is
//! loaded), which CPython runs on the main thread at the next bytecode
//! boundary, so while the app computes, and after the signal interrupted a
//! `time.sleep` or blocking I/O; and the engine, which polls the link
//! while the thread is not there, for a worker waiting in its loop (sync
//! and gthread) or in its event loop (asyncio, gevent, eventlet: they wait
//! on the engine's epoll descriptor); and, for a main thread blocked in
//! ferrocorn's own waits (the app reading a body, or writing to a slow
//! client: no Python runs there), the hook those waits run when the
//! signal interrupts them ([`crate::sys::on_interrupt`]), which peeks at
//! the link. After the first answer the master sends no more signals.
//!
//! Providers describe what threads do not show: the asyncio executor
//! registers its loop ([`register_asyncio_loop`]) and the task list comes
//! from `asyncio.all_tasks(loop)`; a greenlet worker registers a provider
//! of kind `"greenlets"` with [`register_provider`].

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyModule, PyTuple};

/// The largest answer a worker sends (a larger one says so instead).
pub const MAX_REPLY: usize = 4 * 1024 * 1024;

const HELPER_SRC: &std::ffi::CStr = pyo3::ffi::c_str!(include_str!("stacks.py"));

/// Both ends of a new link, made before fork.
pub struct LinkPair {
    pub(super) master: OwnedFd,
    pub(super) worker: OwnedFd,
}

impl LinkPair {
    pub fn new() -> io::Result<LinkPair> {
        let (master, worker) = socket::socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        crate::sys::set_blocking(master.as_fd(), false)?;
        Ok(LinkPair { master, worker })
    }
}

/// The master's end of one worker's link.
pub struct Link {
    fd: OwnedFd,
    buf: Vec<u8>,
    /// The worker's pid, which the stacks signal goes to.
    pid: i32,
    /// An answer came: the worker's stacks thread runs, and needs no
    /// signal to start.
    answered: bool,
}

impl Link {
    pub(super) fn new(fd: OwnedFd, pid: i32) -> Link {
        Link {
            fd,
            buf: Vec::new(),
            pid,
            answered: false,
        }
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Ask for the stacks under request `id`.
    pub(super) fn ask(&mut self, id: u32) -> io::Result<()> {
        let n = socket::send(
            self.fd.as_raw_fd(),
            &id.to_be_bytes(),
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        )?;
        if n != 4 {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the worker's link is full",
            ));
        }
        if !self.answered {
            // The worker starts its stacks thread on the first request:
            // the signal reaches it while the app runs on its main thread
            // (the engine's poll sees the request when it is idle).
            // SAFETY: kill(2) has no memory-safety preconditions. `pid`
            // is a current worker of this master: `service` drops the
            // links of reaped workers before it handles requests.
            if unsafe { libc::kill(self.pid, crate::sys::stacks_signal()) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// The answers that have arrived, as `(id, JSON bytes)`. An error means
    /// the link is unusable (the worker is gone, or sent nonsense).
    pub(super) fn answers(&mut self) -> io::Result<Vec<(u32, Vec<u8>)>> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match nix::unistd::read(&self.fd, &mut chunk) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed")),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if self.buf.len() > MAX_REPLY + 8 + 64 * 1024 {
                        return Err(io::Error::other("answer too large"));
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let mut out = Vec::new();
        while self.buf.len() >= 8 {
            let id = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            let len =
                u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
            if len > MAX_REPLY {
                return Err(io::Error::other("answer too large"));
            }
            if self.buf.len() < 8 + len {
                break;
            }
            let body = self.buf[8..8 + len].to_vec();
            self.buf.drain(..8 + len);
            out.push((id, body));
            self.answered = true;
        }
        Ok(out)
    }
}

/// The worker's end of the link, from fork on. It is never closed, so the
/// engine may poll it and take it out of its poll set at any time (a
/// closed descriptor's number could be reused by a connection).
static WORKER_END: OnceLock<OwnedFd> = OnceLock::new();

/// The worker's main thread, as `sys._current_frames()` keys it
/// (CPython's thread ident is `pthread_self()`), noted by [`arm`].
static MAIN_THREAD: AtomicU64 = AtomicU64::new(0);

/// The stacks thread was started (or could not be).
static STARTED: AtomicBool = AtomicBool::new(false);

/// What the stacks show besides threads: `(kind, callable)`.
static PROVIDERS: Mutex<Vec<(&'static str, Py<PyAny>)>> = Mutex::new(Vec::new());

/// In a new worker: keep its end of the link for [`start`].
pub(super) fn adopt(fd: OwnedFd) {
    let _ = WORKER_END.set(fd);
}

/// The worker's end of the link: the engine polls it until the stacks
/// thread starts, and a request arriving there starts the thread.
pub fn link_fd() -> Option<BorrowedFd<'static>> {
    WORKER_END.get().map(AsFd::as_fd)
}

/// In the worker, on its main thread, once the app is loaded (when the
/// master gave this worker a link): get ready to start the stacks thread
/// on the first request, without starting it. Notes the main thread, and
/// hands the stacks signal ([`crate::sys::stacks_signal`]) to a Python-level
/// handler (through `_signal`, which gevent and eventlet do not patch)
/// that starts the thread: CPython runs it on the main thread at the next
/// bytecode boundary, so it runs while the app computes, and the signal
/// interrupts `time.sleep` and blocking I/O, which run it before they go
/// on. Until here the master's SIG_IGN, inherited at fork, keeps the
/// signal from killing the worker.
pub fn arm() {
    if WORKER_END.get().is_none() {
        return;
    }
    crate::sys::on_interrupt(poke);
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() } as u64;
    MAIN_THREAD.store(me, Ordering::SeqCst);
    let armed = Python::attach(|py| -> PyResult<()> {
        // The helper imports `threading` here, on the main thread, if the
        // app has not: imported first on the stacks thread, it would take
        // that thread for the main one.
        helper(py)?.getattr("set_entry")?.call0()?;
        let handler = PyCFunction::new_closure(
            py,
            Some(c"ferrocorn_stacks_signal"),
            None,
            |_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>| {
                start();
            },
        )?;
        py.import("_signal")?
            .getattr("signal")?
            .call1((crate::sys::stacks_signal(), handler))?;
        Ok(())
    });
    if let Err(e) = armed {
        // The engine's poll still starts the thread, just not while the
        // app runs on the main thread: start it now rather than answer
        // late.
        crate::warning!("ctl stacks: cannot handle the stacks signal: {e}");
        start();
    }
}

/// A signal interrupted a wait in ferrocorn's own code (the app reading a
/// request body, or writing to a slow client): start the thread if a
/// request is waiting on the link, since no Python runs meanwhile to
/// handle the stacks signal.
fn poke() {
    if STARTED.load(Ordering::SeqCst) {
        return;
    }
    let Some(fd) = WORKER_END.get() else {
        return;
    };
    let mut byte = [0u8; 1];
    let peeked = socket::recv(
        fd.as_raw_fd(),
        &mut byte,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    );
    if matches!(peeked, Ok(n) if n > 0) {
        start();
    }
}

/// Start the stacks thread, once (any thread may call this; no GIL
/// needed): on the first request, from the signal handler or the engine.
pub fn start() {
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let Some(fd) = WORKER_END.get() else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("ferrocorn-stacks".into())
        .spawn(move || serve(fd));
    if let Err(e) = spawned {
        crate::warning!("ctl stacks: cannot start the stacks thread: {e}");
    }
}

/// Add a source of stacks: `provider()` returns a list of JSON-able
/// entries (`{"name", "frames": [...]}`), listed under `kind`.
pub fn register_provider(kind: &'static str, provider: Py<PyAny>) {
    if let Ok(mut p) = PROVIDERS.lock() {
        p.push((kind, provider));
    }
}

/// The asyncio executor's loop exists: list its tasks in the stacks.
pub fn register_asyncio_loop(py: Python<'_>, event_loop: &Bound<'_, PyAny>) {
    let provider = helper(py).and_then(|m| {
        let f = m.getattr("asyncio_tasks")?;
        py.import("functools")?
            .getattr("partial")?
            .call1((f, event_loop))
    });
    match provider {
        Ok(p) => register_provider("tasks", p.unbind()),
        Err(e) => crate::warning!("ctl stacks: cannot watch the event loop's tasks: {e}"),
    }
}

fn helper(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    static MODULE: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();
    crate::wsgi::embedded_module(py, &MODULE, HELPER_SRC, c"ferrocorn_stacks", |_| Ok(()))
}

/// The worker's stacks as JSON text.
fn dump() -> Vec<u8> {
    let pid = std::process::id();
    let text = Python::attach(|py| -> PyResult<String> {
        let providers: Vec<(&'static str, Py<PyAny>)> = match PROVIDERS.lock() {
            Ok(p) => p.iter().map(|(k, f)| (*k, f.clone_ref(py))).collect(),
            Err(_) => Vec::new(),
        };
        helper(py)?
            .getattr("dump")?
            .call1((pid, providers, MAIN_THREAD.load(Ordering::SeqCst)))?
            .extract()
    });
    let text = match text {
        Ok(t) if t.len() <= MAX_REPLY => t,
        Ok(t) => serde_json::json!({
            "pid": pid,
            "error": format!("the stacks are {} bytes, more than {MAX_REPLY}", t.len()),
        })
        .to_string(),
        Err(e) => serde_json::json!({ "pid": pid, "error": e.to_string() }).to_string(),
    };
    text.into_bytes()
}

/// The stacks thread: answer each request until the master goes away.
fn serve(fd: &OwnedFd) {
    loop {
        let mut id = [0u8; 4];
        if read_exact(fd, &mut id).is_err() {
            return;
        }
        let body = dump();
        let mut msg = Vec::with_capacity(8 + body.len());
        msg.extend_from_slice(&id);
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes());
        msg.extend_from_slice(&body);
        if write_all(fd, &msg).is_err() {
            return;
        }
    }
}

fn read_exact(fd: &OwnedFd, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match nix::unistd::read(fd, buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn write_all(fd: &OwnedFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match socket::send(fd.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
