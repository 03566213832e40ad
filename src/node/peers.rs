//! The neighbour table: admission, expiry and slot reuse, endpoint hints, and the budget of
//! handshake initiations towards endpoints nobody has confirmed. Every neighbour may be an
//! adversary (discovery's default `accept = "any"`), so invariants: at most
//! [`MAX_NEIGHBOURS`] slots in use, configured peers always kept; at most
//! [`MAX_UNVERIFIED`] discovered neighbours that never completed a handshake, at most
//! [`MAX_UNVERIFIED_PER_HOST`] of them at one IP address; such a neighbour
//! gets [`MAX_UNVERIFIED_ATTEMPTS`] initiations, then is expired; datagrams towards
//! unconfirmed endpoints of discovered neighbours draw on one node-wide token bucket; a freed
//! slot is reset in every per-index structure (session, drops, slot state, money account,
//! session indices, router neighbour, IPv4 claims) before reuse.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::{Found, Node};
use crate::drops::{DropReason, Drops};
use crate::identity::{IdentityError, NodeId};
use crate::route::{PrefixKind, RouteEvent};
use crate::session::aead::TransportAead;
use crate::session::handshake::PeerKeys;
use crate::session::peer::Peer;

/// Neighbour slots in use at most, configured peers included.
pub const MAX_NEIGHBOURS: usize = 1024;
/// Discovered neighbours at most that have not completed a handshake yet.
pub const MAX_UNVERIFIED: usize = 256;
/// Of those, at most this many at one underlay IP address: one flooding host cannot crowd out
/// honest newcomers elsewhere on the LAN.
pub const MAX_UNVERIFIED_PER_HOST: usize = 8;
/// Initiations a discovered neighbour gets before its first handshake; then it is expired.
pub const MAX_UNVERIFIED_ATTEMPTS: u8 = 3;
/// A discovered neighbour that never completed a handshake is expired after this long anyway.
pub const UNVERIFIED_MAX_AGE: Duration = Duration::from_secs(60);
/// A discovered neighbour with no session and nothing authenticated from it for this long is
/// expired (REJECT_AFTER_TIME: no key of it could open anything any more).
pub const IDLE_EXPIRY: Duration = Duration::from_secs(180);
/// Initiation datagrams per second towards endpoints no authenticated packet confirmed.
pub const UNVERIFIED_HANDSHAKES_PER_SEC: u32 = 4;
/// Burst of that budget.
pub const UNVERIFIED_HANDSHAKE_BURST: u32 = 8;
/// How long a neighbour whose initiation found the budget spent waits before trying again.
const BUDGET_RETRY: Duration = Duration::from_secs(1);
/// How often the table is swept for neighbours to expire.
pub(super) const EXPIRE_INTERVAL: Duration = Duration::from_secs(1);
/// Verified neighbours remembered for the discovery tracker (see [`Node::poll_verified`]).
const VERIFIED_QUEUE_MAX: usize = 1024;

/// Per-slot state besides the session.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    /// The slot holds nobody; its index is on the free list.
    pub(super) free: bool,
    /// When this neighbour was admitted.
    admitted: Instant,
    /// The endpoint the operator configured, if any: the only unconfirmed one sent to freely.
    config_ep: Option<SocketAddr>,
    /// Initiations sent before the first handshake completed.
    attempts: u8,
}

impl Slot {
    fn new(found: Found, ep: Option<SocketAddr>, now: Instant) -> Self {
        Slot {
            free: false,
            admitted: now,
            config_ep: ep.filter(|_| found == Found::Config),
            attempts: 0,
        }
    }
}

/// The node-wide token bucket for initiations towards unconfirmed endpoints.
#[derive(Debug)]
pub(super) struct Budget {
    tokens: u32,
    refilled: Instant,
}

