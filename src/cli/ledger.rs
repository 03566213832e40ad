//! `bitcloud ledger ...`: dev-chain tools (deploy the contracts, fund an address) and
//! `bitcloud wallet address`. Invariants: output keys (`chain_id`, `token`, `channels`,
//! `address`) are a contract with outside checks; the faucet and deploy refuse any chain that
//! is not a development chain (`evm::devchain`).

use std::path::Path;

use alloy_primitives::Address;
use alloy_sol_types::SolCall;
use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use crate::chain::abi::ICloudcoin;
use crate::chain::{ChainKey, TokenScale};
use crate::config::Config;
use crate::evm::{Rpc, devchain};
use crate::identity::Identity;
use crate::money::Amount;

/// `bitcloud ledger` subcommands.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum LedgerCmd {
    /// Deploy the Cloudcoin token and the channels contract on a development chain, from its
    /// first unlocked account; prints what to put in `[ledger]`.
    Deploy {
        /// The chain's JSON-RPC URL.
        #[arg(long)]
        rpc: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Development chains only: mint AMOUNT CC of the `[ledger]` token to ADDRESS and send it
    /// gas.
    Faucet {
        /// Recipient (0x and 40 hex digits).
        address: String,
        /// Cloudcoins, as a decimal ("25", "0.5").
        amount: String,
    },
}

/// The node's chain key, from the config's key file.
pub fn chain_key(cfg: &Config) -> anyhow::Result<ChainKey> {
    let id = Identity::load(&cfg.key_file)?;
    Ok(ChainKey::derive(&id))
}

/// `bitcloud wallet address`: the node's chain address, from the key alone.
pub fn address(config: &Path, json: bool) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    let addr = chain_key(&cfg)?.address();
    if json {
        println!("{}", json!({ "address": addr.to_string() }));
    } else {
        println!("{addr}");
    }
    Ok(())
}

/// Run a `bitcloud ledger` subcommand.
pub fn run(config: &Path, cmd: &LedgerCmd) -> anyhow::Result<()> {
    match cmd {
        LedgerCmd::Deploy { rpc, json } => {
            let d =
                devchain::deploy(&Rpc::new(rpc)).with_context(|| format!("deploying on {rpc}"))?;
            if *json {
                println!(
                    "{}",
                    json!({"chain_id": d.chain_id, "token": d.token.to_string(), "channels": d.channels.to_string(), "rpc": rpc})
                );
            } else {
                println!(
                    "[ledger]\nkind = \"evm\"\nrpc = \"{rpc}\"\nchain_id = {}\ntoken = \"{}\"\nchannels = \"{}\"",
                    d.chain_id, d.token, d.channels
                );
            }
            Ok(())
        }
        LedgerCmd::Faucet { address, amount } => {
            let cfg = Config::load(config)?;
            let evm =
                cfg.ledger.evm.as_ref().with_context(|| {
                    format!("{}: [ledger] kind is not \"evm\"", cfg.path.display())
                })?;
            let to: Address = address.parse().map_err(|_| {
                anyhow::anyhow!("{address:?} is not an address (0x and 40 hex digits)")
            })?;
            let cc: Amount = amount
                .parse()
                .map_err(|e| anyhow::anyhow!("{amount:?} is not an amount of CC: {e}"))?;
            let rpc = Rpc::new(&evm.rpc);
            let decimals = ICloudcoin::decimalsCall::abi_decode_returns(
                &rpc.call(evm.token, &ICloudcoin::decimalsCall {}.abi_encode())?,
            )
            .context("reading the token's decimals")?;
            let scale = TokenScale::new(decimals)?;
            devchain::faucet(&rpc, evm.token, to, scale.to_token(cc))
                .with_context(|| format!("faucet on {}", evm.rpc))?;
            println!("sent {cc} CC and gas to {to}");
            Ok(())
        }
    }
}
