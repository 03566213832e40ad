//! Settlement on a real local chain, end to end: anvil in its own namespace, real daemons
//! A - R - C with R priced and `[ledger] kind = "evm"`. A sends 20 MB to C (TCP, so C pays R
//! for its acks too); `wallet settle` on R moves to R's address exactly the sum of the latest
//! vouchers from A and C, read from the chain; A closes, and after the delay withdraws the
//! rest; every node's `wallet balance --json` agrees with the chain.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use alloy_primitives::{Address, U256};
use common::inet::cli;
use common::ledger::{CLOSE_DELAY, FEE, address, chain_lab, tokens, wait_for};
use common::{Lab, root_or_skip, units};

#[test]
fn relay_settles_on_chain_and_payer_withdraws_the_rest() {
    let test = "relay_settles_on_chain_and_payer_withdraws_the_rest";
    if !root_or_skip(test) {
        return;
    }
    let mut lab = Lab::new();
    let Some((mut n, chain)) = chain_lab(&mut lab, test) else {
        return;
    };
    let hundred = tokens(100 * 1_000_000_000);
    let addrs: Vec<Address> = n.iter().map(address).collect();
    for a in &addrs {
        assert_eq!(chain.balance(*a), hundred);
    }
    for x in n.iter_mut() {
        x.start();
    }
    let (a, r, c) = (&n[0], &n[1], &n[2]);
    if a.wait_ping(c.ipv6, Duration::from_secs(20)).is_none() {
        for x in [a, r, c] {
            eprintln!("{}: {}", x.id, x.status());
        }
        panic!("A does not reach C through R");
    }
    let (got, _) = common::tcp_transfer(
        &a.ns,
        &c.ns,
        SocketAddr::new(c.ipv6, 5010),
        Some(20 << 20),
        Duration::ZERO,
    );
    assert_eq!(got, 20 << 20);
    std::thread::sleep(Duration::from_secs(1));
    let a_out = a.wait_settled(r, Duration::from_secs(20));
    let c_out = c.wait_settled(r, Duration::from_secs(20));
    let (paid_a, paid_c) = (
        units(&a_out["cumulative_paid"]),
        units(&c_out["cumulative_paid"]),
    );
    eprintln!("A paid R {paid_a} units, C paid R {paid_c} units");
    assert!(paid_a >= 20 * FEE, "A paid for 20 MiB at least: {paid_a}");
    assert!(paid_c > 0, "C paid for its acks");
    // R credited exactly those vouchers.
    assert_eq!(units(&r.channel(a, "incoming")["cumulative_paid"]), paid_a);
    assert_eq!(units(&r.channel(c, "incoming")["cumulative_paid"]), paid_c);
    // Deposits are locked on chain: A and C hold 100 - 5 CC now.
    let five = tokens(5 * 1_000_000_000);
    assert_eq!(chain.balance(addrs[0]), hundred - five);
    assert_eq!(chain.balance(addrs[2]), hundred - five);
    // Nothing claimed yet (the threshold is far above): R still holds exactly its 100.
    assert_eq!(chain.balance(addrs[1]), hundred);
    let rb = r.wallet("balance");
    eprintln!("R balance before settle: {rb}");
    assert_eq!(rb["backed"], true);
    assert_eq!(units(&rb["claimable"]), paid_a + paid_c);

    // Settle: R's address gains exactly the sum of the latest vouchers from A and C.
    let s: serde_json::Value =
        serde_json::from_str(&cli(r, &["wallet", "settle", "--json"])).unwrap();
    eprintln!("settle: {s}");
    let claimed = s["claimed"].as_array().unwrap();
    assert_eq!(claimed.len(), 2, "{s}");
    let sum: u128 = claimed.iter().map(|x| units(&x["amount"])).sum();
    assert_eq!(sum, paid_a + paid_c);
    assert_eq!(chain.balance(addrs[1]), hundred + tokens(paid_a + paid_c));
    // A second settle finds nothing to claim.
    let again: serde_json::Value =
        serde_json::from_str(&cli(r, &["wallet", "settle", "--json"])).unwrap();
    assert_eq!(again["claimed"].as_array().unwrap().len(), 0, "{again}");

    // Balances agree with the chain.
    for (x, addr) in n.iter().zip(&addrs) {
        let b = x.wallet("balance");
        assert_eq!(b["backed"], true, "{b}");
        assert_eq!(tokens(units(&b["onchain"])), chain.balance(*addr), "{b}");
    }
    let ab = a.wallet("balance");
    assert_eq!(
        tokens(units(&ab["deposited"])),
        five - tokens(paid_a),
        "{ab}"
    );
    assert_eq!(units(&r.wallet("balance")["claimable"]), 0);

    // A closes; before the delay nothing comes back, after it A withdraws the rest itself.
    let closed: serde_json::Value =
        serde_json::from_str(&cli(a, &["wallet", "close", &r.id, "--json"])).unwrap();
    eprintln!("close: {closed}");
    let id: alloy_primitives::B256 = closed["channel"].as_str().unwrap().parse().unwrap();
    assert_ne!(chain.channel(id).closeAt, 0);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(chain.balance(addrs[0]), hundred - five);
    chain.anvil.advance(CLOSE_DELAY + 1);
    wait_for(
        "A withdraws after the delay",
        Duration::from_secs(20),
        || chain.balance(addrs[0]) == hundred - tokens(paid_a),
    );
    assert_eq!(chain.channel(id).payer, Address::ZERO, "channel deleted");
    let ab = a.wallet("balance");
    assert_eq!(units(&ab["deposited"]), 0, "{ab}");
    assert_eq!(tokens(units(&ab["onchain"])), chain.balance(addrs[0]));
    // Conservation: what left A and C arrived at R; only C's unclaimed deposit is locked.
    let total: U256 = addrs
        .iter()
        .map(|a| chain.balance(*a))
        .fold(U256::ZERO, |x, y| x + y);
    assert_eq!(total + five - tokens(paid_c), hundred * U256::from(3));
}

