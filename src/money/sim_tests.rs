//! Payer/payee pair tests on a virtual clock with model wallets and a lossy, reordering link.
//! The model wallets follow the real wallet's rules (idempotent replays, refuse non-monotonic),
//! so the invariants checked here are the ones the daemon relies on.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::identity::Identity;

const PRICE: Price = Price::new(1_000_000, 1); // 0.001 CC per MiB
const WINDOW: Amount = Amount::from_units(10_000_000); // 10 MiB of data at PRICE

#[derive(Clone, Debug)]
enum Msg {
    Voucher(Voucher),
    Ack(VoucherAck),
}

/// A model of one side's wallet table: the committed vouchers of one channel.
#[derive(Default, Clone)]
struct ModelWallet {
    vouchers: Vec<Voucher>,
    checkpoint: MeterSnapshot,
}

impl ModelWallet {
    fn latest(&self) -> Option<Voucher> {
        self.vouchers.last().copied()
    }

    /// Same rules as `Wallet::commit_*_voucher`.
    fn commit(&mut self, v: &Voucher) -> Result<(), ()> {
        if let Some(old) = self.vouchers.iter().find(|o| o.seq == v.seq) {
            return if old.body_bytes() == v.body_bytes() {
                Ok(())
            } else {
                Err(())
            };
        }
        match self.latest() {
            Some(l) if !v.is_monotonic_successor_of(&l) => Err(()),
            _ => {
                self.vouchers.push(*v);
                Ok(())
            }
        }
    }
}

struct Pair {
    a: Identity,
    b: Identity,
    params: ChannelParams,
    payer: PayerChannel,
    payee: PayeeChannel,
    payer_wallet: ModelWallet,
    payee_wallet: ModelWallet,
    to_payee: VecDeque<Msg>,
    to_payer: VecDeque<Msg>,
    now: Instant,
    payer_cfg: PayerConfig,
    payee_cfg: PayeeConfig,
    spend_cap: Amount,
}

fn payee_cfg(max_cumulative: Amount) -> PayeeConfig {
    PayeeConfig {
        enforce: EnforceConfig {
            credit_window: WINDOW,
            grace: Duration::from_secs(5),
            free_bytes_per_sec: 10_000,
            free_burst_bytes: 20_000,
        },
        max_cumulative,
        tolerance_bytes: 4 * MIB,
        max_loss_percent: 10,
    }
}

impl Pair {
    fn new(spend_cap: Amount, max_cumulative: Amount) -> Pair {
        let a = Identity::from_secret([0xa1; 32]);
        let b = Identity::from_secret([0xb2; 32]);
        let params = ChannelParams {
            payer: a.id(),
            payee: b.id(),
            nonce: 7,
        };
        let payer_cfg = PayerConfig::default();
        let payee_cfg = payee_cfg(max_cumulative);
        let mut payer = PayerChannel::new(params, payer_cfg, PRICE);
        payer.set_spend_cap(spend_cap);
        let payee = PayeeChannel::new(params, payee_cfg, PRICE);
        payer.on_credit_grant(&payee.grant()).unwrap();
        Pair {
            a,
            b,
            params,
            payer,
            payee,
            payer_wallet: ModelWallet::default(),
            payee_wallet: ModelWallet::default(),
            to_payee: VecDeque::new(),
            to_payer: VecDeque::new(),
            now: Instant::now(),
            payer_cfg,
            payee_cfg,
            spend_cap,
        }
    }

    /// Data frame over the link; returns the payee's verdict (None if lost or self-throttled).
    fn data(&mut self, bytes: u64, lost: bool) -> Option<Verdict> {
        if self.payer.throttled() {
            return None;
        }
        self.payer.on_data_sent(bytes);
        (!lost).then(|| self.payee.allow(bytes, self.now))
    }

    fn pump_payer(&mut self) {
        while let Some(act) = self.payer.poll(self.now, &self.a) {
            match act {
                Action::CommitThenSend(v) => {
                    assert!(v.cumulative_amount <= self.spend_cap, "signed over cap");
                    if let Some(l) = self.payer_wallet.latest() {
                        assert!(v.is_monotonic_successor_of(&l), "payer regressed");
                    }
                    assert!(self.payer_wallet.commit(&v).is_ok());
                    if self.payer.committed(&v, self.now) {
                        self.to_payee.push_back(Msg::Voucher(v));
                    }
                }
                Action::Resend(v) => self.to_payee.push_back(Msg::Voucher(v)),
                other => panic!("unexpected payer action {other:?}"),
            }
        }
    }

