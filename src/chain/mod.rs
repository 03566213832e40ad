//! On-chain settlement, sans-IO (issue 13, docs/ledger.md): the node's secp256k1 chain key and
//! its binding to the node id, EIP-712 vouchers exactly as `CloudcoinChannels.claim` checks
//! them, the contracts' ABI, signed transactions, and the payee's claim policy. Invariants: no
//! sockets, clocks or files here; every signature this module accepts is one the contract
//! would accept (same digest, low s, v of 27 or 28, not the zero address).

pub mod abi;
pub mod amount;
pub mod backing;
pub mod eip712;
pub mod key;
pub mod policy;
pub mod tx;

pub use alloy_primitives::{Address, B256, U256};
pub use amount::{TokenScale, TokenScaleError};
pub use backing::{Base, ChannelBacking};
pub use eip712::{ChainVoucher, Domain, SIGNATURE_LEN, recover, verify};
pub use key::{ADDRESS_BINDING_DOMAIN, AddressBinding, ChainKey};
