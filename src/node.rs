//! The whole node as one sans-IO state machine: `handle_tun`, `handle_udp`, `handle_timeout`
//! in; sealed datagrams, packets for the TUN and `poll_transmit` out. No sockets, no clock:
//! every call takes `now`. Invariants: a packet reaches the TUN only after it authenticated
//! under a peer's session and its inner source address is that peer's; the data path seals
//! and opens in the caller's buffer without allocating.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::drops::{DropReason, Drops};
use crate::identity::{Identity, NodeId};
use crate::session::aead::{DefaultAead, TAG_LEN, TransportAead};
use crate::session::handshake::{self, HandshakeError, PeerKeys, StaticKeys};
use crate::session::keypair::OpenError;
use crate::session::peer::{Peer, PeerStats};
use crate::session::timers::Timers;
use crate::wire::outer::{self, Kind, Message, ParseError, TRANSPORT_HEADER_LEN};

/// Bytes the caller leaves before a TUN packet in the buffer given to `handle_tun`.
pub const HEADROOM: usize = TRANSPORT_HEADER_LEN;
/// Bytes the caller leaves after it (for the tag).
pub const TAILROOM: usize = TAG_LEN;
/// How often stale session indices are swept from the index table.
const INDEX_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// A control datagram to send (handshakes, keepalives, staged packets).
#[derive(Debug)]
pub struct Transmit {
    /// Where to.
    pub dst: SocketAddr,
    /// The datagram.
    pub data: Vec<u8>,
}

/// A configured neighbour.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Its node id.
    pub id: NodeId,
    /// Where to reach it, if known.
    pub endpoint: Option<SocketAddr>,
}

/// A neighbour's state for `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerStatus {
    /// Node id.
    pub id: NodeId,
    /// Current endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Seconds since the latest handshake, if any.
    pub last_handshake_secs: Option<u64>,
    /// Whether a session is up.
    pub connected: bool,
    /// Traffic counters.
    #[serde(flatten)]
    pub stats: PeerStats,
    /// Drops attributed to this peer.
    pub drops: std::collections::BTreeMap<&'static str, u64>,
}

/// The sans-IO node.
pub struct Node<A = DefaultAead> {
    id: NodeId,
    local: StaticKeys,
    peers: Vec<Peer<A>>,
    peer_drops: Vec<Drops>,
    by_id: HashMap<NodeId, usize>,
    by_v4: HashMap<Ipv4Addr, usize>,
    by_v6: HashMap<Ipv6Addr, usize>,
    indices: HashMap<u32, usize>,
    timers: Timers,
    rng: u64,
    epoch: Instant,
    epoch_unix_nanos: u128,
    next_sweep: Instant,
    transmits: VecDeque<Transmit>,
    drops: Drops,
}

