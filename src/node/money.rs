//! Paying and being paid, per neighbour (DESIGN.md §5): each link carries two unidirectional
//! channels, one where we pay the neighbour and one where it pays us. Owns pay-per-forward
//! metering on the data path, the enforcement verdict on relayed frames, channel frames
//! (`Kind::Channel`) and the queue of durable steps for the wallet. Invariants: a voucher is
//! sent only after the wallet reported it committed, and credit is extended only after the
//! wallet reported the incoming voucher committed ([`Node::wallet_done`]); channel and routing
//! frames are never metered or throttled; both sides meter only mesh frames that were actually
//! forwarded (whose destination is not the receiving neighbour): the payer learns of frames the
//! payee did not carry from the payee's meter reports and does not pay for them. A neighbour
//! costs wallet rows only once there is something to store (a voucher or a non-zero meter),
//! and a checkpoint writes only channels whose meters moved. Exit fees travel on end-to-end
//! channels of their own (node/exit_money.rs), polled from the same timers.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::Node;
pub use super::money_types::{MoneyConfig, MoneyStats, Restored, WalletHealth, WalletOp};
use crate::drops::DropReason;
use crate::identity::{Identity, NodeId};
use crate::money::enforce::FreeTier;
use crate::money::{
    Action, Amount, ChannelId, ChannelParams, PayeeChannel, PayerChannel, Price, Verdict,
};
use crate::session::aead::TransportAead;
use crate::wire::channel::ChannelMsg;
use crate::wire::outer::Kind;

#[path = "money_wallet.rs"]
mod wallet;

#[path = "money_chain.rs"]
mod chain;
pub(super) use chain::NodeChain;
pub(super) use chain::offer_due;
pub use chain::{ChainEvent, ChainView};

/// How often `handle_timeout` runs the channels (pay, resend, resync).
const MONEY_POLL: Duration = Duration::from_millis(200);
/// Link header and tag around a channel frame's plaintext.
const LINK_OVERHEAD: usize =
    crate::wire::outer::TRANSPORT_HEADER_LEN + crate::session::aead::TAG_LEN;
/// How often a payee reports its meter (as an ack) while it grows, so the payer pays for what
/// arrived rather than what it sent.
const METER_REPORT_INTERVAL: Duration = Duration::from_millis(500);

/// Both channels with one neighbour.
#[derive(Debug)]
pub(super) struct Account {
    pub(super) peer: NodeId,
    pub(super) payer: PayerChannel,
    pub(super) payee: PayeeChannel,
    /// A handshake completed: send our resyncs when the link can carry them.
    resync_due: bool,
    /// The link came up from nothing on our side (we restarted or it was down): the first
    /// resync from the payer may raise our meter.
    fresh: bool,
    /// Our payee meter's byte total at the last report, and when it was sent.
    reported_bytes: u64,
    reported_at: Option<Instant>,
    /// A frame to relay arrived since the last report: even if we carried none of it, the
    /// payer must hear our count, or it pays for what we dropped.
    relay_seen: bool,
    /// Both channels are registered in the wallet (restored from it, or registered when the
    /// first thing needed storing).
    registered: bool,
    /// Meter totals (payer, payee) of the last checkpoint sent to the wallet.
    checkpointed: [(u64, Amount); 2],
    /// The neighbour's chain address, once it proved it (docs/ledger.md).
    peer_chain: Option<[u8; 20]>,
    /// We held data back for lack of credit with this neighbour (self-throttled).
    wants_backing: bool,
    /// When its last on-chain offer was passed on to be checked (rate limit).
    offer_at: Option<Instant>,
    /// What we send it at its free tier while it credits no more (payer side).
    free: FreeTier,
}

impl Account {
    fn params(&self) -> (ChannelParams, ChannelParams) {
        (*self.payer.params(), *self.payee.params())
    }
}

/// The node's money state.
pub(super) struct Money {
    pub(super) cfg: MoneyConfig,
    pub(super) signer: Identity,
    pub(super) accounts: Vec<Option<Account>>,
    pub(super) restored: HashMap<ChannelId, Restored>,
    pub(super) ops: VecDeque<WalletOp>,
    /// The end-to-end exit-fee channels (node/exit_money.rs).
    pub(super) exit: super::exit_money::ExitMoney,
    next_poll: Instant,
    next_checkpoint: Instant,
    pub(super) stats: MoneyStats,
    /// Whether the wallet can store now (set by the daemon, [`Node::set_wallet_health`]).
    pub(super) health: WalletHealth,
}

