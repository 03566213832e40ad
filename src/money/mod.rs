//! Money, sans-IO (DESIGN.md §5): amounts, prices and meters, vouchers, the payer and payee
//! channel state machines, the enforcement ladder and the settlement interface. Invariants: no
//! sockets, files, clocks or async here (time comes in as `Instant`), no floating point, and
//! every durable effect is returned as an [`Action`] the caller must persist before acting on
//! it (commit-before-send, commit-before-credit).

pub mod amount;
pub mod backing;
pub mod enforce;
pub mod ledger;
pub mod messages;
pub mod payee;
pub mod payer;
pub mod price;
pub mod voucher;

#[cfg(test)]
mod sim_tests;

pub use amount::{Amount, AmountError, SignedAmount, UNITS_PER_CC};
pub use backing::{Backing, CHAIN_SIG_LEN, ChainSig, SharedBacking};
pub use enforce::{EnforceConfig, Enforcer, Level, Verdict};
pub use ledger::{Ledger, LedgerError, NullLedger};
pub use messages::{
    ChainAddress, ChainChannel, CreditGrant, MAX_WIRE_AMOUNT, MAX_WIRE_BYTES, PriceQuote, Resync,
    VoucherAck,
};
pub use payee::{PayeeChannel, PayeeConfig};
pub use payer::{PayerChannel, PayerConfig};
pub use price::{BucketId, MIB, Meter, MeterSnapshot, Price};
pub use voucher::{
    ChannelId, ChannelParams, EXIT_CHANNEL_NONCE, LINK_CHANNEL_NONCE, VOUCHER_DOMAIN, Voucher,
};

/// Something the caller must do for a channel. Variants that start with `Commit` must be made
/// durable (wallet) before the follow-up: that ordering is the crash-safety argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Payer: commit with `Wallet::commit_outgoing_voucher`, call
    /// [`PayerChannel::committed`], and only then send the voucher.
    CommitThenSend(Voucher),
    /// Payer: the latest voucher is committed but unacknowledged; send it again.
    Resend(Voucher),
    /// Payer: a resync showed a newer voucher we signed; commit it
    /// (`Wallet::adopt_outgoing_voucher`). Nothing to send.
    Commit(Voucher),
    /// Payee: commit with `Wallet::commit_incoming_voucher`, then call
    /// [`PayeeChannel::committed`], which extends credit and returns the ack to send.
    CommitThenCredit(Voucher),
    /// Payee: send this ack (a duplicate of the latest voucher arrived; nothing changed).
    SendAck(VoucherAck),
}

/// Why a channel message was rejected. A rejected message changes no channel state; it is
/// only counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Reject {
    /// The voucher's signature is not the payer's.
    #[error("forged signature")]
    ForgedSignature,
    /// The message names another channel.
    #[error("wrong channel")]
    WrongChannel,
    /// The sequence number is not above the latest one (replay or stale).
    #[error("replayed or stale sequence number")]
    StaleSeq,
    /// A cumulative total went down, or two different vouchers share a seq.
    #[error("non-monotonic cumulative amount or bytes")]
    NonMonotonic,
    /// The amount is above the channel limit (deposit or IOU cap).
    #[error("over the channel limit")]
    OverLimit,
    /// The voucher claims more bytes or coin than we metered, beyond the tolerance.
    #[error("over what was metered")]
    OverMetered,
    /// Fields are inconsistent (seq 0, a price epoch from the future, ...).
    #[error("malformed")]
    Malformed,
    /// An amount or byte count beyond the wire bounds (`messages::MAX_WIRE_*`).
    #[error("amount or byte count out of range")]
    OutOfRange,
    /// A voucher that moves neither amount nor bytes: it would cost a verify, an fsync and a
    /// row for nothing.
    #[error("voucher makes no progress")]
    NoProgress,
    /// A voucher sooner than the channel's minimum interval after the last one.
    #[error("vouchers too frequent")]
    RateLimited,
    /// A resync outside the one a handshake allows.
    #[error("unexpected resync")]
    UnexpectedResync,
    /// A price above the payer's maximum.
    #[error("price above our maximum")]
    PriceRefused,
    /// Under a ledger that moves coin: a voucher on a channel not (yet) backed on chain.
    #[error("channel not backed on chain")]
    Unbacked,
}

impl Reject {
    /// Every reason, in counter order.
    pub const ALL: [Reject; 13] = [
        Reject::ForgedSignature,
        Reject::WrongChannel,
        Reject::StaleSeq,
        Reject::NonMonotonic,
        Reject::OverLimit,
        Reject::OverMetered,
        Reject::Malformed,
        Reject::OutOfRange,
        Reject::NoProgress,
        Reject::RateLimited,
        Reject::UnexpectedResync,
        Reject::PriceRefused,
        Reject::Unbacked,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The stable `snake_case` name used in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Reject::ForgedSignature => "forged_signature",
            Reject::WrongChannel => "wrong_channel",
            Reject::StaleSeq => "stale_seq",
            Reject::NonMonotonic => "non_monotonic",
            Reject::OverLimit => "over_limit",
            Reject::OverMetered => "over_metered",
            Reject::Malformed => "malformed",
            Reject::OutOfRange => "out_of_range",
            Reject::NoProgress => "no_progress",
            Reject::RateLimited => "rate_limited",
            Reject::UnexpectedResync => "unexpected_resync",
            Reject::PriceRefused => "price_refused",
            Reject::Unbacked => "unbacked",
        }
    }
}

/// Per-reason rejection counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RejectCounts([u64; Reject::ALL.len()]);

impl RejectCounts {
    /// Count one rejection.
    pub fn bump(&mut self, r: Reject) {
        if let Some(c) = self.0.get_mut(r.index()) {
            *c = c.saturating_add(1);
        }
    }

    /// Rejections for one reason.
    pub fn get(&self, r: Reject) -> u64 {
        self.0.get(r.index()).copied().unwrap_or(0)
    }

    /// Non-zero counts by reason name, for JSON output.
    pub fn to_map(&self) -> std::collections::BTreeMap<&'static str, u64> {
        Reject::ALL
            .iter()
            .map(|r| (r.name(), self.get(*r)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// All rejections.
    pub fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }
}
