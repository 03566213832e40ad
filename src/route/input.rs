//! Handling of received routing messages: hellos and IHUs feed link state, updates feed the
//! route table (after the signature and feasibility checks), requests are answered or
//! forwarded (RFC 8966 §3.4, §3.5, §3.8). Invariants: an update with a finite metric enters the
//! table only if its originator's signature verified; nothing here panics on peer input; what
//! a neighbour can make us do is bounded (route caps, request and verification budgets, one
//! pending dump, rate-limited seqno bumps and forwarding; docs/routing.md).

use std::time::Instant;

use super::limits::MAX_EXPIRY_FACTOR;
use super::neighbour::NOMINAL_COST;
use super::table::{self, RouteEntry, RouteKey};
use super::{Forwarded, RouteError, Router};
use crate::identity::NodeId;
use crate::wire::routing::{
    self, Hello, Ihu, RouteRequest, Seqno, SeqnoRequest, Tlv, Update, WireError,
};

impl Router {
    /// Process one routing message from neighbour `from`. Bad signatures, unfeasible updates
    /// and unknown TLVs are counted in [`Router::stats`], not errors.
    pub fn handle_message(
        &mut self,
        from: NodeId,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), RouteError> {
        self.stats.messages_received += 1;
        let decoded = routing::decode(bytes).inspect_err(|e| {
            self.stats.malformed += 1;
            if matches!(e, WireError::TooManyTlvs { .. }) {
                self.stats.too_many_tlvs += 1;
            }
        })?;
        if !self.neighbours.contains_key(&from) {
            self.stats.unknown_neighbour += 1;
            return Err(RouteError::UnknownNeighbour(from));
        }
        self.stats.skipped_tlvs += decoded.skipped as u64;
        self.stats.legacy_tlvs += decoded.legacy as u64;
        for tlv in decoded.tlvs {
            match tlv {
                Tlv::Hello(h) => self.on_hello(from, h, now),
                Tlv::Ihu(i) => self.on_ihu(from, i, now),
                Tlv::Update(u) => self.on_update(from, u, now),
                Tlv::RouteRequest(r) => self.on_route_request(from, r, now),
                Tlv::SeqnoRequest(r) => self.on_seqno_request(from, r, now),
            }
        }
        self.flush(now);
        Ok(())
    }

    fn on_hello(&mut self, from: NodeId, h: Hello, now: Instant) {
        let Some(n) = self.neighbours.get_mut(&from) else {
            return;
        };
        let was_deaf = n.rxcost() == routing::INFINITY;
        n.on_hello(h.seqno, h.interval, now);
        if was_deaf {
            // First hello (or first after silence): answer with an IHU at once so the
            // neighbour can use the link without waiting for our next hello tick.
            self.queue_ihu(from);
        }
        self.refresh_link(from, now);
    }

    fn on_ihu(&mut self, from: NodeId, i: Ihu, now: Instant) {
        let fallback = self.cfg.hello_interval;
        if let Some(n) = self.neighbours.get_mut(&from) {
            n.on_ihu(i.rxcost, i.interval, fallback, now);
            self.refresh_link(from, now);
        }
    }

