//! The Python side of a worker (PEP 3333): interpreter setup, loading the
//! app, the WSGI environ, `wsgi.errors` and `wsgi.file_wrapper`; and, in
//! the submodules, `wsgi.input` ([`input`]), `start_response`/`write`
//! ([`response`]), `gunicorn.socket` ([`socket`]) and the socket I/O they
//! share ([`sockio`]).
//!
//! Everything here runs after fork, in a worker. Objects that Python can
//! call back into hold the connection's raw descriptor only while the
//! request is active; the worker deactivates them when the request ends.

mod call;
mod input;
mod response;
mod socket;
mod sockio;

pub use call::WsgiApp;
pub use input::Input;
pub use response::{Responder, SPILL_MAX};
pub use socket::ConnSocket;
pub use sockio::{set_progress, Progress};

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::{PyStopIteration, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};
use thiserror::Error;

use crate::http::RequestHead;

/// How long a blocking socket wait inside a request may stall before the
/// client is considered gone, unless the worker sets another
/// (`--body-timeout`).
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// gunicorn's worker exit codes, which the master acts on.
pub const WORKER_BOOT_ERROR: i32 = 3;
pub const APP_LOAD_ERROR: i32 = 4;

#[derive(Debug, Error)]
pub enum LoadError {
    /// The app could not be imported or is not a WSGI callable (exit 4).
    #[error("{0}")]
    App(String),
    /// The interpreter or the environment could not be prepared (exit 3).
    #[error("{0}")]
    Boot(String),
}

impl LoadError {
    pub fn exit_code(&self) -> i32 {
        match self {
            LoadError::App(_) => APP_LOAD_ERROR,
            LoadError::Boot(_) => WORKER_BOOT_ERROR,
        }
    }
}

const BOOTSTRAP: &str = r#"
import ast, importlib, os, sys, types

class AppLoadError(Exception):
    """The app spec names nothing usable; the message is shown without a traceback."""

def arm_faulthandler(fd):
    # On SIGABRT (the master's timeout signal) and on crashes, write every
    # thread's Python stack to the error log before the worker dies.
    import faulthandler
    faulthandler.enable(file=fd, all_threads=True)

