//! HTTP/1.x, the protocol side of a worker: strict request-head parsing
//! ([`head`]), chunked request-body decoding ([`chunked`]), the framing
//! state of a request body on its way to the app ([`body`]), and the types
//! they share (the owned [`RequestHead`], [`HttpError`], [`Limits`]).
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
//! What gunicorn's relaxing settings allow ([`Leniency`]: obsolete line
//! folding, spaces before a colon, unconventional methods and versions) is
//! rewritten into the strict form by `lenient.rs` before tokenizing; with
//! those settings off nothing is rewritten.
//!
//! Nothing in here panics on any input.

mod body;
mod bytes;
mod chunked;
mod head;
mod lenient;
mod target;

pub use body::{Body, BodyRest};
pub use chunked::ChunkedDecoder;
pub use head::{parse_request_head, HeadParser};

/// Hard upper bound for `limit_request_fields` (gunicorn's `MAX_HEADERS`).
pub const MAX_HEADER_FIELDS: usize = 32768;

/// Largest effective `limit_request_line` (gunicorn's `MAX_REQUEST_LINE`).
pub const MAX_REQUEST_LINE: usize = 8190;

/// What `limit_request_field_size = 0` means (gunicorn's
/// `DEFAULT_MAX_HEADERFIELD_SIZE`).
pub const DEFAULT_MAX_FIELD_SIZE: usize = 8190;

/// Upper bound for the whole head when `max_line` is 0
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

/// The parser's strict defaults that gunicorn's settings of the same names
/// relax (all off by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leniency {
    /// `permit_obsolete_folding`: a header line starting with SP or HT
    /// continues the previous value (joined with one space).
    pub obsolete_folding: bool,
    /// `strip_header_spaces`: spaces and tabs before a header's colon are
    /// dropped.
    pub strip_header_spaces: bool,
    /// `permit_unconventional_http_method`: any token is a method.
    pub unconventional_method: bool,
    /// `permit_unconventional_http_version`: any `HTTP/D.D`.
    pub unconventional_version: bool,
    /// `casefold_http_method`: the method is upper-cased.
    pub casefold_method: bool,
}

/// Request-head limits, with gunicorn's semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `limit_request_line`: max length of the request line excluding CRLF.
    /// 0 = unlimited (bounded only by the whole-head cap); values above
    /// [`MAX_REQUEST_LINE`] mean that, as in gunicorn.
    pub max_line: usize,
    /// `limit_request_fields`: max number of header fields. 0 or anything
    /// above [`MAX_HEADER_FIELDS`] means [`MAX_HEADER_FIELDS`].
    pub max_fields: usize,
    /// `limit_request_field_size`: max length of one header line as
    /// gunicorn measures it: name, colon, value as sent *and* the CRLF
    /// (continuation lines included when folding is permitted). 0 means
    /// gunicorn's default, [`DEFAULT_MAX_FIELD_SIZE`] (not unlimited).
    pub max_field_size: usize,
    /// Which strict rules are relaxed.
    pub leniency: Leniency,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 4094,
            max_fields: 100,
            max_field_size: 8190,
            leniency: Leniency::default(),
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

    /// The longest request line allowed (CRLF excluded), 0 for unlimited.
    pub fn line_limit(&self) -> usize {
        self.max_line.min(MAX_REQUEST_LINE)
    }

    /// The longest header line allowed, CRLF included (0 is gunicorn's
    /// default).
    pub fn field_size_limit(&self) -> usize {
        if self.max_field_size == 0 {
            DEFAULT_MAX_FIELD_SIZE
        } else {
            self.max_field_size
        }
    }

    /// Total number of bytes a head (including leading empty lines and the
    /// final CRLFCRLF) may occupy before it is rejected with 431.
    pub fn head_cap(&self) -> usize {
        let line = if self.max_line == 0 {
            0
        } else {
            self.line_limit().saturating_add(2)
        };
        let fields = self
            .effective_max_fields()
            .saturating_mul(self.field_size_limit().saturating_add(2));
        let cap = line.saturating_add(fields).saturating_add(HEAD_SLACK);
        if self.max_line == 0 {
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
    /// 0 or 1 (1 for an unconventional version, see `protocol`).
    pub minor_version: u8,
    /// The version as sent, when `permit_unconventional_http_version` let
    /// one other than HTTP/1.0 and HTTP/1.1 through (e.g. `HTTP/1.2`);
    /// it is served as HTTP/1.1 and shown in SERVER_PROTOCOL.
    pub protocol: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
