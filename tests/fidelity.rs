//! WSGI fidelity with gunicorn 27, as real apps meet it: streamed bodies
//! delivered as they are produced (timed), a client leaving an event
//! stream noticed, HEAD framing, latin-1 headers, statuses, SERVER_* and
//! SCRIPT_NAME, upgrade requests, gunicorn.socket take-over, early hints,
//! access-log lines that survive a killed worker, and how a burst of new
//! connections spreads over sync workers. App: tests/apps/fidelity.py.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Send `req` on a fresh connection and return, for every read, when it
/// arrived (since the request was sent) and what it held; until EOF,
/// `until` bytes in total, or `limit`.
fn timed_reads(port: u16, req: &[u8], until: usize, limit: Duration) -> Vec<(Duration, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let t0 = Instant::now();
    s.write_all(req).expect("send");
    let mut out = Vec::new();
    let mut total = 0;
    let mut buf = [0u8; 65536];
    while t0.elapsed() < limit && total < until {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n;
                out.push((t0.elapsed(), buf[..n].to_vec()));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    out
}

fn joined(reads: &[(Duration, Vec<u8>)]) -> Vec<u8> {
    reads.iter().flat_map(|(_, b)| b.clone()).collect()
}

/// When the `n`th occurrence of `needle` had arrived.
fn arrival_of(reads: &[(Duration, Vec<u8>)], needle: &[u8], n: usize) -> Option<Duration> {
    let mut seen = Vec::new();
    for (t, b) in reads {
        seen.extend_from_slice(b);
        let count = seen.windows(needle.len()).filter(|w| *w == needle).count();
        if count >= n {
            return Some(*t);
        }
    }
    None
}

fn fidelity(args: &[&str]) -> Server {
    let mut all = args.to_vec();
    all.push("fidelity:app");
    Server::start(&all)
}

// ---------------------------------------------------------------------------
// 1. Streamed blocks leave as the app yields them

fn assert_streams_promptly(s: &Server, path: &str) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let reads = timed_reads(s.port, req.as_bytes(), usize::MAX, Duration::from_secs(10));
    let body = joined(&reads);
    assert_eq!(
        body.windows(5).filter(|w| *w == b"tick\n").count(),
        5,
        "{path}: {}",
        String::from_utf8_lossy(&body)
    );
    let first = arrival_of(&reads, b"tick\n", 1).expect("a first tick");
    let last = arrival_of(&reads, b"tick\n", 5).expect("a last tick");
    // The generator sleeps 0.3 s between ticks: the first is due at once,
    // the last after 1.2 s. Held back, all arrive together at the end.
    assert!(
        first < Duration::from_millis(900),
        "{path}: first tick after {first:?}"
    );
    assert!(
        last - first >= Duration::from_millis(900),
        "{path}: ticks arrived together ({first:?} .. {last:?})"
    );
}

#[test]
fn streamed_blocks_arrive_as_they_are_yielded_sync_and_gthread() {
    for args in [
        &["-w", "1"][..],
        &["-w", "1", "-k", "gthread", "--threads", "2"][..],
    ] {
        let s = fidelity(args);
        assert_streams_promptly(&s, "/stream?n=5&gap=0.3");
        assert_streams_promptly(&s, "/stream?n=5&gap=0.3&cl=1");
    }
}

#[test]
fn server_sent_events_arrive_one_by_one() {
    let s = fidelity(&["-w", "1"]);
    let req = b"GET /sse?gap=0.3 HTTP/1.1\r\nHost: t\r\n\r\n";
    let reads = timed_reads(s.port, req, usize::MAX, Duration::from_millis(1500));
    let first = arrival_of(&reads, b"data: 1\n\n", 1).expect("the first event");
    let third = arrival_of(&reads, b"data: 3\n\n", 1).expect("the third event");
    assert!(
        first < Duration::from_millis(900),
        "first event after {first:?}"
    );
    assert!(
        third >= Duration::from_millis(500),
        "third event already at {third:?}"
    );
}

// ---------------------------------------------------------------------------
// 2. A client that leaves a stream is noticed

