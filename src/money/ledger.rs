//! Settlement interface (DESIGN.md §5). Owns the [`Ledger`] trait and [`NullLedger`], the IOU
//! implementation used until a real ledger backend exists. Invariants of any ledger: a claim is
//! a payer-signed voucher whose seq and totals exceed the last claim and stay within the
//! deposit; a close takes effect only after the settle delay, during which the payee can still
//! claim its latest voucher, so closing early cannot cheat it.
//!
//! With [`NullLedger`] no value moves: vouchers are signed IOUs, bounded only by the credit
//! windows and the deposit recorded here as a cap. `is_backed()` says so, and user-facing
//! output must too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Reject;
use super::amount::Amount;
use super::voucher::{ChannelId, ChannelParams, Voucher};

/// Ledger failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// No such channel on the ledger.
    #[error("unknown channel {0}")]
    UnknownChannel(ChannelId),
    /// The channel is already open.
    #[error("channel {0} already open")]
    AlreadyOpen(ChannelId),
    /// The channel is closing; no top-ups.
    #[error("channel {0} is closing")]
    Closing(ChannelId),
    /// The channel is not closing, or its settle delay has not passed.
    #[error("channel {0} cannot settle yet")]
    NotSettleable(ChannelId),
    /// A claimed voucher failed verification.
    #[error("claim rejected: {0}")]
    Rejected(Reject),
    /// An amount overflowed.
    #[error("amount overflow")]
    Overflow,
}

/// A channel as the ledger sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerChannel {
    /// Who pays whom.
    pub params: ChannelParams,
    /// Funds locked by the payer (for an IOU ledger: the agreed cap).
    pub deposit: Amount,
    /// The latest claimed voucher.
    pub claimed: Option<Voucher>,
    /// When the channel may be settled, once closing.
    pub settles_at: Option<Instant>,
}

/// The outcome of settling a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// The channel.
    pub channel_id: ChannelId,
    /// Paid to the payee: the latest claimed cumulative amount.
    pub to_payee: Amount,
    /// Returned to the payer: deposit minus what was paid.
    pub refund_to_payer: Amount,
    /// False if nothing real moved (IOU ledger).
    pub backed: bool,
}

/// Settlement backend. Methods take the current time; a networked backend wraps its I/O around
/// this shape.
pub trait Ledger {
    /// True if settlement moves real value; false means vouchers are IOUs.
    fn is_backed(&self) -> bool;
    /// Open a channel with an initial deposit.
    fn open_channel(
        &mut self,
        params: &ChannelParams,
        deposit: Amount,
        now: Instant,
    ) -> Result<ChannelId, LedgerError>;
    /// Add to the deposit; returns the new deposit.
    fn top_up(&mut self, id: &ChannelId, amount: Amount) -> Result<Amount, LedgerError>;
    /// Claim a voucher (payee); returns the claimed cumulative amount.
    fn claim(&mut self, v: &Voucher) -> Result<Amount, LedgerError>;
    /// Start closing; returns when the channel can be settled.
    fn close(&mut self, id: &ChannelId, now: Instant) -> Result<Instant, LedgerError>;
    /// Settle a closed channel after its delay.
    fn settle(&mut self, id: &ChannelId, now: Instant) -> Result<Settlement, LedgerError>;
    /// The channel's ledger record.
    fn channel(&self, id: &ChannelId) -> Option<&LedgerChannel>;
}

/// The IOU ledger: enforces the ledger rules in memory and moves nothing.
#[derive(Clone, Debug)]
pub struct NullLedger {
    settle_delay: Duration,
    channels: HashMap<ChannelId, LedgerChannel>,
}

impl NullLedger {
    /// An IOU ledger with the given settle delay.
    pub fn new(settle_delay: Duration) -> Self {
        NullLedger {
            settle_delay,
            channels: HashMap::new(),
        }
    }

    fn get_mut(&mut self, id: &ChannelId) -> Result<&mut LedgerChannel, LedgerError> {
        self.channels
            .get_mut(id)
            .ok_or(LedgerError::UnknownChannel(*id))
    }
}

impl Ledger for NullLedger {
    fn is_backed(&self) -> bool {
        false
    }

    fn open_channel(
        &mut self,
        params: &ChannelParams,
        deposit: Amount,
        _now: Instant,
    ) -> Result<ChannelId, LedgerError> {
        let id = params.id();
        if self.channels.contains_key(&id) {
            return Err(LedgerError::AlreadyOpen(id));
        }
        self.channels.insert(
            id,
            LedgerChannel {
                params: *params,
                deposit,
                claimed: None,
                settles_at: None,
            },
        );
        Ok(id)
    }

