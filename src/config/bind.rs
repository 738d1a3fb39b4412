//! `bind` addresses: the [`BindAddr`] forms (`HOST:PORT`, `[IPV6]:PORT`,
//! `unix:PATH`, `fd://N`) and their parser.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use super::ConfigError;

/// A parsed `bind` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Fd(i32),
}

impl std::fmt::Display for BindAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindAddr::Tcp(a) => write!(f, "http://{a}"),
            BindAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            BindAddr::Fd(n) => write!(f, "fd://{n}"),
        }
    }
}

/// Parse one `bind` value.
pub fn parse_bind(addr: &str) -> Result<BindAddr, ConfigError> {
    let err = |reason: &str| ConfigError::Bind {
        addr: addr.to_string(),
        reason: reason.to_string(),
    };
    if let Some(path) = addr.strip_prefix("unix:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(err("empty socket path"));
        }
        return Ok(BindAddr::Unix(PathBuf::from(path)));
    }
    if let Some(fd) = addr.strip_prefix("fd://") {
        return match fd.parse::<i32>() {
            Ok(n) if n >= 0 => Ok(BindAddr::Fd(n)),
            _ => Err(err("expected fd://N with N a file descriptor number")),
        };
    }
    let addr_s = addr.strip_prefix("tcp://").unwrap_or(addr);
    let (host, port) = if let Some(rest) = addr_s.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .ok_or_else(|| err("missing ']' after IPv6 address"))?;
        let port = match tail {
            "" => "8000",
            t => t
                .strip_prefix(':')
                .ok_or_else(|| err("expected ':PORT' after ']'"))?,
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(err("not an IPv6 address"));
        }
        (h, port)
    } else {
        match addr_s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(err(
                    "IPv6 addresses must be written in brackets: [::1]:8000",
                ))
            }
            Some((h, p)) => (h, p),
            None => (addr_s, "8000"),
        }
    };
    let port: u16 = port
        .parse()
        .map_err(|_| err("the port must be a number from 0 to 65535"))?;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    if host
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_')))
    {
        return Err(err("invalid host name"));
    }
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| err(&format!("cannot resolve host: {e}")))?;
    let first = addrs
        .next()
        .ok_or_else(|| err("host resolves to no address"))?;
    Ok(BindAddr::Tcp(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_forms() {
        assert!(
            matches!(parse_bind("[::1]:8080"), Ok(BindAddr::Tcp(a)) if a.port() == 8080 && a.is_ipv6())
        );
        assert_eq!(parse_bind("fd://3").unwrap(), BindAddr::Fd(3));
        assert!(matches!(parse_bind("127.0.0.1"), Ok(BindAddr::Tcp(a)) if a.port() == 8000));
        for bad in [
            "127.0.0.1:99999",
            "::1:80",
            "[::1",
            "fd://x",
            "unix:",
            "host:port",
            "a b:1",
        ] {
            assert!(parse_bind(bad).is_err(), "{bad} should be rejected");
        }
    }
}
