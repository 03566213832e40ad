//! Noise IK handshake (via `snow`) wrapped in WireGuard-style messages with a mac1 that
//! costs a would-be attacker our public key before we spend a Diffie-Hellman on them.
//! Invariant: the transport keys leave here only after a complete, authenticated handshake,
//! and the initiator's node id in the payload is checked against its Noise static key; the
//! transport cipher is one both ends offered, chosen inside the authenticated handshake.

use blake2::{Blake2s256, Digest};

use super::aead::Cipher;
use super::cookie::{self, mac as mac1, mac_ok as mac1_ok};

use crate::identity::{Identity, NodeId};
use crate::wire::outer::{
    self, HANDSHAKE_INIT_LEN, INIT_PAYLOAD_LEN, Init, MAC_LEN, MSG_HANDSHAKE_INIT,
    MSG_HANDSHAKE_RESP, NOISE_INIT_LEN, NOISE_RESP_LEN, RESP_PAYLOAD_LEN, Resp,
};

/// The Noise protocol name (DESIGN.md §3).
pub const NOISE_PARAMS: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
/// Prologue binding handshakes to this protocol and version (v2: cipher negotiation; v4:
/// `MeshSealed` relay frames, docs/relay-crypto.md; v3 was an earlier `MeshSealed` that
/// authenticated the whole e2e message and never shipped, so it must not interoperate).
pub const PROLOGUE: &[u8] = b"bitcloud link v4";
/// Label for the mac1 key, as in WireGuard §5.4.4.
const LABEL_MAC1: &[u8] = b"mac1----";

/// Why a handshake message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// mac1 did not match our public key: not meant for us, or forged.
    #[error("bad mac1")]
    BadMac,
    /// The Noise message did not decrypt or authenticate.
    #[error("noise handshake failed")]
    Noise,
    /// The payload's node id does not own the Noise static key that was used.
    #[error("node id does not match static key")]
    IdMismatch,
    /// No transport cipher both ends offer, or a response naming one we did not offer.
    #[error("no common transport cipher")]
    Cipher,
}

/// Our static keys, precomputed once.
pub struct StaticKeys {
    x_secret: [u8; 32],
    id: NodeId,
    mac1_key: [u8; 32],
    /// The transport ciphers we offer and accept ([`Cipher`] bits).
    ciphers: u8,
}

impl StaticKeys {
    /// Derive from the node identity; offers ChaCha20-Poly1305 only until
    /// [`StaticKeys::with_ciphers`].
    pub fn new(identity: &Identity) -> Self {
        StaticKeys {
            x_secret: identity.x25519_secret(),
            id: identity.id(),
            mac1_key: mac1_key(&identity.x25519_public()),
            ciphers: Cipher::CHACHA20_POLY1305,
        }
    }

    /// Offer and accept `ciphers` (the AEAD backend's, `TransportAead::ciphers`).
    pub fn with_ciphers(mut self, ciphers: u8) -> Self {
        self.ciphers = ciphers;
        self
    }
}

/// What we know of a peer's static key, precomputed once.
#[derive(Clone)]
pub struct PeerKeys {
    /// Its X25519 public key.
    pub x_public: [u8; 32],
    /// Key for the mac1 of messages we send to it.
    pub mac1_key: [u8; 32],
    /// Key that opens the cookie replies it sends us.
    pub cookie_key: [u8; 32],
}

impl PeerKeys {
    /// Derive from the peer's node id (fails if it is not a valid Ed25519 point).
    pub fn new(id: &NodeId) -> Result<Self, crate::identity::IdentityError> {
        let x_public = id.x25519_public()?;
        Ok(PeerKeys {
            x_public,
            mac1_key: mac1_key(&x_public),
            cookie_key: cookie::cookie_key(&x_public),
        })
    }
}

/// Key for the mac1 of messages to the node with X25519 public key `x_public` (§5.4.4).
pub fn mac1_key(x_public: &[u8; 32]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    h.update(LABEL_MAC1);
    h.update(x_public);
    h.finalize().into()
}

fn builder() -> snow::Builder<'static> {
    let params = NOISE_PARAMS.parse().expect("valid noise params");
    snow::Builder::new(params)
}

/// The two transport keys of a finished handshake.
pub struct SessionKeys {
    /// Key for what we send.
    pub send: [u8; 32],
    /// Key for what we receive.
    pub recv: [u8; 32],
    /// The transport cipher both keys are for.
    pub cipher: Cipher,
}

