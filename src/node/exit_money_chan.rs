//! The exit channels' messages and durable steps: the same `ChannelMsg`s as on a link
//! (vouchers, acks as meter reports, grants, resyncs, quotes), sealed as `Kind::Channel` in
//! the end-to-end session between client and exit, and the same wallet ops
//! (commit-before-send, commit-before-credit). Invariants: these messages are never metered,
//! throttled or written to the TUN; a client acts only on messages for a channel it opened to
//! an exit it paid, and refuses a quote above the fee the exit announced; only an exit (or a
//! channel restored from the wallet) takes vouchers for an exit channel.

use std::time::Instant;

use super::super::Node;
use super::super::money_types::{WalletDone, WalletOp};
use super::super::money_view::ChannelView;
use crate::drops::DropReason;
use crate::identity::NodeId;
use crate::money::{Action, Amount, ChannelId, Meter, Reject};
use crate::session::aead::TransportAead;
use crate::wire::channel::ChannelMsg;
use crate::wire::outer::Kind;

/// How often an exit reports its meter to a client while it grows (as on links).
const METER_REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

fn totals(m: &Meter) -> (u64, Amount) {
    (m.total_bytes(), m.total_cost())
}

/// Which side of an exit channel a durable step is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Payer,
    Payee,
}

impl<A: TransportAead> Node<A> {
    /// Seal a channel message end to end for `peer` and send it towards it. False if there is
    /// no live session (the timers try again).
    pub(super) fn send_exit_channel(
        &mut self,
        peer: NodeId,
        msg: ChannelMsg,
        now: Instant,
    ) -> bool {
        let mut buf = Vec::with_capacity(msg.encoded_len());
        msg.encode(&mut buf);
        let timers = self.cfg.timers;
        let Some(t) = self
            .e2e
            .get_mut(&peer)
            .filter(|e| e.has_session(now, &timers))
            .and_then(|e| super::super::link::seal_copy(e, Kind::Channel, &buf, now, &timers))
        else {
            return false;
        };
        let sent = self.send_mesh(peer, &t.data, now);
        if sent {
            self.money.stats.exit_frames_sent += 1;
            self.money.stats.exit_bytes_sent += buf.len() as u64;
        }
        sent
    }

    /// A `Kind::Channel` message from `from`'s end-to-end session (authenticated by it).
    pub(in super::super) fn handle_exit_channel(
        &mut self,
        from: NodeId,
        body: &[u8],
        now: Instant,
    ) {
        self.money.stats.exit_frames_received += 1;
        self.money.stats.exit_bytes_received += body.len() as u64;
        let Ok(msg) = ChannelMsg::decode(body) else {
            return self.drops.add(DropReason::BadChannelMsg);
        };
        let payer_side = match msg {
            ChannelMsg::PriceQuote(_) | ChannelMsg::CreditGrant(_) | ChannelMsg::VoucherAck(_) => {
                true
            }
            ChannelMsg::Resync(r) => self
                .money
                .exit
                .payers
                .get(&from)
                .is_some_and(|p| p.payer.id() == r.channel_id),
            ChannelMsg::Voucher(_) => false,
            // On-chain backing (node/exit_money_chain.rs).
            m @ (ChannelMsg::ChainAddress(_) | ChannelMsg::ChainChannel(_)) => {
                if !self.handle_exit_chain_msg(from, m, now) {
                    self.drops.add(DropReason::ChannelRejected);
                }
                return;
            }
        };
        let r = if payer_side {
            // Only a channel we opened to pay an exit: nobody else can quote or report to us.
            let Some(p) = self.money.exit.payers.get_mut(&from) else {
                return self.drops.add(DropReason::ChannelRejected);
            };
            match msg {
                ChannelMsg::PriceQuote(q) if q.price.units_per_mib > p.announced => {
                    // Above what routing announces (a hostile exit, or its new fee not yet
                    // routed to us): held until the announcement matches.
                    p.held_quote = Some(q);
                    p.payer.count_reject(Reject::PriceRefused);
                    Err(Reject::PriceRefused)
                }
                ChannelMsg::PriceQuote(q) => {
                    p.held_quote = None;
                    p.payer.on_price_quote(&q).map(|()| None)
                }
                ChannelMsg::CreditGrant(g) => p.payer.on_credit_grant(&g).map(|()| None),
                ChannelMsg::VoucherAck(k) => p.payer.on_ack(&k).map(|()| None),
                ChannelMsg::Resync(r) => p.payer.on_resync(&r),
                ChannelMsg::Voucher(_)
                | ChannelMsg::ChainAddress(_)
                | ChannelMsg::ChainChannel(_) => Ok(None),
            }
        } else {
            let params = crate::money::ChannelParams {
                payer: from,
                payee: self.id,
                nonce: crate::money::EXIT_CHANNEL_NONCE,
            };
            let known = self.money.exit.payees.contains_key(&from)
                || self.money.restored.contains_key(&params.id());
            if !known && !self.router.config().exit {
                return self.drops.add(DropReason::ChannelRejected);
            }
            let Some(p) = self.exit_payee(from) else {
                return self.drops.add(DropReason::E2eSessionsFull);
            };
            p.last_active = Some(now);
            match msg {
                ChannelMsg::Voucher(v) => p.payee.on_voucher_at(&v, now),
                ChannelMsg::Resync(r) => {
                    let out = p.payee.on_resync_with(&r, p.fresh);
                    if r.channel_id == p.payee.id() {
                        p.fresh = false;
                    }
                    out
                }
                _ => Ok(None),
            }
        };
        match r {
            Ok(Some(action)) => self.exit_act(from, action, now),
            Ok(None) => {}
            Err(why) => {
                tracing::debug!(peer = %from, %why, "exit channel message rejected");
                self.drops.add(DropReason::ChannelRejected);
            }
        }
    }

