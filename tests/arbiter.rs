//! The master ("arbiter"): logging, process titles, signals (HUP, TTIN,
//! TTOU, TERM, INT, USR1), worker timeouts, boot failures, worker recycling
//! (max-requests, max-worker-memory), preload, pidfile, daemon mode, access
//! log, captured output, umask and user/group switching.
//!
//! Most tests use `tests/apps/arb_app.py`, whose routes report pids, sleep,
//! hang, grow or print. Every wait has a deadline and every server (daemons
//! included) is killed with its workers when a test ends, failing or not.

mod common;

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const APP: &str = "arb_app:app";

// ---------------------------------------------------------------------------
// Helpers

/// One `GET` on a fresh connection with `Connection: close`. Anything but a
/// complete 200 response is an error (with a description).
fn try_get(port: u16, path: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("GET {path}: connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|_| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("GET {path}: socket timeouts: {e}"))?;
    let mut all = vec![("Connection", "close")];
    all.extend_from_slice(headers);
    let req = build_request("GET", path, &all, b"");
    (&s).write_all(&req)
        .map_err(|e| format!("GET {path}: write: {e}"))?;
    let mut r = Reader::new(Stream::Tcp(s));
    let resp = r
        .response(false)
        .map_err(|e| format!("GET {path}: reading the response: {e}"))?;
    if resp.status != 200 || !resp.complete {
        return Err(format!(
            "GET {path}: status {} (complete: {}), body {:?}",
            resp.status,
            resp.complete,
            resp.text()
        ));
    }
    Ok(resp)
}

/// `try_get` that must succeed.
fn get_ok(port: u16, path: &str) -> Response {
    try_get(port, path, &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// The body of a successful `GET path`.
fn get_text(port: u16, path: &str) -> String {
    get_ok(port, path).text()
}

/// The pid in a `/pid` answer.
fn get_pid(port: u16) -> i32 {
    let t = get_text(port, "/pid");
    t.trim()
        .parse()
        .unwrap_or_else(|_| panic!("/pid answered {t:?}"))
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

/// Wait until the server's stderr log contains `needle`; panics (showing
/// the log) at the deadline.
fn wait_log(s: &Server, needle: &str, timeout: Duration) -> String {
    let mut log = String::new();
    let ok = wait_until(timeout, || {
        log = s.log();
        log.contains(needle)
    });
    assert!(ok, "the log never showed {needle:?}; log:\n{log}");
    log
}

/// Wait until the file at `path` contains `needle`; panics at the deadline.
fn wait_file(path: &Path, needle: &str, timeout: Duration) -> String {
    let mut text = String::new();
    let ok = wait_until(timeout, || {
        text = read_lossy(path);
        text.contains(needle)
    });
    assert!(
        ok,
        "{} never showed {needle:?}; it holds:\n{text}",
        path.display()
    );
    text
}

/// /proc/PID/cmdline with NULs as spaces, trimmed.
fn cmdline(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .replace('\0', " ")
        .trim()
        .to_string()
}

/// The four ids of the "Uid:" (or "Gid:") line of /proc/PID/status.
fn status_ids(pid: i32, key: &str) -> Vec<u32> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Parse one error-log line `[YYYY-mm-dd HH:MM:SS +0000] [PID] [LEVEL] msg`
/// into (pid, level, message); None if it is not in that format.
fn parse_log_line(line: &str) -> Option<(i32, &str, &str)> {
    let rest = line.strip_prefix('[')?;
    let stamp = rest.get(..25)?;
    let b = stamp.as_bytes();
    let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    if !digits.iter().all(|&i| b[i].is_ascii_digit())
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
        || &stamp[19..] != " +0000"
    {
        return None;
    }
    let rest = rest.get(25..)?.strip_prefix("] [")?;
    let (pid, rest) = rest.split_once("] [")?;
    if pid.is_empty() || !pid.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (level, msg) = rest.split_once("] ")?;
    if !["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"].contains(&level) {
        return None;
    }
    Some((pid.parse().ok()?, level, msg))
}

/// The pids in "Booting worker with pid: N" lines, in order.
fn booted_pids(log: &str) -> Vec<i32> {
    log.lines()
        .filter_map(|l| l.split("Booting worker with pid: ").nth(1))
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// A server whose error log goes to a file (`--error-logfile`), so the
/// harness cannot read its "Listening at" line from stderr: this finds the
/// port in the file instead. Prints the file's tail if the test fails.
struct FileLogServer {
    s: Server,
    errlog: PathBuf,
    /// Holds the error log (and whatever else the test put there); dropped
    /// after the server.
    _dir: TempDir,
}

impl std::ops::Deref for FileLogServer {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.s
    }
}

impl std::ops::DerefMut for FileLogServer {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.s
    }
}

impl Drop for FileLogServer {
    fn drop(&mut self) {
        if thread::panicking() {
            let log = read_lossy(&self.errlog);
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- error log {} (last {} lines) ----\n{}\n----",
                self.errlog.display(),
                lines.len().min(80),
                lines[lines.len().saturating_sub(80)..].join("\n")
            );
        }
    }
}

/// The port of the first "Listening at: http://127.0.0.1:PORT" in `log`.
fn listening_port(log: &str) -> Option<u16> {
    let rest = log.split("Listening at: http://127.0.0.1:").nth(1)?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Start `ferrocorn --error-logfile DIR/error.log ARGS` (on 127.0.0.1:0)
/// and wait until it answers HTTP.
fn start_file_logged(dir: TempDir, args: &[&str]) -> FileLogServer {
    let errlog = dir.join("error.log");
    let errlog_s = errlog.to_str().expect("utf-8 temp path").to_string();
    let mut all = vec!["--error-logfile", errlog_s.as_str()];
    all.extend_from_slice(args);
    let s = Server::spawn(&all, &[]);
    let mut srv = FileLogServer {
        s,
        errlog,
        _dir: dir,
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(p) = listening_port(&read_lossy(&srv.errlog)) {
            srv.s.port = p;
            break;
        }
        if let Some(st) = srv.s.exited() {
            panic!(
                "ferrocorn exited ({st}) before listening; stderr:\n{}",
                srv.s.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no 'Listening at' line in the error log in time"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let mut last = String::new();
    let ok = wait_until(START_TIMEOUT, || match try_get(srv.s.port, "/", &[]) {
        Ok(_) => true,
        Err(e) => {
            last = e;
            false
        }
    });
    assert!(ok, "the server did not answer in time: {last}");
    srv
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// What a background client saw: (when the request started, its result).
type Outcomes = Arc<Mutex<Vec<(Instant, Result<i32, String>)>>>;

/// A client thread sending `GET /pid` (new connection each, Connection:
/// close) every `gap` until `stop` is set or `cap` passes.
fn client_loop(
    port: u16,
    gap: Duration,
    cap: Duration,
) -> (Arc<AtomicBool>, Outcomes, thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let out: Outcomes = Arc::new(Mutex::new(Vec::new()));
    let (stop2, out2) = (stop.clone(), out.clone());
    let h = thread::spawn(move || {
        let end = Instant::now() + cap;
        while !stop2.load(Ordering::SeqCst) && Instant::now() < end {
            let t = Instant::now();
            let r = try_get(port, "/pid", &[]).and_then(|resp| {
                resp.text()
                    .trim()
                    .parse::<i32>()
                    .map_err(|_| format!("/pid answered {:?}", resp.text()))
            });
            out2.lock().unwrap().push((t, r));
            thread::sleep(gap);
        }
    });
    (stop, out, h)
}

// ---------------------------------------------------------------------------
// Logging and process layout

#[test]
fn log_format_on_stderr_and_lifecycle_lines() {
    let mut s = Server::start(&["-w", "2", APP]);
    let workers = s.wait_workers(2, Duration::from_secs(20));
    let log = wait_log(&s, "Booting worker with pid: ", Duration::from_secs(10));
    // Every line is in gunicorn's format.
    for line in log.lines() {
        assert!(
            parse_log_line(line).is_some(),
            "log line not in '[YYYY-mm-dd HH:MM:SS +0000] [PID] [LEVEL] msg' format: {line:?}"
        );
    }
    let listening = log
        .lines()
        .find(|l| l.contains("Listening at: "))
        .expect("a Listening at line");
    assert_eq!(parse_log_line(listening).unwrap().0, s.pid);
    assert_eq!(parse_log_line(listening).unwrap().1, "INFO");
    // Each worker logs its own boot, with its own pid in the pid field.
    wait_until(Duration::from_secs(10), || {
        let b = booted_pids(&s.log());
        workers.iter().all(|w| b.contains(w))
    });
    let log = s.log();
    for w in &workers {
        let line = log
            .lines()
            .find(|l| l.ends_with(&format!("Booting worker with pid: {w}")))
            .unwrap_or_else(|| panic!("no 'Booting worker with pid: {w}' line; log:\n{log}"));
        let (pid, level, _) = parse_log_line(line).unwrap();
        assert_eq!((pid, level), (*w, "INFO"), "line {line:?}");
    }

    s.signal(libc::SIGTERM);
    let st = s.wait_exit(Duration::from_secs(30));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "exit status {st:?}");
    let log = s.log();
    assert!(log.contains("Handling signal: term"), "log:\n{log}");
    for w in &workers {
        assert!(
            log.contains(&format!("Worker exiting (pid: {w})")),
            "no 'Worker exiting (pid: {w})'; log:\n{log}"
        );
    }
    let last = log.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    assert!(
        last.ends_with("Shutting down: Master"),
        "last log line is {last:?}; log:\n{log}"
    );
    assert_eq!(parse_log_line(last).map(|x| x.0), Some(s.pid));
}

#[test]
fn error_logfile_receives_the_log() {
    let dir = TempDir::new("errlog");
    let srv = start_file_logged(dir, &["-w", "1", APP]);
    let wpid = get_pid(srv.port);
    let text = wait_file(
        &srv.errlog,
        &format!("Booting worker with pid: {wpid}"),
        Duration::from_secs(10),
    );
    for line in text.lines() {
        assert!(parse_log_line(line).is_some(), "bad line {line:?}");
    }
    let stderr = srv.log();
    assert!(
        !stderr.contains("Listening at") && !stderr.contains("Booting worker"),
        "with --error-logfile the log went to stderr too:\n{stderr}"
    );
}

#[test]
fn process_titles_and_direct_children() {
    let s = Server::start(&["-w", "2", "-n", "arbtitle", APP]);
    let workers = s.wait_workers(2, Duration::from_secs(20));
    assert_eq!(cmdline(s.pid), "ferrocorn: master [arbtitle]");
    for w in &workers {
        assert_eq!(proc_stat(*w).map(|p| p.ppid), Some(s.pid));
        assert_eq!(cmdline(*w), "ferrocorn: worker [arbtitle]", "worker {w}");
    }
    // Requests are served by those children.
    for _ in 0..4 {
        let p = get_pid(s.port);
        assert!(workers.contains(&p), "served by {p}, workers {workers:?}");
    }

    // Without -n the name is the app spec.
    let d = Server::start(&["-w", "1", APP]);
    let w = d.wait_workers(1, Duration::from_secs(20));
    assert_eq!(cmdline(d.pid), format!("ferrocorn: master [{APP}]"));
    assert_eq!(cmdline(w[0]), format!("ferrocorn: worker [{APP}]"));
}

// ---------------------------------------------------------------------------
// HUP

#[test]
fn hup_rereads_config_and_replaces_workers() {
    let dir = TempDir::new("hupcfg");
    let cfg = dir.join("cfg.toml");
    fs::write(&cfg, "workers = 2\n").unwrap();
    let s = Server::start(&["-c", path_str(&cfg), APP]);
    let old = s.wait_workers(2, Duration::from_secs(20));

    fs::write(&cfg, "workers = 3\n").unwrap();
    s.signal(libc::SIGHUP);
    let mut now = Vec::new();
    let ok = wait_until(Duration::from_secs(30), || {
        now = s.worker_pids();
        now.len() == 3 && now.iter().all(|p| !old.contains(p))
    });
    assert!(
        ok,
        "after HUP with workers = 3: old {old:?}, now {now:?}; log:\n{}",
        s.log()
    );
    let log = wait_log(
        &s,
        "Reload complete: 3 new workers serving",
        Duration::from_secs(10),
    );
    assert!(log.contains("Handling signal: hup"), "log:\n{log}");
    for p in &old {
        assert!(
            wait_until(Duration::from_secs(10), || !alive(*p)),
            "old worker {p} still alive"
        );
    }
    // Stable at exactly 3.
    thread::sleep(Duration::from_millis(500));
    assert_eq!(s.worker_pids(), now);

    // An invalid file: the reload fails and nothing changes.
    fs::write(&cfg, "workers = = 3\n[[[\n").unwrap();
    let failed_before = count(&s.log(), "Reload failed");
    s.signal(libc::SIGHUP);
    let ok = wait_until(Duration::from_secs(10), || {
        count(&s.log(), "Reload failed") > failed_before
    });
    assert!(
        ok,
        "no 'Reload failed' after an invalid config; log:\n{}",
        s.log()
    );
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        s.worker_pids(),
        now,
        "workers changed after a failed reload; log:\n{}",
        s.log()
    );
    for _ in 0..6 {
        let p = get_pid(s.port);
        assert!(now.contains(&p), "served by {p}, workers {now:?}");
    }
}

#[test]
fn hup_under_load_fails_no_request() {
    let s = Server::start(&["-w", "2", APP]);
    let old = s.wait_workers(2, Duration::from_secs(20));
    let (stop, out, h) = client_loop(s.port, Duration::from_millis(50), Duration::from_secs(40));
    thread::sleep(Duration::from_secs(1));
    s.signal(libc::SIGHUP);
    let reloaded = wait_until(Duration::from_secs(30), || {
        s.log().contains("Reload complete") && old.iter().all(|p| !alive(*p))
    });
    // Keep the traffic going a little past the switch.
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    h.join().expect("client thread");
    assert!(reloaded, "the reload did not complete; log:\n{}", s.log());
    let out = out.lock().unwrap();
    let failures: Vec<&String> = out.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across a HUP: {failures:?}",
        failures.len(),
        out.len()
    );
    assert!(out.len() >= 20, "only {} requests were made", out.len());
    let pids: Vec<i32> = out.iter().filter_map(|(_, r)| r.clone().ok()).collect();
    assert!(
        pids.iter().any(|p| old.contains(p)),
        "no answer from the old workers"
    );
    assert!(
        pids.iter().any(|p| !old.contains(p)),
        "no answer from the new workers"
    );
}

#[test]
fn hup_loads_changed_app_code() {
    let dir = TempDir::new("hupapp");
    let module = dir.join("arb_ver.py");
    let source = |v: &str| {
        format!(
            "def app(environ, start_response):\n    body = b\"{v}\"\n    \
             start_response(\"200 OK\", [(\"Content-Length\", str(len(body)))])\n    \
             return [body]\n"
        )
    };
    fs::write(&module, source("v1")).unwrap();
    let s = Server::start(&[
        "-w",
        "2",
        "--pythonpath",
        path_str(dir.path()),
        "arb_ver:app",
    ]);
    for _ in 0..4 {
        assert_eq!(get_text(s.port, "/"), "v1");
    }
    // Both workers have imported v1 (one still booting could read the file
    // half rewritten), and v2 replaces it whole.
    s.wait_all_booted(2);
    let next = dir.join("arb_ver.py.new");
    fs::write(&next, source("v2")).unwrap();
    fs::rename(&next, &module).unwrap();
    s.signal(libc::SIGHUP);
    wait_log(&s, "Reload complete", Duration::from_secs(30));
    let old_gone = wait_until(Duration::from_secs(15), || {
        let log = s.log();
        // Both old workers have logged their exit.
        count(&log, "Worker exiting (pid: ") >= 2
    });
    assert!(old_gone, "old workers did not exit; log:\n{}", s.log());
    for _ in 0..10 {
        assert_eq!(get_text(s.port, "/"), "v2");
    }
}

// ---------------------------------------------------------------------------
// TTIN / TTOU

#[test]
fn ttin_ttou_change_worker_count_and_hup_restores_it() {
    let s = Server::start(&["-w", "2", APP]);
    s.wait_workers(2, Duration::from_secs(20));
    s.signal(libc::SIGTTIN);
    s.wait_workers(3, Duration::from_secs(20));
    assert!(s.log().contains("Handling signal: ttin"));
    s.signal(libc::SIGTTOU);
    s.wait_workers(2, Duration::from_secs(20));
    s.signal(libc::SIGTTOU);
    let one = s.wait_workers(1, Duration::from_secs(20));
    // Never below one.
    s.signal(libc::SIGTTOU);
    let ok = wait_until(Duration::from_secs(10), || {
        count(&s.log(), "Handling signal: ttou") >= 3
    });
    assert!(ok, "third TTOU not handled; log:\n{}", s.log());
    thread::sleep(Duration::from_secs(1));
    assert_eq!(s.worker_pids(), one, "TTOU went below one worker");
    assert_eq!(get_pid(s.port), one[0]);
    // HUP brings back the configured count.
    s.signal(libc::SIGHUP);
    let mut now = Vec::new();
    let ok = wait_until(Duration::from_secs(30), || {
        now = s.worker_pids();
        now.len() == 2 && !now.contains(&one[0])
    });
    assert!(ok, "after HUP: {now:?}; log:\n{}", s.log());
    get_ok(s.port, "/");
}

// ---------------------------------------------------------------------------
// TERM / INT

#[test]
fn term_is_graceful() {
    let mut s = Server::start(&["-w", "1", APP]);
    let port = s.port;
    let mark = s.dir.join("in-app");
    let path = format!("/sleep?s=1.5&mark={}", path_str(&mark));
    let h = thread::spawn(move || try_get(port, &path, &[]));
    // TERM once the app is running the request.
    assert!(
        wait_until(Duration::from_secs(10), || mark.exists()),
        "the slow request never reached the app"
    );
    s.signal(libc::SIGTERM);
    let r = h.join().expect("client thread");
    match r {
        Ok(resp) => assert_eq!(resp.text(), "slept 1.5"),
        Err(e) => panic!(
            "in-flight request during TERM failed: {e}; log:\n{}",
            s.log()
        ),
    }
    let st = s.wait_exit(Duration::from_secs(30));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "exit status {st:?}");
    assert!(s.log().contains("Shutting down: Master"));
    assert!(
        s.group_pids().is_empty(),
        "processes left: {:?}",
        s.group_pids()
    );
}

#[test]
fn int_with_idle_workers_exits() {
    let mut s = Server::start(&["-w", "2", APP]);
    s.signal(libc::SIGINT);
    let st = s.wait_exit(Duration::from_secs(10));
    assert!(st.is_some(), "master still running 10 s after INT");
    assert_eq!(st.and_then(|x| x.code()), Some(0), "exit status {st:?}");
    assert!(s.log().contains("Shutting down: Master"));
    assert!(
        wait_until(Duration::from_secs(5), || s.group_pids().is_empty()),
        "processes left after INT: {:?}",
        s.group_pids()
    );
}

/// INT stops at once even while a request is running in the app (gunicorn's
/// workers exit from their QUIT/INT handler, interrupting the app).
#[test]
fn int_is_quick() {
    let mut s = Server::start(&["-w", "1", APP]);
    let port = s.port;
    // A request that would keep a graceful stop busy for 30 s.
    let mark = s.dir.join("in-app");
    let path = format!("/sleep?s=30&mark={}", path_str(&mark));
    let h = thread::spawn(move || try_get(port, &path, &[]));
    assert!(
        wait_until(Duration::from_secs(10), || mark.exists()),
        "the slow request never reached the app"
    );
    let t = Instant::now();
    s.signal(libc::SIGINT);
    let st = s.wait_exit(Duration::from_secs(10));
    assert!(
        st.is_some(),
        "master still running 10 s after INT; log:\n{}",
        s.log()
    );
    let _ = h.join();
    assert!(
        s.log().contains("Handling signal: int"),
        "log:\n{}",
        s.log()
    );
    assert!(
        wait_until(Duration::from_secs(5), || s.group_pids().is_empty()),
        "processes left after INT: {:?}",
        s.group_pids()
    );
    eprintln!("INT stop took {:?}", t.elapsed());
}

// ---------------------------------------------------------------------------
// Timeouts

#[test]
fn timeout_kills_stuck_worker_and_dumps_its_stack() {
    let s = Server::start(&["-w", "1", "-t", "2", APP]);
    let stuck = get_pid(s.port);
    let port = s.port;
    let h = thread::spawn(move || try_get(port, "/hang", &[]));
    let needle = format!("WORKER TIMEOUT (pid:{stuck})");
    let log = wait_log(&s, &needle, Duration::from_secs(30));
    let line = log.lines().find(|l| l.contains(&needle)).unwrap();
    assert_eq!(
        parse_log_line(line).map(|x| (x.0, x.1)),
        Some((s.pid, "CRITICAL")),
        "line {line:?}"
    );
    // The stuck worker's Python stack.
    let ok = wait_until(Duration::from_secs(10), || {
        let log = s.log();
        let Some(i) = log.find("Fatal Python error: Aborted") else {
            return false;
        };
        let after = &log[i..];
        let Some(j) = after.find("most recent call first") else {
            return false;
        };
        let stack = &after[j..];
        stack.contains("arb_app.py") && stack.contains("hang_forever_here")
    });
    assert!(ok, "no Python stack of the stuck worker; log:\n{}", s.log());
    // A replacement, then normal service.
    let mut now = Vec::new();
    let ok = wait_until(Duration::from_secs(20), || {
        now = s.worker_pids();
        now.len() == 1 && now[0] != stuck
    });
    assert!(ok, "no replacement worker: {now:?}; log:\n{}", s.log());
    assert!(!alive(stuck), "the stuck worker {stuck} is still alive");
    let p = get_pid(s.port);
    assert_ne!(p, stuck);
    let _ = h.join();
}

/// How many Python stacks of a worker stuck in `/hang` `log` holds
/// (faulthandler's dump names the app's frame).
fn hang_stacks(log: &str) -> usize {
    log.split("Fatal Python error: Aborted")
        .skip(1)
        .filter(|dump| {
            let dump = dump.split("\n[").next().unwrap_or("");
            dump.contains("most recent call first") && dump.contains("hang_forever_here")
        })
        .count()
}

/// Hang the worker serving `/pid` now and wait for the master to replace
/// it; returns its pid.
fn hang_until_replaced(s: &FileLogServer) -> i32 {
    let stuck = get_pid(s.port);
    let port = s.port;
    let h = thread::spawn(move || try_get(port, "/hang", &[]));
    wait_file(
        &s.errlog,
        &format!("WORKER TIMEOUT (pid:{stuck})"),
        Duration::from_secs(30),
    );
    let _ = h.join();
    let ok = wait_until(Duration::from_secs(20), || {
        s.worker_pids().iter().any(|p| *p != stuck) && !alive(stuck)
    });
    assert!(ok, "no replacement for the stuck worker {stuck}");
    stuck
}

/// logrotate's weekly USR1 must not cost the timeout its traceback: the
/// stuck worker's stack goes to the current error log after any number of
/// reopens, for workers booted before and after them.
#[test]
fn timeout_stack_survives_usr1_reopens() {
    let dir = TempDir::new("usr1-stack");
    let s = start_file_logged(dir, &["-w", "1", "-t", "2", APP]);
    let elog = s.errlog.clone();
    let rotate = |n: u32| {
        let old = elog.with_extension(format!("log.{n}"));
        fs::rename(&elog, &old).unwrap();
        s.signal(libc::SIGUSR1);
        wait_file(&old, "Handling signal: usr1", Duration::from_secs(10));
        assert!(
            wait_until(Duration::from_secs(10), || elog.exists()),
            "the error log was not recreated after USR1 #{n}"
        );
        // The worker reopens too, when its loop sees the signal.
        get_ok(s.port, "/after-usr1");
        thread::sleep(Duration::from_millis(500));
        old
    };
    let stack_within = |path: &Path, n: usize| {
        wait_until(Duration::from_secs(10), || {
            hang_stacks(&read_lossy(path)) == n
        })
    };

    // A worker booted before the reopen.
    let first = rotate(1);
    let a = hang_until_replaced(&s);
    assert!(
        stack_within(&elog, 1),
        "no stack of worker {a} (booted before USR1) in the reopened log:\n{}",
        read_lossy(&elog)
    );
    assert_eq!(hang_stacks(&read_lossy(&first)), 0);

    // A worker booted after that reopen, which reopens itself too.
    let second = rotate(2);
    let b = hang_until_replaced(&s);
    assert!(
        stack_within(&elog, 1),
        "no stack of worker {b} (booted between two USR1s) in the log:\n{}",
        read_lossy(&elog)
    );
    assert_eq!(
        hang_stacks(&read_lossy(&second)),
        1,
        "the stack of {a} only"
    );

    // A worker booted after the last reopen.
    let c = hang_until_replaced(&s);
    assert!(
        stack_within(&elog, 2),
        "no stack of worker {c} (booted after USR1) in the log:\n{}",
        read_lossy(&elog)
    );
    assert_eq!(get_ok(s.port, "/").status, 200);
}

/// A request that hits the worker timeout before its response started is
/// answered 500 and its connection closed (cleanly, not reset), as
/// gunicorn's sync worker does; the log has the timeout and the stack.
#[test]
fn timeout_answers_500_and_closes() {
    let s = Server::start(&["-w", "1", "-t", "2", APP]);
    // A GET, a POST whose body the app never reads (what is left of it
    // must not turn the close into a reset), and a HEAD (no body).
    let body = vec![b'x'; 100_000];
    for (method, body) in [("GET", &b""[..]), ("POST", &body[..]), ("HEAD", &b""[..])] {
        let stuck = get_pid(s.port);
        let mut c = Conn::connect(s.port);
        c.r.src
            .set_timeouts(Some(Duration::from_secs(30)))
            .expect("set socket timeouts");
        let t = Instant::now();
        c.send_request(method, "/sleep?s=60", &[("Host", "x")], body);
        let r = c.read_response();
        assert_eq!(r.status, 500, "{method}: {r:?}");
        assert_eq!(r.reason, "Internal Server Error");
        assert_eq!(r.header("Connection"), Some("close"));
        assert_eq!(r.header("Content-Length"), Some("22"));
        let want = if method == "HEAD" {
            ""
        } else {
            "Internal Server Error\n"
        };
        assert_eq!(r.text(), want, "{method}");
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        assert!(c.read_to_end().is_empty());
        assert!(c.r.eof, "{method}: the connection was reset, not closed");
        let log = wait_log(
            &s,
            &format!("WORKER TIMEOUT (pid:{stuck})"),
            Duration::from_secs(10),
        );
        assert!(log.contains("Fatal Python error: Aborted"), "log:\n{log}");
        assert!(log.contains("arb_app.py"), "log:\n{log}");
        assert!(
            wait_until(Duration::from_secs(20), || {
                let now = s.worker_pids();
                now.len() == 1 && now[0] != stuck
            }),
            "no replacement worker; log:\n{}",
            s.log()
        );
    }
}

/// A response already under way when the worker times out is cut off, not
/// followed by a 500 (which would corrupt it), as in gunicorn.
#[test]
fn timeout_cuts_off_a_started_response() {
    let s = Server::start(&["-w", "1", "-t", "2", APP]);
    let stuck = get_pid(s.port);
    let mut c = Conn::connect(s.port);
    c.r.src
        .set_timeouts(Some(Duration::from_secs(30)))
        .expect("set socket timeouts");
    c.send(&build_request("GET", "/half-hang", &[("Host", "x")], b""))
        .expect("send");
    let all = String::from_utf8_lossy(&c.read_to_end()).into_owned();
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all:?}");
    assert!(all.ends_with("\r\n\r\npartial\n"), "{all:?}");
    assert!(!all.contains(" 500 "), "{all:?}");
    wait_log(
        &s,
        &format!("WORKER TIMEOUT (pid:{stuck})"),
        Duration::from_secs(10),
    );
}

#[test]
fn timeout_applies_to_a_hanging_import() {
    let mut s = Server::spawn(&["-w", "1", "-t", "2", "arb_hang_import:app"], &[]);
    let ok = wait_until(Duration::from_secs(30), || {
        s.log().contains("WORKER TIMEOUT (pid:")
    });
    assert!(
        ok,
        "no WORKER TIMEOUT for an app hanging at import; log:\n{}",
        s.log()
    );
    let log = s.log();
    let first = booted_pids(&log).first().copied();
    if let Some(p) = first {
        assert!(
            log.contains(&format!("WORKER TIMEOUT (pid:{p})")),
            "timeout names another pid; log:\n{log}"
        );
        assert!(
            wait_until(Duration::from_secs(10), || !alive(p)),
            "timed-out worker {p} still alive"
        );
    }
    // The master keeps trying (a new worker boots) or exits; it never hangs.
    let ok = wait_until(Duration::from_secs(20), || {
        s.exited().is_some() || booted_pids(&s.log()).len() >= 2
    });
    assert!(
        ok,
        "after a boot timeout the master neither exited nor booted another worker; log:\n{}",
        s.log()
    );
    // Dropping `s` kills whatever is left.
}

// ---------------------------------------------------------------------------
// Boot failures

#[test]
fn app_import_failure_exits_4_without_respawning() {
    let mut s = Server::spawn(&["-w", "2", "arb_import_fail:app"], &[]);
    let st = s.wait_exit(Duration::from_secs(30));
    let log = s.log();
    assert_eq!(
        st.and_then(|x| x.code()),
        Some(4),
        "exit status {st:?}; log:\n{log}"
    );
    assert!(log.contains("App failed to load."), "log:\n{log}");
    assert!(
        log.contains("arb_import_fail: deliberately broken at import"),
        "the import error is not logged; log:\n{log}"
    );
    let boots = count(&log, "Booting worker with pid: ");
    assert!(boots <= 2, "{boots} workers booted for -w 2; log:\n{log}");
    assert!(
        wait_until(Duration::from_secs(5), || s.group_pids().is_empty()),
        "processes left: {:?}",
        s.group_pids()
    );
}

// ---------------------------------------------------------------------------
// Recycling

#[test]
fn max_requests_recycles_the_worker() {
    let s = Server::start(&["-w", "1", "--max-requests", "5", APP]);
    let mut pids = Vec::new();
    for i in 0..30 {
        match try_get(s.port, "/pid", &[]) {
            Ok(r) => pids.push(r.text().trim().parse::<i32>().expect("pid")),
            Err(e) => panic!("request {i} of 30 failed: {e}; log:\n{}", s.log()),
        }
    }
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() >= 4,
        "30 requests with --max-requests 5 were served by {distinct:?}"
    );
    wait_log(
        &s,
        "Autorestarting worker after current request.",
        Duration::from_secs(5),
    );
}

#[test]
fn max_requests_jitter_is_accepted() {
    let s = Server::start(&[
        "-w",
        "1",
        "--max-requests",
        "3",
        "--max-requests-jitter",
        "2",
        APP,
    ]);
    let mut distinct = Vec::new();
    for i in 0..20 {
        match try_get(s.port, "/pid", &[]) {
            Ok(r) => distinct.push(r.text().trim().parse::<i32>().expect("pid")),
            Err(e) => panic!("request {i} of 20 failed: {e}; log:\n{}", s.log()),
        }
    }
    distinct.sort_unstable();
    distinct.dedup();
    // At most 3 + 2 requests per worker.
    assert!(distinct.len() >= 3, "served by {distinct:?}");
}

#[test]
fn max_worker_memory_recycles_a_grown_worker() {
    let s = Server::start(&["-w", "1", "--max-worker-memory", "60", APP]);
    let p = get_pid(s.port);
    for _ in 0..3 {
        assert_eq!(get_pid(s.port), p, "recycled before growing");
    }
    let grew = get_text(s.port, "/grow");
    assert_eq!(grew, format!("grew {p}"));
    let mut last = p;
    let ok = wait_until(Duration::from_secs(20), || {
        last = get_pid(s.port);
        last != p
    });
    assert!(
        ok,
        "the worker that grew past --max-worker-memory 60 still serves; log:\n{}",
        s.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || !alive(p)),
        "the grown worker {p} is still alive"
    );
}

