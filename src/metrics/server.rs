//! The master's metrics listener (`--metrics-bind`): a non-blocking socket
//! in the master's poll loop that answers `GET /metrics` and closes. The
//! master is single-threaded, so nothing here may wait: every socket is
//! non-blocking, a request head is read up to 8 KiB, a connection gets two
//! seconds in all (then it is closed, answered or not), at most eight are
//! open at once (a new one closes the oldest), and a pass accepts at most
//! 16. A slow or stuck scraper costs a few system calls per pass, and
//! idle connections cannot lock a real scraper out.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::BindAddr;

/// Longest time a scrape connection is kept.
const CONN_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest request head read.
const MAX_HEAD: usize = 8192;
/// Scrape connections open at once.
const MAX_CONNS: usize = 8;
/// Connections accepted per pass of the master's loop.
const ACCEPT_PER_PASS: usize = 16;

enum Sock {
    Tcp(TcpListener),
    Unix(UnixListener),
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
    fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

struct Conn {
    stream: Stream,
    head: Vec<u8>,
    /// The response, once the head is in, and how much of it is written.
    out: Option<(Vec<u8>, usize)>,
    deadline: Instant,
}

/// Why binding the metrics address failed.
#[derive(Debug)]
pub enum BindError {
    /// Another process serves this address (a predecessor master during
    /// an upgrade, or another server).
    InUse,
    Other(io::Error),
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::InUse => write!(f, "another process is already listening there"),
            BindError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for BindError {
    fn from(e: io::Error) -> BindError {
        if e.kind() == io::ErrorKind::AddrInUse {
            BindError::InUse
        } else {
            BindError::Other(e)
        }
    }
}

/// The listening metrics socket and its open connections.
pub struct Server {
    sock: Sock,
    name: String,
    /// A unix socket file this process made: (path, inode, owner pid),
    /// removed when the owner drops it and the file is still ours.
    unix_file: Option<(PathBuf, u64, u32)>,
    conns: Vec<Conn>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some((path, ino, owner)) = &self.unix_file {
            let ours = std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == *ino);
            if *owner == std::process::id() && ours {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Server {
    pub fn bind(addr: &BindAddr) -> Result<Server, BindError> {
        match addr {
            BindAddr::Tcp(a) => {
                let s = Socket::new(Domain::for_address(*a), Type::STREAM, None)?;
                s.set_reuse_address(true)?;
                s.bind(&(*a).into())?;
                s.listen(64)?;
                s.set_nonblocking(true)?;
                let local = s.local_addr()?.as_socket().unwrap_or(*a);
                Ok(Server {
                    sock: Sock::Tcp(TcpListener::from(OwnedFd::from(s))),
                    name: format!("http://{local}"),
                    unix_file: None,
                    conns: Vec::new(),
                })
            }
            BindAddr::Unix(path) => {
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    if !meta.file_type().is_socket() {
                        return Err(BindError::Other(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            "a non-socket file is in the way",
                        )));
                    }
                    if UnixStream::connect(path).is_ok() {
                        return Err(BindError::InUse);
                    }
                    let _ = std::fs::remove_file(path);
                }
                let s = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                s.bind(&SockAddr::unix(path)?)?;
                s.listen(64)?;
                s.set_nonblocking(true)?;
                let ino = std::fs::symlink_metadata(path)
                    .map(|m| m.ino())
                    .unwrap_or(0);
                Ok(Server {
                    sock: Sock::Unix(UnixListener::from(OwnedFd::from(s))),
                    name: format!("unix:{}", path.display()),
                    unix_file: Some((path.clone(), ino, std::process::id())),
                    conns: Vec::new(),
                })
            }
            BindAddr::Fd(n) => {
                let fd = crate::sys::adopt_fd(*n)?;
                let s = Socket::from(fd);
                s.set_nonblocking(true)?;
                let _ = crate::sys::set_cloexec(s.as_fd(), true);
                let unix = s.local_addr()?.as_socket().is_none();
                let fd = OwnedFd::from(s);
                Ok(Server {
                    sock: if unix {
                        Sock::Unix(UnixListener::from(fd))
                    } else {
                        Sock::Tcp(TcpListener::from(fd))
                    },
                    name: format!("fd://{n}"),
                    unix_file: None,
                    conns: Vec::new(),
                })
            }
        }
    }

    /// `http://HOST:PORT` or `unix:PATH`, for the log.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The descriptors to wait on: the listener (readable), and each
    /// connection (readable while its request arrives, then writable).
    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        let mut v = vec![(
            match &self.sock {
                Sock::Tcp(l) => l.as_fd(),
                Sock::Unix(l) => l.as_fd(),
            },
            false,
        )];
        v.extend(self.conns.iter().map(|c| (c.stream.fd(), c.out.is_some())));
        v
    }

