//! The uwsgi binary protocol (what nginx's `uwsgi_pass` speaks), socket-free:
//! a request is a 4-byte packet header (`modifier1`, the vars block's size
//! as 16-bit little-endian, `modifier2`), then that many bytes of vars
//! (each a 16-bit little-endian length and a key, then a length and a
//! value), then `CONTENT_LENGTH` bytes of body. The vars are the CGI
//! environ the proxy built: `REQUEST_METHOD`, `PATH_INFO` (already
//! percent-decoded by nginx), `QUERY_STRING`, `HTTP_*`, `REMOTE_ADDR`...
//!
//! [`parse`] takes the bytes buffered so far (split anywhere) and returns
//! the packet once it is complete; [`Vars::to_head`] turns the vars into a
//! [`RequestHead`] so the worker and the app interfaces treat the request
//! like an HTTP one, and [`Vars`] travels with it so the environ (WSGI) or
//! the scope (ASGI) can take what the proxy said verbatim. Responses are
//! plain HTTP/1.x written back on the same connection, as uWSGI does.

use crate::http::{BodyKind, RequestHead};

/// The packet header's size.
pub const HEADER: usize = 4;
/// At most this many vars in one request (gunicorn's limit).
pub const MAX_VARS: usize = 1000;

/// One request's vars, in the order sent, latin-1 decoded (each char is
/// one byte of the wire form, as WSGI wants environ strings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars(pub Vec<(String, String)>);

/// A request the protocol cannot carry, with the HTTP status it is
/// answered with (gunicorn's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UwsgiError {
    #[error("Unsupported uWSGI modifier1: {0}")]
    Modifier(u8),
    #[error("Invalid uWSGI header: {0}")]
    Header(&'static str),
    #[error("Invalid uWSGI var {0}: {1}")]
    Var(String, &'static str),
}

impl UwsgiError {
    pub fn status(&self) -> u16 {
        match self {
            UwsgiError::Modifier(_) => 501,
            _ => 400,
        }
    }
}

/// Parse a request packet from the start of `buf`: `Ok(None)` until all
/// of it has arrived, then the vars and the packet's length (the body
/// follows).
pub fn parse(buf: &[u8]) -> Result<Option<(Vars, usize)>, UwsgiError> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    if buf[0] != 0 {
        // modifier1 0 is a WSGI request; uWSGI's other packet types
        // (PSGI, Rack, signals, spooler...) are not requests for this app.
        return Err(UwsgiError::Modifier(buf[0]));
    }
    // modifier2 (buf[3]) has no meaning for modifier1 0.
    let size = usize::from(u16::from_le_bytes([buf[1], buf[2]]));
    let len = HEADER + size;
    if buf.len() < len {
        return Ok(None);
    }
    let mut data = &buf[HEADER..len];
    let mut vars = Vec::new();
    while !data.is_empty() {
        if vars.len() >= MAX_VARS {
            return Err(UwsgiError::Header("too many variables"));
        }
        let key = take(&mut data).ok_or(UwsgiError::Header("truncated key"))?;
        let value = take(&mut data).ok_or(UwsgiError::Header("truncated value"))?;
        vars.push((latin1(key), latin1(value)));
    }
    Ok(Some((Vars(vars), len)))
}

/// One length-prefixed string off the front of `data`.
fn take<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    if data.len() < 2 {
        return None;
    }
    let n = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let rest = &data[2..];
    if rest.len() < n {
        return None;
    }
    let (s, tail) = rest.split_at(n);
    *data = tail;
    Some(s)
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

impl Vars {
    /// The last value of `key` (a repeated var: the last one wins, as in a
    /// dict).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rfind(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the proxy says the client spoke HTTPS: `UWSGI_SCHEME` (or
    /// gunicorn's `wsgi.url_scheme` var) when given, else `HTTPS`
    /// (`on`, `1` or `true`, as nginx's `$https` and gunicorn read it).
    pub fn https(&self) -> bool {
        if let Some(s) = self.get("UWSGI_SCHEME").or(self.get("wsgi.url_scheme")) {
            return s.eq_ignore_ascii_case("https");
        }
        self.get("HTTPS").is_some_and(|v| {
            ["on", "1", "true"]
                .iter()
                .any(|t| v.eq_ignore_ascii_case(t))
        })
    }

