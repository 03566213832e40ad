//! Property tests: random operation sequences over a lossy, reordering link with restarts,
//! price changes and forged vouchers, checked against the channel invariants after every step;
//! and the enforcement ladder against a reference model on a virtual clock.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

#[derive(Clone, Debug)]
enum Op {
    Data(u32),
    Lose(u16),
    Tick(u16),
    Pump,
    DeliverToPayee,
    ReorderToPayee,
    DuplicateToPayee,
    DropToPayee,
    DeliverToPayer,
    Checkpoint,
    Restart(bool, bool),
    Forge(u8),
    NewPrice,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u32..2_000_000).prop_map(Op::Data),
        1 => (1u16..1500).prop_map(Op::Lose),
        3 => (1u16..3000).prop_map(Op::Tick),
        3 => Just(Op::Pump),
        3 => Just(Op::DeliverToPayee),
        1 => Just(Op::ReorderToPayee),
        1 => Just(Op::DuplicateToPayee),
        1 => Just(Op::DropToPayee),
        3 => Just(Op::DeliverToPayer),
        1 => Just(Op::Checkpoint),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(a, b)| Op::Restart(a, b)),
        1 => (0u8..7).prop_map(Op::Forge),
        1 => Just(Op::NewPrice),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn channel_pair_invariants(
        ops in proptest::collection::vec(op(), 1..80),
        cap_mib in 5u64..200,
        limit_mib in 5u64..200,
    ) {
        let cap = PRICE.cost(cap_mib * MIB);
        let limit = PRICE.cost(limit_mib * MIB);
        let mut p = Pair::new(cap, limit);
        let mut last_credit: Option<Voucher> = None;
        let mut price = PRICE;
        for op in ops {
            match op {
                Op::Data(n) => { p.data(u64::from(n), false); }
                Op::Lose(n) => { p.data(u64::from(n), true); }
                Op::Tick(ms) => p.now += Duration::from_millis(u64::from(ms)),
                Op::Pump => p.pump_payer(),
                Op::DeliverToPayee => if let Some(m) = p.to_payee.pop_front() { p.payee_receive(m) },
                Op::ReorderToPayee => if let Some(m) = p.to_payee.pop_back() { p.payee_receive(m) },
                Op::DuplicateToPayee => if let Some(m) = p.to_payee.front().cloned() { p.payee_receive(m) },
                Op::DropToPayee => { p.to_payee.pop_front(); }
                Op::DeliverToPayer => if let Some(m) = p.to_payer.pop_front() { p.payer_receive(m) },
                Op::Checkpoint => p.checkpoint(),
                Op::Restart(a, b) => p.restart(a, b),
                Op::NewPrice => {
                    price = Price::new(price.units_per_mib + 100_000, price.epoch + 1);
                    let q = p.payee.set_price(price).unwrap();
                    p.payer.on_price_quote(&q).unwrap();
                }
                Op::Forge(k) => {
                    let base = voucher::latest_of(p.payee.latest(), p.payer.latest());
                    let seq = base.map_or(0, |v| v.seq) + 1000;
                    let amt = base.map_or(Amount::ZERO, |v| v.cumulative_amount);
                    let bytes = base.map_or(0, |v| v.cumulative_bytes);
                    let cid = p.payer.id();
                    let v = match k {
                        0 => Voucher::sign(&p.b, cid, seq, amt, bytes, 1),
                        1 => Voucher::sign(&p.a, ChannelId([3; 32]), seq, amt, bytes, 1),
                        2 => Voucher::sign(&p.a, cid, 0, amt, bytes, 1),
                        3 => Voucher::sign(&p.a, cid, seq, amt, bytes, price.epoch + 1),
                        4 => Voucher::sign(&p.a, cid, seq, limit.saturating_add(Amount::from_units(1)), bytes, 1),
                        5 => Voucher::sign(&p.a, cid, seq, amt, bytes.saturating_add(1 << 40), 1),
                        _ => match p.payee_wallet.vouchers.first() {
                            Some(f) if p.payee_wallet.vouchers.len() > 1 => *f,
                            _ => continue,
                        },
                    };
                    let before = p.payee.state().clone();
                    prop_assert!(p.payee.on_voucher(&v).is_err());
                    prop_assert_eq!(p.payee.state(), &before);
                }
            }
            // Invariants after every step.
            let credit = p.payee.latest();
            if let (Some(old), Some(new)) = (last_credit, credit) {
                prop_assert!(new.seq >= old.seq);
                prop_assert!(new.cumulative_amount >= old.cumulative_amount);
                prop_assert!(new.cumulative_bytes >= old.cumulative_bytes);
            }
            prop_assert!(last_credit.is_none() || credit.is_some());
            if let Some(c) = credit {
                prop_assert!(c.cumulative_amount <= limit);
                prop_assert!(c.cumulative_amount <= cap);
                // Commit-before-send: the payer's wallet holds it (or something newer).
                let pw = p.payer_wallet.latest().unwrap();
                prop_assert!(pw.seq >= c.seq && pw.cumulative_amount >= c.cumulative_amount);
                prop_assert!(p.payee_wallet.vouchers.contains(&c));
            }
            last_credit = credit;
        }
        // With a perfect link the two sides converge on the same latest voucher.
        p.settle();
        // The payer honours the payee's limit as well as its own cap, so it is all paid.
        // At least what the payee reported receiving (data lost on the way is not paid for),
        // never more than our own count.
        let payable = p.payer.payable().min(cap).min(limit);
        let owed = p.payer.owed().min(cap).min(limit);
        let paid = p.payer.latest().map_or(Amount::ZERO, |v| v.cumulative_amount);
        prop_assert!(paid >= payable && paid <= owed, "paid {paid} payable {payable} owed {owed}");
        prop_assert_eq!(p.payee.latest(), p.payer.latest());
        prop_assert_eq!(p.payee.unpaid(), p.payee.meter().total_cost().saturating_sub(paid));
    }
}

