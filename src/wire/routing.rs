//! Routing messages, the body of a `Routing` mesh frame: one version byte, then TLVs
//! `{type: u8, length: u8, body}` in the style of Babel (RFC 8966 §4.3). Invariants: `decode`
//! checks every length before reading and never panics; unknown TLV types and prefix kinds are
//! skipped and counted, not errors, so newer peers can add them; `decode(encode(t)) == t`.
//!
//! All integers are big-endian. Bodies (offsets in bytes):
//! - Hello (1), 6: `flags u16 (reserved, 0)`, `seqno u16`, `interval u16` (centiseconds).
//! - IHU (2), 4: `rxcost u16`, `interval u16` (centiseconds).
//! - Update (3), 116: `kind u8`, `flags u8 (reserved, 0)`, `interval u16` (centiseconds),
//!   `seqno u16`, `metric u16`, `price_per_mib u64`, `price_epoch u32`, `originator [32]`,
//!   `signature [64]`.
//! - Route request (4): empty body = wildcard; else `kind u8`, `originator [32]`.
//! - Seqno request (5), 36: `kind u8`, `hop_count u8`, `seqno u16`, `originator [32]`.
//!
//! A body longer than its fixed part is accepted and the excess ignored (room for sub-TLVs).

use std::time::Duration;

use crate::identity::{Identity, NODE_ID_LEN, NodeId};

/// Version byte that opens every routing message.
pub const VERSION: u8 = 1;

/// The infinite metric: an update carrying it is a retraction (RFC 8966 §2.1, §4.6.9).
pub const INFINITY: u16 = 0xFFFF;

/// Domain-separation label for originator signatures over route announcements.
pub const ROUTE_SIG_DOMAIN: &[u8] = b"bitcloud route v1";

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Length of the byte string an originator signs (see [`signed_payload`]).
pub const SIGNED_PAYLOAD_LEN: usize = NODE_ID_LEN + 2 + 1;

/// Size of a TLV header (type and length bytes).
pub const TLV_HEADER_LEN: usize = 2;

/// TLV type numbers. Our own numbering: the bodies differ from Babel's (RFC 8966 §4.6), so
/// reusing its numbers would only mislead.
pub mod tlv_type {
    /// Hello.
    pub const HELLO: u8 = 1;
    /// I Heard You.
    pub const IHU: u8 = 2;
    /// Route update or retraction.
    pub const UPDATE: u8 = 3;
    /// Route request (specific or wildcard).
    pub const ROUTE_REQUEST: u8 = 4;
    /// Seqno request.
    pub const SEQNO_REQUEST: u8 = 5;
}

const HELLO_LEN: usize = 6;
const IHU_LEN: usize = 4;
const UPDATE_LEN: usize = 20 + NODE_ID_LEN + SIGNATURE_LEN;
const ROUTE_REQUEST_LEN: usize = 1 + NODE_ID_LEN;
const SEQNO_REQUEST_LEN: usize = 4 + NODE_ID_LEN;

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

/// A 16-bit sequence number compared modulo 2^16 (RFC 8966 §3.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Seqno(pub u16);

impl Seqno {
    /// `self > other` modulo 2^16: `0 < (self - other) mod 2^16 < 32768` (RFC 8966 §3.2.1).
    pub fn is_newer_than(self, other: Seqno) -> bool {
        let d = self.0.wrapping_sub(other.0);
        d != 0 && d < 0x8000
    }

    /// `self >= other` modulo 2^16.
    pub fn is_at_least(self, other: Seqno) -> bool {
        self == other || self.is_newer_than(other)
    }

    /// The successor, wrapping.
    pub fn next(self) -> Seqno {
        Seqno(self.0.wrapping_add(1))
    }
}

/// Hello: sent every hello interval to each neighbour so it can estimate loss (RFC 8966 §4.6.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Per-neighbour hello seqno, incremented by one per hello.
    pub seqno: Seqno,
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
}

