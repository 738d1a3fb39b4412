//! The access log, with gunicorn's format atoms. Each line is written at
//! the end of its request in one write(2), so a worker that dies (SIGKILL,
//! WORKER TIMEOUT) has logged every request it answered, and lines of
//! different workers never interleave mid-line. With `--log-syslog` the
//! line also goes to syslog (unless `--disable-redirect-access-to-syslog`),
//! at info level. The format itself is [`format`]'s.

use std::fs::{File, OpenOptions};
use std::io;

use thiserror::Error;

mod format;

pub use super::pyfmt::Value;
pub use format::{EnvKey, Format, Record, DEFAULT_FORMAT};

enum Sink {
    Stdout,
    File(File),
}

#[derive(Debug, Error)]
pub enum AccessLogError {
    #[error("cannot open the access log {path}: {source}")]
    Open { path: String, source: io::Error },
}

/// Open the access log once (append, creating it) and close it again: the
/// master's check before forking, so that a path the workers could not
/// open stops ferrocorn at once, naming the path.
pub fn check(path: &str) -> Result<(), AccessLogError> {
    AccessLog::open_sink(path)
        .map(drop)
        .map_err(|source| AccessLogError::Open {
            path: path.to_string(),
            source,
        })
}

/// A worker's access log: a file (or stdout), syslog, or both.
pub struct AccessLog {
    path: Option<String>,
    sink: Option<Sink>,
    /// Also send each line to syslog (`--log-syslog` without
    /// `--disable-redirect-access-to-syslog`, as in gunicorn).
    syslog: bool,
    format: Format,
    /// The line being written (kept to reuse its allocation).
    line: String,
}

impl AccessLog {
    /// `path` is the access log file (`-`: stdout), if any.
    pub fn open(path: Option<&str>, format: Format, syslog: bool) -> io::Result<AccessLog> {
        let sink = match path {
            Some(path) => Some(Self::open_sink(path).map_err(|source| {
                let kind = source.kind();
                io::Error::new(
                    kind,
                    AccessLogError::Open {
                        path: path.to_string(),
                        source,
                    },
                )
            })?),
            None => None,
        };
        Ok(AccessLog {
            path: path.map(str::to_string),
            sink,
            syslog,
            format,
            line: String::with_capacity(256),
        })
    }

    fn open_sink(path: &str) -> io::Result<Sink> {
        Ok(if path == "-" {
            Sink::Stdout
        } else {
            Sink::File(OpenOptions::new().create(true).append(true).open(path)?)
        })
    }

    /// The format, for the environ keys a record must carry.
    pub fn format(&self) -> &Format {
        &self.format
    }

    /// The line for `r`, without its newline, written nowhere (for a
    /// caller that sends it elsewhere).
    pub fn render(&mut self, r: &Record<'_>) -> &str {
        self.line.clear();
        self.format.render_into(r, &mut self.line);
        self.line.trim_end_matches('\n')
    }

    /// Write one line now.
    pub fn log(&mut self, r: &Record<'_>) {
        self.line.clear();
        self.format.render_into(r, &mut self.line);
        let _ = match &self.sink {
            // Straight to descriptor 1, past Rust's stdout buffer: the line
            // must be out before anything else can happen to the worker.
            Some(Sink::Stdout) => write_fd(std::os::fd::AsFd::as_fd(&io::stdout()), &self.line),
            Some(Sink::File(f)) => write_fd(std::os::fd::AsFd::as_fd(f), &self.line),
            None => Ok(()),
        };
        if self.syslog {
            super::syslog_access(self.line.trim_end_matches('\n'));
        }
    }

    /// USR1: continue in a fresh file at the same path.
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Some(path) = &self.path {
            self.sink = Some(Self::open_sink(path)?);
        }
        Ok(())
    }
}

/// Write `text` with as few write(2) calls as the kernel allows (one, for
/// a line to a file or a pipe).
fn write_fd(fd: std::os::fd::BorrowedFd<'_>, text: &str) -> io::Result<()> {
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        match nix::unistd::write(fd, rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
