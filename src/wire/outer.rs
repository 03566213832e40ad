//! Outer UDP messages (WireGuard-style framing): handshake initiation and response, cookie
//! reply, transport data. Invariant: `parse` borrows from the datagram, checks every length
//! before reading, and never panics; the only allocation-free path is the transport one.

/// Message type: handshake initiation.
pub const MSG_HANDSHAKE_INIT: u8 = 1;
/// Message type: handshake response.
pub const MSG_HANDSHAKE_RESP: u8 = 2;
/// Message type: cookie reply (DoS protection under load, `session::cookie`).
pub const MSG_COOKIE_REPLY: u8 = 3;
/// Message type: transport data.
pub const MSG_TRANSPORT: u8 = 4;

/// Length of the MACs that close handshake messages.
pub const MAC_LEN: usize = 16;
/// Length of an AEAD tag.
pub const TAG_LEN: usize = 16;
/// Noise IK message 1: e (32) + encrypted s (32+16) + encrypted payload (INIT_PAYLOAD_LEN + 16).
pub const NOISE_INIT_LEN: usize = 32 + 48 + INIT_PAYLOAD_LEN + TAG_LEN;
/// Noise IK message 2: e (32) + encrypted payload (RESP_PAYLOAD_LEN + 16).
pub const NOISE_RESP_LEN: usize = 32 + RESP_PAYLOAD_LEN + TAG_LEN;
/// Initiation payload: TAI64N timestamp (12) + initiator node id (32) + the transport
/// ciphers it offers (1, `session::aead::Cipher` bits; docs/aead.md).
pub const INIT_PAYLOAD_LEN: usize = 12 + 32 + 1;
/// Noise IK message 2's payload: the transport cipher the responder chose (one bit of the set).
pub const RESP_PAYLOAD_LEN: usize = 1;
/// Full initiation message length.
pub const HANDSHAKE_INIT_LEN: usize = 4 + 4 + NOISE_INIT_LEN + 2 * MAC_LEN;
/// Full response message length.
pub const HANDSHAKE_RESP_LEN: usize = 4 + 4 + 4 + NOISE_RESP_LEN + 2 * MAC_LEN;
/// Length of a cookie (WireGuard §5.4.7: a 16-byte MAC of the source address).
pub const COOKIE_LEN: usize = 16;
/// Length of the cookie reply's XChaCha20-Poly1305 nonce.
pub const COOKIE_NONCE_LEN: usize = 24;
/// Cookie reply length: type, receiver, 24-byte nonce, encrypted 16-byte cookie.
pub const COOKIE_REPLY_LEN: usize = 4 + 4 + COOKIE_NONCE_LEN + COOKIE_LEN + TAG_LEN;
/// Length of a Noise ephemeral public key (the first bytes of every Noise message).
pub const EPHEMERAL_LEN: usize = 32;
/// Transport header: type, kind, 2 reserved, receiver index, counter.
pub const TRANSPORT_HEADER_LEN: usize = 16;
/// Smallest transport message: header and an empty (keepalive) ciphertext's tag.
pub const TRANSPORT_MIN_LEN: usize = TRANSPORT_HEADER_LEN + TAG_LEN;

/// What a transport message carries, from the authenticated header byte 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// An IP packet for (or from) the neighbour itself.
    Packet = 0,
    /// A routing message (`wire::routing`).
    Routing = 1,
    /// A mesh frame (`wire::mesh`): an end-to-end message to relay or deliver.
    Mesh = 2,
    /// A payment-channel message (`wire::channel`) for the link's two channels. Never
    /// metered or throttled, so a debtor can always pay its way back (DESIGN.md §5).
    Channel = 3,
    /// An exit probe (`wire::probe`), end to end only: a client asks an exit whether it
    /// still serves, and the exit answers. Never metered.
    Probe = 4,
    /// A mesh frame whose end-to-end message is already sealed end to end, laid out
    /// `e2e message | mesh header` (`wire::mesh`): the link encrypts only the trailing mesh
    /// header and authenticates its own header and the frame's length
    /// ([`link_associated_data`]), so a relay's crypto costs the same for every frame size
    /// instead of a pass over the whole frame (docs/relay-crypto.md). Routed data frames are
    /// sent so; e2e handshakes and control messages (`Node::send_mesh`, rare) stay `Mesh`,
    /// and a relay passes each on as the kind it came.
    MeshSealed = 5,
}

/// How many bytes at the end of a transport message's body (its plaintext, `len` bytes) the
/// link encrypts; the bytes before them travel as associated data, after the header.
/// None if the body cannot be of that kind (a `MeshSealed` body shorter than its header).
pub fn encrypted_len(kind: u8, len: usize) -> Option<usize> {
    if kind == Kind::MeshSealed as u8 {
        (len >= crate::wire::mesh::MESH_HEADER_LEN).then_some(crate::wire::mesh::MESH_HEADER_LEN)
    } else {
        Some(len)
    }
}

