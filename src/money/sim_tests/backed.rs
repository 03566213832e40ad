//! Channels under a ledger that moves coin: the payee credits nothing unbacked, refuses a
//! voucher without a valid chain signature or above what is locked, and shapes a payer whose
//! debt the chain would not cover; the payer cosigns, stays within the backing, and signs its
//! latest totals again when backing arrives after an unbacked voucher. The backing here is a
//! stand-in with a keyed-hash "signature": the real EIP-712 one is tested in `chain`.

use std::sync::Arc;

use blake2::{Blake2s256, Digest};

use super::*;

#[derive(Debug)]
struct FakeBacking {
    base_seq: u64,
    limit: Amount,
}

fn fake_sig(v: &Voucher) -> ChainSig {
    let h: [u8; 32] = Blake2s256::new()
        .chain_update(v.body_bytes())
        .finalize()
        .into();
    let mut s = [0u8; 65];
    s[..32].copy_from_slice(&h);
    ChainSig(s)
}

impl Backing for FakeBacking {
    fn cosign(&self, v: &Voucher) -> Option<ChainSig> {
        (v.seq > self.base_seq).then(|| fake_sig(v))
    }
    fn verify(&self, v: &Voucher) -> bool {
        v.seq <= self.base_seq || v.chain_sig == Some(fake_sig(v))
    }
    fn limit(&self) -> Amount {
        self.limit
    }
}

fn backing(base_seq: u64, limit: Amount) -> SharedBacking {
    Arc::new(FakeBacking { base_seq, limit })
}

fn sign(p: &Pair, seq: u64, amount: Amount, bytes: u64) -> Voucher {
    Voucher::sign(&p.a, p.params.id(), seq, amount, bytes, PRICE.epoch)
}

#[test]
fn unbacked_payee_credits_nothing_and_shapes_any_debt() {
    let mut p = Pair::new(Amount::from_cc(1), Amount::from_cc(1));
    p.payee.require_backing();
    // No debt: full service (a free relay must not shape anyone).
    assert_eq!(p.payee.level(p.now), Level::Full);
    assert_eq!(p.payee.grant().max_cumulative, Amount::ZERO);
    p.data(MIB, false);
    // Any unbacked debt is over the (zero) window the chain allows.
    assert_eq!(p.payee.level(p.now), Level::Shaped);
    let before = p.payee.state().clone();
    let v = sign(&p, 1, PRICE.cost(MIB), MIB);
    assert_eq!(p.payee.on_voucher(&v), Err(Reject::Unbacked));
    assert_eq!(p.payee.state(), &before);
    assert_eq!(p.payee.stats().rejects.get(Reject::Unbacked), 1);
}

