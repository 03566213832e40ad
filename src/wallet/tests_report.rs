//! Tests of per-peer earnings and spending and of the persisted price epoch, on real SQLite
//! files in temporary directories.

use std::time::{Duration, SystemTime};

use super::tests::TempDir;
use super::*;
use crate::identity::Identity;
use crate::money::Voucher;

/// Commit timestamps are wall-clock milliseconds: step past the current one.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

fn voucher(payer: &Identity, p: &ChannelParams, seq: u64, amount: u128, bytes: u64) -> Voucher {
    Voucher::sign(payer, p.id(), seq, Amount::from_units(amount), bytes, 1)
}

fn find(ts: &[PeerTotals], id: ChannelId) -> PeerTotals {
    *ts.iter()
        .find(|t| t.channel_id == id)
        .expect("channel listed")
}

#[tokio::test]
async fn earnings_and_spending_split_by_peer_and_since() {
    let d = TempDir::new("bypeer");
    let (a, b, c) = (
        Identity::from_secret([0x11; 32]),
        Identity::from_secret([0x22; 32]),
        Identity::from_secret([0x33; 32]),
    );
    // We are B: paid by A and by C, paying A.
    let from_a = ChannelParams {
        payer: a.id(),
        payee: b.id(),
        nonce: 7,
    };
    let from_c = ChannelParams {
        payer: c.id(),
        payee: b.id(),
        nonce: 8,
    };
    let to_a = ChannelParams {
        payer: b.id(),
        payee: a.id(),
        nonce: 9,
    };
    let mut w = Wallet::open(&d.db()).await.unwrap();
    let ia = w
        .ensure_channel(&from_a, Direction::Incoming)
        .await
        .unwrap();
    let ic = w
        .ensure_channel(&from_c, Direction::Incoming)
        .await
        .unwrap();
    let oa = w.ensure_channel(&to_a, Direction::Outgoing).await.unwrap();

    for v in [
        voucher(&a, &from_a, 1, 100, 1000),
        voucher(&a, &from_a, 2, 250, 3000),
        voucher(&c, &from_c, 1, 40, 400),
    ] {
        w.commit_incoming_voucher(&v).await.unwrap();
    }
    w.commit_outgoing_voucher(&voucher(&b, &to_a, 1, 30, 300))
        .await
        .unwrap();
    tick().await;
    let mid = SystemTime::now();
    tick().await;
    // seq 3 skipped on purpose: the bytes delta is over the previous stored voucher.
    w.commit_incoming_voucher(&voucher(&a, &from_a, 4, 400, 3500))
        .await
        .unwrap();
    w.commit_outgoing_voucher(&voucher(&b, &to_a, 2, 70, 900))
        .await
        .unwrap();

    let t = |amount, bytes, vouchers| (Amount::from_units(amount), bytes, vouchers);
    let key = |p: PeerTotals| (p.amount, p.bytes, p.vouchers);

    let all = w.earnings_by_peer(SystemTime::UNIX_EPOCH).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(find(&all, ia).peer, a.id());
    assert_eq!(find(&all, ic).peer, c.id());
    assert_eq!(key(find(&all, ia)), t(400, 3500, 3));
    assert_eq!(key(find(&all, ic)), t(40, 400, 1));
    assert!(all.windows(2).all(|p| p[0].peer.0 <= p[1].peer.0), "sorted");

    let recent = w.earnings_by_peer(mid).await.unwrap();
    assert_eq!(key(find(&recent, ia)), t(150, 500, 1));
    // A channel without vouchers in the window is listed with zeros.
    assert_eq!(key(find(&recent, ic)), t(0, 0, 0));
    // The per-peer sums agree with the total.
    let sum = recent
        .iter()
        .fold(Amount::ZERO, |s, p| s.saturating_add(p.amount));
    assert_eq!(sum, w.earnings(mid).await.unwrap());

    let spent = w.spending_by_peer(SystemTime::UNIX_EPOCH).await.unwrap();
    assert_eq!(spent.len(), 1);
    assert_eq!((spent[0].peer, spent[0].channel_id), (a.id(), oa));
    assert_eq!(key(spent[0]), t(70, 900, 2));
    assert_eq!(
        key(w.spending_by_peer(mid).await.unwrap()[0]),
        t(40, 600, 1)
    );

    let future = SystemTime::now() + Duration::from_secs(3600);
    assert!(
        w.earnings_by_peer(future)
            .await
            .unwrap()
            .iter()
            .all(|p| key(*p) == t(0, 0, 0))
    );
    assert_eq!(
        serde_json::to_value(find(&all, ia)).unwrap()["amount"],
        "0.000000400"
    );

    // Computed from the file alone: the same after a reopen.
    w.close().await.unwrap();
    let mut w = Wallet::open(&d.db()).await.unwrap();
    assert_eq!(w.earnings_by_peer(mid).await.unwrap(), recent);
    assert_eq!(
        w.spending_by_peer(SystemTime::UNIX_EPOCH).await.unwrap(),
        spent
    );
}

