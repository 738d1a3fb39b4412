//! The WSGI side (PEP 3333): the environ, response framing of streamed,
//! written and file-wrapped bodies, app errors, factories, and close().

mod common;

use std::fs;
use std::time::Duration;

use common::*;

// ---------------------------------------------------------------------------
// The environ

/// Every request gets an environ of its own: what an app adds, changes or
/// deletes in one is not in the next one on the same worker (ferrocorn
/// copies a prepared environ per request), and a request with many
/// headers has them all.
#[test]
fn environ_is_fresh_for_every_request() {
    let s = Server::start(&["-w", "1", "echo:app"]);
    let mut c = Conn::connect(s.port);
    for round in 0..3 {
        let r = c.request("GET", "/", &[("Host", "x")], b"");
        assert_eq!(r.status, 200);
        let j = r.json();
        assert!(j["mark"].is_null(), "round {round}: {:?}", j["mark"]);
        assert_eq!(j["wsgi.run_once"].as_bool(), Some(false));
        assert_eq!(j["SERVER_NAME"].str(), Some("127.0.0.1"));
    }
    let names: Vec<String> = (0..60).map(|i| format!("X-Many-{i}")).collect();
    let values: Vec<String> = (0..60).map(|i| format!("value {i}")).collect();
    let headers: Vec<(&str, &str)> = names
        .iter()
        .zip(&values)
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let r = c.request("GET", "/", &headers, b"");
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    for i in 0..60 {
        assert_eq!(
            h[format!("HTTP_X_MANY_{i}").as_str()].str(),
            Some(format!("value {i}").as_str())
        );
    }
}

#[test]
fn environ_keys() {
    let s = Server::start(&["-w", "2", "echo:app"]);
    let mut c = Conn::connect(s.port);
    let r = c.request(
        "POST",
        "/caf%C3%A9/a%2Fb?x=1&y=%20z",
        &[
            ("Host", "example.test:8080"),
            ("X-Custom", "custom value"),
            ("Content-Type", "text/plain"),
        ],
        b"abc",
    );
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["REQUEST_METHOD"].str(), Some("POST"));
    // Percent-decoded bytes, each byte one latin-1 character.
    assert_eq!(j["PATH_INFO"].str(), Some("/caf\u{c3}\u{a9}/a/b"));
    assert_eq!(j["RAW_URI"].str(), Some("/caf%C3%A9/a%2Fb?x=1&y=%20z"));
    assert_eq!(j["QUERY_STRING"].str(), Some("x=1&y=%20z"));
    assert_eq!(j["SCRIPT_NAME"].str(), Some(""));
    assert_eq!(j["CONTENT_TYPE"].str(), Some("text/plain"));
    assert_eq!(j["CONTENT_LENGTH"].str(), Some("3"));
    assert_eq!(j["body_sha256"].str(), Some(sha256_hex(b"abc").as_str()));
    // On TCP, as gunicorn: the address the request arrived on, whatever
    // the Host header says.
    assert_eq!(j["SERVER_NAME"].str(), Some("127.0.0.1"));
    assert_eq!(j["SERVER_PORT"].str(), Some(s.port.to_string().as_str()));
    assert_eq!(j["SERVER_PROTOCOL"].str(), Some("HTTP/1.1"));
    assert_eq!(j["REMOTE_ADDR"].str(), Some("127.0.0.1"));
    assert_eq!(
        j["REMOTE_PORT"].str(),
        Some(c.local_port().to_string().as_str())
    );
    assert_eq!(j["wsgi.url_scheme"].str(), Some("http"));
    assert_eq!(j["wsgi.multithread"].as_bool(), Some(false));
    assert_eq!(j["wsgi.multiprocess"].as_bool(), Some(true));
    assert_eq!(j["wsgi.run_once"].as_bool(), Some(false));
    let h = &j["headers"];
    assert_eq!(h["HTTP_HOST"].str(), Some("example.test:8080"));
    assert_eq!(h["HTTP_X_CUSTOM"].str(), Some("custom value"));
    assert!(
        !h.has("HTTP_CONTENT_TYPE") && !h.has("HTTP_CONTENT_LENGTH"),
        "Content-Type/Length must not appear as HTTP_*: {:?}",
        h.keys()
    );
}

#[test]
fn environ_without_host_uses_the_bound_address() {
    let s = Server::start(&["echo:app"]);
    let mut c = Conn::connect(s.port);
    c.send(b"GET /nohost?q HTTP/1.0\r\n\r\n").unwrap();
    let j = c.read_response().json();
    assert_eq!(j["SERVER_NAME"].str(), Some("127.0.0.1"));
    assert_eq!(j["SERVER_PORT"].str(), Some(s.port.to_string().as_str()));
    assert_eq!(j["SERVER_PROTOCOL"].str(), Some("HTTP/1.0"));
    assert_eq!(j["QUERY_STRING"].str(), Some("q"));
    assert_eq!(j["CONTENT_LENGTH"], Json::Null);
}

