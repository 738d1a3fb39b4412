//! Processes and signals: app load failure, worker count and replacement,
//! graceful and quick shutdown, client disconnects, unix sockets, and
//! virtualenvs.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn assert_gone(pids: &[i32]) {
    let ok = wait_until(Duration::from_secs(5), || pids.iter().all(|p| !alive(*p)));
    let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(
        ok,
        "processes still running after the master exited: {left:?}"
    );
}

// ---------------------------------------------------------------------------
// Startup failure

#[test]
fn import_error_exits_4() {
    let started = Instant::now();
    let mut s = Server::spawn(&["-w", "2", "importerr:app"], &[]);
    let st = s
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("the master did not exit; log:\n{}", s.log()));
    assert_eq!(st.code(), Some(4), "log:\n{}", s.log());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let log = s.log();
    assert!(log.contains("App failed to load"), "log:\n{log}");
    assert!(log.contains("deliberately broken"), "log:\n{log}");
    let left = s.group_pids();
    assert_gone(&left);
}

// ---------------------------------------------------------------------------
// Workers

#[test]
fn three_workers() {
    let s = Server::start(&["-w", "3", "hello:app"]);
    let w = s.wait_workers(3, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.worker_pids(), w, "the worker set changed by itself");
    // They all serve: spread a few connections around.
    for _ in 0..6 {
        assert_eq!(get(s.port, "/").status, 200);
    }
}

#[test]
fn killed_worker_is_replaced() {
    let s = Server::start(&["-w", "2", "echo:app"]);
    let before = s.wait_workers(2, Duration::from_secs(10));
    let victim = before[0];
    assert!(kill(victim, libc::SIGKILL));
    let mut now = Vec::new();
    let replaced = wait_until(Duration::from_secs(10), || {
        now = s.worker_pids();
        now.len() == 2 && !now.contains(&victim)
    });
    assert!(
        replaced,
        "no replacement for {victim}: workers {now:?}; log:\n{}",
        s.log()
    );
    assert!(now.contains(&before[1]), "the other worker was disturbed");
    for i in 0..6 {
        let r = get(s.port, &format!("/after-kill/{i}"));
        assert_eq!(r.status, 200);
    }
}

// ---------------------------------------------------------------------------
// Shutdown

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let mut s = Server::start(&["-w", "1", "slow:app"]);
    let workers = s.wait_workers(1, Duration::from_secs(10));
    let mut c = s.connect();
    c.send_request("GET", "/?sleep=1", &[], b"");
    std::thread::sleep(Duration::from_millis(300));
    s.signal(libc::SIGTERM);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slept 1.0\n");
    let st = s
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the master did not exit after TERM; log:\n{}", s.log()));
    assert_eq!(st.code(), Some(0), "log:\n{}", s.log());
    assert_gone(&workers);
    assert!(s.group_pids().is_empty());
}

#[test]
fn sigterm_with_several_workers_leaves_no_process() {
    let mut s = Server::start(&["-w", "3", "hello:app"]);
    let workers = s.wait_workers(3, Duration::from_secs(10));
    s.signal(libc::SIGTERM);
    let st = s
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no exit after TERM; log:\n{}", s.log()));
    assert_eq!(st.code(), Some(0));
    assert_gone(&workers);
    assert!(s.group_pids().is_empty());
}

#[test]
fn sigint_exits_quickly() {
    let mut s = Server::start(&["-w", "2", "hello:app"]);
    let workers = s.wait_workers(2, Duration::from_secs(10));
    let t = Instant::now();
    s.signal(libc::SIGINT);
    let st = s.wait_exit(Duration::from_secs(5));
    assert!(st.is_some(), "no exit within 5 s of INT; log:\n{}", s.log());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_gone(&workers);
}

