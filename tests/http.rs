//! HTTP/1.1 protocol behaviour: responses, keep-alive, pipelining, request
//! bodies (chunked, Content-Length, 100-continue) and every rejection of a
//! malformed or unsupported request.

mod common;

use std::time::Duration;

use common::*;

// ---------------------------------------------------------------------------
// Harness self-checks

#[test]
fn harness_sha256_matches_known_vectors() {
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    let chunked_body = chunked(b"hello world", &[3, 5]);
    assert_eq!(
        chunked_body,
        b"3\r\nhel\r\n5\r\nlo wo\r\n3\r\nrld\r\n0\r\n\r\n".to_vec()
    );
    let j =
        Json::parse(r#"{"a": "caf\u00c3\u00a9", "b": [1, true, null], "c": {"d": -2.5}}"#).unwrap();
    assert_eq!(j["a"].str(), Some("caf\u{c3}\u{a9}"));
    assert_eq!(j["c"]["d"], Json::Num(-2.5));
}

// ---------------------------------------------------------------------------
// Basic responses

#[test]
fn hello_has_body_server_and_date() {
    let s = Server::start(&["hello:app"]);
    let r = get(s.port, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.version, "HTTP/1.1");
    assert_eq!(r.text(), "Hello, World!\n");
    assert_eq!(r.header("content-length"), Some("14"));
    assert!(r.header("server").is_some(), "no Server header: {r:?}");
    let date = r.header("date").expect("no Date header");
    assert!(
        date.ends_with(" GMT"),
        "Date is not an IMF-fixdate: {date:?}"
    );
}

#[test]
fn http10_request_gets_response_and_close() {
    let s = Server::start(&["hello:app"]);
    let mut c = Conn::connect(s.port);
    c.send(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, World!\n");
    assert!(
        c.is_closed(Duration::from_secs(3)),
        "HTTP/1.0 without keep-alive must be closed after the response"
    );
}

// ---------------------------------------------------------------------------
// Keep-alive and pipelining

/// A client that sends its request and closes its side at once (as
/// `printf ... | nc` does) gets the answer and then the close straight
/// away, not after --keep-alive. The one sync worker is held by another
/// request, so this connection's request and its FIN are both waiting
/// before the worker first reads it.
#[test]
fn request_sent_with_fin_is_answered_then_closed_at_once() {
    let s = Server::start(&["-w", "1", "--keep-alive", "30", "slow:app"]);
    let port = s.port;
    let busy = std::thread::spawn(move || get(port, "/?sleep=0.5").status);
    std::thread::sleep(Duration::from_millis(150));
    let mut c = Conn::connect(port);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    c.shutdown_write();
    let t = std::time::Instant::now();
    let out = c.read_to_end();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    assert!(
        c.is_closed(Duration::from_millis(10)),
        "the connection stayed open after {:?}",
        t.elapsed()
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        t.elapsed()
    );
    assert_eq!(busy.join().unwrap(), 200);
}

#[test]
fn keepalive_three_requests_on_one_connection() {
    let s = Server::start(&["echo:app"]);
    let mut c = Conn::connect(s.port);
    let mut ports = Vec::new();
    for i in 0..3 {
        let r = c.request("GET", &format!("/ka/{i}"), &[], b"");
        assert_eq!(r.status, 200);
        assert!(!r.closes(), "request {i} closed the connection: {r:?}");
        let j = r.json();
        assert_eq!(j["PATH_INFO"].str(), Some(format!("/ka/{i}").as_str()));
        ports.push(j["REMOTE_PORT"].str().unwrap_or_default().to_string());
    }
    let mine = c.local_port().to_string();
    assert!(
        ports.iter().all(|p| *p == mine),
        "all three requests must arrive on the same connection (port {mine}): {ports:?}"
    );
}

#[test]
fn http10_keepalive_stays_open() {
    let s = Server::start(&["echo:app"]);
    let mut c = Conn::connect(s.port);
    for i in 0..2 {
        c.send(format!("GET /ka10/{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes())
            .unwrap();
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("keep-alive"),
            "an HTTP/1.0 keep-alive response must say Connection: keep-alive: {r:?}"
        );
        assert_eq!(
            r.json()["PATH_INFO"].str(),
            Some(format!("/ka10/{i}").as_str())
        );
    }
    assert!(!c.is_closed(Duration::from_millis(300)));
}

#[test]
fn connection_close_closes() {
    let s = Server::start(&["echo:app"]);
    let mut c = Conn::connect(s.port);
    let r = c.request("GET", "/bye", &[("Connection", "close")], b"");
    assert_eq!(r.status, 200);
    assert!(
        r.closes(),
        "response to Connection: close must say so: {r:?}"
    );
    assert!(c.is_closed(Duration::from_secs(3)));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = Server::start(&["echo:app"]);
    let mut c = Conn::connect(s.port);
    let mut all = build_request("GET", "/p1", &[], b"");
    all.extend(build_request("POST", "/p2", &[], b"body-of-p2"));
    all.extend(build_request("GET", "/p3?x=1", &[], b""));
    c.send(&all).unwrap();
    let expected = [("/p1", 0u64), ("/p2", 10), ("/p3", 0)];
    for (path, len) in expected {
        let r = c.read_response();
        assert_eq!(r.status, 200);
        let j = r.json();
        assert_eq!(j["PATH_INFO"].str(), Some(path));
        assert_eq!(j["body_length"].as_u64(), Some(len));
    }
    assert_eq!(
        c.request("GET", "/p4", &[], b"").json()["PATH_INFO"].str(),
        Some("/p4")
    );
}

// ---------------------------------------------------------------------------
// Request bodies

#[test]
fn chunked_upload_of_5_mib() {
    let s = Server::start(&["echo:app"]);
    let data = pseudo_random(5 * 1024 * 1024, 0x5eed);
    // Hash before sending: the connection must not sit idle past the
    // keep-alive timeout while the test computes.
    let digest = sha256_hex(&data);
    let body = chunked(
        &data,
        &[1, 7, 100, 4096, 65536, 300_000, 13, 1_000_000, 65535],
    );
    let mut req = build_request("PUT", "/upload", &[("Transfer-Encoding", "chunked")], b"");
    req.extend_from_slice(&body);
    let mut c = Conn::connect(s.port);
    // Several writes of varying size.
    let mut pos = 0;
    for (i, n) in [10usize, 1000, 70_000, 1 << 20].iter().cycle().enumerate() {
        if pos >= req.len() || i > 10_000 {
            break;
        }
        let end = (pos + n).min(req.len());
        c.send(&req[pos..end]).expect("write the chunked body");
        pos = end;
    }
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["body_length"].as_u64(), Some(data.len() as u64));
    assert_eq!(j["body_sha256"].str(), Some(digest.as_str()));
    assert!(
        j["max_read"].as_u64().unwrap_or(u64::MAX) <= 65536,
        "read(65536) returned more than asked: {:?}",
        j["max_read"]
    );
    // The connection is still usable after the body.
    assert_eq!(c.request("GET", "/after", &[], b"").status, 200);
}

#[test]
fn content_length_upload_of_3_mib() {
    let s = Server::start(&["echo:app"]);
    let data = pseudo_random(3 * 1024 * 1024, 42);
    let digest = sha256_hex(&data);
    let mut c = Conn::connect(s.port);
    let r = c.request(
        "POST",
        "/upload",
        &[("Content-Type", "application/octet-stream")],
        &data,
    );
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["CONTENT_LENGTH"].str(), Some("3145728"));
    assert_eq!(j["CONTENT_TYPE"].str(), Some("application/octet-stream"));
    assert_eq!(j["body_length"].as_u64(), Some(data.len() as u64));
    assert_eq!(j["body_sha256"].str(), Some(digest.as_str()));
    assert!(
        j["reads"].as_u64().unwrap_or(0) >= 48,
        "expected 64 KiB reads"
    );
    assert!(j["max_read"].as_u64().unwrap_or(u64::MAX) <= 65536);
    assert_eq!(c.request("GET", "/after", &[], b"").status, 200);
}

#[test]
fn readline_reads_lines_of_the_body() {
    let s = Server::start(&["echo:app"]);
    let mut data = Vec::new();
    for i in 0..2000 {
        data.extend_from_slice(format!("line number {i}\n").as_bytes());
    }
    data.extend_from_slice(b"no newline at the end");
    let digest = sha256_hex(&data);
    let r = request(s.port, "POST", "/readline", &[], &data);
    let j = r.json();
    assert_eq!(j["lines"].as_u64(), Some(2001));
    assert_eq!(j["body_sha256"].str(), Some(digest.as_str()));
    // Chunked too.
    let mut req = build_request(
        "POST",
        "/readline",
        &[("Transfer-Encoding", "chunked")],
        b"",
    );
    req.extend(chunked(&data, &[5, 999, 17]));
    let mut c = Conn::connect(s.port);
    c.send(&req).unwrap();
    let j = c.read_response().json();
    assert_eq!(j["lines"].as_u64(), Some(2001));
    assert_eq!(j["body_sha256"].str(), Some(digest.as_str()));
}

#[test]
fn expect_100_continue_before_the_body() {
    let s = Server::start(&["echo:app"]);
    let data = pseudo_random(200_000, 100);
    let digest = sha256_hex(&data);
    let mut c = Conn::connect(s.port);
    c.send(
        format!(
            "POST /expect HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            data.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let interim = c
        .read_any_response()
        .expect("an interim response before the body is sent");
    assert_eq!(interim.status, 100, "{interim:?}");
    assert_eq!(interim.version, "HTTP/1.1");
    c.send(&data).unwrap();
    let r = c.read_response();
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["body_sha256"].str(), Some(digest.as_str()));
}

// ---------------------------------------------------------------------------
// Rejections

/// Start echo with `extra` args, send `req`, and check that the answer is
/// exactly one `status` response with `Connection: close`, that the server
/// closed the connection, that the app did not run, and that the server
/// still serves a normal request afterwards.
fn assert_rejected(extra: &[&str], req: &[u8], status: u16) {
    let mut args = vec!["echo:app"];
    args.extend_from_slice(extra);
    let s = Server::start(&args);
    let calls = || s.log().matches("echo-app called").count();
    let before = calls();
    let (raw, eof) = send_raw_eof(s.port, req);
    let shown = String::from_utf8_lossy(&raw).into_owned();
    let resps = parse_responses(&raw);
    assert_eq!(
        resps.len(),
        1,
        "request {:?}: expected exactly one response, got {shown:?}",
        String::from_utf8_lossy(req)
    );
    let r = &resps[0];
    assert_eq!(
        r.status,
        status,
        "request {:?}: got {shown:?}",
        String::from_utf8_lossy(req)
    );
    assert!(r.closes(), "no Connection: close in {shown:?}");
    assert!(
        eof,
        "the server did not close the connection after {shown:?}"
    );
    assert!(
        !r.text().contains("REQUEST_METHOD"),
        "the app answered: {shown:?}"
    );
    assert_eq!(calls(), before, "the app was called; log:\n{}", s.log());
    // The worker is fine.
    assert_eq!(get(s.port, "/still-ok").status, 200);
}

fn with_head(head: &str) -> Vec<u8> {
    format!("GET /rejected HTTP/1.1\r\nHost: localhost\r\n{head}\r\n").into_bytes()
}

#[test]
fn reject_malformed_request_line() {
    assert_rejected(&[], b"GET /only-two-parts\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn one_empty_line_before_the_request_line_is_ignored() {
    let s = Server::start(&["echo:app"]);
    let raw = send_raw(
        s.port,
        b"\r\nGET /after-one HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let resps = parse_responses(&raw);
    assert_eq!(resps.len(), 1, "{}", String::from_utf8_lossy(&raw));
    assert_eq!(resps[0].status, 200);
    assert_eq!(resps[0].json()["PATH_INFO"].str(), Some("/after-one"));
}

#[test]
fn reject_two_empty_lines_before_the_request_line() {
    assert_rejected(&[], b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn reject_targets_of_none_of_the_four_forms() {
    // A relative path, the authority form outside CONNECT, `*` outside
    // OPTIONS, a malformed URI: 400, as by gunicorn 27.
    assert_rejected(&[], b"GET foo/bar HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    assert_rejected(&[], b"GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    assert_rejected(&[], b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    assert_rejected(&[], b"GET http://[::1/p HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn the_four_target_forms_are_served() {
    let s = Server::start(&["echo:app"]);
    for (method, target, path) in [
        ("GET", "/origin?q=1", "/origin"),
        ("GET", "http://example.com/absolute?q=1", "/absolute"),
        ("OPTIONS", "*", "*"),
    ] {
        let raw = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let resps = parse_responses(&send_raw(s.port, raw.as_bytes()));
        assert_eq!(resps.len(), 1, "{target}");
        assert_eq!(resps[0].status, 200, "{target}: {}", resps[0].text());
        assert_eq!(resps[0].json()["RAW_URI"].str(), Some(target));
        assert_eq!(resps[0].json()["PATH_INFO"].str(), Some(path));
    }
}

#[test]
fn reject_raw_non_ascii_in_the_target() {
    assert_rejected(&[], b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    assert_rejected(&[], b"GET /caf\xe9 HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn reject_repeated_host() {
    assert_rejected(&[], &with_head("Host: other\r\n"), 400);
}

#[test]
fn reject_repeated_content_type() {
    assert_rejected(
        &[],
        &with_head("Content-Type: text/plain\r\nContent-Type: text/html\r\n"),
        400,
    );
}

#[test]
fn reject_request_line_with_extra_token() {
    assert_rejected(&[], b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn reject_garbage_request_line() {
    assert_rejected(
        &[],
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
        400,
    );
}

#[test]
fn reject_lowercase_method() {
    assert_rejected(&[], b"get /lower HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn reject_bad_method_token() {
    assert_rejected(&[], b"G@T /bad HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn reject_control_char_in_header_value() {
    assert_rejected(&[], &with_head("X-Test: a\x01b\r\n"), 400);
}

#[test]
fn reject_obs_fold() {
    assert_rejected(&[], &with_head("X-Test: a\r\n  folded\r\n"), 400);
}

#[test]
fn reject_space_before_colon() {
    assert_rejected(&[], &with_head("X-Test : a\r\n"), 400);
}

#[test]
fn reject_two_content_lengths() {
    let mut req = with_head("Content-Length: 5\r\nContent-Length: 5\r\n");
    req.extend_from_slice(b"hello");
    assert_rejected(&[], &req, 400);
}

#[test]
fn reject_content_length_with_transfer_encoding() {
    let mut req = with_head("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n");
    req.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    assert_rejected(&[], &req, 400);
}

#[test]
fn reject_chunked_not_last_coding() {
    let mut req = with_head("Transfer-Encoding: chunked, gzip\r\n");
    req.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    assert_rejected(&[], &req, 400);
}

#[test]
fn reject_unsupported_transfer_coding_with_501() {
    let mut req = with_head("Transfer-Encoding: br, chunked\r\n");
    req.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    assert_rejected(&[], &req, 501);
}

#[test]
fn reject_forbidden_trailer_fields() {
    // RFC 9110 §6.5.1, the names gunicorn 27 bars from trailers.
    for name in [
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "Trailer",
        "Authorization",
        "TE",
    ] {
        let mut req = with_head("Transfer-Encoding: chunked\r\n");
        req.extend_from_slice(format!("5\r\nhello\r\n0\r\n{name}: x\r\n\r\n").as_bytes());
        assert_rejected(&[], &req, 400);
    }
}

#[test]
fn forbidden_trailer_after_a_streamed_body_is_400() {
    // A body over 256 KiB streams into the app; the bad trailer surfaces
    // in its read, and the client gets 400 (as from gunicorn), not 500.
    let s = Server::start(&["echo:app"]);
    let mut req = with_head("Transfer-Encoding: chunked\r\n");
    for _ in 0..6 {
        req.extend_from_slice(b"10000\r\n");
        req.extend_from_slice(&[b'a'; 0x10000]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\nHost: evil\r\n\r\n");
    let (raw, eof) = send_raw_eof(s.port, &req);
    let resps = parse_responses(&raw);
    assert_eq!(resps.len(), 1, "{}", String::from_utf8_lossy(&raw));
    assert_eq!(resps[0].status, 400, "{}", String::from_utf8_lossy(&raw));
    assert!(resps[0].closes() && eof);
    assert_eq!(get(s.port, "/still-ok").status, 200);
}

#[test]
fn allowed_trailer_fields_are_served() {
    let s = Server::start(&["echo:app"]);
    let mut req = with_head("Transfer-Encoding: chunked\r\n");
    req.extend_from_slice(b"5\r\nhello\r\n0\r\nX-Checksum: 1\r\nContent-Type: a\r\n\r\n");
    let mut c = Conn::connect(s.port);
    c.send(&req).unwrap();
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_length"].as_u64(), Some(5));
}

#[test]
fn reject_transfer_coding_without_chunked() {
    // gzip alone gives the body no length: 400, as by gunicorn 27.
    let mut req = with_head("Transfer-Encoding: gzip\r\n");
    req.extend_from_slice(b"hello");
    assert_rejected(&[], &req, 400);
}

#[test]
fn codings_before_chunked_are_de_chunked_and_passed_on() {
    // As gunicorn 27: the body is de-chunked, Transfer-Encoding reaches the
    // app unchanged, and after a gzip/deflate/compress-coded body the
    // connection closes; identity keeps it open.
    let s = Server::start(&["echo:app"]);
    let digest = sha256_hex(b"hello world");
    for (te, closes) in [
        ("gzip, chunked", true),
        ("deflate,chunked", true),
        ("identity, chunked", false),
    ] {
        let mut req = format!("POST /coded HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n")
            .into_bytes();
        req.extend_from_slice(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        let mut c = Conn::connect(s.port);
        c.send(&req).unwrap();
        let r = c.read_response();
        assert_eq!(r.status, 200, "{te}: {}", r.text());
        let j = r.json();
        assert_eq!(j["headers"]["HTTP_TRANSFER_ENCODING"].str(), Some(te));
        assert_eq!(j["body_length"].as_u64(), Some(11), "{te}");
        assert_eq!(j["body_sha256"].str(), Some(digest.as_str()), "{te}");
        assert_eq!(r.closes(), closes, "{te}: Connection: close");
        if closes {
            assert!(c.is_closed(Duration::from_secs(3)), "{te}: not closed");
        } else {
            assert!(!c.is_closed(Duration::from_millis(300)), "{te}: closed");
            assert_eq!(c.request("GET", "/after", &[], b"").status, 200);
        }
    }
}

#[test]
fn reject_invalid_chunk_size() {
    let mut req = with_head("Transfer-Encoding: chunked\r\n");
    req.extend_from_slice(b"zz\r\nhello\r\n0\r\n\r\n");
    assert_rejected(&[], &req, 400);
}

#[test]
fn reject_missing_crlf_after_chunk_data() {
    let mut req = with_head("Transfer-Encoding: chunked\r\n");
    req.extend_from_slice(b"5\r\nhelloXX0\r\n\r\n");
    assert_rejected(&[], &req, 400);
}

#[test]
fn reject_request_line_over_limit_with_414() {
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(150));
    // 414 URI Too Long, as gunicorn answers.
    assert_rejected(&["--limit-request-line", "100"], long.as_bytes(), 414);
}

#[test]
fn request_line_within_limit_is_served() {
    let s = Server::start(&["echo:app", "--limit-request-line", "100"]);
    let path = format!("/{}", "a".repeat(70));
    let r = get(s.port, &path);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["PATH_INFO"].str(), Some(path.as_str()));
}

#[test]
fn reject_too_many_header_fields_with_431() {
    let mut head = String::new();
    for i in 0..10 {
        head.push_str(&format!("X-Field-{i}: v\r\n"));
    }
    // Host + 10 fields = 11 > 10.
    assert_rejected(&["--limit-request-fields", "10"], &with_head(&head), 431);
}

#[test]
fn header_field_count_at_limit_is_served() {
    let s = Server::start(&["echo:app", "--limit-request-fields", "10"]);
    let mut c = Conn::connect(s.port);
    let mut head = String::from("GET /fields HTTP/1.1\r\nHost: x\r\n");
    for i in 0..9 {
        head.push_str(&format!("X-Field-{i}: v\r\n"));
    }
    head.push_str("\r\n");
    c.send(head.as_bytes()).unwrap();
    let r = c.read_response();
    assert_eq!(r.status, 200, "10 fields with a limit of 10: {}", r.text());
}

#[test]
fn reject_header_field_over_size_limit_with_431() {
    let head = format!("X-Big: {}\r\n", "b".repeat(300));
    assert_rejected(
        &["--limit-request-field_size", "100"],
        &with_head(&head),
        431,
    );
}

#[test]
fn header_field_size_counts_the_whole_line_with_its_crlf() {
    // As gunicorn 27: "X-Big: " + value + CRLF must fit in the limit.
    let s = Server::start(&["echo:app", "--limit-request-field_size", "100"]);
    let fits = format!("X-Big: {}\r\n", "b".repeat(100 - 9));
    let mut c = Conn::connect(s.port);
    c.send(&with_head(&fits)).unwrap();
    assert_eq!(c.read_response().status, 200, "a 100-byte line fits");
    drop(s);
    let over = format!("X-Big: {}\r\n", "b".repeat(100 - 8));
    assert_rejected(
        &["--limit-request-field_size", "100"],
        &with_head(&over),
        431,
    );
}

#[test]
fn header_field_size_zero_is_the_default_not_unlimited() {
    let over = format!("X-Big: {}\r\n", "b".repeat(8190 - 8));
    assert_rejected(&["--limit-request-field_size", "0"], &with_head(&over), 431);
    let s = Server::start(&["echo:app", "--limit-request-field_size", "0"]);
    let fits = "b".repeat(8190 - 9);
    let r = request(s.port, "GET", "/size", &[("X-Big", &fits)], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn header_field_within_size_limit_is_served() {
    let s = Server::start(&["echo:app", "--limit-request-field_size", "100"]);
    let v = "b".repeat(80);
    let r = request(s.port, "GET", "/size", &[("X-Big", &v)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["HTTP_X_BIG"].str(), Some(v.as_str()));
}

#[test]
fn reject_unknown_expectation_with_417() {
    assert_rejected(&[], &with_head("Expect: something-else\r\n"), 417);
}

#[test]
fn header_with_underscore_is_dropped() {
    let s = Server::start(&["echo:app"]);
    let r = request(
        s.port,
        "GET",
        "/underscore",
        &[
            ("X_Forwarded_For", "1.2.3.4"),
            ("X-Forwarded-For", "5.6.7.8"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    let j = r.json();
    let h = &j["headers"];
    assert_eq!(
        h["HTTP_X_FORWARDED_FOR"].str(),
        Some("5.6.7.8"),
        "headers: {:?}",
        h.keys()
    );
    let text = r.text();
    assert!(
        !text.contains("1.2.3.4"),
        "the underscore header reached the app: {text}"
    );
}
