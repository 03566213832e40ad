//! What the host sends: one IP packet read from the TUN becomes a sealed datagram for a
//! neighbour (direct), a routed frame (mesh), an exit's internet frame, or a counted drop.
//! Invariant: every decision, counter and byte count is made here on the node's thread; a
//! deferred seal leaves only the AEAD work, which may run anywhere before the send.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Instant;

use super::{HEADROOM, Node, inner, ip_src_dst};
use crate::drops::DropReason;
use crate::session::aead::TransportAead;
use crate::session::keypair::SealJob;
use crate::wire::outer::{Kind, TRANSPORT_HEADER_LEN};

impl<A: TransportAead> Node<A> {
    /// An IP packet read from the TUN sits at `buf[HEADROOM..HEADROOM + len]`, with TAILROOM
    /// spare bytes after it. Returns the range of `buf` holding the sealed datagram and where
    /// to send it, or None if the packet was staged, answered with ICMP, or dropped.
    pub fn handle_tun(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
    ) -> Option<(Range<usize>, SocketAddr)> {
        self.tun_packet(now, buf, len, false)
            .map(|(range, dst, _)| (range, dst))
    }

    /// As [`Node::handle_tun`], but a packet for a neighbour's own session (the bulk case) may
    /// come back with its AEAD work still to do: the datagram in the range is valid only after
    /// the [`SealJob`] has run on the same `buf`, on this thread or another. Every decision,
    /// counter and byte count is made here, so the job is pure crypto.
    pub fn handle_tun_deferred(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
    ) -> Option<(Range<usize>, SocketAddr, Option<SealJob<A>>)> {
        self.tun_packet(now, buf, len, true)
    }

    fn tun_packet(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        defer: bool,
    ) -> Option<(Range<usize>, SocketAddr, Option<SealJob<A>>)> {
        let done = |r: Option<(Range<usize>, SocketAddr)>| r.map(|(range, dst)| (range, dst, None));
        let Some((_, dst)) = buf.get(HEADROOM..HEADROOM + len).and_then(ip_src_dst) else {
            self.drops.add(DropReason::NotIp);
            return None;
        };
        if let IpAddr::V4(v4) = dst
            && self.v4_refused(v4)
        {
            self.drops.add(DropReason::Ipv4Collision);
            return None;
        }
        // A neighbour's own address with a live link goes direct, with one layer of crypto;
        // the route table is consulted once, and only when that fast case does not apply.
        let direct = self.peer_for_addr(dst);
        let live = direct
            .and_then(|pi| self.peers.get(pi))
            .is_some_and(|p| p.has_session(now, &self.cfg.timers));
        // An exit's reply from the internet goes end to end even to a neighbour: only that
        // session may speak for an internet address, and the exit fee is metered there.
        if let (Some(pi), true) = (direct, live)
            && !self.is_exit_reply(buf, len)
        {
            return self.send_direct(pi, now, buf, len, defer);
        }
        if !crate::route::is_overlay(dst) {
            // The host's own multicast and link-local chatter on the TUN goes nowhere.
            if !inner::internet(dst) {
                self.drops.add(DropReason::NoRoute);
                return None;
            }
            return done(self.send_internet(now, buf, len));
        }
        match self.router.lookup_addr(dst) {
            Some((dest, next_hop)) => done(self.send_routed_billed(dest, next_hop, now, buf, len)),
            // A configured neighbour without a session and no route: stage and handshake.
            None if direct.is_some() => self.send_direct(direct?, now, buf, len, defer),
            None => {
                self.drops.add(DropReason::NoRoute);
                None
            }
        }
    }

    fn send_direct(
        &mut self,
        pi: usize,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        defer: bool,
    ) -> Option<(Range<usize>, SocketAddr, Option<SealJob<A>>)> {
        let timers = self.cfg.timers;
        let at = HEADROOM - TRANSPORT_HEADER_LEN;
        let peer = self.peers.get_mut(pi)?;
        let want_rekey = peer.rekey_wanted(now, &timers) && peer.handshake_due(now);
        let out = buf.get_mut(at..)?;
        let sealed = if defer {
            peer.seal_deferred(Kind::Packet, out, len, now, &timers)
                .map(|(n, ep, job)| (n, ep, Some(job)))
        } else {
            peer.seal(Kind::Packet, out, len, now, &timers)
                .map(|(n, ep)| (n, ep, None))
        };
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
        sealed.map(|(n, ep, job)| (at..at + n, ep, job))
    }
}
