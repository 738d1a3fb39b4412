//! The opening handshake (RFC 6455 section 4.2): validating a client's
//! upgrade request, the `Sec-WebSocket-Accept` key, subprotocol offers,
//! permessage-deflate negotiation (RFC 7692 section 7.1) and the bytes of
//! the `101 Switching Protocols` response.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

use super::deflate::DeflateParams;
use crate::http::RequestHead;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a request is not an acceptable WebSocket upgrade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("websocket upgrade must use GET")]
    NotGet,
    #[error("websocket upgrade needs HTTP/1.1")]
    NotHttp11,
    #[error("no 'websocket' token in Upgrade")]
    NoUpgrade,
    #[error("no 'upgrade' token in Connection")]
    NoConnectionUpgrade,
    /// Answer 426 with `Sec-WebSocket-Version: 13`.
    #[error("unsupported Sec-WebSocket-Version (only 13)")]
    UnsupportedVersion,
    #[error("missing or invalid Sec-WebSocket-Key")]
    BadKey,
    /// An extra response header contained CR, LF or NUL (or an empty name).
    #[error("invalid response header")]
    BadResponseHeader,
}

impl HandshakeError {
    /// The HTTP status to answer with (426 for a version mismatch).
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::BadResponseHeader => 500,
            _ => 400,
        }
    }
}

/// An accepted upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
    /// Offered subprotocols, in order.
    pub subprotocols: Vec<String>,
    /// Negotiated permessage-deflate, if offered acceptably and allowed.
    pub deflate: Option<DeflateParams>,
}

/// The `Sec-WebSocket-Accept` value for a client key.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    STANDARD.encode(h.finalize())
}

fn values<'a>(head: &'a RequestHead, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    head.headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
}

fn has_token(head: &RequestHead, name: &str, token: &str) -> bool {
    values(head, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// Validates a WebSocket upgrade request; `allow_deflate = false` never
/// negotiates compression.
pub fn parse_upgrade(head: &RequestHead, allow_deflate: bool) -> Result<Upgrade, HandshakeError> {
    if head.method != "GET" {
        return Err(HandshakeError::NotGet);
    }
    if head.minor_version < 1 {
        return Err(HandshakeError::NotHttp11);
    }
    if !has_token(head, "upgrade", "websocket") {
        return Err(HandshakeError::NoUpgrade);
    }
    if !has_token(head, "connection", "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    if head.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = head
        .header("sec-websocket-key")
        .map(str::trim)
        .ok_or(HandshakeError::BadKey)?;
    match STANDARD.decode(key) {
        Ok(k) if k.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }
    let subprotocols = values(head, "sec-websocket-protocol")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let deflate = if allow_deflate {
        values(head, "sec-websocket-extensions").find_map(negotiate)
    } else {
        None
    };
    Ok(Upgrade {
        accept: accept_key(key),
        subprotocols,
        deflate,
    })
}

/// One extension offer; `Some` if it is an acceptable permessage-deflate.
fn negotiate(offer: &str) -> Option<DeflateParams> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut p = DeflateParams::default();
    let (mut seen_s, mut seen_c, mut seen_sb, mut seen_cb) = (false, false, false, false);
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                (n.trim(), Some(v))
            }
            None => (param, None),
        };
        let bits = |v: Option<&str>| -> Option<u8> {
            let v = v?;
            if v.is_empty() || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
        };
        match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if !seen_s && value.is_none() => {
                seen_s = true;
                p.server_no_context_takeover = true;
            }
            "client_no_context_takeover" if !seen_c && value.is_none() => {
                seen_c = true;
                p.client_no_context_takeover = true;
            }
            "server_max_window_bits" if !seen_sb => {
                seen_sb = true;
                // We can only compress with a 15-bit window.
                if bits(value)? != 15 {
                    return None;
                }
                p.server_max_window_bits = Some(15);
            }
            "client_max_window_bits" if !seen_cb => {
                seen_cb = true;
                // A value is optional; we do not echo it (the client
                // then may use up to 15 bits, which we can inflate).
                if value.is_some() {
                    bits(value)?;
                }
            }
            _ => return None,
        }
    }
    Some(p)
}

fn header_ok(b: &[u8]) -> bool {
    !b.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0)
}

