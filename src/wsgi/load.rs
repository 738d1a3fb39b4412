//! Interpreter setup and app loading, after fork (or in the master with
//! `--preload`): CPython initialized from a `PyConfig` (one hash seed per
//! master start, no exported PYTHONHASHSEED), `sys.path` built as
//! gunicorn builds it, faulthandler armed for the master's SIGABRT, and
//! the app imported from its `module:attr` spec.

use std::ffi::CString;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use thiserror::Error;

use super::{APP_LOAD_ERROR, WORKER_BOOT_ERROR};

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

def sync_environ(env):
    # os.environ is the interpreter's copy, made when it started; in a
    # worker of the wheel's master (or of a --preload master) that was
    # before the master changed the process environment (--env set, the
    # socket-activation and notify variables taken away). The app sees the
    # process's environment as it is now, as a fresh interpreter would.
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value

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

def _spewer(frame, event, arg):
    # --spew: every line as it runs, module:line: source.
    if event == "line":
        import linecache
        g = frame.f_globals
        name = g.get("__name__", "[unknown]")
        filename = frame.f_code.co_filename
        line = linecache.getline(filename, frame.f_lineno).rstrip()
        if not line:
            line = "<%s, instruction %d>" % (frame.f_code.co_name, frame.f_lasti)
        sys.stdout.write("%s:%s: %s\n" % (name, frame.f_lineno, line))
    return _spewer

def spew():
    sys.settrace(_spewer)

def load_paste(spec, global_conf):
    # spec: FILE, or FILE then chr(35) then an app section name.
    path, _, name = spec.partition(chr(35))
    try:
        from paste.deploy import loadapp
    except ImportError:
        raise AppLoadError("--paste needs PasteDeploy (pip install PasteDeploy) in the app's environment")
    import configparser, logging.config
    here = os.path.dirname(path)
    parser = configparser.ConfigParser()
    parser.read(path)
    if parser.has_section("loggers"):
        defaults = {"__file__": path, "here": here}
        defaults.update(global_conf)
        logging.config.fileConfig(path, defaults, disable_existing_loggers=False)
    uri = "config:" + path + (chr(35) + name if name else "")
    return loadapp(uri, relative_to=here, global_conf=dict(global_conf))

def load(spec, global_conf=None):
    if spec.startswith("paste:"):
        return load_paste(spec[len("paste:"):], global_conf or {})
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
    /// `--paste-global` KEY=VALUE pairs (for a `paste:` app).
    pub paste_global: &'a [String],
}

/// Start the interpreter the way pyo3's `Python::initialize` does
/// (`Py_InitializeEx(0)`: no Python signal handlers, then release the
/// GIL), except that the str hash seed is `seed` unless the environment
/// sets PYTHONHASHSEED. The seed goes in through the interpreter's
/// configuration, so nothing is added to the environment: the app's
/// `os.environ` and its subprocesses see PYTHONHASHSEED as the user set it.
fn initialize(seed: u32) -> Result<(), LoadError> {
    // SAFETY: Py_IsInitialized may be called at any time.
    if unsafe { pyo3::ffi::Py_IsInitialized() } != 0 {
        // Already running: the interpreter of the wheel's `ferrocorn`
        // command, whose master forked this worker (or a --preload
        // master's): keep it as it is, with its own hash seed, which every
        // worker of this master shares.
        Python::initialize();
        return Ok(());
    }
    #[cfg(feature = "wheel")]
    {
        // The extension module is only ever loaded by a running Python.
        let _ = seed;
        Err(LoadError::Boot(
            "the ferrocorn extension module found no running Python".into(),
        ))
    }
    #[cfg(not(feature = "wheel"))]
    initialize_from_config(seed)
}

/// [`initialize`] for the standalone binary: a `PyConfig` as
/// `Py_InitializeEx(0)` would make, with the hash seed. (The stable ABI of
/// the wheel's extension module has no `PyConfig`, nor needs one.)
#[cfg(not(feature = "wheel"))]
fn initialize_from_config(seed: u32) -> Result<(), LoadError> {
    use pyo3::ffi;
    use std::os::raw::{c_int, c_ulong};
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
#[cfg(not(feature = "wheel"))]
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

fn logging_in(py: Python<'_>, conf: &super::LogConfig) -> Result<(), LoadError> {
    super::pylog::configure(py, conf)
        .map_err(|e| LoadError::Boot(format!("log config {}: {}", conf.path(), e.value(py))))
}

/// Set up `--log-config`/`--log-config-json` in a worker (after
/// [`init_python`], before the hooks and the app).
pub fn configure_logging(conf: &super::LogConfig) -> Result<(), LoadError> {
    Python::attach(|py| logging_in(py, conf))
}

/// Initialize the interpreter (after fork) with `sys.path` and the
/// virtualenv set up as for the app, importing nothing else (the config
/// host runs the config file in it).
pub fn init_python(setup: &PySetup<'_>) -> Result<(), LoadError> {
    initialize(setup.base.hash_seed)?;
    Python::attach(|py| {
        let boot = bootstrap(py).map_err(|e| LoadError::Boot(format_exception(py, &e)))?;
        boot.getattr("arm_faulthandler")
            .and_then(|f| f.call1((crate::log::raw_fd(),)))
            .map_err(|e| LoadError::Boot(format_exception(py, &e)))?;
        let env: std::collections::HashMap<std::ffi::OsString, std::ffi::OsString> =
            std::env::vars_os().collect();
        boot.getattr("sync_environ")
            .and_then(|f| f.call1((env,)))
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
        Ok(())
    })
}

/// `--spew` is on: threads that run requests trace every line.
pub static SPEW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// With `--spew`, trace every line this thread runs from now on.
pub fn spew_this_thread(py: Python<'_>) {
    if !SPEW.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    if let Err(e) = bootstrap(py).and_then(|b| b.getattr("spew")?.call0()) {
        crate::error!("--spew: {}", format_exception(py, &e));
    }
}

/// Initialize the interpreter (after fork) and import the app.
pub fn load_app(setup: &PySetup<'_>) -> Result<Py<PyAny>, LoadError> {
    init_python(setup)?;
    Python::attach(|py| {
        let boot = bootstrap(py).map_err(|e| LoadError::Boot(format_exception(py, &e)))?;
        let globals = pyo3::types::PyDict::new(py);
        for kv in setup.paste_global {
            if let Some((k, v)) = kv.split_once('=') {
                globals
                    .set_item(k, v)
                    .map_err(|e| LoadError::Boot(format_exception(py, &e)))?;
            }
        }
        let app = boot
            .getattr("load")
            .and_then(|f| f.call1((setup.app, globals)));
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

/// A module of Python source built into the binary (`name`, with file name
/// `name.py` in tracebacks), made on first use and kept in `cell`; `init`
/// adds to it once made.
pub fn embedded_module<'py>(
    py: Python<'py>,
    cell: &'static pyo3::sync::PyOnceLock<Py<PyModule>>,
    src: &std::ffi::CStr,
    name: &std::ffi::CStr,
    init: impl FnOnce(&Bound<'py, PyModule>) -> PyResult<()>,
) -> PyResult<Bound<'py, PyModule>> {
    let m = cell.get_or_try_init(py, || -> PyResult<Py<PyModule>> {
        let file = std::ffi::CString::new(format!("{}.py", name.to_string_lossy()))
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        let m = PyModule::from_code(py, src, &file, name)?;
        init(&m)?;
        Ok(m.unbind())
    })?;
    Ok(m.bind(py).clone())
}
