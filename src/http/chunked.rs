//! Chunked request-body decoding (RFC 9112 §7.1): sizes, extensions and
//! trailers checked strictly, bounded, resumable at any byte boundary.

use std::fmt;

use super::bytes::*;
use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex chunk size.
    Size,
    /// Whitespace after the size: only `;` may follow.
    SizeWs,
    /// After `;`: optional whitespace, then an extension name.
    ExtPreName,
    /// Inside an extension name.
    ExtName,
    /// After an extension name; `ws` = whitespace was seen (CRLF then invalid).
    ExtAfterName { ws: bool },
    /// After `=`: optional whitespace, then a token or quoted string.
    ExtPreValue,
    /// Inside a token value.
    ExtToken,
    /// Inside a quoted-string value.
    ExtQuoted,
    /// After a backslash inside a quoted string.
    ExtQuotedEscape,
    /// After an extension value; `ws` = whitespace was seen.
    ExtAfterValue { ws: bool },
    /// Saw CR ending the size line.
    SizeLf,
    /// Copying chunk data.
    Data,
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value.
    TrailerValue,
    /// Saw CR ending a trailer line.
    TrailerLf,
    /// Saw CR of the final empty line.
    FinalLf,
    /// Body complete.
    Done,
    /// A previous call failed; the stream is unusable.
    Failed,
}

/// Incremental decoder for a `Transfer-Encoding: chunked` request body.
pub struct ChunkedDecoder {
    state: ChunkState,
    /// Chunk size being accumulated.
    size: u64,
    /// Whether at least one hex digit was seen for the current size.
    has_digit: bool,
    /// Bytes seen so far on the current size line.
    line_len: usize,
    /// Data bytes left in the current chunk.
    remaining: u64,
    /// Bytes seen so far in the trailer section.
    trailer_len: usize,
    /// The trailer field name being read (its first bytes; `name_len`
    /// counts them all), checked against the names barred from trailers.
    name: [u8; LONGEST_FORBIDDEN],
    name_len: usize,
    /// A `Content-Type` trailer was seen (it is a singleton field).
    content_type_seen: bool,
}

/// Fields that must not appear in trailers (RFC 9110 §6.5.1: framing,
/// routing, authentication), as gunicorn 27 bars them; lower case.
const FORBIDDEN_TRAILERS: [&[u8]; 6] = [
    b"host",
    b"content-length",
    b"transfer-encoding",
    b"trailer",
    b"authorization",
    b"te",
];

/// Longest name in [`FORBIDDEN_TRAILERS`] (and `content-type`).
const LONGEST_FORBIDDEN: usize = 17;

