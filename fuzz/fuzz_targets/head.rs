//! The request-head parser, with the limits and the leniency settings.
//!
//! Input: byte 0 picks the limits, byte 1 the leniency flags, the rest is
//! the wire bytes. Properties checked (beyond "no panic"):
//! 1. `HeadParser::parse` on the whole buffer == `parse_request_head`
//!    (same head, same `used`, same error status and detail);
//! 2. fed as the worker feeds it (a growing buffer, one byte more per call,
//!    the same `HeadParser`), the result is the one-piece result, and a head
//!    is returned exactly when its last byte arrives;
//! 3. split in two at every byte boundary (first piece, then the whole
//!    buffer, same parser): the same result again;
//! 4. after returning a head, the same parser parses the pipelined rest as
//!    a fresh one would;
//! 5. an accepted head satisfies the invariants in `check_head`.
#![no_main]

use ferrocorn::http::{parse_request_head, BodyKind, HeadParser, Limits, RequestHead};
use ferrocorn_fuzz::{limits_from, outcome, Outcome};
use libfuzzer_sys::fuzz_target;

/// The two-piece splits cost O(n^2); above this size only the byte-by-byte
/// feed runs.
const SPLIT_ALL_MAX: usize = 2048;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let limits = limits_from(data[0], data[1]);
    let buf = &data[2..];

    let reference = parse_request_head(buf, &limits);
    let mut p = HeadParser::new();
    let resumable = p.parse(buf, &limits);
    match (&reference, &resumable) {
        (Err(a), Err(b)) => assert_eq!(a, b, "HeadParser and parse_request_head disagree"),
        _ => assert_eq!(outcome(&reference), outcome(&resumable)),
    }
    let expected = outcome(&reference);

    // The pipelined rest, with the parser that just returned a head.
    if let Ok(Some((head, used))) = &reference {
        check_head(head, *used, buf, &limits);
        let rest = &buf[*used..];
        if !rest.is_empty() {
            let again = p.parse(rest, &limits);
            assert_eq!(outcome(&again), outcome(&parse_request_head(rest, &limits)));
        }
    }

    // Byte by byte, as from the slowest client.
    let mut p = HeadParser::new();
    let mut fed = Outcome::Incomplete;
    for k in 1..=buf.len() {
        let r = p.parse(&buf[..k], &limits);
        if let Ok(Some((_, used))) = &r {
            assert_eq!(*used, k, "head returned before or after its end");
        }
        fed = outcome(&r);
        if fed != Outcome::Incomplete {
            break;
        }
    }
    assert_eq!(fed, expected, "byte-by-byte feed differs from one piece");

    // Two pieces, split at every boundary.
    if buf.len() <= SPLIT_ALL_MAX {
        for k in 1..buf.len() {
            let mut p = HeadParser::new();
            let mut r = outcome(&p.parse(&buf[..k], &limits));
            if r == Outcome::Incomplete {
                r = outcome(&p.parse(buf, &limits));
            }
            assert_eq!(r, expected, "split at {k} differs from one piece");
        }
    }
});

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Invariants of every accepted head.
fn check_head(h: &RequestHead, used: usize, buf: &[u8], l: &Limits) {
    assert!(used >= 4 && used <= buf.len());
    assert!(buf[..used].ends_with(b"\r\n\r\n"));
    assert!(used <= l.head_cap(), "head longer than the whole-head cap");
    assert!(h.headers.len() <= l.effective_max_fields());
    assert!(h.minor_version <= 1);

    assert!(!h.method.is_empty() && h.method.bytes().all(is_tchar));
    assert!(!h.target.is_empty());
    assert!(h.target.chars().all(|c| c > ' ' && c != '\x7f'));
    let line_limit = l.line_limit();
    if line_limit > 0 {
        // METHOD SP target SP HTTP/x.y
        let line = h.method.len() + 1 + h.target.chars().count() + 1 + 8;
        assert!(line <= line_limit, "request line over the limit");
    }
    assert!(h.path.chars().count() <= h.target.chars().count());
    assert!(h.query.chars().count() <= h.target.chars().count());

    for (name, value) in &h.headers {
        assert!(
            !name.is_empty() && name.bytes().all(is_tchar),
            "bad name {name:?}"
        );
        assert!(
            !value.contains(['\r', '\n', '\0']),
            "CR, LF or NUL in a header value"
        );
        assert!(!value.starts_with([' ', '\t']) && !value.ends_with([' ', '\t']));
        // name ":" value CRLF, as gunicorn counts a field line.
        let field = name.len() + 1 + value.chars().count() + 2;
        assert!(field <= l.field_size_limit(), "header line over the limit");
    }

    let te = h.header("transfer-encoding");
    match h.body {
        BodyKind::Chunked => {
            assert!(te.is_some());
            assert!(h.header("content-length").is_none());
            assert_eq!(h.minor_version, 1);
        }
        BodyKind::Length(n) => {
            assert!(te.is_none());
            let cl = h
                .header("content-length")
                .expect("length without Content-Length");
            assert_eq!(cl.parse::<u64>().ok(), Some(n));
        }
        BodyKind::None => {
            assert!(te.is_none() && h.header("content-length").is_none());
        }
    }
    if h.expect_continue {
        assert!(h.header("expect").is_some());
    }
}
