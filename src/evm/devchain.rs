//! Dev-chain tools behind `bitcloud ledger deploy` and `faucet`: deploy both contracts from
//! the chain's first unlocked account, mint tokens and send gas. Invariant: these refuse any
//! chain that is not a known development chain id with unlocked accounts, so a mistyped RPC
//! URL cannot spend from a real account or deploy to a real network.

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall;

use super::rpc::{Rpc, RpcError};
use super::submit::{SubmitError, wait_mined};
use crate::chain::abi::{CHANNELS_JSON, CLOUDCOIN_JSON, ICloudcoin, creation_code};

/// Chain ids of development chains (anvil and hardhat 31337, geth --dev and ganache 1337).
pub const DEV_CHAIN_IDS: [u64; 2] = [31337, 1337];
/// Wei sent with each faucet call, for the recipient's gas (1 ether).
pub const FAUCET_GAS_WEI: u128 = 1_000_000_000_000_000_000;

/// Dev-chain tool failures.
#[derive(Debug, thiserror::Error)]
pub enum DevChainError {
    /// The chain is not a development chain.
    #[error(
        "chain id {0} is not a development chain ({DEV_CHAIN_IDS:?}); deploy and faucet only run on dev chains"
    )]
    NotDev(u64),
    /// The node has no unlocked account to send from.
    #[error("the node at {0} has no unlocked accounts")]
    NoAccounts(String),
    /// A deployment produced no contract.
    #[error("deployment {0} created no contract")]
    NoContract(B256),
    /// A transaction failed.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// An RPC call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// A committed artifact could not be read.
    #[error(transparent)]
    Artifact(#[from] crate::chain::abi::ArtifactError),
}

/// What `deploy` created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployment {
    /// The chain.
    pub chain_id: u64,
    /// The `Cloudcoin` token.
    pub token: Address,
    /// The `CloudcoinChannels` contract.
    pub channels: Address,
}

/// The chain id and first unlocked account, if this is a dev chain.
pub fn dev_account(rpc: &Rpc) -> Result<(u64, Address), DevChainError> {
    let chain_id = rpc.chain_id()?;
    if !DEV_CHAIN_IDS.contains(&chain_id) {
        return Err(DevChainError::NotDev(chain_id));
    }
    let from = *rpc
        .accounts()?
        .first()
        .ok_or_else(|| DevChainError::NoAccounts(rpc.url().to_string()))?;
    Ok((chain_id, from))
}

fn deploy_code(rpc: &Rpc, from: Address, code: Vec<u8>) -> Result<Address, DevChainError> {
    let hash = rpc.send_unlocked(from, None, &code, U256::ZERO)?;
    let r = wait_mined(rpc, hash)?;
    r.contract_address.ok_or(DevChainError::NoContract(hash))
}

/// Deploy `Cloudcoin` and `CloudcoinChannels` (bound to it) from the first unlocked account.
pub fn deploy(rpc: &Rpc) -> Result<Deployment, DevChainError> {
    let (chain_id, from) = dev_account(rpc)?;
    let token = deploy_code(rpc, from, creation_code(CLOUDCOIN_JSON)?)?;
    let mut code = creation_code(CHANNELS_JSON)?;
    // The constructor's one argument, the token, ABI-encoded as a 32-byte word.
    code.extend_from_slice(&[0u8; 12]);
    code.extend_from_slice(token.as_slice());
    let channels = deploy_code(rpc, from, code)?;
    Ok(Deployment {
        chain_id,
        token,
        channels,
    })
}

/// Mint `amount` token base units to `to` and send it [`FAUCET_GAS_WEI`] for gas. The dev
/// token lets only its deployer mint: the first unlocked account, as `deploy` used.
pub fn faucet(rpc: &Rpc, token: Address, to: Address, amount: U256) -> Result<(), DevChainError> {
    let (_, from) = dev_account(rpc)?;
    let mint = ICloudcoin::mintCall { to, value: amount }.abi_encode();
    wait_mined(
        rpc,
        rpc.send_unlocked(from, Some(token), &mint, U256::ZERO)?,
    )?;
    let gas = rpc.send_unlocked(from, Some(to), &[], U256::from(FAUCET_GAS_WEI))?;
    wait_mined(rpc, gas)?;
    Ok(())
}
