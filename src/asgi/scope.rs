//! ASGI connection scopes (`http` and `websocket`) built from a parsed
//! request head: the path decoded and the raw path kept, headers in order
//! with lower-cased names, client and server addresses, the scheme a
//! trusted proxy vouches for (`secure_scheme_headers`, as for WSGI), the
//! lifespan `state`, and the extensions this server implements.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::http::RequestHead;
use crate::worker::executor::Edge;
use crate::wsgi::{percent_decode, Forwarding, Peer, ServerInfo};

/// What every scope of a worker shares, made once.
pub struct ScopeBase {
    asgi3: Py<PyDict>,
    http_ext: Py<PyDict>,
    ws_ext: Py<PyDict>,
    http10: Py<PyString>,
    http11: Py<PyString>,
    root_path: String,
    root_path_py: Py<PyString>,
    /// The lifespan's state; each request gets a shallow copy.
    pub state: Py<PyDict>,
    /// Per listener: the `server` entry.
    servers: Vec<Py<PyAny>>,
}

impl ScopeBase {
    pub fn new(
        py: Python<'_>,
        version: u8,
        root_path: &str,
        servers: &[ServerInfo],
        state: Py<PyDict>,
    ) -> PyResult<ScopeBase> {
        let asgi = PyDict::new(py);
        asgi.set_item("version", if version == 2 { "2.0" } else { "3.0" })?;
        asgi.set_item("spec_version", "2.4")?;
        let http_ext = PyDict::new(py);
        http_ext.set_item("http.response.pathsend", PyDict::new(py))?;
        http_ext.set_item("http.response.zerocopysend", PyDict::new(py))?;
        http_ext.set_item("http.response.trailers", PyDict::new(py))?;
        let ws_ext = PyDict::new(py);
        ws_ext.set_item("websocket.http.response", PyDict::new(py))?;
        let servers = servers
            .iter()
            .map(|s| -> PyResult<Py<PyAny>> {
                let t = if s.unix {
                    PyTuple::new(
                        py,
                        [
                            s.name.clone().into_pyobject(py)?.into_any(),
                            py.None().into_bound(py),
                        ],
                    )?
                } else {
                    let port: Option<u16> = s.port.parse().ok();
                    PyTuple::new(
                        py,
                        [
                            s.name.clone().into_pyobject(py)?.into_any(),
                            port.into_pyobject(py)?.into_any(),
                        ],
                    )?
                };
                Ok(t.into_any().unbind())
            })
            .collect::<PyResult<Vec<_>>>()?;
        let root_path = root_path.trim_end_matches('/').to_string();
        Ok(ScopeBase {
            asgi3: asgi.unbind(),
            http_ext: http_ext.unbind(),
            ws_ext: ws_ext.unbind(),
            http10: PyString::intern(py, "1.0").unbind(),
            http11: PyString::intern(py, "1.1").unbind(),
            root_path_py: PyString::new(py, &root_path).unbind(),
            root_path,
            state,
            servers,
        })
    }

