//! Routed traffic: end-to-end sessions with distant nodes (same session code as links,
//! carried inside mesh frames), relaying, and delivery. Invariants: a relay touches only the
//! mesh header (TTL) and reseals the frame in place for the next hop; it never holds an
//! end-to-end key for traffic it forwards. A routed packet reaches the TUN only after its
//! end-to-end session authenticated it and its inner source belongs to that session's node.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use super::inner::{Owner, Via};
use super::link::seal_copy;
use super::{MESH_OVERHEAD, Node, UdpOut, ip_src_dst};
use crate::drops::DropReason;
use crate::identity::NodeId;
use crate::session::aead::TransportAead;
use crate::session::guard::{Screen, Source};
use crate::session::handshake::{self, PeerKeys};
use crate::session::peer::Peer;
use crate::wire::mesh::{self, DEFAULT_TTL, MESH_HEADER_LEN, MeshHeader};
use crate::wire::outer::{self, Kind, Message, TRANSPORT_HEADER_LEN};

/// The "endpoint" of an end-to-end session: it has none, frames go by route.
const ROUTED: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
/// Where the end-to-end message starts in a link datagram carrying a mesh frame.
const E2E_AT: usize = TRANSPORT_HEADER_LEN + MESH_HEADER_LEN;
/// End-to-end sessions held at most; beyond it the longest idle one without a live session
/// makes room, or the new one is refused.
pub const MAX_E2E_SESSIONS: usize = 1024;
/// An end-to-end session with no live keys and no traffic for this long is forgotten.
pub const E2E_IDLE_EXPIRY: Duration = Duration::from_secs(180);

impl<A: TransportAead> Node<A> {
    pub(super) fn e2e_peer(&mut self, dest: NodeId, now: Instant) -> Option<&mut Peer<A>> {
        if !self.e2e.contains_key(&dest) && self.e2e.len() >= MAX_E2E_SESSIONS {
            let timers = self.cfg.timers;
            let victim = self
                .e2e
                .iter()
                .filter(|(_, e)| !e.has_session(now, &timers))
                .min_by_key(|(_, e)| e.last_activity())
                .map(|(id, _)| *id);
            match victim {
                Some(v) => self.forget_e2e(&[v]),
                None => {
                    self.drops.add(DropReason::E2eSessionsFull);
                    return None;
                }
            }
        }
        match self.e2e.entry(dest) {
            std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => {
                // Only for a new session: `ipv4()` is a BLAKE2s hash, which per routed packet
                // was 8 % of a sender's CPU (docs/profile.md); `refresh_v4` keeps it current.
                let v4 = dest.ipv4();
                let usable = if self.v4.collides(v4) {
                    std::net::Ipv4Addr::BROADCAST // see `refresh_v4`: no IPv4 source for a collision
                } else {
                    v4
                };
                let keys = PeerKeys::new(&dest).ok()?;
                let mut p = Peer::new(dest, keys, Some(ROUTED));
                p.addr_v4 = usable;
                Some(v.insert(p))
            }
        }
    }

    /// Drop end-to-end sessions and their indices.
    fn forget_e2e(&mut self, ids: &[NodeId]) {
        for id in ids {
            self.e2e.remove(id);
        }
        self.e2e_indices.retain(|_, id| !ids.contains(id));
    }

