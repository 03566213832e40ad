//! The paying side of one unidirectional channel. Owns the payer's meter of data handed to
//! the payee, the decision when to pay, voucher production and self-throttling. Invariants:
//! seq strictly increases and cumulative totals never decrease across everything this side
//! signs (even across restarts, via [`PayerChannel::restore`] and resync); a voucher is only
//! released for sending after the caller confirms it is committed; nothing is ever signed above
//! the spend cap. The payee is an adversary: what it grants, quotes and reports is bounded by
//! our own policy, so we never pay for more than we metered plus one `max_window`
//! (docs/money.md, "What a node can lose").

use std::time::{Duration, Instant};

use super::amount::Amount;
use super::backing::SharedBacking;
use super::messages::{CreditGrant, PriceQuote, VoucherAck};
use super::price::{BucketId, Meter, MeterSnapshot, Price};
use super::voucher::{ChannelId, ChannelParams, Voucher};
use super::{Action, Reject, RejectCounts};
use crate::identity::Identity;

mod resync;

/// Payer tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayerConfig {
    /// Pay at least this often while anything is owed.
    pub pay_interval: Duration,
    /// Resend an unacknowledged voucher after this long.
    pub resend_after: Duration,
    /// The credit window assumed until the payee grants one.
    pub default_window: Amount,
    /// The largest credit window we act on, whatever the payee grants (`[wallet]
    /// max_accepted_window`). It is also the most a resync may ever add to our meter.
    pub max_window: Amount,
    /// The highest price per MiB we pay (`[pricing] max_price_per_mib`); quotes above it are
    /// refused.
    pub max_price_per_mib: u64,
}

/// Default `[wallet] max_accepted_window`: five default credit windows (docs/money.md).
pub const DEFAULT_MAX_WINDOW: Amount = Amount::from_units(50_000_000);

/// Default `[pricing] max_price_per_mib`: 0.01 CC per MiB (about 10 CC per GiB), ten times
/// the fees the tests and docs use (docs/money.md, "Bounds").
pub const DEFAULT_MAX_PRICE_PER_MIB: u64 = 10_000_000;

impl Default for PayerConfig {
    fn default() -> Self {
        PayerConfig {
            pay_interval: Duration::from_secs(2),
            resend_after: Duration::from_secs(1),
            default_window: Amount::from_units(10_000_000),
            max_window: DEFAULT_MAX_WINDOW,
            max_price_per_mib: DEFAULT_MAX_PRICE_PER_MIB,
        }
    }
}

/// Everything that defines the payer's channel state (compared in tests; counters live apart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayerState {
    params: ChannelParams,
    id: ChannelId,
    meter: Meter,
    current: BucketId,
    /// Latest voucher known committed (ours, or adopted from a resync).
    latest: Option<Voucher>,
    /// Produced and handed out for commit, not yet confirmed.
    pending: Option<Voucher>,
    next_seq: u64,
    grant: Option<CreditGrant>,
    acked: Option<VoucherAck>,
    spend_cap: Amount,
    last_paid_at: Option<Instant>,
    last_sent_at: Option<Instant>,
    /// What our meter counts beyond the payee's latest report (bytes, cost): data lost on the
    /// link after we sent it. Recomputed at each report; we pay for what was carried.
    lost_bytes: u64,
    lost_amount: Amount,
    /// A handshake happened and the payee's resync for it has not arrived: only then may a
    /// resync change anything.
    resync_expected: bool,
    /// How much more resyncs may still raise our meter above what we metered (starts at
    /// `max_window`, never refills while the channel lives).
    resync_budget: Amount,
    /// The payee reported its meter since this channel was restored with unpaid metered
    /// bytes. Until it has, we do not know what it refused or lost of them before our restart
    /// (`lost_*` is not persisted), so we sign nothing new: a voucher above the payee's meter
    /// could never be taken back, and the payee would refuse it and every later one.
    reported: bool,
}

/// Payer counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayerStats {
    /// Rejected incoming messages by reason.
    pub rejects: RejectCounts,
    /// Acks whose metered bytes exceed what we ever sent (the payee over-counts).
    pub drift_flags: u64,
    /// Grants whose window was above our `max_window` (we act on `max_window`).
    pub grants_clamped: u64,
}

/// The payer's half of a channel.
#[derive(Clone, Debug)]
pub struct PayerChannel {
    cfg: PayerConfig,
    state: PayerState,
    stats: PayerStats,
    /// The on-chain channel behind this one, if any: every voucher above its base is
    /// cosigned, and nothing above its limit is signed.
    backing: Option<SharedBacking>,
    /// Our latest voucher is above the new backing's base but has no chain signature (the
    /// payee refuses it): sign its totals again under the next seq.
    reissue: bool,
}

