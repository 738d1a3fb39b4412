//! ferrocorn: a pre-fork HTTP server for Python WSGI apps, compatible with
//! gunicorn's command line, signals and environ.
//!
//! Architecture, by module:
//! - [`config`]: every setting defined once (CLI flag, TOML key, default,
//!   help), the command line, the TOML file, and the docs generated from
//!   the table ([`config::docs`]).
//! - [`listeners`]: sockets bound (or inherited) by the master before fork.
//! - [`master`]: the arbiter — forks, reaps and signals workers.
//! - [`worker`]: the per-process epoll loop that owns every connection.
//! - [`http`]: strict HTTP/1.1 request parsing.
//! - [`wsgi`]: the embedded-CPython bridge (PEP 3333).
//! - [`sys`]: fork, signals and fd adoption — where the `unsafe` lives.

pub mod accesslog;
pub mod config;
pub mod http;
pub mod log;
pub mod master;
pub mod sys;
pub mod timefmt;
pub mod worker;
pub mod wsgi;

// Kept at the crate root: the workers import `crate::listeners`.
pub use master::listeners;
