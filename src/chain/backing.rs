//! [`ChannelBacking`]: an on-chain channel as the backing of an off-chain one
//! (`money::Backing`). Owns the mapping of an off-chain voucher to the contract's voucher:
//! the on-chain channel id, totals minus the base, amounts in token base units. Invariant: the
//! payee's check is [`super::eip712::verify`], the contract's own rule, against the payer's
//! bound address; nothing at or below the base is ever signed for the chain.

use alloy_primitives::{Address, B256};

use super::amount::TokenScale;
use super::eip712::{ChainVoucher, Domain, verify};
use super::key::ChainKey;
use crate::money::{Amount, Backing, ChainChannel, ChainSig, Voucher};

/// Where the chain starts counting on this channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Base {
    /// Seq of the voucher the base was taken from (0: none).
    pub seq: u64,
    /// Cumulative amount at the base.
    pub amount: Amount,
    /// Cumulative bytes at the base.
    pub bytes: u64,
}

/// An on-chain channel backing an off-chain one.
#[derive(Debug, Clone)]
pub struct ChannelBacking {
    /// Chain and contract.
    pub domain: Domain,
    /// The on-chain channel id.
    pub onchain: B256,
    /// The payer's chain address (bound to its node id).
    pub payer: Address,
    /// Token decimals.
    pub scale: TokenScale,
    /// Where the chain starts counting.
    pub base: Base,
    /// Locked on chain, in our units (rounded down).
    pub deposit: Amount,
    /// The payer's key (our side as payer), to cosign.
    pub key: Option<ChainKey>,
}

impl ChannelBacking {
    /// The contract's view of `v`; `None` at or below the base.
    pub fn chain_voucher(&self, v: &Voucher) -> Option<ChainVoucher> {
        if v.seq <= self.base.seq {
            return None;
        }
        let amount = v.cumulative_amount.checked_sub(self.base.amount)?;
        let bytes = v.cumulative_bytes.checked_sub(self.base.bytes)?;
        Some(ChainVoucher {
            channel: self.onchain,
            seq: v.seq,
            cumulative_amount: self.scale.to_token(amount),
            cumulative_bytes: bytes,
            price_epoch: v.price_epoch,
        })
    }

    /// The offer that tells the payee about this backing of off-chain channel `channel_id`.
    pub fn offer(&self, channel_id: crate::money::ChannelId) -> ChainChannel {
        ChainChannel {
            channel_id,
            onchain_id: self.onchain.0,
            base_seq: self.base.seq,
            base_amount: self.base.amount,
            base_bytes: self.base.bytes,
        }
    }
}

impl Backing for ChannelBacking {
    fn cosign(&self, v: &Voucher) -> Option<ChainSig> {
        let key = self.key.as_ref()?;
        Some(ChainSig(self.chain_voucher(v)?.sign(&self.domain, key)))
    }

    fn verify(&self, v: &Voucher) -> bool {
        if v.seq <= self.base.seq {
            return true;
        }
        match (self.chain_voucher(v), &v.chain_sig) {
            (Some(cv), Some(sig)) => verify(&self.domain, &cv, &sig.0, self.payer),
            _ => false,
        }
    }

    fn limit(&self) -> Amount {
        self.base.amount.saturating_add(self.deposit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::money::ChannelId;

    fn backing(key: &ChainKey) -> ChannelBacking {
        ChannelBacking {
            domain: Domain {
                chain_id: 31337,
                contract: Address::repeat_byte(1),
            },
            onchain: B256::repeat_byte(2),
            payer: key.address(),
            scale: TokenScale::new(18).unwrap(),
            base: Base {
                seq: 3,
                amount: Amount::from_units(500),
                bytes: 1000,
            },
            deposit: Amount::from_units(10_000),
            key: Some(key.clone()),
        }
    }

    #[test]
    fn cosigned_vouchers_verify_and_map_minus_the_base() {
        let id = Identity::from_secret([4; 32]);
        let key = ChainKey::derive(&id);
        let b = backing(&key);
        let v = Voucher::sign(&id, ChannelId([9; 32]), 4, Amount::from_units(800), 3000, 1);
        let cv = b.chain_voucher(&v).unwrap();
        assert_eq!(
            cv.cumulative_amount,
            b.scale.to_token(Amount::from_units(300))
        );
        assert_eq!(cv.cumulative_bytes, 2000);
        let signed = Voucher {
            chain_sig: b.cosign(&v),
            ..v
        };
        assert!(b.verify(&signed));
        assert!(
            !b.verify(&v),
            "a voucher above the base without a chain signature"
        );
        // A chain signature from another key, or for other totals, fails.
        let other = ChannelBacking {
            key: Some(ChainKey::derive(&Identity::from_secret([5; 32]))),
            ..b.clone()
        };
        assert!(!b.verify(&Voucher {
            chain_sig: other.cosign(&v),
            ..v
        }));
        let moved = Voucher {
            cumulative_amount: Amount::from_units(801),
            ..signed
        };
        assert!(!b.verify(&moved));
        // At or below the base nothing is cosigned, and the chain never sees it.
        let old = Voucher::sign(&id, ChannelId([9; 32]), 3, Amount::from_units(500), 1000, 1);
        assert_eq!(b.cosign(&old), None);
        assert!(b.verify(&old));
        assert_eq!(b.limit(), Amount::from_units(10_500));
        // Totals below the base (a lying voucher) map to nothing.
        let under = Voucher::sign(&id, ChannelId([9; 32]), 5, Amount::from_units(100), 3000, 1);
        assert_eq!(b.chain_voucher(&under), None);
        assert!(!b.verify(&under));
    }
}
