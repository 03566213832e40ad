//! On-chain backing of the exit channels (docs/ledger.md, "Exit channels"), sans-IO: the
//! client and its exit exchange chain addresses and offers in their end-to-end session, as
//! neighbours do on a link, and the ledger task backs each exit channel with its own on-chain
//! channel. Invariants: an address is taken only with a valid Ed25519 binding by the node at
//! the other end of the session; an offer is passed on only for the channel where that node
//! pays us, from its proven address, at most once per [`OFFER_INTERVAL`]; under a ledger every
//! exit payee requires backing before it credits anything, so a client's debt never exceeds
//! what it locked on chain.

use std::time::Instant;

use super::super::Node;
use super::super::money::{ChainEvent, ChainView, offer_due};
use crate::chain::ADDRESS_BINDING_DOMAIN;
use crate::identity::NodeId;
use crate::money::SharedBacking;
use crate::money::{Amount, ChainChannel, ChannelId, ChannelParams, EXIT_CHANNEL_NONCE};
use crate::session::aead::TransportAead;
use crate::wire::channel::ChannelMsg;

impl<A: TransportAead> Node<A> {
    /// A ledger was configured: exit payees from now on require backing.
    pub(in super::super) fn exit_enable_chain(&mut self) {
        for p in self.money.exit.payees.values_mut() {
            p.payee.require_backing();
            p.resync_due = true;
        }
    }

    /// [`Node::set_payer_backing`] for an exit channel; false if `channel` is not ours to
    /// `peer` as its client.
    pub(in super::super) fn exit_payer_backing(
        &mut self,
        peer: &NodeId,
        channel: ChannelId,
        backing: Option<SharedBacking>,
        offer: Option<ChainChannel>,
        now: Instant,
    ) -> bool {
        let Some(p) = self
            .money
            .exit
            .payers
            .get_mut(peer)
            .filter(|p| p.payer.id() == channel)
        else {
            return false;
        };
        p.payer.set_backing(backing);
        if let Some(offer) = offer {
            self.send_exit_channel(*peer, ChannelMsg::ChainChannel(offer), now);
        }
        true
    }

    /// [`Node::set_payee_backing`] for an exit channel: the client hears the new limit in a
    /// fresh grant. False if `channel` is not `peer` paying us as its exit.
    pub(in super::super) fn exit_payee_backing(
        &mut self,
        peer: &NodeId,
        channel: ChannelId,
        backing: Option<SharedBacking>,
        now: Instant,
    ) -> bool {
        let Some(p) = self
            .money
            .exit
            .payees
            .get_mut(peer)
            .filter(|p| p.payee.id() == channel)
        else {
            return false;
        };
        p.payee.set_backing(backing);
        let grant = p.payee.grant();
        self.send_exit_channel(*peer, ChannelMsg::CreditGrant(grant), now);
        true
    }

    /// A chain message in `from`'s end-to-end session; false if it is refused (counted by the
    /// caller).
    pub(in super::super) fn handle_exit_chain_msg(
        &mut self,
        from: NodeId,
        msg: ChannelMsg,
        now: Instant,
    ) -> bool {
        if self.chain.ours.is_none() {
            return false;
        }
        match msg {
            // Already held for every channel with `from`: nothing to verify again.
            ChannelMsg::ChainAddress(c)
                if [
                    self.money.exit.payers.get(&from).map(|p| p.peer_chain),
                    self.money.exit.payees.get(&from).map(|p| p.peer_chain),
                ]
                .iter()
                .flatten()
                .all(|a| *a == Some(c.address))
                    && (self.money.exit.payers.contains_key(&from)
                        || self.money.exit.payees.contains_key(&from)) =>
            {
                true
            }
            ChannelMsg::ChainAddress(c) => {
                if !from.verify(ADDRESS_BINDING_DOMAIN, &c.address, &c.signature) {
                    return false;
                }
                // A client's address may come before anything else of its channel.
                if !self.money.exit.payees.contains_key(&from) && self.router.config().exit {
                    let _ = self.exit_payee(from);
                }
                let e = &mut self.money.exit;
                let (mut known, mut new) = (false, false);
                if let Some(p) = e.payers.get_mut(&from) {
                    known = true;
                    new |= p.peer_chain.replace(c.address) != Some(c.address);
                }
                if let Some(p) = e.payees.get_mut(&from) {
                    known = true;
                    new |= p.peer_chain.replace(c.address) != Some(c.address);
                }
                if new {
                    self.chain.events.push_back(ChainEvent::PeerAddress {
                        peer: from,
                        address: c.address,
                    });
                }
                known
            }
            ChannelMsg::ChainChannel(offer) => {
                let Some(p) = self.money.exit.payees.get_mut(&from) else {
                    return false;
                };
                let (Some(payer_address), true) = (p.peer_chain, offer.channel_id == p.payee.id())
                else {
                    return false;
                };
                if !offer_due(&mut p.offer_at, now) {
                    return false;
                }
                p.last_active = Some(now);
                let ev = ChainEvent::ChannelOffered {
                    peer: from,
                    payer_address,
                    offer,
                    credited: p.payee.latest().map(Box::new),
                };
                self.chain.events.push_back(ev);
                true
            }
            _ => false,
        }
    }

    /// One view per node we hold exit channels with (as its client, its exit, or both).
    pub(in super::super) fn exit_chain_views(&self, out: &mut Vec<ChainView>) {
        let e = &self.money.exit;
        let mut peers: Vec<NodeId> = e.payers.keys().chain(e.payees.keys()).copied().collect();
        peers.sort_unstable_by_key(|p| p.0);
        peers.dedup();
        for peer in peers {
            let (payer, payee) = (e.payers.get(&peer), e.payees.get(&peer));
            let id = |payer, payee| {
                ChannelParams {
                    payer,
                    payee,
                    nonce: EXIT_CHANNEL_NONCE,
                }
                .id()
            };
            out.push(ChainView {
                peer,
                exit: true,
                address: payer
                    .and_then(|p| p.peer_chain)
                    .or(payee.and_then(|p| p.peer_chain)),
                outgoing: id(self.id, peer),
                outgoing_latest: payer.and_then(|p| p.payer.latest()),
                outgoing_ack: payer.and_then(|p| p.payer.acked()),
                outgoing_owed: payer.map_or(Amount::ZERO, |p| p.payer.payable()),
                outgoing_wanted: payer.is_some_and(|p| p.wants_backing),
                outgoing_backed: payer.is_some_and(|p| p.payer.backing().is_some()),
                incoming: id(peer, self.id),
                incoming_latest: payee.and_then(|p| p.payee.latest()),
                incoming_backed: payee.is_some_and(|p| p.payee.backing().is_some()),
            });
        }
    }
}
