//! Crash safety of paid forwarding with real daemons: chain A - R - C, traffic from A to C
//! metered and paid to R, while A (payer) and R (payee) are killed with SIGKILL at random
//! instants and restarted, 50 times (`BITCLOUD_KILL_CYCLES` for the soak script). Afterwards
//! nothing is lost or double-counted: R's stored voucher for A's channel is exactly A's latest
//! committed voucher, both wallets pass `PRAGMA integrity_check` plus the wallet's own
//! checks (monotonic vouchers whose deltas add up, valid signatures), and what A paid is R's
//! metered bytes times R's price, to one unit of rounding per R start.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bitcloud::wallet::{Direction, Wallet};
use common::{Lab, mesh, root_or_skip, udp_flood, units};

/// R's fee, units per MiB.
const FEE: u128 = 5000;

fn cycles() -> usize {
    std::env::var("BITCLOUD_KILL_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50)
}

#[test]
fn kill9_payer_and_payee_at_random_instants_loses_nothing() {
    if !root_or_skip("kill9_payer_and_payee_at_random_instants_loses_nothing") {
        return;
    }
    let mut lab = Lab::new();
    let mut n = mesh(&mut lab, 3, &[(0, 1), (1, 2)]);
    for x in &n {
        x.append_config("\n[wallet]\npay_interval_ms = 200\n");
    }
    n[1].append_config(&format!("\n[pricing]\nfee_per_mib = {FEE}\n"));
    for x in n.iter_mut() {
        x.start();
    }
    let c_v6 = n[2].ipv6;
    n[0].wait_ping(c_v6, Duration::from_secs(20))
        .expect("A reaches C through R");
    let stop = Arc::new(AtomicBool::new(false));
    let flood = udp_flood(
        &n[0].ns,
        SocketAddr::new(c_v6, 9),
        1200,
        3 << 20,
        stop.clone(),
    );

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill schedule seed {seed:#x}");
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let total = cycles();
    let t0 = Instant::now();
    let mut r_kills: u128 = 0;
    for i in 0..total {
        // Long enough, on average, for a few vouchers to be signed between kills; short
        // enough that kills land in every phase (handshake, resync, commit, send, ack).
        std::thread::sleep(Duration::from_millis(100 + next() % 1400));
        let victim = (next() % 2) as usize; // 0: payer A, 1: payee R
        r_kills += victim as u128;
        n[victim].kill9();
        n[victim].start();
        if (i + 1) % 10 == 0 {
            eprintln!("{} kills in {:?}", i + 1, t0.elapsed());
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    eprintln!("{total} kills; {sent} bytes offered");

    // Settle: A pays what it owes and R acknowledges it.
    let a_out = n[0].wait_settled(&n[1], Duration::from_secs(30));
    assert!(
        units(&a_out["cumulative_paid"]) > 0,
        "A paid something: {a_out}"
    );
    // Paid = metered bytes x price. R's live meter of A's channel (what it carried, at its fee
    // of 5000 units/MiB; C delivers for free) against what A paid.
    let r_in = n[1].channel(&n[0], "incoming");
    let (r_bytes, r_amount) = (
        r_in["metered_bytes"].as_u64().expect("metered_bytes"),
        units(&r_in["metered_amount"]),
    );
    let paid = units(&a_out["cumulative_paid"]);
    let exact = (u128::from(r_bytes) * FEE).div_ceil(1 << 20);
    eprintln!("R metered {r_bytes} bytes = {r_amount} units (exact {exact}); A paid {paid}");
    // R's meter rounds up once per price bucket, and R opens a bucket per price epoch, i.e.
    // per start: at most one unit per R start (<= total + 1) above the exact product.
    let starts = total as u128 + 1;
    assert!(
        r_amount >= exact && r_amount <= exact + starts,
        "R's meter is its bytes x its price: {r_amount} vs {exact}"
    );
    // A pays what R reported carrying (docs/payments.md, "Loss"), so it never pays less than
    // R's meter beyond each side's rounding (one unit per price bucket: `starts`). It can pay
    // more by what it handed R after R's last report before a kill -9: those frames died in
    // R's socket, and a voucher once signed is never taken back (the known limit in
    // docs/payments.md). Bound: the flood's 3 MiB/s for the 2.5 s from R's last report (0.5 s
    // before its death) to its restarted session, per kill of R.
    let per_r_kill = (3 * FEE * 5).div_ceil(2);
    assert!(
        paid + starts >= r_amount && paid <= r_amount + starts + r_kills * per_r_kill,
        "A paid {paid} for {r_bytes} bytes R metered at {FEE}/MiB ({r_amount}); \
         {r_kills} kills of R allow {} over",
        r_kills * per_r_kill
    );
    eprintln!(
        "A paid {} units over R's meter after {r_kills} kills of R (bound {})",
        paid.saturating_sub(r_amount),
        r_kills * per_r_kill
    );
    for x in n.iter_mut() {
        assert!(x.stop(), "clean shutdown");
    }

    let (a_id, r_id) = (n[0].id.clone(), n[1].id.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a_file, r_file) = (n[0].wallet_file(), n[1].wallet_file());
    rt.block_on(async move {
        let mut wa = Wallet::open(&a_file).await.unwrap();
        let mut wr = Wallet::open(&r_file).await.unwrap();
        let ia = wa
            .integrity_check()
            .await
            .expect("A's wallet is consistent");
        let ir = wr
            .integrity_check()
            .await
            .expect("R's wallet is consistent");
        eprintln!("A: {ia:?}\nR: {ir:?}");
        assert!(
            ia.vouchers >= cycles() / 5,
            "payments happened throughout: {} vouchers",
            ia.vouchers
        );
        let out = wa
            .channels()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.direction == Direction::Outgoing && c.peer().to_string() == r_id)
            .expect("A's channel to R");
        let inc = wr
            .channels()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.direction == Direction::Incoming && c.peer().to_string() == a_id)
            .expect("R's channel from A");
        assert_eq!(out.id, inc.id);
        let (lo, li) = (out.latest.expect("A signed"), inc.latest.expect("R holds"));
        // Nothing lost, nothing counted twice: the payee holds exactly the payer's latest.
        eprintln!("A's latest: {lo:?}\nR holds:    {li:?}");
        assert_eq!(li, lo, "R's stored voucher is A's latest committed one");
    });
}
