//! Multi-hop mesh on the simulated network: real `Node`s (link sessions, router, end-to-end
//! sessions) on a virtual clock. Chain, relay confidentiality, diamond failover, spoofing.

mod sim;

use std::time::Duration;

use bitcloud::drops::DropReason;
use bitcloud::session::timers::Timers;
use sim::{Net, PERFECT, ident, packet, packet_with, seqs};

fn converged(edges: &[(usize, usize)], n: usize) -> Net {
    let mut net = Net::new(n, edges, PERFECT, Timers::default());
    net.start();
    net.run(Duration::from_secs(10));
    net
}

#[test]
fn chain_of_four_routes_both_ways_through_two_relays() {
    let mut net = converged(&[(0, 1), (1, 2), (2, 3)], 4);
    let (a, d) = (ident(0), ident(3));
    for s in 0..50u32 {
        net.tun(0, &packet(&a, &d, s));
        net.tun(3, &packet(&d, &a, 1000 + s));
        net.step();
    }
    net.run(Duration::from_millis(500));
    assert_eq!(seqs(&net.nodes[3].delivered), (0..50).collect::<Vec<_>>());
    assert_eq!(
        seqs(&net.nodes[0].delivered),
        (1000..1050).collect::<Vec<_>>()
    );
    // The relays carried it but delivered nothing to their own TUN.
    assert!(net.nodes[1].delivered.is_empty() && net.nodes[2].delivered.is_empty());
}

#[test]
fn relay_never_holds_the_plaintext() {
    let mut net = converged(&[(0, 1), (1, 2)], 3);
    net.nodes[1].record = true;
    let marker = b"BITCLOUD-PLAINTEXT-MARKER-7f3a9c";
    let (a, c) = (ident(0), ident(2));
    for _ in 0..20 {
        net.tun(0, &packet_with(&a, &c, marker));
        net.tun(2, &packet_with(&c, &a, marker));
        net.run(Duration::from_millis(20));
    }
    net.run(Duration::from_millis(200));
    assert_eq!(net.nodes[2].delivered.len(), 20, "the marker reached C");
    assert_eq!(net.nodes[0].delivered.len(), 20, "and A");
    let touched = &net.nodes[1].touched;
    assert!(
        touched.len() >= 40,
        "the relay handled the traffic ({} buffers)",
        touched.len()
    );
    let has = |b: &Vec<u8>| b.windows(marker.len()).any(|w| w == marker);
    let leaks = touched.iter().filter(|b| has(b)).count();
    assert_eq!(
        leaks, 0,
        "the relay sent or kept the plaintext in {leaks} buffers"
    );
    // What the relay held right after each link open, before its reseal: the end-to-end
    // layer is all that hides the marker there.
    let opened = &net.nodes[1].opened;
    assert!(
        opened.len() >= 40,
        "the relay opened the traffic ({})",
        opened.len()
    );
    let seen = opened.iter().filter(|b| has(b)).count();
    assert_eq!(
        seen, 0,
        "the relay held the plaintext after opening {seen} frames"
    );
}

#[test]
fn the_plaintext_recorder_sees_plaintext_where_there_is_some() {
    // The check above must be able to fail: at the endpoint, whose end-to-end session opens
    // the packet, the same recorder finds the marker.
    let mut net = converged(&[(0, 1), (1, 2)], 3);
    net.nodes[2].record = true;
    let marker = b"BITCLOUD-PLAINTEXT-MARKER-7f3a9c";
    let (a, c) = (ident(0), ident(2));
    for _ in 0..5 {
        net.tun(0, &packet_with(&a, &c, marker));
        net.run(Duration::from_millis(20));
    }
    net.run(Duration::from_millis(200));
    assert_eq!(net.nodes[2].delivered.len(), 5);
    let seen = net.nodes[2]
        .opened
        .iter()
        .filter(|b| b.windows(marker.len()).any(|w| w == marker))
        .count();
    assert_eq!(seen, 5, "the endpoint's recorder saw each plaintext once");
}

