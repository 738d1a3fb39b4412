//! The sending half of an HTTP cycle: the app's `http.response.*`
//! messages turned into bytes on the connection (the head with this
//! server's framing: Content-Length when the whole body is known, chunked
//! otherwise; trailers; pathsend and zerocopysend with sendfile(2)), and
//! writing what the socket takes now.

use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::super::io::READ_CHUNK;
use super::super::io::{check_field, header_bytes, latin1_string, runtime_error, write_some};
use super::{FileOut, HttpCycle, HIGH_WATER};
use crate::http::reason_phrase;
use crate::warning;

impl HttpCycle {
    /// Act on one message from `send`; true: the caller waits for the
    /// socket to take what is queued.
    pub(super) fn handle_send(
        &mut self,
        py: Python<'_>,
        kind: &str,
        message: &Bound<'_, PyDict>,
    ) -> PyResult<bool> {
        if (self.gone || self.eof) && !self.complete {
            // The client is gone (ASGI 2.4: send raises an OSError).
            return Err(super::super::io::client_disconnected(py));
        }
        match kind {
            "http.response.start" => {
                if self.start.is_some() || self.head_sent || self.complete {
                    return Err(runtime_error(
                        "Unexpected ASGI message 'http.response.start' sent, after response already started.",
                    ));
                }
                let status: u16 = match message.get_item(pyo3::intern!(py, "status"))? {
                    Some(s) => s.extract()?,
                    None => {
                        return Err(PyValueError::new_err("http.response.start has no 'status'"))
                    }
                };
                if !(100..=999).contains(&status) {
                    return Err(PyValueError::new_err(format!(
                        "invalid HTTP status {status}"
                    )));
                }
                let mut headers = Vec::new();
                if let Some(h) = message.get_item(pyo3::intern!(py, "headers"))? {
                    for pair in h.try_iter()? {
                        let (n, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
                        headers.push((header_bytes(&n)?, header_bytes(&v)?));
                    }
                }
                self.trailers = match message.get_item(pyo3::intern!(py, "trailers"))? {
                    Some(t) => t.is_truthy()?,
                    None => false,
                };
                self.status = status;
                self.start = Some((status, headers));
                Ok(false)
            }
            "http.response.body" => {
                self.expect_started("http.response.body")?;
                let body = match message.get_item(pyo3::intern!(py, "body"))? {
                    Some(b) => b
                        .extract::<&[u8]>()
                        .map(<[u8]>::to_vec)
                        .or_else(|_| b.extract::<Vec<u8>>())?,
                    None => Vec::new(),
                };
                let more = match message.get_item(pyo3::intern!(py, "more_body"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                self.write_body(&body, more)?;
                self.after_send(py)
            }
            "http.response.trailers" => {
                if !self.trailers || self.complete || !self.head_sent {
                    return Err(runtime_error(
                        "Unexpected ASGI message 'http.response.trailers': the response start did not announce trailers, or the body is not complete",
                    ));
                }
                let more = match message.get_item(pyo3::intern!(py, "more_trailers"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                if self.chunked && !self.no_body && !self.is_head && !self.gone {
                    if let Some(h) = message.get_item(pyo3::intern!(py, "headers"))? {
                        for pair in h.try_iter()? {
                            let (n, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
                            let (n, v) = (header_bytes(&n)?, header_bytes(&v)?);
                            check_field(&n, &v)?;
                            self.out.extend_from_slice(&n);
                            self.out.extend_from_slice(b": ");
                            self.out.extend_from_slice(&v);
                            self.out.extend_from_slice(b"\r\n");
                        }
                    }
                    if !more {
                        self.out.extend_from_slice(b"\r\n");
                    }
                }
                if !more {
                    self.complete = true;
                }
                self.after_send(py)
            }
            "http.response.pathsend" => {
                self.expect_started("http.response.pathsend")?;
                let path: std::path::PathBuf = match message.get_item(pyo3::intern!(py, "path"))? {
                    Some(p) => p.extract()?,
                    None => {
                        return Err(PyValueError::new_err(
                            "http.response.pathsend has no 'path'",
                        ))
                    }
                };
                let file = std::fs::File::open(&path).map_err(|e| {
                    PyOSError::new_err(format!("cannot open {}: {e}", path.display()))
                })?;
                let len = file.metadata().map(|m| m.len()).map_err(|e| {
                    PyOSError::new_err(format!("cannot read {}: {e}", path.display()))
                })?;
                self.send_file(Some(file), None, 0, len, true)?;
                self.after_send(py)
            }
            "http.response.zerocopysend" => {
                self.expect_started("http.response.zerocopysend")?;
                let file = match message.get_item(pyo3::intern!(py, "file"))? {
                    Some(f) => f,
                    None => {
                        return Err(PyValueError::new_err(
                            "http.response.zerocopysend has no 'file'",
                        ))
                    }
                };
                let fd: RawFd = file.call_method0(pyo3::intern!(py, "fileno"))?.extract()?;
                let offset: Option<i64> = message
                    .get_item(pyo3::intern!(py, "offset"))?
                    .map(|o| o.extract())
                    .transpose()?;
                let count: Option<u64> = message
                    .get_item(pyo3::intern!(py, "count"))?
                    .map(|o| o.extract())
                    .transpose()?;
                let more = match message.get_item(pyo3::intern!(py, "more_body"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                // The file's own position when no offset is given.
                // SAFETY: lseek on a descriptor the app handed over; it
                // touches no memory.
                let pos =
                    offset.unwrap_or_else(|| unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) }.max(0));
                // SAFETY: the app's descriptor, borrowed for this call.
                let size =
                    nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
                        .map(|st| st.st_size.max(0) as u64)
                        .map_err(|e| PyOSError::new_err(format!("zerocopysend: {e}")))?;
                let avail = size.saturating_sub(pos as u64);
                let count = count.map_or(avail, |c| c.min(avail));
                self.send_file(None, Some(fd), pos, count, !more)?;
                // The app's file must stay open until it is out: wait.
                self.after_send(py).map(|_| self.file.is_some())
            }
            other => Err(runtime_error(format!(
                "Unexpected ASGI message '{other}' sent, for an HTTP connection."
            ))),
        }
    }

    pub(super) fn expect_started(&self, kind: &str) -> PyResult<()> {
        if self.complete {
            return Err(runtime_error(format!(
                "Unexpected ASGI message '{kind}' sent, after response already completed."
            )));
        }
        if self.start.is_none() && !self.head_sent {
            return Err(runtime_error(format!(
                "Expected ASGI message 'http.response.start', but got '{kind}'."
            )));
        }
        Ok(())
    }

    /// After a body message: write, and hand the connection back once
    /// the response is complete. True: `send` waits.
    pub(super) fn after_send(&mut self, py: Python<'_>) -> PyResult<bool> {
        self.flush();
        if self.complete && self.file.is_none() {
            self.finish(py);
            return Ok(false);
        }
        Ok(self.pending() > HIGH_WATER || self.file.is_some())
    }

    pub(super) fn pending(&self) -> usize {
        self.out.len() - self.opos
    }

    /// Write the response head (once), with the framing decided now:
    /// `final_len` is the whole body's length when the first body message
    /// is also the last.
    pub(super) fn write_head(&mut self, final_len: Option<u64>) -> PyResult<()> {
        if self.head_sent {
            return Ok(());
        }
        let Some((status, headers)) = self.start.take() else {
            return Err(runtime_error("no response start"));
        };
        let mut h = Vec::with_capacity(160 + headers.len() * 32);
        h.extend_from_slice(b"HTTP/1.1 ");
        h.extend_from_slice(status.to_string().as_bytes());
        h.push(b' ');
        h.extend_from_slice(reason_phrase(status).as_bytes());
        h.extend_from_slice(b"\r\n");
        self.no_body = status < 200 || status == 204 || status == 304;
        let (mut has_server, mut has_date) = (false, false);
        let mut length: Option<u64> = None;
        for (n, v) in &headers {
            check_field(n, v)?;
            let lname = n.to_ascii_lowercase();
            match lname.as_slice() {
                b"content-length" => {
                    let s = std::str::from_utf8(v).unwrap_or("").trim();
                    let len = s.parse::<u64>().map_err(|_| {
                        PyValueError::new_err(format!("invalid content-length header: {s:?}"))
                    })?;
                    if status < 200 || status == 204 {
                        continue;
                    }
                    length = Some(len);
                }
                // The framing is this server's.
                b"transfer-encoding" => continue,
                b"connection" => {
                    if v.to_ascii_lowercase().windows(5).any(|w| w == b"close") {
                        self.keep_alive = false;
                    }
                    continue;
                }
                b"server" => has_server = true,
                b"date" => has_date = true,
                _ => {}
            }
            self.log_headers.push((latin1_string(n), latin1_string(v)));
            h.extend_from_slice(n);
            h.extend_from_slice(b": ");
            h.extend_from_slice(v);
            h.extend_from_slice(b"\r\n");
        }
        if !has_server {
            h.extend_from_slice(b"Server: ferrocorn\r\n");
        }
        if !has_date {
            h.extend_from_slice(b"Date: ");
            h.extend_from_slice(self.date.as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        let minor = self.head.minor_version;
        if self.no_body {
            self.remaining = Some(0);
        } else if let Some(n) = length {
            self.remaining = Some(n);
        } else if self.is_head {
            self.remaining = Some(0);
        } else if self.trailers && minor >= 1 {
            h.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            self.chunked = true;
        } else if let Some(n) = final_len {
            h.extend_from_slice(b"Content-Length: ");
            h.extend_from_slice(n.to_string().as_bytes());
            h.extend_from_slice(b"\r\n");
            self.remaining = Some(n);
        } else if minor >= 1 {
            h.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            self.chunked = true;
        } else {
            self.keep_alive = false;
        }
        if self.eof || self.hub.draining.get() {
            self.keep_alive = false;
        }
        if !self.keep_alive {
            h.extend_from_slice(b"Connection: close\r\n");
        } else if minor == 0 {
            h.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        h.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&h);
        self.head_sent = true;
        self.waiting.release();
        Ok(())
    }

    pub(super) fn write_body(&mut self, body: &[u8], more: bool) -> PyResult<()> {
        if !self.head_sent {
            self.write_head((!more).then_some(body.len() as u64))?;
        }
        let silent = self.no_body || self.is_head || self.gone;
        if !body.is_empty() && !self.no_body && !self.is_head {
            if let Some(rem) = self.remaining.as_mut() {
                if body.len() as u64 > *rem {
                    return Err(runtime_error("Response content longer than Content-Length"));
                }
                *rem -= body.len() as u64;
            }
            self.body_bytes += body.len() as u64;
        }
        if !silent && !body.is_empty() {
            if self.chunked {
                self.out
                    .extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                self.out.extend_from_slice(body);
                self.out.extend_from_slice(b"\r\n");
            } else {
                self.out.extend_from_slice(body);
            }
        }
        if !more {
            self.end_body();
        }
        Ok(())
    }

    /// The last body bytes were sent.
    pub(super) fn end_body(&mut self) {
        if self.remaining.is_some_and(|r| r > 0) && !self.is_head {
            // Shorter than its Content-Length: only closing can end it.
            warning!("ASGI response shorter than its Content-Length; closing the connection");
            self.keep_alive = false;
        }
        if self.trailers && self.chunked {
            if !self.gone && !self.is_head && !self.no_body {
                self.out.extend_from_slice(b"0\r\n");
            }
            // Complete with the trailers message.
            return;
        }
        if self.chunked && !self.gone && !self.is_head {
            self.out.extend_from_slice(b"0\r\n\r\n");
        }
        self.complete = true;
    }

    pub(super) fn send_file(
        &mut self,
        owned: Option<std::fs::File>,
        fd: Option<RawFd>,
        offset: i64,
        len: u64,
        last: bool,
    ) -> PyResult<()> {
        if !self.head_sent {
            let has_length = self.start.as_ref().is_some_and(|(_, h)| {
                h.iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(b"content-length"))
            });
            if let (false, Some((_, h))) = (has_length || !last, self.start.as_mut()) {
                h.push((b"content-length".to_vec(), len.to_string().into_bytes()));
            }
            self.write_head(None)?;
        }
        let fd = match (&owned, fd) {
            (Some(f), _) => f.as_raw_fd(),
            (None, Some(fd)) => fd,
            (None, None) => return Err(runtime_error("no file to send")),
        };
        let silent = self.no_body || self.is_head || self.gone;
        if let Some(rem) = self.remaining.as_mut() {
            if !silent && len > *rem {
                return Err(runtime_error("Response content longer than Content-Length"));
            }
            *rem = rem.saturating_sub(len);
        }
        if silent || len == 0 {
            if last {
                self.end_body();
            }
            return Ok(());
        }
        self.body_bytes += len;
        if self.chunked {
            self.out
                .extend_from_slice(format!("{len:x}\r\n").as_bytes());
        }
        self.file = Some(FileOut {
            _owned: owned,
            fd,
            offset,
            left: len,
            last,
        });
        Ok(())
    }

    /// Write what the socket takes now; a failed write means the client
    /// is gone.
    pub(super) fn flush(&mut self) {
        if self.gone {
            return;
        }
        loop {
            while self.opos < self.out.len() {
                match write_some(&self.wire, &self.out[self.opos..]) {
                    Ok(n) => {
                        self.opos += n;
                        self.last_progress = Instant::now();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.lost();
                        return;
                    }
                }
            }
            self.out.clear();
            self.opos = 0;
            let Some(f) = self.file.as_mut() else { return };
            if f.left == 0 {
                let last = f.last;
                self.file = None;
                if self.chunked {
                    self.out.extend_from_slice(b"\r\n");
                }
                if last {
                    self.end_body();
                }
                if self.out.is_empty() {
                    return;
                }
                continue;
            }
            let step = f.left.min(1 << 20) as usize;
            let r = if self.hub.opts.sendfile && !self.wire.is_tls() {
                let mut off = f.offset as libc::off_t;
                // SAFETY: both descriptors are open (the connection's is the
                // engine's until this cycle hands it back; the file's is
                // owned or kept open by the waiting app); `off` is a valid
                // pointer for the call's duration.
                let n = unsafe { libc::sendfile(self.wire.fd(), f.fd, &mut off, step) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            } else {
                let mut buf = vec![0u8; step.min(READ_CHUNK)];
                match nix::sys::uio::pread(
                    // SAFETY: the descriptor stays open while it is sent
                    // (see above); borrowed for this call only.
                    unsafe { std::os::fd::BorrowedFd::borrow_raw(f.fd) },
                    &mut buf,
                    f.offset,
                ) {
                    Ok(n) => {
                        buf.truncate(n);
                        match write_some(&self.wire, &buf) {
                            Ok(w) => {
                                // What the socket did not take is queued.
                                self.out.extend_from_slice(&buf[w..]);
                                Ok(n)
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(std::io::Error::from(e)),
                }
            };
            match r {
                Ok(0) => {
                    // The file is shorter than announced.
                    warning!("File for the ASGI response ended early");
                    self.keep_alive = false;
                    self.file = None;
                    self.complete = true;
                    return;
                }
                Ok(n) => {
                    let f = self.file.as_mut().expect("file in progress");
                    f.offset += n as i64;
                    f.left -= n as u64;
                    self.last_progress = Instant::now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.lost();
                    return;
                }
            }
        }
    }
}
