//! ferrocorn as PID 1, as in a container (the README's Dockerfile): run
//! as the first process of a new PID namespace (`unshare --pid --fork
//! --mount-proc`), it reaps the app's orphaned grandchildren, which the
//! kernel hands to PID 1, and drains in-flight requests on SIGTERM (what
//! `docker stop` sends). Skipped, with one line saying so, where unshare
//! may not create a PID namespace.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(20);
const UNSHARE: &[&str] = &["unshare", "--pid", "--fork", "--mount-proc"];

/// Whether this machine lets us make a PID namespace.
fn unshare_permitted() -> bool {
    std::process::Command::new(UNSHARE[0])
        .args(&UNSHARE[1..])
        .arg("true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The command name of `pid` (`/proc/PID/comm`).
fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `pid`'s pid in each namespace it is in, outermost first (`NSpid`).
fn ns_pids(pid: i32) -> Vec<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Children of `parent` named `name`, zombies included.
fn children_named(parent: i32, name: &str) -> Vec<i32> {
    all_procs()
        .into_iter()
        .filter(|p| p.ppid == parent && comm(p.pid) == name)
        .map(|p| p.pid)
        .collect()
}

#[test]
fn as_pid_1_it_reaps_orphans_and_drains_on_term() {
    if !unshare_permitted() {
        eprintln!("SKIPPED pid1: `unshare --pid --fork --mount-proc` is not permitted here");
        return;
    }
    let mut s = Server::spawn_with(UNSHARE, None, &["-w", "2", "pid1:app"], &[]);
    s.wait_ready();
    // `s.pid` is unshare's; its only child is the master, PID 1 inside.
    let mut master = 0;
    assert!(
        wait_until(T, || {
            master = all_procs()
                .into_iter()
                .find(|p| p.ppid == s.pid)
                .map_or(0, |p| p.pid);
            master != 0
        }),
        "no master under unshare; log:\n{}",
        s.log()
    );
    assert_eq!(
        ns_pids(master).last(),
        Some(&1),
        "the master is not PID 1 of its namespace; log:\n{}",
        s.log()
    );

    // The app's grandchild outlives its parent: the kernel makes it PID
    // 1's child, which must reap it once it exits (no zombie left).
    let r = s.connect().request("GET", "/orphan?sleep=1", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let mut orphans = Vec::new();
    assert!(
        wait_until(T, || {
            orphans = children_named(master, "sleep");
            !orphans.is_empty()
        }),
        "the orphaned sleep was not handed to the master; log:\n{}",
        s.log()
    );
    assert!(
        wait_until(T, || children_named(master, "sleep").is_empty()),
        "the orphan {orphans:?} was not reaped (state {:?}); log:\n{}",
        orphans.iter().map(|p| proc_stat(*p)).collect::<Vec<_>>(),
        s.log()
    );

    // SIGTERM, as `docker stop` sends it to PID 1: the request in flight
    // is answered, then everything exits 0.
    let port = s.port;
    let slow =
        std::thread::spawn(move || Conn::connect(port).request("GET", "/slow?sleep=1.5", &[], b""));
    // Well inside the 1.5 s the request takes.
    std::thread::sleep(Duration::from_millis(400));
    assert!(kill(master, libc::SIGTERM), "kill master {master}");
    let r = slow.join().expect("the slow request's thread");
    assert_eq!(r.status, 200, "{}; log:\n{}", r.text(), s.log());
    assert_eq!(r.text(), "slept 1.5\n");
    let st = s.wait_exit(T).expect("ferrocorn as PID 1 exits after TERM");
    let log = s.log();
    assert!(st.success(), "exit {st}; log:\n{log}");
    assert!(log.contains("Handling signal: term"), "{log}");
    assert!(log.contains("Shutting down: Master"), "{log}");
}
