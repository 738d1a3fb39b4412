//! WSGI as the worker's app interface: one request in (a [`Job`]), the
//! app called with its environ and `start_response`, the response iterable
//! written (`wsgi.file_wrapper` with sendfile(2)), `close()` called, the
//! access-log line written, and what became of the connection handed back
//! (a [`Done`]).

use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[cfg(feature = "wheel")]
use super::abi::ToStr as _;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use super::{ConnSocket, FileWrapper, Input, Peer, Responder, ServerInfo, Wsgi};
use crate::http::{Body, RequestHead};
use crate::log::access::{AccessLog, EnvKey, Record, Value};
use crate::worker::executor::{lock, App, Done, Job, Outcome, ReopenLogs};
use crate::{debug, warning};

/// An unread request body up to this size is read and discarded so the
/// connection can be reused.
const DRAIN_LIMIT: u64 = 1 << 20;

/// The WSGI app of a worker and what every request needs, shared by the
/// threads of a gthread worker.
pub struct WsgiApp {
    pub wsgi: Wsgi,
    /// Indexed like the worker's listeners (which a graceful stop drops).
    pub servers: Vec<ServerInfo>,
    /// Written by whichever thread finishes a request.
    pub access: Option<Mutex<AccessLog>>,
    /// `pre_request` / `post_request` from the config file.
    pub hooks: Option<crate::hooks::RequestHooks>,
}

impl App for WsgiApp {
    fn call(&self, py: Python<'_>, job: Job) -> Done {
        run_job(py, self, job)
    }
}

impl ReopenLogs for WsgiApp {
    fn reopen_logs(&self) -> std::io::Result<()> {
        match &self.access {
            Some(log) => lock(log).reopen(),
            None => Ok(()),
        }
    }
}

