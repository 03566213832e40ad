//! The sans-IO routing core: a Babel-style (RFC 8966) distance-vector router over authenticated
//! neighbour links, with originator-signed announcements and price-aware route selection. It
//! takes bytes, link events and instants, and hands back bytes to send, events and a forwarding
//! table; it never reads a clock, touches a socket or spawns a task. Invariants: only feasible
//! routes (RFC 8966 §3.5.1) are ever selected, so next hops never form a loop; every accepted
//! announcement carries a valid signature by its originator; the forwarding table always
//! mirrors the selected routes; `total_routes` and each neighbour's `routes` count exactly the
//! entries in `dests`, within the configured caps.
//!
//! Driving it, quinn-proto style: feed [`Router::handle_message`], [`Router::add_neighbour`],
//! [`Router::remove_neighbour`], [`Router::set_link_stats`] and [`Router::handle_timeout`] (at
//! [`Router::poll_timeout`]); after each call drain [`Router::poll_transmit`] and
//! [`Router::poll_event`].

mod config;
mod exits;
mod fib;
mod input;
mod limits;
mod maintain;
mod neighbour;
mod output;
mod table;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::identity::{Identity, NodeId};
use crate::wire::routing::{INFINITY, SIGNATURE_LEN, Seqno, Tlv, WireError};

pub use crate::wire::routing::PrefixKind;
pub use config::{MAX_ROUTES, MAX_ROUTES_PER_NEIGHBOUR, RouterConfig, RouterStats};
pub use exits::ExitRouteInfo;
pub(crate) use fib::is_overlay;
pub use neighbour::RttCost;
pub use table::{RouteKey, SelectionPolicy};

use fib::Fib;
use neighbour::Neighbour;
use table::{Dest, Source};

/// Hop count of a seqno request we originate (RFC 8966 §4.6.11): how far it may be forwarded.
/// 64 is beyond any plausible mesh diameter yet still bounds a request that cannot be satisfied.
const REQUEST_HOP_COUNT: u8 = 64;

/// How often a seqno request is resent while unanswered (RFC 8966 Appendix B: a few times,
/// doubling the timeout each time).
const REQUEST_RESENDS: u8 = 3;

/// How many times a retraction is sent in total. We use no acknowledgements (RFC 8966 §3.3),
/// so repetition is what makes a lost retraction, and the black hole it leaves, unlikely.
const RETRACTION_SENDS: u8 = 3;

/// Events kept for the caller before the oldest are dropped (and counted).
const MAX_EVENTS: usize = 4096;

/// Errors from [`Router::handle_message`]. The message was dropped and counted either way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The message could not be parsed.
    #[error("malformed routing message: {0}")]
    Wire(#[from] WireError),
    /// The sender is not a neighbour (never added, or already removed).
    #[error("routing message from {0}, which is not a neighbour")]
    UnknownNeighbour(NodeId),
}

/// Something the caller may want to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteEvent {
    /// A neighbour's link became usable in both directions.
    NeighbourUp(NodeId),
    /// A neighbour's link stopped being usable (loss, or removed).
    NeighbourDown(NodeId),
    /// A destination got a route or a different next hop.
    RouteChanged {
        /// What the route leads to.
        key: RouteKey,
        /// The new next hop.
        next_hop: NodeId,
        /// Its metric.
        metric: u16,
    },
    /// A destination lost its last route.
    Unreachable(RouteKey),
    /// Several node ids map to this IPv4 address; it is not routed until only one remains.
    AddressCollision {
        /// The address.
        addr: Ipv4Addr,
        /// The node ids claiming it (ours included if it is one of them).
        nodes: Vec<NodeId>,
    },
}

