//! Python config files and gunicorn's server hooks: the file's settings
//! and `os.environ` changes, every hook in the right process at the right
//! moment with the right arguments (master-side ones in the config host,
//! never in the master or a worker; worker-side ones in the worker
//! concerned), hook failures, and config-file errors.

mod common;

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const APP: &str = r#"
import os
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("FROM_CONF=%s pid=%s" % (os.environ.get("FROM_CONF"), os.getpid())).encode()]
"#;

/// A config file that records every hook call as a JSON line in
/// `hooks.jsonl`: the hook, the pid it ran in, and its arguments.
const RECORDING_CONF: &str = r#"
import json, os
workers = "2"
os.environ["FROM_CONF"] = "set at the top of the file"
_LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks.jsonl")

def _rec(hook, **kw):
    kw["hook"] = hook
    kw["in_pid"] = os.getpid()
    with open(_LOG, "a") as f:
        f.write(json.dumps(kw, default=str) + "\n")

def _srv(s):
    return {"pid": s.pid, "num_workers": s.num_workers, "workers_cfg": s.cfg.workers,
            "has_log": all(hasattr(s.log, m) for m in ("debug", "info", "warning", "error", "exception", "critical"))}

def _wrk(w):
    return {"pid": w.pid, "ppid": w.ppid, "age": w.age, "alive": w.alive}

def on_starting(server): _rec("on_starting", server=_srv(server))
def when_ready(server): _rec("when_ready", server=_srv(server)); server.log.info("when_ready says hello")
def on_reload(server): _rec("on_reload", server=_srv(server))
def pre_fork(server, worker): _rec("pre_fork", server=_srv(server), worker=_wrk(worker))
def post_fork(server, worker): _rec("post_fork", server=_srv(server), worker=_wrk(worker))
def post_worker_init(worker): _rec("post_worker_init", worker=_wrk(worker))
def child_exit(server, worker): _rec("child_exit", server=_srv(server), worker=_wrk(worker))
def worker_exit(server, worker): _rec("worker_exit", worker=_wrk(worker))
def nworkers_changed(server, new_value, old_value): _rec("nworkers_changed", new=new_value, old=old_value)
def on_exit(server): _rec("on_exit", server=_srv(server))
"#;

