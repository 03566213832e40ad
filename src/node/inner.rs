//! The check every decrypted IP packet passes before it reaches the TUN (issue 8, item 12):
//! its source must be an address of the node whose session authenticated it, and its
//! destination must be one of our own addresses. Two exceptions, both end to end only: an
//! exit takes packets for internet destinations (never overlay or special ones) to forward
//! them, and a client takes replies from internet sources, but only on the session with the
//! exit its default route goes to. Invariant: with IP forwarding on, a neighbour or a distant
//! node can reach through us only this host's overlay addresses, or, on an exit, the internet
//! (the exit's nftables table then keeps it off the host's LAN); and no node but our exit can
//! speak for an internet address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Node, ip_src_dst};
use crate::drops::DropReason;
use crate::identity::NodeId;
use crate::session::aead::TransportAead;

/// The overlay addresses of the node that sealed a packet (its end-to-end or link session).
#[derive(Clone, Copy, Debug)]
pub(super) struct Owner {
    pub(super) v4: Ipv4Addr,
    pub(super) v6: Ipv6Addr,
}

/// Which session authenticated a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Via {
    /// A neighbour's link session (its own packets to us).
    Link,
    /// The end-to-end session with this node.
    EndToEnd(NodeId),
}

/// An internet address an exit may forward to, or its client hear from: unicast, outside the
/// overlay ranges, not loopback, link-local, unspecified or broadcast.
pub(super) fn internet(a: IpAddr) -> bool {
    if crate::route::is_overlay(a) || a.is_loopback() || a.is_multicast() || a.is_unspecified() {
        return false;
    }
    match a {
        IpAddr::V4(v) => !v.is_link_local() && !v.is_broadcast(),
        IpAddr::V6(v) => !v.is_unicast_link_local(),
    }
}

impl<A: TransportAead> Node<A> {
    /// Why `pkt`, authenticated under `owner`'s session (`via`), must not reach the TUN, if it
    /// must not. Cheap: one header parse and a few comparisons.
    pub(super) fn inner_refusal(&self, pkt: &[u8], owner: Owner, via: Via) -> Option<DropReason> {
        let Some((src, dst)) = ip_src_dst(pkt) else {
            return Some(DropReason::BadInnerPacket);
        };
        let own_src = src == IpAddr::V4(owner.v4) || src == IpAddr::V6(owner.v6);
        let from_our_exit = match via {
            Via::EndToEnd(id) => self.exit_in_use == Some(id),
            Via::Link => false,
        };
        let speaks_for_internet = from_our_exit && internet(src);
        if !own_src && !speaks_for_internet {
            return Some(DropReason::SpoofedSource);
        }
        // Only our own addresses: never the host's LAN, loopback, multicast or another overlay
        // node's address (a host that forwards would otherwise carry it for the sender).
        let ours = dst == IpAddr::V4(self.own_v4) || dst == IpAddr::V6(self.v6);
        let exit_bound = via != Via::Link && self.router.config().exit && own_src && internet(dst);
        if !ours && !exit_bound {
            return Some(DropReason::NotForUs);
        }
        None
    }
}