#[test]
fn backed_channel_needs_the_chain_signature_and_stays_within_the_lock() {
    let mut p = Pair::new(Amount::from_cc(1), Amount::from_cc(1));
    let limit = PRICE.cost(8 * MIB);
    p.payee.require_backing();
    p.payee.set_backing(Some(backing(0, limit)));
    p.payer.set_backing(Some(backing(0, limit)));
    p.payer.on_credit_grant(&p.payee.grant()).unwrap();
    assert_eq!(p.payee.grant().max_cumulative, limit);
    p.data(MIB, false);
    assert_eq!(p.payee.level(p.now), Level::Full);

    let v = sign(&p, 1, PRICE.cost(MIB), MIB);
    let before = p.payee.state().clone();
    assert_eq!(
        p.payee.on_voucher(&v),
        Err(Reject::ForgedSignature),
        "no chain sig"
    );
    let wrong = Voucher {
        chain_sig: Some(ChainSig([7; 65])),
        ..v
    };
    assert_eq!(p.payee.on_voucher(&wrong), Err(Reject::ForgedSignature));
    assert_eq!(p.payee.state(), &before);
    let good = Voucher {
        chain_sig: Some(fake_sig(&v)),
        ..v
    };
    assert!(matches!(
        p.payee.on_voucher(&good),
        Ok(Some(Action::CommitThenCredit(_)))
    ));

    // The honest payer cosigns every voucher and never signs above the lock, however much
    // it sends.
    for _ in 0..40 {
        p.data(MIB / 2, false);
        p.now += Duration::from_millis(300);
        p.pump_payer();
        while let Some(m) = p.to_payee.pop_front() {
            if let Msg::Voucher(v) = &m {
                assert!(v.chain_sig.is_some(), "unsigned for the chain: {v:?}");
                assert!(v.cumulative_amount <= limit, "above the lock");
            }
            p.payee_receive(m);
        }
        while let Some(m) = p.to_payer.pop_front() {
            p.payer_receive(m);
        }
    }
    assert_eq!(p.payee.credited(), limit, "paid up to the lock");
    // The honest payer stops at the lock; one that sends on anyway is shaped at once, as
    // the chain would not cover its debt.
    assert!(p.payer.throttled());
    assert_eq!(p.payee.level(p.now), Level::Full);
    assert_eq!(p.payee.allow(MIB, p.now), Verdict::DropShaped);
    assert_eq!(p.payee.level(p.now), Level::Shaped);
    let over = sign(
        &p,
        99,
        limit.saturating_add(Amount::from_units(1)),
        40 * MIB,
    );
    let over = Voucher {
        chain_sig: Some(fake_sig(&over)),
        ..over
    };
    assert_eq!(p.payee.on_voucher(&over), Err(Reject::OverLimit));
}

#[test]
fn payer_signs_its_totals_again_once_backed() {
    let mut p = Pair::new(Amount::from_cc(1), Amount::from_cc(1));
    p.payee.require_backing();
    p.data(MIB, false);
    p.now += Duration::from_secs(5);
    p.pump_payer();
    let Some(Msg::Voucher(first)) = p.to_payee.pop_front() else {
        panic!("no voucher");
    };
    assert_eq!(first.chain_sig, None);
    assert_eq!(p.payee.on_voucher(&first), Err(Reject::Unbacked));
    // Backing arrives (base 0: nothing credited yet): the same totals, next seq, cosigned.
    p.payee.set_backing(Some(backing(0, Amount::from_cc(1))));
    p.payer.set_backing(Some(backing(0, Amount::from_cc(1))));
    p.pump_payer();
    let Some(Msg::Voucher(again)) = p.to_payee.pop_front() else {
        panic!("no reissued voucher");
    };
    assert_eq!(again.seq, first.seq + 1);
    assert_eq!(again.cumulative_amount, first.cumulative_amount);
    assert!(again.chain_sig.is_some());
    p.payee_receive(Msg::Voucher(again));
    assert_eq!(p.payee.credited(), first.cumulative_amount);
}

#[test]
fn a_resync_the_chain_does_not_back_still_heals_the_meter() {
    let mut p = Pair::new(Amount::from_cc(1), Amount::from_cc(1));
    p.payee.require_backing();
    p.data(MIB, false);
    p.now += Duration::from_secs(5);
    p.pump_payer();
    assert!(matches!(p.to_payee.pop_front(), Some(Msg::Voucher(_))));
    // The payee restarts from a checkpoint that missed the MiB; the payer's resync carries
    // its unbacked voucher, which is not credited, and its meter, which is taken.
    let mut fresh = PayeeChannel::restore(
        p.params,
        p.payee_cfg,
        PRICE,
        None,
        &MeterSnapshot::default(),
    );
    fresh.require_backing();
    p.payer.expect_resync();
    assert_eq!(fresh.on_resync_with(&p.payer.resync(), true), Ok(None));
    assert_eq!(fresh.meter().total_bytes(), MIB);
    assert_eq!(fresh.credited(), Amount::ZERO);
    // A voucher with a bad Ed25519 signature still fails the whole resync.
    let mut r = p.payer.resync();
    if let Some(v) = r.latest.as_mut() {
        v.signature[0] ^= 1;
    }
    assert_eq!(fresh.on_resync_with(&r, true), Err(Reject::ForgedSignature));
}