def setup(cwd, launch_dir, pythonpath, venv):
    if venv:
        venv = os.path.abspath(venv)
        site_dir = os.path.join(venv, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
        if not os.path.isdir(site_dir):
            raise RuntimeError("virtualenv %s has no %s (is it a Python %d.%d venv?)"
                               % (venv, site_dir, sys.version_info[0], sys.version_info[1]))
        include_system = False
        try:
            with open(os.path.join(venv, "pyvenv.cfg")) as f:
                for line in f:
                    key, _, value = line.partition("=")
                    if key.strip() == "include-system-site-packages":
                        include_system = value.strip().lower() == "true"
        except OSError:
            pass
        import site
        if not include_system:
            system = set(site.getsitepackages())
            try:
                system.add(site.getusersitepackages())
            except Exception:
                pass
            sys.path[:] = [p for p in sys.path if p not in system]
        sys.prefix = sys.exec_prefix = venv
        site.addsitedir(site_dir)
        exe = os.path.join(venv, "bin", "python")
        if os.path.exists(exe):
            sys.executable = exe
    elif not os.path.basename(sys.executable or "").startswith("python"):
        exe = os.path.join(sys.base_exec_prefix, "bin", "python%d.%d" % sys.version_info[:2])
        if os.path.exists(exe):
            sys.executable = exe
    # sys.path as gunicorn builds it: the directory ferrocorn was launched
    # from, then --chdir in front of it (so modules beside the config file
    # import too), each unless already there; then each --pythonpath entry
    # in front of all that, the last one first, relative ones from --chdir.
    for p in (launch_dir, cwd):
        if p and p not in sys.path:
            sys.path.insert(0, p)
    for p in pythonpath.split(","):
        p = p.strip()
        if p:
            p = os.path.abspath(p)
            if p not in sys.path:
                sys.path.insert(0, p)
    sys.argv = [sys.argv[0] if sys.argv and sys.argv[0] else "ferrocorn"]

def load(spec):
    module, _, expr = spec.partition(":")
    expr = expr.strip() or "application"
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise AppLoadError("Failed to parse %r as an attribute name or function call." % expr)
    args, kwargs, call = [], {}, False
    if isinstance(node, ast.Call):
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            raise AppLoadError("Failed to parse arguments as literal values: %r." % expr)
        node, call = node.func, True
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise AppLoadError("Failed to parse %r as an attribute name or function call." % expr)
    names.append(node.id)
    names.reverse()
    obj = importlib.import_module(module)
    for name in names:
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise AppLoadError("Failed to find attribute %r in %r." % (name, module))
    if call:
        obj = obj(*args, **kwargs)
    if obj is None:
        raise AppLoadError("Failed to find application object: %r." % expr)
    if not callable(obj):
        raise AppLoadError("Application object must be callable.")
    return obj

def format_exc(exc, tb):
    import traceback
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
"#;

/// Format a Python exception with its traceback.
pub fn format_exception(py: Python<'_>, err: &PyErr) -> String {
    let formatted = (|| -> PyResult<String> {
        let boot = bootstrap(py)?;
        boot.getattr("format_exc")?
            .call1((err.value(py), err.traceback(py)))?
            .extract::<String>()
    })();
    formatted.unwrap_or_else(|_| err.to_string())
}

fn bootstrap(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let modules = py.import("sys")?.getattr("modules")?;
    if let Ok(m) = modules.get_item("_ferrocorn_boot") {
        return Ok(m.cast_into::<PyModule>()?);
    }
    let code = CString::new(BOOTSTRAP).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let m = PyModule::from_code(py, &code, c"<ferrocorn>", c"_ferrocorn_boot")?;
    modules.set_item("_ferrocorn_boot", &m)?;
    Ok(m)
}

/// What every interpreter of one master start shares: the directories
/// for `sys.path` and the str hash seed.
#[derive(Debug, Clone)]
pub struct PyBase {
    /// The working directory (`--chdir`, else the launch directory) as
    /// gunicorn names it; first on `sys.path`.
    pub chdir: String,
    /// The directory ferrocorn was launched from; second on `sys.path`.
    pub launch_dir: String,
    /// The str/bytes hash seed of every interpreter unless PYTHONHASHSEED
    /// is set (gunicorn's workers, forks of one interpreter, share one).
    pub hash_seed: u32,
}

/// A fresh, non-zero hash seed (0 would turn hash randomization off).
///
/// Picked once per master start, so HUP's new workers get the same one. A
/// master re-executed by USR2 is a new start and picks a new seed; its
/// workers share that one.
pub fn new_hash_seed() -> u32 {
    use std::hash::BuildHasher;
    // RandomState's keys come from the OS's random source.
    let h = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    match (h ^ (h >> 32)) as u32 {
        0 => 1,
        seed => seed,
    }
}

/// What the worker needs to know to set up Python.
pub struct PySetup<'a> {
    pub base: &'a PyBase,
    pub pythonpath: &'a str,
    pub virtualenv: Option<&'a str>,
    pub app: &'a str,
}

