//! Budgets that bound what one neighbour can make us do, whatever it sends: a token bucket
//! per neighbour for requests (each answered request costs us an update or a forwarded
//! request), and the cap on the route entries it may hold in our table. Invariant: a bucket
//! never holds more than its burst, so a neighbour silent for an hour gets no bigger flood.

use std::time::Instant;

use crate::wire::routing::MAX_TLVS_PER_MESSAGE;

/// Specific route requests and seqno requests answered per neighbour per second, sustained.
/// An honest neighbour sends a seqno request per destination it loses, resent 3 times with
/// doubling timeout (RFC 8966 Appendix B), and no specific route requests at all.
pub(crate) const REQUEST_RATE_PER_SEC: u64 = 16;

/// Requests answered in a burst: one full message of them.
pub(crate) const REQUEST_BURST: u64 = MAX_TLVS_PER_MESSAGE as u64;

/// A route's expiry is at most this many times `route_expiry`, whatever update interval the
/// neighbour announces (the wire allows 655 s, so 38 minutes of a route left idle).
pub(crate) const MAX_EXPIRY_FACTOR: u32 = 4;

/// A token bucket in thousandths of a token, refilled from the instants it is given.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    milli: u64,
    at: Option<Instant>,
}

impl Bucket {
    /// A full bucket.
    pub fn new() -> Self {
        Bucket {
            milli: REQUEST_BURST * 1000,
            at: None,
        }
    }

    /// Take one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let ms =
                u64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(u64::MAX);
            self.milli = self
                .milli
                .saturating_add(ms.saturating_mul(REQUEST_RATE_PER_SEC))
                .min(REQUEST_BURST * 1000);
        }
        self.at = Some(now);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t = Instant::now();
        let mut b = Bucket::new();
        assert_eq!((0..100).filter(|_| b.take(t)).count(), 64);
        let later = t + Duration::from_secs(10);
        // Ten seconds refill 160 tokens, capped at the burst.
        assert_eq!((0..100).filter(|_| b.take(later)).count(), 64);
        let soon = later + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| b.take(soon)).count(), 8);
    }
}
