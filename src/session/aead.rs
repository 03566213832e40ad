//! The transport AEAD behind a small trait, so the backend is chosen by measurement, and the
//! cipher per session by the handshake (docs/aead.md): AES-256-GCM where both ends have AES
//! in hardware, ChaCha20-Poly1305 otherwise. Nonce = 4 zero bytes || 64-bit little-endian
//! counter, as in WireGuard, for both. Invariant: a (key, counter) pair is sealed at most
//! once; the session guarantees that.

use chacha20poly1305::aead::{AeadInOut, KeyInit};

/// Authentication tag length.
pub const TAG_LEN: usize = 16;

/// A transport cipher. Both take a 32-byte key from the handshake's split and the same
/// counter nonce; which one a session uses is the responder's choice among those the
/// initiator offered, inside the authenticated handshake (no downgrade by a third party).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    /// ChaCha20-Poly1305 (RFC 8439): every node has it; fast without AES hardware.
    ChaCha20Poly1305,
    /// AES-256-GCM: about 2.5x ChaCha20-Poly1305 where the CPU has AES and carry-less
    /// multiply instructions (docs/aead.md), and offered only there.
    Aes256Gcm,
}

impl Cipher {
    /// Bit of [`Cipher::ChaCha20Poly1305`] in a handshake's cipher set.
    pub const CHACHA20_POLY1305: u8 = 1;
    /// Bit of [`Cipher::Aes256Gcm`] in a handshake's cipher set.
    pub const AES_256_GCM: u8 = 2;

    /// Its bit in a cipher set.
    pub fn bit(self) -> u8 {
        match self {
            Cipher::ChaCha20Poly1305 => Self::CHACHA20_POLY1305,
            Cipher::Aes256Gcm => Self::AES_256_GCM,
        }
    }

    /// The cipher whose bit is exactly `b`.
    pub fn from_bit(b: u8) -> Option<Cipher> {
        match b {
            Self::CHACHA20_POLY1305 => Some(Cipher::ChaCha20Poly1305),
            Self::AES_256_GCM => Some(Cipher::Aes256Gcm),
            _ => None,
        }
    }

    /// The responder's choice: the fastest cipher in both sets (`None`: nothing in common).
    pub fn choose(offered: u8, ours: u8) -> Option<Cipher> {
        let both = offered & ours;
        [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305]
            .into_iter()
            .find(|c| both & c.bit() != 0)
    }

    /// Its name in status output and docs.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
            Cipher::Aes256Gcm => "aes-256-gcm",
        }
    }
}

/// Whether this CPU has the instructions AES-GCM is fast with (AES rounds and carry-less
/// multiplication); without them ring's constant-time AES is slower than ChaCha20.
pub fn aes_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// An AEAD sealing and opening in place with an explicit 64-bit counter nonce.
pub trait TransportAead: Send + Sync + Sized {
    /// Build a ChaCha20-Poly1305 key from 32 bytes.
    fn new(key: &[u8; 32]) -> Self;
    /// The ciphers this backend offers in a handshake ([`Cipher`] bits).
    fn ciphers() -> u8 {
        Cipher::CHACHA20_POLY1305
    }
    /// Build a key of `cipher`, one of [`TransportAead::ciphers`] (the handshake never
    /// agrees on another).
    fn with_cipher(key: &[u8; 32], cipher: Cipher) -> Self {
        debug_assert_eq!(cipher, Cipher::ChaCha20Poly1305);
        Self::new(key)
    }
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

/// ring's ChaCha20-Poly1305 and AES-256-GCM (hand-tuned assembly): the default, ChaCha about
/// 3x RustCrypto here.
pub struct RingAead(ring::aead::LessSafeKey);

impl TransportAead for RingAead {
    fn new(key: &[u8; 32]) -> Self {
        Self::with_cipher(key, Cipher::ChaCha20Poly1305)
    }

    fn ciphers() -> u8 {
        let aes = if aes_hardware() {
            Cipher::AES_256_GCM
        } else {
            0
        };
        Cipher::CHACHA20_POLY1305 | aes
    }

    fn with_cipher(key: &[u8; 32], cipher: Cipher) -> Self {
        let alg = match cipher {
            Cipher::ChaCha20Poly1305 => &ring::aead::CHACHA20_POLY1305,
            Cipher::Aes256Gcm => &ring::aead::AES_256_GCM,
        };
        // A 32-byte key is always valid for both algorithms.
        let k = ring::aead::UnboundKey::new(alg, key).expect("32-byte AEAD key");
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
    fn cipher_choice_prefers_aes_only_when_both_offer_it() {
        let (c, a) = (Cipher::CHACHA20_POLY1305, Cipher::AES_256_GCM);
        assert_eq!(Cipher::choose(c | a, c | a), Some(Cipher::Aes256Gcm));
        assert_eq!(Cipher::choose(c | a, c), Some(Cipher::ChaCha20Poly1305));
        assert_eq!(Cipher::choose(c, c | a), Some(Cipher::ChaCha20Poly1305));
        assert_eq!(Cipher::choose(a, c), None);
        assert_eq!(Cipher::choose(0, c | a), None);
        assert_eq!(
            Cipher::choose(0xfc, c | a),
            None,
            "unknown bits are ignored"
        );
        for x in [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm] {
            assert_eq!(Cipher::from_bit(x.bit()), Some(x));
        }
        assert_eq!(Cipher::from_bit(c | a), None);
        assert_eq!(Cipher::from_bit(0), None);
    }

    #[test]
    fn aes_gcm_seals_and_opens_and_differs_from_chacha() {
        let key = [3u8; 32];
        let (g, c) = (
            RingAead::with_cipher(&key, Cipher::Aes256Gcm),
            RingAead::new(&key),
        );
        let pt: Vec<u8> = (0..1420).map(|i| i as u8).collect();
        let (mut x, mut y) = (pt.clone(), pt.clone());
        let tg = g.seal(5, b"hdr", &mut x);
        let tc = c.seal(5, b"hdr", &mut y);
        assert_ne!((&x, tg), (&y, tc));
        assert!(!c.open(5, b"hdr", &mut x.clone(), &tg), "other cipher");
        assert!(!g.open(6, b"hdr", &mut x.clone(), &tg), "wrong counter");
        assert!(g.open(5, b"hdr", &mut x, &tg));
        assert_eq!(x, pt);
    }

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
