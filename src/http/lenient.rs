//! The request heads that gunicorn's relaxing settings let through
//! (`permit_obsolete_folding`, `strip_header_spaces`,
//! `permit_unconventional_http_version`), rewritten into the strict form
//! the head parser reads: folded values joined with one space, spaces
//! before a colon dropped, an unconventional `HTTP/D.D` served as
//! HTTP/1.1. With every setting off (the default) nothing is rewritten.

use super::{bad, too_large, HttpError, Leniency};

/// A head rewritten for the parser: the bytes, its number of header lines,
/// and the version as sent when it was replaced.
pub(super) struct Rewritten {
    pub(super) bytes: Vec<u8>,
    pub(super) fields: usize,
    pub(super) protocol: Option<String>,
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_end_ws(mut v: &[u8]) -> &[u8] {
    while let [rest @ .., last] = v {
        if !is_ws(*last) {
            break;
        }
        v = rest;
    }
    v
}

fn trim_ws(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if !is_ws(*first) {
            break;
        }
        v = rest;
    }
    trim_end_ws(v)
}

/// `HTTP/D.D` other than 1.0 and 1.1 at the end of a request line: the
/// version text. (gunicorn's pattern: one digit each.)
fn unconventional_version(line: &[u8]) -> Option<&[u8]> {
    let sp = line.iter().rposition(|&b| b == b' ')?;
    let v = line.get(sp + 1..)?;
    match v {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            (v != b"HTTP/1.0" && v != b"HTTP/1.1").then_some(v)
        }
        _ => None,
    }
}

