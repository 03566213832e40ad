//! Router behaviour on small hand-built networks: adjacency, propagation, retraction,
//! signature rejection, feasibility and seqno requests, wraparound, exits and price.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::wire::routing::{
    self, Hello, HelloSeqno, Ihu, RouteRequest, SeqnoRequest, Update, sign_announcement,
};

fn ident(n: u8) -> Identity {
    Identity::from_secret([n; 32])
}

/// A tiny network: instant delivery in FIFO order, timers stepped by `run`.
struct Net {
    now: Instant,
    routers: Vec<Router>,
    links: Vec<(usize, usize)>,
    queue: VecDeque<(usize, usize, Vec<u8>)>,
}

impl Net {
    fn new(n: usize, cfg: &RouterConfig) -> Net {
        let now = Instant::now();
        let routers = (0..n)
            .map(|i| Router::new(&ident(i as u8 + 1), cfg.clone(), now))
            .collect();
        Net {
            now,
            routers,
            links: Vec::new(),
            queue: VecDeque::new(),
        }
    }

    fn id(&self, i: usize) -> NodeId {
        self.routers[i].id()
    }

    fn index(&self, id: NodeId) -> usize {
        self.routers.iter().position(|r| r.id() == id).unwrap()
    }

    fn link(&mut self, a: usize, b: usize) {
        self.links.push((a, b));
        let (ia, ib) = (self.id(a), self.id(b));
        self.routers[a].add_neighbour(ib, self.now);
        self.routers[b].add_neighbour(ia, self.now);
        self.pump();
    }

    fn unlink(&mut self, a: usize, b: usize) {
        self.links.retain(|l| *l != (a, b) && *l != (b, a));
        let (ia, ib) = (self.id(a), self.id(b));
        self.routers[a].remove_neighbour(ib, self.now);
        self.routers[b].remove_neighbour(ia, self.now);
        self.pump();
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a, b)) || self.links.contains(&(b, a))
    }

    fn pump(&mut self) {
        loop {
            for i in 0..self.routers.len() {
                while let Some((to, bytes)) = self.routers[i].poll_transmit() {
                    let j = self.index(to);
                    if self.linked(i, j) {
                        self.queue.push_back((i, j, bytes));
                    }
                }
            }
            let Some((from, to, bytes)) = self.queue.pop_front() else {
                return;
            };
            let fid = self.id(from);
            self.routers[to]
                .handle_message(fid, &bytes, self.now)
                .unwrap();
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = self
                .routers
                .iter()
                .filter_map(Router::poll_timeout)
                .min()
                .unwrap();
            if next > end {
                break;
            }
            self.now = next;
            for r in &mut self.routers {
                if r.poll_timeout().is_some_and(|t| t <= next) {
                    r.handle_timeout(next);
                }
            }
            self.pump();
        }
        self.now = end;
    }

    fn hop(&self, from: usize, to: usize) -> Option<usize> {
        let dst = self.id(to);
        self.routers[from].next_hop(&dst).map(|n| self.index(n))
    }
}

/// Messages a fake neighbour sends to make a link look healthy.
fn hello_ihu(seqno: u16) -> Vec<u8> {
    let iv = Duration::from_secs(4);
    routing::encode(&[
        Tlv::Hello(Hello {
            seqno: HelloSeqno(seqno),
            interval: iv,
        }),
        Tlv::Ihu(Ihu {
            rxcost: 256,
            interval: iv,
        }),
    ])
}

fn update(origin: &Identity, seqno: u32, metric: u16) -> Update {
    Update {
        kind: PrefixKind::Node,
        interval: Duration::from_secs(16),
        seqno: Seqno(seqno),
        metric,
        price_per_mib: 0,
        price_epoch: 0,
        originator: origin.id(),
        signature: sign_announcement(origin, Seqno(seqno), PrefixKind::Node),
    }
}

fn send(r: &mut Router, from: NodeId, tlvs: &[Tlv], now: Instant) {
    r.handle_message(from, &routing::encode(tlvs), now).unwrap();
}