impl<A: TransportAead> Node<A> {
    /// A node with its configured peers. `unix_nanos` is the wall clock at `now` (it only
    /// feeds handshake timestamps); `seed` seeds session index allocation.
    pub fn new(
        identity: &Identity,
        peers: &[PeerConfig],
        timers: Timers,
        now: Instant,
        unix_nanos: u128,
        seed: u64,
    ) -> Result<Self, crate::identity::IdentityError> {
        let mut n = Node {
            id: identity.id(),
            local: StaticKeys::new(identity),
            peers: Vec::new(),
            peer_drops: Vec::new(),
            by_id: HashMap::new(),
            by_v4: HashMap::new(),
            by_v6: HashMap::new(),
            indices: HashMap::new(),
            timers,
            rng: seed | 1,
            epoch: now,
            epoch_unix_nanos: unix_nanos,
            next_sweep: now + INDEX_SWEEP_INTERVAL,
            transmits: VecDeque::new(),
            drops: Drops::default(),
        };
        for p in peers {
            let i = n.peers.len();
            n.peers
                .push(Peer::new(p.id, PeerKeys::new(&p.id)?, p.endpoint));
            n.peer_drops.push(Drops::default());
            n.by_id.insert(p.id, i);
            n.by_v4.insert(p.id.ipv4(), i);
            n.by_v6.insert(p.id.ipv6(), i);
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

    fn alloc_index(&mut self, peer: usize) -> u32 {
        loop {
            let i = self.next_rand() as u32;
            if let std::collections::hash_map::Entry::Vacant(e) = self.indices.entry(i) {
                e.insert(peer);
                return i;
            }
        }
    }

    fn tai64n(&self, now: Instant) -> [u8; 12] {
        handshake::tai64n(
            self.epoch_unix_nanos + now.saturating_duration_since(self.epoch).as_nanos(),
        )
    }

    fn initiate(&mut self, pi: usize, now: Instant) {
        let Some(ep) = self.peers.get(pi).and_then(|p| p.endpoint) else {
            return;
        };
        let idx = self.alloc_index(pi);
        let ts = self.tai64n(now);
        let jitter = Duration::from_millis(self.next_rand() % 334);
        let (local, timers) = (&self.local, self.timers);
        let Some(peer) = self.peers.get_mut(pi) else {
            return;
        };
        if let Ok((pending, msg)) = handshake::initiate(local, &peer.keys, idx, ts) {
            peer.initiation_sent(pending, now, &timers, jitter);
            self.transmits.push_back(Transmit { dst: ep, data: msg });
        }
    }

    fn drop_for(&mut self, pi: Option<usize>, r: DropReason) {
        self.drops.add(r);
        if let Some(d) = pi.and_then(|i| self.peer_drops.get_mut(i)) {
            d.add(r);
        }
    }

    fn peer_for_addr(&self, a: IpAddr) -> Option<usize> {
        match a {
            IpAddr::V4(v4) => self.by_v4.get(&v4).copied(),
            IpAddr::V6(v6) => self.by_v6.get(&v6).copied(),
        }
    }

    /// An IP packet read from the TUN sits at `buf[HEADROOM..HEADROOM + len]`, with TAILROOM
    /// spare bytes after it. Returns the sealed datagram's length (at `buf[..n]`) and where
    /// to send it, or None if the packet was staged or dropped.
    pub fn handle_tun(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
    ) -> Option<(usize, SocketAddr)> {
        let Some(pkt) = buf.get(HEADROOM..HEADROOM + len) else {
            self.drops.add(DropReason::NotIp);
            return None;
        };
        let Some((_, dst)) = ip_src_dst(pkt) else {
            self.drops.add(DropReason::NotIp);
            return None;
        };
        let Some(pi) = self.peer_for_addr(dst) else {
            self.drops.add(DropReason::NoRoute);
            return None;
        };
        let timers = self.timers;
        let peer = self.peers.get_mut(pi)?;
        let want_rekey = peer.rekey_wanted(now, &timers) && peer.handshake_due(now);
        let sealed = peer.seal(Kind::Packet, buf, len, now, &timers);
        if sealed.is_none() {
            let staged = buf
                .get(HEADROOM..HEADROOM + len)
                .is_some_and(|p| peer.stage(p));
            if !staged {
                self.drop_for(Some(pi), DropReason::StagedOverflow);
            }
        }
        if want_rekey {
            self.initiate(pi, now);
        }
        sealed
    }

    /// A datagram arrived from `from`. Returns the range of `msg` holding an IP packet to
    /// write to the TUN, if any. Handshake answers go to `poll_transmit`.
    pub fn handle_udp(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &mut [u8],
    ) -> Option<Range<usize>> {
        match outer::parse(msg) {
            Err(ParseError::UnknownType) => self.drops.add(DropReason::UnknownType),
            Err(_) => self.drops.add(DropReason::Malformed),
            Ok(Message::Transport(h)) => return self.handle_transport(now, from, h, msg),
            Ok(Message::Init(i)) => self.handle_init(now, from, &i),
            Ok(Message::Resp(r)) => self.handle_resp(now, from, &r),
            Ok(Message::Cookie(_)) => self.drops.add(DropReason::CookieUnsupported),
        }
        None
    }

    fn handle_transport(
        &mut self,
        now: Instant,
        from: SocketAddr,
        h: outer::TransportHeader,
        msg: &mut [u8],
    ) -> Option<Range<usize>> {
        let Some(&pi) = self.indices.get(&h.receiver) else {
            self.drops.add(DropReason::UnknownIndex);
            return None;
        };
        let timers = self.timers;
        let peer = self.peers.get_mut(pi)?;
        let n = match peer.open(&h, msg, from, now, &timers) {
            Ok(n) => n,
            Err(e) => {
                let r = match e {
                    OpenError::Decrypt => DropReason::DecryptFailed,
                    OpenError::Replayed => DropReason::Replayed,
                    OpenError::TooOld => DropReason::TooOld,
                    OpenError::Exhausted => DropReason::ExpiredKey,
                };
                self.drop_for(Some(pi), r);
                return None;
            }
        };
        let (v4, v6) = (peer.addr_v4, peer.addr_v6);
        if peer.has_staged() {
            // A responder's session just got confirmed: what waited for it can go now.
            self.flush_staged(pi, now);
        }
        if n == 0 {
            return None; // keepalive
        }
        let range = TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + n;
        if Kind::from_u8(h.kind) != Some(Kind::Packet) {
            self.drop_for(Some(pi), DropReason::UnknownKind);
            return None;
        }
        match msg.get(range.clone()).and_then(ip_src_dst) {
            None => self.drop_for(Some(pi), DropReason::BadInnerPacket),
            Some((src, _)) if src != IpAddr::V4(v4) && src != IpAddr::V6(v6) => {
                self.drop_for(Some(pi), DropReason::SpoofedSource)
            }
            Some(_) => {
                let peer = self.peers.get_mut(pi)?;
                peer.stats.rx_bytes += n as u64;
                peer.stats.rx_packets += 1;
                return Some(range);
            }
        }
        None
    }

    fn handle_init(&mut self, now: Instant, from: SocketAddr, init: &outer::Init<'_>) {
        let r = match handshake::consume_init(&self.local, init) {
            Ok(r) => r,
            Err(HandshakeError::BadMac) => return self.drops.add(DropReason::BadMac),
            Err(_) => return self.drops.add(DropReason::HandshakeFailed),
        };
        let Some(&pi) = self.by_id.get(&r.peer_id) else {
            tracing::debug!(peer = %r.peer_id, %from, "handshake from a key that is not a peer");
            return self.drops.add(DropReason::UnknownPeer);
        };
        let Some(peer) = self.peers.get_mut(pi) else {
            return;
        };
        if let Err(why) = peer.accept_initiation(r.timestamp, now) {
            let reason = if why == "stale_initiation" {
                DropReason::StaleInitiation
            } else {
                DropReason::HandshakeFlood
            };
            return self.drop_for(Some(pi), reason);
        }
        let remote = r.remote_index;
        let idx = self.alloc_index(pi);
        let Some(peer) = self.peers.get_mut(pi) else {
            return;
        };
        match handshake::respond(r, &peer.keys, idx) {
            Ok((keys, msg)) => {
                peer.responder_keys(&keys, idx, remote, now, from);
                tracing::debug!(peer = %peer.id, %from, "answered handshake");
                self.transmits.push_back(Transmit {
                    dst: from,
                    data: msg,
                });
            }
            Err(_) => self.drop_for(Some(pi), DropReason::HandshakeFailed),
        }
    }

    fn handle_resp(&mut self, now: Instant, from: SocketAddr, resp: &outer::Resp<'_>) {
        if !handshake::resp_mac_ok(&self.local, resp) {
            return self.drops.add(DropReason::BadMac);
        }
        let pi = match self.indices.get(&resp.receiver) {
            Some(&pi)
                if self.peers.get(pi).and_then(|p| p.pending_index()) == Some(resp.receiver) =>
            {
                pi
            }
            _ => return self.drops.add(DropReason::UnknownIndex),
        };
        let Some(peer) = self.peers.get_mut(pi) else {
            return;
        };
        let Some(pending) = peer.take_pending() else {
            return;
        };
        match handshake::consume_resp(&self.local, pending, resp) {
            Ok(keys) => {
                peer.initiator_keys(&keys, resp.receiver, resp.sender, now, from);
                tracing::debug!(peer = %peer.id, %from, "handshake complete");
                if !self.flush_staged(pi, now) {
                    // Nothing to send: a keepalive lets the responder confirm the session.
                    self.send_keepalive(pi, now);
                }
            }
            // The retry timer set when we sent the initiation will try again.
            Err(_) => self.drop_for(Some(pi), DropReason::HandshakeFailed),
        }
    }

    /// Seal and queue staged packets; true if any were sent.
    fn flush_staged(&mut self, pi: usize, now: Instant) -> bool {
        let timers = self.timers;
        let Some(peer) = self.peers.get_mut(pi) else {
            return false;
        };
        if !peer.has_session(now, &timers) {
            return false;
        }
        let staged = peer.take_staged();
        let any = !staged.is_empty();
        for p in staged {
            let mut buf = vec![0u8; HEADROOM + p.len() + TAILROOM];
            buf[HEADROOM..HEADROOM + p.len()].copy_from_slice(&p);
            if let Some((n, dst)) = peer.seal(Kind::Packet, &mut buf, p.len(), now, &timers) {
                buf.truncate(n);
                self.transmits.push_back(Transmit { dst, data: buf });
            }
        }
        any
    }

    fn send_keepalive(&mut self, pi: usize, now: Instant) {
        let timers = self.timers;
        let Some(peer) = self.peers.get_mut(pi) else {
            return;
        };
        let mut buf = vec![0u8; HEADROOM + TAILROOM];
        if let Some((n, dst)) = peer.seal(Kind::Packet, &mut buf, 0, now, &timers) {
            buf.truncate(n);
            self.transmits.push_back(Transmit { dst, data: buf });
        }
    }

    /// Run timers due at `now`: handshake retries, keepalives, key expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        let timers = self.timers;
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
        if now >= self.next_sweep {
            self.next_sweep = now + INDEX_SWEEP_INTERVAL;
            let peers = &self.peers;
            self.indices
                .retain(|idx, pi| peers.get(*pi).is_some_and(|p| p.owns_index(*idx)));
        }
    }

    /// The next instant `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .iter()
            .filter_map(|p| p.next_deadline(&self.timers))
            .chain([self.next_sweep])
            .min()
    }

    /// The next control datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Node-wide drop counters.
    pub fn drops(&self) -> &Drops {
        &self.drops
    }

    /// Per-peer state for `status`.
    pub fn peer_status(&self, now: Instant) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .zip(&self.peer_drops)
            .map(|(p, d)| PeerStatus {
                id: p.id,
                endpoint: p.endpoint,
                last_handshake_secs: p
                    .last_handshake
                    .map(|t| now.saturating_duration_since(t).as_secs()),
                connected: p.has_session(now, &self.timers),
                stats: p.stats.clone(),
                drops: d.to_map(),
            })
            .collect()
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