proptest! {
    /// The ladder against its specification, on a virtual clock: full service within the
    /// window; cut exactly when debt has stayed above 1.25 x the window for the grace period;
    /// while over the window, forwarded bytes never exceed the free tier's burst plus its rate
    /// times the time spent over the window.
    #[test]
    fn enforcement_ladder_matches_its_specification(
        steps in proptest::collection::vec((0u64..3_000, 0u128..3_000, 1u64..30_000), 1..200)
    ) {
        let cfg = EnforceConfig {
            credit_window: Amount::from_units(1_000),
            grace: Duration::from_secs(5),
            free_bytes_per_sec: 10_000,
            free_burst_bytes: 20_000,
        };
        let mut e = Enforcer::new(cfg);
        let t0 = Instant::now();
        let mut now = t0;
        let mut over_cut_since: Option<Instant> = None;
        let mut episode: Option<(Instant, u64)> = None; // start, bytes forwarded while over
        for (dt_ms, unpaid, bytes) in steps {
            now += Duration::from_millis(dt_ms);
            let unpaid = Amount::from_units(unpaid);
            let v = e.allow(unpaid, bytes, now);
            if unpaid > Amount::from_units(1_250) {
                over_cut_since.get_or_insert(now);
            } else {
                over_cut_since = None;
            }
            let must_cut = over_cut_since.is_some_and(|s| now - s >= cfg.grace);
            prop_assert_eq!(v == Verdict::DropCut, must_cut, "unpaid {:?}", unpaid);
            if unpaid <= cfg.credit_window {
                prop_assert_eq!(v, Verdict::Forward);
                episode = None;
            } else {
                let (start, fwd) = episode.get_or_insert((now, 0));
                if v == Verdict::Forward {
                    *fwd += bytes;
                }
                let elapsed = (now - *start).as_nanos();
                let allowance = u128::from(cfg.free_burst_bytes)
                    + elapsed * u128::from(cfg.free_bytes_per_sec) / 1_000_000_000;
                prop_assert!(u128::from(*fwd) <= allowance, "free tier exceeded");
            }
        }
    }
}
