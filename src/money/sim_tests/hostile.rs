//! Issue 8, "a hostile neighbour gains nothing": each test is a neighbour that speaks the
//! protocol perfectly (well-formed, correctly signed messages) and tries to take money, disk
//! or CPU; every refusal must be counted and change nothing else.

use std::time::Duration;

use super::*;
use crate::money::payee::MIN_VOUCHER_INTERVAL;
use crate::money::payer::DEFAULT_MAX_WINDOW;

fn hostile_grant(p: &Pair) -> CreditGrant {
    CreditGrant {
        channel_id: p.params.id(),
        nonce: p.params.nonce,
        credit_window: Amount::from_cc(1_000),
        max_cumulative: Amount::from_cc(1_000_000),
    }
}

fn hostile_resync(p: &Pair, bytes: u64, amount: Amount) -> Resync {
    Resync {
        channel_id: p.params.id(),
        latest: None,
        meter_bytes: bytes,
        meter_amount: amount,
    }
}

fn paid(p: &Pair) -> Amount {
    p.payer
        .latest()
        .map_or(Amount::ZERO, |v| v.cumulative_amount)
}

#[test]
fn grant_and_resync_cannot_make_the_payer_pay_past_its_meter_plus_one_max_window() {
    let mut p = Pair::new(Amount::from_cc(1), Amount::from_cc(1000));
    p.data(MIB, false);
    p.settle();
    let metered = PRICE.cost(MIB);
    assert_eq!(paid(&p), metered);
    // The payee grants a huge window, then claims a huge meter, after every handshake it can
    // provoke.
    p.payer.on_credit_grant(&hostile_grant(&p)).unwrap();
    assert_eq!(p.payer.window(), DEFAULT_MAX_WINDOW);
    assert_eq!(p.payer.stats().grants_clamped, 1);
    for _ in 0..10 {
        p.payer.expect_resync();
        let r = hostile_resync(&p, 1 << 40, Amount::from_cc(1000));
        let _ = p.payer.on_resync(&r);
        p.settle();
    }
    assert!(
        paid(&p) <= metered.saturating_add(DEFAULT_MAX_WINDOW),
        "paid {} for {} metered",
        paid(&p),
        metered
    );
}

#[test]
fn a_resync_without_a_handshake_is_refused_and_counted() {
    let mut p = Pair::new(Amount::from_cc(1), Amount::from_cc(1000));
    p.data(MIB, false);
    p.settle();
    p.resync(); // the handshake's resync
    let before = p.payer.state().clone();
    let r = hostile_resync(&p, 1 << 30, Amount::from_units(1 << 30));
    assert_eq!(p.payer.on_resync(&r), Err(Reject::UnexpectedResync));
    assert_eq!(p.payer.state(), &before);
    assert_eq!(p.payer.stats().rejects.get(Reject::UnexpectedResync), 1);
}

#[test]
fn counts_beyond_the_wire_bounds_are_refused_by_both_sides() {
    let mut p = Pair::new(Amount::from_cc(1), Amount::from_cc(1000));
    p.data(MIB, false);
    p.settle();
    let (payer0, payee0) = (p.payer.state().clone(), p.payee.state().clone());
    let huge_bytes = MAX_WIRE_BYTES + 1;
    let huge = MAX_WIRE_AMOUNT.saturating_add(Amount::from_units(1));
    p.payer.expect_resync();
    let r = hostile_resync(&p, huge_bytes, Amount::ZERO);
    assert_eq!(p.payer.on_resync(&r), Err(Reject::OutOfRange));
    assert_eq!(p.payee.on_resync(&r), Err(Reject::OutOfRange));
    let r = hostile_resync(&p, 0, huge);
    assert_eq!(p.payee.on_resync(&r), Err(Reject::OutOfRange));
    let mut ack = p.payee.ack();
    ack.metered_bytes = huge_bytes;
    assert_eq!(p.payer.on_ack(&ack), Err(Reject::OutOfRange));
    let mut g = hostile_grant(&p);
    g.credit_window = huge;
    assert_eq!(p.payer.on_credit_grant(&g), Err(Reject::OutOfRange));
    let v = Voucher::sign(&p.a, p.params.id(), 9, Amount::from_units(1), huge_bytes, 1);
    assert_eq!(p.payee.on_voucher(&v), Err(Reject::OutOfRange));
    let q = PriceQuote {
        price: Price::new(u64::MAX, PRICE.epoch + 1),
    };
    assert_eq!(p.payer.on_price_quote(&q), Err(Reject::PriceRefused));
    assert_eq!(p.payer.state(), &payer0);
    assert_eq!(p.payee.state(), &payee0);
    assert_eq!(p.payer.stats().rejects.get(Reject::OutOfRange), 3);
    assert_eq!(p.payee.stats().rejects.get(Reject::OutOfRange), 3);
    assert_eq!(p.payer.stats().rejects.get(Reject::PriceRefused), 1);
}

