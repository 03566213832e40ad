//! Voucher throughput on a real SQLite file (WAL, synchronous=FULL): how many vouchers per
//! second the payee can verify, commit durably and credit, and what each part costs. Also the
//! per-frame cost of metering and the enforcement check on the data path.
//!
//! Run: `cargo bench --bench vouchers` (optionally `-- <vouchers>`; default 2000).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bitcloud::identity::Identity;
use bitcloud::money::{
    Action, Amount, ChannelParams, MIB, PayeeChannel, PayeeConfig, PayerChannel, PayerConfig,
    Price, Voucher,
};
use bitcloud::wallet::{Direction, Wallet, WalletConfig};

fn rate(n: usize, d: Duration) -> String {
    format!(
        "{:>9.0}/s  ({:>8.2} us each)",
        n as f64 / d.as_secs_f64(),
        d.as_secs_f64() * 1e6 / n as f64
    )
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-vouchers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let a = Identity::from_secret([1; 32]);
    let b = Identity::from_secret([2; 32]);
    let params = ChannelParams {
        payer: a.id(),
        payee: b.id(),
        nonce: 1,
    };
    let price = Price::new(1_000_000, 1);
    let cfg = PayeeConfig {
        max_cumulative: Amount::MAX,
        ..PayeeConfig::default()
    };

    // Sign: what the payer pays per voucher.
    let t = Instant::now();
    let vouchers: Vec<Voucher> = (1..=n as u64)
        .map(|s| {
            Voucher::sign(
                &a,
                params.id(),
                s,
                price.cost(s * MIB),
                s * MIB,
                price.epoch,
            )
        })
        .collect();
    println!("sign                         {}", rate(n, t.elapsed()));

    // Verify + state machine, no storage.
    let mut payee = PayeeChannel::new(params, cfg, price);
    let now = Instant::now();
    payee.allow(n as u64 * MIB, now);
    let t = Instant::now();
    for v in &vouchers {
        let Ok(Some(Action::CommitThenCredit(v))) = payee.on_voucher(v) else {
            panic!("rejected")
        };
        black_box(payee.committed(&v));
    }
    println!("verify + credit (no disk)    {}", rate(n, t.elapsed()));

    rt.block_on(async {
        // Commit only: one durable transaction per voucher.
        let mut w = Wallet::open(&dir.join("commit.db")).await.unwrap();
        w.ensure_channel(&params, Direction::Incoming)
            .await
            .unwrap();
        let t = Instant::now();
        for v in &vouchers {
            w.commit_incoming_voucher(v).await.unwrap();
        }
        println!("commit (fsync each)          {}", rate(n, t.elapsed()));
        w.close().await.unwrap();

        // The headline: verify, commit durably, then credit and produce the ack.
        let mut w = Wallet::open_with(&dir.join("e2e.db"), WalletConfig::default())
            .await
            .unwrap();
        w.ensure_channel(&params, Direction::Incoming)
            .await
            .unwrap();
        let mut payee = PayeeChannel::new(params, cfg, price);
        payee.allow(n as u64 * MIB, now);
        let t = Instant::now();
        for v in &vouchers {
            let Ok(Some(Action::CommitThenCredit(v))) = payee.on_voucher(v) else {
                panic!("rejected")
            };
            w.commit_incoming_voucher(&v).await.unwrap();
            black_box(payee.committed(&v).unwrap());
        }
        let e2e = t.elapsed();
        println!("verify + commit + credit     {}", rate(n, e2e));
        w.integrity_check().await.unwrap();
        w.close().await.unwrap();

        // Batched: vouchers of 32 channels arriving together, one transaction (one fsync).
        const CHANNELS: u64 = 32;
        let mut w = Wallet::open(&dir.join("batch.db")).await.unwrap();
        let mut chans = Vec::new();
        for nonce in 0..CHANNELS {
            let p = ChannelParams { nonce, ..params };
            w.ensure_channel(&p, Direction::Incoming).await.unwrap();
            let mut c = PayeeChannel::new(p, cfg, price);
            c.allow(n as u64 * MIB, now);
            chans.push(c);
        }
        let rounds = (n as u64 / CHANNELS).max(1);
        let batches: Vec<Vec<Voucher>> = (1..=rounds)
            .map(|s| {
                chans
                    .iter()
                    .map(|c| {
                        Voucher::sign(&a, c.id(), s, price.cost(s * MIB), s * MIB, price.epoch)
                    })
                    .collect()
            })
            .collect();
        let t = Instant::now();
        let mut ok = Vec::with_capacity(CHANNELS as usize);
        for batch in &batches {
            ok.clear();
            for (c, v) in chans.iter_mut().zip(batch) {
                if let Ok(Some(Action::CommitThenCredit(v))) = c.on_voucher(v) {
                    ok.push(v);
                }
            }
            let results = w.commit_incoming_vouchers(&ok).await.unwrap();
            for ((c, v), r) in chans.iter_mut().zip(&ok).zip(results) {
                r.unwrap();
                black_box(c.committed(v).unwrap());
            }
        }
        let total = (rounds * CHANNELS) as usize;
        println!("  ... batched by 32 channels {}", rate(total, t.elapsed()));
        w.integrity_check().await.unwrap();
        w.close().await.unwrap();
    });

    // Data path: per-frame metering (payer) and metering + ladder check (payee).
    let frames = 20_000_000u64;
    let mut payer = PayerChannel::new(params, PayerConfig::default(), price);
    let t = Instant::now();
    for _ in 0..frames {
        payer.on_data_sent(black_box(1400));
    }
    let d = t.elapsed();
    black_box(payer.owed());
    println!(
        "payer on_data_sent           {:>9.2} ns/frame",
        d.as_nanos() as f64 / frames as f64
    );
    for (label, window) in [
        ("payee allow (full service)  ", Amount::MAX),
        ("payee allow (shaped)        ", Amount::ZERO),
    ] {
        let mut cfg = cfg;
        cfg.enforce.credit_window = window;
        let mut payee = PayeeChannel::new(params, cfg, price);
        let t0 = Instant::now();
        let mut fwd = 0u64;
        let t = Instant::now();
        for i in 0..frames {
            let now = t0 + Duration::from_nanos(i * 100);
            fwd += u64::from(payee.allow(black_box(1400), now).is_forward());
        }
        let d = t.elapsed();
        println!(
            "{label} {:>9.2} ns/frame ({} forwarded)",
            d.as_nanos() as f64 / frames as f64,
            fwd
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