/// Start the interpreter the way pyo3's `Python::initialize` does
/// (`Py_InitializeEx(0)`: no Python signal handlers, then release the
/// GIL), except that the str hash seed is `seed` unless the environment
/// sets PYTHONHASHSEED. The seed goes in through the interpreter's
/// configuration, so nothing is added to the environment: the app's
/// `os.environ` and its subprocesses see PYTHONHASHSEED as the user set it.
fn initialize(seed: u32) -> Result<(), LoadError> {
    use pyo3::ffi;
    use std::os::raw::{c_int, c_ulong};
    // SAFETY: Py_IsInitialized may be called at any time.
    if unsafe { ffi::Py_IsInitialized() } != 0 {
        // Already running (nothing starts it twice today): keep it as is.
        Python::initialize();
        return Ok(());
    }
    let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::uninit();
    // SAFETY: PyConfig_InitPythonConfig initializes every field of the
    // struct it is given (and allocates nothing).
    let mut config = unsafe {
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        config.assume_init()
    };
    // Py_InitializeEx starts from CPython's "compat" configuration, which
    // the public API does not offer; it differs from the Python one in
    // exactly these fields (CPython's config_init_defaults and
    // PyConfig_InitPythonConfig). Undoing them keeps everything as before:
    // the pre-configuration derived from it (no C locale coercion, which
    // would also set LC_CTYPE in the environment, and no UTF-8 mode from
    // the locale or PYTHONUTF8), the command line not parsed, C stdio left
    // alone, the legacy Py_* flags honoured. Checked against the previous
    // Py_InitializeEx(0) under the C, C.UTF-8 and PYTHONUTF8=1 locales:
    // same sys.flags, sys.executable, encodings, environment and signal
    // dispositions.
    const PYCONFIG_INIT_COMPAT: c_int = 1;
    config._config_init = PYCONFIG_INIT_COMPAT;
    for field in [
        &mut config.isolated,
        &mut config.use_environment,
        &mut config.site_import,
        &mut config.bytes_warning,
        &mut config.inspect,
        &mut config.interactive,
        &mut config.optimization_level,
        &mut config.parser_debug,
        &mut config.write_bytecode,
        &mut config.verbose,
        &mut config.quiet,
        &mut config.user_site_directory,
        &mut config.buffered_stdio,
        &mut config.pathconfig_warnings,
    ] {
        *field = -1;
    }
    config.configure_c_stdio = 0;
    config.parse_argv = 0;
    // Py_InitializeEx(0): the worker installs its own handlers.
    config.install_signal_handlers = 0;
    // CPython ignores an empty PYTHONHASHSEED; a set one ("random", "0",
    // a number, or an invalid value it reports) is CPython's to apply.
    if std::env::var_os("PYTHONHASHSEED").is_none_or(|v| v.is_empty()) {
        config.use_hash_seed = 1;
        config.hash_seed = c_ulong::from(seed);
    }
    // SAFETY: `config` was initialized above and the interpreter is not
    // running (checked above; this process is single-threaded here).
    // Py_InitializeFromConfig copies what it keeps, so the configuration
    // is cleared right after, exactly once.
    let status = unsafe {
        let status = ffi::Py_InitializeFromConfig(&config);
        ffi::PyConfig_Clear(&mut config);
        status
    };
    // SAFETY: reading a PyStatus returned by CPython.
    if unsafe { ffi::PyStatus_Exception(status) } != 0 {
        return Err(LoadError::Boot(status_message(&status)));
    }
    // SAFETY: the interpreter was initialized by this thread, which holds
    // the GIL; release it as pyo3 does after Py_InitializeEx.
    unsafe { ffi::PyEval_SaveThread() };
    // The interpreter is running: this only records that for pyo3.
    Python::initialize();
    Ok(())
}

/// The text of a failed PyStatus.
fn status_message(status: &pyo3::ffi::PyStatus) -> String {
    let text = |p: *const std::os::raw::c_char| {
        if p.is_null() {
            None
        } else {
            // SAFETY: CPython's status strings are static, NUL-terminated
            // C strings.
            Some(
                unsafe { std::ffi::CStr::from_ptr(p) }
                    .to_string_lossy()
                    .into_owned(),
            )
        }
    };
    if status._type == pyo3::ffi::_PyStatus_TYPE::_PyStatus_TYPE_EXIT {
        return format!("Python initialization exited with code {}", status.exitcode);
    }
    match (text(status.func), text(status.err_msg)) {
        (Some(f), Some(m)) => format!("cannot initialize Python: {f}: {m}"),
        (None, Some(m)) => format!("cannot initialize Python: {m}"),
        _ => "cannot initialize Python".to_string(),
    }
}

/// Initialize the interpreter (after fork) and import the app.
pub fn load_app(setup: &PySetup<'_>) -> Result<Py<PyAny>, LoadError> {
    initialize(setup.base.hash_seed)?;
    Python::attach(|py| {
        let boot = bootstrap(py).map_err(|e| LoadError::Boot(format_exception(py, &e)))?;
        boot.getattr("arm_faulthandler")
            .and_then(|f| f.call1((crate::log::raw_fd(),)))
            .map_err(|e| LoadError::Boot(format_exception(py, &e)))?;
        let base = setup.base;
        boot.getattr("setup")
            .and_then(|f| {
                f.call1((
                    &base.chdir,
                    &base.launch_dir,
                    setup.pythonpath,
                    setup.virtualenv,
                ))
            })
            .map_err(|e| LoadError::Boot(format_exception(py, &e)))?;
        let app = boot.getattr("load").and_then(|f| f.call1((setup.app,)));
        match app {
            Ok(app) => Ok(app.unbind()),
            Err(e) => {
                let is_plain = boot
                    .getattr("AppLoadError")
                    .map(|t| e.get_type(py).is(&t))
                    .unwrap_or(false);
                Err(LoadError::App(if is_plain {
                    e.value(py).to_string()
                } else {
                    format_exception(py, &e)
                }))
            }
        }
    })
}

// ---------------------------------------------------------------------------
// wsgi.errors

/// `wsgi.errors`: text written here goes to the error log.
#[pyclass(module = "ferrocorn", name = "ErrorStream")]
pub struct ErrorStream;