// ---------------------------------------------------------------------------
// Worker death

#[test]
fn killed_worker_is_replaced() {
    let s = Server::start(&["-w", "2", APP]);
    let workers = s.wait_workers(2, Duration::from_secs(20));
    let (stop, out, h) = client_loop(s.port, Duration::from_millis(20), Duration::from_secs(40));
    thread::sleep(Duration::from_millis(500));
    let victim = workers[0];
    assert!(kill(victim, libc::SIGKILL));
    let mut now = Vec::new();
    let replaced = wait_until(Duration::from_secs(20), || {
        now = s.worker_pids();
        now.len() == 2 && !now.contains(&victim)
    });
    let t_replaced = Instant::now();
    thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    h.join().expect("client thread");
    assert!(
        replaced,
        "no replacement for {victim}: {now:?}; log:\n{}",
        s.log()
    );
    let out = out.lock().unwrap();
    let late: Vec<&Result<i32, String>> = out
        .iter()
        .filter(|(t, _)| *t >= t_replaced)
        .map(|(_, r)| r)
        .collect();
    assert!(!late.is_empty(), "no request after the replacement");
    let failed: Vec<_> = late.iter().filter(|r| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "requests failed after the replacement: {failed:?}"
    );
    for _ in 0..10 {
        let p = get_pid(s.port);
        assert!(now.contains(&p), "served by {p}, workers {now:?}");
    }
    assert!(
        s.log()
            .contains(&format!("Worker (pid:{victim}) was sent SIGKILL!")),
        "log:\n{}",
        s.log()
    );
}

