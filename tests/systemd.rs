//! systemd integration: the sd_notify sequence (against a local datagram
//! receiver standing in for systemd), the watchdog, socket activation with
//! `systemd-socket-activate`, and inherited sockets (`GUNICORN_FD`).

mod common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(20);

fn has(events: &[String], want: &[&str]) -> bool {
    events.iter().map(String::as_str).eq(want.iter().copied())
}

#[test]
fn notify_sequence_boot_reload_stop() {
    let mut rx = NotifyRx::new();
    let (k, v) = rx.env();
    let mut s = Server::spawn(&["-w", "2", "arb_app:app"], &[(k, &v)]);
    let (pid, ready) = rx
        .wait_for(T, |_, m| m.lines().any(|l| l == "READY=1"))
        .unwrap_or_else(|| panic!("no READY=1; log:\n{}", s.log()));
    assert_eq!(pid, s.pid, "READY=1 must come from the master");
    // READY=1 means serving: both workers booted, requests answered now.
    assert!(
        ready.contains("STATUS=") && ready.contains("2 workers"),
        "{ready}"
    );
    s.wait_ready();
    assert_eq!(s.worker_pids().len(), 2);
    assert_eq!(get(s.port, "/").status, 200);
    let before = s.worker_pids();

    s.signal(libc::SIGHUP);
    let (_, reloading) = rx
        .wait_for(T, |_, m| m.contains("RELOADING=1"))
        .expect("RELOADING=1 after HUP");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {reloading:?}"));
    assert!(usec > 0);
    rx.wait_for(T, |_, m| m.lines().any(|l| l == "READY=1"))
        .expect("READY=1 after the reload");
    // By READY=1 the new generation serves.
    let after = s.wait_workers(2, T);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "workers not replaced: {before:?} -> {after:?}"
    );
    assert_eq!(get(s.port, "/").status, 200);
    // The served-requests counter reaches STATUS= within a couple of seconds.
    rx.wait_for(Duration::from_secs(5), |_, m| {
        m.contains("STATUS=") && m.contains("requests served") && !m.contains(" 0 requests")
    })
    .expect("STATUS= with a request count");

    s.signal(libc::SIGTERM);
    rx.wait_for(T, |_, m| m.contains("STOPPING=1"))
        .expect("STOPPING=1 on TERM");
    assert!(s.wait_exit(T).is_some_and(|st| st.success()));
    rx.drain(Duration::from_millis(100));
    assert!(
        has(
            &rx.events(),
            &["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
        ),
        "notification sequence: {:?}",
        rx.events()
    );
}

#[test]
fn ready_waits_until_workers_have_imported_the_app() {
    let apps = TempDir::new("slowimport");
    std::fs::write(
        apps.join("slowimport.py"),
        "import time\ntime.sleep(1.5)\n\ndef app(environ, start_response):\n    \
         start_response('200 OK', [('Content-Length', '2')])\n    return [b'ok']\n",
    )
    .unwrap();
    let mut rx = NotifyRx::new();
    let (k, v) = rx.env();
    let started = Instant::now();
    let s = Server::spawn_with(
        &[],
        Some(apps.path()),
        &["-w", "2", "slowimport:app"],
        &[(k, &v)],
    );
    rx.wait_for(T, |_, m| m.lines().any(|l| l == "READY=1"))
        .unwrap_or_else(|| panic!("no READY=1; log:\n{}", s.log()));
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "READY=1 came before the app was imported"
    );
    // Listening line is logged long before; read the port from it.
    let log = s.log();
    let port: u16 = log
        .split("Listening at: http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("port in the log");
    // No wait: the moment systemd hears READY=1, requests are served.
    let r = Conn::connect(port).request("GET", "/", &[], b"");
    assert_eq!(r.status, 200);
    assert!(
        rx.events().first().is_some_and(|e| e == "READY=1"),
        "{:?}",
        rx.events()
    );
}

#[test]
fn abstract_notify_socket_is_supported() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("ferrocorn-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let rx = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
    rx.set_read_timeout(Some(T)).unwrap();
    let at = format!("@{name}");
    let s = Server::start_env(&["-w", "1", "hello:app"], &[("NOTIFY_SOCKET", &at)]);
    let mut buf = [0u8; 1024];
    let mut got = String::new();
    while !got.contains("READY=1") {
        let n = rx
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{e}; log:\n{}", s.log()));
        got = String::from_utf8_lossy(&buf[..n]).into_owned();
    }
}

#[test]
fn watchdog_pings_at_half_the_interval() {
    let mut rx = NotifyRx::new();
    let (k, v) = rx.env();
    let _s = Server::start_env(
        &["-w", "1", "hello:app"],
        &[(k, &v), ("WATCHDOG_USEC", "400000")],
    );
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_secs(2) {
        if let Some((_, m)) = rx.recv(Duration::from_millis(500)) {
            if m.lines().any(|l| l == "WATCHDOG=1") {
                pings += 1;
            }
        }
    }
    // Every 200 ms for 2 s: about 10; insist on a clear majority.
    assert!(pings >= 5, "only {pings} WATCHDOG=1 pings in 2 s");
}

#[test]
fn watchdog_for_another_pid_is_not_ours() {
    let mut rx = NotifyRx::new();
    let (k, v) = rx.env();
    let _s = Server::start_env(
        &["-w", "1", "hello:app"],
        &[(k, &v), ("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")],
    );
    rx.drain(Duration::from_millis(800));
    assert!(
        !rx.seen.iter().any(|(_, m)| m.contains("WATCHDOG=1")),
        "pinged for a watchdog meant for pid 1: {:?}",
        rx.seen
    );
}

