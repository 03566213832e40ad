//! The paid side of one unidirectional channel. Owns the payee's meter of data received from
//! the payer, voucher verification, credit and the enforcement ladder. Invariants: a voucher
//! is credited only after the caller confirms it is committed; the credited voucher's seq and
//! totals never decrease; nothing above the channel limit or (outside resync) above what was
//! metered plus tolerance is accepted; a rejected message changes no state, only a counter.

use std::time::Instant;

use super::amount::Amount;
use super::enforce::{EnforceConfig, Enforcer, Level, Verdict};
use super::messages::{CreditGrant, PriceQuote, Resync, VoucherAck};
use super::price::{BucketId, MIB, Meter, MeterSnapshot, Price};
use super::voucher::{ChannelId, ChannelParams, Voucher, latest_of};
use super::{Action, Reject, RejectCounts};

/// Payee policy for one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayeeConfig {
    /// Ladder parameters, including the credit window.
    pub enforce: EnforceConfig,
    /// The most the channel may ever owe in total (ledger deposit, or the IOU cap).
    pub max_cumulative: Amount,
    /// How many bytes a voucher may claim beyond our meter (data in flight or reordered).
    pub tolerance_bytes: u64,
    /// Link loss (percent, capped at 90) under which the payer's count may exceed ours: the
    /// payer meters what it sent, we meter what arrived. Vouchers beyond it are drift and are
    /// rejected as [`Reject::OverMetered`].
    pub max_loss_percent: u8,
}

impl Default for PayeeConfig {
    fn default() -> Self {
        PayeeConfig {
            enforce: EnforceConfig::default(),
            max_cumulative: Amount::from_cc(10),
            tolerance_bytes: 4 * MIB,
            max_loss_percent: 10,
        }
    }
}

/// Everything that defines the payee's channel state (compared in tests; counters live apart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayeeState {
    params: ChannelParams,
    id: ChannelId,
    meter: Meter,
    current: BucketId,
    /// Latest committed and credited voucher.
    latest: Option<Voucher>,
    /// Verified and handed out for commit, not yet credited.
    pending: Option<Voucher>,
    enforcer: Enforcer,
}

/// Payee counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayeeStats {
    /// Rejected vouchers and resyncs by reason.
    pub rejects: RejectCounts,
    /// Exact duplicates of the latest voucher (re-acked, not rejected).
    pub duplicates: u64,
}

/// The payee's half of a channel.
#[derive(Clone, Debug)]
pub struct PayeeChannel {
    cfg: PayeeConfig,
    state: PayeeState,
    stats: PayeeStats,
}

impl PayeeChannel {
    /// A fresh channel billing at `price`.
    pub fn new(params: ChannelParams, cfg: PayeeConfig, price: Price) -> Self {
        Self::restore(params, cfg, price, None, &MeterSnapshot::default())
    }

    /// Rebuild after a restart: the latest committed voucher and the last meter checkpoint.
    /// `price` is our current price; its epoch must never go back across restarts (vouchers
    /// naming a later epoch than we know are malformed).
    /// Debt is not forgiven: unpaid = metered - credited, as before the restart (less at most
    /// one checkpoint interval of metering).
    pub fn restore(
        params: ChannelParams,
        cfg: PayeeConfig,
        price: Price,
        latest: Option<Voucher>,
        meter: &MeterSnapshot,
    ) -> Self {
        let mut m = Meter::from_snapshot(meter);
        let current = m.bucket(price);
        PayeeChannel {
            cfg,
            state: PayeeState {
                params,
                id: params.id(),
                meter: m,
                current,
                latest,
                pending: None,
                enforcer: Enforcer::new(cfg.enforce),
            },
            stats: PayeeStats::default(),
        }
    }

    /// The channel id.
    pub fn id(&self) -> ChannelId {
        self.state.id
    }

    /// The channel parameters.
    pub fn params(&self) -> &ChannelParams {
        &self.state.params
    }

    /// The state (for comparisons and inspection).
    pub fn state(&self) -> &PayeeState {
        &self.state
    }

    /// Counters.
    pub fn stats(&self) -> &PayeeStats {
        &self.stats
    }

    /// Ladder counters.
    pub fn enforce_stats(&self) -> super::enforce::EnforceStats {
        self.state.enforcer.stats()
    }

    /// The meter of data received from the payer.
    pub fn meter(&self) -> &Meter {
        &self.state.meter
    }

    /// The latest credited voucher.
    pub fn latest(&self) -> Option<Voucher> {
        self.state.latest
    }

    /// The current price.
    pub fn price(&self) -> Price {
        self.state.current.price()
    }

    /// Credited so far.
    pub fn credited(&self) -> Amount {
        self.state
            .latest
            .map_or(Amount::ZERO, |v| v.cumulative_amount)
    }

