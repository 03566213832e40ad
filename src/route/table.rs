//! The route table (one entry per destination per neighbour), the source table of feasibility
//! distances, the feasibility condition (RFC 8966 §3.5.1) and price-aware route selection
//! (RFC 8966 §3.6). Invariant: `select` only ever returns a route that has a finite metric and
//! is feasible against the source table, whatever the policy weights, which is what keeps the
//! network loop-free.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use crate::identity::NodeId;
use crate::wire::routing::{INFINITY, PrefixKind, SIGNATURE_LEN, Seqno};

/// What a route leads to: a node's addresses or an exit's default routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    /// The node that announced it.
    pub originator: NodeId,
    /// What it announced.
    pub kind: PrefixKind,
}

impl RouteKey {
    /// The prefixes this key stands for, as (address, prefix length): the originator's /128 and
    /// /32, or `::/0` and `0.0.0.0/0`.
    pub fn prefixes(&self) -> [(IpAddr, u8); 2] {
        match self.kind {
            PrefixKind::Node => [
                (IpAddr::V6(self.originator.ipv6()), 128),
                (IpAddr::V4(self.originator.ipv4()), 32),
            ],
            PrefixKind::Default => [
                (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
                (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            ],
        }
    }
}

/// How selection weighs price against metric, and how much better a route must be to replace
/// the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectionPolicy {
    /// Metric units one unit of `price_per_mib` is worth, in thousandths. 0 ignores price.
    pub price_weight_milli: u64,
    /// A new route must beat the current one by this percentage of the current score...
    pub hysteresis_percent: u8,
    /// ...and by at least this many metric units.
    pub hysteresis_min: u16,
    /// Routes priced above this per MiB are never selected (`[pricing] max_price_per_mib`).
    pub max_price_per_mib: Option<u64>,
}

impl Default for SelectionPolicy {
    fn default() -> Self {
        SelectionPolicy {
            price_weight_milli: 0,
            hysteresis_percent: 10,
            hysteresis_min: 16,
            max_price_per_mib: None,
        }
    }
}

impl SelectionPolicy {
    /// The score of a route, in thousandths of a metric unit; lower is better.
    pub fn score(&self, metric: u16, price_per_mib: u64) -> u128 {
        u128::from(metric) * 1000 + u128::from(price_per_mib) * u128::from(self.price_weight_milli)
    }

    /// Whether `candidate` is enough better than `current` to switch (hysteresis).
    pub fn should_switch(&self, current: u128, candidate: u128) -> bool {
        let margin = (current * u128::from(self.hysteresis_percent) / 100)
            .max(u128::from(self.hysteresis_min) * 1000);
        candidate.saturating_add(margin) < current
    }
}

/// One neighbour's announcement of one destination.
#[derive(Clone, Debug)]
pub(crate) struct RouteEntry {
    pub neighbour: NodeId,
    pub seqno: Seqno,
    /// The metric the neighbour advertised (RFC 8966 §3.2.6, the route's "advertised metric").
    pub refmetric: u16,
    pub price_per_mib: u64,
    pub price_epoch: u32,
    pub signature: [u8; SIGNATURE_LEN],
    pub expires: Instant,
    pub updated: Instant,
}

/// What we last advertised for a destination, to decide when a triggered update is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Advertised {
    pub next_hop: NodeId,
    pub seqno: Seqno,
    pub metric: u16,
    pub price_per_mib: u64,
}

/// Everything known about one destination.
#[derive(Clone, Debug, Default)]
pub(crate) struct Dest {
    /// At most one entry per neighbour.
    pub routes: Vec<RouteEntry>,
    /// The neighbour of the selected route.
    pub selected: Option<NodeId>,
    /// Our last finite advertisement; `None` once retracted.
    pub advertised: Option<Advertised>,
    /// Retractions still to repeat, because a lost retraction leaves a black hole until expiry.
    pub retractions_left: u8,
}

impl Dest {
    pub fn route(&self, neighbour: &NodeId) -> Option<&RouteEntry> {
        self.routes.iter().find(|r| r.neighbour == *neighbour)
    }

    pub fn route_mut(&mut self, neighbour: &NodeId) -> Option<&mut RouteEntry> {
        self.routes.iter_mut().find(|r| r.neighbour == *neighbour)
    }

    pub fn selected_route(&self) -> Option<&RouteEntry> {
        self.selected.as_ref().and_then(|n| self.route(n))
    }

