//! The cheap checks an initiation passes before we spend a Diffie-Hellman on it (WireGuard
//! §5.4.7 and wireguard-go `RoutineHandshake`, in this order): mac1, a replay of an
//! ephemeral key we already processed, and under load a valid mac2 (else a cookie reply) and
//! the per-source limit; then always the node-wide limit. Invariants: every refusal names its
//! `DropReason`; memory is bounded (replay cache and limiter tables have caps); sans-IO.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use super::cookie::CookieChecker;
use super::handshake::{self, StaticKeys};
use super::ratelimit::{Limit, LoadMeter, RateLimiter, TokenBucket, ip_key};
use crate::drops::DropReason;
use crate::identity::{Identity, NodeId};
use crate::wire::outer::{COOKIE_REPLY_LEN, EPHEMERAL_LEN, Init};

/// Per source IP under load, after a valid mac2 (wireguard-go `packetsPerSecond`,
/// `packetsBurstable`).
pub const PER_SOURCE: Limit = Limit {
    per_sec: 20,
    burst: 5,
};
/// Per relaying neighbour for end-to-end initiations under load: one neighbour may carry
/// many distant nodes' handshakes (an exit's clients), so more than one host's share.
pub const PER_HOP: Limit = Limit {
    per_sec: 100,
    burst: 50,
};
/// Node-wide: initiations that may reach the Diffie-Hellman per second (each costs about
/// 0.1 ms of the single event loop; this caps that at a tenth of a core).
pub const GLOBAL: Limit = Limit {
    per_sec: 1000,
    burst: 200,
};
/// Sources a limiter table remembers at most (the Linux ratelimiter's bound, scaled down).
pub const MAX_SOURCES: usize = 8192;
/// Ephemeral keys remembered, of processed initiations and of those answered with a cookie,
/// to refuse their replays before any DH or a second cookie reply.
pub const SEEN_EPHEMERALS: usize = 8192;

/// Where an initiation came from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// A datagram from this address (a link handshake).
    Addr(SocketAddr),
    /// A mesh frame relayed by this authenticated neighbour (an end-to-end handshake).
    Hop(NodeId),
}

/// What to do with an initiation.
#[derive(Debug)]
pub enum Screen {
    /// Go on to the handshake proper.
    Proceed,
    /// Refuse it for this reason.
    Drop(DropReason),
    /// Under load without a valid mac2: answer with this cookie reply (counted as `reason`).
    Cookie(DropReason, [u8; COOKIE_REPLY_LEN]),
}

/// A bounded set of recently processed ephemeral keys, oldest evicted first.
#[derive(Debug, Default)]
struct Seen {
    set: HashSet<[u8; EPHEMERAL_LEN]>,
    order: VecDeque<[u8; EPHEMERAL_LEN]>,
}

impl Seen {
    fn contains(&self, e: &[u8]) -> bool {
        <[u8; EPHEMERAL_LEN]>::try_from(e).is_ok_and(|k| self.set.contains(&k))
    }

    fn insert(&mut self, e: &[u8]) {
        let Ok(k) = <[u8; EPHEMERAL_LEN]>::try_from(e) else {
            return;
        };
        if !self.set.insert(k) {
            return;
        }
        self.order.push_back(k);
        if self.order.len() > SEEN_EPHEMERALS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
    }
}

/// The handshake flood defence of one node.
pub struct HandshakeGuard {
    cookies: CookieChecker,
    load: LoadMeter,
    per_source: RateLimiter<[u8; 16]>,
    per_hop: RateLimiter<NodeId>,
    global: TokenBucket,
    /// Ephemerals of initiations that authenticated.
    seen: Seen,
    /// Ephemerals of initiations answered with a cookie reply.
    cookied: Seen,
}

impl HandshakeGuard {
    /// For the node `identity`; `seed` is fresh at each boot (cookie secrets).
    pub fn new(identity: &Identity, seed: u64, now: Instant) -> Self {
        HandshakeGuard {
            cookies: CookieChecker::new(&identity.x25519_secret(), &identity.x25519_public(), seed),
            load: LoadMeter::new(now),
            per_source: RateLimiter::new(PER_SOURCE, MAX_SOURCES, now),
            per_hop: RateLimiter::new(PER_HOP, MAX_SOURCES, now),
            global: TokenBucket::new(GLOBAL, now),
            seen: Seen::default(),
            cookied: Seen::default(),
        }
    }

