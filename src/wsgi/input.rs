//! `wsgi.input`: the request body, buffered by the event loop when it is
//! small, streamed from the socket (GIL released while waiting) when not.

use crate::tls::Wire;
use std::time::Duration;

use pyo3::exceptions::{PyIOError, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::IO_TIMEOUT;
use crate::http::{Body, BodyRest, HttpError};

/// `wsgi.input`: the request body, buffered by the event loop when it is
/// small, streamed from the socket (GIL released while waiting) when not.
#[pyclass(module = "ferrocorn", name = "Input")]
pub struct Input {
    buf: Vec<u8>,
    pos: usize,
    /// Raw, undecoded bytes read from the socket after the head.
    raw: Vec<u8>,
    rest: Option<BodyRest>,
    wire: Option<Wire>,
    active: bool,
    /// The client went away or sent a malformed chunk.
    failed: bool,
    /// The malformed chunked body's error: if the app lets the read's
    /// exception escape, the client gets this status (400), as from
    /// gunicorn, instead of a 500.
    bad_body: Option<HttpError>,
    /// Longest wait for more body bytes.
    timeout: Duration,
}

/// Largest single read from the socket while streaming a body.
const READ_CHUNK: usize = 64 * 1024;

/// Read what the socket has for a request body into `dst`, waiting (GIL
/// released) up to `timeout` when nothing has arrived. End of stream
/// before the body is complete is an error.
fn read_body(py: Python<'_>, wire: &Wire, timeout: Duration, dst: &mut [u8]) -> PyResult<usize> {
    loop {
        match wire.recv(dst) {
            Ok(0) => {
                return Err(PyIOError::new_err(
                    "client disconnected before sending the whole body",
                ))
            }
            Ok(n) => {
                super::sockio::note_progress();
                return Ok(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let ready = super::sockio::wait_ready(py, wire.fd(), false, Some(timeout));
                if !matches!(ready, Ok(true)) {
                    return Err(PyIOError::new_err("timed out reading the request body"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(PyIOError::new_err(
                    "client disconnected before sending the whole body (no TLS close_notify)",
                ))
            }
            Err(e) => return Err(PyIOError::new_err(format!("reading the request body: {e}"))),
        }
    }
}

impl Input {
    /// The error of a malformed chunked body the app read, if any.
    pub(crate) fn bad_body(&self) -> Option<&HttpError> {
        self.bad_body.as_ref()
    }

    /// `wsgi.input` for the body the protocol handed over.
    pub fn new(body: Body) -> Input {
        match body {
            Body::Buffered(buf) => Input {
                buf,
                pos: 0,
                raw: Vec::new(),
                rest: None,
                wire: None,
                active: false,
                failed: false,
                bad_body: None,
                timeout: IO_TIMEOUT,
            },
            Body::Streaming {
                decoded,
                raw,
                rest,
                wire,
                timeout,
            } => Input {
                buf: decoded,
                pos: 0,
                raw,
                rest: Some(rest),
                wire: Some(wire),
                active: true,
                failed: false,
                bad_body: None,
                timeout,
            },
        }
    }

    fn body_done(&self) -> bool {
        self.rest.as_ref().is_none_or(BodyRest::is_done)
    }

    /// Decode what `raw` holds into `buf`. Returns whether progress was made.
    fn decode_raw(&mut self) -> PyResult<bool> {
        let Some(rest) = self.rest.as_mut() else {
            return Ok(false);
        };
        match rest {
            BodyRest::Length(n) => {
                let take = (*n).min(self.raw.len() as u64) as usize;
                if take == 0 {
                    return Ok(false);
                }
                self.buf.extend_from_slice(&self.raw[..take]);
                self.raw.drain(..take);
                *n -= take as u64;
                Ok(true)
            }
            BodyRest::Chunked(d) => {
                if self.raw.is_empty() || d.is_finished() {
                    return Ok(false);
                }
                let before = self.buf.len();
                match d.decode(&self.raw, &mut self.buf) {
                    Ok((used, _)) => {
                        self.raw.drain(..used);
                        Ok(used > 0 || self.buf.len() > before)
                    }
                    Err(e) => {
                        self.failed = true;
                        let err = PyIOError::new_err(format!(
                            "invalid chunked request body: {}",
                            e.detail
                        ));
                        self.bad_body = Some(e);
                        Err(err)
                    }
                }
            }
        }
    }

    /// Make at least `want` decoded bytes available (or all, if `want` is
    /// None), reading from the socket as needed.
    fn fill(&mut self, py: Python<'_>, want: Option<usize>) -> PyResult<()> {
        loop {
            let have = self.buf.len() - self.pos;
            if want.is_some_and(|w| have >= w) || self.body_done() {
                return Ok(());
            }
            if self.decode_raw()? {
                continue;
            }
            if self.body_done() {
                return Ok(());
            }
            if !self.active || self.failed {
                return Err(PyIOError::new_err(
                    "the request body is no longer available",
                ));
            }
            let Some(wire) = self.wire.clone() else {
                return Err(PyIOError::new_err(
                    "the request body is no longer available",
                ));
            };
            let timeout = self.timeout;
            // A Content-Length body with nothing pending to decode is read
            // straight into the decoded buffer: no intermediate copies.
            if self.raw.is_empty() {
                if let Some(BodyRest::Length(left)) = &mut self.rest {
                    let room = (*left).min(READ_CHUNK as u64) as usize;
                    let start = self.buf.len();
                    self.buf.resize(start + room, 0);
                    match read_body(py, &wire, timeout, &mut self.buf[start..]) {
                        Ok(n) => {
                            self.buf.truncate(start + n);
                            *left -= n as u64;
                            continue;
                        }
                        Err(e) => {
                            self.buf.truncate(start);
                            self.failed = true;
                            return Err(e);
                        }
                    }
                }
            }
            let start = self.raw.len();
            self.raw.resize(start + READ_CHUNK, 0);
            match read_body(py, &wire, timeout, &mut self.raw[start..]) {
                Ok(n) => self.raw.truncate(start + n),
                Err(e) => {
                    self.raw.truncate(start);
                    self.failed = true;
                    return Err(e);
                }
            }
        }
    }

    /// The next `n` decoded bytes (fewer if fewer are there), as a Python
    /// bytes object built straight from the buffer.
    fn take<'py>(&mut self, py: Python<'py>, n: usize) -> Bound<'py, PyBytes> {
        let end = (self.pos + n).min(self.buf.len());
        let out = PyBytes::new(py, &self.buf[self.pos..end]);
        self.pos = end;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 1 << 20 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        out
    }

    /// End of a request whose connection the app took over: the body, if
    /// any is left, is the app's to read from its socket now.
    pub fn abandon(&mut self) {
        self.active = false;
    }

    /// End of request: deactivate, and hand back the bytes that follow the
    /// body (a pipelined request) if the body was read completely, reading
    /// and discarding an unread rest of at most `drain_limit` bytes.
    /// `None` means the connection cannot be reused.
    pub fn finish(&mut self, py: Python<'_>, drain_limit: u64) -> Option<Vec<u8>> {
        if self.rest.is_some() && !self.failed && !self.body_done() {
            let small = match &self.rest {
                Some(BodyRest::Length(n)) => *n <= drain_limit,
                _ => true,
            };
            if small {
                let mut drained = 0u64;
                while !self.body_done() && drained <= drain_limit {
                    let before = self.buf.len();
                    if self.fill(py, Some(self.buf.len() - self.pos + 1)).is_err() {
                        break;
                    }
                    drained += (self.buf.len() - before) as u64;
                    self.buf.clear();
                    self.pos = 0;
                }
            }
        }
        self.active = false;
        if self.failed || !self.body_done() {
            return None;
        }
        Some(std::mem::take(&mut self.raw))
    }
}

fn size_arg(size: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    match size {
        None => Ok(None),
        Some(s) if s.is_none() => Ok(None),
        Some(s) => {
            let n: i64 = s.extract()?;
            Ok(if n < 0 { None } else { Some(n as usize) })
        }
    }
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size=None))]
    fn read<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let size = size_arg(size)?;
        self.fill(py, size)?;
        Ok(self.take(py, size.unwrap_or(usize::MAX)))
    }

    #[pyo3(signature = (size=None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let limit = size_arg(size)?.unwrap_or(usize::MAX);
        let mut scanned = 0;
        loop {
            let avail = &self.buf[self.pos..];
            if let Some(i) = avail[scanned.min(avail.len())..]
                .iter()
                .position(|&b| b == b'\n')
            {
                let end = (scanned + i + 1).min(limit);
                return Ok(self.take(py, end));
            }
            scanned = avail.len();
            if scanned >= limit || self.body_done() && self.raw.is_empty() {
                return Ok(self.take(py, limit.min(scanned)));
            }
            let want = scanned + 1;
            self.fill(py, Some(want))?;
            if self.buf.len() - self.pos < want {
                return Ok(self.take(py, limit));
            }
        }
    }

    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = size_arg(hint)?.filter(|h| *h > 0);
        let out = PyList::empty(py);
        let mut total = 0;
        loop {
            let line = self.readline(py, None)?;
            let n = line.as_bytes().len();
            if n == 0 {
                break;
            }
            out.append(line)?;
            total += n;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(out)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let line = self.readline(py, None)?;
        if line.as_bytes().is_empty() {
            Err(PyStopIteration::new_err(()))
        } else {
            Ok(line)
        }
    }
}
