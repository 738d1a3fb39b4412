//! The request-target (RFC 9112 §3.2): which of the four forms it has, the
//! checks gunicorn 27 applies to it, and its split into path and query.
//!
//! Accepted, as by gunicorn 27:
//!
//! * printable ASCII only (0x21..=0x7E); anything else must be
//!   percent-encoded (RFC 3986 §2.1),
//! * origin-form (`/path?query`) with any method,
//! * absolute-form (`scheme://authority/path?query`) with any method; the
//!   scheme must be one (a letter, then letters, digits, `+`, `-`, `.`),
//!   where gunicorn only looks for `://` anywhere,
//! * asterisk-form (`*`) with `OPTIONS` only,
//! * anything else (authority-form, `host:port`) with `CONNECT` only.
//!
//! An absolute-form authority with unbalanced brackets, or a bracketed host
//! that is no IPv6 address or `vX.…` IPvFuture literal, is malformed (what
//! Python's `urlsplit` refuses, and so gunicorn).

use super::{bad, HttpError};

/// Check a request-target (as sent) against `method`; see the module docs.
pub(super) fn validate_target(method: &str, target: &[u8]) -> Result<(), HttpError> {
    if target.is_empty() {
        return Err(bad("Invalid request target: empty"));
    }
    if !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(bad(
            "Invalid request target: bytes other than printable ASCII must be percent-encoded",
        ));
    }
    // Printable ASCII, so valid UTF-8.
    let t = std::str::from_utf8(target).map_err(|_| bad("Invalid request target"))?;
    if t == "*" {
        return if method == "OPTIONS" {
            Ok(())
        } else {
            Err(bad("Invalid request target: * is only for OPTIONS"))
        };
    }
    if t.starts_with('/') {
        return Ok(());
    }
    if let Some(authority) = absolute_form_authority(t) {
        return check_authority(authority);
    }
    if method == "CONNECT" {
        return Ok(());
    }
    Err(bad(format!(
        "Invalid request target {t:?}: none of origin-form (/path), absolute-form \
         (scheme://host/path), authority-form (CONNECT only) or * (OPTIONS only)"
    )))
}

/// The authority of `scheme://authority[/path][?query][#fragment]`; `None`
/// if `t` does not start with a scheme and `://`.
fn absolute_form_authority(t: &str) -> Option<&str> {
    let after = absolute_form_after_scheme(t)?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    after.get(..end)
}

/// What follows `scheme://`, or `None` if `t` is not of that form.
fn absolute_form_after_scheme(t: &str) -> Option<&str> {
    let bytes = t.as_bytes();
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    let colon = bytes.iter().position(|&b| b == b':')?;
    let scheme_ok = bytes
        .get(..colon)?
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
    if !scheme_ok {
        return None;
    }
    t.get(colon + 1..)?.strip_prefix("//")
}

/// Brackets in an authority must enclose an IPv6 address (with an optional
/// zone) or an IPvFuture literal.
fn check_authority(authority: &str) -> Result<(), HttpError> {
    let open = authority.find('[');
    let close = authority.find(']');
    let host = match (open, close) {
        (None, None) => return Ok(()),
        (Some(_), Some(_)) => {
            // As Python's urlsplit: after any userinfo, nothing before the
            // bracket, and after it nothing but a `:port`.
            let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let Some(("", bracketed)) = hostport.split_once('[') else {
                return Err(bad(
                    "Invalid request target: text before the bracketed host",
                ));
            };
            let (host, after) = bracketed.split_once(']').unwrap_or((bracketed, ""));
            if !after.is_empty() && !after.starts_with(':') {
                return Err(bad("Invalid request target: text after the bracketed host"));
            }
            host
        }
        _ => {
            return Err(bad(
                "Invalid request target: unbalanced brackets in the host",
            ))
        }
    };
    if bracketed_host_ok(host) {
        Ok(())
    } else {
        Err(bad(format!(
            "Invalid request target: [{host}] is no IPv6 address"
        )))
    }
}

fn bracketed_host_ok(host: &str) -> bool {
    if let Some(rest) = host.strip_prefix('v') {
        // IPvFuture: "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        return match rest.split_once('.') {
            Some((ver, tail)) => {
                !ver.is_empty() && ver.bytes().all(|b| b.is_ascii_hexdigit()) && !tail.is_empty()
            }
            None => false,
        };
    }
    let addr = match host.split_once('%') {
        Some((addr, zone)) if !zone.is_empty() && !zone.contains('%') => addr,
        Some(_) => return false,
        None => host,
    };
    addr.parse::<std::net::Ipv6Addr>().is_ok()
}

