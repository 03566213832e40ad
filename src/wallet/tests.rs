//! Wallet tests on real SQLite files in temporary directories.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::identity::Identity;
use crate::money::{
    Action, MIB, MeterSnapshot, PayeeChannel, PayeeConfig, PayerChannel, PayerConfig, Price,
    Voucher,
};

/// A temporary directory removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "bc-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub(crate) fn db(&self) -> PathBuf {
        self.0.join("wallet.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Fx {
    a: Identity,
    b: Identity,
    params: ChannelParams,
}

fn fx() -> Fx {
    let a = Identity::from_secret([0x11; 32]);
    let b = Identity::from_secret([0x22; 32]);
    let params = ChannelParams {
        payer: a.id(),
        payee: b.id(),
        nonce: u64::MAX - 3, // above i64::MAX on purpose: stored exactly
    };
    Fx { a, b, params }
}

impl Fx {
    fn v(&self, seq: u64, amount: u128, bytes: u64) -> Voucher {
        Voucher::sign(
            &self.a,
            self.params.id(),
            seq,
            Amount::from_units(amount),
            bytes,
            1,
        )
    }
}

#[tokio::test]
async fn open_sets_wal_full_and_private_mode() {
    use std::os::unix::fs::PermissionsExt;
    let d = TempDir::new("wal");
    let mut w = Wallet::open(&d.db()).await.unwrap();
    assert_eq!(w.durability().await.unwrap(), ("wal".to_string(), 2));
    let f = fx();
    w.ensure_channel(&f.params, Direction::Incoming)
        .await
        .unwrap();
    assert!(d.0.join("wallet.db-wal").exists());
    let mode = std::fs::metadata(d.db()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    w.integrity_check().await.unwrap();
}

#[tokio::test]
async fn replay_is_idempotent_and_non_monotonic_is_refused() {
    let d = TempDir::new("mono");
    let mut w = Wallet::open(&d.db()).await.unwrap();
    let f = fx();
    let id = w
        .ensure_channel(&f.params, Direction::Incoming)
        .await
        .unwrap();
    // Idempotent registration; conflicting registration refused.
    assert_eq!(
        w.ensure_channel(&f.params, Direction::Incoming)
            .await
            .unwrap(),
        id
    );
    assert!(matches!(
        w.ensure_channel(&f.params, Direction::Outgoing).await,
        Err(WalletError::ChannelMismatch(_))
    ));
    let v1 = f.v(1, 100, 1000);
    let v2 = f.v(2, 250, 2000);
    use CommitOutcome::*;
    assert_eq!(w.commit_incoming_voucher(&v1).await.unwrap(), Committed);
    assert_eq!(
        w.commit_incoming_voucher(&v1).await.unwrap(),
        AlreadyCommitted
    );
    assert_eq!(w.commit_incoming_voucher(&v2).await.unwrap(), Committed);
    // An old one replayed after a newer one: still idempotent.
    assert_eq!(
        w.commit_incoming_voucher(&v1).await.unwrap(),
        AlreadyCommitted
    );
    let before = w.channels().await.unwrap();
    for bad in [
        f.v(3, 249, 3000), // amount down
        f.v(3, 300, 1999), // bytes down
        f.v(2, 260, 2000), // same seq, other body
        f.v(1, 100, 1001), // old seq, other body
    ] {
        assert!(
            matches!(
                w.commit_incoming_voucher(&bad).await,
                Err(WalletError::NonMonotonic { .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        w.channels().await.unwrap(),
        before,
        "refusals changed state"
    );
    // Wrong direction and unknown channel.
    assert!(matches!(
        w.commit_outgoing_voucher(&f.v(3, 300, 3000)).await,
        Err(WalletError::ChannelMismatch(_))
    ));
    let other = Voucher::sign(&f.a, ChannelId([1; 32]), 1, Amount::ZERO, 0, 1);
    assert!(matches!(
        w.commit_incoming_voucher(&other).await,
        Err(WalletError::UnknownChannel(_))
    ));
    // Out-of-range seq is refused before touching the database.
    assert!(matches!(
        w.commit_incoming_voucher(&f.v(u64::MAX, 300, 3000)).await,
        Err(WalletError::OutOfRange(_))
    ));
    let h = w.history(10).await.unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].seq, 2);
    assert_eq!(h[0].delta.units(), 150);
    assert_eq!(h[0].peer, f.a.id());
    assert_eq!(w.integrity_check().await.unwrap().vouchers, 2);
}

#[tokio::test]
async fn batch_commit_gives_each_voucher_its_outcome() {
    let d = TempDir::new("batch");
    let mut w = Wallet::open(&d.db()).await.unwrap();
    let f = fx();
    w.ensure_channel(&f.params, Direction::Incoming)
        .await
        .unwrap();
    let other = Voucher::sign(&f.a, ChannelId([1; 32]), 1, Amount::ZERO, 0, 1);
    let r = w
        .commit_incoming_vouchers(&[
            f.v(1, 100, 10),
            f.v(1, 100, 10),
            f.v(2, 50, 20),
            f.v(2, 150, 20),
            other,
        ])
        .await
        .unwrap();
    assert!(matches!(
        r.as_slice(),
        [
            Ok(CommitOutcome::Committed),
            Ok(CommitOutcome::AlreadyCommitted),
            Err(WalletError::NonMonotonic { seq: 2, .. }),
            Ok(CommitOutcome::Committed),
            Err(WalletError::UnknownChannel(_)),
        ]
    ));
    assert_eq!(w.balance().await.unwrap().earned.units(), 150);
    assert_eq!(w.integrity_check().await.unwrap().vouchers, 2);
    w.close().await.unwrap();
    let mut w = Wallet::open(&d.db()).await.unwrap();
    assert_eq!(w.balance().await.unwrap().earned.units(), 150);
}

#[tokio::test]
async fn sql_triggers_and_integrity_check_catch_tampering() {
    let d = TempDir::new("tamper");
    let mut w = Wallet::open(&d.db()).await.unwrap();
    let f = fx();
    w.ensure_channel(&f.params, Direction::Incoming)
        .await
        .unwrap();
    w.commit_incoming_voucher(&f.v(1, 100, 10)).await.unwrap();
    // The schema itself refuses to move a channel backwards or rewrite a voucher.
    let e = sqlx::query("UPDATE channels SET latest_seq = 0")
        .execute(&mut w.conn)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("non-monotonic voucher"), "{e}");
    let e = sqlx::query("DELETE FROM vouchers")
        .execute(&mut w.conn)
        .await
        .unwrap_err();
    // Retention may thin old vouchers (migration 0003), never the latest.
    assert!(e.to_string().contains("the latest voucher is kept"), "{e}");
    let e = sqlx::query("UPDATE vouchers SET cumulative_bytes = 0")
        .execute(&mut w.conn)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("vouchers are immutable"), "{e}");
    // Inflating the denormalised latest is caught by the integrity check.
    sqlx::query("UPDATE channels SET latest_amount = ?")
        .bind(Amount::from_units(500).to_db_text())
        .execute(&mut w.conn)
        .await
        .unwrap();
    assert!(matches!(
        w.integrity_check().await,
        Err(WalletError::Integrity(_))
    ));
}

#[tokio::test]
async fn balance_spend_limit_earnings_and_reopen() {
    let d = TempDir::new("bal");
    let f = fx();
    // We are node B: paid by A on one channel, paying A on the reverse one.
    let out_params = ChannelParams {
        payer: f.b.id(),
        payee: f.a.id(),
        nonce: 1,
    };
    let cfg = WalletConfig {
        spend_limit: Amount::from_units(1000),
    };
    let mut w = Wallet::open_with(&d.db(), cfg).await.unwrap();
    let inc = w
        .ensure_channel(&f.params, Direction::Incoming)
        .await
        .unwrap();
    let out = w
        .ensure_channel(&out_params, Direction::Outgoing)
        .await
        .unwrap();
    let pay = |seq, amt| {
        Voucher::sign(
            &f.b,
            out_params.id(),
            seq,
            Amount::from_units(amt),
            amt as u64,
            1,
        )
    };
    assert_eq!(w.spend_headroom(), Amount::from_units(1000));
    w.commit_outgoing_voucher(&pay(1, 900)).await.unwrap();
    assert!(matches!(
        w.commit_outgoing_voucher(&pay(2, 1001)).await,
        Err(WalletError::SpendLimit { .. })
    ));
    assert_eq!(w.spend_cap(&out).await.unwrap(), Amount::from_units(1000));
    w.commit_incoming_voucher(&f.v(1, 400, 4000)).await.unwrap();
    w.commit_outgoing_voucher(&pay(2, 1300)).await.unwrap();
    // A voucher we signed and the payee holds is adopted past the limit.
    w.adopt_outgoing_voucher(&pay(3, 2000)).await.unwrap();
    w.checkpoint_meters(&[
        (
            inc,
            MeterSnapshot {
                base_bytes: 0,
                base_amount: Amount::ZERO,
                buckets: vec![(Price::new(u64::MAX, 3), 5), (Price::new(MIB, 4), 600)],
            },
        ),
        (
            out,
            MeterSnapshot {
                base_bytes: 2100,
                base_amount: Amount::from_units(2100),
                buckets: vec![],
            },
        ),
    ])
    .await
    .unwrap();
    let b = w.balance().await.unwrap();
    let exp_in_meter = Price::new(u64::MAX, 3).cost(5).units() + 600;
    assert_eq!(b.earned.units(), 400);
    assert_eq!(b.spent.units(), 2000);
    assert_eq!(b.balance, SignedAmount(-1600));
    assert_eq!(b.unpaid_owed_to_us.units(), exp_in_meter - 400);
    assert_eq!(b.unpaid_we_owe.units(), 100);
    assert_eq!(w.spend_headroom(), Amount::ZERO);
    assert_eq!(
        w.earnings(SystemTime::UNIX_EPOCH).await.unwrap().units(),
        400
    );
    let later = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(w.earnings(later).await.unwrap(), Amount::ZERO);
    // A lower checkpoint is ignored.
    let n = w
        .checkpoint_meters(&[(out, MeterSnapshot::default())])
        .await
        .unwrap();
    assert_eq!(n, 0);
    let chans = w.channels().await.unwrap();
    w.close().await.unwrap();

    // Nothing is forgiven: reopening rebuilds exactly the same state and limits.
    let mut w = Wallet::open_with(&d.db(), cfg).await.unwrap();
    assert_eq!(w.channels().await.unwrap(), chans);
    assert_eq!(w.balance().await.unwrap(), b);
    assert_eq!(w.spend_headroom(), Amount::ZERO);
    assert!(matches!(
        w.commit_outgoing_voucher(&pay(4, 2001)).await,
        Err(WalletError::SpendLimit { .. })
    ));
    let rec = w.channel(&inc).await.unwrap().unwrap();
    assert_eq!(rec.peer(), f.a.id());
    assert_eq!(rec.meter.total_cost().units(), exp_in_meter);
    w.integrity_check().await.unwrap();
    assert_eq!(serde_json::to_value(b).unwrap()["balance"], "-0.000001600");
}

/// Both sides of a channel, each with its own wallet file, through a restart of both.
#[tokio::test]
async fn channel_pair_over_real_wallets_survives_restart() {
    let d = TempDir::new("pair");
    let f = fx();
    let price = Price::new(1_000_000, 1);
    let (pay_db, recv_db) = (d.0.join("a.db"), d.0.join("b.db"));
    let mut wa = Wallet::open(&pay_db).await.unwrap();
    let mut wb = Wallet::open(&recv_db).await.unwrap();
    let id = wa
        .ensure_channel(&f.params, Direction::Outgoing)
        .await
        .unwrap();
    wb.ensure_channel(&f.params, Direction::Incoming)
        .await
        .unwrap();
    let mut payer = PayerChannel::new(f.params, PayerConfig::default(), price);
    let mut payee = PayeeChannel::new(f.params, PayeeConfig::default(), price);
    payer.set_spend_cap(wa.spend_cap(&id).await.unwrap());
    payer.on_credit_grant(&payee.grant()).unwrap();
    let mut now = Instant::now();
    for _ in 0..5 {
        for _ in 0..3 {
            payer.on_data_sent(MIB);
            assert!(payee.allow(MIB, now).is_forward());
        }
        now += Duration::from_secs(3);
        let Some(Action::CommitThenSend(v)) = payer.poll(now, &f.a) else {
            panic!("payer did not pay")
        };
        wa.commit_outgoing_voucher(&v).await.unwrap();
        assert!(payer.committed(&v, now));
        let Ok(Some(Action::CommitThenCredit(v))) = payee.on_voucher(&v) else {
            panic!()
        };
        wb.commit_incoming_voucher(&v).await.unwrap();
        let ack = payee.committed(&v).unwrap();
        payer.on_ack(&ack).unwrap();
    }
    wa.checkpoint_meters(&[(id, payer.meter().snapshot())])
        .await
        .unwrap();
    wb.checkpoint_meters(&[(id, payee.meter().snapshot())])
        .await
        .unwrap();
    // One more MiB that neither side checkpoints before both restart.
    payer.on_data_sent(MIB);
    payee.allow(MIB, now);
    wa.close().await.unwrap();
    wb.close().await.unwrap();

    let mut wa = Wallet::open(&pay_db).await.unwrap();
    let mut wb = Wallet::open(&recv_db).await.unwrap();
    let ra = wa.channel(&id).await.unwrap().unwrap();
    let rb = wb.channel(&id).await.unwrap().unwrap();
    let mut payer = PayerChannel::restore(
        f.params,
        PayerConfig::default(),
        price,
        ra.latest,
        &ra.meter,
    );
    let mut payee = PayeeChannel::restore(
        f.params,
        PayeeConfig::default(),
        price,
        rb.latest,
        &rb.meter,
    );
    assert_eq!(payee.credited(), price.cost(15 * MIB));
    assert_eq!(payee.latest(), payer.latest());
    payer.on_credit_grant(&payee.grant()).unwrap();
    assert_eq!(payee.on_resync(&payer.resync()).unwrap(), None);
    assert_eq!(payer.on_resync(&payee.resync()).unwrap(), None);
    // The lost MiB is lost to both sides' meters (a lower bill, never lost coin); new traffic
    // continues at seq 6.
    payer.on_data_sent(MIB);
    payee.allow(MIB, now);
    now += Duration::from_secs(3);
    let Some(Action::CommitThenSend(v)) = payer.poll(now, &f.a) else {
        panic!()
    };
    assert_eq!(v.seq, 6);
    wa.commit_outgoing_voucher(&v).await.unwrap();
    payer.committed(&v, now);
    let Ok(Some(Action::CommitThenCredit(v))) = payee.on_voucher(&v) else {
        panic!()
    };
    wb.commit_incoming_voucher(&v).await.unwrap();
    payee.committed(&v).unwrap();
    assert_eq!(payee.credited(), price.cost(16 * MIB));
    assert_eq!(wb.balance().await.unwrap().earned, price.cost(16 * MIB));
    assert_eq!(wa.balance().await.unwrap().spent, price.cost(16 * MIB));
    wa.integrity_check().await.unwrap();
    wb.integrity_check().await.unwrap();
}
