//! A hostile neighbour gains nothing: sans-IO nodes on a virtual clock against a neighbour
//! that speaks the protocol perfectly (floods of fake ids, replayed beacons, ground keys).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::route::{PrefixKind, RouteEvent};

const T0_UNIX: u128 = 1_700_000_000_000_000_000;

fn ident(n: u64) -> Identity {
    let mut s = [7u8; 32];
    s[..8].copy_from_slice(&n.to_le_bytes());
    Identity::from_secret(s)
}

fn ep(last: u8) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, last], 51820))
}

fn node(i: &Identity, peers: &[(NodeId, SocketAddr)], now: Instant) -> Node {
    let peers: Vec<_> = peers
        .iter()
        .map(|(id, e)| PeerConfig {
            id: *id,
            endpoint: Some(*e),
        })
        .collect();
    Node::new(i, &peers, NodeConfig::default(), now, T0_UNIX, 9).unwrap()
}

/// Deliver datagrams between nodes at the given addresses until quiet; datagrams for any
/// other address are returned (what an attacker at that address would receive).
fn pump(nodes: &mut [(&mut Node, SocketAddr)], now: Instant) -> Vec<Transmit> {
    let mut others = Vec::new();
    for _ in 0..20 {
        let mut moved = false;
        for i in 0..nodes.len() {
            while let Some(mut t) = nodes[i].0.poll_transmit() {
                let from = nodes[i].1;
                match nodes.iter_mut().find(|(_, a)| *a == t.dst) {
                    Some((n, _)) => {
                        n.handle_udp(now, from, &mut t.data);
                        moved = true;
                    }
                    None => others.push(t),
                }
            }
        }
        if !moved {
            break;
        }
    }
    others
}

/// Seal `pkt` from the TUN of `n`; the datagram and its destination.
fn from_tun(n: &mut Node, pkt: &[u8], now: Instant) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; HEADROOM + pkt.len() + TAILROOM];
    buf[HEADROOM..HEADROOM + pkt.len()].copy_from_slice(pkt);
    let (r, dst) = n.handle_tun(now, &mut buf, pkt.len())?;
    Some((buf[r].to_vec(), dst))
}

fn v4_packet(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src.octets(), dst.octets(), 64).udp(1000, 2000);
    let mut out = Vec::new();
    b.write(&mut out, b"hi").unwrap();
    out
}

fn v6_packet(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv6(src.octets(), dst.octets(), 64).udp(1000, 2000);
    let mut out = Vec::new();
    b.write(&mut out, b"hi").unwrap();
    out
}

#[test]
fn a_flood_of_discovered_ids_is_capped_budgeted_and_expired() {
    let t0 = Instant::now();
    let me = ident(0);
    let friend = ident(1);
    let mut n = node(&me, &[(friend.id(), ep(1))], t0);
    n.start(t0);
    while n.poll_transmit().is_some() {}
    let attacker = ep(66);
    // 6,000 fresh ids from one host over 15 s, as beacons would report them.
    let mut per_sec: HashMap<u64, usize> = HashMap::new();
    let mut now = t0;
    for k in 0..6_000u64 {
        now = t0 + Duration::from_micros(k * 2_500);
        n.discovered(ident(1000 + k).id(), attacker, now);
        if k % 40 == 0 {
            n.handle_timeout(now);
        }
        while let Some(t) = n.poll_transmit() {
            if t.dst == attacker {
                *per_sec.entry(now.duration_since(t0).as_secs()).or_default() += 1;
            }
        }
        let st = n.table_stats();
        assert!(st.neighbours <= MAX_NEIGHBOURS);
        assert!(st.unverified <= MAX_UNVERIFIED_PER_HOST, "{st:?}");
    }
    let total: usize = per_sec.values().sum();
    let worst = per_sec.values().copied().max().unwrap_or(0);
    assert!(
        worst <= (peers::UNVERIFIED_HANDSHAKE_BURST + UNVERIFIED_HANDSHAKES_PER_SEC) as usize,
        "at most the budget per second towards the flooder: {per_sec:?}"
    );
    assert!(total <= 15 * 4 + 8 + 4, "{total} datagrams in 15 s");
    assert!(n.drops().get(DropReason::UnverifiedHostFull) > 0);
    // Nobody answered: every discovered id is expired, the configured friend stays.
    for s in 0..(UNVERIFIED_MAX_AGE_S + 2) {
        n.handle_timeout(now + Duration::from_secs(s));
        while n.poll_transmit().is_some() {}
    }
    let st = n.table_stats();
    assert_eq!(st.neighbours, 1, "{st:?}");
    assert_eq!(n.peer_status(now)[0].id, friend.id());
    assert!(
        n.peers.len() <= MAX_UNVERIFIED_PER_HOST + 1,
        "slots were reused"
    );
    assert!(
        n.indices.values().all(|pi| *pi == 0),
        "no index of a freed slot"
    );
}