/// For `scheme://authority[path][?query]`, return the part after the
/// authority; `None` if `t` is not of that form.
fn absolute_form_rest(t: &str) -> Option<&str> {
    let after = absolute_form_after_scheme(t)?;
    let end = after.find(['/', '?']).unwrap_or(after.len());
    after.get(end..)
}

/// Split a (latin-1 decoded) target into path and query.
pub(super) fn split_target(target: &str) -> (&str, &str) {
    if target == "*" {
        return ("*", "");
    }
    let no_frag = match target.find('#') {
        Some(i) => target.get(..i).unwrap_or_default(),
        None => target,
    };
    let rest = if no_frag.starts_with('/') {
        no_frag
    } else {
        absolute_form_rest(no_frag).unwrap_or(no_frag)
    };
    match rest.find('?') {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i + 1..).unwrap_or_default(),
        ),
        None => (rest, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(method: &str, t: &[u8]) -> Option<u16> {
        validate_target(method, t).err().map(|e| e.status)
    }

    #[test]
    fn the_four_forms() {
        assert_eq!(status("GET", b"/"), None);
        assert_eq!(status("GET", b"//double"), None);
        assert_eq!(status("GET", b"/a?b=c#d"), None);
        assert_eq!(status("GET", b"http://h/p?q"), None);
        assert_eq!(status("GET", b"https://h"), None);
        assert_eq!(status("POST", b"a+b.c-d://h/"), None);
        assert_eq!(status("OPTIONS", b"*"), None);
        assert_eq!(status("CONNECT", b"example.com:443"), None);
        assert_eq!(status("CONNECT", b"[::1]:443"), None);
    }

    #[test]
    fn none_of_the_forms() {
        assert_eq!(status("GET", b""), Some(400));
        assert_eq!(status("GET", b"foo/bar"), Some(400));
        assert_eq!(status("GET", b"example.com:80"), Some(400));
        assert_eq!(status("GET", b"urn:isbn:1"), Some(400));
        assert_eq!(status("GET", b"*"), Some(400));
        assert_eq!(status("CONNECT", b"*"), Some(400));
        assert_eq!(status("GET", b"?q"), Some(400));
        // Deliberately stricter than gunicorn: "://" needs a scheme before it.
        assert_eq!(status("GET", b"1http://h/"), Some(400));
        assert_eq!(status("GET", b"foo/bar://x"), Some(400));
    }

    #[test]
    fn malformed_authorities() {
        for t in [
            &b"http://[::1/p"[..],
            b"http://::1]/p",
            b"http://[zz]/p",
            b"http://[1.2.3.4]/p",
            b"http://[vz.x]/p",
            b"http://[v1.]/p",
            b"http://[fe80::1%]/p",
        ] {
            assert_eq!(
                status("GET", t),
                Some(400),
                "{}",
                String::from_utf8_lossy(t)
            );
        }
        assert_eq!(status("CONNECT", b"http://[::1/"), Some(400));
        // Only a port may follow the bracket, nothing precede it.
        assert_eq!(status("GET", b"http://[::1]x/p"), Some(400));
        assert_eq!(status("GET", b"http://x[::1]/p"), Some(400));
        assert_eq!(status("GET", b"http://u@[::1]:80/p"), None);
        for t in [
            &b"http://[::1]:80/p"[..],
            b"http://[v1.x]/p",
            b"http://[fe80::1%25eth0]/",
            b"http://h:abc/p",
            b"http://h/[x",
        ] {
            assert_eq!(status("GET", t), None, "{}", String::from_utf8_lossy(t));
        }
        // Brackets outside an authority are not looked at (as by gunicorn).
        assert_eq!(status("GET", b"/a[b"), None);
        assert_eq!(status("CONNECT", b"[::1:443"), None);
    }

    #[test]
    fn raw_non_ascii_refused() {
        assert_eq!(status("GET", b"/caf\xe9"), Some(400));
        assert_eq!(status("GET", "/caf\u{e9}".as_bytes()), Some(400));
        assert_eq!(status("GET", b"/a\x7f"), Some(400));
        assert_eq!(status("GET", b"/a\x01"), Some(400));
        assert_eq!(status("GET", b"/caf%C3%A9"), None);
    }

    #[test]
    fn split() {
        assert_eq!(split_target("/p?q#f"), ("/p", "q"));
        assert_eq!(split_target("http://h:1/p/q?x=1#frag"), ("/p/q", "x=1"));
        assert_eq!(split_target("http://h?a"), ("", "a"));
        assert_eq!(split_target("*"), ("*", ""));
        assert_eq!(split_target("h:443"), ("h:443", ""));
    }
}