#[test]
fn script_name_from_the_environment() {
    let s = Server::start_env(&["echo:app"], &[("SCRIPT_NAME", "/app")]);
    let j = get(s.port, "/app/x").json();
    assert_eq!(j["SCRIPT_NAME"].str(), Some("/app"));
    assert_eq!(j["PATH_INFO"].str(), Some("/x"));
    assert_eq!(j["RAW_URI"].str(), Some("/app/x"));
    let j = get(s.port, "/app").json();
    assert_eq!(j["SCRIPT_NAME"].str(), Some("/app"));
    assert_eq!(j["PATH_INFO"].str(), Some(""));
}

#[test]
fn forwarded_proto_trusted_from_localhost_by_default() {
    let s = Server::start(&["echo:app"]);
    let j = request(
        s.port,
        "GET",
        "/fwd",
        &[("X-Forwarded-Proto", "https")],
        b"",
    )
    .json();
    assert_eq!(j["wsgi.url_scheme"].str(), Some("https"));
    let j = get(s.port, "/plain").json();
    assert_eq!(j["wsgi.url_scheme"].str(), Some("http"));
}

#[test]
fn forwarded_proto_ignored_from_untrusted_peer() {
    let s = Server::start(&["echo:app", "--forwarded-allow-ips", "10.0.0.1"]);
    let j = request(
        s.port,
        "GET",
        "/fwd",
        &[("X-Forwarded-Proto", "https")],
        b"",
    )
    .json();
    assert_eq!(j["wsgi.url_scheme"].str(), Some("http"));
}

// ---------------------------------------------------------------------------
// wsgiref.validate

#[test]
fn validator_app_get_post_head() {
    let s = Server::start(&["validated:app"]);
    let mut c = Conn::connect(s.port);
    let r = c.request("GET", "/v?a=b", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "validated GET /v");
    let r = c.request("POST", "/v", &[("Content-Type", "text/plain")], b"payload");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "posted:payload");
    let r = c.request("HEAD", "/v", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("17"));
    // No body bytes after a HEAD response: the next response parses.
    let r = c.request("GET", "/after-head", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "validated GET /after-head");
    drop(c);
    // One more request on a new connection, so that anything the validator
    // reports when the previous iterables are collected is in the log.
    assert_eq!(get(s.port, "/last").status, 200);
    let log = s.log();
    for bad in ["AssertionError", "Traceback", "WSGIWarning"] {
        assert!(!log.contains(bad), "{bad} in the log:\n{log}");
    }
}

// ---------------------------------------------------------------------------
// Response framing

fn stream_body() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(b"first chunk\n");
    v.extend_from_slice(b"second chunk\n");
    v.extend(std::iter::repeat_n(b'x', 70000));
    v.extend_from_slice(b"\n");
    v.extend_from_slice(b"last chunk\n");
    v
}

#[test]
fn generator_is_chunked_on_http11() {
    let s = Server::start(&["stream:app"]);
    let mut c = Conn::connect(s.port);
    let r = c.request("GET", "/", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("transfer-encoding")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("chunked")
    );
    assert!(r.header("content-length").is_none());
    assert!(r.complete, "the chunked body did not end with a last chunk");
    assert_eq!(r.body, stream_body());
    // Keep-alive still works after a chunked response.
    let r = c.request("GET", "/again", &[], b"");
    assert_eq!(r.body, stream_body());
}

#[test]
fn generator_is_close_delimited_on_http10() {
    let s = Server::start(&["stream:app"]);
    let mut c = Conn::connect(s.port);
    c.send(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(r.header("transfer-encoding").is_none(), "{r:?}");
    assert!(r.header("content-length").is_none(), "{r:?}");
    assert_eq!(r.body, stream_body());
    assert!(c.r.eof, "the body must end with the connection closing");
}

#[test]
fn generator_on_http10_keepalive_request_still_closes() {
    let s = Server::start(&["stream:app"]);
    let mut c = Conn::connect(s.port);
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(r.header("transfer-encoding").is_none(), "{r:?}");
    assert_eq!(r.body, stream_body());
    assert!(c.r.eof);
}

#[test]
fn write_callable() {
    let s = Server::start(&["writer:app"]);
    let mut c = Conn::connect(s.port);
    let r = c.request("GET", "/", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "written-1;written-2;returned-3");
    assert!(r.complete);
    let r = c.request("GET", "/", &[], b"");
    assert_eq!(r.text(), "written-1;written-2;returned-3");
    let mut c = Conn::connect(s.port);
    c.send(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(c.read_response().text(), "written-1;written-2;returned-3");
}

fn file_pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 3) % 256) as u8).collect()
}

