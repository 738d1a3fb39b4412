//! A raw HTTP/1.1 client: `Stream` (TCP or unix socket), `Reader`, which
//! parses responses (chunked, Content-Length or close-delimited) from any
//! byte source, `Conn`, one connection with request/response helpers, and
//! one-shot helpers that send raw bytes on a fresh connection; and
//! `keepalive_burst_per_worker`, where a burst of connections landed.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::json::Json;

/// Read/write timeout of every client socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A client socket: TCP or unix.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn set_timeouts(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Stream::Unix(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// "HTTP/1.1" or "HTTP/1.0".
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// The body was framed with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// The body ended as its framing says (last chunk seen, all of
    /// Content-Length read, or EOF for a close-delimited body).
    pub complete: bool,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// `Connection: close` was sent.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Json {
        Json::parse(&self.text()).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }
}

/// Buffered reading of HTTP messages from any byte source.
pub struct Reader<R: Read> {
    pub src: R,
    pub buf: Vec<u8>,
    pub eof: bool,
}

fn bad_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl<R: Read> Reader<R> {
    pub fn new(src: R) -> Reader<R> {
        Reader {
            src,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Read more bytes; Ok(0) at EOF.
    fn fill(&mut self) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let mut tmp = [0u8; 64 * 1024];
        loop {
            match self.src.read(&mut tmp) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.eof = true;
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One line without its CRLF; Err(UnexpectedEof) if the input ends
    /// before the CRLF.
    fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF in the middle of a line: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    /// Up to `n` bytes (fewer only at EOF).
    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                break;
            }
        }
        let k = n.min(self.buf.len());
        Ok(self.buf.drain(..k).collect())
    }

    /// Everything until EOF.
    fn rest(&mut self) -> io::Result<Vec<u8>> {
        while self.fill()? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// True if nothing is buffered and the source is at EOF.
    pub fn at_eof(&mut self) -> io::Result<bool> {
        if !self.buf.is_empty() {
            return Ok(false);
        }
        Ok(self.fill()? == 0)
    }

    /// Read one response (interim 1xx responses included). `head_request`:
    /// the request was HEAD, so there is no body whatever the headers say.
    pub fn response(&mut self, head_request: bool) -> io::Result<Response> {
        let status_line = self.line()?;
        let status_line = String::from_utf8_lossy(&status_line).into_owned();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        if !version.starts_with("HTTP/1.") {
            return Err(bad_data(format!("bad status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad_data(format!("bad status line {status_line:?}")))?;
        let reason = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            let (n, v) = line
                .split_once(':')
                .ok_or_else(|| bad_data(format!("bad header line {line:?}")))?;
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
            chunked: false,
            complete: true,
        };
        if head_request || status < 200 || status == 204 || status == 304 {
            return Ok(resp);
        }
        let te = resp
            .header("transfer-encoding")
            .map(str::to_ascii_lowercase);
        if te.is_some_and(|t| t.contains("chunked")) {
            resp.chunked = true;
            resp.complete = false;
            loop {
                let size_line = match self.line() {
                    Ok(l) => l,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                };
                let s = String::from_utf8_lossy(&size_line).into_owned();
                let hex = s.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| bad_data(format!("bad chunk size line {s:?}")))?;
                if size == 0 {
                    // Trailers until the empty line.
                    loop {
                        match self.line() {
                            Ok(l) if l.is_empty() => {
                                resp.complete = true;
                                break;
                            }
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                            Err(e) => return Err(e),
                        }
                    }
                    break;
                }
                let data = self.take(size)?;
                let short = data.len() < size;
                resp.body.extend_from_slice(&data);
                if short {
                    break;
                }
                match self.line() {
                    Ok(l) if l.is_empty() => {}
                    Ok(l) => {
                        return Err(bad_data(format!(
                            "chunk data not followed by CRLF: {:?}",
                            String::from_utf8_lossy(&l)
                        )))
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
        } else if let Some(cl) = resp.header("content-length") {
            let n: usize = cl
                .trim()
                .parse()
                .map_err(|_| bad_data(format!("bad Content-Length {cl:?}")))?;
            resp.body = self.take(n)?;
            resp.complete = resp.body.len() == n;
        } else {
            resp.body = self.rest()?;
        }
        Ok(resp)
    }
}

/// Build a request: adds `Host` unless given, and `Content-Length` for a
/// non-empty body unless a `Content-Length`/`Transfer-Encoding` is given.
pub fn build_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("host") {
        out.extend_from_slice(b"Host: localhost\r\n");
    }
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if !body.is_empty() && !has("content-length") && !has("transfer-encoding") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// One client connection.
pub struct Conn {
    pub r: Reader<Stream>,
    /// For each request sent with `send_request`, whether it was HEAD.
    pending_head: VecDeque<bool>,
}

impl Conn {
    fn from_stream(s: Stream) -> Conn {
        s.set_timeouts(Some(IO_TIMEOUT))
            .expect("set socket timeouts");
        Conn {
            r: Reader::new(s),
            pending_head: VecDeque::new(),
        }
    }

    pub fn connect(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        Conn::from_stream(Stream::Tcp(s))
    }

    pub fn connect_unix(path: &Path) -> Conn {
        let s = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
        Conn::from_stream(Stream::Unix(s))
    }

    /// The local TCP port of this connection.
    pub fn local_port(&self) -> u16 {
        match &self.r.src {
            Stream::Tcp(s) => s.local_addr().map(|a| a.port()).unwrap_or(0),
            Stream::Unix(_) => 0,
        }
    }

    /// Write raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.r.src.write_all(bytes)
    }

    /// Write a request built with `build_request`.
    pub fn send_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        let req = build_request(method, path, headers, body);
        self.pending_head.push_back(method == "HEAD");
        self.send(&req)
            .unwrap_or_else(|e| panic!("sending {method} {path}: {e}"));
    }

    /// Read the next final response (1xx interim responses are skipped).
    pub fn try_read_response(&mut self) -> io::Result<Response> {
        let head = self.pending_head.pop_front().unwrap_or(false);
        loop {
            let r = self.r.response(head)?;
            if r.status >= 200 {
                return Ok(r);
            }
        }
    }

    /// Read the next response, whatever its status (1xx included); does
    /// not consume a pending request.
    pub fn read_any_response(&mut self) -> io::Result<Response> {
        let head = self.pending_head.front().copied().unwrap_or(false);
        let r = self.r.response(head)?;
        if r.status >= 200 {
            self.pending_head.pop_front();
        }
        Ok(r)
    }

    pub fn read_response(&mut self) -> Response {
        self.try_read_response()
            .unwrap_or_else(|e| panic!("reading a response: {e}"))
    }

    /// `send_request` then `read_response`.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.send_request(method, path, headers, body);
        self.read_response()
    }

    /// True if the server closed the connection within `wait` (EOF or
    /// reset); false if it is still open (no data, or data arrived).
    pub fn is_closed(&mut self, wait: Duration) -> bool {
        if !self.r.buf.is_empty() {
            return false;
        }
        if self.r.eof {
            return true;
        }
        let _ = self.r.src.set_read_timeout(Some(wait));
        let res = self.r.fill();
        let _ = self.r.src.set_read_timeout(Some(IO_TIMEOUT));
        match res {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        }
    }

    /// Everything until EOF (or the read timeout).
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.r.buf);
        let mut tmp = [0u8; 64 * 1024];
        while !self.r.eof {
            match self.r.src.read(&mut tmp) {
                Ok(0) => self.r.eof = true,
                Ok(n) => out.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        out
    }

    pub fn shutdown_write(&self) {
        let _ = self.r.src.shutdown(Shutdown::Write);
    }
}

/// One request on a fresh connection.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    Conn::connect(port).request(method, path, headers, body)
}

pub fn get(port: u16, path: &str) -> Response {
    request(port, "GET", path, &[], b"")
}

/// Write `bytes` on a fresh connection, then read until EOF or the read
/// timeout. Returns what was read and whether EOF was seen.
pub fn send_raw_eof(port: u16, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut c = Conn::connect(port);
    // The server may answer and stop reading before everything is written.
    let _ = c.send(bytes);
    let out = c.read_to_end();
    let eof = c.r.eof;
    (out, eof)
}

/// Write `bytes` on a fresh connection and read until EOF or timeout.
pub fn send_raw(port: u16, bytes: &[u8]) -> Vec<u8> {
    send_raw_eof(port, bytes).0
}

/// Every complete response in `bytes` (stops at the first unparsable one).
pub fn parse_responses(bytes: &[u8]) -> Vec<Response> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    while !r.at_eof().unwrap_or(true) {
        match r.response(false) {
            Ok(resp) => out.push(resp),
            Err(_) => break,
        }
    }
    out
}

/// Open `n` connections to `port` together (a proxy opening its pool), then
/// ask each for `/pid` twice: how many of them each worker took, keyed by
/// the body (which names the worker). Keep-alive: both answers of a
/// connection come from the same worker.
pub fn keepalive_burst_per_worker(port: u16, n: usize) -> std::collections::HashMap<String, usize> {
    let mut conns: Vec<Conn> = (0..n).map(|_| Conn::connect(port)).collect();
    let mut per_worker = std::collections::HashMap::new();
    for c in conns.iter_mut() {
        let first = c.request("GET", "/pid", &[], b"");
        assert_eq!(first.status, 200);
        let again = c.request("GET", "/pid", &[], b"");
        assert_eq!(
            again.text(),
            first.text(),
            "a keep-alive connection changed worker"
        );
        *per_worker.entry(first.text()).or_default() += 1;
    }
    per_worker
}
