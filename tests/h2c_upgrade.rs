//! HTTP/1.1 `Upgrade: h2c` (`--http2-cleartext upgrade` and `both`), as a
//! client sees it: curl's `--http2` on an http:// URL (it sends the
//! upgrade) gets 101 and its request answered over HTTP/2, as the app
//! sees an HTTP/2 request, then more streams on the same connection; a
//! body sent with the upgrade reaches the app; the answer to an upgraded
//! request streams as the app makes it; untrusted peers, malformed or
//! too large upgrades are served HTTP/1.1; a client that stalls after 101
//! is closed; a pipelined request before the upgrade is answered first.
//! App: tests/apps/h2app.py. Raw HTTP/2 frames here are checked by type,
//! stream and payload, not decoded (DATA is plain).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const SETTINGS_B64: &str = "AAMAAABkAAQAAP__";
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn start(mode: &str, extra: &[&str]) -> Server {
    let mut args = vec![
        "h2app:app",
        "--http-protocols",
        "h1,h2",
        "--http2-cleartext",
        mode,
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// curl's exit code, and its output (stdout then stderr).
fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The JSON objects in curl's output, in order.
fn bodies(out: &str) -> Vec<Json> {
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| Json::parse(l).expect("JSON from the app"))
        .collect()
}

fn upgrade_request(method: &str, path: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: up.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: {SETTINGS_B64}\r\n{extra}"
    )
    .into_bytes();
    if !body.is_empty() {
        r.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

fn settings_frame() -> Vec<u8> {
    vec![0, 0, 0, 4, 0, 0, 0, 0, 0]
}

/// Read exactly up to and including "\r\n\r\n".
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            other => panic!(
                "head cut short ({other:?}): {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
    at: Instant,
}

fn read_frame(s: &mut TcpStream) -> Option<Frame> {
    let mut h = [0u8; 9];
    s.read_exact(&mut h).ok()?;
    let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).ok()?;
    Some(Frame {
        kind: h[3],
        flags: h[4],
        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        payload,
        at: Instant::now(),
    })
}

/// Upgrade by hand: the 101, then the client's preface; returns stream 1's
/// frames (HEADERS, DATA) until it ends, acknowledging the server's
/// SETTINGS on the way.
fn upgrade_by_hand(port: u16, request: &[u8]) -> (String, Vec<Frame>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let head = read_head(&mut s);
    if !head.starts_with("HTTP/1.1 101") {
        return (head, Vec::new());
    }
    let mut hello = PREFACE.to_vec();
    hello.extend_from_slice(&settings_frame());
    s.write_all(&hello).unwrap();
    let mut frames = Vec::new();
    while let Some(f) = read_frame(&mut s) {
        if f.kind == 4 && f.flags & 1 == 0 {
            s.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).unwrap();
        }
        let end = f.stream == 1 && f.flags & 1 == 1;
        if f.stream == 1 {
            frames.push(f);
        }
        if end {
            break;
        }
    }
    (head, frames)
}

fn data_of(frames: &[Frame]) -> Vec<u8> {
    frames
        .iter()
        .filter(|f| f.kind == 0)
        .flat_map(|f| f.payload.clone())
        .collect()
}