#[test]
fn file_wrapper_serves_the_file() {
    let s = Server::start(&["filewrap:app"]);
    let data = file_pattern(300_000);
    let mut c = Conn::connect(s.port);
    let r = c.request("GET", "/", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("300000"));
    assert_eq!(r.body.len(), data.len());
    assert!(r.body == data, "file bytes differ");

    let r = c.request("GET", "/offset", &[], b"");
    assert_eq!(r.header("content-length"), Some("299000"));
    assert!(r.body == data[1000..], "bytes after the file offset differ");

    let r = c.request("GET", "/bytesio", &[], b"");
    assert!(r.body == data, "BytesIO bytes differ");

    let r = c.request("GET", "/nolength", &[], b"");
    assert!(r.complete);
    assert!(r.body == data, "bytes without Content-Length differ");

    let r = c.request("HEAD", "/", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("300000"));
    // No body after HEAD: the next response on the connection parses.
    let r = c.request("GET", "/", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body == data);
}

#[test]
fn no_sendfile_reads_the_file_in_blocks() {
    let data = file_pattern(300_000);
    let reads = |port: u16| -> u64 {
        let r = get(port, "/counted");
        assert!(r.body == data, "file bytes differ");
        get(port, "/reads").text().parse().unwrap()
    };
    // By default the file goes out with sendfile(2): never read.
    let s = Server::start(&["-w", "1", "filewrap:app"]);
    assert_eq!(reads(s.port), 0);
    drop(s);
    // --no-sendfile: iterated in the app's 8192-byte blocks, as gunicorn does.
    let s = Server::start(&["-w", "1", "--no-sendfile", "filewrap:app"]);
    assert!(
        reads(s.port) >= 300_000 / 8192,
        "the file was not read in blocks"
    );
}

// ---------------------------------------------------------------------------
// Errors in the app

#[test]
fn app_raising_gets_500_and_the_worker_keeps_serving() {
    let s = Server::start(&["raiser:app"]);
    let workers = s.wait_workers(1, Duration::from_secs(10));
    let r = get(s.port, "/explode");
    assert_eq!(r.status, 500);
    assert!(r.closes() || r.header("content-length").is_some());
    let r = get(s.port, "/ok");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "still serving\n");
    assert_eq!(s.worker_pids(), workers, "the worker was replaced");
    let log = s.log();
    assert!(log.contains("Traceback"), "no traceback in the log:\n{log}");
    assert!(
        log.contains("boom-before-start-response at /explode"),
        "the exception is not in the log:\n{log}"
    );
}

#[test]
fn app_raising_after_first_chunk_truncates_and_closes() {
    let s = Server::start(&["raiser:app"]);
    let mut c = Conn::connect(s.port);
    let r = c.request("GET", "/after", &[], b"");
    assert_eq!(r.status, 200);
    assert!(
        r.text().starts_with("first-chunk-before-error\n"),
        "{:?}",
        r.text()
    );
    assert!(
        !r.complete,
        "the body must be visibly truncated (no last chunk): {r:?}"
    );
    assert!(c.is_closed(Duration::from_secs(3)));
    assert_eq!(get(s.port, "/ok").status, 200);
    assert!(s.log().contains("boom-after-first-chunk"));
}

// ---------------------------------------------------------------------------
// Loading

#[test]
fn factory_with_arguments() {
    let s = Server::start(&["factory:create_app('hi', n=2)"]);
    let r = get(s.port, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hi!hi!");
}

// ---------------------------------------------------------------------------
// close()

fn wait_for_line(path: &std::path::Path, prefix: &str, timeout: Duration) -> Option<String> {
    let mut found = None;
    wait_until(timeout, || {
        let text = fs::read_to_string(path).unwrap_or_default();
        found = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_string);
        found.is_some()
    });
    found
}

#[test]
fn close_is_called_after_a_normal_response() {
    let dir = TempDir::new("close");
    let log = dir.join("close.log");
    let s = Server::start_env(&["closer:app"], &[("CLOSE_LOG", log.to_str().unwrap())]);
    let r = get(s.port, "/short?id=normal1");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 30);
    let line = wait_for_line(&log, "close normal1 ", Duration::from_secs(5));
    assert_eq!(line.as_deref(), Some("close normal1 after 3"));
}

#[test]
fn close_is_called_when_the_client_disconnects_mid_response() {
    let dir = TempDir::new("close");
    let log = dir.join("close.log");
    let s = Server::start_env(&["closer:app"], &[("CLOSE_LOG", log.to_str().unwrap())]);
    {
        let mut c = Conn::connect(s.port);
        c.send_request("GET", "/long?id=gone1", &[], b"");
        // Read the head and some of the body, then hang up.
        let mut got = 0usize;
        let mut buf = [0u8; 16 * 1024];
        while got < 200_000 {
            match std::io::Read::read(&mut c.r.src, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        assert!(got > 0, "no response started");
    }
    let line = wait_for_line(&log, "close gone1 ", Duration::from_secs(20))
        .expect("close() was not called after the client went away");
    let produced: u32 = line
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX);
    assert!(
        produced < 400,
        "the server kept iterating the whole body after the client left: {line}"
    );
    // The worker still serves.
    assert_eq!(get(s.port, "/short?id=after").status, 200);
}
