//! The CLI's offline wallet read on a real SQLite file: read-only, never migrating, never
//! taking the write lock, leaving the file byte-identical.

use std::path::{Path, PathBuf};

use serde_json::json;
use sqlx::{ConnectOptions, Connection};

use super::*;
use crate::identity::Identity;
use crate::money::{ChannelParams, Voucher};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A data dir with a wallet holding one outgoing channel and one committed voucher, closed
/// cleanly (no -wal left), and the config that points at it.
fn setup(dir: &Path) -> crate::config::Config {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    rt().block_on(async {
        let a = Identity::from_secret([0x11; 32]);
        let b = Identity::from_secret([0x22; 32]);
        let params = ChannelParams {
            payer: a.id(),
            payee: b.id(),
            nonce: 0,
        };
        let mut w = Wallet::open(&data.join(WALLET_FILE)).await.expect("open");
        w.ensure_channel(&params, Direction::Outgoing)
            .await
            .expect("channel");
        let v = Voucher::sign(&a, params.id(), 1, Amount::from_units(1234), 5000, 1);
        w.commit_outgoing_voucher(&v).await.expect("commit");
        w.close().await.expect("close");
    });
    let text = crate::config::render_initial(
        "node.key",
        "198.18.0.1:51820".parse().expect("addr"),
        "bc0",
        "bc.sock",
        &data.display().to_string(),
    );
    crate::config::Config::parse(&dir.join("c.toml"), &text).expect("config")
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).expect("read wallet file")
}

fn db(cfg: &crate::config::Config) -> PathBuf {
    cfg.data_dir.join(WALLET_FILE)
}

fn balance() -> Value {
    json!({ "what": "balance" })
}

#[test]
fn offline_read_leaves_the_file_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(dir.path());
    let before = bytes(&db(&cfg));
    for what in ["balance", "channels", "earnings", "history", "integrity"] {
        let v = query_offline(&cfg, &json!({ "what": what })).expect(what);
        assert_eq!(v["live"], false, "{what}: {v}");
        assert!(v.get("error").is_none(), "{what}: {v}");
    }
    let v = query_offline(&cfg, &balance()).expect("balance");
    assert_eq!(v["spent"], "0.000001234", "{v}");
    assert_eq!(
        bytes(&db(&cfg)),
        before,
        "an offline read changed the wallet file"
    );
}

#[test]
fn offline_read_never_takes_the_write_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(dir.path());
    let rt = rt();
    // Another writer holds the write lock for the whole read: a reader that wanted it would
    // wait its busy timeout and fail.
    let mut writer = rt.block_on(async {
        let mut c = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db(&cfg))
            .connect()
            .await
            .expect("writer");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut c)
            .await
            .expect("write lock");
        c
    });
    let t = std::time::Instant::now();
    let v = query_offline(&cfg, &balance()).expect("read beside a held write lock");
    assert_eq!(v["spent"], "0.000001234", "{v}");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "the read waited on the write lock ({:?})",
        t.elapsed()
    );
    // And it cannot write at all, even when nothing else holds the lock.
    rt.block_on(async {
        sqlx::query("ROLLBACK")
            .execute(&mut writer)
            .await
            .expect("release");
        writer.close().await.expect("close writer");
        let mut w = Wallet::open_read_only(&db(&cfg), Default::default())
            .await
            .expect("read-only open");
        let e = w
            .bump_price_epoch()
            .await
            .expect_err("a read-only wallet must not write");
        assert!(e.to_string().contains("readonly"), "{e}");
    });
}

#[test]
fn offline_read_refuses_an_older_schema_instead_of_migrating() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(dir.path());
    // Make the file look as if written before the newest migration.
    rt().block_on(async {
        let mut c = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db(&cfg))
            .connect()
            .await
            .expect("conn");
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)")
            .execute(&mut c)
            .await
            .expect("forget a migration");
        c.close().await.expect("close");
    });
    let before = bytes(&db(&cfg));
    let e = query_offline(&cfg, &balance()).expect_err("an older schema is refused");
    let msg = format!("{e:#}");
    assert!(msg.contains("older than this binary"), "{msg}");
    assert!(msg.contains("bitcloud up"), "{msg}");
    assert_eq!(
        bytes(&db(&cfg)),
        before,
        "the refused read changed the file"
    );
}

#[test]
fn offline_read_of_a_missing_wallet_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(dir.path());
    std::fs::remove_file(db(&cfg)).expect("rm");
    let e = query_offline(&cfg, &balance()).expect_err("no wallet");
    assert!(format!("{e:#}").contains("has not run yet"), "{e:#}");
    assert!(!db(&cfg).exists());
}
