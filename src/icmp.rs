//! ICMP errors the node hands back to its own TUN: "packet too big" (ICMPv6, RFC 4443 §3.2)
//! and "fragmentation needed" (ICMPv4, RFC 1191), so the kernel lowers its path MTU for a
//! destination that is several hops away and pays the larger mesh overhead. Pure functions.

use std::net::IpAddr;

use etherparse::{Icmpv4Type, Icmpv6Type, PacketBuilder, icmpv4::DestUnreachableHeader};

/// IPv6 minimum MTU: an ICMPv6 error must fit in it (RFC 4443 §2.4 (c)).
const IPV6_MIN_MTU: usize = 1280;
/// ICMPv4 errors quote the header and the first 8 bytes at least; we quote up to this.
const ICMPV4_QUOTE: usize = 548;

/// Build the ICMP error telling the sender of `orig` to use `mtu`, from `reporter` (the
/// packet's destination: an address that routes back into the TUN, same family). None if `orig` is not IP, is itself ICMP error
/// material we must not answer, or is IPv4 without DF (the kernel would fragment it).
pub fn too_big(orig: &[u8], mtu: u16, reporter: IpAddr) -> Option<Vec<u8>> {
    match (orig.first()? >> 4, reporter) {
        (6, IpAddr::V6(r)) => {
            let h = etherparse::Ipv6HeaderSlice::from_slice(orig).ok()?;
            let quote = orig.get(..orig.len().min(IPV6_MIN_MTU - 40 - 8))?;
            let b = PacketBuilder::ipv6(r.octets(), h.source_addr().octets(), 64).icmpv6(
                Icmpv6Type::PacketTooBig {
                    mtu: u32::from(mtu),
                },
            );
            let mut out = Vec::with_capacity(b.size(quote.len()));
            b.write(&mut out, quote).ok()?;
            Some(out)
        }
        (4, IpAddr::V4(r)) => {
            let h = etherparse::Ipv4HeaderSlice::from_slice(orig).ok()?;
            if !h.dont_fragment() {
                return None;
            }
            let quote = orig.get(..orig.len().min(ICMPV4_QUOTE))?;
            let t =
                Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: mtu,
                });
            let b = PacketBuilder::ipv4(r.octets(), h.source(), 64).icmpv4(t);
            let mut out = Vec::with_capacity(b.size(quote.len()));
            b.write(&mut out, quote).ok()?;
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_too_big_quotes_and_addresses_the_sender() {
        let b = PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64).udp(1, 2);
        let mut p = Vec::new();
        b.write(&mut p, &[0u8; 1400]).unwrap();
        let reporter: IpAddr = "fd00::9".parse().unwrap();
        let out = too_big(&p, 1360, reporter).unwrap();
        assert!(out.len() <= IPV6_MIN_MTU);
        let s = etherparse::SlicedPacket::from_ip(&out).unwrap();
        let Some(etherparse::NetSlice::Ipv6(ip)) = s.net else {
            panic!()
        };
        assert_eq!(ip.header().destination(), [0xfd; 16]);
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = s.transport else {
            panic!()
        };
        assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1360 });
    }

    #[test]
    fn ipv4_only_with_df() {
        let mut h = etherparse::Ipv4Header::new(
            1000,
            64,
            etherparse::IpNumber::UDP,
            [100, 64, 0, 1],
            [100, 64, 0, 2],
        )
        .unwrap();
        h.dont_fragment = false;
        let mut p = Vec::new();
        h.write(&mut p).unwrap();
        p.extend_from_slice(&[0u8; 1000]);
        let r: IpAddr = "100.64.0.9".parse().unwrap();
        assert!(
            too_big(&p, 1360, r).is_none(),
            "no DF: the kernel may fragment"
        );
        h.dont_fragment = true;
        p.clear();
        h.write(&mut p).unwrap();
        p.extend_from_slice(&[0u8; 1000]);
        let out = too_big(&p, 1360, r).unwrap();
        assert!(out.len() <= 20 + 8 + ICMPV4_QUOTE);
        assert!(too_big(&[0x45], 1360, r).is_none());
        assert!(
            too_big(&p, 1360, "fd00::1".parse().unwrap()).is_none(),
            "family mismatch"
        );
    }
}