// ---------------------------------------------------------------------------
// Preload

#[test]
fn preload_imports_in_the_master() {
    let s = Server::start(&["-w", "1", "--preload", APP]);
    let t = get_text(s.port, "/pids");
    let (imp, worker) = t.split_once(' ').expect("two pids");
    assert_eq!(
        imp.parse::<i32>().ok(),
        Some(s.pid),
        "with --preload: {t:?}"
    );
    assert_ne!(worker.parse::<i32>().ok(), Some(s.pid));

    let n = Server::start(&["-w", "1", APP]);
    let t = get_text(n.port, "/pids");
    let (imp, worker) = t.split_once(' ').expect("two pids");
    assert_eq!(imp, worker, "without --preload: {t:?}");
    assert_ne!(imp.parse::<i32>().ok(), Some(n.pid));
}

// ---------------------------------------------------------------------------
// Pidfile and daemon

#[test]
fn pidfile_written_refused_and_removed() {
    let dir = TempDir::new("pidfile");
    let pidf = dir.join("master.pid");
    let mut s = Server::start(&["-p", path_str(&pidf), APP]);
    assert_eq!(read_lossy(&pidf).trim(), s.pid.to_string());
    // Not writable by others, although the default umask is 0.
    let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&pidf).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644, "pidfile mode {mode:o}");

    // A second server with the same pidfile is refused.
    let apps = apps_dir();
    let second = run_cli(
        &[
            "-b",
            "127.0.0.1:0",
            "--chdir",
            path_str(&apps),
            "-p",
            path_str(&pidf),
            APP,
        ],
        &[],
        dir.path(),
    );
    let text = format!("{}{}", second.stdout, second.stderr);
    assert_ne!(second.code(), Some(0), "second server: {text}");
    assert!(
        second.code().is_some(),
        "second server killed: {:?}",
        second.status
    );
    assert!(
        text.contains(path_str(&pidf)) || text.contains("master.pid"),
        "the refusal does not name the pidfile: {text}"
    );
    assert_eq!(
        read_lossy(&pidf).trim(),
        s.pid.to_string(),
        "the refused server touched the pidfile"
    );

    s.signal(libc::SIGTERM);
    let st = s.wait_exit(Duration::from_secs(30));
    assert_eq!(st.and_then(|x| x.code()), Some(0));
    assert!(!pidf.exists(), "pidfile left after TERM");
}