/// Run the app for one request (with the GIL held) and collect its
/// response: what was not written yet comes back in the outcome. The
/// access-log line is written here, as soon as the response is complete.
fn run_job(py: Python<'_>, shared: &WsgiApp, job: Job) -> Done {
    let Job {
        idx,
        head,
        body,
        peer,
        listener,
        reply,
        early,
        // A WSGI worker answers Expect: 100-continue itself (h1).
        continue_pending: _,
        edge,
        received,
    } = job;
    // Who the request is from, as the app and the logs see it (a PROXY
    // header's or uwsgi's client); `peer`, the proxy, is who is trusted.
    let client = edge.client(&peer);
    let streamed = matches!(body, Body::Streaming { .. });
    let input = Input::new(body);
    let responder = Responder::new(reply);
    let started = Instant::now();
    let queue = started.saturating_duration_since(received);
    let no_server = ServerInfo::default();
    let server = shared.servers.get(listener).unwrap_or(&no_server);
    let wsgi = &shared.wsgi;
    let wire = responder.wire().clone();
    // The environ as the app leaves it, for the access log's atoms.
    let mut env_dict: Option<Bound<'_, PyDict>> = None;
    // post_request's arguments, once the response is complete.
    let mut hooks_done: Option<(Py<PyAny>, Py<PyAny>, &crate::hooks::RequestHooks)> = None;
    let outcome = (|| -> PyResult<Outcome> {
        let input = Bound::new(py, input)?;
        let responder = Bound::new(py, responder)?;
        let family = match peer {
            Peer::Unix => libc::AF_UNIX,
            Peer::Tcp(a) if a.is_ipv6() => libc::AF_INET6,
            Peer::Tcp(_) => libc::AF_INET,
        };
        let socket = Bound::new(
            py,
            ConnSocket::new(responder.clone().unbind(), &wire, early, family),
        )?;
        let script_name = wsgi.script_name(&head, &peer);
        let refused = wsgi.forwarding.refused(&head, &peer);
        let path_info = match refused {
            // header_map = refuse: gunicorn's 400 for the header's name.
            Some(name) => Err((
                400,
                format!("Invalid HTTP header name: '{}'", name.to_ascii_uppercase()),
            )),
            None if wsgi.forwarding.contradictory_scheme(&head, &peer) => {
                Err((400, "Contradictory scheme headers".to_string()))
            }
            None => wsgi
                .path_info(&head.path, script_name)
                .map_err(|p| (500, p)),
        };
        match path_info {
            Ok(path_info) => {
                let environ = wsgi.environ(
                    py,
                    &head,
                    script_name,
                    path_info,
                    (&peer, &client, &edge),
                    server,
                    input.clone(),
                    &responder,
                    socket.clone(),
                );
                // pre_request runs first; if it raises, the request fails
                // with a 500, as in gunicorn.
                let req = match (&environ, &shared.hooks) {
                    (Ok(_), Some(h)) => Some(h.pre(py, &request_info(&head, &client))),
                    _ => None,
                };
                let result = match (&environ, &req) {
                    (Err(e), _) => Err(e.clone_ref(py)),
                    (_, Some(Err(e))) => Err(e.clone_ref(py)),
                    (Ok(environ), _) => wsgi.app.bind(py).call1((environ, &responder)),
                };
                let res = match result {
                    Ok(iterable) => {
                        write_iterable(py, &responder, &iterable, wsgi.sendfile && !wire.is_tls())
                    }
                    Err(e) => Err(e),
                };
                if let (Some(Ok(req)), Ok(environ), Some(h)) = (&req, &environ, &shared.hooks) {
                    hooks_done =
                        Some((req.clone().unbind(), environ.clone().into_any().unbind(), h));
                }
                env_dict = environ.ok();
                if let Err(e) = res {
                    if settled(py, &responder)?.taken {
                        // flask-sock ends a taken-over request by raising
                        // StopIteration, as gunicorn expects.
                        debug!(
                            "Request {} ended after taking over the connection: {e}",
                            head.target
                        );
                    } else if let Some(bad) = settled(py, &input)?.bad_body().cloned() {
                        // The body was malformed, not the app: gunicorn
                        // answers the parser's status (400).
                        warning!("Invalid request from ip={}: {bad}", remote_ip(&client));
                        settled(py, &responder)?.error_response(
                            &format!("{} {}", bad.status, bad.reason),
                            &format!("{}\n", bad.detail),
                        );
                    } else {
                        crate::exception!(
                            "Error handling request {} {}\n{}",
                            head.method,
                            head.target,
                            super::format_exception(py, &e).trim_end()
                        );
                        settled(py, &responder)?
                            .error_response("500 Internal Server Error", "Internal Server Error\n");
                    }
                }
            }
            Err((400, problem)) => {
                warning!("Invalid request from ip={}: {problem}", remote_ip(&client));
                let body = format!("{problem}\n");
                settled(py, &responder)?.error_response("400 Bad Request", &body);
            }
            Err((_, problem)) => {
                warning!(
                    "Invalid request from ip={}: Configuration problem: {problem}",
                    remote_ip(&client)
                );
                let body = format!("{problem}\n");
                settled(py, &responder)?.error_response("500 Internal Server Error", &body);
            }
        }
        let (taken, early) = socket.get().release();
        let mut r = settled(py, &responder)?;
        r.deactivate();
        let mut input = settled(py, &input)?;
        let leftover = if taken {
            input.abandon();
            None
        } else {
            input
                .finish(py, DRAIN_LIMIT)
                .map(|rest| if streamed { rest } else { early })
        };
        let elapsed = started.elapsed();
        crate::metrics::request_done(r.status_code, elapsed, queue);
        if let Some(access) = &shared.access {
            log_access(
                py,
                access,
                env_dict.as_ref(),
                &head,
                &client,
                &r,
                Timing {
                    duration: elapsed,
                    queue,
                },
            );
        }
        if let Some((req, environ, h)) = hooks_done.take() {
            h.post(
                py,
                req.bind(py),
                environ.bind(py),
                r.status_line(),
                r.headers(),
                r.body_bytes,
            );
        }
        Ok(Outcome {
            out: std::mem::take(&mut r.out),
            keep_alive: r.keep_alive,
            broken: r.broken,
            taken,
            leftover,
        })
    })();
    Done {
        idx,
        outcome: outcome.map_err(|e| e.to_string()),
    }
}

/// How long the end of a request waits for another thread of the app
/// that is still inside `start_response`'s writer or `wsgi.input`.
const SETTLE: Duration = Duration::from_secs(30);

