//! The WSGI environ of a request (PEP 3333 plus gunicorn's extras): keys
//! interned once per worker, headers mapped to `HTTP_*`, SCRIPT_NAME and
//! PATH_INFO, SERVER_NAME/PORT as gunicorn derives them, and what a
//! trusted proxy may say ([`Forwarding`]: `secure_scheme_headers` for the
//! URL scheme, `forwarder_headers` and `header_map` for header names with
//! underscores).

use std::collections::HashMap;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use super::{ConnSocket, ErrorStream, FileWrapper, Input, Responder};
use crate::config::{IpNet, Settings};
use crate::http::RequestHead;
use crate::worker::executor::Edge;

/// `header_map`: what becomes of a header whose name has an underscore
/// and that `forwarder_headers` does not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMap {
    Drop,
    Refuse,
    Dangerous,
}

/// What a trusted proxy may tell the app, and who is trusted (gunicorn's
/// `forwarded_allow_ips`, `secure_scheme_headers`, `forwarder_headers`,
/// `header_map`).
#[derive(Debug, Clone)]
pub struct Forwarding {
    trust_all: bool,
    trusted: Vec<IpNet>,
    /// (upper-cased header name, the exact value that means https).
    secure: Vec<(String, String)>,
    /// Upper-cased names with underscores a trusted peer may send.
    forwarders: Vec<String>,
    forward_any: bool,
    header_map: HeaderMap,
}

impl Forwarding {
    /// From the resolved (validated) settings.
    pub fn from_settings(s: &Settings) -> Forwarding {
        Forwarding {
            trust_all: s.forwarded_allow_ips.iter().any(|t| t == "*"),
            trusted: s
                .forwarded_allow_ips
                .iter()
                .filter_map(|t| IpNet::parse(t).ok())
                .collect(),
            secure: s
                .secure_scheme_headers
                .0
                .iter()
                .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
                .collect(),
            forwarders: s
                .forwarder_headers
                .iter()
                .map(|h| h.to_ascii_uppercase())
                .collect(),
            forward_any: s.forwarder_headers.iter().any(|h| h == "*"),
            header_map: match s.header_map.as_str() {
                "refuse" => HeaderMap::Refuse,
                "dangerous" => HeaderMap::Dangerous,
                _ => HeaderMap::Drop,
            },
        }
    }

    /// Whether `peer` may set the scheme and forwarder headers; a unix
    /// socket's peer always may, as in gunicorn.
    pub fn trusts(&self, peer: &Peer) -> bool {
        match peer {
            Peer::Unix => true,
            Peer::Tcp(a) => {
                let ip = a.ip();
                self.trust_all || self.trusted.iter().any(|n| n.contains(ip))
            }
        }
    }

    /// Whether a header with an underscore in its name reaches the app.
    fn passes(&self, upper: &str, trusted: bool) -> bool {
        (trusted && (self.forward_any || self.forwarders.iter().any(|f| f == upper)))
            || self.header_map == HeaderMap::Dangerous
    }