/// An initiation we sent and whose response we await.
pub struct PendingInit {
    hs: snow::HandshakeState,
    /// The index the response will name.
    pub local_index: u32,
    /// The message as sent: its mac1 opens a cookie reply, and it is resent with mac2.
    msg: Vec<u8>,
    /// Whether it was already resent for a cookie reply (at most once).
    resent: bool,
}

impl PendingInit {
    /// The mac1 of the initiation (the AAD of a cookie reply to it).
    pub fn mac1(&self) -> &[u8] {
        let at = HANDSHAKE_INIT_LEN - 2 * MAC_LEN;
        self.msg.get(at..at + MAC_LEN).unwrap_or_default()
    }

    /// The same initiation with mac2 under `cookie`, the first time only: a responder under
    /// load answered without spending a DH, so the same Noise message is still good.
    pub fn resend_with(&mut self, cookie: &[u8; outer::COOKIE_LEN]) -> Option<Vec<u8>> {
        if self.resent {
            return None;
        }
        self.resent = true;
        let mut m = self.msg.clone();
        cookie::write_mac2(&mut m, cookie);
        Some(m)
    }
}

/// Whether an initiation's mac1 is for our key (the first, cheapest check).
pub fn init_mac1_ok(local: &StaticKeys, init: &Init<'_>) -> bool {
    mac1_ok(&local.mac1_key, init.mac1_input, init.mac1)
}

/// Build a handshake initiation to `peer`. `tai64n` is the current wall-clock time.
pub fn initiate(
    local: &StaticKeys,
    peer: &PeerKeys,
    local_index: u32,
    tai64n: [u8; 12],
) -> Result<(PendingInit, Vec<u8>), HandshakeError> {
    initiate_with_cookie(local, peer, local_index, tai64n, None)
}

/// `initiate`, and with a `cookie` the peer gave us (it is under load) the message carries
/// mac2.
pub fn initiate_with_cookie(
    local: &StaticKeys,
    peer: &PeerKeys,
    local_index: u32,
    tai64n: [u8; 12],
    cookie: Option<[u8; outer::COOKIE_LEN]>,
) -> Result<(PendingInit, Vec<u8>), HandshakeError> {
    let mut hs = builder()
        .local_private_key(&local.x_secret)
        .and_then(|b| b.remote_public_key(&peer.x_public))
        .and_then(|b| b.prologue(PROLOGUE))
        .and_then(|b| b.build_initiator())
        .map_err(|_| HandshakeError::Noise)?;
    let mut payload = [0u8; INIT_PAYLOAD_LEN];
    payload[..12].copy_from_slice(&tai64n);
    payload[12..44].copy_from_slice(local.id.as_bytes());
    payload[44] = local.ciphers;
    let mut msg = outer::control_prefix(MSG_HANDSHAKE_INIT, &[local_index]);
    let mut noise = [0u8; NOISE_INIT_LEN];
    let n = hs
        .write_message(&payload, &mut noise)
        .map_err(|_| HandshakeError::Noise)?;
    debug_assert_eq!(n, NOISE_INIT_LEN);
    msg.extend_from_slice(&noise[..n]);
    let m1 = mac1(&peer.mac1_key, &msg);
    msg.extend_from_slice(&m1);
    msg.extend_from_slice(&[0u8; MAC_LEN]); // mac2: zeros unless we hold a cookie
    debug_assert_eq!(msg.len(), HANDSHAKE_INIT_LEN);
    if let Some(c) = cookie {
        cookie::write_mac2(&mut msg, &c);
    }
    let pending = PendingInit {
        hs,
        local_index,
        msg: msg.clone(),
        // Even with a cookie: a reply then means ours was stale, and one resend may follow.
        resent: false,
    };
    Ok((pending, msg))
}

/// A verified initiation, ready to be answered.
pub struct ReceivedInit {
    hs: snow::HandshakeState,
    /// The initiator's node id, proven by the handshake.
    pub peer_id: NodeId,
    /// The initiator's TAI64N timestamp (replay protection for initiations).
    pub timestamp: [u8; 12],
    /// The initiator's session index.
    pub remote_index: u32,
    /// The cipher we will answer with: ours and offered by the initiator.
    cipher: Cipher,
}