    fn payee_receive(&mut self, m: Msg) {
        let Msg::Voucher(v) = m else { return };
        let before = self.payee.state().clone();
        let credited = self.payee.credited();
        match self.payee.on_voucher(&v) {
            Ok(Some(Action::CommitThenCredit(v))) => {
                // Credit only after the commit.
                assert_eq!(self.payee.credited(), credited);
                self.payee_wallet.commit(&v).unwrap();
                if let Some(ack) = self.payee.committed(&v) {
                    self.to_payer.push_back(Msg::Ack(ack));
                }
            }
            Ok(Some(Action::SendAck(ack))) => {
                assert_eq!(self.payee.state(), &before);
                self.to_payer.push_back(Msg::Ack(ack));
            }
            Ok(None) => assert_eq!(self.payee.state(), &before),
            Ok(Some(other)) => panic!("unexpected payee action {other:?}"),
            Err(_) => assert_eq!(self.payee.state(), &before, "rejection changed state"),
        }
    }

    fn payer_receive(&mut self, m: Msg) {
        if let Msg::Ack(a) = m {
            let before = self.payer.state().clone();
            if self.payer.on_ack(&a).is_err() {
                assert_eq!(self.payer.state(), &before);
            }
        }
    }

    fn checkpoint(&mut self) {
        self.payer_wallet.checkpoint = self.payer.meter().snapshot();
        self.payee_wallet.checkpoint = self.payee.meter().snapshot();
    }

    /// Restart one or both sides from their wallets; in-flight messages die with the session,
    /// then the new handshake is followed by a resync in both directions.
    fn restart(&mut self, payer: bool, payee: bool) {
        if payer {
            self.payer = PayerChannel::restore(
                self.params,
                self.payer_cfg,
                self.payer.price(),
                self.payer_wallet.latest(),
                &self.payer_wallet.checkpoint,
            );
            self.payer.set_spend_cap(self.spend_cap);
        }
        if payee {
            self.payee = PayeeChannel::restore(
                self.params,
                self.payee_cfg,
                self.payee.price(),
                self.payee_wallet.latest(),
                &self.payee_wallet.checkpoint,
            );
        }
        self.to_payee.clear();
        self.to_payer.clear();
        self.payer.on_credit_grant(&self.payee.grant()).unwrap();
        self.resync();
    }

    fn resync(&mut self) {
        let (pr, er) = (self.payer.resync(), self.payee.resync());
        let max_seq = pr
            .latest
            .map_or(0, |v| v.seq)
            .max(er.latest.map_or(0, |v| v.seq));
        let before = self.payee.state().clone();
        match self.payee.on_resync(&pr) {
            Ok(Some(Action::CommitThenCredit(v))) => {
                self.payee_wallet.commit(&v).unwrap();
                self.payee.committed(&v).unwrap();
            }
            Ok(None) => {}
            Ok(other) => panic!("{other:?}"),
            Err(e) => panic!("honest resync rejected: {e:?} {before:?}"),
        }
        match self.payer.on_resync(&er).unwrap() {
            Some(Action::Commit(v)) => self.payer_wallet.commit(&v).unwrap(),
            None => {}
            other => panic!("{other:?}"),
        }
        // Both keep the maximum.
        assert_eq!(self.payee.latest().map_or(0, |v| v.seq), max_seq);
        assert_eq!(self.payer.latest().map_or(0, |v| v.seq), max_seq);
    }

    /// Deliver everything and let timers run with a perfect link until both sides agree.
    fn settle(&mut self) {
        for _ in 0..20 {
            self.pump_payer();
            while let Some(m) = self.to_payee.pop_front() {
                self.payee_receive(m);
            }
            while let Some(m) = self.to_payer.pop_front() {
                self.payer_receive(m);
            }
            self.now += self.payer_cfg.pay_interval;
        }
    }
}

#[test]
fn happy_path_credit_only_after_commit() {
    let mut p = Pair::new(Amount::MAX, Amount::from_cc(1000));
    for _ in 0..5 {
        assert_eq!(p.data(MIB, false), Some(Verdict::Forward));
    }
    let act = p.payer.poll(p.now, &p.a).expect("pays on first poll");
    let Action::CommitThenSend(v) = act else {
        panic!("{act:?}")
    };
    assert_eq!(v.seq, 1);
    assert_eq!(v.cumulative_amount, PRICE.cost(5 * MIB));
    // Nothing more until the commit is confirmed.
    assert!(p.payer.poll(p.now, &p.a).is_none());
    assert!(p.payer.committed(&v, p.now));
    let Ok(Some(Action::CommitThenCredit(w))) = p.payee.on_voucher(&v) else {
        panic!()
    };
    assert_eq!(p.payee.credited(), Amount::ZERO, "no credit before commit");
    let ack = p.payee.committed(&w).unwrap();
    assert_eq!(p.payee.credited(), v.cumulative_amount);
    assert_eq!((ack.seq, ack.metered_bytes), (1, 5 * MIB));
    p.payer.on_ack(&ack).unwrap();
    assert_eq!(p.payer.stats().drift_flags, 0);
    // A duplicate is re-acked and changes nothing.
    let before = p.payee.state().clone();
    assert_eq!(p.payee.on_voucher(&v), Ok(Some(Action::SendAck(ack))));
    assert_eq!(p.payee.state(), &before);
}