#[test]
fn stale_pidfile_is_overwritten() {
    let dir = TempDir::new("stalepid");
    let pidf = dir.join("stale.pid");
    // pid_max is at most 4194304; 999999 may exist only on huge systems.
    let stale = 999_999;
    assert!(!alive(stale), "pid {stale} is running here");
    fs::write(&pidf, format!("{stale}\n")).unwrap();
    let s = Server::start(&["-p", path_str(&pidf), APP]);
    assert_eq!(read_lossy(&pidf).trim(), s.pid.to_string());
}

/// Kills a daemonized master and its workers when dropped.
struct DaemonGuard(Option<i32>);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let Some(pid) = self.0 else { return };
        let children: Vec<i32> = all_procs()
            .into_iter()
            .filter(|p| p.ppid == pid)
            .map(|p| p.pid)
            .collect();
        if alive(pid) {
            kill(pid, libc::SIGKILL);
        }
        for c in &children {
            kill(*c, libc::SIGKILL);
        }
        wait_until(Duration::from_secs(5), || {
            !alive(pid) && children.iter().all(|c| !alive(*c))
        });
    }
}

#[test]
fn daemon_mode_detaches_and_serves() {
    let dir = TempDir::new("daemon");
    let pidf = dir.join("d.pid");
    let elog = dir.join("d.log");
    let apps = apps_dir();
    let mut guard = DaemonGuard(None);
    let t = Instant::now();
    let out = run_cli(
        &[
            "-D",
            "-p",
            path_str(&pidf),
            "--error-logfile",
            path_str(&elog),
            "-b",
            "127.0.0.1:0",
            "--chdir",
            path_str(&apps),
            "-w",
            "1",
            APP,
        ],
        &[],
        dir.path(),
    );
    let took = t.elapsed();
    assert_eq!(
        out.code(),
        Some(0),
        "ferrocorn -D: {:?}\n{}{}",
        out.status,
        out.stdout,
        out.stderr
    );
    assert!(took < Duration::from_secs(10), "ferrocorn -D took {took:?}");

    let mut master = 0;
    let ok = wait_until(Duration::from_secs(20), || {
        master = read_lossy(&pidf).trim().parse().unwrap_or(0);
        master > 0
    });
    assert!(ok, "no pidfile; log:\n{}", read_lossy(&elog));
    guard.0 = Some(master);
    assert!(alive(master), "daemon {master} not running");
    let ppid = proc_stat(master).map(|p| p.ppid);
    assert_ne!(
        ppid,
        Some(std::process::id() as i32),
        "the daemon is our child"
    );
    assert_eq!(cmdline(master), format!("ferrocorn: master [{APP}]"));

    let mut port = None;
    wait_until(Duration::from_secs(20), || {
        port = listening_port(&read_lossy(&elog));
        port.is_some()
    });
    let port = port.unwrap_or_else(|| panic!("no Listening at; log:\n{}", read_lossy(&elog)));
    let mut last = String::new();
    let mut served_by = 0;
    let ok = wait_until(Duration::from_secs(20), || {
        match try_get(port, "/pid", &[]) {
            Ok(r) => {
                served_by = r.text().trim().parse().unwrap_or(0);
                true
            }
            Err(e) => {
                last = e;
                false
            }
        }
    });
    assert!(
        ok,
        "the daemon does not answer: {last}; log:\n{}",
        read_lossy(&elog)
    );
    assert_eq!(proc_stat(served_by).map(|p| p.ppid), Some(master));

    // WINCH, daemonized: the workers stop gracefully, the master stays.
    assert!(kill(master, libc::SIGWINCH));
    assert!(
        wait_until(Duration::from_secs(20), || !alive(served_by)),
        "WINCH left the worker running; log:\n{}",
        read_lossy(&elog)
    );
    assert!(alive(master), "WINCH stopped the master");
    assert!(try_get(port, "/pid", &[]).is_err() || !alive(served_by));
    // HUP brings the configured workers back.
    assert!(kill(master, libc::SIGHUP));
    let ok = wait_until(Duration::from_secs(20), || {
        try_get(port, "/pid", &[])
            .map(|r| r.text().trim().parse::<i32>().unwrap_or(0))
            .is_ok_and(|p| p > 0 && p != served_by)
    });
    assert!(
        ok,
        "HUP after WINCH did not restart workers; log:\n{}",
        read_lossy(&elog)
    );
    let served_by = get_pid(port);

    assert!(kill(master, libc::SIGTERM));
    assert!(
        wait_until(Duration::from_secs(30), || !alive(master)),
        "the daemon survived TERM; log:\n{}",
        read_lossy(&elog)
    );
    assert!(
        wait_until(Duration::from_secs(5), || !alive(served_by)),
        "its worker survived"
    );
    assert!(!pidf.exists(), "pidfile left after TERM");
    assert!(read_lossy(&elog).contains("Shutting down: Master"));
}

