//! The check every decrypted IP packet passes before it reaches the TUN (issue 8, item 12):
//! its source must be an address of the node whose session authenticated it, and its
//! destination must be one of our own addresses. Invariant: with IP forwarding on, a neighbour
//! or a distant node can reach only this host's overlay addresses through us, never the host's
//! other networks, and never for free.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Node, ip_src_dst};
use crate::drops::DropReason;
use crate::session::aead::TransportAead;

/// The overlay addresses of the node that sealed a packet (its end-to-end or link session).
#[derive(Clone, Copy, Debug)]
pub(super) struct Owner {
    pub(super) v4: Ipv4Addr,
    pub(super) v6: Ipv6Addr,
}

impl<A: TransportAead> Node<A> {
    /// Why `pkt`, authenticated under `owner`'s session, must not reach the TUN, if it must
    /// not. Cheap: one header parse and four comparisons.
    pub(super) fn inner_refusal(&self, pkt: &[u8], owner: Owner) -> Option<DropReason> {
        let Some((src, dst)) = ip_src_dst(pkt) else {
            return Some(DropReason::BadInnerPacket);
        };
        if src != IpAddr::V4(owner.v4) && src != IpAddr::V6(owner.v6) {
            return Some(DropReason::SpoofedSource);
        }
        // Only our own addresses: never the host's LAN, loopback, multicast or another overlay
        // node's address (a host that forwards would otherwise carry it for the sender).
        if dst != IpAddr::V4(self.own_v4) && dst != IpAddr::V6(self.v6) {
            return Some(DropReason::NotForUs);
        }
        None
    }
}
