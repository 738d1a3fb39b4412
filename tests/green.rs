//! The greenlet workers (`-k gevent`, `-k eventlet`) when their library is
//! missing or too old: one error line naming the package and the Python
//! environment, exit code 3 (the boot error), no worker respawned; with
//! `--preload` the master finds it first and says the same. gunicorn's
//! other names for the classes select them too. (Serving is checked with
//! the real libraries by `compat/run.sh --green`, which needs PyPI.)

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;

/// Whether the embedded Python (the system's, without a virtualenv) has
/// `module`: these tests need it not to.
fn system_python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `ferrocorn ARGS` exits 3 within 20 s, and its log has one ERROR line
/// per worker booted, each booted once (no respawn), before "Reason:
/// Worker failed to boot." (with `--preload`, one line in all and no
/// worker), each containing every `needle`.
fn assert_boot_refused(args: &[&str], needles: &[&str], preload: bool) {
    let dir = TempDir::new("green");
    fs::copy(apps_dir().join("hello.py"), dir.join("hello.py")).unwrap();
    let t = Instant::now();
    let out = run_cli(args, &[], dir.path());
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "{args:?} took {:?}",
        t.elapsed()
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code(), Some(3), "{args:?}: {:?}\n{text}", out.status);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("[ERROR]") && !l.contains("Reason: Worker failed to boot"))
        .collect();
    let boots = text.matches("Booting worker").count();
    assert_eq!(
        errors.len(),
        boots.max(1),
        "{args:?}: one error line per worker expected:\n{text}"
    );
    for e in &errors {
        for n in needles {
            assert!(e.contains(n), "{args:?}: {n:?} not in {e:?}");
        }
    }
    assert!(
        !text.contains("Traceback"),
        "{args:?}: a traceback:\n{text}"
    );
    if preload {
        assert!(
            !text.contains("Booting worker"),
            "{args:?}: a worker started:\n{text}"
        );
        assert_eq!(
            text.lines().filter(|l| !l.is_empty()).count(),
            1,
            "{args:?}:\n{text}"
        );
    } else {
        assert!(
            text.contains("Reason: Worker failed to boot."),
            "{args:?}:\n{text}"
        );
        let workers: usize = args
            .iter()
            .position(|a| *a == "-w")
            .and_then(|i| args.get(i + 1))
            .map_or(1, |n| n.parse().unwrap());
        assert!(
            (1..=workers).contains(&boots),
            "{args:?}: a worker was respawned:\n{text}"
        );
    }
}

#[test]
fn missing_gevent_is_one_line_naming_it_and_exit_3() {
    if system_python_has("gevent") {
        println!("SKIPPED: the system Python has gevent installed");
        return;
    }
    for class in [
        "gevent",
        "gevent_pywsgi",
        "gunicorn.workers.ggevent.GeventWorker",
        "egg:gunicorn#gevent",
    ] {
        assert_boot_refused(
            &["-k", class, "-b", "127.0.0.1:0", "hello:app"],
            &["gevent 24.10.1 or newer", "not installed in", "pip install"],
            false,
        );
    }
    assert_boot_refused(
        &[
            "-k",
            "gevent",
            "--preload",
            "-b",
            "127.0.0.1:0",
            "hello:app",
        ],
        &["gevent 24.10.1 or newer", "not installed in"],
        true,
    );
}

#[test]
fn missing_eventlet_is_one_line_naming_it_and_exit_3() {
    if system_python_has("eventlet") {
        println!("SKIPPED: the system Python has eventlet installed");
        return;
    }
    for class in ["eventlet", "gunicorn.workers.geventlet.EventletWorker"] {
        assert_boot_refused(
            &["-k", class, "-w", "2", "-b", "127.0.0.1:0", "hello:app"],
            &["eventlet 0.24.1 or newer", "not installed in"],
            false,
        );
    }
}

#[test]
fn too_old_gevent_names_the_version_found() {
    let old = TempDir::new("oldgevent");
    fs::create_dir_all(old.join("gevent")).unwrap();
    fs::write(old.join("gevent/__init__.py"), "__version__ = '1.4.0'\n").unwrap();
    let path = old.path().to_str().unwrap().to_string();
    assert_boot_refused(
        &[
            "-k",
            "gevent",
            "--pythonpath",
            &path,
            "-b",
            "127.0.0.1:0",
            "hello:app",
        ],
        &["gevent 24.10.1 or newer", "has 1.4.0"],
        false,
    );
}

#[test]
fn unknown_worker_class_lists_the_greenlet_ones() {
    let dir = TempDir::new("greenclass");
    let out = run_cli(&["-k", "geventt", "hello:app"], &[], dir.path());
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("geventt") && line.contains("gevent, eventlet"),
        "{line}"
    );
}
