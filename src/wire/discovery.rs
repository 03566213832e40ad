//! Byte format of LAN discovery beacons (DESIGN.md §4). Invariants: decoding checks every
//! length before reading, never panics and never indexes input bytes; a beacon is exactly
//! [`BEACON_LEN`] bytes; integers are big-endian; the signature covers every byte before it
//! ([`Beacon::signed_bytes`]) under the domain [`BEACON_DOMAIN`], so nobody can announce
//! someone else's node id or port.
//!
//! ```text
//! magic "BCLD" | version u8 (1) | flags u8 (0) | port u16 | node id [32] | counter u64 |
//! signature [64]                                                                   = 112 bytes
//! ```
//!
//! `port` is the sender's UDP listen port; the receiver pairs it with the datagram's source
//! address. `counter` grows with every beacon a node signs (milliseconds since the Unix epoch,
//! forced monotonic), so a receiver can ignore beacons older than the newest it accepted.

use std::net::Ipv4Addr;

use crate::identity::{Identity, NODE_ID_LEN, NodeId};

/// First four bytes of every beacon.
pub const BEACON_MAGIC: [u8; 4] = *b"BCLD";
/// The beacon format version this code writes and reads.
pub const BEACON_VERSION: u8 = 1;
/// Signature domain of beacons (see [`Identity::sign`]).
pub const BEACON_DOMAIN: &[u8] = b"bitcloud beacon v1";
/// Bytes covered by the signature: everything before it.
pub const BEACON_SIGNED_LEN: usize = 4 + 1 + 1 + 2 + NODE_ID_LEN + 8;
/// Length of an encoded beacon.
pub const BEACON_LEN: usize = BEACON_SIGNED_LEN + 64;
/// IPv4 multicast group beacons are sent to: in the link-local block 224.0.0.0/24, which
/// routers never forward and switches flood without IGMP snooping; 199 is unassigned by IANA.
pub const BEACON_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 199);
/// Default UDP port beacons are sent to and received on (next to the default listen port).
pub const BEACON_PORT: u16 = 51821;

/// Errors decoding a beacon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeaconError {
    /// The datagram is shorter than a beacon.
    #[error("truncated beacon: {have} bytes, need {BEACON_LEN}")]
    Truncated {
        /// Bytes received.
        have: usize,
    },
    /// The datagram is longer than a beacon.
    #[error("{extra} trailing bytes after beacon")]
    Trailing {
        /// Bytes past the beacon.
        extra: usize,
    },
    /// The first four bytes are not `BCLD`.
    #[error("bad beacon magic {0:02x?}")]
    BadMagic([u8; 4]),
    /// A beacon version this code does not read.
    #[error("unsupported beacon version {0}")]
    UnsupportedVersion(u8),
    /// The advertised listen port is 0, which is not a usable endpoint.
    #[error("beacon advertises port 0")]
    ZeroPort,
}

/// One decoded beacon. Decoding does not verify the signature: call [`Beacon::verify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Beacon {
    /// Flag bits; senders set 0 and receivers ignore bits they do not know.
    pub flags: u8,
    /// The sender's UDP listen port (never 0).
    pub port: u16,
    /// The sender's node id.
    pub id: NodeId,
    /// The sender's beacon counter; larger means newer.
    pub counter: u64,
    /// Ed25519 signature by `id` over [`Beacon::signed_bytes`] under [`BEACON_DOMAIN`].
    pub signature: [u8; 64],
}

impl Beacon {
    /// A beacon for `identity` listening on `port`, signed, with flags 0.
    pub fn sign(identity: &Identity, port: u16, counter: u64) -> Beacon {
        let mut b = Beacon {
            flags: 0,
            port,
            id: identity.id(),
            counter,
            signature: [0; 64],
        };
        b.signature = identity.sign(BEACON_DOMAIN, &b.signed_bytes());
        b
    }

