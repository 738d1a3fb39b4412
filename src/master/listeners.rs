//! Listening sockets: bound once by the master before any fork (or
//! inherited), shared by every worker.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};
use thiserror::Error;

use crate::config::{BindAddr, Settings};
use crate::sys;

#[derive(Debug, Error)]
pub enum ListenError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("{addr}: another process is already listening on this socket")]
    InUse { addr: String },
    #[error("fd://{fd}: {reason}")]
    BadFd { fd: i32, reason: String },
    #[error("{var}={value}: {reason}")]
    BadEnv {
        var: &'static str,
        value: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Unix,
}

/// A bound, listening socket.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    pub kind: Kind,
    /// The address actually bound (the real port when 0 was asked for).
    pub local: Option<SocketAddr>,
    /// Unix socket file to remove when the master that created it exits.
    unix_path: Option<PathBuf>,
    /// The process that may unlink `unix_path` (never a forked worker).
    owner: u32,
    /// Name from `LISTEN_FDNAMES` (systemd's `FileDescriptorName=`).
    pub fdname: Option<String>,
}

impl Listener {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// Another process now serves this socket (a successor master): never
    /// unlink its file.
    pub fn disown(&mut self) {
        self.owner = 0;
    }

    /// The URL-ish name gunicorn logs: `http://127.0.0.1:8000`, `unix:/path`.
    pub fn describe(&self) -> String {
        match (self.kind, self.local, &self.unix_path) {
            (Kind::Tcp, Some(a), _) => format!("http://{a}"),
            (Kind::Unix, _, Some(p)) => format!("unix:{}", p.display()),
            _ => format!("fd://{}", self.fd.as_raw_fd()),
        }
    }

    /// As `describe`, with the scheme clients use: https under TLS (the
    /// "Listening at" line, as gunicorn writes it).
    pub fn url(&self, tls: bool) -> String {
        let d = self.describe();
        match d.strip_prefix("http://") {
            Some(rest) if tls => format!("https://{rest}"),
            _ => d,
        }
    }

    /// Server name and port for the WSGI environ when no Host header is sent.
    pub fn server_name_port(&self) -> (String, String) {
        match self.local {
            Some(a) => (a.ip().to_string(), a.port().to_string()),
            None => (
                self.unix_path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                String::new(),
            ),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.unix_path {
            if std::process::id() == self.owner {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn bind_tcp(addr: SocketAddr, s: &Settings) -> io::Result<Listener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    if s.reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.set_tcp_nodelay(true)?;
    sock.bind(&addr.into())?;
    sock.listen(s.backlog)?;
    let local = sock.local_addr()?.as_socket();
    sock.set_nonblocking(true)?;
    Ok(Listener {
        fd: sock.into(),
        kind: Kind::Tcp,
        local,
        unix_path: None,
        owner: std::process::id(),
        fdname: None,
    })
}

fn bind_unix(path: &Path, s: &Settings) -> Result<Listener, ListenError> {
    let name = format!("unix:{}", path.display());
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ListenError::Bind {
                addr: name,
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a non-socket file is in the way",
                ),
            });
        }
        // A socket file: stale unless something still accepts on it.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ListenError::InUse { addr: name });
        }
        let _ = std::fs::remove_file(path);
    }
    let mk = || -> io::Result<Listener> {
        let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        sock.bind(&SockAddr::unix(path)?)?;
        sock.listen(s.backlog)?;
        sock.set_nonblocking(true)?;
        Ok(Listener {
            fd: sock.into(),
            kind: Kind::Unix,
            local: None,
            unix_path: Some(path.to_path_buf()),
            owner: std::process::id(),
            fdname: None,
        })
    };
    mk().map_err(|source| ListenError::Bind { addr: name, source })
}