#[test]
fn diamond_fails_over_within_10s_and_survives_recovery() {
    // 0 - 1 - 3 and 0 - 2 - 3.
    let mut net = converged(&[(0, 1), (1, 3), (0, 2), (2, 3)], 4);
    let (a, d) = (ident(0), ident(3));
    let mut seq = 0u32;
    let send_for = |net: &mut Net, seq: &mut u32, d_: Duration| {
        let end = net.now + d_;
        while net.now < end {
            net.tun(0, &packet(&a, &d, *seq));
            *seq += 1;
            net.run(Duration::from_millis(20));
        }
    };
    send_for(&mut net, &mut seq, Duration::from_secs(2));
    let via = net.nodes[0]
        .node
        .router()
        .next_hop(&d.id())
        .expect("route to D");
    let relay = if via == ident(1).id() { 1 } else { 2 };
    let cut_at = seq;
    net.set_link(relay, 3, false);
    send_for(&mut net, &mut seq, Duration::from_secs(15));
    let got = seqs(&net.nodes[3].delivered);
    let resumed = got
        .iter()
        .copied()
        .filter(|s| *s > cut_at)
        .min()
        .expect("traffic resumed");
    let gap = Duration::from_millis(20) * (resumed - cut_at);
    eprintln!("failover gap {gap:?}");
    assert!(gap <= Duration::from_secs(10), "failover took {gap:?}");
    let other = net.nodes[0].node.router().next_hop(&d.id()).unwrap();
    assert_ne!(other, via, "moved to the other path");
    // The link comes back: nothing breaks, every later packet arrives.
    net.set_link(relay, 3, true);
    let back_at = seq;
    send_for(&mut net, &mut seq, Duration::from_secs(10));
    net.run(Duration::from_millis(200));
    let got = seqs(&net.nodes[3].delivered);
    let after: Vec<_> = got.iter().copied().filter(|s| *s >= back_at).collect();
    assert_eq!(after.len() as u32, seq - back_at, "no loss after recovery");
}

#[test]
fn routed_packet_with_a_foreign_source_is_dropped() {
    let mut net = converged(&[(0, 1), (1, 2)], 3);
    let (a, b, c) = (ident(0), ident(1), ident(2));
    net.tun(0, &packet(&a, &c, 1));
    net.run(Duration::from_millis(200));
    // A routes a packet to C that claims B's source address: C's e2e session is with A.
    net.tun(0, &packet(&b, &c, 2));
    net.run(Duration::from_millis(200));
    assert_eq!(seqs(&net.nodes[2].delivered), vec![1]);
    assert_eq!(net.nodes[2].node.drops().get(DropReason::SpoofedSource), 1);
}

#[test]
fn oversized_routed_packet_gets_icmp_too_big() {
    let mut net = converged(&[(0, 1), (1, 2)], 3);
    let (a, c) = (ident(0), ident(2));
    let big = packet_with(&a, &c, &[0u8; 1380]);
    net.tun(0, &big);
    net.run(Duration::from_millis(100));
    assert!(net.nodes[2].delivered.is_empty());
    assert_eq!(net.nodes[0].node.drops().get(DropReason::TooBig), 1);
    // Node 0 wrote an ICMP error back to its own TUN.
    assert_eq!(net.nodes[0].delivered.len(), 1);
}

