//! Per-packet costs of the data path, one operation at a time: seal, open, a relay's
//! header-only seal, the replay window, the route lookup, the payer's meter and the payee's
//! enforcement check, and a whole `Node::handle_tun` / `handle_udp` on a live direct session.
//! 1400-byte packets.
//!
//! `cargo bench --bench per_packet` prints wall-clock ns per operation (noisy on a shared host).
//! `scripts/bench-callgrind.sh` runs the same binary under `valgrind --tool=callgrind`, which
//! counts instructions only inside `measure` (`--toggle-collect`), so setup is never counted
//! and the figure does not depend on the host's load: instructions per operation, the number
//! to compare between commits (docs/benchmarks.md, "Per-packet instruction counts").
//!
//! Run one op: `cargo bench --bench per_packet -- OP [ITERS]`.

#[path = "../tests/routesim/mod.rs"]
mod routesim;

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bitcloud::identity::Identity;
use bitcloud::money::{
    Amount, ChannelParams, PayeeChannel, PayeeConfig, PayerChannel, PayerConfig, Price,
};
use bitcloud::node::{HEADROOM, Node, NodeConfig, PeerConfig, TAILROOM, UdpOut};
use bitcloud::route::RouterConfig;
use bitcloud::session::aead::{Cipher, DefaultAead, TAG_LEN};
use bitcloud::session::handshake::SessionKeys;
use bitcloud::session::keypair::Keypair;
use bitcloud::session::replay::ReplayWindow;
use bitcloud::wire::outer::{Kind, Message, TRANSPORT_HEADER_LEN, parse};

/// Bytes of plaintext per packet: a full-MTU TCP segment's worth.
const PACKET: usize = 1400;
/// Operations per run unless the command line says otherwise.
const DEFAULT_ITERS: usize = 20_000;

const OPS: &[&str] = &[
    "seal",
    "open",
    "seal_aes",
    "open_aes",
    "seal_header_aes",
    "replay",
    "route",
    "meter_payer",
    "meter_payee",
    "node_tun",
    "node_udp",
];

/// The only function callgrind collects in (`--toggle-collect=*per_packet*measure*`): runs
/// `op` `iters` times. Never inlined, so its symbol exists.
#[inline(never)]
fn measure(iters: usize, op: &mut dyn FnMut(usize)) {
    let t = Instant::now();
    for i in 0..iters {
        op(i);
    }
    ELAPSED.set(t.elapsed());
}

thread_local! {
    /// Wall time of the last `measure` (setup excluded).
    static ELAPSED: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

fn keypairs(cipher: Cipher) -> (Keypair<DefaultAead>, Keypair<DefaultAead>) {
    let now = Instant::now();
    let a = SessionKeys {
        send: [1; 32],
        recv: [2; 32],
        cipher,
    };
    let b = SessionKeys {
        send: [2; 32],
        recv: [1; 32],
        cipher,
    };
    (
        Keypair::new(&a, 10, 20, now, true),
        Keypair::new(&b, 20, 10, now, false),
    )
}

fn ident(n: u8) -> Identity {
    Identity::from_secret([n; 32])
}

fn ep(last: u8) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, last], 51820))
}

/// Two nodes with a finished handshake between them (in memory, no sockets).
fn node_pair(now: Instant) -> (Node, Node, Identity, Identity) {
    let (ia, ib) = (ident(1), ident(2));
    let peer = |i: &Identity, e| PeerConfig {
        id: i.id(),
        endpoint: Some(e),
    };
    let mut a = Node::new(&ia, &[peer(&ib, ep(2))], NodeConfig::default(), now, 0, 1).unwrap();
    let mut b = Node::new(&ib, &[peer(&ia, ep(1))], NodeConfig::default(), now, 0, 2).unwrap();
    a.start(now);
    for _ in 0..10 {
        while let Some(mut t) = a.poll_transmit() {
            b.handle_udp(now, ep(1), &mut t.data);
        }
        while let Some(mut t) = b.poll_transmit() {
            a.handle_udp(now, ep(2), &mut t.data);
        }
    }
    (a, b, ia, ib)
}

/// A 1400-byte IPv4 UDP packet from `src` to `dst`'s overlay addresses.
fn ip_packet(src: &Identity, dst: &Identity) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src.id().ipv4().octets(), dst.id().ipv4().octets(), 64)
        .udp(1000, 2000);
    let payload = vec![0x5a; PACKET - 28];
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    out
}

