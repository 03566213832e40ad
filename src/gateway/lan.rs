//! The host's connected prefixes: what "the LAN" means for `allow_lan` (the networks of the
//! host's own interfaces, not a fixed list of private ranges, so an underlay in any range is
//! covered and nothing beyond it is).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The network prefixes of every address on an interface that is up, except loopback and the
/// interfaces named in `skip` (the TUN).
pub fn connected_prefixes(skip: &[&str]) -> Vec<(IpAddr, u8)> {
    let mut out = Vec::new();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return out;
    };
    for ifa in addrs {
        if skip.contains(&ifa.interface_name.as_str())
            || ifa
                .flags
                .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
            || !ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
        {
            continue;
        }
        let (Some(addr), Some(mask)) = (ifa.address, ifa.netmask) else {
            continue;
        };
        let p = match (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
            (Some(a), Some(m)) => Some(v4_prefix(a.ip(), m.ip())),
            _ => match (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
                (Some(a), Some(m)) => Some(v6_prefix(a.ip(), m.ip())),
                _ => None,
            },
        };
        if let Some(p) = p
            && !out.contains(&p)
        {
            out.push(p);
        }
    }
    out
}

fn v4_prefix(a: Ipv4Addr, m: Ipv4Addr) -> (IpAddr, u8) {
    let (a, m) = (u32::from(a), u32::from(m));
    (IpAddr::V4(Ipv4Addr::from(a & m)), m.leading_ones() as u8)
}

fn v6_prefix(a: Ipv6Addr, m: Ipv6Addr) -> (IpAddr, u8) {
    let (a, m) = (u128::from(a), u128::from(m));
    (IpAddr::V6(Ipv6Addr::from(a & m)), m.leading_ones() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_network_addresses() {
        assert_eq!(
            v4_prefix([198, 18, 0, 6].into(), [255, 255, 255, 252].into()),
            ("198.18.0.4".parse().unwrap(), 30)
        );
        assert_eq!(
            v6_prefix(
                "2001:db8::1:2".parse().unwrap(),
                "ffff:ffff:ffff:ffff::".parse().unwrap()
            ),
            ("2001:db8::".parse().unwrap(), 64)
        );
        // Loopback is never part of it.
        assert!(
            connected_prefixes(&[])
                .iter()
                .all(|(a, _)| !a.is_loopback())
        );
    }
}
