//! ferrocorn behind the real thing: nginx with `uwsgi_pass` (and
//! `proxy_pass` with the PROXY protocol), HAProxy with `send-proxy-v2` and
//! `send-proxy`. Each test starts its own nginx or HAProxy in the
//! foreground, on ephemeral loopback ports, with a config and prefix in its
//! own temporary directory, and kills it (by its pid) at the end. Without
//! the binary (`apt-get install nginx-light haproxy`; `.ci/run` does) a
//! test prints one SKIPPED line and passes. App: tests/apps/edge.py.

mod common;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `name` in PATH or in /usr/sbin (where Debian puts both).
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port")
}

/// A proxy process we started; killed (by pid) when dropped.
struct Proxy {
    child: Child,
    log: PathBuf,
}

impl Proxy {
    fn start(mut cmd: Command, log: PathBuf, port: u16) -> Proxy {
        let out = fs::File::create(&log).expect("proxy log");
        let err = out.try_clone().expect("dup");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn the proxy");
        let mut p = Proxy { child, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("proxy exited ({st}):\n{}", p.log());
            }
            assert!(
                Instant::now() < deadline,
                "proxy not listening:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx in the foreground, one process, everything under `dir`.
fn nginx(bin: &Path, dir: &TempDir, port: u16, server_block: &str) -> Proxy {
    let prefix = dir.path();
    fs::create_dir_all(prefix.join("tmp")).unwrap();
    fs::create_dir_all(prefix.join("logs")).unwrap();
    let p = prefix.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\n\
         error_log {p}/error.log info;\npid {p}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n\
           client_body_temp_path {p}/tmp/body;\n  uwsgi_temp_path {p}/tmp/uwsgi;\n\
           proxy_temp_path {p}/tmp/proxy;\n  fastcgi_temp_path {p}/tmp/fcgi;\n\
           scgi_temp_path {p}/tmp/scgi;\n\
           server {{\n    listen 127.0.0.1:{port};\n    server_name edge.test;\n{server_block}\n  }}\n}}\n"
    );
    let conf_path = prefix.join("nginx.conf");
    fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-p").arg(prefix).arg("-c").arg(&conf_path);
    Proxy::start(cmd, prefix.join("nginx.out"), port)
}

/// nginx's own uwsgi_params (Debian's file, inlined so the test does not
/// depend on /etc/nginx).
const UWSGI_PARAMS: &str = "
    uwsgi_param QUERY_STRING $query_string;
    uwsgi_param REQUEST_METHOD $request_method;
    uwsgi_param CONTENT_TYPE $content_type;
    uwsgi_param CONTENT_LENGTH $content_length;
    uwsgi_param REQUEST_URI $request_uri;
    uwsgi_param PATH_INFO $document_uri;
    uwsgi_param DOCUMENT_ROOT $document_root;
    uwsgi_param SERVER_PROTOCOL $server_protocol;
    uwsgi_param REQUEST_SCHEME $scheme;
    uwsgi_param HTTPS $https if_not_empty;
    uwsgi_param REMOTE_ADDR $remote_addr;
    uwsgi_param REMOTE_PORT $remote_port;
    uwsgi_param SERVER_PORT $server_port;
    uwsgi_param SERVER_NAME $server_name;
    uwsgi_param HTTP_HOST $host;
";

/// One line on the real stderr (the test harness captures `println!`, so
/// it would not be seen for a passing test).
fn skip(what: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {what} is not installed (apt-get install nginx-light haproxy)"
    );
}

