//! Router behaviour over time and at the edges: seqno requests, wraparound, restarts, expiry,
//! silent neighbours, exits with prices, and the message size limit.

use super::*;

#[test]
fn seqno_requests_are_answered_forwarded_or_bump_the_originator() {
    let now = Instant::now();
    let (mut r, n) = with_fake_neighbours(2, now);
    let d = ident(61);
    send(&mut r, n[0], &[Tlv::Update(update(&d, 7, 256))], now);
    let _ = sent_tlvs(&mut r);
    let req = |seqno: u32, originator: NodeId| {
        Tlv::SeqnoRequest(SeqnoRequest {
            kind: PrefixKind::Node,
            hop_count: 10,
            seqno: Seqno(seqno),
            originator,
        })
    };
    // Our route is new enough: answer with an update.
    send(&mut r, n[1], &[req(7, d.id())], now);
    let out = sent_tlvs(&mut r);
    assert!(matches!(&out[..], [(to, Tlv::Update(u))] if *to == n[1] && u.seqno == Seqno(7)));
    // Too old: forward towards the originator with one hop less, once.
    send(&mut r, n[1], &[req(8, d.id())], now);
    send(&mut r, n[1], &[req(8, d.id())], now);
    let out = sent_tlvs(&mut r);
    assert!(
        matches!(&out[..], [(to, Tlv::SeqnoRequest(q))] if *to == n[0] && q.hop_count == 9),
        "{out:?}"
    );
    // For us: bump our seqno and announce to everyone.
    let before = r.seqno();
    let me = r.id();
    send(&mut r, n[1], &[req(before.wrapping_add(1), me)], now);
    assert_eq!(r.seqno(), before.wrapping_add(1));
    let out = sent_tlvs(&mut r);
    assert_eq!(
        out.iter()
            .filter(|(_, t)| matches!(t, Tlv::Update(u) if u.originator == me))
            .count(),
        2
    );
}

#[test]
fn seqno_wraps_around() {
    let cfg = RouterConfig {
        initial_seqno: u32::MAX,
        ..RouterConfig::default()
    };
    let mut net = Net::new(3, &cfg);
    net.link(0, 1);
    net.link(1, 2);
    let d = net.id(2);
    // Ask node 2 for seqno 0, which is newer than u32::MAX.
    let req = Tlv::SeqnoRequest(SeqnoRequest {
        kind: PrefixKind::Node,
        hop_count: 2,
        seqno: Seqno(0),
        originator: d,
    });
    let from = net.id(1);
    send(&mut net.routers[2], from, &[req], net.now);
    assert_eq!(net.routers[2].seqno(), 0);
    net.pump();
    let r: Vec<_> = net.routers[0]
        .routes(net.now)
        .filter(|r| r.key.originator == d)
        .collect();
    assert_eq!((r[0].seqno, r[0].selected), (0, true));
    // An announcement from before the wrap is now stale: unfeasible, and ignored.
    let stale = update(&ident(3), u32::MAX, 0);
    let f = net.id(1);
    send(&mut net.routers[0], f, &[Tlv::Update(stale)], net.now);
    assert_eq!(net.routers[0].stats().unfeasible, 1);
    assert_eq!(net.hop(0, 2), Some(1));
}

#[test]
fn a_restarted_node_jumps_past_its_old_seqno() {
    let now = Instant::now();
    let (mut r, n) = with_fake_neighbours(1, now);
    let me = ident(1);
    send(&mut r, n[0], &[Tlv::Update(update(&me, 500, 256))], now);
    assert_eq!(r.seqno(), 501);
}

#[test]
fn routes_expire_when_no_longer_refreshed() {
    let now = Instant::now();
    let (mut r, n) = with_fake_neighbours(1, now);
    let d = ident(62);
    send(&mut r, n[0], &[Tlv::Update(update(&d, 1, 0))], now);
    assert!(r.next_hop(&d.id()).is_some());
    // Keep the link alive with hellos, but never repeat the update.
    for i in 1..=16u16 {
        let t = now + Duration::from_secs(4 * u64::from(i));
        r.handle_message(n[0], &hello_ihu(i), t).unwrap();
        r.handle_timeout(t);
    }
    assert_eq!(r.next_hop(&d.id()), None);
    assert_eq!(r.routes(now).count(), 0);
}