#[test]
fn daemon_under_systemd_is_refused() {
    let dir = TempDir::new("daemon-notify");
    let out = run_cli(
        &["-D", "hello:app"],
        &[("NOTIFY_SOCKET", "/run/systemd/notify")],
        dir.path(),
    );
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    let line = out.stderr.trim();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(
        line.contains("--daemon") && line.contains("NOTIFY_SOCKET"),
        "{line}"
    );
}

#[test]
fn systemd_socket_activation_uses_the_socket_as_is() {
    let tool = "/usr/bin/systemd-socket-activate";
    assert!(
        std::path::Path::new(tool).exists(),
        "{tool} is missing: install Debian's systemd package (.ci/run does)"
    );
    let sockdir = TempDir::new("activate");
    let sock = sockdir.join("app.sock");
    let listen = sock.display().to_string();
    let mut s = Server::spawn_with(
        &[tool, "-l", &listen, "--fdname=web"],
        None,
        &["-b", "127.0.0.1:1", "-w", "1", "osenv:app"],
        &[],
    );
    // Socket activation: the first connection starts ferrocorn, and that
    // very request is served from the socket's queue.
    let mut first = None;
    assert!(wait_until(T, || {
        first = std::os::unix::net::UnixStream::connect(&sock).ok();
        first.is_some()
    }));
    let mut first = first.unwrap();
    first.set_read_timeout(Some(T)).unwrap();
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    first.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}; log:\n{}",
        s.log()
    );
    s.wait_ready();
    let log = s.log();
    assert!(
        log.contains("Using 1 inherited socket(s) from systemd (LISTEN_FDS)"),
        "{log}"
    );
    assert_eq!(s.unix.as_deref(), Some(sock.as_path()), "{log}");
    let r = s.connect().request("GET", "/", &[], b"");
    assert_eq!(r.status, 200);
    // The activation variables are the master's, not the app's.
    let env_keys = r.text();
    for var in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
    ] {
        assert!(
            !env_keys.contains(var),
            "{var} leaked to the app: {env_keys}"
        );
    }
    // USR2 hands the activated socket on as it came, name included.
    s.signal(libc::SIGUSR2);
    assert!(
        wait_until(T, || s.log().contains("is serving after")),
        "{}",
        s.log()
    );
    let log = s.log();
    let new: i32 = log
        .split("started new master (pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .expect("successor pid in the log");
    let env = std::fs::read(format!("/proc/{new}/environ")).unwrap_or_default();
    let env = String::from_utf8_lossy(&env);
    assert!(
        env.split('\0').any(|v| v == "LISTEN_FDNAMES=web"),
        "successor environment: {env:?}"
    );
    assert!(
        log.contains("Using 1 inherited socket(s) from the previous master"),
        "{log}"
    );
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(T).is_some());
    let r = Conn::connect_unix(&sock).request("GET", "/", &[], b"");
    assert_eq!(r.status, 200, "the successor serves the activated socket");
    kill(new, libc::SIGTERM);
    assert!(wait_until(T, || !alive(new)));
    assert!(
        sock.exists(),
        "the socket file belongs to systemd and must survive ferrocorn's exit"
    );
}

#[test]
fn gunicorn_fd_listeners_are_adopted_without_rebinding() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let fd = l.as_raw_fd();
    // SAFETY: clearing close-on-exec on our own listener so the child
    // inherits it.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
    }
    let fdv = fd.to_string();
    let s = Server::start_env(&["-w", "1", "hello:app"], &[("GUNICORN_FD", &fdv)]);
    drop(l);
    assert_eq!(s.port, port);
    assert!(s.log().contains("from GUNICORN_FD"), "{}", s.log());
    assert_eq!(get(port, "/").status, 200);
}

#[test]
fn bad_inherited_fd_is_a_one_line_error() {
    let dir = TempDir::new("badfd");
    let out = run_cli(&["hello:app"], &[("GUNICORN_FD", "3,x")], dir.path());
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("GUNICORN_FD"), "{}", out.stderr);
}

#[test]
fn a_socket_listed_twice_is_refused() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = l.as_raw_fd();
    // SAFETY: clearing close-on-exec on our own listener so the child
    // inherits it.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
    }
    let dir = TempDir::new("dupfd");
    let twice = format!("{fd},{fd}");
    let out = run_cli(&["hello:app"], &[("GUNICORN_FD", &twice)], dir.path());
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("GUNICORN_FD") && out.stderr.contains("listed twice"),
        "{}",
        out.stderr
    );
}

#[test]
fn huge_timeouts_do_not_crash_the_master() {
    let mut s = Server::start(&[
        "-w",
        "1",
        "--graceful-timeout",
        "1e300",
        "--timeout",
        "1e300",
        "hello:app",
    ]);
    s.signal(libc::SIGHUP);
    assert!(
        wait_until(T, || s.log().contains("Reload complete")),
        "{}",
        s.log()
    );
    s.signal(libc::SIGTERM);
    let st = s.wait_exit(T).expect("master exits");
    assert!(st.success(), "{st:?}; log:\n{}", s.log());
    assert!(!s.log().contains("internal error"), "{}", s.log());
}
