//! The two HTTP/1.1 ends of an internal connection, socket-free: the
//! request head written for a stream, and the response head and body
//! framing read back (what the app interfaces wrote, turned into what
//! HTTP/2 carries: no connection-specific fields, no chunking).

use crate::http::{ChunkedDecoder, HttpError};

/// A response head larger than this is refused (502).
pub(super) const MAX_HEAD: usize = 64 * 1024;
const MAX_FIELDS: usize = 256;

/// Fields HTTP/2 forbids (RFC 9113 8.2.2); the internal connection's
/// HTTP/1.1 framing stays there.
fn connection_specific(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
    )
}

/// The HTTP/1.1 request head for a stream. `chunked`: the body's length
/// is unknown and is sent chunked.
pub(super) fn request_head(req: &http::request::Parts, chunked: bool) -> Vec<u8> {
    let mut h = Vec::with_capacity(256);
    h.extend_from_slice(req.method.as_str().as_bytes());
    h.push(b' ');
    let target = req
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    h.extend_from_slice(target.as_bytes());
    h.extend_from_slice(b" HTTP/1.1\r\n");
    if !req.headers.contains_key(http::header::HOST) {
        if let Some(a) = req.uri.authority() {
            h.extend_from_slice(b"host: ");
            h.extend_from_slice(a.as_str().as_bytes());
            h.extend_from_slice(b"\r\n");
        }
    }
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in &req.headers {
        let n = name.as_str();
        // 100-continue is HTTP/1.1's business: the body is forwarded as
        // it comes. `te` may only be `trailers` here, which HTTP/1.1 apps
        // never see from gunicorn either.
        if connection_specific(n) || n == "expect" || n == "te" {
            continue;
        }
        if n == "cookie" {
            // HTTP/2 may split the cookie field (RFC 9113 8.2.3); an
            // HTTP/1.1 app expects one.
            cookies.push(value.as_bytes());
            continue;
        }
        if chunked && n == "content-length" {
            continue;
        }
        h.extend_from_slice(n.as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(value.as_bytes());
        h.extend_from_slice(b"\r\n");
    }
    if !cookies.is_empty() {
        h.extend_from_slice(b"cookie: ");
        h.extend_from_slice(&cookies.join(&b"; "[..]));
        h.extend_from_slice(b"\r\n");
    }
    if chunked {
        h.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    h.extend_from_slice(b"\r\n");
    h
}

/// How the response's body ends on the internal connection.
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    /// Until the app closes the connection.
    Eof,
}

/// A parsed response head.
pub(super) struct Head {
    pub(super) status: u16,
    pub(super) headers: http::HeaderMap,
    pub(super) framing: Framing,
    /// The internal connection may carry another request afterwards.
    pub(super) reusable: bool,
    /// Bytes of the head.
    pub(super) len: usize,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ResponseError {
    #[error("bad response head from the app interface: {0}")]
    Head(String),
    #[error("response head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("{0}")]
    Chunked(#[from] HttpError),
}

/// Parse a response head at the start of `buf`. Ok(None): incomplete.
/// Interim (1xx) responses are returned like others; the caller skips
/// them.
pub(super) fn parse_head(buf: &[u8], is_head: bool) -> Result<Option<Head>, ResponseError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut r = httparse::Response::new(&mut fields);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(ResponseError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ResponseError::Head(e.to_string())),
    };
    let status = r.code.unwrap_or(500);
    let mut headers = http::HeaderMap::with_capacity(r.headers.len());
    let mut length = None;
    let mut chunked = false;
    let mut close = r.version == Some(0);
    for f in r.headers.iter() {
        let Ok(name) = http::HeaderName::from_bytes(f.name.as_bytes()) else {
            return Err(ResponseError::Head(format!("field name {:?}", f.name)));
        };
        let v = f.value;
        match name.as_str() {
            "content-length" => {
                let n = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| ResponseError::Head("content-length".into()))?;
                length = Some(n);
            }
            "transfer-encoding" => {
                chunked = v
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|l| l.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            "connection" => {
                close = v
                    .split(|b| *b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
            }
            _ => {}
        }
        if connection_specific(name.as_str()) {
            continue;
        }
        let Ok(value) = http::HeaderValue::from_bytes(v) else {
            return Err(ResponseError::Head(format!("value of {name}")));
        };
        headers.append(name, value);
    }
    let framing = if is_head || status < 200 || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        headers.remove(http::header::CONTENT_LENGTH);
        Framing::Chunked(Box::default())
    } else {
        match length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::Eof,
        }
    };
    let reusable = !close && !matches!(framing, Framing::Eof);
    Ok(Some(Head {
        status,
        headers,
        framing,
        reusable,
        len,
    }))
}

/// Take body bytes out of `input` per `framing`, appending them to `out`.
/// Returns (bytes consumed, the body is complete).
pub(super) fn take_body(
    framing: &mut Framing,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(usize, bool), ResponseError> {
    match framing {
        Framing::None => Ok((0, true)),
        Framing::Length(n) => {
            let take = (*n).min(input.len() as u64) as usize;
            out.extend_from_slice(&input[..take]);
            *n -= take as u64;
            Ok((take, *n == 0))
        }
        Framing::Chunked(d) => Ok(d.decode(input, out)?),
        Framing::Eof => {
            out.extend_from_slice(input);
            Ok((input.len(), false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_head_joins_cookies_and_names_the_host() {
        let req = http::Request::builder()
            .method("POST")
            .uri("http://example.com:8000/a/b?c=d")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("content-length", "5")
            .header("expect", "100-continue")
            .body(())
            .unwrap();
        let (parts, _) = req.into_parts();
        let h = String::from_utf8(request_head(&parts, false)).unwrap();
        assert!(h.starts_with("POST /a/b?c=d HTTP/1.1\r\nhost: example.com:8000\r\n"));
        assert!(h.contains("cookie: a=1; b=2\r\n"));
        assert!(h.contains("content-length: 5\r\n"));
        assert!(!h.contains("expect"));
        let h = String::from_utf8(request_head(&parts, true)).unwrap();
        assert!(h.contains("transfer-encoding: chunked\r\n"));
        assert!(!h.contains("content-length"));
    }

    #[test]
    fn response_framing() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc";
        let h = parse_head(r, false).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert!(h.reusable);
        assert!(h.headers.get("connection").is_none());
        let mut f = h.framing;
        let mut out = Vec::new();
        assert_eq!(take_body(&mut f, &r[h.len..], &mut out).unwrap(), (3, true));
        assert_eq!(out, b"abc");

        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let h = parse_head(r, false).unwrap().unwrap();
        assert!(h.headers.get("transfer-encoding").is_none());
        let mut f = h.framing;
        let mut out = Vec::new();
        let (used, done) = take_body(&mut f, &r[h.len..], &mut out).unwrap();
        assert!(done && used == r.len() - h.len);
        assert_eq!(out, b"abc");

        let r = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
        let h = parse_head(r, false).unwrap().unwrap();
        assert!(!h.reusable && matches!(h.framing, Framing::Eof));
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert!(matches!(h.framing, Framing::None) && h.reusable);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n", false).unwrap().is_none());
        assert!(parse_head(b"HTTP/1.1 2x0 OK\r\n\r\n", false).is_err());
    }
}
