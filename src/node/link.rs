//! Link sessions with neighbours: handshakes, transport frames by kind, keepalives, staged
//! packets, and carrying the router's messages. Invariant: a frame is acted on only after it
//! authenticated under the session of the neighbour it is attributed to.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::inner::{Owner, Via};
use super::{Node, Transmit, UdpOut};
use crate::drops::DropReason;
use crate::session::aead::TransportAead;
use crate::session::guard::{Screen, Source};
use crate::session::handshake::{self, HandshakeError};
use crate::wire::outer::{self, Kind, TRANSPORT_HEADER_LEN};

/// Where a link frame's plaintext starts in its datagram.
const PT: usize = TRANSPORT_HEADER_LEN;

impl<A: TransportAead> Node<A> {
    pub(super) fn initiate(&mut self, pi: usize, now: Instant) {
        let targets = self.handshake_targets(pi, now);
        if targets.is_empty() {
            return;
        }
        let idx = self.fresh_index();
        self.indices.insert(idx, pi);
        let ts = self.tai64n(now);
        let jitter = Duration::from_millis(self.next_rand() % 334);
        let timers = self.cfg.timers;
        let Some(peer) = self.peers.get_mut(pi) else {
            return;
        };
        let cookie = peer.cookies.fresh(now);
        if let Ok((pending, msg)) =
            handshake::initiate_with_cookie(&self.local, &peer.keys, idx, ts, cookie)
        {
            peer.initiation_sent(pending, now, &timers, jitter);
            // One initiation to each candidate address: whichever answers authenticates.
            for dst in targets {
                self.transmits.push_back(Transmit {
                    dst,
                    data: msg.clone(),
                });
            }
        }
    }

    pub(super) fn handle_transport(
        &mut self,
        now: Instant,
        from: SocketAddr,
        h: outer::TransportHeader,
        msg: &mut [u8],
    ) -> UdpOut {
        let Some(&pi) = self.indices.get(&h.receiver) else {
            self.drops.add(DropReason::UnknownIndex);
            return UdpOut::None;
        };
        let timers = self.cfg.timers;
        let Some(peer) = self.peers.get_mut(pi) else {
            return UdpOut::None;
        };
        let had_session = peer.has_session(now, &timers);
        let n = match peer.open(&h, msg, from, now, &timers) {
            Ok(n) => n,
            Err(e) => {
                self.drop_for(Some(pi), e.into());
                return UdpOut::None;
            }
        };
        let (id, v4, v6) = (peer.id, peer.addr_v4, peer.addr_v6);
        if !had_session {
            // A responder's session just got confirmed: the neighbour is up for routing too.
            self.router.add_neighbour(id, now);
            self.neighbour_verified(pi);
        }
        if self.peers.get(pi).is_some_and(|p| p.has_staged()) {
            self.flush_staged(pi, now);
        }
        if n == 0 {
            return UdpOut::None; // keepalive
        }
        if v4 == std::net::Ipv4Addr::BROADCAST && Kind::from_u8(h.kind) == Some(Kind::Packet) {
            // Its IPv4 address collides (`refresh_v4`): a packet from it is counted as such.
            let src = msg
                .get(PT..PT + n)
                .filter(|p| p.first().is_some_and(|b| b >> 4 == 4))
                .and_then(|p| p.get(12..16));
            if src == Some(&id.ipv4().octets()[..]) {
                self.drop_for(Some(pi), DropReason::Ipv4Collision);
                return UdpOut::None;
            }
        }
        let range = PT..PT + n;
        match Kind::from_u8(h.kind) {
            Some(Kind::Packet) => {
                let pkt = msg.get(range.clone()).unwrap_or_default();
                match self.inner_refusal(pkt, Owner { v4, v6 }, Via::Link) {
                    Some(why) => self.drop_for(Some(pi), why),
                    None => {
                        if let Some(p) = self.peers.get_mut(pi) {
                            p.stats.rx_bytes += n as u64;
                            p.stats.rx_packets += 1;
                        }
                        return UdpOut::Tun(range);
                    }
                }
            }
            Some(Kind::Routing) => {
                let body = msg.get(range).unwrap_or_default();
                if self.router.handle_message(id, body, now).is_err() {
                    self.drop_for(Some(pi), DropReason::RoutingRejected);
                }
            }
            Some(Kind::Channel) => {
                let body = msg.get(range).unwrap_or_default().to_vec();
                self.handle_channel(pi, &body, now);
            }
            Some(k @ (Kind::Mesh | Kind::MeshSealed)) => {
                if let Some(p) = self.peers.get_mut(pi) {
                    p.stats.rx_bytes += n as u64;
                    p.stats.rx_packets += 1;
                }
                return self.handle_mesh(pi, now, msg, n, k == Kind::MeshSealed);
            }
            Some(Kind::Probe) => self.drop_for(Some(pi), DropReason::LinkOnlyKind),
            None => self.drop_for(Some(pi), DropReason::UnknownKind),
        }
        UdpOut::None
    }

