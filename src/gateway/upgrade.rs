//! HTTP/1.1 `Upgrade: h2c` (RFC 7540 3.2; `--http2-cleartext upgrade` or
//! `both`, as gunicorn 27): which requests qualify ([`offer`], called by
//! the engine on a parsed head), and the switch on the gateway's side
//! ([`begin`]). The switch reads the request's body (it came over
//! HTTP/1.1), sends `101 Switching Protocols`, lets the client's
//! connection preface and its first frame (SETTINGS) through to the `h2`
//! crate, and places the upgrade request right behind them as a HEADERS
//! frame on stream 1 with END_STREAM: the crate takes it as the stream
//! the upgrade opened, half closed from the client's side, and answers
//! it like any other. The body never passes through the crate (its flow
//! control owes the client nothing for it): the stream's handler takes
//! it from the connection's link.
//!
//! A request that does not qualify is served as HTTP/1.1, as RFC 7540
//! allows and as gunicorn does: a malformed `HTTP2-Settings`, a second
//! one, `Connection` not naming both `Upgrade` and `HTTP2-Settings`,
//! HTTP/1.0, a body over 64 KiB or of unknown length (chunked; gunicorn
//! reads that whole into memory), a target that is neither origin form,
//! absolute form nor `OPTIONS *`, or a `Host` that is no valid authority.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::http::{BodyKind, RequestHead};

/// Largest HTTP/1.1 body an upgrade request may carry (held in memory
/// until the stream is served), as gunicorn.
pub const BODY_LIMIT: u64 = 64 * 1024;
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frames before the peer's SETTINGS are in effect are at most this.
const DEFAULT_FRAME: usize = 16_384;
const SWITCHING: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";

/// An upgrade the engine accepted, for the gateway to carry out.
#[derive(Debug)]
pub struct Upgrade {
    /// The request as an HPACK header block (literals only, so the
    /// client's and the crate's compression state are untouched).
    block: Vec<u8>,
    body_len: usize,
    expect_continue: bool,
    /// Response bytes the connection still owed a pipelined predecessor.
    pub pending: Vec<u8>,
    /// The whole switch (body, 101, the client's preface) takes at most this.
    timeout: Duration,
}

/// Fields that do not cross into HTTP/2 (RFC 9113 8.2.2), or that the
/// stream carries otherwise (`host` as `:authority`, the body's length
/// and 100-continue handled here).
fn dropped(name: &str, value: &str, hop: &[String]) -> bool {
    matches!(
        name,
        "connection"
            | "upgrade"
            | "http2-settings"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "host"
            | "content-length"
            | "expect"
    ) || (name == "te" && !value.eq_ignore_ascii_case("trailers"))
        || hop.iter().any(|h| h == name)
}

/// Whether `head` asks for h2c in a way that is honoured; the engine has
/// checked the peer and the setting.
pub fn offer(head: &RequestHead, timeout: Duration) -> Option<Upgrade> {
    if head.minor_version != 1 || head.protocol.is_some() || head.method == "CONNECT" {
        return None;
    }
    let mut upgrade = Vec::new();
    let mut settings = Vec::new();
    let mut connection = Vec::new();
    for (n, v) in &head.headers {
        if n.eq_ignore_ascii_case("upgrade") {
            upgrade.push(v.trim());
        } else if n.eq_ignore_ascii_case("http2-settings") {
            settings.push(v.trim());
        } else if n.eq_ignore_ascii_case("connection") {
            connection.extend(v.split(',').map(|t| t.trim().to_ascii_lowercase()));
        }
    }
    if upgrade.len() != 1 || !upgrade[0].eq_ignore_ascii_case("h2c") {
        return None;
    }
    if settings.len() != 1 || !settings_valid(settings[0]) {
        return None;
    }
    if !connection.iter().any(|t| t == "upgrade")
        || !connection.iter().any(|t| t == "http2-settings")
    {
        return None;
    }
    let body_len = match head.body {
        BodyKind::None => 0,
        BodyKind::Length(n) if n <= BODY_LIMIT => n as usize,
        _ => return None,
    };
    // Origin form, `OPTIONS *` (HTTP/2 carries it as :path "*"), or
    // absolute form, whose authority is the request's.
    let (path, authority): (String, Option<String>) =
        if head.target.starts_with('/') || (head.method == "OPTIONS" && head.target == "*") {
            (head.target.clone(), head.header("host").map(str::to_string))
        } else {
            let uri = http::Uri::try_from(head.target.as_str()).ok()?;
            let authority = uri.authority()?.as_str().to_string();
            if !matches!(uri.scheme_str(), Some("http" | "https")) {
                return None;
            }
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            (path.to_string(), Some(authority))
        };
    if let Some(a) = &authority {
        if http::uri::Authority::try_from(a.as_str()).is_err() {
            return None;
        }
    }
    let mut block = Vec::with_capacity(256);
    literal(&mut block, b":method", &latin1(&head.method));
    literal(&mut block, b":scheme", b"http");
    literal(&mut block, b":path", &latin1(&path));
    if let Some(a) = &authority {
        literal(&mut block, b":authority", a.as_bytes());
    }
    for (n, v) in &head.headers {
        let name = n.to_ascii_lowercase();
        if dropped(&name, v, &connection) {
            continue;
        }
        literal(&mut block, name.as_bytes(), &latin1(v));
    }
    Some(Upgrade {
        block,
        body_len,
        expect_continue: head.expect_continue && body_len > 0,
        pending: Vec::new(),
        timeout,
    })
}