/// Rewrite `head` (a complete head: lines ending in CRLF, then an empty
/// line) when `leniency` allows something in it; `Ok(None)` when it needs
/// no rewriting. `max_field_size` (CRLFs included) bounds a folded field's
/// total length, as gunicorn bounds it.
pub(super) fn rewrite(
    head: &[u8],
    leniency: &Leniency,
    max_field_size: usize,
) -> Result<Option<Rewritten>, HttpError> {
    if !(leniency.obsolete_folding
        || leniency.strip_header_spaces
        || leniency.unconventional_version)
    {
        return Ok(None);
    }
    // Leading empty lines are skipped by the scanner; keep them out.
    let mut start = 0;
    while head.get(start..start + 2) == Some(b"\r\n") {
        start += 2;
    }
    let mut lines = head
        .get(start..)
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut out: Vec<u8> = Vec::with_capacity(head.len());
    let mut changed = false;
    let mut protocol = None;
    match unconventional_version(request_line).filter(|_| leniency.unconventional_version) {
        Some(v) => {
            out.extend_from_slice(
                request_line
                    .get(..request_line.len() - v.len())
                    .unwrap_or_default(),
            );
            out.extend_from_slice(b"HTTP/1.1");
            protocol = Some(String::from_utf8_lossy(v).into_owned());
            changed = true;
        }
        None => out.extend_from_slice(request_line),
    }
    // Header lines, each without its CRLF; the start of the current one
    // in `out` (after its CRLF), and its length as sent.
    let mut fields = 0;
    let mut current: Option<(usize, usize)> = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        if leniency.obsolete_folding && is_ws(line[0]) {
            if let Some((at, sent)) = current.as_mut() {
                let keep = *at + trim_end_ws(out.get(*at..).unwrap_or_default()).len();
                out.truncate(keep);
                out.push(b' ');
                out.extend_from_slice(trim_ws(line));
                *sent += line.len() + 2;
                if max_field_size != 0 && *sent > max_field_size {
                    return Err(too_large(format!(
                        "Header field line is too large ({sent} > {max_field_size})"
                    )));
                }
                changed = true;
                continue;
            }
            // Nothing to continue: left for the parser to refuse.
        }
        out.extend_from_slice(b"\r\n");
        let at = out.len();
        match line.iter().position(|&b| b == b':') {
            Some(colon) if leniency.strip_header_spaces && colon > 0 && is_ws(line[colon - 1]) => {
                let name = trim_end_ws(line.get(..colon).unwrap_or_default());
                if name.is_empty() {
                    return Err(bad("Invalid header name"));
                }
                out.extend_from_slice(name);
                out.extend_from_slice(line.get(colon..).unwrap_or_default());
                changed = true;
            }
            _ => out.extend_from_slice(line),
        }
        current = Some((at, line.len() + 2));
        fields += 1;
    }
    out.extend_from_slice(b"\r\n\r\n");
    Ok(changed.then_some(Rewritten {
        bytes: out,
        fields,
        protocol,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Leniency {
        Leniency {
            obsolete_folding: true,
            strip_header_spaces: true,
            unconventional_version: true,
            ..Leniency::default()
        }
    }

    fn text(head: &[u8], l: &Leniency) -> Option<String> {
        rewrite(head, l, 0)
            .unwrap()
            .map(|r| String::from_utf8(r.bytes).unwrap())
    }

    #[test]
    fn nothing_to_do_is_no_rewrite() {
        let h = b"GET / HTTP/1.1\r\nX: a\r\n\r\n";
        assert!(text(h, &all()).is_none());
        assert!(text(
            b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            &Leniency::default()
        )
        .is_none());
    }

    #[test]
    fn folding_spaces_and_versions() {
        let h = b"GET / HTTP/1.1\r\nX: a \r\n  b\t\r\n\tc\r\nY : d\r\n\r\n";
        assert_eq!(
            text(h, &all()).unwrap(),
            "GET / HTTP/1.1\r\nX: a b c\r\nY: d\r\n\r\n"
        );
        let r = rewrite(b"GET / HTTP/1.2\r\n\r\n", &all(), 0)
            .unwrap()
            .unwrap();
        assert_eq!(r.bytes, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(r.protocol.as_deref(), Some("HTTP/1.2"));
        assert_eq!(r.fields, 0);
        // A folded field is bounded as a whole.
        let long = b"GET / HTTP/1.1\r\nX: aaaa\r\n bbbb\r\n\r\n";
        assert!(rewrite(long, &all(), 12).is_err());
        assert!(rewrite(long, &all(), 20).is_ok());
    }

    fn parse(head: &[u8], leniency: Leniency) -> Result<crate::http::RequestHead, u16> {
        let l = crate::http::Limits {
            leniency,
            ..crate::http::Limits::default()
        };
        match crate::http::parse_request_head(head, &l) {
            Ok(Some((h, _))) => Ok(h),
            Ok(None) => Err(0),
            Err(e) => Err(e.status),
        }
    }

    #[test]
    fn the_parser_relaxes_only_what_is_asked() {
        let strict = Leniency::default();
        let folded = b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n";
        assert_eq!(parse(folded, strict).unwrap_err(), 400);
        let fold = Leniency {
            obsolete_folding: true,
            ..strict
        };
        assert_eq!(parse(folded, fold).unwrap().header("x"), Some("a b"));
        let spaced = b"GET / HTTP/1.1\r\nHost : h\r\n\r\n";
        assert_eq!(parse(spaced, strict).unwrap_err(), 400);
        assert_eq!(parse(spaced, fold).unwrap_err(), 400);
        let strip = Leniency {
            strip_header_spaces: true,
            ..strict
        };
        assert_eq!(parse(spaced, strip).unwrap().header("host"), Some("h"));
        // Folding still needs a header to continue.
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n X: a\r\n\r\n", fold).unwrap_err(),
            400
        );
    }

    #[test]
    fn methods_and_versions() {
        let strict = Leniency::default();
        let any = Leniency {
            unconventional_method: true,
            ..strict
        };
        let fold = Leniency {
            casefold_method: true,
            ..any
        };
        for m in ["get", "GE", "G#T", "ABCDEFGHIJKLMNOPQRSTU"] {
            let h = format!("{m} / HTTP/1.1\r\n\r\n");
            assert_eq!(parse(h.as_bytes(), strict).unwrap_err(), 400, "{m}");
            assert_eq!(parse(h.as_bytes(), any).unwrap().method, m);
            assert_eq!(parse(h.as_bytes(), fold).unwrap().method, m.to_uppercase());
        }
        // Not a token: refused whatever the settings.
        assert_eq!(parse(b"G(T / HTTP/1.1\r\n\r\n", fold).unwrap_err(), 400);
        let v = Leniency {
            unconventional_version: true,
            ..strict
        };
        for ver in ["HTTP/1.2", "HTTP/2.0", "HTTP/0.9"] {
            let h = format!("GET / {ver}\r\nHost: h\r\n\r\n");
            assert_eq!(parse(h.as_bytes(), strict).unwrap_err(), 400, "{ver}");
            let head = parse(h.as_bytes(), v).unwrap();
            assert_eq!(head.protocol.as_deref(), Some(ver));
            assert_eq!(head.minor_version, 1);
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n", v).unwrap().protocol, None);
        assert_eq!(parse(b"GET / HTTP/12.0\r\n\r\n", v).unwrap_err(), 400);
    }
}
