//! A handshake flood at a node (issue 12): replays of a captured initiation of a real peer
//! from many source ports, plus initiations from a pool of unknown keys with a valid mac1, at
//! 50,000+ per second, while an established session carries a ping every 10 ms and a TCP
//! stream. The session must barely notice (ping loss under 1 %, at least half the stream's
//! pre-flood throughput), the node answers with cookie replies, counts the flood by reason,
//! and a peer that starts during the flood still connects (cookie, then mac2). Real daemons
//! in namespaces; needs root, fails rather than skips under CI.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcloud::identity::{Identity, NodeId};
use bitcloud::session::handshake::{PeerKeys, StaticKeys, initiate, tai64n};
use common::{Lab, in_netns, root_or_skip};

/// Initiations per second the flooder aims at (the issue asks for at least 50,000).
const FLOOD_RATE: u64 = 60_000;
/// How long the flood lasts, and the stream's measurement before it.
const FLOOD_TIME: Duration = Duration::from_secs(12);
const BEFORE_TIME: Duration = Duration::from_secs(5);
/// Unknown keys in the flooder's pool (fresh initiations cost the attacker DHs too).
const POOL: usize = 2000;
/// Source ports the flood comes from.
const PORTS: usize = 128;
/// The stream's pacing: at most this many bytes per second (well below what the tunnel
/// carries here, so the ratio measures the flood, not CPU contention with the stream).
const STREAM_RATE: u64 = 4 << 20;

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

/// Ping every 10 ms from `ns` to `dst`, `count` times; (sent, received).
fn ping_10ms(ns: &str, dst: std::net::IpAddr, count: u32) -> (u32, u32) {
    common::ping_counts(ns, dst, count, "0.01")
}