/// The bytes an originator signs: `originator || seqno (u16 BE) || kind code`. The metric and
/// price change at every hop, so they cannot be signed by the originator.
pub fn signed_payload(
    originator: &NodeId,
    seqno: Seqno,
    kind: PrefixKind,
) -> [u8; SIGNED_PAYLOAD_LEN] {
    let mut p = [0u8; SIGNED_PAYLOAD_LEN];
    let (id, rest) = p.split_at_mut(NODE_ID_LEN);
    id.copy_from_slice(originator.as_bytes());
    rest.copy_from_slice(&[(seqno.0 >> 8) as u8, seqno.0 as u8, kind.code()]);
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

/// Encode an interval as centiseconds, saturating at the u16 maximum (655.35 s).
fn centis(d: Duration) -> u16 {
    u16::try_from(d.as_millis() / 10).unwrap_or(u16::MAX)
}

fn from_centis(c: u16) -> Duration {
    Duration::from_millis(u64::from(c) * 10)
}

impl Tlv {
    /// The TLV type byte.
    pub fn tlv_type(&self) -> u8 {
        match self {
            Tlv::Hello(_) => tlv_type::HELLO,
            Tlv::Ihu(_) => tlv_type::IHU,
            Tlv::Update(_) => tlv_type::UPDATE,
            Tlv::RouteRequest(_) => tlv_type::ROUTE_REQUEST,
            Tlv::SeqnoRequest(_) => tlv_type::SEQNO_REQUEST,
        }
    }

    /// Length of the body (without the two header bytes).
    pub fn body_len(&self) -> usize {
        match self {
            Tlv::Hello(_) => HELLO_LEN,
            Tlv::Ihu(_) => IHU_LEN,
            Tlv::Update(_) => UPDATE_LEN,
            Tlv::RouteRequest(RouteRequest::Wildcard) => 0,
            Tlv::RouteRequest(RouteRequest::Specific { .. }) => ROUTE_REQUEST_LEN,
            Tlv::SeqnoRequest(_) => SEQNO_REQUEST_LEN,
        }
    }

    /// Length on the wire, header included.
    pub fn encoded_len(&self) -> usize {
        TLV_HEADER_LEN + self.body_len()
    }

    /// Append the TLV (header and body) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.tlv_type());
        // Every body length is a constant below 255 (checked by a test).
        out.push(self.body_len() as u8);
        match self {
            Tlv::Hello(h) => {
                out.extend_from_slice(&0u16.to_be_bytes());
                out.extend_from_slice(&h.seqno.0.to_be_bytes());
                out.extend_from_slice(&centis(h.interval).to_be_bytes());
            }
            Tlv::Ihu(i) => {
                out.extend_from_slice(&i.rxcost.to_be_bytes());
                out.extend_from_slice(&centis(i.interval).to_be_bytes());
            }
            Tlv::Update(u) => {
                out.push(u.kind.code());
                out.push(0);
                out.extend_from_slice(&centis(u.interval).to_be_bytes());
                out.extend_from_slice(&u.seqno.0.to_be_bytes());
                out.extend_from_slice(&u.metric.to_be_bytes());
                out.extend_from_slice(&u.price_per_mib.to_be_bytes());
                out.extend_from_slice(&u.price_epoch.to_be_bytes());
                out.extend_from_slice(u.originator.as_bytes());
                out.extend_from_slice(&u.signature);
            }
            Tlv::RouteRequest(RouteRequest::Wildcard) => {}
            Tlv::RouteRequest(RouteRequest::Specific { kind, originator }) => {
                out.push(kind.code());
                out.extend_from_slice(originator.as_bytes());
            }
            Tlv::SeqnoRequest(r) => {
                out.push(r.kind.code());
                out.push(r.hop_count);
                out.extend_from_slice(&r.seqno.0.to_be_bytes());
                out.extend_from_slice(r.originator.as_bytes());
            }
        }
    }
}

/// Encode a whole message: the version byte, then the TLVs in order.
pub fn encode(tlvs: &[Tlv]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + tlvs.iter().map(Tlv::encoded_len).sum::<usize>());
    out.push(VERSION);
    for t in tlvs {
        t.encode_into(&mut out);
    }
    out
}

