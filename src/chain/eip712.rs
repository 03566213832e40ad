//! EIP-712 vouchers, byte for byte what `CloudcoinChannels.claim` verifies: the domain
//! `CloudcoinChannels`/`1`/chain id/contract, the struct `Voucher(bytes32 channelId,uint64
//! seq,uint256 cumulativeAmount,uint64 cumulativeBytes,uint32 priceEpoch)` and a 65-byte
//! r ‖ s ‖ v signature. Invariant: [`recover`] refuses exactly what the contract's `_recover`
//! refuses (length, high s, v not 27/28, no recoverable key), so a voucher the payee accepted
//! off-chain is one the chain will pay.

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{Eip712Domain, SolStruct, eip712_domain, sol};
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};

use super::key::ChainKey;

/// Length of an Ethereum signature: r, s, v.
pub const SIGNATURE_LEN: usize = 65;

/// The EIP-712 domain name (the contract's `NAME_HASH` preimage).
pub const DOMAIN_NAME: &str = "CloudcoinChannels";
/// The EIP-712 domain version (the contract's `VERSION_HASH` preimage).
pub const DOMAIN_VERSION: &str = "1";

/// Half the secp256k1 order: the contract refuses s above it (EIP-2).
const HALF_N: U256 = U256::from_be_bytes([
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
]);

sol! {
    /// The signed voucher struct of `CloudcoinChannels` (its `VOUCHER_TYPEHASH`).
    #[derive(Debug, PartialEq, Eq)]
    struct Voucher {
        bytes32 channelId;
        uint64 seq;
        uint256 cumulativeAmount;
        uint64 cumulativeBytes;
        uint32 priceEpoch;
    }
}

/// Which deployment a voucher is for: chain id and channels contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Domain {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The `CloudcoinChannels` contract.
    pub contract: Address,
}

impl Domain {
    fn eip712(&self) -> Eip712Domain {
        eip712_domain! {
            name: DOMAIN_NAME,
            version: DOMAIN_VERSION,
            chain_id: self.chain_id,
            verifying_contract: self.contract,
        }
    }

    /// The domain separator (what the contract's `domainSeparator()` returns).
    pub fn separator(&self) -> B256 {
        self.eip712().separator()
    }
}

/// A voucher's fields as the contract sees them (on-chain channel id, token base units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainVoucher {
    /// The on-chain channel id (`keccak256(abi.encode(payer, payee, nonce))`).
    pub channel: B256,
    /// The voucher's seq.
    pub seq: u64,
    /// Cumulative amount in token base units.
    pub cumulative_amount: U256,
    /// Cumulative data bytes.
    pub cumulative_bytes: u64,
    /// Price epoch.
    pub price_epoch: u32,
}

impl ChainVoucher {
    fn sol(&self) -> Voucher {
        Voucher {
            channelId: self.channel,
            seq: self.seq,
            cumulativeAmount: self.cumulative_amount,
            cumulativeBytes: self.cumulative_bytes,
            priceEpoch: self.price_epoch,
        }
    }

    /// The digest that is signed: keccak256("\x19\x01" ‖ domain separator ‖ struct hash).
    pub fn digest(&self, domain: &Domain) -> B256 {
        self.sol().eip712_signing_hash(&domain.eip712())
    }

    /// Sign with the payer's chain key.
    pub fn sign(&self, domain: &Domain, key: &ChainKey) -> [u8; SIGNATURE_LEN] {
        key.sign_digest(&self.digest(domain))
    }
}

/// The signer of `digest`, by the contract's rules; `None` where the contract would revert.
pub fn recover(digest: &B256, sig: &[u8]) -> Option<Address> {
    let sig: &[u8; SIGNATURE_LEN] = sig.try_into().ok()?;
    let (rs, v) = sig.split_at(64);
    let s = U256::from_be_slice(rs.get(32..64)?);
    if s > HALF_N {
        return None;
    }
    let parity = match v.first()? {
        27 => false,
        28 => true,
        _ => return None,
    };
    let sig = Signature::from_slice(rs).ok()?;
    let recid = RecoveryId::new(parity, false);
    let key = VerifyingKey::recover_from_prehash(digest.as_slice(), &sig, recid).ok()?;
    let addr = Address::from_public_key(&key);
    (addr != Address::ZERO).then_some(addr)
}

/// True if `sig` over `v` in `domain` recovers to `signer`.
pub fn verify(domain: &Domain, v: &ChainVoucher, sig: &[u8], signer: Address) -> bool {
    recover(&v.digest(domain), sig) == Some(signer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn setup() -> (ChainKey, Domain, ChainVoucher) {
        let key = ChainKey::derive(&Identity::from_secret([5; 32]));
        let domain = Domain {
            chain_id: 31337,
            contract: Address::repeat_byte(0x11),
        };
        let v = ChainVoucher {
            channel: B256::repeat_byte(0x22),
            seq: 7,
            cumulative_amount: U256::from(123_456_789u64),
            cumulative_bytes: 4096,
            price_epoch: 3,
        };
        (key, domain, v)
    }

    #[test]
    fn type_string_is_the_contracts() {
        assert_eq!(
            Voucher::eip712_encode_type(),
            "Voucher(bytes32 channelId,uint64 seq,uint256 cumulativeAmount,uint64 cumulativeBytes,uint32 priceEpoch)"
        );
    }

    #[test]
    fn sign_and_recover() {
        let (key, domain, v) = setup();
        let sig = v.sign(&domain, &key);
        assert!(verify(&domain, &v, &sig, key.address()));
        assert!(sig[64] == 27 || sig[64] == 28);
    }

    #[test]
    fn any_changed_field_or_domain_fails() {
        let (key, domain, v) = setup();
        let sig = v.sign(&domain, &key);
        let a = key.address();
        let changed = [
            ChainVoucher { seq: 8, ..v },
            ChainVoucher {
                cumulative_amount: v.cumulative_amount + U256::from(1),
                ..v
            },
            ChainVoucher {
                cumulative_bytes: 4097,
                ..v
            },
            ChainVoucher {
                price_epoch: 4,
                ..v
            },
            ChainVoucher {
                channel: B256::repeat_byte(0x23),
                ..v
            },
        ];
        for c in changed {
            assert!(!verify(&domain, &c, &sig, a), "{c:?}");
        }
        let other_chain = Domain {
            chain_id: 1,
            ..domain
        };
        let other_contract = Domain {
            contract: Address::repeat_byte(0x12),
            ..domain
        };
        assert!(!verify(&other_chain, &v, &sig, a));
        assert!(!verify(&other_contract, &v, &sig, a));
    }

    #[test]
    fn malleable_and_malformed_signatures_refused() {
        let (key, domain, v) = setup();
        let sig = v.sign(&domain, &key);
        let digest = v.digest(&domain);
        // High s: n - s with the other parity is the same point, refused like EIP-2.
        let n = U256::from_be_slice(
            &hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
                .unwrap(),
        );
        let s = U256::from_be_slice(&sig[32..64]);
        let mut high = sig;
        high[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
        high[64] = if sig[64] == 27 { 28 } else { 27 };
        assert_eq!(recover(&digest, &high), None);
        for bad_v in [0u8, 1, 26, 29, 255] {
            let mut s2 = sig;
            s2[64] = bad_v;
            assert_eq!(recover(&digest, &s2), None, "v = {bad_v}");
        }
        assert_eq!(recover(&digest, &sig[..64]), None);
        assert_eq!(recover(&digest, &[0u8; 65]), None);
        let mut long = sig.to_vec();
        long.push(0);
        assert_eq!(recover(&digest, &long), None);
    }
}
