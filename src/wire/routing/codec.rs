//! Encoding and decoding of routing messages (layouts in the parent module). Invariants: every
//! read is bounds-checked; a message is refused once it exceeds [`MAX_TLVS_PER_MESSAGE`] TLVs,
//! so one datagram never becomes unbounded work.

use std::time::Duration;

use super::*;

/// Encode an interval as centiseconds, saturating at the u16 maximum (655.35 s).
fn centis(d: Duration) -> u16 {
    u16::try_from(d.as_millis() / 10).unwrap_or(u16::MAX)
}

pub(super) fn from_centis(c: u16) -> Duration {
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
    let mut count = 0usize;
    while !rest.is_empty() {
        count += 1;
        if count > MAX_TLVS_PER_MESSAGE {
            return Err(WireError::TooManyTlvs {
                max: MAX_TLVS_PER_MESSAGE,
            });
        }
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
        if matches!(
            tlv_type,
            tlv_type::LEGACY_UPDATE | tlv_type::LEGACY_SEQNO_REQUEST
        ) {
            out.legacy += 1;
        } else {
            match decode_body(tlv_type, body)? {
                Some(t) => out.tlvs.push(t),
                None => out.skipped += 1,
            }
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
                    seqno: HelloSeqno(r.u16()?),
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
                let seqno = Seqno(r.u32()?);
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
                let seqno = Seqno(r.u32()?);
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

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }
}
