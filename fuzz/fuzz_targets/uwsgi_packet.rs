//! The uwsgi request packet parser (`ferrocorn::uwsgi::parse`) and the
//! request head built from its vars (`Vars::to_head`), as the worker
//! feeds them: the bytes buffered so far.
//!
//! Input: what a uwsgi peer sends. Properties (beyond "no panic"): every
//! prefix shorter than the packet is incomplete, never an error or a
//! packet; the whole input parses the same as the packet alone (what
//! follows, the body, is not read); the packet's length is 4 plus the size
//! its header announces; re-encoding the vars (as latin-1 bytes) gives the
//! packet's vars block back; an accepted head has a method of visible
//! ASCII, a path and a target free of control characters (the path is
//! printable ASCII, and percent-decodes to PATH_INFO's bytes), header
//! names that are lower-case tokens, no CR, LF or NUL in values, never
//! keep-alive, and a body length only from CONTENT_LENGTH.
#![no_main]

use ferrocorn::http::BodyKind;
use ferrocorn::uwsgi::{parse, HEADER};
use libfuzzer_sys::fuzz_target;

fn bytes(s: &str) -> Vec<u8> {
    s.chars().map(|c| c as u32 as u8).collect()
}

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    let Ok(Some((vars, len))) = &whole else {
        if matches!(whole, Ok(None)) {
            for n in 0..data.len() {
                assert_eq!(parse(&data[..n]), Ok(None));
            }
        }
        return;
    };
    let len = *len;
    assert_eq!(
        len,
        HEADER + usize::from(u16::from_le_bytes([data[1], data[2]]))
    );
    for n in 0..len {
        assert_eq!(
            parse(&data[..n]),
            Ok(None),
            "prefix {n} of a {len}-byte packet"
        );
    }
    assert_eq!(parse(&data[..len]), whole);
    let mut block = Vec::new();
    for (k, v) in &vars.0 {
        for s in [bytes(k), bytes(v)] {
            block.extend_from_slice(&(s.len() as u16).to_le_bytes());
            block.extend_from_slice(&s);
        }
    }
    assert_eq!(block, &data[HEADER..len]);
    let Ok(head) = vars.to_head() else {
        return;
    };
    assert!(!head.method.is_empty() && head.method.bytes().all(|b| b.is_ascii_graphic()));
    assert!(head.path.bytes().all(|b| (b' '..=b'~').contains(&b)));
    let path_info = vars.get("PATH_INFO").unwrap_or("/");
    assert_eq!(
        ferrocorn::wsgi::percent_decode(&head.path),
        bytes(path_info)
    );
    assert!(!head.target.chars().any(|c| c < ' ' || c == '\x7f'));
    for (n, v) in &head.headers {
        assert!(
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase())
        );
        assert!(!v.contains(['\r', '\n', '\0']));
    }
    assert!(!head.keep_alive && !head.expect_continue);
    match head.body {
        BodyKind::Length(n) => assert_eq!(
            vars.get("CONTENT_LENGTH").and_then(|v| v.parse().ok()),
            Some(n)
        ),
        BodyKind::None => assert!(vars
            .get("CONTENT_LENGTH")
            .is_none_or(|v| v.is_empty() || v.bytes().all(|b| b == b'0'))),
        BodyKind::Chunked => panic!("uwsgi bodies are never chunked"),
    }
});
