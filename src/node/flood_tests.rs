//! Handshake floods at a sans-IO node (issue 12): replays are refused before any DH, and
//! under load an honest peer still connects through a cookie reply and mac2.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::session::handshake::{PeerKeys, initiate, tai64n};

const T0_UNIX: u128 = 1_700_000_000_000_000_000;

fn ident(n: u8) -> Identity {
    Identity::from_secret([n; 32])
}

fn ep(last: u8) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, last], 51820))
}

fn node(i: &Identity, peer: &Identity, at: SocketAddr, now: Instant) -> Node {
    let peers = [PeerConfig {
        id: peer.id(),
        endpoint: Some(at),
    }];
    Node::new(i, &peers, NodeConfig::default(), now, T0_UNIX, 9).expect("node")
}

/// Deliver datagrams between `a` (at ep(1)) and `b` (at ep(2)) until quiet.
fn pump(a: &mut Node, b: &mut Node, now: Instant) {
    for _ in 0..10 {
        let mut moved = false;
        while let Some(mut t) = a.poll_transmit() {
            if t.dst == ep(2) {
                b.handle_udp(now, ep(1), &mut t.data);
                moved = true;
            }
        }
        while let Some(mut t) = b.poll_transmit() {
            if t.dst == ep(1) {
                a.handle_udp(now, ep(2), &mut t.data);
                moved = true;
            }
        }
        if !moved {
            return;
        }
    }
}

fn has_session(n: &mut Node, to: &Identity, now: Instant) -> bool {
    let pkt = {
        let b =
            etherparse::PacketBuilder::ipv4(n.id().ipv4().octets(), to.id().ipv4().octets(), 64)
                .udp(1, 2);
        let mut out = Vec::new();
        b.write(&mut out, b"x").expect("packet");
        out
    };
    let mut buf = vec![0u8; HEADROOM + pkt.len() + TAILROOM];
    buf[HEADROOM..HEADROOM + pkt.len()].copy_from_slice(&pkt);
    n.handle_tun(now, &mut buf, pkt.len()).is_some()
}

#[test]
fn replays_of_a_captured_initiation_cost_one_dh() {
    let (ia, ib) = (ident(1), ident(2));
    let t0 = Instant::now();
    let mut a = node(&ia, &ib, ep(2), t0);
    let pk = PeerKeys::new(&ia.id()).expect("key");
    let (_, captured) = initiate(
        &handshake::StaticKeys::new(&ib),
        &pk,
        5,
        tai64n(T0_UNIX - 1_000_000_000),
    )
    .expect("init");
    for k in 0..1000u16 {
        let mut m = captured.clone();
        let from = SocketAddr::from(([198, 18, 0, 66], 1000 + k));
        a.handle_udp(t0, from, &mut m);
    }
    let d = a.drops();
    // The first one is decrypted and answered (the timestamp is newer than none); every copy
    // after it is refused as a replay before any Diffie-Hellman.
    assert_eq!(d.get(DropReason::ReplayedInitiation), 999);
    assert_eq!(d.get(DropReason::StaleInitiation), 0);
}

#[test]
fn under_load_an_honest_peer_connects_through_a_cookie() {
    let (ia, ib) = (ident(1), ident(2));
    let t0 = Instant::now();
    let mut a = node(&ia, &ib, ep(2), t0);
    let mut b = node(&ib, &ia, ep(1), t0);
    // A flood of unknown keys with a valid mac1 puts A under load.
    let pk = PeerKeys::new(&ia.id()).expect("key");
    let pool: Vec<Vec<u8>> = (0..200u8)
        .map(|n| {
            let id = Identity::from_secret([
                n, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd,
                0xfe, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
            ]);
            initiate(&handshake::StaticKeys::new(&id), &pk, 1, tai64n(T0_UNIX))
                .expect("init")
                .1
        })
        .collect();
    let flooder = SocketAddr::from(([198, 18, 0, 66], 4444));
    for k in 0..400 {
        let mut m = pool[k % pool.len()].clone();
        a.handle_udp(t0, flooder, &mut m);
    }
    assert!(a.handshakes_under_load(t0));
    let cookies = a.drops().get(DropReason::CookieSent);
    assert!(cookies > 0, "cookie replies under load");
    assert!(a.drops().get(DropReason::ReplayedInitiation) > 0);
    while a.poll_transmit().is_some() {} // the flooder's cookie replies
    // B starts: A answers its initiation with a cookie, B resends with mac2 and gets in.
    let t1 = t0 + Duration::from_millis(10);
    b.start(t1);
    pump(&mut a, &mut b, t1);
    assert!(a.handshakes_under_load(t1));
    assert_eq!(a.drops().get(DropReason::CookieSent), cookies + 1);
    assert_eq!(b.drops().get(DropReason::CookieReceived), 1);
    assert!(has_session(&mut b, &ia, t1), "B connected under load");
    // A forged or repeated cookie reply is refused.
    let mut junk = vec![0u8; crate::wire::outer::COOKIE_REPLY_LEN];
    junk[0] = crate::wire::outer::MSG_COOKIE_REPLY;
    b.handle_udp(t1, ep(1), &mut junk);
    assert_eq!(b.drops().get(DropReason::BadCookie), 1);
}
