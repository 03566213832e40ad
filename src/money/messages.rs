//! The channel messages other than the voucher itself, as plain values. Owns no behaviour:
//! the state machines produce and consume them, `wire::channel` encodes them. They travel inside
//! an authenticated link session, so unlike vouchers they carry no signature.

use super::amount::Amount;
use super::price::Price;
use super::voucher::{ChannelId, Voucher};

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