#[test]
fn sigint_exits_quickly_with_a_request_in_flight() {
    let mut s = Server::start(&["-w", "1", "slow:app"]);
    let workers = s.wait_workers(1, Duration::from_secs(10));
    let mut c = s.connect();
    c.send_request("GET", "/?sleep=20", &[], b"");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    s.signal(libc::SIGINT);
    let st = s.wait_exit(Duration::from_secs(8));
    assert!(
        st.is_some(),
        "INT is a quick shutdown, but the master waited for the 20 s request; log:\n{}",
        s.log()
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert_gone(&workers);
}

// ---------------------------------------------------------------------------
// Clients that go away

#[test]
fn client_disconnects_do_not_hurt_the_worker() {
    let s = Server::start(&["-w", "1", "slow:app"]);
    let workers = s.wait_workers(1, Duration::from_secs(10));
    {
        // Half a request head, then gone.
        let mut c = Conn::connect(s.port);
        c.send(b"GET /half HTTP/1.1\r\nHo").unwrap();
    }
    {
        // Half a body, then gone.
        let mut c = Conn::connect(s.port);
        c.send(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-some")
            .unwrap();
    }
    {
        // A whole request to the slow app, gone before the answer.
        let mut c = Conn::connect(s.port);
        c.send_request("GET", "/?sleep=1", &[], b"");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = request(s.port, "GET", "/?sleep=0", &[("Connection", "close")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slept 0.0\n");
    assert_eq!(s.worker_pids(), workers, "the worker was replaced");
    let log = s.log();
    for bad in ["panicked", "internal error", "Traceback"] {
        assert!(!log.contains(bad), "{bad} in the log:\n{log}");
    }
}

// ---------------------------------------------------------------------------
// Unix sockets

fn unix_get(path: &Path) -> Response {
    Conn::connect_unix(path).request("GET", "/", &[], b"")
}

#[test]
fn unix_socket_serves_and_is_removed_on_exit() {
    let dir = TempDir::new("unix");
    let sock = dir.join("ferro.sock");
    let bind = format!("unix:{}", sock.display());
    let mut s = Server::start(&["-b", &bind, "hello:app"]);
    assert_eq!(s.unix.as_deref(), Some(sock.as_path()));
    let r = unix_get(&sock);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, World!\n");
    s.signal(libc::SIGTERM);
    let st = s
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no exit after TERM; log:\n{}", s.log()));
    assert_eq!(st.code(), Some(0));
    assert!(!sock.exists(), "the socket file was left behind");
}

#[test]
fn stale_unix_socket_is_replaced() {
    let dir = TempDir::new("unix");
    let sock = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists(), "the stale socket file should exist");
    let bind = format!("unix:{}", sock.display());
    let s = Server::start(&["-b", &bind, "hello:app"]);
    let r = unix_get(&sock);
    assert_eq!(r.status, 200);
    drop(s);
}

// ---------------------------------------------------------------------------
// Virtualenvs

/// Run `cmd` with a deadline; true if it exited successfully.
fn run_ok(cmd: &mut Command, timeout: Duration) -> bool {
    let Ok(mut child) = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn() else {
        return false;
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return st.success();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn python_version() -> String {
    Command::new("/usr/bin/python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "3.11".to_string())
}

/// A virtualenv in `dir` whose site-packages holds `onlyinvenv.py`.
fn make_venv(dir: &TempDir) -> PathBuf {
    let venv = dir.join("venv");
    let made = run_ok(
        Command::new("/usr/bin/python3")
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv),
        Duration::from_secs(60),
    );
    let site = venv
        .join("lib")
        .join(format!("python{}", python_version()))
        .join("site-packages");
    if !made || !site.is_dir() {
        // No venv module: lay the virtualenv out by hand.
        fs::create_dir_all(&site).unwrap();
        fs::write(
            venv.join("pyvenv.cfg"),
            "home = /usr/bin\ninclude-system-site-packages = false\n",
        )
        .unwrap();
    }
    fs::write(
        site.join("onlyinvenv.py"),
        "MESSAGE = 'hello from the virtualenv\\n'\n",
    )
    .unwrap();
    venv
}

#[test]
fn app_needing_a_virtualenv_fails_without_it() {
    let mut s = Server::spawn(&["venvapp:app"], &[]);
    let st = s
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("the master did not exit; log:\n{}", s.log()));
    assert_eq!(st.code(), Some(4), "log:\n{}", s.log());
    assert!(s.log().contains("onlyinvenv"), "log:\n{}", s.log());
}

#[test]
fn virtualenv_option() {
    let dir = TempDir::new("venv");
    let venv = make_venv(&dir);
    let s = Server::start(&["--virtualenv", venv.to_str().unwrap(), "venvapp:app"]);
    let r = get(s.port, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from the virtualenv\n");
}

#[test]
fn virtual_env_variable() {
    let dir = TempDir::new("venv");
    let venv = make_venv(&dir);
    let s = Server::start_env(&["venvapp:app"], &[("VIRTUAL_ENV", venv.to_str().unwrap())]);
    let r = get(s.port, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from the virtualenv\n");
}

/// A keep-alive connection whose next request arrives while the (sync)
/// worker is busy with another client must be served when the worker gets
/// to it, even if its keep-alive deadline passed in the meantime.
#[test]
fn keepalive_request_queued_behind_a_busy_worker_is_served() {
    let s = Server::start(&["-w", "1", "--keep-alive", "1", "slow:app"]);
    let mut a = Conn::connect(s.port);
    assert_eq!(a.request("GET", "/?sleep=0", &[], b"").status, 200);
    let port = s.port;
    let busy = std::thread::spawn(move || {
        let mut b = Conn::connect(port);
        b.request("GET", "/?sleep=2.5", &[], b"").status
    });
    // Let B's request occupy the worker, then send A's next request.
    std::thread::sleep(Duration::from_millis(500));
    let r = a.request("GET", "/?sleep=0", &[], b"");
    assert_eq!(r.status, 200, "the queued keep-alive request was dropped");
    assert_eq!(busy.join().ok(), Some(200));
}
