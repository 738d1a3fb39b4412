//! The Python side of a worker: interpreter setup, loading the app, the
//! WSGI environ, `start_response`/`write`, `wsgi.input`, `wsgi.errors` and
//! `wsgi.file_wrapper` (PEP 3333).
//!
//! Everything here runs after fork, in a worker. Objects that Python can
//! call back into hold the connection's raw descriptor only while the
//! request is active; the worker deactivates them when the request ends.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::{PyIOError, PyStopIteration, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use thiserror::Error;

use crate::http::{ChunkedDecoder, RequestHead};
use crate::sys;

/// How long a blocking socket wait inside a request may stall before the
/// client is considered gone, unless the worker sets another
/// (`--body-timeout`).
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Flush the response buffer to the socket once it holds this much.
const FLUSH_AT: usize = 256 * 1024;
/// Body chunks at least this large are written straight from Python's bytes.
const DIRECT_WRITE_AT: usize = 64 * 1024;
/// Unwritten output up to this size is handed back to the worker's event
/// loop when the client does not read fast enough, instead of waiting for
/// it here: a slow reader then holds a connection slot, not the worker
/// (sync) or a thread (gthread). Larger responses wait here, bounded by the
/// I/O timeout per stall.
pub const SPILL_MAX: usize = 1 << 20;

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
// Socket helpers for objects that Python calls back into.

/// `fd` as a borrowed descriptor.
///
/// SAFETY contract for callers: only called while the owning request is
/// active, and the worker keeps the connection (and so the descriptor) open
/// for at least as long as the request is active.
fn borrow_sock<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: see the contract above; `active` is checked by every caller.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

fn send_some(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    let sock = borrow_sock(fd);
    nix::sys::socket::send(
        std::os::fd::AsRawFd::as_raw_fd(&sock),
        data,
        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
    )
    .map_err(io::Error::from)
}

/// Write all of `data`, waiting (with the GIL released) while the socket
/// is full. Large writes release the GIL for the copy too, so other
/// threads of a gthread worker run meanwhile.
fn send_all(py: Python<'_>, fd: RawFd, data: &[u8], timeout: Duration) -> io::Result<()> {
    if data.len() >= DIRECT_WRITE_AT {
        return py.detach(|| send_all_detached(fd, data, timeout));
    }
    send_all_attached(py, fd, data, timeout)
}