/// Borrow `obj` mutably. Only the request's own thread normally uses these
/// objects, but an app may hand them to another thread, which may be in
/// the middle of a call (waiting on the socket, GIL released): wait for it,
/// GIL released, rather than fail.
fn settled<'py, T>(py: Python<'py>, obj: &Bound<'py, T>) -> PyResult<PyRefMut<'py, T>>
where
    T: pyo3::PyClass<Frozen = pyo3::pyclass::boolean_struct::False>,
{
    let deadline = Instant::now() + SETTLE;
    loop {
        match obj.try_borrow_mut() {
            Ok(r) => return Ok(r),
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => super::sockio::pause(py, Duration::from_millis(1)),
        }
    }
}

fn request_info<'a>(head: &'a RequestHead, peer: &Peer) -> crate::hooks::RequestInfo<'a> {
    crate::hooks::RequestInfo {
        method: &head.method,
        uri: &head.target,
        path: &head.path,
        query: &head.query,
        minor: head.minor_version,
        headers: &head.headers,
        remote: match peer {
            Peer::Tcp(a) => Some((a.ip().to_string(), a.port())),
            Peer::Unix => None,
        },
    }
}

fn remote_ip(peer: &Peer) -> String {
    match peer {
        Peer::Tcp(a) => a.ip().to_string(),
        Peer::Unix => String::new(),
    }
}

/// How long a request took in the app, and waited before it.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub duration: Duration,
    pub queue: Duration,
}

/// The access-log line of a request answered without a WSGI environ (an
/// ASGI request): the environ atoms come from the request itself.
#[allow(clippy::too_many_arguments)]
pub fn log_access_head(
    py: Python<'_>,
    access: &Mutex<AccessLog>,
    head: &RequestHead,
    peer: &Peer,
    status: u16,
    resp_headers: &[(String, String)],
    body_bytes: u64,
    t: Timing,
) {
    let mut log = lock(access);
    let keys = log.format().environ_keys();
    // `U` is the path as the app saw it: percent-decoded, as UTF-8 (the
    // scope's `path`), as gunicorn's ASGI worker logs it.
    let path = String::from_utf8_lossy(&super::percent_decode(&head.path)).into_owned();
    let values: Vec<Option<Value<'_>>> = keys
        .iter()
        .map(|k| head_value(k, head, &path, peer))
        .collect();
    let record = Record {
        environ: &values,
        req_headers: &head.headers,
        status,
        resp_headers,
        body_bytes,
        duration: t.duration,
        queue: t.queue,
    };
    if super::pylog::enabled() {
        let line = log.render(&record);
        super::pylog::access(py, line);
    } else {
        log.log(&record);
    }
}

/// Write the access-log line of a finished request. The atoms gunicorn
/// takes from the environ are read from the one the app saw (after the
/// app changed it); without one (the request never reached the app) they
/// come from the request itself.
fn log_access(
    py: Python<'_>,
    access: &Mutex<AccessLog>,
    environ: Option<&Bound<'_, PyDict>>,
    head: &RequestHead,
    peer: &Peer,
    r: &Responder,
    t: Timing,
) {
    let mut log = lock(access);
    let python = super::pylog::enabled();
    let keys = log.format().environ_keys();
    let objects = environ.map(|env| environ_values(py, env, keys));
    let values: Vec<Option<Value<'_>>> = match &objects {
        Some(objects) => objects.iter().map(|o| o.as_ref().map(to_value)).collect(),
        None => keys
            .iter()
            .map(|k| head_value(k, head, &head.path, peer))
            .collect(),
    };
    let record = Record {
        environ: &values,
        req_headers: &head.headers,
        status: r.status_code,
        resp_headers: r.headers(),
        body_bytes: r.body_bytes,
        duration: t.duration,
        queue: t.queue,
    };
    if python {
        // --log-config: the line goes to the `gunicorn.access` logger only.
        let line = log.render(&record);
        super::pylog::access(py, line);
    } else {
        log.log(&record);
    }
}

/// The access log's exact environ keys as Python strings, made once (a
/// worker has one format).
static EXACT_KEYS: std::sync::OnceLock<Vec<Option<Py<PyString>>>> = std::sync::OnceLock::new();

