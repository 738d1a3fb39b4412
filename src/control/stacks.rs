//! `ctl stacks`: the link between the master and each worker that carries
//! a request for the worker's Python stacks and the answer, and the
//! worker's half, a thread that waits on the link.
//!
//! Before each fork the master makes a socket pair ([`LinkPair`]); it keeps
//! one end ([`Link`], non-blocking, polled by its loop) and the worker the
//! other. After the app is loaded the worker starts the *stacks thread*
//! ([`start`]), which blocks reading its end. A request is 4 bytes, its id;
//! the thread then takes the GIL (the app's thread releases it in
//! `time.sleep`, in I/O, and every switch interval while computing), runs
//! `stacks.py` over `sys._current_frames()` and the registered providers,
//! and writes `id, length, JSON` back. The worker never stops serving
//! meanwhile. The master answers its client when every worker did or at
//! its deadline, whichever comes first; a late answer carries an old id
//! and is dropped.
//!
//! Providers describe what threads do not show: the asyncio executor
//! registers its loop ([`register_asyncio_loop`]) and the task list comes
//! from `asyncio.all_tasks(loop)`; a greenlet worker registers a provider
//! of kind `"greenlets"` with [`register_provider`].

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use pyo3::prelude::*;
use pyo3::types::PyModule;

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
}

impl Link {
    pub(super) fn new(fd: OwnedFd) -> Link {
        Link {
            fd,
            buf: Vec::new(),
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
        }
        Ok(out)
    }
}

/// The worker's end, kept from fork until the stacks thread starts.
static WORKER_END: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// What the stacks show besides threads: `(kind, callable)`.
static PROVIDERS: Mutex<Vec<(&'static str, Py<PyAny>)>> = Mutex::new(Vec::new());

/// In a new worker: keep its end of the link for [`start`].
pub(super) fn adopt(fd: OwnedFd) {
    if let Ok(mut slot) = WORKER_END.lock() {
        *slot = Some(fd);
    }
}

/// In the worker, once Python is initialized: start the stacks thread
/// (when the master gave this worker a link).
pub fn start() {
    let Some(fd) = WORKER_END.lock().ok().and_then(|mut s| s.take()) else {
        return;
    };
    // On the worker's main thread: the helper (and `threading`, if the app
    // has not imported it yet) is imported here, and notes this thread.
    let noted = Python::attach(|py| helper(py)?.getattr("set_main")?.call0().map(drop));
    if let Err(e) = noted {
        crate::warning!("ctl stacks: {e}");
    }
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
            .call1((pid, providers))?
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
fn serve(fd: OwnedFd) {
    loop {
        let mut id = [0u8; 4];
        if read_exact(&fd, &mut id).is_err() {
            return;
        }
        let body = dump();
        let mut msg = Vec::with_capacity(8 + body.len());
        msg.extend_from_slice(&id);
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes());
        msg.extend_from_slice(&body);
        if write_all(&fd, &msg).is_err() {
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
