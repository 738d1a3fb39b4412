//! Address ranges for the settings that trust peers (`forwarded_allow_ips`):
//! an IP address or a CIDR network (`10.0.0.0/8`, `fd00::/8`), parsed
//! strictly as Python's `ipaddress.ip_network` does for gunicorn (host bits
//! set after the prefix are an error), and matched against a peer address.

use std::net::IpAddr;

/// One IP network; a bare address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `ADDR` or `ADDR/PREFIX`.
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| "expected an IP address or network such as 10.0.0.0/8".to_string())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("the prefix length must be 0 to {max}")),
            },
        };
        let net = IpNet { addr, prefix };
        if net.masked(addr) != bits(addr) {
            return Err("host bits are set after the prefix (e.g. write 192.168.1.0/24, not 192.168.1.1/24)".into());
        }
        Ok(net)
    }

    /// The address's bits with those past the prefix cleared.
    fn masked(&self, ip: IpAddr) -> u128 {
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let host = width - u32::from(self.prefix);
        let mask = if host >= 128 { 0 } else { u128::MAX << host };
        bits(ip) & mask
    }

    /// Whether `ip` is in this network (an IPv4 address is never in an
    /// IPv6 network and the other way round, as in Python).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == bits(self.addr)
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The entries of a comma-separated address list setting, however it was
/// given (one value with commas, several values, or a TOML array).
pub fn split_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Who may use a protocol feature (`proxy_allow_ips`, `uwsgi_allow_ips`):
/// `*`, or addresses and networks. A unix-socket peer always may (as in
/// gunicorn); an IPv4-mapped IPv6 peer (`::ffff:127.0.0.1`, on a `[::]`
/// listener) is matched as its IPv4 address.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    any: bool,
    nets: Vec<IpNet>,
}

impl AllowList {
    /// From a validated setting (entries that do not parse are skipped).
    pub fn new(entries: &[String]) -> AllowList {
        AllowList {
            any: entries.iter().any(|e| e == "*"),
            nets: entries
                .iter()
                .filter_map(|e| IpNet::parse(e).ok())
                .collect(),
        }
    }

    /// Whether a TCP peer at `ip` is allowed (None: a unix socket, always).
    pub fn allows(&self, ip: Option<IpAddr>) -> bool {
        let Some(ip) = ip else { return true };
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.any
            || self
                .nets
                .iter()
                .any(|n| n.contains(ip) || mapped.is_some_and(|m| n.contains(m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_and_addresses() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains(ip("10.255.1.2")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(!n.contains(ip("::ffff:10.0.0.1")));
        let one = IpNet::parse("192.168.1.7").unwrap();
        assert!(one.contains(ip("192.168.1.7")));
        assert!(!one.contains(ip("192.168.1.8")));
        let v6 = IpNet::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12:3456::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(IpNet::parse("::/0").unwrap().contains(ip("::1")));
    }

    #[test]
    fn bad_networks_say_why() {
        assert!(IpNet::parse("192.168.1.1/24")
            .unwrap_err()
            .contains("host bits"));
        assert!(IpNet::parse("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(IpNet::parse("nope").is_err());
        assert!(IpNet::parse("10.0.0.0/").is_err());
    }

    #[test]
    fn lists_split_on_commas() {
        let v = vec!["10.0.0.1, 10.0.0.2".to_string(), "::1".to_string()];
        assert_eq!(split_list(&v), ["10.0.0.1", "10.0.0.2", "::1"]);
    }

    #[test]
    fn allow_lists() {
        let l = AllowList::new(&["127.0.0.1".into(), "10.0.0.0/8".into()]);
        assert!(l.allows(Some(ip("127.0.0.1"))));
        assert!(l.allows(Some(ip("::ffff:10.1.2.3"))));
        assert!(!l.allows(Some(ip("::1"))));
        assert!(!l.allows(Some(ip("192.0.2.1"))));
        assert!(l.allows(None));
        assert!(AllowList::new(&["*".into()]).allows(Some(ip("192.0.2.1"))));
        assert!(!AllowList::new(&[]).allows(Some(ip("127.0.0.1"))));
        let mapped = AllowList::new(&["::ffff:10.0.0.1".into()]);
        assert!(mapped.allows(Some(ip("::ffff:10.0.0.1"))));
    }
}