    /// Seal a TUN packet end to end for `dest` and hand it to `next_hop` in a mesh frame.
    pub(super) fn send_routed(
        &mut self,
        dest: NodeId,
        next_hop: NodeId,
        now: Instant,
        buf: &mut [u8],
        len: usize,
    ) -> Option<(Range<usize>, SocketAddr)> {
        let max = usize::from(self.cfg.mtu).saturating_sub(MESH_OVERHEAD);
        if len > max {
            // The error comes "from" the destination: a source that routes back into the TUN
            // passes reverse-path filtering, where our own address would be a martian.
            let reporter = buf
                .get(super::HEADROOM..super::HEADROOM + len)
                .and_then(ip_src_dst)
                .map(|(_, d)| d)?;
            let pkt = buf.get(super::HEADROOM..super::HEADROOM + len)?;
            if let Some(icmp) = crate::icmp::too_big(pkt, max as u16, reporter) {
                self.tun_out.push_back(icmp);
            }
            self.drops.add(DropReason::TooBig);
            return None;
        }
        let pi = *self.by_id.get(&next_hop)?;
        if !self.may_send(pi, &dest, len, now) {
            return None;
        }
        let timers = self.cfg.timers;
        let e = self.e2e_peer(dest, now)?;
        // The session's copy of `dest.ipv6()`, which would be a BLAKE2s hash per packet.
        let dst_v6 = e.addr_v6;
        let want_rekey = e.rekey_wanted(now, &timers) && e.handshake_due(now);
        let sealed = e.seal(Kind::Packet, buf.get_mut(E2E_AT..)?, len, now, &timers);
        if sealed.is_none()
            && !buf
                .get(super::HEADROOM..super::HEADROOM + len)
                .is_some_and(|p| e.stage(p))
        {
            self.drops.add(DropReason::StagedOverflow);
        }
        if want_rekey {
            self.initiate_e2e(dest, now);
        }
        let (m, _) = sealed?;
        // `MeshSealed` (docs/relay-crypto.md): the link message starts right before the e2e
        // message and the mesh header follows it; the link encrypts only that header.
        mesh::write(
            buf.get_mut(E2E_AT + m..)?,
            &MeshHeader {
                ttl: DEFAULT_TTL,
                dst: dst_v6,
            },
        );
        let at = E2E_AT - TRANSPORT_HEADER_LEN;
        let peer = self.peers.get_mut(pi)?;
        let frame = m + MESH_HEADER_LEN;
        match peer.seal(Kind::MeshSealed, buf.get_mut(at..)?, frame, now, &timers) {
            Some((n, ep)) => {
                self.meter_sent(pi, &dest, frame);
                Some((at..at + n, ep))
            }
            None => {
                self.drop_for(Some(pi), DropReason::RelayNoRoute);
                None
            }
        }
    }

    /// Seal a TUN packet at `buf[HEADROOM..HEADROOM + len]` end to end for node `dest`,
    /// whatever its destination address, and hand it to the next hop towards `dest` (how a
    /// client's packets for the internet reach the exit it chose). None if `dest` has no route
    /// or the packet was staged, answered with ICMP or dropped.
    pub fn send_via(
        &mut self,
        dest: NodeId,
        now: Instant,
        buf: &mut [u8],
        len: usize,
    ) -> Option<(Range<usize>, SocketAddr)> {
        let Some(next_hop) = self.router.next_hop(&dest) else {
            self.drops.add(DropReason::NoRoute);
            return None;
        };
        self.send_routed(dest, next_hop, now, buf, len)
    }

    pub(super) fn initiate_e2e(&mut self, dest: NodeId, now: Instant) {
        let idx = self.fresh_index();
        let ts = self.tai64n(now);
        let jitter = Duration::from_millis(self.next_rand() % 334);
        let timers = self.cfg.timers;
        let local = &self.local;
        let Some(e) = self.e2e.get_mut(&dest) else {
            return;
        };
        let Ok((pending, msg)) = handshake::initiate(local, &e.keys, idx, ts) else {
            return;
        };
        e.initiation_sent(pending, now, &timers, jitter);
        self.e2e_indices.insert(idx, dest);
        self.send_mesh(dest, &msg, now);
    }

