//! Keeping the tables consistent: route selection after any change, link cost changes, seqno
//! requests against starvation, and the periodic expiry of routes, sources and requests
//! (RFC 8966 §3.5.4, §3.6, §3.8.2). Invariant: after `reselect(key)` the selection, the
//! forwarding table and the triggered-update set all agree with the route table.

use std::time::Instant;

use super::table::{self, Advertised, RouteKey};
use super::{PendingRequest, REQUEST_HOP_COUNT, REQUEST_RESENDS, RouteEvent, Router};
use crate::identity::NodeId;
use crate::wire::routing::{INFINITY, PrefixKind, Seqno, SeqnoRequest, Tlv};

/// A metric change smaller than this fraction (1/4) of the old metric, and below
/// [`MIN_TRIGGER_DELTA`], waits for the next periodic update instead of triggering one.
const TRIGGER_FRACTION: u16 = 4;
/// See [`TRIGGER_FRACTION`]; a quarter of a loss-free hop.
const MIN_TRIGGER_DELTA: u16 = 64;

impl Router {
    /// Re-run selection for `key` and propagate the consequences: forwarding table, events,
    /// triggered updates, and a seqno request if the destination just became unreachable.
    pub(super) fn reselect(&mut self, key: RouteKey, now: Instant) {
        let Some(dest) = self.dests.get(&key) else {
            return;
        };
        let new = table::select(dest, self.sources.get(&key), &self.cfg.policy, |n| {
            self.link_cost(n)
        });
        let snap = new.and_then(|n| dest.route(&n)).map(|r| Advertised {
            next_hop: r.neighbour,
            seqno: r.seqno,
            metric: table::add_metric(r.refmetric, self.link_cost(&r.neighbour)),
            price_per_mib: r.price_per_mib,
        });
        let old = dest.selected;
        let trigger = match (dest.advertised, snap) {
            (None, None) => false,
            (Some(a), Some(s)) => {
                a.next_hop != s.next_hop
                    || a.seqno != s.seqno
                    || a.price_per_mib != s.price_per_mib
                    || a.metric.abs_diff(s.metric)
                        > (a.metric / TRIGGER_FRACTION).max(MIN_TRIGGER_DELTA)
            }
            _ => true,
        };
        let score = snap.map(|s| self.cfg.policy.score(s.metric, s.price_per_mib));
        let empty =
            dest.routes.is_empty() && dest.advertised.is_none() && dest.retractions_left == 0;
        if let Some(d) = self.dests.get_mut(&key) {
            d.selected = new;
        }
        if trigger {
            self.triggered.insert(key);
        }
        if let (Some(p), Some(s)) = (self.requests.get(&key), snap)
            && s.seqno.is_at_least(p.seqno)
        {
            self.requests.remove(&key);
        }
        if old != new || key.kind == PrefixKind::Default {
            self.update_fib(key, snap.map(|s| (s.next_hop, s.metric)), score);
        }
        if key.kind == PrefixKind::Node
            && let Some(r) = new.and_then(|n| self.dests.get(&key)?.route(&n))
        {
            // The price can change without the next hop changing; metering reads it per frame.
            let price = (r.price_per_mib, r.price_epoch);
            self.fib.set_price(&key.originator, price);
        }
        if old != new {
            match snap {
                Some(s) => self.push_event(RouteEvent::RouteChanged {
                    key,
                    next_hop: s.next_hop,
                    metric: s.metric,
                }),
                None => {
                    self.push_event(RouteEvent::Unreachable(key));
                    // RFC 8966 §3.8.2.1: a lost route with no feasible alternative is repaired
                    // by asking the originator for a newer seqno.
                    self.request_seqno(key, None, now);
                }
            }
        }
        if new.is_none() && empty {
            self.dests.remove(&key);
        }
    }

    fn update_fib(&mut self, key: RouteKey, route: Option<(NodeId, u16)>, score: Option<u128>) {
        match key.kind {
            PrefixKind::Node => {
                if let Some(c) = self.fib.set_node(key.originator, route.map(|r| r.0)) {
                    self.push_event(RouteEvent::AddressCollision {
                        addr: c.addr,
                        nodes: c.nodes,
                    });
                }
            }
            PrefixKind::Default => {
                let policy = self.cfg.policy;
                let route = route.zip(score).map(|((nh, _), s)| (nh, s));
                self.fib.set_exit(key.originator, route, |cur, cand| {
                    policy.should_switch(cur, cand)
                });
            }
        }
    }

