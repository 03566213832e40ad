//! Exit probes (DESIGN.md §6, issue 9 "Failover"), the plaintext of an end-to-end transport
//! message of kind `Probe`: `type u8 (1 request, 2 reply) | nonce u64 big-endian`. Invariant:
//! parsing checks the exact length and the type; anything else is refused, never panics.

/// Bytes of a probe.
pub const PROBE_LEN: usize = 1 + 8;
const REQUEST: u8 = 1;
const REPLY: u8 = 2;

/// A probe message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// "Do you still serve as an exit?"
    Request(u64),
    /// "Yes": the nonce of the request answered.
    Reply(u64),
}

/// Not a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed exit probe")]
pub struct Malformed;

impl Probe {
    /// The wire bytes.
    pub fn encode(self) -> [u8; PROBE_LEN] {
        let (t, n) = match self {
            Probe::Request(n) => (REQUEST, n),
            Probe::Reply(n) => (REPLY, n),
        };
        let mut b = [0u8; PROBE_LEN];
        b[0] = t;
        b[1..].copy_from_slice(&n.to_be_bytes());
        b
    }

    /// Parse exactly one probe.
    pub fn decode(b: &[u8]) -> Result<Probe, Malformed> {
        let b: &[u8; PROBE_LEN] = b.try_into().map_err(|_| Malformed)?;
        let (t, rest) = b.split_first().ok_or(Malformed)?;
        let n = u64::from_be_bytes(rest.try_into().map_err(|_| Malformed)?);
        match *t {
            REQUEST => Ok(Probe::Request(n)),
            REPLY => Ok(Probe::Reply(n)),
            _ => Err(Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_edges() {
        for p in [Probe::Request(0), Probe::Reply(u64::MAX), Probe::Request(7)] {
            assert_eq!(Probe::decode(&p.encode()), Ok(p));
        }
        let good = Probe::Request(5).encode();
        assert_eq!(Probe::decode(&good[..PROBE_LEN - 1]), Err(Malformed));
        assert_eq!(
            Probe::decode(&[good.as_slice(), &[0]].concat()),
            Err(Malformed)
        );
        assert_eq!(Probe::decode(&[]), Err(Malformed));
        for t in [0u8, 3, 255] {
            let mut b = good;
            b[0] = t;
            assert_eq!(Probe::decode(&b), Err(Malformed));
        }
    }
}
