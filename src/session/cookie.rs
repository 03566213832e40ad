//! WireGuard's cookie mechanism (whitepaper §5.4.7, wireguard-go `device/cookie.go`): the
//! responder's `CookieChecker` (mac2 check, cookie replies) and the initiator's `CookieJar`
//! (the cookie it was given). Invariants: a cookie is a MAC of the source address under a
//! secret that changes every `COOKIE_REFRESH_TIME` and never leaves this module; a cookie
//! reply opens only with the mac1 of an initiation we sent; nothing here reads a clock or
//! an RNG (`now` and a boot seed come in).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use blake2::digest::{Mac, consts::U16};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut, KeyInit};

use crate::wire::outer::{
    COOKIE_LEN, COOKIE_NONCE_LEN, COOKIE_REPLY_LEN, CookieReply, MAC_LEN, MSG_COOKIE_REPLY, TAG_LEN,
};

/// How long a cookie secret (Rm) lives, and how long an initiator uses a cookie (§6.1).
pub const COOKIE_REFRESH_TIME: Duration = Duration::from_secs(120);
/// Label for the cookie encryption key, as in WireGuard §5.4.4.
const LABEL_COOKIE: &[u8] = b"cookie--";
/// Domain of the cookie secrets derived from our static key (see docs/handshake-flood.md).
const LABEL_SECRET: &[u8] = b"bitcloud cookie secret v1";

/// BLAKE2s-128 keyed MAC (WireGuard's `MAC`).
pub fn mac(key: &[u8], input: &[u8]) -> [u8; MAC_LEN] {
    match <Blake2sMac<U16> as blake2::digest::KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(input);
            m.finalize().into_bytes().into()
        }
        // Keys here are 16 or 32 bytes, which BLAKE2s always takes.
        Err(_) => [0; MAC_LEN],
    }
}

/// Constant-time check of a `mac` (a timing oracle would let a forger go byte by byte).
pub fn mac_ok(key: &[u8], input: &[u8], got: &[u8]) -> bool {
    match <Blake2sMac<U16> as blake2::digest::KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(input);
            m.verify_slice(got).is_ok()
        }
        Err(_) => false,
    }
}

/// Key that seals cookie replies from the node with X25519 public key `x_public`:
/// HASH(LABEL_COOKIE || public key), known to anyone who may handshake with it.
pub fn cookie_key(x_public: &[u8; 32]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    h.update(LABEL_COOKIE);
    h.update(x_public);
    h.finalize().into()
}

/// The source address as the cookie binds it: IP bytes, then the port (big-endian).
fn addr_bytes(src: SocketAddr) -> ([u8; 18], usize) {
    let mut b = [0u8; 18];
    let n = match src.ip() {
        std::net::IpAddr::V4(a) => {
            b[..4].copy_from_slice(&a.octets());
            4
        }
        std::net::IpAddr::V6(a) => {
            b[..16].copy_from_slice(&a.octets());
            16
        }
    };
    b[n..n + 2].copy_from_slice(&src.port().to_be_bytes());
    (b, n + 2)
}

/// The responder's side: checks mac2 and writes cookie replies.
pub struct CookieChecker {
    /// Seals our cookie replies.
    seal_key: [u8; 32],
    /// Derives the secrets Rm; secret because our static key is.
    prf_key: [u8; 32],
    /// The current Rm, and when it was made.
    secret: [u8; 32],
    secret_set: Option<Instant>,
    /// How many secrets and nonces were derived (each a PRF input used once).
    rotations: u64,
    nonces: u64,
    nonce_prefix: [u8; 16],
}

impl CookieChecker {
    /// For the node with X25519 keys (`x_secret`, `x_public`); `seed` is fresh at each boot
    /// so that secrets and nonces do not repeat across restarts.
    pub fn new(x_secret: &[u8; 32], x_public: &[u8; 32], seed: u64) -> Self {
        let mut h = Blake2s256::new();
        h.update(LABEL_SECRET);
        h.update(x_secret);
        h.update(seed.to_le_bytes());
        let mut c = CookieChecker {
            seal_key: cookie_key(x_public),
            prf_key: h.finalize().into(),
            secret: [0; 32],
            secret_set: None,
            rotations: 0,
            nonces: 0,
            nonce_prefix: [0; 16],
        };
        let prefix = c.prf(1, 0);
        c.nonce_prefix.copy_from_slice(&prefix[..16]);
        c
    }

