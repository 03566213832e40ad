//! The whole node as one sans-IO state machine: `handle_tun`, `handle_udp`, `handle_timeout`
//! in; sealed datagrams, packets for the TUN and `poll_transmit` out. No sockets, no clock:
//! every call takes `now`. Invariants: a packet reaches the TUN only after it authenticated
//! under a session (link for a neighbour's own packets, end-to-end for routed ones) whose node
//! owns its inner source address; the data path seals, opens and relays in the caller's
//! buffer without allocating.

mod exit;
mod exit_money;
mod exit_probe;
#[cfg(test)]
mod flood_tests;
mod inner;
mod link;
mod mesh;
mod money;
mod money_types;
mod money_view;
mod peers;
mod reload;
mod status;
#[cfg(test)]
mod tests;
mod tun;
mod v4;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

// Seeded per process, ~3x fewer instructions than SipHash per lookup (docs/profile.md).
use foldhash::{HashMap, HashMapExt};

use crate::drops::{DropReason, Drops};
use crate::identity::{Identity, NodeId};
use crate::route::{Router, RouterConfig};
use crate::session::aead::{DefaultAead, TAG_LEN, TransportAead};
use crate::session::guard::HandshakeGuard;
use crate::session::handshake::{self, StaticKeys};
use crate::session::peer::Peer;
use crate::session::timers::Timers;
use crate::wire::mesh::MESH_HEADER_LEN;
use crate::wire::outer::{self, Message, ParseError, TRANSPORT_HEADER_LEN};

pub use exit_money::{DOWNLOAD_LOSS_PERCENT, MAX_EXIT_ACCOUNTS};
pub use money::{ChainEvent, ChainView};
pub use money_types::{
    MoneyConfig, MoneyStats, Restored, WalletDone, WalletHealth, WalletOp, WalletState,
};
pub use money_view::ChannelView;
pub use peers::{
    IDLE_EXPIRY, MAX_NEIGHBOURS, MAX_UNVERIFIED, MAX_UNVERIFIED_ATTEMPTS, MAX_UNVERIFIED_PER_HOST,
    TableStats, UNVERIFIED_HANDSHAKES_PER_SEC,
};
pub use reload::PeerChanges;
pub use status::{Found, PeerStatus, SessionStatus};
pub use v4::V4Collision;

/// Bytes the caller leaves before a TUN packet: link header, mesh header, e2e header.
pub const HEADROOM: usize = TRANSPORT_HEADER_LEN + MESH_HEADER_LEN + TRANSPORT_HEADER_LEN;
/// Bytes the caller leaves after it: the e2e tag, then a routed frame's trailing mesh header
/// (`Kind::MeshSealed`, docs/relay-crypto.md) and the link tag.
pub const TAILROOM: usize = TAG_LEN + MESH_HEADER_LEN + TAG_LEN;
/// Bytes a routed packet costs beyond a direct one (mesh header + e2e header and tag).
pub const MESH_OVERHEAD: usize = MESH_HEADER_LEN + TRANSPORT_HEADER_LEN + TAG_LEN;
/// How often stale session indices are swept from the index tables.
const INDEX_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// A control datagram to send (handshakes, keepalives, routing, staged packets).
#[derive(Debug)]
pub struct Transmit {
    /// Where to.
    pub dst: SocketAddr,
    /// The datagram.
    pub data: Vec<u8>,
}

/// What to do with a received datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum UdpOut {
    /// Nothing (consumed or dropped).
    None,
    /// Write `buf[range]` to the TUN.
    Tun(Range<usize>),
    /// Relay: send `buf[..len]` to `dst`.
    Forward(usize, SocketAddr),
}

/// A configured neighbour.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Its node id.
    pub id: NodeId,
    /// Where to reach it, if known.
    pub endpoint: Option<SocketAddr>,
}

/// Node-wide settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Session timers (link and end-to-end).
    pub timers: Timers,
    /// Routing protocol settings.
    pub router: RouterConfig,
    /// TUN MTU: routed packets above `mtu - MESH_OVERHEAD` get an ICMP "too big".
    pub mtu: u16,
    /// Whether discovered nodes become neighbours.
    pub accept_discovered: bool,
    /// Payment channels: windows, limits, intervals.
    pub money: MoneyConfig,
    /// Transport ciphers offered in handshakes (`Cipher` bits); `None`: the AEAD backend's
    /// choice for this CPU (`TransportAead::ciphers`).
    pub ciphers: Option<u8>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            timers: Timers::default(),
            router: RouterConfig::default(),
            mtu: 1420,
            accept_discovered: true,
            money: MoneyConfig::default(),
            ciphers: None,
        }
    }
}

