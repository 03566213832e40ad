//! A hostile neighbour that speaks the protocol perfectly (well-formed, correctly signed TLVs)
//! gains nothing: request floods queue bounded work, harvested signatures do not win routes,
//! and the route table stays bounded (issue 8, items 7-9).

use std::collections::BTreeMap;

use super::*;

/// An identity from a 32-bit index, for tests that need thousands of originators.
fn many(i: u32) -> Identity {
    let mut s = [7u8; 32];
    s[..4].copy_from_slice(&i.to_be_bytes());
    Identity::from_secret(s)
}

/// Bytes waiting in the outbox for `to`.
fn queued_bytes(r: &Router, to: NodeId) -> usize {
    r.outbox
        .iter()
        .filter(|(t, _)| *t == to)
        .map(|(_, b)| b.len())
        .sum()
}

/// Neighbour `from` (re)announces `t` destinations.
fn announce(r: &mut Router, from: NodeId, t: u32, now: Instant) {
    let ups: Vec<Tlv> = (0..t)
        .map(|i| Tlv::Update(update(&many(i), 1, 256)))
        .collect();
    for chunk in ups.chunks(8) {
        send(r, from, chunk, now);
    }
}

/// The route counters agree with the table.
fn assert_counts(r: &Router) {
    let entries: usize = r.dests.values().map(|d| d.routes.len()).sum();
    assert_eq!(r.total_routes, entries);
    for (id, n) in &r.neighbours {
        let mine = r.dests.values().filter(|d| d.route(id).is_some()).count();
        assert_eq!(n.routes, mine);
    }
}

/// A router whose neighbour `n[1]` announced `t` destinations, drained.
fn with_table(t: u32, now: Instant) -> (Router, Vec<NodeId>) {
    let (mut r, n) = with_fake_neighbours(2, now);
    announce(&mut r, n[1], t, now);
    assert_eq!(r.routed_nodes(), t as usize);
    while r.poll_transmit().is_some() {}
    (r, n)
}

#[test]
fn one_datagram_of_wildcard_requests_queues_at_most_one_dump() {
    let now = Instant::now();
    let (mut r, n) = with_table(200, now);
    // What one honest wildcard costs: one full dump (once the link-up dump is a hello
    // interval old).
    let t1 = now + Duration::from_secs(5);
    send(
        &mut r,
        n[0],
        &[Tlv::RouteRequest(RouteRequest::Wildcard)],
        t1,
    );
    let one_dump = queued_bytes(&r, n[0]);
    assert!(one_dump > 200 * 100, "{one_dump}");
    while r.poll_transmit().is_some() {}

    // A datagram our own packer could produce (1200 bytes) full of wildcards: 599 TLVs, and
    // the largest UDP payload: 32,767. Both are refused whole, before any work.
    let mut t = t1 + Duration::from_secs(5);
    for id in &n {
        r.handle_message(*id, &hello_ihu(1), t).unwrap();
    }
    while r.poll_transmit().is_some() {}
    for count in [599, 32_767] {
        let flood = vec![Tlv::RouteRequest(RouteRequest::Wildcard); count];
        assert!(matches!(
            r.handle_message(n[0], &routing::encode(&flood), t),
            Err(RouteError::Wire(WireError::TooManyTlvs { .. }))
        ));
        assert_eq!(queued_bytes(&r, n[0]), 0);
    }
    assert_eq!(r.stats().too_many_tlvs, 2);

    // A sustained flood of the largest message allowed (64 wildcards), every 10 ms for 30 s:
    // at most one asked-for dump is ever pending, one goes out per hello interval (4 s) at
    // most, besides the periodic ones (every 16 s).
    let most = vec![Tlv::RouteRequest(RouteRequest::Wildcard); routing::MAX_TLVS_PER_MESSAGE];
    let msg = routing::encode(&most);
    let (mut total, mut worst) = (0, 0);
    for i in 0..3000u32 {
        t += Duration::from_millis(10);
        if i % 100 == 0 {
            for id in &n {
                r.handle_message(*id, &hello_ihu(2 + (i / 100) as u16), t)
                    .unwrap();
            }
            announce(&mut r, n[1], 200, t);
        }
        r.handle_message(n[0], &msg, t).unwrap();
        assert!(r.dump_wanted.is_empty(), "dumps are made at the flush");
        if r.poll_timeout().is_some_and(|d| d <= t) {
            r.handle_timeout(t);
        }
        let q = queued_bytes(&r, n[0]);
        worst = worst.max(q);
        total += q;
        while r.poll_transmit().is_some() {}
    }
    // The asked-for dump and a periodic one may meet in one step, never more.
    assert!(
        worst <= 2 * one_dump + 64,
        "{worst} bytes queued at once, one dump {one_dump}"
    );
    let dumps = total / one_dump;
    assert!(dumps <= 30 / 4 + 30 / 16 + 2, "{dumps} dumps in 30 s");
    let refused = r.stats().route_requests_refused;
    assert!(refused >= 3000 * 64 - 10, "{refused}");
}