// ---------------------------------------------------------------------------
// Access log

/// True for `DD/Mon/YYYY:HH:MM:SS +0000`.
fn is_clf_date(s: &str) -> bool {
    let b = s.as_bytes();
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    s.len() == 26
        && [0, 1, 7, 8, 9, 10, 12, 13, 15, 16, 18, 19]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
        && b[2] == b'/'
        && MONTHS.contains(&&s[3..6])
        && b[6] == b'/'
        && b[11] == b':'
        && b[14] == b':'
        && b[17] == b':'
        && &s[20..] == " +0000"
}

#[test]
fn access_log_default_format() {
    let dir = TempDir::new("access");
    let alog = dir.join("access.log");
    let s = Server::start(&["-w", "1", "--access-logfile", path_str(&alog), APP]);
    let r = try_get(s.port, "/path?q=1", &[("User-Agent", "agent")]).unwrap();
    let n = r.body.len();
    let text = wait_file(&alog, "/path?q=1", Duration::from_secs(5));
    let line = text.lines().find(|l| l.contains("/path?q=1")).unwrap();
    let rest = line
        .strip_prefix("127.0.0.1 - - [")
        .unwrap_or_else(|| panic!("access log line {line:?}"));
    let (date, rest) = rest.split_at(26.min(rest.len()));
    assert!(is_clf_date(date), "bad date {date:?} in {line:?}");
    assert_eq!(
        rest,
        format!("] \"GET /path?q=1 HTTP/1.1\" 200 {n} \"-\" \"agent\""),
        "access log line {line:?}"
    );
}