/// The `101 Switching Protocols` response. `subprotocol` is the app's
/// choice; `extra` headers that would duplicate ours are skipped.
pub fn response_101(
    up: &Upgrade,
    subprotocol: Option<&str>,
    extra: &[(Vec<u8>, Vec<u8>)],
) -> Result<Vec<u8>, HandshakeError> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.extend_from_slice(up.accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(p) = subprotocol {
        if !header_ok(p.as_bytes()) {
            return Err(HandshakeError::BadResponseHeader);
        }
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(d) = &up.deflate {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        out.extend_from_slice(d.response_value().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    const OURS: [&[u8]; 5] = [
        b"upgrade",
        b"connection",
        b"sec-websocket-accept",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
    ];
    for (name, value) in extra {
        if name.is_empty() || !header_ok(name) || !header_ok(value) || name.contains(&b':') {
            return Err(HandshakeError::BadResponseHeader);
        }
        if OURS.iter().any(|o| o.eq_ignore_ascii_case(name)) {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request_head, Limits};

    fn head(extra: &str) -> RequestHead {
        let raw = format!("GET /chat HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        match parse_request_head(raw.as_bytes(), &Limits::default()) {
            Ok(Some((h, _))) => h,
            other => panic!("{other:?}"),
        }
    }

    const OK: &str = "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    #[test]
    fn rfc_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let up = parse_upgrade(&head(OK), true).unwrap();
        assert_eq!(up.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(up.deflate, None);
        assert!(up.subprotocols.is_empty());
    }

    #[test]
    fn rejections() {
        let e = |s: &str| parse_upgrade(&head(s), true).unwrap_err();
        assert_eq!(
            e("Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n"),
            HandshakeError::BadKey
        );
        assert_eq!(
            e("Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n"),
            HandshakeError::BadKey
        );
        let v8 = e("Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
        assert_eq!(v8, HandshakeError::UnsupportedVersion);
        assert_eq!(v8.status(), 426);
        assert_eq!(
            e("Connection: upgrade\r\nSec-WebSocket-Version: 13\r\n"),
            HandshakeError::NoUpgrade
        );
        assert_eq!(
            e("Upgrade: websocket\r\nConnection: close\r\n"),
            HandshakeError::NoConnectionUpgrade
        );
        // Several Connection headers.
        let ok = "Upgrade: websocket\r\nConnection: keep-alive\r\nConnection: upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
        assert!(parse_upgrade(&head(ok), true).is_ok());
        let mut h = head(OK);
        h.method = "POST".into();
        assert_eq!(parse_upgrade(&h, true), Err(HandshakeError::NotGet));
        h.method = "GET".into();
        h.minor_version = 0;
        assert_eq!(parse_upgrade(&h, true), Err(HandshakeError::NotHttp11));
    }

    #[test]
    fn subprotocols() {
        let h = head(&format!(
            "{OK}Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Protocol:  v2 \r\n"
        ));
        let up = parse_upgrade(&h, true).unwrap();
        assert_eq!(up.subprotocols, ["chat", "superchat", "v2"]);
    }

    #[test]
    fn extension_negotiation() {
        let ext = |s: &str, allow: bool| {
            parse_upgrade(&head(&format!("{OK}{s}")), allow)
                .unwrap()
                .deflate
        };
        let pd = DeflateParams::default();
        assert_eq!(
            ext("Sec-WebSocket-Extensions: permessage-deflate\r\n", true),
            Some(pd)
        );
        assert_eq!(
            ext("Sec-WebSocket-Extensions: permessage-deflate\r\n", false),
            None
        );
        // First offer needs a 10-bit server window: declined; second is
        // malformed (duplicate); third accepted.
        let s = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10, permessage-deflate; client_no_context_takeover; client_no_context_takeover\r\nSec-WebSocket-Extensions: x-foo, permessage-deflate; server_no_context_takeover; client_max_window_bits; server_max_window_bits=\"15\"\r\n";
        let got = ext(s, true).unwrap();
        assert_eq!(
            got,
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: false,
                server_max_window_bits: Some(15),
            }
        );
        assert_eq!(
            got.response_value(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=15"
        );
        for bad in [
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; unknown",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(
                ext(&format!("Sec-WebSocket-Extensions: {bad}\r\n"), true),
                None,
                "{bad}"
            );
        }
        assert_eq!(
            ext(
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=9; client_no_context_takeover\r\n",
                true
            ),
            Some(DeflateParams {
                client_no_context_takeover: true,
                ..pd
            })
        );
    }

    #[test]
    fn response() {
        let up = parse_upgrade(
            &head(&format!(
                "{OK}Sec-WebSocket-Extensions: permessage-deflate\r\n"
            )),
            true,
        )
        .unwrap();
        let extra = vec![
            (b"X-A".to_vec(), b"1".to_vec()),
            (b"sec-websocket-accept".to_vec(), b"dup".to_vec()),
        ];
        let r = response_101(&up, Some("chat"), &extra).unwrap();
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\nX-A: 1\r\n\r\n"
        );
        let bad = vec![(b"X-A".to_vec(), b"1\r\nX: y".to_vec())];
        assert_eq!(
            response_101(&up, None, &bad),
            Err(HandshakeError::BadResponseHeader)
        );
        assert_eq!(
            response_101(&up, Some("a\nb"), &[]),
            Err(HandshakeError::BadResponseHeader)
        );
    }
}