#[test]
fn a_voucher_must_make_progress_and_respect_the_interval() {
    let mut p = Pair::new(Amount::from_cc(1), Amount::from_cc(1000));
    p.payee_cfg.min_voucher_interval = MIN_VOUCHER_INTERVAL;
    p.payee = PayeeChannel::new(p.params, p.payee_cfg, PRICE);
    p.data(MIB, false);
    p.settle();
    let l = p.payee.latest().unwrap();
    let id = p.params.id();
    let now = p.now + Duration::from_secs(1);
    // seq + 1 with the same totals: a verify, an fsync and a row for nothing.
    let same = Voucher::sign(
        &p.a,
        id,
        l.seq + 1,
        l.cumulative_amount,
        l.cumulative_bytes,
        1,
    );
    assert_eq!(p.payee.on_voucher_at(&same, now), Err(Reject::NoProgress));
    // Progress, but faster than one per interval.
    let one = Amount::from_units(1);
    let v1 = Voucher::sign(
        &p.a,
        id,
        l.seq + 1,
        l.cumulative_amount.saturating_add(one),
        l.cumulative_bytes,
        1,
    );
    assert!(matches!(
        p.payee.on_voucher_at(&v1, now),
        Ok(Some(Action::CommitThenCredit(_)))
    ));
    p.payee.committed(&v1).unwrap();
    let v2 = Voucher::sign(
        &p.a,
        id,
        l.seq + 2,
        v1.cumulative_amount.saturating_add(one),
        l.cumulative_bytes,
        1,
    );
    let soon = now + MIN_VOUCHER_INTERVAL / 2;
    assert_eq!(p.payee.on_voucher_at(&v2, soon), Err(Reject::RateLimited));
    // An exact duplicate is re-acked without a second verify, once per interval; the next
    // interval accepts v2.
    assert!(matches!(
        p.payee.on_voucher_at(&v1, soon),
        Ok(Some(Action::SendAck(_)))
    ));
    assert_eq!(p.payee.on_voucher_at(&v1, soon), Ok(None), "no second ack");
    let later = now + MIN_VOUCHER_INTERVAL;
    assert!(matches!(
        p.payee.on_voucher_at(&v2, later),
        Ok(Some(Action::CommitThenCredit(_)))
    ));
    let r = &p.payee.stats().rejects;
    assert_eq!(
        (r.get(Reject::NoProgress), r.get(Reject::RateLimited)),
        (1, 1)
    );
}

#[test]
fn a_fee_rise_is_billed_only_once_a_voucher_shows_the_payer_metered_it() {
    let mut p = Pair::new(Amount::from_cc(1), Amount::from_cc(1000));
    p.data(MIB, false);
    p.settle();
    let new = Price::new(PRICE.units_per_mib * 3, PRICE.epoch + 1);
    p.payee.set_price(new).unwrap();
    // Until the payer signs at the new epoch, the payee bills as the payer meters.
    assert_eq!(p.payee.billing_price(new), PRICE);
    let via = Price::new(new.units_per_mib + 500, new.epoch); // a route through us
    assert_eq!(
        p.payee.billing_price(via),
        Price::new(PRICE.units_per_mib + 500, PRICE.epoch)
    );
    // The payer meters one frame at the new price (its route update arrived) and pays.
    p.payer.on_data_sent_at(new, MIB);
    p.payee.record_at(p.payee.billing_price(new), MIB);
    p.settle();
    assert_eq!(p.payee.latest().unwrap().price_epoch, new.epoch);
    assert_eq!(p.payee.billing_price(new), new);
    // Both sides agree on what is owed: nothing is left unpaid on the payee's books.
    assert_eq!(p.payee.unpaid(), Amount::ZERO);
}

#[test]
fn a_payer_restored_with_unpaid_bytes_waits_for_the_payees_report_before_signing() {
    // A payer that did not pay (or crashed) metered bytes its payee refused to carry; it
    // does not persist what the payee reported, so after a restart it must hear the payee's
    // count first: a voucher above it could never be taken back (the money_netns non-payer
    // test deadlocked this way).
    let a = Identity::from_secret([0xa1; 32]);
    let b = Identity::from_secret([0xb2; 32]);
    let params = ChannelParams {
        payer: a.id(),
        payee: b.id(),
        nonce: 7,
    };
    let mut meter = Meter::new();
    let bucket = meter.bucket(PRICE);
    meter.record(bucket, 8 * MIB);
    let mut p = PayerChannel::restore(
        params,
        PayerConfig::default(),
        PRICE,
        None,
        &meter.snapshot(),
    );
    let t0 = Instant::now();
    for s in 0..10 {
        let now = t0 + Duration::from_secs(s);
        assert_eq!(p.poll(now, &a), None, "signed before any report");
        assert!(p.poll_timeout(now).is_none_or(|t| t > now), "would spin");
    }
    // The payee carried only 3 MiB of it (it shaped the rest): that is what gets paid.
    let ack = VoucherAck {
        channel_id: params.id(),
        seq: 0,
        credited: Amount::ZERO,
        metered_bytes: 3 * MIB,
        metered_amount: PRICE.cost(3 * MIB),
    };
    p.on_ack(&ack).unwrap();
    match p.poll(t0 + Duration::from_secs(11), &a) {
        Some(Action::CommitThenSend(v)) => {
            assert_eq!(v.cumulative_amount, PRICE.cost(3 * MIB));
            assert_eq!(v.cumulative_bytes, 3 * MIB);
        }
        other => panic!("expected a voucher for what was carried, got {other:?}"),
    }
}