/// The sans-IO node.
pub struct Node<A = DefaultAead> {
    id: NodeId,
    own_v4: Ipv4Addr,
    v6: Ipv6Addr,
    /// Where internet-bound packets go (node/exit.rs).
    exit_in_use: Option<NodeId>,
    /// The exit choice and probes (node/exit_probe.rs).
    exits: exit_probe::Exits,
    local: StaticKeys,
    /// Cheap checks, cookies and rate limits before any handshake DH (session/guard.rs).
    guard: HandshakeGuard,
    peers: Vec<Peer<A>>,
    peer_drops: Vec<Drops>,
    found: Vec<Found>,
    slots: Vec<peers::Slot>,
    /// Freed slots, reused before the vectors grow.
    free: Vec<usize>,
    by_id: HashMap<NodeId, usize>,
    v4: v4::V4Claims,
    by_v6: HashMap<Ipv6Addr, usize>,
    indices: HashMap<u32, usize>,
    e2e: HashMap<NodeId, Peer<A>>,
    e2e_indices: HashMap<u32, NodeId>,
    router: Router,
    cfg: NodeConfig,
    rng: u64,
    epoch: Instant,
    epoch_unix_nanos: u128,
    next_sweep: Instant,
    next_expiry: Instant,
    budget: peers::Budget,
    table: peers::TableStats,
    verified: VecDeque<NodeId>,
    transmits: VecDeque<Transmit>,
    tun_out: VecDeque<Vec<u8>>,
    drops: Drops,
    money: money::Money,
    /// On-chain settlement state (node/money_chain.rs).
    chain: money::NodeChain,
}

impl<A: TransportAead> Node<A> {
    /// A node with its configured peers. `unix_nanos` is the wall clock at `now` (it only
    /// feeds handshake timestamps); `seed` seeds session index allocation.
    pub fn new(
        identity: &Identity,
        peers: &[PeerConfig],
        cfg: NodeConfig,
        now: Instant,
        unix_nanos: u128,
        seed: u64,
    ) -> Result<Self, crate::identity::IdentityError> {
        let id = identity.id();
        let mut n = Node {
            id,
            own_v4: id.ipv4(),
            v6: id.ipv6(),
            exit_in_use: None,
            exits: exit_probe::Exits::new(now),
            local: StaticKeys::new(identity).with_ciphers(cfg.ciphers.unwrap_or_else(A::ciphers)),
            guard: HandshakeGuard::new(identity, seed, now),
            peers: Vec::new(),
            peer_drops: Vec::new(),
            found: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            v4: v4::V4Claims::new(id),
            by_v6: HashMap::new(),
            indices: HashMap::new(),
            e2e: HashMap::new(),
            e2e_indices: HashMap::new(),
            router: Router::new(identity, cfg.router.clone(), now),
            money: money::Money::new(
                cfg.money.clone(),
                Identity::from_secret(identity.secret()),
                now,
            ),
            cfg,
            rng: seed | 1,
            epoch: now,
            epoch_unix_nanos: unix_nanos,
            next_sweep: now + INDEX_SWEEP_INTERVAL,
            next_expiry: now + peers::EXPIRE_INTERVAL,
            budget: peers::Budget::new(now),
            table: peers::TableStats::default(),
            verified: VecDeque::new(),
            transmits: VecDeque::new(),
            tun_out: VecDeque::new(),
            drops: Drops::default(),
            chain: money::NodeChain::default(),
        };
        for p in peers {
            n.insert_peer(p.id, p.endpoint, Found::Config, now)?;
        }
        Ok(n)
    }

    /// Our node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Begin handshakes with every peer whose endpoint we know (at startup, so a restarted
    /// node is reachable again at once rather than after the peer's timeouts).
    pub fn start(&mut self, now: Instant) {
        for i in 0..self.peers.len() {
            self.initiate(i, now);
        }
    }

    fn next_rand(&mut self) -> u64 {
        // splitmix64: index allocation and jitter need spread, not secrecy.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fresh_index(&mut self) -> u32 {
        loop {
            let i = self.next_rand() as u32;
            if !self.indices.contains_key(&i) && !self.e2e_indices.contains_key(&i) {
                return i;
            }
        }
    }

    fn tai64n(&self, now: Instant) -> [u8; 12] {
        handshake::tai64n(
            self.epoch_unix_nanos + now.saturating_duration_since(self.epoch).as_nanos(),
        )
    }

    fn drop_for(&mut self, pi: Option<usize>, r: DropReason) {
        self.drops.add(r);
        if let Some(d) = pi.and_then(|i| self.peer_drops.get_mut(i)) {
            d.add(r);
        }
    }

    /// Whether IPv4 address `a` is nobody's: two or more node ids claim it (`v4`).
    fn v4_refused(&self, a: Ipv4Addr) -> bool {
        self.v4.collides(a)
    }