fn calls(dir: &Path) -> Vec<Json> {
    fs::read_to_string(dir.join("hooks.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| Json::parse(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn of<'a>(calls: &'a [Json], hook: &str) -> Vec<&'a Json> {
    calls
        .iter()
        .filter(|c| c["hook"].str() == Some(hook))
        .collect()
}

fn wait_for(what: &str, s: &Server, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            s.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Start ferrocorn with `-c DIR/gunicorn.conf.py ARGS`, the app in DIR,
/// without waiting.
fn spawn_with_conf(dir: &TempDir, args: &[&str]) -> Server {
    let conf = dir.join("gunicorn.conf.py");
    let mut all = vec!["-c", conf.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    Server::spawn_in(None, &[], Some(dir.path()), &all, &[], true)
}

fn app_dir(conf: &str) -> TempDir {
    let dir = TempDir::new("hooks");
    fs::write(dir.join("hookapp.py"), APP).unwrap();
    fs::write(dir.join("gunicorn.conf.py"), conf).unwrap();
    dir
}

#[test]
fn every_hook_runs_in_the_right_process_with_the_right_arguments() {
    let dir = app_dir(RECORDING_CONF);
    let mut s = spawn_with_conf(&dir, &["hookapp:app"]);
    s.wait_ready();
    let master = s.pid as u64;
    let first = s.wait_workers(2, Duration::from_secs(20));
    // The file's os.environ change reaches the app.
    let r = get(s.port, "/");
    assert!(
        r.text().contains("FROM_CONF=set at the top of the file"),
        "{}",
        r.text()
    );

    s.signal(libc::SIGTTIN);
    s.wait_workers(3, Duration::from_secs(20));
    s.signal(libc::SIGTTOU);
    wait_for("two workers after TTOU", &s, || s.worker_pids().len() == 2);
    s.signal(libc::SIGHUP);
    wait_for("the reload", &s, || s.log().contains("Reload complete"));
    wait_for("the old generation to go", &s, || {
        let now = s.worker_pids();
        now.len() == 2 && now.iter().all(|p| !first.contains(p))
    });
    let victim = s.worker_pids()[0];
    unsafe { libc::kill(victim, libc::SIGKILL) };
    wait_for("a replacement worker", &s, || {
        let now = s.worker_pids();
        now.len() == 2 && !now.contains(&victim)
    });
    thread::sleep(Duration::from_millis(300));
    s.signal(libc::SIGTERM);
    assert!(
        s.wait_exit(Duration::from_secs(20)).is_some(),
        "log:\n{}",
        s.log()
    );

    let c = calls(dir.path());
    let log = s.log();
    assert!(
        log.contains("when_ready says hello"),
        "server.log reaches the error log:\n{log}"
    );
    // Master-side hooks: once per event, all in one process that is
    // neither the master nor a worker.
    let master_side = [
        "on_starting",
        "when_ready",
        "on_reload",
        "pre_fork",
        "child_exit",
        "nworkers_changed",
        "on_exit",
    ];
    let workers: Vec<u64> = of(&c, "post_fork")
        .iter()
        .map(|p| p["in_pid"].as_u64().unwrap())
        .collect();
    let host = of(&c, "on_starting")[0]["in_pid"].as_u64().unwrap();
    assert_ne!(host, master);
    assert!(!workers.contains(&host));
    for call in &c {
        if master_side.contains(&call["hook"].str().unwrap()) {
            assert_eq!(call["in_pid"].as_u64(), Some(host), "{call:?}");
        }
    }
    for hook in ["on_starting", "when_ready", "on_reload", "on_exit"] {
        assert_eq!(of(&c, hook).len(), 1, "{hook}: {c:?}");
    }
    assert_eq!(
        of(&c, "on_starting")[0]["server"]["pid"].as_u64(),
        Some(master)
    );
    assert_eq!(
        of(&c, "on_starting")[0]["server"]["workers_cfg"].as_u64(),
        Some(2)
    );
    assert_eq!(
        of(&c, "when_ready")[0]["server"]["has_log"].as_bool(),
        Some(true)
    );
    // 2 at start, 1 on TTIN, 2 on HUP, 1 after the kill.
    assert_eq!(workers.len(), 6, "{c:?}");
    assert_eq!(of(&c, "pre_fork").len(), 6, "{c:?}");
    for p in of(&c, "pre_fork") {
        assert_eq!(p["worker"]["pid"].str(), Some("[booting]"));
    }
    // Worker-side hooks run in the worker concerned.
    for hook in ["post_fork", "post_worker_init", "worker_exit"] {
        for call in of(&c, hook) {
            assert_eq!(
                call["worker"]["pid"].as_u64(),
                call["in_pid"].as_u64(),
                "{call:?}"
            );
            assert_eq!(call["worker"]["ppid"].as_u64(), Some(master), "{call:?}");
        }
    }
    assert_eq!(of(&c, "post_worker_init").len(), 6);
    // Every worker but the killed one says goodbye itself.
    assert_eq!(of(&c, "worker_exit").len(), 5, "{c:?}");
    assert!(of(&c, "worker_exit")
        .iter()
        .all(|w| w["worker"]["pid"].as_u64() != Some(victim as u64)));
    // child_exit once per worker that ended, the killed one included.
    let mut exited: Vec<u64> = of(&c, "child_exit")
        .iter()
        .map(|w| w["worker"]["pid"].as_u64().unwrap())
        .collect();
    exited.sort();
    let mut all = workers.clone();
    all.sort();
    assert_eq!(exited, all);
    // As gunicorn: the first count at start (old: None), TTIN, TTOU, and
    // the reloaded count on HUP (even when unchanged).
    let changed: Vec<(u64, Option<u64>)> = of(&c, "nworkers_changed")
        .iter()
        .map(|n| (n["new"].as_u64().unwrap(), n["old"].as_u64()))
        .collect();
    assert_eq!(
        changed,
        vec![(2, None), (3, Some(2)), (2, Some(3)), (2, Some(2))]
    );
    // The host is gone with the master.
    assert!(
        !std::path::Path::new(&format!("/proc/{host}")).exists() || {
            thread::sleep(Duration::from_secs(2));
            !std::path::Path::new(&format!("/proc/{host}")).exists()
        }
    );
}

#[test]
fn a_raising_hook_is_logged_and_the_server_carries_on() {
    let conf = "def nworkers_changed(server, new, old):\n    raise ValueError('nworkers_changed went wrong')\n";
    let dir = app_dir(conf);
    let mut s = spawn_with_conf(&dir, &["-w", "1", "hookapp:app"]);
    s.wait_ready();
    s.signal(libc::SIGTTIN);
    s.wait_workers(2, Duration::from_secs(20));
    wait_for("the traceback", &s, || {
        s.log().contains("ValueError: nworkers_changed went wrong")
    });
    let log = s.log();
    assert!(log.contains("Exception in nworkers_changed hook"), "{log}");
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    assert_eq!(get(s.port, "/").status, 200);
}

#[test]
fn a_hanging_hook_is_bounded_and_does_not_stall_the_master() {
    let conf = "import time\ndef pre_fork(server, worker):\n    if worker.age == 1:\n        time.sleep(60)\n";
    let dir = app_dir(conf);
    let started = Instant::now();
    let mut s = spawn_with_conf(&dir, &["--timeout", "2", "-w", "1", "hookapp:app"]);
    s.wait_ready();
    assert_eq!(get(s.port, "/").status, 200);
    assert!(started.elapsed() < Duration::from_secs(15));
    let log = s.log();
    assert!(
        log.contains("pre_fork hook: the config host did not answer within 2 s"),
        "{log}"
    );
    // While the host is still stuck, later hooks are skipped, not waited for.
    let t = Instant::now();
    s.signal(libc::SIGTTIN);
    s.wait_workers(2, Duration::from_secs(20));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        s.log()
            .contains("pre_fork hook skipped: the config host is still running the pre_fork hook"),
        "{}",
        s.log()
    );
    assert!(!s.log().contains("WORKER TIMEOUT"), "{}", s.log());
}

#[test]
fn a_raising_start_up_hook_stops_the_server_as_gunicorn_does() {
    for hook in ["on_starting", "when_ready"] {
        let dir = app_dir(&format!(
            "def {hook}(server):\n    raise RuntimeError('{hook} refuses')\n"
        ));
        let mut s = spawn_with_conf(&dir, &["hookapp:app"]);
        let st = s.wait_exit(Duration::from_secs(20)).expect("exits");
        assert_eq!(st.code(), Some(1), "{hook}: {}", s.log());
        assert!(
            s.log().contains(&format!("RuntimeError: {hook} refuses")),
            "{}",
            s.log()
        );
        assert!(s.worker_pids().is_empty());
    }
}

#[test]
fn pre_and_post_request_see_gunicorns_objects() {
    let conf = r#"
import json, os
_LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "req.jsonl")
def pre_request(worker, req):
    if req.path == "/boom":
        raise RuntimeError("pre_request refuses")
    with open(_LOG, "a") as f:
        f.write(json.dumps({"hook": "pre", "in_pid": os.getpid(), "worker_pid": worker.pid,
            "method": req.method, "uri": req.uri, "path": req.path, "query": req.query,
            "version": "%d.%d" % req.version, "headers": req.headers, "remote_ip": req.remote_addr[0]}) + "\n")
def post_request(worker, req, environ, resp):
    with open(_LOG, "a") as f:
        f.write(json.dumps({"hook": "post", "in_pid": os.getpid(), "path": req.path,
            "status": resp.status, "status_code": resp.status_code, "sent": resp.sent,
            "headers": resp.headers, "environ_path": environ["PATH_INFO"]}) + "\n")
"#;
    for class in ["sync", "gthread"] {
        let dir = app_dir(conf);
        let mut s = spawn_with_conf(&dir, &["-k", class, "-w", "1", "hookapp:app"]);
        s.wait_ready();
        let worker = s.wait_workers(1, Duration::from_secs(20))[0] as u64;
        let r = request(s.port, "GET", "/p/a?x=1", &[("X-Thing", "yes")], b"");
        assert_eq!(r.status, 200);
        assert_eq!(get(s.port, "/boom").status, 500, "{class}");
        let read = || -> Vec<Json> {
            fs::read_to_string(dir.join("req.jsonl"))
                .unwrap_or_default()
                .lines()
                .map(|l| Json::parse(l).unwrap())
                .filter(|l| l["path"].str() != Some("/"))
                .collect()
        };
        wait_for("post_request", &s, || read().len() >= 2);
        let lines = read();
        let pre = &lines[0];
        assert_eq!(pre["hook"].str(), Some("pre"));
        assert_eq!(pre["in_pid"].as_u64(), Some(worker));
        assert_eq!(pre["worker_pid"].as_u64(), Some(worker));
        assert_eq!(pre["method"].str(), Some("GET"));
        assert_eq!(pre["uri"].str(), Some("/p/a?x=1"));
        assert_eq!(pre["path"].str(), Some("/p/a"));
        assert_eq!(pre["query"].str(), Some("x=1"));
        assert_eq!(pre["version"].str(), Some("1.1"));
        assert_eq!(pre["remote_ip"].str(), Some("127.0.0.1"));
        let headers = format!("{:?}", pre["headers"]);
        assert!(
            headers.contains("X-THING") && headers.contains("yes"),
            "{headers}"
        );
        let post = &lines[1];
        assert_eq!(post["hook"].str(), Some("post"));
        assert_eq!(post["status"].str(), Some("200 OK"));
        assert_eq!(post["status_code"].as_u64(), Some(200));
        assert_eq!(post["sent"].as_u64(), Some(r.body.len() as u64));
        assert_eq!(post["environ_path"].str(), Some("/p/a"));
        assert_eq!(
            lines.len(),
            2,
            "no post_request for the refused request: {lines:?}"
        );
        let log = s.log();
        assert!(log.contains("RuntimeError: pre_request refuses"), "{log}");
    }
}

#[test]
fn config_file_errors_name_the_file_and_line_and_exit_1() {
    let dir = TempDir::new("hooks-err");
    fs::write(dir.join("gunicorn.conf.py"), "workers = 2\nbind = [\n").unwrap();
    let out = run_cli(&["hookapp:app"], &[], dir.path());
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("gunicorn.conf.py:2"), "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);

    fs::write(dir.join("bad.py"), "workers = 2\n\nx = undefined_name\n").unwrap();
    let out = run_cli(&["-c", "bad.py", "hookapp:app"], &[], dir.path());
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("bad.py:3") && out.stderr.contains("NameError"),
        "{}",
        out.stderr
    );

    let out = run_cli(&["-c", "missing.py", "hookapp:app"], &[], dir.path());
    assert_ne!(out.code(), Some(0));
    assert!(out.stderr.contains("missing.py"), "{}", out.stderr);
}

#[test]
fn gunicorn_conf_py_is_read_by_default_and_ferrocorn_toml_wins() {
    let dir = TempDir::new("hooks-default");
    fs::write(
        dir.join("gunicorn.conf.py"),
        "import multiprocessing\nworkers = 3\nkeepalive = 7\nraw_env = ['A=1']\nunknown_name = 5\n",
    )
    .unwrap();
    let out = run_cli(&["--print-config", "hookapp:app"], &[], dir.path());
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("workers = 3"), "{}", out.stdout);
    assert!(out.stdout.contains("keepalive = 7"), "{}", out.stdout);
    assert!(out.stdout.contains("raw_env = [\"A=1\"]"), "{}", out.stdout);
    // The hooks are listed too.
    assert!(
        out.stdout.contains("# on_starting is not set"),
        "{}",
        out.stdout
    );
    // The command line still wins over the file.
    let out = run_cli(
        &["--print-config", "-w", "5", "hookapp:app"],
        &[],
        dir.path(),
    );
    assert!(out.stdout.contains("workers = 5"), "{}", out.stdout);

    fs::write(dir.join("ferrocorn.toml"), "workers = 4\n").unwrap();
    let out = run_cli(&["--print-config", "hookapp:app"], &[], dir.path());
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("workers = 4"), "{}", out.stdout);
    assert!(
        out.stderr.contains("gunicorn.conf.py was not read"),
        "{}",
        out.stderr
    );

    // python:module, found from the launch directory.
    fs::write(
        dir.join("mycfg.py"),
        "workers = 6\ndef when_ready(server):\n    pass\n",
    )
    .unwrap();
    let out = run_cli(
        &["--print-config", "-c", "python:mycfg", "hookapp:app"],
        &[],
        dir.path(),
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("workers = 6"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("# when_ready = defined in python:mycfg"),
        "{}",
        out.stdout
    );
}

