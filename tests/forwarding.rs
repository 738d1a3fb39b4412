//! What a proxy may tell the app, as gunicorn 27 decides it (each case was
//! run through gunicorn 27.0.1 side by side): forwarded_allow_ips with
//! networks, secure_scheme_headers, forwarder_headers and header_map for
//! header names with underscores. App: tests/apps/echo.py.

mod common;

use std::fs;

use common::*;

fn scheme(port: u16, headers: &[(&str, &str)]) -> String {
    let j = request(port, "GET", "/s", headers, b"").json();
    j["wsgi.url_scheme"].str().unwrap_or("?").to_string()
}

#[test]
fn networks_are_trusted_and_addresses_outside_them_are_not() {
    let https = [("X-Forwarded-Proto", "https")];
    let s = Server::start(&[
        "echo:app",
        "--forwarded-allow-ips",
        "10.0.0.0/8,127.0.0.0/8",
    ]);
    assert_eq!(
        scheme(s.port, &https),
        "https",
        "127.0.0.1 is in 127.0.0.0/8"
    );
    drop(s);
    let s = Server::start(&["echo:app", "--forwarded-allow-ips", "10.0.0.0/8, fd00::/8"]);
    assert_eq!(
        scheme(s.port, &https),
        "http",
        "127.0.0.1 is in neither network"
    );
}

#[test]
fn secure_scheme_headers_decide_with_their_exact_values() {
    // gunicorn's defaults.
    let s = Server::start(&["echo:app"]);
    assert_eq!(scheme(s.port, &[("X-Forwarded-Ssl", "on")]), "https");
    assert_eq!(scheme(s.port, &[("X-Forwarded-Protocol", "ssl")]), "https");
    assert_eq!(scheme(s.port, &[("X-Forwarded-Proto", "https")]), "https");
    // Values are compared exactly, as gunicorn does.
    assert_eq!(scheme(s.port, &[("X-Forwarded-Proto", "HTTPS")]), "http");
    drop(s);
    // A table of one's own replaces the defaults.
    let dir = TempDir::new("ssh");
    let conf = dir.join("c.toml");
    fs::write(
        &conf,
        "secure_scheme_headers = { \"X-SCHEME\" = \"secure\" }\n",
    )
    .unwrap();
    let s = Server::start(&["echo:app", "-c", conf.to_str().unwrap()]);
    assert_eq!(scheme(s.port, &[("X-Scheme", "secure")]), "https");
    assert_eq!(scheme(s.port, &[("X-Scheme", "https")]), "http");
    assert_eq!(scheme(s.port, &[("X-Forwarded-Proto", "https")]), "http");
}

#[test]
fn underscore_headers_by_header_map_and_forwarder_headers() {
    let hdrs = [("X_Custom", "1"), ("X-Other", "2")];
    // Default: dropped.
    let s = Server::start(&["echo:app"]);
    let j = request(s.port, "GET", "/", &hdrs, b"").json();
    assert!(!j["headers"].has("HTTP_X_CUSTOM"));
    assert_eq!(j["headers"]["HTTP_X_OTHER"].str(), Some("2"));
    // A trusted proxy's SCRIPT_NAME header (forwarder_headers' default)
    // sets SCRIPT_NAME and PATH_INFO.
    let j = request(s.port, "GET", "/app/x", &[("SCRIPT_NAME", "/app")], b"").json();
    assert_eq!(j["SCRIPT_NAME"].str(), Some("/app"));
    assert_eq!(j["PATH_INFO"].str(), Some("/x"));
    assert_eq!(j["headers"]["HTTP_SCRIPT_NAME"].str(), Some("/app"));
    drop(s);
    // From an untrusted peer it is dropped like any other.
    let s = Server::start(&["echo:app", "--forwarded-allow-ips", "10.0.0.1"]);
    let j = request(s.port, "GET", "/app/x", &[("SCRIPT_NAME", "/app")], b"").json();
    assert_eq!(j["SCRIPT_NAME"].str(), Some(""));
    assert_eq!(j["PATH_INFO"].str(), Some("/app/x"));
    drop(s);
    // dangerous: passed on; Content_Type stays an HTTP_ key.
    let s = Server::start(&["echo:app", "--header-map", "dangerous"]);
    let j = request(
        s.port,
        "GET",
        "/",
        &[("X_Custom", "1"), ("Content_Type", "x/y")],
        b"",
    )
    .json();
    assert_eq!(j["headers"]["HTTP_X_CUSTOM"].str(), Some("1"));
    assert_eq!(j["headers"]["HTTP_CONTENT_TYPE"].str(), Some("x/y"));
    assert!(j["CONTENT_TYPE"].is_null());
    drop(s);
    // refuse: 400 naming the header, the app never called.
    let s = Server::start(&["echo:app", "--header-map", "refuse"]);
    let r = request(s.port, "GET", "/refused", &hdrs, b"");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("X_CUSTOM"), "{}", r.text());
    assert!(
        !s.log().contains("echo-app called: GET /refused"),
        "{}",
        s.log()
    );
    // ... but forwarder_headers still lets SCRIPT_NAME through.
    let r = request(s.port, "GET", "/app/x", &[("SCRIPT_NAME", "/app")], b"");
    assert_eq!(r.status, 200);
    drop(s);
    // Listed forwarder headers pass from a trusted peer.
    let s = Server::start(&["echo:app", "--forwarder-headers", "X_CUSTOM"]);
    let j = request(s.port, "GET", "/", &hdrs, b"").json();
    assert_eq!(j["headers"]["HTTP_X_CUSTOM"].str(), Some("1"));
}

