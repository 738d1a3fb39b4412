//! Request-head parsing: the request line and header fields, tokenized by
//! httparse and checked strictly (bounded while incomplete, framing
//! validated), incrementally per connection ([`HeadParser`]).

use std::mem::MaybeUninit;

use super::bytes::*;
use super::*;

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
            Ok(HeadScan::Complete { end, fields }) => parse_complete_head(buf, end, fields, limits),
            Ok(HeadScan::Incomplete) => {
                if self.early_ok {
                    return Ok(None);
                }
                match check_head_early(buf, &limits.leniency) {
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

        // One empty line (CRLF only) before the request line is ignored
        // (RFC 9112 §2.2), and only one, as by gunicorn 27.
        while !self.started {
            let pos = self.line_start;
            match buf.get(pos) {
                Some(b'\r') if pos > 0 => {
                    return Err(bad("More than one empty line before the request line"))
                }
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
                    if limits.max_line != 0 && partial > limits.line_limit() {
                        return Err(request_line_too_large(partial, limits.line_limit()));
                    }
                } else if partial > 0 {
                    if self.fields + 1 > max_fields {
                        return Err(too_many_fields(max_fields));
                    }
                    // Its CRLF is still to come.
                    if partial + 2 > limits.field_size_limit() {
                        return Err(field_too_large(partial + 2, limits.field_size_limit()));
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
                if limits.max_line != 0 && line_len > limits.line_limit() {
                    return Err(request_line_too_large(line_len, limits.line_limit()));
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
                // gunicorn counts the CRLF too.
                if line_len + 2 > limits.field_size_limit() {
                    return Err(field_too_large(line_len + 2, limits.field_size_limit()));
                }
            }
            self.line_start = next;
            self.search_from = next;
        }
    }
}

/// 414, as gunicorn answers a request line over `limit_request_line`.
fn request_line_too_large(len: usize, max: usize) -> HttpError {
    HttpError::new(414, format!("Request Line is too large ({len} > {max})"))
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
fn check_head_early(buf: &[u8], leniency: &Leniency) -> Result<bool, HttpError> {
    if leniency.obsolete_folding || leniency.strip_header_spaces || leniency.unconventional_version
    {
        // What these allow httparse refuses until the head is rewritten,
        // which needs all of it (the head is still bounded by the limits).
        return Ok(false);
    }
    let mut req = httparse::Request::new(&mut []);
    let settled = match req.parse(buf) {
        // TooManyHeaders: the request line and one whole header line parsed
        // (there are no slots to store it).
        Err(httparse::Error::TooManyHeaders) => true,
        Ok(_) => false,
        Err(e) => return Err(map_httparse_error(e)),
    };
    if let Some(m) = req.method {
        validate_method(m, leniency)?;
    }
    Ok(settled)
}

/// gunicorn-style method check: a token of 3..=20 chars with no lowercase
/// letters and no `#`; with `permit_unconventional_http_method`, any token.
fn validate_method(m: &str, leniency: &Leniency) -> Result<(), HttpError> {
    let b = m.as_bytes();
    let ok = if leniency.unconventional_method {
        !b.is_empty() && b.iter().all(|&c| is_tchar(c))
    } else {
        (3..=20).contains(&b.len())
            && b.iter()
                .all(|&c| is_tchar(c) && !c.is_ascii_lowercase() && c != b'#')
    };
    if ok {
        Ok(())
    } else {
        Err(bad(format!("Invalid HTTP method: {:?}", m)))
    }
}

/// Per-request framing state collected while walking the headers.
#[derive(Default)]
struct Framing {
    /// The one `Content-Length` value, parsed (checked only when no
    /// `Transfer-Encoding` frames the body, as by gunicorn).
    content_length: Option<Result<u64, HttpError>>,
    content_length_count: usize,
    te_present: bool,
    te_chunked: bool,
    /// A gzip/deflate/compress coding under the chunked one: the body is
    /// de-chunked and passed on coded, and the connection closed after it.
    te_close: bool,
    /// The first framing error in header order (`Content-Length` twice, a
    /// coding after chunked, an unknown coding): reported after the
    /// per-header checks, as gunicorn reports it.
    framing_error: Option<HttpError>,
    host_seen: bool,
    content_type_seen: bool,
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
            // Singleton fields (RFC 9110 §5.3): a repeat cannot be merged and
            // leaves the message ambiguous; refused, as by gunicorn 26.1+.
            4 if name.eq_ignore_ascii_case("host") => {
                if self.host_seen {
                    return Err(bad("Multiple Host headers"));
                }
                self.host_seen = true;
            }
            12 if name.eq_ignore_ascii_case("content-type") => {
                if self.content_type_seen {
                    return Err(bad("Multiple Content-Type headers"));
                }
                self.content_type_seen = true;
            }
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
                    self.framing(bad("Multiple Content-Length headers"));
                }
                self.content_length = Some(parse_content_length(value));
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => {
                self.te_present = true;
                self.observe_te(value);
            }
            _ => {}
        }
        Ok(())
    }

    /// Keep the first framing error.
    fn framing(&mut self, e: HttpError) {
        self.framing_error.get_or_insert(e);
    }

    /// One `Transfer-Encoding` line, coding by coding, as gunicorn 27 reads
    /// it: `chunked` once and last; `identity` and `gzip`, `deflate`,
    /// `compress` only before it (the latter close the connection after the
    /// request); anything else, an empty element included, is 501.
    fn observe_te(&mut self, value: &[u8]) {
        for coding in value.split(|&b| b == b',').map(trim_ows) {
            if self.framing_error.is_some() {
                return;
            }
            if coding.eq_ignore_ascii_case(b"chunked") {
                if self.te_chunked {
                    self.framing(bad("Transfer-Encoding: chunked applied twice"));
                }
                self.te_chunked = true;
            } else if coding.eq_ignore_ascii_case(b"identity") {
                if self.te_chunked {
                    self.framing(bad("Transfer-Encoding: chunked is not the final coding"));
                }
            } else if [&b"gzip"[..], b"deflate", b"compress"]
                .iter()
                .any(|c| coding.eq_ignore_ascii_case(c))
            {
                if self.te_chunked {
                    self.framing(bad("Transfer-Encoding: chunked is not the final coding"));
                }
                self.te_close = true;
            } else {
                self.framing(HttpError::new(501, "Unsupported transfer coding"));
            }
        }
    }

    fn body(&mut self, minor_version: u8) -> Result<BodyKind, HttpError> {
        if let Some(e) = self.framing_error.take() {
            return Err(e);
        }
        if self.te_present {
            if !self.te_chunked {
                return Err(bad("Transfer-Encoding does not end with chunked"));
            }
            if minor_version == 0 {
                return Err(bad("Transfer-Encoding is not allowed in HTTP/1.0"));
            }
            if self.content_length_count > 0 {
                return Err(bad("Both Transfer-Encoding and Content-Length present"));
            }
            return Ok(BodyKind::Chunked);
        }
        match self.content_length.take() {
            Some(n) => Ok(BodyKind::Length(n?)),
            None => Ok(BodyKind::None),
        }
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
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let sent = buf.get(..end).unwrap_or_default();
    // What the relaxing settings allow, rewritten into the strict form.
    let rewritten = lenient::rewrite(sent, &limits.leniency, limits.field_size_limit())?;
    let (head_bytes, fields, protocol) = match &rewritten {
        Some(r) => (&r.bytes[..], r.fields, r.protocol.clone()),
        None => (sent, fields, None),
    };
    let parsed_len = head_bytes.len();

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
        httparse::Status::Complete(n) if n == parsed_len => {}
        _ => return Err(bad("Malformed request head")),
    }

    let method = req.method.unwrap_or_default();
    validate_method(method, &limits.leniency)?;
    let method = if limits.leniency.casefold_method {
        method.to_ascii_uppercase()
    } else {
        method.to_owned()
    };
    let raw_target = req.path.unwrap_or_default().as_bytes();
    target::validate_target(&method, raw_target)?;
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

    // gunicorn refuses an expectation while reading the headers, before it
    // looks at the framing.
    if framing.expect_bad {
        return Err(HttpError::new(417, "Unsupported Expect value"));
    }
    let body = framing.body(minor_version)?;
    let keep_alive = !framing.te_close
        && if minor_version == 1 {
            !framing.conn_close
        } else {
            framing.conn_keep_alive && !framing.conn_close
        };

    // Printable ASCII only (validate_target).
    let target = latin1(raw_target, true);
    let (path, query) = target::split_target(&target);
    let (path, query) = (path.to_owned(), query.to_owned());

    Ok(Some((
        RequestHead {
            method,
            target,
            path,
            query,
            minor_version,
            protocol,
            headers,
            body,
            keep_alive,
            expect_continue: framing.expect_continue,
        },
        end,
    )))
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
    fn one_leading_crlf_accepted() {
        let buf: &[u8] = b"\r\nGET / HTTP/1.1\r\n\r\n";
        let (h, c) = parse(buf).unwrap().unwrap();
        assert_eq!(h.method, "GET");
        assert_eq!(c, buf.len());
        assert!(matches!(parse(b"\r\n"), Ok(None)));
        assert!(matches!(parse(b"\r"), Ok(None)));
        // Only one empty line may be ignored, as by gunicorn 27.
        assert_eq!(status(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"\r\n\r"), 400);
        assert_eq!(status(b"\r\n\nGET / HTTP/1.1\r\n\r\n"), 400);
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
    fn raw_non_ascii_target_refused() {
        // Must be percent-encoded, as gunicorn 27 requires.
        assert_eq!(status("GET /caf\u{e9} HTTP/1.1\r\n\r\n".as_bytes()), 400);
        assert_eq!(status(b"GET /caf\xe9 HTTP/1.1\r\n\r\n"), 400);
        let h = ok(b"GET /caf%C3%A9 HTTP/1.1\r\n\r\n");
        assert_eq!(h.target, "/caf%C3%A9");
    }

    #[test]
    fn target_forms() {
        assert_eq!(status(b"GET foo/bar HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET example.com:80 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET * HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET http://[::1/ HTTP/1.1\r\n\r\n"), 400);
        ok(b"OPTIONS * HTTP/1.1\r\n\r\n");
        ok(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n");
        ok(b"GET http://[::1]:8080/p HTTP/1.1\r\n\r\n");
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
            ok(&req("Transfer-Encoding:  chunked \t\r\n")).body,
            BodyKind::Chunked
        );
        assert!(ok(&req("Transfer-Encoding: chunked\r\n")).keep_alive);
    }

    #[test]
    fn te_codings_before_chunked_accepted() {
        // As gunicorn 27: de-chunked, the header passed on unchanged, and
        // the connection closed after a gzip/deflate/compress-coded body.
        for (v, keep_alive) in [
            ("gzip, chunked", false),
            ("deflate,chunked", false),
            ("COMPRESS , chunked", false),
            ("identity, chunked", true),
            ("identity, gzip, chunked", false),
        ] {
            let h = ok(&req(&format!("Transfer-Encoding: {v}\r\n")));
            assert_eq!(h.body, BodyKind::Chunked, "{v}");
            assert_eq!(h.keep_alive, keep_alive, "{v}");
            assert_eq!(h.header("transfer-encoding"), Some(v.trim()));
        }
        let h = ok(&req(
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        ));
        assert_eq!(h.body, BodyKind::Chunked);
        assert!(!h.keep_alive);
        // chunked must still be last, and once.
        assert_eq!(
            status(&req("Transfer-Encoding: chunked, identity\r\n")),
            400
        );
        assert_eq!(
            status(&req("Transfer-Encoding: gzip, chunked, gzip\r\n")),
            400
        );
        assert_eq!(status(&req("Transfer-Encoding: gzip\r\n")), 400);
        assert_eq!(status(&req("Transfer-Encoding: identity\r\n")), 400);
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status(&req(
                "Content-Length: 1\r\nTransfer-Encoding: gzip, chunked\r\n"
            )),
            400
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
        // 501 as gunicorn answers it: at the first unknown coding, also
        // after chunked, and for an empty element.
        for v in [
            "foo",
            "foo, chunked",
            "chunked, foo",
            "chunked;q=1",
            "chunked,",
            ", chunked",
            "",
            "x-gzip, chunked",
        ] {
            assert_eq!(
                status(&req(&format!("Transfer-Encoding: {v}\r\n"))),
                501,
                "{v}"
            );
        }
        assert_eq!(
            status(&req(
                "Transfer-Encoding: foo\r\nTransfer-Encoding: chunked\r\n"
            )),
            501
        );
        // The first framing error in header order wins.
        assert_eq!(
            status(&req("Content-Length: 1\r\nTransfer-Encoding: foo\r\n")),
            501
        );
        assert_eq!(
            status(&req("Transfer-Encoding: chunked, chunked, foo\r\n")),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: foo\r\n\r\n"),
            501
        );
        // An unknown expectation is refused before the framing is read.
        assert_eq!(status(&req("Expect: x\r\nTransfer-Encoding: foo\r\n")), 417);
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

    #[test]
    fn content_type_singleton() {
        ok(b"POST / HTTP/1.1\r\nContent-Type: text/plain\r\n\r\n");
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Type: a\r\ncontent-type: a\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Type: a\r\nX: y\r\nContent-Type: b\r\n\r\n"),
            400
        );
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
        assert_eq!(e.status, 414);
        assert_eq!(e.reason, "URI Too Long");
        assert!(
            e.detail.contains("Request Line is too large"),
            "{}",
            e.detail
        );
        // Incomplete but already over the limit.
        assert_eq!(status_with(b"GET /aaaaaaaaaaaaaaaaaaaaaaa", &l), 414);
        // Incomplete and not yet over: wait.
        assert!(matches!(
            parse_request_head(b"GET /123456 HTTP/1.1\r", &l),
            Ok(None)
        ));
        // Above 8190 means 8190, as in gunicorn.
        let big = Limits {
            max_line: 100_000,
            ..Limits::default()
        };
        let at = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(8190 - 14));
        assert!(matches!(
            parse_request_head(at.as_bytes(), &big),
            Ok(Some(_))
        ));
        let over = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(8190 - 13));
        assert_eq!(status_with(over.as_bytes(), &big), 414);
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
        assert_eq!(status(long.as_bytes()), 414);
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
        // "X: 12345\r\n" is 10 bytes: gunicorn counts the CRLF.
        assert!(matches!(
            parse_request_head(b"GET / HTTP/1.1\r\nX: 12345\r\n\r\n", &l),
            Ok(Some(_))
        ));
        assert_eq!(status_with(b"GET / HTTP/1.1\r\nX: 123456\r\n\r\n", &l), 431);
        assert_eq!(status_with(b"GET / HTTP/1.1\r\nX: 123456", &l), 431);
        assert!(matches!(
            parse_request_head(b"GET / HTTP/1.1\r\nX: 12345\r", &l),
            Ok(None)
        ));
        // 0 is gunicorn's default, 8190, not unlimited.
        let l0 = Limits {
            max_field_size: 0,
            ..Limits::default()
        };
        let fits = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(8190 - 5));
        assert!(matches!(
            parse_request_head(fits.as_bytes(), &l0),
            Ok(Some(_))
        ));
        let over = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(8190 - 4));
        assert_eq!(status_with(over.as_bytes(), &l0), 431);
        assert_eq!(status_with(over.as_bytes(), &lim()), 431);
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
            leniency: Leniency::default(),
        };
        // 0 for the field size is 8190 (gunicorn's default).
        assert_eq!(l.head_cap(), 100 * 8192 + HEAD_SLACK);
        // Many moderately sized headers, never complete: stops at the cap.
        let mut s = String::from("GET / HTTP/1.1\r\n");
        while s.len() <= l.head_cap() {
            s.push_str(&format!("X: {}\r\n", "v".repeat(8000)));
        }
        assert_eq!(status_with(s.as_bytes(), &l), 431);
        let few = Limits { max_fields: 2, ..l };
        assert_eq!(few.head_cap(), UNLIMITED_HEAD_CAP);
        // Endless leading CRLFs are refused at the second.
        let crlfs = "\r\n".repeat(513);
        assert_eq!(status_with(crlfs.as_bytes(), &l), 400);
        assert_eq!(status(crlfs.as_bytes()), 400);
        // A single huge incomplete header line, field size 0 = 8190.
        let huge = format!("GET / HTTP/1.1\r\nX: {}", "v".repeat(8190));
        assert_eq!(status_with(huge.as_bytes(), &l), 431);
        // Below it, it just waits.
        let small = format!("GET / HTTP/1.1\r\nX: {}", "v".repeat(8000));
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
            leniency: Leniency::default(),
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
        // "X: " + 16 'v' + CRLF = 21 bytes > 20.
        assert_eq!(status, Some((431, 16 + 19)));
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
        assert!(matches!(p.parse(b"\r\nGE", &lim()), Ok(None)));
        let (h, c) = p
            .parse(b"\r\nGET / HTTP/1.1\r\n\r\n", &lim())
            .unwrap()
            .unwrap();
        assert_eq!(h.method, "GET");
        assert_eq!(c, 20);
        let mut p = HeadParser::new();
        assert!(matches!(p.parse(b"\r\n", &lim()), Ok(None)));
        assert_eq!(p.parse(b"\r\n\r", &lim()).unwrap_err().status, 400);
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
            leniency: Leniency::default(),
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
}