#[test]
fn a_client_leaving_an_endless_stream_is_noticed_and_close_is_called() {
    for args in [
        &["-w", "1"][..],
        &["-w", "1", "-k", "gthread", "--threads", "2"][..],
    ] {
        let dir = TempDir::new("marks");
        let marks = dir.join("marks");
        let marks_s = marks.display().to_string();
        let mut all = args.to_vec();
        all.extend(["--access-logfile", "-", "--timeout", "30", "fidelity:app"]);
        let s = Server::start_env(&all, &[("FIDELITY_MARKS", &marks_s)]);
        {
            let reads = timed_reads(
                s.port,
                b"GET /sse?tag=gone&gap=0.1 HTTP/1.1\r\nHost: t\r\n\r\n",
                usize::MAX,
                Duration::from_millis(500),
            );
            assert!(arrival_of(&reads, b"data: 2", 1).is_some());
        } // the client is gone
        let left = Instant::now();
        let closed = wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&marks)
                .unwrap_or_default()
                .contains("closed gone")
        });
        assert!(
            closed,
            "close() not called within 5 s; marks: {:?}",
            std::fs::read_to_string(&marks)
        );
        assert!(
            left.elapsed() < Duration::from_secs(3),
            "noticed after {:?}",
            left.elapsed()
        );
        // The worker is free again, and the stream is in the access log.
        assert_eq!(get(s.port, "/").status, 200);
        assert!(
            wait_until(Duration::from_secs(2), || s
                .log()
                .contains("\"GET /sse?tag=gone&gap=0.1 HTTP/1.1\" 200")),
            "log:\n{}",
            s.log()
        );
        assert!(!s.log().contains("WORKER TIMEOUT"));
    }
}

#[test]
fn a_stream_outlasting_the_timeout_is_not_a_stuck_worker() {
    // Bytes reaching the client are progress: an event stream longer than
    // --timeout keeps its worker (gunicorn's sync worker would be killed
    // mid-stream); a request that sends nothing still trips the timeout
    // (tests/arbiter.rs, tests/gthread.rs).
    for args in [
        &["-w", "1"][..],
        &["-w", "1", "-k", "gthread", "--threads", "2"][..],
    ] {
        let mut all = args.to_vec();
        all.extend(["--timeout", "2", "fidelity:app"]);
        let s = Server::start(&all);
        let reads = timed_reads(
            s.port,
            b"GET /sse?gap=0.3 HTTP/1.1\r\nHost: t\r\n\r\n",
            usize::MAX,
            Duration::from_millis(4500),
        );
        let last = arrival_of(&reads, b"data: 14\n\n", 1);
        assert!(
            last.is_some(),
            "{args:?}: the stream stopped: {}",
            String::from_utf8_lossy(&joined(&reads))
        );
        assert!(!s.log().contains("WORKER TIMEOUT"), "{args:?}: {}", s.log());
    }
}

// ---------------------------------------------------------------------------
// 3. HEAD gets no invented Content-Length

#[test]
fn head_of_empty_and_single_item_bodies_carries_no_invented_length() {
    let s = fidelity(&["-w", "1"]);
    let mut c = Conn::connect(s.port);
    for path in ["/empty", "/single"] {
        let r = c.request("HEAD", path, &[], b"");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-length"),
            None,
            "HEAD {path}: {:?}",
            r.headers
        );
        assert!(r.body.is_empty());
    }
    // The connection still works (HEAD framing is by definition bodiless).
    let r = c.request("GET", "/single", &[], b"");
    assert_eq!(r.body, b"one item");
    assert_eq!(r.header("content-length"), Some("8"));
}

#[test]
fn head_of_an_endless_stream_ends_and_calls_close() {
    let dir = TempDir::new("marks");
    let marks = dir.join("marks");
    let marks_s = marks.display().to_string();
    let s = Server::start_env(
        &["-w", "1", "fidelity:app"],
        &[("FIDELITY_MARKS", &marks_s)],
    );
    let t0 = Instant::now();
    let r = request(s.port, "HEAD", "/sse?tag=head", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "HEAD took {:?}",
        t0.elapsed()
    );
    assert!(wait_until(Duration::from_secs(2), || {
        std::fs::read_to_string(&marks)
            .unwrap_or_default()
            .contains("closed head")
    }));
    assert_eq!(get(s.port, "/").status, 200);
}

// ---------------------------------------------------------------------------
// 4, 5. Headers in latin-1; a status without a reason phrase