/// A paced TCP stream from `from_ns` to `listen` in `to_ns` until `stop`; the server logs
/// (time, bytes) of every read into `log`.
fn stream(
    from_ns: &str,
    to_ns: &str,
    listen: SocketAddr,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(Instant, usize)>>>,
) -> (std::thread::JoinHandle<usize>, std::thread::JoinHandle<u64>) {
    let server = in_netns(to_ns, move || {
        let l = TcpListener::bind(listen).expect("bind stream server");
        let (mut s, _) = l.accept().expect("stream connects");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let (mut n, mut buf) = (0usize, vec![0u8; 1 << 16]);
        loop {
            // A stream that stalls for 10 s ends here; the throughput figures tell.
            let k = match s.read(&mut buf) {
                Ok(0) | Err(_) => return n,
                Ok(k) => k,
            };
            n += k;
            log.lock().expect("log").push((Instant::now(), k));
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let client = in_netns(from_ns, move || {
        let mut s =
            TcpStream::connect_timeout(&listen, Duration::from_secs(5)).expect("stream connects");
        s.set_write_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let buf = vec![0x5au8; 16 << 10];
        let (t0, mut sent) = (Instant::now(), 0u64);
        while !stop.load(Ordering::Relaxed) {
            let due = (t0.elapsed().as_secs_f64() * STREAM_RATE as f64) as u64;
            if sent >= due {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            if s.write_all(&buf).is_err() {
                break; // stalled for 10 s: the throughput figures tell
            }
            sent += buf.len() as u64;
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        sent
    });
    (server, client)
}

/// Bytes per second the server received in [from, to).
fn rate(log: &[(Instant, usize)], from: Instant, to: Instant) -> f64 {
    let bytes: usize = log
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(_, k)| k)
        .sum();
    bytes as f64 / to.saturating_duration_since(from).as_secs_f64()
}

fn drop_of(st: &serde_json::Value, r: &str) -> u64 {
    st["drops"][r].as_u64().unwrap_or(0)
}

#[test]
fn a_handshake_flood_leaves_an_established_session_alone() {
    if !root_or_skip("a_handshake_flood_leaves_an_established_session_alone") {
        return;
    }
    let t_test = Instant::now();
    let mut lab = Lab::new();
    let (br, a_ns, b_ns, c_ns, f_ns) = (
        lab.ns("x"),
        lab.ns("a"),
        lab.ns("b"),
        lab.ns("c"),
        lab.ns("f"),
    );
    lab.bridge(
        &br,
        &[
            (&a_ns, "198.18.12.1/24"),
            (&b_ns, "198.18.12.2/24"),
            (&c_ns, "198.18.12.3/24"),
            (&f_ns, "198.18.12.4/24"),
        ],
    );
    let mut a = lab.node(&a_ns, "a", "0.0.0.0:51820");
    let mut b = lab.node(&b_ns, "b", "0.0.0.0:51820");
    let mut c = lab.node(&c_ns, "c", "0.0.0.0:51820");
    a.add_peer_at(&b, "198.18.12.2:51820");
    a.add_peer_at(&c, "198.18.12.3:51820");
    b.add_peer_at(&a, "198.18.12.1:51820");
    c.add_peer_at(&a, "198.18.12.1:51820");
    a.start();
    b.start();
    assert!(
        b.wait_ping(a.ipv4, Duration::from_secs(15)).is_some(),
        "the session is up before the flood"
    );

    // The flood's material. A captured initiation of the real peer B (built here with B's
    // key and a timestamp older than B's own, exactly what a recording replays), and
    // initiations from a pool of unknown keys, all with a valid mac1 for A.
    let a_id: NodeId = a.id.parse().expect("node id");
    let a_keys = PeerKeys::new(&a_id).expect("A's key");
    let b_cfg = bitcloud::config::Config::load(&b.cfg).expect("B's config");
    let b_identity = Identity::load(&b_cfg.key_file).expect("B's key");
    let captured = initiate(
        &StaticKeys::new(&b_identity),
        &a_keys,
        0x1234_5678,
        tai64n(unix_nanos() - 30_000_000_000),
    )
    .expect("initiation")
    .1;
    let t_pool = Instant::now();
    let pool: Vec<Vec<u8>> = (0..POOL)
        .map(|k| {
            let id = Identity::generate();
            initiate(
                &StaticKeys::new(&id),
                &a_keys,
                k as u32,
                tai64n(unix_nanos()),
            )
            .expect("initiation")
            .1
        })
        .collect();
    eprintln!(
        "pool of {POOL} unknown-key initiations built in {:?}",
        t_pool.elapsed()
    );

    // The established session's traffic: a paced TCP stream B -> A for the whole test.
    let stop_stream = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (server, client) = stream(
        &b.ns,
        &a.ns,
        SocketAddr::new(a.ipv4, 5012),
        stop_stream.clone(),
        log.clone(),
    );
    std::thread::sleep(Duration::from_secs(1));
    let before_from = Instant::now();
    std::thread::sleep(BEFORE_TIME);
    let before_to = Instant::now();
    let before_st = a.status();

    // The flood: a tight loop over PORTS sockets, paced to FLOOD_RATE.
    let stop_flood = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let (stop_f, sent_f) = (stop_flood.clone(), sent.clone());
    let target: SocketAddr = "198.18.12.1:51820".parse().expect("addr");
    let flooder = in_netns(&f_ns, move || {
        let socks: Vec<UdpSocket> = (0..PORTS)
            .map(|_| UdpSocket::bind("198.18.12.4:0").expect("flood socket"))
            .collect();
        let t0 = Instant::now();
        let mut k = 0u64;
        while !stop_f.load(Ordering::Relaxed) {
            let due = (t0.elapsed().as_secs_f64() * FLOOD_RATE as f64) as u64;
            if k >= due {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            for _ in 0..64 {
                let msg = if k.is_multiple_of(2) {
                    &captured
                } else {
                    &pool[(k / 2) as usize % pool.len()]
                };
                if socks[k as usize % PORTS].send_to(msg, target).is_ok() {
                    sent_f.fetch_add(1, Ordering::Relaxed);
                }
                k += 1;
            }
        }
        t0.elapsed()
    });
    let flood_from = Instant::now();
    // Pings every 10 ms while the flood lasts (from its first second on).
    std::thread::sleep(Duration::from_millis(500));
    let (pb, av4) = (b.ns.clone(), a.ipv4);
    let pings = ((FLOOD_TIME.as_millis() - 1500) / 10) as u32;
    let pinger = std::thread::spawn(move || ping_10ms(&pb, av4, pings));
    // A peer that starts during the flood must still connect: cookie reply, then mac2.
    std::thread::sleep(Duration::from_secs(2));
    c.start();
    let c_up = c.wait_ping(a.ipv4, FLOOD_TIME - Duration::from_secs(4));
    let mid_st = a.try_status().unwrap_or_default();
    let (ping_sent, ping_got) = pinger.join().expect("pinger");
    std::thread::sleep((flood_from + FLOOD_TIME).saturating_duration_since(Instant::now()));
    let flood_to = Instant::now();
    stop_flood.store(true, Ordering::Relaxed);
    let flood_took = flooder.join().expect("flooder");
    let flooded = sent.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    stop_stream.store(true, Ordering::Relaxed);
    let streamed = client.join().expect("stream client");
    let received = server.join().expect("stream server");
    assert!(a.alive(), "A survived the flood");
    let st = a.status();

    let log = log.lock().expect("log").clone();
    // The flood's first second is left out of the stream's figure: the load signal takes a
    // burst of handshakes to trip.
    let (r_before, r_flood) = (
        rate(&log, before_from, before_to),
        rate(&log, flood_from + Duration::from_secs(1), flood_to),
    );
    let flood_rate = flooded as f64 / flood_took.as_secs_f64();
    let reasons = [
        "bad_mac",
        "replayed_initiation",
        "stale_initiation",
        "unknown_peer",
        "cookie_sent",
        "bad_mac2",
        "handshake_rate_limited",
        "handshake_overload",
        "handshake_flood",
    ];
    let counts: Vec<String> = reasons
        .iter()
        .map(|r| format!("{r} {}", drop_of(&st, r) - drop_of(&before_st, r)))
        .collect();
    let loss = 100.0 * f64::from(ping_sent - ping_got) / f64::from(ping_sent.max(1));
    eprintln!(
        "flood: {flooded} initiations in {flood_took:?} ({flood_rate:.0}/s) from {PORTS} ports; \
         ping {ping_got}/{ping_sent} ({loss:.2} % lost); stream {:.2} MB/s before, {:.2} MB/s \
         during ({:.0} %), {streamed} sent {received} received; late peer up after {c_up:?}; \
         under load mid-flood: {}; drops during the flood: {}; whole test {:?}",
        r_before / 1e6,
        r_flood / 1e6,
        100.0 * r_flood / r_before.max(1.0),
        mid_st["drops"]["cookie_sent"],
        counts.join(", "),
        t_test.elapsed()
    );
    assert!(
        flood_rate >= 50_000.0,
        "the flooder reached only {flood_rate:.0} initiations/s"
    );
    assert!(
        ping_sent >= 500 && u64::from(ping_sent - ping_got) * 100 < u64::from(ping_sent),
        "ping loss {loss:.2} % ({ping_got}/{ping_sent})"
    );
    assert!(
        r_flood * 2.0 >= r_before,
        "stream {r_flood:.0} B/s under the flood vs {r_before:.0} B/s before"
    );
    assert!(
        drop_of(&st, "cookie_sent") > drop_of(&before_st, "cookie_sent"),
        "cookie replies are sent under load"
    );
    assert!(
        drop_of(&st, "replayed_initiation") > flooded / 4,
        "replays are refused before any DH and counted"
    );
    assert!(
        c_up.is_some(),
        "a peer starting during the flood connects: {}",
        c.status()
    );
    assert!(
        drop_of(&c.status(), "cookie_received") > 0,
        "it did so through a cookie reply"
    );
    assert!(b.ping(a.ipv4, 3), "the session still works after the flood");
    a.stop();
    b.stop();
    c.stop();
}
