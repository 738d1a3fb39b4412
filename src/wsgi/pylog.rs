//! `--log-config FILE` (ini, `logging.config.fileConfig`),
//! `--log-config-json FILE` and `logconfig_dict` (`logging.config.dictConfig`)
//! in a worker:
//! Python's logging set up after fork, on gunicorn's defaults, before the
//! app is imported; then every access-log line goes to the
//! `gunicorn.access` logger instead of ferrocorn's own writer, and the
//! worker's error-log lines to `gunicorn.error`. The master runs no
//! Python, so its lines stay in ferrocorn's error log (README, "The
//! access log").

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A logging configuration file and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogConfig {
    Ini(String),
    Json(String),
    /// `logconfig_dict`, as JSON text.
    Dict(String),
}

impl LogConfig {
    /// From the settings: `logconfig_dict` (JSON text, None when empty)
    /// wins, then `--log-config-json`, then `--log-config`, as in gunicorn.
    pub fn from_settings(
        ini: Option<&str>,
        json: Option<&str>,
        dict: Option<String>,
    ) -> Option<LogConfig> {
        match (dict, json, ini) {
            (Some(d), _, _) => Some(LogConfig::Dict(d)),
            (None, Some(j), _) => Some(LogConfig::Json(j.to_string())),
            (None, None, Some(i)) => Some(LogConfig::Ini(i.to_string())),
            (None, None, None) => None,
        }
    }

    /// Where it comes from, for messages.
    pub fn path(&self) -> &str {
        match self {
            LogConfig::Ini(p) | LogConfig::Json(p) => p,
            LogConfig::Dict(_) => "logconfig_dict",
        }
    }
}

/// Python: gunicorn's defaults (the `gunicorn.error` logger on stderr,
/// `gunicorn.access` and the root logger on stdout, its line format)
/// overlaid with the file's top-level keys, as gunicorn does.
const SETUP: &std::ffi::CStr = c"
import json, logging, logging.config, os

def _ferrocorn_logging(kind, path):
    generic = {'format': '%(asctime)s [%(process)d] [%(levelname)s] %(message)s',
               'datefmt': '[%Y-%m-%d %H:%M:%S %z]', 'class': 'logging.Formatter'}
    def stream(name):
        return {'class': 'logging.StreamHandler', 'formatter': 'generic', 'stream': 'ext://sys.' + name}
    def logger(name, handler):
        return {'level': 'INFO', 'handlers': [handler], 'propagate': True, 'qualname': name}
    base = {
        'version': 1,
        'disable_existing_loggers': False,
        'root': {'level': 'INFO', 'handlers': ['console']},
        'loggers': {'gunicorn.error': logger('gunicorn.error', 'error_console'),
                    'gunicorn.access': logger('gunicorn.access', 'console')},
        'handlers': {'console': stream('stdout'), 'error_console': stream('stderr')},
        'formatters': {'generic': generic},
    }
    # As gunicorn leaves them before reading the file: INFO, not propagated.
    for name in ('gunicorn.error', 'gunicorn.access'):
        logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger(name).propagate = False
    if kind == 'json':
        with open(path) as f:
            base.update(json.load(f))
        logging.config.dictConfig(base)
    elif kind == 'dict':
        base.update(json.loads(path))
        logging.config.dictConfig(base)
    else:
        logging.config.fileConfig(path, defaults={'__file__': path, 'here': os.path.dirname(path)},
                                  disable_existing_loggers=False)
    return logging.getLogger('gunicorn.access')
";

/// The `gunicorn.error` logger's `log`, once logging is configured.
static ERROR_LOG: std::sync::OnceLock<Py<PyAny>> = std::sync::OnceLock::new();

/// The worker's error-log lines, to `gunicorn.error` (with the GIL: the
/// callers never hold a lock that a thread running Python waits for).
fn error_line(level: crate::log::Level, text: &str) -> bool {
    let Some(log) = ERROR_LOG.get() else {
        return false;
    };
    Python::attach(|py| log.bind(py).call1((level as u8, text)).is_ok())
}

/// The `gunicorn.access` logger's `info`, once logging is configured.
static ACCESS_INFO: std::sync::OnceLock<Py<PyAny>> = std::sync::OnceLock::new();

/// Whether access lines go through Python's logging in this process.
pub fn enabled() -> bool {
    ACCESS_INFO.get().is_some()
}

/// Hand one access-log line (no newline) to `gunicorn.access`. A handler
/// that raises is reported as logging reports it (on stderr).
pub fn access(py: Python<'_>, line: &str) {
    if let Some(info) = ACCESS_INFO.get() {
        if let Err(e) = info.bind(py).call1((line,)) {
            e.print(py);
        }
    }
}

/// Configure logging (in a worker, before the app is imported).
pub fn configure(py: Python<'_>, conf: &LogConfig) -> PyResult<()> {
    let globals = PyDict::new(py);
    py.run(SETUP, Some(&globals), None)?;
    let (kind, path) = match conf {
        LogConfig::Ini(p) => ("ini", p),
        LogConfig::Json(p) => ("json", p),
        LogConfig::Dict(text) => ("dict", text),
    };
    let setup = globals
        .get_item("_ferrocorn_logging")?
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("logging setup missing"))?;
    let logger = setup.call1((kind, path))?;
    let _ = ACCESS_INFO.set(logger.getattr("info")?.unbind());
    let error = py
        .import("logging")?
        .call_method1("getLogger", ("gunicorn.error",))?;
    let _ = ERROR_LOG.set(error.getattr("log")?.unbind());
    crate::log::set_python_sink(error_line);
    Ok(())
}
