//! A deterministic simulated network of in-process nodes on a virtual clock: underlay links
//! that can fail, with loss, duplication and reordering. No sockets, no sleeping.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bitcloud::identity::Identity;
use bitcloud::money::{ChannelId, Voucher};
use bitcloud::node::{
    HEADROOM, Node, NodeConfig, PeerConfig, TAILROOM, UdpOut, WalletDone, WalletOp,
};
use bitcloud::route::RouterConfig;
use bitcloud::session::aead::{RingAead, TAG_LEN, TransportAead};
use bitcloud::session::timers::Timers;

/// Simulation step.
pub const STEP: Duration = Duration::from_millis(10);

/// Link impairments.
#[derive(Clone, Copy)]
pub struct Link {
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability it is duplicated.
    pub dup: f64,
    /// Max extra delay in ms (reorders).
    pub jitter_ms: u64,
}

/// No impairment.
pub const PERFECT: Link = Link {
    loss: 0.0,
    dup: 0.0,
    jitter_ms: 0,
};

thread_local! {
    /// Plaintexts opened by the node the simulation is driving, while it records.
    static OPENED: std::cell::RefCell<Option<Vec<Vec<u8>>>> = const { std::cell::RefCell::new(None) };
}

/// ring's AEAD, and a copy of every plaintext it opens while the driven node records: what a
/// node held between opening a frame and anything it did next (such as a relay's reseal).
pub struct SimAead(RingAead);

impl TransportAead for SimAead {
    fn new(key: &[u8; 32]) -> Self {
        SimAead(RingAead::new(key))
    }

    fn seal(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        self.0.seal(counter, aad, buf)
    }

    fn open(&self, counter: u64, aad: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> bool {
        let ok = self.0.open(counter, aad, buf, tag);
        if ok {
            OPENED.with(|o| {
                if let Some(v) = o.borrow_mut().as_mut() {
                    v.push(buf.to_vec());
                }
            });
        }
        ok
    }
}

/// The node type of the simulation.
pub type SimNodeT = Node<SimAead>;

/// One simulated node.
pub struct SimNode {
    pub node: SimNodeT,
    pub addr: SocketAddr,
    pub identity: Identity,
    pub delivered: Vec<Vec<u8>>,
    /// Every datagram this node received or sent, as the bytes stood after it was done
    /// with them (for plaintext searches).
    pub touched: Vec<Vec<u8>>,
    /// Every plaintext this node's sessions opened (link and end-to-end), as it stood right
    /// after opening, while `record` is set.
    pub opened: Vec<Vec<u8>>,
    pub record: bool,
    /// The node's committed vouchers (an in-memory wallet that commits at once).
    pub wallet: MemWallet,
}

/// A wallet that commits every voucher at once and keeps the latest per channel. Its spend
/// rule is the real wallet's (`src/wallet`): balance = received - paid may go down to minus
/// the spend limit, so headroom = limit + received - paid.
#[derive(Default)]
pub struct MemWallet {
    /// Latest voucher we signed, per channel.
    pub outgoing: std::collections::HashMap<ChannelId, Voucher>,
    /// Latest voucher we were paid with, per channel.
    pub incoming: std::collections::HashMap<ChannelId, Voucher>,
    /// Set to refuse outgoing commits (a wallet whose disk fails).
    pub refuse_outgoing: bool,
    /// How far below zero the balance may go (None: 1 CC, the default).
    pub spend_limit: Option<bitcloud::money::Amount>,
    /// Channels registered (`Ensure*` ops): the rows a neighbour costs.
    pub registered: std::collections::HashSet<ChannelId>,
    /// Size of each checkpoint the node asked for, in channels.
    pub checkpoints: Vec<usize>,
    /// Outgoing commits refused.
    pub refused: usize,
    /// Set for a wallet that cannot store at all (disk full): every commit fails, nothing
    /// else is written.
    pub down: bool,
}

fn sum(m: &std::collections::HashMap<ChannelId, Voucher>) -> bitcloud::money::Amount {
    m.values().fold(bitcloud::money::Amount::ZERO, |a, v| {
        a.saturating_add(v.cumulative_amount)
    })
}

impl MemWallet {
    /// What the wallet still lets us pay: limit + received - paid (never below 0).
    pub fn headroom(&self) -> bitcloud::money::Amount {
        use bitcloud::money::Amount;
        let limit = self.spend_limit.unwrap_or(Amount::from_cc(1));
        limit
            .saturating_add(sum(&self.incoming))
            .saturating_sub(sum(&self.outgoing))
    }