#[test]
fn curl_upgrades_and_its_request_is_answered_over_http2() {
    for worker in [&["-k", "sync"][..], &["-k", "gthread", "--threads", "4"]] {
        let mut args = worker.to_vec();
        args.extend(["--access-logfile", "-"]);
        let s = start("upgrade", &args);
        let first = format!("http://127.0.0.1:{}/info?a=1", s.port);
        let second = format!("http://127.0.0.1:{}/info?b=2", s.port);
        let (code, out) = curl(&[
            "--http2",
            "-D",
            "-",
            "-H",
            "X-Test: t",
            "-w",
            "\nconnects=%{num_connects}\n",
            &first,
            &second,
        ]);
        assert_eq!(code, 0, "{worker:?}: {out}\n{}", s.log());
        assert_eq!(
            out.matches("HTTP/1.1 101 Switching Protocols").count(),
            1,
            "{out}"
        );
        assert_eq!(out.matches("HTTP/2 200").count(), 2, "{out}");
        assert!(
            out.contains("connects=1\n") && out.contains("connects=0\n"),
            "one connection: {out}"
        );
        let b = bodies(&out);
        assert_eq!(b.len(), 2, "{out}");
        for (j, q) in b.iter().zip(["a=1", "b=2"]) {
            assert_eq!(j["SERVER_PROTOCOL"].str(), Some("HTTP/2.0"), "{worker:?}");
            assert_eq!(j["QUERY_STRING"].str(), Some(q));
            assert_eq!(j["REMOTE_ADDR"].str(), Some("127.0.0.1"));
            assert_eq!(j["wsgi.url_scheme"].str(), Some("http"));
            assert_eq!(j["HTTP_X_TEST"].str(), Some("t"));
            // As gunicorn 27 marks an HTTP/2 request.
            assert_eq!(j["HTTP_VERSION"].str(), Some("2"));
            assert!(j["HTTP_HOST"]
                .str()
                .is_some_and(|h| h.starts_with("127.0.0.1:")));
        }
        let log = s.log();
        assert!(
            log.contains("\"GET /info?a=1 HTTP/2.0\" 200"),
            "access line: {log}"
        );
    }
}

#[test]
fn a_body_sent_with_the_upgrade_reaches_the_app() {
    let s = start("both", &[]);
    let (head, frames) = upgrade_by_hand(s.port, &upgrade_request("POST", "/echo", "", b"hello"));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: h2c"), "{head}");
    assert_eq!(frames[0].kind, 1, "HEADERS first");
    // :status 200, indexed (RFC 7541 static table entry 8).
    assert_eq!(frames[0].payload.first(), Some(&0x88));
    let body = String::from_utf8(data_of(&frames)).unwrap();
    let j = Json::parse(&body).unwrap();
    assert_eq!(j["len"].as_u64(), Some(5), "{body}");
    assert_eq!(j["cl"].str(), Some("5"));
    // And with Expect: 100-continue, the body waits for the 100.
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = upgrade_request("POST", "/echo", "Expect: 100-continue\r\n", b"hello");
    let split = req.len() - 5;
    c.write_all(&req[..split]).unwrap();
    assert!(read_head(&mut c).starts_with("HTTP/1.1 100 Continue"));
    c.write_all(b"hello").unwrap();
    assert!(read_head(&mut c).starts_with("HTTP/1.1 101"));
}

#[test]
fn an_upgraded_answer_streams_as_it_is_made() {
    let s = start("upgrade", &["-k", "gthread", "--threads", "2"]);
    let t0 = Instant::now();
    let (head, frames) = upgrade_by_hand(s.port, &upgrade_request("GET", "/stream", "", b""));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let data: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.kind == 0 && !f.payload.is_empty())
        .collect();
    assert!(data.len() >= 3, "three events");
    assert_eq!(data[0].payload, b"data: 0\n\n");
    // The app sleeps 0.6 s between events: the first is not held back.
    let first = data[0].at - t0;
    let last = data[data.len() - 1].at - t0;
    assert!(
        first < Duration::from_millis(500),
        "first event after {first:?}"
    );
    assert!(
        last >= Duration::from_millis(1100),
        "last event after {last:?}"
    );
}

