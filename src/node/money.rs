//! Paying and being paid, per neighbour (DESIGN.md §5): each link carries two unidirectional
//! channels, one where we pay the neighbour and one where it pays us. Owns pay-per-forward
//! metering on the data path, the enforcement verdict on relayed frames, channel frames
//! (`Kind::Channel`) and the queue of durable steps for the wallet. Invariants: a voucher is
//! sent only after the wallet reported it committed, and credit is extended only after the
//! wallet reported the incoming voucher committed ([`Node::wallet_done`]); channel and routing
//! frames are never metered or throttled; both sides meter exactly the mesh frames whose
//! destination is not the receiving neighbour, so byte counts agree whatever the prices.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::Node;
pub use super::money_types::{MoneyConfig, MoneyStats, Restored, WalletDone, WalletOp};
use crate::drops::DropReason;
use crate::identity::{Identity, NodeId};
use crate::money::{
    Action, Amount, ChannelId, ChannelParams, PayeeChannel, PayerChannel, Price, Verdict,
};
use crate::session::aead::TransportAead;
use crate::wire::channel::ChannelMsg;
use crate::wire::outer::Kind;

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
}

/// The node's money state.
pub(super) struct Money {
    pub(super) cfg: MoneyConfig,
    signer: Identity,
    pub(super) accounts: Vec<Option<Account>>,
    restored: HashMap<ChannelId, Restored>,
    ops: VecDeque<WalletOp>,
    next_poll: Instant,
    next_checkpoint: Instant,
    pub(super) stats: MoneyStats,
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
            next_poll: now,
            stats: MoneyStats::default(),
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

