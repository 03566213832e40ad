//! The transport AEAD behind a small trait, so the backend is chosen by measurement
//! (docs/aead.md). Nonce = 4 zero bytes || 64-bit little-endian counter, as in WireGuard.
//! Invariant: a (key, counter) pair is sealed at most once; the session guarantees that.

use chacha20poly1305::aead::{AeadInOut, KeyInit};

/// Authentication tag length.
pub const TAG_LEN: usize = 16;

/// An AEAD sealing and opening in place with an explicit 64-bit counter nonce.
pub trait TransportAead: Send + Sync + Sized {
    /// Build from a 32-byte key.
    fn new(key: &[u8; 32]) -> Self;
    /// Encrypt `buf` in place and return the tag.
    fn seal(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN];
    /// Decrypt `buf` (ciphertext without tag) in place; false if it does not authenticate.
    fn open(&self, counter: u64, aad: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> bool;
}

fn nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    n
}

/// ring's ChaCha20-Poly1305 (hand-tuned assembly): the default, about 3x RustCrypto here.
pub struct RingAead(ring::aead::LessSafeKey);

impl TransportAead for RingAead {
    fn new(key: &[u8; 32]) -> Self {
        // A 32-byte key is always valid for CHACHA20_POLY1305.
        let k = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, key)
            .expect("32-byte ChaCha20-Poly1305 key");
        RingAead(ring::aead::LessSafeKey::new(k))
    }

    fn seal(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let n = ring::aead::Nonce::assume_unique_for_key(nonce(counter));
        let mut out = [0u8; TAG_LEN];
        // ring fails only for inputs over 2^38 bytes, which a datagram cannot be.
        if let Ok(tag) = self
            .0
            .seal_in_place_separate_tag(n, ring::aead::Aad::from(aad), buf)
        {
            out.copy_from_slice(tag.as_ref());
        }
        out
    }

    fn open(&self, counter: u64, aad: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> bool {
        let n = ring::aead::Nonce::assume_unique_for_key(nonce(counter));
        let tag = ring::aead::Tag::from(*tag);
        self.0
            .open_in_place_separate_tag(n, ring::aead::Aad::from(aad), tag, buf, 0..)
            .is_ok()
    }
}

/// RustCrypto's `chacha20poly1305`: the portable reference, kept for cross-checks and benches.
pub struct RustCryptoAead(chacha20poly1305::ChaCha20Poly1305);

impl TransportAead for RustCryptoAead {
    fn new(key: &[u8; 32]) -> Self {
        RustCryptoAead(chacha20poly1305::ChaCha20Poly1305::new(key.into()))
    }

    fn seal(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let n = nonce(counter);
        match self.0.encrypt_inout_detached(&n.into(), aad, buf.into()) {
            Ok(t) => t.into(),
            Err(_) => [0u8; TAG_LEN],
        }
    }

    fn open(&self, counter: u64, aad: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> bool {
        let n = nonce(counter);
        self.0
            .decrypt_inout_detached(&n.into(), aad, buf.into(), tag.into())
            .is_ok()
    }
}

/// The backend the data path uses.
pub type DefaultAead = RingAead;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_agree_and_reject_tampering() {
        let key = [9u8; 32];
        let (a, b) = (RingAead::new(&key), RustCryptoAead::new(&key));
        for len in [0usize, 1, 63, 64, 1420] {
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (mut x, mut y) = (pt.clone(), pt.clone());
            let ta = a.seal(7, b"hdr", &mut x);
            let tb = b.seal(7, b"hdr", &mut y);
            assert_eq!((&x, ta), (&y, tb));
            assert!(b.open(7, b"hdr", &mut x, &ta));
            assert_eq!(x, pt);
            assert!(a.open(7, b"hdr", &mut y, &tb));
            let mut z = pt.clone();
            let tz = a.seal(8, b"hdr", &mut z);
            assert!(!a.open(9, b"hdr", &mut z.clone(), &tz), "wrong counter");
            assert!(!a.open(8, b"hds", &mut z.clone(), &tz), "wrong aad");
            if len > 0 {
                let mut f = z.clone();
                f[0] ^= 1;
                assert!(!a.open(8, b"hdr", &mut f, &tz), "flipped bit");
            }
            assert!(a.open(8, b"hdr", &mut z, &tz));
        }
    }
}