    fn exit_act(&mut self, peer: NodeId, action: Action, now: Instant) {
        match action {
            Action::CommitThenSend(v) => {
                self.push_exit_op(peer, Side::Payer, WalletOp::CommitOutgoing(v))
            }
            Action::Commit(v) => self.push_exit_op(peer, Side::Payer, WalletOp::AdoptOutgoing(v)),
            Action::CommitThenCredit(v) => {
                self.push_exit_op(peer, Side::Payee, WalletOp::CommitIncoming(v))
            }
            Action::Resend(v) => {
                self.send_exit_channel(peer, ChannelMsg::Voucher(v), now);
            }
            Action::SendAck(k) => {
                self.send_exit_channel(peer, ChannelMsg::VoucherAck(k), now);
            }
        }
    }

    /// Queue a durable step for an exit channel, registering the channel first.
    fn push_exit_op(&mut self, peer: NodeId, side: Side, op: WalletOp) {
        let m = &mut self.money;
        let reg = match side {
            Side::Payer => m.exit.payers.get_mut(&peer).and_then(|p| {
                let first = !std::mem::replace(&mut p.registered, true);
                first.then(|| WalletOp::EnsureOutgoing(*p.payer.params()))
            }),
            Side::Payee => m.exit.payees.get_mut(&peer).and_then(|p| {
                let first = !std::mem::replace(&mut p.registered, true);
                first.then(|| WalletOp::EnsureIncoming(*p.payee.params()))
            }),
        };
        m.ops.extend(reg);
        m.ops.push_back(op);
    }

    /// Exit channel timers (from the money poll): resyncs after handshakes, the client paying,
    /// the exit's price changes and meter reports.
    pub(in super::super) fn exit_money_timers(&mut self, now: Instant) {
        let timers = self.cfg.timers;
        let pay = self.money.cfg.pay;
        let exits: Vec<NodeId> = self.money.exit.payers.keys().copied().collect();
        let routes = if exits.is_empty() {
            Vec::new()
        } else {
            self.router.exit_routes()
        };
        for id in exits {
            let live = self
                .e2e
                .get(&id)
                .is_some_and(|e| e.has_confirmed_session(now, &timers));
            let Some(p) = self.money.exit.payers.get_mut(&id) else {
                continue;
            };
            // The fee the exit announces now; while it announces none (its default route
            // is gone), the one it last announced.
            if let Some(r) = routes.iter().find(|r| r.id == id) {
                p.announced = r.exit_fee_per_mib();
            }
            if let Some(q) = p
                .held_quote
                .filter(|q| q.price.units_per_mib <= p.announced)
            {
                p.held_quote = None;
                // Errors are counted by the channel; a stale quote is simply not taken.
                let _ = p.payer.on_price_quote(&q);
            }
            let resync = (live && std::mem::take(&mut p.resync_due)).then(|| p.payer.resync());
            let action = if pay && live {
                p.payer.poll(now, &self.money.signer)
            } else {
                None
            };
            if let Some(r) = resync {
                self.send_exit_channel(id, ChannelMsg::Resync(r), now);
                if let Some(ours) = self.chain.ours {
                    self.send_exit_channel(id, ChannelMsg::ChainAddress(ours), now);
                }
            }
            if let Some(a) = action {
                self.exit_act(id, a, now);
            }
        }
        let price = self.exit_fee_price();
        let clients: Vec<NodeId> = self.money.exit.payees.keys().copied().collect();
        for id in clients {
            let live = self
                .e2e
                .get(&id)
                .is_some_and(|e| e.has_confirmed_session(now, &timers));
            let Some(p) = self.money.exit.payees.get_mut(&id) else {
                continue;
            };
            let mut msgs = Vec::new();
            // A new price epoch of ours (our fee changes only with one): quote it.
            if let Some(q) = p.payee.set_price(price)
                && live
            {
                msgs.push(ChannelMsg::PriceQuote(q));
            }
            if live && std::mem::take(&mut p.resync_due) {
                msgs.push(ChannelMsg::Resync(p.payee.resync()));
                msgs.push(ChannelMsg::CreditGrant(p.payee.grant()));
                msgs.push(ChannelMsg::PriceQuote(p.payee.price_quote()));
                msgs.extend(self.chain.ours.map(ChannelMsg::ChainAddress));
            }
            let metered = p.payee.meter().total_bytes();
            let due = p
                .reported_at
                .is_none_or(|t| now.saturating_duration_since(t) >= METER_REPORT_INTERVAL);
            if live && (metered != p.reported_bytes || p.seen) && due {
                p.reported_bytes = metered;
                p.seen = false;
                p.reported_at = Some(now);
                msgs.push(ChannelMsg::VoucherAck(p.payee.ack()));
            }
            for m in msgs {
                self.send_exit_channel(id, m, now);
            }
        }
    }

