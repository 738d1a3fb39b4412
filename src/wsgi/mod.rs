//! The Python side of a worker (PEP 3333). Everything here runs after
//! fork, in a worker:
//!
//! - [`load`]: interpreter setup (one hash seed per master, `sys.path`
//!   as gunicorn builds it) and importing the app;
//! - [`environ`]: the WSGI environ of a request;
//! - [`call`]: WSGI as the worker's app interface (one request in, the
//!   response written, what became of the connection out);
//! - [`response`]: `start_response`, `write()`, `wsgi.early_hints` and the
//!   HTTP/1.1 response writer; [`input`]: `wsgi.input`; [`streams`]:
//!   `wsgi.errors` and `wsgi.file_wrapper`; [`socket`]: `gunicorn.socket`;
//!   [`sockio`]: the socket I/O they share (GIL released while waiting).
//!
//! Objects that Python can call back into hold the connection's raw
//! descriptor only while the request is active; the worker deactivates
//! them when the request ends.

#[cfg(feature = "wheel")]
pub(crate) mod abi;
mod call;
mod environ;
mod input;
mod load;
mod pylog;
mod response;
mod socket;
mod sockio;
mod streams;

pub use call::{log_access_head, Timing, WsgiApp};
pub use environ::{percent_decode, Forwarding, HeaderMap, Peer, ServerInfo, Wsgi};
pub use input::Input;
pub use load::{
    configure_logging, embedded_module, format_exception, init_python, load_app, new_hash_seed,
    spew_this_thread, LoadError, PyBase, PySetup, SPEW,
};
pub use pylog::LogConfig;
pub use response::{Responder, SPILL_MAX};
pub use socket::ConnSocket;
pub use sockio::{set_green, set_progress, GreenWaits, Progress};
pub use streams::{ErrorStream, FileWrapper};

use std::time::Duration;

/// How long a blocking socket wait inside a request may stall before the
/// client is considered gone, unless the worker sets another
/// (`--body-timeout`).
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// gunicorn's worker exit codes, which the master acts on.
pub const WORKER_BOOT_ERROR: i32 = 3;
pub const APP_LOAD_ERROR: i32 = 4;