    fn peer_for_addr(&self, a: IpAddr) -> Option<usize> {
        match a {
            IpAddr::V4(v4) => self.v4.neighbour(v4),
            IpAddr::V6(v6) => self.by_v6.get(&v6).copied(),
        }
    }

    /// A datagram arrived from `from`. Handshake answers and routing go to `poll_transmit`.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, msg: &mut [u8]) -> UdpOut {
        let out = match outer::parse(msg) {
            Err(ParseError::UnknownType) => {
                self.drops.add(DropReason::UnknownType);
                UdpOut::None
            }
            Err(_) => {
                self.drops.add(DropReason::Malformed);
                UdpOut::None
            }
            Ok(Message::Transport(h)) => self.handle_transport(now, from, h, msg),
            Ok(Message::Init(i)) => {
                self.handle_init(now, from, &i);
                UdpOut::None
            }
            Ok(Message::Resp(r)) => {
                self.handle_resp(now, from, &r);
                UdpOut::None
            }
            Ok(Message::Cookie(c)) => {
                self.handle_cookie(now, from, &c);
                UdpOut::None
            }
        };
        self.flush_router(now);
        out
    }

    /// Run timers due at `now`: handshake retries, keepalives, key expiry, routing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let timers = self.cfg.timers;
        for pi in 0..self.peers.len() {
            let Some(peer) = self.peers.get_mut(pi) else {
                continue;
            };
            let due = peer.due(now, &timers);
            if due.handshake && peer.handshake_due(now) {
                self.initiate(pi, now);
            }
            if due.keepalive {
                self.send_keepalive(pi, now);
            }
        }
        self.e2e_timers(now);
        self.exit_timers(now);
        if now >= self.next_expiry {
            self.next_expiry = now + peers::EXPIRE_INTERVAL;
            self.expire_neighbours(now);
        }
        self.money_timers(now);
        self.router.handle_timeout(now);
        self.flush_router(now);
        if now >= self.next_sweep {
            self.next_sweep = now + INDEX_SWEEP_INTERVAL;
            let peers = &self.peers;
            self.indices
                .retain(|idx, pi| peers.get(*pi).is_some_and(|p| p.owns_index(*idx)));
            let e2e = &self.e2e;
            self.e2e_indices
                .retain(|idx, id| e2e.get(id).is_some_and(|p| p.owns_index(*idx)));
            self.resync_routed_v4(now);
        }
    }

    /// The next instant `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = &self.cfg.timers;
        self.peers
            .iter()
            .chain(self.e2e.values())
            .filter_map(|p| p.next_deadline(t))
            .chain([
                self.next_sweep,
                self.next_expiry,
                self.money.next_deadline(),
            ])
            .chain(self.router.poll_timeout())
            .min()
    }

    /// The next control datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next packet the node itself writes to the TUN (ICMP errors).
    pub fn poll_tun(&mut self) -> Option<Vec<u8>> {
        self.tun_out.pop_front()
    }

    /// Node-wide drop counters.
    pub fn drops(&self) -> &Drops {
        &self.drops
    }

    /// Whether handshakes arrive so fast that we answer initiations with cookies.
    pub fn handshakes_under_load(&self, now: Instant) -> bool {
        self.guard.under_load(now)
    }

    /// Change our forwarding fee (units per MiB); announced at once with a new price epoch.
    pub fn set_fee(&mut self, fee_per_mib: u64, now: Instant) {
        let epoch = self.router.config().price_epoch.wrapping_add(1);
        self.set_fee_epoch(fee_per_mib, epoch, now);
    }

    /// Change our fee under a given price epoch (the daemon persists epochs so that they never
    /// repeat across restarts); routes and payers hear of it at once.
    pub fn set_fee_epoch(&mut self, fee_per_mib: u64, epoch: u32, now: Instant) {
        self.router.set_fee_epoch(fee_per_mib, epoch, now);
        self.money_price_changed(now);
        self.flush_router(now);
    }

    /// The routing state machine (read-only, for `routes` and `peers`).
    pub fn router(&self) -> &Router {
        &self.router
    }
}

/// Source and destination of an IPv4 or IPv6 packet, checked with etherparse.
pub fn ip_src_dst(p: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match p.first()? >> 4 {
        4 => {
            let h = etherparse::Ipv4HeaderSlice::from_slice(p).ok()?;
            Some((h.source_addr().into(), h.destination_addr().into()))
        }
        6 => {
            let h = etherparse::Ipv6HeaderSlice::from_slice(p).ok()?;
            Some((h.source_addr().into(), h.destination_addr().into()))
        }
        _ => None,
    }
}