#[test]
fn payer_pays_at_half_window_and_on_interval() {
    let mut p = Pair::new(Amount::MAX, Amount::from_cc(1000));
    p.payer.poll(p.now, &p.a); // nothing owed yet
    p.data(MIB, false);
    p.pump_payer(); // first payment: interval due (never paid)
    assert_eq!(p.payer_wallet.vouchers.len(), 1);
    p.data(MIB, false);
    p.pump_payer();
    assert_eq!(p.payer_wallet.vouchers.len(), 1, "not due yet");
    p.data(4 * MIB, false); // unpaid = 5 MiB worth = half the window
    p.pump_payer();
    assert_eq!(p.payer_wallet.vouchers.len(), 2);
    p.data(MIB, false);
    p.now += Duration::from_millis(1999);
    p.pump_payer();
    assert_eq!(p.payer_wallet.vouchers.len(), 2);
    p.now += Duration::from_millis(1);
    p.pump_payer();
    assert_eq!(p.payer_wallet.vouchers.len(), 3);
    assert!(p.payer.poll_timeout().is_some());
}

#[test]
fn payer_self_throttles_at_spend_cap_and_never_signs_above() {
    let cap = PRICE.cost(3 * MIB);
    let mut p = Pair::new(cap, Amount::from_cc(1000));
    let mut sent = 0;
    while p.data(MIB / 2, false).is_some() {
        sent += 1;
        p.settle();
    }
    assert_eq!(sent, 6);
    assert!(p.payer.throttled());
    p.settle();
    assert_eq!(p.payer.latest().unwrap().cumulative_amount, cap);
    assert_eq!(p.payee.credited(), cap);
    p.payer.set_spend_cap(Amount::MAX);
    assert!(!p.payer.throttled());
}

#[test]
fn every_rejection_reason_leaves_state_unchanged() {
    let mut p = Pair::new(Amount::MAX, PRICE.cost(100 * MIB));
    for _ in 0..3 {
        p.data(2 * MIB, false);
        p.now += Duration::from_secs(3);
        p.settle();
    }
    let latest = p.payee.latest().unwrap();
    let first = p.payee_wallet.vouchers[0];
    assert!(latest.seq >= 2);
    let cid = p.payer.id();
    let sign = |seq, amt: Amount, bytes, epoch| Voucher::sign(&p.a, cid, seq, amt, bytes, epoch);
    let above = latest.seq + 1;
    let amt = latest.cumulative_amount;
    let other_cid = ChannelParams {
        nonce: 8,
        ..p.params
    }
    .id();
    let cases = [
        (
            Voucher::sign(&p.b, cid, above, amt, latest.cumulative_bytes, 1),
            Reject::ForgedSignature,
        ),
        (
            Voucher {
                seq: above,
                ..latest
            },
            Reject::ForgedSignature,
        ),
        (
            Voucher::sign(&p.a, other_cid, above, amt, latest.cumulative_bytes, 1),
            Reject::WrongChannel,
        ),
        (first, Reject::StaleSeq),
        (
            sign(latest.seq, amt, latest.cumulative_bytes + 1, 1),
            Reject::StaleSeq,
        ),
        (
            sign(
                above,
                Amount::from_units(amt.units() - 1),
                latest.cumulative_bytes,
                1,
            ),
            Reject::NonMonotonic,
        ),
        (
            sign(above, amt, latest.cumulative_bytes - 1, 1),
            Reject::NonMonotonic,
        ),
        (
            sign(above, PRICE.cost(101 * MIB), 101 * MIB, 1),
            Reject::OverLimit,
        ),
        (
            sign(above, PRICE.cost(50 * MIB), 50 * MIB, 1),
            Reject::OverMetered,
        ),
        (sign(above, amt, 50 * MIB, 1), Reject::OverMetered),
        (sign(0, amt, latest.cumulative_bytes, 1), Reject::Malformed),
        (
            sign(above, amt, latest.cumulative_bytes, 2),
            Reject::Malformed,
        ),
    ];
    for (i, (v, why)) in cases.iter().enumerate() {
        let before = p.payee.state().clone();
        assert_eq!(p.payee.on_voucher(v), Err(*why), "case {i}");
        assert_eq!(p.payee.state(), &before, "case {i}");
        if *why == Reject::OverMetered {
            // A resync skips the metered check on purpose (see PayeeChannel::on_resync).
            continue;
        }
        let r = Resync {
            channel_id: cid,
            latest: Some(*v),
            meter_bytes: 0,
            meter_amount: Amount::ZERO,
        };
        let res = p.payee.on_resync(&r);
        assert!(!matches!(res, Ok(Some(_))), "case {i}: resync accepted");
        assert_eq!(p.payee.state(), &before, "case {i}");
    }
    for why in Reject::ALL {
        assert!(p.payee.stats().rejects.get(why) >= 1, "{why:?} not counted");
    }
    // Payer side: acks and grants for other channels, acks for unsigned seqs.
    let before = p.payer.state().clone();
    let mut ack = p.payee.ack();
    ack.channel_id = other_cid;
    assert_eq!(p.payer.on_ack(&ack), Err(Reject::WrongChannel));
    let mut ack = p.payee.ack();
    ack.seq += 5;
    assert_eq!(p.payer.on_ack(&ack), Err(Reject::Malformed));
    let mut g = p.payee.grant();
    g.nonce = 8;
    assert_eq!(p.payer.on_credit_grant(&g), Err(Reject::WrongChannel));
    assert_eq!(
        p.payer.on_price_quote(&PriceQuote {
            price: Price::new(5, 0)
        }),
        Err(Reject::StaleSeq)
    );
    assert_eq!(p.payer.state(), &before);
}