impl Money {
    pub(super) fn new(cfg: MoneyConfig, signer: Identity, now: Instant) -> Self {
        Money {
            next_checkpoint: now + cfg.checkpoint_interval,
            cfg,
            signer,
            accounts: Vec::new(),
            restored: HashMap::new(),
            ops: VecDeque::new(),
            exit: Default::default(),
            next_poll: now,
            stats: MoneyStats::default(),
            health: WalletHealth::default(),
        }
    }

    pub(super) fn next_deadline(&self) -> Instant {
        self.next_poll.min(self.next_checkpoint)
    }
}

impl<A: TransportAead> Node<A> {
    /// Our price as a payee: our fee at our current price epoch.
    fn own_price(&self) -> Price {
        let rc = self.router.config();
        Price::new(rc.fee_per_mib, rc.price_epoch)
    }

    /// Test-only switch behind `[testing] pay = false`: stop (or resume) signing vouchers
    /// and self-throttling, to test a neighbour's enforcement against a non-payer.
    pub fn set_pay(&mut self, pay: bool) {
        self.money.cfg.pay = pay;
    }

    /// Give back a channel's wallet state after a restart (before its link comes up).
    pub fn restore_channel(&mut self, id: ChannelId, state: Restored) {
        self.money.restored.insert(id, state);
    }

    /// The next durable step for the wallet.
    pub fn poll_wallet(&mut self) -> Option<WalletOp> {
        self.money.ops.pop_front()
    }

    /// The channels with neighbour `pi`, created (or restored) on first use.
    fn account(&mut self, pi: usize) -> Option<&mut Account> {
        if self.money.accounts.get(pi).is_none_or(|a| a.is_none()) {
            let peer = self.peers.get(pi)?.id;
            let price = self.own_price();
            let m = &mut self.money;
            let out = ChannelParams {
                payer: self.id,
                payee: peer,
                nonce: 0,
            };
            let inc = ChannelParams {
                payer: peer,
                payee: self.id,
                nonce: 0,
            };
            let (ro, ri) = (m.restored.remove(&out.id()), m.restored.remove(&inc.id()));
            let registered = ro.is_some() || ri.is_some();
            let (ro, ri) = (ro.unwrap_or_default(), ri.unwrap_or_default());
            // A neighbour found by discovery (not in `[[peer]]`) starts with the smaller
            // `unknown_credit_window`: a freshly minted id must not get a full window of
            // relaying that we pay our own next hop for (docs/money.md).
            let mut payee_cfg = m.cfg.payee;
            if self.found.get(pi) != Some(&super::status::Found::Config) {
                let w = &mut payee_cfg.enforce.credit_window;
                *w = (*w).min(m.cfg.unknown_credit_window);
            }
            // The payee's price is unknown until it quotes one; frames are billed per
            // destination at its advertised prices anyway.
            let unknown = Price::new(0, 0);
            let mut payer = PayerChannel::restore(out, m.cfg.payer, unknown, ro.latest, &ro.meter);
            let paid = ro.latest.map_or(Amount::ZERO, |v| v.cumulative_amount);
            payer.set_spend_cap(paid.saturating_add(m.cfg.headroom));
            let mut payee = PayeeChannel::restore(inc, payee_cfg, price, ri.latest, &ri.meter);
            if self.chain.ours.is_some() {
                payee.require_backing();
                payee.set_backing(self.chain.backings.get(&inc.id()).cloned());
                payer.set_backing(self.chain.backings.get(&out.id()).cloned());
            }
            let checkpointed = [
                (ro.meter.total_bytes(), ro.meter.total_cost()),
                (ri.meter.total_bytes(), ri.meter.total_cost()),
            ];
            if m.accounts.len() <= pi {
                m.accounts.resize_with(pi + 1, || None);
            }
            if let Some(slot) = m.accounts.get_mut(pi) {
                *slot = Some(Account {
                    peer,
                    payer,
                    payee,
                    resync_due: false,
                    fresh: false,
                    reported_bytes: 0,
                    reported_at: None,
                    relay_seen: false,
                    registered,
                    checkpointed,
                    peer_chain: None,
                    wants_backing: false,
                    offer_at: None,
                    free: FreeTier::default(),
                });
            }
        }
        self.money.accounts.get_mut(pi)?.as_mut()
    }