#[test]
fn routing_prefers_the_cheaper_of_two_similar_paths() {
    // 0 - 1 - 3 and 0 - 2 - 3; relay 1 charges 100 per MiB, relay 2 charges 10.
    let mut net = Net::new(
        4,
        &[(0, 1), (1, 3), (0, 2), (2, 3)],
        PERFECT,
        Timers::default(),
    );
    let now = net.now;
    net.nodes[1].node.set_fee(100, now);
    net.nodes[2].node.set_fee(10, now);
    net.start();
    net.run(Duration::from_secs(10));
    let d = ident(3).id();
    assert_eq!(
        net.nodes[0].node.router().next_hop(&d),
        Some(ident(2).id()),
        "cheaper relay 2"
    );
    // The prices swap: the route follows (the difference beats the hysteresis margin).
    let now = net.now;
    net.nodes[1].node.set_fee(10, now);
    net.nodes[2].node.set_fee(100, now);
    net.run(Duration::from_secs(10));
    assert_eq!(
        net.nodes[0].node.router().next_hop(&d),
        Some(ident(1).id()),
        "now relay 1 is cheaper"
    );
    let r = net.nodes[0]
        .node
        .router()
        .routes(net.now)
        .find(|r| r.selected && r.key.originator == d)
        .unwrap();
    assert_eq!(r.price_per_mib, 10, "the price A pays is relay 1's fee");
}

#[test]
fn routing_keeps_a_much_better_path_over_a_slightly_cheaper_one() {
    // 0 - 1 - 5 (two hops, relay 1 charges 100) and 0 - 2 - 3 - 4 - 5 (four hops, 10 each).
    let mut net = Net::new(
        6,
        &[(0, 1), (1, 5), (0, 2), (2, 3), (3, 4), (4, 5)],
        PERFECT,
        Timers::default(),
    );
    let now = net.now;
    net.nodes[1].node.set_fee(100, now);
    for i in [2, 3, 4] {
        net.nodes[i].node.set_fee(10, now);
    }
    net.start();
    net.run(Duration::from_secs(15));
    let d = ident(5).id();
    assert_eq!(
        net.nodes[0].node.router().next_hop(&d),
        Some(ident(1).id()),
        "quality wins when the cheap path is much worse"
    );
    // Node 2, next to the cheap path, prices it as the sum of the three fees downstream of 0.
    let via3 = net.nodes[2]
        .node
        .router()
        .routes(net.now)
        .find(|r| r.key.originator == d && r.next_hop == ident(3).id());
    assert_eq!(
        via3.map(|r| r.price_per_mib),
        Some(20),
        "3 and 4 each add their fee of 10"
    );
    let r = net.nodes[0]
        .node
        .router()
        .routes(net.now)
        .find(|r| r.selected && r.key.originator == d)
        .unwrap();
    assert_eq!(r.price_per_mib, 100, "A pays relay 1's fee");
}

