//! ferrocorn: a pre-fork HTTP server for Python WSGI apps, compatible with
//! gunicorn's command line, signals and environ.
//!
//! Architecture, by module:
//! - [`config`]: every setting defined once (CLI flag, TOML key, default, help).
//! - [`listeners`]: sockets bound (or inherited) by the master before fork.
//! - [`master`]: the arbiter — forks, reaps and signals workers.
//! - [`worker`]: the per-process epoll loop that owns every connection.
//! - [`http`]: strict HTTP/1.1 request parsing.
//! - [`wsgi`]: the embedded-CPython bridge (PEP 3333).
//! - [`sys`]: fork, signals and fd adoption — where the `unsafe` lives.
//! - [`log`]: the error log, the access log ([`log::access`]) and the date
//!   formats ([`log::timefmt`]).

pub mod config;
pub mod docs;
pub mod http;
pub mod listeners;
pub mod log;
pub mod master;
pub mod sdnotify;
pub mod sys;
pub mod upgrade;
pub mod worker;
pub mod wsgi;

// The access log and the date formats live under `log/` now; these aliases
// keep their former paths (`crate::accesslog`, `crate::timefmt`) working for
// the modules and binaries that use them.
pub use self::log::access as accesslog;
pub use self::log::timefmt;