    /// Metered cost not covered by credited vouchers.
    #[inline]
    pub fn unpaid(&self) -> Amount {
        self.state
            .meter
            .total_cost()
            .saturating_sub(self.credited())
    }

    /// The service level now (read-only).
    pub fn level(&self, now: Instant) -> Level {
        self.state.enforcer.peek_level(self.unpaid(), now)
    }

    /// Change our price; the epoch must increase. Returns the quote to send.
    pub fn set_price(&mut self, price: Price) -> Option<PriceQuote> {
        if price.epoch <= self.price().epoch {
            return None;
        }
        self.state
            .meter
            .close_epochs_before(price.epoch.saturating_sub(1));
        self.state.current = self.state.meter.bucket(price);
        Some(self.price_quote())
    }

    /// Our current price as a message.
    pub fn price_quote(&self) -> PriceQuote {
        PriceQuote {
            price: self.price(),
        }
    }

    /// Our credit grant as a message.
    pub fn grant(&self) -> CreditGrant {
        CreditGrant {
            channel_id: self.state.id,
            nonce: self.state.params.nonce,
            credit_window: self.cfg.enforce.credit_window,
            max_cumulative: self.cfg.max_cumulative,
        }
    }

    /// Our ack: latest credited voucher and our own counters.
    pub fn ack(&self) -> VoucherAck {
        VoucherAck {
            channel_id: self.state.id,
            seq: self.state.latest.map_or(0, |v| v.seq),
            credited: self.credited(),
            metered_bytes: self.state.meter.total_bytes(),
            metered_amount: self.state.meter.total_cost(),
        }
    }

    /// Our resync message: the latest credited voucher.
    pub fn resync(&self) -> Resync {
        Resync {
            channel_id: self.state.id,
            latest: self.state.latest,
            meter_bytes: self.state.meter.total_bytes(),
            meter_amount: self.state.meter.total_cost(),
        }
    }

    /// Hot path, data frames only: meter `bytes` received from the payer and decide whether to
    /// forward. Bytes are metered whatever the verdict, as the payer's meter counts them too.
    /// Channel and routing frames must not come here: they are never throttled.
    #[inline]
    pub fn allow(&mut self, bytes: u64, now: Instant) -> Verdict {
        self.state.meter.record(self.state.current, bytes);
        let unpaid = self.unpaid();
        self.state.enforcer.allow(unpaid, bytes, now)
    }

    /// [`PayeeChannel::allow`] for data billed at `price` (what we advertise for the frame's
    /// destination) rather than the channel's current price.
    #[inline]
    pub fn allow_at(&mut self, price: Price, bytes: u64, now: Instant) -> Verdict {
        self.state.meter.record_at(price, bytes);
        let unpaid = self.unpaid();
        self.state.enforcer.allow(unpaid, bytes, now)
    }

    /// A voucher from the payer. On success returns [`Action::CommitThenCredit`] (or a re-ack
    /// for an exact duplicate of the latest, or nothing for a duplicate of the pending one).
    pub fn on_voucher(&mut self, v: &Voucher) -> Result<Option<Action>, Reject> {
        let r = self.check_voucher(v, true);
        match r {
            Err(e) => {
                self.stats.rejects.bump(e);
                Err(e)
            }
            Ok(Check::DuplicateLatest) => {
                self.stats.duplicates += 1;
                Ok(Some(Action::SendAck(self.ack())))
            }
            Ok(Check::DuplicatePending) => {
                self.stats.duplicates += 1;
                Ok(None)
            }
            Ok(Check::New) => {
                self.state.pending = Some(*v);
                Ok(Some(Action::CommitThenCredit(*v)))
            }
        }
    }

    /// The payer's resync. Our meter is raised to the payer's totals (its own admission, so
    /// it buys no credit; this heals an interval we lost in a restart). A newer voucher is
    /// verified like any other, without the metered check since the meter now covers it, and
    /// returned for commit. Older ones are kept out: we keep the max. Only for the resync
    /// that opens a session, before data flows: bytes in flight would otherwise count twice.
    pub fn on_resync(&mut self, r: &Resync) -> Result<Option<Action>, Reject> {
        self.on_resync_with(r, true)
    }