    /// Wrap an end-to-end message in a mesh frame and send it towards `dest`.
    pub(super) fn send_mesh(&mut self, dest: NodeId, e2e_msg: &[u8], now: Instant) -> bool {
        let Some(nh) = self.router.next_hop(&dest) else {
            return false;
        };
        let Some(&pi) = self.by_id.get(&nh) else {
            return false;
        };
        let mut frame = vec![0u8; MESH_HEADER_LEN + e2e_msg.len()];
        mesh::write(
            &mut frame,
            &MeshHeader {
                ttl: DEFAULT_TTL,
                dst: dest.ipv6(),
            },
        );
        frame[MESH_HEADER_LEN..].copy_from_slice(e2e_msg);
        let sent = self.send_link_copy(pi, Kind::Mesh, &frame, now);
        if sent {
            self.meter_sent(pi, &dest, frame.len());
        }
        sent
    }

    /// A mesh frame arrived from neighbour `from_pi`; its plaintext is `msg[16..16 + n]`,
    /// with the mesh header last if `trailing` (`Kind::MeshSealed`), else first.
    pub(super) fn handle_mesh(
        &mut self,
        from_pi: usize,
        now: Instant,
        msg: &mut [u8],
        n: usize,
        trailing: bool,
    ) -> UdpOut {
        let Some((hdr, e2e)) = mesh::layout(trailing, n) else {
            self.drop_for(Some(from_pi), DropReason::BadMeshFrame);
            return UdpOut::None;
        };
        let hdr_at = TRANSPORT_HEADER_LEN + hdr.start;
        let Some(h) = msg.get(hdr_at..).and_then(|f| mesh::parse(f).ok()) else {
            self.drop_for(Some(from_pi), DropReason::BadMeshFrame);
            return UdpOut::None;
        };
        if h.dst == self.v6 {
            let e2e = TRANSPORT_HEADER_LEN + e2e.start..TRANSPORT_HEADER_LEN + e2e.end;
            return self.deliver(from_pi, now, msg, e2e);
        }
        self.money_relay_seen(from_pi);
        let route = self.router.lookup_addr(IpAddr::V6(h.dst));
        if msg
            .get_mut(hdr_at..)
            .and_then(mesh::decrement_ttl)
            .is_none()
        {
            self.drop_for(Some(from_pi), DropReason::TtlExpired);
            return UdpOut::None;
        }
        let Some((dest, pi)) =
            route.and_then(|(dest, nh)| Some((dest, self.by_id.get(&nh).copied()?)))
        else {
            self.drop_for(Some(from_pi), DropReason::RelayNoRoute);
            return UdpOut::None;
        };
        // Money (docs/payments.md): the sender's ladder, then our own limits as a payer.
        // Only a frame actually handed to the next hop is metered, on both channels; the
        // sender learns of the others from our meter reports and does not pay for them.
        // One price lookup serves the payer check and both meters.
        let ((units, epoch), billed) = self.router.relay_prices(&dest).unwrap_or(((0, 0), 0));
        if !self.judge_received(from_pi, n, now) || !self.may_send_at(pi, &dest, units, n, now) {
            return UdpOut::None;
        }
        let timers = self.cfg.timers;
        // Reseal in place, as it came: the plaintext stays where it is, only header and tag
        // change (and for `MeshSealed` only the mesh header is encrypted again).
        let kind = if trailing {
            Kind::MeshSealed
        } else {
            Kind::Mesh
        };
        match self
            .peers
            .get_mut(pi)
            .and_then(|p| p.seal(kind, msg, n, now, &timers))
        {
            Some((len, ep)) => {
                self.meter_received(from_pi, billed, n);
                self.meter_sent_at(pi, &dest, units, epoch, n);
                UdpOut::Forward(len, ep)
            }
            None => {
                self.drops.add(DropReason::RelayNoRoute);
                UdpOut::None
            }
        }
    }

