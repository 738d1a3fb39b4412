//! Starting up like gunicorn: `sys.path` (--pythonpath, --chdir, then the
//! launch directory), one str hash seed shared by all workers of a master
//! (without exporting PYTHONHASHSEED), and log files relative to --chdir,
//! checked before any worker starts.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const APP: &str = "startup_app:app";

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn real(p: &Path) -> String {
    fs::canonicalize(p)
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.display()))
        .display()
        .to_string()
}

/// A launch directory with `sub/` (the --chdir target, holding the app)
/// and `beside.py` (a module next to where ferrocorn is started).
struct Layout {
    _root: TempDir,
    launch: PathBuf,
    sub: PathBuf,
}

fn layout(tag: &str) -> Layout {
    let root = TempDir::new(tag);
    let launch = root.join("launch");
    let sub = launch.join("sub");
    fs::create_dir_all(&sub).unwrap();
    fs::copy(
        apps_dir().join("startup_app.py"),
        sub.join("startup_app.py"),
    )
    .unwrap();
    fs::write(launch.join("beside.py"), "VALUE = 'from the launch dir'\n").unwrap();
    Layout {
        _root: root,
        launch,
        sub,
    }
}

/// Start ferrocorn from `cwd` with `--chdir chdir ARGS`.
fn start_in(cwd: &Path, chdir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut s = Server::spawn_in(Some(cwd), &[], Some(chdir), args, env, true);
    s.wait_ready();
    s
}

fn get_json(s: &Server, path: &str) -> Json {
    let r = s.connect().request("GET", path, &[], b"");
    assert_eq!(r.status, 200, "GET {path}: {}; log:\n{}", r.text(), s.log());
    r.json()
}

fn strings(j: &Json) -> Vec<String> {
    match j {
        Json::Arr(v) => v
            .iter()
            .map(|x| x.str().expect("a string").to_string())
            .collect(),
        other => panic!("not a list: {other:?}"),
    }
}

/// What one `/info` answer says.
#[derive(Debug, Clone, PartialEq)]
struct Info {
    pid: u64,
    hash: String,
    seed: Option<String>,
}

fn info(j: &Json) -> Info {
    Info {
        pid: j["pid"].as_u64().expect("pid"),
        hash: j["hash"].str().expect("hash").to_string(),
        seed: j["seed"].str().map(str::to_string),
    }
}

/// Many `/info` answers, sent a few at a time so that both workers of a
/// two-worker server answer some (bounded).
fn infos_from_workers(s: &Server, want_pids: usize) -> Vec<Info> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut all: Vec<Info> = Vec::new();
    loop {
        let port = s.port;
        let batch: Vec<_> = (0..4)
            .map(|_| {
                thread::spawn(move || {
                    let r = Conn::connect(port).request("GET", "/info?sleep=0.2", &[], b"");
                    assert_eq!(r.status, 200, "{}", r.text());
                    info(&r.json())
                })
            })
            .collect();
        for t in batch {
            all.push(t.join().expect("request thread"));
        }
        let mut pids: Vec<u64> = all.iter().map(|i| i.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        if pids.len() >= want_pids && all.len() >= 12 {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "only workers {pids:?} answered {} requests; log:\n{}",
            all.len(),
            s.log()
        );
    }
}

fn distinct<T: Ord + Clone>(v: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = v.into_iter().collect();
    v.sort();
    v.dedup();
    v
}

