//! Shared harness for ferrocorn's integration tests: start and stop a real
//! server process, a small raw HTTP/1.1 client, and a few helpers (SHA-256,
//! a JSON reader, deterministic pseudo-random bytes) so the tests need
//! nothing outside the standard library and `libc`.
//!
//! Every wait in here has a deadline, and `Server`'s `Drop` kills the master
//! and all of its workers, so a failing test leaves no process behind.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The server binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ferrocorn");
/// Read/write timeout of every client socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server gets to start answering.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Environment variables that change ferrocorn's defaults; they are removed
/// from every server and CLI invocation so the tests see the documented ones.
const SCRUBBED_ENV: &[&str] = &[
    "PORT",
    "WEB_CONCURRENCY",
    "FORWARDED_ALLOW_IPS",
    "VIRTUAL_ENV",
    "FERROCORN_CMD_ARGS",
    "SCRIPT_NAME",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "GUNICORN_FD",
    "FERROCORN_UPGRADE_FD",
    "PYTHONHASHSEED",
];

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/apps`, where the test WSGI apps live.
pub fn apps_dir() -> PathBuf {
    repo_dir().join("tests").join("apps")
}

// ---------------------------------------------------------------------------
// Temporary directories

static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop unless the
/// test is failing (then it is kept for inspection and its path printed).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "ferrocorn-test-{}-{}-{}",
            std::process::id(),
            n,
            tag
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create a temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("(temp dir kept: {})", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// /proc

/// The fields of /proc/PID/stat the tests need.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
}

pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID PGRP ..."; COMM may contain spaces and ')'.
    let after = text.get(text.rfind(')')? + 1..)?;
    let mut it = after.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    let pgrp = it.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        state,
        ppid,
        pgrp,
    })
}

/// Every process on the machine (zombies included).
pub fn all_procs() -> Vec<ProcStat> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_stat)
        .collect()
}

/// True if `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|s| s.state != 'Z')
}