/// The associated data [`link_associated_data`] builds for `MeshSealed`: the link header and
/// the length of the clear part (u32 LE), so a relay detects bytes cut from or added to it.
pub const LINK_AAD_MAX: usize = TRANSPORT_HEADER_LEN + 4;

/// The associated data of a transport message whose link header and clear body are `clear`
/// (everything before its encrypted part, [`encrypted_len`]). For every kind but
/// `MeshSealed` that is `clear` itself. For `MeshSealed` it is the link header and the length
/// of `clear`, built in `scratch`: the rest of `clear` is the e2e message, sealed end to end,
/// whose tag the destination checks (docs/relay-crypto.md says what a relay then cannot
/// detect, and why covering parts of the e2e message would add nothing).
pub fn link_associated_data<'a>(
    kind: u8,
    clear: &'a [u8],
    scratch: &'a mut [u8; LINK_AAD_MAX],
) -> &'a [u8] {
    if kind != Kind::MeshSealed as u8 {
        return clear;
    }
    let (Some(hdr), Ok(len)) = (
        clear.get(..TRANSPORT_HEADER_LEN),
        u32::try_from(clear.len()),
    ) else {
        // Shorter than a link header: never a message `Keypair` seals or opens.
        return clear;
    };
    let (h, l) = scratch.split_at_mut(TRANSPORT_HEADER_LEN);
    h.copy_from_slice(hdr);
    l.copy_from_slice(&len.to_le_bytes());
    scratch
}

impl Kind {
    /// Decode the kind byte; unknown kinds are counted and dropped by the caller.
    pub fn from_u8(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::Packet),
            1 => Some(Kind::Routing),
            2 => Some(Kind::Mesh),
            3 => Some(Kind::Channel),
            4 => Some(Kind::Probe),
            5 => Some(Kind::MeshSealed),
            _ => None,
        }
    }
}

/// Why a datagram could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Empty datagram or unknown type byte.
    #[error("unknown message type")]
    UnknownType,
    /// Length does not fit the type.
    #[error("bad length for message type")]
    BadLength,
    /// Reserved bytes were not zero.
    #[error("reserved bytes set")]
    Reserved,
}

/// A parsed outer message borrowing the datagram.
#[derive(Debug)]
pub enum Message<'a> {
    /// Handshake initiation.
    Init(Init<'a>),
    /// Handshake response.
    Resp(Resp<'a>),
    /// Cookie reply.
    Cookie(CookieReply<'a>),
    /// Transport data.
    Transport(TransportHeader),
}

/// A handshake initiation.
#[derive(Debug)]
pub struct Init<'a> {
    /// The initiator's session index.
    pub sender: u32,
    /// The Noise message.
    pub noise: &'a [u8],
    /// Bytes covered by mac1 (everything before it).
    pub mac1_input: &'a [u8],
    /// mac1.
    pub mac1: &'a [u8],
    /// Bytes covered by mac2 (everything before it, mac1 included).
    pub mac2_input: &'a [u8],
    /// mac2: zeros, or a MAC under the cookie the responder gave us.
    pub mac2: &'a [u8],
    /// The initiator's ephemeral key, unencrypted: the same bytes mean the same initiation.
    pub ephemeral: &'a [u8],
}

/// A cookie reply: the responder was under load and wants mac2 under this cookie.
#[derive(Debug)]
pub struct CookieReply<'a> {
    /// The initiator's session index (from the initiation this answers).
    pub receiver: u32,
    /// The XChaCha20-Poly1305 nonce.
    pub nonce: &'a [u8],
    /// The sealed cookie and its tag; the AAD is the answered initiation's mac1.
    pub sealed: &'a [u8],
}

/// A handshake response.
#[derive(Debug)]
pub struct Resp<'a> {
    /// The responder's session index.
    pub sender: u32,
    /// The initiator's session index this answers.
    pub receiver: u32,
    /// The Noise message.
    pub noise: &'a [u8],
    /// Bytes covered by mac1.
    pub mac1_input: &'a [u8],
    /// mac1.
    pub mac1: &'a [u8],
}

/// The fixed header of a transport message; the ciphertext follows at `TRANSPORT_HEADER_LEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportHeader {
    /// Raw kind byte (authenticated as AAD; decoded after the AEAD check).
    pub kind: u8,
    /// The receiver's session index.
    pub receiver: u32,
    /// The explicit nonce counter.
    pub counter: u64,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parse one datagram.
