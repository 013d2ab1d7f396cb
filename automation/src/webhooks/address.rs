//! Which IP addresses a delivery may dial (SSRF): only public unicast ones. Pure; the
//! resolver ([`super::resolver`]) applies it to every address DNS answers, and the client to
//! URLs written with an IP literal, so the check runs on the address actually dialled.
//!
//! Refused: unspecified and "this network" (0/8, `::`), loopback (127/8, `::1`), private
//! (10/8, 172.16/12, 192.168/16), CGNAT (100.64/10), link-local (169.254/16 with the cloud
//! metadata address 169.254.169.254, `fe80::/10`), IETF protocol assignments (192.0.0/24,
//! `2001::/23`), documentation (192.0.2/24, 198.51.100/24, 203.0.113/24, `2001:db8::/32`,
//! `3fff::/20`), benchmarking (198.18/15), the 6to4 relay (192.88.99/24), multicast
//! (224/4, `ff00::/8`), reserved and broadcast (240/4), unique-local (`fc00::/7`, with AWS's
//! metadata address `fd00:ec2::254`), site-local (`fec0::/10`), discard-only (`100::/64`),
//! SRv6 (`5f00::/16`), local-use NAT64 (`64:ff9b:1::/48`); and IPv6 forms embedding an IPv4
//! address (IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`, NAT64 `64:ff9b::/96`,
//! 6to4 `2002::/16`) whose IPv4 address is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` may not be dialled, or `None` when it may. `allow_loopback` (the
/// `--webhooks-allow-loopback` flag, for tests) admits 127.0.0.0/8 and `::1` only.
pub fn refused(ip: IpAddr, allow_loopback: bool) -> Option<&'static str> {
    if allow_loopback {
        match ip {
            IpAddr::V4(v4) if v4.octets()[0] == 127 => return None,
            IpAddr::V6(v6) if v6 == Ipv6Addr::LOCALHOST => return None,
            _ => {}
        }
    }
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

/// `a.b.c.d` within `net/len`.
fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "unspecified (0.0.0.0/8)"),
        ([10, 0, 0, 0], 8, "private (10.0.0.0/8)"),
        ([100, 64, 0, 0], 10, "shared CGNAT (100.64.0.0/10)"),
        ([127, 0, 0, 0], 8, "loopback (127.0.0.0/8)"),
        ([169, 254, 169, 254], 32, "cloud metadata (169.254.169.254)"),
        ([169, 254, 0, 0], 16, "link-local (169.254.0.0/16)"),
        ([172, 16, 0, 0], 12, "private (172.16.0.0/12)"),
        (
            [192, 0, 0, 0],
            24,
            "IETF protocol assignments (192.0.0.0/24)",
        ),
        ([192, 0, 2, 0], 24, "documentation (192.0.2.0/24)"),
        ([192, 88, 99, 0], 24, "6to4 relay (192.88.99.0/24)"),
        ([192, 168, 0, 0], 16, "private (192.168.0.0/16)"),
        ([198, 18, 0, 0], 15, "benchmarking (198.18.0.0/15)"),
        ([198, 51, 100, 0], 24, "documentation (198.51.100.0/24)"),
        ([203, 0, 113, 0], 24, "documentation (203.0.113.0/24)"),
        ([224, 0, 0, 0], 4, "multicast (224.0.0.0/4)"),
        ([255, 255, 255, 255], 32, "broadcast (255.255.255.255)"),
        ([240, 0, 0, 0], 4, "reserved (240.0.0.0/4)"),
    ];
    RANGES
        .iter()
        .find(|(net, len, _)| in_v4(ip, *net, *len))
        .map(|(_, _, why)| *why)
}

/// `ip` within `net/len`.
fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u32) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    u128::from(ip) & mask == u128::from(net) & mask
}