#[test]
fn payer_that_stops_paying_and_closes_is_still_claimed_in_time() {
    let test = "payer_that_stops_paying_and_closes_is_still_claimed_in_time";
    if !root_or_skip(test) {
        return;
    }
    let mut lab = Lab::new();
    let Some((mut n, chain)) = chain_lab(&mut lab, test) else {
        return;
    };
    let addrs: Vec<Address> = n.iter().map(address).collect();
    let hundred = tokens(100 * 1_000_000_000);
    for x in n.iter_mut() {
        x.start();
    }
    a_pays_for(&n, 4 << 20);
    let (a, r) = (&n[0], &n[1]);
    let paid = units(&a.wait_settled(r, Duration::from_secs(20))["cumulative_paid"]);
    assert!(paid > 0);

    // A turns into a payer that no longer pays and asks for its deposit back: R must claim
    // what A signed before the delay ends, although it is down for part of the delay.
    n[0].stop();
    n[0].append_config("\n[testing]\npay = false\n");
    n[0].start();
    let (a, r) = (&n[0], &n[1]);
    let closed: serde_json::Value = loop {
        // The daemon needs a moment to see its channel again after the restart.
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &a.ns,
                common::BIN,
                "wallet",
                "close",
                &r.id,
                "--json",
                "-c",
            ])
            .arg(&a.cfg)
            .output()
            .unwrap();
        if out.status.success() {
            break serde_json::from_slice(&out.stdout).unwrap();
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let id: alloy_primitives::B256 = closed["channel"].as_str().unwrap().parse().unwrap();
    // R is down for part of the delay.
    n[1].kill9();
    chain.anvil.advance(CLOSE_DELAY / 2);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        chain.channel(id).claimed,
        U256::ZERO,
        "nobody claimed while R was down"
    );
    n[1].start();
    wait_for(
        "R claims before the delay ends",
        Duration::from_secs(20),
        || chain.channel(id).claimed == tokens(paid),
    );
    assert_eq!(chain.balance(addrs[1]), hundred + tokens(paid));
    // After the delay A gets back exactly the rest.
    chain.anvil.advance(CLOSE_DELAY);
    wait_for("A withdraws", Duration::from_secs(20), || {
        chain.channel(id).payer == Address::ZERO
    });
    assert_eq!(chain.balance(addrs[0]), hundred - tokens(paid));
}

/// A sends `bytes` to C over TCP (through R, which bills it).
fn a_pays_for(n: &[common::Node], bytes: usize) {
    let (a, c) = (&n[0], &n[2]);
    assert!(
        a.wait_ping(c.ipv6, Duration::from_secs(20)).is_some(),
        "A reaches C through R"
    );
    let (got, _) = common::tcp_transfer(
        &a.ns,
        &c.ns,
        SocketAddr::new(c.ipv6, 5011),
        Some(bytes),
        Duration::ZERO,
    );
    assert_eq!(got, bytes);
    std::thread::sleep(Duration::from_secs(1));
}

