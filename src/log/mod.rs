//! The error log, in gunicorn's format:
//! `[2026-01-02 03:04:05 +0000] [PID] [LEVEL] message`.
//!
//! One process-wide logger. It is set up in the master before any fork, so
//! workers inherit the open file; `reopen` re-opens the path (USR1).
//!
//! The access log is [`access`] (one line per request), and the date and
//! time formats both logs and the HTTP `Date` header use are [`timefmt`].

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

pub mod access;
pub mod pyfmt;
pub mod timefmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
    Critical = 50,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warning" | "warn" => Level::Warning,
            "error" => Level::Error,
            "critical" => Level::Critical,
            _ => return None,
        })
    }
    fn label(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }
}

enum Sink {
    Stderr,
    File { path: String, file: File },
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static SINK: Mutex<Option<Sink>> = Mutex::new(None);
static SYSLOG: Mutex<Option<Syslog>> = Mutex::new(None);

/// Where `--log-syslog` sends the error log.
#[derive(Clone)]
struct SyslogConf {
    addr: String,
    facility: syslog::Facility,
    process: String,
}

struct Syslog {
    conf: SyslogConf,
    logger: syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>,
}

fn syslog_connect(conf: &SyslogConf) -> Result<Syslog, String> {
    let formatter = syslog::Formatter3164 {
        facility: conf.facility,
        hostname: None,
        process: conf.process.clone(),
        pid: std::process::id(),
    };
    let logger = if let Some(path) = conf.addr.strip_prefix("unix://") {
        syslog::unix_custom(formatter, path)
    } else if let Some(hp) = conf.addr.strip_prefix("udp://") {
        let local = if hp.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        syslog::udp(formatter, local, hp)
    } else if let Some(hp) = conf.addr.strip_prefix("tcp://") {
        syslog::tcp(formatter, hp)
    } else {
        return Err(format!(
            "--log-syslog-to {}: expected unix://PATH, udp://HOST:PORT or tcp://HOST:PORT",
            conf.addr
        ));
    }
    .map_err(|e| format!("--log-syslog-to {}: {e}", conf.addr))?;
    Ok(Syslog {
        conf: conf.clone(),
        logger,
    })
}

/// Also send the error log to syslog.
pub fn init_syslog(addr: &str, prefix: Option<&str>, facility: &str) -> Result<(), String> {
    let facility: syslog::Facility = facility
        .parse()
        .map_err(|_| format!("--log-syslog-facility {facility}: unknown facility"))?;
    let process = match prefix {
        Some(p) => format!("ferrocorn.{p}"),
        None => "ferrocorn".to_string(),
    };
    let conf = SyslogConf {
        addr: addr.to_string(),
        facility,
        process,
    };
    let sl = syslog_connect(&conf)?;
    *SYSLOG.lock().unwrap_or_else(|p| p.into_inner()) = Some(sl);
    Ok(())
}

/// After fork, in a worker: reconnect syslog so lines carry the worker's
/// pid and a connection of its own.
pub fn after_fork() {
    let mut guard = SYSLOG.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(conf) = guard.as_ref().map(|s| s.conf.clone()) {
        *guard = syslog_connect(&conf).ok();
    }
}

/// A log file path made absolute against the current directory (gunicorn
/// resolves them once too, so a later chdir by the app changes nothing);
/// `-` stays as it is.
pub fn resolve_path(path: &str) -> String {
    if path == "-" {
        return path.to_string();
    }
    std::path::absolute(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.to_string())
}

/// Set the level and the destination (`-` is stderr).
pub fn init(path: &str, level: Level) -> std::io::Result<()> {
    LEVEL.store(level as u8, Ordering::Relaxed);
    let sink = open(path)?;
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = Some(sink);
    Ok(())
}

fn open(path: &str) -> std::io::Result<Sink> {
    if path == "-" {
        return Ok(Sink::Stderr);
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(Sink::File {
        path: path.to_string(),
        file,
    })
}

/// Set by `--capture-output`: stdout and stderr follow the error log
/// across reopens.
static CAPTURED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Re-open the log file at its path (after logrotate renamed it).
///
/// The fresh file takes over the descriptor number the log had (dup3 onto
/// it), so whatever holds that number keeps writing to the current log:
/// faulthandler, armed on it when a worker's Python started (the stacks of
/// a timed-out worker), workers forked later, and the captured stdout and
/// stderr (pointed at it again, as gunicorn does).
pub fn reopen() -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let guard = SINK.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(Sink::File { path, file }) = guard.as_ref() {
        let fresh = OpenOptions::new().create(true).append(true).open(path)?;
        // SAFETY: both descriptors are open files this logger owns; dup3
        // atomically makes `file`'s number refer to the fresh file (closing
        // the rotated one) and keeps it close-on-exec. `fresh` is closed
        // when dropped; `file` stays the owner of its number.
        if unsafe { libc::dup3(fresh.as_raw_fd(), file.as_raw_fd(), libc::O_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if CAPTURED.load(Ordering::Relaxed) {
            redirect_stdio(file);
        }
    }
    Ok(())
}

/// The descriptor log lines currently go to (for faulthandler's dumps).
pub fn raw_fd() -> i32 {
    use std::os::fd::AsRawFd;
    match SINK.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        Some(Sink::File { file, .. }) => file.as_raw_fd(),
        _ => 2,
    }
}

/// `--capture-output`: point this process's stdout and stderr at the error
/// log file (nothing to do when the error log is stderr already).
pub fn capture_stdio() {
    if let Some(Sink::File { file, .. }) = SINK.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        CAPTURED.store(true, Ordering::Relaxed);
        redirect_stdio(file);
    }
}

fn redirect_stdio(file: &File) {
    use std::os::fd::AsRawFd;
    for target in [1, 2] {
        // SAFETY: replacing the standard descriptors with a dup of an
        // open file we own; dup2 is atomic and leaves `file` intact.
        unsafe {
            libc::dup2(file.as_raw_fd(), target);
        }
    }
}

pub fn enabled(level: Level) -> bool {
    level as u8 >= LEVEL.load(Ordering::Relaxed)
}

/// Write raw text (wsgi.errors, tracebacks) without the line prefix.
pub fn write_raw(text: &[u8]) {
    let mut guard = SINK.lock().unwrap_or_else(|p| p.into_inner());
    match guard.as_mut() {
        Some(Sink::File { file, .. }) => {
            let _ = file.write_all(text);
        }
        _ => {
            let _ = std::io::stderr().write_all(text);
        }
    }
}

/// Send an access-log line to syslog (info level), tagged with the error
/// log's program name plus `.access` (`ferrocorn.access`,
/// `ferrocorn.PREFIX.access`), as gunicorn tags its `gunicorn.PREFIX.access`.
pub fn syslog_access(line: &str) {
    let mut guard = SYSLOG.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(sl) = guard.as_mut() {
        let tag = format!("{}.access", sl.conf.process);
        let error_tag = std::mem::replace(&mut sl.logger.formatter.process, tag);
        let _ = sl.logger.info(line);
        sl.logger.formatter.process = error_tag;
    }
}

/// Where a worker's error-log lines go once Python's logging is
/// configured (`--log-config*`): a function that hands the line to the
/// `gunicorn.error` logger, returning false when it could not.
static PYTHON_SINK: std::sync::OnceLock<fn(Level, &str) -> bool> = std::sync::OnceLock::new();

/// Send this process's error-log lines through `sink` from now on.
pub fn set_python_sink(sink: fn(Level, &str) -> bool) {
    let _ = PYTHON_SINK.set(sink);
}

pub fn log(level: Level, msg: std::fmt::Arguments<'_>) {
    log_as(level, false, msg)
}

/// An error-level message with a traceback, which gunicorn logs with
/// `log.exception` (its statsd counter is `gunicorn.log.exception`).
pub fn log_exception(msg: std::fmt::Arguments<'_>) {
    log_as(Level::Error, true, msg)
}

fn log_as(level: Level, exception: bool, msg: std::fmt::Arguments<'_>) {
    // gunicorn's statsd logger counts every warning and worse, shown or not.
    if level >= Level::Warning {
        crate::metrics::log_event(level, exception);
    }
    if !enabled(level) {
        return;
    }
    if let Some(sink) = PYTHON_SINK.get() {
        // --log-level first, then the logging config's own levels.
        if sink(level, &msg.to_string()) {
            return;
        }
    }
    let line = format!(
        "[{}] [{}] [{}] {}\n",
        timefmt::log_timestamp(timefmt::unix_now()),
        std::process::id(),
        level.label(),
        msg
    );
    write_raw(line.as_bytes());
    let mut guard = SYSLOG.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(sl) = guard.as_mut() {
        let text = msg.to_string();
        let _ = match level {
            Level::Debug => sl.logger.debug(text),
            Level::Info => sl.logger.info(text),
            Level::Warning => sl.logger.warning(text),
            Level::Error => sl.logger.err(text),
            Level::Critical => sl.logger.crit(text),
        };
    }
}

#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Debug, format_args!($($t)*)) } }
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Info, format_args!($($t)*)) } }
#[macro_export]
macro_rules! warning { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Warning, format_args!($($t)*)) } }
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Error, format_args!($($t)*)) } }
/// An error with a traceback (gunicorn's `log.exception`).
#[macro_export]
macro_rules! exception { ($($t:tt)*) => { $crate::log::log_exception(format_args!($($t)*)) } }
#[macro_export]
macro_rules! critical { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Critical, format_args!($($t)*)) } }
