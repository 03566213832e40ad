//! Mesh data frames: what a relay reads. Inside a link transport message of kind `Mesh`:
//! `ttl u8 | destination node's overlay IPv6 address (16) | end-to-end message`. The
//! end-to-end message is an outer-format message (handshake or transport) between the two
//! endpoint nodes, opaque to relays. Invariant: parsing checks lengths and never panics; a
//! relay learns the destination and nothing else (no source: replies route by the e2e
//! session, and handshakes carry the initiator's id inside their encrypted payload).
//!
//! In a link message of kind `MeshSealed` the same header comes last instead:
//! `end-to-end message | ttl u8 | destination (16)`, so that the link can encrypt only it and
//! carry the already sealed end-to-end message as it is (docs/relay-crypto.md).

use std::net::Ipv6Addr;
use std::ops::Range;

/// Bytes of mesh header before the end-to-end message.
pub const MESH_HEADER_LEN: usize = 1 + 16;
/// Initial TTL: generous for a mesh (Babel's metric caps routes long before this).
pub const DEFAULT_TTL: u8 = 64;

/// A parsed mesh frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshHeader {
    /// Hops left.
    pub ttl: u8,
    /// Destination node's overlay IPv6 address.
    pub dst: Ipv6Addr,
}

/// The frame is shorter than its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("mesh frame shorter than its header")]
pub struct Truncated;

/// Parse the header at the start of `frame`; the e2e message is `frame[MESH_HEADER_LEN..]`.
pub fn parse(frame: &[u8]) -> Result<MeshHeader, Truncated> {
    let (&ttl, rest) = frame.split_first().ok_or(Truncated)?;
    let dst: [u8; 16] = rest
        .get(..16)
        .and_then(|d| d.try_into().ok())
        .ok_or(Truncated)?;
    Ok(MeshHeader {
        ttl,
        dst: Ipv6Addr::from(dst),
    })
}

/// Write a header into `out[..MESH_HEADER_LEN]`; false if `out` is too short.
pub fn write(out: &mut [u8], h: &MeshHeader) -> bool {
    let Some(hdr) = out.get_mut(..MESH_HEADER_LEN) else {
        return false;
    };
    hdr[0] = h.ttl;
    hdr[1..].copy_from_slice(&h.dst.octets());
    true
}

/// Where a frame's header and its end-to-end message lie in its `len` bytes: first (`Mesh`)
/// or last (`MeshSealed`). None if the frame is shorter than its header.
pub fn layout(trailing: bool, len: usize) -> Option<(Range<usize>, Range<usize>)> {
    let rest = len.checked_sub(MESH_HEADER_LEN)?;
    Some(if trailing {
        (rest..len, 0..rest)
    } else {
        (0..MESH_HEADER_LEN, MESH_HEADER_LEN..len)
    })
}

/// Decrement the TTL in place; returns the new TTL, or None if it was already 0 or 1
/// (the frame must not be forwarded) or the frame is empty.
pub fn decrement_ttl(frame: &mut [u8]) -> Option<u8> {
    let t = frame.first_mut()?;
    if *t <= 1 {
        return None;
    }
    *t -= 1;
    Some(*t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_edges() {
        let h = MeshHeader {
            ttl: 3,
            dst: "fd00::1".parse().expect("address"),
        };
        let mut b = [0u8; MESH_HEADER_LEN + 4];
        assert!(write(&mut b, &h));
        assert_eq!(parse(&b), Ok(h));
        assert_eq!(
            parse(&b[..MESH_HEADER_LEN]),
            Ok(h),
            "empty e2e part parses; the e2e layer refuses it"
        );
        assert_eq!(parse(&b[..MESH_HEADER_LEN - 1]), Err(Truncated));
        assert_eq!(parse(&[]), Err(Truncated));
        assert!(!write(&mut [0u8; 5], &h));
        assert_eq!(decrement_ttl(&mut b), Some(2));
        assert_eq!(decrement_ttl(&mut b), Some(1));
        assert_eq!(decrement_ttl(&mut b), None);
        assert_eq!(decrement_ttl(&mut []), None);
    }

    #[test]
    fn layouts() {
        assert_eq!(layout(false, 20), Some((0..17, 17..20)));
        assert_eq!(layout(true, 20), Some((3..20, 0..3)));
        assert_eq!(layout(true, 17), Some((0..17, 0..0)));
        assert_eq!(layout(true, 16), None);
        assert_eq!(layout(false, 0), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(d in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let _ = parse(&d);
            let mut d = d;
            let _ = decrement_ttl(&mut d);
        }
    }
}
