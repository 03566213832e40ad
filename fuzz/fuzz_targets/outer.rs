//! Outer messages through the handshake flood defence: arbitrary datagrams are parsed, and
//! initiations go through the guard's cheap checks (mac1, replays, mac2 and the limiters,
//! under load and not) and cookie replies through the initiator's cookie jar. Never panics;
//! nothing forged passes: a datagram the fuzzer made gets past mac1 or opens as a cookie
//! only if it is byte for byte one the test built with the real keys.
#![no_main]

use std::time::{Duration, Instant};

use bitcloud::drops::DropReason;
use bitcloud::identity::Identity;
use bitcloud::session::cookie::{CookieChecker, CookieJar, cookie_key, mac};
use bitcloud::session::guard::{HandshakeGuard, Screen, Source};
use bitcloud::session::handshake::{StaticKeys, mac1_key};
use bitcloud::wire::outer::{self, MAC_LEN, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let me = Identity::from_secret([1; 32]);
    let keys = StaticKeys::new(&me);
    let t0 = Instant::now();
    let mut guard = HandshakeGuard::new(&me, 1, t0);
    let mut checker = CookieChecker::new(&[2; 32], &me.x25519_public(), 1);
    let from = "198.18.0.2:51820".parse().unwrap();
    for (k, chunk) in data.split(|b| *b == 0xff).enumerate() {
        let now = t0 + Duration::from_millis(k as u64);
        match outer::parse(chunk) {
            Ok(Message::Init(i)) => {
                assert_eq!(i.mac2_input.len() + MAC_LEN, chunk.len());
                assert_eq!(i.ephemeral.len(), 32);
                // The fuzzer does not know mac1 under our key: it never gets past it.
                let s = guard.screen(&keys, &i, Source::Addr(from), now);
                assert!(matches!(s, Screen::Drop(DropReason::BadMac)), "{s:?}");
                // With mac1 made right (the key is public), the deeper checks run: under load
                // and not, from an address and from a hop; the fuzzed mac2 never passes.
                let mut fixed = chunk.to_vec();
                let at = outer::HANDSHAKE_INIT_LEN - 2 * MAC_LEN;
                let m1 = mac(&mac1_key(&me.x25519_public()), &fixed[..at]);
                fixed[at..at + MAC_LEN].copy_from_slice(&m1);
                let Ok(Message::Init(f)) = outer::parse(&fixed) else { panic!("still an init") };
                for n in 0..300 {
                    let src = if n % 2 == 0 { Source::Addr(from) } else { Source::Hop(me.id()) };
                    match guard.screen(&keys, &f, src, now) {
                        Screen::Drop(DropReason::BadMac) => panic!("mac1 was made right"),
                        Screen::Cookie(why, reply) => {
                            assert!(matches!(why, DropReason::CookieSent | DropReason::BadMac2));
                            assert!(matches!(outer::parse(&reply), Ok(Message::Cookie(_))));
                        }
                        _ => {}
                    }
                }
                guard.processed(&f);
                let again = guard.screen(&keys, &f, Source::Addr(from), now);
                assert!(matches!(again, Screen::Drop(DropReason::ReplayedInitiation)), "{again:?}");
            }
            Ok(Message::Cookie(c)) => {
                let mut jar = CookieJar::default();
                assert!(!jar.consume(&cookie_key(&me.x25519_public()), &[0; MAC_LEN], &c, now));
                assert!(jar.fresh(now).is_none());
                // A real reply with the fuzzed receiver opens, and one changed bit does not.
                let real = checker.reply(c.receiver, c.sealed.get(..MAC_LEN).unwrap_or(&[0; MAC_LEN]), from, now);
                let Ok(Message::Cookie(r)) = outer::parse(&real) else { panic!("own reply parses") };
                assert_eq!(r.receiver, c.receiver);
                let aad = c.sealed.get(..MAC_LEN).unwrap_or(&[0; MAC_LEN]);
                assert!(jar.consume(&cookie_key(&me.x25519_public()), aad, &r, now));
                let mut bent = real;
                bent[8 + (chunk.len() % 56)] ^= 1;
                let Ok(Message::Cookie(b)) = outer::parse(&bent) else { panic!("parses") };
                assert!(!CookieJar::default().consume(&cookie_key(&me.x25519_public()), aad, &b, now));
            }
            Ok(Message::Resp(r)) => assert_eq!(r.mac1_input.len() + 2 * MAC_LEN, chunk.len()),
            Ok(Message::Transport(h)) => assert!(chunk.len() >= outer::TRANSPORT_MIN_LEN && h.kind == chunk[1]),
            Err(_) => {}
        }
    }
});
