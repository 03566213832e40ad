//! The node's part of on-chain settlement (docs/ledger.md), sans-IO: announcing our chain
//! address to neighbours, checking theirs against their node ids, and handing the I/O layer
//! what it needs to open, check and claim on-chain channels ([`ChainEvent`], [`ChainView`]).
//! Invariants: a neighbour's chain address is used only with its valid Ed25519 binding; an
//! offered on-chain channel is never trusted here, only passed on to be checked on chain;
//! under a ledger every incoming channel, link or exit (node/exit_money_chain.rs), requires
//! backing before it credits anything.

use std::time::Instant;

use super::Node;
use crate::identity::NodeId;
use crate::money::{
    Amount, ChainAddress, ChainChannel, ChannelId, SharedBacking, Voucher, VoucherAck,
};
use crate::session::aead::TransportAead;
use crate::wire::channel::ChannelMsg;

use crate::chain::ADDRESS_BINDING_DOMAIN;

/// The shortest time between two offers of one neighbour that are checked on chain (an
/// honest payer re-sends every 5 s while unacknowledged).
pub const OFFER_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether an offer may be passed on now (at most one per [`OFFER_INTERVAL`] per channel);
/// if so, `last` becomes `now`. Shared by link and exit channels.
pub(crate) fn offer_due(last: &mut Option<Instant>, now: Instant) -> bool {
    if last.is_some_and(|t| now.saturating_duration_since(t) < OFFER_INTERVAL) {
        return false;
    }
    *last = Some(now);
    true
}

/// Something the I/O layer must do or know for the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainEvent {
    /// A neighbour proved its chain address: we may open a channel to it.
    PeerAddress {
        /// The neighbour.
        peer: NodeId,
        /// Its chain address.
        address: [u8; 20],
    },
    /// A neighbour that pays us offers an on-chain channel as backing: check it on chain
    /// (payer, payee, deposit, not closing) and then call [`Node::set_payee_backing`].
    ChannelOffered {
        /// The neighbour (the payer).
        peer: NodeId,
        /// Its proven chain address.
        payer_address: [u8; 20],
        /// The offer.
        offer: ChainChannel,
        /// What we have credited on the channel (the base may not be above it).
        credited: Option<Box<Voucher>>,
    },
}

/// One neighbour's channels as the chain side needs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainView {
    /// The neighbour (or, for exit channels, the exit or client at the far end).
    pub peer: NodeId,
    /// The end-to-end exit channels with `peer` (nonce `EXIT_CHANNEL_NONCE`), not the link
    /// channels: each pair is backed by its own on-chain channels.
    pub exit: bool,
    /// Its proven chain address, if it sent one.
    pub address: Option<[u8; 20]>,
    /// The channel where we pay it.
    pub outgoing: ChannelId,
    /// Our latest committed voucher there.
    pub outgoing_latest: Option<Voucher>,
    /// The neighbour's latest ack on it: the seq and amount it credited.
    pub outgoing_ack: Option<VoucherAck>,
    /// What we owe it in total: our meter less what it reported never arriving.
    pub outgoing_owed: Amount,
    /// We held data back for lack of credit with it (we would pay if we could).
    pub outgoing_wanted: bool,
    /// Whether it is backed on chain.
    pub outgoing_backed: bool,
    /// The channel where it pays us.
    pub incoming: ChannelId,
    /// The latest voucher we credited there (with its chain signature, if backed).
    pub incoming_latest: Option<Voucher>,
    /// Whether it is backed on chain.
    pub incoming_backed: bool,
}

/// Chain state of the node.
#[derive(Debug, Default)]
pub(crate) struct NodeChain {
    /// Our signed chain address; `Some` means a ledger that moves coin is configured.
    pub(in crate::node) ours: Option<ChainAddress>,
    /// Events for the I/O layer.
    pub(in crate::node) events: std::collections::VecDeque<ChainEvent>,
    /// The backing of each channel (link or exit, by off-chain channel id), applied to its
    /// account whenever one is created: after a restart the journal's channels are in place
    /// before the first handshake, so the resync that follows it is judged with them.
    pub(in crate::node) backings: std::collections::HashMap<ChannelId, SharedBacking>,
}

