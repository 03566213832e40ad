//! The paid side of one unidirectional channel. Owns the payee's meter of data received from
//! the payer, voucher verification, credit and the enforcement ladder. Invariants: a voucher
//! is credited only after the caller confirms it is committed; the credited voucher's seq and
//! totals never decrease; nothing above the channel limit or (outside resync) above what was
//! metered plus tolerance is accepted; a rejected message changes no state, only a counter.
//! The payer is an adversary: every voucher must make progress (amount or bytes up) and comes
//! at most once per `min_voucher_interval`, so each costs a bounded share of verifies, fsyncs
//! and rows; a rise of our fee is billed only once the payer's signed voucher shows it metered
//! at the new epoch.

use std::time::{Duration, Instant};

use super::amount::Amount;
use super::backing::SharedBacking;
use super::enforce::{EnforceConfig, Enforcer, Level, Verdict};
use super::messages::{CreditGrant, PriceQuote, VoucherAck};
use super::price::{BucketId, MIB, Meter, MeterSnapshot, Price};
use super::voucher::{ChannelId, ChannelParams, Voucher, latest_of};
use super::{Action, Reject, RejectCounts};

mod resync;

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
    /// The shortest time between two new vouchers we verify and commit (a re-acked duplicate
    /// is exempt). An honest payer pays at half the window or every pay interval.
    pub min_voucher_interval: Duration,
}

/// Default [`PayeeConfig::min_voucher_interval`]: at most 20 new vouchers per second per
/// channel (docs/money.md, "Vouchers"); at 1 Gbit/s and the default window a payer needs ~25.
pub const MIN_VOUCHER_INTERVAL: Duration = Duration::from_millis(50);

