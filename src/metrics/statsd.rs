//! statsd, as gunicorn's `gunicorn.instrument.statsd.Statsd` sends it, so
//! dashboards built for gunicorn keep working:
//!
//! - each worker, per request: `gunicorn.request.duration:MS|ms`,
//!   `gunicorn.requests:1|c|@1.0`, `gunicorn.request.status.NNN:1|c|@1.0`;
//! - any process, per error-log message: `gunicorn.log.critical`,
//!   `gunicorn.log.error`, `gunicorn.log.warning` and
//!   `gunicorn.log.exception` (`:1|c|@1.0`), whatever `--log-level` shows;
//! - the master: `gunicorn.workers:N|g` when the number of workers
//!   changes, and with `--enable-backlog-metric` `gunicorn.backlog:N|h`
//!   (connections waiting in the listen queues) once a second.
//!
//! `--statsd-prefix` is joined as gunicorn joins it (a trailing `.` is
//! added, and extra ones dropped, once the prefix has two characters),
//! `--dogstatsd-tags` is appended as `|#TAGS`, and each metric goes out in
//! a datagram of its own. The socket is non-blocking: a datagram the
//! kernel cannot take at once is dropped, and errors (nothing listening,
//! an unreachable host) are ignored, so a missing statsd server costs a
//! failed `send(2)` and never delays a request. The master opens the
//! socket (again on HUP); workers inherit it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::Settings;

/// Where `--statsd-host` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsdAddr {
    Udp(String, u16),
    Unix(PathBuf),
}

/// Parse `--statsd-host` as gunicorn does: `unix://PATH` or `unix:PATH`,
/// `HOST:PORT`, `[IPV6]:PORT`, `HOST` (port 8125), `tcp://` accepted in
/// front; `unix:NNNN` is the host `unix` (gunicorn's compatibility rule).
pub fn parse_addr(v: &str) -> Result<StatsdAddr, String> {
    const EXPECTED: &str = "expected HOST:PORT or unix://PATH";
    if let Some(port) = v.strip_prefix("unix:") {
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            let port = port.parse().map_err(|_| EXPECTED.to_string())?;
            return Ok(StatsdAddr::Udp("unix".into(), port));
        }
        let path = port.strip_prefix("//").unwrap_or(port);
        if path.is_empty() {
            return Err("empty socket path".into());
        }
        return Ok(StatsdAddr::Unix(PathBuf::from(path)));
    }
    if v.starts_with("fd://") {
        return Err(EXPECTED.into());
    }
    let v = v.strip_prefix("tcp://").unwrap_or(v);
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').ok_or(EXPECTED)?;
        match tail {
            "" => (h, "8125"),
            t => (h, t.strip_prefix(':').ok_or(EXPECTED)?),
        }
    } else {
        match v.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err("IPv6 addresses must be written in brackets: [::1]:8125".into())
            }
            Some((h, p)) => (h, p),
            None if v.is_empty() => ("0.0.0.0", "8125"),
            None => (v, "8125"),
        }
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{port}' is not a valid port number"))?;
    Ok(StatsdAddr::Udp(host.to_lowercase(), port))
}

/// gunicorn's `re.sub(r"^(.+[^.]+)\.*$", "\g<1>.", prefix)`: trailing dots
/// become one, once the prefix has at least two characters.
pub fn join_prefix(p: &str) -> String {
    let trimmed = p.trim_end_matches('.');
    if trimmed.chars().count() >= 2 && !p.contains('\n') {
        format!("{trimmed}.")
    } else {
        p.to_string()
    }
}

/// Python's `str()` of a float that has no exponent (what our values are).
fn py_float(v: f64) -> String {
    let mut s = format!("{v}");
    if !s.contains(['.', 'e', 'n', 'i']) {
        s.push_str(".0");
    }
    s
}

/// gunicorn's `request.duration`: `seconds * 1000 + microseconds / 1000`.
fn duration_ms(d: Duration) -> String {
    py_float((d.as_secs() * 1000) as f64 + d.subsec_micros() as f64 / 1000.0)
}

struct Client {
    sock: Socket,
    /// Unix sockets are sent to by path (so a server started later is
    /// found); UDP sockets are connected.
    to: Option<SockAddr>,
    prefix: String,
    /// `|#TAGS`, or empty.
    tags: String,
}

static CLIENT: RwLock<Option<Client>> = RwLock::new(None);