    fn apply(&mut self, op: WalletOp) -> Option<WalletDone> {
        use bitcloud::money::Amount;
        if self.down {
            return match op {
                WalletOp::CommitOutgoing(voucher) | WalletOp::AdoptOutgoing(voucher) => {
                    Some(WalletDone::Outgoing {
                        voucher,
                        ok: false,
                        headroom: self.headroom(),
                    })
                }
                WalletOp::CommitIncoming(voucher) => {
                    Some(WalletDone::Incoming { voucher, ok: false })
                }
                _ => None,
            };
        }
        let keep = |m: &mut std::collections::HashMap<ChannelId, Voucher>, v: Voucher| {
            let e = m.entry(v.channel_id).or_insert(v);
            if v.seq > e.seq {
                *e = v;
            }
        };
        match op {
            WalletOp::CommitOutgoing(v) | WalletOp::AdoptOutgoing(v) => {
                assert!(
                    self.registered.contains(&v.channel_id),
                    "unregistered channel"
                );
                let before = self
                    .outgoing
                    .get(&v.channel_id)
                    .map_or(Amount::ZERO, |o| o.cumulative_amount);
                let more = v.cumulative_amount.saturating_sub(before);
                let ok = matches!(op, WalletOp::AdoptOutgoing(_))
                    || (!self.refuse_outgoing && more <= self.headroom());
                if ok {
                    keep(&mut self.outgoing, v);
                } else {
                    self.refused += 1;
                }
                Some(WalletDone::Outgoing {
                    voucher: v,
                    ok,
                    headroom: self.headroom(),
                })
            }
            WalletOp::CommitIncoming(v) => {
                assert!(
                    self.registered.contains(&v.channel_id),
                    "unregistered channel"
                );
                keep(&mut self.incoming, v);
                Some(WalletDone::Incoming {
                    voucher: v,
                    ok: true,
                })
            }
            WalletOp::EnsureOutgoing(p) | WalletOp::EnsureIncoming(p) => {
                self.registered.insert(p.id());
                None
            }
            WalletOp::Checkpoint(c) => {
                for (id, _) in &c {
                    assert!(
                        self.registered.contains(id),
                        "checkpoint of unregistered channel"
                    );
                }
                self.checkpoints.push(c.len());
                None
            }
        }
    }
}

/// The network.
pub struct Net {
    pub nodes: Vec<SimNode>,
    pub in_flight: Vec<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    pub now: Instant,
    pub link: Link,
    /// Underlay adjacency: which node pairs can exchange datagrams (None: all).
    pub adjacency: Option<HashSet<(usize, usize)>>,
    rng: u64,
}

/// Fast routing timers for simulations (same as the daemon's).
pub fn router_cfg() -> RouterConfig {
    RouterConfig {
        hello_interval: Duration::from_secs(1),
        update_interval: Duration::from_secs(4),
        route_expiry: Duration::from_secs(14),
        request_timeout: Duration::from_secs(1),
        // The daemon's default weighting: one price unit per MiB = one metric unit.
        policy: bitcloud::route::SelectionPolicy {
            price_weight_milli: 1000,
            ..Default::default()
        },
        ..RouterConfig::default()
    }
}

/// Node config with these timers.
pub fn node_cfg(t: Timers) -> NodeConfig {
    NodeConfig {
        timers: t,
        router: router_cfg(),
        mtu: 1420,
        accept_discovered: true,
        money: Default::default(),
        ciphers: None,
    }
}

/// Underlay address of node i.
pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::from([198, 18, (i / 250) as u8, (i % 250 + 1) as u8]),
        51820,
    )
}

