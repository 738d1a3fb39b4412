//! The 500 a client gets when its request hits the worker timeout.
//!
//! The master ends a silent worker with SIGABRT. Before the worker dies,
//! the clients whose response has not started are answered
//! `500 Internal Server Error` with `Connection: close`, as gunicorn's
//! sync worker answers them, instead of seeing their connection reset.
//!
//! A signal handler may only do async-signal-safe work, so everything is
//! prepared ahead: the response is a constant, and the descriptors to
//! answer are in a fixed table of atomics. A request claims a slot with
//! its connection's descriptor when it starts ([`Waiting::claim`]) and
//! frees it before the first byte of its response goes out, when the app
//! takes the connection over, and when the request ends (the descriptor is
//! still open then: the engine closes connections only after that). The
//! handler writes the response with send(2) to each descriptor in the
//! table, reads off what is left of the request (so that closing does not
//! reset the connection and discard the answer), shuts the writing side
//! down, and lets the signal go on: to faulthandler's dump or the
//! worker_abort hook, then the default action (the worker dies).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// What the client receives.
const RESPONSE: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\n\
Connection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 22\r\n\
\r\n\
Internal Server Error\n";

/// The head of [`RESPONSE`]: the answer to a HEAD request.
const HEAD_LEN: usize = RESPONSE.len() - 22;

/// Requests running at once in a worker that can be answered (more, with
/// `--threads` above this, are not answered).
const SLOTS: usize = 1024;

/// Connections whose response has not started, as `fd * 2 + HEAD`
/// (1 for a HEAD request); -1: free.
static WAITING: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];

/// Set when the handler is installed (only in workers).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// A worker_abort hook ends the worker itself (its thread exits 1).
static HOOK_ENDS_WORKER: AtomicBool = AtomicBool::new(false);

/// A claimed slot: the connection gets the 500 if the worker is aborted
/// before [`Waiting::release`] (or drop).
#[derive(Debug, Default)]
pub struct Waiting(Option<usize>);

impl Waiting {
    /// Claim a slot for `fd` (nothing when the handler is not installed or
    /// every slot is taken). `is_head`: the 500 goes without its body.
    /// Under TLS there is no claim: a signal handler cannot encrypt, and
    /// the client sees its connection closed instead.
    pub fn claim(wire: &crate::tls::Wire, is_head: bool) -> Waiting {
        let fd = wire.fd();
        if wire.is_tls() || !(0..i32::MAX / 2).contains(&fd) || !INSTALLED.load(Ordering::Relaxed) {
            return Waiting(None);
        }
        let entry = fd * 2 + i32::from(is_head);
        for (i, slot) in WAITING.iter().enumerate() {
            if slot
                .compare_exchange(-1, entry, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                return Waiting(Some(i));
            }
        }
        Waiting(None)
    }

    /// The response started (or the request is over): no 500 any more.
    pub fn release(&mut self) {
        if let Some(i) = self.0.take() {
            WAITING[i].store(-1, Ordering::SeqCst);
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.release();
    }
}

/// Install the SIGABRT handler (in a worker, before Python starts, so
/// that faulthandler dumps the stacks first and then hands the signal on
/// to it). `hook_ends_worker`: a worker_abort hook is defined, whose
/// thread ends the worker after running it.
pub fn install(hook_ends_worker: bool) -> std::io::Result<()> {
    HOOK_ENDS_WORKER.store(hook_ends_worker, Ordering::SeqCst);
    // SAFETY: the action only calls async-signal-safe functions (send,
    // recv, shutdown, sigaction, raise) on descriptors from the table and
    // reads atomics; it allocates nothing and takes no lock.
    unsafe { signal_hook::low_level::register(libc::SIGABRT, on_abort) }?;
    INSTALLED.store(true, Ordering::SeqCst);
    Ok(())
}

fn on_abort() {
    for slot in &WAITING {
        let entry = slot.swap(-1, Ordering::SeqCst);
        if entry >= 0 {
            let len = if entry & 1 == 1 {
                HEAD_LEN
            } else {
                RESPONSE.len()
            };
            answer(entry / 2, &RESPONSE[..len]);
        }
    }
    if !HOOK_ENDS_WORKER.load(Ordering::SeqCst) {
        die_by_abort();
    }
}

/// Write the 500 to `fd`, take in what the client still sends, and end
/// the output (the process exits soon after, which closes it).
fn answer(fd: i32, response: &[u8]) {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    let mut sent = 0;
    while sent < response.len() {
        // SAFETY: send(2) is async-signal-safe; `fd` is a connection the
        // worker keeps open while its slot is claimed, and the buffer is
        // a constant.
        let n = unsafe {
            libc::send(
                fd,
                response[sent..].as_ptr().cast(),
                response.len() - sent,
                flags,
            )
        };
        if n <= 0 {
            return;
        }
        sent += n as usize;
    }
    let mut sink = [0u8; 4096];
    for _ in 0..64 {
        // SAFETY: recv(2) is async-signal-safe and never blocks here
        // (MSG_DONTWAIT); the buffer is on this stack frame.
        let n = unsafe { libc::recv(fd, sink.as_mut_ptr().cast(), sink.len(), flags) };
        if n <= 0 {
            break;
        }
    }
    // SAFETY: shutdown(2) is async-signal-safe; it sends the FIN after the
    // response.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
}

/// Let SIGABRT's default action end the process once the handlers
/// return: the signal is blocked while they run, so the raise stays
/// pending until then, after faulthandler (when it chains after us) has
/// dumped the stacks.
fn die_by_abort() {
    // SAFETY: sigaction(2) and raise(3) are async-signal-safe; the action
    // is a zeroed sigaction with SIG_DFL.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut dfl.sa_mask);
        libc::sigaction(libc::SIGABRT, &dfl, std::ptr::null_mut());
        libc::raise(libc::SIGABRT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_where_the_body_starts() {
        assert!(RESPONSE[..HEAD_LEN].ends_with(b"\r\n\r\n"));
        assert_eq!(&RESPONSE[HEAD_LEN..], b"Internal Server Error\n");
    }
}
