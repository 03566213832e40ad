//! Budgets that bound what one neighbour can make us do, whatever it sends: token buckets per
//! neighbour for requests (each answered request costs us an update or a forwarded request)
//! and for signature verifications (about 30 us each), and the expiry cap on the routes it
//! holds. Invariant: a bucket never holds more than its burst, so a neighbour silent for an
//! hour gets no bigger flood.

use std::time::Instant;

use crate::wire::routing::MAX_TLVS_PER_MESSAGE;

/// Specific route requests and seqno requests answered per neighbour per second, sustained
/// (about 15 KB/s of updates). An honest neighbour sends no specific route requests, and a
/// seqno request per destination it is starved of (RFC 8966 §3.8.2.1), resent 3 times with
/// doubling timeout (Appendix B).
pub(crate) const REQUEST_RATE_PER_SEC: u64 = 128;

/// Requests answered in a burst: 16 full messages, enough for a neighbour that lost a subtree
/// of a thousand destinations at once.
pub(crate) const REQUEST_BURST: u64 = 16 * MAX_TLVS_PER_MESSAGE as u64;

/// Signature verifications per neighbour per second, sustained: under 1 % of a core.
pub(crate) const VERIFY_RATE_PER_SEC: u64 = 256;

/// Verifications in a burst, at least: a whole table from a neighbour whose link just came up
/// (the burst is raised to `max_routes_per_neighbour` when that is configured higher). Copies of an
/// announcement already verified cost nothing, so steady state uses almost none.
pub(crate) const VERIFY_BURST: u64 = super::config::MAX_ROUTES_PER_NEIGHBOUR as u64;

/// A route's expiry is at most this many times `route_expiry`, whatever update interval the
/// neighbour announces (the wire allows 655 s, so 38 minutes of a route left idle).
pub(crate) const MAX_EXPIRY_FACTOR: u32 = 4;

/// A token bucket in thousandths of a token, refilled from the instants it is given.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    milli: u64,
    at: Option<Instant>,
    burst: u64,
    rate: u64,
}

impl Bucket {
    /// A full bucket of `burst` tokens, refilled at `rate` a second.
    pub fn new(burst: u64, rate: u64) -> Self {
        Bucket {
            milli: burst * 1000,
            at: None,
            burst,
            rate,
        }
    }

    /// Take one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let ms =
                u64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(u64::MAX);
            self.milli = self
                .milli
                .saturating_add(ms.saturating_mul(self.rate))
                .min(self.burst * 1000);
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
        let mut b = Bucket::new(64, 16);
        assert_eq!((0..100).filter(|_| b.take(t)).count(), 64);
        let later = t + Duration::from_secs(10);
        // Ten seconds refill 160 tokens, capped at the burst.
        assert_eq!((0..100).filter(|_| b.take(later)).count(), 64);
        let soon = later + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| b.take(soon)).count(), 8);
    }
}