    /// [`PayeeChannel::on_resync`], raising our meter to the payer's totals only if
    /// `raise_meter` (we restarted, so the link is fresh and nothing of ours is in flight).
    /// A resync after a rekey, while data flows, keeps our meter: the payer's count includes
    /// frames still on their way to us, which we are about to count ourselves.
    pub fn on_resync_with(
        &mut self,
        r: &Resync,
        raise_meter: bool,
    ) -> Result<Option<Action>, Reject> {
        let res = self.check_resync(r);
        if let Err(e) = res {
            self.stats.rejects.bump(e);
        }
        let new = res?;
        let m = &mut self.state.meter;
        if raise_meter {
            m.raise_to(r.meter_bytes, r.meter_amount);
        }
        let Some(v) = new else { return Ok(None) };
        m.raise_to(v.cumulative_bytes, v.cumulative_amount);
        self.state.pending = Some(v);
        Ok(Some(Action::CommitThenCredit(v)))
    }

    fn check_resync(&self, r: &Resync) -> Result<Option<Voucher>, Reject> {
        if r.channel_id != self.state.id {
            return Err(Reject::WrongChannel);
        }
        let Some(v) = r.latest else { return Ok(None) };
        match self.check_voucher(&v, false) {
            // The payer is behind us; our own resync tells it. Not an error unless its voucher
            // contradicts ours.
            Err(Reject::StaleSeq) => match self.state.latest {
                Some(l)
                    if v.cumulative_amount > l.cumulative_amount
                        || v.cumulative_bytes > l.cumulative_bytes =>
                {
                    Err(Reject::NonMonotonic)
                }
                _ => Ok(None),
            },
            Err(e) => Err(e),
            Ok(Check::DuplicateLatest | Check::DuplicatePending) => Ok(None),
            Ok(Check::New) => Ok(Some(v)),
        }
    }

    /// The wallet committed `v`: credit it now. Returns the ack to send, or `None` if `v` was
    /// already superseded.
    pub fn committed(&mut self, v: &Voucher) -> Option<VoucherAck> {
        if self.state.pending.as_ref() == Some(v) {
            self.state.pending = None;
        }
        if self.state.latest.is_some_and(|l| l.seq >= v.seq) {
            return None;
        }
        self.state.latest = Some(*v);
        Some(self.ack())
    }

    /// The wallet refused or failed to commit `v`: no credit is extended.
    pub fn commit_failed(&mut self, v: &Voucher) {
        if self.state.pending.as_ref() == Some(v) {
            self.state.pending = None;
        }
    }

    fn check_voucher(&self, v: &Voucher, metered: bool) -> Result<Check, Reject> {
        let s = &self.state;
        if v.channel_id != s.id {
            return Err(Reject::WrongChannel);
        }
        if !v.verify(&s.params.payer) {
            return Err(Reject::ForgedSignature);
        }
        if v.seq == 0 || v.price_epoch > self.price().epoch.max(s.meter.max_epoch()) {
            return Err(Reject::Malformed);
        }
        if let Some(b) = latest_of(s.latest, s.pending) {
            if v.seq == b.seq && v.body_bytes() == b.body_bytes() {
                return Ok(if s.latest.is_some_and(|l| l.seq == b.seq) {
                    Check::DuplicateLatest
                } else {
                    Check::DuplicatePending
                });
            }
            if v.seq <= b.seq {
                return Err(Reject::StaleSeq);
            }
            if !v.is_monotonic_successor_of(&b) {
                return Err(Reject::NonMonotonic);
            }
        }
        if v.cumulative_amount > self.cfg.max_cumulative {
            return Err(Reject::OverLimit);
        }
        if metered {
            let m = &s.meter;
            let max_bytes = self
                .with_loss(u128::from(m.total_bytes()))
                .saturating_add(u128::from(self.cfg.tolerance_bytes));
            if u128::from(v.cumulative_bytes) > max_bytes {
                return Err(Reject::OverMetered);
            }
            let max_amount = self
                .with_loss(m.total_cost().units())
                .saturating_add(self.amount_tolerance().units());
            if v.cumulative_amount.units() > max_amount {
                return Err(Reject::OverMetered);
            }
        }
        Ok(Check::New)
    }

    /// What the payer may have counted for `x` arrived: x / (1 - loss), rounded up.
    fn with_loss(&self, x: u128) -> u128 {
        let keep = 100 - u128::from(self.cfg.max_loss_percent.min(90));
        x.saturating_mul(100).div_ceil(keep)
    }

    /// Amount slack matching the byte tolerance: the tolerance bytes at the current price, plus
    /// one unit per bucket because each side rounds each bucket up on its own count.
    fn amount_tolerance(&self) -> Amount {
        let m = &self.state.meter;
        let rate = m.max_rate().max(self.price().units_per_mib);
        let buckets = u128::try_from(m.bucket_count()).unwrap_or(u128::MAX);
        Price::new(rate, 0)
            .cost(self.cfg.tolerance_bytes)
            .saturating_add(Amount::from_units(buckets.saturating_add(1)))
    }
}

enum Check {
    New,
    DuplicateLatest,
    DuplicatePending,
}
