//! Prices and byte metering. Owns [`Price`], the cost rule, and [`Meter`], the per-neighbour
//! byte counters. Invariants: cost is always computed from a cumulative byte total (never summed
//! per packet), so rounding cannot accumulate; recording bytes is a plain integer add on memory
//! owned by one task (no lock, no allocation) once the bucket for a price exists; a meter
//! holds at most [`MAX_BUCKETS`] open buckets, so the per-frame scan is bounded whatever
//! prices a neighbour advertises.
//!
//! Rounding: `cost = ceil(cumulative_bytes * units_per_mib / 2^20)` per price bucket. Ceiling
//! means the relay is never paid less than the exact value of what it carried; the payer's
//! overpayment is below one smallest unit (10^-9 CC) per price bucket over the channel's whole
//! life, not per packet.

use super::amount::Amount;

/// Bytes in one MiB: prices are quoted per MiB.
pub const MIB: u64 = 1 << 20;

/// Most open price buckets per meter (docs/money.md, "Prices and rounding"). A new price
/// beyond it folds the smallest open bucket into the exact base first: at most one unit of
/// rounding per fold, and a neighbour advertising many prices cannot grow the per-frame scan.
pub const MAX_BUCKETS: usize = 16;

/// A price: integer units per MiB, valid from a price epoch on (epochs only increase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Price {
    /// Smallest cloudcoin units per MiB (2^20 bytes).
    pub units_per_mib: u64,
    /// The price epoch this price belongs to.
    pub epoch: u32,
}

impl Price {
    /// A price of `units_per_mib` at `epoch`.
    pub const fn new(units_per_mib: u64, epoch: u32) -> Self {
        Price {
            units_per_mib,
            epoch,
        }
    }

    /// Cost of `cumulative_bytes` at this price, rounded up (see module docs).
    /// Cannot overflow: (2^64-1)^2 < 2^128.
    #[inline]
    pub fn cost(self, cumulative_bytes: u64) -> Amount {
        let p = u128::from(cumulative_bytes) * u128::from(self.units_per_mib);
        let round_up = u128::from(p & u128::from(MIB - 1) != 0);
        Amount::from_units((p >> 20) + round_up)
    }
}

/// Handle to one price bucket of a [`Meter`]; resolved once per price change, used per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketId {
    index: u32,
    price: Price,
}

impl BucketId {
    /// The price this bucket bills at.
    pub fn price(&self) -> Price {
        self.price
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Bucket {
    price: Price,
    bytes: u64,
}

/// Per-neighbour byte counters, one bucket per distinct price (price epoch and rate).
///
/// A "base" (bytes, amount) holds folded-in closed epochs and any floor raised from a signed
/// voucher; it is exact, so folding never changes the total.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meter {
    buckets: Vec<Bucket>,
    base_bytes: u64,
    base_amount: Amount,
}

/// A durable copy of a [`Meter`] (what the wallet checkpoints).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeterSnapshot {
    /// Bytes folded into the base.
    pub base_bytes: u64,
    /// Cost folded into the base.
    pub base_amount: Amount,
    /// Open buckets: price and cumulative bytes.
    pub buckets: Vec<(Price, u64)>,
}

impl MeterSnapshot {
    /// Total bytes recorded.
    pub fn total_bytes(&self) -> u64 {
        Meter::from_snapshot(self).total_bytes()
    }

    /// Total cost of what was recorded.
    pub fn total_cost(&self) -> Amount {
        Meter::from_snapshot(self).total_cost()
    }
}

impl Meter {
    /// An empty meter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bucket for `price`, created if new (allocates only then, never per packet).
    pub fn bucket(&mut self, price: Price) -> BucketId {
        if let Some(i) = self.buckets.iter().position(|b| b.price == price) {
            return BucketId {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                price,
            };
        }
        if self.buckets.len() >= MAX_BUCKETS {
            self.fold_smallest();
        }
        self.buckets.push(Bucket { price, bytes: 0 });
        BucketId {
            index: u32::try_from(self.buckets.len() - 1).unwrap_or(u32::MAX),
            price,
        }
    }

    /// Hot path: add `bytes` to a bucket. A stale id (its bucket was folded) takes the slow
    /// path and recreates the bucket, so bytes are never lost.
    #[inline]
    pub fn record(&mut self, id: BucketId, bytes: u64) {
        match self.buckets.get_mut(id.index as usize) {
            Some(b) if b.price == id.price => b.bytes = b.bytes.saturating_add(bytes),
            _ => self.record_slow(id.price, bytes),
        }
    }