#[pymethods]
impl ErrorStream {
    fn write(&self, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        if let Ok(s) = data.cast::<PyString>() {
            let s = s.to_str()?;
            crate::log::write_raw(s.as_bytes());
            Ok(s.len())
        } else if let Ok(b) = data.cast::<PyBytes>() {
            crate::log::write_raw(b.as_bytes());
            Ok(b.as_bytes().len())
        } else {
            Err(PyTypeError::new_err("write() argument must be str"))
        }
    }
    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?)?;
        }
        Ok(())
    }
    fn flush(&self) {}
}

// ---------------------------------------------------------------------------
// wsgi.file_wrapper

/// `wsgi.file_wrapper`: iterates a file in blocks; the worker sends real
/// files with sendfile(2) instead of iterating.
#[pyclass(module = "ferrocorn", name = "FileWrapper")]
pub struct FileWrapper {
    pub filelike: Py<PyAny>,
    pub blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        if data.len().unwrap_or(0) == 0 {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(data.unbind())
    }
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr("close")? {
            f.call_method0("close")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The environ

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
    version: Py<PyTuple>,
    http: Py<PyString>,
    https: Py<PyString>,
    http10: Py<PyString>,
    http11: Py<PyString>,
    software: Py<PyString>,
    empty: Py<PyString>,
    script_name: String,
    errors: Py<ErrorStream>,
    file_wrapper: Py<PyAny>,
    multiprocess: bool,
    multithread: bool,
    methods: HashMap<String, Py<PyString>>,
    /// Environ keys by header name. Shared by a gthread worker's threads;
    /// the lock is never held while Python code could run.
    header_keys: Mutex<HashMap<String, Option<Py<PyString>>>>,
    /// `--forwarded-allow-ips`, parsed once.
    trusted: Vec<std::net::IpAddr>,
    trust_all: bool,
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
        trusted: &[String],
    ) -> PyResult<Wsgi> {
        let methods = ["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"]
            .iter()
            .map(|m| (m.to_string(), PyString::intern(py, m).unbind()))
            .collect();
        let script_name = std::env::var("SCRIPT_NAME").unwrap_or_default();
        Ok(Wsgi {
            app,
            keys: Keys::new(py),
            version: PyTuple::new(py, [1, 0])?.unbind(),
            http: PyString::intern(py, "http").unbind(),
            https: PyString::intern(py, "https").unbind(),
            http10: PyString::intern(py, "HTTP/1.0").unbind(),
            http11: PyString::intern(py, "HTTP/1.1").unbind(),
            software: PyString::new(py, concat!("ferrocorn/", env!("CARGO_PKG_VERSION"))).unbind(),
            empty: PyString::intern(py, "").unbind(),
            script_name: script_name.trim_end_matches('/').to_string(),
            errors: Py::new(py, ErrorStream)?,
            file_wrapper: py.get_type::<FileWrapper>().into_any().unbind(),
            multiprocess,
            multithread,
            methods,
            header_keys: Mutex::new(HashMap::new()),
            trusted: trusted
                .iter()
                .filter_map(|t| t.trim().parse().ok())
                .collect(),
            trust_all: trusted.iter().any(|t| t == "*"),
        })
    }

    fn header_key(&self, py: Python<'_>, name: &str) -> Option<Py<PyString>> {
        // A poisoned lock only means another thread panicked mid-insert;
        // the map itself is still consistent.
        let cached = {
            let keys = self.header_keys.lock().unwrap_or_else(|e| e.into_inner());
            keys.get(name).map(|k| k.as_ref().map(|k| k.clone_ref(py)))
        };
        if let Some(k) = cached {
            return k;
        }
        // Names with '_' are dropped, so they cannot pose as another
        // header once '-' is mapped to '_' (gunicorn's default).
        let key = if name.contains('_') {
            None
        } else {
            let upper = name.to_ascii_uppercase().replace('-', "_");
            let key = match upper.as_str() {
                "CONTENT_TYPE" | "CONTENT_LENGTH" => upper,
                _ => format!("HTTP_{upper}"),
            };
            Some(PyString::intern(py, &key).unbind())
        };
        let mut keys = self.header_keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() < 1024 {
            keys.insert(name.to_string(), key.as_ref().map(|k| k.clone_ref(py)));
        }
        key
    }

    fn is_trusted(&self, peer: &Peer) -> bool {
        match peer {
            Peer::Unix => true,
            Peer::Tcp(a) => self.trust_all || self.trusted.contains(&a.ip()),
        }
    }