fn uwsgi_behind_nginx(worker: &[&str]) {
    let Some(bin) = find("nginx") else {
        return skip("nginx");
    };
    let dir = TempDir::new("nginx");
    let log = dir.join("access.log");
    let asgi = worker.contains(&"asgi");
    let mut args = vec![
        if asgi { "edge:asgi" } else { "edge:app" },
        "--protocol",
        "uwsgi",
        "--access-logfile",
        log.to_str().unwrap(),
    ];
    args.extend_from_slice(worker);
    let s = Server::start(&args);
    let port = free_port();
    let block = format!(
        "    location / {{\n{UWSGI_PARAMS}\n      uwsgi_param X_EXTRA from-nginx;\n      uwsgi_pass 127.0.0.1:{};\n    }}",
        s.port
    );
    let ngx = nginx(&bin, &dir, port, &block);

    let mut c = Conn::connect(port);
    let client_port = c.local_port().to_string();
    let body = b"hello through nginx";
    let r = c.request(
        "POST",
        "/p%41th/caf%C3%A9?a=1&b=%20",
        &[
            ("Host", "edge.test"),
            ("Content-Type", "text/plain"),
            ("X-Custom-Thing", "yes"),
        ],
        body,
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), ngx.log());
    let j = r.json();
    assert_eq!(j["body"].str(), Some("hello through nginx"));
    if asgi {
        assert_eq!(j["path"].str(), Some("/pAth/café"));
        assert_eq!(j["raw_path"].str(), Some("/p%41th/caf%C3%A9"));
        assert_eq!(j["query_string"].str(), Some("a=1&b=%20"));
        assert_eq!(j["method"].str(), Some("POST"));
        assert_eq!(j["scheme"].str(), Some("http"));
        assert_eq!(
            j["client"],
            Json::parse(&format!(r#"["127.0.0.1", {client_port}]"#)).unwrap()
        );
        assert_eq!(
            j["server"],
            Json::parse(&format!(r#"["edge.test", {port}]"#)).unwrap()
        );
    } else {
        for (k, v) in [
            ("REQUEST_METHOD", "POST"),
            // Decoded by nginx: UTF-8 bytes as latin-1 characters (PEP 3333).
            ("PATH_INFO", "/pAth/caf\u{c3}\u{a9}"),
            ("QUERY_STRING", "a=1&b=%20"),
            ("REQUEST_URI", "/p%41th/caf%C3%A9?a=1&b=%20"),
            ("RAW_URI", "/p%41th/caf%C3%A9?a=1&b=%20"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("REMOTE_PORT", client_port.as_str()),
            ("SERVER_NAME", "edge.test"),
            ("SERVER_PORT", port.to_string().as_str()),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("CONTENT_LENGTH", "19"),
            ("CONTENT_TYPE", "text/plain"),
            ("HTTP_HOST", "edge.test"),
            ("HTTP_X_CUSTOM_THING", "yes"),
            ("X_EXTRA", "from-nginx"),
            ("wsgi.url_scheme", "http"),
        ] {
            assert_eq!(j[k].str(), Some(v), "{worker:?} {k}: {j:?}");
        }
        // A streamed response without a length, through nginx (which
        // sends it on chunked, keeping the client's connection).
        let r = c.request("GET", "/big", &[("Host", "edge.test")], b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 100 * 1024, "{}", ngx.log());
    }
    // A chunked upload: nginx buffers it and sends CONTENT_LENGTH.
    let chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let mut req =
        b"POST /up HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(chunked);
    c.send(&req).unwrap();
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", ngx.log());
    assert_eq!(r.json()["body"].str(), Some("hello world"));
    // Many requests, one uwsgi connection each; the client keeps its own.
    for i in 0..20 {
        let r = c.request("GET", &format!("/n{i}"), &[("Host", "edge.test")], b"");
        assert_eq!(r.status, 200, "{i}: {}", ngx.log());
    }
    let lines = fs::read_to_string(&log).unwrap_or_default();
    let first = lines.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("127.0.0.1 ")
            && first.contains("\"POST /p%41th/caf%C3%A9?a=1&b=%20 HTTP/1.1\" 200"),
        "{lines}"
    );
    assert!(!ngx.log().contains("upstream prematurely"), "{}", ngx.log());
}

#[test]
fn uwsgi_pass_sync() {
    uwsgi_behind_nginx(&[]);
}

#[test]
fn uwsgi_pass_gthread() {
    uwsgi_behind_nginx(&["-k", "gthread", "--threads", "2"]);
}

#[test]
fn uwsgi_pass_asgi() {
    uwsgi_behind_nginx(&["-k", "asgi"]);
}

#[test]
fn uwsgi_pass_https_param_and_unix_socket() {
    let Some(bin) = find("nginx") else {
        return skip("nginx");
    };
    let dir = TempDir::new("nginxu");
    let sock = dir.join("app.sock");
    let bind = format!("unix:{}", sock.display());
    // A unix-socket peer is always allowed, whatever --uwsgi-allow-from.
    let s = Server::start(&[
        "edge:app",
        "-b",
        &bind,
        "--protocol",
        "uwsgi",
        "--uwsgi-allow-from",
        "10.9.9.9",
    ]);
    let port = free_port();
    let block = format!(
        "    location / {{\n{UWSGI_PARAMS}\n      uwsgi_param HTTPS on;\n      uwsgi_pass unix:{};\n    }}",
        sock.display()
    );
    let ngx = nginx(&bin, &dir, port, &block);
    let r = request(port, "GET", "/s", &[("Host", "edge.test")], b"");
    assert_eq!(r.status, 200, "{}", ngx.log());
    let j = r.json();
    assert_eq!(j["wsgi.url_scheme"].str(), Some("https"));
    assert_eq!(j["HTTPS"].str(), Some("on"));
    assert_eq!(j["REMOTE_ADDR"].str(), Some("127.0.0.1"));
    drop(s);
}

#[test]
fn proxy_pass_with_forwarded_headers() {
    // nginx's HTTP proxy_pass cannot send a PROXY header; its stream
    // module can (proxy_protocol on), but nginx-light has no stream
    // module. HAProxy covers PROXY clients below; here, plain proxy_pass
    // with X-Forwarded-* from a trusted nginx.
    let Some(bin) = find("nginx") else {
        return skip("nginx");
    };
    let dir = TempDir::new("nginxp");
    let s = Server::start(&["edge:app"]);
    let port = free_port();
    let block = format!(
        "    location / {{\n      proxy_set_header Host $host;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      proxy_set_header X-Forwarded-Proto https;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_pass http://127.0.0.1:{};\n    }}",
        s.port
    );
    let ngx = nginx(&bin, &dir, port, &block);
    let r = request(port, "GET", "/p", &[("Host", "edge.test")], b"");
    assert_eq!(r.status, 200, "{}", ngx.log());
    let j = r.json();
    assert_eq!(j["wsgi.url_scheme"].str(), Some("https"));
    assert_eq!(j["HTTP_X_FORWARDED_FOR"].str(), Some("127.0.0.1"));
}

/// HAProxy in the foreground: frontend `port` → ferrocorn at `backend`
/// with `send` (send-proxy-v2 or send-proxy), in TCP or HTTP mode.
fn haproxy(bin: &Path, dir: &TempDir, port: u16, backend: &str, send: &str, mode: &str) -> Proxy {
    let conf = format!(
        "global\n  maxconn 100\n\
         defaults\n  mode {mode}\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
         backend be\n  server app {backend} {send}\n"
    );
    let path = dir.join(format!("haproxy-{port}.cfg"));
    fs::write(&path, conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-db").arg("-f").arg(&path);
    Proxy::start(cmd, dir.join(format!("haproxy-{port}.out")), port)
}

fn behind_haproxy(worker: &[&str]) {
    let Some(bin) = find("haproxy") else {
        return skip("haproxy");
    };
    let dir = TempDir::new("haproxy");
    let log = dir.join("access.log");
    let asgi = worker.contains(&"asgi");
    let mut args = vec![
        if asgi { "edge:asgi" } else { "edge:app" },
        "--proxy-protocol",
        "auto",
        "--access-logfile",
        log.to_str().unwrap(),
    ];
    args.extend_from_slice(worker);
    let s = Server::start(&args);
    let backend = format!("127.0.0.1:{}", s.port);
    for (send, mode, version) in [
        ("send-proxy-v2", "tcp", "v2"),
        ("send-proxy-v2", "http", "v2"),
        ("send-proxy", "tcp", "v1"),
    ] {
        let port = free_port();
        let hap = haproxy(&bin, &dir, port, &backend, send, mode);
        let mut c = Conn::connect(port);
        let client_port = c.local_port();
        for path in ["/one", "/two"] {
            let r = c.request("GET", path, &[("Host", "edge.test")], b"");
            assert_eq!(r.status, 200, "{send} {mode}: {}\n{}", r.text(), hap.log());
            let j = r.json();
            if asgi {
                assert_eq!(
                    j["client"],
                    Json::parse(&format!(r#"["127.0.0.1", {client_port}]"#)).unwrap(),
                    "{send} {mode}"
                );
            } else {
                assert_eq!(j["REMOTE_ADDR"].str(), Some("127.0.0.1"));
                // The client's own port: the header's, not HAProxy's.
                assert_eq!(
                    j["REMOTE_PORT"].str(),
                    Some(client_port.to_string().as_str()),
                    "{send} {mode} ({version})"
                );
                assert_eq!(j["PROXY_PROTOCOL"].str(), Some("TCP4"));
                assert_eq!(j["PROXY_PORT"].str(), Some(port.to_string().as_str()));
            }
        }
        drop(c);
        drop(hap);
    }
    let lines = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        lines
            .lines()
            .filter(|l| l.contains("GET /one"))
            .all(|l| l.starts_with("127.0.0.1 ")),
        "{lines}"
    );
}

#[test]
fn haproxy_send_proxy_sync() {
    behind_haproxy(&[]);
}

#[test]
fn haproxy_send_proxy_gthread() {
    behind_haproxy(&["-k", "gthread"]);
}

#[test]
fn haproxy_send_proxy_asgi() {
    behind_haproxy(&["-k", "asgi"]);
}

#[test]
fn haproxy_health_checks_send_local_headers() {
    let Some(bin) = find("haproxy") else {
        return skip("haproxy");
    };
    let dir = TempDir::new("haproxyc");
    let log = dir.join("access.log");
    let s = Server::start(&[
        "edge:app",
        "--proxy-protocol",
        "v2",
        "--access-logfile",
        log.to_str().unwrap(),
        "--access-logformat",
        "%(h)s %({PROXY_PROTOCOL}e)s %(r)s %(s)s",
    ]);
    let port = free_port();
    // check-send-proxy: HAProxy's health checks carry a v2 LOCAL header.
    let backend = format!(
        "127.0.0.1:{} send-proxy-v2 check inter 100ms check-send-proxy\n  option httpchk GET /health",
        s.port
    );
    let hap = haproxy(&bin, &dir, port, &backend, "", "http");
    let mut lines = String::new();
    let seen = wait_until(Duration::from_secs(10), || {
        lines = fs::read_to_string(&log).unwrap_or_default();
        lines.lines().filter(|l| l.contains("/health")).count() >= 3
    });
    assert!(seen, "no health checks logged: {lines}\n{}", hap.log());
    for l in lines.lines().filter(|l| l.contains("/health")) {
        assert!(l.starts_with("127.0.0.1 LOCAL GET /health HTTP/1."), "{l}");
        assert!(l.ends_with(" 200"), "{l}");
    }
    // And the server is up for real traffic.
    let r = request(port, "GET", "/after", &[("Host", "edge.test")], b"");
    assert_eq!(r.status, 200, "{}", hap.log());
    assert!(!hap.log().contains("is DOWN"), "{}", hap.log());
}
