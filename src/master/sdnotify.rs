//! systemd's readiness protocol (`sd_notify(3)`), on `std` and `nix` only.
//!
//! A notification is one datagram of `KEY=VALUE` lines sent to the socket
//! named by `NOTIFY_SOCKET` (a path, or an abstract name written with a
//! leading `@`). `BARRIER=1` carries a pipe's write end: systemd closes it
//! once every earlier message has been processed, which turns "systemd has
//! seen our MAINPID=" into an acknowledgement instead of a hope.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use thiserror::Error;

use crate::sys;

#[derive(Debug, Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={0}: not an absolute path or @abstract name")]
    BadAddress(String),
    #[error("NOTIFY_SOCKET={addr}: {source}")]
    Socket { addr: String, source: io::Error },
}

/// A connection-less sender to systemd's notification socket.
#[derive(Debug)]
pub struct Notifier {
    sock: OwnedFd,
    addr: UnixAddr,
    /// As given in `NOTIFY_SOCKET`, for messages and for handing on.
    name: String,
}

impl Notifier {
    /// A notifier for `NOTIFY_SOCKET`'s value.
    pub fn new(name: &str) -> Result<Notifier, NotifyError> {
        let addr = if let Some(abstract_name) = name.strip_prefix('@') {
            UnixAddr::new_abstract(abstract_name.as_bytes())
        } else if name.starts_with('/') {
            UnixAddr::new(name)
        } else {
            return Err(NotifyError::BadAddress(name.to_string()));
        }
        .map_err(|e| NotifyError::Socket {
            addr: name.to_string(),
            source: e.into(),
        })?;
        let sock = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| NotifyError::Socket {
            addr: name.to_string(),
            source: e.into(),
        })?;
        Ok(Notifier {
            sock,
            addr,
            name: name.to_string(),
        })
    }

    /// The `NOTIFY_SOCKET` value this notifier sends to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Send one notification (several `KEY=VALUE` lines).
    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.send(state.as_bytes(), None)
    }

    fn send(&self, msg: &[u8], fd: Option<&OwnedFd>) -> io::Result<()> {
        let iov = [IoSlice::new(msg)];
        let raw;
        let cmsgs: &[ControlMessage<'_>] = match fd {
            Some(fd) => {
                raw = [fd.as_raw_fd()];
                &[ControlMessage::ScmRights(&raw)]
            }
            None => &[],
        };
        loop {
            match sendmsg(
                self.sock.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                Some(&self.addr),
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `BARRIER=1`: returns once systemd has processed every notification
    /// sent before it (true), or false after `timeout`.
    pub fn barrier(&self, timeout: Duration) -> io::Result<bool> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        self.send(b"BARRIER=1", Some(&write))?;
        drop(write);
        // systemd closes its copy of the write end after processing: the
        // read end then reports end-of-file (readable, or POLLHUP).
        sys::wait_fd(read.as_fd(), false, timeout)
    }
}

/// How often to send `WATCHDOG=1`, from `WATCHDOG_USEC` (and
/// `WATCHDOG_PID`, which must name `pid` when present): half the interval
/// systemd enforces, as `sd_watchdog_enabled(3)` recommends.
pub fn watchdog_interval(usec: Option<&str>, wd_pid: Option<&str>, pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(p) = wd_pid {
        if p.trim().parse::<u32>().ok() != Some(pid) {
            return None;
        }
    }
    // Never a busy loop, whatever the value.
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(10)))
}

/// `MONOTONIC_USEC=` for `RELOADING=1`: CLOCK_MONOTONIC in microseconds.
pub fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn receiver() -> (UnixDatagram, String, std::path::PathBuf) {
        // Tests run in parallel threads of one process: a counter keeps
        // their directories apart even within one millisecond.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ferrocorn-notify-{}-{}-{}",
            std::process::id(),
            sys::monotonic_ms(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (rx, path.display().to_string(), dir)
    }

    #[test]
    fn sends_to_a_path_socket() {
        let (rx, name, dir) = receiver();
        let n = Notifier::new(&name).unwrap();
        n.notify("READY=1\nSTATUS=up").unwrap();
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!(
            "ferrocorn-test-{}-{}",
            std::process::id(),
            sys::monotonic_ms()
        );
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::new(&format!("@{name}")).unwrap();
        n.notify("STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
    }

    #[test]
    fn barrier_completes_when_the_receiver_drops_the_fd() {
        let (rx, name, dir) = receiver();
        let n = Notifier::new(&name).unwrap();
        let waiter = std::thread::spawn(move || n.barrier(Duration::from_secs(5)).unwrap());
        // Receive the datagram with its fd, then close the fd as systemd does.
        let mut buf = [0u8; 64];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = nix::sys::socket::recvmsg::<()>(
            rx.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .unwrap();
        let mut fds = Vec::new();
        for c in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(v) = c {
                fds.extend(v);
            }
        }
        assert_eq!(fds.len(), 1);
        for fd in fds {
            nix::unistd::close(fd).unwrap();
        }
        assert!(waiter.join().unwrap(), "barrier should complete");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn barrier_times_out_when_nobody_answers() {
        let (_rx, name, dir) = receiver();
        let n = Notifier::new(&name).unwrap();
        // The datagram (and its fd) sits unread in the receiver's queue.
        assert!(!n.barrier(Duration::from_millis(100)).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rejects_relative_names() {
        assert!(matches!(
            Notifier::new("relative.sock"),
            Err(NotifyError::BadAddress(_))
        ));
    }

    #[test]
    fn watchdog_interval_follows_the_pid() {
        assert_eq!(
            watchdog_interval(Some("2000000"), None, 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_interval(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog_interval(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }
}