    /// The bytes the signature covers: the encoding up to the signature.
    pub fn signed_bytes(&self) -> [u8; BEACON_SIGNED_LEN] {
        let mut out = [0u8; BEACON_SIGNED_LEN];
        let parts: [&[u8]; 5] = [
            &BEACON_MAGIC,
            &[BEACON_VERSION, self.flags],
            &self.port.to_be_bytes(),
            self.id.as_bytes(),
            &self.counter.to_be_bytes(),
        ];
        put_all(&mut out, &parts);
        out
    }

    /// Whether the signature is valid for `id` (false also if `id` is not a valid key).
    pub fn verify(&self) -> bool {
        self.id
            .verify(BEACON_DOMAIN, &self.signed_bytes(), &self.signature)
    }

    /// The wire encoding.
    pub fn encode(&self) -> [u8; BEACON_LEN] {
        let mut out = [0u8; BEACON_LEN];
        put_all(&mut out, &[&self.signed_bytes(), &self.signature]);
        out
    }

    /// Decode exactly one beacon from a datagram (signature not checked).
    pub fn decode(bytes: &[u8]) -> Result<Beacon, BeaconError> {
        let (head, rest) = bytes
            .split_first_chunk::<BEACON_LEN>()
            .ok_or(BeaconError::Truncated { have: bytes.len() })?;
        if !rest.is_empty() {
            return Err(BeaconError::Trailing { extra: rest.len() });
        }
        let (magic, r) = split::<4>(head);
        let (&[version, flags], r) = split::<2>(r);
        let (port, r) = split::<2>(r);
        let (id, r) = split::<NODE_ID_LEN>(r);
        let (counter, r) = split::<8>(r);
        let (signature, _) = split::<64>(r);
        if *magic != BEACON_MAGIC {
            return Err(BeaconError::BadMagic(*magic));
        }
        if version != BEACON_VERSION {
            return Err(BeaconError::UnsupportedVersion(version));
        }
        let port = u16::from_be_bytes(*port);
        if port == 0 {
            return Err(BeaconError::ZeroPort);
        }
        Ok(Beacon {
            flags,
            port,
            id: NodeId(*id),
            counter: u64::from_be_bytes(*counter),
            signature: *signature,
        })
    }
}

/// Split `N` bytes off a slice already known to be long enough; a short slice (impossible
/// for the fixed-size arrays passed here) yields zeros rather than a panic.
fn split<const N: usize>(b: &[u8]) -> (&[u8; N], &[u8]) {
    b.split_first_chunk::<N>().unwrap_or((&[0; N], &[]))
}

