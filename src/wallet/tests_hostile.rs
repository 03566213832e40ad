//! Wallet tests for issue 8: what a hostile neighbour's numbers and voucher volume can do to
//! the file (nothing lasting).

use std::time::SystemTime;

use super::tests::TempDir;
use super::*;
use crate::identity::Identity;
use crate::money::{MeterSnapshot, Price, Voucher};

fn params(a: u8, b: u8) -> ChannelParams {
    ChannelParams {
        payer: Identity::from_secret([a; 32]).id(),
        payee: Identity::from_secret([b; 32]).id(),
        nonce: 0,
    }
}

#[tokio::test]
async fn a_meter_beyond_the_file_skips_one_channel_not_every_checkpoint() {
    let d = TempDir::new("ovf");
    let mut w = Wallet::open(&d.db()).await.unwrap();
    let bad = w
        .ensure_channel(&params(1, 2), Direction::Outgoing)
        .await
        .unwrap();
    let good = w
        .ensure_channel(&params(3, 1), Direction::Incoming)
        .await
        .unwrap();
    let huge = MeterSnapshot {
        base_bytes: u64::MAX,
        base_amount: Amount::ZERO,
        buckets: vec![],
    };
    let fine = MeterSnapshot {
        base_bytes: 0,
        base_amount: Amount::ZERO,
        buckets: vec![(Price::new(1000, 1), 5000)],
    };
    let n = w
        .checkpoint_meters(&[(bad, huge), (good, fine.clone())])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let rec = w.channel(&good).await.unwrap().unwrap();
    assert_eq!(rec.meter.total_bytes(), fine.total_bytes());
}

#[tokio::test]
async fn voucher_rows_are_bounded_and_history_and_earnings_still_add_up() {
    let d = TempDir::new("ret");
    let mut w = Wallet::open(&d.db()).await.unwrap();
    let payer = Identity::from_secret([9; 32]);
    let p = ChannelParams {
        payer: payer.id(),
        payee: Identity::from_secret([8; 32]).id(),
        nonce: 0,
    };
    let id = w.ensure_channel(&p, Direction::Incoming).await.unwrap();
    let n = 400u64;
    for seq in 1..=n {
        let v = Voucher::sign(
            &payer,
            id,
            seq,
            Amount::from_units(u128::from(seq) * 10),
            seq,
            1,
        );
        w.commit_incoming_voucher(&v).await.unwrap();
    }
    let total = Amount::from_units(u128::from(n) * 10);
    assert_eq!(count(&mut w).await, n as i64, "all recent vouchers kept");
    let now = super::now_ms();
    // Two days on: thinned to one voucher per hour (all were committed within a minute or two).
    let removed = w.prune_vouchers(&id, now + 2 * 86_400_000).await.unwrap();
    let left = count(&mut w).await;
    assert!(left <= 3, "{left} rows left, {removed} removed");
    assert_eq!(w.integrity_check().await.unwrap().vouchers, left as usize);
    assert_eq!(w.earnings(SystemTime::UNIX_EPOCH).await.unwrap(), total);
    let h = w.history(10).await.unwrap();
    assert_eq!(
        h.first().map(|e| (e.seq, e.cumulative_amount)),
        Some((n, total))
    );
    let by_peer = w.earnings_by_peer(SystemTime::UNIX_EPOCH).await.unwrap();
    assert_eq!(
        by_peer.first().map(|t| (t.amount, t.bytes)),
        Some((total, n))
    );
    // Past the retention: folded into the base; the latest voucher and the balance stay.
    let bal = w.balance().await.unwrap();
    w.prune_vouchers(&id, now + 31 * 86_400_000).await.unwrap();
    assert_eq!(count(&mut w).await, 1);
    w.integrity_check().await.unwrap();
    assert_eq!(w.balance().await.unwrap(), bal);
    assert_eq!(
        w.channel(&id).await.unwrap().unwrap().latest.map(|v| v.seq),
        Some(n)
    );
    // The latest voucher cannot be deleted, nor a signed field rewritten, even by hand.
    let del = sqlx::query("DELETE FROM vouchers WHERE seq = ?")
        .bind(n as i64)
        .execute(&mut w.conn)
        .await;
    assert!(del.is_err());
    let upd = sqlx::query("UPDATE vouchers SET cumulative_amount = ?")
        .bind(Amount::ZERO.to_db_text())
        .execute(&mut w.conn)
        .await;
    assert!(upd.is_err());
    w.close().await.unwrap();
    let mut w = Wallet::open(&d.db()).await.unwrap();
    w.integrity_check().await.unwrap();
}

async fn count(w: &mut Wallet) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM vouchers")
        .fetch_one(&mut w.conn)
        .await
        .unwrap()
}