/// A relay authenticates a routed data frame's link header, mesh header and length and
/// re-encrypts only its mesh header (docs/relay-crypto.md): the end-to-end message
/// crosses both links byte for byte, the destination never appears in clear, a bit flipped in
/// the link's part is refused by the relay before it routes or meters anything, and a bit
/// flipped in the e2e ciphertext is carried (and metered: the trade the doc records) and then
/// refused by the destination, which delivers nothing.
#[test]
fn relay_reseals_only_the_mesh_header_and_the_destination_checks_the_e2e_message() {
    use bitcloud::node::{HEADROOM, TAILROOM, UdpOut};
    use bitcloud::wire::mesh::MESH_HEADER_LEN;
    use bitcloud::wire::outer::{Kind, TRANSPORT_HEADER_LEN};
    const TAG: usize = 16;
    let mut net = converged(&[(0, 1), (1, 2)], 3);
    let (a, c) = (ident(0), ident(2));
    // Open the end-to-end session, then record what goes over both links.
    net.tun(0, &packet(&a, &c, 0));
    net.run(Duration::from_millis(300));
    net.nodes[0].record = true;
    net.nodes[1].record = true;
    for s in 1..=20u32 {
        net.tun(0, &packet(&a, &c, s));
        net.run(Duration::from_millis(20));
    }
    net.run(Duration::from_millis(200));
    assert_eq!(seqs(&net.nodes[2].delivered), (0..=20).collect::<Vec<_>>());
    let sealed = |d: &Vec<u8>| d.len() > 16 && d[0] == 4 && d[1] == Kind::MeshSealed as u8;
    let e2e = |d: &Vec<u8>| d[TRANSPORT_HEADER_LEN..d.len() - MESH_HEADER_LEN - TAG].to_vec();
    // The e2e messages of the MeshSealed frames node `i` sent or received.
    let e2es = |i: usize| -> Vec<Vec<u8>> {
        net.nodes[i]
            .touched
            .iter()
            .filter(|d| sealed(d))
            .map(e2e)
            .collect()
    };
    let from_a = e2es(0);
    assert_eq!(from_a.len(), 20, "A sent its data frames as MeshSealed");
    let relayed = e2es(1);
    for m in &from_a {
        assert!(
            relayed.contains(m),
            "the relay passed the e2e message on as it came"
        );
    }
    let dst = c.id().ipv6().octets();
    let all = net.nodes[0].touched.iter().chain(&net.nodes[1].touched);
    assert_eq!(
        all.filter(|d| d.windows(16).any(|w| w == dst)).count(),
        0,
        "the destination never travels in clear"
    );

    // A frame from A altered in a part the link covers: refused, not forwarded, not metered.
    let metered = |net: &Net| {
        net.nodes[1]
            .node
            .channel_views(net.now)
            .into_iter()
            .find(|v| v.peer == a.id() && v.direction == "incoming")
            .map_or(0, |v| v.metered_bytes)
    };
    let frame = |net: &mut Net, seq: u32| {
        let pkt = packet_with(&a, &c, &[seq as u8; 200]);
        let mut buf = vec![0u8; HEADROOM + pkt.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + pkt.len()].copy_from_slice(&pkt);
        let now = net.now;
        let (r, _) = net.nodes[0]
            .node
            .handle_tun(now, &mut buf, pkt.len())
            .expect("sealed");
        let d = buf[r].to_vec();
        assert!(sealed(&d));
        d
    };
    let from = net.nodes[0].addr;
    let now = net.now;
    for (seq, what) in [(99u32, "mesh header"), (98, "link tag")] {
        let mut d = frame(&mut net, seq);
        let i = if what == "link tag" {
            d.len() - 1
        } else {
            d.len() - TAG - MESH_HEADER_LEN + 3
        };
        d[i] ^= 1;
        let before = metered(&net);
        let failed = net.nodes[1].node.drops().get(DropReason::DecryptFailed);
        let out = net.nodes[1].node.handle_udp(now, from, &mut d);
        assert!(
            matches!(out, UdpOut::None),
            "the relay refused a flip in the {what}"
        );
        assert_eq!(
            net.nodes[1].node.drops().get(DropReason::DecryptFailed),
            failed + 1
        );
        assert_eq!(metered(&net), before, "nothing metered");
    }
    // A bit flipped in the e2e message passes the relay and fails at the destination.
    let mut d = frame(&mut net, 97);
    d[TRANSPORT_HEADER_LEN + 16 + 100] ^= 1;
    let before = metered(&net);
    let UdpOut::Forward(len, _) = net.nodes[1].node.handle_udp(now, from, &mut d) else {
        panic!("the relay forwards what its link cannot tell apart");
    };
    let mut fwd = d[..len].to_vec();
    let delivered = net.nodes[2].delivered.len();
    let failed_c = net.nodes[2].node.drops().get(DropReason::DecryptFailed);
    let relay = net.nodes[1].addr;
    let out = net.nodes[2].node.handle_udp(now, relay, &mut fwd);
    assert!(matches!(out, UdpOut::None), "the destination refused it");
    assert_eq!(
        net.nodes[2].node.drops().get(DropReason::DecryptFailed),
        failed_c + 1,
        "counted at the destination"
    );
    assert_eq!(net.nodes[2].delivered.len(), delivered);
    assert!(metered(&net) > before, "the relay metered what it carried");
}
