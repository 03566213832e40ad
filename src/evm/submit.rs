//! Sending our own signed transactions: fill in nonce, gas price and gas, sign offline, send
//! the raw bytes, wait for the receipt. Invariant: a transaction the node would revert is
//! caught by gas estimation and reported by its contract error name, before anything is
//! signed or sent.

use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};

use super::rpc::{Receipt, Rpc, RpcError};
use crate::chain::ChainKey;
use crate::chain::abi::revert_name;
use crate::chain::tx::{SignedTx, TxRequest, sign};

/// How long we wait for a transaction to be mined.
pub const MINE_TIMEOUT: Duration = Duration::from_secs(60);
/// Headroom over the estimate: state can change between estimate and inclusion.
const GAS_HEADROOM_PERCENT: u64 = 25;

/// Submission failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The call would revert (contract error name, or the node's message).
    #[error("the call would revert: {0}")]
    WouldRevert(String),
    /// A transaction was mined but failed.
    #[error("transaction {0} reverted")]
    Reverted(B256),
    /// A transaction was not mined in time.
    #[error("transaction {0} not mined within {MINE_TIMEOUT:?}")]
    NotMined(B256),
    /// An RPC call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

/// Wait until `hash` is mined; error if it reverted.
pub fn wait_mined(rpc: &Rpc, hash: B256) -> Result<Receipt, SubmitError> {
    let start = Instant::now();
    loop {
        if let Some(r) = rpc.receipt(hash)? {
            return if r.success {
                Ok(r)
            } else {
                Err(SubmitError::Reverted(hash))
            };
        }
        if start.elapsed() > MINE_TIMEOUT {
            return Err(SubmitError::NotMined(hash));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A revert as a [`SubmitError::WouldRevert`], other errors as they are.
fn as_revert(e: RpcError) -> SubmitError {
    match &e {
        RpcError::Node { data, message, .. } => SubmitError::WouldRevert(
            data.as_deref()
                .and_then(revert_name)
                .unwrap_or_else(|| message.clone()),
        ),
        _ => SubmitError::Rpc(e),
    }
}

/// A transaction from `key` calling `to` with `data`: next pending nonce, the node's gas
/// price, estimated gas plus headroom.
pub fn prepare(
    rpc: &Rpc,
    key: &ChainKey,
    chain_id: u64,
    to: Address,
    data: Vec<u8>,
) -> Result<TxRequest, SubmitError> {
    let from = key.address();
    let gas = rpc.estimate_gas(from, to, &data).map_err(as_revert)?;
    Ok(TxRequest {
        chain_id,
        nonce: rpc.nonce(from)?,
        gas_price: rpc.gas_price()?,
        gas: gas.saturating_add(gas * GAS_HEADROOM_PERCENT / 100),
        to,
        value: U256::ZERO,
        input: data,
    })
}

/// Send a signed transaction; a node that already has it ("already known") is success, the
/// same bytes have the same hash.
pub fn broadcast(rpc: &Rpc, tx: &SignedTx) -> Result<B256, SubmitError> {
    match rpc.send_raw(&tx.raw) {
        Ok(h) => Ok(h),
        Err(RpcError::Node { message, .. })
            if message.contains("already known") || message.contains("already imported") =>
        {
            Ok(tx.hash)
        }
        Err(e) => Err(e.into()),
    }
}

/// Prepare, sign, send and wait: for tools and tests; the daemon journals between sign and
/// send (docs/ledger.md, "Journal").
pub fn send_and_wait(
    rpc: &Rpc,
    key: &ChainKey,
    chain_id: u64,
    to: Address,
    data: Vec<u8>,
) -> Result<Receipt, SubmitError> {
    let req = prepare(rpc, key, chain_id, to, data)?;
    let tx = sign(&req, key);
    let hash = broadcast(rpc, &tx)?;
    wait_mined(rpc, hash)
}