    /// The client's address as the proxy saw it (`REMOTE_ADDR`,
    /// `REMOTE_PORT`), when it is an IP address.
    pub fn remote(&self) -> Option<std::net::SocketAddr> {
        let ip: std::net::IpAddr = self.get("REMOTE_ADDR")?.parse().ok()?;
        let port = self
            .get("REMOTE_PORT")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Some(std::net::SocketAddr::new(ip, port))
    }

    /// The request as the worker handles an HTTP one: method, target,
    /// path and query from the vars, `HTTP_*` vars as headers (names
    /// lower-cased, `_` as `-`), `CONTENT_TYPE` and `CONTENT_LENGTH` as
    /// theirs, the body's length from `CONTENT_LENGTH`. It is served as
    /// HTTP/1.0 framing-wise (one request per connection, a body without
    /// chunking, no 1xx), while SERVER_PROTOCOL shows what the proxy sent.
    pub fn to_head(&self) -> Result<RequestHead, UwsgiError> {
        for (k, v) in &self.0 {
            // A decoded path may hold any byte; nothing else the proxy
            // sends has control characters (they would reach the logs).
            // A tab is fine in a header's value, but not in what becomes
            // the request target.
            let tab_ok = !matches!(k.as_str(), "QUERY_STRING" | "REQUEST_URI");
            if k != "PATH_INFO"
                && k != "SCRIPT_NAME"
                && (k.chars().chain(v.chars()))
                    .any(|c| (c < ' ' && !(c == '\t' && tab_ok)) || c == '\x7f')
            {
                return Err(UwsgiError::Var(
                    k.escape_default().to_string(),
                    "control character",
                ));
            }
        }
        let method = match self.get("REQUEST_METHOD") {
            Some(m) if !m.is_empty() => m.to_string(),
            Some(_) => return Err(UwsgiError::Var("REQUEST_METHOD".into(), "empty")),
            None => "GET".to_string(),
        };
        if !method.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(UwsgiError::Var("REQUEST_METHOD".into(), "not a token"));
        }
        let path_info = self.get("PATH_INFO").unwrap_or("/");
        let query = self.get("QUERY_STRING").unwrap_or("").to_string();
        // The head carries paths percent-encoded, as on the wire; the var
        // is decoded already, so '%' and what is not printable ASCII are
        // escaped, and decoding gives the var back byte for byte.
        let mut path = String::with_capacity(path_info.len());
        for c in path_info.chars() {
            if c == '%' || !(' '..='~').contains(&c) {
                path.push_str(&format!("%{:02X}", c as u32 as u8));
            } else {
                path.push(c);
            }
        }
        let target = match self.get("REQUEST_URI") {
            Some(u) if !u.is_empty() => u.to_string(),
            _ if query.is_empty() => path.clone(),
            _ => format!("{path}?{query}"),
        };
        let mut headers = Vec::new();
        for (k, v) in &self.0 {
            let Some(h) = k.strip_prefix("HTTP_") else {
                continue;
            };
            // nginx passes the client's Content-Type and -Length as
            // HTTP_* too; the CGI vars are the ones that count.
            if h.is_empty() || h == "CONTENT_TYPE" || h == "CONTENT_LENGTH" {
                continue;
            }
            let name = h.to_ascii_lowercase().replace('_', "-");
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            {
                return Err(UwsgiError::Var(
                    k.escape_default().to_string(),
                    "not a header name",
                ));
            }
            headers.push((name, v.trim_matches([' ', '\t']).to_string()));
        }
        if let Some(t) = self.get("CONTENT_TYPE").filter(|t| !t.is_empty()) {
            headers.push((
                "content-type".to_string(),
                t.trim_matches([' ', '\t']).to_string(),
            ));
        }
        let mut length = 0u64;
        if let Some(v) = self.get("CONTENT_LENGTH").filter(|v| !v.is_empty()) {
            length = v
                .parse()
                .ok()
                .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| UwsgiError::Var("CONTENT_LENGTH".into(), "not a number"))?;
            headers.push(("content-length".to_string(), v.to_string()));
        }
        Ok(RequestHead {
            method,
            target,
            path,
            query,
            minor_version: 0,
            protocol: Some(
                self.get("SERVER_PROTOCOL")
                    .filter(|p| !p.is_empty())
                    .unwrap_or("HTTP/1.1")
                    .to_string(),
            ),
            headers,
            body: if length == 0 {
                BodyKind::None
            } else {
                BodyKind::Length(length)
            },
            keep_alive: false,
            expect_continue: false,
        })
    }
}

