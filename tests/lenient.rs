//! The settings that relax the request parser, end to end (each case was
//! run through gunicorn 27.0.1 side by side): --permit-obsolete-folding,
//! --strip-header-spaces, --permit-unconventional-http-method,
//! --casefold-http-method, --permit-unconventional-http-version.
//! App: tests/apps/echo.py.

mod common;

use common::*;

const FOLDED: &[u8] =
    b"GET /f HTTP/1.1\r\nHost: h\r\nX-A: one\r\n two\r\n\tthree\r\nConnection: close\r\n\r\n";
const SPACED: &[u8] = b"GET /s HTTP/1.1\r\nHost: h\r\nX-A : v\r\nConnection: close\r\n\r\n";
const LOWER: &[u8] = b"get /m HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
const V19: &[u8] = b"GET /v HTTP/1.9\r\nHost: h\r\nConnection: close\r\n\r\n";

fn answer(port: u16, raw: &[u8]) -> Response {
    parse_responses(&send_raw(port, raw)).remove(0)
}

#[test]
fn strict_by_default() {
    let s = Server::start(&["echo:app"]);
    for raw in [FOLDED, SPACED, LOWER, V19] {
        assert_eq!(
            answer(s.port, raw).status,
            400,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn each_setting_relaxes_its_rule() {
    let s = Server::start(&[
        "echo:app",
        "--permit-obsolete-folding",
        "--strip-header-spaces",
        "--permit-unconventional-http-version",
    ]);
    let j = answer(s.port, FOLDED).json();
    assert_eq!(j["headers"]["HTTP_X_A"].str(), Some("one two three"));
    let j = answer(s.port, SPACED).json();
    assert_eq!(j["headers"]["HTTP_X_A"].str(), Some("v"));
    let j = answer(s.port, V19).json();
    assert_eq!(j["SERVER_PROTOCOL"].str(), Some("HTTP/1.9"));
    // Only what was asked for.
    assert_eq!(answer(s.port, LOWER).status, 400);
    drop(s);

    let s = Server::start(&["echo:app", "--permit-unconventional-http-method"]);
    let j = answer(s.port, LOWER).json();
    assert_eq!(j["REQUEST_METHOD"].str(), Some("get"));
    assert_eq!(answer(s.port, FOLDED).status, 400);
    drop(s);

    let s = Server::start(&[
        "echo:app",
        "--permit-unconventional-http-method",
        "--casefold-http-method",
    ]);
    let j = answer(s.port, LOWER).json();
    assert_eq!(j["REQUEST_METHOD"].str(), Some("GET"));
}
