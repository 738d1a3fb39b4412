//! The control socket and `ferrocorn ctl`: every command, gunicorn's wire
//! format, `stacks` while a request sleeps or computes, malformed input,
//! stalled clients, and who may connect.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The control socket of a test server (its XDG_RUNTIME_DIR is its dir).
fn sock(s: &Server) -> PathBuf {
    s.dir.join("gunicorn.ctl")
}

/// `ferrocorn ctl --control-socket SOCK ARGS`, bounded in time.
fn ctl(socket: &Path, args: &[&str]) -> CliOutput {
    let mut all = vec!["ctl", "--control-socket", socket.to_str().unwrap()];
    all.extend_from_slice(args);
    run_cli(&all, &[], &repo_dir())
}

/// The `--json` answer of a command that must succeed.
fn ctl_json(socket: &Path, args: &[&str]) -> Json {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ctl(socket, &all);
    assert_eq!(out.code(), Some(0), "ctl {args:?}: {}", out.stderr);
    Json::parse(&out.stdout).unwrap_or_else(|e| panic!("ctl {args:?}: {e}: {}", out.stdout))
}

fn arr(j: &Json) -> Vec<Json> {
    match j {
        Json::Arr(v) => v.clone(),
        _ => Vec::new(),
    }
}

fn worker_pids_shown(socket: &Path) -> Vec<i32> {
    let mut v: Vec<i32> = arr(&ctl_json(socket, &["show", "workers"])["workers"])
        .iter()
        .map(|w| w["pid"].as_u64().unwrap() as i32)
        .collect();
    v.sort_unstable();
    v
}