impl Default for PayeeConfig {
    fn default() -> Self {
        PayeeConfig {
            enforce: EnforceConfig::default(),
            max_cumulative: Amount::from_cc(10),
            tolerance_bytes: 4 * MIB,
            max_loss_percent: 10,
            min_voucher_interval: MIN_VOUCHER_INTERVAL,
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
    /// When the last new voucher was accepted for commit (rate limit).
    last_voucher_at: Option<Instant>,
    /// When a duplicate was last re-acked (rate limit: a copy must not buy an ack each).
    last_reack_at: Option<Instant>,
    /// The highest price epoch the payer has signed a voucher at: it has accepted our prices
    /// up to that epoch.
    accepted_epoch: u32,
    /// Our price before the last change, to bill a rise only once the payer accepted it.
    prev_price: Option<Price>,
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
    /// Under a ledger that moves coin: the on-chain channel behind this one, once checked.
    backing: Option<SharedBacking>,
    /// Whether vouchers need backing (a ledger that moves coin is configured).
    needs_backing: bool,
    /// The largest cumulative amount we credit: `cfg.max_cumulative`, and under a ledger the
    /// backing's limit (what is credited while unbacked). Cached for the hot path.
    limit: Amount,
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
                last_voucher_at: None,
                last_reack_at: None,
                accepted_epoch: latest.map_or(0, |v| v.price_epoch),
                prev_price: None,
            },
            stats: PayeeStats::default(),
            backing: None,
            needs_backing: false,
            limit: cfg.max_cumulative,
        }
    }

    /// Require on-chain backing for credit (a ledger that moves coin): until
    /// [`PayeeChannel::set_backing`], nothing beyond what is already credited is accepted.
    pub fn require_backing(&mut self) {
        self.needs_backing = true;
        self.update_limit();
    }

    /// The checked on-chain channel behind this one (`None`: gone, e.g. withdrawn).
    pub fn set_backing(&mut self, backing: Option<SharedBacking>) {
        self.backing = backing;
        self.update_limit();
    }

    /// The on-chain backing, if any.
    pub fn backing(&self) -> Option<&SharedBacking> {
        self.backing.as_ref()
    }

    fn update_limit(&mut self) {
        let chain = match (&self.backing, self.needs_backing) {
            (_, false) => Amount::MAX,
            (Some(b), true) => b.limit(),
            (None, true) => self.credited(),
        };
        self.limit = self.cfg.max_cumulative.min(chain);
    }

    /// The largest cumulative amount we accept now.
    pub fn limit(&self) -> Amount {
        self.limit
    }

    /// Unpaid debt as the ladder sees it: under a ledger, the window shrinks to what the
    /// payer has locked and not yet paid, so a payer can never owe us more than the chain
    /// will pay (the shortfall is added to the debt instead of shrinking the ladder).
    #[inline]
    fn judged_unpaid(&self) -> Amount {
        let unpaid = self.unpaid();
        if !self.needs_backing {
            return unpaid;
        }
        let headroom = self.limit.saturating_sub(self.credited());
        unpaid.saturating_add(self.window().saturating_sub(headroom))
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
        self.state.enforcer.peek_level(self.judged_unpaid(), now)
    }

    /// Change our price; the epoch must increase. Returns the quote to send.
    pub fn set_price(&mut self, price: Price) -> Option<PriceQuote> {
        if price.epoch <= self.price().epoch {
            return None;
        }
        self.state.prev_price = Some(self.price());
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

    /// The credit window we grant.
    pub fn window(&self) -> Amount {
        self.cfg.enforce.credit_window
    }

    /// The price to bill a frame at, given `billed` (what we advertise for its destination at
    /// our current epoch). After a rise of our fee, until a voucher of the payer names the new
    /// epoch, the frame is billed as the payer meters it: at the old fee and epoch, since the
    /// payer meters the route price it has accepted. A fall applies at once (the payer pays
    /// the lower of both counts, docs/payments.md, "Loss").
    #[inline]
    pub fn billing_price(&self, billed: Price) -> Price {
        let cur = self.price();
        match self.state.prev_price {
            Some(prev)
                if billed.epoch == cur.epoch
                    && self.state.accepted_epoch < cur.epoch
                    && prev.units_per_mib < cur.units_per_mib =>
            {
                let rise = cur.units_per_mib - prev.units_per_mib;
                Price::new(billed.units_per_mib.saturating_sub(rise), prev.epoch)
            }
            _ => billed,
        }
    }

    /// Hot path, data frames only: the ladder's verdict for `bytes` more from the payer, without
    /// metering them. The caller meters with [`PayeeChannel::record_at`] only what it then
    /// actually forwards, as the payer learns of the rest from our reports.
    #[inline]
    pub fn judge(&mut self, bytes: u64, now: Instant) -> Verdict {
        let unpaid = self.judged_unpaid();
        self.state.enforcer.allow(unpaid, bytes, now)
    }

    /// [`PayeeChannel::judge`] with `allowance` of the unpaid debt tolerated on top of the
    /// credit window: an exit forgives no debt, but does not shape a client for the small,
    /// bounded share of what it sent that the client may never have received
    /// (docs/payments.md, "Exit fees").
    #[inline]
    pub fn judge_allowing(&mut self, bytes: u64, allowance: Amount, now: Instant) -> Verdict {
        let unpaid = self.judged_unpaid().saturating_sub(allowance);
        self.state.enforcer.allow(unpaid, bytes, now)
    }

    /// [`PayeeChannel::level`] with the same `allowance` as [`PayeeChannel::judge_allowing`].
    pub fn level_allowing(&self, allowance: Amount, now: Instant) -> Level {
        let unpaid = self.judged_unpaid().saturating_sub(allowance);
        self.state.enforcer.peek_level(unpaid, now)
    }

    /// Hot path: meter `bytes` we carried for the payer at `price`.
    #[inline]
    pub fn record_at(&mut self, price: Price, bytes: u64) {
        self.state.meter.record_at(price, bytes);
    }

    /// Our credit grant as a message.
    pub fn grant(&self) -> CreditGrant {
        CreditGrant {
            channel_id: self.state.id,
            nonce: self.state.params.nonce,
            credit_window: self.cfg.enforce.credit_window,
            max_cumulative: self.limit,
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

    /// Hot path, data frames only: meter `bytes` received from the payer and decide whether to
    /// forward. Bytes are metered whatever the verdict, as the payer's meter counts them too.
    /// Channel and routing frames must not come here: they are never throttled.
    #[inline]
    pub fn allow(&mut self, bytes: u64, now: Instant) -> Verdict {
        self.state.meter.record(self.state.current, bytes);
        let unpaid = self.judged_unpaid();
        self.state.enforcer.allow(unpaid, bytes, now)
    }

    /// [`PayeeChannel::allow`] for data billed at `price` (what we advertise for the frame's
    /// destination) rather than the channel's current price.
    #[inline]
    pub fn allow_at(&mut self, price: Price, bytes: u64, now: Instant) -> Verdict {
        self.state.meter.record_at(price, bytes);
        let unpaid = self.judged_unpaid();
        self.state.enforcer.allow(unpaid, bytes, now)
    }

    /// A voucher from the payer. On success returns [`Action::CommitThenCredit`] (or a re-ack
    /// for an exact duplicate of the latest, or nothing for a duplicate of the pending one).
    /// No rate limit: see [`PayeeChannel::on_voucher_at`].
    pub fn on_voucher(&mut self, v: &Voucher) -> Result<Option<Action>, Reject> {
        let r = self.check_voucher(v, true);
        self.voucher_outcome(v, r)
    }

    /// [`PayeeChannel::on_voucher`] at `now`: a new voucher sooner than `min_voucher_interval`
    /// after the last one is refused ([`Reject::RateLimited`]) before its signature is checked.
    pub fn on_voucher_at(&mut self, v: &Voucher, now: Instant) -> Result<Option<Action>, Reject> {
        let s = &self.state;
        let gap = self.cfg.min_voucher_interval;
        let soon = |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < gap);
        if [s.latest, s.pending].contains(&Some(*v)) {
            // An exact copy (signature included) of a voucher we verified: no second verify,
            // and at most one re-ack per interval, so copies cannot buy work or traffic.
            self.stats.duplicates += 1;
            if s.latest == Some(*v) && !soon(s.last_reack_at) {
                self.state.last_reack_at = Some(now);
                return Ok(Some(Action::SendAck(self.ack())));
            }
            return Ok(None);
        }
        let r = if soon(s.last_voucher_at) {
            Err(Reject::RateLimited)
        } else {
            self.check_voucher(v, true)
        };
        if matches!(r, Ok(Check::New)) {
            self.state.last_voucher_at = Some(now);
        }
        self.voucher_outcome(v, r)
    }

    fn voucher_outcome(
        &mut self,
        v: &Voucher,
        r: Result<Check, Reject>,
    ) -> Result<Option<Action>, Reject> {
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
        self.state.accepted_epoch = self.state.accepted_epoch.max(v.price_epoch);
        Some(self.ack())
    }

    /// The wallet refused or failed to commit `v`: no credit is extended.
    pub fn commit_failed(&mut self, v: &Voucher) {
        if self.state.pending.as_ref() == Some(v) {
            self.state.pending = None;
        }
    }

    pub(super) fn check_voucher(&self, v: &Voucher, metered: bool) -> Result<Check, Reject> {
        let s = &self.state;
        if v.channel_id != s.id {
            return Err(Reject::WrongChannel);
        }
        if !v.in_bounds() {
            return Err(Reject::OutOfRange);
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
            if v.cumulative_amount == b.cumulative_amount
                && v.cumulative_bytes == b.cumulative_bytes
            {
                return Err(Reject::NoProgress);
            }
        }
        if self.needs_backing {
            match &self.backing {
                None => return Err(Reject::Unbacked),
                Some(b) if !b.verify(v) => return Err(Reject::ForgedSignature),
                Some(_) => {}
            }
        }
        if v.cumulative_amount > self.limit {
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

pub(super) enum Check {
    New,
    DuplicateLatest,
    DuplicatePending,
}