    /// A mesh frame for us (handed over by neighbour `from_pi`): open its end-to-end message,
    /// `msg[e2e]`.
    fn deliver(
        &mut self,
        from_pi: usize,
        now: Instant,
        msg: &mut [u8],
        e2e: Range<usize>,
    ) -> UdpOut {
        let at = e2e.start;
        let Some(e2e_msg) = msg.get_mut(e2e) else {
            self.drops.add(DropReason::BadMeshFrame);
            return UdpOut::None;
        };
        match outer::parse(e2e_msg) {
            Ok(Message::Transport(h)) => self
                .deliver_transport(now, h, e2e_msg)
                .map_or(UdpOut::None, |r| UdpOut::Tun(at + r.start..at + r.end)),
            Ok(Message::Init(i)) => {
                if let Some(hop) = self.peers.get(from_pi).map(|p| p.id) {
                    self.e2e_init(now, hop, &i);
                }
                UdpOut::None
            }
            Ok(Message::Resp(r)) => {
                self.e2e_resp(now, &r);
                UdpOut::None
            }
            _ => {
                self.drops.add(DropReason::BadMeshFrame);
                UdpOut::None
            }
        }
    }

    fn deliver_transport(
        &mut self,
        now: Instant,
        h: outer::TransportHeader,
        m: &mut [u8],
    ) -> Option<Range<usize>> {
        let Some(&dest) = self.e2e_indices.get(&h.receiver) else {
            self.drops.add(DropReason::UnknownIndex);
            return None;
        };
        let timers = self.cfg.timers;
        let e = self.e2e.get_mut(&dest)?;
        let k = match e.open(&h, m, ROUTED, now, &timers) {
            Ok(k) => k,
            Err(err) => {
                self.drops.add(err.into());
                return None;
            }
        };
        let (v4, v6, staged) = (e.addr_v4, e.addr_v6, e.has_staged());
        if staged {
            self.flush_e2e(dest, now);
        }
        if k == 0 {
            return None;
        }
        let range = TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + k;
        match Kind::from_u8(h.kind) {
            Some(Kind::Packet) => {}
            Some(Kind::Probe) => {
                let body = m.get(range)?.to_vec();
                self.handle_probe(dest, &body, now);
                return None;
            }
            Some(Kind::Channel) => {
                // Exit fees (node/exit_money.rs): never metered, throttled or written to the TUN.
                let body = m.get(range)?.to_vec();
                self.handle_exit_channel(dest, &body, now);
                return None;
            }
            Some(Kind::Routing | Kind::Mesh | Kind::MeshSealed) => {
                self.drops.add(DropReason::LinkOnlyKind);
                return None;
            }
            None => {
                self.drops.add(DropReason::UnknownKind);
                return None;
            }
        }
        if let Some(why) =
            self.inner_refusal(m.get(range.clone())?, Owner { v4, v6 }, Via::EndToEnd(dest))
        {
            self.drops.add(why);
            return None;
        }
        if !self.bill_e2e_inbound(dest, m.get(range.clone())?, now) {
            return None;
        }
        if let Some(e) = self.e2e.get_mut(&dest) {
            e.stats.rx_bytes += k as u64;
            e.stats.rx_packets += 1;
        }
        Some(range)
    }

    /// An end-to-end initiation relayed by neighbour `hop`: the same cheap checks as a link's
    /// first (mac1, replays, per-hop and node-wide limits; no cookie, the hop is authenticated).
    fn e2e_init(&mut self, now: Instant, hop: NodeId, init: &outer::Init<'_>) {
        match self.guard.screen(&self.local, init, Source::Hop(hop), now) {
            Screen::Proceed => {}
            Screen::Drop(why) | Screen::Cookie(why, _) => return self.drops.add(why),
        }
        let r = match handshake::consume_init(&self.local, init) {
            Ok(r) => {
                self.guard.processed(init);
                r
            }
            Err(handshake::HandshakeError::BadMac) => return self.drops.add(DropReason::BadMac),
            Err(_) => return self.drops.add(DropReason::HandshakeFailed),
        };
        let dest = r.peer_id;
        // Keys come from signed announcements: we answer only nodes the routing layer knows.
        if self.router.next_hop(&dest).is_none() {
            return self.drops.add(DropReason::RelayNoRoute);
        }
        let (remote, ts) = (r.remote_index, r.timestamp);
        let idx = self.fresh_index();
        let Some(e) = self.e2e_peer(dest, now) else {
            return;
        };
        if let Err(why) = e.accept_initiation(ts, now) {
            return self.drops.add(why.into());
        }
        match handshake::respond(r, &e.keys, idx) {
            Ok((keys, resp)) => {
                e.responder_keys(&keys, idx, remote, now, ROUTED);
                self.e2e_indices.insert(idx, dest);
                self.exit_money_handshake(dest);
                self.send_mesh(dest, &resp, now);
            }
            Err(_) => self.drops.add(DropReason::HandshakeFailed),
        }
    }