/// Every node's link to the chain's namespace up or down.
fn chain_links(n: &[common::Node], up: bool) {
    for x in n {
        let out = common::sh(&[
            "ip",
            "-n",
            &x.ns,
            "-o",
            "-4",
            "addr",
            "show",
            "to",
            "198.18.9.0/24",
        ]);
        let dev = out
            .split_whitespace()
            .nth(1)
            .and_then(|d| d.split('@').next())
            .unwrap_or_else(|| panic!("no chain link in {}: {out}", x.ns))
            .to_string();
        let state = if up { "up" } else { "down" };
        common::sh(&["ip", "-n", &x.ns, "link", "set", &dev, state]);
    }
}

/// `bitcloud wallet settle` on `n`: its JSON, or the error it printed.
fn try_settle(n: &common::Node) -> Result<serde_json::Value, String> {
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &n.ns,
            common::BIN,
            "wallet",
            "settle",
            "--json",
            "-c",
        ])
        .arg(&n.cfg)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn an_rpc_outage_delays_settlement_never_the_tunnel() {
    let test = "an_rpc_outage_delays_settlement_never_the_tunnel";
    if !root_or_skip(test) {
        return;
    }
    let mut lab = Lab::new();
    let Some((mut n, chain)) = chain_lab(&mut lab, test) else {
        return;
    };
    let r_addr = address(&n[1]);
    let hundred = tokens(100 * 1_000_000_000);
    // The chain is unreachable when the daemons start: they start, and carry traffic.
    chain_links(&n, false);
    for x in n.iter_mut() {
        x.start();
    }
    let (a, r, c) = (&n[0], &n[1], &n[2]);
    if a.wait_ping(c.ipv6, Duration::from_secs(20)).is_none() {
        for x in [a, r, c] {
            for q in ["status", "peers", "routes", "traffic"] {
                eprintln!(
                    "DIAG {} {q}: {}",
                    x.ns,
                    serde_json::to_string(&x.query(q)).unwrap()
                );
            }
        }
        panic!("A reaches C with the chain down");
    }
    let b = r.wallet("balance");
    assert!(
        b["chain_error"]
            .as_str()
            .is_some_and(|e| e.contains("unreachable")),
        "{b}"
    );
    let e = try_settle(r).expect_err("settle needs the chain");
    assert!(e.contains("unreachable"), "{e}");

    // The chain comes back: A's ledger reaches it (within its 5 s retry) and opens the
    // channel its debt for the pings calls for; then traffic is paid.
    chain_links(&n, true);
    wait_for("A locks a deposit", Duration::from_secs(30), || {
        let d = &n[0].wallet("balance")["deposited"];
        d.is_string() && units(d) > 0
    });
    std::thread::sleep(Duration::from_secs(2));
    a_pays_for(&n, 2 << 20);
    let (a, r) = (&n[0], &n[1]);
    let first = units(&a.wait_settled(r, Duration::from_secs(30))["cumulative_paid"]);
    assert!(first > 0);

    // Down again, and R restarts meanwhile: its channels come back from its journal, so it
    // keeps crediting A's backed vouchers without the RPC.
    chain_links(&n, false);
    n[1].kill9();
    n[1].start();
    a_pays_for(&n, 2 << 20);
    let (a, r, c) = (&n[0], &n[1], &n[2]);
    let paid_a = units(&a.wait_settled(r, Duration::from_secs(30))["cumulative_paid"]);
    assert!(
        paid_a > first,
        "R credited more of A's vouchers: {first} -> {paid_a}"
    );
    assert_eq!(units(&r.channel(a, "incoming")["cumulative_paid"]), paid_a);

    // Back: R settles exactly what A and C signed.
    chain_links(&n, true);
    let paid_c = units(&c.wait_settled(r, Duration::from_secs(30))["cumulative_paid"]);
    let s = loop {
        match try_settle(r) {
            Ok(s) => break s,
            Err(e) if e.contains("unreachable") => std::thread::sleep(Duration::from_secs(1)),
            Err(e) => panic!("settle: {e}"),
        }
    };
    let sum: u128 = s["claimed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| units(&x["amount"]))
        .sum();
    assert_eq!(sum, paid_a + paid_c, "{s}");
    assert_eq!(chain.balance(r_addr), hundred + tokens(paid_a + paid_c));
}
