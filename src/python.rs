//! The wheel's extension module, `ferrocorn._ferrocorn` (feature `wheel`,
//! CPython's stable ABI from 3.9): `main()` runs the ferrocorn command
//! (src/command.rs) in the Python process of the `ferrocorn` console
//! script or of `python -m ferrocorn`, which becomes the master.
//!
//! The master's interpreter only ever ran the entry point: it holds no GIL
//! while it supervises (released here for the command's whole life and
//! taken only around fork, for CPython's fork hooks, and for --preload),
//! and Python's own signal handlers are taken out first, so the signals
//! are the master's Rust handlers' alone, as in the standalone binary.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use pyo3::prelude::*;

use crate::command::{self, Entry};

/// Signals whose Python-level handler (one Python installed at start-up,
/// SIGINT's KeyboardInterrupt, or one the caller set) goes back to the
/// default action before the master installs its own. A C handler of
/// Python's would otherwise stay chained behind the master's and run
/// Python signal handlers in a worker, inside the app.
const HANDED_OVER: &[&str] = &[
    "SIGINT", "SIGTERM", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGTTIN",
    "SIGTTOU", "SIGCHLD", "SIGALRM", "SIGABRT",
];

/// Python starts with SIGINT raising KeyboardInterrupt and SIGPIPE and
/// SIGXFSZ ignored. Leave the process as the standalone binary starts:
/// SIGPIPE ignored (Rust's runtime does that too), SIGXFSZ at its default
/// (a worker writing past RLIMIT_FSIZE dies of it, as under the binary),
/// and no Python handler on any signal the master or the workers handle.
fn hand_signals_to_rust(py: Python<'_>) -> PyResult<()> {
    let signal = py.import("signal")?;
    let dfl = signal.getattr("SIG_DFL")?;
    let ign = signal.getattr("SIG_IGN")?;
    for name in HANDED_OVER {
        let Ok(sig) = signal.getattr(*name) else {
            continue;
        };
        let current = signal.call_method1("getsignal", (&sig,))?;
        // SIG_IGN stays (e.g. SIGINT ignored for a background job of a
        // shell), as the binary would inherit it; None is a C handler
        // Python did not install, left alone too.
        if current.is(&dfl) || current.is(&ign) || current.is_none() {
            continue;
        }
        signal.call_method1("signal", (&sig, &dfl))?;
    }
    if let Ok(sig) = signal.getattr("SIGXFSZ") {
        if signal.call_method1("getsignal", (&sig,))?.is(&ign) {
            signal.call_method1("signal", (&sig, &dfl))?;
        }
    }
    Ok(())
}

/// `main(args, exe, prefix) -> int`: run `ferrocorn ARGS...` (`args`
/// without the program name) and return its exit code. A USR2 successor
/// is started as `exe PREFIX... ARGS...` (the interpreter, its options and
/// the entry point).
#[pyfunction]
fn main(py: Python<'_>, args: Vec<OsString>, exe: PathBuf, prefix: Vec<OsString>) -> PyResult<u8> {
    hand_signals_to_rust(py)?;
    // What Python printed so far goes out before the master writes to the
    // same descriptors.
    for stream in ["stdout", "stderr"] {
        if let Ok(s) = py.import("sys").and_then(|sys| sys.getattr(stream)) {
            if !s.is_none() {
                let _ = s.call_method0("flush");
            }
        }
    }
    let code = py.detach(|| {
        let code = command::run(args, Entry { exe, prefix }, true);
        let _ = std::io::stdout().flush();
        code
    });
    Ok(code)
}

#[pymodule]
fn _ferrocorn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