    fn top_up(&mut self, id: &ChannelId, amount: Amount) -> Result<Amount, LedgerError> {
        let c = self.get_mut(id)?;
        if c.settles_at.is_some() {
            return Err(LedgerError::Closing(*id));
        }
        c.deposit = c.deposit.checked_add(amount).ok_or(LedgerError::Overflow)?;
        Ok(c.deposit)
    }

    fn claim(&mut self, v: &Voucher) -> Result<Amount, LedgerError> {
        let c = self.get_mut(&v.channel_id)?;
        let reject = |r| Err(LedgerError::Rejected(r));
        if !v.verify(&c.params.payer) {
            return reject(Reject::ForgedSignature);
        }
        if let Some(prev) = c.claimed {
            if v.seq <= prev.seq {
                return reject(Reject::StaleSeq);
            }
            if !v.is_monotonic_successor_of(&prev) {
                return reject(Reject::NonMonotonic);
            }
        }
        if v.cumulative_amount > c.deposit {
            return reject(Reject::OverLimit);
        }
        c.claimed = Some(*v);
        Ok(v.cumulative_amount)
    }

    fn close(&mut self, id: &ChannelId, now: Instant) -> Result<Instant, LedgerError> {
        let delay = self.settle_delay;
        let c = self.get_mut(id)?;
        Ok(*c.settles_at.get_or_insert(now + delay))
    }

    fn settle(&mut self, id: &ChannelId, now: Instant) -> Result<Settlement, LedgerError> {
        let c = self.get_mut(id)?;
        match c.settles_at {
            Some(t) if now >= t => {}
            _ => return Err(LedgerError::NotSettleable(*id)),
        }
        let paid = c.claimed.map_or(Amount::ZERO, |v| v.cumulative_amount);
        let s = Settlement {
            channel_id: *id,
            to_payee: paid,
            refund_to_payer: c.deposit.saturating_sub(paid),
            backed: false,
        };
        self.channels.remove(id);
        Ok(s)
    }

    fn channel(&self, id: &ChannelId) -> Option<&LedgerChannel> {
        self.channels.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn iou_ledger_rules() {
        let payer = Identity::from_secret([5; 32]);
        let payee = Identity::from_secret([6; 32]);
        let params = ChannelParams {
            payer: payer.id(),
            payee: payee.id(),
            nonce: 9,
        };
        let t0 = Instant::now();
        let mut l = NullLedger::new(Duration::from_secs(60));
        assert!(!l.is_backed());
        let id = l
            .open_channel(&params, Amount::from_units(100), t0)
            .unwrap();
        assert_eq!(
            l.open_channel(&params, Amount::ZERO, t0),
            Err(LedgerError::AlreadyOpen(id))
        );
        assert_eq!(l.top_up(&id, Amount::from_units(50)).unwrap().units(), 150);
        let v = |seq, amt| Voucher::sign(&payer, id, seq, Amount::from_units(amt), amt as u64, 1);
        assert_eq!(l.claim(&v(1, 40)).unwrap().units(), 40);
        assert_eq!(
            l.claim(&v(1, 40)),
            Err(LedgerError::Rejected(Reject::StaleSeq))
        );
        assert_eq!(
            l.claim(&v(2, 30)),
            Err(LedgerError::Rejected(Reject::NonMonotonic))
        );
        assert_eq!(
            l.claim(&v(3, 151)),
            Err(LedgerError::Rejected(Reject::OverLimit))
        );
        let forged = Voucher::sign(&payee, id, 4, Amount::from_units(50), 50, 1);
        assert_eq!(
            l.claim(&forged),
            Err(LedgerError::Rejected(Reject::ForgedSignature))
        );
        let at = l.close(&id, t0).unwrap();
        assert_eq!(at, t0 + Duration::from_secs(60));
        assert_eq!(
            l.top_up(&id, Amount::from_units(1)),
            Err(LedgerError::Closing(id))
        );
        // The payee can still claim during the settle delay.
        assert_eq!(l.claim(&v(5, 120)).unwrap().units(), 120);
        assert_eq!(
            l.settle(&id, t0 + Duration::from_secs(59)),
            Err(LedgerError::NotSettleable(id))
        );
        let s = l.settle(&id, at).unwrap();
        assert_eq!((s.to_payee.units(), s.refund_to_payer.units()), (120, 30));
        assert!(!s.backed);
        assert!(l.channel(&id).is_none());
    }
}
