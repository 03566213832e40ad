//! Everything the router sends: hellos and IHUs, periodic and triggered updates, retractions,
//! and the packing of TLVs into messages (RFC 8966 §3.7). Invariants: every finite update we
//! send first updates the source table (RFC 8966 §3.7.3), so our feasibility distance never
//! exceeds what a neighbour heard from us; a route is never advertised to its own next hop
//! (split horizon); no message exceeds `max_message_len` unless a single TLV does.

use std::time::{Duration, Instant};

use super::table::{self, Advertised, RouteKey};
use super::{RETRACTION_SENDS, Router};
use crate::identity::NodeId;
use crate::wire::routing::{
    self, Hello, INFINITY, Ihu, MAX_TLVS_PER_MESSAGE, PrefixKind, Seqno, Tlv, Update,
};

impl Router {
    /// Run the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.bump_due.is_some_and(|t| now >= t) {
            self.raise_seqno(now);
        }
        if now >= self.next_hello {
            self.hello_tick(now);
            self.next_hello = next_deadline(self.next_hello, self.cfg.hello_interval, now);
        }
        if now >= self.next_update {
            let adverts = self.all_adverts(now);
            let ids: Vec<NodeId> = self.up_neighbours().collect();
            for id in ids {
                // This is a full dump: a pending one would only repeat it.
                self.dump_wanted.remove(&id);
                if let Some(n) = self.neighbours.get_mut(&id) {
                    n.dumped_at = Some(now);
                }
                self.queue_adverts(id, &adverts);
            }
            self.next_update = next_deadline(self.next_update, self.cfg.update_interval, now);
        }
        self.flush(now);
    }

    /// The next control message to send, and the neighbour to send it to.
    pub fn poll_transmit(&mut self) -> Option<(NodeId, Vec<u8>)> {
        let m = self.outbox.pop_front()?;
        self.stats.messages_sent += 1;
        Some(m)
    }

    /// Hellos and IHUs to every neighbour, then housekeeping.
    fn hello_tick(&mut self, now: Instant) {
        let ids: Vec<NodeId> = self.neighbours.keys().copied().collect();
        for id in ids {
            if let Some(n) = self.neighbours.get_mut(&id) {
                n.tick(now);
            }
            self.queue_hello(id, now);
            self.queue_ihu(id);
            self.refresh_link(id, now);
        }
        self.housekeeping(now);
    }

    pub(super) fn queue_hello(&mut self, id: NodeId, _now: Instant) {
        let interval = self.cfg.hello_interval;
        if let Some(n) = self.neighbours.get_mut(&id) {
            let seqno = n.tx_hello_seqno;
            n.tx_hello_seqno = seqno.next();
            self.queue_tlv(id, Tlv::Hello(Hello { seqno, interval }));
        }
    }

    pub(super) fn queue_ihu(&mut self, id: NodeId) {
        let interval = self.cfg.hello_interval;
        if let Some(n) = self.neighbours.get(&id) {
            let rxcost = n.rxcost();
            self.queue_tlv(id, Tlv::Ihu(Ihu { rxcost, interval }));
        }
    }

    pub(super) fn queue_tlv(&mut self, to: NodeId, tlv: Tlv) {
        if matches!(tlv, Tlv::Update(_)) {
            self.stats.updates_sent += 1;
        }
        self.pending.entry(to).or_default().push(tlv);
    }

    /// The prefixes we originate.
    pub(super) fn own_keys(&self) -> impl Iterator<Item = RouteKey> + use<> {
        let id = self.id;
        let exit = self.cfg.exit;
        [PrefixKind::Node, PrefixKind::Default]
            .into_iter()
            .filter(move |k| *k == PrefixKind::Node || exit)
            .map(move |kind| RouteKey {
                originator: id,
                kind,
            })
    }

    /// Our current announcement for `key` and the neighbour it must not go to (its next hop),
    /// or `None` if we have nothing to announce. Records it as advertised (RFC 8966 §3.7.3).
    fn make_advert(&mut self, key: RouteKey, now: Instant) -> Option<(Update, Option<NodeId>)> {
        let interval = self.cfg.update_interval;
        if key.originator == self.id {
            if key.kind == PrefixKind::Default && !self.cfg.exit {
                return None;
            }
            let (price_per_mib, signature) = match key.kind {
                // Delivering to ourselves is free; an exit bills its fee for the uplink.
                PrefixKind::Node => (0, self.own_sig_node),
                PrefixKind::Default => (self.cfg.exit_fee_per_mib, self.own_sig_default),
            };
            let u = Update {
                kind: key.kind,
                interval,
                seqno: self.seqno,
                metric: 0,
                price_per_mib,
                price_epoch: self.cfg.price_epoch,
                originator: self.id,
                signature,
            };
            return Some((u, None));
        }
        let dest = self.dests.get(&key)?;
        let r = dest.selected_route()?;
        let metric = table::add_metric(r.refmetric, self.link_cost(&r.neighbour));
        if metric == INFINITY {
            return None;
        }
        let u = Update {
            kind: key.kind,
            interval,
            seqno: r.seqno,
            metric,
            // Each hop bills its own fee on top of what its next hop bills (DESIGN.md §4).
            price_per_mib: r.price_per_mib.saturating_add(self.cfg.fee_per_mib),
            // The epoch of the price *we* bill: payer and payee meter in our epochs.
            price_epoch: self.cfg.price_epoch,
            originator: key.originator,
            signature: r.signature,
        };
        let adv = Advertised {
            next_hop: r.neighbour,
            seqno: r.seqno,
            metric,
            price_per_mib: r.price_per_mib,
        };
        let mut src = self.sources.get(&key).copied();
        table::note_advertised(&mut src, u.seqno, metric, now + self.cfg.source_gc);
        if let Some(s) = src {
            self.sources.insert(key, s);
        }
        if let Some(d) = self.dests.get_mut(&key) {
            d.advertised = Some(adv);
            d.retractions_left = 0;
        }
        Some((u, Some(adv.next_hop)))
    }

    /// Announce `key` to each of `targets` (except its next hop). False if we have no route.
    pub(super) fn queue_advert(&mut self, key: RouteKey, targets: &[NodeId], now: Instant) -> bool {
        let Some((u, next_hop)) = self.make_advert(key, now) else {
            return false;
        };
        for t in targets {
            if Some(*t) != next_hop {
                self.queue_tlv(*t, Tlv::Update(u.clone()));
            }
        }
        true
    }

    /// Every announcement we have: own prefixes, then every selected route.
    fn all_adverts(&mut self, now: Instant) -> Vec<(Update, Option<NodeId>)> {
        let keys: Vec<RouteKey> = self
            .own_keys()
            .chain(
                self.dests
                    .iter()
                    .filter(|(_, d)| d.selected.is_some())
                    .map(|(k, _)| *k),
            )
            .collect();
        keys.into_iter()
            .filter_map(|k| self.make_advert(k, now))
            .collect()
    }

    fn queue_adverts(&mut self, to: NodeId, adverts: &[(Update, Option<NodeId>)]) {
        for (u, next_hop) in adverts {
            if *next_hop != Some(to) {
                self.queue_tlv(to, Tlv::Update(u.clone()));
            }
        }
    }

    /// Our whole table to one neighbour, at the next flush, once however often it is asked.
    pub(super) fn queue_full_dump(&mut self, to: NodeId) {
        self.dump_wanted.insert(to);
    }

    pub(super) fn queue_retraction(&mut self, to: NodeId, key: RouteKey, seqno: Seqno) {
        self.queue_tlv(
            to,
            Tlv::Update(Update {
                kind: key.kind,
                interval: self.cfg.update_interval,
                seqno,
                metric: INFINITY,
                price_per_mib: 0,
                price_epoch: 0,
                originator: key.originator,
                // Retractions are not signed (see input.rs); the field is zero.
                signature: [0; routing::SIGNATURE_LEN],
            }),
        );
    }

    pub(super) fn queue_retraction_to_all(&mut self, key: RouteKey, seqno: Seqno) {
        let ids: Vec<NodeId> = self.up_neighbours().collect();
        for id in ids {
            self.queue_retraction(id, key, seqno);
        }
    }

    /// Turn triggered changes into updates or retractions, then pack all pending TLVs into
    /// messages. Called at the end of every entry point.
    pub(super) fn flush(&mut self, now: Instant) {
        let triggered = std::mem::take(&mut self.triggered);
        let ids: Vec<NodeId> = self.up_neighbours().collect();
        for key in triggered {
            if self.queue_advert(key, &ids, now) {
                continue;
            }
            let retract = self.dests.get_mut(&key).and_then(|d| {
                let a = d.advertised.take()?;
                d.retractions_left = RETRACTION_SENDS - 1;
                Some(a.seqno)
            });
            if let Some(seqno) = retract {
                self.queue_retraction_to_all(key, seqno);
            }
        }
        let wanted: Vec<NodeId> = std::mem::take(&mut self.dump_wanted)
            .into_iter()
            .filter(|id| self.neighbours.contains_key(id))
            .collect();
        if !wanted.is_empty() {
            let adverts = self.all_adverts(now);
            for id in wanted {
                if let Some(n) = self.neighbours.get_mut(&id) {
                    n.dumped_at = Some(now);
                }
                self.queue_adverts(id, &adverts);
            }
        }
        let max = self.cfg.max_message_len;
        for (to, tlvs) in std::mem::take(&mut self.pending) {
            let mut msg = routing::encode(&[]);
            let mut count = 0;
            for t in tlvs {
                let full_len = msg.len() + t.encoded_len() > max && msg.len() > 1;
                if full_len || count == MAX_TLVS_PER_MESSAGE {
                    let full = std::mem::replace(&mut msg, routing::encode(&[]));
                    self.outbox.push_back((to, full));
                    count = 0;
                }
                t.encode_into(&mut msg);
                count += 1;
            }
            if msg.len() > 1 {
                self.outbox.push_back((to, msg));
            }
        }
    }
}

/// The next periodic deadline after `prev`, skipping missed ones if the caller was late.
fn next_deadline(prev: Instant, interval: Duration, now: Instant) -> Instant {
    let next = prev + interval;
    if next > now { next } else { now + interval }
}
