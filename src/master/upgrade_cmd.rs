//! `ferrocorn upgrade --pidfile FILE`: the operator's side of a binary
//! upgrade, in one command. It sends USR2 to the master named in the
//! pidfile, waits for the new master's acknowledgement (it writes
//! `<pidfile>.2` only once its workers serve), then sends TERM to the old
//! master and waits until the new one has taken the pidfile over. Under
//! systemd the old master hands `MAINPID=` to the new one on its way out.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use thiserror::Error;

use crate::sys::process_running as alive;

#[derive(Debug, Error)]
pub enum UpgradeError {
    #[error("{0}\nusage: ferrocorn upgrade --pidfile FILE [--timeout SECONDS]")]
    Usage(String),
    #[error("pidfile {path}: {reason}")]
    Pidfile { path: PathBuf, reason: String },
    #[error("master {pid} (from {path}) is not running")]
    NotRunning { pid: i32, path: PathBuf },
    #[error("an upgrade is already under way: {path} names the live master {pid}")]
    Pending { pid: i32, path: PathBuf },
    #[error("cannot signal master {pid}: {source}")]
    Signal { pid: i32, source: nix::Error },
    #[error("the new master did not report ready within {0}s (see the error log: the master ignores USR2 during a reload or a pending upgrade); master {1} keeps serving")]
    NotReady(u64, i32),
    #[error("master {0} exited during the upgrade")]
    MasterGone(i32),
    #[error("the new master{} exited before it was ready (see the error log); master {old} keeps serving", new.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Failed { new: Option<i32>, old: i32 },
    #[error("master {old} did not exit within {secs}s after TERM; new master {new} is serving")]
    OldStays { old: i32, new: i32, secs: u64 },
}

pub const HELP: &str = "usage: ferrocorn upgrade --pidfile FILE [--timeout SECONDS]

Replace a running ferrocorn master with the binary now installed at the
path it was started from, without dropping a request: USR2 to the master
in FILE, wait until the new master serves (it writes FILE.2), then TERM
the old master and wait until the new one owns FILE.

  --pidfile FILE     the master's --pid file (required)
  --timeout SECONDS  how long to wait for each step (default 90); a new
                     master that starts and then exits before it is ready
                     is reported as soon as it exits
";

struct Opts {
    pidfile: PathBuf,
    timeout: Duration,
}

fn parse(args: &[OsString]) -> Result<Option<Opts>, UpgradeError> {
    let mut pidfile = None;
    let mut timeout = Duration::from_secs(90);
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| UpgradeError::Usage(format!("{name} needs a value")))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--pidfile" | "--pid" | "-p" => pidfile = Some(PathBuf::from(value("--pidfile")?)),
            "--timeout" => {
                let v = value("--timeout")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| {
                        UpgradeError::Usage(format!("invalid value '{v}' for --timeout"))
                    })?;
                timeout = crate::config::seconds(secs);
            }
            other => {
                return Err(UpgradeError::Usage(format!(
                    "unexpected argument '{other}'"
                )))
            }
        }
    }
    let pidfile = pidfile.ok_or_else(|| UpgradeError::Usage("--pidfile is required".into()))?;
    Ok(Some(Opts { pidfile, timeout }))
}

fn read_pid(path: &Path) -> Result<i32, UpgradeError> {
    let text = std::fs::read_to_string(path).map_err(|e| UpgradeError::Pidfile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| UpgradeError::Pidfile {
            path: path.to_path_buf(),
            reason: format!("'{}' is not a pid", text.trim()),
        })
}

/// The successor `master` started: its child whose environment (as
/// exec'd) carries the upgrade link and `LISTEN_PID` naming itself. A
/// forked worker shares its master's environment, so it never matches.
fn successor_of(master: i32) -> Option<i32> {
    let dir = std::fs::read_dir("/proc").ok()?;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid != Some(master) {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let mut link = false;
        let mut own = false;
        for var in env.split(|&b| b == 0) {
            link |= var.starts_with(crate::sys::UPGRADE_FD_ENV.as_bytes());
            own |= var == format!("LISTEN_PID={pid}").as_bytes();
        }
        if link && own {
            return Some(pid);
        }
    }
    None
}

/// Run the upgrade; returns the line to print on success.
pub fn run(args: &[OsString]) -> Result<Option<String>, UpgradeError> {
    let Some(opts) = parse(args)? else {
        return Ok(None);
    };
    let path = &opts.pidfile;
    let mut p2 = path.as_os_str().to_owned();
    p2.push(".2");
    let p2 = PathBuf::from(p2);
    let old = read_pid(path)?;
    if !alive(old) {
        return Err(UpgradeError::NotRunning {
            pid: old,
            path: path.clone(),
        });
    }
    if let Ok(pending) = read_pid(&p2) {
        if pending != old && alive(pending) {
            return Err(UpgradeError::Pending {
                pid: pending,
                path: p2,
            });
        }
        // Left over from an upgrade that ended badly: not an answer.
        let _ = std::fs::remove_file(&p2);
    }
    let failed = super::pidfile::pidfile_failed(path);
    // An earlier upgrade's verdict is not this one's.
    let _ = std::fs::remove_file(&failed);
    kill(Pid::from_raw(old), Signal::SIGUSR2)
        .map_err(|source| UpgradeError::Signal { pid: old, source })?;
    let secs = opts.timeout.as_secs();
    let until = Instant::now() + opts.timeout;
    let mut seen = None;
    let new = loop {
        if let Ok(pid) = read_pid(&p2) {
            if pid != old && alive(pid) {
                break pid;
            }
        }
        // The old master's verdict on a new master that died before it
        // was ready (which this loop may never have seen alive).
        if let Ok(pid) = read_pid(&failed) {
            return Err(UpgradeError::Failed {
                new: Some(pid),
                old,
            });
        }
        if !alive(old) {
            return Err(UpgradeError::MasterGone(old));
        }
        match seen {
            None => seen = successor_of(old),
            // Gone, whether or not it wrote <pidfile>.2 first: either way
            // it is not serving.
            Some(pid) if !alive(pid) => {
                return Err(UpgradeError::Failed {
                    new: Some(pid),
                    old,
                })
            }
            Some(_) => {}
        }
        if Instant::now() >= until {
            return Err(UpgradeError::NotReady(secs, old));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    kill(Pid::from_raw(old), Signal::SIGTERM)
        .map_err(|source| UpgradeError::Signal { pid: old, source })?;
    let until = Instant::now() + opts.timeout;
    loop {
        let promoted = read_pid(path).is_ok_and(|p| p == new);
        if promoted && !alive(old) {
            return Ok(Some(format!("upgraded: master {old} -> {new}")));
        }
        if Instant::now() >= until {
            return Err(UpgradeError::OldStays { old, new, secs });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