    /// A handshake with neighbour `pi` completed; `fresh` if we had no session before.
    pub(super) fn money_handshake(&mut self, pi: usize, fresh: bool) {
        if let Some(a) = self.account(pi) {
            a.resync_due = true;
            a.fresh |= fresh;
            // The payee's resync for this handshake may be acted on (once).
            a.payer.expect_resync();
        }
    }

    /// Payer side, before sealing a mesh frame for `dest` to neighbour `pi`: false if we
    /// hold it back (our spend limit, or the neighbour's credit window, is reached).
    #[inline]
    pub(super) fn may_send(
        &mut self,
        pi: usize,
        dest: &NodeId,
        bytes: usize,
        now: Instant,
    ) -> bool {
        let (units, _) = self.router.route_price(dest).unwrap_or((0, 0));
        self.may_send_at(pi, dest, units, bytes, now)
    }

    /// [`Node::may_send`] with the next hop's price for `dest` already looked up.
    #[inline]
    pub(super) fn may_send_at(
        &mut self,
        pi: usize,
        dest: &NodeId,
        units: u64,
        bytes: usize,
        now: Instant,
    ) -> bool {
        if !self.money.cfg.pay {
            return true;
        }
        let Some(peer) = self.peers.get(pi).map(|p| p.id) else {
            return true;
        };
        if peer == *dest {
            return true;
        }
        // The payer side of "a price rise applies only once accepted": we never pay above our
        // maximum, whatever the next hop advertises (the router also skips such hops when its
        // filter has the same maximum, `[pricing] max_price_per_mib`).
        if units > self.money.cfg.payer.max_price_per_mib {
            self.drop_for(Some(pi), DropReason::PriceRefused);
            return false;
        }
        // Our wallet cannot store a voucher: pay for nothing new we could not pay for (free
        // hops, price 0, still flow).
        if units > 0 && !self.wallet_ok() {
            self.drop_for(Some(pi), DropReason::WalletUnavailable);
            return false;
        }
        let money = &mut self.money;
        let Some(a) = money.accounts.get_mut(pi).and_then(|a| a.as_mut()) else {
            return true;
        };
        if !a.payer.throttled() {
            a.free.reset();
            return true;
        }
        // Under a ledger: we would pay this neighbour if we could (an on-chain channel is
        // opened on demand, node/money_chain.rs).
        a.wants_backing = true;
        // The neighbour credits no more (nothing locked on chain yet, or its limit): it
        // still carries anyone at its free tier, which we assume is our own (docs/money.md).
        if a.payer.free_tier_only() && a.free.take(&money.cfg.payee.enforce, bytes as u64, now) {
            return true;
        }
        self.drop_for(Some(pi), DropReason::SelfThrottled);
        false
    }

    /// Payer side, after a mesh frame of `bytes` for `dest` went to neighbour `pi` (sealed and
    /// handed out): we owe it `bytes` at its advertised price for `dest`, unless it does not
    /// carry it (then its reports leave it unpaid). Frames for the neighbour itself are free.
    #[inline]
    pub(super) fn meter_sent(&mut self, pi: usize, dest: &NodeId, bytes: usize) {
        let (units, epoch) = self.router.route_price(dest).unwrap_or((0, 0));
        self.meter_sent_at(pi, dest, units, epoch, bytes);
    }

    /// [`Node::meter_sent`] with the next hop's price for `dest` already looked up.
    #[inline]
    pub(super) fn meter_sent_at(
        &mut self,
        pi: usize,
        dest: &NodeId,
        units: u64,
        epoch: u32,
        bytes: usize,
    ) {
        let Some(peer) = self.peers.get(pi).map(|p| p.id) else {
            return;
        };
        if peer == *dest {
            return;
        }
        if let Some(a) = self.account(pi) {
            a.payer
                .on_data_sent_at(Price::new(units, epoch), bytes as u64);
        }
    }

    /// Payee side, after a mesh frame of `bytes` (not for us) from neighbour `pi` was
    /// forwarded: meter it at what we bill for its destination (`billed_units`) (a fee rise only once the payer
    /// accepted it, [`PayeeChannel::billing_price`]). Frames we did not carry are not metered:
    /// the payer sees them missing from our reports and does not pay for them.
    #[inline]
    pub(super) fn meter_received(&mut self, pi: usize, billed_units: u64, bytes: usize) {
        let units = billed_units;
        let price = Price::new(units, self.router.config().price_epoch);
        if let Some(a) = self.account(pi) {
            let p = a.payee.billing_price(price);
            a.payee.record_at(p, bytes as u64);
        }
    }

