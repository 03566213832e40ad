//! Routing messages, the body of a `Routing` mesh frame: one version byte, then TLVs
//! `{type: u8, length: u8, body}` in the style of Babel (RFC 8966 §4.3). Invariants: `decode`
//! checks every length before reading and never panics; it refuses a message of more than
//! [`MAX_TLVS_PER_MESSAGE`] TLVs before building any of them; unknown TLV types and prefix
//! kinds are skipped and counted, not errors, so newer peers can add them; the announcement
//! format 1 TLVs (types 3 and 5, 16-bit seqnos) are refused and counted in
//! [`Decoded::legacy`]; `decode(encode(t)) == t`.
//!
//! All integers are big-endian. Bodies (offsets in bytes):
//! - Hello (1), 6: `flags u16 (reserved, 0)`, `seqno u16`, `interval u16` (centiseconds).
//! - IHU (2), 4: `rxcost u16`, `interval u16` (centiseconds).
//! - Route request (4): empty body = wildcard; else `kind u8`, `originator [32]`.
//! - Update (6), 118: `kind u8`, `flags u8 (reserved, 0)`, `interval u16` (centiseconds),
//!   `seqno u32`, `metric u16`, `price_per_mib u64`, `price_epoch u32`, `originator [32]`,
//!   `signature [64]`.
//! - Seqno request (7), 38: `kind u8`, `hop_count u8`, `seqno u32`, `originator [32]`.
//!
//! Types 3 and 5 were format 1's update and seqno request (16-bit seqno, signature domain
//! `bitcloud route v1`); see docs/routing.md for why format 2 cannot be harvested ahead.
//! A body longer than its fixed part is accepted and the excess ignored (room for sub-TLVs).

use std::time::Duration;

use crate::identity::{Identity, NODE_ID_LEN, NodeId};

/// Version byte that opens every routing message.
pub const VERSION: u8 = 1;

/// The infinite metric: an update carrying it is a retraction (RFC 8966 §2.1, §4.6.9).
pub const INFINITY: u16 = 0xFFFF;

/// Domain-separation label for originator signatures over route announcements (format 2; a
/// format 1 signature can never verify as a format 2 one).
pub const ROUTE_SIG_DOMAIN: &[u8] = b"bitcloud route v2";

/// Version of the announcement format: 32-bit seqnos (TLV types 6 and 7).
pub const ANNOUNCEMENT_FORMAT: u8 = 2;

/// Most TLVs one message may carry; a longer message is refused whole, before any TLV is
/// built. Our packer stays far below it: a 1200-byte message holds at most 31 seqno requests,
/// the smallest TLV it sends in bulk.
pub const MAX_TLVS_PER_MESSAGE: usize = 64;

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Length of the byte string an originator signs (see [`signed_payload`]).
pub const SIGNED_PAYLOAD_LEN: usize = NODE_ID_LEN + 4 + 1;

/// Size of a TLV header (type and length bytes).
pub const TLV_HEADER_LEN: usize = 2;

/// TLV type numbers. Our own numbering: the bodies differ from Babel's (RFC 8966 §4.6), so
/// reusing its numbers would only mislead.
pub mod tlv_type {
    /// Hello.
    pub const HELLO: u8 = 1;
    /// I Heard You.
    pub const IHU: u8 = 2;
    /// Format 1 route update (16-bit seqno): refused and counted.
    pub const LEGACY_UPDATE: u8 = 3;
    /// Route request (specific or wildcard).
    pub const ROUTE_REQUEST: u8 = 4;
    /// Format 1 seqno request (16-bit seqno): refused and counted.
    pub const LEGACY_SEQNO_REQUEST: u8 = 5;
    /// Route update or retraction (format 2).
    pub const UPDATE: u8 = 6;
    /// Seqno request (format 2).
    pub const SEQNO_REQUEST: u8 = 7;
}

