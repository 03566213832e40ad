//! Deterministic simulation of two (or three) in-process nodes over a virtual network with
//! loss, reordering and duplication, on a virtual clock. No sockets, no sleeping.

mod sim;

use std::collections::HashSet;
use std::time::Duration;

use bitcloud::drops::DropReason;
use bitcloud::node::{Node, PeerConfig};
use bitcloud::session::timers::Timers;
use sim::{Link, Net, PERFECT, addr, ident, make_node, node_cfg, packet, seqs};

fn two(
    link: Link,
    t: Timers,
) -> (
    Net,
    bitcloud::identity::Identity,
    bitcloud::identity::Identity,
) {
    (Net::new(2, &[(0, 1)], link, t), ident(0), ident(1))
}

#[test]
fn handshake_and_data_both_ways() {
    let (mut net, a, b) = two(PERFECT, Timers::default());
    net.nodes[0].node.start(net.now);
    net.run(Duration::from_millis(100));
    net.tun(0, &packet(&a, &b, 1));
    net.tun(1, &packet(&b, &a, 2));
    net.run(Duration::from_millis(100));
    assert_eq!(seqs(&net.nodes[1].delivered), vec![1]);
    assert_eq!(seqs(&net.nodes[0].delivered), vec![2]);
}

#[test]
fn first_packet_waits_for_handshake_then_arrives() {
    let (mut net, a, b) = two(PERFECT, Timers::default());
    for s in 0..5 {
        net.tun(0, &packet(&a, &b, s));
    }
    net.run(Duration::from_millis(100));
    assert_eq!(seqs(&net.nodes[1].delivered), vec![0, 1, 2, 3, 4]);
}

#[test]
fn lossy_reordering_duplicating_link_delivers_each_packet_at_most_once() {
    let link = Link {
        loss: 0.1,
        dup: 0.2,
        jitter_ms: 30,
    };
    let (mut net, a, b) = two(link, Timers::default());
    net.nodes[0].node.start(net.now);
    net.nodes[1].node.start(net.now);
    let mut sent = 0;
    for round in 0..3000u32 {
        net.tun(0, &packet(&a, &b, round));
        net.tun(1, &packet(&b, &a, round));
        sent += 1;
        net.step();
    }
    net.run(Duration::from_secs(1));
    for i in 0..2 {
        let got = seqs(&net.nodes[i].delivered);
        let unique: HashSet<_> = got.iter().collect();
        assert_eq!(unique.len(), got.len(), "node {i} delivered a duplicate");
        // 10 % loss on the way; the handshake may cost a few more at the start.
        assert!(
            got.len() as f64 > sent as f64 * 0.85,
            "node {i} got {} of {sent}",
            got.len()
        );
        let dups = net.nodes[i].node.drops().get(DropReason::Replayed);
        assert!(dups > 0, "duplicates were refused by the replay window");
    }
}

#[test]
fn rekey_keeps_traffic_flowing_without_loss() {
    let t = Timers {
        rekey_after_time: Duration::from_secs(3),
        reject_after_time: Duration::from_secs(5),
        ..Timers::default()
    };
    let (mut net, a, b) = two(
        Link {
            loss: 0.0,
            dup: 0.0,
            jitter_ms: 5,
        },
        t,
    );
    net.nodes[0].node.start(net.now);
    net.run(Duration::from_millis(50));
    for s in 0..3000u32 {
        net.tun(0, &packet(&a, &b, s));
        net.tun(1, &packet(&b, &a, s));
        net.step();
    }
    net.run(Duration::from_millis(100));
    assert_eq!(
        net.nodes[1].delivered.len(),
        3000,
        "A->B lost packets across rekeys"
    );
    assert_eq!(
        net.nodes[0].delivered.len(),
        3000,
        "B->A lost packets across rekeys"
    );
    let hs = net.nodes[0].node.peer_status(net.now)[0].stats.handshakes;
    assert!(
        hs >= 8,
        "30 s at a 3 s rekey interval gives many handshakes, got {hs}"
    );
}

#[test]
fn roaming_follows_the_latest_authenticated_packet() {
    let (mut net, a, b) = two(PERFECT, Timers::default());
    net.nodes[0].node.start(net.now);
    net.run(Duration::from_millis(100));
    // B moves to a new underlay address and speaks first.
    net.nodes[1].addr = addr(3);
    net.tun(1, &packet(&b, &a, 7));
    net.run(Duration::from_millis(50));
    assert_eq!(
        net.nodes[0].node.peer_status(net.now)[0].endpoint,
        Some(addr(3))
    );
    net.tun(0, &packet(&a, &b, 8));
    net.run(Duration::from_millis(50));
    assert_eq!(seqs(&net.nodes[1].delivered), vec![8]);
}

#[test]
fn restarted_peer_is_reachable_again_quickly() {
    let (mut net, a, b) = two(PERFECT, Timers::default());
    net.nodes[0].node.start(net.now);
    net.run(Duration::from_millis(100));
    // B loses all state (kill -9) and starts again.
    net.nodes[1].node = make_node(1, &[0], Timers::default(), net.now);
    net.nodes[1].node.start(net.now);
    net.run(Duration::from_millis(100));
    net.tun(0, &packet(&a, &b, 9));
    net.run(Duration::from_millis(100));
    assert_eq!(seqs(&net.nodes[1].delivered), vec![9]);
}

#[test]
fn silent_restart_recovers_by_the_unanswered_timer() {
    // B restarts but does not know A's endpoint, so only A's timers can recover the session.
    let (mut net, a, b) = two(PERFECT, Timers::default());
    net.nodes[0].node.start(net.now);
    net.run(Duration::from_millis(100));
    let peers = [PeerConfig {
        id: a.id(),
        endpoint: None,
    }];
    net.nodes[1].node = Node::new(&b, &peers, node_cfg(Timers::default()), net.now, 1, 7).unwrap();
    for s in 0..300u32 {
        net.tun(0, &packet(&a, &b, s));
        net.run(Duration::from_millis(100));
    }
    let got = seqs(&net.nodes[1].delivered);
    assert!(
        got.len() > 100,
        "recovered after KEEPALIVE + REKEY timeouts, got {}",
        got.len()
    );
}

#[test]
fn unknown_key_is_refused_and_counted() {
    // Node 2 knows node 0; node 0 knows only node 1.
    let mut net = Net::new(3, &[(0, 1)], PERFECT, Timers::default());
    net.nodes[2].node = make_node(2, &[0], Timers::default(), net.now);
    net.set_link(0, 2, true);
    let (a, c) = (ident(0), ident(2));
    net.tun(2, &packet(&c, &a, 1));
    net.run(Duration::from_millis(100));
    assert!(net.nodes[0].delivered.is_empty());
    assert_eq!(net.nodes[0].node.drops().get(DropReason::UnknownPeer), 1);
}

#[test]
fn spoofed_inner_source_is_dropped() {
    let (mut net, a, b) = two(PERFECT, Timers::default());
    let c = ident(2);
    net.nodes[0].node.start(net.now);
    net.run(Duration::from_millis(100));
    // B sends a packet claiming C's source address to A.
    let mut p = packet(&c, &a, 3);
    // Keep B's route: the destination is A, so B seals it for A.
    net.tun(1, &p);
    net.run(Duration::from_millis(50));
    assert!(net.nodes[0].delivered.is_empty());
    assert_eq!(net.nodes[0].node.drops().get(DropReason::SpoofedSource), 1);
    p = packet(&b, &a, 4);
    net.tun(1, &p);
    net.run(Duration::from_millis(50));
    assert_eq!(seqs(&net.nodes[0].delivered), vec![4]);
}
