//! Scripted payer/payee scenarios: payment cadence, limits, every rejection reason, the
//! enforcement ladder, restores and resync.

use std::time::Duration;

use super::*;

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
    // Paid up: only the (unacked) resend timer remains, then nothing once acked.
    let t = p.payer.poll_timeout(p.now).unwrap();
    assert_eq!(t, p.now + PayerConfig::default().resend_after);
    p.settle();
    assert_eq!(p.payer.poll_timeout(p.now), None);
    p.data(1, false);
    assert!(p.payer.poll_timeout(p.now).unwrap() <= p.now + Duration::from_secs(2));
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
    assert!(
        !p.payer.free_tier_only(),
        "at our own cap nothing more goes out"
    );
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
            sign(above, amt, latest.cumulative_bytes, 1),
            Reject::NoProgress,
        ),
        (sign(above, amt, MAX_WIRE_BYTES + 1, 1), Reject::OutOfRange),
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
    // Rate limits (on_voucher_at), resyncs outside a handshake and prices are payer-side or
    // tested in `hostile`; on-chain backing in `backed`.
    let payee_side = |w: &Reject| {
        !matches!(
            w,
            Reject::RateLimited
                | Reject::UnexpectedResync
                | Reject::PriceRefused
                | Reject::Unbacked
        )
    };
    for why in Reject::ALL.into_iter().filter(payee_side) {
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
    // The payee's resync counts as an ack: no spurious self-throttle, nothing to resend.
    assert!(!p.payer.throttled());
    assert_eq!(p.payer.poll(p.now, &p.a), None);
    p.data(MIB, false);
    p.settle();
    let l = p.payee.latest().unwrap();
    assert!(l.seq > newest.seq);
    assert_eq!(l.cumulative_amount, PRICE.cost(11 * MIB));
    // The payee loses its credit state but not its wallet: nothing forgiven.
    p.restart(false, true);
    assert_eq!(p.payee.latest(), Some(l));
}
