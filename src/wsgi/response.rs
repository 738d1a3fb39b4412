//! `start_response`, PEP 3333's `write()`, `wsgi.early_hints` and the
//! HTTP/1.1 response writer behind them: status line and headers (latin-1,
//! as PEP 3333 and gunicorn have it), framing (Content-Length, chunked or
//! close-delimited), and when output goes to the socket.
//!
//! Output is written as the app produces it: a block the app has handed
//! over is never held back waiting for more (PEP 3333). What the socket
//! does not take at once stays in `out` only when the response is over or
//! may be (the worker's loop then writes it, so a slow reader holds a
//! connection slot rather than the worker); mid-stream, the writer waits
//! for the client with the GIL released, bounded by the I/O timeout.

use std::os::fd::{BorrowedFd, RawFd};

use crate::tls::Wire;
use std::time::Duration;

#[cfg(feature = "wheel")]
use super::abi::ToStr as _;
use pyo3::exceptions::{PyIOError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::sockio::{borrow_sock, send_all, send_now, DIRECT_WRITE_AT};
use crate::worker::executor::Reply;
use crate::worker::timeout_reply::Waiting;

/// Flush the response buffer to the socket once it holds this much.
const FLUSH_AT: usize = 256 * 1024;
/// Unwritten output up to this size is handed back to the worker's event
/// loop when the client does not read fast enough, instead of waiting for
/// it here: a slow reader then holds a connection slot, not the worker
/// (sync) or a thread (gthread). Larger responses wait here, bounded by the
/// I/O timeout per stall.
pub const SPILL_MAX: usize = 1 << 20;

fn is_hop_by_hop(lname: &str) -> bool {
    matches!(
        lname,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "trailers"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Per-request response state. It is the `start_response` callable the app
/// receives; its `write` method is PEP 3333's write().
#[pyclass(module = "ferrocorn", name = "StartResponse")]
pub struct Responder {
    wire: Wire,
    active: bool,
    minor: u8,
    is_head: bool,
    status: Option<String>,
    headers: Vec<(String, String)>,
    pub head_sent: bool,
    chunked: bool,
    /// Bytes still allowed by the app's Content-Length.
    remaining: Option<u64>,
    no_body: bool,
    pub keep_alive: bool,
    pub out: Vec<u8>,
    /// The client is gone; stop producing output.
    pub broken: bool,
    /// The app took the connection over through `gunicorn.socket`: nothing
    /// more is written here, and the worker lets go of the connection.
    pub taken: bool,
    pub status_code: u16,
    pub body_bytes: u64,
    date: String,
    /// Longest wait for the client to accept more output.
    timeout: Duration,
    /// Until the response starts, the client gets a 500 if the worker
    /// times out.
    waiting: Waiting,
}

impl Responder {
    /// The writer for a request, as the engine asked for it.
    pub fn new(reply: Reply) -> Responder {
        let Reply {
            wire,
            minor,
            is_head,
            keep_alive,
            date,
            pending: out,
            timeout,
        } = reply;
        // Not after a pipelined predecessor's unwritten output: a 500 would
        // read as the answer to that one.
        let waiting = if out.is_empty() {
            Waiting::claim(&wire, is_head)
        } else {
            Waiting::default()
        };
        Responder {
            wire,
            active: true,
            minor,
            is_head,
            status: None,
            headers: Vec::new(),
            head_sent: false,
            chunked: false,
            remaining: None,
            no_body: false,
            keep_alive,
            out,
            broken: false,
            taken: false,
            status_code: 0,
            body_bytes: 0,
            date,
            timeout,
            waiting,
        }
    }

    pub fn deactivate(&mut self) {
        self.active = false;
        self.waiting.release();
    }

    /// No body may follow the head (HEAD, 1xx, 204, 304).
    pub fn discards_body(&self) -> bool {
        self.is_head || self.no_body
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    pub fn fd(&self) -> RawFd {
        self.wire.fd()
    }

    /// The connection, as the response is written to it.
    pub fn wire(&self) -> &Wire {
        &self.wire
    }

    /// sendfile(2) can send to the connection (not under TLS).
    pub fn can_sendfile(&self) -> bool {
        !self.wire.is_tls()
    }

    pub fn io_timeout(&self) -> Duration {
        self.timeout
    }

    /// The headers the app passed to start_response.
    /// The status line the app gave (`"200 OK"`), once it called
    /// `start_response`.
    pub fn status_line(&self) -> Option<&str> {
        self.status.as_deref()
    }

    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Serialize the status line and headers. `total` is the body length
    /// when it is known before the first byte (a one-item list, a file).
    fn send_head(&mut self, total: Option<u64>) -> PyResult<()> {
        let status = self.status.clone().ok_or_else(|| {
            PyValueError::new_err("the app returned a body before calling start_response()")
        })?;
        self.status_code = status.get(..3).and_then(|c| c.parse().ok()).unwrap_or(500);
        let informational = self.status_code < 200;
        let switching = self.status_code == 101;
        self.no_body = informational || self.status_code == 204 || self.status_code == 304;
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(if self.minor == 0 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        push_latin1(&mut head, &status);
        head.extend_from_slice(b"\r\n");
        let mut has_server = false;
        let mut has_date = false;
        let mut content_length = None;
        for (name, value) in &self.headers {
            let lname = name.to_ascii_lowercase();
            if is_hop_by_hop(&lname) {
                if lname == "connection" && value.to_ascii_lowercase().contains("close") {
                    self.keep_alive = false;
                }
                // A 101 names the protocol the connection switches to.
                if !(switching && lname == "upgrade") {
                    continue;
                }
            }
            match lname.as_str() {
                "content-length" => {
                    let n = value.trim().parse::<u64>().map_err(|_| {
                        PyValueError::new_err(format!("invalid Content-Length header: {value:?}"))
                    })?;
                    // RFC 9110 §8.6: never on a 1xx or 204 (gunicorn drops
                    // it too); 304 and HEAD may carry the GET's length.
                    if informational || self.status_code == 204 {
                        continue;
                    }
                    content_length = Some(n);
                }
                "server" => has_server = true,
                "date" => has_date = true,
                _ => {}
            }
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            push_latin1(&mut head, value);
            head.extend_from_slice(b"\r\n");
        }
        if !has_server {
            head.extend_from_slice(b"Server: ferrocorn\r\n");
        }
        if !has_date {
            head.extend_from_slice(b"Date: ");
            head.extend_from_slice(self.date.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if self.no_body {
            self.remaining = Some(0);
        } else if let Some(n) = content_length {
            self.remaining = Some(n);
        } else if self.is_head {
            // No length to announce: the body a GET would get is unknown
            // here, and `Content-Length: 0` would contradict it.
            self.remaining = Some(0);
        } else if let Some(n) = total {
            head.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
            self.remaining = Some(n);
        } else if self.minor >= 1 {
            head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            self.chunked = true;
        } else {
            self.keep_alive = false;
        }
        if switching {
            // Whatever follows is not HTTP/1.1 this worker could parse.
            self.keep_alive = false;
            head.extend_from_slice(b"Connection: Upgrade\r\n");
        } else if !self.keep_alive {
            head.extend_from_slice(b"Connection: close\r\n");
        } else if self.minor == 0 {
            head.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        head.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&head);
        self.head_sent = true;
        self.waiting.release();
        Ok(())
    }

    /// Write what the socket takes now; if more than SPILL_MAX is left,
    /// write that too, waiting with the GIL released. What stays in `out`
    /// goes to the worker's loop with the rest of the response.
    pub fn flush(&mut self, py: Python<'_>) {
        if self.out.is_empty() || self.broken || self.taken {
            return;
        }
        if !self.active {
            self.broken = true;
            return;
        }
        self.waiting.release();
        match send_now(&self.wire, &self.out) {
            Ok(n) => {
                self.out.drain(..n);
            }
            Err(_) => {
                self.broken = true;
                self.out.clear();
                return;
            }
        }
        if self.out.len() <= SPILL_MAX {
            return;
        }
        if send_all(py, &self.wire, &self.out, self.timeout).is_err() {
            self.broken = true;
        }
        self.out.clear();
    }

    /// Write everything buffered, waiting (GIL released) as long as needed:
    /// the app is about to produce more, and what it handed over must be on
    /// its way meanwhile.
    pub fn flush_all(&mut self, py: Python<'_>) {
        self.flush(py);
        if self.out.is_empty() || self.broken || self.taken {
            return;
        }
        if send_all(py, &self.wire, &self.out, self.timeout).is_err() {
            self.broken = true;
        }
        self.out.clear();
    }

    /// Add one body chunk. `total` as for `send_head`.
    pub fn send_body(&mut self, py: Python<'_>, data: &[u8], total: Option<u64>) -> PyResult<()> {
        if self.taken {
            return Ok(());
        }
        if !self.head_sent {
            self.send_head(total)?;
        }
        if self.broken || self.is_head || self.no_body || data.is_empty() {
            return Ok(());
        }
        let data = match &mut self.remaining {
            Some(rem) => {
                let n = (*rem).min(data.len() as u64) as usize;
                *rem -= n as u64;
                &data[..n]
            }
            None => data,
        };
        if data.is_empty() {
            return Ok(());
        }
        self.body_bytes += data.len() as u64;
        if self.chunked {
            self.out
                .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        }
        if data.len() >= DIRECT_WRITE_AT {
            self.flush(py);
            let mut rest = data;
            if !self.broken && self.out.is_empty() {
                match send_now(&self.wire, rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(_) => self.broken = true,
                }
            }
            if self.broken || rest.is_empty() {
                // Sent (or the client is gone).
            } else if self.out.len() + rest.len() <= SPILL_MAX {
                self.out.extend_from_slice(rest);
            } else {
                if !self.out.is_empty() {
                    if send_all(py, &self.wire, &self.out, self.timeout).is_err() {
                        self.broken = true;
                    }
                    self.out.clear();
                }
                if !self.broken && send_all(py, &self.wire, rest, self.timeout).is_err() {
                    self.broken = true;
                }
            }
        } else {
            self.out.extend_from_slice(data);
        }
        if self.chunked {
            self.out.extend_from_slice(b"\r\n");
        }
        if self.out.len() >= FLUSH_AT {
            self.flush(py);
        }
        Ok(())
    }

    /// The app finished producing the body.
    pub fn finish(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.taken {
            return Ok(());
        }
        if !self.head_sent {
            self.send_body(py, b"", Some(0))?;
        }
        if self.chunked {
            self.out.extend_from_slice(b"0\r\n\r\n");
        }
        if !self.is_head && !self.no_body && matches!(self.remaining, Some(n) if n > 0) {
            // Fewer bytes than the app's Content-Length: the framing is
            // broken, so the connection cannot carry another request.
            self.keep_alive = false;
        }
        Ok(())
    }

    /// Send a file with sendfile(2): `fd` positioned at `offset`, `size`
    /// bytes to its end.
    pub fn send_file(
        &mut self,
        py: Python<'_>,
        file: BorrowedFd<'_>,
        offset: i64,
        size: u64,
    ) -> PyResult<()> {
        if self.taken {
            return Ok(());
        }
        if !self.head_sent {
            self.send_head(Some(size))?;
        }
        let mut count = match self.remaining {
            Some(rem) => rem.min(size),
            None => size,
        };
        if self.is_head || self.no_body || count == 0 {
            return Ok(());
        }
        if self.chunked {
            self.out
                .extend_from_slice(format!("{count:x}\r\n").as_bytes());
        }
        // Everything before the file must be on the wire first.
        self.flush_all(py);
        let mut off = offset as libc::off_t;
        let sent_total = count;
        while count > 0 && !self.broken {
            let sock = borrow_sock(self.wire.fd());
            match nix::sys::sendfile::sendfile(
                sock,
                file,
                Some(&mut off),
                count.min(1 << 30) as usize,
            ) {
                Ok(0) => break, // the file shrank
                Ok(n) => count -= n as u64,
                Err(nix::errno::Errno::EAGAIN) => {
                    let (fd, timeout) = (self.wire.fd(), self.timeout);
                    let ready = super::sockio::wait_ready(py, fd, true, Some(timeout));
                    if !matches!(ready, Ok(true)) {
                        self.broken = true;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => self.broken = true,
            }
        }
        let sent = sent_total - count;
        self.body_bytes += sent;
        if let Some(rem) = &mut self.remaining {
            *rem -= sent;
        }
        if self.chunked {
            self.out.extend_from_slice(b"\r\n");
        }
        Ok(())
    }

    /// Start a 500 (or other) error response if nothing was sent yet.
    pub fn error_response(&mut self, status: &str, body: &str) -> bool {
        if self.taken {
            return false;
        }
        if self.head_sent {
            self.keep_alive = false;
            return false;
        }
        self.out.clear();
        self.status = Some(status.to_string());
        self.headers = vec![
            ("Content-Type".into(), "text/plain; charset=utf-8".into()),
            ("Content-Length".into(), body.len().to_string()),
        ];
        self.keep_alive = false;
        self.chunked = false;
        if self.send_head(None).is_err() {
            return false;
        }
        if !self.is_head {
            self.out.extend_from_slice(body.as_bytes());
            self.body_bytes = body.len() as u64;
        }
        true
    }

    /// The app takes the connection over (`gunicorn.socket`): from now on
    /// this writer writes nothing. Returns what it still held, which the
    /// socket sends before anything else.
    pub fn hand_over(&mut self) -> PyResult<Vec<u8>> {
        if self.taken {
            return Ok(Vec::new());
        }
        if !self.active {
            return Err(PyIOError::new_err(
                "the request this socket belonged to is over",
            ));
        }
        self.taken = true;
        self.keep_alive = false;
        self.waiting.release();
        Ok(std::mem::take(&mut self.out))
    }

    /// Note what the app sent on its own over a taken-over connection: a
    /// status line there (`HTTP/1.1 101 ...`) is the status to log.
    pub fn saw_raw_output(&mut self, data: &[u8]) {
        if self.status_code != 0 {
            return;
        }
        let code = data
            .strip_prefix(b"HTTP/1.")
            .and_then(|rest| rest.get(2..5))
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse().ok());
        if let Some(code) = code {
            self.status_code = code;
        }
    }
}

/// Append `s`, every char of which is at most U+00FF (checked when the app
/// passed it), as latin-1 bytes.
fn push_latin1(out: &mut Vec<u8>, s: &str) {
    if s.is_ascii() {
        out.extend_from_slice(s.as_bytes());
    } else {
        out.extend(s.chars().map(|c| c as u32 as u8));
    }
}

/// RFC 9110 token characters (header names).
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// RFC 9110 field-value characters that latin-1 can carry: SP, HTAB,
/// VCHAR and obs-text (what gunicorn accepts).
fn is_field_char(c: char) -> bool {
    c == ' ' || c == '\t' || ('\x21'..='\x7e').contains(&c) || ('\u{80}'..='\u{ff}').contains(&c)
}

/// A status as PEP 3333 and RFC 9112 allow it: three digits, optionally a
/// space and a reason phrase (gunicorn accepts `"200"` alone too).
fn check_status(status: &str) -> PyResult<()> {
    let b = status.as_bytes();
    let ok = b.len() >= 3
        && b[..3].iter().all(u8::is_ascii_digit)
        && (b.len() == 3 || (b[3] == b' ' && status[4..].chars().all(is_field_char)));
    if !ok {
        return Err(PyValueError::new_err(format!(
            "invalid status {status:?}: expected '200 OK' form (latin-1 reason phrase)"
        )));
    }
    Ok(())
}

/// One `(name, value)` pair from the app: a token name, and a value that
/// latin-1 can encode without control characters. Surrounding blanks of
/// the value are dropped (RFC 9110 §5.5).
fn parse_header(item: &Bound<'_, PyAny>) -> PyResult<(String, String)> {
    let bad_item = || PyTypeError::new_err("each header must be a (name, value) tuple");
    let tuple = item.cast::<PyTuple>().map_err(|_| bad_item())?;
    if tuple.len() != 2 {
        return Err(bad_item());
    }
    let name: String = tuple
        .get_item(0)?
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err("header names must be str"))?
        .to_str()?
        .to_string();
    if name.is_empty() || !name.chars().all(is_tchar) {
        return Err(PyValueError::new_err(format!(
            "invalid header name {name:?}"
        )));
    }
    let value = tuple.get_item(1)?;
    let value = value
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("the value of header {name:?} must be str")))?
        .to_str()?;
    if !value.chars().all(is_field_char) {
        // Named, not shown: the value may be a secret (a cookie, a token).
        return Err(PyValueError::new_err(format!(
            "invalid value for header {name:?}: only latin-1 text without control \
             characters can be sent"
        )));
    }
    Ok((name, value.trim_matches([' ', '\t']).to_string()))
}

#[pymethods]
impl Responder {
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        {
            let mut this = slf.borrow_mut();
            let exc_info = exc_info.filter(|e| !e.is_none());
            if let Some(info) = exc_info {
                if this.head_sent {
                    // PEP 3333: re-raise the original exception.
                    let info = info.cast::<PyTuple>()?;
                    let value = info.get_item(1)?;
                    return Err(PyErr::from_value(value));
                }
            } else if this.status.is_some() {
                return Err(PyValueError::new_err(
                    "start_response() called a second time without exc_info",
                ));
            }
            let status: String = status
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("status must be a str like '200 OK'"))?
                .to_str()?
                .to_string();
            check_status(&status)?;
            let list = headers.cast::<PyList>().map_err(|_| {
                PyTypeError::new_err("headers must be a list of (name, value) tuples")
            })?;
            let parsed = list
                .iter()
                .map(|item| parse_header(&item))
                .collect::<PyResult<Vec<_>>>()?;
            this.status = Some(status);
            this.headers = parsed;
        }
        slf.getattr(pyo3::intern!(py, "write"))
    }

    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("write() argument must be bytes"))?;
        if !self.active {
            return Err(PyIOError::new_err(
                "write() called after the response finished",
            ));
        }
        self.send_body(py, bytes.as_bytes(), None)?;
        // write() returns only once its block is on its way (PEP 3333).
        self.flush_all(py);
        Ok(())
    }

    /// `wsgi.early_hints`: send `103 Early Hints` with these headers (e.g.
    /// `Link` preloads) before the response. Ignored once the response has
    /// started, and for HTTP/1.0 clients, which know no 1xx responses.
    fn early_hints(&mut self, py: Python<'_>, headers: &Bound<'_, PyAny>) -> PyResult<()> {
        if !self.active {
            return Err(PyIOError::new_err(
                "wsgi.early_hints called after the response finished",
            ));
        }
        if self.head_sent || self.taken || self.minor == 0 {
            return Ok(());
        }
        let mut head = b"HTTP/1.1 103 Early Hints\r\n".to_vec();
        for item in headers.try_iter()? {
            let (name, value) = parse_header(&item?)?;
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            push_latin1(&mut head, &value);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&head);
        self.flush_all(py);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert!(check_status("200 OK").is_ok());
        assert!(check_status("200").is_ok());
        assert!(check_status("404 Nicht gefunden \u{e9}").is_ok());
        assert!(check_status("20").is_err());
        assert!(check_status("200OK").is_err());
        assert!(check_status("200 caf\u{e9}\u{2603}").is_err());
        assert!(check_status("200 a\r\nX: y").is_err());
    }

    #[test]
    fn latin1_bytes() {
        let mut out = Vec::new();
        push_latin1(&mut out, "caf\u{e9}");
        assert_eq!(out, b"caf\xe9");
    }

    #[test]
    fn field_chars() {
        assert!("caf\u{e9} \tx".chars().all(is_field_char));
        assert!(!"\u{2603}".chars().all(is_field_char));
        assert!(!"a\nb".chars().all(is_field_char));
        assert!(!"a\x7fb".chars().all(is_field_char));
        assert!("X-Uni".chars().all(is_tchar));
        assert!(!"X Uni".chars().all(is_tchar));
    }
}