const UNVERIFIED_MAX_AGE_S: u64 = peers::UNVERIFIED_MAX_AGE.as_secs();

#[test]
fn an_honest_newcomer_gets_in_during_a_flood_from_one_host() {
    let t0 = Instant::now();
    let (me, b) = (ident(0), ident(1));
    let mut n = node(&me, &[], t0);
    let mut nb = node(&b, &[], t0);
    let mut now = t0;
    for k in 0..2_000u64 {
        now = t0 + Duration::from_millis(k);
        n.discovered(ident(1000 + k).id(), ep(66), now);
        if k == 1_000 {
            assert!(n.discovered(b.id(), ep(2), now), "admitted mid-flood");
            nb.discovered(me.id(), ep(1), now);
        }
        n.handle_timeout(now);
        pump(&mut [(&mut n, ep(1)), (&mut nb, ep(2))], now);
    }
    let later = now + Duration::from_secs(6);
    n.handle_timeout(later);
    nb.handle_timeout(later);
    pump(&mut [(&mut n, ep(1)), (&mut nb, ep(2))], later);
    let st = n.peer_status(later);
    assert!(st.iter().any(|p| p.id == b.id() && p.connected), "{st:?}");
}

#[test]
fn many_flooding_hosts_meet_the_unverified_cap() {
    let t0 = Instant::now();
    let mut n = node(&ident(0), &[], t0);
    for k in 0..(MAX_UNVERIFIED * 2) as u64 {
        let host = SocketAddr::from(([198, 18, 1 + (k / 200) as u8, (k % 200) as u8 + 1], 9));
        n.discovered(ident(1000 + k).id(), host, t0);
    }
    // Whatever the number of hosts, initiations to unconfirmed endpoints keep to the budget.
    let mut sent = std::iter::from_fn(|| n.poll_transmit()).count();
    for ms in (100..=10_000).step_by(100) {
        n.handle_timeout(t0 + Duration::from_millis(ms));
        sent += std::iter::from_fn(|| n.poll_transmit()).count();
    }
    assert!(sent <= 8 + 4 * 10, "{sent} initiations in 10 s");
    assert!(n.drops().get(DropReason::HandshakeBudget) > 0);
    assert_eq!(n.table_stats().unverified, MAX_UNVERIFIED);
    assert_eq!(
        n.drops().get(DropReason::UnverifiedTableFull),
        MAX_UNVERIFIED as u64
    );
}

#[test]
fn the_cap_refuses_discovered_nodes_but_keeps_configured_ones() {
    let t0 = Instant::now();
    let configured: Vec<_> = (0..MAX_NEIGHBOURS as u64 + 5)
        .map(|k| (ident(5000 + k).id(), ep(9)))
        .collect();
    let mut n = node(&ident(0), &configured, t0);
    assert_eq!(n.table_stats().neighbours, MAX_NEIGHBOURS + 5);
    assert!(!n.discovered(ident(1).id(), ep(1), t0));
    assert_eq!(n.drops().get(DropReason::NeighbourTableFull), 1);
    n.handle_timeout(t0 + IDLE_EXPIRY * 2);
    assert_eq!(
        n.table_stats().neighbours,
        MAX_NEIGHBOURS + 5,
        "configured kept"
    );
}