    /// The wallet finished a commit for an exit channel; false if `done` is for none.
    pub(in super::super) fn exit_wallet_done(&mut self, done: &WalletDone, now: Instant) -> bool {
        match *done {
            WalletDone::Outgoing { voucher, ok, .. } => {
                let id = voucher.channel_id;
                let Some((peer, p)) = self
                    .money
                    .exit
                    .payers
                    .iter_mut()
                    .find(|(_, p)| p.payer.id() == id)
                else {
                    return false;
                };
                let peer = *peer;
                if !ok {
                    p.payer.commit_failed(&voucher);
                } else if p.payer.committed(&voucher, now) {
                    self.send_exit_channel(peer, ChannelMsg::Voucher(voucher), now);
                }
                true
            }
            WalletDone::Incoming { voucher, ok } => {
                let id = voucher.channel_id;
                let Some((peer, p)) = self
                    .money
                    .exit
                    .payees
                    .iter_mut()
                    .find(|(_, p)| p.payee.id() == id)
                else {
                    return false;
                };
                let peer = *peer;
                if !ok {
                    p.payee.commit_failed(&voucher);
                } else if let Some(ack) = p.payee.committed(&voucher) {
                    self.send_exit_channel(peer, ChannelMsg::VoucherAck(ack), now);
                }
                true
            }
            WalletDone::Health(_) | WalletDone::Epoch(_) => false,
        }
    }

    /// Every exit payer's cap: what it has paid plus what the wallet still allows.
    pub(in super::super) fn exit_spend_caps(&mut self, headroom: Amount) {
        for p in self.money.exit.payers.values_mut() {
            let paid = p
                .payer
                .latest()
                .map_or(Amount::ZERO, |v| v.cumulative_amount);
            p.payer.set_spend_cap(paid.saturating_add(headroom));
        }
    }

    /// After the wallet failed for a while: every registered exit channel is registered and
    /// checkpointed again at the next checkpoint (`unwritten` is a total never reached).
    pub(in super::super) fn exit_rewrite_all(&mut self, unwritten: (u64, Amount)) {
        let m = &mut self.money.exit;
        for p in m.payers.values_mut() {
            if std::mem::replace(&mut p.registered, false) {
                p.checkpointed = unwritten;
            }
        }
        for p in m.payees.values_mut() {
            if std::mem::replace(&mut p.registered, false) {
                p.checkpointed = unwritten;
            }
        }
    }

    /// Checkpoints of the exit channels whose meters moved (registering them first).
    pub(in super::super) fn exit_checkpoints(
        &mut self,
        snaps: &mut Vec<(ChannelId, crate::money::MeterSnapshot)>,
    ) {
        let m = &mut self.money;
        for p in m.exit.payers.values_mut() {
            let now = totals(p.payer.meter());
            if now != p.checkpointed {
                if !std::mem::replace(&mut p.registered, true) {
                    m.ops.push_back(WalletOp::EnsureOutgoing(*p.payer.params()));
                }
                snaps.push((p.payer.id(), p.payer.meter().snapshot()));
                p.checkpointed = now;
            }
        }
        for p in m.exit.payees.values_mut() {
            let now = totals(p.payee.meter());
            if now != p.checkpointed {
                if !std::mem::replace(&mut p.registered, true) {
                    m.ops.push_back(WalletOp::EnsureIncoming(*p.payee.params()));
                }
                snaps.push((p.payee.id(), p.payee.meter().snapshot()));
                p.checkpointed = now;
            }
        }
    }

    /// The exit channels as the CLI sees them (after the link channels).
    pub(in super::super) fn exit_channel_views(&self, now: Instant, out: &mut Vec<ChannelView>) {
        for (peer, p) in &self.money.exit.payers {
            out.push(ChannelView::outgoing(*peer, &p.payer));
        }
        for (peer, p) in &self.money.exit.payees {
            let level = p.payee.level_allowing(p.allowance(), now);
            out.push(ChannelView::incoming(*peer, &p.payee, level));
        }
    }
}