impl<A: TransportAead> Node<A> {
    /// Settle on chain: announce `ours` (our address, signed by our node key) to neighbours
    /// and require on-chain backing for credit on incoming link channels.
    pub fn enable_chain(&mut self, ours: ChainAddress) {
        self.chain.ours = Some(ours);
        for a in self.money.accounts.iter_mut().flatten() {
            a.payee.require_backing();
            a.resync_due = true;
        }
        self.exit_enable_chain();
    }

    /// True if a ledger that moves coin is configured.
    pub fn chain_enabled(&self) -> bool {
        self.chain.ours.is_some()
    }

    /// The next chain event for the I/O layer.
    pub fn poll_chain_event(&mut self) -> Option<ChainEvent> {
        self.chain.events.pop_front()
    }

    /// Back our outgoing channel `channel` to `peer` (a link or an exit channel; `None`: no
    /// longer, e.g. withdrawn) and tell the peer (`offer`). Returns false if there is no such
    /// channel now.
    pub fn set_payer_backing(
        &mut self,
        peer: &NodeId,
        channel: ChannelId,
        backing: Option<SharedBacking>,
        offer: Option<ChainChannel>,
        now: Instant,
    ) -> bool {
        self.remember_backing(channel, backing.clone());
        if self.exit_payer_backing(peer, channel, backing.clone(), offer, now) {
            return true;
        }
        let Some(pi) = self.peer_index(peer) else {
            return false;
        };
        let Some(a) = self.account(pi).filter(|a| a.payer.id() == channel) else {
            return false;
        };
        a.payer.set_backing(backing);
        if let Some(offer) = offer {
            self.send_channel(pi, ChannelMsg::ChainChannel(offer), now);
        }
        true
    }

    /// Our incoming channel `channel` from `peer` is backed by a checked on-chain channel
    /// (`None`: no longer, e.g. withdrawn). The payer hears the new limit in a fresh grant.
    pub fn set_payee_backing(
        &mut self,
        peer: &NodeId,
        channel: ChannelId,
        backing: Option<SharedBacking>,
        now: Instant,
    ) {
        self.remember_backing(channel, backing.clone());
        if self.exit_payee_backing(peer, channel, backing.clone(), now) {
            return;
        }
        let Some(pi) = self.peer_index(peer) else {
            return;
        };
        let Some(a) = self.account(pi).filter(|a| a.payee.id() == channel) else {
            return;
        };
        a.payee.set_backing(backing);
        let grant = a.payee.grant();
        self.send_channel(pi, ChannelMsg::CreditGrant(grant), now);
    }

    /// At start, before any handshake: the backing of our channel `channel` (link or exit,
    /// either direction) from the journal. Nothing is sent.
    pub fn restore_backing(&mut self, channel: ChannelId, backing: SharedBacking) {
        self.remember_backing(channel, Some(backing));
    }

    fn remember_backing(&mut self, channel: ChannelId, backing: Option<SharedBacking>) {
        match backing {
            Some(b) => self.chain.backings.insert(channel, b),
            None => self.chain.backings.remove(&channel),
        };
    }

    /// Every neighbour's channels for the chain side, then the exit channels.
    pub fn chain_views(&self) -> Vec<ChainView> {
        let mut out: Vec<ChainView> = self
            .money
            .accounts
            .iter()
            .flatten()
            .map(|a| ChainView {
                peer: a.peer,
                exit: false,
                address: a.peer_chain,
                outgoing: a.payer.id(),
                outgoing_latest: a.payer.latest(),
                outgoing_ack: a.payer.acked(),
                outgoing_owed: a.payer.payable(),
                outgoing_wanted: a.wants_backing,
                outgoing_backed: a.payer.backing().is_some(),
                incoming: a.payee.id(),
                incoming_latest: a.payee.latest(),
                incoming_backed: a.payee.backing().is_some(),
            })
            .collect();
        self.exit_chain_views(&mut out);
        out
    }

    fn peer_index(&self, peer: &NodeId) -> Option<usize> {
        self.by_id.get(peer).copied()
    }