#[test]
fn request_floods_are_held_to_a_budget_per_neighbour() {
    let now = Instant::now();
    let (mut r, n) = with_table(100, now);
    let specific = |i: u32| {
        Tlv::RouteRequest(RouteRequest::Specific {
            kind: PrefixKind::Node,
            originator: many(i % 100).id(),
        })
    };
    let seqreq = |i: u32| {
        Tlv::SeqnoRequest(SeqnoRequest {
            kind: PrefixKind::Node,
            hop_count: 64,
            seqno: Seqno(1000 + i),
            originator: many(i % 100).id(),
        })
    };
    // 64 specific route requests and 64 seqno requests every 100 ms for 10 s.
    let mut answered = 0;
    let mut t = now;
    for i in 0..100u32 {
        t += Duration::from_millis(100);
        if i % 10 == 0 {
            for id in &n {
                r.handle_message(*id, &hello_ihu(1 + i as u16), t).unwrap();
            }
        }
        let burst: Vec<Tlv> = (0..64).map(|k| specific(i * 64 + k)).collect();
        r.handle_message(n[0], &routing::encode(&burst), t).unwrap();
        let burst: Vec<Tlv> = (0..64).map(|k| seqreq(i * 64 + k)).collect();
        r.handle_message(n[0], &routing::encode(&burst), t).unwrap();
        for (to, tlv) in sent_tlvs(&mut r) {
            if to == n[0] && matches!(tlv, Tlv::Update(_)) || to == n[1] {
                answered += 1;
            }
        }
    }
    // The budget: a burst of 1024, then 128 a second.
    let s = r.stats();
    assert!(answered <= 1024 + 128 * 10 + 2 * 100 + 10, "{answered}");
    assert!(
        s.requests_rate_limited >= 2 * 6400 - 1024 - 128 * 10,
        "{s:?}"
    );
    // Forwarding is also held to one per destination per request timeout.
    assert!(s.seqno_requests_forwarded <= 100 * 5 + 100, "{s:?}");
}
/// The victim V (`routers[0]`) and X (`routers[1]`), linked, and a hostile neighbour A of X
/// driven by the test. Messages between V and X are delivered at once; X's messages to A are
/// kept for A to read.
struct Harvest {
    now: Instant,
    v: Router,
    x: Router,
    a: Identity,
    v_x_up: bool,
    to_a: Vec<Tlv>,
}

impl Harvest {
    fn new() -> Harvest {
        let now = Instant::now();
        let cfg = RouterConfig::default();
        let mut h = Harvest {
            now,
            v: Router::new(&ident(1), cfg.clone(), now),
            x: Router::new(&ident(2), cfg, now),
            a: ident(66),
            v_x_up: false,
            to_a: Vec::new(),
        };
        h.x.add_neighbour(h.a.id(), now);
        h.a_sends(&[]);
        h.relink();
        h
    }