/// Identity of node i.
pub fn ident(i: usize) -> Identity {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    Identity::from_secret(s)
}

/// A node `i` with the given neighbours configured (by index).
pub fn make_node(i: usize, neighbours: &[usize], t: Timers, now: Instant) -> SimNodeT {
    let peers: Vec<_> = neighbours
        .iter()
        .map(|&j| PeerConfig {
            id: ident(j).id(),
            endpoint: Some(addr(j)),
        })
        .collect();
    Node::new(
        &ident(i),
        &peers,
        node_cfg(t),
        now,
        1_700_000_000_000_000_000,
        42 + i as u64,
    )
    .unwrap()
}

impl Net {
    /// `n` nodes; `edges` are the underlay links (each end configures the other as a peer).
    pub fn new(n: usize, edges: &[(usize, usize)], link: Link, t: Timers) -> Net {
        let now = Instant::now();
        let nodes = (0..n)
            .map(|i| {
                let nb: Vec<usize> = edges
                    .iter()
                    .filter_map(|&(a, b)| {
                        if a == i {
                            Some(b)
                        } else if b == i {
                            Some(a)
                        } else {
                            None
                        }
                    })
                    .collect();
                SimNode {
                    node: make_node(i, &nb, t, now),
                    addr: addr(i),
                    identity: ident(i),
                    delivered: vec![],
                    touched: vec![],
                    opened: vec![],
                    record: false,
                    wallet: MemWallet::default(),
                }
            })
            .collect();
        let adjacency = edges.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect();
        Net {
            nodes,
            in_flight: vec![],
            now,
            link,
            adjacency: Some(adjacency),
            rng: 0x1234_5678,
        }
    }

    /// Start every node.
    pub fn start(&mut self) {
        for i in 0..self.nodes.len() {
            self.nodes[i].node.start(self.now);
            self.flush(i);
        }
    }

    fn rand(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Take the underlay link between a and b down or up.
    pub fn set_link(&mut self, a: usize, b: usize, up: bool) {
        let adj = self.adjacency.get_or_insert_with(HashSet::new);
        if up {
            adj.insert((a, b));
            adj.insert((b, a));
        } else {
            adj.remove(&(a, b));
            adj.remove(&(b, a));
        }
    }

    fn index_of(&self, a: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == a)
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        if let Some(i) = self.index_of(from)
            && self.nodes[i].record
        {
            self.nodes[i].touched.push(data.clone());
        }
        if let (Some(adj), Some(a), Some(b)) =
            (&self.adjacency, self.index_of(from), self.index_of(to))
            && !adj.contains(&(a, b))
        {
            return;
        }
        if self.rand() < self.link.loss {
            return;
        }
        let copies = if self.rand() < self.link.dup { 2 } else { 1 };
        for _ in 0..copies {
            let delay =
                Duration::from_millis(1 + (self.rand() * self.link.jitter_ms as f64) as u64);
            self.in_flight
                .push((self.now + delay, from, to, data.clone()));
        }
    }

    fn flush(&mut self, i: usize) {
        let from = self.nodes[i].addr;
        let now = self.now;
        let sn = &mut self.nodes[i];
        while let Some(op) = sn.node.poll_wallet() {
            if let Some(done) = sn.wallet.apply(op) {
                sn.node.wallet_done(done, now);
            }
        }
        while let Some(t) = self.nodes[i].node.poll_transmit() {
            self.send(from, t.dst, t.data);
        }
        while let Some(p) = self.nodes[i].node.poll_tun() {
            self.nodes[i].delivered.push(p);
        }
    }