    /// True if some stored route already carries exactly this signed (seqno, signature): it was
    /// verified when stored, and Ed25519 signatures are deterministic, so copies from other
    /// neighbours need no second verification.
    pub fn has_verified(&self, seqno: Seqno, sig: &[u8; SIGNATURE_LEN]) -> bool {
        self.routes
            .iter()
            .any(|r| r.seqno == seqno && r.signature == *sig)
    }
}

/// A source table entry (RFC 8966 §3.2.5): the feasibility distance, i.e. the best
/// (seqno, metric) we advertised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Source {
    pub seqno: Seqno,
    pub metric: u16,
    /// When the entry may be forgotten (RFC 8966 Appendix B: source GC time).
    pub gc_at: Instant,
}

/// The feasibility condition (RFC 8966 §3.5.1): an update (seqno, metric) is feasible when
/// there is no source entry, it is a retraction, its seqno is newer, or its seqno is equal and
/// its metric strictly smaller.
pub(crate) fn is_feasible(source: Option<&Source>, seqno: Seqno, metric: u16) -> bool {
    match source {
        _ if metric == INFINITY => true,
        None => true,
        Some(s) => seqno.is_newer_than(s.seqno) || (seqno == s.seqno && metric < s.metric),
    }
}

/// Maintain the feasibility distance after advertising (seqno, metric) (RFC 8966 §3.7.3).
pub(crate) fn note_advertised(
    source: &mut Option<Source>,
    seqno: Seqno,
    metric: u16,
    gc_at: Instant,
) {
    if metric == INFINITY {
        return;
    }
    match source {
        Some(s) if seqno == s.seqno => {
            s.metric = s.metric.min(metric);
            s.gc_at = gc_at;
        }
        Some(s) if s.seqno.is_newer_than(seqno) => s.gc_at = gc_at,
        _ => {
            *source = Some(Source {
                seqno,
                metric,
                gc_at,
            })
        }
    }
}

/// Metric addition (RFC 8966 §3.5.2 "M(c, m)"): saturating, infinity absorbs.
pub(crate) fn add_metric(refmetric: u16, cost: u16) -> u16 {
    if refmetric == INFINITY || cost == INFINITY {
        return INFINITY;
    }
    refmetric.saturating_add(cost)
}

