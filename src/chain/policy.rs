//! The ledger's decisions, sans-IO (docs/ledger.md, "When the node acts"): whether an offered
//! on-chain channel may back an incoming channel, when to top up, when to claim. Invariants: a
//! payee accepts an offer only for a channel on chain from the payer's bound address to ours,
//! not closing, with a base not above what it has credited; it claims before a close can take
//! effect; a payer keeps at least half its deposit unused or tops up.

use alloy_primitives::{Address, B256, U256};

use super::amount::TokenScale;
use super::backing::{Base, ChannelBacking};
use super::eip712::Domain;
use crate::money::{Amount, ChainChannel, Voucher};

/// A channel as `CloudcoinChannels.channels(id)` returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OnChain {
    /// Payer address (zero: no such channel, or withdrawn).
    pub payer: Address,
    /// Payee address.
    pub payee: Address,
    /// Locked (token base units).
    pub deposit: U256,
    /// Paid to the payee so far.
    pub claimed: U256,
    /// Close delay, seconds.
    pub close_delay: u64,
    /// 0 while open, else when withdraw may run (chain time).
    pub close_at: u64,
}

/// Why an offered channel cannot back ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// No channel with that id on chain.
    #[error("no such channel on chain")]
    NoChannel,
    /// The channel's payer is not the neighbour's bound address.
    #[error("the channel's payer is not the neighbour's address")]
    WrongPayer,
    /// The channel does not pay us.
    #[error("the channel does not pay our address")]
    WrongPayee,
    /// A close was requested.
    #[error("the channel is closing")]
    Closing,
    /// Its close delay is shorter than we require to claim in time.
    #[error("close delay {0} s is shorter than our minimum")]
    ShortDelay(u64),
    /// The base is above what we have credited: the chain would not count vouchers we hold.
    #[error("base above what we credited")]
    BaseAboveCredited,
    /// Nothing locked.
    #[error("nothing locked")]
    Empty,
}

/// Check an offer against the chain; the backing to install if it holds.
#[allow(clippy::too_many_arguments)]
pub fn accept_offer(
    offer: &ChainChannel,
    chain: &OnChain,
    payer_address: Address,
    our_address: Address,
    credited: Option<&Voucher>,
    min_close_delay: u64,
    domain: Domain,
    scale: TokenScale,
) -> Result<ChannelBacking, OfferError> {
    if chain.payer == Address::ZERO {
        return Err(OfferError::NoChannel);
    }
    if chain.payer != payer_address {
        return Err(OfferError::WrongPayer);
    }
    if chain.payee != our_address {
        return Err(OfferError::WrongPayee);
    }
    if chain.close_at != 0 {
        return Err(OfferError::Closing);
    }
    if chain.close_delay < min_close_delay {
        return Err(OfferError::ShortDelay(chain.close_delay));
    }
    // Both parts of the base: a base seq above ours would let vouchers below it pass
    // without a chain signature (the chain never sees them), so the payer could pay us in
    // vouchers the chain would not honour.
    let credited_amount = credited.map_or(Amount::ZERO, |v| v.cumulative_amount);
    let credited_seq = credited.map_or(0, |v| v.seq);
    if offer.base_amount > credited_amount || offer.base_seq > credited_seq {
        return Err(OfferError::BaseAboveCredited);
    }
    let deposit = scale.to_amount(chain.deposit).unwrap_or(Amount::MAX);
    if deposit.is_zero() {
        return Err(OfferError::Empty);
    }
    Ok(ChannelBacking {
        domain,
        onchain: B256::from(offer.onchain_id),
        payer: payer_address,
        scale,
        base: Base {
            seq: offer.base_seq,
            amount: offer.base_amount,
            bytes: offer.base_bytes,
        },
        deposit,
        key: None,
    })
}

/// Payer: top up when less than half of `deposit` is left unused.
pub fn top_up_due(locked: Amount, used: Amount, deposit: Amount) -> bool {
    locked.saturating_sub(used) < deposit.mul_ratio(1, 2)
}

/// Payee: claim `unclaimed` now? At the threshold, whenever the channel is closing (before
/// the close takes effect), or on demand.
pub fn claim_due(unclaimed: U256, threshold: U256, closing: bool, forced: bool) -> bool {
    !unclaimed.is_zero() && (forced || closing || unclaimed >= threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::ChannelId;

    fn setup() -> (ChainChannel, OnChain, Address, Address) {
        let payer = Address::repeat_byte(1);
        let us = Address::repeat_byte(2);
        let offer = ChainChannel {
            channel_id: ChannelId([3; 32]),
            onchain_id: [4; 32],
            base_seq: 0,
            base_amount: Amount::ZERO,
            base_bytes: 0,
        };
        let chain = OnChain {
            payer,
            payee: us,
            deposit: U256::from(10u128.pow(18)),
            claimed: U256::ZERO,
            close_delay: 3600,
            close_at: 0,
        };
        (offer, chain, payer, us)
    }

    fn check(
        offer: &ChainChannel,
        chain: &OnChain,
        payer: Address,
        us: Address,
    ) -> Result<ChannelBacking, OfferError> {
        let d = Domain {
            chain_id: 31337,
            contract: Address::repeat_byte(9),
        };
        accept_offer(
            offer,
            chain,
            payer,
            us,
            None,
            60,
            d,
            TokenScale::new(18).unwrap(),
        )
    }

    #[test]
    fn offers_are_checked_against_the_chain() {
        let (offer, chain, payer, us) = setup();
        let b = check(&offer, &chain, payer, us).unwrap();
        assert_eq!(crate::money::Backing::limit(&b), Amount::from_cc(1));
        let bad = [
            (
                OnChain {
                    payer: Address::ZERO,
                    ..chain
                },
                OfferError::NoChannel,
            ),
            (
                OnChain {
                    payer: Address::repeat_byte(7),
                    ..chain
                },
                OfferError::WrongPayer,
            ),
            (
                OnChain {
                    payee: Address::repeat_byte(7),
                    ..chain
                },
                OfferError::WrongPayee,
            ),
            (
                OnChain {
                    close_at: 5,
                    ..chain
                },
                OfferError::Closing,
            ),
            (
                OnChain {
                    close_delay: 59,
                    ..chain
                },
                OfferError::ShortDelay(59),
            ),
            (
                OnChain {
                    deposit: U256::from(1),
                    ..chain
                },
                OfferError::Empty,
            ),
        ];
        for (c, e) in bad {
            assert_eq!(check(&offer, &c, payer, us).unwrap_err(), e);
        }
        let high_base = ChainChannel {
            base_amount: Amount::from_units(1),
            ..offer
        };
        assert_eq!(
            check(&high_base, &chain, payer, us).unwrap_err(),
            OfferError::BaseAboveCredited
        );
        // A base seq above what we credited would exempt later vouchers from the chain
        // signature.
        let high_seq = ChainChannel {
            base_seq: u64::MAX,
            ..offer
        };
        assert_eq!(
            check(&high_seq, &chain, payer, us).unwrap_err(),
            OfferError::BaseAboveCredited
        );
    }

    #[test]
    fn thresholds() {
        let d = Amount::from_units(100);
        assert!(!top_up_due(d, Amount::from_units(50), d));
        assert!(top_up_due(d, Amount::from_units(51), d));
        let t = U256::from(10);
        assert!(!claim_due(U256::ZERO, t, true, true));
        assert!(!claim_due(U256::from(9), t, false, false));
        assert!(claim_due(U256::from(10), t, false, false));
        assert!(claim_due(U256::from(1), t, true, false));
        assert!(claim_due(U256::from(1), t, false, true));
    }
}