#[test]
fn requests_that_do_not_qualify_are_served_http1() {
    let s = start("upgrade", &[]);
    let plain = |req: &[u8]| {
        let mut c = s.connect();
        c.send(req).unwrap();
        c.read_response()
    };
    // A malformed HTTP2-Settings.
    let bad = String::from_utf8(upgrade_request("GET", "/info", "", b""))
        .unwrap()
        .replace(SETTINGS_B64, "not base64!");
    let r = plain(bad.as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["SERVER_PROTOCOL"].str(), Some("HTTP/1.1"));
    // Connection does not name HTTP2-Settings.
    let r = plain(b"GET /info HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\n\r\n");
    assert_eq!(r.json()["SERVER_PROTOCOL"].str(), Some("HTTP/1.1"));
    // A body over 64 KiB, and one of unknown length.
    let big = vec![b'x'; 70_000];
    let r = plain(&upgrade_request("POST", "/echo", "", &big));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["len"].as_u64(), Some(70_000));
    let mut chunked = upgrade_request("POST", "/echo", "Transfer-Encoding: chunked\r\n", b"");
    chunked.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    let r = plain(&chunked);
    assert_eq!(r.json()["len"].as_u64(), Some(5));
    // HTTP/1.0.
    let r = plain(b"GET /info HTTP/1.0\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\n\r\n");
    assert_eq!(r.json()["SERVER_PROTOCOL"].str(), Some("HTTP/1.0"));
    // curl from an untrusted peer: no 101, HTTP/1.1 as usual.
    let s = start("upgrade", &["--forwarded-allow-ips", "10.0.0.1"]);
    let url = format!("http://127.0.0.1:{}/info", s.port);
    let (code, out) = curl(&["--http2", "-D", "-", &url]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains(" 101 ") && out.contains("HTTP/1.1 200"),
        "{out}"
    );
    // prior-knowledge alone: the upgrade is not offered, and a trusted
    // peer speaking HTTP/1.1 is refused as before.
    let s = start("prior-knowledge", &[]);
    let url = format!("http://127.0.0.1:{}/info", s.port);
    let (_, out) = curl(&["--http2", "-D", "-", &url]);
    assert!(out.contains("HTTP/1.1 400"), "{out}");
}

#[test]
fn a_client_that_stalls_after_101_is_closed() {
    let s = start("upgrade", &["--body-timeout", "1"]);
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&upgrade_request("GET", "/info", "", b""))
        .unwrap();
    assert!(read_head(&mut c).starts_with("HTTP/1.1 101"));
    let t0 = Instant::now();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    // A preface that is not HTTP/2 is closed at once.
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&upgrade_request("GET", "/info", "", b""))
        .unwrap();
    assert!(read_head(&mut c).starts_with("HTTP/1.1 101"));
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nxxxxxxxxxx")
        .unwrap();
    let t0 = Instant::now();
    let _ = c.read_to_end(&mut rest);
    assert!(t0.elapsed() < Duration::from_secs(1));
    // The worker serves on.
    let r = s.connect().request("GET", "/info", &[("Host", "h")], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn a_pipelined_request_before_the_upgrade_is_answered_first() {
    let s = start("upgrade", &[]);
    let mut req = b"GET /info?first HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
    req.extend_from_slice(&upgrade_request("GET", "/info?second", "", b""));
    // The first response, then the 101, then stream 1.
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&req).unwrap();
    let first = read_head(&mut c);
    let len: usize = first
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("Content-Length");
    let mut body = vec![0; len];
    c.read_exact(&mut body).unwrap();
    assert!(String::from_utf8_lossy(&body).contains("\"QUERY_STRING\": \"first\""));
    assert!(read_head(&mut c).starts_with("HTTP/1.1 101"));
    let mut hello = PREFACE.to_vec();
    hello.extend_from_slice(&settings_frame());
    c.write_all(&hello).unwrap();
    let mut data = Vec::new();
    while let Some(f) = read_frame(&mut c) {
        if f.stream == 1 && f.kind == 0 {
            data.extend_from_slice(&f.payload);
            if f.flags & 1 == 1 {
                break;
            }
        }
    }
    assert!(String::from_utf8_lossy(&data).contains("\"QUERY_STRING\": \"second\""));
}