/// Choose the route for `dest`: the best-scoring feasible finite route, except that the current
/// selection is kept unless a candidate beats it by the hysteresis margin (RFC 8966 §3.6
/// allows any policy among feasible routes). `cost` gives a neighbour's link cost.
pub(crate) fn select(
    dest: &Dest,
    source: Option<&Source>,
    policy: &SelectionPolicy,
    cost: impl Fn(&NodeId) -> u16,
) -> Option<NodeId> {
    let usable = |r: &RouteEntry| {
        let metric = add_metric(r.refmetric, cost(&r.neighbour));
        let affordable = policy
            .max_price_per_mib
            .is_none_or(|max| r.price_per_mib <= max);
        (metric < INFINITY && affordable && is_feasible(source, r.seqno, r.refmetric))
            .then(|| policy.score(metric, r.price_per_mib))
    };
    // Ties go to the lower neighbour id so that selection is deterministic.
    let best = dest
        .routes
        .iter()
        .filter_map(|r| usable(r).map(|s| (s, r.neighbour)))
        .min()?;
    let current = dest
        .selected_route()
        .and_then(|r| usable(r).map(|s| (s, r.neighbour)));
    match current {
        Some((cur, n)) if !policy.should_switch(cur, best.0) => Some(n),
        _ => Some(best.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn id(n: u8) -> NodeId {
        Identity::from_secret([n; 32]).id()
    }

    fn entry(n: u8, seqno: u32, refmetric: u16, price: u64, now: Instant) -> RouteEntry {
        RouteEntry {
            neighbour: id(n),
            seqno: Seqno(seqno),
            refmetric,
            price_per_mib: price,
            price_epoch: 0,
            signature: [0; 64],
            expires: now,
            updated: now,
        }
    }

    #[test]
    fn feasibility_condition() {
        let now = Instant::now();
        let src = Source {
            seqno: Seqno(10),
            metric: 500,
            gc_at: now,
        };
        let s = Some(&src);
        assert!(is_feasible(None, Seqno(0), 1));
        assert!(is_feasible(s, Seqno(10), 499));
        assert!(
            !is_feasible(s, Seqno(10), 500),
            "equal metric is not feasible"
        );
        assert!(!is_feasible(s, Seqno(10), 501));
        assert!(is_feasible(s, Seqno(11), 60000), "newer seqno, any metric");
        assert!(
            !is_feasible(s, Seqno(9), 1),
            "older seqno, even a tiny metric"
        );
        assert!(
            is_feasible(s, Seqno(9), INFINITY),
            "retractions are always feasible"
        );
        // Across the wrap: u32::MAX is older than 10, 2 is newer than u32::MAX - 5.
        assert!(!is_feasible(s, Seqno(u32::MAX), 1));
        let wrapped = Source {
            seqno: Seqno(u32::MAX - 5),
            ..src
        };
        assert!(is_feasible(Some(&wrapped), Seqno(2), 9000));
    }

    #[test]
    fn feasibility_distance_only_decreases_within_a_seqno() {
        let now = Instant::now();
        let mut s = None;
        note_advertised(&mut s, Seqno(5), 700, now);
        note_advertised(&mut s, Seqno(5), 900, now);
        assert_eq!(s.map(|s| s.metric), Some(700));
        note_advertised(&mut s, Seqno(5), 300, now);
        assert_eq!(s.map(|s| s.metric), Some(300));
        note_advertised(&mut s, Seqno(4), 100, now);
        assert_eq!(s.map(|s| (s.seqno, s.metric)), Some((Seqno(5), 300)));
        note_advertised(&mut s, Seqno(6), 900, now);
        assert_eq!(s.map(|s| (s.seqno, s.metric)), Some((Seqno(6), 900)));
        note_advertised(&mut s, Seqno(7), INFINITY, now);
        assert_eq!(s.map(|s| s.seqno), Some(Seqno(6)));
    }

    #[test]
    fn selection_is_min_metric_without_price_and_never_unfeasible() {
        let now = Instant::now();
        let p = SelectionPolicy::default();
        let mut d = Dest {
            routes: vec![
                entry(1, 10, 300, 0, now),
                entry(2, 10, 100, 0, now),
                entry(3, 9, 10, 0, now),
            ],
            ..Dest::default()
        };
        let src = Source {
            seqno: Seqno(10),
            metric: 400,
            gc_at: now,
        };
        let cost = |_: &NodeId| 256;
        // Neighbour 3 has the lowest metric but an old seqno: unfeasible.
        assert_eq!(select(&d, Some(&src), &p, cost), Some(id(2)));
        assert_eq!(select(&d, None, &p, cost), Some(id(3)));
        // Neighbour 2's link is down: infinite metric, not selectable.
        let down = |n: &NodeId| if *n == id(2) { INFINITY } else { 256 };
        assert_eq!(select(&d, Some(&src), &p, down), Some(id(1)));
        d.routes.retain(|r| r.neighbour == id(3));
        assert_eq!(select(&d, Some(&src), &p, cost), None);
    }

    #[test]
    fn hysteresis_keeps_the_current_route_unless_clearly_better() {
        let now = Instant::now();
        let p = SelectionPolicy::default();
        let mut d = Dest {
            routes: vec![entry(1, 1, 1000, 0, now), entry(2, 1, 950, 0, now)],
            selected: Some(id(1)),
            ..Dest::default()
        };
        let cost = |_: &NodeId| 256;
        assert_eq!(select(&d, None, &p, cost), Some(id(1)), "5% better: stay");
        d.routes[1].refmetric = 800;
        assert_eq!(
            select(&d, None, &p, cost),
            Some(id(2)),
            "20% better: switch"
        );
    }

    #[test]
    fn price_weight_trades_price_against_metric() {
        let now = Instant::now();
        let cheap_far = entry(1, 1, 1024, 0, now);
        let dear_near = entry(2, 1, 256, 1000, now);
        let d = Dest {
            routes: vec![cheap_far, dear_near],
            ..Dest::default()
        };
        let cost = |_: &NodeId| 256;
        let free = SelectionPolicy::default();
        assert_eq!(select(&d, None, &free, cost), Some(id(2)));
        // One price unit worth one metric unit: 1000 extra price outweighs 768 extra metric.
        let frugal = SelectionPolicy {
            price_weight_milli: 1000,
            ..free
        };
        assert_eq!(select(&d, None, &frugal, cost), Some(id(1)));
    }
}