#[tokio::test]
async fn price_epoch_is_monotone_across_reopen() {
    let d = TempDir::new("epoch");
    let mut w = Wallet::open(&d.db()).await.unwrap();
    assert_eq!(w.price_epoch().await.unwrap(), 0);
    assert_eq!(w.bump_price_epoch().await.unwrap(), 1);
    assert_eq!(w.bump_price_epoch().await.unwrap(), 2);
    assert_eq!(w.price_epoch().await.unwrap(), 2);
    w.close().await.unwrap();

    let mut w = Wallet::open(&d.db()).await.unwrap();
    assert_eq!(w.price_epoch().await.unwrap(), 2);
    assert_eq!(w.bump_price_epoch().await.unwrap(), 3);
    // The schema refuses to lower, repeat or delete the epoch.
    for sql in [
        "UPDATE node_state SET value = 1 WHERE key = 'price_epoch'",
        "UPDATE node_state SET value = 3 WHERE key = 'price_epoch'",
        "UPDATE node_state SET key = 'other' WHERE key = 'price_epoch'",
        "DELETE FROM node_state",
    ] {
        let e = sqlx::query(sql).execute(&mut w.conn).await.unwrap_err();
        assert!(
            e.to_string().contains("price epoch must increase"),
            "{sql}: {e}"
        );
    }
    // Dropped without close (as after a crash): the bump was already durable.
    drop(w);
    let mut w = Wallet::open(&d.db()).await.unwrap();
    assert_eq!(w.bump_price_epoch().await.unwrap(), 4);

    // At the top of the range the bump is refused and changes nothing.
    sqlx::query("UPDATE node_state SET value = ? WHERE key = 'price_epoch'")
        .bind(i64::from(u32::MAX))
        .execute(&mut w.conn)
        .await
        .unwrap();
    assert!(matches!(
        w.bump_price_epoch().await,
        Err(WalletError::OutOfRange(_))
    ));
    assert_eq!(w.price_epoch().await.unwrap(), u32::MAX);
}

#[tokio::test]
async fn wallet_from_the_first_schema_upgrades() {
    use sqlx::{ConnectOptions, sqlite::SqliteConnectOptions};
    let d = TempDir::new("upgrade");
    let first: Vec<_> = MIGRATOR
        .iter()
        .filter(|m| m.version == 1)
        .cloned()
        .collect();
    assert_eq!(first.len(), 1);
    let p = ChannelParams {
        payer: Identity::from_secret([0x11; 32]).id(),
        payee: Identity::from_secret([0x22; 32]).id(),
        nonce: 1,
    };
    // A wallet file as the previous release left it: schema 1 only, one channel.
    let mut conn = SqliteConnectOptions::new()
        .filename(d.db())
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::migrate::Migrator::with_migrations(first)
        .run(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO channels (id, direction, payer, payee, nonce, opened_at)
         VALUES (?, 'incoming', ?, ?, '1', 0)",
    )
    .bind(p.id().0.to_vec())
    .bind(p.payer.0.to_vec())
    .bind(p.payee.0.to_vec())
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let mut w = Wallet::open(&d.db()).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut w.conn)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3, 4]);
    assert_eq!(w.channels().await.unwrap().len(), 1);
    assert_eq!(w.price_epoch().await.unwrap(), 0);
    assert_eq!(w.bump_price_epoch().await.unwrap(), 1);
    w.integrity_check().await.unwrap();
}