/// Decode a whole message. Fails only when the framing is broken; see [`Decoded::skipped`].
pub fn decode(bytes: &[u8]) -> Result<Decoded, WireError> {
    let (&version, mut rest) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let mut out = Decoded::default();
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let Some((&[tlv_type, len], after_header)) = rest.split_first_chunk::<2>() else {
            return Err(WireError::TruncatedHeader { offset });
        };
        let len = usize::from(len);
        let (body, after) = after_header
            .split_at_checked(len)
            .ok_or(WireError::Overrun {
                tlv_type,
                offset,
                len,
                remaining: after_header.len(),
            })?;
        match decode_body(tlv_type, body)? {
            Some(t) => out.tlvs.push(t),
            None => out.skipped += 1,
        }
        rest = after;
    }
    Ok(out)
}

/// Decode one body. `Ok(None)` means "skip": unknown type or unknown prefix kind.
fn decode_body(tlv_type: u8, body: &[u8]) -> Result<Option<Tlv>, WireError> {
    let min = match tlv_type {
        tlv_type::HELLO => HELLO_LEN,
        tlv_type::IHU => IHU_LEN,
        tlv_type::UPDATE => UPDATE_LEN,
        tlv_type::ROUTE_REQUEST if body.is_empty() => {
            return Ok(Some(Tlv::RouteRequest(RouteRequest::Wildcard)));
        }
        tlv_type::ROUTE_REQUEST => ROUTE_REQUEST_LEN,
        tlv_type::SEQNO_REQUEST => SEQNO_REQUEST_LEN,
        _ => return Ok(None),
    };
    let too_short = WireError::TooShort {
        tlv_type,
        len: body.len(),
        min,
    };
    let mut r = Reader(body);
    // The length was checked against `min` implicitly: any short read yields `too_short`.
    let tlv = (|| -> Option<Option<Tlv>> {
        Some(match tlv_type {
            tlv_type::HELLO => {
                let _flags = r.u16()?;
                Some(Tlv::Hello(Hello {
                    seqno: Seqno(r.u16()?),
                    interval: from_centis(r.u16()?),
                }))
            }
            tlv_type::IHU => Some(Tlv::Ihu(Ihu {
                rxcost: r.u16()?,
                interval: from_centis(r.u16()?),
            })),
            tlv_type::UPDATE => {
                let kind = r.u8()?;
                let _flags = r.u8()?;
                let interval = from_centis(r.u16()?);
                let seqno = Seqno(r.u16()?);
                let metric = r.u16()?;
                let price_per_mib = u64::from_be_bytes(r.array()?);
                let price_epoch = u32::from_be_bytes(r.array()?);
                let originator = NodeId(r.array()?);
                let signature = r.array()?;
                PrefixKind::from_code(kind).map(|kind| {
                    Tlv::Update(Update {
                        kind,
                        interval,
                        seqno,
                        metric,
                        price_per_mib,
                        price_epoch,
                        originator,
                        signature,
                    })
                })
            }
            tlv_type::ROUTE_REQUEST => {
                let kind = r.u8()?;
                let originator = NodeId(r.array()?);
                PrefixKind::from_code(kind)
                    .map(|kind| Tlv::RouteRequest(RouteRequest::Specific { kind, originator }))
            }
            tlv_type::SEQNO_REQUEST => {
                let kind = r.u8()?;
                let hop_count = r.u8()?;
                let seqno = Seqno(r.u16()?);
                let originator = NodeId(r.array()?);
                PrefixKind::from_code(kind).map(|kind| {
                    Tlv::SeqnoRequest(SeqnoRequest {
                        kind,
                        hop_count,
                        seqno,
                        originator,
                    })
                })
            }
            // Unknown types returned early above.
            _ => None,
        })
    })();
    tlv.ok_or(too_short)
}

/// A cursor over a body: every read is bounds-checked and returns `None` when short.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }
}

#[cfg(test)]
mod tests;