/// One route, for display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// What the route leads to.
    pub key: RouteKey,
    /// The neighbour that announced it.
    pub next_hop: NodeId,
    /// Metric through that neighbour ([`INFINITY`] if unusable).
    pub metric: u16,
    /// The metric the neighbour advertised.
    pub advertised_metric: u16,
    /// The originator's seqno.
    pub seqno: u32,
    /// What the neighbour bills per MiB for this destination.
    pub price_per_mib: u64,
    /// The price epoch of that price.
    pub price_epoch: u32,
    /// Time since the neighbour last announced it.
    pub age: Duration,
    /// Whether it is the route in use.
    pub selected: bool,
    /// Whether it satisfies the feasibility condition.
    pub feasible: bool,
}

/// One neighbour, for display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighbourInfo {
    /// Its node id.
    pub id: NodeId,
    /// Link cost ([`INFINITY`] if unusable).
    pub cost: u16,
    /// Our receive cost from it (from hello loss).
    pub rxcost: u16,
    /// Its receive cost from us (from its IHUs).
    pub txcost: u16,
    /// Smoothed RTT, if the caller measured one.
    pub rtt: Option<Duration>,
    /// Hellos received among the last `hellos_expected`.
    pub hellos_received: u8,
    /// Size of the hello history window in use (up to 16).
    pub hellos_expected: u8,
}

/// An outstanding seqno request of ours (RFC 8966 §3.8.2.1).
#[derive(Clone, Copy, Debug)]
struct PendingRequest {
    seqno: Seqno,
    resend_at: Instant,
    backoff: Duration,
    resends_left: u8,
}

/// A seqno request we forwarded, remembered to suppress duplicates (RFC 8966 §3.8.1.2).
#[derive(Clone, Copy, Debug)]
struct Forwarded {
    until: Instant,
}

/// The routing state machine of one node.
pub struct Router {
    me: Identity,
    id: NodeId,
    cfg: RouterConfig,
    seqno: Seqno,
    /// Our signature over our [`PrefixKind::Node`] announcement at `seqno`.
    own_sig_node: [u8; SIGNATURE_LEN],
    /// Our signature over our [`PrefixKind::Default`] announcement at `seqno`.
    own_sig_default: [u8; SIGNATURE_LEN],
    neighbours: BTreeMap<NodeId, Neighbour>,
    dests: BTreeMap<RouteKey, Dest>,
    sources: BTreeMap<RouteKey, Source>,
    requests: BTreeMap<RouteKey, PendingRequest>,
    forwarded: BTreeMap<RouteKey, Forwarded>,
    fib: Fib,
    /// Destinations whose change is to be announced to every neighbour.
    triggered: BTreeSet<RouteKey>,
    /// TLVs waiting to be packed, per neighbour.
    pending: BTreeMap<NodeId, Vec<Tlv>>,
    /// Neighbours owed a full dump at the next flush: a set, so any number of reasons (link
    /// up, new fee, wildcard requests) make one dump.
    dump_wanted: BTreeSet<NodeId>,
    /// Route entries in `dests`, all neighbours together.
    total_routes: usize,
    /// When our seqno was last raised.
    last_bump: Option<Instant>,
    /// A raise asked for within `seqno_bump_interval` of the last, due at this instant.
    bump_due: Option<Instant>,
    outbox: VecDeque<(NodeId, Vec<u8>)>,
    events: VecDeque<RouteEvent>,
    stats: RouterStats,
    next_hello: Instant,
    next_update: Instant,
}

impl Router {
    /// A router for `identity` (its signing key is copied in), starting at `now`.
    pub fn new(identity: &Identity, cfg: RouterConfig, now: Instant) -> Self {
        let me = Identity::from_secret(identity.secret());
        let id = me.id();
        let seqno = Seqno(cfg.initial_seqno);
        let mut r = Router {
            id,
            seqno,
            own_sig_node: [0; SIGNATURE_LEN],
            own_sig_default: [0; SIGNATURE_LEN],
            neighbours: BTreeMap::new(),
            dests: BTreeMap::new(),
            sources: BTreeMap::new(),
            requests: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            fib: Fib::new(id),
            triggered: BTreeSet::new(),
            pending: BTreeMap::new(),
            dump_wanted: BTreeSet::new(),
            total_routes: 0,
            last_bump: None,
            bump_due: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            stats: RouterStats::default(),
            next_hello: now + cfg.hello_interval,
            next_update: now + cfg.update_interval,
            me,
            cfg,
        };
        r.sign_own();
        r
    }

