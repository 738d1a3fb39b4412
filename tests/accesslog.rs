//! Access-log fidelity with gunicorn 27: the exact lines gunicorn writes
//! for the same requests and the same `--access-logformat` (quotes and
//! odd bytes in atoms, environ atoms, Python conversions and widths, `%%`,
//! unknown atoms), a bad format refused at start, and access lines sent to
//! syslog with `--log-syslog` unless `--disable-redirect-access-to-syslog`.
//! The expected lines were captured from gunicorn 27.0.1 (compat/accesslog.py
//! runs both servers side by side). App: tests/apps/accesslog.py.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const APP: &str = "accesslog:app";

/// A server writing its access log with `format` to a file.
struct Logged {
    server: Server,
    path: PathBuf,
    _dir: TempDir,
}

fn start(format: &str, extra: &[&str]) -> Logged {
    let dir = TempDir::new("accesslog");
    let path = dir.join("access.log");
    let mut args = vec![
        "-w",
        "1",
        "--access-logfile",
        path.to_str().expect("utf-8 path"),
        "--access-logformat",
        format,
    ];
    args.extend_from_slice(extra);
    args.push(APP);
    let server = Server::start(&args);
    Logged {
        server,
        path,
        _dir: dir,
    }
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

impl Logged {
    /// Send `raw` on its own connection and return the status line and the
    /// access-log line it added.
    fn line(&self, raw: &[u8]) -> (String, String) {
        let before = read(&self.path).lines().count();
        let answer = send_raw(self.server.port, raw);
        let status = String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        let mut lines = Vec::new();
        wait_until(Duration::from_secs(5), || {
            lines = read(&self.path)
                .lines()
                .skip(before)
                .map(str::to_string)
                .collect();
            !lines.is_empty()
        });
        assert_eq!(lines.len(), 1, "one line per request: {lines:?}");
        (status, lines.remove(0))
    }
}

#[test]
fn quotes_and_odd_bytes_are_written_as_gunicorn_writes_them() {
    let l = start("%(r)s|%(r)r|%(U)s|%(q)s|%(f)s|%(a)s|%(a)r|%(a)a", &[]);
    // `"` becomes \" in every text atom, before any conversion.
    let (st, line) = l.line(
        b"GET /q\"uote?a=\"b\" HTTP/1.1\r\nHost: h\r\nUser-Agent: say \"hi\"\r\nReferer: http://x/\"y\"\r\n\r\n",
    );
    assert_eq!(st, "HTTP/1.1 200 Whatever");
    assert_eq!(
        line,
        r#"GET /q\"uote?a=\"b\" HTTP/1.1|'GET /q\\"uote?a=\\"b\\" HTTP/1.1'|/q\"uote|a=\"b\"|http://x/\"y\"|say \"hi\"|'say \\"hi\\"'|'say \\"hi\\"'"#
    );
    // A tab is written as it is; Latin-1 bytes as their characters, in
    // UTF-8; %r and %a escape them as Python's repr() and ascii() do.
    let (_, line) = l.line(b"GET /hi HTTP/1.1\r\nHost: h\r\nUser-Agent: caf\xe9\t\xff\x80\r\n\r\n");
    assert_eq!(
        line,
        "GET /hi HTTP/1.1|'GET /hi HTTP/1.1'|/hi||-|caf\u{e9}\t\u{ff}\u{80}|'caf\u{e9}\\t\u{ff}\\x80'|'caf\\xe9\\t\\xff\\x80'"
    );
    // PATH_INFO is decoded (%22 is a quote, %ff a Latin-1 byte); the
    // request line keeps what was sent.
    let (_, line) =
        l.line(b"GET /p%20c%22%ff?q=%ff HTTP/1.0\r\nUser-Agent: back\\slash 'sq'\r\n\r\n");
    assert_eq!(
        line,
        "GET /p%20c%22%ff?q=%ff HTTP/1.0|'GET /p%20c%22%ff?q=%ff HTTP/1.0'|/p c\\\"\u{ff}|q=%ff|-|back\\slash 'sq'|\"back\\\\slash 'sq'\"|\"back\\\\slash 'sq'\""
    );
    // Control characters in a header or the request line: 400, as in
    // gunicorn, and no access-log line (gunicorn writes none either).
    let lines = read(&l.path).lines().count();
    for raw in [
        &b"GET /c HTTP/1.1\r\nHost: h\r\nReferer: http://r/\x01\r\n\r\n"[..],
        b"GET /c HTTP/1.1\r\nHost: h\r\nUser-Agent: a\x1bb\r\n\r\n",
        b"GET /odd\x7fbyte HTTP/1.1\r\nHost: h\r\n\r\n",
    ] {
        let answer = send_raw(l.server.port, raw);
        assert!(answer.starts_with(b"HTTP/1.1 400"), "{answer:?}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read(&l.path).lines().count(), lines, "{}", read(&l.path));
}

#[test]
fn environ_and_header_atoms() {
    let l = start(
        "%(h)s|%({custom.key}e)s|%({MIXED_CASE}e)s|%({remote_addr}E)s|%({an_int}e)03d|%({wsgi.version}e)s|%({wsgi.version}e)r|%({nope}e)s|%({x-dup}i)s|%({X-RESP}o)s|%({content-length}O)s|%({missing}i)s",
        &[],
    );
    let (_, line) = l.line(b"GET / HTTP/1.1\r\nHost: h\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n");
    // Keys the app set are there, any case matches, values keep their
    // Python type (an int takes %03d, a tuple prints as Python prints it),
    // and the last of repeated request headers wins.
    assert_eq!(
        line,
        r#"127.0.0.1|set \"by\" app|mc|127.0.0.1|007|(1, 0)|(1, 0)|-|2|a \"q\" b|5|-"#
    );
    // %(h)s is the environ's REMOTE_ADDR after the app (a ProxyFix
    // rewriting it shows, as in gunicorn).
    let (_, line) = l.line(b"GET /proxied HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(line.starts_with("203.0.113.9|"), "{line}");
}

#[test]
fn every_simple_atom_and_python_conversions() {
    let l = start(
        "%(h)s|%(l)s|%(u)s|%(s)s|%(m)s|%(U)s|%(q)s|%(H)s|%(b)s|%(B)d|%(T)s|%(M)d|%(L).1s|%%|%(s)5s|%(s)-5s|%(B)05d|%(B)x|%(T).2f|%(s)d",
        &[],
    );
    let (st, line) = l.line(
        b"GET /x?status=404 HTTP/1.1\r\nHost: h\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n",
    );
    assert_eq!(st, "HTTP/1.1 404 Whatever");
    assert_eq!(
        line,
        "127.0.0.1|-|user|404|GET|/x|status=404|HTTP/1.1|5|5|0|0|0|%|  404|404  |00005|5|0.00|404"
    );
    // %(D)s in microseconds, %(L)s in seconds with six decimals, %(p)s
    // the worker's pid in angle brackets, %(t)s in brackets.
    let l = start("%(D)s|%(L)s|%(p)s|%(t)s", &[]);
    let (_, line) = l.line(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let parts: Vec<&str> = line.split('|').collect();
    let micros: u64 = parts[0].parse().expect("D is a number");
    let (secs, frac) = parts[1].split_once('.').expect("L has a point");
    assert_eq!(frac.len(), 6, "{line}");
    assert_eq!(
        secs.parse::<u64>().unwrap() * 1_000_000 + frac.parse::<u64>().unwrap(),
        micros,
        "{line}"
    );
    let worker = l.server.wait_workers(1, Duration::from_secs(10))[0];
    assert_eq!(parts[2], format!("<{worker}>"));
    assert!(
        parts[3].starts_with('[') && parts[3].ends_with(" +0000]"),
        "{line}"
    );
}

#[test]
fn unknown_atoms_render_a_dash_with_one_warning_at_start() {
    let l = start("%(zz)s|%(zz)s|%({x}q)s|%(s)s", &["-w", "2"]);
    let (_, line) = l.line(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(line, "-|-|-|200");
    let log = l.server.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("unknown atom")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0]
            .ends_with("[WARNING] access_log_format: unknown atoms %(zz), %({x}q), written as '-'"),
        "{log}"
    );
}

#[test]
fn a_bad_format_is_a_one_line_error() {
    let dir = TempDir::new("accesslog-bad");
    let apps = apps_dir().display().to_string();
    for (format, want) in [
        ("%(h", "incomplete format key"),
        ("%(h)y", "unsupported format character 'y'"),
        ("%s %(h)s", "has no atom name"),
    ] {
        let out = run_cli(
            &[
                "--chdir",
                &apps,
                "--access-logformat",
                format,
                "--check-config",
                APP,
            ],
            &[],
            dir.path(),
        );
        // a usage error, like every invalid setting value
        assert_eq!(out.code(), Some(2), "{format}: {}", out.stderr);
        let err = out.stderr.trim();
        assert!(
            err.contains("--access-logformat") && err.contains(want) && !err.contains('\n'),
            "{format}: {err}"
        );
    }
}

/// A local UDP syslog receiver: what arrived within `wait`, until `until`
/// holds.
fn receive(sock: &UdpSocket, wait: Duration, until: impl Fn(&str) -> bool) -> String {
    sock.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut got = String::new();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline && !until(&got) {
        let mut buf = [0u8; 4096];
        if let Ok(n) = sock.recv(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
            got.push('\n');
        }
    }
    got
}

fn syslog_server(extra: &[&str]) -> (UdpSocket, Server) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    let addr = format!("udp://{}", sock.local_addr().expect("local addr"));
    let mut args = vec![
        "-w",
        "1",
        "--log-syslog",
        "--log-syslog-to",
        &addr,
        "--log-syslog-prefix",
        "al",
        "--access-logformat",
        "%(m)s %(U)s %(s)s \"%(a)s\"",
    ];
    args.extend_from_slice(extra);
    args.push(APP);
    (sock, Server::start(&args))
}

#[test]
fn access_lines_go_to_syslog_with_log_syslog() {
    // No --access-logfile: as in gunicorn, syslog alone turns the access
    // log on.
    let (sock, s) = syslog_server(&[]);
    let worker = s.wait_workers(1, Duration::from_secs(20))[0];
    let r = request(
        s.port,
        "GET",
        "/to-syslog",
        &[("User-Agent", "ua \"x\"")],
        b"",
    );
    assert_eq!(r.status, 200);
    let want = format!("ferrocorn.al.access[{worker}]: GET /to-syslog 200 \"ua \\\"x\\\"\"");
    let got = receive(&sock, Duration::from_secs(10), |g| g.contains(&want));
    assert!(got.contains(&want), "syslog got:\n{got}");
    // user facility (1) * 8 + info (6) = 14, and the error log still
    // arrives under its own name.
    let line = got.lines().find(|l| l.contains(&want)).unwrap();
    assert!(line.starts_with("<14>"), "{line}");
    assert!(got.contains("ferrocorn.al["), "syslog got:\n{got}");
    // Nothing of the access log reaches stdout (the server's log).
    assert!(!s.log().contains("/to-syslog"), "{}", s.log());
}

#[test]
fn disable_redirect_access_to_syslog_keeps_access_lines_out() {
    let dir = TempDir::new("accesslog-syslog");
    let path = dir.join("access.log");
    let (sock, s) = syslog_server(&[
        "--disable-redirect-access-to-syslog",
        "--access-logfile",
        path.to_str().unwrap(),
    ]);
    let worker = s.wait_workers(1, Duration::from_secs(20))[0];
    let booted = format!("Booting worker with pid: {worker}");
    assert_eq!(get(s.port, "/not-in-syslog").status, 200);
    assert!(wait_until(Duration::from_secs(5), || read(&path)
        .contains("GET /not-in-syslog 200")));
    let got = receive(&sock, Duration::from_secs(3), |_| false);
    assert!(got.contains(&booted), "the error log goes on: {got}");
    assert!(!got.contains("/not-in-syslog"), "syslog got:\n{got}");
    assert!(!got.contains(".access["), "syslog got:\n{got}");
}

/// A server with `flag FILE` (a logging config written into its dir).
fn with_log_config(flag: &str, name: &str, text: &str, extra: &[&str]) -> (Server, TempDir) {
    let dir = TempDir::new("accesslog-logconfig");
    let conf = dir.join(name);
    let out = dir.join("out.log");
    std::fs::write(&conf, text.replace("OUT", out.to_str().unwrap())).unwrap();
    let mut args = vec![
        "-w",
        "1",
        flag,
        conf.to_str().unwrap(),
        "--access-logformat",
        "%(m)s %(U)s %(s)s \"%(a)s\"",
    ];
    args.extend_from_slice(extra);
    args.push(APP);
    (Server::start(&args), dir)
}

#[test]
fn log_config_json_sends_access_lines_through_python_logging() {
    // gunicorn 27 writes the same line with this config.
    let conf = r#"{"root": {"level": "WARNING", "handlers": []},
        "formatters": {"j": {"format": "{\"logger\": \"%(name)s\", \"line\": \"%(message)s\"}"}},
        "handlers": {"f": {"class": "logging.FileHandler", "filename": "OUT", "formatter": "j"}},
        "loggers": {"gunicorn.access": {"handlers": ["f"], "level": "INFO", "propagate": false}}}"#;
    let dir_access = TempDir::new("accesslog-unused");
    let unused = dir_access.join("unused.log");
    let (s, dir) = with_log_config(
        "--log-config-json",
        "log.json",
        conf,
        &["--access-logfile", unused.to_str().unwrap()],
    );
    let r = request(s.port, "GET", "/json", &[("User-Agent", "x\"y")], b"");
    assert_eq!(r.status, 200);
    let out = dir.join("out.log");
    let want = r#"{"logger": "gunicorn.access", "line": "GET /json 200 "x\"y""}"#;
    assert!(
        wait_until(Duration::from_secs(5), || read(&out).contains(want)),
        "{}",
        read(&out)
    );
    // The file given by --access-logfile is not written, with a warning.
    assert!(!read(&unused).contains("/json"));
    assert!(s
        .log()
        .contains("--access-logfile is not written with a logging config"));
}

#[test]
fn log_config_ini_sends_access_lines_through_python_logging() {
    let conf = "[loggers]\nkeys=root,access\n\n[handlers]\nkeys=f\n\n[formatters]\nkeys=plain\n\n\
        [logger_root]\nlevel=WARNING\nhandlers=\n\n\
        [logger_access]\nlevel=INFO\nhandlers=f\npropagate=0\nqualname=gunicorn.access\n\n\
        [handler_f]\nclass=FileHandler\nformatter=plain\nargs=('OUT',)\n\n\
        [formatter_plain]\nformat=INI %(name)s %(message)s\n";
    let (s, dir) = with_log_config("--log-config", "log.ini", conf, &[]);
    assert_eq!(get(s.port, "/ini").status, 200);
    let out = dir.join("out.log");
    assert!(
        wait_until(Duration::from_secs(5), || read(&out)
            .contains("INI gunicorn.access GET /ini 200 \"-\"")),
        "{}",
        read(&out)
    );
}

#[test]
fn a_missing_or_broken_log_config_stops_the_start() {
    let dir = TempDir::new("accesslog-badconf");
    let apps = apps_dir().display().to_string();
    let missing = dir.join("nope.json");
    let out = run_cli(
        &[
            "--chdir",
            &apps,
            "--log-config-json",
            missing.to_str().unwrap(),
            APP,
        ],
        &[],
        dir.path(),
    );
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("log config '{}' not found", missing.display())),
        "{}",
        out.stderr
    );
    // A config Python's logging refuses: the worker cannot boot, the
    // message says why, and the master stops (gunicorn stops too).
    let broken = dir.join("broken.json");
    std::fs::write(&broken, r#"{"handlers": {}}"#).unwrap();
    let mut s = Server::spawn(
        &[
            "-w",
            "1",
            "--log-config-json",
            broken.to_str().unwrap(),
            APP,
        ],
        &[],
    );
    let status = s.wait_exit(Duration::from_secs(20));
    assert!(status.is_some_and(|st| !st.success()), "{}", s.log());
    assert!(
        s.log().contains("broken.json: Unable to configure"),
        "{}",
        s.log()
    );
}

#[test]
fn remote_address_on_a_unix_socket_is_empty_as_in_gunicorn() {
    let dir = TempDir::new("accesslog-unix");
    let sock = dir.join("s.sock");
    let bind = format!("unix:{}", sock.display());
    let l = start("[%(h)s] %(r)s", &["-b", &bind]);
    let mut c = Conn::connect_unix(&sock);
    let r = c.request("GET", "/over-unix", &[], b"");
    assert_eq!(r.status, 200);
    let path = l.path.clone();
    assert!(
        wait_until(Duration::from_secs(5), || read(&path)
            .lines()
            .any(|line| line == "[] GET /over-unix HTTP/1.1")),
        "{}",
        read(&path)
    );
}

#[test]
fn logconfig_dict_from_a_python_config_file() {
    let dir = TempDir::new("accesslog-dict");
    let out = dir.join("out.log");
    let conf = dir.join("gunicorn.conf.py");
    std::fs::write(
        &conf,
        format!(
            "logconfig_dict = {{\n    'root': {{'level': 'WARNING', 'handlers': []}},\n    'formatters': {{'d': {{'format': 'DICT %(name)s %(message)s'}}}},\n    'handlers': {{'f': {{'class': 'logging.FileHandler', 'filename': {out:?}, 'formatter': 'd'}}}},\n    'loggers': {{'gunicorn.access': {{'handlers': ['f'], 'level': 'INFO', 'propagate': False}}}},\n}}\n",
            out = out.to_str().unwrap()
        ),
    )
    .unwrap();
    let s = Server::start(&[
        "-c",
        conf.to_str().unwrap(),
        "-w",
        "1",
        "--access-logformat",
        "%(m)s %(U)s %(s)s",
        APP,
    ]);
    assert_eq!(get(s.port, "/dict").status, 200);
    assert!(
        wait_until(Duration::from_secs(5), || read(&out)
            .contains("DICT gunicorn.access GET /dict 200")),
        "{}",
        read(&out)
    );
    // It round-trips through --print-config as a TOML table.
    let printed = run_cli(
        &["-c", conf.to_str().unwrap(), "--print-config", APP],
        &[],
        dir.path(),
    );
    assert!(
        printed.stdout.contains("logconfig_dict = { "),
        "{}",
        printed.stdout
    );
}

#[test]
fn a_custom_logger_class_is_refused_with_the_reason() {
    let dir = TempDir::new("accesslog-loggerclass");
    let out = run_cli(&["--logger-class", "myapp.MyLogger", APP], &[], dir.path());
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("--logger-class") && out.stderr.contains("--log-config-json"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1);
    // gunicorn's statsd logger is its default logger plus statsd, which
    // --statsd-host turns on: accepted.
    let out = run_cli(
        &[
            "--logger-class",
            "gunicorn.instrument.statsd.Statsd",
            "--print-config",
            APP,
        ],
        &[],
        dir.path(),
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    std::fs::write(
        dir.join("gunicorn.conf.py"),
        "class MyLogger:\n    pass\nlogger_class = MyLogger\n",
    )
    .unwrap();
    let out = run_cli(&[APP], &[], dir.path());
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("logger_class"), "{}", out.stderr);
    // The default is accepted.
    std::fs::remove_file(dir.join("gunicorn.conf.py")).unwrap();
    let out = run_cli(
        &[
            "--logger-class",
            "gunicorn.glogging.Logger",
            "--print-config",
            APP,
        ],
        &[],
        dir.path(),
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
}

#[test]
fn a_logging_config_takes_the_workers_error_lines_too() {
    // gunicorn.error through the config's handler and formatter; the
    // master's own lines stay in ferrocorn's error log.
    let conf = r#"{"root": {"level": "WARNING", "handlers": []},
        "formatters": {"j": {"format": "{\"logger\": \"%(name)s\", \"level\": \"%(levelname)s\", \"msg\": \"%(message)s\"}"}},
        "handlers": {"f": {"class": "logging.FileHandler", "filename": "OUT", "formatter": "j"}},
        "loggers": {"gunicorn.error": {"handlers": ["f"], "level": "INFO", "propagate": false}}}"#;
    let (mut s, dir) = with_log_config("--log-config-json", "log.json", conf, &[]);
    let worker = s.wait_workers(1, Duration::from_secs(10))[0];
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(Duration::from_secs(20)).is_some());
    let out = dir.join("out.log");
    let want = format!(
        r#"{{"logger": "gunicorn.error", "level": "INFO", "msg": "Worker exiting (pid: {worker})"}}"#
    );
    assert!(read(&out).contains(&want), "{}", read(&out));
    // Not also in ferrocorn's own log; the master's lines are there.
    assert!(!s.log().contains("Worker exiting"), "{}", s.log());
    assert!(s.log().contains("Shutting down: Master"), "{}", s.log());
}
