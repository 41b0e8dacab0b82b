//! [`SourceAddress`]: the network address a request came from, as API Gateway saw it.

use std::fmt;
use std::net::IpAddr;

/// The caller's address, read only from what API Gateway writes into the event
/// (`requestContext.http.sourceIp`, `requestContext.identity.sourceIp`), never from a
/// header the caller sets. IPv6 addresses are grouped by their /64, the block one
/// subscriber usually holds. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceAddress(IpAddr);

impl SourceAddress {
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        raw.trim().parse().ok().map(Self)
    }

    /// What the per-address cap counts: an IPv4 address, or an IPv6 /64
    /// (`ip4:203.0.113.7`, `ip6:2001:db8:0:1::/64`). An IPv4-mapped IPv6 address counts as
    /// its IPv4 address.
    pub fn group(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => format!("ip4:{v4}"),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => format!("ip4:{v4}"),
                None => {
                    let s = v6.segments();
                    let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                    format!("ip6:{net}/64")
                }
            },
        }
    }
}

impl fmt::Display for SourceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            IpAddr::V4(_) => "ipv4(***)",
            IpAddr::V6(_) => "ipv6(***)",
        })
    }
}

impl fmt::Debug for SourceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_grouped_as_the_cap_counts_them() {
        let group = |raw: &str| SourceAddress::parse(raw).map(|a| a.group());
        assert_eq!(group("203.0.113.7").as_deref(), Some("ip4:203.0.113.7"));
        assert_eq!(
            group("2001:db8:0:1:aaaa:bbbb:cccc:dddd").as_deref(),
            Some("ip6:2001:db8:0:1::/64")
        );
        assert_eq!(group("2001:db8:0:1::9"), group("2001:db8:0:1:ffff::1"));
        assert_ne!(group("2001:db8:0:1::9"), group("2001:db8:0:2::9"));
        assert_eq!(
            group("::ffff:203.0.113.7").as_deref(),
            Some("ip4:203.0.113.7")
        );
        for bad in ["", "x", "203.0.113", "1.2.3.4:80", "test-invoke-source-ip"] {
            assert_eq!(SourceAddress::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_address_is_never_shown() {
        let a = SourceAddress::parse("203.0.113.7").unwrap();
        assert!(!format!("{a} {a:?}").contains("203"));
    }
}