    fn prf(&self, what: u8, n: u64) -> [u8; 32] {
        // BLAKE2s keyed mode as a PRF; `what` separates secrets from nonces.
        let mut m =
            match <blake2::Blake2sMac256 as blake2::digest::KeyInit>::new_from_slice(&self.prf_key)
            {
                Ok(m) => m,
                Err(_) => return [0; 32],
            };
        m.update(&[what]);
        m.update(&n.to_le_bytes());
        m.finalize().into_bytes().into()
    }

    fn secret_live(&self, now: Instant) -> bool {
        self.secret_set
            .is_some_and(|t| now.saturating_duration_since(t) < COOKIE_REFRESH_TIME)
    }

    fn cookie(&self, src: SocketAddr) -> [u8; COOKIE_LEN] {
        let (b, n) = addr_bytes(src);
        mac(&self.secret, b.get(..n).unwrap_or_default())
    }

    /// Is `mac2` the MAC of `mac2_input` under the cookie we would give `src` now? False
    /// while there is no live secret (as wireguard-go: a reply then makes one).
    pub fn mac2_ok(&self, mac2_input: &[u8], mac2: &[u8], src: SocketAddr, now: Instant) -> bool {
        self.secret_live(now) && mac_ok(&self.cookie(src), mac2_input, mac2)
    }

    /// A cookie reply to the initiation with session index `receiver` and `mac1`, from `src`.
    pub fn reply(
        &mut self,
        receiver: u32,
        mac1: &[u8],
        src: SocketAddr,
        now: Instant,
    ) -> [u8; COOKIE_REPLY_LEN] {
        if !self.secret_live(now) {
            self.rotations += 1;
            self.secret = self.prf(0, self.rotations);
            self.secret_set = Some(now);
        }
        // Unique per key: a per-boot random prefix and a counter (one hash fewer per reply).
        self.nonces += 1;
        let mut nonce = [0u8; COOKIE_NONCE_LEN];
        nonce[..16].copy_from_slice(&self.nonce_prefix);
        nonce[16..].copy_from_slice(&self.nonces.to_le_bytes());
        let mut sealed = self.cookie(src);
        let aead = XChaCha20Poly1305::new(&self.seal_key.into());
        let tag: [u8; TAG_LEN] = aead
            .encrypt_inout_detached(&nonce.into(), mac1, (&mut sealed[..]).into())
            .map(Into::into)
            .unwrap_or([0; TAG_LEN]);
        let mut out = [0u8; COOKIE_REPLY_LEN];
        out[0] = MSG_COOKIE_REPLY;
        out[4..8].copy_from_slice(&receiver.to_le_bytes());
        out[8..32].copy_from_slice(&nonce);
        out[32..48].copy_from_slice(&sealed);
        out[48..].copy_from_slice(&tag);
        out
    }
}

/// The initiator's side, per peer: the latest cookie the peer gave us.
#[derive(Debug, Default, Clone)]
pub struct CookieJar {
    cookie: Option<([u8; COOKIE_LEN], Instant)>,
}

impl CookieJar {
    /// The cookie to put under mac2 now, if we have one younger than COOKIE_REFRESH_TIME.
    pub fn fresh(&self, now: Instant) -> Option<[u8; COOKIE_LEN]> {
        self.cookie
            .filter(|(_, t)| now.saturating_duration_since(*t) < COOKIE_REFRESH_TIME)
            .map(|(c, _)| c)
    }

    /// Open a cookie reply from the peer whose cookie key is `key`, to our initiation whose
    /// mac1 was `mac1`; keep the cookie if it authenticates.
    pub fn consume(
        &mut self,
        key: &[u8; 32],
        mac1: &[u8],
        reply: &CookieReply<'_>,
        now: Instant,
    ) -> bool {
        let (Ok(nonce), Some((ct, tag))) = (
            <[u8; COOKIE_NONCE_LEN]>::try_from(reply.nonce),
            reply.sealed.split_at_checked(COOKIE_LEN),
        ) else {
            return false;
        };
        let (Ok(mut cookie), Ok(tag)) = (
            <[u8; COOKIE_LEN]>::try_from(ct),
            <[u8; TAG_LEN]>::try_from(tag),
        ) else {
            return false;
        };
        let aead = XChaCha20Poly1305::new(&(*key).into());
        let ok = aead
            .decrypt_inout_detached(&nonce.into(), mac1, (&mut cookie[..]).into(), &tag.into())
            .is_ok();
        if ok {
            self.cookie = Some((cookie, now));
        }
        ok
    }
}

