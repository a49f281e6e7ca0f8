//! Client addresses as the limits see them: IPv4 as it is, IPv6 by its /64
//! (one customer's allocation), IPv4-mapped IPv6 as IPv4; networks written as
//! `10.0.0.0/8`. Used by the per-address connection limit here and by the
//! login throttle and the web's network settings.

use std::net::{IpAddr, Ipv6Addr};

/// The source a client address counts as: IPv4 as it is, IPv6 by its /64
/// (one customer's allocation); IPv4-mapped IPv6 as IPv4.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Whether `ip` is inside `net`/`bits` (an IPv4-mapped `ip` counts as IPv4).
pub fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits.min(32)))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits.min(128)))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Parses `10.0.0.0/8`, `2001:db8::/32` or a single address.
pub fn parse_network(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match s.trim().split_once('/') {
        Some((a, b)) => (a.parse::<IpAddr>().ok()?, b.parse::<u8>().ok()?),
        None => {
            let a = s.trim().parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_and_networks() {
        assert_eq!(source_of(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(source_of(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        let (net, bits) = parse_network("10.0.0.0/8").unwrap();
        assert!(in_network(ip("10.1.2.3"), net, bits));
        assert!(in_network(ip("::ffff:10.1.2.3"), net, bits));
        assert!(!in_network(ip("11.0.0.1"), net, bits));
        assert_eq!(parse_network("10.0.0.0/33"), None);
        assert_eq!(parse_network("192.0.2.1"), Some((ip("192.0.2.1"), 32)));
    }
}