#[test]
fn an_idle_neighbour_is_expired_and_its_slot_reused_clean() {
    let t0 = Instant::now();
    let (me, b) = (ident(0), ident(1));
    let mut n = node(&me, &[], t0);
    let mut nb = node(&b, &[], t0);
    assert!(nb.discovered(me.id(), ep(1), t0));
    assert!(n.discovered(b.id(), ep(2), t0));
    pump(&mut [(&mut n, ep(1)), (&mut nb, ep(2))], t0);
    assert!(n.peer_status(t0)[0].connected);
    let pkt = v6_packet(me.id().ipv6(), b.id().ipv6());
    let (mut d, _) = from_tun(&mut n, &pkt, t0).unwrap();
    assert!(matches!(nb.handle_udp(t0, ep(1), &mut d), UdpOut::Tun(_)));
    n.money_handshake(0, true);
    // B carried 1000 bytes for a distant node: metered, so owed and worth keeping.
    n.meter_sent(0, &ident(9).id(), 1000);
    assert!(n.money.accounts[0].is_some());
    while n.poll_wallet().is_some() {}
    // B goes silent: after the keys and the idle time run out, its slot is freed.
    let mut now = t0;
    while now < t0 + IDLE_EXPIRY + Duration::from_secs(200) {
        now += Duration::from_secs(1);
        n.handle_timeout(now);
        while n.poll_transmit().is_some() {}
    }
    assert_eq!(n.table_stats().neighbours, 0);
    assert!(n.peer_status(now).is_empty());
    assert!(n.money.accounts[0].is_none(), "account forgotten");
    let ops: Vec<_> = std::iter::from_fn(|| n.poll_wallet()).collect();
    assert!(
        ops.iter()
            .any(|o| matches!(o, WalletOp::Checkpoint(v) if v.len() == 2)),
        "its meters were checkpointed first: {ops:?}"
    );
    assert_eq!(n.router.neighbours().count(), 0);
    // A new neighbour takes the slot with nothing of B's.
    let c = ident(2);
    assert!(n.discovered(c.id(), ep(3), now));
    assert_eq!(n.peers.len(), 1, "slot reused");
    let st = &n.peer_status(now)[0];
    assert_eq!(
        (st.id, st.stats.tx_packets, st.connected),
        (c.id(), 0, false)
    );
    assert!(st.drops.values().all(|v| *v == 0));
    assert!(!n.by_id.contains_key(&b.id()));
}

#[test]
fn a_replayed_beacon_never_moves_a_confirmed_endpoint() {
    let t0 = Instant::now();
    let (me, b) = (ident(0), ident(1));
    let mut n = node(&me, &[], t0);
    let mut nb = node(&b, &[], t0);
    nb.discovered(me.id(), ep(1), t0);
    n.discovered(b.id(), ep(2), t0);
    pump(&mut [(&mut n, ep(1)), (&mut nb, ep(2))], t0);
    // The attacker replays B's beacon from its own address.
    let attacker = ep(66);
    let t1 = t0 + Duration::from_secs(1);
    n.discovered(b.id(), attacker, t1);
    assert_eq!(n.peers[0].endpoint, Some(ep(2)));
    assert_eq!(n.drops().get(DropReason::EndpointHintIgnored), 1);
    let pkt = v6_packet(me.id().ipv6(), b.id().ipv6());
    let (_, dst) = from_tun(&mut n, &pkt, t1).unwrap();
    assert_eq!(dst, ep(2));
    assert!(
        pump(&mut [(&mut n, ep(1)), (&mut nb, ep(2))], t1).is_empty(),
        "nothing goes to the attacker"
    );
}

#[test]
fn a_hint_is_tried_but_only_an_authenticated_answer_moves_the_endpoint() {
    let t0 = Instant::now();
    let (me, b) = (ident(0), ident(1));
    let mut n = node(&me, &[], t0);
    let mut nb = node(&b, &[], t0);
    // The replay from the attacker arrives first, the genuine beacon second.
    let attacker = ep(66);
    n.discovered(b.id(), attacker, t0);
    let lost = pump(&mut [(&mut n, ep(1)), (&mut nb, ep(2))], t0);
    assert_eq!(
        lost.len(),
        1,
        "one initiation went to the attacker's address"
    );
    let t1 = t0 + Duration::from_secs(1);
    n.discovered(b.id(), ep(2), t1);
    // B answers from its real address (it needs to know A to answer at all).
    nb.discovered(me.id(), ep(1), t0);
    while nb.poll_transmit().is_some() {}
    let t2 = t1 + Duration::from_secs(6);
    n.handle_timeout(t2);
    pump(&mut [(&mut n, ep(1)), (&mut nb, ep(2))], t2);
    assert!(n.peer_status(t2)[0].connected, "{:?}", n.peer_status(t2));
    assert_eq!(n.peers[0].endpoint, Some(ep(2)));
    assert!(n.peers[0].confirmed && n.peers[0].hints.is_empty());
}

/// Two identities whose IPv4 addresses collide (a birthday search over 22 bits).
fn colliding_pair() -> (Identity, Identity) {
    let mut seen: HashMap<Ipv4Addr, u64> = HashMap::new();
    for k in 10_000..1_000_000u64 {
        let i = ident(k);
        if let Some(prev) = seen.insert(i.id().ipv4(), k) {
            return (ident(prev), i);
        }
    }
    panic!("no collision found");
}