    /// Our node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The seqno of our own announcements.
    pub fn seqno(&self) -> u32 {
        self.seqno.0
    }

    /// The configuration in force.
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    /// Start (or stop) announcing the default routes, billing `fee_per_mib` for the uplink.
    pub fn set_exit(&mut self, exit: bool, fee_per_mib: u64, now: Instant) {
        if exit == self.cfg.exit && fee_per_mib == self.cfg.exit_fee_per_mib {
            return;
        }
        self.cfg.exit_fee_per_mib = fee_per_mib;
        if exit == self.cfg.exit {
            // Same role, new fee: announce it at once.
            let key = RouteKey {
                originator: self.id,
                kind: PrefixKind::Default,
            };
            self.triggered.insert(key);
            self.flush(now);
            return;
        }
        self.cfg.exit = exit;
        let key = RouteKey {
            originator: self.id,
            kind: PrefixKind::Default,
        };
        if exit {
            self.triggered.insert(key);
        } else {
            self.queue_retraction_to_all(key, self.seqno);
        }
        self.flush(now);
    }

    /// Change our own forwarding fee: a new price epoch, and every neighbour gets a full dump
    /// at once so the new price reaches the mesh within one round trip.
    pub fn set_fee(&mut self, fee_per_mib: u64, now: Instant) {
        if fee_per_mib == self.cfg.fee_per_mib {
            return;
        }
        let epoch = self.cfg.price_epoch.wrapping_add(1);
        self.set_fee_epoch(fee_per_mib, epoch, now);
    }

    /// [`Router::set_fee`] under a given epoch, which must be above the current one (the
    /// caller persists epochs); a lower or equal epoch is ignored.
    pub fn set_fee_epoch(&mut self, fee_per_mib: u64, epoch: u32, now: Instant) {
        if epoch <= self.cfg.price_epoch {
            return;
        }
        self.cfg.fee_per_mib = fee_per_mib;
        self.cfg.price_epoch = epoch;
        let ids: Vec<NodeId> = self.neighbours.keys().copied().collect();
        for id in ids {
            self.queue_full_dump(id);
        }
        self.flush(now);
    }

    /// A link to `id` came up (session established). Idempotent.
    pub fn add_neighbour(&mut self, id: NodeId, now: Instant) {
        if id == self.id || self.neighbours.contains_key(&id) {
            return;
        }
        self.neighbours
            .insert(id, Neighbour::new(self.cfg.max_routes_per_neighbour));
        // Say hello at once so the link is usable within one round trip, not one interval.
        self.queue_hello(id, now);
        self.flush(now);
    }

    /// The link to `id` went down: forget it and every route through it.
    pub fn remove_neighbour(&mut self, id: NodeId, now: Instant) {
        let Some(n) = self.neighbours.remove(&id) else {
            return;
        };
        self.pending.remove(&id);
        self.dump_wanted.remove(&id);
        self.total_routes = self.total_routes.saturating_sub(n.routes);
        self.outbox.retain(|(to, _)| *to != id);
        if n.cost < INFINITY {
            self.push_event(RouteEvent::NeighbourDown(id));
        }
        let affected: Vec<RouteKey> = self
            .dests
            .iter_mut()
            .filter_map(|(k, d)| {
                let before = d.routes.len();
                d.routes.retain(|r| r.neighbour != id);
                (d.routes.len() != before).then_some(*k)
            })
            .collect();
        for key in affected {
            self.reselect(key, now);
        }
        self.flush(now);
    }

    /// Feed a measured RTT for the link to `id` (`None`: no measurement any more).
    pub fn set_link_stats(&mut self, id: NodeId, rtt: Option<Duration>, now: Instant) {
        if let Some(n) = self.neighbours.get_mut(&id) {
            n.set_rtt(rtt);
            self.refresh_link(id, now);
            self.flush(now);
        }
    }