    /// Route acquisition (RFC 8966 §3.5.3), with the signature check added in front.
    fn on_update(&mut self, from: NodeId, mut u: Update, now: Instant) {
        self.stats.updates_received += 1;
        if from != u.originator && u.metric < NOMINAL_COST {
            // Only the originator itself is at distance 0, and every link costs at least a
            // loss-free hop (neighbour.rs floors it): a relay claiming less is lying, and a
            // replayed signature must not buy a better metric than adjacency.
            u.metric = NOMINAL_COST;
            self.stats.relay_metric_raised += 1;
        }
        let key = RouteKey {
            originator: u.originator,
            kind: u.kind,
        };
        if u.originator == self.id {
            self.on_own_update(from, &u, now);
            return;
        }
        if u.is_retraction() {
            // Unsigned on purpose: a retraction only withdraws the sender's own route, which
            // a neighbour can always do by simply dropping our traffic.
            let gone = self
                .dests
                .get_mut(&key)
                .and_then(|d| d.route_mut(&from))
                .map(|r| {
                    r.refmetric = routing::INFINITY;
                    r.updated = now;
                });
            if gone.is_some() {
                self.reselect(key, now);
            }
            return;
        }
        // Everything that needs no signature is decided first, so refusals cost no
        // verification: a replay older than what this neighbour holds, a new route over the caps.
        let feasible = table::is_feasible(self.sources.get(&key), u.seqno, u.metric);
        let held = self
            .dests
            .get(&key)
            .and_then(|d| d.route(&from))
            .map(|r| r.seqno);
        let room = self.total_routes < self.cfg.max_routes
            && self
                .neighbours
                .get(&from)
                .is_some_and(|n| n.routes < self.cfg.max_routes_per_neighbour);
        match held {
            // Older than what this neighbour already told us: a reordered or replayed
            // announcement. Letting it unselect a good route would hand a replaying neighbour
            // a cheap way to cut us off.
            Some(s) if !feasible && s.is_newer_than(u.seqno) => {
                self.stats.unfeasible += 1;
                return;
            }
            None if !room => {
                if feasible {
                    self.stats.routes_refused += 1;
                }
                return;
            }
            _ => {}
        }
        let verified = self
            .dests
            .get(&key)
            .is_some_and(|d| d.has_verified(u.seqno, &u.signature));
        if !verified && !self.signature_ok(from, &u, now) {
            return;
        }
        if !feasible {
            self.stats.unfeasible += 1;
        }
        let expiry = self
            .cfg
            .route_expiry
            .max(u.interval * 7 / 2)
            .min(self.cfg.route_expiry * MAX_EXPIRY_FACTOR);
        let mut inserted = false;
        let dest = self.dests.entry(key).or_default();
        match dest.route_mut(&from) {
            Some(r) => {
                // RFC 8966 §3.5.3: the entry is updated even when unfeasible; selection below
                // then refuses to use it.
                r.seqno = u.seqno;
                r.refmetric = u.metric;
                r.price_per_mib = u.price_per_mib;
                r.price_epoch = u.price_epoch;
                r.signature = u.signature;
                r.expires = now + expiry;
                r.updated = now;
            }
            None if feasible => {
                inserted = true;
                dest.routes.push(RouteEntry {
                    neighbour: from,
                    seqno: u.seqno,
                    refmetric: u.metric,
                    price_per_mib: u.price_per_mib,
                    price_epoch: u.price_epoch,
                    signature: u.signature,
                    expires: now + expiry,
                    updated: now,
                });
            }
            // RFC 8966 §3.5.3: an unfeasible update for a route we do not have is ignored...
            None => {
                if dest.routes.is_empty() && dest.advertised.is_none() && dest.retractions_left == 0
                {
                    self.dests.remove(&key);
                }
            }
        }
        if inserted {
            self.total_routes += 1;
            if let Some(n) = self.neighbours.get_mut(&from) {
                n.routes += 1;
            }
        }
        self.reselect(key, now);
        if !feasible && self.dests.get(&key).is_none_or(|d| d.selected.is_none()) {
            // ...but if we are starved, it shows the neighbour has a route that a newer seqno
            // would make usable: ask it (RFC 8966 §3.8.2.2).
            self.request_seqno(key, Some(from), now);
        }
    }

    /// Our own announcement came back. If it carries a seqno newer than ours (we restarted and
    /// lost our seqno), jump past it so our announcements are feasible again.
    /// The jump is not rate-limited: only our own signatures can cause one, and after jumping
    /// past the newest of them none is newer. The verification is, like any other.
    /// Verify `u`'s signature within `from`'s verification budget, counting both outcomes.
    fn signature_ok(&mut self, from: NodeId, u: &Update, now: Instant) -> bool {
        if !self.verify_budget(from, now) {
            return false;
        }
        self.stats.signatures_checked += 1;
        if !u.verify_signature() {
            self.stats.bad_signature += 1;
            return false;
        }
        true
    }

    fn on_own_update(&mut self, from: NodeId, u: &Update, now: Instant) {
        if u.is_retraction() || !u.seqno.is_newer_than(self.seqno) {
            return;
        }
        if !self.signature_ok(from, u, now) {
            return;
        }
        self.seqno = u.seqno;
        self.raise_seqno(now);
    }