/// One request in gunicorn's framing: 4-byte big-endian length + JSON.
fn frame(json: &str) -> Vec<u8> {
    let mut b = (json.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(json.as_bytes());
    b
}

fn read_frame(s: &mut UnixStream) -> Json {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("answer length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("answer body");
    Json::parse(std::str::from_utf8(&body).unwrap()).unwrap()
}

fn connect(socket: &Path) -> UnixStream {
    let s = UnixStream::connect(socket).expect("connect to the control socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Start GET PATH in a thread; the handle yields the status.
fn in_flight(port: u16, path: &str) -> thread::JoinHandle<u16> {
    let path = path.to_string();
    thread::spawn(move || {
        let mut c = Conn::connect(port);
        c.r.src
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        c.request("GET", &path, &[], b"").status
    })
}

#[test]
fn show_commands_answer_in_gunicorns_format() {
    let s = Server::start(&["-w", "2", "ctl_app:app"]);
    let sock = sock(&s);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "the default mode");
    assert!(s
        .log()
        .contains(&format!("Control socket listening at {}", sock.display())));
    s.wait_workers(2, Duration::from_secs(10));
    assert!(wait_until(Duration::from_secs(10), || {
        let w = ctl_json(&sock, &["show", "workers"]);
        arr(&w["workers"])
            .iter()
            .all(|w| w["booted"].as_bool() == Some(true))
    }));
    assert_eq!(worker_pids_shown(&sock), s.worker_pids());

    let stats = ctl_json(&sock, &["show", "stats"]);
    assert_eq!(stats["pid"].as_u64(), Some(s.pid as u64));
    assert_eq!(stats["workers_current"].as_u64(), Some(2));
    assert_eq!(stats["workers_target"].as_u64(), Some(2));
    assert_eq!(stats["workers_spawned"].as_u64(), Some(2));
    assert_eq!(stats["reloads"].as_u64(), Some(0));
    assert!(stats.has("uptime"));

    let config = ctl_json(&sock, &["show", "config"]);
    assert_eq!(config["workers"].as_u64(), Some(2));
    assert_eq!(config["worker_class"].str(), Some("sync"));
    assert_eq!(config["control_socket"].str(), sock.to_str());

    let l = ctl_json(&sock, &["show", "listeners"]);
    let first = &arr(&l["listeners"])[0];
    assert_eq!(
        first["address"].str().map(String::from),
        Some(format!("http://127.0.0.1:{}", s.port))
    );
    assert_eq!(first["type"].str(), Some("tcp"));

    let all = ctl_json(&sock, &["show", "all"]);
    assert_eq!(all["arbiter"]["pid"].as_u64(), Some(s.pid as u64));
    assert_eq!(all["web_worker_count"].as_u64(), Some(2));

    let help = ctl_json(&sock, &["help"]);
    for c in [
        "show workers",
        "worker add [N]",
        "stacks [PID]",
        "shutdown [graceful|quick]",
    ] {
        assert!(help["commands"].has(c), "help lists {c}");
    }

    // The human-readable forms.
    let table = ctl(&sock, &["show", "workers"]);
    assert!(table.stdout.contains("PID"), "{}", table.stdout);
    assert!(
        table.stdout.contains("Total: 2 workers"),
        "{}",
        table.stdout
    );

    // gunicorn's wire format, with the request's id echoed, the command
    // split and its args appended, several requests on one connection.
    let mut c = connect(&sock);
    c.write_all(&frame(r#"{"id": 7, "command": "show", "args": ["stats"]}"#))
        .unwrap();
    let a = read_frame(&mut c);
    assert_eq!(a["id"].as_u64(), Some(7));
    assert_eq!(a["status"].str(), Some("ok"));
    assert_eq!(a["data"]["pid"].as_u64(), Some(s.pid as u64));
    c.write_all(&frame(r#"{"id": 8, "command": "show workers"}"#))
        .unwrap();
    let a = read_frame(&mut c);
    assert_eq!(a["id"].as_u64(), Some(8));
    assert_eq!(a["data"]["count"].as_u64(), Some(2));
}

#[test]
fn worker_add_remove_and_kill_change_the_workers() {
    let s = Server::start(&["-w", "1", "ctl_app:app"]);
    let sock = sock(&s);
    let added = ctl_json(&sock, &["worker", "add", "2"]);
    assert_eq!(added["added"].as_u64(), Some(2));
    assert_eq!(added["previous"].as_u64(), Some(1));
    assert_eq!(added["total"].as_u64(), Some(3));
    s.wait_workers(3, Duration::from_secs(15));
    assert!(wait_until(Duration::from_secs(5), || worker_pids_shown(
        &sock
    )
    .len()
        == 3));

    let removed = ctl_json(&sock, &["worker", "remove", "5"]);
    assert_eq!(removed["removed"].as_u64(), Some(2), "at least one stays");
    assert_eq!(removed["total"].as_u64(), Some(1));
    let left = s.wait_workers(1, Duration::from_secs(15));
    assert!(wait_until(Duration::from_secs(5), || worker_pids_shown(
        &sock
    ) == left));

    let victim = left[0];
    let killed = ctl_json(&sock, &["worker", "kill", &victim.to_string()]);
    assert_eq!(killed["success"].as_bool(), Some(true));
    assert!(wait_until(Duration::from_secs(15), || {
        let now = s.worker_pids();
        now.len() == 1 && now[0] != victim
    }));
    let unknown = ctl_json(&sock, &["worker", "kill", "1"]);
    assert_eq!(unknown["success"].as_bool(), Some(false));
    assert_eq!(
        ctl_json(&sock, &["show", "stats"])["workers_spawned"].as_u64(),
        Some(4)
    );
    assert_eq!(get(s.port, "/").status, 200);
}

/// `ctl stacks` output (checked to succeed, and to come at once).
fn stacks(sock: &Path) -> String {
    let t = Instant::now();
    let out = ctl(sock, &["stacks"]);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stacks answered at once"
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    out.stdout
}

fn has_all(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "no {n:?} in:\n{text}");
    }
}

const SLEEPING: &[&str] = &[
    "in sleeping_in_the_app",
    "time.sleep(seconds)",
    "ctl_app.py",
];
const SPINNING: &[&str] = &["in spinning_in_the_app", "ctl_app.py"];

#[test]
fn stacks_show_the_function_a_sync_request_is_in() {
    let s = Server::start(&["-w", "1", "ctl_app:app"]);
    let sock = sock(&s);
    assert!(stacks(&sock).contains("(idle: no Python code running)"));
    // Sleeping in time.sleep, then computing in Python.
    for (path, needles) in [("/sleep?s=2", SLEEPING), ("/spin?s=2", SPINNING)] {
        let req = in_flight(s.port, path);
        thread::sleep(Duration::from_millis(600));
        has_all(&stacks(&sock), needles);
        // The request was not disturbed.
        assert_eq!(req.join().unwrap(), 200);
    }
    // One worker by pid; an unknown pid is an error.
    let pid = s.worker_pids()[0];
    let one = ctl_json(&sock, &["stacks", &pid.to_string()]);
    assert_eq!(arr(&one["workers"]).len(), 1);
    assert_eq!(arr(&one["workers"])[0]["pid"].as_u64(), Some(pid as u64));
    let bad = ctl(&sock, &["stacks", "1"]);
    assert_eq!(bad.code(), Some(1));
    assert!(bad.stderr.contains("Worker 1 not found"), "{}", bad.stderr);
}

#[test]
fn stacks_show_every_gthread_thread() {
    let s = Server::start(&["-w", "1", "-k", "gthread", "--threads", "3", "ctl_app:app"]);
    let sock = sock(&s);
    let sleeping = in_flight(s.port, "/sleep?s=3");
    let spinning = in_flight(s.port, "/spin?s=3");
    thread::sleep(Duration::from_millis(700));
    let out = stacks(&sock);
    has_all(&out, SLEEPING);
    has_all(&out, SPINNING);
    assert_eq!(sleeping.join().unwrap(), 200);
    assert_eq!(spinning.join().unwrap(), 200);
}

#[test]
fn stacks_show_asyncio_tasks() {
    let s = Server::start(&["-w", "1", "-k", "asgi", "asgi_app:app"]);
    let sock = sock(&s);
    let slow = in_flight(s.port, "/slow?s=3");
    thread::sleep(Duration::from_millis(700));
    let out = ctl(&sock, &["stacks"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("Task "), "{}", out.stdout);
    assert!(out.stdout.contains("in http"), "{}", out.stdout);
    assert!(out.stdout.contains("asyncio.sleep"), "{}", out.stdout);
    assert_eq!(slow.join().unwrap(), 200);
}

/// The threads of process `pid`, by name (`ps -L`; the kernel keeps 15
/// bytes of a name, so the stacks thread is `ferrocorn-stack`).
fn thread_names(pid: i32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the worker's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim_end().to_string())
        .collect();
    names.sort();
    names
}

const STACKS_THREAD: &str = "ferrocorn-stack";

/// A new worker of `args` has no stacks thread (and, unless `threaded`,
/// no thread but its main one) until the first `ctl stacks`, asked while
/// it serves `path` (None: while idle); that first answer shows the main
/// thread doing it (`needles`); the thread stays, and only one.
fn first_stacks(args: &[&str], path: Option<&str>, threaded: bool, needles: &[&str]) {
    let s = Server::start(args);
    let sock = sock(&s);
    let pid = s.wait_workers(1, Duration::from_secs(10))[0];
    assert!(wait_until(Duration::from_secs(10), || {
        arr(&ctl_json(&sock, &["show", "workers"])["workers"])
            .iter()
            .all(|w| w["booted"].as_bool() == Some(true))
    }));
    // Serving requests starts no stacks thread either.
    assert_eq!(get(s.port, "/").status, 200);
    let before = thread_names(pid);
    assert!(!before.iter().any(|n| n == STACKS_THREAD), "{before:?}");
    if !threaded {
        assert_eq!(before.len(), 1, "{args:?}: {before:?}");
    }
    let req = path.map(|p| {
        let r = in_flight(s.port, p);
        thread::sleep(Duration::from_millis(600));
        r
    });
    let out = stacks(&sock);
    has_all(&out, needles);
    if let Some(r) = req {
        assert_eq!(r.join().unwrap(), 200, "{args:?} {path:?}");
    }
    let after = thread_names(pid);
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert!(after.iter().any(|n| n == STACKS_THREAD), "{after:?}");
    // Later requests use the same thread.
    has_all(&stacks(&sock), &["Worker "]);
    assert_eq!(thread_names(pid), after);
    assert_eq!(get(s.port, "/").status, 200);
}

const MAIN: &str = ", main):";

#[test]
fn the_stacks_thread_starts_with_the_first_sync_request() {
    let sync = &["-w", "1", "ctl_app:app"];
    // Idle in the engine's epoll wait.
    first_stacks(sync, None, false, &["(idle: no Python code running)"]);
    // In time.sleep, and computing in Python: the signal reaches it.
    let sleeping: Vec<&str> = SLEEPING.iter().copied().chain([MAIN]).collect();
    first_stacks(sync, Some("/sleep?s=2"), false, &sleeping);
    let spinning: Vec<&str> = SPINNING.iter().copied().chain([MAIN]).collect();
    first_stacks(sync, Some("/spin?s=2"), false, &spinning);
}

#[test]
fn the_stacks_thread_starts_with_the_first_gthread_request() {
    let gthread = &["-w", "1", "-k", "gthread", "--threads", "2", "ctl_app:app"];
    first_stacks(gthread, None, true, &["Worker "]);
    first_stacks(gthread, Some("/sleep?s=2"), true, SLEEPING);
    first_stacks(gthread, Some("/spin?s=2"), true, SPINNING);
}

#[test]
fn the_stacks_thread_starts_with_the_first_asyncio_request() {
    let asgi = &["-w", "1", "-k", "asgi", "ctl_app:asgi"];
    // The loop idle, and awaiting asyncio.sleep: it waits in epoll.
    first_stacks(asgi, None, false, &[MAIN]);
    first_stacks(
        asgi,
        Some("/asleep?s=2"),
        false,
        &[MAIN, "in awaiting_in_the_app", "asyncio.sleep(seconds)"],
    );
    // A coroutine that blocks the loop in time.sleep, or computes.
    let sleeping: Vec<&str> = SLEEPING.iter().copied().chain([MAIN]).collect();
    first_stacks(asgi, Some("/sleep?s=2"), false, &sleeping);
    let spinning: Vec<&str> = SPINNING.iter().copied().chain([MAIN]).collect();
    first_stacks(asgi, Some("/spin?s=2"), false, &spinning);
}

#[test]
fn the_first_stacks_answer_while_the_app_waits_for_a_request_body() {
    // The app blocked in ferrocorn's own wait for more of the body (no
    // Python runs on the main thread): the first request still answers.
    let s = Server::start(&["-w", "1", "ctl_app:app"]);
    let sock = sock(&s);
    let pid = s.wait_workers(1, Duration::from_secs(10))[0];
    assert!(wait_until(Duration::from_secs(10), || {
        arr(&ctl_json(&sock, &["show", "workers"])["workers"])
            .iter()
            .all(|w| w["booted"].as_bool() == Some(true))
    }));
    assert_eq!(thread_names(pid).len(), 1);
    let total = 1024 * 1024;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        c,
        "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // More than the engine buffers before it starts the app.
    let part = vec![b'x'; 512 * 1024];
    c.write_all(&part).unwrap();
    thread::sleep(Duration::from_millis(600));
    let out = stacks(&sock);
    has_all(&out, &["in reading_in_the_app", MAIN]);
    assert!(thread_names(pid).iter().any(|n| n == STACKS_THREAD));
    c.write_all(&vec![b'y'; total - part.len()]).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&format!("done /read {total}")), "{answer}");
}

#[test]
fn malformed_requests_get_an_error_and_the_master_serves_on() {
    let s = Server::start(&["-w", "1", "ctl_app:app"]);
    let sock = sock(&s);
    // A client that stalls mid-request holds nothing up.
    let mut stalled = connect(&sock);
    stalled.write_all(&[0, 0, 0, 50, b'{']).unwrap();
    // Text lines: one JSON answer line each.
    let mut c = connect(&sock);
    c.write_all(b"frobnicate\nshow stats\nworker add many\n")
        .unwrap();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while text.lines().count() < 3 && Instant::now() < deadline {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {text}");
        text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    let lines: Vec<Json> = text.lines().map(|l| Json::parse(l).unwrap()).collect();
    assert_eq!(lines[0]["status"].str(), Some("error"));
    assert!(lines[0]["error"]
        .str()
        .unwrap()
        .contains("Unknown command: frobnicate"));
    assert_eq!(lines[1]["status"].str(), Some("ok"));
    assert_eq!(lines[2]["status"].str(), Some("error"));
    // A frame that is not JSON, one that is not an object, an empty
    // command: an error each, on the same connection.
    let mut c = connect(&sock);
    for bad in ["{not json", "[1, 2]", r#"{"id": 3, "command": ""}"#] {
        c.write_all(&frame(bad)).unwrap();
        let a = read_frame(&mut c);
        assert_eq!(a["status"].str(), Some("error"), "{bad}");
    }
    // A length beyond any command: an error, then the connection ends.
    let mut c = connect(&sock);
    c.write_all(&[0, 0x7f, 0xff, 0xff, 1, 2, 3]).unwrap();
    let a = read_frame(&mut c);
    assert!(a["error"].str().unwrap().contains("too large"), "{a:?}");
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).unwrap(), 0);
    // Binary noise with no newline, then the client goes away.
    let mut c = connect(&sock);
    c.write_all(&[0xff; 300]).unwrap();
    drop(c);
    // Through all of that the master answered and served.
    assert_eq!(
        ctl_json(&sock, &["show", "workers"])["count"].as_u64(),
        Some(1)
    );
    assert_eq!(get(s.port, "/").status, 200);
    let unknown = ctl(&sock, &["frobnicate"]);
    assert_eq!(unknown.code(), Some(1));
    assert!(
        unknown.stderr.contains("Unknown command"),
        "{}",
        unknown.stderr
    );
    drop(stalled);
}

#[test]
fn reload_and_reopen_take_the_signal_paths() {
    let s = Server::start(&["-w", "2", "ctl_app:app"]);
    let sock = sock(&s);
    let before = s.wait_workers(2, Duration::from_secs(10));
    let a = ctl_json(&sock, &["reload"]);
    assert_eq!(a["status"].str(), Some("reloading"));
    assert!(
        wait_until(Duration::from_secs(20), || {
            let now = s.worker_pids();
            now.len() == 2 && now.iter().all(|p| !before.contains(p))
        }),
        "reload replaced the workers: {}",
        s.log()
    );
    assert!(wait_until(Duration::from_secs(10), || s
        .log()
        .contains("Reload complete")));
    assert_eq!(
        ctl_json(&sock, &["show", "stats"])["reloads"].as_u64(),
        Some(1)
    );
    let a = ctl_json(&sock, &["reopen"]);
    assert_eq!(a["status"].str(), Some("reopening"));
    assert!(wait_until(Duration::from_secs(5), || s
        .log()
        .contains("Handling signal: usr1")));
    assert_eq!(get(s.port, "/").status, 200);
}

#[test]
fn shutdown_graceful_finishes_in_flight_requests() {
    let mut s = Server::start(&["-w", "1", "ctl_app:app"]);
    let sock = sock(&s);
    let slow = in_flight(s.port, "/sleep?s=2");
    thread::sleep(Duration::from_millis(500));
    let a = ctl_json(&sock, &["shutdown"]);
    assert_eq!(a["status"].str(), Some("shutting_down"));
    assert_eq!(a["mode"].str(), Some("graceful"));
    assert_eq!(slow.join().unwrap(), 200, "the in-flight request finished");
    let st = s.wait_exit(Duration::from_secs(15)).expect("master exits");
    assert_eq!(st.code(), Some(0));
    assert!(!sock.exists(), "the socket file is removed");
}

#[test]
fn shutdown_quick_stops_at_once() {
    let mut s = Server::start(&["-w", "1", "ctl_app:app"]);
    let sock = sock(&s);
    let _slow = in_flight(s.port, "/sleep?s=20");
    thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let a = ctl_json(&sock, &["shutdown", "quick"]);
    assert_eq!(a["mode"].str(), Some("quick"));
    s.wait_exit(Duration::from_secs(10)).expect("master exits");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn socket_settings_path_mode_and_off() {
    let dir = TempDir::new("ctlpath");
    let path = dir.join("sub").join("my.ctl");
    let s = Server::start(&[
        "--control-socket",
        path.to_str().unwrap(),
        "--control-socket-mode",
        "0660",
        "ctl_app:app",
    ]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o660);
    let dmode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dmode & 0o777, 0o700, "a missing directory is made private");
    assert_eq!(
        ctl_json(&path, &["show", "workers"])["count"].as_u64(),
        Some(1)
    );
    // A second server on the same path leaves the live one alone.
    let second = Server::start(&["--control-socket", path.to_str().unwrap(), "ctl_app:app"]);
    assert!(
        second.log().contains("in use by another running server"),
        "{}",
        second.log()
    );
    assert_eq!(
        ctl_json(&path, &["show", "stats"])["pid"].as_u64(),
        Some(s.pid as u64)
    );
    // Once the first is gone, a reload of the second opens it.
    drop(s);
    second.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || {
            UnixStream::connect(&path).is_ok()
                && ctl(&path, &["--json", "show", "stats"])
                    .stdout
                    .contains(&format!("\"pid\": {}", second.pid))
        }),
        "{}",
        second.log()
    );
    drop(second);

    let off = Server::start(&["--no-control-socket", "ctl_app:app"]);
    assert!(!sock(&off).exists());
    assert!(!off.log().contains("Control socket"), "{}", off.log());
    let out = ctl(&sock(&off), &["show", "workers"]);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
}

/// Run python3 as `nobody` (the tests run as root) to connect; what it
/// prints: `refused: ...` or the first answer.
fn as_nobody(socket: &Path) -> Option<String> {
    as_nobody_in(socket, &["--regid=nogroup", "--clear-groups"])
}

/// Like `as_nobody`, with these group options for setpriv.
fn as_nobody_in(socket: &Path, groups: &[&str]) -> Option<String> {
    let script = format!(
        "import socket, struct, json\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.settimeout(10)\n\
         try:\n    s.connect({:?})\nexcept OSError as e:\n    print('refused:', e); raise SystemExit\n\
         try:\n\
         \x20   p = json.dumps({{'id': 1, 'command': 'show workers'}}).encode()\n\
         \x20   s.sendall(struct.pack('>I', len(p)) + p)\n\
         \x20   n = struct.unpack('>I', s.recv(4))[0]\n\
         \x20   b = b''\n\
         \x20   while len(b) < n:\n        c = s.recv(n - len(b))\n        if not c: break\n        b += c\n\
         \x20   print(b.decode())\n\
         except OSError as e:\n    print('failed:', e)\n",
        socket.to_str().unwrap()
    );
    let out = Command::new("setpriv")
        .arg("--reuid=nobody")
        .args(groups)
        .args(["/usr/bin/python3", "-c"])
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn another_user_is_refused() {
    if !nix_is_root() {
        eprintln!("skipped: needs root to run a client as nobody");
        return;
    }
    let s = Server::start(&["ctl_app:app"]);
    let sock = sock(&s);
    // The server's dir must let nobody reach the socket file at all.
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let Some(out) = as_nobody(&sock) else {
        eprintln!("skipped: setpriv cannot run python3 as nobody");
        return;
    };
    assert!(
        out.starts_with("refused:"),
        "mode 0600 keeps nobody out: {out}"
    );
    // Even when the file's mode lets it connect, its uid is checked.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(&sock).unwrap();
    assert!(out.contains("\"status\":\"error\""), "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    assert!(s.log().contains("refused a connection"), "{}", s.log());
    // Root still may.
    assert_eq!(
        ctl_json(&sock, &["show", "workers"])["count"].as_u64(),
        Some(1)
    );

    // With mode 0660 the socket's group (root's here) may, whether it is
    // the peer's group or one of its supplementary groups; others may not.
    let g = Server::start(&["--control-socket-mode", "0660", "ctl_app:app"]);
    std::fs::set_permissions(g.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let gsock = g.dir.join("gunicorn.ctl");
    for groups in [
        &["--regid=0", "--clear-groups"][..],
        &["--regid=nogroup", "--groups=0"][..],
    ] {
        let out = as_nobody_in(&gsock, groups).unwrap();
        assert!(out.contains("\"status\":\"ok\""), "{groups:?}: {out}");
    }
    assert!(as_nobody(&gsock).unwrap().starts_with("refused:"));
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn stacks_of_a_worker_that_cannot_answer_come_back_at_the_deadline() {
    let s = Server::start(&["-w", "2", "ctl_app:app"]);
    let sock = sock(&s);
    let pids = s.wait_workers(2, Duration::from_secs(10));
    assert!(wait_until(Duration::from_secs(10), || {
        arr(&ctl_json(&sock, &["show", "workers"])["workers"])
            .iter()
            .all(|w| w["booted"].as_bool() == Some(true))
    }));
    // A stopped worker cannot answer; the other one does, and the master
    // serves other clients meanwhile.
    kill(pids[0], libc::SIGSTOP);
    let t = Instant::now();
    let waiting = thread::spawn({
        let sock = sock.clone();
        move || ctl_json(&sock, &["stacks"])
    });
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ctl_json(&sock, &["show", "stats"])["workers_current"].as_u64(),
        Some(2)
    );
    let answer = waiting.join().unwrap();
    let took = t.elapsed();
    kill(pids[0], libc::SIGCONT);
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(9),
        "{took:?}"
    );
    let workers = arr(&answer["workers"]);
    let stopped = workers
        .iter()
        .find(|w| w["pid"].as_u64() == Some(pids[0] as u64))
        .unwrap();
    assert!(
        stopped["error"]
            .str()
            .unwrap()
            .contains("no answer within 5 s"),
        "{stopped:?}"
    );
    let other = workers
        .iter()
        .find(|w| w["pid"].as_u64() == Some(pids[1] as u64))
        .unwrap();
    assert!(other["error"].is_null(), "{other:?}");
    // Once it runs again its late answer is dropped and it answers anew.
    thread::sleep(Duration::from_millis(300));
    let again = ctl_json(&sock, &["stacks", &pids[0].to_string()]);
    assert!(arr(&again["workers"])[0]["error"].is_null(), "{again:?}");
}

#[test]
fn the_successor_takes_the_socket_over_on_upgrade() {
    let dir = TempDir::new("ctlupgrade");
    let pidfile = dir.join("master.pid");
    let mut s = Server::start(&["-p", pidfile.to_str().unwrap(), "ctl_app:app"]);
    let sock = sock(&s);
    let first = s.pid;
    let out = run_cli(
        &["upgrade", "--pidfile", pidfile.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(s.wait_exit(Duration::from_secs(30)).is_some());
    let second: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(second, first);
    // The old master left the new one's socket in place.
    let stats = ctl_json(&sock, &["show", "stats"]);
    assert_eq!(stats["pid"].as_u64(), Some(second as u64));
    let a = ctl_json(&sock, &["shutdown"]);
    assert_eq!(a["status"].str(), Some("shutting_down"));
    assert!(wait_until(Duration::from_secs(20), || !alive(second)));
    assert!(!sock.exists());
}

#[test]
fn after_a_failed_upgrade_the_old_master_serves_the_socket_again() {
    let apps = TempDir::new("ctlbroken");
    let app = apps.join("brokenlater.py");
    std::fs::write(
        &app,
        "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'v1']\n",
    )
    .unwrap();
    let pidfile = apps.join("master.pid");
    let mut s = Server::spawn_with(
        &[],
        Some(apps.path()),
        &["-p", pidfile.to_str().unwrap(), "brokenlater:app"],
        &[],
    );
    s.wait_ready();
    let sock = sock(&s);
    std::fs::write(&app, "raise RuntimeError('this version cannot start')\n").unwrap();
    let out = run_cli(
        &["upgrade", "--pidfile", pidfile.to_str().unwrap()],
        &[],
        apps.path(),
    );
    assert_ne!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        wait_until(Duration::from_secs(10), || sock.exists()
            && UnixStream::connect(&sock).is_ok()),
        "{}",
        s.log()
    );
    assert_eq!(
        ctl_json(&sock, &["show", "stats"])["pid"].as_u64(),
        Some(s.pid as u64)
    );
    assert!(s.log().contains("taking the path back"), "{}", s.log());
}

#[test]
fn a_client_that_does_not_read_holds_up_nobody() {
    let s = Server::start(&["-w", "1", "ctl_app:app"]);
    let sock = sock(&s);
    // 300 requests sent at once, answers left unread for a while.
    let mut greedy = connect(&sock);
    let mut all = Vec::new();
    for i in 0..300 {
        all.extend(frame(&format!(
            r#"{{"id": {i}, "command": "show config"}}"#
        )));
    }
    greedy.write_all(&all).unwrap();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ctl_json(&sock, &["show", "workers"])["count"].as_u64(),
        Some(1)
    );
    // Then every answer comes, in order.
    for i in 0..300 {
        let a = read_frame(&mut greedy);
        assert_eq!(a["id"].as_u64(), Some(i));
        assert_eq!(a["data"]["workers"].as_u64(), Some(1));
    }
}

#[test]
fn connections_beyond_the_limit_are_turned_away() {
    let s = Server::start(&["-w", "1", "ctl_app:app"]);
    let sock = sock(&s);
    let held: Vec<UnixStream> = (0..32).map(|_| connect(&sock)).collect();
    thread::sleep(Duration::from_millis(300));
    let mut extra = connect(&sock);
    let a = read_frame(&mut extra);
    assert!(
        a["error"]
            .str()
            .unwrap()
            .contains("too many control connections"),
        "{a:?}"
    );
    drop(held);
    assert!(wait_until(Duration::from_secs(5), || {
        ctl(&sock, &["show", "workers"]).code() == Some(0)
    }));
    assert_eq!(get(s.port, "/").status, 200);
}