#[test]
fn colliding_ipv4_addresses_are_refused_both_ways() {
    let t0 = Instant::now();
    let me = ident(0);
    let (p, q) = colliding_pair();
    assert_eq!(p.id().ipv4(), q.id().ipv4());
    let mut n = node(&me, &[(p.id(), ep(2)), (q.id(), ep(3))], t0);
    let mut np = node(&p, &[(me.id(), ep(1))], t0);
    let mut nq = node(&q, &[(me.id(), ep(1))], t0);
    n.start(t0);
    pump(
        &mut [(&mut n, ep(1)), (&mut np, ep(2)), (&mut nq, ep(3))],
        t0,
    );
    assert!(n.peer_status(t0).iter().all(|s| s.connected));
    // Neither gets IPv4 traffic for the shared address.
    let to_v4 = v4_packet(me.id().ipv4(), p.id().ipv4());
    assert!(from_tun(&mut n, &to_v4, t0).is_none());
    assert_eq!(n.drops().get(DropReason::Ipv4Collision), 1);
    // IPv6 still works, and each keeps its own link.
    let (mut d, dst) = from_tun(&mut n, &v6_packet(me.id().ipv6(), q.id().ipv6()), t0).unwrap();
    assert_eq!(dst, ep(3));
    assert!(matches!(nq.handle_udp(t0, ep(1), &mut d), UdpOut::Tun(_)));
    // Neither may use the shared address as a source.
    let spoof = v4_packet(q.id().ipv4(), me.id().ipv4());
    let (mut d, _) = from_tun(&mut nq, &spoof, t0).unwrap();
    assert_eq!(n.handle_udp(t0, ep(3), &mut d), UdpOut::None);
    assert_eq!(n.drops().get(DropReason::Ipv4Collision), 2);
    let c = n.ipv4_collisions();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].addr, p.id().ipv4());
    let mut want = vec![p.id(), q.id()];
    want.sort();
    assert_eq!(c[0].nodes, want);
}

#[test]
fn a_neighbour_colliding_with_a_routed_node_is_refused_too() {
    let t0 = Instant::now();
    let me = ident(0);
    let (p, far) = colliding_pair();
    let mut n = node(&me, &[(p.id(), ep(2))], t0);
    let mut np = node(&p, &[(me.id(), ep(1))], t0);
    n.start(t0);
    pump(&mut [(&mut n, ep(1)), (&mut np, ep(2))], t0);
    // A distant node with the same IPv4 becomes routed (through P, as far as we know).
    n.route_event_v4(&RouteEvent::RouteChanged {
        key: crate::route::RouteKey {
            originator: far.id(),
            kind: PrefixKind::Node,
        },
        next_hop: p.id(),
        metric: 1,
    });
    let to_v4 = v4_packet(me.id().ipv4(), p.id().ipv4());
    assert!(from_tun(&mut n, &to_v4, t0).is_none());
    assert_eq!(n.drops().get(DropReason::Ipv4Collision), 1);
    assert_eq!(
        n.peers[0].addr_v4,
        Ipv4Addr::BROADCAST,
        "P may not use it as source"
    );
    let e = n.e2e_peer(far.id(), t0).unwrap();
    assert_eq!(
        e.addr_v4,
        Ipv4Addr::BROADCAST,
        "nor the distant node, end to end"
    );
    n.route_event_v4(&RouteEvent::Unreachable(crate::route::RouteKey {
        originator: far.id(),
        kind: PrefixKind::Node,
    }));
    assert!(from_tun(&mut n, &to_v4, t0).is_some(), "unambiguous again");
    assert_eq!(n.peers[0].addr_v4, p.id().ipv4());
    assert_eq!(n.e2e[&far.id()].addr_v4, far.id().ipv4());
}

#[test]
fn end_to_end_sessions_are_capped_and_idle_ones_expire() {
    let t0 = Instant::now();
    let mut n = node(&ident(0), &[], t0);
    for k in 0..mesh::MAX_E2E_SESSIONS as u64 + 10 {
        assert!(n.e2e_peer(ident(20_000 + k).id(), t0).is_some());
    }
    assert_eq!(n.e2e.len(), mesh::MAX_E2E_SESSIONS);
    n.handle_timeout(t0 + mesh::E2E_IDLE_EXPIRY);
    assert!(n.e2e.is_empty(), "idle sessions forgotten");
}
