//! Debugging settings: `--reload` (a changed module, or a file matching
//! --reload-extra-file, restarts the workers, which then serve the new
//! code) and `--spew` (every line of Python, as it runs).

mod common;

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn app(version: &str) -> String {
    format!(
        "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'{version}']\n"
    )
}

/// Time until the server answers `want`, polling.
fn time_until(port: u16, want: &str, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Ok(r) = std::panic::catch_unwind(|| get(port, "/")) {
            if r.text() == want {
                return Some(t.elapsed());
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn a_changed_module_is_served_within_two_seconds() {
    for engine in ["inotify", "poll"] {
        let dir = TempDir::new("reload");
        fs::write(dir.join("reloadapp.py"), app("v1")).unwrap();
        let s = Server::start_in_dir(
            dir.path(),
            &[
                "--reload",
                "--reload-engine",
                engine,
                "-w",
                "2",
                "reloadapp:app",
            ],
        );
        assert_eq!(get(s.port, "/").text(), "v1");
        // Let the watcher take its first look.
        thread::sleep(Duration::from_millis(1200));
        fs::write(dir.join("reloadapp.py"), app("v2")).unwrap();
        let took = time_until(s.port, "v2", Duration::from_secs(10));
        let took = took.unwrap_or_else(|| panic!("{engine}: never served v2; log:\n{}", s.log()));
        assert!(took < Duration::from_secs(2), "{engine}: v2 after {took:?}");
        assert!(s.log().contains("Worker reloading:"), "{}", s.log());
        assert!(s.log().contains("reloadapp.py modified"), "{}", s.log());
        // As gunicorn 27, each worker says so at boot.
        assert!(
            s.log()
                .matches("[WARNING] Reloader is on. Use in development only!")
                .count()
                >= 3,
            "{}",
            s.log()
        );
    }
}

#[test]
fn an_extra_file_pattern_triggers_a_reload() {
    let dir = TempDir::new("reload-extra");
    fs::create_dir_all(dir.join("templates/sub")).unwrap();
    fs::write(dir.join("templates/sub/page.html"), "one").unwrap();
    let code = "import os\ndef app(environ, start_response):\n    start_response('200 OK', [])\n    return [open(os.path.join(os.path.dirname(__file__), 'templates/sub/page.html'), 'rb').read() + b' ' + str(os.getpid()).encode()]\n";
    fs::write(dir.join("tplapp.py"), code).unwrap();
    let pattern = format!("{}/templates/**/*.html", dir.path().display());
    let s = Server::start_in_dir(
        dir.path(),
        &[
            "--reload",
            "--reload-extra-file",
            &pattern,
            "-w",
            "1",
            "tplapp:app",
        ],
    );
    let first = get(s.port, "/").text();
    thread::sleep(Duration::from_millis(1200));
    fs::write(dir.join("templates/sub/page.html"), "two").unwrap();
    let t = Instant::now();
    loop {
        let now = get(s.port, "/").text();
        // A new worker (new pid), not just the new file read by the old one.
        if now.starts_with("two ") && now.split(' ').nth(1) != first.split(' ').nth(1) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no reload; log:\n{}",
            s.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(s.log().contains("page.html modified"), "{}", s.log());
}

#[test]
fn a_bad_reload_engine_is_refused() {
    let dir = TempDir::new("reload-bad");
    let out = run_cli(&["--reload-engine", "magic", "x:app"], &[], dir.path());
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("--reload-engine") && out.stderr.contains("magic"),
        "{}",
        out.stderr
    );
}

#[test]
fn spew_prints_every_line_the_app_runs() {
    for class in ["sync", "gthread"] {
        let dir = TempDir::new("spew");
        let code = "def app(environ, start_response):\n    marker = 'spewed line'\n    start_response('200 OK', [])\n    return [b'ok']\n";
        fs::write(dir.join("spewapp.py"), code).unwrap();
        let s = Server::start_in_dir(dir.path(), &["--spew", "-k", class, "spewapp:app"]);
        assert_eq!(get(s.port, "/").text(), "ok");
        let t = Instant::now();
        while !s.log().contains("spewapp:2:     marker = 'spewed line'") {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{class}: no spew; log:\n{}",
                s.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        assert!(
            s.log()
                .contains("spewapp:3:     start_response('200 OK', [])"),
            "{}",
            s.log()
        );
    }
}
