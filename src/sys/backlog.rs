//! How many connections wait in a listening socket's accept queue (the
//! listen backlog), for the metrics: TCP_INFO for a TCP socket (as
//! gunicorn's `--enable-backlog-metric` reads it: `tcpi_unacked` is the
//! queue's length on a listening socket, `tcpi_sacked` its limit), and
//! sock_diag (netlink, `UNIX_DIAG_RQLEN`) for a unix socket, which
//! gunicorn cannot measure. Both answer at once: nothing here waits.

use std::os::fd::{AsRawFd, BorrowedFd};

/// Connections waiting to be accepted and the queue's limit (`--backlog`
/// as the kernel applied it); None when the kernel would not say.
pub fn listen_queue(fd: BorrowedFd<'_>, unix: bool) -> Option<(u64, u64)> {
    if unix {
        unix_queue(fd)
    } else {
        tcp_queue(fd)
    }
}

/// `struct tcp_info` up to `tcpi_sacked` (8 bytes, then u32 fields:
/// rto, ato, snd_mss, rcv_mss, unacked, sacked).
const TCPI_UNACKED: usize = 24;
const TCPI_SACKED: usize = 28;

fn tcp_queue(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    let mut buf = [0u8; 104];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `buf`, which we
    // own and which is that long; `len` is updated to what was written.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 || (len as usize) < TCPI_SACKED + 4 {
        return None;
    }
    let word = |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    Some((word(TCPI_UNACKED) as u64, word(TCPI_SACKED) as u64))
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_RQLEN: u16 = 4;

/// A unix listening socket's queue through sock_diag: the request names
/// the socket by its inode; the answer's `UNIX_DIAG_RQLEN` holds the
/// pending connections and the limit.
fn unix_queue(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    use nix::sys::socket::{
        recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
        SockType,
    };
    let ino = nix::sys::stat::fstat(fd).ok()?.st_ino as u32;
    let nl = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()?;
    // struct nlmsghdr (16 bytes) + struct unix_diag_req (24 bytes).
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    req.push(libc::AF_UNIX as u8); // sdiag_family
    req.push(0); // sdiag_protocol
    req.extend_from_slice(&0u16.to_ne_bytes()); // pad
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // udiag_states: any
    req.extend_from_slice(&ino.to_ne_bytes()); // udiag_ino
    req.extend_from_slice(&UDIAG_SHOW_RQLEN.to_ne_bytes()); // udiag_show
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // udiag_cookie: none
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    sendto(
        nl.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .ok()?;
    // The kernel queues its answer before sendto returns.
    let mut buf = [0u8; 512];
    let n = recv(nl.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).ok()?;
    parse_rqlen(&buf[..n], ino)
}

/// `UNIX_DIAG_RQLEN` of the answer about socket `ino`.
fn parse_rqlen(msg: &[u8], ino: u32) -> Option<(u64, u64)> {
    let u16_at = |at: usize| Some(u16::from_ne_bytes(msg.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_ne_bytes(msg.get(at..at + 4)?.try_into().ok()?));
    let len = (u32_at(0)? as usize).min(msg.len());
    if u16_at(4)? == NLMSG_ERROR || u16_at(4)? != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    // struct unix_diag_msg: family, type, state, pad, ino, cookie[2].
    if u32_at(16 + 4)? != ino {
        return None;
    }
    let mut at = 16 + 16;
    while at + 4 <= len {
        let rta_len = u16_at(at)? as usize;
        let rta_type = u16_at(at + 2)?;
        if rta_len < 4 {
            return None;
        }
        if rta_type == UNIX_DIAG_RQLEN && rta_len >= 12 {
            return Some((u32_at(at + 4)? as u64, u32_at(at + 8)? as u64));
        }
        at += (rta_len + 3) & !3;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn tcp_listen_queue_counts_waiting_connections() {
        let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        l.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        l.listen(17).unwrap();
        let addr = l.local_addr().unwrap().as_socket().unwrap();
        assert_eq!(listen_queue(l.as_fd(), false), Some((0, 17)));
        let _a = std::net::TcpStream::connect(addr).unwrap();
        let _b = std::net::TcpStream::connect(addr).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(listen_queue(l.as_fd(), false), Some((2, 17)));
    }

    #[test]
    fn unix_listen_queue_through_sock_diag() {
        let dir = std::env::temp_dir().join(format!("ferrocorn-backlog-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s");
        let _ = std::fs::remove_file(&path);
        let l = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
        l.bind(&socket2::SockAddr::unix(&path).unwrap()).unwrap();
        l.listen(9).unwrap();
        let got = listen_queue(l.as_fd(), true);
        // sock_diag may be missing (no unix_diag module): then None.
        if let Some(q) = got {
            assert_eq!(q, (0, 9));
            let _a = std::os::unix::net::UnixStream::connect(&path).unwrap();
            assert_eq!(listen_queue(l.as_fd(), true), Some((1, 9)));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