/// Send `sig` to `pid`; false if that failed (no such process).
pub fn kill(pid: i32, sig: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Poll `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// The server under test

/// A `Command` for the binary with a clean environment (see `SCRUBBED_ENV`).
pub fn ferrocorn_command() -> Command {
    let mut cmd = Command::new(BIN);
    for k in SCRUBBED_ENV {
        cmd.env_remove(k);
    }
    cmd.env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// A running (or exited) ferrocorn master started by a test.
pub struct Server {
    child: Child,
    /// The master's pid (also its process group: it is started as a leader).
    pub pid: i32,
    /// The TCP port from the "Listening at" line (0 for a unix socket).
    pub port: u16,
    /// The unix socket path when bound to `unix:PATH`.
    pub unix: Option<PathBuf>,
    /// Holds the log; removed when the server is dropped.
    pub dir: TempDir,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
}

impl Server {
    /// Start `ferrocorn ARGS` (with `-b 127.0.0.1:0` unless ARGS bind, and
    /// `--chdir tests/apps`) and wait until it answers HTTP.
    pub fn start(args: &[&str]) -> Server {
        Server::start_env(args, &[])
    }

    /// Like `start`, with extra environment variables for the server.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut s = Server::spawn(args, env);
        s.wait_ready();
        s
    }

    /// Start the server without waiting for it (for servers expected to
    /// fail at start).
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn_with(&[], None, args, env)
    }

    /// Start `PREFIX... ferrocorn ARGS` (e.g. under systemd-socket-activate),
    /// with `--chdir APPS` (default tests/apps), without waiting.
    pub fn spawn_with(
        prefix: &[&str],
        apps: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Server::spawn_opts(prefix, apps, args, env, true)
    }

    /// `spawn_with`, choosing whether `-b 127.0.0.1:0` is added when ARGS
    /// bind nothing (not when the bind comes from a config file).
    pub fn spawn_opts(
        prefix: &[&str],
        apps: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
        default_bind: bool,
    ) -> Server {
        Server::spawn_in(None, prefix, apps, args, env, default_bind)
    }

    /// `spawn_opts`, launched from `cwd` (default: the server's own
    /// temporary directory, which holds its log).
    pub fn spawn_in(
        cwd: Option<&Path>,
        prefix: &[&str],
        apps: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
        default_bind: bool,
    ) -> Server {
        let dir = TempDir::new("server");
        let log_path = dir.join("server.log");
        let log = fs::File::create(&log_path).expect("create the server log");
        let out = log.try_clone().expect("dup the log file");
        let binds = !default_bind
            || args
                .iter()
                .any(|a| *a == "-b" || *a == "--bind" || a.starts_with("--bind="));
        let mut cmd = match prefix.split_first() {
            None => ferrocorn_command(),
            Some((program, rest)) => {
                let mut c = Command::new(program);
                for k in SCRUBBED_ENV {
                    c.env_remove(k);
                }
                c.env("PYTHONDONTWRITEBYTECODE", "1");
                c.args(rest).arg(BIN);
                c
            }
        };
        if !binds {
            cmd.args(["-b", "127.0.0.1:0"]);
        }
        let apps = apps.map(Path::to_path_buf).unwrap_or_else(apps_dir);
        cmd.arg("--chdir")
            .arg(&apps)
            .args(args)
            .current_dir(cwd.unwrap_or(dir.path()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(log))
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn ferrocorn");
        let pid = child.id() as i32;
        Server {
            child,
            pid,
            port: 0,
            unix: None,
            dir,
            log_path,
            exit: None,
        }
    }

    /// Everything the server wrote to stderr (and stdout) so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The address in the first "Listening at: " line, if logged yet.
    fn listening_at(&self) -> Option<String> {
        let log = self.log();
        let rest = log.split("Listening at: ").nth(1)?;
        let line = rest.lines().next()?;
        // "http://127.0.0.1:PORT (PID)" or "unix:/path (PID)"
        let end = line.rfind(" (")?;
        Some(line[..end].to_string())
    }

    /// Wait (bounded) for the "Listening at" line and for an HTTP answer.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            if let Some(a) = self.listening_at() {
                break a;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exit = Some(st);
                panic!(
                    "ferrocorn exited ({st}) before listening; log:\n{}",
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "ferrocorn did not log 'Listening at' in time; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(hostport) = addr.strip_prefix("http://") {
            let port = hostport
                .rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                .unwrap_or_else(|| panic!("cannot parse the port in {addr:?}"));
            self.port = port;
        } else if let Some(path) = addr.strip_prefix("unix:") {
            self.unix = Some(PathBuf::from(path));
        } else {
            panic!("unexpected listening address {addr:?}");
        }
        loop {
            if self.probe() {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exit = Some(st);
                panic!(
                    "ferrocorn exited ({st}) while starting; log:\n{}",
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "ferrocorn did not answer HTTP in time; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One `GET /` with `Connection: close`; true on any HTTP response.
    fn probe(&self) -> bool {
        let stream = match &self.unix {
            Some(p) => UnixStream::connect(p).map(Stream::Unix),
            None => TcpStream::connect(("127.0.0.1", self.port)).map(Stream::Tcp),
        };
        let Ok(mut s) = stream else {
            return false;
        };
        if s.set_timeouts(Some(Duration::from_secs(2))).is_err() {
            return false;
        }
        if s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while got.len() < 5 {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got.starts_with(b"HTTP/")
    }

    /// A new connection to this server (TCP or unix socket).
    pub fn connect(&self) -> Conn {
        match &self.unix {
            Some(p) => Conn::connect_unix(p),
            None => Conn::connect(self.port),
        }
    }

    /// Live (non-zombie) children of the master: its workers.
    pub fn worker_pids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = all_procs()
            .into_iter()
            .filter(|p| p.ppid == self.pid && p.state != 'Z')
            .map(|p| p.pid)
            .collect();
        v.sort_unstable();
        v
    }

    /// Wait until the master has exactly `n` live workers.
    pub fn wait_workers(&self, n: usize, timeout: Duration) -> Vec<i32> {
        let mut last = Vec::new();
        let ok = wait_until(timeout, || {
            last = self.worker_pids();
            last.len() == n
        });
        assert!(
            ok,
            "expected {n} workers, have {last:?}; log:\n{}",
            self.log()
        );
        last
    }

    /// Live processes still in the server's process group (master and
    /// workers, and any worker that outlived the master).
    pub fn group_pids(&self) -> Vec<i32> {
        all_procs()
            .into_iter()
            .filter(|p| p.pgrp == self.pid && p.state != 'Z')
            .map(|p| p.pid)
            .collect()
    }

    /// Send a signal to the master.
    pub fn signal(&self, sig: i32) {
        assert!(kill(self.pid, sig), "kill({}, {sig}) failed", self.pid);
    }

    /// Wait (bounded) for the master to exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.exit {
            return Some(st);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exit = Some(st);
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The master's exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.wait_exit(Duration::ZERO)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let mut pids = self.worker_pids();
        pids.extend(self.group_pids());
        if self.exit.is_none() {
            // The master is not reaped yet, so its pid (and group id) is
            // still ours to signal.
            kill(-self.pid, libc::SIGKILL);
            kill(self.pid, libc::SIGKILL);
        }
        for p in &pids {
            if *p != self.pid {
                kill(*p, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
        wait_until(Duration::from_secs(5), || pids.iter().all(|p| !alive(*p)));
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(80)..].join("\n");
            eprintln!(
                "---- ferrocorn log (pid {}, last {} lines) ----\n{tail}\n----",
                self.pid,
                lines.len().min(80)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Running the binary as a command-line tool

pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Run `ferrocorn ARGS` to completion (killed after 30 s) in `cwd`.
pub fn run_cli(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> CliOutput {
    let mut cmd = ferrocorn_command();
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn ferrocorn");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if Instant::now() >= deadline {
            let pid = child.id() as i32;
            kill(-pid, libc::SIGKILL);
            let _ = child.kill();
            let st = child.wait().expect("wait");
            panic!("ferrocorn {args:?} did not exit within 30 s ({st})");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Anything the command left in its group (it should leave nothing).
    for p in all_procs() {
        if p.pgrp == child.id() as i32 && p.state != 'Z' {
            kill(p.pid, libc::SIGKILL);
        }
    }
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    CliOutput {
        status,
        stdout,
        stderr,
    }
}

// ---------------------------------------------------------------------------
// A raw HTTP/1.1 client

/// A client socket: TCP or unix.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn set_timeouts(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Stream::Unix(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }
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

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// "HTTP/1.1" or "HTTP/1.0".
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// The body was framed with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// The body ended as its framing says (last chunk seen, all of
    /// Content-Length read, or EOF for a close-delimited body).
    pub complete: bool,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// `Connection: close` was sent.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Json {
        Json::parse(&self.text()).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }
}

/// Buffered reading of HTTP messages from any byte source.
pub struct Reader<R: Read> {
    pub src: R,
    pub buf: Vec<u8>,
    pub eof: bool,
}

fn bad_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl<R: Read> Reader<R> {
    pub fn new(src: R) -> Reader<R> {
        Reader {
            src,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Read more bytes; Ok(0) at EOF.
    fn fill(&mut self) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let mut tmp = [0u8; 64 * 1024];
        loop {
            match self.src.read(&mut tmp) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.eof = true;
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One line without its CRLF; Err(UnexpectedEof) if the input ends
    /// before the CRLF.
    fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF in the middle of a line: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    /// Up to `n` bytes (fewer only at EOF).
    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                break;
            }
        }
        let k = n.min(self.buf.len());
        Ok(self.buf.drain(..k).collect())
    }

    /// Everything until EOF.
    fn rest(&mut self) -> io::Result<Vec<u8>> {
        while self.fill()? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// True if nothing is buffered and the source is at EOF.
    pub fn at_eof(&mut self) -> io::Result<bool> {
        if !self.buf.is_empty() {
            return Ok(false);
        }
        Ok(self.fill()? == 0)
    }

    /// Read one response (interim 1xx responses included). `head_request`:
    /// the request was HEAD, so there is no body whatever the headers say.
    pub fn response(&mut self, head_request: bool) -> io::Result<Response> {
        let status_line = self.line()?;
        let status_line = String::from_utf8_lossy(&status_line).into_owned();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        if !version.starts_with("HTTP/1.") {
            return Err(bad_data(format!("bad status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad_data(format!("bad status line {status_line:?}")))?;
        let reason = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            let (n, v) = line
                .split_once(':')
                .ok_or_else(|| bad_data(format!("bad header line {line:?}")))?;
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
            chunked: false,
            complete: true,
        };
        if head_request || status < 200 || status == 204 || status == 304 {
            return Ok(resp);
        }
        let te = resp
            .header("transfer-encoding")
            .map(str::to_ascii_lowercase);
        if te.is_some_and(|t| t.contains("chunked")) {
            resp.chunked = true;
            resp.complete = false;
            loop {
                let size_line = match self.line() {
                    Ok(l) => l,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                };
                let s = String::from_utf8_lossy(&size_line).into_owned();
                let hex = s.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| bad_data(format!("bad chunk size line {s:?}")))?;
                if size == 0 {
                    // Trailers until the empty line.
                    loop {
                        match self.line() {
                            Ok(l) if l.is_empty() => {
                                resp.complete = true;
                                break;
                            }
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                            Err(e) => return Err(e),
                        }
                    }
                    break;
                }
                let data = self.take(size)?;
                let short = data.len() < size;
                resp.body.extend_from_slice(&data);
                if short {
                    break;
                }
                match self.line() {
                    Ok(l) if l.is_empty() => {}
                    Ok(l) => {
                        return Err(bad_data(format!(
                            "chunk data not followed by CRLF: {:?}",
                            String::from_utf8_lossy(&l)
                        )))
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
        } else if let Some(cl) = resp.header("content-length") {
            let n: usize = cl
                .trim()
                .parse()
                .map_err(|_| bad_data(format!("bad Content-Length {cl:?}")))?;
            resp.body = self.take(n)?;
            resp.complete = resp.body.len() == n;
        } else {
            resp.body = self.rest()?;
        }
        Ok(resp)
    }
}

/// Build a request: adds `Host` unless given, and `Content-Length` for a
/// non-empty body unless a `Content-Length`/`Transfer-Encoding` is given.
pub fn build_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("host") {
        out.extend_from_slice(b"Host: localhost\r\n");
    }
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if !body.is_empty() && !has("content-length") && !has("transfer-encoding") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// One client connection.
pub struct Conn {
    pub r: Reader<Stream>,
    /// For each request sent with `send_request`, whether it was HEAD.
    pending_head: VecDeque<bool>,
}

impl Conn {
    fn from_stream(s: Stream) -> Conn {
        s.set_timeouts(Some(IO_TIMEOUT))
            .expect("set socket timeouts");
        Conn {
            r: Reader::new(s),
            pending_head: VecDeque::new(),
        }
    }

    pub fn connect(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        Conn::from_stream(Stream::Tcp(s))
    }

    pub fn connect_unix(path: &Path) -> Conn {
        let s = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
        Conn::from_stream(Stream::Unix(s))
    }

    /// The local TCP port of this connection.
    pub fn local_port(&self) -> u16 {
        match &self.r.src {
            Stream::Tcp(s) => s.local_addr().map(|a| a.port()).unwrap_or(0),
            Stream::Unix(_) => 0,
        }
    }

    /// Write raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.r.src.write_all(bytes)
    }

    /// Write a request built with `build_request`.
    pub fn send_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        let req = build_request(method, path, headers, body);
        self.pending_head.push_back(method == "HEAD");
        self.send(&req)
            .unwrap_or_else(|e| panic!("sending {method} {path}: {e}"));
    }

    /// Read the next final response (1xx interim responses are skipped).
    pub fn try_read_response(&mut self) -> io::Result<Response> {
        let head = self.pending_head.pop_front().unwrap_or(false);
        loop {
            let r = self.r.response(head)?;
            if r.status >= 200 {
                return Ok(r);
            }
        }
    }

    /// Read the next response, whatever its status (1xx included); does
    /// not consume a pending request.
    pub fn read_any_response(&mut self) -> io::Result<Response> {
        let head = self.pending_head.front().copied().unwrap_or(false);
        let r = self.r.response(head)?;
        if r.status >= 200 {
            self.pending_head.pop_front();
        }
        Ok(r)
    }

    pub fn read_response(&mut self) -> Response {
        self.try_read_response()
            .unwrap_or_else(|e| panic!("reading a response: {e}"))
    }

    /// `send_request` then `read_response`.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.send_request(method, path, headers, body);
        self.read_response()
    }

    /// True if the server closed the connection within `wait` (EOF or
    /// reset); false if it is still open (no data, or data arrived).
    pub fn is_closed(&mut self, wait: Duration) -> bool {
        if !self.r.buf.is_empty() {
            return false;
        }
        if self.r.eof {
            return true;
        }
        let _ = self.r.src.set_read_timeout(Some(wait));
        let res = self.r.fill();
        let _ = self.r.src.set_read_timeout(Some(IO_TIMEOUT));
        match res {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        }
    }

    /// Everything until EOF (or the read timeout).
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.r.buf);
        let mut tmp = [0u8; 64 * 1024];
        while !self.r.eof {
            match self.r.src.read(&mut tmp) {
                Ok(0) => self.r.eof = true,
                Ok(n) => out.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        out
    }

    pub fn shutdown_write(&self) {
        let _ = self.r.src.shutdown(Shutdown::Write);
    }
}

/// One request on a fresh connection.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    Conn::connect(port).request(method, path, headers, body)
}

pub fn get(port: u16, path: &str) -> Response {
    request(port, "GET", path, &[], b"")
}

/// Write `bytes` on a fresh connection, then read until EOF or the read
/// timeout. Returns what was read and whether EOF was seen.
pub fn send_raw_eof(port: u16, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut c = Conn::connect(port);
    // The server may answer and stop reading before everything is written.
    let _ = c.send(bytes);
    let out = c.read_to_end();
    let eof = c.r.eof;
    (out, eof)
}

/// Write `bytes` on a fresh connection and read until EOF or timeout.
pub fn send_raw(port: u16, bytes: &[u8]) -> Vec<u8> {
    send_raw_eof(port, bytes).0
}

/// Every complete response in `bytes` (stops at the first unparsable one).
pub fn parse_responses(bytes: &[u8]) -> Vec<Response> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    while !r.at_eof().unwrap_or(true) {
        match r.response(false) {
            Ok(resp) => out.push(resp),
            Err(_) => break,
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Data helpers

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Encode `data` as a chunked body, with chunk sizes cycling through `sizes`.
pub fn chunked(data: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 16);
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = sizes[i % sizes.len()].max(1).min(data.len() - pos);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&data[pos..pos + n]);
        out.extend_from_slice(b"\r\n");
        pos += n;
        i += 1;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

const SHA256_K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// SHA-256 of `data`, as lowercase hex (FIPS 180-4).
pub fn sha256_hex(data: &[u8]) -> String {
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    let mut w = [0u32; 64];
    for block in msg.chunks_exact(64) {
        for (t, word) in block.chunks_exact(4).enumerate() {
            w[t] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for t in 16..64 {
            let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
            let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16]
                .wrapping_add(s0)
                .wrapping_add(w[t - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for t in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(SHA256_K[t])
                .wrapping_add(w[t]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

// ---------------------------------------------------------------------------
// A small JSON reader (for the echo app's answers)

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

static JSON_NULL: Json = Json::Null;

impl std::ops::Index<&str> for Json {
    type Output = Json;
    fn index(&self, key: &str) -> &Json {
        match self {
            Json::Obj(m) => m.get(key).unwrap_or(&JSON_NULL),
            _ => &JSON_NULL,
        }
    }
}

impl Json {
    pub fn parse(s: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            s: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at byte {}", p.i));
        }
        Ok(v)
    }

    pub fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Num(n) if *n >= 0.0 && n.fract() == 0.0 => Some(*n as u64),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    pub fn has(&self, key: &str) -> bool {
        matches!(self, Json::Obj(m) if m.contains_key(key))
    }

    pub fn keys(&self) -> Vec<String> {
        match self {
            Json::Obj(m) => m.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, lit: &str) -> Result<(), String> {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(format!("expected {lit} at byte {}", self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    self.expect(":")?;
                    let v = self.value()?;
                    m.insert(k, v);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return Err(format!("expected , or }} at byte {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Json::Arr(v));
                }
                loop {
                    v.push(self.value()?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(v));
                        }
                        _ => return Err(format!("expected , or ] at byte {}", self.i)),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.expect("true").map(|_| Json::Bool(true)),
            Some(b'f') => self.expect("false").map(|_| Json::Bool(false)),
            Some(b'n') => self.expect("null").map(|_| Json::Null),
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self.peek().is_some_and(|c| {
                    c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')
                }) {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
                t.parse::<f64>()
                    .map(Json::Num)
                    .map_err(|_| format!("bad number {t:?}"))
            }
            _ => Err(format!("unexpected input at byte {}", self.i)),
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or("truncated \\u escape")?;
        let h = std::str::from_utf8(h).map_err(|e| e.to_string())?;
        let v = u32::from_str_radix(h, 16).map_err(|_| format!("bad \\u escape {h:?}"))?;
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect("\"")?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek().ok_or("unterminated string")?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let e = self.peek().ok_or("unterminated escape")?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&hi) {
                                self.expect("\\u")?;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xd800) << 10) + (lo.wrapping_sub(0xdc00) & 0x3ff)
                            } else {
                                hi
                            };
                            char::from_u32(code).ok_or(format!("bad code point {code:#x}"))?
                        }
                        _ => return Err(format!("bad escape \\{}", e as char)),
                    };
                    let mut b = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                }
                _ => out.push(c),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// systemd's side of sd_notify, and constant load

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

/// `bench/loadgen.py` running against a port until `finish`.
pub struct Load {
    child: Child,
    stop_file: PathBuf,
    _dir: TempDir,
}

impl Load {
    /// Start `clients` clients (half keep-alive, half a new connection per
    /// request) on `path`, plus `slow` clients on `slow_path`; returns once
    /// the load runs.
    pub fn start(port: u16, clients: usize, slow: usize, slow_path: &str) -> Load {
        let dir = TempDir::new("load");
        let stop_file = dir.join("stop");
        let started = dir.join("started");
        let child = Command::new("python3")
            .arg(repo_dir().join("bench/loadgen.py"))
            .args(["--url", &format!("http://127.0.0.1:{port}/")])
            .args(["--clients", &clients.to_string()])
            .args(["--slow-clients", &slow.to_string()])
            .args(["--slow-path", slow_path])
            .args(["--timeout", "20"])
            .arg("--until-file")
            .arg(&stop_file)
            .arg("--started-file")
            .arg(&started)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start bench/loadgen.py");
        assert!(
            wait_until(Duration::from_secs(10), || started.exists()),
            "loadgen did not start"
        );
        Load {
            child,
            stop_file,
            _dir: dir,
        }
    }

    /// Stop the load, let requests in flight finish, and return the summary.
    pub fn finish(mut self) -> Json {
        fs::write(&self.stop_file, b"").expect("write the stop file");
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("loadgen did not stop");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        Json::parse(out.trim()).unwrap_or_else(|e| panic!("loadgen output {out:?}: {e}"))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