const fn v6(segments: [u16; 8]) -> Ipv6Addr {
    Ipv6Addr::new(
        segments[0],
        segments[1],
        segments[2],
        segments[3],
        segments[4],
        segments[5],
        segments[6],
        segments[7],
    )
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip == Ipv6Addr::UNSPECIFIED {
        return Some("unspecified (::)");
    }
    if ip == Ipv6Addr::LOCALHOST {
        return Some("loopback (::1)");
    }
    let bits = u128::from(ip);
    let embedded = |v4: u32, form: &'static str| -> Option<&'static str> {
        refused_v4(Ipv4Addr::from(v4)).map(|_| form)
    };
    // Forms that carry an IPv4 address: refused when that address is.
    if in_v6(ip, v6([0, 0, 0, 0, 0, 0xffff, 0, 0]), 96) {
        return embedded(bits as u32, "IPv4-mapped form of a refused IPv4 address");
    }
    if in_v6(ip, Ipv6Addr::UNSPECIFIED, 96) {
        return embedded(
            bits as u32,
            "IPv4-compatible form of a refused IPv4 address",
        );
    }
    if in_v6(ip, v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0]), 96) {
        return embedded(bits as u32, "NAT64 form of a refused IPv4 address");
    }
    if in_v6(ip, v6([0x2002, 0, 0, 0, 0, 0, 0, 0]), 16) {
        return embedded((bits >> 80) as u32, "6to4 form of a refused IPv4 address");
    }
    const RANGES: &[([u16; 8], u32, &str)] = &[
        (
            [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
            48,
            "local-use NAT64 (64:ff9b:1::/48)",
        ),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only (100::/64)"),
        (
            [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
            32,
            "documentation (2001:db8::/32)",
        ),
        (
            [0x2001, 0, 0, 0, 0, 0, 0, 0],
            23,
            "IETF protocol assignments (2001::/23)",
        ),
        (
            [0x3fff, 0, 0, 0, 0, 0, 0, 0],
            20,
            "documentation (3fff::/20)",
        ),
        ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "SRv6 (5f00::/16)"),
        (
            [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254],
            128,
            "cloud metadata (fd00:ec2::254)",
        ),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local (fc00::/7)"),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local (fe80::/10)"),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local (fec0::/10)"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast (ff00::/8)"),
    ];
    RANGES
        .iter()
        .find(|(net, len, _)| in_v6(ip, v6(*net), *len))
        .map(|(_, _, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Option<&'static str> {
        refused(text.parse().expect("an address"), false)
    }

    /// Each range: its first and last address refused, the addresses just outside allowed
    /// (unless the neighbour is itself in a refused range, named in the pair).
    #[test]
    fn ipv4_ranges_are_refused_on_both_sides_of_each_boundary() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // (first inside, last inside, just below, just above)
            ("0.0.0.0", "0.255.255.255", "", "1.0.0.0"),
            ("10.0.0.0", "10.255.255.255", "9.255.255.255", "11.0.0.0"),
            (
                "100.64.0.0",
                "100.127.255.255",
                "100.63.255.255",
                "100.128.0.0",
            ),
            (
                "127.0.0.0",
                "127.255.255.255",
                "126.255.255.255",
                "128.0.0.0",
            ),
            (
                "169.254.0.0",
                "169.254.255.255",
                "169.253.255.255",
                "169.255.0.0",
            ),
            (
                "172.16.0.0",
                "172.31.255.255",
                "172.15.255.255",
                "172.32.0.0",
            ),
            ("192.0.0.0", "192.0.0.255", "191.255.255.255", "192.0.1.0"),
            ("192.0.2.0", "192.0.2.255", "192.0.1.255", "192.0.3.0"),
            (
                "192.88.99.0",
                "192.88.99.255",
                "192.88.98.255",
                "192.88.100.0",
            ),
            (
                "192.168.0.0",
                "192.168.255.255",
                "192.167.255.255",
                "192.169.0.0",
            ),
            (
                "198.18.0.0",
                "198.19.255.255",
                "198.17.255.255",
                "198.20.0.0",
            ),
            (
                "198.51.100.0",
                "198.51.100.255",
                "198.51.99.255",
                "198.51.101.0",
            ),
            (
                "203.0.113.0",
                "203.0.113.255",
                "203.0.112.255",
                "203.0.114.0",
            ),
            ("224.0.0.0", "239.255.255.255", "223.255.255.255", ""),
            ("240.0.0.0", "255.255.255.254", "", ""),
        ];
        for (first, last, below, above) in cases {
            assert!(check(first).is_some(), "{first} must be refused");
            assert!(check(last).is_some(), "{last} must be refused");
            if !below.is_empty() {
                assert_eq!(check(below), None, "{below} is public");
            }
            if !above.is_empty() {
                assert_eq!(check(above), None, "{above} is public");
            }
        }
        assert_eq!(
            check("255.255.255.255"),
            Some("broadcast (255.255.255.255)")
        );
        assert_eq!(
            check("169.254.169.254"),
            Some("cloud metadata (169.254.169.254)")
        );
        assert_eq!(
            check("169.254.169.253"),
            Some("link-local (169.254.0.0/16)")
        );
        assert_eq!(check("0.0.0.0"), Some("unspecified (0.0.0.0/8)"));
        for public in ["1.1.1.1", "8.8.8.8", "93.184.216.34", "223.255.255.255"] {
            assert_eq!(check(public), None, "{public}");
        }
    }

    #[test]
    fn ipv6_ranges_are_refused_on_both_sides_of_each_boundary() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "fc00::",
                "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "",
            ),
            ("fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "", ""),
            ("fec0::", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "", ""),
            ("ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "", ""),
            (
                "2001:db8::",
                "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
                "",
                "2001:db9::",
            ),
            (
                "2001::",
                "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
                "2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "2001:200::",
            ),
            (
                "3fff::",
                "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
                "3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "3fff:1000::",
            ),
            (
                "100::",
                "100::ffff:ffff:ffff:ffff",
                "ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "100:0:0:1::",
            ),
            (
                "64:ff9b:1::",
                "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
                "",
                "64:ff9b:2::",
            ),
            (
                "5f00::",
                "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "5f01::",
            ),
        ];
        for (first, last, below, above) in cases {
            assert!(check(first).is_some(), "{first} must be refused");
            assert!(check(last).is_some(), "{last} must be refused");
            if !below.is_empty() {
                assert_eq!(check(below), None, "{below} is public");
            }
            if !above.is_empty() {
                assert_eq!(check(above), None, "{above} is public");
            }
        }
        // fe00::/9 lies between unique-local and link-local, and is not refused by a range
        // of its own: the neighbours of fe80::/10.
        assert_eq!(check("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), None);
        assert_eq!(check("fe00::"), None);
        assert_eq!(check("::"), Some("unspecified (::)"));
        assert_eq!(check("::1"), Some("loopback (::1)"));
        assert_eq!(
            check("fd00:ec2::254"),
            Some("cloud metadata (fd00:ec2::254)")
        );
        for public in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:82a::200e",
            "2001:4860::8888",
        ] {
            assert_eq!(check(public), None, "{public}");
        }
    }

    #[test]
    fn ipv6_forms_of_refused_ipv4_addresses_are_refused() {
        for refused_form in [
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "::10.0.0.1",
            "::0.0.0.2",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::192.168.1.1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101::",
        ] {
            assert!(
                check(refused_form).is_some(),
                "{refused_form} must be refused"
            );
        }
        for public_form in [
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ] {
            assert_eq!(check(public_form), None, "{public_form}");
        }
        assert_eq!(
            check("::ffff:127.0.0.1"),
            Some("IPv4-mapped form of a refused IPv4 address")
        );
        assert_eq!(
            check("64:ff9b::7f00:1"),
            Some("NAT64 form of a refused IPv4 address")
        );
        // Just outside the NAT64 /96 and the mapped /96.
        assert_eq!(check("64:ff9b:0:0:0:1::"), None);
        assert_eq!(check("::fffe:7f00:1"), None);
    }

    #[test]
    fn the_loopback_flag_admits_loopback_only() {
        let allow = |text: &str| refused(text.parse().expect("address"), true);
        assert_eq!(allow("127.0.0.1"), None);
        assert_eq!(allow("127.255.255.255"), None);
        assert_eq!(allow("::1"), None);
        assert!(allow("10.0.0.1").is_some());
        assert!(allow("169.254.169.254").is_some());
        assert!(allow("::ffff:127.0.0.1").is_some());
        assert!(allow("0.0.0.0").is_some());
        assert!(allow("::").is_some());
        assert!(allow("128.0.0.0").is_none());
    }
}