#[test]
fn access_log_custom_format() {
    let dir = TempDir::new("accessfmt");
    let alog = dir.join("access.log");
    let s = Server::start(&[
        "-w",
        "1",
        "--access-logfile",
        path_str(&alog),
        "--access-logformat",
        "%(m)s %(U)s %(q)s %(s)s %(B)s %({x-test}i)s %({content-type}o)s %(p)s",
        APP,
    ]);
    let r = try_get(s.port, "/fmt?q=1", &[("X-Test", "hello")]).unwrap();
    let pid = r.text().trim_start_matches("ok ").trim().to_string();
    let want = format!("GET /fmt q=1 200 {} hello text/x-arb <{pid}>", r.body.len());
    let text = wait_file(&alog, "GET /fmt", Duration::from_secs(5));
    let line = text.lines().find(|l| l.starts_with("GET /fmt")).unwrap();
    assert_eq!(line, want);
}

#[test]
fn usr1_reopens_the_log_files() {
    let dir = TempDir::new("usr1");
    let alog = dir.join("access.log");
    let alog1 = dir.join("access.log.1");
    let elog1 = dir.join("error.log.1");
    let mut s = start_file_logged(dir, &["-w", "1", "--access-logfile", path_str(&alog), APP]);
    let elog = s.errlog.clone();
    let w = get_pid(s.port);
    get_ok(s.port, "/before-rotate");
    wait_file(&alog, "/before-rotate", Duration::from_secs(5));

    fs::rename(&alog, &alog1).unwrap();
    fs::rename(&elog, &elog1).unwrap();
    s.signal(libc::SIGUSR1);
    wait_file(&elog1, "Handling signal: usr1", Duration::from_secs(10));
    assert!(
        wait_until(Duration::from_secs(10), || elog.exists()),
        "the error log was not recreated after USR1"
    );

    // The worker reopens on its own schedule: keep asking until the new
    // access log has a line.
    let mut sent = Vec::new();
    let ok = wait_until(Duration::from_secs(15), || {
        let path = format!("/after-rotate-{}", sent.len());
        get_ok(s.port, &path);
        sent.push(path);
        thread::sleep(Duration::from_millis(200));
        read_lossy(&alog).contains("/after-rotate-")
    });
    assert!(ok, "no access log line in the recreated file after USR1");
    // Nothing is lost: every request is in one of the two files.
    thread::sleep(Duration::from_millis(1500));
    let (new, old) = (read_lossy(&alog), read_lossy(&alog1));
    assert!(old.contains("/before-rotate"), "access.log.1:\n{old}");
    assert!(!new.contains("/before-rotate"), "access.log:\n{new}");
    for p in &sent {
        let needle = format!("{p} HTTP/1.1");
        assert!(
            new.contains(&needle) || old.contains(&needle),
            "{p} missing from both access logs"
        );
    }
    assert!(read_lossy(&elog1).contains("Booting worker with pid: "));

    // Master and worker both write to the new error log.
    s.signal(libc::SIGTERM);
    let st = s.wait_exit(Duration::from_secs(30));
    assert_eq!(st.and_then(|x| x.code()), Some(0));
    let e = read_lossy(&elog);
    assert!(
        e.contains("Handling signal: term") && e.contains("Shutting down: Master"),
        "master lines missing from the reopened error log:\n{e}"
    );
    assert!(
        e.contains(&format!("Worker exiting (pid: {w})")),
        "worker lines missing from the reopened error log:\n{e}"
    );
}

