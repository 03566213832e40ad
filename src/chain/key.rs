//! The node's chain key: a secp256k1 key derived from the node's Ed25519 secret, and the
//! binding that ties its address to the node id. Invariant: the chain key is a pure function
//! of the node secret (one backup of the key file restores both, docs/ledger.md, "Chain key"),
//! and a chain address is trusted for a neighbour only with that neighbour's Ed25519 signature
//! over it under [`ADDRESS_BINDING_DOMAIN`].

use alloy_primitives::{Address, B256};
use blake2::{Blake2s256, Digest};
use k256::ecdsa::SigningKey;

use crate::identity::{Identity, NodeId};

/// Domain of the chain-key derivation hash.
const CHAIN_KEY_DOMAIN: &[u8] = b"bitcloud chain key v1";
/// Domain of the Ed25519 signature that binds a chain address to a node id.
pub const ADDRESS_BINDING_DOMAIN: &[u8] = b"bitcloud chain address v1";

/// The node's secp256k1 signing key for vouchers and transactions.
#[derive(Clone)]
pub struct ChainKey {
    signing: SigningKey,
    address: Address,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainKey({})", self.address)
    }
}

impl ChainKey {
    /// Derive the chain key from the node identity: BLAKE2s(domain, secret, counter), the first
    /// counter whose hash is a valid scalar (0 < k < n; any other hash has odds near 2^-128).
    pub fn derive(identity: &Identity) -> ChainKey {
        let secret = identity.secret();
        for counter in 0u32.. {
            let mut h = Blake2s256::new();
            h.update([CHAIN_KEY_DOMAIN.len() as u8]);
            h.update(CHAIN_KEY_DOMAIN);
            h.update(secret);
            h.update(counter.to_be_bytes());
            let bytes: [u8; 32] = h.finalize().into();
            if let Ok(signing) = SigningKey::from_slice(&bytes) {
                return ChainKey::from_signing(signing);
            }
        }
        unreachable!("2^32 consecutive BLAKE2s outputs outside the secp256k1 scalar range")
    }

    /// From a raw 32-byte secp256k1 secret (dev-chain accounts, tests).
    pub fn from_secret(secret: &[u8; 32]) -> Option<ChainKey> {
        SigningKey::from_slice(secret)
            .ok()
            .map(ChainKey::from_signing)
    }

    fn from_signing(signing: SigningKey) -> ChainKey {
        let address = Address::from_public_key(signing.verifying_key());
        ChainKey { signing, address }
    }

    /// The Ethereum address of this key.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Sign a 32-byte digest as Ethereum does: 65 bytes r ‖ s ‖ v, s in the lower half, v 27
    /// or 28 (what `ecrecover` and the contract take).
    pub fn sign_digest(&self, digest: &B256) -> [u8; 65] {
        let sig = self.sign_parity(digest);
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.0);
        out[64] = 27 + u8::from(sig.1);
        out
    }

    /// The signature as (r ‖ s, y parity), s normalised to the lower half.
    pub(crate) fn sign_parity(&self, digest: &B256) -> ([u8; 64], bool) {
        // RFC 6979: deterministic, so a re-signed voucher or transaction is byte-identical.
        let (sig, recid) = match self.signing.sign_prehash_recoverable(digest.as_slice()) {
            Ok(s) => s,
            Err(_) => unreachable!("a valid key signs any 32-byte prehash"),
        };
        let (sig, odd) = match sig.normalize_s() {
            Some(low) => (low, !recid.is_y_odd()),
            None => (sig, recid.is_y_odd()),
        };
        let mut rs = [0u8; 64];
        rs.copy_from_slice(&sig.to_bytes());
        (rs, odd)
    }

    /// The Ed25519-signed statement that this address belongs to `identity`'s node.
    pub fn binding(&self, identity: &Identity) -> AddressBinding {
        AddressBinding {
            address: self.address,
            signature: identity.sign(ADDRESS_BINDING_DOMAIN, self.address.as_slice()),
        }
    }
}

/// A chain address and the node's Ed25519 signature over it: what a neighbour sends so that
/// vouchers recovered to `address` can be attributed to its node id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressBinding {
    /// The claimed chain address.
    pub address: Address,
    /// Ed25519 signature by the node over the 20 address bytes.
    pub signature: [u8; 64],
}

impl AddressBinding {
    /// Wire length: address and signature.
    pub const LEN: usize = 20 + 64;

    /// True if `node` signed this address.
    pub fn verify(&self, node: &NodeId) -> bool {
        node.verify(
            ADDRESS_BINDING_DOMAIN,
            self.address.as_slice(),
            &self.signature,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_stable_and_per_node() {
        let a = Identity::from_secret([1; 32]);
        let b = Identity::from_secret([2; 32]);
        assert_eq!(
            ChainKey::derive(&a).address(),
            ChainKey::derive(&a).address()
        );
        assert_ne!(
            ChainKey::derive(&a).address(),
            ChainKey::derive(&b).address()
        );
    }

    #[test]
    fn known_address_of_a_known_secret() {
        // anvil's first dev account: secret 0xac09...ff80 is address 0xf39F...2266.
        let secret: [u8; 32] =
            hex::decode("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
                .unwrap()
                .try_into()
                .unwrap();
        let k = ChainKey::from_secret(&secret).unwrap();
        assert_eq!(
            k.address().to_string(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
    }

    #[test]
    fn binding_verifies_only_for_its_node_and_address() {
        let a = Identity::from_secret([1; 32]);
        let b = Identity::from_secret([2; 32]);
        let bind = ChainKey::derive(&a).binding(&a);
        assert!(bind.verify(&a.id()));
        assert!(!bind.verify(&b.id()));
        let other = AddressBinding {
            address: ChainKey::derive(&b).address(),
            ..bind
        };
        assert!(!other.verify(&a.id()));
    }
}