    /// A chain message from neighbour `pi` (already authenticated by the link). Offers are
    /// passed on at most once per [`OFFER_INTERVAL`] per neighbour: each costs the I/O layer
    /// an RPC call, which a hostile neighbour must not be able to multiply.
    pub(super) fn handle_chain_msg(&mut self, pi: usize, msg: ChannelMsg, now: Instant) -> bool {
        if self.chain.ours.is_none() {
            return false;
        }
        let Some(a) = self.account(pi) else {
            return false;
        };
        match msg {
            // The address we hold again: nothing to check (an Ed25519 verify costs ~20 AEAD
            // opens, so a neighbour repeating it must not make us verify each time).
            ChannelMsg::ChainAddress(c) if a.peer_chain == Some(c.address) => true,
            ChannelMsg::ChainAddress(c) => {
                if !a
                    .peer
                    .verify(ADDRESS_BINDING_DOMAIN, &c.address, &c.signature)
                {
                    return false;
                }
                let new = a.peer_chain != Some(c.address);
                a.peer_chain = Some(c.address);
                let peer = a.peer;
                if new {
                    self.chain.events.push_back(ChainEvent::PeerAddress {
                        peer,
                        address: c.address,
                    });
                }
                true
            }
            ChannelMsg::ChainChannel(offer) => {
                // Only for the channel where it pays us, and only from a proven address.
                let (Some(payer_address), true) = (a.peer_chain, offer.channel_id == a.payee.id())
                else {
                    return false;
                };
                if !offer_due(&mut a.offer_at, now) {
                    return false;
                }
                let ev = ChainEvent::ChannelOffered {
                    peer: a.peer,
                    payer_address,
                    offer,
                    credited: a.payee.latest().map(Box::new),
                };
                self.chain.events.push_back(ev);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::drops::DropReason;
    use crate::identity::Identity;
    use crate::node::{Node, NodeConfig, PeerConfig};

    fn ident(n: u8) -> Identity {
        Identity::from_secret([n; 32])
    }

    fn ep(last: u8) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, last], 51820))
    }

    fn ours(i: &Identity) -> ChainAddress {
        let b = crate::chain::ChainKey::derive(i).binding(i);
        ChainAddress {
            address: b.address.into_array(),
            signature: b.signature,
        }
    }

    /// Two linked nodes, both settling on chain, channels set up.
    fn pair(now: Instant) -> (Node, Node, Identity, Identity) {
        let (a, r) = (ident(1), ident(2));
        let peer = |i: &Identity, e| PeerConfig {
            id: i.id(),
            endpoint: Some(e),
        };
        let cfg = NodeConfig::default;
        let mut na = Node::new(&a, &[peer(&r, ep(2))], cfg(), now, 1, 1).unwrap();
        let mut nr = Node::new(&r, &[peer(&a, ep(1))], cfg(), now, 1, 2).unwrap();
        na.enable_chain(ours(&a));
        nr.enable_chain(ours(&r));
        na.start(now);
        nr.start(now);
        let mut t = now;
        for _ in 0..10 {
            t += Duration::from_millis(300);
            for (n, from) in [(&mut na, ep(1)), (&mut nr, ep(2))] {
                n.handle_timeout(t);
                let _ = from;
            }
            for _ in 0..5 {
                while let Some(mut x) = na.poll_transmit() {
                    nr.handle_udp(t, ep(1), &mut x.data);
                }
                while let Some(mut x) = nr.poll_transmit() {
                    na.handle_udp(t, ep(2), &mut x.data);
                }
            }
        }
        (na, nr, a, r)
    }

    #[test]
    fn addresses_are_exchanged_and_bound_to_node_ids() {
        let t0 = Instant::now();
        let (mut na, _nr, _a, r) = pair(t0);
        let events: Vec<_> = std::iter::from_fn(|| na.poll_chain_event()).collect();
        assert!(
            events.contains(&ChainEvent::PeerAddress {
                peer: r.id(),
                address: ours(&r).address
            }),
            "{events:?}"
        );
        assert_eq!(na.chain_views()[0].address, Some(ours(&r).address));
    }

    #[test]
    fn a_forged_address_and_a_stranger_offer_are_refused_and_offers_rate_limited() {
        let t0 = Instant::now();
        let (mut na, mut nr, a, r) = pair(t0);
        while na.poll_chain_event().is_some() {}
        let before = na.drops().get(DropReason::ChannelRejected);
        let deliver = |na: &mut Node, nr: &mut Node, msg: ChannelMsg, t: Instant| {
            assert!(nr.send_channel(0, msg, t));
            while let Some(mut x) = nr.poll_transmit() {
                na.handle_udp(t, ep(2), &mut x.data);
            }
        };
        // R claims A's own address, and an address signed by a third node.
        let mut forged = ours(&a);
        deliver(&mut na, &mut nr, ChannelMsg::ChainAddress(forged), t0);
        forged = ChainAddress {
            signature: ident(9).sign(ADDRESS_BINDING_DOMAIN, &forged.address),
            ..forged
        };
        deliver(&mut na, &mut nr, ChannelMsg::ChainAddress(forged), t0);
        assert_eq!(na.drops().get(DropReason::ChannelRejected), before + 2);
        assert_eq!(
            na.chain_views()[0].address,
            Some(ours(&r).address),
            "unchanged"
        );
        // An offer for a channel that is not R paying A is refused.
        let wrong = ChainChannel {
            channel_id: na.chain_views()[0].outgoing,
            onchain_id: [5; 32],
            base_seq: 0,
            base_amount: Amount::ZERO,
            base_bytes: 0,
        };
        deliver(&mut na, &mut nr, ChannelMsg::ChainChannel(wrong), t0);
        assert_eq!(na.drops().get(DropReason::ChannelRejected), before + 3);
        // Offers for the right channel reach the ledger at most once a second.
        let offer = ChainChannel {
            channel_id: na.chain_views()[0].incoming,
            ..wrong
        };
        for i in 0..10 {
            deliver(
                &mut na,
                &mut nr,
                ChannelMsg::ChainChannel(offer),
                t0 + Duration::from_millis(i * 50),
            );
        }
        let offered = std::iter::from_fn(|| na.poll_chain_event())
            .filter(|e| matches!(e, ChainEvent::ChannelOffered { .. }))
            .count();
        assert_eq!(offered, 1);
        deliver(
            &mut na,
            &mut nr,
            ChannelMsg::ChainChannel(offer),
            t0 + OFFER_INTERVAL + Duration::from_millis(500),
        );
        assert!(matches!(
            na.poll_chain_event(),
            Some(ChainEvent::ChannelOffered { peer, .. }) if peer == r.id()
        ));
    }

    /// R restarts; A answers its handshake and runs its money poll before R's first message
    /// confirms the new session. What A sends then is sealed under the old keys, which R lost:
    /// the chain address must wait for the new session, or R never learns it (seen in
    /// ledger_crash_netns as a channel R never took as backed).
    #[test]
    fn a_restarted_neighbour_gets_our_address_even_if_our_poll_runs_before_it_confirms() {
        let t0 = Instant::now();
        let (mut na, _nr, a, r) = pair(t0);
        let mut t = t0 + Duration::from_secs(10);
        let peer_a = PeerConfig {
            id: a.id(),
            endpoint: Some(ep(1)),
        };
        let mut nr: Node =
            Node::new(&r, &[peer_a], NodeConfig::default(), t, 10_000_000_000, 3).unwrap();
        nr.enable_chain(ours(&r));
        nr.start(t);
        let init = nr.poll_transmit().expect("initiation");
        let mut init = init.data;
        na.handle_udp(t, ep(2), &mut init);
        let resp: Vec<_> = std::iter::from_fn(|| na.poll_transmit()).collect();
        // A's poll runs now, with R's confirmation still in flight.
        t += Duration::from_millis(500);
        na.handle_timeout(t);
        for mut x in std::iter::from_fn(|| na.poll_transmit()) {
            nr.handle_udp(t, ep(1), &mut x.data); // old keys: R cannot open these
        }
        for mut x in resp {
            nr.handle_udp(t, ep(1), &mut x.data);
        }
        for _ in 0..10 {
            t += Duration::from_millis(300);
            na.handle_timeout(t);
            nr.handle_timeout(t);
            for _ in 0..5 {
                while let Some(mut x) = na.poll_transmit() {
                    nr.handle_udp(t, ep(1), &mut x.data);
                }
                while let Some(mut x) = nr.poll_transmit() {
                    na.handle_udp(t, ep(2), &mut x.data);
                }
            }
        }
        let events: Vec<_> = std::iter::from_fn(|| nr.poll_chain_event()).collect();
        assert!(
            events.contains(&ChainEvent::PeerAddress {
                peer: a.id(),
                address: ours(&a).address
            }),
            "{events:?}"
        );
    }
}
