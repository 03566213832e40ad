//! Deterministic simulation of two (or three) in-process nodes over a virtual network with
//! loss, reordering and duplication, on a virtual clock. No sockets, no sleeping.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bitcloud::drops::DropReason;
use bitcloud::identity::Identity;
use bitcloud::node::{HEADROOM, Node, PeerConfig, TAILROOM};
use bitcloud::session::timers::Timers;

const STEP: Duration = Duration::from_millis(10);

struct Link {
    loss: f64,
    dup: f64,
    /// Max extra delay, which reorders packets.
    jitter_ms: u64,
}

struct SimNode {
    node: Node,
    addr: SocketAddr,
    delivered: Vec<Vec<u8>>,
}

struct Net {
    nodes: Vec<SimNode>,
    in_flight: Vec<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    now: Instant,
    link: Link,
    rng: u64,
}

impl Net {
    fn rand(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        if self.rand() < self.link.loss {
            return;
        }
        let copies = if self.rand() < self.link.dup { 2 } else { 1 };
        for _ in 0..copies {
            let delay =
                Duration::from_millis(1 + (self.rand() * self.link.jitter_ms as f64) as u64);
            self.in_flight
                .push((self.now + delay, from, to, data.clone()));
        }
    }

    fn flush(&mut self, i: usize) {
        let from = self.nodes[i].addr;
        while let Some(t) = self.nodes[i].node.poll_transmit() {
            self.send(from, t.dst, t.data);
        }
    }

    /// Inject an IP packet into node i's TUN.
    fn tun(&mut self, i: usize, pkt: &[u8]) {
        let mut buf = vec![0u8; HEADROOM + pkt.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + pkt.len()].copy_from_slice(pkt);
        let now = self.now;
        if let Some((n, dst)) = self.nodes[i].node.handle_tun(now, &mut buf, pkt.len()) {
            let from = self.nodes[i].addr;
            self.send(from, dst, buf[..n].to_vec());
        }
        self.flush(i);
    }

    fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        let (due, rest): (Vec<_>, Vec<_>) = self.in_flight.drain(..).partition(|p| p.0 <= now);
        self.in_flight = rest;
        for (_, from, to, mut data) in due {
            let Some(i) = self.nodes.iter().position(|n| n.addr == to) else {
                continue;
            };
            if let Some(r) = self.nodes[i].node.handle_udp(now, from, &mut data) {
                self.nodes[i].delivered.push(data[r].to_vec());
            }
            self.flush(i);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.poll_timeout().is_some_and(|t| t <= now) {
                self.nodes[i].node.handle_timeout(now);
            }
            self.flush(i);
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }
}

fn ids() -> (Identity, Identity, Identity) {
    (
        Identity::from_secret([1; 32]),
        Identity::from_secret([2; 32]),
        Identity::from_secret([3; 32]),
    )
}

fn addr(last: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::from([198, 18, 0, last]), 51820)
}

fn node(me: &Identity, peer: &Identity, ep: Option<SocketAddr>, t: Timers, now: Instant) -> Node {
    let peers = [PeerConfig {
        id: peer.id(),
        endpoint: ep,
    }];
    Node::new(me, &peers, t, now, 1_700_000_000_000_000_000, 42).unwrap()
}

fn two(link: Link, t: Timers) -> (Net, Identity, Identity) {
    let (a, b, _) = ids();
    let now = Instant::now();
    let nodes = vec![
        SimNode {
            node: node(&a, &b, Some(addr(2)), t, now),
            addr: addr(1),
            delivered: vec![],
        },
        SimNode {
            node: node(&b, &a, Some(addr(1)), t, now),
            addr: addr(2),
            delivered: vec![],
        },
    ];
    (
        Net {
            nodes,
            in_flight: vec![],
            now,
            link,
            rng: 0x1234_5678,
        },
        a,
        b,
    )
}

/// An IPv4 UDP packet from `src` to `dst` whose payload is `seq`.
fn packet(src: &Identity, dst: &Identity, seq: u32) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src.id().ipv4().octets(), dst.id().ipv4().octets(), 64)
        .udp(1000, 2000);
    let payload = seq.to_be_bytes();
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, &payload).unwrap();
    out
}

fn seqs(delivered: &[Vec<u8>]) -> Vec<u32> {
    delivered
        .iter()
        .map(|p| u32::from_be_bytes(p[p.len() - 4..].try_into().unwrap()))
        .collect()
}

const PERFECT: Link = Link {
    loss: 0.0,
    dup: 0.0,
    jitter_ms: 0,
};

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
    net.nodes[1].node = node(&b, &a, Some(addr(1)), Timers::default(), net.now);
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
    net.nodes[1].node = node(&b, &a, None, Timers::default(), net.now);
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
    let (a, b, c) = ids();
    let now = Instant::now();
    let nodes = vec![
        SimNode {
            node: node(&a, &b, Some(addr(2)), Timers::default(), now),
            addr: addr(1),
            delivered: vec![],
        },
        SimNode {
            node: node(&c, &a, Some(addr(1)), Timers::default(), now),
            addr: addr(3),
            delivered: vec![],
        },
    ];
    let mut net = Net {
        nodes,
        in_flight: vec![],
        now,
        link: PERFECT,
        rng: 9,
    };
    net.tun(1, &packet(&c, &a, 1));
    net.run(Duration::from_millis(100));
    assert!(net.nodes[0].delivered.is_empty());
    assert_eq!(net.nodes[0].node.drops().get(DropReason::UnknownPeer), 1);
}

#[test]
fn spoofed_inner_source_is_dropped() {
    let (mut net, a, b) = two(PERFECT, Timers::default());
    let (_, _, c) = ids();
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
