//! A hostile LAN host floods a discovering daemon with validly signed beacons of fresh ids
//! (issue 8, item 9): the daemon stays up and small, its neighbour table stays capped, it
//! sends the flooding host only a few handshake datagrams per second, and an honest
//! neighbour keeps answering pings throughout. Needs root; fails rather than skips under CI.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bitcloud::identity::Identity;
use bitcloud::wire::discovery::{BEACON_GROUP, BEACON_PORT, Beacon};
use common::{Lab, in_netns, root_or_skip};

/// Beacons the flooder sends, each from a fresh identity.
const FLOOD_BEACONS: usize = 20_000;
/// Over about this long.
const FLOOD_TIME: Duration = Duration::from_secs(10);
/// The port the fake beacons advertise: the victim's handshakes come back to it.
const FLOOD_PORT: u16 = 40_000;
/// Bounds from the issue.
const MAX_RSS_KB: u64 = 64 * 1024;
const MAX_NEIGHBOURS: u64 = 1024;

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Ping every 100 ms from `ns` to `dst`, `count` times; (sent, received).
fn ping_loss(ns: &str, dst: std::net::IpAddr, count: u32) -> (u32, u32) {
    common::ping_counts(ns, dst, count, "0.1")
}

#[test]
fn a_beacon_flood_of_fresh_ids_leaves_the_daemon_small_and_quiet() {
    if !root_or_skip("a_beacon_flood_of_fresh_ids_leaves_the_daemon_small_and_quiet") {
        return;
    }
    let mut lab = Lab::new();
    let (br, v_ns, h_ns, f_ns) = (lab.ns("x"), lab.ns("v"), lab.ns("h"), lab.ns("f"));
    let ifs = lab.bridge(
        &br,
        &[
            (&v_ns, "198.18.9.1/24"),
            (&h_ns, "198.18.9.2/24"),
            (&f_ns, "198.18.9.3/24"),
        ],
    );
    let mut v = lab.node(&v_ns, "v", "0.0.0.0:51820");
    let mut h = lab.node(&h_ns, "h", "0.0.0.0:51820");
    for (n, ifname) in [(&v, &ifs[0]), (&h, &ifs[1])] {
        n.append_config(&format!(
            "\n[discovery]\nenabled = true\ninterfaces = [\"{ifname}\"]\ninterval_secs = 1\n"
        ));
    }
    v.start();
    h.start();
    if v.wait_ping(h.ipv6, Duration::from_secs(15)).is_none() {
        panic!(
            "the honest neighbour is found and answers before the flood: {}\n{}",
            v.status(),
            h.status()
        );
    }
    let pid = v.pid().expect("victim daemon pid");
    let rss_before = rss_kb(pid);

    // The flooding host's receiver: every datagram the victim sends to the advertised port.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_rx = stop.clone();
    let counter = in_netns(&f_ns, move || {
        let s =
            UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::new(198, 18, 9, 3), FLOOD_PORT)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let t0 = Instant::now();
        let mut arrivals = Vec::new();
        let mut buf = [0u8; 2048];
        while !stop_rx.load(Ordering::Relaxed) {
            // Only the victim's: the honest neighbour hears the flood too and has its own budget.
            if let Ok((_, from)) = s.recv_from(&mut buf)
                && from.ip() == std::net::IpAddr::from([198, 18, 9, 1])
            {
                arrivals.push(t0.elapsed());
            }
        }
        arrivals
    });
    // The flooder: fresh identities, validly signed beacons, all from one address.
    let flooder = in_netns(&f_ns, move || {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        let me = Ipv4Addr::new(198, 18, 9, 3);
        s.bind(&SocketAddrV4::new(me, 0).into()).unwrap();
        s.set_multicast_if_v4(&me).unwrap();
        s.set_multicast_ttl_v4(1).unwrap();
        let dst = SocketAddrV4::new(BEACON_GROUP, BEACON_PORT).into();
        let t0 = Instant::now();
        for k in 0..FLOOD_BEACONS {
            let id = Identity::generate();
            let b = Beacon::sign(&id, FLOOD_PORT, 1_700_000_000_000 + k as u64).encode();
            let _ = s.send_to(&b, &dst);
            // Pace to FLOOD_TIME so the whole flood is a sustained one, not one burst.
            let due = FLOOD_TIME.mul_f64(k as f64 / FLOOD_BEACONS as f64);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        t0.elapsed()
    });
    // Pings to the honest neighbour every 100 ms during the flood and 5 s after it.
    let (pv, hv6) = (v.ns.clone(), h.ipv6);
    let pinger = std::thread::spawn(move || ping_loss(&pv, hv6, 150));
    let t0 = Instant::now();
    let (mut max_rss, mut max_neigh) = (rss_before, 0u64);
    while t0.elapsed() < FLOOD_TIME + Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(500));
        assert!(v.alive(), "the victim daemon died under the flood");
        max_rss = max_rss.max(rss_kb(pid));
        if let Some(st) = v.try_status() {
            let n = st["peers"].as_array().map_or(0, |p| p.len() as u64);
            max_neigh = max_neigh.max(n);
        }
    }
    let flood_took = flooder.join().unwrap();
    let (sent, got) = pinger.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let arrivals = counter.join().unwrap();

    let st = v.status();
    let neigh = st["peers"].as_array().unwrap().len() as u64;
    max_neigh = max_neigh.max(neigh);
    let secs = t0.elapsed().as_secs_f64();
    let mut per_sec = std::collections::BTreeMap::<u64, u32>::new();
    for a in &arrivals {
        *per_sec.entry(a.as_secs()).or_default() += 1;
    }
    let worst = per_sec.values().copied().max().unwrap_or(0);
    eprintln!(
        "flood: {FLOOD_BEACONS} beacons in {flood_took:?}; victim RSS {rss_before} -> max {max_rss} kB; \
         neighbours max {max_neigh}; {} datagrams to the flooder in {secs:.1} s ({:.1}/s, worst second {worst}); \
         ping {got}/{sent}; table {}; drops neighbour_table_full {} unverified_table_full {} unverified_host_full {} handshake_budget {}",
        arrivals.len(),
        arrivals.len() as f64 / secs,
        st["neighbour_table"],
        st["drops"]["neighbour_table_full"],
        st["drops"]["unverified_table_full"],
        st["drops"]["unverified_host_full"],
        st["drops"]["handshake_budget"],
    );
    assert!(max_rss < MAX_RSS_KB, "RSS {max_rss} kB");
    assert!(max_neigh <= MAX_NEIGHBOURS, "{max_neigh} neighbours");
    assert!(
        worst <= 12 && (arrivals.len() as f64) <= 5.0 * secs + 8.0,
        "handshake datagrams to the flooding host: {per_sec:?}"
    );
    assert!(
        sent >= 100 && got * 100 >= sent * 97,
        "pings to the honest neighbour: {got}/{sent}"
    );
    assert!(
        st["drops"]["unverified_host_full"].as_u64().unwrap() > 0,
        "refusals are counted"
    );
    assert!(v.ping(h.ipv4, 2), "the honest neighbour still answers");
    v.stop();
    h.stop();
}