    pub(super) fn handle_init(&mut self, now: Instant, from: SocketAddr, init: &outer::Init<'_>) {
        match self
            .guard
            .screen(&self.local, init, Source::Addr(from), now)
        {
            Screen::Proceed => {}
            Screen::Drop(why) => return self.drops.add(why),
            Screen::Cookie(why, reply) => {
                self.drops.add(why);
                return self.transmits.push_back(Transmit {
                    dst: from,
                    data: reply.to_vec(),
                });
            }
        }
        let r = match handshake::consume_init(&self.local, init) {
            Ok(r) => {
                self.guard.processed(init);
                r
            }
            Err(HandshakeError::BadMac) => return self.drops.add(DropReason::BadMac),
            Err(_) => return self.drops.add(DropReason::HandshakeFailed),
        };
        let Some(&pi) = self.by_id.get(&r.peer_id) else {
            tracing::debug!(peer = %r.peer_id, %from, "handshake from a key that is not a peer");
            return self.drops.add(DropReason::UnknownPeer);
        };
        let timers = self.cfg.timers;
        let Some(peer) = self.peers.get_mut(pi) else {
            return;
        };
        let fresh = !peer.has_session(now, &timers);
        if let Err(why) = peer.accept_initiation(r.timestamp, now) {
            return self.drop_for(Some(pi), why.into());
        }
        let remote = r.remote_index;
        let idx = self.fresh_index();
        self.indices.insert(idx, pi);
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
                self.money_handshake(pi, fresh);
            }
            Err(_) => self.drop_for(Some(pi), DropReason::HandshakeFailed),
        }
    }

    /// A cookie reply: the peer is under load. Keep the cookie, and resend the initiation in
    /// flight with mac2 at once (only once per initiation), so that an honest initiator gets
    /// through a flood with one extra round trip instead of a REKEY_TIMEOUT.
    pub(super) fn handle_cookie(
        &mut self,
        now: Instant,
        from: SocketAddr,
        c: &outer::CookieReply<'_>,
    ) {
        let peer = self
            .indices
            .get(&c.receiver)
            .and_then(|&pi| self.peers.get_mut(pi))
            .filter(|p| p.pending_index() == Some(c.receiver));
        let Some(peer) = peer else {
            return self.drops.add(DropReason::BadCookie);
        };
        let Some(pending) = peer.pending.as_mut() else {
            return self.drops.add(DropReason::BadCookie);
        };
        if !peer
            .cookies
            .consume(&peer.keys.cookie_key, pending.mac1(), c, now)
        {
            return self.drops.add(DropReason::BadCookie);
        }
        self.drops.add(DropReason::CookieReceived);
        let resend = peer
            .cookies
            .fresh(now)
            .and_then(|cookie| pending.resend_with(&cookie));
        if let Some(data) = resend {
            tracing::debug!(peer = %peer.id, %from, "cookie reply: initiation resent with mac2");
            self.transmits.push_back(Transmit { dst: from, data });
        }
    }

    pub(super) fn handle_resp(&mut self, now: Instant, from: SocketAddr, resp: &outer::Resp<'_>) {
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
        let sent_at = peer.last_initiation();
        let fresh = !peer.has_session(now, &self.cfg.timers);
        let Some(pending) = peer.take_pending() else {
            return;
        };
        match handshake::consume_resp(&self.local, pending, resp) {
            Ok(keys) => {
                peer.initiator_keys(&keys, resp.receiver, resp.sender, now, from);
                let id = peer.id;
                tracing::debug!(peer = %id, %from, "handshake complete");
                self.router.add_neighbour(id, now);
                self.neighbour_verified(pi);
                self.money_handshake(pi, fresh);
                if let Some(t) = sent_at {
                    self.router
                        .set_link_stats(id, Some(now.saturating_duration_since(t)), now);
                }
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
        let timers = self.cfg.timers;
        let Some(peer) = self.peers.get_mut(pi) else {
            return false;
        };
        if !peer.has_session(now, &timers) {
            return false;
        }
        let staged = peer.take_staged();
        let any = !staged.is_empty();
        for p in staged {
            if let Some(t) = seal_copy(peer, Kind::Packet, &p, now, &timers) {
                self.transmits.push_back(t);
            }
        }
        any
    }

    pub(super) fn send_keepalive(&mut self, pi: usize, now: Instant) {
        let timers = self.cfg.timers;
        if let Some(t) = self
            .peers
            .get_mut(pi)
            .and_then(|p| seal_copy(p, Kind::Packet, &[], now, &timers))
        {
            self.transmits.push_back(t);
        }
    }

    /// Seal the router's queued messages to their neighbours.
    pub(super) fn flush_router(&mut self, now: Instant) {
        let timers = self.cfg.timers;
        while let Some((to, bytes)) = self.router.poll_transmit() {
            let Some(&pi) = self.by_id.get(&to) else {
                continue;
            };
            // No live link: the router notices by missing hellos; nothing to queue.
            if let Some(t) = self
                .peers
                .get_mut(pi)
                .and_then(|p| seal_copy(p, Kind::Routing, &bytes, now, &timers))
            {
                self.transmits.push_back(t);
            }
        }
        while let Some(ev) = self.router.poll_event() {
            tracing::debug!(?ev, "routing");
            self.route_event_v4(&ev);
        }
    }

    /// Send one frame of any kind to neighbour `to` over its link session (the control path;
    /// tests use it to play a misbehaving neighbour). False if there is no live session.
    pub fn send_frame(
        &mut self,
        to: crate::identity::NodeId,
        kind: Kind,
        payload: &[u8],
        now: Instant,
    ) -> bool {
        match self.by_id.get(&to).copied() {
            Some(pi) => self.send_link_copy(pi, kind, payload, now),
            None => false,
        }
    }

    /// Seal `frame` (a mesh frame) to neighbour `pi` into a new datagram.
    pub(super) fn send_link_copy(
        &mut self,
        pi: usize,
        kind: Kind,
        frame: &[u8],
        now: Instant,
    ) -> bool {
        let timers = self.cfg.timers;
        match self
            .peers
            .get_mut(pi)
            .and_then(|p| seal_copy(p, kind, frame, now, &timers))
        {
            Some(t) => {
                self.transmits.push_back(t);
                true
            }
            None => false,
        }
    }
}

/// Seal a copy of `pt` for `peer` (the control path: allocation is fine here).
pub(super) fn seal_copy<A: TransportAead>(
    peer: &mut crate::session::peer::Peer<A>,
    kind: Kind,
    pt: &[u8],
    now: Instant,
    timers: &crate::session::timers::Timers,
) -> Option<Transmit> {
    let mut buf = vec![0u8; PT + pt.len() + crate::session::aead::TAG_LEN];
    buf.get_mut(PT..PT + pt.len())?.copy_from_slice(pt);
    let (n, dst) = peer.seal(kind, &mut buf, pt.len(), now, timers)?;
    buf.truncate(n);
    Some(Transmit { dst, data: buf })
}