    fn relink(&mut self) {
        let (v, x) = (self.v.id(), self.x.id());
        self.v.add_neighbour(x, self.now);
        self.x.add_neighbour(v, self.now);
        self.v_x_up = true;
        self.pump();
    }

    fn unlink(&mut self) {
        let (v, x) = (self.v.id(), self.x.id());
        self.v.remove_neighbour(x, self.now);
        self.x.remove_neighbour(v, self.now);
        self.v_x_up = false;
        self.pump();
    }

    /// A sends `tlvs` to X, with a hello and IHU so its link stays up.
    fn a_sends(&mut self, tlvs: &[Tlv]) {
        let mut all = routing::decode(&hello_ihu(0)).unwrap().tlvs;
        all.extend_from_slice(tlvs);
        let a = self.a.id();
        let _ = self.x.handle_message(a, &routing::encode(&all), self.now);
        self.pump();
    }

    fn pump(&mut self) {
        let (v, x, a) = (self.v.id(), self.x.id(), self.a.id());
        loop {
            let mut moved = false;
            while let Some((to, b)) = self.v.poll_transmit() {
                moved = true;
                if to == x && self.v_x_up {
                    let _ = self.x.handle_message(v, &b, self.now);
                }
            }
            while let Some((to, b)) = self.x.poll_transmit() {
                moved = true;
                if to == v && self.v_x_up {
                    let _ = self.v.handle_message(x, &b, self.now);
                } else if to == a {
                    self.to_a.extend(routing::decode(&b).unwrap().tlvs);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        for r in [&mut self.v, &mut self.x] {
            if r.poll_timeout().is_some_and(|t| t <= self.now) {
                r.handle_timeout(self.now);
            }
        }
        self.pump();
    }

    /// What A learnt: every signed announcement of V's address X sent it, by seqno.
    fn harvested(&mut self, into: &mut BTreeMap<u32, Update>) {
        let v = self.v.id();
        for t in self.to_a.drain(..) {
            if let Tlv::Update(u) = t
                && u.originator == v
                && u.kind == PrefixKind::Node
                && !u.is_retraction()
            {
                into.insert(u.seqno.0, u);
            }
        }
    }
}

#[test]
fn harvested_signatures_do_not_hijack_the_victims_route() {
    let mut h = Harvest::new();
    let (v, a) = (h.v.id(), h.a.id());
    assert_eq!(h.x.next_hop(&v), Some(v));
    let mut got = BTreeMap::new();
    // Harvest: 70,000 seqno requests for V's address, one every 10 ms, each asking for one
    // more than the newest signature A holds, enough to go round a 16-bit seqno space.
    for _ in 0..70_000 {
        h.harvested(&mut got);
        let want = got.keys().next_back().map_or(0, |s| s + 1);
        let req = Tlv::SeqnoRequest(SeqnoRequest {
            kind: PrefixKind::Node,
            hop_count: 64,
            seqno: Seqno(want),
            originator: v,
        });
        h.a_sends(&[req]);
        h.advance(Duration::from_millis(10));
    }
    h.harvested(&mut got);
    let cur = Seqno(h.v.seqno());
    let bumps = h.v.stats().seqno_bumps;
    eprintln!("harvested {} signatures, {bumps} bumps", got.len());
    // 700 s of asking bought at most one new seqno a second (here X's forwarding window,
    // one per 2 s, binds first; a neighbour of V itself meets V's one bump a second, see
    // below), and nothing ahead of V.
    assert!(bumps <= 701, "{bumps}");
    assert!(got.keys().all(|s| !Seqno(*s).is_newer_than(cur)));
    let xs = h.x.stats();
    assert!(xs.seqno_requests_suppressed > 0, "{xs:?}");
    assert!(xs.seqno_requests_forwarded <= 700 / 2 + 1, "{xs:?}");

    // Replay: the harvested announcement that looks newest to X, V's current one and the
    // oldest, all claiming V is A's neighbour (metric 0); then V's link to X flaps.
    let best = got
        .values()
        .max_by_key(|u| (u.seqno.is_newer_than(cur), u.seqno.0.wrapping_sub(cur.0)))
        .cloned();
    let oldest = got.values().next().cloned();
    let replay = |h: &mut Harvest| {
        let mut tlvs = Vec::new();
        for u in best.iter().chain(got.get(&cur.0)).chain(oldest.iter()) {
            tlvs.push(Tlv::Update(Update {
                metric: 0,
                interval: Duration::from_secs(16),
                ..u.clone()
            }));
        }
        h.a_sends(&tlvs);
    };
    replay(&mut h);
    assert_eq!(h.x.next_hop(&v), Some(v), "X keeps the direct route");
    h.unlink();
    for _ in 0..4 {
        replay(&mut h);
        h.advance(Duration::from_millis(500));
    }
    h.relink();
    for i in 0..120 {
        replay(&mut h);
        h.advance(Duration::from_millis(500));
        assert_ne!(
            h.x.next_hop(&v),
            Some(a),
            "hijacked {i} steps after the flap"
        );
        assert_eq!(h.x.next_hop(&v), Some(v));
    }
    assert!(h.x.stats().relay_metric_raised > 0);

    // The format 1 announcement the old code would have accepted is refused and counted.
    let mut legacy = vec![routing::VERSION, routing::tlv_type::LEGACY_UPDATE, 116];
    legacy.extend_from_slice(&[0; 116]);
    let before = h.x.stats().legacy_tlvs;
    h.x.handle_message(a, &legacy, h.now).unwrap();
    assert_eq!(h.x.stats().legacy_tlvs, before + 1);
}

#[test]
fn seqno_bumps_are_rate_limited_and_deferred_not_lost() {
    let now = Instant::now();
    let (mut r, n) = with_fake_neighbours(1, now);
    let me = r.id();
    let ask = |r: &mut Router, at: Instant| {
        let want = Seqno(r.seqno()).next();
        let req = Tlv::SeqnoRequest(SeqnoRequest {
            kind: PrefixKind::Node,
            hop_count: 1,
            seqno: want,
            originator: me,
        });
        send(r, n[0], &[req], at);
    };
    let s0 = r.seqno();
    ask(&mut r, now);
    assert_eq!(r.seqno(), s0 + 1, "the first request is served at once");
    for k in 1..50 {
        ask(&mut r, now + Duration::from_millis(k * 10));
    }
    assert_eq!(r.seqno(), s0 + 1, "50 requests in half a second: one bump");
    assert_eq!(r.poll_timeout(), Some(now + Duration::from_secs(1)));
    r.handle_timeout(now + Duration::from_secs(1));
    assert_eq!(
        r.seqno(),
        s0 + 2,
        "the deferred one, at the end of the interval"
    );
    let out = sent_tlvs(&mut r);
    assert!(
        out.iter()
            .any(|(_, t)| matches!(t, Tlv::Update(u) if u.originator == me && u.seqno.0 == s0 + 2))
    );
}

#[test]
fn routes_per_neighbour_and_in_total_are_capped_and_idle_ones_expire() {
    let now = Instant::now();
    let cfg = RouterConfig {
        max_routes: 6000,
        ..RouterConfig::default()
    };
    let per = cfg.max_routes_per_neighbour;
    assert_eq!(per, 4096);
    let mut r = Router::new(&ident(1), cfg, now);
    let n: Vec<NodeId> = (0..2).map(|i| ident(100 + i).id()).collect();
    for id in &n {
        r.add_neighbour(*id, now);
        r.handle_message(*id, &hello_ihu(0), now).unwrap();
    }
    // Each neighbour announces the same 5000 freshly minted originators, correctly signed,
    // with the longest interval the wire allows (so they would linger 38 minutes).
    let ups: Vec<Tlv> = (0..5000)
        .map(|i| {
            let mut u = update(&many(i), 1, 256);
            u.interval = Duration::from_millis(655_350);
            Tlv::Update(u)
        })
        .collect();
    for id in &n {
        for chunk in ups.chunks(8) {
            send(&mut r, *id, chunk, now);
        }
    }
    while r.poll_transmit().is_some() {}
    let count = |r: &Router, id: NodeId| r.routes(now).filter(|x| x.next_hop == id).count();
    assert_eq!(count(&r, n[0]), per, "one neighbour holds at most its cap");
    assert_eq!(count(&r, n[1]), 6000 - per, "the rest of the total");
    assert_eq!(r.routes(now).count(), 6000);
    assert_counts(&r);
    assert_eq!(r.stats().routes_refused, 2 * 5000 - 6000);
    // Refreshing an accepted route is not a new route: nothing more is refused.
    send(&mut r, n[0], &ups[..8], now);
    assert_eq!(r.stats().routes_refused, 2 * 5000 - 6000);

    // Idle: the links stay up but nothing is re-announced. Expiry is capped at 4 route
    // expiry times (224 s), not the 38 minutes the announced interval asked for.
    let mut t = now;
    for i in 1..=60u16 {
        t = now + Duration::from_secs(4 * u64::from(i));
        for id in &n {
            r.handle_message(*id, &hello_ihu(i), t).unwrap();
        }
        r.handle_timeout(t);
        while r.poll_transmit().is_some() {}
    }
    assert_eq!(r.routes(t).count(), 0);
    assert_eq!(r.total_routes, 0);
    assert!(r.neighbours.values().all(|x| x.routes == 0));
    // The room is back.
    send(&mut r, n[1], &ups[..8], t);
    assert_eq!(r.routes(t).count(), 8);
    send(&mut r, n[0], &ups[..4], t);
    assert_counts(&r);
    // Removing a neighbour releases its share.
    r.remove_neighbour(n[1], t);
    assert_counts(&r);
    assert_eq!(r.total_routes, 4);
}

#[test]
fn signature_floods_are_held_to_a_verification_budget() {
    let now = Instant::now();
    let (mut r, n) = with_fake_neighbours(2, now);
    // 64 updates with bad signatures every 10 ms for 10 s: 64,000 verifications asked for.
    let mut bad = update(&many(1), 1, 256);
    bad.signature = [1; 64];
    let msg = routing::encode(&vec![Tlv::Update(bad); 64]);
    let mut t = now;
    for i in 0..1000u32 {
        t += Duration::from_millis(10);
        if i % 100 == 0 {
            for id in &n {
                r.handle_message(*id, &hello_ihu(1 + (i / 100) as u16), t)
                    .unwrap();
            }
        }
        r.handle_message(n[0], &msg, t).unwrap();
        while r.poll_transmit().is_some() {}
    }
    let s = r.stats();
    assert!(s.signatures_checked <= 4096 + 256 * 10, "{s:?}");
    assert_eq!(s.bad_signature, s.signatures_checked);
    assert!(s.verifications_refused >= 64_000 - 4096 - 256 * 10, "{s:?}");
    // Our own address with a newer seqno and a bad signature (what a restart jump checks)
    // draws on the same budget.
    let mut own = update(&ident(1), r.seqno().wrapping_add(5), 256);
    own.signature = [2; 64];
    let before = r.stats();
    r.handle_message(n[0], &routing::encode(&vec![Tlv::Update(own); 64]), t)
        .unwrap();
    let after = r.stats();
    assert_eq!(after.signatures_checked, before.signatures_checked);
    assert_eq!(
        after.verifications_refused,
        before.verifications_refused + 64
    );
    // Another neighbour's genuine announcements are verified and used meanwhile.
    send(&mut r, n[1], &[Tlv::Update(update(&many(2), 1, 256))], t);
    assert_eq!(r.next_hop(&many(2).id()), Some(n[1]));
}
