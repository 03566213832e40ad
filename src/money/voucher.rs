//! Channel ids and vouchers. Owns [`ChannelId`] derivation, [`Voucher`] and its canonical
//! signed encoding. Invariant: a voucher's signature covers exactly the 68-byte big-endian body
//! under the domain [`VOUCHER_DOMAIN`], so a voucher can never be confused with any other
//! signed object, and the wire encoding is the same body followed by the signature.

use std::fmt;

use blake2::{Blake2s256, Digest};

use super::amount::Amount;
use super::backing::ChainSig;
use crate::identity::{Identity, NodeId};

/// Domain-separation label of voucher signatures.
pub const VOUCHER_DOMAIN: &[u8] = b"bitcloud voucher v1";
/// Domain-separation label of the channel id hash.
const CHANNEL_ID_DOMAIN: &[u8] = b"bitcloud channel v1";
/// Length of the signed voucher body: channel id, seq, amount, bytes, epoch.
pub const VOUCHER_BODY_LEN: usize = 32 + 8 + 16 + 8 + 4;
/// Length of a voucher on the wire: body and Ed25519 signature.
pub const VOUCHER_LEN: usize = VOUCHER_BODY_LEN + 64;
/// Nonce of the link channels (one per ordered pair of neighbours, paying relay fees).
pub const LINK_CHANNEL_NONCE: u64 = 0;
/// Nonce of the end-to-end channels from a client to the exit it uses (paying the exit fee,
/// docs/payments.md, "Exit fees"): never the same channel as a link channel, even when the
/// exit is a neighbour, so relay fees and exit fees never mix.
pub const EXIT_CHANNEL_NONCE: u64 = 1;

/// A channel id: BLAKE2s of (domain, payer id, payee id, nonce). Binding both ids means a
/// voucher for one payee can never be presented to another.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub [u8; 32]);

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId({})", hex::encode(&self.0[..4]))
    }
}

impl serde::Serialize for ChannelId {
    /// As 64 lowercase hex digits.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What defines a unidirectional channel: who pays, who is paid, and which instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChannelParams {
    /// The paying node (signs vouchers).
    pub payer: NodeId,
    /// The paid node (relays the payer's data).
    pub payee: NodeId,
    /// Distinguishes successive channels between the same ordered pair.
    pub nonce: u64,
}

impl ChannelParams {
    /// The derived channel id.
    pub fn id(&self) -> ChannelId {
        let mut h = Blake2s256::new();
        h.update([CHANNEL_ID_DOMAIN.len() as u8]);
        h.update(CHANNEL_ID_DOMAIN);
        h.update(self.payer.as_bytes());
        h.update(self.payee.as_bytes());
        h.update(self.nonce.to_be_bytes());
        ChannelId(h.finalize().into())
    }
}

/// A payer-signed statement: "on this channel I owe `cumulative_amount` in total for
/// `cumulative_bytes`". Cumulative, so only the latest (highest seq) matters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Voucher {
    /// The channel.
    pub channel_id: ChannelId,
    /// Strictly increasing per channel, starting at 1.
    pub seq: u64,
    /// Total owed on the channel since it opened.
    pub cumulative_amount: Amount,
    /// Total data bytes the payer handed over since the channel opened.
    pub cumulative_bytes: u64,
    /// The newest price epoch the amount includes.
    pub price_epoch: u32,
    /// Ed25519 signature by the payer over the body under [`VOUCHER_DOMAIN`].
    pub signature: [u8; 64],
    /// Under an on-chain ledger, the payer's EIP-712 signature over the same totals for the
    /// backing channel (docs/ledger.md, "Vouchers"); not covered by `signature`.
    pub chain_sig: Option<ChainSig>,
}

impl fmt::Debug for Voucher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Voucher")
            .field("channel_id", &self.channel_id)
            .field("seq", &self.seq)
            .field("cumulative_amount", &self.cumulative_amount)
            .field("cumulative_bytes", &self.cumulative_bytes)
            .field("price_epoch", &self.price_epoch)
            .field("signature", &hex::encode(&self.signature[..4]))
            .field("chain_sig", &self.chain_sig)
            .finish()
    }
}

