//! What the CLI sees of the node's payment channels: one [`ChannelView`] per channel and
//! direction, link and exit channels alike, read-only, built on demand (never on the data
//! path).

use std::time::Instant;

use super::Node;
use crate::identity::NodeId;
use crate::money::{
    Amount, ChannelId, ChannelParams, EXIT_CHANNEL_NONCE, Level, PayeeChannel, PayerChannel,
};
use crate::session::aead::TransportAead;

impl<A: TransportAead> Node<A> {
    /// Every channel, for `wallet channels` and the balance: the link channels with each
    /// neighbour, then the exit channels (end to end with our exits and our clients;
    /// [`ChannelView::kind`] tells them apart).
    pub fn channel_views(&self, now: Instant) -> Vec<ChannelView> {
        let mut out = Vec::new();
        for a in self.money.accounts.iter().flatten() {
            out.push(ChannelView::outgoing(a.peer, &a.payer));
            out.push(ChannelView::incoming(a.peer, &a.payee, a.payee.level(now)));
        }
        self.exit_channel_views(now, &mut out);
        for v in &mut out {
            v.kind = v.kind_of(self.id);
        }
        out
    }
}

impl ChannelView {
    /// The view of a channel where we pay `peer`.
    pub(super) fn outgoing(peer: NodeId, p: &PayerChannel) -> Self {
        ChannelView {
            peer,
            channel_id: p.id(),
            direction: "outgoing",
            cumulative_paid: p.latest().map_or(Amount::ZERO, |v| v.cumulative_amount),
            latest_seq: p.latest().map_or(0, |v| v.seq),
            acked_seq: p.acked().map_or(0, |k| k.seq),
            credit_window: p.window(),
            unpaid: p.unpaid(),
            metered_bytes: p.meter().total_bytes(),
            metered_amount: p.meter().total_cost(),
            enforcement: None,
            throttled: Some(p.throttled()),
            rejected: p.stats().rejects.total(),
            rejects: p.stats().rejects.to_map(),
            kind: "link",
        }
    }

    /// The view of a channel where `peer` pays us, at service level `level`.
    pub(super) fn incoming(peer: NodeId, e: &PayeeChannel, level: Level) -> Self {
        ChannelView {
            peer,
            channel_id: e.id(),
            direction: "incoming",
            cumulative_paid: e.credited(),
            latest_seq: e.latest().map_or(0, |v| v.seq),
            acked_seq: e.latest().map_or(0, |v| v.seq),
            credit_window: e.window(),
            unpaid: e.unpaid(),
            metered_bytes: e.meter().total_bytes(),
            metered_amount: e.meter().total_cost(),
            enforcement: Some(level_name(level)),
            throttled: None,
            rejected: e.stats().rejects.total(),
            rejects: e.stats().rejects.to_map(),
            kind: "link",
        }
    }

    /// `"exit"` for an end-to-end exit-fee channel of node `me` (nonce
    /// [`EXIT_CHANNEL_NONCE`]), `"link"` otherwise. Derived from the channel id, so it works
    /// for views built from the wallet file too.
    pub fn kind_of(&self, me: NodeId) -> &'static str {
        let (payer, payee) = match self.direction {
            "outgoing" => (me, self.peer),
            _ => (self.peer, me),
        };
        let exit = ChannelParams {
            payer,
            payee,
            nonce: EXIT_CHANNEL_NONCE,
        };
        if exit.id() == self.channel_id {
            "exit"
        } else {
            "link"
        }
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Full => "full",
        Level::Shaped => "shaped",
        Level::Cut => "cut",
    }
}

/// One channel as the CLI shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ChannelView {
    /// The neighbour.
    pub peer: NodeId,
    /// The channel id.
    pub channel_id: ChannelId,
    /// `outgoing` (we pay) or `incoming` (we are paid).
    pub direction: &'static str,
    /// Cumulative amount of the latest committed voucher.
    pub cumulative_paid: Amount,
    /// Seq of the latest committed voucher.
    pub latest_seq: u64,
    /// Seq the other side acknowledged (outgoing) or we credited (incoming).
    pub acked_seq: u64,
    /// Unpaid debt allowed at full service.
    pub credit_window: Amount,
    /// Metered but not covered by a voucher.
    pub unpaid: Amount,
    /// Data bytes metered on this channel.
    pub metered_bytes: u64,
    /// What those bytes cost.
    pub metered_amount: Amount,
    /// Incoming: the neighbour's service level (`full`, `shaped`, `cut`).
    pub enforcement: Option<&'static str>,
    /// Outgoing: whether we hold data back.
    pub throttled: Option<bool>,
    /// Channel messages rejected.
    pub rejected: u64,
    /// The same by reason (`forged_signature`, `stale_seq`, ...), non-zero only.
    pub rejects: std::collections::BTreeMap<&'static str, u64>,
    /// `link` (a neighbour's channel) or `exit` (end to end, the exit's fee).
    pub kind: &'static str,
}
