//! Strict HTTP/1.x request-head parsing and chunked request-body decoding.
//!
//! The worker reads bytes from a non-blocking socket into a buffer and calls
//! [`parse_request_head`] (or, better for slow clients, a per-connection
//! [`HeadParser`], which does not rescan bytes it has already seen) until it
//! returns a complete head, then (for chunked bodies) feeds the following
//! bytes to a [`ChunkedDecoder`].
//!
//! Tokenizing is done by `httparse`; this module adds the checks that keep
//! request smuggling and unbounded buffering out:
//!
//! * bare LF line endings are rejected anywhere (httparse accepts them),
//! * the request line, each header line, the number of header lines and the
//!   whole head are bounded *while the head is still incomplete*,
//! * `Content-Length` / `Transfer-Encoding` framing is validated strictly,
//! * methods are restricted the way gunicorn restricts them.
//!
//! Nothing in here panics on any input.

use std::fmt;
use std::mem::MaybeUninit;

/// Hard upper bound for `limit_request_fields` (gunicorn's `MAX_HEADERS`).
pub const MAX_HEADER_FIELDS: usize = 32768;

/// Upper bound for the whole head when `max_line` or `max_field_size` is 0
/// ("unlimited"): the head may still not grow past this many bytes (or past
/// the budget computed from the non-zero limits, whichever is larger).
pub const UNLIMITED_HEAD_CAP: usize = 64 * 1024;

/// Extra bytes allowed in the whole-head budget on top of the per-line limits
/// (leading empty lines, the final CRLF, line terminators).
const HEAD_SLACK: usize = 4096;

/// Largest chunk size accepted by [`ChunkedDecoder`] (2^53).
pub const MAX_CHUNK_SIZE: u64 = 1 << 53;

/// Longest accepted chunk-size line (size + extensions, excluding CRLF).
pub const MAX_CHUNK_LINE: usize = 4096;

/// Largest accepted trailer section (all trailer lines plus the final CRLF).
pub const MAX_TRAILER_SIZE: usize = 8192;

/// Request-head limits, with gunicorn's semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `limit_request_line`: max length of the request line excluding CRLF.
    /// 0 = unlimited (bounded only by the whole-head cap).
    pub max_line: usize,
    /// `limit_request_fields`: max number of header fields. 0 or anything
    /// above [`MAX_HEADER_FIELDS`] means [`MAX_HEADER_FIELDS`].
    pub max_fields: usize,
    /// `limit_request_field_size`: max length of one header line
    /// (as sent, excluding CRLF). 0 = unlimited (bounded by the head cap).
    pub max_field_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 4094,
            max_fields: 100,
            max_field_size: 8190,
        }
    }
}

impl Limits {
    /// The number of header fields actually allowed.
    pub fn effective_max_fields(&self) -> usize {
        if self.max_fields == 0 || self.max_fields > MAX_HEADER_FIELDS {
            MAX_HEADER_FIELDS
        } else {
            self.max_fields
        }
    }

    /// Total number of bytes a head (including leading empty lines and the
    /// final CRLFCRLF) may occupy before it is rejected with 431.
    pub fn head_cap(&self) -> usize {
        let line = if self.max_line == 0 {
            0
        } else {
            self.max_line.saturating_add(2)
        };
        let fields = if self.max_field_size == 0 {
            0
        } else {
            self.effective_max_fields()
                .saturating_mul(self.max_field_size.saturating_add(2))
        };
        let cap = line.saturating_add(fields).saturating_add(HEAD_SLACK);
        if self.max_line == 0 || self.max_field_size == 0 {
            cap.max(UNLIMITED_HEAD_CAP)
        } else {
            cap
        }
    }
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No `Content-Length` and no `Transfer-Encoding`: no body.
    None,
    /// `Content-Length: n` (n may be 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed and validated request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    /// Raw request-target as sent (RAW_URI). Bytes are latin-1 decoded, so
    /// every char is exactly one byte of the wire form.
    pub target: String,
    /// Target up to `?` / `#`, not percent-decoded. For absolute-form
    /// targets (`scheme://authority/p?q`) the path is `/p` (or `""` when the
    /// authority is followed directly by `?` or nothing). For `*` it is `*`.
    pub path: String,
    /// After `?`, without any `#fragment`; `""` if none.
    pub query: String,
    /// 0 or 1.
    pub minor_version: u8,
    /// Names as sent, values trimmed of OWS and latin-1 decoded.
    pub headers: Vec<(String, String)>,
    pub body: BodyKind,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

impl RequestHead {
    /// First header value whose name matches `name` case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request that must be answered with an error status and never reach the
/// application.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}: {detail}")]
pub struct HttpError {
    pub status: u16,
    pub reason: &'static str,
    pub detail: String,
}

impl HttpError {
    /// An error with the standard reason phrase for `status`.
    pub fn new(status: u16, detail: impl Into<String>) -> Self {
        HttpError {
            status,
            reason: reason_phrase(status),
            detail: detail.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, detail)
    }
}

fn bad(detail: impl Into<String>) -> HttpError {
    HttpError::bad_request(detail)
}

fn too_large(detail: impl Into<String>) -> HttpError {
    HttpError::new(431, detail)
}

/// Standard reason phrase for `status`, `"Unknown"` otherwise.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "Unknown",
    }
}

// ---------------------------------------------------------------------------
// Byte classes
// ---------------------------------------------------------------------------

const fn build_tchar_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = matches!(
            b,
            b'0'..=b'9'
                | b'a'..=b'z'
                | b'A'..=b'Z'
                | b'!'
                | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        );
        i += 1;
    }
    table
}

static TCHAR: [bool; 256] = build_tchar_table();

/// RFC 9110 `tchar`.
#[inline]
fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// Allowed in a field value: HTAB, SP, VCHAR, obs-text.
#[inline]
fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

const LO_BYTES: u64 = 0x0101_0101_0101_0101;
const HI_BITS: u64 = 0x8080_8080_8080_8080;