#[test]
fn header_values_are_latin1_and_unencodable_ones_get_a_500() {
    let s = fidelity(&["-w", "1"]);
    let raw = send_raw(
        s.port,
        b"GET /latin1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(
        raw.windows(12).any(|w| w == b"X-Uni: caf\xe9\r"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let r = get(s.port, "/unencodable");
    assert_eq!(r.status, 500);
    assert!(!r.text().contains("never sent"));
    assert!(
        s.log().contains("X-Uni"),
        "the error log names the header:\n{}",
        s.log()
    );
}

#[test]
fn a_status_without_reason_phrase_is_sent_as_is() {
    let s = fidelity(&["-w", "1"]);
    let raw = send_raw(
        s.port,
        b"GET /noreason HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(
        raw.starts_with(b"HTTP/1.1 200\r\n"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert!(raw.ends_with(b"no reason phrase"));
}

// ---------------------------------------------------------------------------
// 6, 7. SERVER_NAME/SERVER_PORT and SCRIPT_NAME

fn environ_lines(r: &Response) -> HashMap<String, String> {
    r.text()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn server_name_and_port_come_from_the_socket_on_tcp_and_from_host_on_unix() {
    let s = fidelity(&["-w", "1"]);
    let r = request(
        s.port,
        "GET",
        "/environ",
        &[("Host", "example.test:8080")],
        b"",
    );
    let e = environ_lines(&r);
    assert_eq!(e["SERVER_NAME"], "127.0.0.1");
    assert_eq!(e["SERVER_PORT"], s.port.to_string());
    assert_eq!(e["socket"], "Socket");
    assert_eq!(e["early_hints"], "True");

    let dir = TempDir::new("unix");
    let path = dir.join("s.sock");
    let bind = format!("unix:{}", path.display());
    let s = Server::start(&["-w", "1", "-b", &bind, "fidelity:app"]);
    let mut c = Conn::connect_unix(&path);
    let e = environ_lines(&c.request("GET", "/environ", &[("Host", "example.test:8080")], b""));
    assert_eq!(
        (e["SERVER_NAME"].as_str(), e["SERVER_PORT"].as_str()),
        ("example.test", "8080")
    );
    let e = environ_lines(&c.request("GET", "/environ", &[("Host", "example.test")], b""));
    assert_eq!(
        (e["SERVER_NAME"].as_str(), e["SERVER_PORT"].as_str()),
        ("example.test", "80")
    );
    drop(s);
}

#[test]
fn script_name_prefix_matches_whole_segments_and_other_paths_get_a_500() {
    let s = Server::start_env(&["-w", "1", "fidelity:app"], &[("SCRIPT_NAME", "/prefix")]);
    let e = environ_lines(&get(s.port, "/prefix/environ"));
    assert_eq!(
        (e["SCRIPT_NAME"].as_str(), e["PATH_INFO"].as_str()),
        ("/prefix", "/environ")
    );
    for outside in ["/meta/", "/prefixmeta/environ"] {
        let r = get(s.port, outside);
        assert_eq!(r.status, 500, "{outside}");
        assert!(
            r.text().contains("does not start with SCRIPT_NAME"),
            "{outside}: {}",
            r.text()
        );
    }
    assert!(s
        .log()
        .contains("Request path '/meta/' does not start with SCRIPT_NAME '/prefix'"));
}

// ---------------------------------------------------------------------------
// 10, 11. Upgrade requests, gunicorn.socket, early hints

#[test]
fn an_upgrade_request_to_a_plain_app_ends_the_connection_after_the_response() {
    let s = fidelity(&["-w", "1"]);
    let mut c = Conn::connect(s.port);
    let r = c.request(
        "GET",
        "/",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw=="),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    // Frames the client sends next must not be parsed as HTTP.
    let _ = c.send(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
    assert!(
        c.is_closed(Duration::from_secs(2)),
        "the connection stayed open"
    );
}

#[test]
fn a_101_from_the_app_keeps_its_upgrade_header() {
    let s = fidelity(&["-w", "1"]);
    let raw = send_raw(
        s.port,
        b"GET /switch HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nUpgrade: websocket\r\n"), "{text}");
    assert!(text.contains("\r\nConnection: Upgrade\r\n"), "{text}");
    assert!(!text.contains("Transfer-Encoding"), "{text}");
}

#[test]
fn the_app_can_take_the_connection_over_through_gunicorn_socket() {
    for args in [
        &["-w", "1"][..],
        &["-w", "1", "-k", "gthread", "--threads", "2"][..],
    ] {
        let mut all = args.to_vec();
        all.extend(["--access-logfile", "-", "fidelity:app"]);
        let s = Server::start(&all);
        let mut t = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The first protocol line travels with the request head: bytes the
        // worker read past the head must reach the app first.
        t.write_all(b"GET /takeover HTTP/1.1\r\nHost: t\r\nUpgrade: shout\r\nConnection: Upgrade\r\n\r\nhello\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(b"HELLO\n") {
            let n = t.read(&mut buf).expect("the echo of the early line");
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got).to_string();
        assert!(
            text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{text}"
        );
        assert!(
            !text.contains("Server:"),
            "ferrocorn wrote its own head: {text}"
        );
        // The socket is blocking (recv waits for the next line).
        thread::sleep(Duration::from_millis(300));
        t.write_all(b"again\nbye\n").unwrap();
        let mut rest = Vec::new();
        let _ = t.read_to_end(&mut rest);
        assert_eq!(String::from_utf8_lossy(&rest), "AGAIN\nBYE\n");
        // Nothing else came from ferrocorn (no 500 after the app's
        // StopIteration), and the 101 is logged.
        assert!(
            wait_until(Duration::from_secs(2), || s
                .log()
                .contains("\"GET /takeover HTTP/1.1\" 101")),
            "log:\n{}",
            s.log()
        );
        assert!(
            !s.log().contains("Error handling request"),
            "log:\n{}",
            s.log()
        );
        // The worker serves on.
        assert_eq!(get(s.port, "/").status, 200);
    }
}

#[test]
fn early_hints_come_before_the_response_and_not_for_http_1_0() {
    let s = fidelity(&["-w", "1"]);
    let raw = send_raw(
        s.port,
        b"GET /hints HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\nHTTP/1.1 200 OK\r\n"),
        "{text}"
    );
    let raw = send_raw(s.port, b"GET /hints HTTP/1.0\r\n\r\n");
    assert!(
        raw.starts_with(b"HTTP/1.0 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
}

// ---------------------------------------------------------------------------
// 12, 15. Access-log lines

#[test]
fn access_log_lines_survive_a_killed_worker_and_count_empty_bodies_as_0() {
    let s = fidelity(&["-w", "1", "--access-logfile", "-"]);
    let mut c = Conn::connect(s.port);
    for i in 0..5 {
        assert_eq!(c.request("GET", &format!("/n{i}"), &[], b"").status, 200);
    }
    assert_eq!(c.request("HEAD", "/empty", &[], b"").status, 200);
    let worker = s.wait_workers(1, Duration::from_secs(5))[0];
    kill(worker, 9);
    s.wait_workers(1, Duration::from_secs(10));
    let log = s.log();
    for i in 0..5 {
        assert!(
            log.contains(&format!("\"GET /n{i} HTTP/1.1\" 200 8 ")),
            "line {i} lost:\n{log}"
        );
    }
    assert!(log.contains("\"HEAD /empty HTTP/1.1\" 200 0 "), "{log}");
}

#[test]
fn access_log_lines_before_a_worker_timeout_are_kept() {
    let s = fidelity(&["-w", "1", "--timeout", "2", "--access-logfile", "-"]);
    for i in 0..3 {
        assert_eq!(get(s.port, &format!("/before{i}")).status, 200);
    }
    let mut c = Conn::connect(s.port);
    c.send_request("GET", "/sleep?s=30", &[], b"");
    assert!(
        wait_until(Duration::from_secs(10), || s
            .log()
            .contains("WORKER TIMEOUT")),
        "log:\n{}",
        s.log()
    );
    let log = s.log();
    for i in 0..3 {
        assert!(
            log.contains(&format!("\"GET /before{i} HTTP/1.1\" 200")),
            "{log}"
        );
    }
}

// ---------------------------------------------------------------------------
// 13. A burst of new connections spreads over sync workers

#[test]
fn a_burst_of_new_connections_spreads_over_sync_workers() {
    let s = fidelity(&["-w", "2"]);
    s.wait_workers(2, Duration::from_secs(10));
    // Both workers have imported the app and wait in accept.
    for _ in 0..4 {
        assert_eq!(get(s.port, "/sleep?s=0").status, 200);
    }
    let start = std::sync::Arc::new(std::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let port = s.port;
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                let r = request(
                    port,
                    "GET",
                    "/sleep?s=0.05",
                    &[("Connection", "close")],
                    b"",
                );
                assert_eq!(r.status, 200);
                r.text()
            })
        })
        .collect();
    let mut per_worker: HashMap<String, usize> = HashMap::new();
    for h in handles {
        *per_worker.entry(h.join().expect("client")).or_default() += 1;
    }
    assert_two_way_spread(&per_worker, 5..=11);
}