/// Check and decrypt an initiation addressed to us.
pub fn consume_init(local: &StaticKeys, init: &Init<'_>) -> Result<ReceivedInit, HandshakeError> {
    if !mac1_ok(&local.mac1_key, init.mac1_input, init.mac1) {
        return Err(HandshakeError::BadMac);
    }
    let mut hs = builder()
        .local_private_key(&local.x_secret)
        .and_then(|b| b.prologue(PROLOGUE))
        .and_then(|b| b.build_responder())
        .map_err(|_| HandshakeError::Noise)?;
    let mut payload = [0u8; NOISE_INIT_LEN];
    let n = hs
        .read_message(init.noise, &mut payload)
        .map_err(|_| HandshakeError::Noise)?;
    let payload = payload
        .get(..n)
        .filter(|p| p.len() == INIT_PAYLOAD_LEN)
        .ok_or(HandshakeError::Noise)?;
    let (ts, rest) = payload.split_at(12);
    let (id, offered) = rest.split_at(32);
    let peer_id = NodeId(id.try_into().map_err(|_| HandshakeError::Noise)?);
    let offered = offered.first().copied().ok_or(HandshakeError::Noise)?;
    let remote_static = hs.get_remote_static().ok_or(HandshakeError::Noise)?;
    match peer_id.x25519_public() {
        Ok(x) if x[..] == remote_static[..] => {}
        _ => return Err(HandshakeError::IdMismatch),
    }
    let cipher = Cipher::choose(offered, local.ciphers).ok_or(HandshakeError::Cipher)?;
    Ok(ReceivedInit {
        hs,
        peer_id,
        timestamp: ts.try_into().map_err(|_| HandshakeError::Noise)?,
        remote_index: init.sender,
        cipher,
    })
}

/// Answer a verified initiation; returns our transport keys and the response message.
pub fn respond(
    mut r: ReceivedInit,
    peer: &PeerKeys,
    local_index: u32,
) -> Result<(SessionKeys, Vec<u8>), HandshakeError> {
    let mut msg = outer::control_prefix(MSG_HANDSHAKE_RESP, &[local_index, r.remote_index]);
    let mut noise = [0u8; NOISE_RESP_LEN];
    let n =
        r.hs.write_message(&[r.cipher.bit()], &mut noise)
            .map_err(|_| HandshakeError::Noise)?;
    msg.extend_from_slice(noise.get(..n).ok_or(HandshakeError::Noise)?);
    let m1 = mac1(&peer.mac1_key, &msg);
    msg.extend_from_slice(&m1);
    // mac2 stays zero: responses are matched to an initiation in flight before any DH, so
    // cookies do not protect them here (docs/handshake-flood.md).
    msg.extend_from_slice(&[0u8; MAC_LEN]);
    let (i2r, r2i) = r.hs.dangerously_get_raw_split();
    Ok((
        SessionKeys {
            send: r2i,
            recv: i2r,
            cipher: r.cipher,
        },
        msg,
    ))
}

/// Complete our initiation with the peer's response.
pub fn consume_resp(
    local: &StaticKeys,
    mut p: PendingInit,
    resp: &Resp<'_>,
) -> Result<SessionKeys, HandshakeError> {
    if !mac1_ok(&local.mac1_key, resp.mac1_input, resp.mac1) {
        return Err(HandshakeError::BadMac);
    }
    let mut payload = [0u8; NOISE_RESP_LEN];
    let n =
        p.hs.read_message(resp.noise, &mut payload)
            .map_err(|_| HandshakeError::Noise)?;
    if n != RESP_PAYLOAD_LEN || !p.hs.is_handshake_finished() {
        return Err(HandshakeError::Noise);
    }
    // Authenticated by the handshake: only the responder can have chosen it, and it must be
    // one we offered.
    let cipher = payload
        .first()
        .and_then(|b| Cipher::from_bit(*b))
        .filter(|c| local.ciphers & c.bit() != 0)
        .ok_or(HandshakeError::Cipher)?;
    let (i2r, r2i) = p.hs.dangerously_get_raw_split();
    Ok(SessionKeys {
        send: i2r,
        recv: r2i,
        cipher,
    })
}

/// Check mac1 of a response before looking anything up (cheap DoS filter).
pub fn resp_mac_ok(local: &StaticKeys, resp: &Resp<'_>) -> bool {
    mac1_ok(&local.mac1_key, resp.mac1_input, resp.mac1)
}

