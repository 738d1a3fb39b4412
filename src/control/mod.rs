//! The control interface: the master's control socket (gunicorn's, so
//! gunicorn's `gunicornc` works against it) and `ferrocorn ctl`, its
//! client.
//!
//! - [`protocol`]: the wire format (length-prefixed JSON frames, or text
//!   lines), command parsing and the `help` table;
//! - `answers.rs`: what each command answers, and the actions it asks for;
//! - [`server`]: the socket inside the master's loop: bound with its mode
//!   in place, peers checked with `SO_PEERCRED`, non-blocking, bounded
//!   buffers and deadlines per client;
//! - [`stacks`]: `ctl stacks`, the per-worker link and the worker's stacks
//!   thread;
//! - [`client`]: `ferrocorn ctl`.
//!
//! The master stays in charge: the server reads its state through
//! [`Supervisor`] and hands back [`Action`]s, which the master applies
//! through the same paths as its signals (HUP, USR1, TERM, INT, TTIN/TTOU).

mod answers;
pub mod client;
pub mod protocol;
pub mod server;
pub mod stacks;

pub use protocol::StopMode;
pub use server::Server;
pub use stacks::{register_asyncio_loop, register_provider};

use thiserror::Error;

/// Why the control socket could not be opened (the master serves on
/// without it, as gunicorn does, after a warning).
#[derive(Debug, Error)]
pub enum ControlError {
    #[error("cannot create the directory {0}: {1}")]
    Dir(String, std::io::Error),
    #[error("{0} exists and is not a socket; remove it or choose another --control-socket")]
    NotASocket(String),
    #[error("{0} is in use by another running server; give each server its own --control-socket")]
    InUse(String),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
}

/// One worker as the control socket shows it.
#[derive(Debug, Clone)]
pub struct WorkerView {
    pub pid: i32,
    /// Spawn order.
    pub age: u64,
    /// Booted and serving.
    pub booted: bool,
    /// Sent SIGABRT for a timeout.
    pub aborted: bool,
    /// Seconds since its last heartbeat.
    pub last_heartbeat: Option<f64>,
    pub requests: u64,
    pub generation: u64,
    /// Being stopped (fewer workers, or the end of its generation).
    pub retiring: bool,
}

/// The master's counters, for `show stats`.
#[derive(Debug, Clone)]
pub struct StatsView {
    pub pid: u32,
    pub workers_target: u32,
    pub workers_spawned: u64,
    pub workers_killed: u64,
    pub reloads: u64,
    pub requests: u64,
    pub phase: String,
}

/// One listening socket, for `show listeners`.
#[derive(Debug, Clone)]
pub struct ListenerView {
    pub address: String,
    pub fd: i32,
    /// `tcp`, `tcp6` or `unix`.
    pub kind: &'static str,
}

/// What the control socket reads of the master.
pub trait Supervisor {
    fn workers(&self) -> Vec<WorkerView>;
    fn stats(&self) -> StatsView;
    /// gunicorn's `show config` keys with their values.
    fn config(&self) -> serde_json::Map<String, serde_json::Value>;
    fn listeners(&self) -> Vec<ListenerView>;
}

/// What a command asks the master to do, once the answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Set the worker count (`worker add/remove`), as TTIN/TTOU do.
    SetWorkers(u32),
    /// TERM to one worker; it is replaced.
    KillWorker(i32),
    /// As HUP.
    Reload,
    /// As USR1.
    Reopen,
    /// As TERM (graceful) or INT (quick).
    Shutdown(StopMode),
}

/// gunicorn's default control socket path: `$XDG_RUNTIME_DIR/gunicorn.ctl`
/// when that directory exists, else `$HOME/.gunicorn/gunicorn.ctl` (what
/// `ferrocorn ctl` connects to without `--control-socket`; the server's
/// default is the settings table's, by the same rule).
pub fn default_path() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        if std::path::Path::new(&dir).is_dir() {
            return std::path::Path::new(&dir).join("gunicorn.ctl");
        }
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
        .unwrap_or_default();
    home.join(".gunicorn").join("gunicorn.ctl")
}
