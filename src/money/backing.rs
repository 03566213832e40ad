//! On-chain backing of a channel, as the state machines see it: a trait the `chain` module
//! implements, so `money` stays free of chain types (no import cycle) and of I/O. Invariant:
//! under a ledger that moves coin, a payee credits only vouchers whose chain signature the
//! contract would accept and whose amount the payer has locked ([`Backing::limit`]).

use std::fmt;
use std::sync::Arc;

use super::amount::Amount;
use super::voucher::Voucher;

/// Length of a chain signature (secp256k1 r ‖ s ‖ v).
pub const CHAIN_SIG_LEN: usize = 65;

/// A voucher's EIP-712 signature, as `CloudcoinChannels.claim` takes it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ChainSig(pub [u8; CHAIN_SIG_LEN]);

impl fmt::Debug for ChainSig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ChainSig({}..)",
            hex::encode(self.0.get(..4).unwrap_or_default())
        )
    }
}

/// What an on-chain channel adds to an off-chain one: its signature rule and its limit.
pub trait Backing: fmt::Debug + Send + Sync {
    /// Payer: the chain signature for `v`; `None` for a voucher at or below the base (the
    /// part paid before the on-chain channel existed, which the chain never sees).
    fn cosign(&self, v: &Voucher) -> Option<ChainSig>;
    /// Payee: whether `v` carries a chain signature by the payer's bound address that the
    /// contract would accept (true at or below the base).
    fn verify(&self, v: &Voucher) -> bool;
    /// The largest cumulative amount the chain covers: base plus what is locked.
    fn limit(&self) -> Amount;
}

/// A shared backing (the driver swaps it when the deposit changes).
pub type SharedBacking = Arc<dyn Backing>;