/// Adopt an inherited listening socket as it is: no bind, no listen.
pub fn adopt(fd: i32) -> Result<Listener, ListenError> {
    let bad = |reason: String| ListenError::BadFd { fd, reason };
    let owned = sys::adopt_fd(fd).map_err(|e| bad(e.to_string()))?;
    let sock = Socket::from(owned);
    let ty = sock.r#type().map_err(|_| bad("not a socket".into()))?;
    if ty != Type::STREAM {
        return Err(bad("not a stream socket".into()));
    }
    let listening = nix::sys::socket::getsockopt(&sock, nix::sys::socket::sockopt::AcceptConn)
        .map_err(|e| bad(e.to_string()))?;
    if !listening {
        return Err(bad("the socket is not listening".into()));
    }
    let local_addr = sock.local_addr().map_err(|e| bad(e.to_string()))?;
    sock.set_nonblocking(true).map_err(|e| bad(e.to_string()))?;
    let _ = sys::set_cloexec(sock.as_fd(), true);
    let (kind, local, unix_path) = match local_addr.as_socket() {
        Some(a) => {
            let _ = sock.set_tcp_nodelay(true);
            (Kind::Tcp, Some(a), None)
        }
        None => (
            Kind::Unix,
            None,
            local_addr.as_pathname().map(Path::to_path_buf),
        ),
    };
    Ok(Listener {
        fd: sock.into(),
        kind,
        local,
        unix_path,
        // An inherited unix socket belongs to whoever created it (systemd):
        // never unlink it.
        owner: 0,
        fdname: None,
    })
}

/// Where inherited listeners came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `LISTEN_FDS`/`LISTEN_PID`: systemd socket activation, or the master
    /// this one succeeds (USR2), which hands sockets over the same way.
    ListenFds,
    /// `GUNICORN_FD`: gunicorn's comma-separated list.
    GunicornFd,
}

/// The environment variables through which listeners are inherited; they
/// are removed from the environment once read, so the app never sees them.
pub const INHERIT_VARS: &[&str] = &["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "GUNICORN_FD"];

/// Listening sockets handed to this process, used as they are (no bind, no
/// second listen). `LISTEN_FDS` counts only when `LISTEN_PID` names `pid`
/// (sd_listen_fds(3)); otherwise they were meant for another process.
pub fn inherited(
    env: &dyn Fn(&str) -> Option<String>,
    pid: u32,
) -> Result<Option<(Origin, Vec<Listener>)>, ListenError> {
    if let Some(count) = env("LISTEN_FDS") {
        let for_us = env("LISTEN_PID")
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_some_and(|p| p == pid);
        if for_us {
            let n: i32 = count
                .trim()
                .parse()
                .ok()
                .filter(|&n| (1..=1024).contains(&n))
                .ok_or_else(|| ListenError::BadEnv {
                    var: "LISTEN_FDS",
                    value: count.clone(),
                    reason: "expected a count of sockets from 1 to 1024".into(),
                })?;
            let names: Vec<String> = env("LISTEN_FDNAMES")
                .map(|v| v.split(':').map(str::to_string).collect())
                .unwrap_or_default();
            let mut out = Vec::new();
            for i in 0..n {
                let mut l = adopt(3 + i).map_err(|e| ListenError::BadEnv {
                    var: "LISTEN_FDS",
                    value: count.clone(),
                    reason: e.to_string(),
                })?;
                l.fdname = names.get(i as usize).filter(|s| !s.is_empty()).cloned();
                out.push(l);
            }
            return Ok(Some((Origin::ListenFds, out)));
        }
    }
    if let Some(list) = env("GUNICORN_FD") {
        let mut out = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let fd: i32 =
                part.parse()
                    .ok()
                    .filter(|&n| n >= 0)
                    .ok_or_else(|| ListenError::BadEnv {
                        var: "GUNICORN_FD",
                        value: list.clone(),
                        reason: format!("'{part}' is not a file descriptor number"),
                    })?;
            if out.iter().any(|l: &Listener| l.fd.as_raw_fd() == fd) {
                return Err(ListenError::BadEnv {
                    var: "GUNICORN_FD",
                    value: list.clone(),
                    reason: format!("fd {fd} is listed twice"),
                });
            }
            out.push(adopt(fd).map_err(|e| ListenError::BadEnv {
                var: "GUNICORN_FD",
                value: list.clone(),
                reason: e.to_string(),
            })?);
        }
        if !out.is_empty() {
            return Ok(Some((Origin::GunicornFd, out)));
        }
    }
    Ok(None)
}

/// Bind (or adopt) every configured address.
pub fn bind_all(s: &Settings) -> Result<Vec<Listener>, ListenError> {
    s.binds
        .iter()
        .map(|b| match b {
            BindAddr::Tcp(a) => bind_tcp(*a, s).map_err(|source| ListenError::Bind {
                addr: a.to_string(),
                source,
            }),
            BindAddr::Unix(p) => bind_unix(p, s),
            BindAddr::Fd(n) => adopt(*n),
        })
        .collect()
}