impl Client {
    fn open(addr: &StatsdAddr, prefix: &str, tags: &str) -> Result<Client, String> {
        let (sock, to) = match addr {
            StatsdAddr::Udp(host, port) => {
                let addrs: Vec<SocketAddr> = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| format!("cannot resolve {host}: {e}"))?
                    .collect();
                // IPv4 first, as gunicorn (AF_INET) would have it.
                let a = addrs
                    .iter()
                    .find(|a| a.is_ipv4())
                    .or(addrs.first())
                    .copied()
                    .ok_or_else(|| format!("{host} resolves to no address"))?;
                let s = Socket::new(Domain::for_address(a), Type::DGRAM, None)
                    .map_err(|e| e.to_string())?;
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
                s.connect(&a.into()).map_err(|e| e.to_string())?;
                (s, None)
            }
            StatsdAddr::Unix(path) => {
                let s = Socket::new(Domain::UNIX, Type::DGRAM, None).map_err(|e| e.to_string())?;
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
                let to = SockAddr::unix(path).map_err(|e| e.to_string())?;
                (s, Some(to))
            }
        };
        Ok(Client {
            sock,
            to,
            prefix: join_prefix(prefix),
            tags: if tags.is_empty() {
                String::new()
            } else {
                format!("|#{tags}")
            },
        })
    }

    /// `PREFIX NAME : VALUE | TYPE TAGS`, one datagram, never waiting.
    fn send(&self, name: &str, value: std::fmt::Arguments<'_>, kind: &str) {
        use std::fmt::Write;
        let mut msg = String::with_capacity(self.prefix.len() + name.len() + self.tags.len() + 24);
        let _ = write!(msg, "{}{name}:{value}|{kind}{}", self.prefix, self.tags);
        let _ = match &self.to {
            None => self.sock.send(msg.as_bytes()),
            Some(to) => self.sock.send_to(msg.as_bytes(), to),
        };
    }
}

fn with_client(f: impl FnOnce(&Client)) {
    let guard = CLIENT.read().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = guard.as_ref() {
        f(c);
    }
}

/// Whether metrics are being sent.
pub fn enabled() -> bool {
    CLIENT.read().unwrap_or_else(|p| p.into_inner()).is_some()
}

/// (Re)open the client from the settings (the master, at start and on
/// HUP). Returns why it could not, which the caller logs.
pub fn configure(s: &Settings) -> Result<(), String> {
    let client = match &s.statsd_host {
        None => None,
        Some(host) => {
            let addr = parse_addr(host)?;
            Some(Client::open(&addr, &s.statsd_prefix, &s.dogstatsd_tags)?)
        }
    };
    *CLIENT.write().unwrap_or_else(|p| p.into_inner()) = client;
    Ok(())
}

/// A finished request (the worker that served it sends).
pub fn request(status: u16, duration: Duration) {
    with_client(|c| {
        c.send(
            "gunicorn.request.duration",
            format_args!("{}", duration_ms(duration)),
            "ms",
        );
        c.send("gunicorn.requests", format_args!("1"), "c|@1.0");
        c.send(
            &format!("gunicorn.request.status.{status}"),
            format_args!("1"),
            "c|@1.0",
        );
    });
}

/// An error-log message of this kind (`critical`, `error`, `warning`,
/// `exception`).
pub fn log_event(kind: &str) {
    with_client(|c| {
        c.send(&format!("gunicorn.log.{kind}"), format_args!("1"), "c|@1.0");
    });
}

pub fn gauge(name: &str, value: u64) {
    with_client(|c| c.send(name, format_args!("{value}"), "g"));
}

pub fn histogram(name: &str, value: u64) {
    with_client(|c| c.send(name, format_args!("{value}"), "h"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_gunicorn_reads_them() {
        let udp = |h: &str, p| Ok(StatsdAddr::Udp(h.into(), p));
        assert_eq!(parse_addr("localhost:8125"), udp("localhost", 8125));
        assert_eq!(parse_addr("StatsD.Example"), udp("statsd.example", 8125));
        assert_eq!(parse_addr("[::1]:9125"), udp("::1", 9125));
        assert_eq!(parse_addr("tcp://10.0.0.1:1"), udp("10.0.0.1", 1));
        assert_eq!(parse_addr("unix:8125"), udp("unix", 8125));
        assert_eq!(parse_addr(""), udp("0.0.0.0", 8125));
        assert_eq!(
            parse_addr("unix:///run/statsd.sock"),
            Ok(StatsdAddr::Unix("/run/statsd.sock".into()))
        );
        assert_eq!(
            parse_addr("unix:/run/s"),
            Ok(StatsdAddr::Unix("/run/s".into()))
        );
        for bad in ["host:port", "::1", "fd://3", "unix:", "[::1"] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_as_gunicorn_joins_them() {
        assert_eq!(join_prefix(""), "");
        assert_eq!(join_prefix("app"), "app.");
        assert_eq!(join_prefix("app..."), "app.");
        assert_eq!(join_prefix("my.app"), "my.app.");
        // gunicorn's pattern wants two characters.
        assert_eq!(join_prefix("a"), "a");
        assert_eq!(join_prefix("a."), "a.");
    }

    #[test]
    fn durations_as_python_prints_them() {
        assert_eq!(duration_ms(Duration::from_micros(1_500)), "1.5");
        assert_eq!(duration_ms(Duration::from_secs(2)), "2000.0");
        assert_eq!(duration_ms(Duration::from_micros(2_000_001)), "2000.001");
        assert_eq!(duration_ms(Duration::ZERO), "0.0");
        assert_eq!(duration_ms(Duration::from_nanos(999)), "0.0");
    }
}