    /// RFC 8966 §3.8.1.1.
    fn on_route_request(&mut self, from: NodeId, r: RouteRequest, now: Instant) {
        match r {
            RouteRequest::Wildcard => {
                // One dump pending per neighbour at most, and one per hello interval: it gets
                // every route at each periodic update anyway.
                let recent = self.neighbours.get(&from).is_none_or(|n| {
                    n.dumped_at
                        .is_some_and(|t| now < t + self.cfg.hello_interval)
                });
                if recent || !self.dump_wanted.insert(from) {
                    self.stats.route_requests_refused += 1;
                }
            }
            RouteRequest::Specific { kind, originator } => {
                if !self.request_budget(from, now) {
                    return;
                }
                let key = RouteKey { originator, kind };
                if !self.queue_advert(key, &[from], now) {
                    let seqno = self.sources.get(&key).map_or(Seqno(0), |s| s.seqno);
                    self.queue_retraction(from, key, seqno);
                }
            }
        }
    }

    /// RFC 8966 §3.8.1.2.
    fn on_seqno_request(&mut self, from: NodeId, r: SeqnoRequest, now: Instant) {
        if !self.request_budget(from, now) {
            return;
        }
        let key = RouteKey {
            originator: r.originator,
            kind: r.kind,
        };
        if r.originator == self.id {
            if r.seqno.is_newer_than(self.seqno) {
                // Raises our seqno by one (at most once per `seqno_bump_interval`) and
                // triggers announcements to every neighbour.
                self.bump_seqno(now);
            } else {
                self.queue_advert(key, &[from], now);
            }
            return;
        }
        let selected = self.dests.get(&key).and_then(|d| d.selected_route());
        if let Some(sel) = selected {
            let metric = table::add_metric(sel.refmetric, self.link_cost(&sel.neighbour));
            if metric < routing::INFINITY && sel.seqno.is_at_least(r.seqno) {
                self.queue_advert(key, &[from], now);
                return;
            }
        }
        if r.hop_count < 2 {
            return;
        }
        // One forwarded request per destination per request timeout, whatever seqno it asks
        // for: the originator raises its seqno by one per request anyway, and requesters
        // resend (RFC 8966 §3.8.1.2 leaves duplicate suppression to the implementation).
        if self.forwarded.get(&key).is_some_and(|f| f.until > now) {
            self.stats.seqno_requests_suppressed += 1;
            return;
        }
        // Forward towards the originator: the selected route's neighbour, else any neighbour
        // with a finite route, never back to the requester.
        let Some(dest) = self.dests.get(&key) else {
            return;
        };
        let usable = |r: &&RouteEntry| {
            r.neighbour != from
                && table::add_metric(r.refmetric, self.link_cost(&r.neighbour)) < routing::INFINITY
        };
        let target =
            dest.selected_route()
                .filter(&usable)
                .or_else(|| {
                    dest.routes.iter().filter(&usable).min_by_key(|r| {
                        table::add_metric(r.refmetric, self.link_cost(&r.neighbour))
                    })
                })
                .map(|r| r.neighbour);
        let Some(target) = target else {
            return;
        };
        self.forwarded.insert(
            key,
            Forwarded {
                until: now + self.cfg.request_timeout,
            },
        );
        self.stats.seqno_requests_forwarded += 1;
        self.queue_tlv(
            target,
            Tlv::SeqnoRequest(SeqnoRequest {
                hop_count: r.hop_count - 1,
                ..r
            }),
        );
    }

    /// Take one request from `from`'s budget; false (and counted) when it is spent.
    fn request_budget(&mut self, from: NodeId, now: Instant) -> bool {
        let ok = self
            .neighbours
            .get_mut(&from)
            .is_some_and(|n| n.requests.take(now));
        if !ok {
            self.stats.requests_rate_limited += 1;
        }
        ok
    }

    /// Take one verification from `from`'s budget; false (and counted) when it is spent.
    fn verify_budget(&mut self, from: NodeId, now: Instant) -> bool {
        let ok = self
            .neighbours
            .get_mut(&from)
            .is_some_and(|n| n.verifications.take(now));
        if !ok {
            self.stats.verifications_refused += 1;
        }
        ok
    }
}