impl fmt::Debug for ChunkedDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkedDecoder")
            .field("state", &self.state)
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            size: 0,
            has_digit: false,
            line_len: 0,
            remaining: 0,
            trailer_len: 0,
            name: [0; LONGEST_FORBIDDEN],
            name_len: 0,
            content_type_seen: false,
        }
    }

    fn name_byte(&mut self, b: u8) {
        if let Some(slot) = self.name.get_mut(self.name_len) {
            *slot = b.to_ascii_lowercase();
        }
        self.name_len += 1;
    }

    /// At the colon of a trailer field: refuse the names barred from
    /// trailers and a repeated `Content-Type`, as gunicorn 27 does.
    fn check_trailer_name(&mut self) -> Result<(), HttpError> {
        let Some(name) = self.name.get(..self.name_len) else {
            return Ok(());
        };
        if FORBIDDEN_TRAILERS.contains(&name) {
            let shown = String::from_utf8_lossy(name).into_owned();
            return Err(self.fail(&format!("{shown} is not allowed in trailers")));
        }
        if name == b"content-type" {
            if self.content_type_seen {
                return Err(self.fail("repeated Content-Type trailer"));
            }
            self.content_type_seen = true;
        }
        Ok(())
    }

    /// True once the last chunk, trailers and final CRLF were consumed.
    pub fn is_finished(&self) -> bool {
        self.state == ChunkState::Done
    }

    fn fail(&mut self, detail: &str) -> HttpError {
        self.state = ChunkState::Failed;
        bad(format!("Invalid chunked body: {detail}"))
    }

    /// Decode as much of `input` as possible, appending body data to `out`.
    /// Returns (bytes consumed from `input`, finished). Once finished, no
    /// more bytes are consumed, so anything after the body (a pipelined
    /// request) stays in `input[consumed..]`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), HttpError> {
        use ChunkState as S;
        let mut i = 0usize;
        while i < input.len() {
            match self.state {
                S::Done => return Ok((i, true)),
                S::Failed => return Err(self.fail("decoder already failed")),
                S::Data => {
                    let avail = input.len() - i;
                    let take = usize::try_from(self.remaining)
                        .unwrap_or(usize::MAX)
                        .min(avail);
                    out.extend_from_slice(input.get(i..i + take).unwrap_or_default());
                    i += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = S::DataCr;
                    }
                    continue;
                }
                _ => {}
            }
            let Some(&b) = input.get(i) else {
                break;
            };
            i += 1;
            match self.state {
                S::Size
                | S::SizeWs
                | S::ExtPreName
                | S::ExtName
                | S::ExtAfterName { .. }
                | S::ExtPreValue
                | S::ExtToken
                | S::ExtQuoted
                | S::ExtQuotedEscape
                | S::ExtAfterValue { .. } => {
                    if b != b'\r' {
                        self.line_len += 1;
                        if self.line_len > MAX_CHUNK_LINE {
                            return Err(self.fail("chunk size line too long"));
                        }
                    }
                    self.size_line_byte(b)?;
                }
                S::SizeLf => {
                    if b != b'\n' {
                        return Err(self.fail("expected LF after chunk size"));
                    }
                    if self.size == 0 {
                        self.state = S::TrailerStart;
                    } else {
                        self.remaining = self.size;
                        self.state = S::Data;
                    }
                }
                S::DataCr => {
                    if b != b'\r' {
                        return Err(self.fail("missing CRLF after chunk data"));
                    }
                    self.state = S::DataLf;
                }
                S::DataLf => {
                    if b != b'\n' {
                        return Err(self.fail("missing CRLF after chunk data"));
                    }
                    self.size = 0;
                    self.has_digit = false;
                    self.line_len = 0;
                    self.state = S::Size;
                }
                S::TrailerStart | S::TrailerName | S::TrailerValue | S::TrailerLf | S::FinalLf => {
                    self.trailer_len += 1;
                    if self.trailer_len > MAX_TRAILER_SIZE {
                        return Err(self.fail("trailer section too large"));
                    }
                    if self.trailer_byte(b)? {
                        return Ok((i, true));
                    }
                }
                S::Data | S::Done | S::Failed => {
                    return Err(self.fail("internal state error"));
                }
            }
        }
        Ok((i, self.state == S::Done))
    }

    fn size_line_byte(&mut self, b: u8) -> Result<(), HttpError> {
        use ChunkState as S;
        match self.state {
            S::Size => {
                if let Some(d) = hex_value(b) {
                    self.has_digit = true;
                    // size <= 2^53 here, so *16 + 15 cannot overflow u64.
                    self.size = self.size * 16 + u64::from(d);
                    if self.size > MAX_CHUNK_SIZE {
                        return Err(self.fail("chunk size too large"));
                    }
                    return Ok(());
                }
                if !self.has_digit {
                    return Err(self.fail("missing or invalid chunk size"));
                }
                match b {
                    b'\r' => self.state = S::SizeLf,
                    b';' => self.state = S::ExtPreName,
                    b' ' | b'\t' => self.state = S::SizeWs,
                    _ => return Err(self.fail("invalid chunk size")),
                }
            }
            S::SizeWs => match b {
                b' ' | b'\t' => {}
                b';' => self.state = S::ExtPreName,
                _ => return Err(self.fail("invalid chunk size")),
            },
            S::ExtPreName => match b {
                b' ' | b'\t' => {}
                _ if is_tchar(b) => self.state = S::ExtName,
                _ => return Err(self.fail("invalid chunk extension name")),
            },
            S::ExtName => match b {
                _ if is_tchar(b) => {}
                b'=' => self.state = S::ExtPreValue,
                b';' => self.state = S::ExtPreName,
                b'\r' => self.state = S::SizeLf,
                b' ' | b'\t' => self.state = S::ExtAfterName { ws: true },
                _ => return Err(self.fail("invalid chunk extension")),
            },
            S::ExtAfterName { ws } => match b {
                b' ' | b'\t' => {}
                b'=' => self.state = S::ExtPreValue,
                b';' => self.state = S::ExtPreName,
                b'\r' if !ws => self.state = S::SizeLf,
                _ => return Err(self.fail("invalid chunk extension")),
            },
            S::ExtPreValue => match b {
                b' ' | b'\t' => {}
                b'"' => self.state = S::ExtQuoted,
                _ if is_tchar(b) => self.state = S::ExtToken,
                _ => return Err(self.fail("invalid chunk extension value")),
            },
            S::ExtToken => match b {
                _ if is_tchar(b) => {}
                b';' => self.state = S::ExtPreName,
                b'\r' => self.state = S::SizeLf,
                b' ' | b'\t' => self.state = S::ExtAfterValue { ws: true },
                _ => return Err(self.fail("invalid chunk extension value")),
            },
            S::ExtQuoted => match b {
                b'"' => self.state = S::ExtAfterValue { ws: false },
                b'\\' => self.state = S::ExtQuotedEscape,
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => {}
                _ => return Err(self.fail("invalid quoted chunk extension value")),
            },
            S::ExtQuotedEscape => match b {
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => self.state = S::ExtQuoted,
                _ => return Err(self.fail("invalid quoted-pair in chunk extension")),
            },
            S::ExtAfterValue { ws } => match b {
                b' ' | b'\t' => self.state = S::ExtAfterValue { ws: true },
                b';' => self.state = S::ExtPreName,
                b'\r' if !ws => self.state = S::SizeLf,
                _ => return Err(self.fail("invalid chunk extension")),
            },
            _ => return Err(self.fail("internal state error")),
        }
        Ok(())
    }

    /// Returns Ok(true) when the final CRLF was consumed.
    fn trailer_byte(&mut self, b: u8) -> Result<bool, HttpError> {
        use ChunkState as S;
        match self.state {
            S::TrailerStart => match b {
                b'\r' => self.state = S::FinalLf,
                _ if is_tchar(b) => {
                    self.name_len = 0;
                    self.name_byte(b);
                    self.state = S::TrailerName;
                }
                _ => return Err(self.fail("invalid trailer field")),
            },
            S::TrailerName => match b {
                _ if is_tchar(b) => self.name_byte(b),
                b':' => {
                    self.check_trailer_name()?;
                    self.state = S::TrailerValue;
                }
                _ => return Err(self.fail("invalid trailer field name")),
            },
            S::TrailerValue => match b {
                b'\r' => self.state = S::TrailerLf,
                _ if is_field_value_byte(b) => {}
                _ => return Err(self.fail("invalid trailer field value")),
            },
            S::TrailerLf => {
                if b != b'\n' {
                    return Err(self.fail("bare CR in trailer"));
                }
                self.state = S::TrailerStart;
            }
            S::FinalLf => {
                if b != b'\n' {
                    return Err(self.fail("expected LF after last chunk"));
                }
                self.state = S::Done;
                return Ok(true);
            }
            _ => return Err(self.fail("internal state error")),
        }
        Ok(false)
    }
}