/// A router with fake neighbours whose links are up; returns it and their ids.
fn with_fake_neighbours(n: u8, now: Instant) -> (Router, Vec<NodeId>) {
    let mut r = Router::new(&ident(1), RouterConfig::default(), now);
    let ids: Vec<NodeId> = (0..n).map(|i| ident(100 + i).id()).collect();
    for id in &ids {
        r.add_neighbour(*id, now);
        r.handle_message(*id, &hello_ihu(0), now).unwrap();
    }
    while r.poll_transmit().is_some() {}
    (r, ids)
}

fn sent_tlvs(r: &mut Router) -> Vec<(NodeId, Tlv)> {
    let mut out = Vec::new();
    while let Some((to, bytes)) = r.poll_transmit() {
        for t in routing::decode(&bytes).unwrap().tlvs {
            out.push((to, t));
        }
    }
    out
}

#[test]
fn neighbours_come_up_within_one_round_trip_and_learn_addresses() {
    let mut net = Net::new(2, &RouterConfig::default());
    net.link(0, 1);
    let (a, b) = (net.id(0), net.id(1));
    assert_eq!(net.routers[0].next_hop(&b), Some(b));
    assert_eq!(
        net.routers[0].lookup_addr(IpAddr::V6(b.ipv6())),
        Some((b, b))
    );
    assert_eq!(
        net.routers[1].lookup_addr(IpAddr::V4(a.ipv4())),
        Some((a, a))
    );
    assert_eq!(
        net.routers[0].lookup_addr(IpAddr::V6(a.ipv6())),
        None,
        "own address"
    );
    let n: Vec<_> = net.routers[0].neighbours().collect();
    assert_eq!((n.len(), n[0].cost), (1, 256));
    let events: Vec<_> = std::iter::from_fn(|| net.routers[0].poll_event()).collect();
    assert!(events.contains(&RouteEvent::NeighbourUp(b)));
}

#[test]
fn line_routes_through_the_middle_and_retracts_on_link_loss() {
    let mut net = Net::new(3, &RouterConfig::default());
    net.link(0, 1);
    net.link(1, 2);
    assert_eq!(net.hop(0, 2), Some(1));
    assert_eq!(net.hop(2, 0), Some(1));
    let r: Vec<_> = net.routers[0]
        .routes(net.now)
        .filter(|r| r.key.originator == net.id(2))
        .collect();
    assert_eq!((r.len(), r[0].metric, r[0].selected), (1, 512, true));
    assert_eq!(
        r[0].key.prefixes(),
        [
            (IpAddr::V6(net.id(2).ipv6()), 128),
            (IpAddr::V4(net.id(2).ipv4()), 32)
        ]
    );
    while net.routers[0].poll_event().is_some() {}
    net.unlink(1, 2);
    assert_eq!(net.hop(0, 2), None, "retraction propagated at once");
    let key = RouteKey {
        originator: net.id(2),
        kind: PrefixKind::Node,
    };
    let events: Vec<_> = std::iter::from_fn(|| net.routers[0].poll_event()).collect();
    assert!(events.contains(&RouteEvent::Unreachable(key)));
    net.link(1, 2);
    assert_eq!(net.hop(0, 2), Some(1));
}

#[test]
fn ring_reroutes_around_a_failure_without_waiting_for_periodic_updates() {
    let mut net = Net::new(5, &RouterConfig::default());
    for i in 0..5 {
        net.link(i, (i + 1) % 5);
    }
    net.run(Duration::from_secs(1));
    assert_eq!(net.hop(0, 1), Some(1));
    net.unlink(0, 1);
    net.run(Duration::from_secs(10));
    assert_eq!(net.hop(0, 1), Some(4));
    assert_eq!(net.hop(1, 0), Some(2));
}

