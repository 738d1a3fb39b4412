//! Processes seen through /proc (state, parent, process group), sending
//! signals, and `wait_until`, the bounded poll every wait in the harness
//! is built on; `assert_two_way_spread` for requests or connections counted
//! per worker.

use std::fs;
use std::time::{Duration, Instant};

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

/// Assert that what was counted per worker (by pid, say) landed on
/// exactly two workers, each with a count in `each`.
pub fn assert_two_way_spread(
    per_worker: &std::collections::HashMap<String, usize>,
    each: std::ops::RangeInclusive<usize>,
) {
    assert_eq!(
        per_worker.len(),
        2,
        "not two workers in the spread: {per_worker:?}"
    );
    assert!(
        per_worker.values().all(|n| each.contains(n)),
        "uneven spread (each should be in {each:?}): {per_worker:?}"
    );
}
