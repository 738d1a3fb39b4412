//! The protocols at the connection edge: PROXY protocol v1 and v2
//! (`--proxy-protocol`, `--proxy-allow-from`) and uwsgi (`--protocol
//! uwsgi`, `--uwsgi-allow-from`), headers and packets encoded by hand here,
//! for the sync, gthread and asgi workers: what the app sees (REMOTE_ADDR,
//! the ASGI client), the access log's `%(h)s`, refusals (403 from a peer
//! not allowed, 400 for a malformed header, 501 for a modifier), and
//! truncated or slow headers closed within the header timeout. App:
//! tests/apps/edge.py. tests/edge_real.rs puts nginx and HAProxy in front.

mod common;

use std::fs;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use common::*;

const SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut v = SIG.to_vec();
    v.push(cmd);
    v.push(fam);
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A v2 PROXY TCP4 header from `src:sport` to `dst:dport`, with two TLVs.
fn v2_tcp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut b = src.to_vec();
    b.extend_from_slice(&dst);
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    // PP2_TYPE_ALPN "http/1.1" and PP2_TYPE_NOOP: skipped.
    b.extend_from_slice(&[0x01, 0, 8]);
    b.extend_from_slice(b"http/1.1");
    b.extend_from_slice(&[0x04, 0, 3, 0, 0, 0]);
    v2(0x21, 0x11, &b)
}

fn v2_tcp6(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    let mut b = src.parse::<Ipv6Addr>().unwrap().octets().to_vec();
    b.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    v2(0x21, 0x21, &b)
}

fn get_req(path: &str) -> Vec<u8> {
    build_request("GET", path, &[("Host", "t")], b"")
}

/// Send `preface` then a GET on one connection; the response.
fn via(s: &Server, preface: &[u8], path: &str) -> Response {
    let mut c = s.connect();
    let mut bytes = preface.to_vec();
    bytes.extend_from_slice(&get_req(path));
    c.send(&bytes).unwrap();
    c.read_response()
}

fn access_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(5), || {
        lines = fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        lines.len() >= n
    });
    lines
}