    /// When [`Router::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.next_hello.min(self.next_update);
        Some(self.bump_due.map_or(t, |b| b.min(t)))
    }

    /// Next hop towards node `dest`, if routed. A hash lookup; no allocation.
    pub fn next_hop(&self, dest: &NodeId) -> Option<NodeId> {
        self.fib.next_hop(dest)
    }

    /// (destination node, next hop) for a packet to `ip`: a node's overlay address, or outside
    /// the overlay ranges the chosen exit. Our own addresses are not routed. Hash lookups only.
    pub fn lookup_addr(&self, ip: IpAddr) -> Option<(NodeId, NodeId)> {
        self.fib.lookup(ip)
    }

    /// What the next hop towards node `dest` bills for it per MiB, with that hop's price
    /// epoch: what we owe it per forwarded MiB (pay per forward). A hash lookup.
    pub fn route_price(&self, dest: &NodeId) -> Option<(u64, u32)> {
        self.fib.price(dest)
    }

    /// What we bill per MiB for carrying a frame to node `dest`: our fee plus what our next hop
    /// bills, or 0 for ourselves (delivery is free). Exactly the price our updates advertise.
    pub fn billed_price(&self, dest: &NodeId) -> Option<u64> {
        if *dest == self.id {
            return Some(0);
        }
        self.relay_prices(dest).map(|(_, billed)| billed)
    }

    /// For a frame we relay to node `dest`: what our next hop bills us (units, its epoch) and
    /// what we bill for it (that plus our fee), from one lookup (the relay's hot path).
    pub fn relay_prices(&self, dest: &NodeId) -> Option<((u64, u32), u64)> {
        let (p, epoch) = self.fib.price(dest)?;
        Some(((p, epoch), p.saturating_add(self.cfg.fee_per_mib)))
    }

    /// The exit the default route goes to, and the next hop towards it.
    pub fn default_route(&self) -> Option<(NodeId, NodeId)> {
        self.fib.default_route()
    }

    /// Number of destination nodes with a selected route.
    pub fn routed_nodes(&self) -> usize {
        self.fib.len()
    }

    /// Every route entry (selected or not), for display.
    pub fn routes(&self, now: Instant) -> impl Iterator<Item = RouteInfo> + '_ {
        self.dests.iter().flat_map(move |(key, d)| {
            let source = self.sources.get(key);
            d.routes.iter().map(move |r| RouteInfo {
                key: *key,
                next_hop: r.neighbour,
                metric: table::add_metric(r.refmetric, self.link_cost(&r.neighbour)),
                advertised_metric: r.refmetric,
                seqno: r.seqno.0,
                price_per_mib: r.price_per_mib,
                price_epoch: r.price_epoch,
                age: now.saturating_duration_since(r.updated),
                selected: d.selected == Some(r.neighbour),
                feasible: table::is_feasible(source, r.seqno, r.refmetric),
            })
        })
    }

    /// Every neighbour, for display.
    pub fn neighbours(&self) -> impl Iterator<Item = NeighbourInfo> + '_ {
        self.neighbours.iter().map(|(id, n)| {
            let (hellos_received, hellos_expected) = n.hello_stats();
            NeighbourInfo {
                id: *id,
                cost: n.cost,
                rxcost: n.rxcost(),
                txcost: n.txcost(),
                rtt: n.rtt(),
                hellos_received,
                hellos_expected,
            }
        })
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<RouteEvent> {
        self.events.pop_front()
    }

    fn push_event(&mut self, e: RouteEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    fn link_cost(&self, id: &NodeId) -> u16 {
        self.neighbours.get(id).map_or(INFINITY, |n| n.cost)
    }

    fn sign_own(&mut self) {
        use crate::wire::routing::sign_announcement;
        self.own_sig_node = sign_announcement(&self.me, self.seqno, PrefixKind::Node);
        self.own_sig_default = sign_announcement(&self.me, self.seqno, PrefixKind::Default);
    }
}