/// TAI64N label for a wall-clock time given as nanoseconds since the Unix epoch.
pub fn tai64n(unix_nanos: u128) -> [u8; 12] {
    let secs = (unix_nanos / 1_000_000_000) as u64;
    let nanos = (unix_nanos % 1_000_000_000) as u32;
    let mut t = [0u8; 12];
    t[..8].copy_from_slice(&(0x4000_0000_0000_000a_u64.wrapping_add(secs)).to_be_bytes());
    t[8..].copy_from_slice(&nanos.to_be_bytes());
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::outer::{Message, parse};

    fn pair() -> (Identity, Identity) {
        (
            Identity::from_secret([1; 32]),
            Identity::from_secret([2; 32]),
        )
    }

    #[test]
    fn full_handshake_agrees_on_keys() {
        let (a, b) = pair();
        let (ka, kb) = (StaticKeys::new(&a), StaticKeys::new(&b));
        let (pa, pb) = (
            PeerKeys::new(&a.id()).unwrap(),
            PeerKeys::new(&b.id()).unwrap(),
        );
        let (pending, init) = initiate(&ka, &pb, 11, tai64n(5)).unwrap();
        let Ok(Message::Init(i)) = parse(&init) else {
            panic!()
        };
        let r = consume_init(&kb, &i).unwrap();
        assert_eq!(
            (r.peer_id, r.remote_index, r.timestamp),
            (a.id(), 11, tai64n(5))
        );
        let (bk, resp) = respond(r, &pa, 22).unwrap();
        let Ok(Message::Resp(rp)) = parse(&resp) else {
            panic!()
        };
        assert_eq!((rp.sender, rp.receiver), (22, 11));
        let ak = consume_resp(&ka, pending, &rp).unwrap();
        assert_eq!(ak.send, bk.recv);
        assert_eq!(ak.recv, bk.send);
        assert_ne!(ak.send, ak.recv);
    }

    #[test]
    fn wrong_recipient_and_tampering_are_refused() {
        let (a, b) = pair();
        let c = Identity::from_secret([3; 32]);
        let (ka, kc) = (StaticKeys::new(&a), StaticKeys::new(&c));
        let pb = PeerKeys::new(&b.id()).unwrap();
        let (_, init) = initiate(&ka, &pb, 1, tai64n(1)).unwrap();
        let Ok(Message::Init(i)) = parse(&init) else {
            panic!()
        };
        assert_eq!(consume_init(&kc, &i).err(), Some(HandshakeError::BadMac));
        let kb = StaticKeys::new(&b);
        let mut bad = init.clone();
        bad[40] ^= 1;
        let Ok(Message::Init(i)) = parse(&bad) else {
            panic!()
        };
        assert_eq!(consume_init(&kb, &i).err(), Some(HandshakeError::BadMac));
    }

    /// One handshake between `ka` and `kb` (b responds); the initiator's result.
    fn shake(
        ka: &StaticKeys,
        kb: &StaticKeys,
        hostile: Option<Cipher>,
    ) -> Result<Cipher, HandshakeError> {
        let (a, b) = pair();
        let (pa, pb) = (
            PeerKeys::new(&a.id()).unwrap(),
            PeerKeys::new(&b.id()).unwrap(),
        );
        let (pending, init) = initiate(ka, &pb, 1, tai64n(1))?;
        let Ok(Message::Init(i)) = parse(&init) else {
            panic!()
        };
        let mut r = consume_init(kb, &i)?;
        if let Some(c) = hostile {
            r.cipher = c;
        }
        let (bk, resp) = respond(r, &pa, 2)?;
        let Ok(Message::Resp(rp)) = parse(&resp) else {
            panic!()
        };
        let ak = consume_resp(ka, pending, &rp)?;
        assert_eq!((ak.send, ak.cipher), (bk.recv, bk.cipher));
        Ok(ak.cipher)
    }

    #[test]
    fn cipher_is_negotiated_and_a_responder_cannot_impose_one() {
        let (a, b) = pair();
        let (c, g) = (Cipher::CHACHA20_POLY1305, Cipher::AES_256_GCM);
        let keys = |i: &Identity, m| StaticKeys::new(i).with_ciphers(m);
        assert_eq!(
            shake(&keys(&a, c | g), &keys(&b, c | g), None),
            Ok(Cipher::Aes256Gcm)
        );
        assert_eq!(
            shake(&keys(&a, c), &keys(&b, c | g), None),
            Ok(Cipher::ChaCha20Poly1305)
        );
        assert_eq!(
            shake(&keys(&a, c | g), &keys(&b, c), None),
            Ok(Cipher::ChaCha20Poly1305)
        );
        assert_eq!(
            shake(&keys(&a, g), &keys(&b, c), None),
            Err(HandshakeError::Cipher)
        );
        // A responder naming a cipher the initiator did not offer is refused by it.
        assert_eq!(
            shake(&keys(&a, c), &keys(&b, c | g), Some(Cipher::Aes256Gcm)),
            Err(HandshakeError::Cipher)
        );
    }

    #[test]
    fn tai64n_orders_by_time() {
        assert!(tai64n(1_000_000_001) > tai64n(1_000_000_000));
        assert!(tai64n(2_000_000_000) > tai64n(1_999_999_999));
    }
}
