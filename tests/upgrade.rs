//! Reloads and binary upgrades under load: HUP, USR2 followed by TERM of
//! the old master, a failed upgrade, rollback, and `ferrocorn upgrade`.
//! Each load run keeps 100 clients busy (half keep-alive, half a new
//! connection per request) plus long requests, and must see zero failures.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

/// The app whose answer names its version; `/slow?S` sleeps S seconds.
fn write_app(dir: &Path, version: &str, import_error: bool) {
    let broken = if import_error {
        "raise RuntimeError('this version cannot start')\n"
    } else {
        ""
    };
    let src = format!(
        "import time\n{broken}VERSION = {version:?}\n\n\
         def app(environ, start_response):\n    \
         if environ['PATH_INFO'] == '/slow':\n        \
         time.sleep(float(environ.get('QUERY_STRING') or '1'))\n    \
         body = VERSION.encode()\n    \
         start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])\n    \
         return [body]\n"
    );
    std::fs::write(dir.join("versioned.py"), src).unwrap();
}

struct Setup {
    apps: TempDir,
    pidfile: PathBuf,
    server: Server,
}

fn start(extra: &[&str], env: &[(&str, &str)]) -> Setup {
    let apps = TempDir::new("versioned");
    write_app(apps.path(), "v1", false);
    let pidfile = apps.join("master.pid");
    let pid_arg = pidfile.display().to_string();
    let mut args = vec!["-w", "4", "-p", &pid_arg, "--graceful-timeout", "20"];
    args.extend_from_slice(extra);
    args.push("versioned:app");
    let mut server = Server::spawn_with(&[], Some(apps.path()), &args, env);
    server.wait_ready();
    // Ready means every worker has imported the app (tests rewrite it).
    assert!(
        wait_until(T, || server.log().contains("Ready: 4 workers serving")),
        "{}",
        server.log()
    );
    Setup {
        apps,
        pidfile,
        server,
    }
}

fn read_pid(p: &Path) -> Option<i32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn pidfile2(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}.2", p.display()))
}

fn assert_clean(summary: &Json, what: &str) {
    let failed = summary["failed"].as_u64().unwrap_or(u64::MAX);
    let slow_failed = summary["slow_failed"].as_u64().unwrap_or(u64::MAX);
    assert!(
        failed == 0 && slow_failed == 0,
        "{what}: requests failed: {summary:?}"
    );
    assert!(
        summary["ok"].as_u64().unwrap_or(0) > 500,
        "{what}: too little load to prove anything: {summary:?}"
    );
    assert!(
        summary["slow_ok"].as_u64().unwrap_or(0) >= 2,
        "{what}: long requests did not complete: {summary:?}"
    );
}

fn body_count(summary: &Json, body: &str) -> u64 {
    summary["bodies"][body].as_u64().unwrap_or(0)
}

fn master_log(setup: &Setup) -> String {
    setup.server.log()
}

#[test]
fn hup_under_load_switches_versions_without_a_failed_request() {
    let mut rx = NotifyRx::new();
    let (k, v) = rx.env();
    let mut st = start(&[], &[(k, &v)]);
    rx.wait_for(T, |_, m| m.contains("READY=1"))
        .expect("READY=1");
    let load = Load::start(st.server.port, 100, 4, "/slow?1");
    std::thread::sleep(Duration::from_millis(700));
    write_app(st.apps.path(), "v2", false);
    st.server.signal(libc::SIGHUP);
    rx.wait_for(T, |_, m| m.contains("READY=1"))
        .expect("READY=1 after HUP");
    std::thread::sleep(Duration::from_millis(1500));
    let summary = load.finish();
    assert_clean(&summary, "HUP");
    assert!(
        body_count(&summary, "v1") > 0 && body_count(&summary, "v2") > 0,
        "{summary:?}"
    );
    assert_eq!(get(st.server.port, "/").text(), "v2");
    st.server.signal(libc::SIGTERM);
    assert!(st.server.wait_exit(T).is_some());
}

