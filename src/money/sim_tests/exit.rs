//! The exit channel's money rules on the bare state machines (docs/payments.md, "Exit
//! fees"): a hostile exit's inflated reports and resyncs never raise what a client signs, and
//! the exit's loss allowance only postpones shaping, it forgives nothing.

use super::*;

fn signed(a: Option<Action>) -> Voucher {
    match a {
        Some(Action::CommitThenSend(v)) => v,
        other => panic!("expected a voucher, got {other:?}"),
    }
}

#[test]
fn inflated_exit_reports_and_resyncs_never_raise_what_the_client_signs() {
    let mut p = Pair::new(Amount::MAX, Amount::from_cc(1000));
    // An exit channel opened in this process: nothing for a resync to restore.
    p.payer.forgo_resync_raise();
    p.payer.on_data_sent_at(PRICE, 3 * MIB); // up
    p.payer.on_data_sent_at(PRICE, 2 * MIB); // down, as received
    let huge = MAX_WIRE_AMOUNT;
    let lie = VoucherAck {
        channel_id: p.params.id(),
        seq: 0,
        credited: Amount::ZERO,
        metered_bytes: MAX_WIRE_BYTES,
        metered_amount: huge,
    };
    assert_eq!(p.payer.on_ack(&lie), Ok(()));
    assert_eq!(p.payer.stats().drift_flags, 1, "the over-count is flagged");
    let resync = Resync {
        channel_id: p.params.id(),
        latest: None,
        meter_bytes: MAX_WIRE_BYTES,
        meter_amount: huge,
    };
    assert_eq!(p.payer.on_resync(&resync), Ok(None));
    assert_eq!(p.payer.meter().total_bytes(), 5 * MIB, "meter not raised");
    let v = signed(p.payer.poll(p.now, &p.a));
    assert_eq!(
        v.cumulative_amount,
        PRICE.cost(5 * MIB),
        "our own count, no more"
    );
    assert_eq!(v.cumulative_bytes, 5 * MIB);
}

#[test]
fn the_exits_loss_allowance_postpones_shaping_and_forgives_nothing() {
    let mut p = Pair::new(Amount::MAX, Amount::from_cc(1000));
    // The exit counted 12 MiB it sent down; the client paid for 11 (it says 1 MiB was lost).
    p.payee.record_at(PRICE, 12 * MIB);
    p.payer.on_data_sent_at(PRICE, 11 * MIB);
    let v = signed(p.payer.poll(p.now, &p.a));
    let Ok(Some(Action::CommitThenCredit(w))) = p.payee.on_voucher(&v) else {
        panic!("voucher refused")
    };
    p.payee.committed(&w);
    let gap = PRICE.cost(12 * MIB).saturating_sub(PRICE.cost(11 * MIB));
    assert_eq!(p.payee.unpaid(), gap, "the gap stays owed");
    // Push the unpaid debt just past the window: shaped without an allowance, full with one
    // covering the gap.
    p.payee.record_at(PRICE, 10 * MIB);
    assert_eq!(p.payee.level(p.now), Level::Shaped);
    assert_eq!(p.payee.level_allowing(gap, p.now), Level::Full);
    assert_eq!(p.payee.judge_allowing(1000, gap, p.now), Verdict::Forward);
    assert_eq!(p.payee.unpaid().saturating_sub(gap), PRICE.cost(10 * MIB));
}