/// Write mac2 under `cookie` into the last MAC_LEN bytes of handshake message `msg`.
pub fn write_mac2(msg: &mut [u8], cookie: &[u8; COOKIE_LEN]) {
    let at = msg.len().saturating_sub(MAC_LEN);
    let m = mac(cookie, msg.get(..at).unwrap_or_default());
    if let Some(dst) = msg.get_mut(at..) {
        dst.copy_from_slice(&m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::outer::{Message, parse};

    const PUB: [u8; 32] = [7; 32];

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn checker() -> CookieChecker {
        CookieChecker::new(&[3; 32], &PUB, 42)
    }

    #[test]
    fn reply_opens_with_mac1_and_its_cookie_makes_a_valid_mac2() {
        let (mut c, t0) = (checker(), Instant::now());
        let src = addr("198.18.0.9:4000");
        let mac1 = [5u8; MAC_LEN];
        let mut msg = vec![1u8; 100];
        assert!(!c.mac2_ok(&msg[..84], &msg[84..], src, t0), "no secret yet");
        let r = c.reply(99, &mac1, src, t0);
        let Ok(Message::Cookie(reply)) = parse(&r) else {
            panic!("a cookie reply parses")
        };
        assert_eq!(reply.receiver, 99);
        let mut jar = CookieJar::default();
        assert!(!jar.consume(&cookie_key(&PUB), &[6u8; MAC_LEN], &reply, t0));
        assert!(!jar.consume(&cookie_key(&[8; 32]), &mac1, &reply, t0));
        assert!(jar.fresh(t0).is_none());
        assert!(jar.consume(&cookie_key(&PUB), &mac1, &reply, t0));
        let cookie = jar.fresh(t0).expect("cookie kept");
        write_mac2(&mut msg, &cookie);
        assert!(c.mac2_ok(&msg[..84], &msg[84..], src, t0));
        // Bound to the source address and port, and to the message.
        assert!(!c.mac2_ok(&msg[..84], &msg[84..], addr("198.18.0.9:4001"), t0));
        assert!(!c.mac2_ok(&msg[..84], &msg[84..], addr("198.18.0.8:4000"), t0));
        msg[3] ^= 1;
        assert!(!c.mac2_ok(&msg[..84], &msg[84..], src, t0));
    }

    #[test]
    fn secrets_rotate_and_cookies_expire() {
        let (mut c, t0) = (checker(), Instant::now());
        let src = addr("[2001:db8::1]:51820");
        let mut jar = CookieJar::default();
        let r = c.reply(1, &[0; MAC_LEN], src, t0);
        let Ok(Message::Cookie(reply)) = parse(&r) else {
            panic!("parses")
        };
        assert!(jar.consume(&cookie_key(&PUB), &[0; MAC_LEN], &reply, t0));
        let cookie = jar.fresh(t0).expect("fresh");
        let mut msg = vec![9u8; 64];
        write_mac2(&mut msg, &cookie);
        let later = t0 + COOKIE_REFRESH_TIME;
        assert!(jar.fresh(later).is_none(), "the initiator stops using it");
        assert!(!c.mac2_ok(&msg[..48], &msg[48..], src, later), "Rm expired");
        let r2 = c.reply(1, &[0; MAC_LEN], src, later);
        assert!(!c.mac2_ok(&msg[..48], &msg[48..], src, later), "new Rm");
        assert_ne!(r[8..32], r2[8..32], "nonces never repeat");
        // Another boot (seed) derives other secrets.
        let mut d = CookieChecker::new(&[3; 32], &PUB, 43);
        let _ = d.reply(1, &[0; MAC_LEN], src, t0);
        assert_ne!(d.secret, c.secret);
    }

    #[test]
    fn garbage_replies_are_refused() {
        let t0 = Instant::now();
        let mut jar = CookieJar::default();
        let mut r = checker().reply(1, &[0; MAC_LEN], addr("198.18.0.1:1"), t0);
        r[40] ^= 1;
        let Ok(Message::Cookie(reply)) = parse(&r) else {
            panic!("parses")
        };
        assert!(!jar.consume(&cookie_key(&PUB), &[0; MAC_LEN], &reply, t0));
        let short = CookieReply {
            receiver: 1,
            nonce: &[0; 3],
            sealed: &[],
        };
        assert!(!jar.consume(&cookie_key(&PUB), &[0; MAC_LEN], &short, t0));
        assert!(jar.fresh(t0).is_none());
    }
}