const HELLO_LEN: usize = 6;
const IHU_LEN: usize = 4;
const UPDATE_LEN: usize = 22 + NODE_ID_LEN + SIGNATURE_LEN;
const ROUTE_REQUEST_LEN: usize = 1 + NODE_ID_LEN;
const SEQNO_REQUEST_LEN: usize = 6 + NODE_ID_LEN;

/// Errors that make a whole routing message unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Zero bytes: not even a version.
    #[error("empty routing message")]
    Empty,
    /// A version this code does not speak.
    #[error("unsupported routing message version {0}")]
    Version(u8),
    /// One byte left where a TLV header (two bytes) should start.
    #[error("truncated TLV header at offset {offset}")]
    TruncatedHeader {
        /// Offset of the header in the message.
        offset: usize,
    },
    /// A TLV's length runs past the end of the message.
    #[error("TLV type {tlv_type} at offset {offset} claims {len} bytes, only {remaining} remain")]
    Overrun {
        /// The TLV type.
        tlv_type: u8,
        /// Offset of the TLV header.
        offset: usize,
        /// The claimed body length.
        len: usize,
        /// Bytes actually left after the header.
        remaining: usize,
    },
    /// A known TLV whose body is shorter than its fixed fields.
    #[error("TLV type {tlv_type} body is {len} bytes, needs at least {min}")]
    TooShort {
        /// The TLV type.
        tlv_type: u8,
        /// The body length.
        len: usize,
        /// The minimum for this type.
        min: usize,
    },
    /// More TLVs than [`MAX_TLVS_PER_MESSAGE`].
    #[error("more than {max} TLVs in one routing message")]
    TooManyTlvs {
        /// The limit.
        max: usize,
    },
}

/// What a route announces: the originator's own addresses, or the default routes of an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrefixKind {
    /// The originator's node addresses: its fd00::/8 /128 and its 100.64.0.0/10 /32.
    Node,
    /// `0.0.0.0/0` and `::/0`, announced by exits.
    Default,
}

impl PrefixKind {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            PrefixKind::Node => 0,
            PrefixKind::Default => 1,
        }
    }

    /// Parse a wire code; `None` for kinds this version does not know.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(PrefixKind::Node),
            1 => Some(PrefixKind::Default),
            _ => None,
        }
    }
}

/// An originator's sequence number, compared modulo 2^32 like RFC 8966 §3.2.1 compares its
/// 16-bit ones. 32 bits because the originator signs each seqno: with bumps rate-limited, a
/// 2^31 window cannot be walked through (and harvested ahead) in any useful time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Seqno(pub u32);

impl Seqno {
    /// `self > other` modulo 2^32: `0 < (self - other) mod 2^32 < 2^31`.
    pub fn is_newer_than(self, other: Seqno) -> bool {
        let d = self.0.wrapping_sub(other.0);
        d != 0 && d < 0x8000_0000
    }

    /// `self >= other` modulo 2^32.
    pub fn is_at_least(self, other: Seqno) -> bool {
        self == other || self.is_newer_than(other)
    }

    /// The successor, wrapping.
    pub fn next(self) -> Seqno {
        Seqno(self.0.wrapping_add(1))
    }
}

/// A hello's 16-bit sequence number, compared modulo 2^16 (RFC 8966 §3.2.1, §4.6.5). Not
/// signed, so nothing is gained by widening it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct HelloSeqno(pub u16);

impl HelloSeqno {
    /// `self > other` modulo 2^16: `0 < (self - other) mod 2^16 < 32768`.
    pub fn is_newer_than(self, other: HelloSeqno) -> bool {
        let d = self.0.wrapping_sub(other.0);
        d != 0 && d < 0x8000
    }

    /// The successor, wrapping.
    pub fn next(self) -> HelloSeqno {
        HelloSeqno(self.0.wrapping_add(1))
    }
}

/// Hello: sent every hello interval to each neighbour so it can estimate loss (RFC 8966 §4.6.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Per-neighbour hello seqno, incremented by one per hello.
    pub seqno: HelloSeqno,
    /// When the next hello will follow.
    pub interval: Duration,
}