    /// Whether handshakes arrive faster than we take them without cookies.
    pub fn under_load(&self, now: Instant) -> bool {
        self.load.under_load(now)
    }

    /// The cheap checks, cheapest first; only `Proceed` may lead to a Diffie-Hellman.
    pub fn screen(
        &mut self,
        local: &StaticKeys,
        init: &Init<'_>,
        src: Source,
        now: Instant,
    ) -> Screen {
        if !handshake::init_mac1_ok(local, init) {
            return Screen::Drop(DropReason::BadMac);
        }
        if self.seen.contains(init.ephemeral) {
            // A replay (or a copy that came two ways): its verdict was given already.
            return Screen::Drop(DropReason::ReplayedInitiation);
        }
        self.load.note(now);
        if self.load.under_load(now) {
            match src {
                Source::Addr(from) => {
                    // Zeros are never a valid mac2: no need to compute the cookie to know.
                    let zeros = init.mac2.iter().all(|b| *b == 0);
                    if zeros || !self.cookies.mac2_ok(init.mac2_input, init.mac2, from, now) {
                        // An honest initiator answers a cookie with mac2 (or a new initiation
                        // after REKEY_TIMEOUT), never with the same one again without it.
                        if self.cookied.contains(init.ephemeral) {
                            return Screen::Drop(DropReason::ReplayedInitiation);
                        }
                        self.cookied.insert(init.ephemeral);
                        let why = if zeros {
                            DropReason::CookieSent
                        } else {
                            DropReason::BadMac2
                        };
                        let reply = self.cookies.reply(init.sender, init.mac1, from, now);
                        return Screen::Cookie(why, reply);
                    }
                    if !self.per_source.allow(ip_key(from.ip()), now) {
                        return Screen::Drop(DropReason::HandshakeRateLimited);
                    }
                }
                // The neighbour is authenticated, so there is no address to prove: no cookie.
                Source::Hop(id) => {
                    if !self.per_hop.allow(id, now) {
                        return Screen::Drop(DropReason::HandshakeRateLimited);
                    }
                }
            }
        }
        if !self.global.allow(GLOBAL, now) {
            return Screen::Drop(DropReason::HandshakeOverload);
        }
        Screen::Proceed
    }

