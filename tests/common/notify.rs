//! systemd's side of sd_notify: `NotifyRx`, a notification socket that
//! records who sent what, as systemd would see it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::TempDir;

/// A stand-in for systemd's notification socket: a datagram socket bound in
/// a temp dir, with `SO_PASSCRED` so each message carries its sender's pid.
/// It closes fds passed with `BARRIER=1`, as systemd does.
pub struct NotifyRx {
    sock: std::os::unix::net::UnixDatagram,
    pub path: PathBuf,
    _dir: TempDir,
    /// Every message so far: (sender pid, text).
    pub seen: Vec<(i32, String)>,
}

impl NotifyRx {
    pub fn new() -> NotifyRx {
        let dir = TempDir::new("notify");
        let path = dir.join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
        let on: libc::c_int = 1;
        // SAFETY: setsockopt with a valid int option value on our socket.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_PASSCRED");
        NotifyRx {
            sock,
            path,
            _dir: dir,
            seen: Vec::new(),
        }
    }

    pub fn env(&self) -> (&'static str, String) {
        ("NOTIFY_SOCKET", self.path.display().to_string())
    }

    /// Receive one message within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Option<(i32, String)> {
        use std::os::fd::AsRawFd;
        let fd = self.sock.as_raw_fd();
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        if n <= 0 {
            return None;
        }
        let mut buf = [0u8; 4096];
        let mut cbuf = [0u8; 256];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr points at live buffers of the given sizes.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = cbuf.len();
        // SAFETY: as above.
        let len = unsafe { libc::recvmsg(fd, &mut msg, 0) };
        if len < 0 {
            return None;
        }
        let mut pid = 0;
        // SAFETY: walking the control messages the kernel wrote into cbuf.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let data = libc::CMSG_DATA(c);
                if (*c).cmsg_type == libc::SCM_CREDENTIALS {
                    let cred = std::ptr::read_unaligned(data as *const libc::ucred);
                    pid = cred.pid;
                } else if (*c).cmsg_type == libc::SCM_RIGHTS {
                    let n = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                    for i in 0..n {
                        let fd = std::ptr::read_unaligned((data as *const i32).add(i));
                        libc::close(fd);
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let text = String::from_utf8_lossy(&buf[..len as usize]).into_owned();
        self.seen.push((pid, text.clone()));
        Some((pid, text))
    }

    /// Receive until a message satisfies `pred` (bounded); returns it.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(i32, &str) -> bool,
    ) -> Option<(i32, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let (pid, text) = self.recv(left)?;
            if pred(pid, &text) {
                return Some((pid, text));
            }
        }
    }

    /// Drain whatever arrives within `quiet`.
    pub fn drain(&mut self, quiet: Duration) {
        while self.recv(quiet).is_some() {}
    }

    /// The state-changing keys of every message, in order (STATUS= lines
    /// and watchdog pings left out): e.g. ["READY=1", "RELOADING=1"].
    pub fn events(&self) -> Vec<String> {
        self.seen
            .iter()
            .flat_map(|(_, t)| t.lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|l| {
                !l.starts_with("STATUS=") && !l.starts_with("MONOTONIC_USEC=") && l != "WATCHDOG=1"
            })
            .map(|l| {
                if l.starts_with("MAINPID=") {
                    "MAINPID".to_string()
                } else {
                    l
                }
            })
            .collect()
    }
}