    /// Payee side, hot path: a mesh frame to relay arrived from neighbour `pi` (carried or
    /// not), so our next meter report is due even if our meter did not move.
    #[inline]
    pub(super) fn money_relay_seen(&mut self, pi: usize) {
        if let Some(a) = self.money.accounts.get_mut(pi).and_then(|a| a.as_mut()) {
            a.relay_seen = true;
        }
    }

    /// Payee side, a mesh frame of `bytes` (not for us) arrived from neighbour `pi`: the
    /// enforcement ladder decides whether we carry it. Nothing is metered here.
    #[inline]
    pub(super) fn judge_received(&mut self, pi: usize, bytes: usize, now: Instant) -> bool {
        // Our wallet cannot store the payer's vouchers: paid relaying pauses, unmetered and
        // with its own reason, rather than relaying on credit we cannot collect or shaping an
        // honest payer for our fault (docs/wallet-failure.md). A free relay carries on.
        if !self.wallet_ok() && self.router.config().fee_per_mib > 0 {
            self.drop_for(Some(pi), DropReason::WalletUnavailable);
            return false;
        }
        let verdict = match self.account(pi) {
            Some(a) => a.payee.judge(bytes as u64, now),
            None => Verdict::Forward,
        };
        match verdict {
            Verdict::Forward => true,
            Verdict::DropShaped => {
                self.drop_for(Some(pi), DropReason::UnpaidShaped);
                false
            }
            Verdict::DropCut => {
                self.drop_for(Some(pi), DropReason::UnpaidCut);
                false
            }
        }
    }

    fn send_channel(&mut self, pi: usize, msg: ChannelMsg, now: Instant) -> bool {
        let mut buf = Vec::with_capacity(msg.encoded_len());
        msg.encode(&mut buf);
        let sent = self.send_link_copy(pi, Kind::Channel, &buf, now);
        if sent {
            self.money.stats.frames_sent += 1;
            self.money.stats.bytes_sent += (buf.len() + LINK_OVERHEAD) as u64;
        }
        sent
    }

    /// Payment-channel traffic counters.
    pub fn money_stats(&self) -> MoneyStats {
        self.money.stats
    }

    /// A `Kind::Channel` frame from neighbour `pi` (already authenticated by the link).
    pub(super) fn handle_channel(&mut self, pi: usize, body: &[u8], now: Instant) {
        self.money.stats.frames_received += 1;
        self.money.stats.bytes_received += (body.len() + LINK_OVERHEAD) as u64;
        let msg = match ChannelMsg::decode(body) {
            Ok(m) => m,
            Err(_) => return self.drop_for(Some(pi), DropReason::BadChannelMsg),
        };
        let Some(a) = self.account(pi) else { return };
        let fresh = a.fresh;
        let r = match msg {
            ChannelMsg::PriceQuote(q) => a.payer.on_price_quote(&q).map(|()| None),
            ChannelMsg::CreditGrant(g) => a.payer.on_credit_grant(&g).map(|()| None),
            ChannelMsg::VoucherAck(k) => a.payer.on_ack(&k).map(|()| None),
            ChannelMsg::Voucher(v) => a.payee.on_voucher_at(&v, now),
            ChannelMsg::Resync(r) if r.channel_id == a.payer.id() => a.payer.on_resync(&r),
            ChannelMsg::Resync(r) => {
                let out = a.payee.on_resync_with(&r, fresh);
                if r.channel_id == a.payee.id() {
                    a.fresh = false;
                }
                out
            }
            m @ (ChannelMsg::ChainAddress(_) | ChannelMsg::ChainChannel(_)) => {
                if !self.handle_chain_msg(pi, m, now) {
                    self.drop_for(Some(pi), DropReason::ChannelRejected);
                }
                return;
            }
        };
        match r {
            Ok(Some(action)) => self.act(pi, action, now),
            Ok(None) => {}
            Err(why) => {
                tracing::debug!(peer = %self.peers.get(pi).map(|p| p.id).unwrap_or(self.id), %why, "channel message rejected");
                self.drop_for(Some(pi), DropReason::ChannelRejected);
            }
        }
    }