    /// Hot path with the price given per frame (pay per forward: each destination has its
    /// own price). A linear scan over the few open buckets; allocates only for a new price.
    #[inline]
    pub fn record_at(&mut self, price: Price, bytes: u64) {
        match self.buckets.iter_mut().find(|b| b.price == price) {
            Some(b) => b.bytes = b.bytes.saturating_add(bytes),
            None => self.record_slow(price, bytes),
        }
    }

    #[cold]
    fn record_slow(&mut self, price: Price, bytes: u64) {
        let id = self.bucket(price);
        if let Some(b) = self.buckets.get_mut(id.index as usize) {
            b.bytes = b.bytes.saturating_add(bytes);
        }
    }

    /// Total bytes recorded (saturating).
    pub fn total_bytes(&self) -> u64 {
        self.buckets
            .iter()
            .fold(self.base_bytes, |acc, b| acc.saturating_add(b.bytes))
    }

    /// Total cost: the base plus each bucket's rounded cost of its cumulative bytes.
    #[inline]
    pub fn total_cost(&self) -> Amount {
        self.buckets.iter().fold(self.base_amount, |acc, b| {
            acc.saturating_add(b.price.cost(b.bytes))
        })
    }

    /// Number of open price buckets.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Highest rate of any open bucket (0 if none).
    pub fn max_rate(&self) -> u64 {
        self.buckets
            .iter()
            .map(|b| b.price.units_per_mib)
            .max()
            .unwrap_or(0)
    }

    /// Fold the open bucket with the fewest bytes into the base (exact, total unchanged).
    fn fold_smallest(&mut self) {
        let smallest = self
            .buckets
            .iter()
            .enumerate()
            .min_by_key(|(_, b)| b.bytes)
            .map(|(i, _)| i);
        if let Some(i) = smallest {
            let b = self.buckets.swap_remove(i);
            self.base_bytes = self.base_bytes.saturating_add(b.bytes);
            self.base_amount = self.base_amount.saturating_add(b.price.cost(b.bytes));
        }
    }

    /// Highest price epoch of a bucket that holds bytes (0 if none): the epochs this meter
    /// has actually billed at.
    pub fn max_metered_epoch(&self) -> u32 {
        self.buckets
            .iter()
            .filter(|b| b.bytes > 0)
            .map(|b| b.price.epoch)
            .max()
            .unwrap_or(0)
    }

    /// Highest price epoch with a bucket (0 if none).
    pub fn max_epoch(&self) -> u32 {
        self.buckets
            .iter()
            .map(|b| b.price.epoch)
            .max()
            .unwrap_or(0)
    }

    /// Fold buckets of epochs before `epoch` into the base (exact, total unchanged), so a
    /// long-lived channel keeps only a few buckets.
    pub fn close_epochs_before(&mut self, epoch: u32) {
        let mut i = 0;
        while let Some(b) = self.buckets.get(i) {
            if b.price.epoch < epoch {
                let b = self.buckets.swap_remove(i);
                self.base_bytes = self.base_bytes.saturating_add(b.bytes);
                self.base_amount = self.base_amount.saturating_add(b.price.cost(b.bytes));
            } else {
                i += 1;
            }
        }
    }

    /// Raise the totals to at least (`bytes`, `amount`), e.g. to a voucher the payer signed:
    /// the payer has admitted that much, so neither side may count less after a restart.
    pub fn raise_to(&mut self, bytes: u64, amount: Amount) {
        let tb = self.total_bytes();
        if bytes > tb {
            self.base_bytes = self.base_bytes.saturating_add(bytes - tb);
        }
        let ta = self.total_cost();
        if amount > ta {
            self.base_amount = self.base_amount.saturating_add(amount.saturating_sub(ta));
        }
    }

    /// A durable copy.
    pub fn snapshot(&self) -> MeterSnapshot {
        MeterSnapshot {
            base_bytes: self.base_bytes,
            base_amount: self.base_amount,
            buckets: self.buckets.iter().map(|b| (b.price, b.bytes)).collect(),
        }
    }