/// Write what the socket takes now, without waiting. Returns the count.
fn send_now(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < data.len() {
        match send_some(fd, &data[sent..]) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

fn send_all_detached(fd: RawFd, mut data: &[u8], timeout: Duration) -> io::Result<()> {
    while !data.is_empty() {
        match send_some(fd, data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !sys::wait_fd(borrow_sock(fd), true, timeout)? {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "send timed out"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn send_all_attached(
    py: Python<'_>,
    fd: RawFd,
    mut data: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    while !data.is_empty() {
        match send_some(fd, data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let ready = py.detach(|| sys::wait_fd(borrow_sock(fd), true, timeout))?;
                if !ready {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "send timed out"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// wsgi.input

/// Where the rest of a streamed request body comes from.
pub enum BodyRest {
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// `wsgi.input`: the request body, buffered by the event loop when it is
/// small, streamed from the socket (GIL released while waiting) when not.
#[pyclass(module = "ferrocorn", name = "Input")]
pub struct Input {
    buf: Vec<u8>,
    pos: usize,
    /// Raw, undecoded bytes read from the socket after the head.
    raw: Vec<u8>,
    rest: Option<BodyRest>,
    fd: RawFd,
    active: bool,
    /// The client went away or sent a malformed chunk.
    failed: bool,
    /// Longest wait for more body bytes.
    timeout: Duration,
}

/// Largest single read from the socket while streaming a body.
const READ_CHUNK: usize = 64 * 1024;

/// Read what the socket has for a request body into `dst`, waiting (GIL
/// released) up to `timeout` when nothing has arrived. End of stream
/// before the body is complete is an error.
fn read_body(py: Python<'_>, fd: RawFd, timeout: Duration, dst: &mut [u8]) -> PyResult<usize> {
    loop {
        match nix::unistd::read(borrow_sock(fd), dst) {
            Ok(0) => {
                return Err(PyIOError::new_err(
                    "client disconnected before sending the whole body",
                ))
            }
            Ok(n) => return Ok(n),
            Err(nix::errno::Errno::EAGAIN) => {
                let ready = py.detach(|| sys::wait_fd(borrow_sock(fd), false, timeout));
                if !matches!(ready, Ok(true)) {
                    return Err(PyIOError::new_err("timed out reading the request body"));
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(PyIOError::new_err(format!("reading the request body: {e}"))),
        }
    }
}

impl Input {
    /// A body that is already complete in memory (possibly empty).
    pub fn buffered(body: Vec<u8>) -> Input {
        Input {
            buf: body,
            pos: 0,
            raw: Vec::new(),
            rest: None,
            fd: -1,
            active: false,
            failed: false,
            timeout: IO_TIMEOUT,
        }
    }

    /// A body of which `decoded` has arrived; the rest is read from `fd`,
    /// starting with the undecoded bytes in `raw`.
    /// Each wait for more bytes may last up to `timeout`.
    pub fn streaming(
        decoded: Vec<u8>,
        raw: Vec<u8>,
        rest: BodyRest,
        fd: RawFd,
        timeout: Duration,
    ) -> Input {
        Input {
            buf: decoded,
            pos: 0,
            raw,
            rest: Some(rest),
            fd,
            active: true,
            failed: false,
            timeout,
        }
    }

    fn body_done(&self) -> bool {
        match &self.rest {
            None => true,
            Some(BodyRest::Length(n)) => *n == 0,
            Some(BodyRest::Chunked(d)) => d.is_finished(),
        }
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
                        Err(PyIOError::new_err(format!(
                            "invalid chunked request body: {}",
                            e.detail
                        )))
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
            let (fd, timeout) = (self.fd, self.timeout);
            // A Content-Length body with nothing pending to decode is read
            // straight into the decoded buffer: no intermediate copies.
            if self.raw.is_empty() {
                if let Some(BodyRest::Length(left)) = &mut self.rest {
                    let room = (*left).min(READ_CHUNK as u64) as usize;
                    let start = self.buf.len();
                    self.buf.resize(start + room, 0);
                    match read_body(py, fd, timeout, &mut self.buf[start..]) {
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
            match read_body(py, fd, timeout, &mut self.raw[start..]) {
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

// ---------------------------------------------------------------------------
// start_response and the response writer

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
    fd: RawFd,
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
    pub status_code: u16,
    pub body_bytes: u64,
    date: String,
    /// Longest wait for the client to accept more output.
    timeout: Duration,
}

impl Responder {
    pub fn new(
        fd: RawFd,
        minor: u8,
        is_head: bool,
        keep_alive: bool,
        date: &str,
        out: Vec<u8>,
        timeout: Duration,
    ) -> Responder {
        Responder {
            fd,
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
            status_code: 0,
            body_bytes: 0,
            date: date.to_string(),
            timeout,
        }
    }

    pub fn deactivate(&mut self) {
        self.active = false;
    }

    /// The headers the app passed to start_response.
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
        self.no_body = self.status_code < 200 || self.status_code == 204 || self.status_code == 304;
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(if self.minor == 0 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        head.extend_from_slice(status.as_bytes());
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
                continue;
            }
            match lname.as_str() {
                "content-length" => match value.trim().parse::<u64>() {
                    Ok(n) => content_length = Some(n),
                    Err(_) => {
                        return Err(PyValueError::new_err(format!(
                            "invalid Content-Length header: {value:?}"
                        )))
                    }
                },
                "server" => has_server = true,
                "date" => has_date = true,
                _ => {}
            }
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
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
        } else if let Some(n) = total {
            head.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
            self.remaining = Some(n);
        } else if self.is_head {
            self.remaining = Some(0);
        } else if self.minor >= 1 {
            head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            self.chunked = true;
        } else {
            self.keep_alive = false;
        }
        if !self.keep_alive {
            head.extend_from_slice(b"Connection: close\r\n");
        } else if self.minor == 0 {
            head.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        head.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&head);
        self.head_sent = true;
        Ok(())
    }

    /// Write what the socket takes now; if more than SPILL_MAX is left,
    /// write that too, waiting with the GIL released. What stays in `out`
    /// goes to the worker's loop with the rest of the response.
    pub fn flush(&mut self, py: Python<'_>) {
        if self.out.is_empty() || self.broken {
            return;
        }
        if !self.active {
            self.broken = true;
            return;
        }
        match send_now(self.fd, &self.out) {
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
        if send_all(py, self.fd, &self.out, self.timeout).is_err() {
            self.broken = true;
        }
        self.out.clear();
    }

    /// Write everything buffered, waiting (GIL released) as long as needed.
    fn flush_all(&mut self, py: Python<'_>) {
        self.flush(py);
        if self.out.is_empty() || self.broken {
            return;
        }
        if send_all(py, self.fd, &self.out, self.timeout).is_err() {
            self.broken = true;
        }
        self.out.clear();
    }

    /// Add one body chunk. `total` as for `send_head`.
    pub fn send_body(&mut self, py: Python<'_>, data: &[u8], total: Option<u64>) -> PyResult<()> {
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
                match send_now(self.fd, rest) {
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
                    if send_all(py, self.fd, &self.out, self.timeout).is_err() {
                        self.broken = true;
                    }
                    self.out.clear();
                }
                if !self.broken && send_all(py, self.fd, rest, self.timeout).is_err() {
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
            let sock = borrow_sock(self.fd);
            match nix::sys::sendfile::sendfile(
                sock,
                file,
                Some(&mut off),
                count.min(1 << 30) as usize,
            ) {
                Ok(0) => break, // the file shrank
                Ok(n) => count -= n as u64,
                Err(nix::errno::Errno::EAGAIN) => {
                    let (fd, timeout) = (self.fd, self.timeout);
                    let ready = py.detach(|| sys::wait_fd(borrow_sock(fd), true, timeout));
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
}

fn check_header_text(what: &str, s: &str) -> PyResult<()> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(PyValueError::new_err(format!(
            "invalid {what} {s:?}: control characters are not allowed"
        )));
    }
    Ok(())
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
            let b = status.as_bytes();
            if b.len() < 4 || !b[..3].iter().all(u8::is_ascii_digit) || b[3] != b' ' {
                return Err(PyValueError::new_err(format!(
                    "invalid status {status:?}: expected '200 OK' form"
                )));
            }
            check_header_text("status", &status)?;
            let list = headers.cast::<PyList>().map_err(|_| {
                PyTypeError::new_err("headers must be a list of (name, value) tuples")
            })?;
            let mut parsed = Vec::with_capacity(list.len());
            for item in list.iter() {
                let tuple = item.cast::<PyTuple>().map_err(|_| {
                    PyTypeError::new_err("each header must be a (name, value) tuple")
                })?;
                if tuple.len() != 2 {
                    return Err(PyTypeError::new_err(
                        "each header must be a (name, value) tuple",
                    ));
                }
                let name: String = tuple
                    .get_item(0)?
                    .cast::<PyString>()
                    .map_err(|_| PyTypeError::new_err("header names must be str"))?
                    .to_str()?
                    .to_string();
                let value: String = tuple
                    .get_item(1)?
                    .cast::<PyString>()
                    .map_err(|_| {
                        PyTypeError::new_err(format!("the value of header {name:?} must be str"))
                    })?
                    .to_str()?
                    .to_string();
                if name.is_empty() || name.bytes().any(|c| c <= b' ' || c == b':' || c >= 0x7f) {
                    return Err(PyValueError::new_err(format!(
                        "invalid header name {name:?}"
                    )));
                }
                check_header_text("header value", &value)?;
                parsed.push((name, value));
            }
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
        self.flush(py);
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

    /// Build the environ for one request.
    pub fn environ<'py>(
        &self,
        py: Python<'py>,
        head: &RequestHead,
        peer: &Peer,
        server: &ServerInfo,
        input: Bound<'py, Input>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = PyDict::new(py);
        let k = &self.keys;
        let method = match self.methods.get(&head.method) {
            Some(m) => m.bind(py).clone(),
            None => PyString::new(py, &head.method),
        };
        env.set_item(k.request_method.bind(py), method)?;
        // PATH_INFO: percent-decoded bytes, as latin-1.
        let decoded = percent_decode(&head.path);
        let mut path: String = decoded.iter().map(|&b| b as char).collect();
        if !self.script_name.is_empty() {
            if let Some(rest) = path.strip_prefix(&self.script_name) {
                if rest.is_empty() || rest.starts_with('/') {
                    path = rest.to_string();
                }
            }
            env.set_item(k.script_name.bind(py), PyString::new(py, &self.script_name))?;
        } else {
            env.set_item(k.script_name.bind(py), self.empty.bind(py))?;
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
        let (sname, sport) = match host {
            Some(h) => split_host(h, default_port),
            None => (server.name.clone(), server.port.clone()),
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