    /// The request path after SCRIPT_NAME (from the environment), still
    /// percent-encoded; or, for a path outside that prefix, the message
    /// of the 500 that answers it (a deployment problem, as in gunicorn).
    /// The prefix matches whole segments only: with `SCRIPT_NAME=/app`,
    /// `/app` and `/app/x` are inside, `/apple` is not (gunicorn would
    /// serve it with `PATH_INFO` `le`).
    pub fn path_info<'h>(&self, raw_path: &'h str) -> Result<&'h str, String> {
        if self.script_name.is_empty() {
            return Ok(raw_path);
        }
        match raw_path.strip_prefix(&self.script_name) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => Ok(rest),
            _ => Err(format!(
                "Request path '{raw_path}' does not start with SCRIPT_NAME '{}'",
                self.script_name
            )),
        }
    }

    /// Build the environ for one request; `path_info` is what
    /// [`Wsgi::path_info`] returned for it.
    #[allow(clippy::too_many_arguments)]
    pub fn environ<'py>(
        &self,
        py: Python<'py>,
        head: &RequestHead,
        path_info: &str,
        peer: &Peer,
        server: &ServerInfo,
        input: Bound<'py, Input>,
        responder: &Bound<'py, Responder>,
        socket: Bound<'py, ConnSocket>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = PyDict::new(py);
        let k = &self.keys;
        let method = match self.methods.get(&head.method) {
            Some(m) => m.bind(py).clone(),
            None => PyString::new(py, &head.method),
        };
        env.set_item(k.request_method.bind(py), method)?;
        // PATH_INFO: percent-decoded bytes, as latin-1.
        let decoded = percent_decode(path_info);
        let path: String = decoded.iter().map(|&b| b as char).collect();
        if self.script_name.is_empty() {
            env.set_item(k.script_name.bind(py), self.empty.bind(py))?;
        } else {
            env.set_item(k.script_name.bind(py), PyString::new(py, &self.script_name))?;
        }
        env.set_item(k.path_info.bind(py), PyString::new(py, &path))?;
        env.set_item(k.query_string.bind(py), PyString::new(py, &head.query))?;
        env.set_item(k.raw_uri.bind(py), PyString::new(py, &head.target))?;
        env.set_item(
            k.server_protocol.bind(py),
            if head.minor_version == 0 {
                self.http10.bind(py)
            } else {
                self.http11.bind(py)
            },
        )?;
        env.set_item(k.server_software.bind(py), self.software.bind(py))?;

        let trusted = self.is_trusted(peer);
        let mut secure = false;
        let mut host: Option<&str> = None;
        let headers = &head.headers;
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("host") {
                host = Some(value);
            } else if trusted {
                let v = value.to_ascii_lowercase();
                if (name.eq_ignore_ascii_case("x-forwarded-proto") && v == "https")
                    || (name.eq_ignore_ascii_case("x-forwarded-protocol") && v == "ssl")
                    || (name.eq_ignore_ascii_case("x-forwarded-ssl") && v == "on")
                {
                    secure = true;
                }
            }
            let Some(key) = self.header_key(py, name) else {
                continue;
            };
            let key = key.bind(py);
            match env.get_item(key)? {
                Some(prev) => {
                    let joined = format!("{},{}", prev.extract::<String>()?, value);
                    env.set_item(key, PyString::new(py, &joined))?;
                }
                None => env.set_item(key, PyString::new(py, value))?,
            }
        }
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
        match peer {
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
        env.set_item(k.wsgi_version.bind(py), self.version.bind(py))?;
        env.set_item(
            k.wsgi_url_scheme.bind(py),
            if secure {
                self.https.bind(py)
            } else {
                self.http.bind(py)
            },
        )?;
        env.set_item(k.wsgi_input.bind(py), input)?;
        env.set_item(k.wsgi_errors.bind(py), self.errors.bind(py))?;
        env.set_item(k.wsgi_multithread.bind(py), self.multithread)?;
        env.set_item(k.wsgi_multiprocess.bind(py), self.multiprocess)?;
        env.set_item(k.wsgi_run_once.bind(py), false)?;
        env.set_item(k.wsgi_input_terminated.bind(py), true)?;
        env.set_item(k.wsgi_file_wrapper.bind(py), self.file_wrapper.bind(py))?;
        env.set_item(
            k.wsgi_early_hints.bind(py),
            responder.getattr(pyo3::intern!(py, "early_hints"))?,
        )?;
        env.set_item(k.gunicorn_socket.bind(py), socket)?;
        Ok(env)
    }
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