/// IHU ("I Heard You"): the receive cost the sender measured for the link (RFC 8966 §4.6.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ihu {
    /// The sender's receive cost from the addressee (256 = no loss, [`INFINITY`] = unusable).
    pub rxcost: u16,
    /// When the next IHU will follow.
    pub interval: Duration,
}

/// A route announcement (or, with metric [`INFINITY`], a retraction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// What is announced.
    pub kind: PrefixKind,
    /// When the sender's next periodic update will follow; sets the route's expiry.
    pub interval: Duration,
    /// The originator's seqno for this announcement.
    pub seqno: Seqno,
    /// The sender's metric to the originator; per hop, not signed.
    pub metric: u16,
    /// What the sender bills per MiB forwarded to this destination; per hop, not signed.
    pub price_per_mib: u64,
    /// The price epoch `price_per_mib` belongs to; per hop, not signed.
    pub price_epoch: u32,
    /// The node that owns the prefix.
    pub originator: NodeId,
    /// The originator's signature over [`signed_payload`]`(originator, seqno, kind)`.
    pub signature: [u8; SIGNATURE_LEN],
}

impl Update {
    /// True if this is a retraction.
    pub fn is_retraction(&self) -> bool {
        self.metric == INFINITY
    }

    /// Check the originator's signature over (originator, seqno, kind).
    pub fn verify_signature(&self) -> bool {
        let payload = signed_payload(&self.originator, self.seqno, self.kind);
        self.originator
            .verify(ROUTE_SIG_DOMAIN, &payload, &self.signature)
    }
}

/// Route request: ask a neighbour to announce one prefix, or everything (RFC 8966 §4.6.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteRequest {
    /// Send a full table dump.
    Wildcard,
    /// Send an update for this prefix.
    Specific {
        /// What is requested.
        kind: PrefixKind,
        /// Its originator.
        originator: NodeId,
    },
}

/// Seqno request: ask the originator for a newer seqno (RFC 8966 §4.6.11, §3.8.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqnoRequest {
    /// What is requested.
    pub kind: PrefixKind,
    /// How many more hops the request may travel.
    pub hop_count: u8,
    /// The seqno wanted (at least).
    pub seqno: Seqno,
    /// The originator.
    pub originator: NodeId,
}

/// One TLV of a routing message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tlv {
    /// Hello.
    Hello(Hello),
    /// I Heard You.
    Ihu(Ihu),
    /// Update or retraction.
    Update(Update),
    /// Route request.
    RouteRequest(RouteRequest),
    /// Seqno request.
    SeqnoRequest(SeqnoRequest),
}

/// A decoded routing message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// The TLVs this version understands, in order.
    pub tlvs: Vec<Tlv>,
    /// TLVs skipped: unknown types, or known types with an unknown prefix kind.
    pub skipped: usize,
    /// Format 1 updates and seqno requests, refused (see [`tlv_type::LEGACY_UPDATE`]).
    pub legacy: usize,
}

/// The bytes an originator signs: `originator || seqno (u32 BE) || kind code`. The metric and
/// price change at every hop, so they cannot be signed by the originator.
pub fn signed_payload(
    originator: &NodeId,
    seqno: Seqno,
    kind: PrefixKind,
) -> [u8; SIGNED_PAYLOAD_LEN] {
    let mut p = [0u8; SIGNED_PAYLOAD_LEN];
    let (id, rest) = p.split_at_mut(NODE_ID_LEN);
    id.copy_from_slice(originator.as_bytes());
    let (sq, k) = rest.split_at_mut(4);
    sq.copy_from_slice(&seqno.0.to_be_bytes());
    k.copy_from_slice(&[kind.code()]);
    p
}

/// Sign our own announcement of `kind` at `seqno`.
pub fn sign_announcement(
    identity: &Identity,
    seqno: Seqno,
    kind: PrefixKind,
) -> [u8; SIGNATURE_LEN] {
    identity.sign(
        ROUTE_SIG_DOMAIN,
        &signed_payload(&identity.id(), seqno, kind),
    )
}

mod codec;
pub use codec::{decode, encode};

#[cfg(test)]
mod tests;
