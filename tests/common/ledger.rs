//! A local chain for namespace tests: anvil in its own namespace linked to every node, the
//! contracts deployed, every node's `[ledger]` written and its address funded.

use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use alloy_sol_types::SolCall;
use bitcloud::chain::abi::{ICloudcoin, ICloudcoinChannels};

use super::anvil::NsAnvil;
use super::inet::cli;
use super::{Lab, Node, sh};

/// R's fee, smallest units per MiB (0.01 CC).
pub const FEE: u128 = 10_000_000;
/// 10^9 token base units per smallest unit (18 decimals).
pub const SCALE: u128 = 1_000_000_000;
pub const CLOSE_DELAY: u64 = 30;

pub struct Chain {
    /// The chain.
    pub anvil: NsAnvil,
    /// The token.
    pub token: Address,
    /// The channels contract.
    pub channels: Address,
}

impl Chain {
    pub fn balance(&self, who: Address) -> U256 {
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

    pub fn channel(&self, id: alloy_primitives::B256) -> ICloudcoinChannels::channelsReturn {
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

pub fn address(n: &Node) -> Address {
    let v: serde_json::Value = serde_json::from_str(&sh(&[
        super::BIN,
        "wallet",
        "address",
        "--json",
        "-c",
        n.cfg.to_str().unwrap(),
    ]))
    .unwrap();
    v["address"].as_str().unwrap().parse().unwrap()
}

pub fn tokens(cc_units: u128) -> U256 {
    U256::from(cc_units) * U256::from(SCALE)
}

/// A chain namespace linked to each node; anvil in it; contracts deployed; configs written.
pub fn setup(lab: &mut Lab, n: &[Node], test: &str) -> Option<Chain> {
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
        super::BIN,
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

pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A - R - C (R bills [`FEE`], everyone pays every 500 ms) with the chain set up; `None`
/// when the test is skipped (no anvil outside CI).
pub fn chain_lab(lab: &mut Lab, test: &str) -> Option<(Vec<Node>, Chain)> {
    let n = super::mesh(lab, 3, &[(0, 1), (1, 2)]);
    for x in &n {
        x.append_config("\n[wallet]\npay_interval_ms = 500\n");
    }
    n[1].append_config(&format!("\n[pricing]\nfee_per_mib = {FEE}\n"));
    let chain = setup(lab, &n, test)?;
    Some((n, chain))
}