impl PayerChannel {
    /// A fresh channel at price `price` (until the payee quotes another).
    pub fn new(params: ChannelParams, cfg: PayerConfig, price: Price) -> Self {
        Self::restore(params, cfg, price, None, &MeterSnapshot::default())
    }

    /// Rebuild after a restart from the wallet: the latest committed voucher and the last
    /// meter checkpoint. The meter is raised to the voucher, so nothing signed is re-billed
    /// lower and seq continues above it.
    pub fn restore(
        params: ChannelParams,
        cfg: PayerConfig,
        price: Price,
        latest: Option<Voucher>,
        meter: &MeterSnapshot,
    ) -> Self {
        let mut m = Meter::from_snapshot(meter);
        if let Some(v) = latest {
            m.raise_to(v.cumulative_bytes, v.cumulative_amount);
        }
        let current = m.bucket(price);
        // Metered but unpaid from before the restart: wait for the payee's report (see
        // `reported`); a fresh or fully paid channel has nothing to reconcile.
        let reported = m.total_cost() <= latest.map_or(Amount::ZERO, |v| v.cumulative_amount);
        PayerChannel {
            cfg,
            state: PayerState {
                params,
                id: params.id(),
                meter: m,
                current,
                latest,
                pending: None,
                next_seq: latest.map_or(1, |v| v.seq.saturating_add(1)),
                grant: None,
                acked: None,
                spend_cap: Amount::MAX,
                last_paid_at: None,
                last_sent_at: None,
                lost_bytes: 0,
                lost_amount: Amount::ZERO,
                // The first handshake of a (re)built channel brings one resync.
                resync_expected: true,
                resync_budget: cfg.max_window,
                reported,
            },
            stats: PayerStats::default(),
            backing: None,
            reissue: false,
        }
    }

    /// Back the channel on chain (or stop: `None`). Vouchers signed from now on carry a chain
    /// signature and stay within `backing.limit()`.
    pub fn set_backing(&mut self, backing: Option<SharedBacking>) {
        let latest = self.state.latest;
        self.reissue = backing.as_ref().is_some_and(|b| {
            latest.is_some_and(|v| v.chain_sig.is_none() && b.cosign(&v).is_some())
        });
        self.backing = backing;
    }

