//! Exit fees settle on chain, end to end: a client C and a paid exit X (`[ledger] kind =
//! "evm"`, anvil in its own namespace). C fetches a file from the test internet through X;
//! the exit channel (end to end, apart from the free link) is backed by its own on-chain
//! channel; `wallet settle` on X moves to X's address exactly C's latest exit voucher, read
//! from the chain; C closes and, after the delay, withdraws the rest; balances agree with
//! the chain.

mod common;

use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use common::inet::{
    Procs, channel, cli, fetch, http_server, pattern_file, server_addresses, v6, wait_exit,
};
use common::ledger::{CLOSE_DELAY, FEE, address, setup, tokens, wait_for};
use common::{Lab, root_or_skip, sh, units};

/// The file C fetches (both directions of its traffic are billed).
const FILE: usize = 8 << 20;
/// X's exit fee, smallest units per MiB (below the client's default price cap).
const EXIT_FEE: u128 = FEE / 2;

#[test]
fn exit_fees_settle_on_chain() {
    let test = "exit_fees_settle_on_chain";
    if !root_or_skip(test) {
        return;
    }
    let mut lab = Lab::new();
    let mut n = common::mesh(&mut lab, 2, &[(0, 1)]);
    // X's uplink to the test internet, with an HTTP server on 198.19.0.1.
    let inet = lab.ns("inet");
    let (i_dev, up) = lab.link(&inet, "198.19.1.1/24", &n[1].ns, "198.19.1.2/24");
    v6(&inet, "2001:db8:1::1/64", &i_dev);
    v6(&n[1].ns, "2001:db8:1::2/64", &up);
    sh(&[
        "ip",
        "-n",
        &n[1].ns,
        "route",
        "add",
        "default",
        "via",
        "198.19.1.1",
    ]);
    server_addresses(&inet);
    let www = lab.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let want = pattern_file(&www.join("f"), FILE);
    let _servers = Procs(vec![http_server(
        &inet,
        8080,
        &www,
        &lab.dir.join("http.log"),
    )]);

    for x in &n {
        x.append_config("\n[wallet]\npay_interval_ms = 500\n");
    }
    // The link is free: only the exit fee is paid, on the exit channel.
    n[1].append_config(&format!(
        "\n[exit]\nenabled = true\nuplink = \"{up}\"\nfee_per_mib = {EXIT_FEE}\ndns = [\"198.19.0.1\"]\n"
    ));
    let x_id = n[1].id.clone();
    n[0].append_config(&format!("\n[client]\nexit = \"{x_id}\"\ndns = \"off\"\n"));
    let Some(chain) = setup(&mut lab, &n, test) else {
        return;
    };
    let hundred = tokens(100 * 1_000_000_000);
    let five = tokens(5 * 1_000_000_000);
    let addrs: Vec<Address> = n.iter().map(address).collect();
    for x in n.iter_mut() {
        x.start();
    }
    let (c, x) = (&n[0], &n[1]);
    wait_exit(c, Some(&x.id), Duration::from_secs(30));

    // The fetch waits while the channel opens (C holds traffic back until X credits it).
    let dl = lab.dir.join("dl");
    let t0 = Instant::now();
    let mut got = None;
    while got.is_none() && t0.elapsed() < Duration::from_secs(60) {
        got = fetch(&c.ns, "-4", "http://198.19.0.1:8080/f", 40, &dl);
    }
    assert_eq!(
        got.as_deref(),
        Some(want.as_slice()),
        "C fetches through X: {}",
        c.status()
    );

    // Settled: X credited C's latest exit voucher.
    let mut paid = 0;
    wait_for("exit channel settled", Duration::from_secs(20), || {
        let out = channel(c, &x.id, "outgoing", "exit");
        let inc = channel(x, &c.id, "incoming", "exit");
        paid = units(&out["cumulative_paid"]);
        units(&out["unpaid"]) == 0
            && out["acked_seq"] == out["latest_seq"]
            && paid == units(&inc["cumulative_paid"])
            && paid > 0
    });
    eprintln!("C paid X {paid} units in exit fees");
    let mib = u128::try_from(FILE >> 20).unwrap();
    assert!(
        paid >= mib * EXIT_FEE,
        "C paid for {mib} MiB at least: {paid}"
    );
    // C locked one deposit (the exit channel's), X none.
    assert_eq!(chain.balance(addrs[0]), hundred - five);
    assert_eq!(chain.balance(addrs[1]), hundred);
    let xb = x.wallet("balance");
    eprintln!("X balance before settle: {xb}");
    assert_eq!(units(&xb["claimable"]), paid, "{xb}");

    // Settle: X's address gains exactly C's latest exit voucher.
    let s: serde_json::Value =
        serde_json::from_str(&cli(x, &["wallet", "settle", "--json"])).unwrap();
    eprintln!("settle: {s}");
    let claimed = s["claimed"].as_array().unwrap();
    assert_eq!(claimed.len(), 1, "{s}");
    assert_eq!(claimed[0]["kind"], "exit", "{s}");
    assert_eq!(claimed[0]["peer"], c.id.as_str(), "{s}");
    assert_eq!(units(&claimed[0]["amount"]), paid, "{s}");
    assert_eq!(chain.balance(addrs[1]), hundred + tokens(paid));
    let cb = c.wallet("balance");
    assert_eq!(tokens(units(&cb["deposited"])), five - tokens(paid), "{cb}");
    for (node, addr) in n.iter().zip(&addrs) {
        let b = node.wallet("balance");
        assert_eq!(b["backed"], true, "{b}");
        assert_eq!(tokens(units(&b["onchain"])), chain.balance(*addr), "{b}");
    }

    // C closes its channel to X and withdraws the rest after the delay.
    let closed: serde_json::Value =
        serde_json::from_str(&cli(c, &["wallet", "close", &x.id, "--json"])).unwrap();
    eprintln!("close: {closed}");
    assert_eq!(closed["kind"], "exit", "{closed}");
    let id: alloy_primitives::B256 = closed["channel"].as_str().unwrap().parse().unwrap();
    assert_ne!(chain.channel(id).closeAt, 0);
    chain.anvil.advance(CLOSE_DELAY + 1);
    wait_for(
        "C withdraws after the delay",
        Duration::from_secs(20),
        || chain.channel(id).payer == Address::ZERO,
    );
    assert_eq!(chain.balance(addrs[0]), hundred - tokens(paid));
    let total: U256 = addrs.iter().map(|a| chain.balance(*a)).sum();
    assert_eq!(total, hundred * U256::from(2), "nothing created or lost");
}