impl Budget {
    pub(super) fn new(now: Instant) -> Self {
        Budget {
            tokens: UNVERIFIED_HANDSHAKE_BURST,
            refilled: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let per = Duration::from_secs(1) / UNVERIFIED_HANDSHAKES_PER_SEC;
        let elapsed = now.saturating_duration_since(self.refilled);
        let add = u32::try_from(elapsed.as_nanos() / per.as_nanos().max(1)).unwrap_or(u32::MAX);
        if add > 0 {
            self.tokens = self
                .tokens
                .saturating_add(add)
                .min(UNVERIFIED_HANDSHAKE_BURST);
            // A full bucket forgets the remainder; otherwise `add` is below the burst.
            self.refilled = if self.tokens == UNVERIFIED_HANDSHAKE_BURST {
                now
            } else {
                self.refilled + per * add
            };
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Counters of the neighbour table, for `status`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct TableStats {
    /// Slots in use.
    pub neighbours: usize,
    /// Of those, discovered and not yet verified by a handshake.
    pub unverified: usize,
    /// Discovered neighbours admitted since start.
    pub admitted: u64,
    /// Discovered neighbours expired since start (never answered, or idle).
    pub expired: u64,
}

impl<A: TransportAead> Node<A> {
    /// Put `id` in a free slot (or a new one) and index it everywhere.
    pub(super) fn insert_peer(
        &mut self,
        id: NodeId,
        ep: Option<SocketAddr>,
        how: Found,
        now: Instant,
    ) -> Result<usize, IdentityError> {
        let peer = Peer::new(id, PeerKeys::new(&id)?, ep);
        let pi = match self.free.pop() {
            Some(pi) => {
                if let Some(p) = self.peers.get_mut(pi) {
                    *p = peer;
                }
                if let Some(d) = self.peer_drops.get_mut(pi) {
                    *d = Drops::default();
                }
                if let Some(s) = self.slots.get_mut(pi) {
                    *s = Slot::new(how, ep, now);
                }
                if let Some(f) = self.found.get_mut(pi) {
                    *f = how;
                }
                pi
            }
            None => {
                self.peers.push(peer);
                self.peer_drops.push(Drops::default());
                self.slots.push(Slot::new(how, ep, now));
                self.found.push(how);
                self.peers.len() - 1
            }
        };
        self.by_id.insert(id, pi);
        self.by_v6.insert(id.ipv6(), pi);
        self.v4.add_neighbour(id, pi);
        self.refresh_v4(id.ipv4(), &[id]);
        Ok(pi)
    }

    /// LAN discovery saw node `id` at `endpoint`: make it a neighbour if policy and the table
    /// allow, or take the endpoint as a hint for a known one (it never replaces an endpoint an
    /// authenticated session confirmed). Returns whether it was accepted.
    pub fn discovered(&mut self, id: NodeId, endpoint: SocketAddr, now: Instant) -> bool {
        if id == self.id {
            return false;
        }
        let pi = match self.by_id.get(&id) {
            Some(&pi) => pi,
            None if self.cfg.accept_discovered => {
                if self.live_neighbours() >= MAX_NEIGHBOURS {
                    self.drops.add(DropReason::NeighbourTableFull);
                    return false;
                }
                if self.unverified_neighbours() >= MAX_UNVERIFIED {
                    self.drops.add(DropReason::UnverifiedTableFull);
                    return false;
                }
                if self.unverified_at(endpoint.ip()) >= MAX_UNVERIFIED_PER_HOST {
                    self.drops.add(DropReason::UnverifiedHostFull);
                    return false;
                }
                match self.insert_peer(id, Some(endpoint), Found::Discovery, now) {
                    Ok(pi) => {
                        self.table.admitted += 1;
                        pi
                    }
                    Err(_) => return false,
                }
            }
            None => return false,
        };
        let timers = self.cfg.timers;
        let Some(peer) = self.peers.get_mut(pi) else {
            return false;
        };
        if peer.endpoint != Some(endpoint) && !peer.hint(endpoint, now, &timers) {
            self.drop_for(Some(pi), DropReason::EndpointHintIgnored);
        }
        let Some(peer) = self.peers.get(pi) else {
            return false;
        };
        if !peer.has_session(now, &timers) && peer.handshake_due(now) {
            self.initiate(pi, now);
        }
        true
    }

    fn live_neighbours(&self) -> usize {
        self.peers.len() - self.free.len()
    }

    fn unverified_neighbours(&self) -> usize {
        self.slots
            .iter()
            .zip(&self.peers)
            .zip(&self.found)
            .filter(|((s, p), f)| !s.free && **f == Found::Discovery && p.last_handshake.is_none())
            .count()
    }

    fn unverified_at(&self, ip: std::net::IpAddr) -> usize {
        self.slots
            .iter()
            .zip(&self.peers)
            .zip(&self.found)
            .filter(|((s, p), f)| {
                !s.free
                    && **f == Found::Discovery
                    && p.last_handshake.is_none()
                    && p.endpoint.is_some_and(|e| e.ip() == ip)
            })
            .count()
    }

    /// Where to send an initiation for `pi` now: its endpoint and hints, those nobody
    /// confirmed only while the budget lasts. Empty means: nothing to send (deferred if the
    /// budget was the reason).
    pub(super) fn handshake_targets(&mut self, pi: usize, now: Instant) -> Vec<SocketAddr> {
        let (Some(peer), Some(slot)) = (self.peers.get(pi), self.slots.get(pi)) else {
            return Vec::new();
        };
        let discovered = self.found.get(pi) == Some(&Found::Discovery);
        let unverified = discovered && peer.last_handshake.is_none();
        if unverified && slot.attempts >= MAX_UNVERIFIED_ATTEMPTS {
            return Vec::new(); // expired at the next sweep
        }
        // The operator chose a configured endpoint; a confirmed one answered before. One a
        // beacon named (even for a configured peer) is only a hint.
        let trusted =
            peer.confirmed || (peer.endpoint.is_some() && peer.endpoint == slot.config_ep);
        let mut out = Vec::with_capacity(1 + peer.hints.len());
        let mut refused = 0;
        let wanted: Vec<(SocketAddr, bool)> = peer
            .endpoint
            .map(|e| (e, trusted))
            .into_iter()
            .chain(peer.hints.iter().map(|h| (*h, false)))
            .collect();
        for (ep, free) in wanted {
            if free || self.budget.take(now) {
                out.push(ep);
            } else {
                refused += 1;
            }
        }
        if refused > 0 {
            self.drop_for(Some(pi), DropReason::HandshakeBudget);
        }
        if out.is_empty() && refused > 0 {
            let jitter = Duration::from_millis(self.next_rand() % 500);
            if let Some(p) = self.peers.get_mut(pi) {
                p.defer_handshake(now + BUDGET_RETRY + jitter);
            }
        }
        if !out.is_empty()
            && unverified
            && let Some(s) = self.slots.get_mut(pi)
        {
            s.attempts = s.attempts.saturating_add(1);
        }
        out
    }

    /// A neighbour's session was just confirmed (either role).
    pub(super) fn neighbour_verified(&mut self, pi: usize) {
        let Some(p) = self.peers.get(pi) else { return };
        if self.verified.len() < VERIFIED_QUEUE_MAX && !self.verified.contains(&p.id) {
            self.verified.push_back(p.id);
        }
    }

    /// The next neighbour whose handshake completed: the daemon tells discovery, which keeps
    /// the beacon counters of neighbours apart from those of strangers.
    pub fn poll_verified(&mut self) -> Option<NodeId> {
        self.verified.pop_front()
    }

    /// Expire discovered neighbours that never answered or went idle.
    pub(super) fn expire_neighbours(&mut self, now: Instant) {
        let timers = self.cfg.timers;
        let doomed: Vec<usize> = self
            .slots
            .iter()
            .zip(&self.peers)
            .zip(&self.found)
            .enumerate()
            .filter(|(_, ((s, p), f))| {
                if s.free || **f != Found::Discovery {
                    return false;
                }
                if p.last_handshake.is_none() {
                    let gave_up = s.attempts >= MAX_UNVERIFIED_ATTEMPTS && p.handshake_due(now);
                    return gave_up
                        || now.saturating_duration_since(s.admitted) >= UNVERIFIED_MAX_AGE;
                }
                // Received, not sent: our own retries must not keep a silent neighbour.
                !p.has_session(now, &timers)
                    && p.last_received
                        .is_none_or(|t| now.saturating_duration_since(t) >= IDLE_EXPIRY)
            })
            .map(|(pi, _)| pi)
            .collect();
        if doomed.is_empty() {
            return;
        }
        for &pi in &doomed {
            self.free_slot(pi, now);
        }
        self.indices.retain(|_, pi| !doomed.contains(pi));
    }

    /// Remove the neighbour in slot `pi` from everything indexed by it; the caller clears
    /// its session indices.
    pub(super) fn free_slot(&mut self, pi: usize, now: Instant) {
        let Some(id) = self.peers.get(pi).map(|p| p.id) else {
            return;
        };
        tracing::debug!(peer = %id, "neighbour expired");
        self.by_id.remove(&id);
        self.by_v6.remove(&id.ipv6());
        self.v4.remove_neighbour(id, pi);
        self.refresh_v4(id.ipv4(), &[id]);
        self.router.remove_neighbour(id, now);
        self.forget_account(pi);
        if let Some(p) = self.peers.get_mut(pi) {
            p.reset();
        }
        if let Some(d) = self.peer_drops.get_mut(pi) {
            *d = Drops::default();
        }
        if let Some(s) = self.slots.get_mut(pi) {
            s.free = true;
        }
        self.free.push(pi);
        self.table.expired += 1;
    }

    /// Neighbour-table counters.
    pub fn table_stats(&self) -> TableStats {
        TableStats {
            neighbours: self.live_neighbours(),
            unverified: self.unverified_neighbours(),
            ..self.table
        }
    }

    /// Claims on `a` changed (`touched`: the ids whose claim was added or removed): give each
    /// claimant's sessions the IPv4 source it may use (none while the address collides), so
    /// the per-packet source checks refuse it; an id that no longer claims gets it back.
    pub(super) fn refresh_v4(&mut self, a: Ipv4Addr, touched: &[NodeId]) {
        let claimants = self.v4.claimants(a);
        let shared = if self.v4.collides(a) {
            Ipv4Addr::BROADCAST // never a valid source (RFC 1122 §3.2.1.3)
        } else {
            a
        };
        for id in claimants.iter().chain(touched) {
            let usable = if claimants.contains(id) { shared } else { a };
            if let Some(p) = self.by_id.get(id).and_then(|&pi| self.peers.get_mut(pi)) {
                p.addr_v4 = usable;
            }
            if let Some(e) = self.e2e.get_mut(id) {
                e.addr_v4 = usable;
            }
        }
    }

    /// A routing event: routed nodes claim their IPv4 address while they have a route.
    pub(super) fn route_event_v4(&mut self, ev: &RouteEvent) {
        match ev {
            RouteEvent::RouteChanged { key, .. } if key.kind == PrefixKind::Node => {
                self.v4.add_routed(key.originator);
                self.refresh_v4(key.originator.ipv4(), &[key.originator]);
            }
            RouteEvent::Unreachable(key) if key.kind == PrefixKind::Node => {
                self.v4.remove_routed(key.originator);
                self.refresh_v4(key.originator.ipv4(), &[key.originator]);
            }
            _ => {}
        }
    }

    /// Rebuild the routed claims from the router's selected routes (the router drops events
    /// when its queue is full, so they are not the only source).
    pub(super) fn resync_routed_v4(&mut self, now: Instant) {
        let before = self.v4.collisions();
        let routed: Vec<NodeId> = self
            .router
            .routes(now)
            .filter(|r| r.selected && r.key.kind == PrefixKind::Node)
            .map(|r| r.key.originator)
            .collect();
        self.v4.set_routed(routed);
        let after = self.v4.collisions();
        if before != after {
            for c in before.iter().chain(&after) {
                self.refresh_v4(c.addr, &c.nodes);
            }
        }
    }

    /// IPv4 addresses claimed by more than one node id (neighbours, routed nodes, us).
    pub fn ipv4_collisions(&self) -> Vec<super::v4::V4Collision> {
        self.v4.collisions()
    }
}
