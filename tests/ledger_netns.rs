//! Settlement on a real local chain, end to end: anvil in its own namespace, real daemons
//! A - R - C with R priced and `[ledger] kind = "evm"`. A sends 20 MB to C (TCP, so C pays R
//! for its acks too); `wallet settle` on R moves to R's address exactly the sum of the latest
//! vouchers from A and C, read from the chain; A closes, and after the delay withdraws the
//! rest; every node's `wallet balance --json` agrees with the chain.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use alloy_sol_types::SolCall;
use bitcloud::chain::abi::{ICloudcoin, ICloudcoinChannels};
use common::anvil::NsAnvil;
use common::inet::cli;
use common::{Lab, Node, mesh, root_or_skip, sh, units};

/// R's fee, smallest units per MiB (0.01 CC).
const FEE: u128 = 10_000_000;
/// 10^9 token base units per smallest unit (18 decimals).
const SCALE: u128 = 1_000_000_000;
const CLOSE_DELAY: u64 = 30;

struct Chain {
    anvil: NsAnvil,
    token: Address,
    channels: Address,
}

impl Chain {
    fn balance(&self, who: Address) -> U256 {
        let token = self.token;
        self.anvil.with_rpc(move |r| {
            let out = r
                .call(
                    token,
                    &ICloudcoin::balanceOfCall { owner: who }.abi_encode(),
                )
                .unwrap();
            ICloudcoin::balanceOfCall::abi_decode_returns(&out).unwrap()
        })
    }

    fn channel(&self, id: alloy_primitives::B256) -> ICloudcoinChannels::channelsReturn {
        let to = self.channels;
        self.anvil.with_rpc(move |r| {
            let out = r
                .call(
                    to,
                    &ICloudcoinChannels::channelsCall { channelId: id }.abi_encode(),
                )
                .unwrap();
            ICloudcoinChannels::channelsCall::abi_decode_returns(&out).unwrap()
        })
    }
}

fn address(n: &Node) -> Address {
    let v: serde_json::Value = serde_json::from_str(&sh(&[
        common::BIN,
        "wallet",
        "address",
        "--json",
        "-c",
        n.cfg.to_str().unwrap(),
    ]))
    .unwrap();
    v["address"].as_str().unwrap().parse().unwrap()
}

fn tokens(cc_units: u128) -> U256 {
    U256::from(cc_units) * U256::from(SCALE)
}

/// A chain namespace linked to each node; anvil in it; contracts deployed; configs written.
fn setup(lab: &mut Lab, n: &[Node], test: &str) -> Option<Chain> {
    let k = lab.ns("k");
    let mut urls = Vec::new();
    for (i, x) in n.iter().enumerate() {
        let (node_side, chain_side) = (
            format!("198.18.9.{}", i * 4 + 1),
            format!("198.18.9.{}", i * 4 + 2),
        );
        lab.link(
            &x.ns,
            &format!("{node_side}/30"),
            &k,
            &format!("{chain_side}/30"),
        );
        urls.push(format!("http://{chain_side}:8545"));
    }
    let anvil = NsAnvil::start_or_skip(test, &k, &urls[0].clone(), &lab.dir.join("anvil.log"))?;
    let d: serde_json::Value = serde_json::from_str(&sh(&[
        "ip",
        "netns",
        "exec",
        &n[0].ns,
        common::BIN,
        "ledger",
        "deploy",
        "--rpc",
        &urls[0],
        "--json",
    ]))
    .unwrap();
    let (token, channels) = (
        d["token"].as_str().unwrap(),
        d["channels"].as_str().unwrap(),
    );
    assert_eq!(d["chain_id"], 31337);
    for (x, url) in n.iter().zip(&urls) {
        x.append_config(&format!(
            "\n[ledger]\nkind = \"evm\"\nrpc = \"{url}\"\nchain_id = 31337\ntoken = \"{token}\"\n\
             channels = \"{channels}\"\ndeposit = \"5\"\nclaim_threshold = \"1000\"\n\
             close_delay_secs = {CLOSE_DELAY}\n"
        ));
        // Tokens for deposits and gas for every node (R needs gas to claim).
        cli(x, &["ledger", "faucet", &address(x).to_string(), "100"]);
    }
    Some(Chain {
        anvil,
        token: token.parse().unwrap(),
        channels: channels.parse().unwrap(),
    })
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn relay_settles_on_chain_and_payer_withdraws_the_rest() {
    let test = "relay_settles_on_chain_and_payer_withdraws_the_rest";
    if !root_or_skip(test) {
        return;
    }
    let mut lab = Lab::new();
    let mut n = mesh(&mut lab, 3, &[(0, 1), (1, 2)]);
    for x in &n {
        x.append_config("\n[wallet]\npay_interval_ms = 500\n");
    }
    n[1].append_config(&format!("\n[pricing]\nfee_per_mib = {FEE}\n"));
    let Some(chain) = setup(&mut lab, &n, test) else {
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