#[test]
fn usr2_then_term_old_master_hands_over_under_load() {
    let mut rx = NotifyRx::new();
    let (k, v) = rx.env();
    let mut st = start(&[], &[(k, &v)]);
    let old = st.server.pid;
    rx.wait_for(T, |_, m| m.contains("READY=1"))
        .expect("READY=1");
    assert_eq!(read_pid(&st.pidfile), Some(old));
    let load = Load::start(st.server.port, 100, 4, "/slow?1");
    std::thread::sleep(Duration::from_millis(700));
    write_app(st.apps.path(), "v2", false);

    st.server.signal(libc::SIGUSR2);
    // The new master acknowledges readiness: <pidfile>.2 appears only once
    // its workers serve, and the old master logs it.
    let p2 = pidfile2(&st.pidfile);
    assert!(
        wait_until(T, || read_pid(&p2).is_some_and(|p| p != old)),
        "no {}; log:\n{}",
        p2.display(),
        master_log(&st)
    );
    let new = read_pid(&p2).unwrap();
    assert!(wait_until(T, || master_log(&st).contains("is serving after")));
    let title = std::fs::read_to_string(format!("/proc/{new}/cmdline")).unwrap_or_default();
    assert!(title.contains("(upgrading)"), "successor title: {title:?}");
    // A second USR2 while one is pending is ignored.
    st.server.signal(libc::SIGUSR2);
    assert!(wait_until(T, || master_log(&st).contains("USR2 ignored")));
    std::thread::sleep(Duration::from_millis(500));

    st.server.signal(libc::SIGTERM);
    assert!(st.server.wait_exit(T).is_some_and(|s| s.success()));
    assert!(
        wait_until(T, || read_pid(&st.pidfile) == Some(new)),
        "the new master did not take the pidfile; log:\n{}",
        master_log(&st)
    );
    assert!(!p2.exists(), "<pidfile>.2 should be renamed away");
    assert!(wait_until(T, || {
        let t = std::fs::read_to_string(format!("/proc/{new}/cmdline")).unwrap_or_default();
        t.contains("master") && !t.contains("upgrading")
    }));
    std::thread::sleep(Duration::from_millis(1000));
    let summary = load.finish();
    assert_clean(&summary, "USR2 + TERM");
    assert!(
        body_count(&summary, "v1") > 0 && body_count(&summary, "v2") > 0,
        "{summary:?}"
    );
    assert_eq!(get(st.server.port, "/").text(), "v2");

    // systemd heard, in order: ready (old), MAINPID=new from the old
    // master, then the new master's READY=1 once promoted.
    rx.wait_for(T, |p, m| p == new && m.contains("READY=1"))
        .expect("READY=1 from the promoted master");
    let handover = rx
        .seen
        .iter()
        .find(|(_, m)| m.contains("MAINPID="))
        .cloned()
        .expect("MAINPID= sent");
    assert_eq!(
        handover.0, old,
        "MAINPID= must come from the old (main) master"
    );
    assert!(
        handover.1.contains(&format!("MAINPID={new}")),
        "{handover:?}"
    );
    assert!(
        !rx.seen
            .iter()
            .any(|(p, m)| *p == old && m.contains("STOPPING=1")),
        "the old master must not tell systemd the service stops: {:?}",
        rx.seen
    );
    let hand = rx
        .seen
        .iter()
        .position(|(_, m)| m.contains("MAINPID="))
        .unwrap();
    assert!(
        rx.seen[..hand].iter().all(|(p, _)| *p != new),
        "the successor spoke to systemd before it was promoted: {:?}",
        rx.seen
    );

    // The promoted master is an ordinary master: it stops on TERM.
    kill(new, libc::SIGTERM);
    assert!(
        wait_until(T, || !alive(new)),
        "promoted master did not stop"
    );
    assert!(
        !st.pidfile.exists(),
        "pidfile left behind by the promoted master"
    );
}