#[test]
fn bad_forwarding_settings_are_one_line_errors() {
    let dir = TempDir::new("fwdbad");
    for (args, needle) in [
        (&["--forwarded-allow-ips", "10.0.0.1/8"][..], "host bits"),
        (
            &["--forwarded-allow-ips", "10.0.0.0/40"],
            "--forwarded-allow-ips",
        ),
        (&["--header-map", "keep"], "--header-map"),
        (&["--http-parser", "turbo"], "--http-parser"),
    ] {
        let mut all = vec!["--print-config"];
        all.extend_from_slice(args);
        let out = run_cli(&all, &[], dir.path());
        assert_eq!(out.code(), Some(2), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
}

/// A free port on both 127.0.0.1 and ::1 (found by binding, then freed).
fn free_dual_port() -> u16 {
    loop {
        let v6 = std::net::TcpListener::bind("[::1]:0").unwrap();
        let port = v6.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn scheme_over_ipv6(port: u16) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("::1", port)).unwrap();
    c.write_all(
        b"GET /v6 HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    let r = parse_responses(&out).remove(0);
    r.json()["wsgi.url_scheme"].str().unwrap_or("?").to_string()
}

#[test]
fn ipv6_networks_are_trusted_too() {
    let port = free_dual_port();
    let v4 = format!("127.0.0.1:{port}");
    let v6 = format!("[::1]:{port}");
    let s = Server::start(&[
        "echo:app",
        "-b",
        &v4,
        "-b",
        &v6,
        "--forwarded-allow-ips",
        "::/64",
    ]);
    assert_eq!(scheme_over_ipv6(s.port), "https", "::1 is in ::/64");
    drop(s);
    let port = free_dual_port();
    let v4 = format!("127.0.0.1:{port}");
    let v6 = format!("[::1]:{port}");
    let s = Server::start(&[
        "echo:app",
        "-b",
        &v4,
        "-b",
        &v6,
        "--forwarded-allow-ips",
        "fd00::/8,127.0.0.1",
    ]);
    assert_eq!(scheme_over_ipv6(s.port), "http", "::1 is not in fd00::/8");
}

#[test]
fn secure_scheme_headers_from_a_gunicorn_conf_py() {
    // The way gunicorn users set it: a dict in the Python config file.
    let dir = TempDir::new("sshpy");
    let conf = dir.join("gunicorn.conf.py");
    fs::write(
        &conf,
        "secure_scheme_headers = {'X-SCHEME': 'secure'}\nforwarded_allow_ips = '10.0.0.0/8,127.0.0.0/8'\n",
    )
    .unwrap();
    let s = Server::start(&["echo:app", "-c", conf.to_str().unwrap()]);
    assert_eq!(scheme(s.port, &[("X-Scheme", "secure")]), "https");
    assert_eq!(scheme(s.port, &[("X-Forwarded-Proto", "https")]), "http");
}

/// Scheme headers from a trusted proxy that contradict each other are
/// answered 400 `Contradictory scheme headers`, before the app, as gunicorn
/// 27 answers them (each case run through it); agreeing ones are served,
/// and an untrusted peer's are ignored as ever.
#[test]
fn contradictory_scheme_headers_are_refused() {
    let contradictory: [&[(&str, &str)]; 3] = [
        &[("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "off")],
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Proto", "http"),
        ],
        &[("X-Forwarded-Ssl", "off"), ("X-Forwarded-Protocol", "ssl")],
    ];
    let agreeing: [(&[(&str, &str)], &str); 3] = [
        (
            &[("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "on")],
            "https",
        ),
        (
            &[
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Proto", "https"),
            ],
            "https",
        ),
        (
            &[("X-Forwarded-Proto", "http"), ("X-Forwarded-Ssl", "off")],
            "http",
        ),
    ];
    let s = Server::start(&["echo:app"]);
    for (i, headers) in contradictory.iter().enumerate() {
        let path = format!("/contradictory-{i}");
        let r = request(s.port, "GET", &path, headers, b"");
        assert_eq!(r.status, 400, "{headers:?}");
        assert_eq!(r.reason, "Bad Request");
        assert_eq!(r.text(), "Contradictory scheme headers\n", "{headers:?}");
        assert!(r.closes(), "{headers:?}: {:?}", r.headers);
        let log = s.log();
        assert!(
            !log.contains(&format!("echo-app called: GET {path}")),
            "{log}"
        );
        assert!(
            log.contains("Invalid request from ip=127.0.0.1: Contradictory scheme headers"),
            "{log}"
        );
    }
    for (headers, want) in agreeing {
        assert_eq!(scheme(s.port, headers), want, "{headers:?}");
    }
    drop(s);
    // Not from a trusted peer: no scheme headers count, none contradict.
    let s = Server::start(&["echo:app", "--forwarded-allow-ips", "10.0.0.0/8"]);
    for headers in contradictory {
        assert_eq!(scheme(s.port, headers), "http", "{headers:?}");
    }
}
