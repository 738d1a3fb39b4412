//! Socket I/O for the objects Python calls back into during a request
//! (`wsgi.input`, `start_response`/`write`, `gunicorn.socket`): writes and
//! reads on the connection's descriptor that wait with the GIL released,
//! or, in a greenlet worker (gevent, eventlet), that wait on the hub
//! ([`set_green`], [`wait_ready`]), so the other greenlets run meanwhile.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use pyo3::prelude::*;

use crate::sys;
use crate::tls::Wire;

/// Where a thread running a request reports that the request is making
/// progress (bytes reached the client, or came from it on a taken-over
/// connection), so that a long stream is not mistaken for a stuck worker:
/// a sync worker's heartbeat, or a gthread thread's "busy since" stamp.
pub enum Progress {
    Beat(&'static std::sync::atomic::AtomicU64),
    Thread(std::sync::Arc<Vec<std::sync::atomic::AtomicU64>>, usize),
}

thread_local! {
    static PROGRESS: std::cell::RefCell<Option<Progress>> = const { std::cell::RefCell::new(None) };
}

/// Set (or clear) where this thread reports request progress.
pub fn set_progress(p: Option<Progress>) {
    PROGRESS.with(|c| *c.borrow_mut() = p);
}

/// The request running on this thread made progress: date its heartbeat now.
pub(crate) fn note_progress() {
    PROGRESS.with(|c| {
        let now = sys::monotonic_ms().max(1);
        match &*c.borrow() {
            Some(Progress::Beat(b)) => b.store(now, std::sync::atomic::Ordering::Relaxed),
            Some(Progress::Thread(cells, i)) => {
                if let Some(cell) = cells.get(*i) {
                    cell.store(now, std::sync::atomic::Ordering::Relaxed);
                }
            }
            None => {}
        }
    });
}

/// A greenlet worker's cooperative waits, installed once at its start:
/// `wait(fd, write, timeout) -> bool` (False: timed out; `timeout` None:
/// no limit) and `sleep(seconds)`, both switching to the hub.
pub struct GreenWaits {
    pub wait: Py<PyAny>,
    pub sleep: Py<PyAny>,
}

static GREEN: std::sync::OnceLock<GreenWaits> = std::sync::OnceLock::new();

/// Make every wait of a request cooperative (a greenlet worker, once).
pub fn set_green(waits: GreenWaits) {
    let _ = GREEN.set(waits);
}

/// Whether waits go to a greenlet hub.
pub(crate) fn green() -> bool {
    GREEN.get().is_some()
}

/// Wait until `fd` is readable (`write`: writable), at most `timeout`
/// (None: no limit). False: timed out. With the GIL released, or on the
/// hub in a greenlet worker.
pub(crate) fn wait_ready(
    py: Python<'_>,
    fd: RawFd,
    write: bool,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    if let Some(g) = GREEN.get() {
        let t = timeout.map(|t| t.as_secs_f64());
        return g
            .wait
            .bind(py)
            .call1((fd, write, t))
            .and_then(|r| r.is_truthy())
            .map_err(|e| io::Error::other(e.to_string()));
    }
    let t = timeout.unwrap_or(Duration::from_millis(i32::MAX as u64));
    py.detach(|| sys::wait_fd(borrow_sock(fd), write, t))
}

/// Let another thread (or greenlet) go on for about `d`.
pub(crate) fn pause(py: Python<'_>, d: Duration) {
    match GREEN.get() {
        Some(g) => {
            if let Err(e) = g.sleep.bind(py).call1((d.as_secs_f64(),)) {
                e.restore(py);
            }
        }
        None => py.detach(|| std::thread::sleep(d)),
    }
}

/// Writes at least this large release the GIL for the copy too.
pub(crate) const DIRECT_WRITE_AT: usize = 64 * 1024;

/// `fd` as a borrowed descriptor.
///
/// SAFETY contract for callers: only called while the owning request is
/// active, and the worker keeps the connection (and so the descriptor) open
/// for at least as long as the request is active.
pub(crate) fn borrow_sock<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: see the contract above; `active` is checked by every caller.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

pub(crate) fn send_some(wire: &Wire, data: &[u8]) -> io::Result<usize> {
    let n = wire.send(data)?;
    if n > 0 {
        note_progress();
    }
    Ok(n)
}

/// Write all of `data`, waiting (with the GIL released) while the socket
/// is full. Large writes release the GIL for the copy too, so other
/// threads of a gthread worker run meanwhile.
pub(crate) fn send_all(
    py: Python<'_>,
    wire: &Wire,
    data: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    if data.len() >= DIRECT_WRITE_AT && !green() {
        return py.detach(|| send_all_detached(wire, data, timeout));
    }
    send_all_attached(py, wire, data, timeout)
}

/// Write what the socket takes now, without waiting. Returns the count.
pub(crate) fn send_now(wire: &Wire, data: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < data.len() {
        match send_some(wire, &data[sent..]) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

pub(crate) fn send_all_detached(wire: &Wire, mut data: &[u8], timeout: Duration) -> io::Result<()> {
    while !data.is_empty() {
        match send_some(wire, data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !sys::wait_fd(borrow_sock(wire.fd()), true, timeout)? {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "send timed out"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(crate) fn send_all_attached(
    py: Python<'_>,
    wire: &Wire,
    mut data: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    while !data.is_empty() {
        match send_some(wire, data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let ready = wait_ready(py, wire.fd(), true, Some(timeout))?;
                if !ready {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "send timed out"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
