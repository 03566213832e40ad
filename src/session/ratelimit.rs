//! Token buckets for handshake work (wireguard-go `ratelimiter/ratelimiter.go`), sans-IO:
//! one bucket, a table of buckets per source with bounded memory, and the load meter that
//! says when the node is "under load". Invariants: time only comes in as `now`; a table never
//! holds more than its `max_entries`; a source not in a full table is refused, not admitted.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Packets per second, sustained.
    pub per_sec: u64,
    /// Packets allowed at once after an idle spell.
    pub burst: u64,
}

impl Limit {
    /// Nanoseconds of credit one packet costs (wireguard-go's `packetCost`).
    fn cost(self) -> u64 {
        1_000_000_000 / self.per_sec.max(1)
    }

    fn max_tokens(self) -> u64 {
        self.cost().saturating_mul(self.burst.max(1))
    }
}

/// One token bucket; tokens are nanoseconds of credit, as in wireguard-go.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: Limit, now: Instant) -> Self {
        TokenBucket {
            tokens: limit.max_tokens(),
            last: now,
        }
    }

    /// Take one packet's worth of credit if there is enough.
    pub fn allow(&mut self, limit: Limit, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.last = self.last.max(now);
        let add = u64::try_from(elapsed).unwrap_or(u64::MAX);
        self.tokens = self.tokens.saturating_add(add).min(limit.max_tokens());
        if self.tokens >= limit.cost() {
            self.tokens -= limit.cost();
            true
        } else {
            false
        }
    }
}

/// Entries idle this long are full again and are forgotten (wireguard-go's
/// `garbageCollectTime`).
pub const GARBAGE_COLLECT_TIME: Duration = Duration::from_secs(1);

/// A token bucket per source key, with at most `max_entries` sources remembered.
#[derive(Debug)]
pub struct RateLimiter<K> {
    limit: Limit,
    max_entries: usize,
    table: HashMap<K, TokenBucket>,
    next_gc: Instant,
}

impl<K: Hash + Eq + Copy> RateLimiter<K> {
    /// An empty table.
    pub fn new(limit: Limit, max_entries: usize, now: Instant) -> Self {
        RateLimiter {
            limit,
            max_entries,
            table: HashMap::new(),
            next_gc: now + GARBAGE_COLLECT_TIME,
        }
    }

    fn collect(&mut self, now: Instant) {
        self.next_gc = now + GARBAGE_COLLECT_TIME;
        self.table
            .retain(|_, b| now.saturating_duration_since(b.last) <= GARBAGE_COLLECT_TIME);
    }

    /// May `key` send one more packet now?
    pub fn allow(&mut self, key: K, now: Instant) -> bool {
        if now >= self.next_gc {
            self.collect(now);
        }
        if let Some(b) = self.table.get_mut(&key) {
            return b.allow(self.limit, now);
        }
        if self.table.len() >= self.max_entries {
            self.collect(now);
            if self.table.len() >= self.max_entries {
                // As the Linux ratelimiter: a full table refuses newcomers rather than
                // growing, so spoofed sources cost memory only up to the cap.
                return false;
            }
        }
        let mut b = TokenBucket::new(self.limit, now);
        let ok = b.allow(self.limit, now);
        self.table.insert(key, b);
        ok
    }

    /// Sources remembered now.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no source is remembered.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// The rate-limiter key of an address: IPv4 in full, IPv6 by its /64, as the Linux
/// ratelimiter does (one host usually owns a whole /64, and would otherwise get 2^64 buckets).
pub fn ip_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_ipv6_mapped().octets(),
            None => {
                let mut o = a.octets();
                o[8..].fill(0);
                o
            }
        },
    }
}

