//! The channel messages other than the voucher itself, as plain values. Owns no behaviour:
//! the state machines produce and consume them, `wire::channel` encodes them. They travel inside
//! an authenticated link session, so unlike vouchers they carry no signature. Every amount and
//! byte count arriving in one is checked against [`MAX_WIRE_BYTES`] and [`MAX_WIRE_AMOUNT`]
//! by the state machine that consumes it (a neighbour may send any well-formed value).

use super::amount::Amount;
use super::price::Price;
use super::voucher::{ChannelId, Voucher};

/// The largest byte count a channel message may carry: the wallet stores byte counts as SQLite
/// INTEGER (i64), so anything above would make a checkpoint or commit fail (docs/money.md,
/// "Bounds").
pub const MAX_WIRE_BYTES: u64 = i64::MAX as u64;

/// The largest amount a channel message may carry: 10^12 CC. Far above any channel limit, and
/// 2^64 channels of it still sum inside `u128`, so wallet totals cannot overflow
/// (docs/money.md, "Bounds").
pub const MAX_WIRE_AMOUNT: Amount = Amount::from_units(1_000_000_000_000 * super::UNITS_PER_CC);

/// Whether a received byte count and amounts are within the wire bounds.
pub(crate) fn in_bounds(bytes: u64, amounts: &[Amount]) -> bool {
    bytes <= MAX_WIRE_BYTES && amounts.iter().all(|a| *a <= MAX_WIRE_AMOUNT)
}

impl Voucher {
    /// Whether the voucher's totals are within the wire bounds.
    pub(crate) fn in_bounds(&self) -> bool {
        in_bounds(self.cumulative_bytes, &[self.cumulative_amount])
    }
}

impl Resync {
    /// Whether every count in the resync (and its voucher) is within the wire bounds.
    pub(crate) fn in_bounds(&self) -> bool {
        in_bounds(self.meter_bytes, &[self.meter_amount])
            && self.latest.is_none_or(|v| v.in_bounds())
    }
}

/// Payee to payer: the price it bills from this epoch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriceQuote {
    /// The price and its epoch.
    pub price: Price,
}

/// Payee to payer: the channel and how much unpaid debt it tolerates before shaping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditGrant {
    /// The channel (derived from payer, payee, nonce).
    pub channel_id: ChannelId,
    /// The channel nonce, so the payer can check the id.
    pub nonce: u64,
    /// Unpaid debt allowed at full service.
    pub credit_window: Amount,
    /// The largest cumulative amount the payee will accept (deposit or IOU cap).
    pub max_cumulative: Amount,
}

/// Payee to payer: a voucher was committed and credited; carries the payee's own counters so
/// the payer can detect metering drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoucherAck {
    /// The channel.
    pub channel_id: ChannelId,
    /// Seq of the latest credited voucher (0 if none).
    pub seq: u64,
    /// Cumulative amount credited.
    pub credited: Amount,
    /// Data bytes the payee metered from the payer.
    pub metered_bytes: u64,
    /// What those bytes cost by the payee's meter.
    pub metered_amount: Amount,
}

/// Either direction, after each handshake: the sender's latest voucher on the channel and its
/// meter totals. Both sides keep the maximum, so a side that restarted from an older checkpoint
/// or backup catches up instead of disputing every later voucher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resync {
    /// The channel.
    pub channel_id: ChannelId,
    /// The latest voucher the sender holds, if any.
    pub latest: Option<Voucher>,
    /// The sender's metered data bytes on this channel.
    pub meter_bytes: u64,
    /// What the sender's meter says those bytes cost.
    pub meter_amount: Amount,
}

impl Resync {
    /// The resync a side sends: its latest voucher and its meter's totals.
    pub fn of(channel_id: ChannelId, latest: Option<Voucher>, meter: &super::price::Meter) -> Self {
        Resync {
            channel_id,
            latest,
            meter_bytes: meter.total_bytes(),
            meter_amount: meter.total_cost(),
        }
    }
}

/// Either direction under an on-chain ledger: the sender's chain address and its node's
/// Ed25519 signature over it (`chain::AddressBinding`), so vouchers and channels naming the
/// address can be attributed to the neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainAddress {
    /// The 20-byte chain address.
    pub address: [u8; 20],
    /// Ed25519 signature by the sender over the address (`chain::ADDRESS_BINDING_DOMAIN`).
    pub signature: [u8; 64],
}

/// Payer to payee: "on-chain channel `onchain_id` backs channel `channel_id`; the chain counts
/// from this base". Chain vouchers carry the cumulative totals minus the base, so what was
/// paid before the on-chain channel existed is never claimed twice. The payee checks the
/// channel on chain and that the base is not above what it has credited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainChannel {
    /// The off-chain channel.
    pub channel_id: ChannelId,
    /// The `CloudcoinChannels` channel id.
    pub onchain_id: [u8; 32],
    /// Seq of the voucher the base was taken from (0: none).
    pub base_seq: u64,
    /// Cumulative amount at the base.
    pub base_amount: Amount,
    /// Cumulative bytes at the base.
    pub base_bytes: u64,
}