/// The environ's objects for `keys`: exact keys looked up, `{name}e` keys
/// matched case-insensitively (the last match in the environ's order wins,
/// as in gunicorn's lower-cased dict).
fn environ_values<'py>(
    py: Python<'py>,
    env: &Bound<'py, PyDict>,
    keys: &[EnvKey],
) -> Vec<Option<Bound<'py, PyAny>>> {
    let exact = EXACT_KEYS.get_or_init(|| {
        keys.iter()
            .map(|k| match k {
                EnvKey::Exact(name) => Some(PyString::new(py, name).unbind()),
                EnvKey::Folded(_) => None,
            })
            .collect()
    });
    let mut values: Vec<Option<Bound<'py, PyAny>>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| match (k, exact.get(i).and_then(|k| k.as_ref())) {
            (EnvKey::Exact(_), Some(key)) => env.get_item(key.bind(py)).ok().flatten(),
            (EnvKey::Exact(name), None) => env.get_item(*name).ok().flatten(),
            (EnvKey::Folded(_), _) => None,
        })
        .collect();
    if keys.iter().any(|k| matches!(k, EnvKey::Folded(_))) {
        for (k, v) in env.iter() {
            let Ok(k) = k.cast::<PyString>() else {
                continue;
            };
            let Ok(k) = k.to_str() else { continue };
            let lower = k.to_lowercase();
            for (i, key) in keys.iter().enumerate() {
                if matches!(key, EnvKey::Folded(f) if *f == lower) {
                    values[i] = Some(v.clone());
                }
            }
        }
    }
    values
}

/// An environ value as an atom: `str`, `int` and `float` as themselves,
/// anything else by its `str()` and `repr()`.
fn to_value<'a>(v: &'a Bound<'_, PyAny>) -> Value<'a> {
    if let Ok(s) = v.cast::<PyString>() {
        return Value::Str(match s.to_str() {
            Ok(s) => s.into(),
            Err(_) => s.to_string_lossy().into_owned().into(),
        });
    }
    let text = |o: &Bound<'_, PyAny>| o.str().map(|s| s.to_string_lossy().into_owned());
    if v.is_exact_instance_of::<pyo3::types::PyInt>() {
        if let Ok(i) = v.extract::<i64>() {
            return Value::Int(i);
        }
    }
    if v.is_exact_instance_of::<pyo3::types::PyFloat>() {
        if let Ok(f) = v.extract::<f64>() {
            return Value::Float(f, text(v).unwrap_or_default());
        }
    }
    let int = if v.is_instance_of::<pyo3::types::PyInt>() {
        v.extract::<i64>().ok()
    } else {
        None
    };
    Value::Obj {
        text: text(v).unwrap_or_default(),
        repr: v
            .repr()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        int,
    }
}

/// What the environ would hold under `key`, from the request (for a
/// request that never reached the app, or an ASGI one), `path` standing
/// for PATH_INFO.
fn head_value(key: &EnvKey, head: &RequestHead, path: &str, peer: &Peer) -> Option<Value<'static>> {
    let s = |v: &str| Some(Value::Str(v.to_string().into()));
    let header = |name: &str| {
        let vals: Vec<&str> = head
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!vals.is_empty()).then(|| Value::Str(vals.join(",").into()))
    };
    match key {
        EnvKey::Exact("REMOTE_ADDR") => s(&remote_ip(peer)),
        EnvKey::Exact("REQUEST_METHOD") => s(&head.method),
        EnvKey::Exact("RAW_URI") => s(&head.target),
        EnvKey::Exact("PATH_INFO") => s(path),
        EnvKey::Exact("QUERY_STRING") => s(&head.query),
        EnvKey::Exact("SERVER_PROTOCOL") => s(match &head.protocol {
            // As the environ shows it: the version as sent (an
            // unconventional one, or the one a uwsgi proxy names).
            Some(p) => p,
            None if head.minor_version == 0 => "HTTP/1.0",
            None => "HTTP/1.1",
        }),
        EnvKey::Exact("HTTP_AUTHORIZATION") => header("authorization"),
        EnvKey::Exact("HTTP_REFERER") => header("referer"),
        EnvKey::Exact("HTTP_USER_AGENT") => header("user-agent"),
        _ => None,
    }
}

