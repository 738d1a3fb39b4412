//! ferrocorn: a pre-fork HTTP server for Python WSGI apps, compatible with
//! gunicorn's command line, signals and environ.
//!
//! Architecture, by module:
//! - [`config`]: every setting defined once (CLI flag, TOML key, default,
//!   help), the command line, the TOML file, and the docs generated from
//!   the table ([`config::docs`]).
//! - [`listeners`]: sockets bound (or inherited) by the master before fork
//!   (`master/listeners.rs`, re-exported here for the workers).
//! - [`master`]: the arbiter — forks, reaps and signals workers; HUP
//!   reload, USR2 upgrade to a successor master, systemd notification, and
//!   the `ferrocorn upgrade` command.
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

// The workers import `crate::listeners`; it lives with the master.
pub use master::listeners;