/// REMOTE_ADDR/REMOTE_PORT and gunicorn's PROXY_* keys from v1 and v2
/// headers (IPv4, IPv6, TLVs skipped), kept for later requests on the same
/// connection; LOCAL and UNSPEC keep the real peer; a connection without a
/// header is served as usual; the access log's %(h)s is the client.
fn proxy_headers_for(worker: &[&str]) {
    let dir = TempDir::new("pp");
    let log = dir.join("access.log");
    let mut args = vec![
        "edge:app",
        "--proxy-protocol",
        "auto",
        "--access-logfile",
        log.to_str().unwrap(),
    ];
    args.extend_from_slice(worker);
    let s = Server::start(&args);
    let what = format!("{worker:?}");

    let mut c = s.connect();
    let mut bytes = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n".to_vec();
    bytes.extend_from_slice(&get_req("/v1"));
    c.send(&bytes).unwrap();
    let j = c.read_response().json();
    assert_eq!(j["REMOTE_ADDR"].str(), Some("192.0.2.7"), "{what}");
    assert_eq!(j["REMOTE_PORT"].str(), Some("56324"));
    assert_eq!(j["PROXY_PROTOCOL"].str(), Some("TCP4"));
    assert_eq!(j["PROXY_ADDR"].str(), Some("198.51.100.1"));
    assert_eq!(j["PROXY_PORT"].str(), Some("443"));
    assert_eq!(j["SERVER_PORT"].str(), Some(s.port.to_string().as_str()));
    // The next request on the connection is from the same client.
    let j = c.request("GET", "/again", &[("Host", "t")], b"").json();
    assert_eq!(j["REMOTE_ADDR"].str(), Some("192.0.2.7"), "{what}");

    let j = via(&s, b"PROXY TCP6 2001:db8::9 ::1 4000 8443\r\n", "/v1six").json();
    assert_eq!(j["REMOTE_ADDR"].str(), Some("2001:db8::9"));
    assert_eq!(j["REMOTE_PORT"].str(), Some("4000"));
    assert_eq!(j["PROXY_PROTOCOL"].str(), Some("TCP6"));

    let j = via(
        &s,
        &v2_tcp4([203, 0, 113, 5], 61000, [10, 0, 0, 1], 80),
        "/v2",
    )
    .json();
    assert_eq!(j["REMOTE_ADDR"].str(), Some("203.0.113.5"), "{what}");
    assert_eq!(j["REMOTE_PORT"].str(), Some("61000"));
    assert_eq!(j["PROXY_ADDR"].str(), Some("10.0.0.1"));

    let j = via(&s, &v2_tcp6("2001:db8::77", 5555, "fd00::1", 443), "/v2six").json();
    assert_eq!(j["REMOTE_ADDR"].str(), Some("2001:db8::77"));
    assert_eq!(j["PROXY_PROTOCOL"].str(), Some("TCP6"));

    // LOCAL (a health check) and UNSPEC: the connection's own peer.
    for (hdr, kind) in [
        (v2(0x20, 0x00, &[]), "LOCAL"),
        (v2(0x20, 0x11, &[1; 12]), "LOCAL"),
        (v2(0x21, 0x00, &[]), "UNSPEC"),
        (b"PROXY UNKNOWN\r\n".to_vec(), "UNKNOWN"),
    ] {
        let j = via(&s, &hdr, "/local").json();
        assert_eq!(j["REMOTE_ADDR"].str(), Some("127.0.0.1"), "{kind}");
        assert_eq!(j["PROXY_PROTOCOL"].str(), Some(kind));
        assert!(!j.has("PROXY_ADDR"));
    }

    // No header: plain HTTP, as in gunicorn.
    let j = via(&s, b"", "/plain").json();
    assert_eq!(j["REMOTE_ADDR"].str(), Some("127.0.0.1"));
    assert!(!j.has("PROXY_PROTOCOL"));

    let lines = access_lines(&log, 10);
    let h = |path: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("GET {path} ")))
            .and_then(|l| l.split(' ').next())
            .map(str::to_string)
    };
    assert_eq!(h("/v1").as_deref(), Some("192.0.2.7"), "{lines:?}");
    assert_eq!(h("/again").as_deref(), Some("192.0.2.7"));
    assert_eq!(h("/v2").as_deref(), Some("203.0.113.5"));
    assert_eq!(h("/v2six").as_deref(), Some("2001:db8::77"));
    assert_eq!(h("/plain").as_deref(), Some("127.0.0.1"));
}

#[test]
fn proxy_headers_sync() {
    proxy_headers_for(&[]);
}

#[test]
fn proxy_headers_gthread() {
    proxy_headers_for(&["-k", "gthread", "--threads", "4"]);
}