    /// The on-chain backing, if any.
    pub fn backing(&self) -> Option<&SharedBacking> {
        self.backing.as_ref()
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
    pub fn state(&self) -> &PayerState {
        &self.state
    }

    /// Counters.
    pub fn stats(&self) -> &PayerStats {
        &self.stats
    }

    /// Count a message the caller refused for this channel before it reached us (an exit's
    /// quote above the fee it announced in routing).
    pub fn count_reject(&mut self, r: Reject) {
        self.stats.rejects.bump(r);
    }

    /// The meter of data handed to the payee.
    pub fn meter(&self) -> &Meter {
        &self.state.meter
    }

    /// The latest committed voucher.
    pub fn latest(&self) -> Option<Voucher> {
        self.state.latest
    }

    /// The payee's latest ack.
    pub fn acked(&self) -> Option<VoucherAck> {
        self.state.acked
    }

    /// The price new data is billed at.
    pub fn price(&self) -> Price {
        self.state.current.price()
    }

    /// Everything owed so far by our meter.
    pub fn owed(&self) -> Amount {
        self.state.meter.total_cost()
    }

    /// What we pay for: our meter less what the payee reported never arriving (link loss).
    /// The payee's report can only lower this, never raise it above our own count, and a
    /// payee that under-reports only underpays itself.
    pub fn payable(&self) -> Amount {
        self.owed().saturating_sub(self.state.lost_amount)
    }

    fn payable_bytes(&self) -> u64 {
        self.state
            .meter
            .total_bytes()
            .saturating_sub(self.state.lost_bytes)
    }

    /// Payable but not yet covered by a committed voucher.
    pub fn unpaid(&self) -> Amount {
        self.payable().saturating_sub(self.paid())
    }

    /// The payee's own count of what it received from us (from an ack or a resync): whatever
    /// our meter has beyond it was lost on the way and is not paid for.
    fn on_report(&mut self, bytes: u64, amount: Amount) {
        let m = &self.state.meter;
        self.state.lost_bytes = m.total_bytes().saturating_sub(bytes);
        self.state.lost_amount = m.total_cost().saturating_sub(amount);
        self.state.reported = true;
    }

    fn paid(&self) -> Amount {
        self.state
            .latest
            .map_or(Amount::ZERO, |v| v.cumulative_amount)
    }

    /// The most we will sign in total: our spend cap and the payee's channel limit.
    fn cap(&self) -> Amount {
        let limit = self.state.grant.map_or(Amount::MAX, |g| g.max_cumulative);
        let locked = self.backing.as_ref().map_or(Amount::MAX, |b| b.limit());
        self.state.spend_cap.min(limit).min(locked)
    }

    /// The credit window the payee granted (or the default until it does), never above our
    /// `max_window`: a huge grant must not let unpaid debt or a resync grow past our policy.
    pub fn window(&self) -> Amount {
        self.state
            .grant
            .map_or(self.cfg.default_window, |g| g.credit_window)
            .min(self.cfg.max_window)
    }

    /// A handshake completed: the payee's next resync may be acted on (once).
    pub fn expect_resync(&mut self) {
        self.state.resync_expected = true;
    }

    /// No resync may raise our meter: for a channel opened in this process, whose meter lost
    /// nothing to catch up on (an exit channel opened on first use). Resyncs still report the
    /// payee's count and voucher.
    pub fn forgo_resync_raise(&mut self) {
        self.state.resync_budget = Amount::ZERO;
    }

    /// Set the most this channel may ever sign in total (the wallet computes it from its spend
    /// limit). Vouchers are capped at it and data self-throttles when it is reached.
    pub fn set_spend_cap(&mut self, cap: Amount) {
        self.state.spend_cap = cap;
    }

    /// Hot path: `bytes` of data were handed to the payee.
    #[inline]
    pub fn on_data_sent(&mut self, bytes: u64) {
        self.state.meter.record(self.state.current, bytes);
    }

    /// Hot path: `bytes` of data were handed to the payee for a destination it bills at
    /// `price` (its advertised route price).
    #[inline]
    pub fn on_data_sent_at(&mut self, price: Price, bytes: u64) {
        self.state.meter.record_at(price, bytes);
    }

    /// Self-throttle: true if data should not be sent now, because the spend cap or the
    /// payee's channel limit is reached, or the payee has acknowledged so little that it is
    /// already shaping us.
    pub fn throttled(&self) -> bool {
        let owed = self.payable();
        if owed >= self.cap() {
            return true;
        }
        let acked = self.state.acked.map_or(Amount::ZERO, |a| a.credited);
        owed.saturating_sub(acked) > self.window()
    }

    /// Throttled although our own spend cap is not reached: the payee credits no more (its
    /// granted limit, or what we locked on chain, e.g. nothing while the chain is down). What
    /// we send now it carries, if at all, in its free tier, so we may send at that rate.
    /// Not when what holds us back is an unacknowledged window (a payee that does not ack
    /// gets no more vouchers from us than before) or our own spend cap.
    pub fn free_tier_only(&self) -> bool {
        let owed = self.payable();
        owed >= self.cap() && owed < self.state.spend_cap
    }

    /// Decide whether to pay (or resend) now. Pays when unpaid reaches half the credit window
    /// or the pay interval has passed; one voucher is in flight to the wallet at a time.
    pub fn poll(&mut self, now: Instant, me: &Identity) -> Option<Action> {
        let s = &self.state;
        if s.pending.is_some() {
            return None;
        }
        let amount = self.payable().min(self.cap()).max(self.paid());
        let bytes = self
            .payable_bytes()
            .max(s.latest.map_or(0, |v| v.cumulative_bytes));
        let unpaid = amount.saturating_sub(self.paid());
        let interval_due = s
            .last_paid_at
            .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.pay_interval);
        let reissue = self.reissue && s.latest.is_some_and(|v| amount >= v.cumulative_amount);
        if s.reported
            && (reissue
                || !unpaid.is_zero() && (unpaid >= self.window().mul_ratio(1, 2) || interval_due))
        {
            // The highest epoch we actually metered at: the payee bills a fee rise only once
            // a voucher shows we accepted it (docs/payments.md, "Prices and epochs").
            let epoch = s
                .meter
                .max_metered_epoch()
                .max(s.latest.map_or(0, |v| v.price_epoch));
            let mut v = Voucher::sign(me, s.id, s.next_seq, amount, bytes, epoch);
            v.chain_sig = self.backing.as_ref().and_then(|b| b.cosign(&v));
            self.reissue = false;
            self.state.next_seq = s.next_seq.saturating_add(1);
            self.state.pending = Some(v);
            self.state.last_paid_at = Some(now);
            return Some(Action::CommitThenSend(v));
        }
        let latest = s.latest?;
        let acked = s.acked.is_some_and(|a| a.seq >= latest.seq);
        let resend_due = s
            .last_sent_at
            .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.resend_after);
        if !acked && resend_due {
            self.state.last_sent_at = Some(now);
            return Some(Action::Resend(latest));
        }
        None
    }

    /// When [`PayerChannel::poll`] next wants to run (`now` if at once), if anything payable
    /// is owed or a voucher is unacknowledged. The driver also calls `poll` after sending data
    /// (per batch), since reaching half the window pays at once.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let s = &self.state;
        let payable =
            s.reported && self.payable().min(self.cap()) > self.paid() && s.pending.is_none();
        let pay = payable.then(|| s.last_paid_at.map_or(now, |t| t + self.cfg.pay_interval));
        let resend = s
            .latest
            .filter(|v| s.acked.is_none_or(|a| a.seq < v.seq))
            .map(|_| s.last_sent_at.map_or(now, |t| t + self.cfg.resend_after));
        match (pay, resend) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The wallet committed `v`: it becomes the latest. Returns true if it should now be sent
    /// (false if a resync already superseded it).
    pub fn committed(&mut self, v: &Voucher, now: Instant) -> bool {
        if self.state.pending.as_ref() == Some(v) {
            self.state.pending = None;
        }
        if self.state.latest.is_some_and(|l| l.seq >= v.seq) {
            return false;
        }
        self.state.latest = Some(*v);
        self.state.last_sent_at = Some(now);
        true
    }

    /// The wallet refused or failed to commit `v`: it must not be sent. Its seq stays used,
    /// so a voucher that might have reached the disk is never contradicted by another.
    pub fn commit_failed(&mut self, v: &Voucher) {
        if self.state.pending.as_ref() == Some(v) {
            self.state.pending = None;
        }
    }

    /// A new price from the payee. Older epochs are ignored; two prices for one epoch are
    /// malformed. Buckets two or more epochs old are folded (late frames are still counted).
    pub fn on_price_quote(&mut self, q: &PriceQuote) -> Result<(), Reject> {
        let cur = self.state.current.price();
        let r = if q.price.units_per_mib > self.cfg.max_price_per_mib {
            Err(Reject::PriceRefused)
        } else if q.price.epoch < cur.epoch {
            Err(Reject::StaleSeq)
        } else if q.price.epoch == cur.epoch && q.price != cur {
            Err(Reject::Malformed)
        } else {
            Ok(())
        };
        if let Err(e) = r {
            self.stats.rejects.bump(e);
            return r;
        }
        self.state
            .meter
            .close_epochs_before(q.price.epoch.saturating_sub(1));
        self.state.current = self.state.meter.bucket(q.price);
        Ok(())
    }

    /// The payee's credit grant for this channel.
    pub fn on_credit_grant(&mut self, g: &CreditGrant) -> Result<(), Reject> {
        let p = ChannelParams {
            nonce: g.nonce,
            ..self.state.params
        };
        if g.channel_id != self.state.id || p.id() != self.state.id {
            self.stats.rejects.bump(Reject::WrongChannel);
            return Err(Reject::WrongChannel);
        }
        if !super::messages::in_bounds(0, &[g.credit_window, g.max_cumulative]) {
            self.stats.rejects.bump(Reject::OutOfRange);
            return Err(Reject::OutOfRange);
        }
        if g.credit_window > self.cfg.max_window {
            self.stats.grants_clamped += 1;
        }
        self.state.grant = Some(*g);
        Ok(())
    }

    /// The payee's ack, also sent unprompted as a report of its meter (seq 0 before any
    /// voucher). Acks of vouchers we never committed, or that credit more than we signed, are
    /// malformed; older acks are stale.
    pub fn on_ack(&mut self, a: &VoucherAck) -> Result<(), Reject> {
        let r = if a.channel_id != self.state.id {
            Err(Reject::WrongChannel)
        } else if !super::messages::in_bounds(a.metered_bytes, &[a.credited, a.metered_amount]) {
            Err(Reject::OutOfRange)
        } else if a.seq > self.state.latest.map_or(0, |l| l.seq) || a.credited > self.paid() {
            Err(Reject::Malformed)
        } else if self.state.acked.is_some_and(|p| a.seq < p.seq) {
            Err(Reject::StaleSeq)
        } else {
            Ok(())
        };
        if let Err(e) = r {
            self.stats.rejects.bump(e);
            return r;
        }
        if a.metered_bytes > self.state.meter.total_bytes() {
            self.stats.drift_flags += 1;
        }
        self.on_report(a.metered_bytes, a.metered_amount);
        self.state.acked = Some(*a);
        Ok(())
    }
}
