//! Signed transactions: an EIP-155 legacy transaction built and signed offline, so the wallet
//! can store the exact bytes before broadcasting them (docs/ledger.md, "Journal"). Invariant:
//! signing is deterministic (RFC 6979), so a transaction rebuilt from the same fields has the
//! same hash, and re-broadcasting stored bytes is idempotent on chain.

use alloy_consensus::{SignableTransaction, TxLegacy};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, Signature, TxKind, U256, keccak256};

use super::key::ChainKey;

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRequest {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The sender's account nonce.
    pub nonce: u64,
    /// Wei per gas.
    pub gas_price: u128,
    /// Gas limit.
    pub gas: u64,
    /// Callee.
    pub to: Address,
    /// Wei sent along.
    pub value: U256,
    /// Calldata.
    pub input: Vec<u8>,
}

/// A signed transaction: its raw bytes (`eth_sendRawTransaction`) and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    /// The EIP-2718 encoding (for a legacy transaction, its RLP).
    pub raw: Vec<u8>,
    /// keccak256 of `raw`.
    pub hash: B256,
}

/// Sign `req` with `key`.
pub fn sign(req: &TxRequest, key: &ChainKey) -> SignedTx {
    let tx = TxLegacy {
        chain_id: Some(req.chain_id),
        nonce: req.nonce,
        gas_price: req.gas_price,
        gas_limit: req.gas,
        to: TxKind::Call(req.to),
        value: req.value,
        input: Bytes::from(req.input.clone()),
    };
    let (rs, odd) = key.sign_parity(&tx.signature_hash());
    let sig = Signature::new(
        U256::from_be_slice(&rs[..32]),
        U256::from_be_slice(&rs[32..]),
        odd,
    );
    let raw = tx.into_signed(sig).encoded_2718();
    SignedTx {
        hash: keccak256(&raw),
        raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::TxEnvelope;
    use alloy_consensus::transaction::SignerRecoverable;
    use alloy_eips::eip2718::Decodable2718;

    #[test]
    fn signed_tx_recovers_to_the_sender_and_is_deterministic() {
        let key = ChainKey::from_secret(&[9; 32]).unwrap();
        let req = TxRequest {
            chain_id: 31337,
            nonce: 4,
            gas_price: 1_000_000_000,
            gas: 100_000,
            to: Address::repeat_byte(0x33),
            value: U256::from(5),
            input: vec![1, 2, 3],
        };
        let a = sign(&req, &key);
        assert_eq!(a, sign(&req, &key));
        let env = TxEnvelope::decode_2718(&mut a.raw.as_slice()).unwrap();
        assert_eq!(env.recover_signer().unwrap(), key.address());
        assert_eq!(*env.tx_hash(), a.hash);
        assert_ne!(sign(&TxRequest { nonce: 5, ..req }, &key).hash, a.hash);
    }
}