/// How long the node stays under load once it was (wireguard-go's `UnderLoadAfterTime`).
pub const UNDER_LOAD_AFTER_TIME: Duration = Duration::from_secs(1);
/// Initiations per second (with a valid mac1) the node takes without calling it load. Where
/// WireGuard watches its handshake queue (load at 1/8 of 1024 slots), our single event loop
/// has no queue: the arrival rate is the signal.
pub const UNDER_LOAD_INITIATIONS: Limit = Limit {
    per_sec: 64,
    burst: 128,
};

/// Decides "under load" from the handshakes that arrive.
#[derive(Debug)]
pub struct LoadMeter {
    bucket: TokenBucket,
    until: Option<Instant>,
}

impl LoadMeter {
    /// Not under load.
    pub fn new(now: Instant) -> Self {
        LoadMeter {
            bucket: TokenBucket::new(UNDER_LOAD_INITIATIONS, now),
            until: None,
        }
    }

    /// Count one initiation that passed mac1.
    pub fn note(&mut self, now: Instant) {
        if !self.bucket.allow(UNDER_LOAD_INITIATIONS, now) {
            self.until = Some(now + UNDER_LOAD_AFTER_TIME);
        }
    }

    /// Whether we are under load at `now`.
    pub fn under_load(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limit = Limit {
        per_sec: 20,
        burst: 5,
    };

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(L, t0);
        assert_eq!((0..10).filter(|_| b.allow(L, t0)).count(), 5);
        assert!(!b.allow(L, t0 + Duration::from_millis(49)));
        assert!(b.allow(L, t0 + Duration::from_millis(50)));
        // A long idle spell refills to the burst, not beyond.
        let t1 = t0 + Duration::from_secs(100);
        assert_eq!((0..10).filter(|_| b.allow(L, t1)).count(), 5);
        // Time going backwards takes nothing and gives nothing.
        assert!(!b.allow(L, t0));
    }

    #[test]
    fn sources_are_limited_separately_and_the_table_is_bounded() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(L, 3, t0);
        assert_eq!((0..10).filter(|_| r.allow(1u32, t0)).count(), 5);
        assert!(r.allow(2, t0));
        assert!(r.allow(3, t0));
        assert!(!r.allow(4, t0), "full table refuses newcomers");
        assert_eq!(r.len(), 3);
        // Idle entries are collected and make room.
        let t1 = t0 + GARBAGE_COLLECT_TIME + Duration::from_millis(1);
        assert!(r.allow(4, t1));
        assert_eq!(r.len(), 1);
        // A million spoofed sources never grow it past the cap.
        let mut r = RateLimiter::new(L, 1000, t0);
        for k in 0..1_000_000u32 {
            r.allow(k, t0 + Duration::from_micros(u64::from(k)));
        }
        assert!(r.len() <= 1000);
    }

    #[test]
    fn ip_keys_group_ipv6_by_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("v6");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("v6");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let v4: IpAddr = "198.18.0.1".parse().expect("v4");
        let mapped: IpAddr = "::ffff:198.18.0.1".parse().expect("mapped");
        let other: IpAddr = "198.18.0.2".parse().expect("v4");
        assert_eq!(ip_key(v4), ip_key(mapped));
        assert_ne!(ip_key(v4), ip_key(other));
    }

    #[test]
    fn load_comes_with_a_burst_and_lasts_a_second() {
        let t0 = Instant::now();
        let mut m = LoadMeter::new(t0);
        for _ in 0..UNDER_LOAD_INITIATIONS.burst {
            m.note(t0);
        }
        assert!(!m.under_load(t0));
        m.note(t0);
        assert!(m.under_load(t0));
        assert!(m.under_load(t0 + Duration::from_millis(999)));
        assert!(!m.under_load(t0 + UNDER_LOAD_AFTER_TIME));
        // A steady trickle below the rate never counts as load.
        let mut m = LoadMeter::new(t0);
        for k in 0..1000u64 {
            m.note(t0 + Duration::from_millis(20 * k));
            assert!(!m.under_load(t0 + Duration::from_millis(20 * k)));
        }
    }
}
