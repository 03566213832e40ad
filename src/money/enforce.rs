//! The payee's enforcement ladder for one neighbour (DESIGN.md §5). Owns the level decision
//! and the free-tier token bucket. Invariants: unpaid <= window is always full service;
//! unpaid > window is shaped to the free tier; unpaid > 1.25 x window continuously for at least
//! the grace period is cut. Only data frames are judged here: channel and routing frames never
//! pass through the ladder, so a debtor can always pay its way back. Time is passed in.

use std::time::{Duration, Instant};

use super::amount::Amount;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Ladder parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnforceConfig {
    /// Unpaid debt allowed at full service.
    pub credit_window: Amount,
    /// How long debt may stay above 1.25 x the window before data is cut.
    pub grace: Duration,
    /// Free-tier rate while shaped, bytes per second.
    pub free_bytes_per_sec: u64,
    /// Free-tier burst while shaped, bytes.
    pub free_burst_bytes: u64,
}

impl Default for EnforceConfig {
    fn default() -> Self {
        EnforceConfig {
            credit_window: Amount::from_units(10_000_000), // 0.01 CC
            grace: Duration::from_secs(10),
            free_bytes_per_sec: 16 * 1024,
            free_burst_bytes: 64 * 1024,
        }
    }
}

/// Service level of a neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Within the credit window.
    Full,
    /// Over the window: data limited to the free tier.
    Shaped,
    /// Over 1.25 x the window for longer than the grace period: data dropped.
    Cut,
}

/// Decision for one data frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Forward the frame.
    Forward,
    /// Drop it: shaped and the free tier is used up.
    DropShaped,
    /// Drop it: service is cut.
    DropCut,
}

impl Verdict {
    /// True if the frame may be forwarded.
    pub fn is_forward(self) -> bool {
        self == Verdict::Forward
    }
}

/// Counters of what the ladder decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnforceStats {
    /// Frames forwarded.
    pub forwarded: u64,
    /// Frames dropped while shaped.
    pub dropped_shaped: u64,
    /// Frames dropped while cut.
    pub dropped_cut: u64,
}

/// Ladder state for one neighbour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enforcer {
    cfg: EnforceConfig,
    /// 1.25 x window, precomputed so the hot path only compares.
    cut_threshold: Amount,
    /// Since when unpaid has been above the cut threshold without a break.
    over_cut_since: Option<Instant>,
    /// The free tier while shaped.
    free: FreeTier,
    stats: EnforceStats,
}

impl Enforcer {
    /// A ladder at full service.
    pub fn new(cfg: EnforceConfig) -> Self {
        Enforcer {
            cfg,
            cut_threshold: cfg.credit_window.mul_ratio(5, 4),
            over_cut_since: None,
            free: FreeTier::default(),
            stats: EnforceStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EnforceConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> EnforceStats {
        self.stats
    }

    /// The level for `unpaid` at `now` without changing state.
    pub fn peek_level(&self, unpaid: Amount, now: Instant) -> Level {
        if unpaid <= self.cfg.credit_window {
            Level::Full
        } else if unpaid <= self.cut_threshold {
            Level::Shaped
        } else {
            match self.over_cut_since {
                Some(t) if now.saturating_duration_since(t) >= self.cfg.grace => Level::Cut,
                _ => Level::Shaped,
            }
        }
    }

    /// The level for `unpaid` at `now`, advancing the grace timer.
    pub fn level(&mut self, unpaid: Amount, now: Instant) -> Level {
        if unpaid <= self.cut_threshold {
            self.over_cut_since = None;
        } else if self.over_cut_since.is_none() {
            self.over_cut_since = Some(now);
        }
        self.peek_level(unpaid, now)
    }

    /// Decide one data frame of `bytes` given the neighbour's current unpaid debt.
    #[inline]
    pub fn allow(&mut self, unpaid: Amount, bytes: u64, now: Instant) -> Verdict {
        // Fast path: within the window nothing else is read or written but one counter.
        if unpaid <= self.cfg.credit_window && self.over_cut_since.is_none() {
            self.free.reset();
            self.stats.forwarded += 1;
            return Verdict::Forward;
        }
        let v = match self.level(unpaid, now) {
            Level::Full => {
                self.free.reset();
                Verdict::Forward
            }
            Level::Shaped => {
                if self.free.take(&self.cfg, bytes, now) {
                    Verdict::Forward
                } else {
                    Verdict::DropShaped
                }
            }
            Level::Cut => Verdict::DropCut,
        };
        match v {
            Verdict::Forward => self.stats.forwarded += 1,
            Verdict::DropShaped => self.stats.dropped_shaped += 1,
            Verdict::DropCut => self.stats.dropped_cut += 1,
        }
        v
    }
}

/// A free-tier token bucket: `free_bytes_per_sec`, bursting to `free_burst_bytes`, full when
/// it starts (after [`FreeTier::reset`]). The payee's ladder uses it while it shapes a debtor;
/// a payer that cannot pay for more uses the same one on its side, so it sends no more than
/// an honest payee would carry for free (docs/money.md, "Balance and limits").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FreeTier {
    /// Tokens in byte-nanoseconds (bytes x 10^9), so refills lose no fractions.
    tokens: u128,
    /// When `tokens` was last refilled; `None` while not in use.
    refilled_at: Option<Instant>,
}

impl FreeTier {
    /// Not in use: the next [`FreeTier::take`] starts with a full burst.
    #[inline]
    pub fn reset(&mut self) {
        self.refilled_at = None;
    }