    /// The first header of `head` that `header_map = refuse` turns the
    /// request away for, if any (the 400 names it, as gunicorn's does).
    pub fn refused<'h>(&self, head: &'h RequestHead, peer: &Peer) -> Option<&'h str> {
        if self.header_map != HeaderMap::Refuse {
            return None;
        }
        let trusted = self.trusts(peer);
        head.headers
            .iter()
            .map(|(n, _)| n.as_str())
            .find(|n| n.contains('_') && !self.passes(&n.to_ascii_uppercase(), trusted))
    }

    /// Whether a trusted `peer`'s scheme headers contradict each other
    /// (one says https, another, or a repeat, says http), which gunicorn
    /// answers with 400 `Contradictory scheme headers`: the app and the
    /// proxy would disagree on the scheme.
    pub fn contradictory_scheme(&self, head: &RequestHead, peer: &Peer) -> bool {
        if self.secure.is_empty() || !self.trusts(peer) {
            return false;
        }
        let mut said = head
            .headers
            .iter()
            .filter_map(|(name, value)| self.scheme_says_https(name, value));
        match said.next() {
            Some(first) => said.any(|https| https != first),
            None => false,
        }
    }

    /// Whether a trusted peer's first scheme header says https (the
    /// scheme an app sees, WSGI's `wsgi.url_scheme` and ASGI's `scheme`).
    /// What a trusted peer's scheme header says: `Some(https?)`, or None
    /// without one.
    pub fn scheme(&self, head: &RequestHead, peer: &Peer) -> Option<bool> {
        if self.secure.is_empty() || !self.trusts(peer) {
            return None;
        }
        head.headers
            .iter()
            .find_map(|(name, value)| self.scheme_says_https(name, value))
    }

    /// `Some(https?)` when `name` is one of the scheme headers.
    fn scheme_says_https(&self, name: &str, value: &str) -> Option<bool> {
        self.secure
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(name))
            .map(|(_, v)| v == value)
    }
}

macro_rules! keys {
    ($($field:ident = $s:literal),* $(,)?) => {
        struct Keys { $($field: Py<PyString>,)* }
        impl Keys {
            fn new(py: Python<'_>) -> Keys {
                Keys { $($field: PyString::intern(py, $s).unbind(),)* }
            }
        }
    };
}

keys! {
    request_method = "REQUEST_METHOD",
    script_name = "SCRIPT_NAME",
    path_info = "PATH_INFO",
    query_string = "QUERY_STRING",
    raw_uri = "RAW_URI",
    server_protocol = "SERVER_PROTOCOL",
    server_name = "SERVER_NAME",
    server_port = "SERVER_PORT",
    server_software = "SERVER_SOFTWARE",
    remote_addr = "REMOTE_ADDR",
    remote_port = "REMOTE_PORT",
    wsgi_version = "wsgi.version",
    wsgi_url_scheme = "wsgi.url_scheme",
    wsgi_input = "wsgi.input",
    wsgi_errors = "wsgi.errors",
    wsgi_multithread = "wsgi.multithread",
    wsgi_multiprocess = "wsgi.multiprocess",
    wsgi_run_once = "wsgi.run_once",
    wsgi_input_terminated = "wsgi.input_terminated",
    wsgi_file_wrapper = "wsgi.file_wrapper",
    wsgi_early_hints = "wsgi.early_hints",
    gunicorn_socket = "gunicorn.socket",
}

/// Where a request came from, for REMOTE_ADDR and forwarded-header trust.
#[derive(Clone, Debug)]
pub enum Peer {
    Tcp(std::net::SocketAddr),
    Unix,
}

/// Per-worker Python state: the app and everything that can be built once.
pub struct Wsgi {
    pub app: Py<PyAny>,
    keys: Keys,
    http: Py<PyString>,
    https: Py<PyString>,
    http10: Py<PyString>,
    http11: Py<PyString>,
    empty: Py<PyString>,
    script_name: String,
    methods: HashMap<String, Py<PyString>>,
    /// What every environ starts as, copied per request: the keys that are
    /// always there (the fixed ones with their values, the per-request
    /// ones as None, each overwritten), so that the copy is one block copy
    /// sized for them and the request's headers, and filling it does not
    /// grow the dict. Built key by key from an empty dict, it grew three
    /// times per request (bench/README.md, "A prepared environ").
    template: Py<PyDict>,
    /// Environ keys by header name. Shared by a gthread worker's threads;
    /// the lock is never held while Python code could run.
    header_keys: Mutex<HashMap<String, Py<PyString>>>,
    pub forwarding: Forwarding,
    /// `sendfile` (`--no-sendfile` turns it off): `wsgi.file_wrapper`
    /// responses of regular files go out with sendfile(2).
    pub sendfile: bool,
}