    /// Inject an IP packet into node i's TUN.
    pub fn tun(&mut self, i: usize, pkt: &[u8]) {
        let mut buf = vec![0u8; HEADROOM + pkt.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + pkt.len()].copy_from_slice(pkt);
        let now = self.now;
        if let Some((r, dst)) = self.nodes[i].node.handle_tun(now, &mut buf, pkt.len()) {
            let from = self.nodes[i].addr;
            self.send(from, dst, buf[r].to_vec());
        }
        self.flush(i);
    }

    /// Advance one step: deliver due datagrams, run due timers.
    pub fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        let (due, rest): (Vec<_>, Vec<_>) = self.in_flight.drain(..).partition(|p| p.0 <= now);
        self.in_flight = rest;
        for (_, from, to, mut data) in due {
            let Some(i) = self.index_of(to) else { continue };
            let record = self.nodes[i].record;
            if record {
                OPENED.with(|o| *o.borrow_mut() = Some(Vec::new()));
            }
            let out = self.nodes[i].node.handle_udp(now, from, &mut data);
            if record && let Some(v) = OPENED.with(|o| o.borrow_mut().take()) {
                self.nodes[i].opened.extend(v);
            }
            match out {
                UdpOut::Tun(r) => self.nodes[i].delivered.push(data[r].to_vec()),
                UdpOut::Forward(n, dst) => {
                    let d = data[..n].to_vec();
                    self.send(to, dst, d);
                }
                UdpOut::None => {}
            }
            if self.nodes[i].record {
                self.nodes[i].touched.push(data);
            }
            self.flush(i);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.poll_timeout().is_some_and(|t| t <= now) {
                self.nodes[i].node.handle_timeout(now);
            }
            self.flush(i);
        }
    }

    /// Flush every node's queued transmits, wallet work and TUN writes.
    pub fn flush_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.flush(i);
        }
    }

    /// Node i seals `buf[HEADROOM..HEADROOM + len]` end to end for node `dest` whatever its
    /// destination address ([`Node::send_via`]), and sends it.
    pub fn send_via(
        &mut self,
        i: usize,
        dest: bitcloud::identity::NodeId,
        buf: &mut [u8],
        len: usize,
    ) {
        let now = self.now;
        if let Some((r, dst)) = self.nodes[i].node.send_via(dest, now, buf, len) {
            let from = self.nodes[i].addr;
            self.send(from, dst, buf[r].to_vec());
        }
        self.flush(i);
    }

    /// Run for `d` of virtual time.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }
}

/// An IPv4 UDP packet from node `src` to node `dst` whose payload is `payload`.
pub fn packet_with(src: &Identity, dst: &Identity, payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src.id().ipv4().octets(), dst.id().ipv4().octets(), 64)
        .udp(1000, 2000);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

/// An IPv4 UDP packet whose payload is `seq`.
pub fn packet(src: &Identity, dst: &Identity, seq: u32) -> Vec<u8> {
    packet_with(src, dst, &seq.to_be_bytes())
}

/// The sequence numbers of delivered packets made by `packet`.
pub fn seqs(delivered: &[Vec<u8>]) -> Vec<u32> {
    delivered
        .iter()
        .map(|p| u32::from_be_bytes(p[p.len() - 4..].try_into().unwrap()))
        .collect()
}

/// Node i's channel with node `peer` in `direction` ("incoming" or "outgoing").
pub fn view(net: &Net, i: usize, peer: usize, direction: &str) -> bitcloud::node::ChannelView {
    let now = net.now;
    net.nodes[i]
        .node
        .channel_views(now)
        .into_iter()
        .find(|c| c.peer == ident(peer).id() && c.direction == direction)
        .unwrap_or_else(|| panic!("node {i} has no {direction} channel with {peer}"))
}

/// Node `from` sends `count` packets of `size` payload bytes to node `to`, one per step.
pub fn send(net: &mut Net, from: usize, to: usize, count: usize, size: usize) {
    let p = packet_with(&ident(from), &ident(to), &vec![7u8; size]);
    for _ in 0..count {
        net.tun(from, &p);
        net.step();
    }
}