pub fn parse(d: &[u8]) -> Result<Message<'_>, ParseError> {
    let (&ty, _) = d.split_first().ok_or(ParseError::UnknownType)?;
    match ty {
        MSG_TRANSPORT => {
            if d.len() < TRANSPORT_MIN_LEN {
                return Err(ParseError::BadLength);
            }
            if d.get(2..4) != Some(&[0, 0][..]) {
                return Err(ParseError::Reserved);
            }
            let kind = *d.get(1).ok_or(ParseError::BadLength)?;
            let receiver = u32_at(d, 4).ok_or(ParseError::BadLength)?;
            let counter = u64_at(d, 8).ok_or(ParseError::BadLength)?;
            Ok(Message::Transport(TransportHeader {
                kind,
                receiver,
                counter,
            }))
        }
        MSG_HANDSHAKE_INIT | MSG_HANDSHAKE_RESP | MSG_COOKIE_REPLY => {
            if d.get(1..4) != Some(&[0, 0, 0][..]) {
                return Err(if d.len() < 4 {
                    ParseError::BadLength
                } else {
                    ParseError::Reserved
                });
            }
            parse_control(ty, d)
        }
        _ => Err(ParseError::UnknownType),
    }
}

fn parse_control(ty: u8, d: &[u8]) -> Result<Message<'_>, ParseError> {
    let bad = ParseError::BadLength;
    match ty {
        MSG_HANDSHAKE_INIT => {
            if d.len() != HANDSHAKE_INIT_LEN {
                return Err(bad);
            }
            let mac1_at = HANDSHAKE_INIT_LEN - 2 * MAC_LEN;
            let mac2_at = mac1_at + MAC_LEN;
            Ok(Message::Init(Init {
                sender: u32_at(d, 4).ok_or(bad)?,
                noise: d.get(8..mac1_at).ok_or(bad)?,
                mac1_input: d.get(..mac1_at).ok_or(bad)?,
                mac1: d.get(mac1_at..mac2_at).ok_or(bad)?,
                mac2_input: d.get(..mac2_at).ok_or(bad)?,
                mac2: d.get(mac2_at..).ok_or(bad)?,
                ephemeral: d.get(8..8 + EPHEMERAL_LEN).ok_or(bad)?,
            }))
        }
        MSG_HANDSHAKE_RESP => {
            if d.len() != HANDSHAKE_RESP_LEN {
                return Err(bad);
            }
            let mac1_at = HANDSHAKE_RESP_LEN - 2 * MAC_LEN;
            Ok(Message::Resp(Resp {
                sender: u32_at(d, 4).ok_or(bad)?,
                receiver: u32_at(d, 8).ok_or(bad)?,
                noise: d.get(12..mac1_at).ok_or(bad)?,
                mac1_input: d.get(..mac1_at).ok_or(bad)?,
                mac1: d.get(mac1_at..mac1_at + MAC_LEN).ok_or(bad)?,
            }))
        }
        _ => {
            if d.len() != COOKIE_REPLY_LEN {
                return Err(bad);
            }
            let sealed_at = 8 + COOKIE_NONCE_LEN;
            Ok(Message::Cookie(CookieReply {
                receiver: u32_at(d, 4).ok_or(bad)?,
                nonce: d.get(8..sealed_at).ok_or(bad)?,
                sealed: d.get(sealed_at..).ok_or(bad)?,
            }))
        }
    }
}

/// Write a transport header into `out[..TRANSPORT_HEADER_LEN]`.
pub fn write_transport_header(
    out: &mut [u8; TRANSPORT_HEADER_LEN],
    kind: Kind,
    receiver: u32,
    counter: u64,
) {
    out[0] = MSG_TRANSPORT;
    out[1] = kind as u8;
    out[2] = 0;
    out[3] = 0;
    out[4..8].copy_from_slice(&receiver.to_le_bytes());
    out[8..16].copy_from_slice(&counter.to_le_bytes());
}