    fn act(&mut self, pi: usize, action: Action, now: Instant) {
        match action {
            Action::CommitThenSend(v) => self.push_op(pi, WalletOp::CommitOutgoing(v)),
            Action::Commit(v) => self.push_op(pi, WalletOp::AdoptOutgoing(v)),
            Action::CommitThenCredit(v) => self.push_op(pi, WalletOp::CommitIncoming(v)),
            Action::Resend(v) => {
                self.send_channel(pi, ChannelMsg::Voucher(v), now);
            }
            Action::SendAck(k) => {
                self.send_channel(pi, ChannelMsg::VoucherAck(k), now);
            }
        }
    }

    /// Announce a new price epoch to every payer (our fee changed).
    pub(super) fn money_price_changed(&mut self, now: Instant) {
        let price = self.own_price();
        let quotes: Vec<_> = self
            .money
            .accounts
            .iter_mut()
            .enumerate()
            .filter_map(|(pi, a)| Some((pi, a.as_mut()?.payee.set_price(price)?)))
            .collect();
        for (pi, q) in quotes {
            self.send_channel(pi, ChannelMsg::PriceQuote(q), now);
        }
    }

    /// Channel timers: resyncs after handshakes, paying, resending, checkpoints.
    pub(super) fn money_timers(&mut self, now: Instant) {
        if now >= self.money.next_checkpoint {
            self.money.next_checkpoint = now + self.money.cfg.checkpoint_interval;
            self.checkpoint_now();
        }
        if now < self.money.next_poll {
            return;
        }
        self.money.next_poll = now + MONEY_POLL;
        let timers = self.cfg.timers;
        for pi in 0..self.money.accounts.len() {
            // Confirmed: a resync sent under the keys before a handshake we just answered
            // would be lost on a restarted neighbour, and it is sent once.
            let live = self
                .peers
                .get(pi)
                .is_some_and(|p| p.has_confirmed_session(now, &timers));
            let pay = self.money.cfg.pay;
            let Some(a) = self.money.accounts.get_mut(pi).and_then(|a| a.as_mut()) else {
                continue;
            };
            let mut msgs = Vec::new();
            if live && a.resync_due {
                a.resync_due = false;
                msgs.push(ChannelMsg::Resync(a.payer.resync()));
                msgs.push(ChannelMsg::Resync(a.payee.resync()));
                msgs.push(ChannelMsg::CreditGrant(a.payee.grant()));
                msgs.push(ChannelMsg::PriceQuote(a.payee.price_quote()));
                if let Some(ours) = self.chain.ours {
                    msgs.push(ChannelMsg::ChainAddress(ours));
                }
            }
            let metered = a.payee.meter().total_bytes();
            let report_due = a
                .reported_at
                .is_none_or(|t| now.saturating_duration_since(t) >= METER_REPORT_INTERVAL);
            if live && (metered != a.reported_bytes || a.relay_seen) && report_due {
                a.reported_bytes = metered;
                a.relay_seen = false;
                a.reported_at = Some(now);
                msgs.push(ChannelMsg::VoucherAck(a.payee.ack()));
            }
            let action = if pay && live {
                a.payer.poll(now, &self.money.signer)
            } else {
                None
            };
            for m in msgs {
                self.send_channel(pi, m, now);
            }
            if let Some(action) = action {
                self.act(pi, action, now);
            }
        }
        self.exit_money_timers(now);
    }
}

impl<A: TransportAead> Node<A> {
    /// Neighbour slot `pi` is being freed: free the account so the slot's next occupant starts
    /// clean, after queuing a checkpoint of both meters and keeping both channels' state for
    /// a return of the same neighbour (as after a restart), so nothing owed or metered is lost.
    pub(super) fn forget_account(&mut self, pi: usize) {
        let Some(a) = self.money.accounts.get_mut(pi).and_then(Option::take) else {
            return;
        };
        let (out, inc) = (a.payer.meter().snapshot(), a.payee.meter().snapshot());
        let (paid, got) = (a.payer.latest(), a.payee.latest());
        let blank = crate::money::MeterSnapshot::default();
        if paid.is_none() && got.is_none() && out == blank && inc == blank {
            return; // nothing metered or signed: nothing to keep (fake ids cost no memory)
        }
        self.money.ops.push_back(WalletOp::Checkpoint(vec![
            (a.payer.id(), out.clone()),
            (a.payee.id(), inc.clone()),
        ]));
        let m = &mut self.money.restored;
        m.insert(
            a.payer.id(),
            Restored {
                latest: paid,
                meter: out,
            },
        );
        m.insert(
            a.payee.id(),
            Restored {
                latest: got,
                meter: inc,
            },
        );
    }
}