    /// When the oldest open connection times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns.iter().map(|c| c.deadline).min()
    }

    /// Accept what is waiting, and move every open connection on as far
    /// as it goes without waiting. `render` makes the exposition text.
    pub fn serve(&mut self, render: &mut dyn FnMut() -> String) {
        let now = Instant::now();
        for _ in 0..ACCEPT_PER_PASS {
            let accepted = match &self.sock {
                Sock::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                Sock::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            };
            match accepted {
                Ok(stream) => {
                    if self.conns.len() >= MAX_CONNS {
                        // The oldest has had the longest to send its request.
                        if let Some(i) =
                            (0..self.conns.len()).min_by_key(|&i| self.conns[i].deadline)
                        {
                            self.conns.swap_remove(i);
                        }
                    }
                    let ok = match &stream {
                        Stream::Tcp(s) => s.set_nonblocking(true),
                        Stream::Unix(s) => s.set_nonblocking(true),
                    };
                    if ok.is_ok() {
                        self.conns.push(Conn {
                            stream,
                            head: Vec::new(),
                            out: None,
                            deadline: now + CONN_TIMEOUT,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break, // WouldBlock, or EMFILE and friends
            }
        }
        self.conns.retain_mut(|c| c.drive(now, render));
    }
}

impl Conn {
    /// Read, answer, write; false once the connection is to be closed.
    fn drive(&mut self, now: Instant, render: &mut dyn FnMut() -> String) -> bool {
        if now >= self.deadline {
            return false;
        }
        if self.out.is_none() {
            let mut buf = [0u8; 2048];
            loop {
                match self.stream.read(&mut buf) {
                    Ok(0) => return false,
                    Ok(n) => {
                        self.head.extend_from_slice(&buf[..n]);
                        if self.head.len() > MAX_HEAD {
                            self.out =
                                Some((plain("431 Request Header Fields Too Large", "", false), 0));
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            if self.out.is_none() {
                let end = find(&self.head, b"\r\n\r\n").or_else(|| find(&self.head, b"\n\n"));
                if end.is_none() {
                    return true;
                }
                self.out = Some((respond(&self.head, render), 0));
            }
        }
        let Some((out, pos)) = &mut self.out else {
            return true;
        };
        while *pos < out.len() {
            match self.stream.write(&out[*pos..]) {
                Ok(0) => return false,
                Ok(n) => *pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.stream.shutdown();
        false
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A complete answer with `Connection: close`.
fn plain(status: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nServer: ferrocorn\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The answer to a request head.
fn respond(head: &[u8], render: &mut dyn FnMut() -> String) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return plain("400 Bad Request", "Bad Request\n", false);
    };
    if !version.starts_with("HTTP/1.") {
        return plain("400 Bad Request", "Bad Request\n", false);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let mut out = plain("405 Method Not Allowed", "Method Not Allowed\n", false);
        // Say which methods are (before the blank line).
        let at = out.len() - "Method Not Allowed\n".len() - 2;
        out.splice(at..at, b"Allow: GET, HEAD\r\n".iter().copied());
        return out;
    }
    let path = target.split('?').next().unwrap_or("");
    if path != "/metrics" {
        return plain(
            "404 Not Found",
            "Not Found: the metrics are at /metrics\n",
            head_only,
        );
    }
    let body = render();
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nServer: ferrocorn\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(req: &str) -> String {
        let mut render = || "m 1\n".to_string();
        String::from_utf8(respond(req.as_bytes(), &mut render)).unwrap()
    }

    #[test]
    fn answers() {
        let ok = answer("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("version=0.0.4"));
        assert!(ok.ends_with("\r\n\r\nm 1\n"));
        assert!(answer("GET /metrics?x=1 HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200"));
        let head = answer("HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            head.ends_with(
                "Content-Length: 4\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
            ),
            "{head}"
        );
        assert!(answer("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        let post = answer("POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405"));
        assert!(
            post.contains("\r\nAllow: GET, HEAD\r\n\r\nMethod Not Allowed\n"),
            "{post}"
        );
        assert!(answer("garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    }

    #[test]
    fn a_silent_client_is_dropped_and_a_scrape_is_served() {
        let mut s = Server::bind(&BindAddr::Tcp("127.0.0.1:0".parse().unwrap())).unwrap();
        let port: u16 = s.name().rsplit(':').next().unwrap().parse().unwrap();
        let mut render = || "m 1\n".to_string();
        let _silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.serve(&mut render);
        let mut got = String::new();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.read_to_string(&mut got).unwrap();
        assert!(got.ends_with("m 1\n"), "{got}");
        assert_eq!(s.conns.len(), 1, "the silent one waits");
        for c in &mut s.conns {
            c.deadline = Instant::now();
        }
        s.serve(&mut render);
        assert!(s.conns.is_empty());
    }
}