impl Voucher {
    /// Build and sign a voucher with the payer's identity.
    pub fn sign(
        payer: &Identity,
        channel_id: ChannelId,
        seq: u64,
        cumulative_amount: Amount,
        cumulative_bytes: u64,
        price_epoch: u32,
    ) -> Voucher {
        let mut v = Voucher {
            channel_id,
            seq,
            cumulative_amount,
            cumulative_bytes,
            price_epoch,
            signature: [0; 64],
            chain_sig: None,
        };
        v.signature = payer.sign(VOUCHER_DOMAIN, &v.body_bytes());
        v
    }

    /// The canonical signed body (big-endian): channel id 32, seq 8, amount 16, bytes 8,
    /// epoch 4.
    pub fn body_bytes(&self) -> [u8; VOUCHER_BODY_LEN] {
        let mut b = [0u8; VOUCHER_BODY_LEN];
        let (id, rest) = b.split_at_mut(32);
        id.copy_from_slice(&self.channel_id.0);
        let (seq, rest) = rest.split_at_mut(8);
        seq.copy_from_slice(&self.seq.to_be_bytes());
        let (amt, rest) = rest.split_at_mut(16);
        amt.copy_from_slice(&self.cumulative_amount.units().to_be_bytes());
        let (bytes, epoch) = rest.split_at_mut(8);
        bytes.copy_from_slice(&self.cumulative_bytes.to_be_bytes());
        epoch.copy_from_slice(&self.price_epoch.to_be_bytes());
        b
    }

    /// True if the signature is the payer's over this body.
    pub fn verify(&self, payer: &NodeId) -> bool {
        payer.verify(VOUCHER_DOMAIN, &self.body_bytes(), &self.signature)
    }

    /// True if `self` may follow `prev`: higher seq and neither total decreases.
    pub fn is_monotonic_successor_of(&self, prev: &Voucher) -> bool {
        self.seq > prev.seq
            && self.cumulative_amount >= prev.cumulative_amount
            && self.cumulative_bytes >= prev.cumulative_bytes
    }
}

/// The later of two optional vouchers by seq (what resync keeps).
pub fn latest_of(a: Option<Voucher>, b: Option<Voucher>) -> Option<Voucher> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.seq > x.seq { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Identity, Identity) {
        (
            Identity::from_secret([1; 32]),
            Identity::from_secret([2; 32]),
        )
    }

    #[test]
    fn channel_id_binds_both_ids_and_nonce() {
        let (a, b) = ids();
        let p = ChannelParams {
            payer: a.id(),
            payee: b.id(),
            nonce: 1,
        };
        let rev = ChannelParams {
            payer: b.id(),
            payee: a.id(),
            nonce: 1,
        };
        let other = ChannelParams { nonce: 2, ..p };
        assert_ne!(p.id(), rev.id());
        assert_ne!(p.id(), other.id());
        assert_eq!(p.id(), p.id());
    }

    #[test]
    fn sign_verify_and_tamper() {
        let (a, b) = ids();
        let cid = ChannelParams {
            payer: a.id(),
            payee: b.id(),
            nonce: 0,
        }
        .id();
        let v = Voucher::sign(&a, cid, 1, Amount::from_units(10), 100, 3);
        assert!(v.verify(&a.id()));
        assert!(!v.verify(&b.id()));
        for t in [
            Voucher { seq: 2, ..v },
            Voucher {
                cumulative_amount: Amount::from_units(11),
                ..v
            },
            Voucher {
                cumulative_bytes: 101,
                ..v
            },
            Voucher {
                price_epoch: 4,
                ..v
            },
            Voucher {
                channel_id: ChannelId([9; 32]),
                ..v
            },
        ] {
            assert!(!t.verify(&a.id()));
        }
        // Same body signed under another domain does not verify as a voucher.
        let other = Voucher {
            signature: a.sign(b"bitcloud route v1", &v.body_bytes()),
            ..v
        };
        assert!(!other.verify(&a.id()));
    }
}