#[test]
fn capture_output_goes_to_the_error_log() {
    let dir = TempDir::new("capture");
    let s = start_file_logged(dir, &["-w", "1", "--capture-output", APP]);
    get_ok(s.port, "/print?m=arb-captured-7f3a");
    wait_file(&s.errlog, "arb-captured-7f3a", Duration::from_secs(5));
    // After USR1 (logrotate), what the app prints goes to the new file.
    let old = s.errlog.with_extension("log.1");
    fs::rename(&s.errlog, &old).unwrap();
    s.signal(libc::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(10), || s.errlog.exists()),
        "the error log was not recreated after USR1"
    );
    let ok = wait_until(Duration::from_secs(10), || {
        get_ok(s.port, "/print?m=arb-after-usr1-5c1e");
        read_lossy(&s.errlog).contains("arb-after-usr1-5c1e")
    });
    assert!(
        ok,
        "printed output not in the reopened log; it holds:\n{}\nthe old one:\n{}",
        read_lossy(&s.errlog),
        read_lossy(&old)
    );
}

// ---------------------------------------------------------------------------
// umask, user and group

#[test]
fn umask_applies_to_the_unix_socket() {
    let dir = TempDir::new("umask");
    let sock = dir.join("arb.sock");
    let bind = format!("unix:{}", path_str(&sock));
    let s = Server::start(&["-w", "1", "-m", "0o077", "-b", &bind, APP]);
    let meta = fs::metadata(&sock).expect("socket file");
    assert!(meta.file_type().is_socket());
    let mode = meta.permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "socket mode {mode:o}");
    let r = s.connect().request("GET", "/pid", &[], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn user_and_group_apply_to_workers() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: not running as root");
        return;
    }
    let appdir = TempDir::new("userapp");
    fs::set_permissions(appdir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let module = appdir.join("arb_user_app.py");
    fs::copy(apps_dir().join("arb_app.py"), &module).unwrap();
    fs::set_permissions(&module, fs::Permissions::from_mode(0o644)).unwrap();
    let s = Server::start(&[
        "-w",
        "1",
        "--user",
        "nobody",
        "--group",
        "nogroup",
        "--chdir",
        path_str(appdir.path()),
        "arb_user_app:app",
    ]);
    let w = get_pid(s.port);
    assert_eq!(status_ids(w, "Uid:"), vec![65534; 4], "worker {w} Uid");
    assert_eq!(status_ids(w, "Gid:"), vec![65534; 4], "worker {w} Gid");
    assert_eq!(status_ids(s.pid, "Uid:"), vec![0; 4], "master Uid");
    for _ in 0..3 {
        get_ok(s.port, "/");
    }
}