#[inline]
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- chunked ----

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize), HttpError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let (n, fin) = d.decode(input, &mut out)?;
        assert!(fin, "not finished: {:?}", String::from_utf8_lossy(input));
        assert!(d.is_finished());
        Ok((out, n))
    }

    fn chunk_err(input: &[u8]) -> u16 {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        match d.decode(input, &mut out) {
            Err(e) => e.status,
            Ok(r) => panic!(
                "expected error, got {r:?} for {:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }

    #[test]
    fn chunked_simple() {
        let input: &[u8] = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let (out, n) = decode_all(input).unwrap();
        assert_eq!(out, b"hello world");
        assert_eq!(n, input.len());
    }

    #[test]
    fn chunked_hex_sizes() {
        let mut input = b"A\r\n0123456789\r\nf\r\n".to_vec();
        input.extend_from_slice(&[b'x'; 15]);
        input.extend_from_slice(b"\r\n0010\r\n");
        input.extend_from_slice(&[b'y'; 16]);
        input.extend_from_slice(b"\r\n000\r\n\r\n");
        let (out, _) = decode_all(&input).unwrap();
        assert_eq!(out.len(), 10 + 15 + 16);
    }

    #[test]
    fn chunked_extensions() {
        for input in [
            &b"5;foo\r\nhello\r\n0\r\n\r\n"[..],
            b"5;foo=bar\r\nhello\r\n0\r\n\r\n",
            b"5;foo=bar;baz\r\nhello\r\n0;last\r\n\r\n",
            b"5 ;foo = bar ; baz\r\nhello\r\n0\r\n\r\n",
            b"5;foo=\"a quoted; \\\"value\\\"\"\r\nhello\r\n0\r\n\r\n",
            b"5;foo=\"\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\";b=y\r\nhello\r\n0\r\n\r\n",
        ] {
            let (out, n) = decode_all(input).unwrap();
            assert_eq!(out, b"hello", "{:?}", String::from_utf8_lossy(input));
            assert_eq!(n, input.len());
        }
    }

    #[test]
    fn chunked_bad_extensions() {
        for input in [
            &b"5;\r\nhello\r\n0\r\n\r\n"[..],
            b"5;=bar\r\nhello\r\n0\r\n\r\n",
            b"5;foo=\r\nhello\r\n0\r\n\r\n",
            b"5;foo=\"unterminated\r\nhello\r\n0\r\n\r\n",
            b"5;fo o\r\nhello\r\n0\r\n\r\n",
            b"5;foo \r\nhello\r\n0\r\n\r\n",
            b"5;foo=bar \r\nhello\r\n0\r\n\r\n",
            b"5;foo=b\"ar\r\nhello\r\n0\r\n\r\n",
            b"5;foo=\"x\"y\r\nhello\r\n0\r\n\r\n",
            b"5;foo=\"a\x01\"\r\nhello\r\n0\r\n\r\n",
            b"5;foo=(x)\r\nhello\r\n0\r\n\r\n",
            b"5;;\r\nhello\r\n0\r\n\r\n",
        ] {
            assert_eq!(
                chunk_err(input),
                400,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn chunked_bad_sizes() {
        for input in [
            &b"\r\nhello\r\n0\r\n\r\n"[..],
            b"g\r\n",
            b"-5\r\n",
            b"+5\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\t\r\nhello\r\n0\r\n\r\n",
            b";ext\r\n",
            b"ffffffffffffffffff\r\n",
            b"20000000000001\r\n",
        ] {
            assert_eq!(
                chunk_err(input),
                400,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        // Exactly 2^53 is accepted (as a size; the data simply isn't there yet).
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert_eq!(
            d.decode(b"20000000000000\r\nab", &mut out).unwrap(),
            (18, false)
        );
        assert_eq!(out, b"ab");
        // Long runs of leading zeros are fine up to the line limit.
        let mut z = "0".repeat(100);
        z.push_str("5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(decode_all(z.as_bytes()).unwrap().0, b"hello");
        let mut z = "0".repeat(MAX_CHUNK_LINE + 1);
        z.push_str("5\r\n");
        assert_eq!(chunk_err(z.as_bytes()), 400);
    }

    #[test]
    fn chunked_bare_lf() {
        assert_eq!(chunk_err(b"5\nhello\r\n0\r\n\r\n"), 400);
        assert_eq!(chunk_err(b"5\r\nhello\n0\r\n\r\n"), 400);
        assert_eq!(chunk_err(b"5\r\nhello\r\n0\n\r\n"), 400);
        assert_eq!(chunk_err(b"5\r\nhello\r\n0\r\n\n"), 400);
        assert_eq!(chunk_err(b"5;a=b\nhello\r\n0\r\n\r\n"), 400);
        assert_eq!(chunk_err(b"0\r\nX: y\n\r\n"), 400);
        assert_eq!(chunk_err(b"5\rhello\r\n"), 400);
    }

    #[test]
    fn chunked_missing_crlf_after_data() {
        assert_eq!(chunk_err(b"5\r\nhelloX\r\n0\r\n\r\n"), 400);
        assert_eq!(chunk_err(b"5\r\nhello0\r\n\r\n"), 400);
        assert_eq!(chunk_err(b"3\r\nhello\r\n0\r\n\r\n"), 400);
        assert_eq!(chunk_err(b"5\r\nhello\rX"), 400);
    }

    #[test]
    fn chunked_trailers() {
        let input: &[u8] = b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other:\t v \r\n\r\n";
        let (out, n) = decode_all(input).unwrap();
        assert_eq!(out, b"hello");
        assert_eq!(n, input.len());
    }

    #[test]
    fn chunked_bad_trailers() {
        for input in [
            &b"0\r\nX-A : b\r\n\r\n"[..],
            b"0\r\n: b\r\n\r\n",
            b"0\r\nNoColon\r\n\r\n",
            b"0\r\nX: a\r\n folded\r\n\r\n",
            b"0\r\n\tX: a\r\n\r\n",
            b"0\r\nX: a\x01b\r\n\r\n",
            b"0\r\nX: a\x7f\r\n\r\n",
            b"0\r\nX: a\rb\r\n\r\n",
            b"0\r\n\rX",
        ] {
            assert_eq!(
                chunk_err(input),
                400,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn chunked_forbidden_trailers() {
        for name in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "Trailer",
            "AUTHORIZATION",
            "TE",
        ] {
            let input = format!("1\r\na\r\n0\r\n{name}: x\r\n\r\n");
            assert_eq!(chunk_err(input.as_bytes()), 400, "{name}");
            // Also when split at every byte.
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let failed = input
                .as_bytes()
                .iter()
                .any(|b| d.decode(std::slice::from_ref(b), &mut out).is_err());
            assert!(failed, "{name} byte by byte");
        }
        assert_eq!(
            chunk_err(b"0\r\nContent-Type: a\r\ncontent-type: b\r\n\r\n"),
            400
        );
        // Names that merely start like a barred one, and other fields, pass.
        for input in [
            &b"0\r\nTEx: 1\r\nHosts: 2\r\nX-Content-Length: 3\r\n\r\n"[..],
            b"0\r\nContent-Type: a\r\nX-Checksum: 1\r\n\r\n",
            b"0\r\nTransfer-Encoding-And-Then-Some: 1\r\n\r\n",
        ] {
            assert!(
                decode_all(input).is_ok(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn chunked_trailer_too_large() {
        let mut input = b"0\r\n".to_vec();
        for _ in 0..200 {
            input.extend_from_slice(format!("X-Pad: {}\r\n", "p".repeat(60)).as_bytes());
        }
        input.extend_from_slice(b"\r\n");
        assert_eq!(chunk_err(&input), 400);
        // A trailer just under the limit is fine.
        let mut ok_input = b"0\r\n".to_vec();
        ok_input.extend_from_slice(
            format!("X: {}\r\n\r\n", "p".repeat(MAX_TRAILER_SIZE - 10)).as_bytes(),
        );
        assert!(decode_all(&ok_input).is_ok());
    }

    #[test]
    fn chunked_pipelined_rest_untouched() {
        let input: &[u8] = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let (n, fin) = d.decode(input, &mut out).unwrap();
        assert!(fin);
        assert_eq!(out, b"abc");
        assert_eq!(&input[n..], b"GET / HTTP/1.1\r\n\r\n");
        // Further calls consume nothing.
        assert_eq!(d.decode(&input[n..], &mut out).unwrap(), (0, true));
    }

    #[test]
    fn chunked_failed_stays_failed() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert!(d.decode(b"zz", &mut out).is_err());
        assert!(d.decode(b"5\r\nhello\r\n0\r\n\r\n", &mut out).is_err());
        assert!(!d.is_finished());
    }

    #[test]
    fn chunked_random_bodies_random_splits() {
        let mut seed: u64 = 0x0bad_cafe_1234_5678;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let exts: [&[u8]; 5] = [b"", b";a", b";a=b", b" ; q=\"x\\\"y\"", b";x;y=1"];
        for _ in 0..2000 {
            let mut wire = Vec::new();
            let mut data = Vec::new();
            for _ in 0..(next() % 5) {
                let len = 1 + (next() % 300) as usize;
                let chunk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let size = if next() % 2 == 0 {
                    format!("{len:x}")
                } else {
                    format!("{len:X}")
                };
                wire.extend_from_slice(size.as_bytes());
                wire.extend_from_slice(exts[(next() % 5) as usize]);
                wire.extend_from_slice(b"\r\n");
                wire.extend_from_slice(&chunk);
                wire.extend_from_slice(b"\r\n");
                data.extend_from_slice(&chunk);
            }
            wire.extend_from_slice(b"0");
            wire.extend_from_slice(exts[(next() % 5) as usize]);
            wire.extend_from_slice(b"\r\n");
            if next() % 2 == 0 {
                wire.extend_from_slice(b"Trailer-A: 1\r\nB:\r\n");
            }
            wire.extend_from_slice(b"\r\n");
            let body_len = wire.len();
            wire.extend_from_slice(b"NEXT");

            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let mut pos = 0;
            let mut finished = false;
            while !finished {
                let step = 1 + (next() % 64) as usize;
                let end = (pos + step).min(wire.len());
                let (n, fin) = d.decode(&wire[pos..end], &mut out).unwrap();
                pos += n;
                finished = fin;
                if !fin {
                    assert_eq!(pos, end);
                }
            }
            assert_eq!(pos, body_len);
            assert_eq!(out, data);
        }
    }

    const CHUNKED_SAMPLE: &[u8] =
        b"5;ext=\"q;v\"\r\nhello\r\n1A ; a = b\r\nabcdefghijklmnopqrstuvwxyz\r\n0;end\r\nT-1: x\r\nT-2: y z\r\n\r\n";

    #[test]
    fn chunked_byte_at_a_time() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        for (idx, b) in CHUNKED_SAMPLE.iter().enumerate() {
            let (n, fin) = d.decode(std::slice::from_ref(b), &mut out).unwrap();
            assert_eq!(n, 1, "byte {idx}");
            assert_eq!(fin, idx == CHUNKED_SAMPLE.len() - 1, "byte {idx}");
        }
        assert!(d.is_finished());
        assert_eq!(out, b"helloabcdefghijklmnopqrstuvwxyz");
    }

    #[test]
    fn chunked_split_everywhere() {
        for split in 0..=CHUNKED_SAMPLE.len() {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let (a, b) = CHUNKED_SAMPLE.split_at(split);
            let (n1, f1) = d.decode(a, &mut out).unwrap();
            assert_eq!(n1, a.len());
            assert_eq!(f1, split == CHUNKED_SAMPLE.len());
            let (n2, f2) = d.decode(b, &mut out).unwrap();
            assert_eq!(n2, b.len());
            assert!(f2, "split {split}");
            assert_eq!(out, b"helloabcdefghijklmnopqrstuvwxyz", "split {split}");
        }
    }

    #[test]
    fn chunked_errors_split_everywhere() {
        // Malformed input must fail regardless of how it is split.
        for bad_input in [
            &b"5\r\nhello\n0\r\n\r\n"[..],
            b"5;foo \r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n",
            b"0\r\nX : y\r\n\r\n",
        ] {
            for split in 0..=bad_input.len() {
                let mut d = ChunkedDecoder::new();
                let mut out = Vec::new();
                let (a, b) = bad_input.split_at(split);
                let r = d.decode(a, &mut out).and_then(|_| d.decode(b, &mut out));
                assert_eq!(r.map_err(|e| e.status), Err(400), "split {split}");
            }
        }
    }
}
