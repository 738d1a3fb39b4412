//! The ASGI worker (`-k asgi` and its uvicorn aliases) as a user sees it:
//! the scopes, streaming both ways with backpressure, http.disconnect,
//! 100-continue, keep-alive and pipelining, lifespan (state, failure,
//! apps without it), ASGI 2 apps, pathsend and zerocopysend, errors, the
//! access log, WORKER TIMEOUT on a blocked loop, graceful stops, worker
//! recycling, slowloris, and WebSockets through a small hand-written
//! client (handshake, masked frames, fragments, pings, close codes,
//! denials, size and UTF-8 limits, 1001 on a graceful stop).
//! Apps: tests/apps/asgi_app.py (standard library only).

mod common;

use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const APP: &str = "asgi_app:app";

/// `ferrocorn -k asgi ARGS` (the app is among ARGS), started and answering.
fn asgi(args: &[&str]) -> Server {
    let mut v = vec!["-k", "asgi"];
    v.extend_from_slice(args);
    Server::start(&v)
}

fn asgi_env(args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut v = vec!["-k", "asgi"];
    v.extend_from_slice(args);
    Server::start_env(&v, env)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Read from `c` into its buffer until `needle` is in it; false on EOF,
/// error or timeout. What was read stays buffered for `read_response`.
fn wait_for_bytes(c: &mut Conn, needle: &[u8], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut tmp = [0u8; 64 * 1024];
    let found = loop {
        if contains(&c.r.buf, needle) {
            break true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || c.r.eof {
            break false;
        }
        let _ =
            c.r.src
                .set_read_timeout(Some(left.min(Duration::from_millis(100))));
        match c.r.src.read(&mut tmp) {
            Ok(0) => c.r.eof = true,
            Ok(n) => c.r.buf.extend_from_slice(&tmp[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break false,
        }
    };
    let _ = c.r.src.set_read_timeout(Some(IO_TIMEOUT));
    found
}

/// Poll `/report?id=ID` until `done` holds for it (bounded).
fn wait_report(port: u16, id: &str, timeout: Duration, done: impl Fn(&Json) -> bool) -> Json {
    let mut last = Json::Null;
    wait_until(timeout, || {
        last = get(port, &format!("/report?id={id}")).json();
        done(&last)
    });
    last
}

fn num(j: &Json) -> Option<f64> {
    match j {
        Json::Num(n) => Some(*n),
        _ => None,
    }
}

fn strs(j: &Json) -> Vec<String> {
    match j {
        Json::Arr(v) => v
            .iter()
            .map(|x| match x {
                Json::Str(s) => s.clone(),
                Json::Num(n) => format!("{n}"),
                other => format!("{other:?}"),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn worker_pid(port: u16) -> i32 {
    get(port, "/pid").json()["pid"]
        .as_u64()
        .expect("a pid from /pid") as i32
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

// ---------------------------------------------------------------------------
// Scopes

#[test]
fn http_scope_as_the_app_sees_it() {
    let s = asgi(&[APP]);
    let mut c = Conn::connect(s.port);
    let r = c.request(
        "POST",
        "/caf%C3%A9/a%2Fb/scope?x=1&y=%20z",
        &[
            ("Host", "example.test:8080"),
            ("X-Custom", "one"),
            ("X-Mixed-Case", "Two"),
            ("x-custom", "second"),
            ("Content-Type", "text/plain"),
        ],
        b"abc",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["type"].str(), Some("http"));
    assert_eq!(j["asgi"]["version"].str(), Some("3.0"));
    let spec = j["asgi"]["spec_version"].str().unwrap_or("");
    assert!(spec.starts_with("2."), "spec_version {spec:?}");
    assert_eq!(j["http_version"].str(), Some("1.1"));
    assert_eq!(j["method"].str(), Some("POST"));
    assert_eq!(j["scheme"].str(), Some("http"));
    // Percent-decoded (UTF-8, %2F too), the raw path as sent.
    assert_eq!(j["path"].str(), Some("/café/a/b/scope"));
    assert_eq!(j["raw_path"].str(), Some("/caf%C3%A9/a%2Fb/scope"));
    assert_eq!(j["query_string"].str(), Some("x=1&y=%20z"));
    assert_eq!(j["root_path"].str(), Some(""));
    // Every header, names lower-cased, in the order sent, repeats kept.
    let headers: Vec<Vec<String>> = match &j["headers"] {
        Json::Arr(v) => v.iter().map(strs).collect(),
        other => panic!("headers: {other:?}"),
    };
    let want: Vec<Vec<String>> = [
        ("host", "example.test:8080"),
        ("x-custom", "one"),
        ("x-mixed-case", "Two"),
        ("x-custom", "second"),
        ("content-type", "text/plain"),
        ("content-length", "3"),
    ]
    .iter()
    .map(|(a, b)| vec![a.to_string(), b.to_string()])
    .collect();
    assert_eq!(headers, want);
    assert_eq!(
        strs(&j["client"]),
        vec!["127.0.0.1".to_string(), c.local_port().to_string()]
    );
    assert_eq!(
        strs(&j["server"]),
        vec!["127.0.0.1".to_string(), s.port.to_string()]
    );
    assert!(
        j["extensions"].has("http.response.pathsend")
            && j["extensions"].has("http.response.zerocopysend"),
        "extensions: {:?}",
        j["extensions"].keys()
    );
    assert_eq!(j["body_len"].as_u64(), Some(3));
    // Lifespan state reaches the request.
    assert_eq!(j["state"]["token"].str(), Some("from-lifespan"));

    // HTTP/1.0, no Host, empty query.
    let mut c = Conn::connect(s.port);
    c.send(b"GET /scope HTTP/1.0\r\n\r\n").unwrap();
    let j = c.read_response().json();
    assert_eq!(j["http_version"].str(), Some("1.0"));
    assert_eq!(j["method"].str(), Some("GET"));
    assert_eq!(j["query_string"].str(), Some(""));
    assert_eq!(j["body_len"].as_u64(), Some(0));
}

#[test]
fn lifespan_state_is_set_in_the_worker_that_serves() {
    let s = asgi(&[APP]);
    let pid = worker_pid(s.port);
    for _ in 0..3 {
        let j = get(s.port, "/scope").json();
        assert_eq!(j["state"]["token"].str(), Some("from-lifespan"));
        assert_eq!(j["state"]["pid_at_startup"].as_u64(), Some(pid as u64));
    }
    let log = s.log();
    assert!(log.contains("Application startup complete."), "log:\n{log}");
}

#[test]
fn uvicorn_worker_alias_serves_the_same_app() {
    for class in [
        "uvicorn.workers.UvicornWorker",
        "uvicorn_worker.UvicornWorker",
    ] {
        let s = Server::start(&["-k", class, APP]);
        let r = get(s.port, "/hello");
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello asgi"),
            "{class}"
        );
    }
}

#[test]
fn root_path_prefixes_path_and_raw_path_as_uvicorn_does() {
    let s = asgi(&["--root-path", "/api", APP]);
    let j = get(s.port, "/items/scope?q=1").json();
    assert_eq!(j["root_path"].str(), Some("/api"));
    assert_eq!(j["path"].str(), Some("/api/items/scope"));
    assert_eq!(j["raw_path"].str(), Some("/api/items/scope"));
    assert_eq!(j["query_string"].str(), Some("q=1"));
}

#[test]
fn forwarded_scheme_from_a_trusted_proxy_makes_scope_scheme_https() {
    // 127.0.0.1 is trusted by default.
    let s = asgi(&[APP]);
    let scheme = |port: u16, h: &[(&str, &str)]| {
        request(port, "GET", "/scope", h, b"").json()["scheme"]
            .str()
            .unwrap_or("?")
            .to_string()
    };
    assert_eq!(scheme(s.port, &[("X-Forwarded-Proto", "https")]), "https");
    assert_eq!(scheme(s.port, &[("X-Forwarded-Ssl", "on")]), "https");
    assert_eq!(scheme(s.port, &[]), "http");
    drop(s);
    let s = asgi(&["--forwarded-allow-ips", "10.0.0.1", APP]);
    assert_eq!(scheme(s.port, &[("X-Forwarded-Proto", "https")]), "http");
}

#[test]
fn asgi2_double_callable_app() {
    let s = asgi(&["asgi_app:app2"]);
    let r = request(s.port, "POST", "/two", &[], b"xyz");
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["asgi2"].as_bool(), Some(true));
    assert_eq!(j["asgi"]["version"].str(), Some("2.0"));
    assert_eq!(j["path"].str(), Some("/two"));
    assert_eq!(j["body"].str(), Some("xyz"));
}

// ---------------------------------------------------------------------------
// Bodies: streaming, backpressure, disconnect, 100-continue

#[test]
fn a_streamed_response_is_chunked_and_each_chunk_leaves_when_sent() {
    let s = asgi(&[APP]);
    let mut c = Conn::connect(s.port);
    c.send_request("GET", "/stream?n=3&gap=0.8", &[], b"");
    assert!(
        wait_for_bytes(&mut c, b"chunk-0;", Duration::from_secs(10)),
        "no first chunk; got {:?}",
        String::from_utf8_lossy(&c.r.buf)
    );
    let first = Instant::now();
    assert!(
        wait_for_bytes(&mut c, b"chunk-2;", Duration::from_secs(10)),
        "no last chunk"
    );
    let gap = first.elapsed();
    // The app sleeps 0.8 s between chunks: the first one was not held
    // back until the end.
    assert!(
        gap >= Duration::from_millis(1200),
        "first and last chunk arrived {gap:?} apart"
    );
    let r = c.read_response();
    assert!(r.chunked && r.complete, "{r:?}");
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.text(), "chunk-0;chunk-1;chunk-2;");
    // The connection stays usable after a chunked response.
    assert_eq!(c.request("GET", "/hello", &[], b"").text(), "hello asgi");

    // To an HTTP/1.0 client: no chunked framing, the close ends the body.
    let mut c = Conn::connect(s.port);
    c.send(b"GET /stream?n=2&gap=0 HTTP/1.0\r\n\r\n").unwrap();
    let r = c.read_response();
    assert!(!r.chunked, "{r:?}");
    assert_eq!(r.text(), "chunk-0;chunk-1;");
    assert!(c.is_closed(Duration::from_secs(3)));
}

/// Write up to `total` bytes of a POST body to PATH for at most `budget`;
/// returns the bytes the server took and the connection.
fn upload(port: u16, path: &str, total: usize, budget: Duration) -> (usize, Conn) {
    let mut c = Conn::connect(port);
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n");
    c.send(head.as_bytes()).unwrap();
    let chunk = vec![b'u'; 64 * 1024];
    let deadline = Instant::now() + budget;
    let mut sent = 0;
    let Stream::Tcp(tcp) = &c.r.src else {
        unreachable!()
    };
    let mut tcp: &TcpStream = tcp;
    tcp.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while sent < total && Instant::now() < deadline {
        let n = chunk.len().min(total - sent);
        match tcp.write(&chunk[..n]) {
            Ok(k) => sent += k,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    (sent, c)
}

#[test]
fn an_app_that_does_not_receive_holds_the_upload_back() {
    let s = asgi(&[APP]);
    const TOTAL: usize = 50 << 20;
    // The app sleeps 4 s and never calls receive(): the server must not
    // swallow the body meanwhile (only socket buffers take some).
    let (sent, _held) = upload(s.port, "/sink?read=0&s=4", TOTAL, Duration::from_secs(2));
    assert!(
        sent < TOTAL / 2,
        "{sent} of {TOTAL} bytes went to an app that never called receive()"
    );
    // An app that reads takes it all, quickly.
    let t = Instant::now();
    let (sent, mut c) = upload(s.port, "/sink?read=1", TOTAL, Duration::from_secs(30));
    assert_eq!(sent, TOTAL, "the reading app took only {sent} bytes");
    let r = c.read_response();
    assert_eq!(r.json()["received"].as_u64(), Some(TOTAL as u64));
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "50 MB took {:?}",
        t.elapsed()
    );
}

#[test]
fn a_client_leaving_mid_response_is_an_http_disconnect_for_the_app() {
    let s = asgi(&["-w", "1", APP]);
    let mut c = Conn::connect(s.port);
    c.send_request("GET", "/hold?id=h1", &[], b"");
    assert!(wait_for_bytes(&mut c, b"first;", Duration::from_secs(10)));
    let j = get(s.port, "/report?id=h1").json();
    assert_eq!(j["state"].str(), Some("waiting"), "{j:?}");
    drop(c);
    let j = wait_report(s.port, "h1", Duration::from_secs(5), |j| {
        j["state"].str() == Some("disconnect")
    });
    assert_eq!(j["state"].str(), Some("disconnect"), "{j:?}");
    let after = num(&j["after"]).unwrap_or(99.0);
    assert!(
        after < 2.5,
        "http.disconnect came {after} s after the client left"
    );
}

#[test]
fn a_client_leaving_a_long_poll_is_an_http_disconnect_for_the_app() {
    let s = asgi(&["-w", "1", APP]);
    let mut c = Conn::connect(s.port);
    c.send_request("GET", "/longpoll?id=lp1", &[], b"");
    let j = wait_report(s.port, "lp1", Duration::from_secs(5), |j| {
        j["state"].str() == Some("waiting")
    });
    assert_eq!(j["state"].str(), Some("waiting"), "{j:?}");
    drop(c);
    let j = wait_report(s.port, "lp1", Duration::from_secs(5), |j| {
        j["state"].str() == Some("disconnect")
    });
    assert_eq!(j["state"].str(), Some("disconnect"), "{j:?}");
}

#[test]
fn an_app_streaming_to_a_client_that_left_is_stopped() {
    let s = asgi(&["-w", "1", "--asgi-disconnect-grace-period", "1", APP]);
    let mut c = Conn::connect(s.port);
    c.send_request("GET", "/pour?id=p1", &[], b"");
    assert!(wait_for_bytes(&mut c, b"xxxx", Duration::from_secs(10)));
    drop(c);
    // send() raising OSError (ASGI 2.4) or the task being cancelled after
    // the grace period: either way the app stops pouring into the void.
    let j = wait_report(s.port, "p1", Duration::from_secs(8), |j| {
        matches!(j["state"].str(), Some("raised" | "cancelled"))
    });
    match j["state"].str() {
        Some("raised") => assert_eq!(j["oserror"].as_bool(), Some(true), "{j:?}"),
        Some("cancelled") => {}
        _ => panic!("the app still streams to a gone client: {j:?}"),
    }
    let after = num(&j["after"]).unwrap_or(99.0);
    assert!(after < 5.0, "stopped after {after} s");
    // The worker is fine.
    assert_eq!(get(s.port, "/hello").status, 200);
}

#[test]
fn expect_100_continue_is_sent_when_the_app_first_receives() {
    let s = asgi(&[APP]);
    let mut c = Conn::connect(s.port);
    c.send(
        b"POST /continue?read=1&delay=0.8 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let t = Instant::now();
    let r = c.read_any_response().expect("an interim response");
    assert_eq!(r.status, 100, "{r:?}");
    // The app waits 0.8 s before its receive(): 100 comes then, not
    // when the head arrives.
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "100 Continue after {:?}",
        t.elapsed()
    );
    c.send(b"hello").unwrap();
    let r = c.read_any_response().expect("the final response");
    assert_eq!((r.status, r.text().as_str()), (200, "got:hello"));

    // An app that never receives: no 100, straight to its answer.
    let mut c = Conn::connect(s.port);
    c.send(
        b"POST /continue?read=0 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let r = c.read_any_response().expect("a response");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "did not read"),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------
// Connections and framing

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let s = asgi(&[APP]);
    let mut c = Conn::connect(s.port);
    for i in 0..20 {
        let r = c.request("GET", "/hello", &[], b"");
        assert_eq!((r.status, r.text().as_str()), (200, "hello asgi"), "#{i}");
        assert!(!r.closes(), "#{i} closes: {r:?}");
    }
    let r = c.request("POST", "/scope", &[], &[b'b'; 1000]);
    assert_eq!(r.json()["body_len"].as_u64(), Some(1000));
    assert!(!c.is_closed(Duration::from_millis(300)));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = asgi(&[APP]);
    let mut c = Conn::connect(s.port);
    let mut all = Vec::new();
    all.extend(build_request("GET", "/slow?s=0.4", &[], b""));
    all.extend(build_request("GET", "/hello", &[], b""));
    all.extend(build_request("POST", "/scope", &[], b"abc"));
    all.extend(build_request("GET", "/slow?s=0.1", &[], b""));
    all.extend(build_request("HEAD", "/hello", &[], b""));
    all.extend(build_request("GET", "/stream?n=2&gap=0", &[], b""));
    c.send(&all).unwrap();
    assert_eq!(c.read_response().text(), "slept 0.4");
    assert_eq!(c.read_response().text(), "hello asgi");
    assert_eq!(c.read_response().json()["body_len"].as_u64(), Some(3));
    assert_eq!(c.read_response().text(), "slept 0.1");
    let head = c.r.response(true).expect("the HEAD response");
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(c.read_response().text(), "chunk-0;chunk-1;");
    assert_eq!(c.request("GET", "/hello", &[], b"").text(), "hello asgi");
}

#[test]
fn head_gets_the_headers_and_no_body() {
    let s = asgi(&[APP]);
    let mut c = Conn::connect(s.port);
    let r = c.request("HEAD", "/hello", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("10"));
    // Nothing after the head: the next response parses.
    let r = c.request("GET", "/hello", &[], b"");
    assert_eq!(r.text(), "hello asgi");
    // A streamed HEAD: no chunks either.
    let r = c.request("HEAD", "/stream?n=2&gap=0", &[], b"");
    assert_eq!(r.status, 200);
    let r = c.request("GET", "/hello", &[], b"");
    assert_eq!(r.text(), "hello asgi");
}

#[test]
fn an_app_exception_is_a_500_and_logged() {
    let s = asgi(&[APP]);
    let pid = worker_pid(s.port);
    let r = get(s.port, "/raise");
    assert_eq!(r.status, 500);
    assert!(
        wait_until(Duration::from_secs(5), || s
            .log()
            .contains("asgi-test-boom")),
        "log:\n{}",
        s.log()
    );
    let log = s.log();
    assert!(log.contains("Exception in ASGI application"), "log:\n{log}");
    assert!(log.contains("RuntimeError: asgi-test-boom"), "log:\n{log}");
    // Same worker, still serving.
    assert_eq!(worker_pid(s.port), pid);
}

#[test]
fn returning_without_a_response_is_a_500() {
    let s = asgi(&[APP]);
    let r = get(s.port, "/noresponse");
    assert_eq!(r.status, 500);
    assert!(
        wait_until(Duration::from_secs(5), || s
            .log()
            .contains("returned without sending a response")),
        "log:\n{}",
        s.log()
    );
    assert_eq!(get(s.port, "/hello").status, 200);
}

#[test]
fn pathsend_and_zerocopysend_send_the_file() {
    let dir = TempDir::new("asgi-files");
    let file = dir.join("data.bin");
    let data = pseudo_random(3 * 1024 * 1024 + 17, 7);
    fs::write(&file, &data).unwrap();
    let f = file.to_str().unwrap();
    for extra in [&[][..], &["--no-sendfile"][..]] {
        let mut args = extra.to_vec();
        args.push(APP);
        let s = asgi(&args);
        let r = get(s.port, &format!("/pathsend?file={f}"));
        assert_eq!(r.status, 200, "{extra:?}");
        assert_eq!(r.body.len(), data.len(), "{extra:?}");
        assert_eq!(sha256_hex(&r.body), sha256_hex(&data), "pathsend {extra:?}");
        let r = get(s.port, &format!("/zerocopy?file={f}"));
        assert_eq!(sha256_hex(&r.body), sha256_hex(&data), "zerocopy {extra:?}");
        let r = get(
            s.port,
            &format!("/zerocopy?file={f}&offset=1000&count=100000"),
        );
        assert_eq!(r.body, &data[1000..101_000], "zerocopy range {extra:?}");
        // Keep-alive after a file.
        let mut c = Conn::connect(s.port);
        let r = c.request("GET", &format!("/pathsend?file={f}"), &[], b"");
        assert_eq!(r.body.len(), data.len());
        assert_eq!(c.request("GET", "/hello", &[], b"").text(), "hello asgi");
    }
}

// ---------------------------------------------------------------------------
// Lifespan

#[test]
fn lifespan_startup_failure_stops_the_master_as_a_boot_error() {
    let started = Instant::now();
    let mut s = Server::spawn(&["-k", "asgi", "-w", "2", "asgi_app:startup_fails"], &[]);
    let st = s
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the master did not exit; log:\n{}", s.log()));
    let log = s.log();
    // As for an import error (tests/process.rs): the master stops by
    // itself, promptly, non-zero, without respawning, with the reason.
    assert_eq!(st.code(), Some(3), "log:\n{log}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let reason: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("asgi-test: the database is unreachable"))
        .collect();
    assert_eq!(reason.len().min(1), 1, "no reason line; log:\n{log}");
    assert!(reason[0].contains("[ERROR]"), "reason line {:?}", reason[0]);
    assert!(log.contains("Application startup failed"), "log:\n{log}");
    assert!(log.contains("Worker failed to boot."), "log:\n{log}");
    assert!(!log.contains("Traceback"), "log:\n{log}");
    assert!(count(&log, "Booting worker with pid: ") <= 2, "log:\n{log}");
    assert!(
        wait_until(Duration::from_secs(5), || s.group_pids().is_empty()),
        "processes left: {:?}",
        s.group_pids()
    );
}

#[test]
fn an_app_without_lifespan_works_under_auto_and_fails_under_on() {
    let s = asgi(&["asgi_app:no_lifespan"]);
    assert_eq!(get(s.port, "/hello").text(), "hello asgi");
    let log = s.log();
    assert!(
        log.contains("ASGI 'lifespan' protocol appears unsupported."),
        "log:\n{log}"
    );
    assert!(!log.contains("Traceback"), "log:\n{log}");
    drop(s);
    let mut s = Server::spawn(
        &[
            "-k",
            "asgi",
            "--asgi-lifespan",
            "on",
            "asgi_app:no_lifespan",
        ],
        &[],
    );
    let st = s
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the master did not exit; log:\n{}", s.log()));
    let log = s.log();
    assert_eq!(st.code(), Some(3), "log:\n{log}");
    assert!(
        log.contains("Exception in 'lifespan' protocol"),
        "log:\n{log}"
    );
    assert!(log.contains("only http here"), "log:\n{log}");
}

#[test]
fn lifespan_off_never_runs_the_lifespan() {
    let s = asgi(&["--asgi-lifespan", "off", "asgi_app:startup_fails"]);
    assert_eq!(get(s.port, "/").text(), "should not serve");
    assert!(!s.log().contains("Waiting for application startup"));
}

#[test]
fn lifespan_shutdown_runs_on_term() {
    let dir = TempDir::new("asgi-marks");
    let marks = dir.join("marks");
    let mut s = asgi_env(
        &["-w", "1", APP],
        &[("ASGI_TEST_MARKS", marks.to_str().unwrap())],
    );
    let pid = worker_pid(s.port);
    s.signal(libc::SIGTERM);
    let st = s.wait_exit(Duration::from_secs(20));
    assert_eq!(st.and_then(|x| x.code()), Some(0), "log:\n{}", s.log());
    let got = fs::read_to_string(&marks).unwrap_or_default();
    assert_eq!(got, format!("shutdown {pid}\n"), "log:\n{}", s.log());
    assert!(
        s.log().contains("Application shutdown complete."),
        "log:\n{}",
        s.log()
    );
}

// ---------------------------------------------------------------------------
// The worker's life: timeout, signals, recycling, access log, slowloris

#[test]
fn a_blocked_event_loop_trips_worker_timeout_and_logs_its_stack() {
    let s = asgi(&["-w", "1", "-t", "2", APP]);
    let pid = worker_pid(s.port);
    // Idle for longer than the timeout: the loop keeps the worker alive.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(worker_pid(s.port), pid, "an idle worker was replaced");
    let port = s.port;
    let h = thread::spawn(move || {
        let mut c = Conn::connect(port);
        c.send_request("GET", "/block?s=60", &[], b"");
        let _ = c.try_read_response();
    });
    let needle = format!("WORKER TIMEOUT (pid:{pid})");
    assert!(
        wait_until(Duration::from_secs(20), || s.log().contains(&needle)),
        "no {needle}; log:\n{}",
        s.log()
    );
    let ok = wait_until(Duration::from_secs(10), || {
        let log = s.log();
        let after = &log[log.find(&needle).unwrap_or(0)..];
        after.contains("block_the_loop_here") && after.contains("asgi_app.py")
    });
    assert!(ok, "no Python stack of the blocked loop; log:\n{}", s.log());
    let _ = h.join();
    let mut now = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            now = s.worker_pids();
            now.len() == 1 && now[0] != pid
        }),
        "no replacement: {now:?}"
    );
    assert_eq!(get(s.port, "/hello").status, 200);
}

#[test]
fn term_lets_an_in_flight_request_finish() {
    let mut s = asgi(&["-w", "1", "--graceful-timeout", "20", APP]);
    let mark = s.dir.join("in-app");
    let path = format!("/slow?s=1.5&mark={}", mark.to_str().unwrap());
    let port = s.port;
    let h = thread::spawn(move || {
        let mut c = Conn::connect(port);
        c.r.src.set_timeouts(Some(Duration::from_secs(20))).unwrap();
        c.send_request("GET", &path, &[], b"");
        c.try_read_response()
    });
    assert!(
        wait_until(Duration::from_secs(10), || mark.exists()),
        "the request never reached the app"
    );
    let t = Instant::now();
    s.signal(libc::SIGTERM);
    let r = h.join().unwrap();
    match r {
        Ok(r) => assert_eq!(r.text(), "slept 1.5"),
        Err(e) => panic!(
            "the in-flight request failed on TERM: {e}; log:\n{}",
            s.log()
        ),
    }
    let st = s.wait_exit(Duration::from_secs(20));
    assert_eq!(st.and_then(|x| x.code()), Some(0), "log:\n{}", s.log());
    // It waited for the request, not for the graceful timeout.
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(s.group_pids().is_empty(), "left: {:?}", s.group_pids());
}

#[test]
fn max_requests_recycles_the_worker() {
    let s = asgi(&["-w", "1", "--max-requests", "3", APP]);
    let first = s.wait_workers(1, Duration::from_secs(10));
    let mut pids = Vec::new();
    for _ in 0..8 {
        let r = get(s.port, "/pid");
        assert_eq!(r.status, 200);
        pids.push(r.json()["pid"].as_u64().unwrap());
    }
    pids.sort_unstable();
    pids.dedup();
    assert!(
        pids.len() >= 2,
        "8 requests, max 3 each, served by {pids:?}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            let now = s.worker_pids();
            now.len() == 1 && now != first
        }),
        "log:\n{}",
        s.log()
    );
    assert!(
        s.log().contains("Autorestarting worker"),
        "log:\n{}",
        s.log()
    );
}

fn read_lines(path: &std::path::Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn access_log_lines_match_the_wsgi_worker() {
    let format = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(B)s "%(f)s" "%(a)s" %(m)s %(U)s %(q)s %(H)s %({x-test}i)s %({content-type}o)s"#;
    let dir = TempDir::new("asgi-access");
    let mut lines = Vec::new();
    for (class, app) in [("sync", "asgi_app:wsgi_hello"), ("asgi", APP)] {
        let path = dir.join(format!("{class}.log"));
        let s = Server::start(&[
            "-k",
            class,
            "--access-logfile",
            path.to_str().unwrap(),
            "--access-logformat",
            format,
            app,
        ]);
        // The start probe's line first.
        wait_until(Duration::from_secs(5), || !read_lines(&path).is_empty());
        let before = read_lines(&path).len();
        let r = request(
            s.port,
            "GET",
            "/hello?a=1&b=%20",
            &[
                ("Referer", "http://ref.example/"),
                ("User-Agent", "asgi-test/1.0"),
                ("X-Test", "xv"),
            ],
            b"",
        );
        assert_eq!(r.text(), "hello asgi", "{class}");
        let mut got = Vec::new();
        wait_until(Duration::from_secs(5), || {
            got = read_lines(&path).split_off(before.min(read_lines(&path).len()));
            !got.is_empty()
        });
        assert_eq!(got.len(), 1, "{class}: {got:?}");
        // Mask the time.
        let l = &got[0];
        let (a, rest) = l.split_once(" [").expect("a [time]");
        let (_, b) = rest.split_once("] ").expect("a [time]");
        lines.push(format!("{a} [T] {b}"));
    }
    assert_eq!(
        lines[0],
        r#"127.0.0.1 - - [T] "GET /hello?a=1&b=%20 HTTP/1.1" 200 10 10 "http://ref.example/" "asgi-test/1.0" GET /hello a=1&b=%20 HTTP/1.1 xv text/plain"#
    );
    assert_eq!(lines[1], lines[0], "ASGI line differs from the WSGI one");
}

#[test]
fn slowloris_does_not_starve_the_asgi_worker() {
    let s = asgi(&["-w", "1", APP]);
    let mut slow: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", s.port)).ok())
        .collect();
    for c in &mut slow {
        let _ = c.set_write_timeout(Some(Duration::from_millis(200)));
        let _ = c.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n");
    }
    let t = Instant::now();
    let mut worst = Duration::ZERO;
    let mut round = 0u8;
    while t.elapsed() < Duration::from_secs(3) {
        for c in &mut slow {
            let _ = c.write_all(&[b'a' + round % 26]);
        }
        round = round.wrapping_add(1);
        let one = Instant::now();
        let r = get(s.port, "/hello");
        assert_eq!(r.text(), "hello asgi");
        worst = worst.max(one.elapsed());
        thread::sleep(Duration::from_millis(300));
    }
    assert!(
        worst < Duration::from_secs(2),
        "a normal request took {worst:?} beside 200 slow clients"
    );
}

// ---------------------------------------------------------------------------
// WebSockets: a small client written here (RFC 6455)

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// SHA-1 (FIPS 180-4), for Sec-WebSocket-Accept.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
const CONT: u8 = 0x0;

#[derive(Debug)]
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl Frame {
    /// A close frame's code and reason.
    fn close(&self) -> (Option<u16>, String) {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        if self.payload.len() < 2 {
            return (None, String::new());
        }
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        (
            Some(code),
            String::from_utf8_lossy(&self.payload[2..]).into_owned(),
        )
    }
}

struct Ws {
    r: Reader<Stream>,
    seed: u64,
}

/// Open a WebSocket on PATH; Err(the HTTP response) when refused.
fn ws_connect(port: u16, path: &str, extra: &[(&str, &str)]) -> Result<(Ws, Response), Response> {
    let c = Conn::connect(port);
    let key = base64(&pseudo_random(16, port as u64 ^ 0x5eed));
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut r = c.r;
    r.src.write_all(req.as_bytes()).expect("send the upgrade");
    let resp = r.response(false).expect("an answer to the upgrade");
    if resp.status != 101 {
        return Err(resp);
    }
    let want = base64(&sha1(format!("{key}{WS_GUID}").as_bytes()));
    assert_eq!(
        resp.header("sec-websocket-accept"),
        Some(want.as_str()),
        "{resp:?}"
    );
    assert!(
        resp.header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket")),
        "{resp:?}"
    );
    Ok((
        Ws {
            r,
            seed: 0x1234_5678_9abc_def1,
        },
        resp,
    ))
}

fn ws_open(port: u16, path: &str) -> Ws {
    match ws_connect(port, path, &[]) {
        Ok((ws, _)) => ws,
        Err(r) => panic!("websocket {path} refused: {r:?}"),
    }
}

impl Ws {
    fn mask(&mut self) -> [u8; 4] {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed as u32).to_le_bytes()
    }

    /// One frame, masked (as a client must) unless `unmasked`.
    fn frame_bytes(&mut self, fin: bool, opcode: u8, payload: &[u8], unmasked: bool) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        let bit = if unmasked { 0 } else { 0x80 };
        let n = payload.len();
        if n < 126 {
            f.push(bit | n as u8);
        } else if n <= 0xffff {
            f.push(bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        if unmasked {
            f.extend_from_slice(payload);
        } else {
            let m = self.mask();
            f.extend_from_slice(&m);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        f
    }

    fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let f = self.frame_bytes(fin, opcode, payload, false);
        self.r.src.write_all(&f)
    }

    fn text(&mut self, s: &str) {
        self.send_frame(true, TEXT, s.as_bytes())
            .expect("send text");
    }

    fn binary(&mut self, b: &[u8]) {
        self.send_frame(true, BINARY, b).expect("send binary");
    }

    fn send_close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_bytes());
        self.send_frame(true, CLOSE, &p)
    }

    /// Make sure `n` bytes are buffered before `deadline`.
    fn need(&mut self, n: usize, deadline: Instant) -> io::Result<()> {
        let mut tmp = [0u8; 64 * 1024];
        while self.r.buf.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no frame in time"));
            }
            self.r.src.set_read_timeout(Some(left))?;
            match self.r.src.read(&mut tmp) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF")),
                Ok(k) => self.r.buf.extend_from_slice(&tmp[..k]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The server's next frame (never masked).
    fn read_frame(&mut self, timeout: Duration) -> io::Result<Frame> {
        let deadline = Instant::now() + timeout;
        self.need(2, deadline)?;
        let (b0, b1) = (self.r.buf[0], self.r.buf[1]);
        assert_eq!(b1 & 0x80, 0, "the server masked a frame");
        assert_eq!(b0 & 0x70, 0, "RSV bits set without an extension");
        let (len, hdr) = match b1 & 0x7f {
            126 => {
                self.need(4, deadline)?;
                (
                    u16::from_be_bytes([self.r.buf[2], self.r.buf[3]]) as usize,
                    4,
                )
            }
            127 => {
                self.need(10, deadline)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.r.buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        self.need(hdr + len, deadline)?;
        let payload = self.r.buf[hdr..hdr + len].to_vec();
        self.r.buf.drain(..hdr + len);
        Ok(Frame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0f,
            payload,
        })
    }

    /// The next data message (fragments joined) or control frame.
    fn read_message(&mut self, timeout: Duration) -> Frame {
        let deadline = Instant::now() + timeout;
        let mut first = self.next(deadline);
        if first.opcode >= CLOSE {
            return first;
        }
        while !first.fin {
            let f = self.next(deadline);
            assert_eq!(f.opcode, CONT, "expected a continuation: {f:?}");
            first.payload.extend_from_slice(&f.payload);
            first.fin = f.fin;
        }
        first
    }

    fn next(&mut self, deadline: Instant) -> Frame {
        let left = deadline.saturating_duration_since(Instant::now());
        self.read_frame(left.max(Duration::from_millis(1)))
            .unwrap_or_else(|e| panic!("reading a websocket frame: {e}"))
    }

    /// True if the server closes the TCP connection within `timeout`.
    fn eof_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.need(self.r.buf.len() + 1, deadline) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return true,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
                Ok(()) => {}
            }
        }
    }
}

#[test]
fn websocket_echoes_text_and_binary_with_the_chosen_subprotocol() {
    let s = asgi(&[APP]);
    let (mut ws, resp) = ws_connect(
        s.port,
        "/ws-echo",
        &[("Sec-WebSocket-Protocol", "chat, superchat")],
    )
    .unwrap_or_else(|r| panic!("refused: {r:?}"));
    assert_eq!(resp.header("sec-websocket-protocol"), Some("chat"));
    ws.text("hello ✓");
    let m = ws.read_message(Duration::from_secs(5));
    assert_eq!(
        (m.opcode, m.payload.as_slice()),
        (TEXT, "hello ✓".as_bytes())
    );
    let bytes: Vec<u8> = (0..=255).collect();
    ws.binary(&bytes);
    let m = ws.read_message(Duration::from_secs(5));
    assert_eq!((m.opcode, m.payload), (BINARY, bytes));
    // 16-bit and 64-bit lengths.
    for n in [300, 300_000] {
        let big = pseudo_random(n, n as u64);
        ws.binary(&big);
        let m = ws.read_message(Duration::from_secs(10));
        assert_eq!(m.opcode, BINARY);
        assert_eq!(sha256_hex(&m.payload), sha256_hex(&big), "{n} bytes");
    }
}

#[test]
fn websocket_fragments_are_joined_and_pings_answered() {
    let s = asgi(&[APP]);
    let mut ws = ws_open(s.port, "/ws-echo");
    ws.send_frame(true, PING, b"p0").unwrap();
    let f = ws.read_message(Duration::from_secs(5));
    assert_eq!((f.opcode, f.payload.as_slice()), (PONG, &b"p0"[..]));
    // A ping between the fragments is answered at once.
    ws.send_frame(false, TEXT, b"frag-").unwrap();
    ws.send_frame(true, PING, b"p1").unwrap();
    ws.send_frame(false, CONT, b"ment").unwrap();
    ws.send_frame(true, CONT, b"ed").unwrap();
    let f = ws.read_message(Duration::from_secs(5));
    assert_eq!((f.opcode, f.payload.as_slice()), (PONG, &b"p1"[..]));
    let f = ws.read_message(Duration::from_secs(5));
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (TEXT, &b"frag-mented"[..])
    );
    ws.send_frame(false, BINARY, &[1, 2]).unwrap();
    ws.send_frame(true, CONT, &[3]).unwrap();
    let f = ws.read_message(Duration::from_secs(5));
    assert_eq!((f.opcode, f.payload.as_slice()), (BINARY, &[1u8, 2, 3][..]));
}

#[test]
fn websocket_app_closes_with_its_code_and_reason() {
    let s = asgi(&["-w", "1", APP]);
    let mut ws = ws_open(s.port, "/ws-echo?id=w4001");
    ws.text("close-4001");
    let f = ws.read_message(Duration::from_secs(5));
    assert_eq!(f.close(), (Some(4001), "bye now".to_string()));
    ws.send_close(4001, "").unwrap();
    assert!(
        ws.eof_within(Duration::from_secs(5)),
        "no TCP close after the handshake"
    );
    let j = wait_report(s.port, "w4001", Duration::from_secs(5), |j| {
        j["state"].str() == Some("disconnect")
    });
    assert_eq!(j["code"].as_u64(), Some(4001), "{j:?}");
}

#[test]
fn websocket_client_close_1000_reaches_the_app() {
    let s = asgi(&["-w", "1", APP]);
    let mut ws = ws_open(s.port, "/ws-echo?id=w1000");
    ws.text("one");
    assert_eq!(ws.read_message(Duration::from_secs(5)).payload, b"one");
    ws.send_close(1000, "done").unwrap();
    let f = ws.read_message(Duration::from_secs(5));
    assert_eq!(f.close().0, Some(1000), "{f:?}");
    assert!(
        ws.eof_within(Duration::from_secs(5)),
        "no TCP close after the handshake"
    );
    let j = wait_report(s.port, "w1000", Duration::from_secs(5), |j| {
        j["state"].str() == Some("disconnect")
    });
    assert_eq!(j["code"].as_u64(), Some(1000), "{j:?}");
    assert_eq!(j["reason"].str(), Some("done"), "{j:?}");
}

#[test]
fn websocket_closed_before_accept_is_a_403() {
    let s = asgi(&[APP]);
    match ws_connect(s.port, "/ws-deny", &[]) {
        Ok(_) => panic!("the upgrade was accepted"),
        Err(r) => assert_eq!(r.status, 403, "{r:?}"),
    }
}

#[test]
fn websocket_http_response_denies_with_the_apps_status_and_body() {
    let s = asgi(&[APP]);
    match ws_connect(s.port, "/ws-http", &[]) {
        Ok(_) => panic!("the upgrade was accepted"),
        Err(r) => {
            assert_eq!(r.status, 418, "{r:?}");
            assert_eq!(r.header("x-denied"), Some("yes"));
            assert_eq!(r.text(), "no websockets for you");
        }
    }
}

#[test]
fn websocket_message_over_the_max_size_closes_1009() {
    let s = asgi(&["--websocket-max-message-size", "1024", APP]);
    let mut ws = ws_open(s.port, "/ws-echo");
    ws.binary(&[7; 1000]);
    assert_eq!(ws.read_message(Duration::from_secs(5)).payload.len(), 1000);
    ws.binary(&[7; 2000]);
    let f = ws.read_message(Duration::from_secs(5));
    assert_eq!(f.close().0, Some(1009), "{f:?}");
    // Too big only once its fragments are joined.
    let mut ws = ws_open(s.port, "/ws-echo");
    ws.send_frame(false, TEXT, &[b'a'; 600]).unwrap();
    let _ = ws.send_frame(true, CONT, &[b'a'; 600]);
    let f = ws.read_message(Duration::from_secs(5));
    assert_eq!(f.close().0, Some(1009), "{f:?}");
}

#[test]
fn websocket_invalid_utf8_text_closes_1007_and_unmasked_frames_1002() {
    let s = asgi(&[APP]);
    let mut ws = ws_open(s.port, "/ws-echo");
    ws.send_frame(true, TEXT, &[b'o', b'k', 0xff, 0xfe])
        .unwrap();
    let f = ws.read_message(Duration::from_secs(5));
    assert_eq!(f.close().0, Some(1007), "{f:?}");
    let mut ws = ws_open(s.port, "/ws-echo");
    let raw = ws.frame_bytes(true, TEXT, b"unmasked", true);
    ws.r.src.write_all(&raw).unwrap();
    let f = ws.read_message(Duration::from_secs(5));
    assert_eq!(f.close().0, Some(1002), "{f:?}");
}

#[test]
fn websocket_scope_as_the_app_sees_it() {
    let s = asgi(&[APP]);
    let (mut ws, _) = ws_connect(
        s.port,
        "/ws-scope?k=v",
        &[
            ("Sec-WebSocket-Protocol", "a, b"),
            ("X-Forwarded-Proto", "https"),
        ],
    )
    .unwrap_or_else(|r| panic!("refused: {r:?}"));
    let m = ws.read_message(Duration::from_secs(5));
    assert_eq!(m.opcode, TEXT);
    let j = Json::parse(&String::from_utf8_lossy(&m.payload)).expect("JSON scope");
    assert_eq!(j["type"].str(), Some("websocket"));
    assert_eq!(j["scheme"].str(), Some("wss"), "a trusted proxy said https");
    assert_eq!(j["path"].str(), Some("/ws-scope"));
    assert_eq!(j["query_string"].str(), Some("k=v"));
    assert_eq!(j["http_version"].str(), Some("1.1"));
    assert_eq!(
        strs(&j["subprotocols"]),
        vec!["a".to_string(), "b".to_string()]
    );
    assert!(!j.has("method"), "{:?}", j.keys());
    assert!(j["extensions"].has("websocket.http.response"));
    assert_eq!(j["state"]["token"].str(), Some("from-lifespan"));
    let f = ws.read_message(Duration::from_secs(5));
    assert_eq!(f.close().0, Some(1000));
}

#[test]
fn a_websocket_client_that_does_not_read_holds_the_apps_send_back() {
    let s = asgi(&["-w", "1", APP]);
    let mut ws = ws_open(s.port, "/ws-flood?id=f1");
    // The client reads nothing for a second: the app's sends must wait
    // once the socket buffers are full, far short of the 100 MiB it would
    // push.
    std::thread::sleep(Duration::from_secs(1));
    let sent = |j: &Json| num(&j["sent"]).unwrap_or(0.0);
    let stalled = sent(&wait_report(s.port, "f1", Duration::from_secs(2), |j| {
        sent(j) > 0.0
    }));
    std::thread::sleep(Duration::from_millis(500));
    let later = sent(&get(s.port, "/report?id=f1").json());
    assert!(stalled > 0.0, "the app sent nothing");
    assert!(
        later < 400.0,
        "the app sent {later} x 64 KiB to a client that reads nothing"
    );
    assert!(
        later <= stalled + 2.0,
        "sends went on while the client read nothing: {stalled} then {later}"
    );
    // Once the client reads, the rest flows.
    let mut got = 0usize;
    let t = Instant::now();
    while got < 1600 && t.elapsed() < Duration::from_secs(20) {
        let f = ws.read_message(Duration::from_secs(5));
        assert_eq!(f.payload.len(), 65536, "{:?}", f.opcode);
        got += 1;
    }
    assert_eq!(got, 1600);
    let done = wait_report(s.port, "f1", Duration::from_secs(5), |j| sent(j) >= 1600.0);
    assert_eq!(sent(&done), 1600.0);
}

#[test]
fn term_closes_an_open_websocket_with_1001_within_the_graceful_timeout() {
    let mut s = asgi(&["-w", "1", "--graceful-timeout", "20", APP]);
    let mut ws = ws_open(s.port, "/ws-hold?id=t1");
    let mut echo = ws_open(s.port, "/ws-echo");
    echo.text("still here");
    assert_eq!(
        echo.read_message(Duration::from_secs(5)).payload,
        b"still here"
    );
    let t = Instant::now();
    s.signal(libc::SIGTERM);
    let f = ws.read_message(Duration::from_secs(10));
    assert_eq!(f.close().0, Some(1001), "{f:?}");
    let f2 = echo.read_message(Duration::from_secs(10));
    assert_eq!(f2.close().0, Some(1001), "{f2:?}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "1001 after {:?}",
        t.elapsed()
    );
    ws.send_close(1001, "").unwrap();
    let _ = echo.send_close(1001, "");
    assert!(ws.eof_within(Duration::from_secs(5)));
    let st = s.wait_exit(Duration::from_secs(20));
    assert_eq!(st.and_then(|x| x.code()), Some(0), "log:\n{}", s.log());
    // Done when the sessions were, not at the end of the graceful timeout.
    assert!(
        t.elapsed() < Duration::from_secs(12),
        "exit after {:?}",
        t.elapsed()
    );
}

#[test]
fn hup_finishes_requests_and_closes_websockets_with_1001() {
    let s = asgi(&["-w", "1", "--graceful-timeout", "20", APP]);
    let old = worker_pid(s.port);
    let mut ws = ws_open(s.port, "/ws-hold");
    let mark = s.dir.join("in-app");
    let path = format!("/slow?s=2&mark={}", mark.to_str().unwrap());
    let port = s.port;
    let h = thread::spawn(move || {
        let mut c = Conn::connect(port);
        c.r.src.set_timeouts(Some(Duration::from_secs(20))).unwrap();
        c.send_request("GET", &path, &[], b"");
        c.try_read_response()
    });
    assert!(wait_until(Duration::from_secs(10), || mark.exists()));
    s.signal(libc::SIGHUP);
    let f = ws.read_message(Duration::from_secs(10));
    assert_eq!(f.close().0, Some(1001), "{f:?}");
    let _ = ws.send_close(1001, "");
    match h.join().unwrap() {
        Ok(r) => assert_eq!(r.text(), "slept 2"),
        Err(e) => panic!(
            "the in-flight request failed on HUP: {e}; log:\n{}",
            s.log()
        ),
    }
    assert!(
        wait_until(Duration::from_secs(20), || {
            let now = s.worker_pids();
            now.len() == 1 && now[0] != old && !alive(old)
        }),
        "no new worker after HUP: {:?}; log:\n{}",
        s.worker_pids(),
        s.log()
    );
    assert_eq!(get(s.port, "/hello").text(), "hello asgi");
}

#[test]
fn usr2_then_term_hands_over_finishing_requests_and_closing_websockets_with_1001() {
    let mut s = asgi(&["-w", "1", "--graceful-timeout", "20", APP]);
    let old_worker = worker_pid(s.port);
    let mut ws = ws_open(s.port, "/ws-hold");
    let mark = s.dir.join("in-app");
    let path = format!("/slow?s=3&mark={}", mark.to_str().unwrap());
    let port = s.port;
    let h = thread::spawn(move || {
        let mut c = Conn::connect(port);
        c.r.src.set_timeouts(Some(Duration::from_secs(30))).unwrap();
        c.send_request("GET", &path, &[], b"");
        c.try_read_response()
    });
    assert!(wait_until(Duration::from_secs(10), || mark.exists()));
    s.signal(libc::SIGUSR2);
    let new_master = || -> Option<i32> {
        let log = s.log();
        let rest = log.split("Upgrade: started new master (pid ").nth(1)?;
        rest.split(')').next()?.parse().ok()
    };
    assert!(
        wait_until(Duration::from_secs(20), || s
            .log()
            .contains("the previous master may be retired now")),
        "no new master serving after USR2; log:\n{}",
        s.log()
    );
    let new_master = new_master().expect("the new master's pid in the log");
    // The new master's worker answers while the old one is busy.
    assert!(
        wait_until(Duration::from_secs(20), || worker_pid(port) != old_worker),
        "the new master's worker never answered"
    );
    // Retire the old master: its worker goes away gracefully.
    s.signal(libc::SIGTERM);
    let f = ws.read_message(Duration::from_secs(10));
    assert_eq!(f.close().0, Some(1001), "{f:?}");
    let _ = ws.send_close(1001, "");
    let r = h.join().unwrap();
    let st = s.wait_exit(Duration::from_secs(20));
    kill(new_master, libc::SIGTERM);
    match r {
        Ok(r) => assert_eq!(r.text(), "slept 3"),
        Err(e) => panic!("the in-flight request failed: {e}; log:\n{}", s.log()),
    }
    assert_eq!(st.and_then(|x| x.code()), Some(0), "log:\n{}", s.log());
    assert!(wait_until(Duration::from_secs(20), || !alive(new_master)));
}