    /// Rebuild from a snapshot (duplicate prices are merged).
    pub fn from_snapshot(s: &MeterSnapshot) -> Self {
        let mut m = Meter {
            buckets: Vec::with_capacity(s.buckets.len()),
            base_bytes: s.base_bytes,
            base_amount: s.base_amount,
        };
        for &(price, bytes) in &s.buckets {
            let id = m.bucket(price);
            m.record(id, bytes);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cost_rounds_up_on_cumulative_total() {
        let p = Price::new(1000, 1);
        assert_eq!(p.cost(0), Amount::ZERO);
        assert_eq!(p.cost(1).units(), 1);
        assert_eq!(p.cost(MIB).units(), 1000);
        assert_eq!(p.cost(MIB + 1).units(), 1001);
        // Per packet rounding would bill 1000 x 1 unit for 1000 one-byte packets; cumulative
        // rounding bills 1.
        let mut m = Meter::new();
        let b = m.bucket(p);
        for _ in 0..1000 {
            m.record(b, 1);
        }
        assert_eq!(m.total_cost().units(), 1);
        assert_eq!(
            Price::new(u64::MAX, 0).cost(u64::MAX).units(),
            (u128::from(u64::MAX) * u128::from(u64::MAX)).div_ceil(1 << 20)
        );
    }

    #[test]
    fn epochs_fold_exactly_and_stale_ids_still_count() {
        let mut m = Meter::new();
        let a = m.bucket(Price::new(3, 1));
        m.record(a, 5 * MIB + 7);
        let b = m.bucket(Price::new(5, 2));
        m.record(b, MIB);
        let before = (m.total_bytes(), m.total_cost());
        m.close_epochs_before(2);
        assert_eq!((m.total_bytes(), m.total_cost()), before);
        assert_eq!(m.max_epoch(), 2);
        m.record(a, 1); // stale id: bucket recreated
        assert_eq!(m.total_bytes(), before.0 + 1);
        m.record(b, 10);
        assert_eq!(m.total_bytes(), before.0 + 11);
    }

    #[test]
    fn raise_to_is_a_floor() {
        let mut m = Meter::new();
        let a = m.bucket(Price::new(MIB, 1));
        m.record(a, 100);
        m.raise_to(50, Amount::from_units(10));
        assert_eq!((m.total_bytes(), m.total_cost().units()), (100, 100));
        m.raise_to(150, Amount::from_units(170));
        assert_eq!((m.total_bytes(), m.total_cost().units()), (150, 170));
    }

    #[test]
    fn buckets_are_bounded_and_folding_keeps_the_total() {
        // A neighbour advertising a new price for every frame cannot grow the meter.
        let mut m = Meter::new();
        let mut exact = 0u128;
        for i in 0..10_000u64 {
            let p = Price::new(1000 + i, 1);
            m.record_at(p, MIB);
            exact += u128::from(p.units_per_mib);
            assert!(m.bucket_count() <= MAX_BUCKETS);
        }
        assert_eq!(m.total_bytes(), 10_000 * MIB);
        // Each bucket held whole MiB, so folding rounded nothing.
        assert_eq!(m.total_cost().units(), exact);
        assert_eq!(m.max_metered_epoch(), 1);
        let mut n = Meter::new();
        n.bucket(Price::new(5, 9));
        assert_eq!((n.max_epoch(), n.max_metered_epoch()), (9, 0));
    }

    proptest! {
        #[test]
        fn snapshot_roundtrip_and_cost_is_sum_of_ceils(
            recs in proptest::collection::vec((0u32..3, 0u64..100_000), 0..50)
        ) {
            let mut m = Meter::new();
            let mut exact: [u128; 3] = [0; 3];
            let mut bytes: [u64; 3] = [0; 3];
            for (e, n) in recs {
                let price = Price::new(1000 + u64::from(e), e);
                let id = m.bucket(price);
                m.record(id, n);
                let i = e as usize;
                bytes[i] += n;
                exact[i] = u128::from(bytes[i]) * u128::from(price.units_per_mib);
            }
            let want: u128 = exact.iter().map(|x| x.div_ceil(1 << 20)).sum();
            prop_assert_eq!(m.total_cost().units(), want);
            prop_assert_eq!(Meter::from_snapshot(&m.snapshot()), m.clone());
            let cost = m.total_cost();
            m.close_epochs_before(2);
            prop_assert_eq!(m.total_cost(), cost);
        }
    }
}
