//! Paid forwarding end to end: real daemons in namespaces, chain A - R - C where only R
//! charges. Earnings against forwarded bytes, spend against earnings, crash safety under
//! kill -9 of payer and payee, and enforcement against a neighbour that never pays.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::{Lab, Node, mesh, root_or_skip, udp_flood, units};

/// R's fee, smallest units per MiB.
const FEE: u128 = 1000;

fn chain(lab: &mut Lab, extra_r: &str, extra_all: &str) -> Vec<Node> {
    let n = mesh(lab, 3, &[(0, 1), (1, 2)]);
    for x in &n {
        x.append_config(&format!("\n[wallet]\npay_interval_ms = 500\n{extra_all}\n"));
    }
    n[1].append_config(&format!("\n[pricing]\nfee_per_mib = {FEE}\n{extra_r}\n"));
    n
}

#[test]
fn paid_relay_earns_what_it_forwards_and_wallets_agree() {
    if !root_or_skip("paid_relay_earns_what_it_forwards_and_wallets_agree") {
        return;
    }
    let mut lab = Lab::new();
    let mut n = chain(&mut lab, "", "");
    for x in n.iter_mut() {
        x.start();
    }
    let (a, r, c) = (&n[0], &n[1], &n[2]);
    a.wait_ping(c.ipv6, Duration::from_secs(20))
        .expect("A reaches C through R");
    let (got, _) = common::tcp_transfer(
        &a.ns,
        &c.ns,
        SocketAddr::new(c.ipv6, 5010),
        Some(50 << 20),
        Duration::ZERO,
    );
    assert_eq!(got, 50 << 20);
    // Quiet now; let the last vouchers go through.
    std::thread::sleep(Duration::from_secs(1));
    let a_out = a.wait_settled(r, Duration::from_secs(15));
    let c_out = c.wait_settled(r, Duration::from_secs(15));
    let r_from_a = r.channel(a, "incoming");
    let r_from_c = r.channel(c, "incoming");

    // R's earnings from A are the bytes R carried for A at R's price, within 0.5 %.
    let carried = u128::from(r_from_a["metered_bytes"].as_u64().unwrap());
    assert!(
        carried >= 50 << 20,
        "R carried at least the payload: {carried}"
    );
    let expected = (carried * FEE).div_ceil(1 << 20);
    let earned = units(&r_from_a["cumulative_paid"]);
    let err = earned.abs_diff(expected) as f64 / expected as f64;
    eprintln!(
        "R carried {carried} B for A, earned {earned} units, expected {expected} ({:.4} %)",
        err * 100.0
    );
    assert!(err < 0.005, "earnings off by {:.3} %", err * 100.0);

    // The payer's spend is the payee's earnings exactly: the same vouchers.
    assert_eq!(a_out["cumulative_paid"], r_from_a["cumulative_paid"]);
    assert_eq!(a_out["latest_seq"], r_from_a["latest_seq"]);
    assert_eq!(c_out["cumulative_paid"], r_from_c["cumulative_paid"]);

    // All three wallets agree: R earned what A and C spent, nobody else earned, net zero.
    let (ba, br, bc) = (
        a.wallet("balance"),
        r.wallet("balance"),
        c.wallet("balance"),
    );
    eprintln!("balances: A {ba}\nR {br}\nC {bc}");
    assert_eq!(
        units(&br["earned"]),
        units(&ba["spent"]) + units(&bc["spent"])
    );
    assert_eq!(
        units(&br["spent"]),
        0,
        "R's fee-free next hops cost nothing"
    );
    assert_eq!(units(&ba["earned"]), 0);
    assert_eq!(units(&bc["earned"]), 0);
    assert_eq!(units(&ba["spent"]), units(&a_out["cumulative_paid"]));
    for b in [&ba, &br, &bc] {
        assert_eq!(b["backed"], false);
        assert!(b["note"].as_str().unwrap().contains("IOU"));
    }
    // Earnings per neighbour add up to the balance's earned.
    let e = r.wallet("earnings");
    assert_eq!(units(&e["total"]), units(&br["earned"]));
    let from_a = e["neighbours"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["peer"] == a.id.as_str())
        .expect("earnings from A");
    assert_eq!(from_a["earned"], r_from_a["cumulative_paid"]);
    let h = a.wallet("history");
    assert!(!h["history"].as_array().unwrap().is_empty());

    // With the daemon stopped, the wallet commands read the file: same stored figures.
    let r_earned = units(&br["earned"]);
    assert!(n[1].stop(), "clean shutdown");
    let offline = n[1].wallet("balance");
    assert_eq!(offline["live"], false);
    assert_eq!(units(&offline["earned"]), r_earned);
    let ch = n[1].wallet("channels");
    assert_eq!(ch["channels"].as_array().unwrap().len(), 4, "{ch}");
}

#[test]
fn neighbour_that_never_pays_is_shaped_then_cut_and_restored_when_it_pays() {
    if !root_or_skip("neighbour_that_never_pays_is_shaped_then_cut_and_restored_when_it_pays") {
        return;
    }
    let mut lab = Lab::new();
    // Window 2 MiB of R's service, cut 2 s after passing 2.5 MiB. Only what R carries is
    // metered, so once shaped the debt grows by the free tier alone: 64 KiB/s takes it past
    // 2.5 MiB in about 8 s.
    let n = chain(
        &mut lab,
        "",
        "credit_window = \"0.000002\"\ngrace_secs = 2\nfree_bytes_per_sec = 65536",
    );
    let mut n = n;
    n[0].append_config("\n[testing]\npay = false\n");
    for x in n.iter_mut() {
        x.start();
    }
    let (a, r, c) = (&n[0], &n[1], &n[2]);
    a.wait_ping(c.ipv6, Duration::from_secs(20))
        .expect("A reaches C through R");
    let stop = Arc::new(AtomicBool::new(false));
    let flood = udp_flood(
        &a.ns,
        SocketAddr::new(c.ipv6, 9),
        1200,
        4 << 20,
        stop.clone(),
    );
    let t0 = Instant::now();
    let mut seen_shaped = false;
    let level = loop {
        let ch = r.channel(a, "incoming");
        let level = ch["enforcement"].as_str().unwrap().to_string();
        seen_shaped |= level == "shaped";
        if level == "cut" || t0.elapsed() > Duration::from_secs(30) {
            break level;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.join().unwrap();
    assert!(seen_shaped, "shaped before cut");
    assert_eq!(level, "cut", "a non-payer is cut off");
    let st = r.status();
    assert!(common::drop_count(&st, "unpaid_shaped") > 0, "{st}");
    assert!(common::drop_count(&st, "unpaid_cut") > 0, "{st}");
    assert!(!a.ping(c.ipv6, 3), "no service while cut");
    // Routing and channel frames still pass: R is still A's route to C.
    assert!(a.ping(r.ipv6, 2), "A still reaches R itself (free, direct)");

    // A starts paying (same key, same wallet): its debt is settled and service comes back.
    n[0].stop();
    let cfg = std::fs::read_to_string(&n[0].cfg).unwrap();
    std::fs::write(&n[0].cfg, cfg.replace("pay = false", "pay = true")).unwrap();
    n[0].start();
    let (a, r, c) = (&n[0], &n[1], &n[2]);
    let back = a.wait_ping(c.ipv6, Duration::from_secs(20));
    assert!(back.is_some(), "service restored after paying");
    let ch = r.channel(a, "incoming");
    assert_eq!(ch["enforcement"], "full", "{ch}");
    assert!(units(&ch["cumulative_paid"]) > 0, "A paid: {ch}");
}