#[test]
fn failed_upgrade_leaves_the_old_master_serving() {
    let mut st = start(&[], &[]);
    let old = st.server.pid;
    let load = Load::start(st.server.port, 100, 4, "/slow?1");
    std::thread::sleep(Duration::from_millis(500));
    write_app(st.apps.path(), "v2", true);
    st.server.signal(libc::SIGUSR2);
    assert!(
        wait_until(T, || master_log(&st).contains("Upgrade failed")),
        "{}",
        master_log(&st)
    );
    assert!(!pidfile2(&st.pidfile).exists());
    // The verdict `ferrocorn upgrade` reads: the failed new master's pid.
    let mut failed = st.pidfile.as_os_str().to_owned();
    failed.push(".failed");
    let named = read_pid(std::path::Path::new(&failed));
    assert!(
        named.is_some_and(|p| p != old),
        "{failed:?} names {named:?}"
    );
    std::thread::sleep(Duration::from_millis(700));
    let summary = load.finish();
    assert_clean(&summary, "failed upgrade");
    assert_eq!(body_count(&summary, "v2"), 0, "{summary:?}");
    assert_eq!(read_pid(&st.pidfile), Some(old));
    assert_eq!(get(st.server.port, "/").text(), "v1");
    assert_eq!(st.server.worker_pids().len(), 4);
    // The failed attempt is over: a fixed app upgrades normally.
    write_app(st.apps.path(), "v3", false);
    st.server.signal(libc::SIGUSR2);
    assert!(wait_until(T, || read_pid(&pidfile2(&st.pidfile)).is_some()));
    st.server.signal(libc::SIGTERM);
    assert!(st.server.wait_exit(T).is_some());
    assert!(wait_until(T, || get(st.server.port, "/").text() == "v3"));
}

#[test]
fn winch_then_rollback_to_the_old_master() {
    let st = start(&[], &[]);
    let old = st.server.pid;
    st.server.signal(libc::SIGUSR2);
    let p2 = pidfile2(&st.pidfile);
    assert!(wait_until(T, || read_pid(&p2).is_some()));
    let new = read_pid(&p2).unwrap();
    // The successor writes its pidfile just before it says READY; WINCH
    // counts only once the old master has heard that (before, it is
    // ignored, and says so).
    let serving = format!("Upgrade: new master (pid {new}) is serving");
    assert!(wait_until(T, || st.server.log().contains(&serving)));
    // WINCH: the old master keeps only itself (not daemonized: allowed
    // because a successor exists).
    st.server.signal(libc::SIGWINCH);
    assert!(
        wait_until(T, || all_procs()
            .iter()
            .filter(|p| p.ppid == old && p.pid != new && p.state != 'Z')
            .count()
            == 0),
        "old workers still running; log:\n{}",
        master_log(&st)
    );
    assert_eq!(get(st.server.port, "/").status, 200);
    // Rollback: HUP the old master (workers again), TERM the new one.
    st.server.signal(libc::SIGHUP);
    assert!(wait_until(T, || all_procs()
        .iter()
        .filter(|p| p.ppid == old && p.pid != new && p.state != 'Z')
        .count()
        == 4));
    kill(new, libc::SIGTERM);
    assert!(wait_until(T, || !alive(new)));
    assert!(wait_until(T, || master_log(&st)
        .contains("this master is the only one again")));
    assert!(
        !p2.exists(),
        "the retired successor must remove <pidfile>.2"
    );
    assert_eq!(read_pid(&st.pidfile), Some(old));
    assert_eq!(get(st.server.port, "/").status, 200);
}

#[test]
fn upgrade_command_performs_the_whole_handover_twice() {
    let mut st = start(&[], &[]);
    let first = st.server.pid;
    let pidfile = st.pidfile.display().to_string();
    let out = run_cli(&["upgrade", "--pidfile", &pidfile], &[], st.apps.path());
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    let second = read_pid(&st.pidfile).expect("pidfile after upgrade");
    assert_ne!(second, first);
    assert!(
        out.stdout.contains(&format!("master {first} -> {second}")),
        "{}",
        out.stdout
    );
    assert!(st.server.wait_exit(T).is_some());
    assert_eq!(get(st.server.port, "/").status, 200);
    // The promoted master can itself be upgraded.
    let out = run_cli(&["upgrade", "--pidfile", &pidfile], &[], st.apps.path());
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    let third = read_pid(&st.pidfile).expect("pidfile after the second upgrade");
    assert!(third != second && alive(third));
    assert!(wait_until(T, || !alive(second)));
    assert_eq!(get(st.server.port, "/").status, 200);
    kill(third, libc::SIGTERM);
    assert!(wait_until(T, || !alive(third)));
}

