//! ferrocorn: a pre-fork HTTP server for Python WSGI apps, compatible with
//! gunicorn's command line, signals and environ. ARCHITECTURE.md draws how
//! the pieces fit.
//!
//! Architecture, by module:
//! - [`command`]: the `ferrocorn` command line (serve, `--check-config`,
//!   `ctl`, `upgrade`), run by the binary and by the wheel's Python
//!   command (`python`, the extension module, feature `wheel`).
//! - [`config`]: every setting defined once (CLI flag, TOML key, default,
//!   help), the command line, the TOML file, and the docs generated from
//!   the table ([`config::docs`]).
//! - [`control`]: the control socket the master serves (gunicorn's wire
//!   format, for `gunicornc` too), `ferrocorn ctl`, and the workers'
//!   stacks thread behind `ctl stacks`.
//! - [`hooks`]: Python config files (`gunicorn.conf.py`) and gunicorn's
//!   server hooks, run in a config host process (master-side hooks) or in
//!   the workers.
//! - [`master`]: the arbiter — binds or inherits the listeners
//!   ([`master::listeners`]), forks, reaps and signals workers; HUP reload,
//!   USR2 upgrade to a successor master, systemd notification, and the
//!   `ferrocorn upgrade` command.
//! - [`worker`]: the per-process connection engine (one epoll loop that
//!   owns every connection), HTTP/1.1 on a connection, and the executors
//!   that run requests (inline for sync, threads for gthread).
//! - [`gateway`]: HTTP/2 in a worker: one thread with the `h2` crate that
//!   turns each stream into an HTTP/1.1 request on an internal connection.
//! - [`http`]: the protocol's types: strict request-head parsing, chunked
//!   bodies, body framing.
//! - [`proxy`], [`uwsgi`]: the PROXY protocol header and the uwsgi request
//!   packet, socket-free, for the worker's connection edge.
//! - [`wsgi`]: the embedded-CPython bridge (PEP 3333): loading the app, the
//!   environ, the response writer, `wsgi.input`, `gunicorn.socket`.
//! - [`ws`]: the WebSocket protocol (RFC 6455, permessage-deflate):
//!   handshake, frame decoding and encoding, for the ASGI worker.
//! - [`sys`]: fork, exec, signals, fd adoption and the scoreboard — where
//!   the `unsafe` lives.
//! - [`log`]: the error log, the access log ([`log::access`]) and the date
//!   formats ([`log::timefmt`]).
//! - [`metrics`]: statsd as gunicorn sends it, and the master's Prometheus
//!   endpoint over per-worker counters in shared memory.

pub mod asgi;
pub mod command;
pub mod config;
pub mod control;
pub mod gateway;
pub mod hooks;
pub mod http;
pub mod log;
pub mod master;
pub mod metrics;
pub mod proxy;
#[cfg(feature = "wheel")]
mod python;
pub mod sys;
pub mod tls;
pub mod uwsgi;
pub mod worker;
pub mod ws;
pub mod wsgi;