/// Fixed facts about the server a request arrived on.
#[derive(Default)]
pub struct ServerInfo {
    pub name: String,
    pub port: String,
    /// A unix socket (name: its path; port: empty).
    pub unix: bool,
}

impl Wsgi {
    pub fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        multiprocess: bool,
        multithread: bool,
        forwarding: Forwarding,
    ) -> PyResult<Wsgi> {
        let methods = ["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"]
            .iter()
            .map(|m| (m.to_string(), PyString::intern(py, m).unbind()))
            .collect();
        let script_name = std::env::var("SCRIPT_NAME").unwrap_or_default();
        let keys = Keys::new(py);
        let version = PyTuple::new(py, [1, 0])?.unbind();
        let software = PyString::new(py, concat!("ferrocorn/", env!("CARGO_PKG_VERSION"))).unbind();
        let errors = Py::new(py, ErrorStream)?;
        let file_wrapper = py.get_type::<FileWrapper>().into_any().unbind();
        let template = PyDict::new(py);
        {
            let k = &keys;
            let none = py.None();
            for key in [
                &k.request_method,
                &k.script_name,
                &k.path_info,
                &k.query_string,
                &k.raw_uri,
                &k.server_protocol,
            ] {
                template.set_item(key.bind(py), &none)?;
            }
            template.set_item(k.server_software.bind(py), software.bind(py))?;
            for key in [&k.server_name, &k.server_port, &k.remote_addr] {
                template.set_item(key.bind(py), &none)?;
            }
            template.set_item(k.wsgi_version.bind(py), version.bind(py))?;
            template.set_item(k.wsgi_url_scheme.bind(py), &none)?;
            template.set_item(k.wsgi_input.bind(py), &none)?;
            template.set_item(k.wsgi_errors.bind(py), errors.bind(py))?;
            template.set_item(k.wsgi_multithread.bind(py), multithread)?;
            template.set_item(k.wsgi_multiprocess.bind(py), multiprocess)?;
            template.set_item(k.wsgi_run_once.bind(py), false)?;
            template.set_item(k.wsgi_input_terminated.bind(py), true)?;
            template.set_item(k.wsgi_file_wrapper.bind(py), file_wrapper.bind(py))?;
            template.set_item(k.wsgi_early_hints.bind(py), &none)?;
            template.set_item(k.gunicorn_socket.bind(py), &none)?;
            make_room(&template)?;
        }
        let template = template.unbind();
        Ok(Wsgi {
            app,
            keys,
            http: PyString::intern(py, "http").unbind(),
            https: PyString::intern(py, "https").unbind(),
            http10: PyString::intern(py, "HTTP/1.0").unbind(),
            http11: PyString::intern(py, "HTTP/1.1").unbind(),
            empty: PyString::intern(py, "").unbind(),
            script_name: script_name.trim_end_matches('/').to_string(),
            methods,
            template,
            header_keys: Mutex::new(HashMap::new()),
            forwarding,
            sendfile: true,
        })
    }

    /// The environ key of header `name`: `CONTENT_TYPE`, `CONTENT_LENGTH`,
    /// else `HTTP_` and the name upper-cased with '-' as '_' (so
    /// `Content_Type`, when it passes at all, is `HTTP_CONTENT_TYPE`, as in
    /// gunicorn).
    fn header_key(&self, py: Python<'_>, name: &str) -> Py<PyString> {
        // A poisoned lock only means another thread panicked mid-insert;
        // the map itself is still consistent.
        let cached = {
            let keys = self.header_keys.lock().unwrap_or_else(|e| e.into_inner());
            keys.get(name).map(|k| k.clone_ref(py))
        };
        if let Some(k) = cached {
            return k;
        }
        let upper = name.to_ascii_uppercase();
        let key = match upper.as_str() {
            "CONTENT-TYPE" => "CONTENT_TYPE".to_string(),
            "CONTENT-LENGTH" => "CONTENT_LENGTH".to_string(),
            _ => format!("HTTP_{}", upper.replace('-', "_")),
        };
        let key = PyString::intern(py, &key).unbind();
        let mut keys = self.header_keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() < 1024 {
            keys.insert(name.to_string(), key.clone_ref(py));
        }
        key
    }

    /// SCRIPT_NAME for a request: a `SCRIPT_NAME` header from a trusted
    /// proxy that forwarder_headers allows (or that header_map lets
    /// through), else the `SCRIPT_NAME` environment variable.
    pub fn script_name<'a>(&'a self, head: &'a RequestHead, peer: &Peer) -> &'a str {
        let from_header = head
            .headers
            .iter()
            // The last one wins, as in gunicorn.
            .rfind(|(n, _)| n.eq_ignore_ascii_case("script_name"))
            .filter(|_| {
                self.forwarding
                    .passes("SCRIPT_NAME", self.forwarding.trusts(peer))
            });
        match from_header {
            Some((_, v)) => v.trim_end_matches('/'),
            None => &self.script_name,
        }
    }

    /// The request path after `script_name` (see [`Wsgi::script_name`]),
    /// still percent-encoded; or, for a path outside that prefix, the
    /// message of the 500 that answers it (a deployment problem, as in
    /// gunicorn). The prefix matches whole segments only: with
    /// `SCRIPT_NAME=/app`, `/app` and `/app/x` are inside, `/apple` is not
    /// (gunicorn would serve it with `PATH_INFO` `le`).
    pub fn path_info<'h>(&self, raw_path: &'h str, script_name: &str) -> Result<&'h str, String> {
        if script_name.is_empty() {
            return Ok(raw_path);
        }
        match raw_path.strip_prefix(script_name) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => Ok(rest),
            _ => Err(format!(
                "Request path '{raw_path}' does not start with SCRIPT_NAME '{script_name}'"
            )),
        }
    }

    /// Build the environ for one request; `path_info` is what
    /// [`Wsgi::path_info`] returned for it; `from` is the connection's
    /// peer (trusted or not), the client the request is from (REMOTE_ADDR)
    /// and what the edge protocols said.
    #[allow(clippy::too_many_arguments)]
    pub fn environ<'py>(
        &self,
        py: Python<'py>,
        head: &RequestHead,
        script_name: &str,
        path_info: &str,
        from: (&Peer, &Peer, &Edge),
        server: &ServerInfo,
        input: Bound<'py, Input>,
        responder: &Bound<'py, Responder>,
        socket: Bound<'py, ConnSocket>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = self.template.bind(py).copy()?;
        let k = &self.keys;
        let method = match self.methods.get(&head.method) {
            Some(m) => m.bind(py).clone(),
            None => PyString::new(py, &head.method),
        };
        env.set_item(k.request_method.bind(py), method)?;
        // PATH_INFO: percent-decoded bytes, as latin-1.
        let decoded = percent_decode(path_info);
        let path: String = decoded.iter().map(|&b| b as char).collect();
        if script_name.is_empty() {
            env.set_item(k.script_name.bind(py), self.empty.bind(py))?;
        } else {
            env.set_item(k.script_name.bind(py), PyString::new(py, script_name))?;
        }
        env.set_item(k.path_info.bind(py), PyString::new(py, &path))?;
        env.set_item(k.query_string.bind(py), PyString::new(py, &head.query))?;
        env.set_item(k.raw_uri.bind(py), PyString::new(py, &head.target))?;
        match &head.protocol {
            // permit_unconventional_http_version: the version as sent.
            Some(p) => env.set_item(k.server_protocol.bind(py), PyString::new(py, p))?,
            None => env.set_item(
                k.server_protocol.bind(py),
                if head.minor_version == 0 {
                    self.http10.bind(py)
                } else {
                    self.http11.bind(py)
                },
            )?,
        }

        let (peer, client, edge) = from;
        let fwd = &self.forwarding;
        let trusted = fwd.trusts(peer);
        // The first scheme header decides (the request was answered 400
        // when a later one contradicts it: `contradictory_scheme`).
        let mut secure: Option<bool> = None;
        let mut host: Option<&str> = None;
        let headers = &head.headers;
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("host") {
                host = Some(value);
            } else if trusted && secure.is_none() {
                secure = fwd.scheme_says_https(name, value);
            }
            if name.contains('_') && !fwd.passes(&name.to_ascii_uppercase(), trusted) {
                // header_map = drop (refuse was answered before the app).
                continue;
            }
            let key = self.header_key(py, name);
            let key = key.bind(py);
            match env.get_item(key)? {
                Some(prev) => {
                    let joined = format!("{},{}", prev.extract::<String>()?, value);
                    env.set_item(key, PyString::new(py, &joined))?;
                }
                None => env.set_item(key, PyString::new(py, value))?,
            }
        }
        // As gunicorn 27's HTTP/2 workers: HTTP_VERSION "2" on a stream,
        // over any Version header the client sent.
        if edge.http2.is_some() {
            env.set_item(pyo3::intern!(py, "HTTP_VERSION"), pyo3::intern!(py, "2"))?;
        }
        // As gunicorn: a TLS connection is https unless a trusted proxy's
        // scheme header says otherwise.
        let secure = if edge.tls {
            secure.unwrap_or(true)
        } else {
            secure.unwrap_or(false) || edge.https()
        };
        let k = &self.keys;
        let default_port = if secure { "443" } else { "80" };
        // As gunicorn: the address the request arrived on for TCP; on a
        // unix socket, which has no port, the Host header when there is one.
        let (sname, sport) = match host {
            Some(h) if server.unix => split_host(h, default_port),
            _ => (server.name.clone(), server.port.clone()),
        };
        env.set_item(k.server_name.bind(py), PyString::new(py, &sname))?;
        env.set_item(k.server_port.bind(py), PyString::new(py, &sport))?;
        match client {
            Peer::Tcp(a) => {
                env.set_item(
                    k.remote_addr.bind(py),
                    PyString::new(py, &a.ip().to_string()),
                )?;
                env.set_item(
                    k.remote_port.bind(py),
                    PyString::new(py, &a.port().to_string()),
                )?;
            }
            Peer::Unix => {
                env.set_item(k.remote_addr.bind(py), self.empty.bind(py))?;
            }
        }
        env.set_item(
            k.wsgi_url_scheme.bind(py),
            if secure {
                self.https.bind(py)
            } else {
                self.http.bind(py)
            },
        )?;
        env.set_item(k.wsgi_input.bind(py), input)?;
        env.set_item(
            k.wsgi_early_hints.bind(py),
            responder.getattr(pyo3::intern!(py, "early_hints"))?,
        )?;
        env.set_item(k.gunicorn_socket.bind(py), socket)?;
        if edge.proxy.is_some() || edge.uwsgi.is_some() {
            edge_environ(&env, edge, script_name)?;
        }
        Ok(env)
    }
}