#[test]
fn upgrade_command_errors_are_one_line() {
    let dir = TempDir::new("upgrade-cli");
    let out = run_cli(&["upgrade"], &[], dir.path());
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("--pidfile is required"),
        "{}",
        out.stderr
    );
    let missing = dir.join("none.pid").display().to_string();
    let out = run_cli(&["upgrade", "--pidfile", &missing], &[], dir.path());
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("none.pid"), "{}", out.stderr);
}

#[test]
fn failed_upgrade_command_reports_and_keeps_the_old_master() {
    let mut st = start(&[], &[]);
    let old = st.server.pid;
    write_app(st.apps.path(), "v2", true);
    let pidfile = st.pidfile.display().to_string();
    let out = run_cli(
        &["upgrade", "--pidfile", &pidfile, "--timeout", "25"],
        &[],
        st.apps.path(),
    );
    assert_eq!(out.code(), Some(1), "{}{}", out.stdout, out.stderr);
    // Recognised as soon as the new master exits, not at the timeout.
    assert!(
        out.stderr.contains("exited before it was ready") && out.stderr.contains("keeps serving"),
        "{}",
        out.stderr
    );
    assert!(st.server.exited().is_none());
    assert_eq!(read_pid(&st.pidfile), Some(old));
    assert_eq!(get(st.server.port, "/").text(), "v1");
}

#[test]
fn unix_socket_survives_the_handover() {
    let sockdir = TempDir::new("upgrade-unix");
    let sock = sockdir.join("s.sock");
    let bind = format!("unix:{}", sock.display());
    let mut st = start(&["-b", &bind], &[]);
    let pidfile = st.pidfile.display().to_string();
    let out = run_cli(&["upgrade", "--pidfile", &pidfile], &[], st.apps.path());
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(st.server.wait_exit(T).is_some());
    assert!(
        sock.exists(),
        "the old master unlinked the socket the new one serves"
    );
    let r = Conn::connect_unix(&sock).request("GET", "/", &[], b"");
    assert_eq!(r.status, 200);
    let new = read_pid(&st.pidfile).unwrap();
    kill(new, libc::SIGTERM);
    assert!(wait_until(T, || !alive(new)));
}

#[test]
fn reload_of_the_old_master_keeps_the_socket_the_successor_serves() {
    let apps = TempDir::new("versioned-bind");
    write_app(apps.path(), "v1", false);
    let a = apps.join("a.sock");
    let b = apps.join("b.sock");
    let cfg = apps.join("cfg.toml");
    std::fs::write(
        &cfg,
        format!("bind = [\"unix:{}\"]\nworkers = 1\n", a.display()),
    )
    .unwrap();
    let pidfile = apps.join("m.pid");
    let (c, p) = (cfg.display().to_string(), pidfile.display().to_string());
    let mut s = Server::spawn_opts(
        &[],
        Some(apps.path()),
        &["-c", &c, "-p", &p, "versioned:app"],
        &[],
        false,
    );
    s.wait_ready();
    assert!(wait_until(T, || s
        .log()
        .contains("Ready: 1 workers serving")));
    s.signal(libc::SIGUSR2);
    assert!(wait_until(T, || read_pid(&pidfile2(&pidfile)).is_some()));
    // The old master moves to another address; the one it handed over
    // stays, because the successor serves it.
    std::fs::write(
        &cfg,
        format!("bind = [\"unix:{}\"]\nworkers = 1\n", b.display()),
    )
    .unwrap();
    s.signal(libc::SIGHUP);
    assert!(
        wait_until(T, || s.log().contains("Reload complete")),
        "{}",
        s.log()
    );
    assert!(b.exists());
    assert!(a.exists(), "the old master unlinked the successor's socket");
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(T).is_some());
    let r = Conn::connect_unix(&a).request("GET", "/", &[], b"");
    assert_eq!(r.status, 200);
    let new = read_pid(&pidfile).expect("promoted");
    kill(new, libc::SIGTERM);
    assert!(wait_until(T, || !alive(new)));
}