/// `hash("abc")` in a fresh `/usr/bin/python3` with PYTHONHASHSEED=seed.
fn python_hash(seed: &str) -> String {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", "print(hash('abc'))"])
        .env("PYTHONHASHSEED", seed)
        .output()
        .expect("run /usr/bin/python3");
    assert!(out.status.success(), "python3: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

// ---------------------------------------------------------------------------
// sys.path

#[test]
fn sys_path_is_pythonpath_then_chdir_then_launch_dir() {
    let l = layout("syspath");
    fs::create_dir_all(l.sub.join("pp1")).unwrap();
    let pp2 = l.launch.join("pp2");
    fs::create_dir_all(&pp2).unwrap();
    let pythonpath = format!("pp1,{}", path_str(&pp2));
    // gunicorn 27: `--chdir sub --pythonpath pp1,/abs/pp2` gives
    // [/abs/pp2, <chdir>/pp1, <chdir>, <launch dir>, ...].
    let s = start_in(
        &l.launch,
        &l.sub,
        &["-w", "1", "--pythonpath", &pythonpath, APP],
        &[],
    );
    let path = strings(&get_json(&s, "/info")["path"]);
    let want = [
        real(&pp2),
        real(&l.sub.join("pp1")),
        real(&l.sub),
        real(&l.launch),
    ];
    assert_eq!(path[..4], want[..], "sys.path {path:?}");
    let beside = get_json(&s, "/beside");
    assert_eq!(beside.str(), Some("beside: from the launch dir"));
    drop(s);

    // Launched from the --chdir directory itself: on sys.path once.
    let s = start_in(&l.sub, &l.sub, &["-w", "1", APP], &[]);
    let path = strings(&get_json(&s, "/info")["path"]);
    assert_eq!(path[0], real(&l.sub), "sys.path {path:?}");
    let n = path.iter().filter(|p| **p == real(&l.sub)).count();
    assert_eq!(n, 1, "sys.path {path:?}");
}

#[test]
fn symlinked_launch_dir_keeps_its_name_on_sys_path() {
    let l = layout("symlaunch");
    let link = l.launch.parent().unwrap().join("link");
    std::os::unix::fs::symlink(&l.launch, &link).unwrap();
    let link_s = path_str(&link).to_string();
    // Like gunicorn (which names the directory by $PWD when that is the
    // same directory): a relative --chdir is taken from the name too.
    let s = start_in(
        &link,
        Path::new("sub"),
        &["-w", "1", APP],
        &[("PWD", &link_s)],
    );
    let path = strings(&get_json(&s, "/info")["path"]);
    assert_eq!(
        path[..2],
        [format!("{link_s}/sub"), link_s.clone()],
        "sys.path {path:?}"
    );
}

#[test]
fn module_beside_the_launch_dir_imports_with_check_config_and_preload() {
    let l = layout("beside");
    // The app module imports `beside` while it is imported.
    fs::write(
        l.sub.join("uses_beside.py"),
        "import beside\nfrom startup_app import app\nVALUE = beside.VALUE\n",
    )
    .unwrap();
    let out = run_cli(
        &["--chdir", "sub", "--check-config", "uses_beside:app"],
        &[],
        &l.launch,
    );
    assert_eq!(
        out.code(),
        Some(0),
        "--check-config: {:?}\n{}{}",
        out.status,
        out.stdout,
        out.stderr
    );

    let s = start_in(
        &l.launch,
        &l.sub,
        &["-w", "1", "--preload", "uses_beside:app"],
        &[],
    );
    let path = strings(&get_json(&s, "/info")["path"]);
    assert_eq!(
        path[..2],
        [real(&l.sub), real(&l.launch)],
        "sys.path {path:?}"
    );
}

// ---------------------------------------------------------------------------
// One hash seed per master

/// The subprocesses of the app start with a hash seed of their own.
fn assert_children_pick_their_own_seed(s: &Server, workers_hash: &str) {
    let children = get_json(s, "/child");
    let Json::Arr(children) = children else {
        panic!("/child: {children:?}")
    };
    let hashes: Vec<String> = children
        .iter()
        .map(|c| {
            assert!(c["seed"].is_null(), "a subprocess saw {:?}", c["seed"]);
            c["hash"].str().expect("hash").to_string()
        })
        .collect();
    assert_eq!(hashes.len(), 2);
    for h in &hashes {
        assert_ne!(h, workers_hash, "a subprocess has the workers' hash seed");
    }
    assert_ne!(hashes[0], hashes[1], "two subprocesses had one seed");
}

#[test]
fn workers_share_one_hash_seed_kept_across_hup() {
    let s = Server::start(&["-w", "2", APP]);
    let first = infos_from_workers(&s, 2);
    let hashes = distinct(first.iter().map(|i| i.hash.clone()));
    assert_eq!(hashes.len(), 1, "the workers' hash(\"abc\"): {first:?}");
    assert!(
        first.iter().all(|i| i.seed.is_none()),
        "PYTHONHASHSEED visible to the app: {first:?}"
    );
    assert_children_pick_their_own_seed(&s, &hashes[0]);

    // HUP forks new workers from the same master: same seed.
    let old = s.wait_workers(2, Duration::from_secs(20));
    s.signal(libc::SIGHUP);
    let ok = wait_until(Duration::from_secs(30), || {
        let now = s.worker_pids();
        now.len() == 2 && now.iter().all(|p| !old.contains(p))
    });
    assert!(ok, "no new workers after HUP; log:\n{}", s.log());
    let after = infos_from_workers(&s, 2);
    assert!(
        after.iter().all(|i| !old.contains(&(i.pid as i32))),
        "old workers answered after the reload: {after:?}"
    );
    assert_eq!(
        distinct(after.iter().map(|i| i.hash.clone())),
        hashes,
        "hash(\"abc\") after HUP: {after:?}"
    );
}

#[test]
fn preloaded_workers_share_the_seed_without_exporting_it() {
    let s = Server::start(&["-w", "2", "--preload", APP]);
    let got = infos_from_workers(&s, 2);
    let hashes = distinct(got.iter().map(|i| i.hash.clone()));
    assert_eq!(hashes.len(), 1, "{got:?}");
    assert!(got.iter().all(|i| i.seed.is_none()), "{got:?}");
    assert_children_pick_their_own_seed(&s, &hashes[0]);
}

#[test]
fn pythonhashseed_set_by_the_user_is_applied_as_cpython_does() {
    for seed in ["123", "0"] {
        let want = python_hash(seed);
        let s = Server::start_env(&["-w", "2", APP], &[("PYTHONHASHSEED", seed)]);
        let got = infos_from_workers(&s, 2);
        for i in &got {
            assert_eq!(i.hash, want, "PYTHONHASHSEED={seed}: {got:?}");
            assert_eq!(i.seed.as_deref(), Some(seed), "{got:?}");
        }
        // Passed on to subprocesses as set.
        let children = get_json(&s, "/child");
        let Json::Arr(children) = children else {
            panic!("/child: {children:?}")
        };
        for c in &children {
            assert_eq!(c["hash"].str(), Some(want.as_str()), "{children:?}");
            assert_eq!(c["seed"].str(), Some(seed), "{children:?}");
        }
    }

    // "random": every interpreter picks its own, as CPython does.
    let s = Server::start_env(&["-w", "2", APP], &[("PYTHONHASHSEED", "random")]);
    let got = infos_from_workers(&s, 2);
    let per_worker = distinct(got.iter().map(|i| (i.pid, i.hash.clone())));
    assert_eq!(per_worker.len(), 2, "{got:?}");
    assert_ne!(per_worker[0].1, per_worker[1].1, "{got:?}");
    assert!(got.iter().all(|i| i.seed.as_deref() == Some("random")));
}

// ---------------------------------------------------------------------------
// Log files

fn wait_contains(path: &Path, needle: &str) -> bool {
    wait_until(Duration::from_secs(10), || {
        fs::read_to_string(path).is_ok_and(|t| t.contains(needle))
    })
}

#[test]
fn relative_log_paths_are_relative_to_chdir() {
    let l = layout("logpaths");
    // Both candidates exist; gunicorn 27 writes both logs under --chdir.
    fs::create_dir_all(l.launch.join("logs")).unwrap();
    fs::create_dir_all(l.sub.join("logs")).unwrap();
    let mut s = Server::spawn_in(
        Some(&l.launch),
        &[],
        Some(Path::new("sub")),
        &[
            "-w",
            "1",
            "--access-logfile",
            "logs/a.log",
            "--error-logfile",
            "logs/e.log",
            APP,
        ],
        &[],
        true,
    );
    // The error log is a file, so readiness is read from it.
    let elog = l.sub.join("logs/e.log");
    let alog = l.sub.join("logs/a.log");
    assert!(
        wait_contains(&elog, "Booting worker"),
        "no error log at {}; launch/logs: {:?}; stderr:\n{}",
        elog.display(),
        fs::read_dir(l.launch.join("logs")).map(|d| d.count()),
        s.log()
    );
    let port = {
        let text = fs::read_to_string(&elog).unwrap();
        let rest = text
            .split("Listening at: http://")
            .nth(1)
            .expect("listening");
        let hostport = rest.split_whitespace().next().unwrap();
        hostport.rsplit(':').next().unwrap().parse::<u16>().unwrap()
    };
    s.port = port;
    let r = get(port, "/info?first");
    assert_eq!(r.status, 200);
    assert!(wait_contains(&alog, "/info?first"), "no access log line");
    let stray: Vec<_> = fs::read_dir(l.launch.join("logs")).unwrap().collect();
    assert!(stray.is_empty(), "files in launch/logs: {stray:?}");

    // USR1 reopens both at the same paths (after logrotate moved them).
    fs::rename(&alog, l.sub.join("logs/a.log.1")).unwrap();
    fs::rename(&elog, l.sub.join("logs/e.log.1")).unwrap();
    s.signal(libc::SIGUSR1);
    let ok = wait_until(Duration::from_secs(10), || {
        let _ = get(port, "/info?second");
        fs::read_to_string(&alog).is_ok_and(|t| t.contains("/info?second"))
    });
    assert!(ok, "the access log was not reopened at {}", alog.display());
    assert!(elog.exists(), "the error log was not reopened");
}

/// ferrocorn ARGS from `cwd` must exit 1 promptly with one line naming
/// `path` on stderr, starting no worker.
fn assert_refused(cwd: &Path, args: &[&str], path: &Path) {
    let t = Instant::now();
    let out = run_cli(args, &[], cwd);
    let took = t.elapsed();
    assert_eq!(
        out.code(),
        Some(1),
        "{args:?}: {:?}\n{}{}",
        out.status,
        out.stdout,
        out.stderr
    );
    assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?} stderr:\n{}", out.stderr);
    assert!(
        lines[0].contains(path_str(path)),
        "{args:?}: stderr does not name {}:\n{}",
        path.display(),
        out.stderr
    );
    assert!(!out.stderr.contains("Booting worker"), "{}", out.stderr);
}

#[test]
fn unopenable_log_file_exits_1_naming_it() {
    let l = layout("logmissing");
    // Only launch/logs exists: relative to --chdir, logs/ is missing.
    fs::create_dir_all(l.launch.join("logs")).unwrap();
    let sub_real = PathBuf::from(real(&l.sub));
    let serve = |extra: &[&str]| {
        let mut a = vec!["-b", "127.0.0.1:0", "-w", "2", "--chdir", "sub"];
        a.extend_from_slice(extra);
        a.push(APP);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    for (flag, file) in [("--access-logfile", "a.log"), ("--error-logfile", "e.log")] {
        let rel = format!("logs/{file}");
        let args = serve(&[flag, &rel]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&l.launch, &args, &sub_real.join(&rel));
        let check = ["--chdir", "sub", flag, &rel, "--check-config", APP];
        assert_refused(&l.launch, &check, &sub_real.join(&rel));
    }
    assert_eq!(fs::read_dir(l.launch.join("logs")).unwrap().count(), 0);
}

#[test]
fn hup_to_an_unopenable_access_log_keeps_the_old_workers() {
    let l = layout("loghup");
    fs::create_dir_all(l.sub.join("logs")).unwrap();
    let cfg = l.launch.join("cfg.toml");
    fs::write(&cfg, "accesslog = \"logs/a.log\"\n").unwrap();
    let s = start_in(
        &l.launch,
        &l.sub,
        &["-w", "1", "-c", path_str(&cfg), APP],
        &[],
    );
    let old = s.wait_workers(1, Duration::from_secs(20));
    fs::write(&cfg, "accesslog = \"missing/a.log\"\n").unwrap();
    s.signal(libc::SIGHUP);
    let want = format!("{}/missing/a.log", real(&l.sub));
    let ok = wait_until(Duration::from_secs(10), || {
        s.log()
            .lines()
            .any(|l| l.contains("Reload failed") && l.contains(&want))
    });
    assert!(ok, "no 'Reload failed' naming {want}; log:\n{}", s.log());
    assert_eq!(s.worker_pids(), old, "log:\n{}", s.log());
    assert_eq!(get(s.port, "/info").status, 200);
}

#[test]
fn log_files_the_master_creates_are_given_to_the_workers_user() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: not running as root");
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let l = layout("logowner");
    let logs = l.launch.join("logs");
    fs::create_dir_all(&logs).unwrap();
    for d in [l.launch.parent().unwrap(), &l.launch, &l.sub, &logs] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(
        l.sub.join("startup_app.py"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // Only root may create files in logs/: the master creates the access
    // log, and (like gunicorn) hands it to the workers' user, who opens
    // it again after USR1.
    let alog = logs.join("a.log");
    let s = start_in(
        &l.launch,
        &l.sub,
        &[
            "-w",
            "1",
            "-m",
            "022",
            "--user",
            "nobody",
            "--group",
            "nogroup",
            "--access-logfile",
            path_str(&alog),
            APP,
        ],
        &[],
    );
    let meta = fs::metadata(&alog).expect("access log");
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    assert_eq!(get(s.port, "/info?owned").status, 200);
    assert!(wait_contains(&alog, "/info?owned"), "no access log line");
}