    /// Take `bytes` at `now` if the bucket holds them.
    pub fn take(&mut self, cfg: &EnforceConfig, bytes: u64, now: Instant) -> bool {
        let cap = u128::from(cfg.free_burst_bytes) * NANOS_PER_SEC;
        match self.refilled_at {
            None => self.tokens = cap,
            Some(t) => {
                let dt = now.saturating_duration_since(t).as_nanos();
                let add = dt.saturating_mul(u128::from(cfg.free_bytes_per_sec));
                self.tokens = self.tokens.saturating_add(add).min(cap);
            }
        }
        self.refilled_at = Some(now);
        let need = u128::from(bytes) * NANOS_PER_SEC;
        if self.tokens >= need {
            self.tokens -= need;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EnforceConfig {
        EnforceConfig {
            credit_window: Amount::from_units(1000),
            grace: Duration::from_secs(5),
            free_bytes_per_sec: 1000,
            free_burst_bytes: 2000,
        }
    }

    #[test]
    fn ladder_transitions_with_virtual_clock() {
        let t0 = Instant::now();
        let mut e = Enforcer::new(cfg());
        let a = Amount::from_units;
        assert_eq!(e.allow(a(1000), 100, t0), Verdict::Forward);
        assert_eq!(e.level(a(1000), t0), Level::Full);
        // Over the window: shaped, the burst passes then the free tier runs dry.
        assert_eq!(e.level(a(1001), t0), Level::Shaped);
        assert_eq!(e.allow(a(1001), 2000, t0), Verdict::Forward);
        assert_eq!(e.allow(a(1001), 1, t0), Verdict::DropShaped);
        // Refill at 1000 B/s: after 0.5 s, 500 bytes pass, 501 do not.
        let t = t0 + Duration::from_millis(500);
        assert_eq!(e.allow(a(1001), 501, t), Verdict::DropShaped);
        assert_eq!(e.allow(a(1001), 500, t), Verdict::Forward);
        // Over 1.25 x: still shaped during grace, cut after.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(e.level(a(1251), t1), Level::Shaped);
        assert_eq!(
            e.level(a(1251), t1 + Duration::from_millis(4999)),
            Level::Shaped
        );
        assert_eq!(
            e.allow(a(1251), 1, t1 + Duration::from_secs(5)),
            Verdict::DropCut
        );
        // Dipping to exactly 1.25 x resets the grace timer.
        assert_eq!(e.level(a(1250), t1 + Duration::from_secs(6)), Level::Shaped);
        assert_eq!(e.level(a(1251), t1 + Duration::from_secs(7)), Level::Shaped);
        assert_eq!(e.level(a(1251), t1 + Duration::from_secs(12)), Level::Cut);
        // Paying back within the window restores full service at once.
        assert_eq!(
            e.allow(a(0), 1500, t1 + Duration::from_secs(13)),
            Verdict::Forward
        );
        assert_eq!(e.peek_level(a(0), t1), Level::Full);
        let s = e.stats();
        assert_eq!((s.dropped_cut, s.dropped_shaped), (1, 2));
    }

    #[test]
    fn refill_is_capped_at_burst() {
        let t0 = Instant::now();
        let mut e = Enforcer::new(cfg());
        let over = Amount::from_units(1100);
        assert_eq!(e.allow(over, 2000, t0), Verdict::Forward);
        let t = t0 + Duration::from_secs(3600);
        assert_eq!(e.allow(over, 2001, t), Verdict::DropShaped);
        assert_eq!(e.allow(over, 2000, t), Verdict::Forward);
    }
}