#[test]
fn silent_neighbour_stops_being_used() {
    let now = Instant::now();
    let (mut r, n) = with_fake_neighbours(1, now);
    let d = ident(63);
    send(&mut r, n[0], &[Tlv::Update(update(&d, 1, 0))], now);
    r.handle_timeout(now + Duration::from_secs(20));
    assert_eq!(r.next_hop(&d.id()), None);
    let events: Vec<_> = std::iter::from_fn(|| r.poll_event()).collect();
    assert!(events.contains(&RouteEvent::NeighbourDown(n[0])));
}

#[test]
fn exits_announce_default_routes_and_price_steers_the_choice() {
    let cfg = RouterConfig {
        policy: SelectionPolicy {
            price_weight_milli: 1000,
            ..SelectionPolicy::default()
        },
        ..RouterConfig::default()
    };
    // 0 is the client; 1 is a near but dear exit; 2 is a cheap exit two hops away via 3.
    let mut net = Net::new(4, &cfg);
    // The exit fee is apart from the forwarding fee: 1 forwards for 3 units but sells its
    // uplink for 5000; 2's uplink is free and relay 3 bills 7 to reach it.
    net.routers[1].cfg.fee_per_mib = 3;
    net.routers[1].set_exit(true, 5000, net.now);
    net.routers[2].set_exit(true, 0, net.now);
    net.routers[3].cfg.fee_per_mib = 7;
    net.link(0, 1);
    net.link(0, 3);
    net.link(3, 2);
    let (e1, e2, via) = (net.id(1), net.id(2), net.id(3));
    let internet: IpAddr = "198.51.100.7".parse().unwrap();
    assert_eq!(net.routers[0].lookup_addr(internet), Some((e2, via)));
    assert_eq!(net.routers[0].default_route(), Some((e2, via)));
    // Without a price weight the nearest exit wins.
    let mut plain = Net::new(4, &RouterConfig::default());
    plain.routers[1].set_exit(true, 5000, plain.now);
    plain.routers[2].set_exit(true, 0, plain.now);
    plain.link(0, 1);
    plain.link(0, 3);
    plain.link(3, 2);
    assert_eq!(plain.routers[0].lookup_addr(internet), Some((e1, e1)));
    // The exit stops: its default route is retracted and the other takes over.
    plain.routers[1].set_exit(false, 5000, plain.now);
    plain.pump();
    assert_eq!(plain.routers[0].lookup_addr(internet), Some((e2, via)));
    let price: Vec<_> = net.routers[0]
        .routes(net.now)
        .filter(|r| r.key.kind == PrefixKind::Default)
        .map(|r| (r.key.originator, r.price_per_mib))
        .collect();
    assert!(price.contains(&(e1, 5000)));
    assert!(price.contains(&(e2, 7)));
    // What the exit choice reads: the exit's own fee apart from what the path bills.
    let exits = net.routers[0].exit_routes();
    let fee = |id| {
        exits
            .iter()
            .find(|x| x.id == id)
            .map(|x| (x.price_per_mib, x.path_price_per_mib, x.exit_fee_per_mib()))
    };
    assert_eq!(fee(e1), Some((5000, 0, 5000)));
    assert_eq!(fee(e2), Some((7, 7, 0)));
}

#[test]
fn messages_respect_the_size_limit() {
    let now = Instant::now();
    let (mut r, n) = with_fake_neighbours(2, now);
    let tlvs: Vec<Tlv> = (0..40u8)
        .map(|i| Tlv::Update(update(&ident(150 + i), 1, 256)))
        .collect();
    send(&mut r, n[0], &tlvs, now);
    let _ = sent_tlvs(&mut r);
    let t = now + Duration::from_secs(16);
    for id in &n {
        r.handle_message(*id, &hello_ihu(1), t).unwrap();
    }
    let _ = sent_tlvs(&mut r);
    r.handle_timeout(t);
    let mut updates = 0;
    while let Some((to, bytes)) = r.poll_transmit() {
        assert!(bytes.len() <= 1200);
        let d = routing::decode(&bytes).unwrap();
        if to == n[1] {
            updates += d
                .tlvs
                .iter()
                .filter(|t| matches!(t, Tlv::Update(_)))
                .count();
        }
    }
    assert_eq!(
        updates, 41,
        "40 routes and our own address, split horizon towards n[0]"
    );
}