/// Encode a request packet (for tests and fuzzing): the vars, then
/// nothing; the body goes after it.
pub fn encode(vars: &[(&str, &str)]) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn nginx_like() -> Vec<u8> {
        encode(&[
            ("QUERY_STRING", "a=1&b=%20"),
            ("REQUEST_METHOD", "POST"),
            ("CONTENT_TYPE", "text/plain"),
            ("CONTENT_LENGTH", "5"),
            ("REQUEST_URI", "/p%2541th?a=1&b=%20"),
            ("PATH_INFO", "/p%41th"),
            ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REQUEST_SCHEME", "http"),
            ("REMOTE_ADDR", "192.0.2.9"),
            ("REMOTE_PORT", "40001"),
            ("SERVER_PORT", "8080"),
            ("SERVER_NAME", "example.org"),
            ("HTTP_HOST", "example.org:8080"),
            ("HTTP_X_FORWARDED_PROTO", "https"),
            ("HTTP_USER_AGENT", "curl/7.88"),
        ])
    }

    #[test]
    fn a_request_in_any_split() {
        let mut wire = nginx_like();
        let plen = wire.len();
        wire.extend_from_slice(b"hello");
        for n in 0..plen {
            assert_eq!(parse(&wire[..n]), Ok(None), "prefix {n}");
        }
        let (vars, len) = parse(&wire).unwrap().unwrap();
        assert_eq!(len, plen);
        assert_eq!(vars.get("REMOTE_ADDR"), Some("192.0.2.9"));
        assert_eq!(vars.remote(), Some("192.0.2.9:40001".parse().unwrap()));
        assert!(!vars.https());
        let head = vars.to_head().unwrap();
        assert_eq!(head.method, "POST");
        assert_eq!(head.target, "/p%2541th?a=1&b=%20");
        assert_eq!(head.path, "/p%2541th");
        assert_eq!(crate::wsgi::percent_decode(&head.path), b"/p%41th");
        assert_eq!(head.query, "a=1&b=%20");
        assert_eq!(head.body, BodyKind::Length(5));
        assert_eq!(head.protocol.as_deref(), Some("HTTP/1.1"));
        assert!(!head.keep_alive);
        assert_eq!(head.header("host"), Some("example.org:8080"));
        assert_eq!(head.header("X-Forwarded-Proto"), Some("https"));
        assert_eq!(head.header("content-length"), Some("5"));
        assert_eq!(head.header("content-type"), Some("text/plain"));
        assert_eq!(head.header("document-root"), None);
        // Decoded paths with any byte come back exactly.
        let (v, _) = parse(&encode(&[
            ("PATH_INFO", "/a b%c\u{e9}\n"),
            ("HTTP_CONTENT_LENGTH", "5"),
        ]))
        .unwrap()
        .unwrap();
        let head = v.to_head().unwrap();
        assert_eq!(head.path, "/a b%25c%C3%A9%0A");
        assert_eq!(
            crate::wsgi::percent_decode(&head.path),
            "/a b%c\u{e9}\n".as_bytes()
        );
        assert_eq!(head.headers, vec![]);
    }

    #[test]
    fn defaults_and_schemes() {
        let (vars, _) = parse(&encode(&[])).unwrap().unwrap();
        let head = vars.to_head().unwrap();
        assert_eq!((head.method.as_str(), head.target.as_str()), ("GET", "/"));
        assert_eq!(head.body, BodyKind::None);
        let v = |pairs: &[(&str, &str)]| parse(&encode(pairs)).unwrap().unwrap().0;
        assert!(v(&[("HTTPS", "on")]).https());
        assert!(v(&[("HTTPS", "1")]).https());
        assert!(!v(&[("HTTPS", "off")]).https());
        assert!(v(&[("UWSGI_SCHEME", "https")]).https());
        assert!(!v(&[("HTTPS", "on"), ("UWSGI_SCHEME", "http")]).https());
        assert!(v(&[("wsgi.url_scheme", "https")]).https());
        let head = v(&[("PATH_INFO", "/x"), ("QUERY_STRING", "q")])
            .to_head()
            .unwrap();
        assert_eq!(head.target, "/x?q");
        // Repeated: the last wins.
        assert_eq!(v(&[("A", "1"), ("A", "2")]).get("A"), Some("2"));
        // Latin-1: each byte is one char (encode() wrote é as 2 bytes of
        // UTF-8, so the var holds 2 chars, 4 bytes as a Rust string).
        assert_eq!(
            v(&[("HTTP_X", "\u{e9}")]).get("HTTP_X").map(str::len),
            Some(4)
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(&[1, 0, 0, 0]), Err(UwsgiError::Modifier(1)));
        assert_eq!(UwsgiError::Modifier(1).status(), 501);
        // Sizes that run past the block.
        assert!(parse(&[0, 3, 0, 0, 5, 0, b'a']).is_err());
        assert!(parse(&[0, 1, 0, 0, 5]).is_err());
        assert!(parse(&[0, 4, 0, 0, 1, 0, b'a', 9]).is_err());
        let v = |pairs: &[(&str, &str)]| parse(&encode(pairs)).unwrap().unwrap().0;
        for bad in [
            &[("CONTENT_LENGTH", "-1")][..],
            &[("CONTENT_LENGTH", "5x")],
            &[("CONTENT_LENGTH", "+5")],
            &[("HTTP_X", "a\r\nb")],
            &[("REQUEST_METHOD", "")],
            &[("REQUEST_METHOD", "G T")],
            &[("HTTP_X:Y", "1")],
            // A tab would reach the request target (found by fuzzing).
            &[("QUERY_STRING", "a=\t")],
            &[("REQUEST_URI", "/\tx")],
        ] {
            assert!(v(bad).to_head().is_err(), "{bad:?}");
        }
        // In a header's value a tab is fine.
        assert!(v(&[("HTTP_X", "a\tb")]).to_head().is_ok());
        // A decoded path may carry anything.
        assert!(v(&[("PATH_INFO", "/a\nb")]).to_head().is_ok());
        let many: Vec<(String, String)> = (0..1001)
            .map(|i| (format!("K{i}"), String::new()))
            .collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            parse(&encode(&refs)),
            Err(UwsgiError::Header("too many variables"))
        );
    }

    /// A small fuzz in the unit tests (the cargo-fuzz target checks more):
    /// mutated packets are incomplete on every prefix shorter than the
    /// packet, and an accepted head keeps control characters out.
    #[test]
    fn mutations_never_decide_early() {
        let seed = nginx_like();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let mut input = seed.clone();
            for _ in 0..(1 + rnd() % 3) {
                let at = (rnd() as usize) % input.len();
                input[at] = rnd() as u8;
            }
            let Ok(Some((vars, len))) = parse(&input) else {
                continue;
            };
            for n in 0..len {
                assert_eq!(parse(&input[..n]), Ok(None));
            }
            if let Ok(head) = vars.to_head() {
                assert!(!head.target.chars().any(|c| c < ' '));
                assert!(head.path.bytes().all(|b| (b' '..=b'~').contains(&b)));
                assert!(head.headers.iter().all(|(_, v)| !v.contains(['\r', '\n'])));
            }
        }
    }
}