/// The head's strings are latin-1 decoded: one char per byte of the wire.
fn latin1(s: &str) -> Vec<u8> {
    s.chars().map(|c| c as u32 as u8).collect()
}

/// An HPACK literal field without indexing, new name, no Huffman coding
/// (RFC 7541 6.2.2).
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    int7(out, name.len());
    out.extend_from_slice(name);
    int7(out, value.len());
    out.extend_from_slice(value);
}

/// An HPACK integer with a 7-bit prefix (RFC 7541 5.1), the H bit clear.
fn int7(out: &mut Vec<u8>, mut n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// The `HTTP2-Settings` value: base64url (unpadded) of a SETTINGS payload
/// with values HTTP/2 allows (RFC 7540 3.2.1, 6.5.2).
fn settings_valid(v: &str) -> bool {
    let Some(raw) = base64url(v) else {
        return false;
    };
    if raw.len() % 6 != 0 {
        return false;
    }
    raw.chunks(6).all(|s| {
        let id = u16::from_be_bytes([s[0], s[1]]);
        let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
        match id {
            2 => value <= 1,
            4 => value <= 0x7fff_ffff,
            5 => (16_384..=16_777_215).contains(&value),
            _ => true,
        }
    })
}

fn base64url(v: &str) -> Option<Vec<u8>> {
    let v = v.trim_end_matches('=');
    let mut out = Vec::with_capacity(v.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in v.bytes() {
        let d = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(d);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // Leftover bits must be padding (a lone sixth of a byte is not base64).
    if bits >= 6 || acc & ((1 << bits) - 1) != 0 {
        return None;
    }
    Some(out)
}

/// The request as HEADERS (and CONTINUATION) frames on stream 1.
fn frames(block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + 32);
    let n = block.len().div_ceil(DEFAULT_FRAME).max(1);
    for i in 0..n {
        let c = &block
            [(i * DEFAULT_FRAME).min(block.len())..((i + 1) * DEFAULT_FRAME).min(block.len())];
        // HEADERS with END_STREAM, then CONTINUATION; END_HEADERS on the last.
        let (kind, mut flags) = if i == 0 { (0x1, 0x1) } else { (0x9, 0) };
        if i + 1 == n {
            flags |= 0x4;
        }
        out.extend_from_slice(&(c.len() as u32).to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(c);
    }
    out
}

/// Carry out the switch on `io` when the connection came with an upgrade:
/// the bytes for the `h2` crate to read first (the client's preface,
/// SETTINGS, stream 1, and whatever followed), and the upgrade request's
/// body. Without one, `read` as it is.
pub(super) async fn begin<T: AsyncRead + AsyncWrite + Unpin>(
    io: &mut T,
    upgrade: Option<Box<Upgrade>>,
    read: Vec<u8>,
) -> io::Result<(Vec<u8>, Option<Bytes>)> {
    let Some(up) = upgrade else {
        return Ok((read, None));
    };
    let (pre, body) = tokio::time::timeout(up.timeout, switch(io, &up, read))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "h2c upgrade timed out"))??;
    Ok((pre, Some(body)))
}

async fn switch<T: AsyncRead + AsyncWrite + Unpin>(
    io: &mut T,
    up: &Upgrade,
    mut buf: Vec<u8>,
) -> io::Result<(Vec<u8>, Bytes)> {
    if !up.pending.is_empty() {
        io.write_all(&up.pending).await?;
    }
    if up.expect_continue && buf.len() < up.body_len {
        io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    fill(io, &mut buf, up.body_len).await?;
    let body = Bytes::from(buf.drain(..up.body_len).collect::<Vec<u8>>());
    io.write_all(SWITCHING).await?;
    let head = PREFACE.len() + 9;
    fill(io, &mut buf, head).await?;
    if &buf[..PREFACE.len()] != PREFACE {
        return Err(io::Error::other("no HTTP/2 connection preface after 101"));
    }
    let f = &buf[PREFACE.len()..head];
    let len = u32::from_be_bytes([0, f[0], f[1], f[2]]) as usize;
    if f[3] != 0x4 || len > DEFAULT_FRAME {
        return Err(io::Error::other(
            "the connection preface after 101 does not go on with SETTINGS",
        ));
    }
    fill(io, &mut buf, head + len).await?;
    let stream1 = frames(&up.block);
    buf.splice(head + len..head + len, stream1);
    Ok((buf, body))
}

/// Read until `buf` holds `n` bytes.
async fn fill<T: AsyncRead + Unpin>(io: &mut T, buf: &mut Vec<u8>, n: usize) -> io::Result<()> {
    while buf.len() < n {
        buf.reserve(n - buf.len());
        if io.read_buf(buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the client left during the h2c upgrade",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(extra: &[(&str, &str)], body: BodyKind) -> RequestHead {
        let mut headers = vec![
            ("Host".to_string(), "example.com".to_string()),
            (
                "Connection".to_string(),
                "Upgrade, HTTP2-Settings".to_string(),
            ),
            ("Upgrade".to_string(), "h2c".to_string()),
            (
                "HTTP2-Settings".to_string(),
                "AAMAAABkAARAAAAAAAIAAAAA".to_string(),
            ),
        ];
        for (n, v) in extra {
            headers.push((n.to_string(), v.to_string()));
        }
        RequestHead {
            method: "GET".into(),
            target: "/p?q=1".into(),
            path: "/p".into(),
            query: "q=1".into(),
            minor_version: 1,
            protocol: None,
            headers,
            body,
            keep_alive: true,
            expect_continue: false,
        }
    }

    fn t() -> Duration {
        Duration::from_secs(1)
    }

    #[test]
    fn a_proper_request_is_offered() {
        let up = offer(&head(&[("X-A", "b")], BodyKind::None), t()).expect("offered");
        assert_eq!(up.body_len, 0);
        let s = String::from_utf8_lossy(&up.block).into_owned();
        for part in [
            ":method",
            "GET",
            ":path",
            "/p?q=1",
            ":authority",
            "example.com",
            "x-a",
        ] {
            assert!(s.contains(part), "{part} in {s:?}");
        }
        for gone in ["upgrade", "http2-settings", "connection", "host"] {
            assert!(!s.contains(gone), "{gone} in {s:?}");
        }
    }

    #[test]
    fn malformed_upgrades_stay_http1() {
        let mut h = head(&[], BodyKind::None);
        h.headers[3].1 = "not base64!".into();
        assert!(offer(&h, t()).is_none());
        let mut h = head(&[], BodyKind::None);
        h.headers[1].1 = "Upgrade".into();
        assert!(offer(&h, t()).is_none());
        let h = head(&[("HTTP2-Settings", "")], BodyKind::None);
        assert!(offer(&h, t()).is_none(), "two HTTP2-Settings");
        let mut h = head(&[], BodyKind::None);
        h.minor_version = 0;
        assert!(offer(&h, t()).is_none());
        assert!(offer(&head(&[], BodyKind::Chunked), t()).is_none());
        assert!(offer(&head(&[], BodyKind::Length(BODY_LIMIT + 1)), t()).is_none());
        assert!(offer(&head(&[], BodyKind::Length(BODY_LIMIT)), t()).is_some());
        let mut h = head(&[], BodyKind::None);
        h.headers[2].1 = "h2c, websocket".into();
        assert!(offer(&h, t()).is_none());
    }

    #[test]
    fn targets_in_absolute_form_and_options_star() {
        let mut h = head(&[], BodyKind::None);
        h.target = "http://other.test:81/x?y=1".into();
        let up = offer(&h, t()).expect("absolute form is offered");
        let s = String::from_utf8_lossy(&up.block).into_owned();
        assert!(s.contains("/x?y=1") && !s.contains("http://"), "{s:?}");
        assert!(
            s.contains("other.test:81") && !s.contains("example.com"),
            "{s:?}"
        );
        let mut h = head(&[], BodyKind::None);
        (h.method, h.target) = ("OPTIONS".into(), "*".into());
        assert!(offer(&h, t()).is_some());
        let mut h = head(&[], BodyKind::None);
        h.target = "*".into();
        assert!(offer(&h, t()).is_none(), "* is for OPTIONS only");
        let mut h = head(&[], BodyKind::None);
        h.target = "ftp://x/y".into();
        assert!(offer(&h, t()).is_none());
    }

    #[test]
    fn settings_payloads() {
        assert!(settings_valid(""));
        assert!(settings_valid("AAMAAABkAARAAAAAAAIAAAAA"));
        // ENABLE_PUSH 2
        assert!(!settings_valid("AAIAAAAC"));
        // MAX_FRAME_SIZE 1
        assert!(!settings_valid("AAUAAAAB"));
        // not a multiple of six bytes
        assert!(!settings_valid("AAMA"));
        assert!(!settings_valid("AA+A"));
    }

    #[test]
    fn hpack_integers_and_frames() {
        let mut v = Vec::new();
        int7(&mut v, 1337);
        assert_eq!(v, [127, 0xba, 0x09]);
        let big = vec![b'x'; DEFAULT_FRAME + 10];
        let f = frames(&big);
        // HEADERS without END_HEADERS, then CONTINUATION with it.
        assert_eq!(f[3..5], [0x1, 0x1]);
        let second = 9 + DEFAULT_FRAME;
        assert_eq!(f[second + 3..second + 5], [0x9, 0x4]);
        assert_eq!(f.len(), 2 * 9 + big.len());
        let f = frames(b"ab");
        assert_eq!(f[..9], [0, 0, 2, 0x1, 0x5, 0, 0, 0, 1]);
    }
}
