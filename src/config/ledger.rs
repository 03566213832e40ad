//! `[ledger]`: where payment channels settle (docs/ledger.md). `kind = "iou"` (the default)
//! keeps vouchers as signed IOUs; `kind = "evm"` settles them in `CloudcoinChannels` on an EVM
//! chain. Invariant: an `evm` ledger is complete (rpc, chain id, both contracts) and its
//! amounts are exact decimal CC strings, or the config is refused at the offending line.

use std::time::Duration;

use alloy_primitives::Address;
use serde::Deserialize;
use toml::Spanned;

use super::wallet::SpanError;
use crate::money::Amount;

/// Where channels settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerKind {
    /// Signed IOUs, nothing on chain (today's behaviour).
    #[default]
    Iou,
    /// `CloudcoinChannels` on an EVM chain.
    Evm,
}

/// `[ledger]` with `kind = "evm"`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvmLedger {
    /// JSON-RPC URL (`http://` or `https://`).
    pub rpc: String,
    /// EIP-155 chain id; the node refuses to start if the RPC reports another.
    pub chain_id: u64,
    /// The ERC-20 token.
    pub token: Address,
    /// The `CloudcoinChannels` contract.
    pub channels: Address,
    /// Locked per outgoing channel; topped up when what is left falls below half.
    pub deposit: Amount,
    /// The payee claims once this much is earned and unclaimed on a channel.
    pub claim_threshold: Amount,
    /// The close delay of channels we open.
    pub close_delay: Duration,
}

/// `[ledger]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LedgerSettings {
    /// `None`: IOUs (`kind = "iou"`).
    pub evm: Option<EvmLedger>,
}

/// Default deposit per outgoing channel.
pub const DEFAULT_DEPOSIT: Amount = Amount::from_cc(1);
/// Default claim threshold.
pub const DEFAULT_CLAIM_THRESHOLD: Amount = Amount::from_units(100_000_000); // 0.1 CC
/// Default close delay: a day, long enough for a payee that was down for hours to claim.
pub const DEFAULT_CLOSE_DELAY_SECS: u64 = 86_400;
/// Shortest close delay accepted (dev chains and tests use seconds; below that a payee has
/// no real chance to claim).
const MIN_CLOSE_DELAY_SECS: u64 = 10;
/// Longest close delay accepted (a payer's funds stay locked this long after a close).
const MAX_CLOSE_DELAY_SECS: u64 = 30 * 86_400;
/// The largest deposit or threshold accepted (a typo guard: 1,000,000 CC).
const MAX_LEDGER_AMOUNT: Amount = Amount::from_cc(1_000_000);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLedger {
    kind: Option<Spanned<LedgerKind>>,
    rpc: Option<Spanned<String>>,
    chain_id: Option<Spanned<u64>>,
    token: Option<Spanned<String>>,
    channels: Option<Spanned<String>>,
    deposit: Option<Spanned<String>>,
    claim_threshold: Option<Spanned<String>>,
    close_delay_secs: Option<Spanned<u64>>,
}

fn address(v: &Spanned<String>) -> Result<Address, SpanError> {
    let a: Address = v.get_ref().parse().map_err(|_| {
        (
            v.span(),
            format!("{:?} is not an address (0x and 40 hex digits)", v.get_ref()),
        )
    })?;
    if a == Address::ZERO {
        return Err((v.span(), "the zero address".into()));
    }
    Ok(a)
}

fn amount(v: &Spanned<String>) -> Result<Amount, SpanError> {
    super::wallet::amount_at_most(v, true, MAX_LEDGER_AMOUNT)
}

impl RawLedger {
    /// Validate; `table` is the span of the `[ledger]` header for "missing key" errors.
    pub(super) fn validate(
        &self,
        table: std::ops::Range<usize>,
    ) -> Result<LedgerSettings, SpanError> {
        let kind = self.kind.as_ref().map(|k| *k.get_ref()).unwrap_or_default();
        if kind == LedgerKind::Iou {
            return Ok(LedgerSettings::default());
        }
        let need = |what: &str| (table.clone(), format!("kind = \"evm\" needs {what}"));
        let rpc = self.rpc.as_ref().ok_or_else(|| need("rpc"))?;
        let url = rpc.get_ref();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err((rpc.span(), "rpc must be an http:// or https:// URL".into()));
        }
        let chain_id = self.chain_id.as_ref().ok_or_else(|| need("chain_id"))?;
        if *chain_id.get_ref() == 0 {
            return Err((chain_id.span(), "chain_id must not be 0".into()));
        }
        let token = address(self.token.as_ref().ok_or_else(|| need("token"))?)?;
        let channels = address(self.channels.as_ref().ok_or_else(|| need("channels"))?)?;
        let close_delay = match &self.close_delay_secs {
            None => DEFAULT_CLOSE_DELAY_SECS,
            Some(v) if (MIN_CLOSE_DELAY_SECS..=MAX_CLOSE_DELAY_SECS).contains(v.get_ref()) => {
                *v.get_ref()
            }
            Some(v) => {
                return Err((
                    v.span(),
                    format!(
                        "close_delay_secs must be {MIN_CLOSE_DELAY_SECS}..={MAX_CLOSE_DELAY_SECS}"
                    ),
                ));
            }
        };
        Ok(LedgerSettings {
            evm: Some(EvmLedger {
                rpc: url.clone(),
                chain_id: *chain_id.get_ref(),
                token,
                channels,
                deposit: self
                    .deposit
                    .as_ref()
                    .map(amount)
                    .transpose()?
                    .unwrap_or(DEFAULT_DEPOSIT),
                claim_threshold: self
                    .claim_threshold
                    .as_ref()
                    .map(amount)
                    .transpose()?
                    .unwrap_or(DEFAULT_CLAIM_THRESHOLD),
                close_delay: Duration::from_secs(close_delay),
            }),
        })
    }
}
