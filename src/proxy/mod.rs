//! The PROXY protocol (HAProxy's, versions 1 and 2), socket-free: a load
//! balancer that relays TCP connections (HAProxy `send-proxy` /
//! `send-proxy-v2`, stunnel, AWS NLB, ...) sends one header before the
//! client's bytes, naming the client's address and port. This module
//! recognises and parses that header from the first bytes of a
//! connection, however they are split across reads: [`parse`] is called on
//! the bytes buffered so far and says whether more are needed, that the
//! connection does not start with a header (plain HTTP, as gunicorn allows
//! for any mode), or where the header ends and what it said ([`Header`]).
//!
//! Who may send a header (`--proxy-allow-from`) is decided by the worker
//! (`worker/edge.rs`), which also answers refusals; what a header means to
//! an app (REMOTE_ADDR, the ASGI `client`) is applied by the app
//! interfaces from the [`Header`] carried in the job (`worker::Edge`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `--proxy-protocol`: which versions of the header are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Off,
    V1,
    V2,
    Auto,
}

impl Mode {
    /// gunicorn's spellings: `off`/`false`/`0`/`none`, `v1`, `v2`,
    /// `auto`/`true`/`1` (case and surrounding spaces ignored).
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "false" | "0" | "none" => Some(Mode::Off),
            "v1" => Some(Mode::V1),
            "v2" => Some(Mode::V2),
            "auto" | "true" | "1" => Some(Mode::Auto),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::V1 => "v1",
            Mode::V2 => "v2",
            Mode::Auto => "auto",
        }
    }

    fn reads_v1(self) -> bool {
        matches!(self, Mode::V1 | Mode::Auto)
    }

    fn reads_v2(self) -> bool {
        matches!(self, Mode::V2 | Mode::Auto)
    }
}

/// The 12 bytes a version 2 header starts with.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// What a version 1 header starts with.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The longest version 1 header, CRLF included (the specification's 107).
pub const V1_MAX: usize = 107;

/// What a header said about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 1 or 2.
    pub version: u8,
    /// What kind of header it was, as gunicorn names it in the environ's
    /// `PROXY_PROTOCOL`.
    pub kind: Kind,
    /// The client's address and port (`TCP4`/`TCP6` only).
    pub source: Option<SocketAddr>,
    /// The address and port the client connected to at the proxy.
    pub destination: Option<SocketAddr>,
}

/// The kinds of header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TCP connection over IPv4.
    Tcp4,
    /// A TCP connection over IPv6.
    Tcp6,
    /// v1 `PROXY UNKNOWN`: the proxy could not say.
    Unknown,
    /// v2 `LOCAL`: the proxy's own connection (a health check); the
    /// connection's real endpoints apply.
    Local,
    /// v2 `PROXY` with family `UNSPEC`, or a unix-socket client (`UNIX`):
    /// no usable address; the real endpoints apply.
    Unspec,
    Unix,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tcp4 => "TCP4",
            Kind::Tcp6 => "TCP6",
            Kind::Unknown => "UNKNOWN",
            Kind::Local => "LOCAL",
            Kind::Unspec => "UNSPEC",
            Kind::Unix => "UNIX",
        }
    }
}

/// How far the first bytes of a connection got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Too few bytes to tell; `started` once they are certainly a header
    /// (its prefix or signature has arrived), so the sender's right to
    /// send one can be checked before the rest arrives.
    Incomplete { started: bool },
    /// The connection does not begin with a header the mode reads.
    Absent,
    /// A complete header of `len` bytes.
    Done { header: Header, len: usize },
}

/// A header that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid PROXY line: {0}")]
    Line(String),
    #[error("PROXY line longer than 107 bytes")]
    TooLong,
    #[error("invalid PROXY v2 header: {0}")]
    Binary(String),
}

/// Parse the bytes a connection began with (all of them so far).
pub fn parse(buf: &[u8], mode: Mode) -> Result<Parsed, ProxyError> {
    if mode.reads_v2() && is_prefix(buf, V2_SIGNATURE) {
        if buf.len() < V2_SIGNATURE.len() {
            return Ok(Parsed::Incomplete { started: false });
        }
        return parse_v2(buf);
    }
    if mode.reads_v1() && is_prefix(buf, V1_PREFIX) {
        if buf.len() < V1_PREFIX.len() {
            return Ok(Parsed::Incomplete { started: false });
        }
        return parse_v1(buf);
    }
    Ok(Parsed::Absent)
}