/// Send the app's response iterable, calling its `close()` in every case;
/// `sendfile`: a `wsgi.file_wrapper` around a regular file may go out with
/// sendfile(2) (off with `--no-sendfile`: it is iterated in blocks).
fn write_iterable(
    py: Python<'_>,
    responder: &Bound<'_, Responder>,
    iterable: &Bound<'_, PyAny>,
    sendfile: bool,
) -> PyResult<()> {
    let res = send_iterable(py, responder, iterable, sendfile);
    // A plain list or tuple (what most apps return) has no close(): asking
    // would build and drop an AttributeError on every request.
    if iterable.is_exact_instance_of::<PyList>() || iterable.is_exact_instance_of::<PyTuple>() {
        return res;
    }
    let closed = match iterable.getattr(pyo3::intern!(py, "close")) {
        Ok(close) => close.call0().map(|_| ()),
        Err(_) => Ok(()),
    };
    res.and(closed)
}

fn send_iterable(
    py: Python<'_>,
    responder: &Bound<'_, Responder>,
    iterable: &Bound<'_, PyAny>,
    sendfile: bool,
) -> PyResult<()> {
    if let Some(fw) = iterable.cast::<FileWrapper>().ok().filter(|_| sendfile) {
        if send_file(py, responder, &fw.borrow())? {
            return settled(py, responder)?.finish(py);
        }
    }
    let not_bytes = |item: &Bound<'_, PyAny>| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "the response iterable must yield bytes, not {}",
            item.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    };
    if let Ok(list) = iterable.cast::<PyList>() {
        let single = list.len() == 1;
        for item in list.iter() {
            let b = item.cast::<PyBytes>().map_err(|_| not_bytes(&item))?;
            let data = b.as_bytes();
            let total = single.then_some(data.len() as u64);
            let mut r = settled(py, responder)?;
            r.send_body(py, data, total)?;
            if r.broken || r.taken {
                return Ok(());
            }
        }
    } else {
        // Any other iterable may take its time between blocks (a generator
        // streaming events, a CSV export): each block goes out before the
        // next is asked for (PEP 3333), and a client that left is noticed
        // by the write that fails. The first block alone may leave up to
        // SPILL_MAX for the loop to write, since most such iterables
        // (Django's and Werkzeug's responses) hold just the one; from the
        // second block on the stream waits for the client, GIL released.
        for (n, item) in iterable.try_iter()?.enumerate() {
            let item = item?;
            let b = item.cast::<PyBytes>().map_err(|_| not_bytes(&item))?;
            let mut r = settled(py, responder)?;
            r.send_body(py, b.as_bytes(), None)?;
            if n == 0 {
                r.flush(py);
            } else {
                r.flush_all(py);
            }
            if r.broken || r.taken {
                return Ok(());
            }
            if r.head_sent && r.discards_body() {
                // HEAD, 1xx, 204, 304: the head is out and no body may
                // follow, so an endless stream (an event source probed
                // with HEAD) is not iterated for nothing.
                break;
            }
        }
    }
    settled(py, responder)?.finish(py)
}

/// The sendfile(2) path for `wsgi.file_wrapper` around a regular file.
/// Returns false when the object is not a real file (then it is iterated).
fn send_file(py: Python<'_>, responder: &Bound<'_, Responder>, fw: &FileWrapper) -> PyResult<bool> {
    let f = fw.filelike.bind(py);
    let Ok(fileno) = f
        .call_method0(pyo3::intern!(py, "fileno"))
        .and_then(|n| n.extract::<RawFd>())
    else {
        return Ok(false);
    };
    // SAFETY: the descriptor belongs to the Python file object, which the
    // FileWrapper keeps alive for the whole duration of this call.
    let file = unsafe { std::os::fd::BorrowedFd::borrow_raw(fileno) };
    let Ok(st) = nix::sys::stat::fstat(file) else {
        return Ok(false);
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(false);
    }
    let offset = match f
        .call_method0(pyo3::intern!(py, "tell"))
        .and_then(|t| t.extract::<i64>())
    {
        Ok(o) => o,
        Err(_) => nix::unistd::lseek(file, 0, nix::unistd::Whence::SeekCur).unwrap_or(0),
    };
    let size = (st.st_size - offset).max(0) as u64;
    settled(py, responder)?.send_file(py, file, offset, size)?;
    Ok(true)
}