/// Grow the environ template's table past its fixed keys, so that its
/// per-request copies (which keep the table's size) take a request's
/// headers without growing. Placeholder keys go in one at a time until
/// the dict grows (`sys.getsizeof` tells), then out again: a dict keeps
/// its table when keys are removed, and with this few holes its copies
/// are still the block copy of the table. Without the room it still
/// works; the first header grows each copy once.
fn make_room(template: &Bound<'_, PyDict>) -> PyResult<()> {
    let py = template.py();
    let getsizeof = py.import("sys")?.getattr("getsizeof")?;
    let size = |d: &Bound<'_, PyDict>| -> PyResult<usize> { getsizeof.call1((d,))?.extract() };
    let before = size(template)?;
    let mut placeholders = Vec::new();
    for i in 0..16 {
        let key = PyString::new(py, &format!("\0ferrocorn-room-{i}"));
        template.set_item(&key, py.None())?;
        placeholders.push(key);
        if size(template)? > before {
            break;
        }
    }
    for key in &placeholders {
        template.del_item(key)?;
    }
    Ok(())
}

/// What the edge protocols add to an environ. A PROXY header: gunicorn's
/// `PROXY_PROTOCOL` (`TCP4`, `TCP6`, `LOCAL`, `UNSPEC`, `UNKNOWN`, `UNIX`)
/// and, when it names them, `PROXY_ADDR`/`PROXY_PORT` (where the client
/// connected at the proxy). uwsgi: the proxy's vars verbatim (as uWSGI
/// gives them to an app: `REMOTE_ADDR`, `SERVER_NAME`, `REQUEST_URI`,
/// `HTTPS`, `DOCUMENT_ROOT`, custom `uwsgi_param`s...), except the
/// `wsgi.*`/`gunicorn.*` keys a proxy cannot set, and `PATH_INFO`, which
/// keeps the server's SCRIPT_NAME split unless the proxy sent its own
/// `SCRIPT_NAME`.
fn edge_environ(env: &Bound<'_, PyDict>, edge: &Edge, script_name: &str) -> PyResult<()> {
    if let Some(h) = &edge.proxy {
        env.set_item("PROXY_PROTOCOL", h.kind.name())?;
        if let Some(d) = h.destination {
            env.set_item("PROXY_ADDR", d.ip().to_string())?;
            env.set_item("PROXY_PORT", d.port().to_string())?;
        }
    }
    if let Some(vars) = &edge.uwsgi {
        let own_script = vars.get("SCRIPT_NAME").is_some();
        for (key, value) in &vars.0 {
            if key.starts_with("wsgi.")
                || key.starts_with("gunicorn.")
                || key.is_empty()
                // nginx sends the client's Content-Type/-Length as HTTP_*
                // too; CONTENT_TYPE/CONTENT_LENGTH carry them, as in gunicorn.
                || key == "HTTP_CONTENT_TYPE"
                || key == "HTTP_CONTENT_LENGTH"
                || (!own_script && (key == "PATH_INFO" || key == "SCRIPT_NAME"))
            {
                continue;
            }
            env.set_item(PyString::new(env.py(), key), PyString::new(env.py(), value))?;
        }
        if !own_script && script_name.is_empty() {
            env.set_item("SCRIPT_NAME", "")?;
        }
    }
    Ok(())
}

