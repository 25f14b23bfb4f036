//! The address a request came from, for the login rate limit and logs: the
//! TCP peer, or, when the peer is a trusted proxy (an ingress controller),
//! the nearest address in `X-Forwarded-For` that is not a trusted proxy.
//! Without this, every client behind an ingress shares the ingress's address
//! and so one bucket of the limiter: one person guessing keys would lock
//! everybody out.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Parses `10.0.0.0/8` or a bare address (a single host).
pub fn parse_trusted(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is neither an address nor a CIDR range like 10.0.0.0/8"))
}

/// Each proxy appends the address it got the request from, so the list is
/// read from the right: the first entry that is not a trusted proxy is the
/// client (entries left of it were written by the client and prove
/// nothing). An entry that does not parse ends the walk at the last trusted
/// hop.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(&ip));
    if !is_trusted(peer) {
        return peer;
    }
    let entries: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut hop = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = parse_entry(entry) else {
            return hop;
        };
        if !is_trusted(ip) {
            return ip;
        }
        hop = ip;
    }
    hop
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_entry(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// The unit limits are kept per: an IPv4 address, or an IPv6 /64 (one
/// subscriber's network; anyone holding one has 2^64 addresses to rotate
/// through). IPv4-mapped IPv6 addresses count as their IPv4 address.
pub fn address_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::V6(o.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted = vec![
            parse_trusted("10.0.0.0/8").unwrap(),
            parse_trusted("fd00::1").unwrap(),
        ];
        let cases: &[(&str, &[&str], &str)] = &[
            // Not from a trusted proxy: the header is the client's own words.
            ("203.0.113.9", &["198.51.100.1"], "203.0.113.9"),
            // From the ingress: the address it saw.
            ("10.1.2.3", &["198.51.100.1"], "198.51.100.1"),
            // A client's own spoofed entry sits left of what the ingress added.
            ("10.1.2.3", &["1.1.1.1, 198.51.100.1"], "198.51.100.1"),
            // Two trusted hops, over two header lines, with ports and IPv6.
            (
                "10.1.2.3",
                &["[2001:db8::7]:443", "10.9.9.9:80"],
                "2001:db8::7",
            ),
            ("fd00::1", &["198.51.100.2"], "198.51.100.2"),
            // Garbage stops the walk at the last trusted hop.
            ("10.1.2.3", &["198.51.100.1, junk"], "10.1.2.3"),
            ("10.1.2.3", &["198.51.100.1, 10.4.4.4, unknown"], "10.1.2.3"),
            // Only trusted hops, or no header: the innermost one.
            ("10.1.2.3", &["10.4.4.4"], "10.4.4.4"),
            ("10.1.2.3", &[], "10.1.2.3"),
        ];
        for (peer, header, want) in cases {
            assert_eq!(
                client_ip(ip(peer), header.iter().copied(), &trusted),
                ip(want),
                "peer {peer}, X-Forwarded-For {header:?}"
            );
        }
        assert_eq!(
            client_ip(ip("10.1.2.3"), ["198.51.100.1"], &[]),
            ip("10.1.2.3"),
            "nothing is trusted by default"
        );
    }

    #[test]
    fn limits_group_ipv6_by_slash_64() {
        assert_eq!(address_group(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(address_group(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            address_group(ip("2001:db8:1:2:3:4:5:6")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(address_group(ip("::1")), ip("::"));
    }

    #[test]
    fn trusted_ranges_parse_or_say_why_not() {
        assert_eq!(
            parse_trusted("10.0.0.0/8").unwrap(),
            "10.0.0.0/8".parse().unwrap()
        );
        assert_eq!(
            parse_trusted(" 192.0.2.1 ").unwrap(),
            "192.0.2.1/32".parse().unwrap()
        );
        let e = parse_trusted("10.0.0.0/33").unwrap_err();
        assert!(e.contains("CIDR"), "{e}");
        assert!(parse_trusted("ingress").is_err());
    }
}