#[test]
fn proxy_headers_asgi_client_and_access_log() {
    let dir = TempDir::new("ppa");
    let log = dir.join("access.log");
    let s = Server::start(&[
        "edge:asgi",
        "-k",
        "asgi",
        "--proxy-protocol",
        "--access-logfile",
        log.to_str().unwrap(),
    ]);
    let j = via(&s, b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n", "/a").json();
    assert_eq!(j["client"], Json::parse(r#"["192.0.2.7", 56324]"#).unwrap());
    assert_eq!(
        j["server"],
        Json::parse(&format!(r#"["127.0.0.1", {}]"#, s.port)).unwrap()
    );
    let j = via(&s, &v2_tcp6("2001:db8::77", 5555, "fd00::1", 443), "/b").json();
    assert_eq!(
        j["client"],
        Json::parse(r#"["2001:db8::77", 5555]"#).unwrap()
    );
    let j = via(&s, &v2(0x20, 0, &[]), "/c").json();
    assert_eq!(first(&j["client"]), Some("127.0.0.1"));
    // A WebSocket's scope too.
    let mut c = s.connect();
    let mut bytes = v2_tcp4([198, 51, 100, 20], 7000, [10, 0, 0, 1], 80);
    bytes.extend_from_slice(&build_request(
        "GET",
        "/ws",
        &[
            ("Host", "t"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
        b"",
    ));
    c.send(&bytes).unwrap();
    let raw = c.read_to_end();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.contains(r#"["198.51.100.20", 7000]"#), "{text}");
    let lines = access_lines(&log, 4);
    let line = |path: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("GET {path} ")))
            .cloned()
            .unwrap_or_default()
    };
    assert!(line("/a").starts_with("192.0.2.7 "), "{lines:?}");
    assert!(line("/b").starts_with("2001:db8::77 "), "{lines:?}");
}

/// The first element of a JSON array, as a string.
fn first(j: &Json) -> Option<&str> {
    match j {
        Json::Arr(v) => v.first().and_then(Json::str),
        _ => None,
    }
}

#[test]
fn headers_from_peers_not_allowed_get_403_and_a_close() {
    for worker in [&[][..], &["-k", "gthread"], &["-k", "asgi"]] {
        let app = if worker.contains(&"asgi") {
            "edge:asgi"
        } else {
            "edge:app"
        };
        let mut args = vec![
            app,
            "--proxy-protocol",
            "auto",
            "--proxy-allow-from",
            "10.0.0.0/8,fd00::/8",
        ];
        args.extend_from_slice(worker);
        let s = Server::start(&args);
        for hdr in [
            b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n".to_vec(),
            v2_tcp4([203, 0, 113, 5], 61000, [10, 0, 0, 1], 80),
            // Refused before the rest of the header is read.
            b"PROXY TCP4 192.0.2.7".to_vec(),
        ] {
            let mut c = s.connect();
            c.send(&hdr).unwrap();
            if hdr.len() > 20 {
                c.send(&get_req("/x")).unwrap();
            }
            let r = c.read_response();
            assert_eq!(r.status, 403, "{worker:?}: {}", r.text());
            assert!(c.is_closed(Duration::from_secs(5)), "{worker:?}");
        }
        // Without a header, the same peer is served.
        assert_eq!(via(&s, b"", "/plain").status, 200);
        assert!(
            s.log().contains("Forbidden PROXY request from 127.0.0.1"),
            "{}",
            s.log()
        );
    }
}

#[test]
fn gunicorns_spellings_of_the_mode() {
    // gunicorn's older boolean switch: `proxy_protocol = True` in a config
    // file (here TOML's true) is auto, as is the flag alone; v1/v2 narrow it.
    let dir = TempDir::new("ppm");
    let conf = dir.join("c.toml");
    fs::write(&conf, "proxy_protocol = true\n").unwrap();
    let s = Server::start(&["edge:app", "-c", conf.to_str().unwrap()]);
    let j = via(
        &s,
        &v2_tcp4([203, 0, 113, 5], 61000, [10, 0, 0, 1], 80),
        "/t",
    )
    .json();
    assert_eq!(j["REMOTE_ADDR"].str(), Some("203.0.113.5"));
    drop(s);
    let s = Server::start(&["edge:app", "--proxy-protocol", "v2"]);
    let j = via(
        &s,
        &v2_tcp4([203, 0, 113, 6], 61000, [10, 0, 0, 1], 80),
        "/t",
    )
    .json();
    assert_eq!(j["REMOTE_ADDR"].str(), Some("203.0.113.6"));
    let r = via(&s, b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\n", "/t");
    assert_eq!(r.status, 400, "v2 only: a v1 line is not HTTP");
}

#[test]
fn unix_socket_peers_may_always_send_headers() {
    let dir = TempDir::new("ppu");
    let sock = dir.join("s.sock");
    let bind = format!("unix:{}", sock.display());
    let s = Server::start(&[
        "edge:app",
        "-b",
        &bind,
        "--proxy-protocol",
        "v2",
        "--proxy-allow-from",
        "10.9.9.9",
    ]);
    let j = via(
        &s,
        &v2_tcp4([203, 0, 113, 5], 61000, [10, 0, 0, 1], 80),
        "/u",
    )
    .json();
    assert_eq!(j["REMOTE_ADDR"].str(), Some("203.0.113.5"));
}

#[test]
fn malformed_truncated_and_slow_headers_close_the_connection() {
    let s = Server::start(&[
        "edge:app",
        "--proxy-protocol",
        "auto",
        "--header-timeout",
        "1",
    ]);
    for bad in [
        b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n".to_vec(),
        b"PROXY TCP4 300.0.2.7 198.51.100.1 1 2\r\n".to_vec(),
        b"PROXY TCP5 a b 1 2\r\n".to_vec(),
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n".to_vec(),
        [&b"PROXY UNKNOWN "[..], &[b'x'; 150]].concat(),
        v2(0x11, 0x11, &[0; 12]),
        v2(0x2f, 0x11, &[0; 12]),
        v2(0x21, 0x12, &[0; 12]),
        v2(0x21, 0x11, &[0; 4]),
    ] {
        let mut c = s.connect();
        c.send(&bad).unwrap();
        let r = c.read_response();
        assert_eq!(
            r.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(&bad),
            r.text()
        );
        assert!(c.is_closed(Duration::from_secs(5)));
    }
    // Truncated: the peer stops sending and closes; nothing is answered.
    for part in [
        &b"PROXY TCP4 1.2.3.4"[..],
        &v2_tcp4([1, 2, 3, 4], 1, [5, 6, 7, 8], 2)[..20],
    ] {
        let (out, eof) = send_raw_eof_shut(&s, part);
        assert!(eof && out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
    }
    // Slow: cut off by --header-timeout (1 s; the sweep runs each second).
    for part in [&b"PROXY TCP4 1.2.3.4"[..], &b"\r\n\r\n\0\r\nQ"[..]] {
        let mut c = s.connect();
        c.send(part).unwrap();
        let t = Instant::now();
        assert!(c.is_closed(Duration::from_secs(5)), "still open");
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{took:?}"
        );
    }
    // A mode reads only its version: with v1, a v2 header is not HTTP.
    drop(s);
    let s = Server::start(&["edge:app", "--proxy-protocol", "v1"]);
    let r = via(&s, &v2_tcp4([1, 2, 3, 4], 1, [5, 6, 7, 8], 2), "/x");
    assert_eq!(r.status, 400);
}

fn send_raw_eof_shut(s: &Server, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut c = s.connect();
    c.send(bytes).unwrap();
    c.shutdown_write();
    let out = c.read_to_end();
    (out, c.is_closed(Duration::from_millis(10)))
}

// ---- uwsgi ----

fn uwsgi_packet(vars: &[(&str, &str)]) -> Vec<u8> {
    let mut data = Vec::new();
    for (k, v) in vars {
        for s in [k.as_bytes(), v.as_bytes()] {
            data.extend_from_slice(&(s.len() as u16).to_le_bytes());
            data.extend_from_slice(s);
        }
    }
    let mut out = vec![0u8];
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.push(0);
    out.extend_from_slice(&data);
    out
}

/// What nginx's uwsgi_params send for `POST /p%41th?a=1` with a body.
fn nginx_vars(len: &str) -> Vec<(&str, &str)> {
    vec![
        ("QUERY_STRING", "a=1"),
        ("REQUEST_METHOD", "POST"),
        ("CONTENT_TYPE", "text/plain"),
        ("CONTENT_LENGTH", len),
        ("REQUEST_URI", "/p%41th?a=1"),
        ("PATH_INFO", "/pAth"),
        ("DOCUMENT_ROOT", "/srv/www"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "https"),
        ("HTTPS", "on"),
        ("REMOTE_ADDR", "192.0.2.33"),
        ("REMOTE_PORT", "40001"),
        ("SERVER_PORT", "443"),
        ("SERVER_NAME", "example.org"),
        ("HTTP_HOST", "example.org"),
        ("HTTP_USER_AGENT", "curl/7.88"),
        ("HTTP_X_CUSTOM_THING", "yes"),
    ]
}

/// Send one uwsgi request (and `body`) and read the HTTP answer to EOF.
fn uwsgi_send(s: &Server, packet: &[u8], body: &[u8]) -> (Response, bool) {
    let mut c = s.connect();
    let mut bytes = packet.to_vec();
    bytes.extend_from_slice(body);
    c.send(&bytes).unwrap();
    let r = c.read_response();
    (r, c.is_closed(Duration::from_secs(5)))
}

fn uwsgi_for(worker: &[&str]) {
    let dir = TempDir::new("uw");
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
    let body = b"hello";
    // Split anywhere: the packet in three writes.
    let packet = uwsgi_packet(&nginx_vars("5"));
    let mut c = s.connect();
    c.send(&packet[..3]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.send(&packet[3..40]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.send(&packet[40..]).unwrap();
    c.send(body).unwrap();
    let r = c.read_response();
    assert_eq!(r.status, 200, "{worker:?}: {}", r.text());
    // One request per connection, as nginx's uwsgi_pass expects.
    assert!(c.is_closed(Duration::from_secs(5)), "{worker:?}");
    let j = r.json();
    assert_eq!(j["body"].str(), Some("hello"));
    if asgi {
        assert_eq!(j["method"].str(), Some("POST"));
        assert_eq!(j["path"].str(), Some("/pAth"));
        assert_eq!(j["raw_path"].str(), Some("/p%41th"));
        assert_eq!(j["query_string"].str(), Some("a=1"));
        assert_eq!(j["scheme"].str(), Some("https"));
        assert_eq!(j["http_version"].str(), Some("1.1"));
        assert_eq!(
            j["client"],
            Json::parse(r#"["192.0.2.33", 40001]"#).unwrap()
        );
        assert_eq!(j["server"], Json::parse(r#"["example.org", 443]"#).unwrap());
        let hdrs = format!("{:?}", j["headers"]);
        for h in [
            "user-agent",
            "x-custom-thing",
            "content-type",
            "content-length",
            "host",
        ] {
            assert!(hdrs.contains(h), "{h} in {hdrs}");
        }
    } else {
        for (k, v) in [
            ("REQUEST_METHOD", "POST"),
            ("PATH_INFO", "/pAth"),
            ("QUERY_STRING", "a=1"),
            ("RAW_URI", "/p%41th?a=1"),
            ("REQUEST_URI", "/p%41th?a=1"),
            ("SCRIPT_NAME", ""),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_NAME", "example.org"),
            ("SERVER_PORT", "443"),
            ("REMOTE_ADDR", "192.0.2.33"),
            ("REMOTE_PORT", "40001"),
            ("CONTENT_TYPE", "text/plain"),
            ("CONTENT_LENGTH", "5"),
            ("HTTP_HOST", "example.org"),
            ("HTTP_X_CUSTOM_THING", "yes"),
            ("DOCUMENT_ROOT", "/srv/www"),
            ("wsgi.url_scheme", "https"),
        ] {
            assert_eq!(j[k].str(), Some(v), "{worker:?} {k}");
        }
    }
    // A body-less GET, and a response streamed without a length: the
    // body ends with the connection (HTTP/1.0 framing, nothing chunked).
    if !asgi {
        let (r, closed) = uwsgi_send(&s, &uwsgi_packet(&[("PATH_INFO", "/big")]), b"");
        assert_eq!((r.status, r.chunked, closed), (200, false, true));
        assert_eq!(r.body.len(), 100 * 1024);
    }
    // A body too large to buffer (256 KiB) is streamed to the app.
    let big: Vec<u8> = (0..300 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let len = big.len().to_string();
    let (r, closed) = uwsgi_send(
        &s,
        &uwsgi_packet(&[("REQUEST_METHOD", "PUT"), ("CONTENT_LENGTH", &len)]),
        &big,
    );
    assert_eq!((r.status, closed), (200, true), "{worker:?}");
    assert_eq!(r.json()["body"].str().map(str::len), Some(big.len()));
    let (r, _) = uwsgi_send(
        &s,
        &uwsgi_packet(&[("REQUEST_METHOD", "GET"), ("PATH_INFO", "/g")]),
        b"",
    );
    assert_eq!(r.status, 200);
    let j = r.json();
    if asgi {
        assert_eq!(j["scheme"].str(), Some("http"));
        assert_eq!(
            first(&j["client"]),
            Some("127.0.0.1"),
            "the peer without REMOTE_ADDR"
        );
    } else {
        assert_eq!(j["wsgi.url_scheme"].str(), Some("http"));
        assert_eq!(
            j["REMOTE_ADDR"].str(),
            Some("127.0.0.1"),
            "the peer without REMOTE_ADDR"
        );
    }
    let lines = access_lines(&log, 2);
    assert!(lines[0].starts_with("192.0.2.33 "), "{lines:?}");
    assert!(
        lines[0].contains("\"POST /p%41th?a=1 HTTP/1.1\" 200"),
        "{lines:?}"
    );
}

#[test]
fn uwsgi_sync() {
    uwsgi_for(&[]);
}

#[test]
fn uwsgi_gthread() {
    uwsgi_for(&["-k", "gthread", "--threads", "2"]);
}

#[test]
fn uwsgi_asgi() {
    uwsgi_for(&["-k", "asgi"]);
}

#[test]
fn uwsgi_refusals() {
    let s = Server::start(&["edge:app", "--protocol", "uwsgi", "--header-timeout", "1"]);
    // modifier1 other than 0: 501, as in gunicorn.
    let mut p = uwsgi_packet(&[("PATH_INFO", "/")]);
    p[0] = 5;
    let (r, closed) = uwsgi_send(&s, &p, b"");
    assert_eq!((r.status, closed), (501, true), "{}", r.text());
    // A vars block whose sizes run past its end.
    let (r, closed) = uwsgi_send(&s, &[0, 3, 0, 0, 9, 0, b'a'], b"");
    assert_eq!((r.status, closed), (400, true));
    let (r, _) = uwsgi_send(&s, &uwsgi_packet(&[("CONTENT_LENGTH", "x")]), b"");
    assert_eq!(r.status, 400);
    // HTTP sent to a uwsgi socket: 'G' is no modifier.
    let (r, _) = uwsgi_send(&s, &get_req("/"), b"");
    assert_eq!(r.status, 501);
    // Truncated, then closed by the peer: nothing answered.
    let (out, eof) = send_raw_eof_shut(&s, &uwsgi_packet(&nginx_vars("0"))[..30]);
    assert!(eof && out.is_empty());
    // Slow: closed by --header-timeout.
    let mut c = s.connect();
    c.send(&uwsgi_packet(&nginx_vars("0"))[..30]).unwrap();
    let t = Instant::now();
    assert!(c.is_closed(Duration::from_secs(5)));
    assert!(t.elapsed() < Duration::from_secs(4));
    drop(s);
    // From a peer not allowed: 403, as soon as it connects.
    for worker in [&[][..], &["-k", "asgi"]] {
        let app = if worker.is_empty() {
            "edge:app"
        } else {
            "edge:asgi"
        };
        let mut args = vec![
            app,
            "--protocol",
            "uwsgi",
            "--uwsgi-allow-from",
            "10.0.0.1,fd00::/8",
        ];
        args.extend_from_slice(worker);
        let s = Server::start(&args);
        let (r, closed) = uwsgi_send(&s, &uwsgi_packet(&nginx_vars("0")), b"");
        assert_eq!((r.status, closed), (403, true), "{worker:?}");
        assert!(s.log().contains("Forbidden uWSGI request from 127.0.0.1"));
    }
}

#[test]
fn uwsgi_behind_a_proxy_header() {
    // Both at once: the PROXY header first, then the uwsgi packet; the
    // uwsgi vars' REMOTE_ADDR wins, the header's client is used without it.
    let s = Server::start(&["edge:app", "--protocol", "uwsgi", "--proxy-protocol", "v1"]);
    let mut p = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n".to_vec();
    p.extend_from_slice(&uwsgi_packet(&[("PATH_INFO", "/pp")]));
    let (r, _) = uwsgi_send(&s, &p, b"");
    let j = r.json();
    assert_eq!(j["REMOTE_ADDR"].str(), Some("192.0.2.7"));
    assert_eq!(j["PROXY_PROTOCOL"].str(), Some("TCP4"));
}
