//! The server under test: `Server` spawns the real binary (clean
//! environment, own process group, log in a temp dir), waits for it to
//! answer, finds its workers, signals it, and kills everything it started
//! on drop; `run_cli` runs the binary as a one-shot command-line tool.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::client::{Conn, Stream};
use super::procs::{alive, all_procs, kill, wait_until};
use super::{apps_dir, TempDir};

/// The server under test: this build's binary, or the command named by
/// FERROCORN_BIN (the wheel's `ferrocorn` console script in a venv, as
/// .ci/run runs a subset of the suite against it).
pub static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("FERROCORN_BIN")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_ferrocorn").to_string())
});
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

/// A `Command` for the binary with a clean environment (see `SCRUBBED_ENV`).
pub fn ferrocorn_command() -> Command {
    let mut cmd = Command::new(&*BIN);
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
    /// It serves HTTPS ("Listening at: https://...").
    pub tls: bool,
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

    /// Like `start`, with `--chdir DIR` (the app's directory) instead of
    /// tests/apps.
    pub fn start_in_dir(dir: &Path, args: &[&str]) -> Server {
        let mut s = Server::spawn_with(&[], Some(dir), args, &[]);
        s.wait_ready();
        s
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
                c.args(rest).arg(&*BIN);
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
        // The control socket's default place: this server's own directory.
        cmd.env("XDG_RUNTIME_DIR", dir.path());
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
            tls: false,
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

    /// Wait (bounded) until the master logs that all `n` workers it
    /// started have booted and marked themselves ready.
    pub fn wait_all_booted(&self, n: usize) {
        let line = format!("Ready: {n} workers serving");
        assert!(
            wait_until(Duration::from_secs(10), || self.log().contains(&line)),
            "no '{line}' in time; log:\n{}",
            self.log()
        );
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
        if let Some(hostport) = addr.strip_prefix("https://") {
            self.tls = true;
            self.port = hostport
                .rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                .unwrap_or_else(|| panic!("cannot parse the port in {addr:?}"));
        } else if let Some(hostport) = addr.strip_prefix("http://") {
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
        if self.tls {
            // The master says so once every worker is ready (a probe would
            // need the client certificate an mTLS server asks for).
            return self.log().contains("] Ready: ");
        }
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
    // A server started this way (-D) keeps its control socket in `cwd`.
    cmd.env("XDG_RUNTIME_DIR", cwd);
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