    fn e2e_resp(&mut self, now: Instant, resp: &outer::Resp<'_>) {
        if !handshake::resp_mac_ok(&self.local, resp) {
            return self.drops.add(DropReason::BadMac);
        }
        let Some(&dest) = self.e2e_indices.get(&resp.receiver) else {
            return self.drops.add(DropReason::UnknownIndex);
        };
        let Some(e) = self
            .e2e
            .get_mut(&dest)
            .filter(|e| e.pending_index() == Some(resp.receiver))
        else {
            return self.drops.add(DropReason::UnknownIndex);
        };
        let Some(pending) = e.take_pending() else {
            return;
        };
        match handshake::consume_resp(&self.local, pending, resp) {
            Ok(keys) => {
                e.initiator_keys(&keys, resp.receiver, resp.sender, now, ROUTED);
                self.exit_money_handshake(dest);
                if !self.flush_e2e(dest, now) {
                    self.e2e_keepalive(dest, now);
                }
            }
            Err(_) => self.drops.add(DropReason::HandshakeFailed),
        }
    }

    /// Send packets that waited for the end-to-end session; true if any.
    fn flush_e2e(&mut self, dest: NodeId, now: Instant) -> bool {
        let timers = self.cfg.timers;
        let Some(e) = self
            .e2e
            .get_mut(&dest)
            .filter(|e| e.has_session(now, &timers))
        else {
            return false;
        };
        let staged = e.take_staged();
        let sealed: Vec<_> = staged
            .iter()
            .filter_map(|p| seal_copy(e, Kind::Packet, p, now, &timers))
            .collect();
        for t in &sealed {
            self.send_mesh(dest, &t.data, now);
        }
        !staged.is_empty()
    }

    fn e2e_keepalive(&mut self, dest: NodeId, now: Instant) {
        let timers = self.cfg.timers;
        if let Some(t) = self
            .e2e
            .get_mut(&dest)
            .and_then(|e| seal_copy(e, Kind::Packet, &[], now, &timers))
        {
            self.send_mesh(dest, &t.data, now);
        }
    }

    /// End-to-end session timers: handshake retries, keepalives, expiry.
    pub(super) fn e2e_timers(&mut self, now: Instant) {
        let timers = self.cfg.timers;
        let idle: Vec<NodeId> = self
            .e2e
            .iter()
            .filter(|(_, e)| {
                !e.has_session(now, &timers)
                    && e.last_activity()
                        .is_none_or(|t| now.saturating_duration_since(t) >= E2E_IDLE_EXPIRY)
                    && e.handshake_due(now)
            })
            .map(|(id, _)| *id)
            .collect();
        if !idle.is_empty() {
            self.forget_e2e(&idle);
        }
        let mut work = Vec::new();
        for (id, e) in self.e2e.iter_mut() {
            if e.next_deadline(&timers).is_some_and(|d| d <= now) {
                let due = e.due(now, &timers);
                work.push((*id, due.handshake && e.handshake_due(now), due.keepalive));
            }
        }
        for (id, hs, ka) in work {
            if hs {
                self.initiate_e2e(id, now);
            }
            if ka {
                self.e2e_keepalive(id, now);
            }
        }
    }
}