/// Copy `parts` one after another into `out`, stopping at its end (never panics).
fn put_all(out: &mut [u8], parts: &[&[u8]]) {
    let mut rest = out;
    for p in parts {
        let n = p.len().min(rest.len());
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(n);
        head.copy_from_slice(p.get(..n).unwrap_or_default());
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ident() -> Identity {
        Identity::from_secret([7; 32])
    }

    #[test]
    fn round_trip_and_verify() {
        let id = ident();
        let b = Beacon::sign(&id, 51820, 0x0102_0304_0506_0708);
        let bytes = b.encode();
        assert_eq!(bytes.len(), BEACON_LEN);
        assert_eq!(BEACON_LEN, 112);
        let d = Beacon::decode(&bytes).unwrap();
        assert_eq!(d, b);
        assert!(d.verify());
        assert_eq!(d.id, id.id());
    }

    #[test]
    fn known_layout() {
        let b = Beacon::sign(&ident(), 0x1234, 9);
        let bytes = b.encode();
        assert_eq!(bytes.get(..8), Some(&b"BCLD\x01\x00\x12\x34"[..]));
        assert_eq!(bytes.get(8..40), Some(&ident().id().0[..]));
        assert_eq!(bytes.get(40..48), Some(&[0, 0, 0, 0, 0, 0, 0, 9][..]));
        assert_eq!(bytes.get(48..), Some(&b.signature[..]));
        assert_eq!(bytes.get(..48), Some(&b.signed_bytes()[..]));
    }

    #[test]
    fn forged_or_altered_beacons_fail_verification() {
        let me = ident();
        let other = Identity::from_secret([8; 32]);
        // Claiming someone else's id with our signature.
        let mut b = Beacon::sign(&me, 51820, 1);
        b.id = other.id();
        assert!(!b.verify());
        // Changing any signed field breaks the signature.
        for tweak in [
            |b: &mut Beacon| b.port ^= 1,
            |b: &mut Beacon| b.counter += 1,
            |b: &mut Beacon| b.flags = 1,
            |b: &mut Beacon| b.signature[0] ^= 1,
        ] {
            let mut b = Beacon::sign(&me, 51820, 1);
            tweak(&mut b);
            assert!(!b.verify(), "{b:?}");
        }
        // A signature under another domain over the same bytes is not a beacon signature.
        let mut b = Beacon::sign(&me, 51820, 1);
        b.signature = me.sign(b"bitcloud route v1", &b.signed_bytes());
        assert!(!b.verify());
        // Bytes that are not a valid public key: false, no panic.
        let mut b = Beacon::sign(&me, 51820, 1);
        b.id = NodeId([0xff; 32]);
        assert!(!b.verify());
    }

    #[test]
    fn decode_errors() {
        let good = Beacon::sign(&ident(), 51820, 1).encode();
        assert_eq!(Beacon::decode(&[]), Err(BeaconError::Truncated { have: 0 }));
        assert_eq!(
            Beacon::decode(good.get(..BEACON_LEN - 1).unwrap()),
            Err(BeaconError::Truncated { have: 111 })
        );
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(
            Beacon::decode(&long),
            Err(BeaconError::Trailing { extra: 1 })
        );
        let mut bad = good;
        bad[0] = b'X';
        assert_eq!(Beacon::decode(&bad), Err(BeaconError::BadMagic(*b"XCLD")));
        let mut bad = good;
        bad[4] = 2;
        assert_eq!(
            Beacon::decode(&bad),
            Err(BeaconError::UnsupportedVersion(2))
        );
        let mut bad = good;
        bad[6] = 0;
        bad[7] = 0;
        assert_eq!(Beacon::decode(&bad), Err(BeaconError::ZeroPort));
        // Unknown flags decode (and are covered by the signature).
        let mut flagged = good;
        flagged[5] = 0x80;
        let d = Beacon::decode(&flagged).unwrap();
        assert_eq!(d.flags, 0x80);
        assert!(!d.verify());
        // Extreme values round-trip.
        let b = Beacon::sign(&ident(), u16::MAX, u64::MAX);
        assert_eq!(Beacon::decode(&b.encode()), Ok(b));
        assert!(b.verify());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Beacon::decode(&bytes);
        }

        #[test]
        fn decode_of_near_beacons_never_panics(
            flips in proptest::collection::vec((0..BEACON_LEN, any::<u8>()), 0..8),
            cut in 0..=BEACON_LEN,
        ) {
            let mut b = Beacon::sign(&ident(), 51820, 5).encode().to_vec();
            for (i, v) in flips {
                if let Some(x) = b.get_mut(i) {
                    *x = v;
                }
            }
            b.truncate(cut);
            if let Ok(d) = Beacon::decode(&b) {
                prop_assert_eq!(d.encode().to_vec(), b);
            }
        }

        #[test]
        fn encode_decode_round_trip(
            flags in any::<u8>(),
            port in 1..=u16::MAX,
            id in any::<[u8; 32]>(),
            counter in any::<u64>(),
            sig in proptest::collection::vec(any::<u8>(), 64),
        ) {
            let b = Beacon {
                flags,
                port,
                id: NodeId(id),
                counter,
                signature: sig.try_into().unwrap_or([0; 64]),
            };
            prop_assert_eq!(Beacon::decode(&b.encode()), Ok(b));
        }
    }
}