#[test]
fn enforcement_ladder_and_paying_out_of_a_cut() {
    let mut p = Pair::new(Amount::MAX, Amount::from_cc(1000));
    let t0 = p.now;
    // The payer sends 10 MiB and pays nothing (its vouchers never arrive).
    for _ in 0..10 {
        assert_eq!(p.payee.allow(MIB, t0), Verdict::Forward);
        p.payer.on_data_sent(MIB);
    }
    assert_eq!(p.payee.level(t0), Level::Full);
    assert_eq!(p.payee.allow(1, t0), Verdict::Forward); // shaped, first burst passes
    assert_eq!(p.payee.level(t0), Level::Shaped);
    assert_eq!(p.payee.allow(30_000, t0), Verdict::DropShaped);
    p.payer.on_data_sent(1 + 30_000);
    // Past 1.25 x the window: shaped until the grace period ends, then cut.
    for _ in 0..3 {
        p.payee.allow(MIB, t0);
        p.payer.on_data_sent(MIB);
    }
    assert_eq!(p.payee.level(t0 + Duration::from_secs(4)), Level::Shaped);
    let t5 = t0 + Duration::from_secs(5);
    assert_eq!(p.payee.allow(100, t5), Verdict::DropCut);
    p.payer.on_data_sent(100);
    // A voucher is a channel frame: it always reaches on_voucher and restores service.
    p.now = t5;
    p.settle();
    assert_eq!(p.payee.unpaid(), Amount::ZERO);
    assert_eq!(p.payee.allow(MIB, p.now), Verdict::Forward);
    assert_eq!(p.payee.level(p.now), Level::Full);
}

#[test]
fn restore_from_old_backup_costs_nothing_and_resync_keeps_max() {
    let mut p = Pair::new(Amount::MAX, Amount::from_cc(1000));
    p.data(MIB, false);
    p.settle();
    p.checkpoint();
    let old_wallet = p.payer_wallet.clone();
    for _ in 0..3 {
        p.data(3 * MIB, false);
        p.settle();
    }
    let newest = p.payee.latest().unwrap();
    // The payer comes back from the old backup: its seq is behind, the resync fixes it.
    p.payer_wallet = old_wallet;
    p.restart(true, false);
    assert_eq!(p.payer.latest(), Some(newest));
    assert_eq!(p.payer_wallet.latest(), Some(newest));
    p.data(MIB, false);
    p.settle();
    let l = p.payee.latest().unwrap();
    assert!(l.seq > newest.seq);
    assert_eq!(l.cumulative_amount, PRICE.cost(11 * MIB));
    // The payee loses its credit state but not its wallet: nothing forgiven.
    p.restart(false, true);
    assert_eq!(p.payee.latest(), Some(l));
}

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
        let owed = p.payer.owed().min(cap).min(limit);
        let paid = p.payer.latest().map_or(Amount::ZERO, |v| v.cumulative_amount);
        prop_assert_eq!(paid, owed);
        prop_assert_eq!(p.payee.latest(), p.payer.latest());
        prop_assert_eq!(p.payee.unpaid(), p.payee.meter().total_cost().saturating_sub(paid));
    }
}
