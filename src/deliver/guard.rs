//! SSRF guard: which addresses a destination may connect to.
//!
//! The check runs on the peer address of every new connection (after DNS,
//! at connect time), so a name that resolves to a private address — or is
//! re-bound to one — is refused however it was spelled.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guard {
    allow: Vec<IpNet>,
}

impl Guard {
    pub fn new(allow: Vec<IpNet>) -> Guard {
        Guard { allow }
    }

    /// `Err(why)` when `ip` is in a forbidden range and not explicitly allowed.
    pub fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        let Some(why) = forbidden(ip) else {
            return Ok(());
        };
        let canonical = canonical(ip);
        if self
            .allow
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
        {
            return Ok(());
        }
        Err(why)
    }

    /// Whether `ip` is inside one of the `network.allow_private` networks
    /// (not merely public): where plaintext SMTP may go.
    pub fn lists(&self, ip: IpAddr) -> bool {
        let canonical = canonical(ip);
        self.allow
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
    }

    /// Resolves `host` and keeps the addresses this guard allows, in order.
    /// `shown` names the destination in errors (`host:port`). Refused when
    /// every address is forbidden ([`DeliveryError::Blocked`](super::DeliveryError::Blocked)).
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
        shown: &str,
    ) -> Result<Vec<std::net::SocketAddr>, super::DeliveryError> {
        let network = |reason: String| super::DeliveryError::Network {
            host: shown.to_owned(),
            reason,
        };
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| network(format!("cannot resolve {host}: {e}")))?
            .collect();
        let mut refused = None;
        let allowed: Vec<std::net::SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.check(a.ip()) {
                Ok(()) => true,
                Err(why) => {
                    refused.get_or_insert((a.ip(), why));
                    false
                }
            })
            .collect();
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some((addr, why))) => Err(super::DeliveryError::Blocked {
                host: shown.to_owned(),
                addr,
                why,
            }),
            (true, None) => Err(network(format!("{host} resolved to no address"))),
        }
    }
}

/// An IPv4 address embedded in IPv6 (mapped, NAT64, 6to4) as itself.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    // 64:ff9b::/96 (NAT64)
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // 2002::/16 (6to4)
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    // ::a.b.c.d (deprecated IPv4-compatible), but not :: or ::1
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    None
}

/// Why an address is not a public destination, or `None` when it is.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified (0.0.0.0/8)")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if o[0] == 169 && o[1] == 254 {
        Some("link-local or cloud metadata (169.254.0.0/16)")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("carrier-grade NAT (100.64.0.0/10)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || o[0] >= 240 {
        Some("reserved")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignments (192.0.0.0/24)")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking (198.18.0.0/15)")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("unique local (private; includes cloud metadata fd00:ec2::254)")
    } else if (s[0] & 0xff00) == 0xff00 {
        Some("multicast")
    } else if (s[0] & 0xffc0) == 0xfec0 {
        Some("site-local")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        let g = Guard::default();
        for a in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(g.check(ip(a)).is_err(), "{a} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let g = Guard::default();
        for a in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(g.check(ip(a)).is_ok(), "{a} should pass");
        }
    }

    #[test]
    fn allow_private_admits_listed_networks_including_mapped_forms() {
        let g = Guard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(g.check(ip("127.0.0.1")).is_ok());
        assert!(g.check(ip("::ffff:127.0.0.1")).is_ok());
        assert!(g.check(ip("10.0.0.1")).is_err());
        assert!(g.check(ip("::1")).is_err());
    }
}