/// `buf` and `sig` agree on their common length.
fn is_prefix(buf: &[u8], sig: &[u8]) -> bool {
    let n = buf.len().min(sig.len());
    buf[..n] == sig[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        if buf.len() >= V1_MAX {
            return Err(ProxyError::TooLong);
        }
        return Ok(Parsed::Incomplete { started: true });
    };
    if window[cr] != b'\r' {
        return Err(ProxyError::Line("bare LF".into()));
    }
    if cr + 1 >= window.len() {
        if buf.len() >= V1_MAX {
            return Err(ProxyError::TooLong);
        }
        return Ok(Parsed::Incomplete { started: true });
    }
    if window[cr + 1] != b'\n' {
        return Err(ProxyError::Line("CR without LF".into()));
    }
    let len = cr + 2;
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..cr])
        .map_err(|_| ProxyError::Line("not ASCII".into()))?;
    let shown = || line.escape_default().to_string();
    let mut bits = line.split(' ');
    let proto = bits.next().unwrap_or("");
    if proto == "UNKNOWN" {
        // The rest of the line means nothing (specification, 2.1).
        return Ok(Parsed::Done {
            header: Header {
                version: 1,
                kind: Kind::Unknown,
                source: None,
                destination: None,
            },
            len,
        });
    }
    let kind = match proto {
        "TCP4" => Kind::Tcp4,
        "TCP6" => Kind::Tcp6,
        _ => return Err(ProxyError::Line(format!("protocol '{}'", shown()))),
    };
    let rest: Vec<&str> = bits.collect();
    let [src, dst, sport, dport] = rest[..] else {
        return Err(ProxyError::Line(shown()));
    };
    let addr = |s: &str| -> Result<IpAddr, ProxyError> {
        let ip = match kind {
            Kind::Tcp4 => s.parse::<Ipv4Addr>().map(IpAddr::V4),
            _ => s.parse::<Ipv6Addr>().map(IpAddr::V6),
        };
        ip.map_err(|_| ProxyError::Line(shown()))
    };
    let port = |s: &str| -> Result<u16, ProxyError> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProxyError::Line(format!("invalid port in '{}'", shown())));
        }
        s.parse::<u16>()
            .map_err(|_| ProxyError::Line(format!("invalid port in '{}'", shown())))
    };
    Ok(Parsed::Done {
        header: Header {
            version: 1,
            kind,
            source: Some(SocketAddr::new(addr(src)?, port(sport)?)),
            destination: Some(SocketAddr::new(addr(dst)?, port(dport)?)),
        },
        len,
    })
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.len() < 16 {
        return Ok(Parsed::Incomplete { started: true });
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Binary(format!("version {}", ver_cmd >> 4)));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        c => return Err(ProxyError::Binary(format!("command {c}"))),
    };
    let fam = buf[13];
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if buf.len() < len {
        return Ok(Parsed::Incomplete { started: true });
    }
    let data = &buf[16..len];
    let header = |kind, source, destination| Parsed::Done {
        header: Header {
            version: 2,
            kind,
            source,
            destination,
        },
        len,
    };
    if local {
        // Whatever follows (addresses, TLVs) is skipped.
        return Ok(header(Kind::Local, None, None));
    }
    let (family, transport) = (fam >> 4, fam & 0x0f);
    match family {
        0 => return Ok(header(Kind::Unspec, None, None)),
        1..=3 => {}
        f => return Err(ProxyError::Binary(format!("address family {f}"))),
    }
    if transport != 1 {
        return Err(ProxyError::Binary(
            "only TCP (STREAM) connections are supported".into(),
        ));
    }
    match family {
        1 => {
            if data.len() < 12 {
                return Err(ProxyError::Binary("IPv4 addresses truncated".into()));
            }
            let ip = |o: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    data[o],
                    data[o + 1],
                    data[o + 2],
                    data[o + 3],
                ))
            };
            let port = |o: usize| u16::from_be_bytes([data[o], data[o + 1]]);
            Ok(header(
                Kind::Tcp4,
                Some(SocketAddr::new(ip(0), port(8))),
                Some(SocketAddr::new(ip(4), port(10))),
            ))
        }
        2 => {
            if data.len() < 36 {
                return Err(ProxyError::Binary("IPv6 addresses truncated".into()));
            }
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&data[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            let port = |o: usize| u16::from_be_bytes([data[o], data[o + 1]]);
            Ok(header(
                Kind::Tcp6,
                Some(SocketAddr::new(ip(0), port(32))),
                Some(SocketAddr::new(ip(16), port(34))),
            ))
        }
        _ => {
            // AF_UNIX: two 108-byte paths; nothing an app could use as an
            // address, so the real endpoints apply, as for UNSPEC.
            if data.len() < 216 {
                return Err(ProxyError::Binary("unix addresses truncated".into()));
            }
            Ok(header(Kind::Unix, None, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8], mode: Mode) -> (Header, usize) {
        match parse(buf, mode) {
            Ok(Parsed::Done { header, len }) => (header, len),
            other => panic!("{other:?}"),
        }
    }

    /// Every split of `wire` agrees with the whole: a shorter prefix is
    /// incomplete (or, for a header cut short by the mode, absent), never
    /// an error or a different header.
    fn splits_agree(wire: &[u8], mode: Mode) {
        let whole = parse(wire, mode);
        for n in 0..wire.len() {
            match parse(&wire[..n], mode) {
                Ok(Parsed::Incomplete { .. }) => {}
                other => panic!("prefix of {n} bytes: {other:?}, whole: {whole:?}"),
            }
        }
    }

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut v = V2_SIGNATURE.to_vec();
        v.push(cmd);
        v.push(fam);
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let wire = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
        let (h, len) = done(wire, Mode::Auto);
        assert_eq!(len, 45);
        assert_eq!(h.kind, Kind::Tcp4);
        assert_eq!(h.source, Some("192.0.2.7:56324".parse().unwrap()));
        assert_eq!(h.destination, Some("198.51.100.1:443".parse().unwrap()));
        splits_agree(&wire[..len], Mode::Auto);
        splits_agree(&wire[..len], Mode::V1);
        let wire = b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
        let (h, _) = done(wire, Mode::V1);
        assert_eq!(h.kind, Kind::Tcp6);
        assert_eq!(h.source, Some("[2001:db8::1]:65535".parse().unwrap()));
        assert_eq!(h.destination, Some("[::1]:0".parse().unwrap()));
        let (h, _) = done(b"PROXY UNKNOWN ffff::1 whatever\r\n", Mode::Auto);
        assert_eq!(h.kind, Kind::Unknown);
        assert_eq!(h.source, None);
        let (h, _) = done(b"PROXY UNKNOWN\r\n", Mode::Auto);
        assert_eq!(h.kind, Kind::Unknown);
    }

    #[test]
    fn v1_refusals() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n"[..],
            b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443 9\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n",
            b"PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX",
            b"PROXY \xff\r\n",
        ] {
            assert!(
                parse(bad, Mode::Auto).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 200]].concat();
        assert_eq!(parse(&long, Mode::Auto), Err(ProxyError::TooLong));
        // 107 bytes is the limit, CRLF included.
        let mut max = b"PROXY UNKNOWN ".to_vec();
        max.resize(105, b'x');
        max.extend_from_slice(b"\r\n");
        assert_eq!(done(&max, Mode::Auto).1, 107);
        max.insert(20, b'x');
        assert_eq!(parse(&max, Mode::Auto), Err(ProxyError::TooLong));
    }

    #[test]
    fn absent_and_modes() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n", Mode::Auto), Ok(Parsed::Absent));
        assert_eq!(
            parse(b"PRO", Mode::Auto),
            Ok(Parsed::Incomplete { started: false })
        );
        assert_eq!(
            parse(b"PROXY", Mode::V1),
            Ok(Parsed::Incomplete { started: false })
        );
        assert_eq!(
            parse(b"PROXY ", Mode::V1),
            Ok(Parsed::Incomplete { started: true })
        );
        assert_eq!(parse(b"PROXZ", Mode::Auto), Ok(Parsed::Absent));
        assert_eq!(
            parse(b"\r\n\r\n", Mode::Auto),
            Ok(Parsed::Incomplete { started: false })
        );
        assert_eq!(parse(b"\r\n\r\n", Mode::V1), Ok(Parsed::Absent));
        assert_eq!(
            parse(b"", Mode::Auto),
            Ok(Parsed::Incomplete { started: false })
        );
        // A mode reads only its version: the other is plain input.
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\n", Mode::V2),
            Ok(Parsed::Absent)
        );
        let wire = v2(0x21, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 80, 0, 81]);
        assert_eq!(parse(&wire, Mode::V1), Ok(Parsed::Absent));
        for s in ["off", "FALSE", " 0 ", "none"] {
            assert_eq!(Mode::parse(s), Some(Mode::Off));
        }
        for s in ["auto", "true", "1", "Auto"] {
            assert_eq!(Mode::parse(s), Some(Mode::Auto));
        }
        assert_eq!(Mode::parse("v2"), Some(Mode::V2));
        assert_eq!(Mode::parse("v3"), None);
    }

    #[test]
    fn v2_inet_inet6_and_tlvs() {
        let mut body = vec![192, 0, 2, 7, 10, 0, 0, 1];
        body.extend_from_slice(&56324u16.to_be_bytes());
        body.extend_from_slice(&8000u16.to_be_bytes());
        // TLVs after the addresses: ALPN "h2" and a NOOP; skipped.
        body.extend_from_slice(&[0x01, 0, 2, b'h', b'2', 0x04, 0, 1, 0]);
        let mut wire = v2(0x21, 0x11, &body);
        let hlen = wire.len();
        wire.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let (h, len) = done(&wire, Mode::Auto);
        assert_eq!(len, hlen);
        assert_eq!(h.version, 2);
        assert_eq!(h.kind, Kind::Tcp4);
        assert_eq!(h.source, Some("192.0.2.7:56324".parse().unwrap()));
        assert_eq!(h.destination, Some("10.0.0.1:8000".parse().unwrap()));
        splits_agree(&wire[..len], Mode::Auto);
        splits_agree(&wire[..len], Mode::V2);

        let src: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let dst: Ipv6Addr = "fd00::1".parse().unwrap();
        let mut body = src.octets().to_vec();
        body.extend_from_slice(&dst.octets());
        body.extend_from_slice(&[0xdc, 0x04, 0x01, 0xbb]);
        let wire = v2(0x21, 0x21, &body);
        let (h, _) = done(&wire, Mode::V2);
        assert_eq!(h.kind, Kind::Tcp6);
        assert_eq!(h.source, Some("[2001:db8::7]:56324".parse().unwrap()));
        assert_eq!(h.destination, Some("[fd00::1]:443".parse().unwrap()));
    }

    #[test]
    fn v2_local_unspec_unix() {
        // LOCAL with and without an address block: both skipped whole.
        let (h, len) = done(&v2(0x20, 0x00, &[]), Mode::Auto);
        assert_eq!((h.kind, len), (Kind::Local, 16));
        let (h, len) = done(&v2(0x20, 0x11, &[9; 12]), Mode::Auto);
        assert_eq!((h.kind, h.source, len), (Kind::Local, None, 28));
        let (h, _) = done(&v2(0x21, 0x00, &[]), Mode::Auto);
        assert_eq!(h.kind, Kind::Unspec);
        let (h, _) = done(&v2(0x21, 0x31, &[0; 216]), Mode::Auto);
        assert_eq!(h.kind, Kind::Unix);
    }

    #[test]
    fn v2_refusals() {
        for wire in [
            v2(0x11, 0x11, &[0; 12]),  // version 1 in a v2 header
            v2(0x22, 0x11, &[0; 12]),  // command 2
            v2(0x21, 0x12, &[0; 12]),  // UDP
            v2(0x21, 0x10, &[0; 12]),  // INET, UNSPEC transport
            v2(0x21, 0x11, &[0; 11]),  // IPv4 block short
            v2(0x21, 0x21, &[0; 35]),  // IPv6 block short
            v2(0x21, 0x31, &[0; 100]), // unix block short
            v2(0x21, 0x41, &[0; 12]),  // family 4
        ] {
            assert!(parse(&wire, Mode::Auto).is_err(), "{wire:?}");
        }
        // Truncated: incomplete until the announced length has arrived.
        let wire = v2(0x21, 0x11, &[0; 12]);
        assert_eq!(
            parse(&wire[..20], Mode::Auto),
            Ok(Parsed::Incomplete { started: true })
        );
        assert_eq!(
            parse(&wire[..11], Mode::Auto),
            Ok(Parsed::Incomplete { started: false })
        );
    }

    /// A small fuzz in the unit tests (the cargo-fuzz target checks more):
    /// mutated headers decide the same on every prefix as on the whole.
    #[test]
    fn mutations_decide_alike_on_every_prefix() {
        let seeds = [
            b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET".to_vec(),
            b"PROXY UNKNOWN x\r\n".to_vec(),
            v2(
                0x21,
                0x11,
                &[1, 2, 3, 4, 5, 6, 7, 8, 0, 80, 0, 81, 4, 0, 1, 0],
            ),
            v2(0x21, 0x21, &[7; 36]),
            v2(0x20, 0x00, &[]),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3000 {
            let mut input = seeds[round % seeds.len()].clone();
            for _ in 0..(rnd() % 3) {
                let at = (rnd() as usize) % input.len();
                match rnd() % 3 {
                    0 => input[at] = rnd() as u8,
                    1 => input.truncate(at),
                    _ => input.insert(at, rnd() as u8),
                }
                if input.is_empty() {
                    break;
                }
            }
            for mode in [Mode::V1, Mode::V2, Mode::Auto] {
                let whole = parse(&input, mode);
                let mut decided = None;
                for n in 0..=input.len() {
                    let r = parse(&input[..n], mode);
                    match (&decided, &r) {
                        (None, Ok(Parsed::Incomplete { .. })) => {}
                        (None, _) => decided = Some(r),
                        (Some(d), _) => assert_eq!(d, &r, "{input:?} at {n}"),
                    }
                }
                match decided {
                    Some(d) => assert_eq!(d, whole),
                    None => assert!(matches!(whole, Ok(Parsed::Incomplete { .. }))),
                }
            }
        }
    }
}
