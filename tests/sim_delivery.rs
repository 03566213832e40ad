//! Delivery checks against hostile senders (issue 8, item 12): a packet that authenticated
//! under a neighbour's or a distant node's session reaches our TUN only if it is addressed to
//! one of our overlay addresses, so with IP forwarding on nobody reaches the host's other
//! networks (its LAN, loopback, other overlay nodes) through us.

mod sim;

use std::net::Ipv4Addr;
use std::time::Duration;

use bitcloud::drops::DropReason;
use bitcloud::node::{HEADROOM, TAILROOM};
use bitcloud::session::timers::Timers;
use bitcloud::wire::outer::Kind;
use sim::{Net, PERFECT, ident, packet, seqs};

/// An IPv4 UDP packet from `src` to `dst` carrying `seq`.
fn v4_packet(src: Ipv4Addr, dst: Ipv4Addr, seq: u32) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src.octets(), dst.octets(), 64).udp(1000, 2000);
    let mut out = Vec::new();
    b.write(&mut out, &seq.to_be_bytes()).unwrap();
    out
}

/// An IPv6 UDP packet from `src` to `dst` carrying `seq`.
fn v6_packet(src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr, seq: u32) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv6(src.octets(), dst.octets(), 64).udp(1000, 2000);
    let mut out = Vec::new();
    b.write(&mut out, &seq.to_be_bytes()).unwrap();
    out
}

/// Destinations a hostile sender would like a forwarding host to carry for it: the host's
/// underlay LAN, loopback, a test "internet" address, broadcast, and another overlay node.
fn foreign_v4(other: Ipv4Addr) -> [Ipv4Addr; 5] {
    [
        Ipv4Addr::new(198, 18, 0, 99),
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(198, 19, 0, 1),
        Ipv4Addr::BROADCAST,
        other,
    ]
}

#[test]
fn neighbour_packets_for_other_destinations_are_dropped_and_counted() {
    let mut net = Net::new(3, &[(0, 1), (0, 2)], PERFECT, Timers::default());
    net.start();
    net.run(Duration::from_secs(2));
    let (a, b, c) = (ident(0), ident(1), ident(2));
    let (b_v4, c_v4) = (b.id().ipv4(), c.id().ipv4());
    // B is an authenticated neighbour that speaks the protocol: it seals packets with its own
    // (true) source address for destinations that are not A's.
    let mut seq = 10;
    for dst in foreign_v4(c_v4) {
        let p = v4_packet(b_v4, dst, seq);
        assert!(
            net.nodes[1]
                .node
                .send_frame(a.id(), Kind::Packet, &p, net.now)
        );
        seq += 1;
    }
    let p6 = v6_packet(b.id().ipv6(), "2001:db8::1".parse().unwrap(), seq);
    assert!(
        net.nodes[1]
            .node
            .send_frame(a.id(), Kind::Packet, &p6, net.now)
    );
    net.flush_all();
    net.run(Duration::from_millis(100));
    assert!(
        net.nodes[0].delivered.is_empty(),
        "A delivered a packet not addressed to it"
    );
    assert_eq!(net.nodes[0].node.drops().get(DropReason::NotForUs), 6);
    // The same neighbour's packets for A still arrive.
    net.tun(1, &packet(&b, &a, 1));
    net.run(Duration::from_millis(100));
    assert_eq!(seqs(&net.nodes[0].delivered), vec![1]);
}

#[test]
fn routed_packets_for_other_destinations_are_dropped_at_the_endpoint() {
    // A - B - C: A seals, end to end for C, packets whose destination is not C.
    let mut net = Net::new(3, &[(0, 1), (1, 2)], PERFECT, Timers::default());
    net.start();
    net.run(Duration::from_secs(10));
    let (a, c) = (ident(0), ident(2));
    net.tun(0, &packet(&a, &c, 1));
    net.run(Duration::from_millis(200));
    assert_eq!(
        seqs(&net.nodes[2].delivered),
        vec![1],
        "the e2e session is up"
    );
    let b_v4 = ident(1).id().ipv4();
    for (seq, dst) in (20..).zip(foreign_v4(b_v4)) {
        let p = v4_packet(a.id().ipv4(), dst, seq);
        let mut buf = vec![0u8; HEADROOM + p.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + p.len()].copy_from_slice(&p);
        net.send_via(0, c.id(), &mut buf, p.len());
    }
    net.run(Duration::from_millis(200));
    assert_eq!(
        seqs(&net.nodes[2].delivered),
        vec![1],
        "nothing else reached C's TUN"
    );
    assert_eq!(net.nodes[2].node.drops().get(DropReason::NotForUs), 5);
    assert!(
        net.nodes[1].delivered.is_empty(),
        "the relay delivered nothing"
    );
}
