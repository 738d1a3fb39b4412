//! What the app sends on a WebSocket session: `websocket.accept` (the
//! `101`), `websocket.send`, `websocket.close` before or after accepting,
//! the `websocket.http.response` denial, and the Tornado adapter's
//! `ferrocorn.websocket.ping`, each checked against the session's phase.

use std::time::Instant;

#[cfg(feature = "wheel")]
use crate::wsgi::abi::ToStr as _;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::{Phase, WsCycle};
use crate::asgi::io::{check_field, header_bytes, latin1_string, runtime_error};
use crate::http::reason_phrase;
use crate::ws::{self, Decoder, Encoder};

impl WsCycle {
    pub(super) fn handle_send<'py>(
        &mut self,
        py: Python<'py>,
        kind: &str,
        message: &Bound<'py, PyDict>,
    ) -> PyResult<()> {
        let get = |k: &Bound<'py, PyString>| message.get_item(k);
        match (kind, self.phase) {
            ("websocket.accept", Phase::Connecting) => {
                let sub: Option<String> = get(pyo3::intern!(py, "subprotocol"))?
                    .filter(|s| !s.is_none())
                    .map(|s| s.extract())
                    .transpose()?;
                let mut extra = Vec::new();
                if let Some(h) = get(pyo3::intern!(py, "headers"))? {
                    for pair in h.try_iter()? {
                        let (n, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
                        extra.push((header_bytes(&n)?, header_bytes(&v)?));
                    }
                }
                self.control = match get(pyo3::intern!(py, "ferrocorn.control_frames"))? {
                    Some(c) => c.is_truthy()?,
                    None => false,
                };
                let resp = ws::response_101(&self.up, sub.as_deref(), &extra)
                    .map_err(|e| PyValueError::new_err(e.to_string()))?;
                for (n, v) in &extra {
                    self.log_headers.push((latin1_string(n), latin1_string(v)));
                }
                self.out.extend_from_slice(&resp);
                self.waiting.release();
                self.status = 101;
                self.phase = Phase::Open;
                let max = self.hub.opts.ws_max_message;
                self.dec = Some(Decoder::new(max, self.up.deflate.as_ref()));
                self.enc = Some(Encoder::new(self.up.deflate.as_ref()));
                Ok(())
            }
            ("websocket.close", Phase::Connecting) => {
                // Refused before the handshake: 403, as uvicorn answers.
                self.http_error(403, "");
                Ok(())
            }
            ("websocket.close", Phase::Open) => {
                let code: u16 = match get(pyo3::intern!(py, "code"))? {
                    Some(c) if !c.is_none() => c.extract()?,
                    _ => 1000,
                };
                let reason: String = match get(pyo3::intern!(py, "reason"))? {
                    Some(r) if !r.is_none() => r.extract()?,
                    _ => String::new(),
                };
                if let Some(enc) = self.enc.as_mut() {
                    enc.close(code, &reason, &mut self.out);
                }
                self.close_sent = Some(code);
                self.phase = Phase::Closing(Instant::now());
                Ok(())
            }
            ("websocket.close", _) => Ok(()),
            ("websocket.send", Phase::Open) => {
                let enc = self
                    .enc
                    .as_mut()
                    .ok_or_else(|| runtime_error("no encoder"))?;
                match get(pyo3::intern!(py, "bytes"))? {
                    Some(b) if !b.is_none() => {
                        let b = b.cast::<PyBytes>().map_err(|_| {
                            PyValueError::new_err("websocket.send 'bytes' must be bytes")
                        })?;
                        enc.binary(b.as_bytes(), &mut self.out);
                    }
                    _ => match get(pyo3::intern!(py, "text"))? {
                        Some(t) if !t.is_none() => {
                            let t = t.cast::<PyString>().map_err(|_| {
                                PyValueError::new_err("websocket.send 'text' must be str")
                            })?;
                            enc.text(t.to_str()?, &mut self.out);
                        }
                        _ => {
                            return Err(PyValueError::new_err(
                                "websocket.send needs 'bytes' or 'text'",
                            ))
                        }
                    },
                }
                Ok(())
            }
            ("ferrocorn.websocket.ping", Phase::Open) => {
                let data = match get(pyo3::intern!(py, "bytes"))? {
                    Some(b) if !b.is_none() => b
                        .cast::<PyBytes>()
                        .map_err(|_| {
                            PyValueError::new_err("ferrocorn.websocket.ping 'bytes' must be bytes")
                        })?
                        .as_bytes()
                        .to_vec(),
                    _ => Vec::new(),
                };
                if data.len() > 125 {
                    return Err(PyValueError::new_err(
                        "a WebSocket ping carries at most 125 bytes",
                    ));
                }
                if let Some(enc) = self.enc.as_mut() {
                    enc.ping(&data, &mut self.out);
                }
                Ok(())
            }
            ("ferrocorn.websocket.ping", _) => Ok(()),
            ("websocket.send", Phase::Closed) if self.close_sent.is_none() || self.gone => {
                Err(PyOSError::new_err("the WebSocket connection is closed"))
            }
            ("websocket.send", Phase::Closing(_) | Phase::Closed) => Err(runtime_error(
                "Unexpected ASGI message 'websocket.send', after sending 'websocket.close'.",
            )),
            ("websocket.http.response.start", Phase::Connecting) => {
                let status: u16 = match get(pyo3::intern!(py, "status"))? {
                    Some(s) => s.extract()?,
                    None => return Err(PyValueError::new_err("no 'status'")),
                };
                let mut h = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).into_bytes();
                let (mut has_server, mut has_date) = (false, false);
                if let Some(hs) = get(pyo3::intern!(py, "headers"))? {
                    for pair in hs.try_iter()? {
                        let (n, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
                        let (n, v) = (header_bytes(&n)?, header_bytes(&v)?);
                        check_field(&n, &v)?;
                        let l = n.to_ascii_lowercase();
                        if l == b"connection" || l == b"transfer-encoding" {
                            continue;
                        }
                        has_server |= l == b"server";
                        has_date |= l == b"date";
                        self.log_headers
                            .push((latin1_string(&n), latin1_string(&v)));
                        h.extend_from_slice(&n);
                        h.extend_from_slice(b": ");
                        h.extend_from_slice(&v);
                        h.extend_from_slice(b"\r\n");
                    }
                }
                if !has_server {
                    h.extend_from_slice(b"Server: ferrocorn\r\n");
                }
                if !has_date {
                    h.extend_from_slice(format!("Date: {}\r\n", self.date).as_bytes());
                }
                // The connection ends with the body.
                h.extend_from_slice(b"Connection: close\r\n\r\n");
                self.out.extend_from_slice(&h);
                self.waiting.release();
                self.status = status;
                self.phase = Phase::Denying;
                Ok(())
            }
            ("websocket.http.response.body", Phase::Denying) => {
                if let Some(b) = get(pyo3::intern!(py, "body"))? {
                    let b: Vec<u8> = b.extract()?;
                    self.body_bytes += b.len() as u64;
                    if self.head.method != "HEAD" {
                        self.out.extend_from_slice(&b);
                    }
                }
                let more = match get(pyo3::intern!(py, "more_body"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                if !more {
                    self.phase = Phase::Closed;
                    if self.disconnect.is_none() {
                        self.disconnect = Some((1000, String::new()));
                    }
                }
                Ok(())
            }
            (other, phase) => Err(runtime_error(format!(
                "Unexpected ASGI message '{other}' sent, in WebSocket state {phase:?}."
            ))),
        }
    }
}