/// Index of the first `needle` in `hay`, eight bytes at a time.
#[inline]
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    let pattern = LO_BYTES * u64::from(needle);
    let mut base = 0usize;
    for chunk in hay.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(word) ^ pattern;
        // High bit set in the bytes of `x` that are zero; the lowest one is
        // exact (borrows only propagate upwards from a zero byte).
        let hits = x.wrapping_sub(LO_BYTES) & !x & HI_BITS;
        if hits != 0 {
            return Some(base + (hits.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    hay.get(base..)?
        .iter()
        .position(|&b| b == needle)
        .map(|p| base + p)
}

/// Check that every byte is `>= lowest` and not DEL, or HTAB when
/// `allow_htab`. Returns `Some(is_ascii)` when valid. Eight bytes at a time
/// on the common all-printable-ASCII path.
#[inline]
fn check_text(v: &[u8], lowest: u8, allow_htab: bool) -> Option<bool> {
    let byte_ok = |b: u8| (b >= lowest && b != 0x7f) || (allow_htab && b == b'\t');
    let below = LO_BYTES * u64::from(lowest);
    let mut ascii = true;
    let mut chunks = v.chunks_exact(8);
    for chunk in &mut chunks {
        if let Ok(word) = <[u8; 8]>::try_from(chunk) {
            let w = u64::from_le_bytes(word);
            // Some byte < lowest (lowest <= 128)?
            let low = w.wrapping_sub(below) & !w & HI_BITS;
            // Some byte >= 0x7f? (A carry only comes out of a 0xff byte,
            // which is itself flagged.)
            let high = (w.wrapping_add(LO_BYTES) | w) & HI_BITS;
            if low | high == 0 {
                continue;
            }
        }
        for &b in chunk {
            if !byte_ok(b) {
                return None;
            }
            ascii &= b < 0x80;
        }
    }
    for &b in chunks.remainder() {
        if !byte_ok(b) {
            return None;
        }
        ascii &= b < 0x80;
    }
    Some(ascii)
}

#[inline]
fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_ows(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_ows(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Latin-1 decode: byte `b` becomes `char::from(b)`. `ascii` tells whether
/// the caller already knows that `bytes` is all ASCII.
fn latin1(bytes: &[u8], ascii: bool) -> String {
    let widen = |b: &[u8]| b.iter().map(|&c| char::from(c)).collect::<String>();
    if ascii {
        std::str::from_utf8(bytes).map_or_else(|_| widen(bytes), str::to_owned)
    } else {
        widen(bytes)
    }
}

/// Iterate over the non-empty, OWS-trimmed elements of a comma list.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

// ---------------------------------------------------------------------------
// Request head
// ---------------------------------------------------------------------------

/// At most this many bytes of empty lines (CRLFs) may precede a request line.
const MAX_LEADING_EMPTY_LINES_BYTES: usize = 1024;

/// Number of header slots kept on the stack for httparse.
const STACK_HEADERS: usize = 128;

/// Result of the pre-scan.
enum HeadScan {
    /// The head ends at `end` (after CRLFCRLF) and has `fields` header lines.
    Complete { end: usize, fields: usize },
    /// More bytes are needed.
    Incomplete,
}

/// Resumable request-head parser.
///
/// [`parse_request_head`] rescans the whole buffer on every call, so a head
/// that trickles in a few bytes at a time costs time quadratic in its size.
/// A `HeadParser` kept per connection remembers how far it has already
/// scanned, making the total work linear. Contract: every call must pass the
/// same buffer start with only new bytes appended since the previous call.
/// The parser resets itself after it returns a complete head or an error,
/// so it can be reused for the next (pipelined) request once the caller has
/// drained the consumed bytes; call [`HeadParser::reset`] if the buffer is
/// replaced for any other reason.
#[derive(Debug, Clone, Default)]
pub struct HeadParser {
    /// Start of the line being scanned (after any leading empty lines).
    line_start: usize,
    /// Bytes before this offset were already searched for LF.
    search_from: usize,
    /// Complete header lines seen so far.
    fields: usize,
    /// Past the leading empty lines.
    started: bool,
    /// The request line is complete.
    line_done: bool,
    /// The request line and first header passed the early httparse check.
    early_ok: bool,
}

impl HeadParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget all progress (use when the buffer is replaced).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Same contract and results as [`parse_request_head`], resuming the
    /// scan where the previous call stopped.
    pub fn parse(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<(RequestHead, usize)>, HttpError> {
        if buf.len() < self.search_from {
            // The caller broke the append-only contract; start over.
            self.reset();
        }
        let result = match self.scan(buf, limits) {
            Ok(HeadScan::Complete { end, fields }) => parse_complete_head(buf, end, fields),
            Ok(HeadScan::Incomplete) => {
                if self.early_ok {
                    return Ok(None);
                }
                match check_head_early(buf) {
                    Ok(settled) => {
                        // Once settled, the start of the head need not be
                        // parsed again on every call.
                        self.early_ok = settled;
                        return Ok(None);
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        self.reset();
        result
    }

    /// Find the end of the head (CRLFCRLF), rejecting bare LF and enforcing
    /// all size limits, also on an incomplete head.
    fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<HeadScan, HttpError> {
        let max_fields = limits.effective_max_fields();
        let cap = limits.head_cap();

        // Leading empty lines (CRLF only) are ignored (RFC 9112 §2.2).
        while !self.started {
            let pos = self.line_start;
            match buf.get(pos) {
                Some(b'\r') => match buf.get(pos + 1) {
                    Some(b'\n') => {
                        self.line_start = pos + 2;
                        self.search_from = pos + 2;
                    }
                    Some(_) => return Err(bad("Invalid request line: stray CR")),
                    None => return Ok(HeadScan::Incomplete),
                },
                Some(b'\n') => return Err(bad("Invalid line ending: bare LF")),
                Some(_) => self.started = true,
                None => return Ok(HeadScan::Incomplete),
            }
            if self.line_start > MAX_LEADING_EMPTY_LINES_BYTES {
                return Err(bad("Too many empty lines before the request line"));
            }
        }

        loop {
            let from = self.search_from.max(self.line_start);
            let found = find_byte(buf.get(from..).unwrap_or_default(), b'\n');
            let Some(nl) = found.map(|k| from + k) else {
                // Incomplete line: reject now if it is already too long.
                self.search_from = buf.len();
                let mut partial = buf.len().saturating_sub(self.line_start);
                if buf.last() == Some(&b'\r') {
                    partial = partial.saturating_sub(1);
                }
                if !self.line_done {
                    if limits.max_line != 0 && partial > limits.max_line {
                        return Err(request_line_too_large(partial, limits.max_line));
                    }
                } else if partial > 0 {
                    if self.fields + 1 > max_fields {
                        return Err(too_many_fields(max_fields));
                    }
                    if limits.max_field_size != 0 && partial > limits.max_field_size {
                        return Err(field_too_large(partial, limits.max_field_size));
                    }
                }
                if buf.len() > cap {
                    return Err(too_large("Request head is too large"));
                }
                return Ok(HeadScan::Incomplete);
            };
            if nl == self.line_start || buf.get(nl - 1) != Some(&b'\r') {
                return Err(bad("Invalid line ending: bare LF"));
            }
            let line_len = nl - 1 - self.line_start;
            let next = nl + 1;
            if next > cap {
                return Err(too_large("Request head is too large"));
            }
            if !self.line_done {
                if limits.max_line != 0 && line_len > limits.max_line {
                    return Err(request_line_too_large(line_len, limits.max_line));
                }
                self.line_done = true;
            } else if line_len == 0 {
                return Ok(HeadScan::Complete {
                    end: next,
                    fields: self.fields,
                });
            } else {
                self.fields += 1;
                if self.fields > max_fields {
                    return Err(too_many_fields(max_fields));
                }
                if limits.max_field_size != 0 && line_len > limits.max_field_size {
                    return Err(field_too_large(line_len, limits.max_field_size));
                }
            }
            self.line_start = next;
            self.search_from = next;
        }
    }
}

fn request_line_too_large(len: usize, max: usize) -> HttpError {
    bad(format!("Request Line is too large ({len} > {max})"))
}

fn too_many_fields(max: usize) -> HttpError {
    too_large(format!("More than {max} header fields"))
}

fn field_too_large(len: usize, max: usize) -> HttpError {
    too_large(format!("Header field line is too large ({len} > {max})"))
}

fn map_httparse_error(e: httparse::Error) -> HttpError {
    match e {
        httparse::Error::HeaderName => bad("Invalid header name"),
        httparse::Error::HeaderValue => bad("Invalid header value"),
        httparse::Error::NewLine => bad("Invalid line ending"),
        httparse::Error::Token => bad("Invalid request line"),
        httparse::Error::Version => bad("Invalid HTTP version"),
        httparse::Error::TooManyHeaders => too_large("Too many header fields"),
        httparse::Error::Status => bad("Invalid request line"),
    }
}

/// Validate what is already there of an incomplete head (the request line, as
/// far as it goes, and at most the first header line), so that garbage is
/// rejected without waiting for the rest of the head.
///
/// Returns `Ok(true)` once the verdict can no longer change as bytes are
/// appended (request line and first header line both complete and valid).
fn check_head_early(buf: &[u8]) -> Result<bool, HttpError> {
    let mut req = httparse::Request::new(&mut []);
    let settled = match req.parse(buf) {
        // TooManyHeaders: the request line and one whole header line parsed
        // (there are no slots to store it).
        Err(httparse::Error::TooManyHeaders) => true,
        Ok(_) => false,
        Err(e) => return Err(map_httparse_error(e)),
    };
    if let Some(m) = req.method {
        validate_method(m)?;
    }
    Ok(settled)
}

/// gunicorn-style method check: a token of 3..=20 chars with no lowercase
/// letters and no `#`.
fn validate_method(m: &str) -> Result<(), HttpError> {
    let b = m.as_bytes();
    let ok = (3..=20).contains(&b.len())
        && b.iter()
            .all(|&c| is_tchar(c) && !c.is_ascii_lowercase() && c != b'#');
    if ok {
        Ok(())
    } else {
        Err(bad(format!("Invalid HTTP method: {:?}", m)))
    }
}

/// For `scheme://authority[path][?query]`, return the part after the
/// authority; `None` if `t` is not of that form.
fn absolute_form_rest(t: &str) -> Option<&str> {
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
    let after = t.get(colon + 1..)?.strip_prefix("//")?;
    let end = after.find(['/', '?']).unwrap_or(after.len());
    after.get(end..)
}

/// Split a (latin-1 decoded) target into path and query.
fn split_target(target: &str) -> (&str, &str) {
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

/// Per-request framing state collected while walking the headers.
#[derive(Default)]
struct Framing {
    content_length: Option<u64>,
    content_length_count: usize,
    te_present: bool,
    te_chunked: bool,
    te_chunked_twice: bool,
    te_chunked_not_last: bool,
    te_unknown: bool,
    host_count: usize,
    conn_close: bool,
    conn_keep_alive: bool,
    expect_continue: bool,
    expect_bad: bool,
}

fn parse_content_length(v: &[u8]) -> Result<u64, HttpError> {
    if v.is_empty() {
        return Err(bad("Invalid Content-Length: empty"));
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return Err(bad("Invalid Content-Length"));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| bad("Invalid Content-Length: too large"))?;
    }
    Ok(n)
}

impl Framing {
    fn observe(&mut self, name: &str, value: &[u8], minor_version: u8) -> Result<(), HttpError> {
        match name.len() {
            4 if name.eq_ignore_ascii_case("host") => self.host_count += 1,
            // Expect is only meaningful for HTTP/1.1; ignored for 1.0.
            6 if minor_version == 1 && name.eq_ignore_ascii_case("expect") => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    self.expect_continue = true;
                } else {
                    self.expect_bad = true;
                }
            }
            10 if name.eq_ignore_ascii_case("connection") => {
                for tok in list_elements(value) {
                    if tok.eq_ignore_ascii_case(b"close") {
                        self.conn_close = true;
                    } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                        self.conn_keep_alive = true;
                    }
                }
            }
            14 if name.eq_ignore_ascii_case("content-length") => {
                self.content_length_count += 1;
                if self.content_length_count > 1 {
                    return Err(bad("Multiple Content-Length headers"));
                }
                self.content_length = Some(parse_content_length(value)?);
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => {
                self.te_present = true;
                for coding in list_elements(value) {
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        if self.te_chunked {
                            self.te_chunked_twice = true;
                        }
                        self.te_chunked = true;
                    } else {
                        if self.te_chunked {
                            self.te_chunked_not_last = true;
                        }
                        self.te_unknown = true;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn body(&self, minor_version: u8) -> Result<BodyKind, HttpError> {
        if self.te_present {
            if minor_version == 0 {
                return Err(bad("Transfer-Encoding is not allowed in HTTP/1.0"));
            }
            if self.content_length_count > 0 {
                return Err(bad("Both Transfer-Encoding and Content-Length present"));
            }
            if self.te_chunked_twice {
                return Err(bad("Transfer-Encoding: chunked applied twice"));
            }
            if self.te_chunked_not_last {
                return Err(bad("Transfer-Encoding: chunked is not the final coding"));
            }
            if self.te_unknown {
                return Err(HttpError::new(501, "Unsupported transfer coding"));
            }
            if !self.te_chunked {
                return Err(bad("Empty Transfer-Encoding"));
            }
            return Ok(BodyKind::Chunked);
        }
        Ok(match self.content_length {
            Some(n) => BodyKind::Length(n),
            None => BodyKind::None,
        })
    }
}

/// Parse a request head from the start of `buf`.
///
/// `Ok(None)`: need more bytes. `Ok(Some((head, consumed)))`: `consumed` is
/// the number of bytes of the head, including leading empty lines and the
/// final CRLFCRLF; the body (or the next pipelined request) starts there.
///
/// Returns an error as soon as the (possibly still incomplete) head breaks a
/// rule: 400 for malformed input or a too-long request line, 431 for too
/// many / too large header fields or an oversized head, 417 for an
/// unsupported `Expect`, 501 for an unsupported transfer coding.
pub fn parse_request_head(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    HeadParser::new().parse(buf, limits)
}

/// Tokenize and validate a head known to end at `end` with `fields` header lines.
fn parse_complete_head(
    buf: &[u8],
    end: usize,
    fields: usize,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let head_bytes = buf.get(..end).unwrap_or_default();

    // Exactly one slot per header line (the scan counted them); uninitialized
    // slots avoid zeroing the array on every request.
    let mut stack_slots;
    let mut heap_slots: Vec<MaybeUninit<httparse::Header<'_>>>;
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if fields <= STACK_HEADERS {
        stack_slots = [MaybeUninit::uninit(); STACK_HEADERS];
        stack_slots.get_mut(..fields).unwrap_or_default()
    } else {
        heap_slots = (0..fields).map(|_| MaybeUninit::uninit()).collect();
        &mut heap_slots
    };

    let mut req = httparse::Request::new(&mut []);
    match req
        .parse_with_uninit_headers(head_bytes, slots)
        .map_err(map_httparse_error)?
    {
        httparse::Status::Complete(n) if n == end => {}
        _ => return Err(bad("Malformed request head")),
    }

    let method = req.method.unwrap_or_default();
    validate_method(method)?;
    let raw_target = req.path.unwrap_or_default().as_bytes();
    let target_ascii = match check_text(raw_target, 0x21, false) {
        Some(ascii) if !raw_target.is_empty() => ascii,
        _ => return Err(bad("Invalid request target")),
    };
    let minor_version = match req.version {
        Some(v @ (0 | 1)) => v,
        _ => return Err(bad("Invalid HTTP version")),
    };

    let mut framing = Framing::default();
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(bad("Invalid header name"));
        }
        let value = trim_ows(h.value);
        let Some(ascii) = check_text(value, 0x20, true) else {
            return Err(bad(format!("Invalid header value in {name}")));
        };
        framing.observe(name, value, minor_version)?;
        headers.push((name.to_owned(), latin1(value, ascii)));
    }

    if framing.host_count > 1 {
        return Err(bad("Multiple Host headers"));
    }
    let body = framing.body(minor_version)?;
    if framing.expect_bad {
        return Err(HttpError::new(417, "Unsupported Expect value"));
    }
    let keep_alive = if minor_version == 1 {
        !framing.conn_close
    } else {
        framing.conn_keep_alive && !framing.conn_close
    };

    let target = latin1(raw_target, target_ascii);
    let (path, query) = split_target(&target);
    let (path, query) = (path.to_owned(), query.to_owned());

    Ok(Some((
        RequestHead {
            method: method.to_owned(),
            target,
            path,
            query,
            minor_version,
            headers,
            body,
            keep_alive,
            expect_continue: framing.expect_continue,
        },
        end,
    )))
}

// ---------------------------------------------------------------------------
// Chunked body decoding
// ---------------------------------------------------------------------------

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
}

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
        }
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
                _ if is_tchar(b) => self.state = S::TrailerName,
                _ => return Err(self.fail("invalid trailer field")),
            },
            S::TrailerName => match b {
                _ if is_tchar(b) => {}
                b':' => self.state = S::TrailerValue,
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

    fn lim() -> Limits {
        Limits::default()
    }

    /// Printable, length-bounded rendering of test input for messages.
    fn show(s: &[u8]) -> String {
        let shown = String::from_utf8_lossy(&s[..s.len().min(120)]).into_owned();
        format!("{shown:?} ({} bytes)", s.len())
    }

    fn parse(s: &[u8]) -> Result<Option<(RequestHead, usize)>, HttpError> {
        parse_request_head(s, &lim())
    }

    /// Parse a complete head that must be accepted and span the whole input.
    fn ok(s: &[u8]) -> RequestHead {
        match parse(s) {
            Ok(Some((h, n))) => {
                assert_eq!(n, s.len(), "consumed");
                h
            }
            other => panic!("expected Ok(Some), got {other:?} for {}", show(s)),
        }
    }

    fn status_with(s: &[u8], l: &Limits) -> u16 {
        match parse_request_head(s, l) {
            Err(e) => {
                assert_eq!(e.reason, reason_phrase(e.status));
                e.status
            }
            Ok(other) => panic!("expected error, got {other:?} for {}", show(s)),
        }
    }

    fn status(s: &[u8]) -> u16 {
        status_with(s, &lim())
    }

    fn req(headers: &str) -> Vec<u8> {
        format!("POST /p HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes()
    }

    // ---- basics ----

    #[test]
    fn simple_get() {
        let h = ok(b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n");
        assert_eq!(h.method, "GET");
        assert_eq!(h.target, "/a/b?x=1&y=2");
        assert_eq!(h.path, "/a/b");
        assert_eq!(h.query, "x=1&y=2");
        assert_eq!(h.minor_version, 1);
        assert_eq!(
            h.headers,
            vec![
                ("Host".to_string(), "example.com".to_string()),
                ("Accept".to_string(), "*/*".to_string())
            ]
        );
        assert_eq!(h.body, BodyKind::None);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        assert_eq!(h.header("host"), Some("example.com"));
    }

    #[test]
    fn no_headers() {
        let h = ok(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.minor_version, 0);
        assert!(h.headers.is_empty());
        assert!(!h.keep_alive);
    }

    #[test]
    fn header_case_and_ows_trim() {
        let h = ok(b"GET / HTTP/1.1\r\nX-MiXeD:   \t spaced value \t \r\nX-Empty:\r\n\r\n");
        assert_eq!(h.headers[0], ("X-MiXeD".into(), "spaced value".into()));
        assert_eq!(h.headers[1], ("X-Empty".into(), "".into()));
    }

    #[test]
    fn underscore_header_kept() {
        let h = ok(b"GET / HTTP/1.1\r\nX_Forwarded_For: 1.2.3.4\r\n\r\n");
        assert_eq!(h.headers[0].0, "X_Forwarded_For");
    }

    #[test]
    fn latin1_header_value() {
        let h = ok(b"GET / HTTP/1.1\r\nX-Name: caf\xe9 \xff\x80\r\n\r\n");
        assert_eq!(h.headers[0].1, "caf\u{e9} \u{ff}\u{80}");
        assert_eq!(h.headers[0].1.chars().count(), 7);
    }

    #[test]
    fn byte_at_a_time() {
        let full: &[u8] = b"POST /upload?a=b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
        let head_len = full.len() - 5;
        for n in 0..head_len {
            assert!(
                matches!(parse(&full[..n]), Ok(None)),
                "prefix {n} should be incomplete"
            );
        }
        for n in head_len..=full.len() {
            let (h, c) = parse(&full[..n]).unwrap().unwrap();
            assert_eq!(c, head_len);
            assert_eq!(h.body, BodyKind::Length(5));
        }
    }

    #[test]
    fn pipelined() {
        let buf: &[u8] =
            b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: b\r\n\r\n";
        let (h1, c1) = parse(buf).unwrap().unwrap();
        assert_eq!(h1.path, "/one");
        assert_eq!(&buf[c1..c1 + 8], b"GET /two");
        let (h2, c2) = parse(&buf[c1..]).unwrap().unwrap();
        assert_eq!(h2.path, "/two");
        assert_eq!(c1 + c2, buf.len());
    }

    #[test]
    fn leading_crlf_accepted() {
        let buf: &[u8] = b"\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let (h, c) = parse(buf).unwrap().unwrap();
        assert_eq!(h.method, "GET");
        assert_eq!(c, buf.len());
        assert!(matches!(parse(b"\r\n"), Ok(None)));
        assert!(matches!(parse(b"\r\n\r"), Ok(None)));
        assert_eq!(status(b"\nGET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"\r\rGET / HTTP/1.1\r\n\r\n"), 400);
    }

    // ---- targets ----

    #[test]
    fn absolute_form() {
        let h = ok(b"GET http://example.com:8080/p/q?x=1#frag HTTP/1.1\r\n\r\n");
        assert_eq!(h.target, "http://example.com:8080/p/q?x=1#frag");
        assert_eq!(h.path, "/p/q");
        assert_eq!(h.query, "x=1");
        let h = ok(b"GET https://example.com HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, "");
        assert_eq!(h.query, "");
        let h = ok(b"GET http://example.com?a HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, "");
        assert_eq!(h.query, "a");
    }

    #[test]
    fn fragment_and_query() {
        let h = ok(b"GET /p?a=1#frag?x HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, "/p");
        assert_eq!(h.query, "a=1");
        let h = ok(b"GET /p#frag?x HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, "/p");
        assert_eq!(h.query, "");
        let h = ok(b"GET /p?a=1?b=2 HTTP/1.1\r\n\r\n");
        assert_eq!(h.query, "a=1?b=2");
        let h = ok(b"GET //double/slash HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, "//double/slash");
    }

    #[test]
    fn asterisk_and_authority_form() {
        let h = ok(b"OPTIONS * HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, "*");
        assert_eq!(h.query, "");
        let h = ok(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n");
        assert_eq!(h.target, "example.com:443");
        assert_eq!(h.path, "example.com:443");
    }

    #[test]
    fn non_ascii_target_is_latin1() {
        let h = ok("GET /caf\u{e9} HTTP/1.1\r\n\r\n".as_bytes());
        assert_eq!(h.target, "/caf\u{c3}\u{a9}");
        assert_eq!(h.path.chars().count(), 6);
    }

    #[test]
    fn bad_targets() {
        assert_eq!(status(b"GET  HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a b HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a\x01b HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a\x7fb HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a\tb HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a\x00 HTTP/1.1\r\n\r\n"), 400);
    }

    // ---- request line ----

    #[test]
    fn malformed_request_lines() {
        for line in [
            &b"GET /\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET / HTTP/1.1 junk\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 \r\n\r\n",
            b" GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.2\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.10\r\n\r\n",
            b"GET / http/1.1\r\n\r\n",
            b"GET / HTTP/1\r\n\r\n",
            b"GET /\rHTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(status(line), 400, "{:?}", String::from_utf8_lossy(line));
        }
        // An invalid version is rejected before the head is complete.
        assert_eq!(status(b"GET / HTTP/2"), 400);
    }

    #[test]
    fn methods() {
        for m in [
            "GET",
            "POST",
            "PROPFIND",
            "M-SEARCH",
            "PATCH",
            "X!$%&'*+.^_`|~Y",
        ] {
            let h = ok(format!("{m} / HTTP/1.1\r\n\r\n").as_bytes());
            assert_eq!(h.method, m);
        }
        for m in [
            "get",
            "Get",
            "GE",
            "AAAAAAAAAAAAAAAAAAAAA",
            "G#T",
            "GE\"T",
            "G(T",
        ] {
            assert_eq!(
                status(format!("{m} / HTTP/1.1\r\n\r\n").as_bytes()),
                400,
                "{m}"
            );
        }
        // 20 chars is still fine
        ok(b"AAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\n\r\n");
    }

    // ---- line endings / header syntax ----

    #[test]
    fn bare_lf_rejected() {
        assert_eq!(status(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nX: a\nb\r\n\r\n"), 400);
        // Rejected even while incomplete.
        assert_eq!(status(b"GET / HTTP/1.1\nHost"), 400);
    }

    #[test]
    fn bare_cr_rejected() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nX\r: a\r\n\r\n"), 400);
    }

    #[test]
    fn control_chars_in_headers() {
        ok(b"GET / HTTP/1.1\r\nX: a\tb\r\n\r\n");
        for v in [0u8, 1, 8, 0x0b, 0x0c, 0x1f, 0x7f] {
            let mut buf = b"GET / HTTP/1.1\r\nX: a".to_vec();
            buf.push(v);
            buf.extend_from_slice(b"b\r\n\r\n");
            assert_eq!(status(&buf), 400, "value byte {v:#x}");
            let mut buf = b"GET / HTTP/1.1\r\nX".to_vec();
            buf.push(v);
            buf.extend_from_slice(b"Y: b\r\n\r\n");
            assert_eq!(status(&buf), 400, "name byte {v:#x}");
        }
    }

    #[test]
    fn header_name_rules() {
        ok(b"GET / HTTP/1.1\r\nX-Ok!#$%&'*+.^_`|~: v\r\n\r\n");
        assert_eq!(status(b"GET / HTTP/1.1\r\nX Y: v\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nX(Y): v\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\n: v\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nNoColon\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nX\xe9: v\r\n\r\n"), 400);
    }

    #[test]
    fn whitespace_before_colon() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nContent-Length\t: 5\r\n\r\n"),
            400
        );
    }

    #[test]
    fn obs_fold_rejected() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\n X: a\r\n\r\n"), 400);
        ok(b"GET / HTTP/1.1\r\nX: a b\r\n\r\n");
    }

    // ---- Content-Length ----

    #[test]
    fn content_length_valid() {
        assert_eq!(
            ok(&req("Content-Length: 42\r\n")).body,
            BodyKind::Length(42)
        );
        assert_eq!(ok(&req("content-length:0\r\n")).body, BodyKind::Length(0));
        assert_eq!(
            ok(&req("Content-Length:  007 \r\n")).body,
            BodyKind::Length(7)
        );
        assert_eq!(
            ok(&req("Content-Length: 18446744073709551615\r\n")).body,
            BodyKind::Length(u64::MAX)
        );
    }

    #[test]
    fn content_length_invalid() {
        for v in [
            "+5",
            "-5",
            "5 5",
            "5,5",
            "0x10",
            "",
            "5a",
            "1.0",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            assert_eq!(
                status(&req(&format!("Content-Length: {v}\r\n"))),
                400,
                "{v:?}"
            );
        }
    }

    #[test]
    fn content_length_duplicate() {
        assert_eq!(
            status(&req("Content-Length: 5\r\nContent-Length: 5\r\n")),
            400
        );
        assert_eq!(
            status(&req("Content-Length: 5\r\ncontent-length: 6\r\n")),
            400
        );
    }

    // ---- Transfer-Encoding ----

    #[test]
    fn te_chunked_accepted() {
        assert_eq!(
            ok(&req("Transfer-Encoding: chunked\r\n")).body,
            BodyKind::Chunked
        );
        assert_eq!(
            ok(&req("transfer-encoding: ChUnKeD\r\n")).body,
            BodyKind::Chunked
        );
        assert_eq!(
            ok(&req("Transfer-Encoding: chunked , \r\n")).body,
            BodyKind::Chunked
        );
    }

    #[test]
    fn te_with_content_length() {
        assert_eq!(
            status(&req("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")),
            400
        );
        assert_eq!(
            status(&req("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")),
            400
        );
        assert_eq!(
            status(&req("Content-Length: 5\r\nTransfer-Encoding: gzip\r\n")),
            400
        );
    }

    #[test]
    fn te_chunked_not_last() {
        assert_eq!(status(&req("Transfer-Encoding: chunked, gzip\r\n")), 400);
        assert_eq!(
            status(&req(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"
            )),
            400
        );
    }

    #[test]
    fn te_chunked_twice() {
        assert_eq!(status(&req("Transfer-Encoding: chunked, chunked\r\n")), 400);
        assert_eq!(
            status(&req(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
            )),
            400
        );
    }

    #[test]
    fn te_unknown_coding() {
        for v in [
            "gzip",
            "gzip, chunked",
            "identity",
            "deflate, chunked",
            "compress",
            "foo",
            "chunked;q=1",
        ] {
            assert_eq!(
                status(&req(&format!("Transfer-Encoding: {v}\r\n"))),
                501,
                "{v}"
            );
        }
        assert_eq!(
            status(&req(
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
            )),
            501
        );
    }

    #[test]
    fn te_empty() {
        assert_eq!(status(&req("Transfer-Encoding: \r\n")), 400);
        assert_eq!(status(&req("Transfer-Encoding: , ,\r\n")), 400);
    }

    #[test]
    fn te_http10() {
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        let h = ok(b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(3));
    }

    // ---- Expect ----

    #[test]
    fn expect_header() {
        let h = ok(&req("Expect: 100-continue\r\n"));
        assert!(h.expect_continue);
        let h = ok(&req("expect: 100-CONTINUE\r\n"));
        assert!(h.expect_continue);
        assert_eq!(status(&req("Expect: 200-ok\r\n")), 417);
        assert_eq!(status(&req("Expect: 100-continue, foo\r\n")), 417);
        assert_eq!(status(&req("Expect:\r\n")), 417);
        // Ignored for HTTP/1.0.
        let h = ok(b"POST / HTTP/1.0\r\nExpect: whatever\r\n\r\n");
        assert!(!h.expect_continue);
        let h = ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
        assert!(!h.expect_continue);
    }

    // ---- Host ----

    #[test]
    fn host_header() {
        ok(b"GET / HTTP/1.1\r\n\r\n");
        ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    }

    // ---- Connection ----

    #[test]
    fn connection_keep_alive() {
        assert!(ok(b"GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n").keep_alive);
        assert!(ok(b"GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n").keep_alive);
        assert!(ok(b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: keep-alive, Upgrade\r\n\r\n").keep_alive);
        assert!(
            !ok(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n")
                .keep_alive
        );
    }

    // ---- limits ----

    #[test]
    fn request_line_limit() {
        let l = Limits {
            max_line: 20,
            ..Limits::default()
        };
        // "GET /123456 HTTP/1.1" is exactly 20 bytes.
        let exact: &[u8] = b"GET /123456 HTTP/1.1\r\n\r\n";
        assert!(matches!(parse_request_head(exact, &l), Ok(Some(_))));
        let over: &[u8] = b"GET /1234567 HTTP/1.1\r\n\r\n";
        let e = parse_request_head(over, &l).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.reason, "Bad Request");
        assert!(
            e.detail.contains("Request Line is too large"),
            "{}",
            e.detail
        );
        // Incomplete but already over the limit.
        assert_eq!(status_with(b"GET /aaaaaaaaaaaaaaaaaaaaaaa", &l), 400);
        // Incomplete and not yet over: wait.
        assert!(matches!(
            parse_request_head(b"GET /123456 HTTP/1.1\r", &l),
            Ok(None)
        ));
        // Unlimited.
        let l0 = Limits {
            max_line: 0,
            ..Limits::default()
        };
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(10_000));
        assert!(matches!(
            parse_request_head(long.as_bytes(), &l0),
            Ok(Some(_))
        ));
        assert_eq!(status(long.as_bytes()), 400);
    }

    #[test]
    fn field_count_limit() {
        let l = Limits {
            max_fields: 3,
            ..Limits::default()
        };
        let three: &[u8] = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(
            parse_request_head(three, &l)
                .unwrap()
                .unwrap()
                .0
                .headers
                .len(),
            3
        );
        let four: &[u8] = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert_eq!(status_with(four, &l), 431);
        // Incomplete: the 4th line has started.
        assert_eq!(
            status_with(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD", &l),
            431
        );
        assert!(matches!(
            parse_request_head(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r", &l),
            Ok(None)
        ));
    }

    #[test]
    fn many_fields_heap_path() {
        let l = Limits {
            max_fields: 500,
            ..Limits::default()
        };
        let mut s = String::from("GET / HTTP/1.1\r\n");
        for i in 0..300 {
            s.push_str(&format!("X-H{i}: v{i}\r\n"));
        }
        s.push_str("\r\n");
        let (h, _) = parse_request_head(s.as_bytes(), &l).unwrap().unwrap();
        assert_eq!(h.headers.len(), 300);
        assert_eq!(h.headers[299], ("X-H299".into(), "v299".into()));
        assert_eq!(status(s.as_bytes()), 431);
    }

    #[test]
    fn field_size_limit() {
        let l = Limits {
            max_field_size: 10,
            ..Limits::default()
        };
        // "X: 1234567" is 10 bytes.
        assert!(matches!(
            parse_request_head(b"GET / HTTP/1.1\r\nX: 1234567\r\n\r\n", &l),
            Ok(Some(_))
        ));
        assert_eq!(
            status_with(b"GET / HTTP/1.1\r\nX: 12345678\r\n\r\n", &l),
            431
        );
        assert_eq!(status_with(b"GET / HTTP/1.1\r\nX: 12345678", &l), 431);
        assert!(matches!(
            parse_request_head(b"GET / HTTP/1.1\r\nX: 1234567\r", &l),
            Ok(None)
        ));
    }

    #[test]
    fn max_fields_zero_means_max() {
        let l = Limits {
            max_fields: 0,
            ..Limits::default()
        };
        assert_eq!(l.effective_max_fields(), MAX_HEADER_FIELDS);
        let l = Limits {
            max_fields: 1_000_000,
            ..Limits::default()
        };
        assert_eq!(l.effective_max_fields(), MAX_HEADER_FIELDS);
    }

    #[test]
    fn whole_head_cap() {
        let l = Limits {
            max_line: 0,
            max_fields: 100,
            max_field_size: 0,
        };
        assert_eq!(l.head_cap(), UNLIMITED_HEAD_CAP);
        // Many moderately sized headers, never complete: stops at the cap.
        let mut s = String::from("GET / HTTP/1.1\r\n");
        while s.len() <= UNLIMITED_HEAD_CAP {
            s.push_str(&format!("X: {}\r\n", "v".repeat(1000)));
        }
        assert_eq!(status_with(s.as_bytes(), &l), 431);
        // Endless leading CRLFs are bounded too.
        let crlfs = "\r\n".repeat(513);
        assert_eq!(status_with(crlfs.as_bytes(), &l), 400);
        assert_eq!(status(crlfs.as_bytes()), 400);
        let crlfs = format!("{}GET / HTTP/1.1\r\n\r\n", "\r\n".repeat(512));
        assert!(matches!(parse(crlfs.as_bytes()), Ok(Some(_))));
        // A single huge incomplete header line with unlimited field size.
        let huge = format!("GET / HTTP/1.1\r\nX: {}", "v".repeat(UNLIMITED_HEAD_CAP));
        assert_eq!(status_with(huge.as_bytes(), &l), 431);
        // Below the cap it just waits.
        let small = format!("GET / HTTP/1.1\r\nX: {}", "v".repeat(30_000));
        assert!(matches!(parse_request_head(small.as_bytes(), &l), Ok(None)));
        // Default limits give a finite cap larger than any legal head.
        let d = Limits::default();
        assert!(d.head_cap() >= 4094 + 100 * 8192);
    }

    // ---- internals: word-at-a-time helpers agree with the obvious code ----

    #[test]
    fn swar_helpers_match_naive() {
        let mut seed: u64 = 0x1234_5678_9abc_def1;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let interesting = [
            0u8, 1, 8, 9, 0x0a, 0x0d, 0x1f, 0x20, 0x21, 0x7e, 0x7f, 0x80, 0xfe, 0xff,
        ];
        for _ in 0..50_000 {
            let len = (next() % 40) as usize;
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 4 == 0 {
                        interesting[(r >> 8) as usize % interesting.len()]
                    } else {
                        b'a' + (r >> 8) as u8 % 26
                    }
                })
                .collect();
            for needle in [b'\n', 0u8, 0xff] {
                assert_eq!(
                    find_byte(&v, needle),
                    v.iter().position(|&b| b == needle),
                    "{v:?} {needle}"
                );
            }
            for (lowest, htab) in [(0x20u8, true), (0x21, false)] {
                let naive_ok = v
                    .iter()
                    .all(|&b| (b >= lowest && b != 0x7f) || (htab && b == b'\t'));
                let expect = if naive_ok { Some(v.is_ascii()) } else { None };
                assert_eq!(check_text(&v, lowest, htab), expect, "{v:?}");
            }
        }
    }

    #[test]
    fn incomplete_head_rejected_early() {
        // Lowercase method: known bad as soon as the method is delimited.
        assert_eq!(status(b"get /"), 400);
        // Bad version before the line is even complete.
        assert_eq!(status(b"GET / HTTX"), 400);
        // Malformed first header line, head not yet complete.
        assert_eq!(status(b"GET / HTTP/1.1\r\nBad Name: x\r\n"), 400);
        // Bad incomplete input never yields Ok(Some) when fed byte by byte.
        let bad_head: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n";
        let mut saw_err = false;
        for n in 0..=bad_head.len() {
            match parse(&bad_head[..n]) {
                Ok(None) => assert!(!saw_err),
                Err(e) => {
                    assert_eq!(e.status, 400);
                    saw_err = true;
                }
                Ok(Some(_)) => panic!("accepted bad head at {n}"),
            }
        }
        assert!(saw_err);
    }

    // ---- resumable HeadParser ----

    #[test]
    fn head_parser_incremental_matches_stateless() {
        let full: &[u8] = b"\r\nPOST /up?x=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
        let head_len = full.len() - b"5\r\nhello\r\n".len();
        let mut p = HeadParser::new();
        for n in 0..head_len {
            assert!(
                matches!(p.parse(&full[..n], &lim()), Ok(None)),
                "prefix {n}"
            );
        }
        let (h, c) = p.parse(&full[..head_len], &lim()).unwrap().unwrap();
        assert_eq!(c, head_len);
        assert_eq!(h.path, "/up");
        assert_eq!(h.query, "x=1");
        assert_eq!(h.body, BodyKind::Chunked);
        // Reset after success: reusable for the next request in a new buffer.
        let (h2, c2) = p
            .parse(b"GET /next HTTP/1.1\r\n\r\n", &lim())
            .unwrap()
            .unwrap();
        assert_eq!(h2.path, "/next");
        assert_eq!(c2, 22);
    }

    #[test]
    fn head_parser_errors_and_limits_incrementally() {
        let l = Limits {
            max_line: 100,
            max_fields: 2,
            max_field_size: 20,
        };
        // Too many fields, detected on the 3rd header line while incomplete.
        let bad_head: &[u8] = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC";
        let mut p = HeadParser::new();
        let mut results = Vec::new();
        for n in 0..=bad_head.len() {
            results.push(p.parse(&bad_head[..n], &l).map(|r| r.is_some()));
        }
        assert_eq!(results.last().cloned(), Some(Err(too_many_fields(2))));
        assert!(results[..results.len() - 1]
            .iter()
            .all(|r| matches!(r, Ok(false))));
        // Bare LF in a later line, fed in two pieces.
        let mut p = HeadParser::new();
        assert!(matches!(p.parse(b"GET / HTTP/1.1\r\nA: 1", &l), Ok(None)));
        assert_eq!(
            p.parse(b"GET / HTTP/1.1\r\nA: 1\nB: 2\r\n\r\n", &l)
                .unwrap_err()
                .status,
            400
        );
        // Field too large, growing a line one byte at a time.
        let mut p = HeadParser::new();
        let mut buf = b"GET / HTTP/1.1\r\nX: ".to_vec();
        buf.extend_from_slice(&[b'v'; 30]);
        let mut status = None;
        for n in 17..=buf.len() {
            if let Err(e) = p.parse(&buf[..n], &l) {
                status = Some((e.status, n));
                break;
            }
        }
        // "X: " + 18 'v' = 21 bytes > 20.
        assert_eq!(status, Some((431, 16 + 21)));
    }

    #[test]
    fn head_parser_resets_on_shrunk_buffer() {
        let mut p = HeadParser::new();
        assert!(matches!(
            p.parse(b"GET /a HTTP/1.1\r\nHost: x\r\n", &lim()),
            Ok(None)
        ));
        // A different, shorter buffer: parser notices and starts over.
        let (h, c) = p
            .parse(b"GET /b HTTP/1.1\r\n\r\n", &lim())
            .unwrap()
            .unwrap();
        assert_eq!(h.path, "/b");
        assert_eq!(c, 19);
    }

    #[test]
    fn head_parser_large_head_in_small_steps() {
        let l = Limits::default();
        let mut s = String::from("GET / HTTP/1.1\r\n");
        for i in 0..100 {
            s.push_str(&format!("X-{i}: {}\r\n", "v".repeat(8000)));
        }
        s.push_str("\r\n");
        let bytes = s.as_bytes();
        let mut p = HeadParser::new();
        let mut done = None;
        let mut n = 0;
        while n < bytes.len() {
            n = (n + 97).min(bytes.len());
            if let Some((h, c)) = p.parse(&bytes[..n], &l).unwrap() {
                done = Some((h.headers.len(), c));
                break;
            }
        }
        assert_eq!(done, Some((100, bytes.len())));
    }

    #[test]
    fn leading_crlf_split_across_calls() {
        let mut p = HeadParser::new();
        assert!(matches!(p.parse(b"\r", &lim()), Ok(None)));
        assert!(matches!(p.parse(b"\r\n", &lim()), Ok(None)));
        assert!(matches!(p.parse(b"\r\n\r", &lim()), Ok(None)));
        assert!(matches!(p.parse(b"\r\n\r\nGE", &lim()), Ok(None)));
        let (h, c) = p
            .parse(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", &lim())
            .unwrap()
            .unwrap();
        assert_eq!(h.method, "GET");
        assert_eq!(c, 22);
        let mut p = HeadParser::new();
        assert!(matches!(p.parse(b"\r", &lim()), Ok(None)));
        assert_eq!(p.parse(b"\rX", &lim()).unwrap_err().status, 400);
    }

    #[test]
    fn head_parser_agrees_with_stateless_on_random_input() {
        let mut seed: u64 = 0xdead_beef_cafe_f00d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces: [&[u8]; 14] = [
            b"GET / HTTP/1.1\r\n",
            b"POST /x?y HTTP/1.0\r\n",
            b"Host: a\r\n",
            b"Content-Length: 3\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"X: \xe9\r\n",
            b"\r\n",
            b"\n",
            b"\r",
            b" ",
            b"get ",
            b"A:b",
            b"\x01",
            b"Connection: close\r\n",
        ];
        let l = Limits {
            max_line: 40,
            max_fields: 4,
            max_field_size: 30,
        };
        let summarize = |r: Result<Option<(RequestHead, usize)>, HttpError>| match r {
            Ok(None) => (0u16, 0usize),
            Ok(Some((_, c))) => (200, c),
            Err(e) => (e.status, 0),
        };
        for _ in 0..3000 {
            let count = 1 + next() % 8;
            let mut buf = Vec::new();
            for _ in 0..count {
                buf.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let mut p = HeadParser::new();
            let mut n = 0;
            loop {
                n = (n + 1 + (next() % 5) as usize).min(buf.len());
                let inc = summarize(p.parse(&buf[..n], &l));
                let fresh = summarize(parse_request_head(&buf[..n], &l));
                assert_eq!(inc, fresh, "{} at {n}", show(&buf));
                if inc.0 != 0 || n == buf.len() {
                    break;
                }
            }
        }
    }

    // ---- fuzz-ish: never panic ----

    #[test]
    fn no_panic_on_garbage() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet: &[u8] = b"GET /?#:\r\n \tHTTP/1.01abcXYZ\x00\x7f\xff,;=\"chunked";
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = parse(&buf);
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let _ = d.decode(&buf, &mut out);
        }
    }

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

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(400), "Bad Request");
        assert_eq!(reason_phrase(417), "Expectation Failed");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(501), "Not Implemented");
        assert_eq!(reason_phrase(999), "Unknown");
        let e = HttpError::new(501, "x");
        assert_eq!(e.to_string(), "501 Not Implemented: x");
    }

    /// Best-of-batches mean time of `f`, in ns (the minimum filters out
    /// noise from other processes on a shared machine).
    fn best_ns(iters_per_batch: u32, mut f: impl FnMut()) -> f64 {
        let mut best = f64::MAX;
        for _ in 0..30 {
            let t = std::time::Instant::now();
            for _ in 0..iters_per_batch {
                f();
            }
            best = best.min(t.elapsed().as_nanos() as f64 / f64::from(iters_per_batch));
        }
        best
    }

    /// Timing (release): `cargo test --release -- --ignored --nocapture bench_parse`.
    #[test]
    #[ignore]
    fn bench_parse() {
        use std::hint::black_box;
        let heads: [(&str, &[u8]); 3] = [
            (
                "typical GET, 5 headers",
                b"GET /api/v1/items/12345?page=2 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\r\n",
            ),
            (
                "browser GET, 8 headers",
                b"GET /api/v1/items/12345?include=details&page=2 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\
Cookie: session=abcdef0123456789\r\n\r\n",
            ),
            (
                "minimal GET, 1 header",
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
            ),
        ];
        let l = Limits::default();
        for (name, buf) in heads {
            let full = best_ns(20_000, || {
                black_box(parse_request_head(black_box(buf), &l).unwrap());
            });
            let tokenize_only = best_ns(20_000, || {
                let mut slots = [httparse::EMPTY_HEADER; 16];
                let mut r = httparse::Request::new(&mut slots);
                black_box(r.parse(black_box(buf)).unwrap());
                black_box(&r);
            });
            // httparse plus the owned Strings that the RequestHead API needs
            // (method, target, path, query, one name + value per header):
            // the floor for any implementation of this API on top of httparse.
            let floor = best_ns(20_000, || {
                let mut slots = [httparse::EMPTY_HEADER; 16];
                let mut r = httparse::Request::new(&mut slots);
                black_box(r.parse(black_box(buf)).unwrap());
                let t = r.path.unwrap_or_default();
                let hs: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8(h.value.to_vec()).unwrap(),
                        )
                    })
                    .collect();
                let owned = (r.method.unwrap_or_default().to_owned(), t.to_owned());
                black_box((owned, t.to_owned(), t.to_owned(), hs));
            });
            println!(
                "parse_request_head, {name}, {} bytes: {full:.0} ns \
                 (httparse alone: {tokenize_only:.0} ns; httparse + the API's allocations: {floor:.0} ns)",
                buf.len()
            );
        }

        let mut body = Vec::new();
        for _ in 0..64 {
            body.extend_from_slice(b"400\r\n");
            body.extend_from_slice(&[b'x'; 0x400]);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        let mut out = Vec::with_capacity(70_000);
        let per = best_ns(500, || {
            out.clear();
            let mut d = ChunkedDecoder::new();
            black_box(d.decode(black_box(&body), &mut out).unwrap());
        });
        println!("ChunkedDecoder: 64 x 1 KiB chunks, {per:.0} ns per 64 KiB body");
    }
}