fn split_host(h: &str, default_port: &str) -> (String, String) {
    if let Some(rest) = h.strip_prefix('[') {
        if let Some((addr, tail)) = rest.split_once(']') {
            let port = tail
                .strip_prefix(':')
                .filter(|p| !p.is_empty())
                .unwrap_or(default_port);
            return (format!("[{addr}]"), port.to_string());
        }
    }
    match h.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && !port.is_empty() => {
            (name.to_string(), port.to_string())
        }
        _ => (h.to_string(), default_port.to_string()),
    }
}

fn hexval(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decode a path; malformed escapes are kept as they are.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%20b"), b"/a b");
        assert_eq!(percent_decode("/%E9t%C3%A9"), b"/\xe9t\xc3\xa9");
        assert_eq!(percent_decode("/bad%zz%"), b"/bad%zz%");
        assert_eq!(percent_decode("/x%4"), b"/x%4");
    }

    #[test]
    fn host_split() {
        assert_eq!(
            split_host("example.com:8080", "80"),
            ("example.com".into(), "8080".into())
        );
        assert_eq!(
            split_host("example.com", "80"),
            ("example.com".into(), "80".into())
        );
        assert_eq!(split_host("[::1]:9", "80"), ("[::1]".into(), "9".into()));
        assert_eq!(split_host("[::1]", "443"), ("[::1]".into(), "443".into()));
    }
}
