//! The signature harvest across hops: a hostile neighbour of X asks, as fast as it likes, for
//! newer seqnos of V two hops away (V - H - X - A), then replays what it got. Forwarding and
//! bumping are rate-limited at every hop, nothing ahead of V is ever signed, and X keeps the
//! honest path.

use std::collections::BTreeMap;

use super::*;

/// Real routers on a line 0 - 1 - ... - n-1, and the hostile A attached to the last one.
struct Line {
    now: Instant,
    r: Vec<Router>,
    a: Identity,
    to_a: Vec<Tlv>,
}

impl Line {
    fn new(n: u8) -> Line {
        let now = Instant::now();
        let cfg = RouterConfig::default();
        let mut l = Line {
            now,
            r: (0..n)
                .map(|i| Router::new(&ident(i + 1), cfg.clone(), now))
                .collect(),
            a: ident(66),
            to_a: Vec::new(),
        };
        for i in 1..l.r.len() {
            let (p, q) = (l.r[i - 1].id(), l.r[i].id());
            l.r[i - 1].add_neighbour(q, now);
            l.r[i].add_neighbour(p, now);
        }
        let (a, last) = (l.a.id(), l.r.len() - 1);
        l.r[last].add_neighbour(a, now);
        l.a_sends(&[]);
        l
    }

    fn a_sends(&mut self, tlvs: &[Tlv]) {
        let mut all = routing::decode(&hello_ihu(0)).unwrap().tlvs;
        all.extend_from_slice(tlvs);
        let (a, last) = (self.a.id(), self.r.len() - 1);
        let _ = self.r[last].handle_message(a, &routing::encode(&all), self.now);
        self.pump();
    }

    fn pump(&mut self) {
        let a = self.a.id();
        loop {
            let mut moved = false;
            for i in 0..self.r.len() {
                while let Some((to, b)) = self.r[i].poll_transmit() {
                    moved = true;
                    let from = self.r[i].id();
                    if to == a {
                        self.to_a.extend(routing::decode(&b).unwrap().tlvs);
                    } else if let Some(j) = self.r.iter().position(|x| x.id() == to) {
                        let _ = self.r[j].handle_message(from, &b, self.now);
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        for r in &mut self.r {
            if r.poll_timeout().is_some_and(|t| t <= self.now) {
                r.handle_timeout(self.now);
            }
        }
        self.pump();
    }
}

#[test]
fn a_harvest_across_hops_gets_nothing_ahead_and_the_honest_path_stays() {
    let mut l = Line::new(3);
    let (v, h, a) = (l.r[0].id(), l.r[1].id(), l.a.id());
    assert_eq!(l.r[2].next_hop(&v), Some(h));
    // 60 s of 62 seqno requests (a full message with A's hello and IHU) every 10 ms, each
    // asking further ahead than the newest signature A holds: 372,000 requests.
    let mut got: BTreeMap<u32, Update> = BTreeMap::new();
    for i in 0..6000 {
        for t in l.to_a.drain(..) {
            if let Tlv::Update(u) = t
                && u.originator == v
                && !u.is_retraction()
            {
                got.insert(u.seqno.0, u);
            }
        }
        let newest = got.keys().next_back().copied().unwrap_or(0);
        let reqs: Vec<Tlv> = (0..62)
            .map(|k| {
                Tlv::SeqnoRequest(SeqnoRequest {
                    kind: PrefixKind::Node,
                    hop_count: 64,
                    seqno: Seqno(newest.wrapping_add(k + 1)),
                    originator: v,
                })
            })
            .collect();
        l.a_sends(&reqs);
        // A replays the newest signature it holds, claiming to be V (metric 0).
        if let Some(u) = got.values().next_back() {
            let replay = Tlv::Update(Update {
                metric: 0,
                ..u.clone()
            });
            l.a_sends(&[replay]);
        }
        l.advance(Duration::from_millis(10));
        assert_eq!(
            l.r[2].next_hop(&v),
            Some(h),
            "X left the honest path at step {i}"
        );
    }
    let cur = Seqno(l.r[0].seqno());
    eprintln!(
        "{} signatures; V {:?}\nH {:?}\nX {:?}",
        got.len(),
        l.r[0].stats(),
        l.r[1].stats(),
        l.r[2].stats()
    );
    assert!(got.keys().all(|s| !Seqno(*s).is_newer_than(cur)));
    let (sv, sh, sx) = (l.r[0].stats(), l.r[1].stats(), l.r[2].stats());
    // Each hop forwards one request per destination per request timeout (2 s): 30 in 60 s.
    assert!(sx.seqno_requests_forwarded <= 31, "{sx:?}");
    assert!(sh.seqno_requests_forwarded <= 31, "{sh:?}");
    assert!(sv.seqno_bumps <= 31, "{sv:?}");
    assert!(
        sx.requests_rate_limited > 0 && sx.seqno_requests_suppressed > 0,
        "{sx:?}"
    );
    assert!(sx.relay_metric_raised > 0, "{sx:?}");
    assert_ne!(l.r[2].next_hop(&v), Some(a));
}
