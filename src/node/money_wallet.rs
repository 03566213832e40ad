//! The node's side of the wallet: which durable steps it queues ([`WalletOp`]) and what it
//! does when they are done ([`WalletDone`]). Invariants: a voucher is sent only after its
//! commit is reported, credit is extended only after the incoming commit is reported; a
//! neighbour's channels are registered only when there is something to store for them; a
//! checkpoint carries only the meters that moved since the last one. While the wallet cannot
//! store (disk full, read-only: [`WalletHealth`]), paid relaying and paid sending pause (free
//! traffic flows), and when it works again every registered channel is registered and
//! checkpointed anew, so nothing that failed to reach the disk meanwhile stays missing
//! (docs/wallet-failure.md).

use std::time::Instant;

use super::super::Node;
use super::super::money_types::{WalletDone, WalletHealth, WalletOp};
use crate::money::{Amount, ChannelId};
use crate::session::aead::TransportAead;
use crate::wire::channel::ChannelMsg;

impl<A: TransportAead> Node<A> {
    /// Checkpoint every meter that moved since its last checkpoint (also before a clean
    /// shutdown). Unchanged channels are not rewritten.
    pub fn checkpoint_now(&mut self) {
        let m = &mut self.money;
        let mut snaps = Vec::new();
        for a in m.accounts.iter_mut().flatten() {
            let totals = |mt: &crate::money::Meter| (mt.total_bytes(), mt.total_cost());
            let now = [totals(a.payer.meter()), totals(a.payee.meter())];
            if now == a.checkpointed {
                continue;
            }
            if !a.registered {
                a.registered = true;
                let (out, inc) = a.params();
                m.ops.push_back(WalletOp::EnsureOutgoing(out));
                m.ops.push_back(WalletOp::EnsureIncoming(inc));
            }
            if now[0] != a.checkpointed[0] {
                snaps.push((a.payer.id(), a.payer.meter().snapshot()));
            }
            if now[1] != a.checkpointed[1] {
                snaps.push((a.payee.id(), a.payee.meter().snapshot()));
            }
            a.checkpointed = now;
        }
        self.exit_checkpoints(&mut snaps);
        let m = &mut self.money;
        if !snaps.is_empty() {
            m.ops.push_back(WalletOp::Checkpoint(snaps));
        }
    }

    /// Queue a durable step for neighbour `pi`'s channels, registering them first if this is
    /// the first thing they store.
    pub(super) fn push_op(&mut self, pi: usize, op: WalletOp) {
        let m = &mut self.money;
        if let Some(a) = m.accounts.get_mut(pi).and_then(|a| a.as_mut())
            && !a.registered
        {
            a.registered = true;
            let (out, inc) = a.params();
            m.ops.push_back(WalletOp::EnsureOutgoing(out));
            m.ops.push_back(WalletOp::EnsureIncoming(inc));
        }
        m.ops.push_back(op);
    }

    /// The wallet finished a commit: only now is a voucher sent or credit extended.
    pub fn wallet_done(&mut self, done: WalletDone, now: Instant) {
        match done {
            WalletDone::Health(h) => return self.set_wallet_health(h),
            WalletDone::Epoch(epoch) => {
                let fee = self.router.config().fee_per_mib;
                return self.set_fee_epoch(fee, epoch, now);
            }
            _ => {}
        }
        let headroom = match &done {
            WalletDone::Outgoing { headroom, .. } => Some(*headroom),
            _ => None,
        };
        if !self.exit_wallet_done(&done, now) {
            self.link_wallet_done(done, now);
        }
        if let Some(headroom) = headroom {
            // Every payer's cap, after the commit was applied: what it has paid plus what the
            // wallet still allows.
            self.money.cfg.headroom = headroom;
            self.link_spend_caps(headroom);
            self.exit_spend_caps(headroom);
        }
    }

    /// The wallet's condition as the daemon reports it: while it is not `ok`, paid relaying
    /// and paid sending pause (a commit cannot work, and we must not relay on credit we cannot
    /// collect nor shape a payer whose vouchers we cannot store). Back to `ok`, every channel
    /// that was registered is registered and checkpointed again: the steps that failed
    /// meanwhile are idempotent, and a meter that stopped moving would otherwise never be
    /// written.
    pub fn set_wallet_health(&mut self, h: WalletHealth) {
        let recovered = h.ok() && !self.money.health.ok();
        if h.state != self.money.health.state {
            tracing::info!(state = h.state.as_str(), error = ?h.error, "wallet state");
        }
        self.money.health = h;
        if !recovered {
            return;
        }
        // A meter total never reached at runtime: the next checkpoint writes the channel.
        let unwritten = (u64::MAX, Amount::MAX);
        for a in self.money.accounts.iter_mut().flatten() {
            if std::mem::replace(&mut a.registered, false) {
                a.checkpointed = [unwritten; 2];
            }
        }
        self.exit_rewrite_all(unwritten);
        self.checkpoint_now();
    }

    /// The wallet's condition.
    pub fn wallet_health(&self) -> &WalletHealth {
        &self.money.health
    }

    /// True while the wallet can store vouchers.
    #[inline]
    pub(in super::super) fn wallet_ok(&self) -> bool {
        self.money.health.ok()
    }

    /// [`Node::wallet_done`] for a link channel.
    fn link_wallet_done(&mut self, done: WalletDone, now: Instant) {
        match done {
            WalletDone::Outgoing { voucher, ok, .. } => {
                let pi = self.account_index(&voucher.channel_id, true);
                let mut send = None;
                if let Some(a) = pi.and_then(|pi| self.money.accounts.get_mut(pi)?.as_mut()) {
                    if !ok {
                        a.payer.commit_failed(&voucher);
                    } else if a.payer.committed(&voucher, now) {
                        send = pi;
                    }
                }
                if let Some(pi) = send {
                    self.send_channel(pi, ChannelMsg::Voucher(voucher), now);
                }
            }
            WalletDone::Health(_) | WalletDone::Epoch(_) => {}
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

    /// Every link payer's cap: what it has paid plus what the wallet still allows.
    fn link_spend_caps(&mut self, headroom: Amount) {
        for a in self.money.accounts.iter_mut().flatten() {
            let paid = a
                .payer
                .latest()
                .map_or(Amount::ZERO, |v| v.cumulative_amount);
            a.payer.set_spend_cap(paid.saturating_add(headroom));
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
}