    /// The scope of a request: `websocket` when `ws`, else `http`. `from`
    /// is the connection's peer (trusted or not), the client the request
    /// is from, and what the edge protocols said (a uwsgi request's
    /// `SERVER_PROTOCOL`, `REQUEST_URI`, `SERVER_NAME`/`SERVER_PORT` and
    /// scheme vars are taken as the proxy gave them).
    #[allow(clippy::too_many_arguments)]
    pub fn build<'py>(
        &self,
        py: Python<'py>,
        head: &RequestHead,
        from: (&Peer, &Peer, &Edge),
        listener: usize,
        forwarding: &Forwarding,
        ws: bool,
        subprotocols: &[String],
    ) -> PyResult<Bound<'py, PyDict>> {
        let (peer, client, edge) = from;
        let uwsgi = edge.uwsgi.as_deref();
        let scope = PyDict::new(py);
        let said = forwarding.scheme(head, peer);
        let https = if edge.tls {
            said.unwrap_or(true)
        } else {
            said.unwrap_or(false) || edge.https()
        };
        scope.set_item(
            pyo3::intern!(py, "type"),
            if ws {
                pyo3::intern!(py, "websocket")
            } else {
                pyo3::intern!(py, "http")
            },
        )?;
        scope.set_item(pyo3::intern!(py, "asgi"), self.asgi3.bind(py))?;
        let http10 = match uwsgi.and_then(|v| v.get("SERVER_PROTOCOL")) {
            // A stream through the HTTP/2 gateway.
            _ if edge.http2.is_some() => {
                scope.set_item(pyo3::intern!(py, "http_version"), "2")?;
                None
            }
            // uwsgi is served with HTTP/1.0 framing; the version is the
            // client's, as the proxy says.
            Some(p) if p.starts_with("HTTP/2") => {
                scope.set_item(pyo3::intern!(py, "http_version"), "2")?;
                None
            }
            Some(p) => Some(p == "HTTP/1.0"),
            None if uwsgi.is_some() => Some(false),
            None => Some(head.minor_version == 0),
        };
        if let Some(http10) = http10 {
            scope.set_item(
                pyo3::intern!(py, "http_version"),
                if http10 {
                    self.http10.bind(py)
                } else {
                    self.http11.bind(py)
                },
            )?;
        }
        let scheme = match (ws, https) {
            (false, false) => pyo3::intern!(py, "http"),
            (false, true) => pyo3::intern!(py, "https"),
            (true, false) => pyo3::intern!(py, "ws"),
            (true, true) => pyo3::intern!(py, "wss"),
        };
        scope.set_item(pyo3::intern!(py, "scheme"), scheme)?;
        if !ws {
            scope.set_item(pyo3::intern!(py, "method"), PyString::new(py, &head.method))?;
        }
        // path: percent-decoded, as UTF-8; both carry the root path.
        let decoded = percent_decode(&head.path);
        let decoded = String::from_utf8_lossy(&decoded);
        // raw_path: the path as sent; for uwsgi, REQUEST_URI's (the head
        // holds PATH_INFO, which the proxy decoded).
        let raw_path = match uwsgi.and_then(|v| v.get("REQUEST_URI")) {
            Some(uri) => latin1(uri.split('?').next().unwrap_or(uri)),
            None => latin1(&head.path),
        };
        if self.root_path.is_empty() {
            scope.set_item(pyo3::intern!(py, "path"), PyString::new(py, &decoded))?;
            scope.set_item(pyo3::intern!(py, "raw_path"), PyBytes::new(py, &raw_path))?;
        } else {
            let full = format!("{}{}", self.root_path, decoded);
            scope.set_item(pyo3::intern!(py, "path"), PyString::new(py, &full))?;
            let mut raw = self.root_path.as_bytes().to_vec();
            raw.extend_from_slice(&raw_path);
            scope.set_item(pyo3::intern!(py, "raw_path"), PyBytes::new(py, &raw))?;
        }
        scope.set_item(
            pyo3::intern!(py, "query_string"),
            PyBytes::new(py, &latin1(&head.query)),
        )?;
        scope.set_item(pyo3::intern!(py, "root_path"), self.root_path_py.bind(py))?;
        let headers = PyList::empty(py);
        for (name, value) in &head.headers {
            let n = PyBytes::new(py, name.to_ascii_lowercase().as_bytes());
            let v = PyBytes::new(py, &latin1(value));
            headers.append(PyTuple::new(py, [n, v])?)?;
        }
        scope.set_item(pyo3::intern!(py, "headers"), headers)?;
        match client {
            Peer::Tcp(a) => {
                scope.set_item(pyo3::intern!(py, "client"), (a.ip().to_string(), a.port()))?
            }
            Peer::Unix => scope.set_item(pyo3::intern!(py, "client"), py.None())?,
        }
        let uwsgi_server = uwsgi.and_then(|v| {
            let port: u16 = v.get("SERVER_PORT")?.parse().ok()?;
            Some((v.get("SERVER_NAME")?.to_string(), port))
        });
        match (uwsgi_server, self.servers.get(listener)) {
            (Some(s), _) => scope.set_item(pyo3::intern!(py, "server"), s)?,
            (None, Some(s)) => scope.set_item(pyo3::intern!(py, "server"), s.bind(py))?,
            (None, None) => scope.set_item(pyo3::intern!(py, "server"), py.None())?,
        }
        if ws {
            let subs = PyList::empty(py);
            for s in subprotocols {
                subs.append(s)?;
            }
            scope.set_item(pyo3::intern!(py, "subprotocols"), subs)?;
            scope.set_item(pyo3::intern!(py, "extensions"), self.ws_ext.bind(py))?;
        } else {
            scope.set_item(pyo3::intern!(py, "extensions"), self.http_ext.bind(py))?;
        }
        scope.set_item(pyo3::intern!(py, "state"), self.state.bind(py).copy()?)?;
        Ok(scope)
    }
}

/// A latin-1 decoded header string back to its bytes.
pub fn latin1(s: &str) -> Vec<u8> {
    if s.is_ascii() {
        return s.as_bytes().to_vec();
    }
    s.chars().map(|c| c as u32 as u8).collect()
}