/// Start a handshake message: type byte, zero reserved bytes, then the given indices.
pub fn control_prefix(ty: u8, indices: &[u32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HANDSHAKE_INIT_LEN);
    v.extend_from_slice(&[ty, 0, 0, 0]);
    for i in indices {
        v.extend_from_slice(&i.to_le_bytes());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_sealed_associated_data_edges() {
        let mut scratch = [0u8; LINK_AAD_MAX];
        let m = Kind::MeshSealed as u8;
        // Other kinds: everything clear is covered as it is; so is a runt.
        let long: Vec<u8> = (0..200u8).collect();
        assert_eq!(
            link_associated_data(Kind::Mesh as u8, &long, &mut scratch),
            &long[..]
        );
        for n in [0, 1, TRANSPORT_HEADER_LEN - 1] {
            assert_eq!(
                link_associated_data(m, &long[..n], &mut scratch),
                &long[..n]
            );
        }
        // A link header on: the header and the length.
        for n in [TRANSPORT_HEADER_LEN, TRANSPORT_HEADER_LEN + 4, 200] {
            let got = link_associated_data(m, &long[..n], &mut scratch).to_vec();
            let mut want = long[..TRANSPORT_HEADER_LEN].to_vec();
            want.extend_from_slice(&(n as u32).to_le_bytes());
            assert_eq!(got, want, "n = {n}");
        }
        assert_eq!(encrypted_len(m, 16), None);
        assert_eq!(encrypted_len(m, 17), Some(17));
        assert_eq!(encrypted_len(Kind::Packet as u8, 5), Some(5));
    }

    #[test]
    fn transport_roundtrip() {
        let mut h = [0u8; TRANSPORT_HEADER_LEN];
        write_transport_header(&mut h, Kind::Packet, 0xdead_beef, 42);
        let mut d = h.to_vec();
        d.extend_from_slice(&[0u8; TAG_LEN]);
        match parse(&d).expect("parses") {
            Message::Transport(t) => {
                assert_eq!((t.kind, t.receiver, t.counter), (0, 0xdead_beef, 42));
            }
            m => panic!("{m:?}"),
        }
    }

    #[test]
    fn edges() {
        assert_eq!(parse(&[]).unwrap_err(), ParseError::UnknownType);
        assert_eq!(parse(&[9]).unwrap_err(), ParseError::UnknownType);
        assert_eq!(parse(&[MSG_TRANSPORT]).unwrap_err(), ParseError::BadLength);
        assert_eq!(
            parse(&[MSG_TRANSPORT; 31]).unwrap_err(),
            ParseError::BadLength
        );
        let mut t = vec![0u8; TRANSPORT_MIN_LEN];
        t[0] = MSG_TRANSPORT;
        t[2] = 1;
        assert_eq!(parse(&t).unwrap_err(), ParseError::Reserved);
        assert_eq!(
            parse(&[MSG_HANDSHAKE_INIT, 0]).unwrap_err(),
            ParseError::BadLength
        );
        let mut i = vec![0u8; HANDSHAKE_INIT_LEN];
        i[0] = MSG_HANDSHAKE_INIT;
        assert!(matches!(parse(&i), Ok(Message::Init(_))));
        assert_eq!(
            parse(&i[..HANDSHAKE_INIT_LEN - 1]).unwrap_err(),
            ParseError::BadLength
        );
        i.push(0);
        assert_eq!(parse(&i).unwrap_err(), ParseError::BadLength);
        let mut r = vec![0u8; HANDSHAKE_RESP_LEN];
        r[0] = MSG_HANDSHAKE_RESP;
        assert!(matches!(parse(&r), Ok(Message::Resp(_))));
        r[3] = 1;
        assert_eq!(parse(&r).unwrap_err(), ParseError::Reserved);
    }

    #[test]
    fn init_fields_and_cookie_reply_layout() {
        let mut i: Vec<u8> = (0..HANDSHAKE_INIT_LEN as u32).map(|b| b as u8).collect();
        i[..4].copy_from_slice(&[MSG_HANDSHAKE_INIT, 0, 0, 0]);
        let Ok(Message::Init(m)) = parse(&i) else {
            panic!("init parses")
        };
        assert_eq!(m.sender, u32::from_le_bytes([4, 5, 6, 7]));
        assert_eq!(m.ephemeral, &i[8..40]);
        assert_eq!(m.mac2_input.len(), HANDSHAKE_INIT_LEN - MAC_LEN);
        assert_eq!(m.mac2, &i[HANDSHAKE_INIT_LEN - MAC_LEN..]);
        assert_eq!(
            m.mac1,
            &i[HANDSHAKE_INIT_LEN - 2 * MAC_LEN..HANDSHAKE_INIT_LEN - MAC_LEN]
        );

        let mut c: Vec<u8> = (0..COOKIE_REPLY_LEN as u8).collect();
        c[..4].copy_from_slice(&[MSG_COOKIE_REPLY, 0, 0, 0]);
        let Ok(Message::Cookie(r)) = parse(&c) else {
            panic!("cookie reply parses")
        };
        assert_eq!(r.receiver, u32::from_le_bytes([4, 5, 6, 7]));
        assert_eq!(r.nonce, &c[8..32]);
        assert_eq!(r.sealed, &c[32..]);
        assert_eq!(r.sealed.len(), COOKIE_LEN + TAG_LEN);
        assert_eq!(parse(&c[..63]).unwrap_err(), ParseError::BadLength);
        c.push(0);
        assert_eq!(parse(&c).unwrap_err(), ParseError::BadLength);
        c.pop();
        c[2] = 1;
        assert_eq!(parse(&c).unwrap_err(), ParseError::Reserved);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(d in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse(&d);
        }
    }
}