/// Build the state for `op` and run it `iters` times inside `measure`.
fn run(op: &str, iters: usize) {
    let now = Instant::now();
    // `seal`/`open`: ChaCha20-Poly1305; `_aes`: AES-256-GCM (docs/aead.md).
    let cipher = if op.ends_with("_aes") {
        Cipher::Aes256Gcm
    } else {
        Cipher::ChaCha20Poly1305
    };
    match op {
        "seal" | "seal_aes" => {
            let (mut a, _) = keypairs(cipher);
            let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + PACKET + TAG_LEN];
            measure(iters, &mut |_| {
                black_box(a.seal(Kind::Packet, &mut buf, PACKET));
            });
        }
        "seal_header_aes" => {
            // A relay's link crypto per frame (`Kind::MeshSealed`, docs/relay-crypto.md): only
            // the 17-byte mesh header is encrypted, whatever the frame's size, so this is
            // nearly all per-call cost (the floor of what a relay spends on crypto per hop).
            let (mut a, _) = keypairs(Cipher::Aes256Gcm);
            let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + PACKET + TAG_LEN];
            measure(iters, &mut |_| {
                black_box(a.seal(Kind::MeshSealed, &mut buf, PACKET));
            });
        }
        "open" | "open_aes" => {
            // Sealed up front (a fixed count, so setup never depends on `iters`).
            let (mut a, mut b) = keypairs(cipher);
            let mut msgs: Vec<Vec<u8>> = (0..iters)
                .map(|_| {
                    let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + PACKET + TAG_LEN];
                    a.seal(Kind::Packet, &mut buf, PACKET).unwrap();
                    buf
                })
                .collect();
            let hdrs: Vec<_> = msgs
                .iter()
                .map(|m| match parse(m) {
                    Ok(Message::Transport(h)) => h,
                    _ => panic!("not a transport message"),
                })
                .collect();
            measure(iters, &mut |i| {
                let r = b.open(&hdrs[i], &mut msgs[i]);
                assert!(r.is_ok());
            });
        }
        "replay" => {
            let mut w = ReplayWindow::default();
            measure(iters, &mut |i| {
                let c = black_box(i as u64);
                let _ = black_box(w.check(c));
                let _ = black_box(w.update(c));
            });
        }
        "route" => {
            let cfg = RouterConfig::default();
            let hello = cfg.hello_interval;
            let mut sim = routesim::Sim::new(12, 0x5EED, cfg);
            sim.random_topology(12);
            // Every node boots within the first hello interval.
            sim.run_for(hello);
            sim.converge(Duration::from_millis(10), Duration::from_secs(60))
                .expect("converges");
            let r = sim.routers[0].as_ref().unwrap();
            let dsts: Vec<IpAddr> = sim.ids[1..]
                .iter()
                .flat_map(|id| [IpAddr::V4(id.ipv4()), IpAddr::V6(id.ipv6())])
                .collect();
            assert!(dsts.iter().all(|d| r.lookup_addr(*d).is_some()));
            measure(iters, &mut |i| {
                black_box(r.lookup_addr(black_box(dsts[i % dsts.len()])));
            });
        }
        "meter_payer" | "meter_payee" => {
            let params = ChannelParams {
                payer: ident(1).id(),
                payee: ident(2).id(),
                nonce: 1,
            };
            let price = Price::new(1000, 1);
            if op == "meter_payer" {
                let mut p = PayerChannel::new(params, PayerConfig::default(), price);
                measure(iters, &mut |_| p.on_data_sent_at(price, black_box(1400)));
                black_box(p.owed());
            } else {
                let cfg = PayeeConfig {
                    max_cumulative: Amount::MAX,
                    ..PayeeConfig::default()
                };
                let mut p = PayeeChannel::new(params, cfg, price);
                measure(iters, &mut |_| {
                    black_box(p.allow_at(price, black_box(1400), now));
                });
            }
        }
        "node_tun" => {
            let (mut a, _b, ia, ib) = node_pair(now);
            let pkt = ip_packet(&ia, &ib);
            let mut buf = vec![0u8; HEADROOM + pkt.len() + TAILROOM];
            buf[HEADROOM..HEADROOM + pkt.len()].copy_from_slice(&pkt);
            assert!(a.handle_tun(now, &mut buf.clone(), pkt.len()).is_some());
            measure(iters, &mut |_| {
                // Sealing encrypts in place: put the 20-byte IP header back (the payload's
                // content does not matter to the cost).
                buf[HEADROOM..HEADROOM + 20].copy_from_slice(&pkt[..20]);
                black_box(a.handle_tun(now, &mut buf, pkt.len()));
            });
        }
        "node_udp" => {
            let (mut a, mut b, ia, ib) = node_pair(now);
            let pkt = ip_packet(&ia, &ib);
            let mut msgs: Vec<Vec<u8>> = (0..iters)
                .map(|_| {
                    let mut buf = vec![0u8; HEADROOM + pkt.len() + TAILROOM];
                    buf[HEADROOM..HEADROOM + pkt.len()].copy_from_slice(&pkt);
                    let (r, _) = a.handle_tun(now, &mut buf, pkt.len()).unwrap();
                    buf[r].to_vec()
                })
                .collect();
            measure(iters, &mut |i| {
                let out = b.handle_udp(now, ep(1), &mut msgs[i]);
                assert!(matches!(out, UdpOut::Tun(_)));
            });
        }
        other => panic!("unknown op {other}; ops: {OPS:?}"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else is OP and ITERS.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let iters = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_ITERS);
    let ops: Vec<&str> = match args.first() {
        Some(op) => vec![op.as_str()],
        None => OPS.to_vec(),
    };
    for op in ops {
        run(op, iters);
        println!(
            "{op:<12} {:>9.1} ns/op (wall clock, {iters} ops)",
            ELAPSED.get().as_nanos() as f64 / iters as f64
        );
    }
}
