//! The I/O side of on-chain settlement (docs/ledger.md): a JSON-RPC client for the chain and
//! the dev-chain tools (`bitcloud ledger deploy`, `faucet`). Invariant: nothing here decides
//! what to sign or claim; that is `chain`, sans-IO. Calls block, so async callers run them on
//! tokio's blocking pool.

pub mod devchain;
pub mod journal;
pub mod rpc;
pub mod submit;

pub use rpc::{Receipt, Rpc, RpcError};