    /// The initiation authenticated (whatever is decided next): its copies are replays.
    pub fn processed(&mut self, init: &Init<'_>) {
        self.seen.insert(init.ephemeral);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::cookie::{CookieJar, cookie_key};
    use crate::session::handshake::{PeerKeys, consume_init, initiate_with_cookie, tai64n};
    use crate::wire::outer::{Message, parse};
    use std::time::Duration;

    fn setup() -> (Identity, StaticKeys, HandshakeGuard, Instant) {
        let me = Identity::from_secret([1; 32]);
        let now = Instant::now();
        let g = HandshakeGuard::new(&me, 7, now);
        (Identity::from_secret([1; 32]), StaticKeys::new(&me), g, now)
    }

    fn init_from(seed: u8, to: &Identity, cookie: Option<[u8; 16]>) -> Vec<u8> {
        let id = Identity::from_secret([seed; 32]);
        let pk = PeerKeys::new(&to.id()).expect("valid key");
        initiate_with_cookie(
            &StaticKeys::new(&id),
            &pk,
            u32::from(seed),
            tai64n(1),
            cookie,
        )
        .expect("initiation")
        .1
    }

    fn screen(g: &mut HandshakeGuard, k: &StaticKeys, m: &[u8], src: Source, t: Instant) -> Screen {
        let Ok(Message::Init(i)) = parse(m) else {
            panic!("init parses")
        };
        g.screen(k, &i, src, t)
    }

    #[test]
    fn mac1_then_replays_are_refused_before_any_dh() {
        let (me, k, mut g, t) = setup();
        let src = Source::Addr("198.18.0.2:1".parse().expect("addr"));
        let mut m = init_from(9, &me, None);
        assert!(matches!(screen(&mut g, &k, &m, src, t), Screen::Proceed));
        let Ok(Message::Init(i)) = parse(&m) else {
            panic!()
        };
        assert!(consume_init(&k, &i).is_ok());
        g.processed(&i);
        assert!(matches!(
            screen(&mut g, &k, &m, src, t),
            Screen::Drop(DropReason::ReplayedInitiation)
        ));
        m[20] ^= 1;
        assert!(matches!(
            screen(&mut g, &k, &m, src, t),
            Screen::Drop(DropReason::BadMac)
        ));
    }

    #[test]
    fn under_load_mac2_is_required_and_a_cookie_gets_through() {
        let (me, k, mut g, t) = setup();
        let from: SocketAddr = "198.18.0.2:5000".parse().expect("addr");
        let m = init_from(9, &me, None);
        // A burst of initiations puts the node under load.
        let mut cookies = 0;
        for _ in 0..200 {
            if let Screen::Cookie(why, _) = screen(&mut g, &k, &m, Source::Addr(from), t) {
                assert_eq!(why, DropReason::CookieSent);
                cookies += 1;
            }
        }
        assert!(g.under_load(t));
        assert_eq!(
            cookies, 1,
            "one cookie reply per initiation, its copies are replays"
        );
        assert!(matches!(
            screen(&mut g, &k, &m, Source::Addr(from), t),
            Screen::Drop(DropReason::ReplayedInitiation)
        ));
        let m = init_from(9, &me, None); // a new initiation (new ephemeral) of the same node
        let Screen::Cookie(_, reply) = screen(&mut g, &k, &m, Source::Addr(from), t) else {
            panic!("cookie reply under load")
        };
        let (Ok(Message::Cookie(r)), Ok(Message::Init(i))) = (parse(&reply), parse(&m)) else {
            panic!("parse")
        };
        let mut jar = CookieJar::default();
        assert!(jar.consume(&cookie_key(&me.x25519_public()), i.mac1, &r, t));
        let with = init_from(9, &me, jar.fresh(t));
        assert!(matches!(
            screen(&mut g, &k, &with, Source::Addr(from), t),
            Screen::Proceed
        ));
        // The cookie is this address's: another port gets a new cookie, counted as bad mac2.
        let other: SocketAddr = "198.18.0.2:5001".parse().expect("addr");
        let elsewhere = init_from(9, &me, jar.fresh(t));
        assert!(matches!(
            screen(&mut g, &k, &elsewhere, Source::Addr(other), t),
            Screen::Cookie(DropReason::BadMac2, _)
        ));
        // With a valid cookie the source is still held to PER_SOURCE.
        let passed = (0..50)
            .filter(|_| {
                matches!(
                    screen(&mut g, &k, &with, Source::Addr(from), t),
                    Screen::Proceed
                )
            })
            .count() as u64;
        assert!(passed < PER_SOURCE.burst, "{passed}");
        assert!(matches!(
            screen(&mut g, &k, &with, Source::Addr(from), t),
            Screen::Drop(DropReason::HandshakeRateLimited)
        ));
        // Load passes a second after the flood stops; then no cookie is needed.
        let t1 = t + Duration::from_secs(2);
        assert!(!g.under_load(t1));
        assert!(matches!(
            screen(&mut g, &k, &m, Source::Addr(from), t1),
            Screen::Proceed
        ));
    }

    #[test]
    fn end_to_end_sources_are_limited_per_hop_and_globally() {
        let (me, k, mut g, t) = setup();
        let hop = Identity::from_secret([5; 32]).id();
        let m = init_from(9, &me, None);
        let passed = (0..2000)
            .filter(|_| matches!(screen(&mut g, &k, &m, Source::Hop(hop), t), Screen::Proceed))
            .count() as u64;
        // The load meter's burst, then the per-hop bucket's; never a cookie.
        assert!(passed <= 128 + PER_HOP.burst + 1, "{passed}");
        assert!(matches!(
            screen(&mut g, &k, &m, Source::Hop(hop), t),
            Screen::Drop(DropReason::HandshakeRateLimited)
        ));
        // Many hops together still meet the node-wide bucket.
        let (_, k, mut g, t) = setup();
        let mut refused = 0;
        for n in 0..200u8 {
            let hop = Identity::from_secret([n; 32]).id();
            for _ in 0..20 {
                if let Screen::Drop(DropReason::HandshakeOverload) =
                    screen(&mut g, &k, &m, Source::Hop(hop), t)
                {
                    refused += 1;
                }
            }
        }
        assert!(refused > 2000, "{refused} refused node-wide");
        // A trickle below the load rate is never refused.
        let (_, k, mut g, t) = setup();
        for n in 0..1000u64 {
            let at = t + Duration::from_millis(20 * n);
            assert!(matches!(
                screen(&mut g, &k, &m, Source::Hop(hop), at),
                Screen::Proceed
            ));
        }
    }
}