#[test]
fn announcing_another_nodes_address_is_dropped_and_counted() {
    let now = Instant::now();
    let (mut r, n) = with_fake_neighbours(1, now);
    let victim = ident(50);
    let liar = ident(100);
    // The liar signs with its own key but names the victim as originator.
    let mut forged = update(&victim, 3, 0);
    forged.signature = sign_announcement(&liar, Seqno(3), PrefixKind::Node);
    send(&mut r, n[0], &[Tlv::Update(forged)], now);
    // A genuine signature replayed with a bumped seqno fails as well.
    let mut bumped = update(&victim, 3, 0);
    bumped.seqno = Seqno(4);
    send(&mut r, n[0], &[Tlv::Update(bumped)], now);
    // So does one for another prefix kind (claiming to be an exit).
    let mut exit = update(&victim, 3, 0);
    exit.kind = PrefixKind::Default;
    send(&mut r, n[0], &[Tlv::Update(exit)], now);
    assert_eq!(r.stats().bad_signature, 3);
    assert_eq!(r.next_hop(&victim.id()), None);
    assert_eq!(r.routes(now).count(), 0);
    // The genuine announcement, relayed with any metric and price, is accepted.
    let mut genuine = update(&victim, 3, 700);
    genuine.price_per_mib = 42;
    send(&mut r, n[0], &[Tlv::Update(genuine)], now);
    assert_eq!(r.next_hop(&victim.id()), Some(n[0]));
    assert_eq!(r.stats().bad_signature, 3);
}

#[test]
fn malformed_unknown_and_stranger_messages_are_counted() {
    let now = Instant::now();
    let (mut r, n) = with_fake_neighbours(1, now);
    assert!(matches!(
        r.handle_message(n[0], &[routing::VERSION, 3, 200], now),
        Err(RouteError::Wire(WireError::Overrun { .. }))
    ));
    let stranger = ident(99).id();
    assert_eq!(
        r.handle_message(stranger, &hello_ihu(1), now),
        Err(RouteError::UnknownNeighbour(stranger))
    );
    r.handle_message(n[0], &[routing::VERSION, 250, 1, 0], now)
        .unwrap();
    let s = r.stats();
    assert_eq!(
        (s.malformed, s.unknown_neighbour, s.skipped_tlvs),
        (1, 1, 1)
    );
}

#[test]
fn unfeasible_route_is_not_used_and_triggers_a_seqno_request() {
    let now = Instant::now();
    let (mut r, n) = with_fake_neighbours(2, now);
    let d = ident(60);
    send(&mut r, n[0], &[Tlv::Update(update(&d, 5, 256))], now);
    assert_eq!(r.next_hop(&d.id()), Some(n[0]));
    let _ = sent_tlvs(&mut r); // advertises (5, 512): feasibility distance set
    // n[1] offers the same seqno with a metric that is not below our distance.
    send(&mut r, n[1], &[Tlv::Update(update(&d, 5, 512))], now);
    assert_eq!(r.next_hop(&d.id()), Some(n[0]));
    assert_eq!(r.stats().unfeasible, 1);
    // n[0] retracts: the unfeasible route must not be used; ask for seqno 6 instead.
    let mut retract = update(&d, 5, INFINITY);
    retract.signature = [0; 64];
    send(&mut r, n[0], &[Tlv::Update(retract)], now);
    assert_eq!(r.next_hop(&d.id()), None);
    let out = sent_tlvs(&mut r);
    let asked: Vec<_> = out
        .iter()
        .filter_map(|(to, t)| match t {
            Tlv::SeqnoRequest(q) => Some((*to, q.seqno, q.originator)),
            _ => None,
        })
        .collect();
    assert!(asked.contains(&(n[1], Seqno(6), d.id())), "{asked:?}");
    assert!(
        out.iter()
            .any(|(_, t)| matches!(t, Tlv::Update(u) if u.is_retraction()))
    );
    // The originator's answer (seqno 6) is feasible whatever its metric.
    send(&mut r, n[1], &[Tlv::Update(update(&d, 6, 5000))], now);
    assert_eq!(r.next_hop(&d.id()), Some(n[1]));
}

mod hostile;
mod hostile_hops;
mod later;