#[test]
fn winch_is_ignored_when_not_daemonized() {
    let s = Server::start(&["-w", "1", APP]);
    let before = s.wait_workers(1, Duration::from_secs(20));
    s.signal(libc::SIGWINCH);
    wait_log(&s, "SIGWINCH ignored", Duration::from_secs(10));
    assert_eq!(s.worker_pids(), before);
    assert_eq!(get_ok(s.port, "/").status, 200);
}

#[test]
fn error_log_goes_to_syslog_with_worker_pids() {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let addr = format!(
        "udp://127.0.0.1:{}",
        sock.local_addr().map(|a| a.port()).unwrap_or(0)
    );
    let s = Server::start(&[
        "-w",
        "1",
        "--log-syslog",
        "--log-syslog-to",
        &addr,
        "--log-syslog-prefix",
        "t1",
        "--log-syslog-facility",
        "local3",
        APP,
    ]);
    let worker = s.wait_workers(1, Duration::from_secs(20))[0];
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let want = format!("ferrocorn.t1[{worker}]: Booting worker with pid: {worker}");
    while Instant::now() < deadline && !got.contains(&want) {
        let mut buf = [0u8; 2048];
        if let Ok(n) = sock.recv(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
            got.push('\n');
        }
    }
    assert!(got.contains(&want), "syslog got:\n{got}");
    // local3 (19) * 8 + info (6) = 158
    assert!(got.contains("<158>"), "syslog got:\n{got}");
    assert!(
        got.contains(&format!("ferrocorn.t1[{}]: Listening at:", s.pid)),
        "syslog got:\n{got}"
    );
}