#[test]
fn worker_int_and_worker_abort_run_in_the_worker_concerned() {
    let conf = r#"
import json, os
_LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sig.jsonl")
def _rec(hook, worker):
    with open(_LOG, "a") as f:
        f.write(json.dumps({"hook": hook, "in_pid": os.getpid(), "worker_pid": worker.pid}) + "\n")
def worker_int(worker): _rec("worker_int", worker)
def worker_abort(worker): _rec("worker_abort", worker)
def worker_exit(server, worker): _rec("worker_exit", worker)
"#;
    let app = "import time\ndef app(environ, start_response):\n    if environ['PATH_INFO'] == '/sleep':\n        time.sleep(30)\n    start_response('200 OK', [])\n    return [b'ok']\n";
    let read = |dir: &Path| -> Vec<Json> {
        fs::read_to_string(dir.join("sig.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| Json::parse(l).unwrap())
            .collect()
    };
    // SIGQUIT to a worker busy in a request: worker_int, then worker_exit.
    let dir = app_dir(conf);
    fs::write(dir.join("hookapp.py"), app).unwrap();
    let mut s = spawn_with_conf(&dir, &["-w", "1", "--timeout", "3", "hookapp:app"]);
    s.wait_ready();
    let w = s.wait_workers(1, Duration::from_secs(20))[0];
    let port = s.port;
    let busy = thread::spawn(move || {
        let mut c = Conn::connect(port);
        c.send_request("GET", "/sleep", &[], b"");
        let _ = c.try_read_response();
    });
    thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(w, libc::SIGQUIT) };
    wait_for("worker_int and worker_exit", &s, || {
        read(dir.path()).len() >= 2
    });
    let got = read(dir.path());
    assert_eq!(got[0]["hook"].str(), Some("worker_int"), "{got:?}");
    assert_eq!(got[0]["in_pid"].as_u64(), Some(w as u64));
    assert_eq!(got[0]["worker_pid"].as_u64(), Some(w as u64));
    assert_eq!(got[1]["hook"].str(), Some("worker_exit"), "{got:?}");
    busy.join().unwrap();
    // The master's timeout (SIGABRT) on a stuck request: worker_abort in
    // that worker.
    let w = s.wait_workers(1, Duration::from_secs(20));
    let w = *w
        .iter()
        .find(|p| **p as u64 != got[0]["in_pid"].as_u64().unwrap())
        .expect("a new worker");
    let busy = thread::spawn(move || {
        let mut c = Conn::connect(port);
        c.send_request("GET", "/sleep", &[], b"");
        let _ = c.try_read_response();
    });
    wait_for("worker_abort", &s, || {
        read(dir.path())
            .iter()
            .any(|l| l["hook"].str() == Some("worker_abort"))
    });
    let got = read(dir.path());
    let abort = got
        .iter()
        .find(|l| l["hook"].str() == Some("worker_abort"))
        .unwrap();
    assert_eq!(abort["in_pid"].as_u64(), Some(w as u64), "{got:?}");
    assert!(s.log().contains("WORKER TIMEOUT"), "{}", s.log());
    // faulthandler still writes the stuck worker's stacks first.
    assert!(s.log().contains("most recent call first"), "{}", s.log());
    busy.join().unwrap();
}

#[test]
fn hooks_see_raw_env_and_outlive_a_stop_sent_to_the_whole_group() {
    let conf = r#"
import os
_DIR = os.path.dirname(os.path.abspath(__file__))
def when_ready(server):
    with open(os.path.join(_DIR, "env.txt"), "w") as f:
        f.write(os.environ.get("FROM_E", "missing"))
def on_exit(server):
    with open(os.path.join(_DIR, "exit.txt"), "w") as f:
        f.write("on_exit ran")
"#;
    let dir = app_dir(conf);
    let mut s = spawn_with_conf(&dir, &["-e", "FROM_E=yes", "hookapp:app"]);
    s.wait_ready();
    assert_eq!(fs::read_to_string(dir.join("env.txt")).unwrap(), "yes");
    // TERM to every process of the group, as systemd's KillMode=control-group
    // or a terminal's ^C (INT) do: the master's on_exit still runs.
    unsafe { libc::kill(-s.pid, libc::SIGTERM) };
    assert_eq!(
        s.wait_exit(Duration::from_secs(20))
            .and_then(|st| st.code()),
        Some(0),
        "{}",
        s.log()
    );
    assert_eq!(
        fs::read_to_string(dir.join("exit.txt")).unwrap_or_default(),
        "on_exit ran",
        "{}",
        s.log()
    );
}

#[test]
fn post_fork_reconnects_a_database_of_a_preloaded_app() {
    // The common use: the app (imported once in the master with --preload)
    // opens a database connection at import; post_fork gives each worker
    // its own, as sqlite3 connections must not cross a fork.
    let conf = r#"
import os, sqlite3
def post_fork(server, worker):
    import dbapp
    dbapp.DB = sqlite3.connect(dbapp.PATH)
    dbapp.OPENED_IN = os.getpid()
"#;
    let app = r#"
import os, sqlite3
PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.db")
DB = sqlite3.connect(PATH)
DB.execute("create table if not exists t (pid integer)")
DB.commit()
OPENED_IN = os.getpid()
def app(environ, start_response):
    DB.execute("insert into t values (?)", (os.getpid(),))
    DB.commit()
    n = DB.execute("select count(*) from t").fetchone()[0]
    start_response("200 OK", [("Connection", "close")])
    return [("%s %s %s" % (os.getpid(), OPENED_IN, n)).encode()]
"#;
    let dir = app_dir(conf);
    fs::write(dir.join("dbapp.py"), app).unwrap();
    let mut s = spawn_with_conf(&dir, &["--preload", "-w", "2", "dbapp:app"]);
    s.wait_ready();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..40 {
        let text = get(s.port, "/").text();
        let parts: Vec<&str> = text.split(' ').collect();
        assert_eq!(
            parts[0], parts[1],
            "the connection was opened in the worker: {text}"
        );
        seen.insert(parts[0].to_string());
    }
    assert!(!seen.is_empty());
}

#[test]
fn hup_reads_the_file_again_and_on_starting_environ_reaches_the_workers() {
    let conf = "import os\nworkers = 1\ndef on_starting(server):\n    os.environ['FROM_CONF'] = 'set in on_starting'\n";
    let dir = app_dir(conf);
    let mut s = spawn_with_conf(&dir, &["hookapp:app"]);
    s.wait_ready();
    s.wait_workers(1, Duration::from_secs(20));
    let text = get(s.port, "/").text();
    assert!(text.contains("FROM_CONF=set in on_starting"), "{text}");
    fs::write(
        dir.join("gunicorn.conf.py"),
        conf.replace("workers = 1", "workers = 3"),
    )
    .unwrap();
    s.signal(libc::SIGHUP);
    wait_for("the reload", &s, || s.log().contains("Reload complete"));
    s.wait_workers(3, Duration::from_secs(20));
}