    /// Recompute a neighbour's link cost and, if it changed, every route through it.
    pub(super) fn refresh_link(&mut self, id: NodeId, now: Instant) {
        let rtt = self.cfg.rtt;
        let Some(n) = self.neighbours.get_mut(&id) else {
            return;
        };
        let was_up = n.cost < INFINITY;
        if !n.recompute(&rtt) {
            return;
        }
        let is_up = n.cost < INFINITY;
        if was_up != is_up {
            if is_up {
                self.push_event(RouteEvent::NeighbourUp(id));
                // A new neighbour learns our whole table at once rather than at the next
                // periodic update (what a wildcard route request would achieve, one trip sooner).
                self.queue_full_dump(id);
            } else {
                self.push_event(RouteEvent::NeighbourDown(id));
            }
        }
        let keys: Vec<RouteKey> = self
            .dests
            .iter()
            .filter(|(_, d)| d.route(&id).is_some())
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.reselect(key, now);
        }
    }

    /// Ask for a seqno newer than our feasibility distance for `key`, from `target` or from
    /// every usable neighbour (RFC 8966 §3.8.2.1). Does nothing without a source entry: then
    /// every update is feasible and there is nothing to ask for.
    pub(super) fn request_seqno(&mut self, key: RouteKey, target: Option<NodeId>, now: Instant) {
        let Some(src) = self.sources.get(&key) else {
            return;
        };
        let want = src.seqno.next();
        if self
            .requests
            .get(&key)
            .is_some_and(|p| p.seqno.is_at_least(want))
        {
            // Already asked; resends take care of loss.
            return;
        }
        let timeout = self.cfg.request_timeout;
        self.requests.insert(
            key,
            PendingRequest {
                seqno: want,
                resend_at: now + timeout,
                backoff: timeout,
                resends_left: REQUEST_RESENDS,
            },
        );
        self.send_seqno_request(key, want, target);
    }

    fn send_seqno_request(&mut self, key: RouteKey, seqno: Seqno, target: Option<NodeId>) {
        let targets: Vec<NodeId> = match target {
            Some(t) => vec![t],
            None => self.up_neighbours().collect(),
        };
        for t in targets {
            self.stats.seqno_requests_sent += 1;
            self.queue_tlv(
                t,
                Tlv::SeqnoRequest(SeqnoRequest {
                    kind: key.kind,
                    hop_count: REQUEST_HOP_COUNT,
                    seqno,
                    originator: key.originator,
                }),
            );
        }
    }

    /// Increase our own seqno, re-sign, and announce everywhere (RFC 8966 §3.8.1.2), at most
    /// once per `seqno_bump_interval`: a request within it is served by one bump when the
    /// interval ends. Every seqno we sign is announced at once, so with this rate nobody can
    /// hold a signature of ours that is ahead of what the mesh has heard (docs/routing.md).
    pub(super) fn bump_seqno(&mut self, now: Instant) {
        let allowed = self
            .last_bump
            .map_or(now, |t| t + self.cfg.seqno_bump_interval);
        if now >= allowed {
            self.raise_seqno(now);
        } else {
            self.stats.seqno_bumps_deferred += 1;
            self.bump_due = Some(allowed);
        }
    }

    /// The bump itself: next seqno, new signatures, triggered announcements.
    pub(super) fn raise_seqno(&mut self, now: Instant) {
        self.seqno = self.seqno.next();
        self.sign_own();
        self.stats.seqno_bumps += 1;
        self.last_bump = Some(now);
        self.bump_due = None;
        for key in self.own_keys() {
            self.triggered.insert(key);
        }
    }

    /// Neighbours whose link is usable.
    pub(super) fn up_neighbours(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.neighbours
            .iter()
            .filter(|(_, n)| n.cost < INFINITY)
            .map(|(id, _)| *id)
    }

    /// Expire routes, sources and requests; resend requests and retractions. Run every hello
    /// interval: expiry is accurate to one hello interval, which keeps `poll_timeout` O(1).
    pub(super) fn housekeeping(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut gone = Vec::new();
        for (key, d) in self.dests.iter_mut() {
            let before = d.routes.len();
            d.routes.retain(|r| {
                let keep = r.expires > now;
                if !keep {
                    gone.push(r.neighbour);
                }
                keep
            });
            if d.routes.len() != before {
                expired.push(*key);
            }
        }
        self.total_routes = self.total_routes.saturating_sub(gone.len());
        for id in gone {
            if let Some(n) = self.neighbours.get_mut(&id) {
                n.routes = n.routes.saturating_sub(1);
            }
        }
        for key in expired {
            self.reselect(key, now);
        }
        self.sources.retain(|_, s| s.gc_at > now);
        self.forwarded.retain(|_, f| f.until > now);

        let mut resend = Vec::new();
        self.requests.retain(|key, p| {
            if p.resend_at > now {
                return true;
            }
            if p.resends_left == 0 {
                return false;
            }
            p.resends_left -= 1;
            p.backoff *= 2;
            p.resend_at = now + p.backoff;
            resend.push((*key, p.seqno));
            true
        });
        for (key, seqno) in resend {
            self.send_seqno_request(key, seqno, None);
        }

        let mut retract = Vec::new();
        for (key, d) in self.dests.iter_mut() {
            if d.retractions_left > 0 && d.selected.is_none() {
                d.retractions_left -= 1;
                retract.push(*key);
            }
        }
        for key in retract {
            let seqno = self.sources.get(&key).map_or(Seqno(0), |s| s.seqno);
            self.queue_retraction_to_all(key, seqno);
        }
        self.dests.retain(|_, d| {
            !(d.routes.is_empty()
                && d.selected.is_none()
                && d.advertised.is_none()
                && d.retractions_left == 0)
        });
    }
}