    /// Checkpoint every meter now (before a clean shutdown).
    pub fn checkpoint_now(&mut self) {
        let snaps: Vec<_> = self
            .money
            .accounts
            .iter()
            .flatten()
            .flat_map(|a| {
                [
                    (a.payer.id(), a.payer.meter().snapshot()),
                    (a.payee.id(), a.payee.meter().snapshot()),
                ]
            })
            .collect();
        if !snaps.is_empty() {
            self.money.ops.push_back(WalletOp::Checkpoint(snaps));
        }
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
            let ro = m.restored.remove(&out.id()).unwrap_or_default();
            let ri = m.restored.remove(&inc.id()).unwrap_or_default();
            // The payee's price is unknown until it quotes one; frames are billed per
            // destination at its advertised prices anyway.
            let unknown = Price::new(0, 0);
            let mut payer = PayerChannel::restore(out, m.cfg.payer, unknown, ro.latest, &ro.meter);
            let paid = ro.latest.map_or(Amount::ZERO, |v| v.cumulative_amount);
            payer.set_spend_cap(paid.saturating_add(m.cfg.headroom));
            let payee = PayeeChannel::restore(inc, m.cfg.payee, price, ri.latest, &ri.meter);
            m.ops.push_back(WalletOp::EnsureOutgoing(out));
            m.ops.push_back(WalletOp::EnsureIncoming(inc));
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
        }
    }

    /// Payer side, before sealing a mesh frame for `dest` to neighbour `pi`: false if we
    /// hold it back (our spend limit, or the neighbour's credit window, is reached).
    #[inline]
    pub(super) fn may_send(&mut self, pi: usize, dest: &NodeId) -> bool {
        if !self.money.cfg.pay {
            return true;
        }
        let Some(peer) = self.peers.get(pi).map(|p| p.id) else {
            return true;
        };
        if peer == *dest {
            return true;
        }
        let throttled = self
            .money
            .accounts
            .get(pi)
            .and_then(|a| a.as_ref())
            .is_some_and(|a| a.payer.throttled());
        if throttled {
            self.drop_for(Some(pi), DropReason::SelfThrottled);
        }
        !throttled
    }

    /// Payer side, after a mesh frame of `bytes` for `dest` went to neighbour `pi`: we owe
    /// it `bytes` at its advertised price for `dest`. Frames for the neighbour itself are free.
    #[inline]
    pub(super) fn meter_sent(&mut self, pi: usize, dest: &NodeId, bytes: usize) {
        let Some(peer) = self.peers.get(pi).map(|p| p.id) else {
            return;
        };
        if peer == *dest {
            return;
        }
        let (units, epoch) = self.router.route_price(dest).unwrap_or((0, 0));
        if let Some(a) = self.account(pi) {
            a.payer
                .on_data_sent_at(Price::new(units, epoch), bytes as u64);
        }
    }

    /// Payee side, a mesh frame of `bytes` for `dest` (not us) arrived from neighbour `pi`:
    /// meter it at what we bill for `dest` and decide whether to carry it.
    #[inline]
    pub(super) fn meter_received(
        &mut self,
        pi: usize,
        dest: &NodeId,
        bytes: usize,
        now: Instant,
    ) -> bool {
        let units = self.router.billed_price(dest).unwrap_or(0);
        let price = Price::new(units, self.router.config().price_epoch);
        let verdict = match self.account(pi) {
            Some(a) => a.payee.allow_at(price, bytes as u64, now),
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
            ChannelMsg::Voucher(v) => a.payee.on_voucher(&v),
            ChannelMsg::Resync(r) if r.channel_id == a.payer.id() => a.payer.on_resync(&r),
            ChannelMsg::Resync(r) => {
                let out = a.payee.on_resync_with(&r, fresh);
                if r.channel_id == a.payee.id() {
                    a.fresh = false;
                }
                out
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
            Action::CommitThenSend(v) => self.money.ops.push_back(WalletOp::CommitOutgoing(v)),
            Action::Commit(v) => self.money.ops.push_back(WalletOp::AdoptOutgoing(v)),
            Action::CommitThenCredit(v) => self.money.ops.push_back(WalletOp::CommitIncoming(v)),
            Action::Resend(v) => {
                self.send_channel(pi, ChannelMsg::Voucher(v), now);
            }
            Action::SendAck(k) => {
                self.send_channel(pi, ChannelMsg::VoucherAck(k), now);
            }
        }
    }

    /// The wallet finished a commit: only now is a voucher sent or credit extended.
    pub fn wallet_done(&mut self, done: WalletDone, now: Instant) {
        match done {
            WalletDone::Outgoing {
                voucher,
                ok,
                headroom,
            } => {
                let pi = self.account_index(&voucher.channel_id, true);
                let mut send = None;
                if let Some(a) = pi.and_then(|pi| self.money.accounts.get_mut(pi)?.as_mut()) {
                    if !ok {
                        a.payer.commit_failed(&voucher);
                    } else if a.payer.committed(&voucher, now) {
                        send = pi;
                    }
                }
                // Every payer's cap: what it has paid plus what the wallet still allows.
                self.money.cfg.headroom = headroom;
                for a in self.money.accounts.iter_mut().flatten() {
                    let paid = a
                        .payer
                        .latest()
                        .map_or(Amount::ZERO, |v| v.cumulative_amount);
                    a.payer.set_spend_cap(paid.saturating_add(headroom));
                }
                if let Some(pi) = send {
                    self.send_channel(pi, ChannelMsg::Voucher(voucher), now);
                }
            }
            WalletDone::Incoming { voucher, ok } => {
                let Some(pi) = self.account_index(&voucher.channel_id, false) else {
                    return;
                };
                let Some(a) = self.money.accounts.get_mut(pi).and_then(|a| a.as_mut()) else {
                    return;
                };
                if !ok {
                    return a.payee.commit_failed(&voucher);
                }
                if let Some(ack) = a.payee.committed(&voucher) {
                    self.send_channel(pi, ChannelMsg::VoucherAck(ack), now);
                }
            }
        }
    }

    /// The neighbour index whose payer (or payee) channel is `id`.
    fn account_index(&self, id: &ChannelId, payer_side: bool) -> Option<usize> {
        self.money.accounts.iter().position(|a| {
            a.as_ref().is_some_and(|a| {
                let ours = if payer_side {
                    a.payer.id()
                } else {
                    a.payee.id()
                };
                ours == *id
            })
        })
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
            let live = self
                .peers
                .get(pi)
                .is_some_and(|p| p.has_session(now, &timers));
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
            }
            let metered = a.payee.meter().total_bytes();
            let report_due = a
                .reported_at
                .is_none_or(|t| now.saturating_duration_since(t) >= METER_REPORT_INTERVAL);
            if live && metered != a.reported_bytes && report_due {
                a.reported_bytes = metered;
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
