//! Beacon tracker and discovery task tests.
use super::tracker::Seen;
use super::*;
use crate::config::DiscoveryAccept;
use crate::wire::discovery::BEACON_LEN;
use crate::wire::discovery::BeaconError;
use std::time::Duration;

fn ident(n: u8) -> Identity {
    Identity::from_secret([n; 32])
}

/// A distinct id that never signs anything (not a key we hold).
fn fake_id(k: usize) -> NodeId {
    let mut id = [0xaa; 32];
    id[..8].copy_from_slice(&(k as u64).to_be_bytes());
    NodeId(id)
}

fn src(last: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, last), BEACON_PORT)
}

fn beacon(n: u8, port: u16, counter: u64) -> [u8; BEACON_LEN] {
    Beacon::sign(&ident(n), port, counter).encode()
}

#[test]
fn reports_sender_with_source_address_and_beacon_port() {
    let t0 = Instant::now();
    let mut t = Tracker::new(ident(1).id(), DiscoveryAccept::Any, []);
    let d = t
        .on_datagram(&beacon(2, 40000, 10), src(2), "eth0", t0)
        .unwrap()
        .unwrap();
    assert_eq!(d.id, ident(2).id());
    assert_eq!(d.endpoint, "198.18.0.2:40000".parse().unwrap());
    assert_eq!(d.interface, "eth0");
    // A newer beacon with nothing changed is quiet until the refresh time.
    assert_eq!(
        t.on_datagram(&beacon(2, 40000, 11), src(2), "eth0", t0),
        Ok(None)
    );
    let later = t0 + REPORT_REFRESH;
    assert!(
        t.on_datagram(&beacon(2, 40000, 12), src(2), "eth0", later)
            .unwrap()
            .is_some()
    );
    // A new address or port is reported at once.
    let d = t
        .on_datagram(&beacon(2, 40000, 13), src(9), "eth0", later)
        .unwrap()
        .unwrap();
    assert_eq!(d.endpoint, "198.18.0.9:40000".parse().unwrap());
    let d = t
        .on_datagram(&beacon(2, 40001, 14), src(9), "eth0", later)
        .unwrap()
        .unwrap();
    assert_eq!(d.endpoint.port(), 40001);
}

#[test]
fn stale_replayed_own_and_forged_beacons_are_ignored() {
    let t0 = Instant::now();
    let me = ident(1);
    let mut t = Tracker::new(me.id(), DiscoveryAccept::Any, []);
    assert_eq!(
        t.on_datagram(&beacon(1, 51820, 5), src(1), "eth0", t0),
        Err(Ignored::Own)
    );
    assert!(
        t.on_datagram(&beacon(2, 51820, 5), src(2), "eth0", t0)
            .unwrap()
            .is_some()
    );
    // The same beacon replayed from elsewhere, and an older one: stale, not reported.
    for c in [5, 4] {
        assert_eq!(
            t.on_datagram(&beacon(2, 51820, c), src(66), "eth0", t0),
            Err(Ignored::Stale {
                id: ident(2).id(),
                counter: c,
                newest: 5
            })
        );
    }
    // Someone else's id with our signature.
    let mut forged = Beacon::sign(&ident(3), 51820, 6);
    forged.id = ident(2).id();
    assert_eq!(
        t.on_datagram(&forged.encode(), src(3), "eth0", t0),
        Err(Ignored::BadSignature(ident(2).id()))
    );
    // Garbage and unusable sources.
    assert!(matches!(
        t.on_datagram(b"BCLD", src(3), "eth0", t0),
        Err(Ignored::Malformed(BeaconError::Truncated { have: 4 }))
    ));
    for ip in [Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, BEACON_GROUP] {
        assert_eq!(
            t.on_datagram(&beacon(4, 51820, 1), SocketAddrV4::new(ip, 1), "eth0", t0),
            Err(Ignored::BadSource(ip))
        );
    }
    assert_eq!(t.len(), 1);
}

#[test]
fn accept_configured_reports_only_peers() {
    let t0 = Instant::now();
    let mut t = Tracker::new(ident(1).id(), DiscoveryAccept::Configured, [ident(2).id()]);
    assert!(
        t.on_datagram(&beacon(2, 51820, 1), src(2), "eth0", t0)
            .unwrap()
            .is_some()
    );
    assert_eq!(
        t.on_datagram(&beacon(3, 51820, 1), src(3), "eth0", t0),
        Err(Ignored::NotConfigured(ident(3).id()))
    );
    assert_eq!(t.len(), 1);
}

#[test]
fn forgotten_senders_are_reported_afresh_and_memory_is_bounded() {
    let t0 = Instant::now();
    let mut t = Tracker::new(ident(1).id(), DiscoveryAccept::Any, []);
    assert!(
        t.on_datagram(&beacon(2, 51820, 9), src(2), "eth0", t0)
            .unwrap()
            .is_some()
    );
    t.expire(t0 + FORGET_AFTER - Duration::from_secs(1));
    assert_eq!(t.len(), 1);
    t.expire(t0 + FORGET_AFTER);
    assert!(t.is_empty());
    // After forgetting, even a lower counter (a node whose clock went back) is accepted.
    let later = t0 + FORGET_AFTER;
    assert!(
        t.on_datagram(&beacon(2, 51820, 1), src(2), "eth0", later)
            .unwrap()
            .is_some()
    );

    // Fill to the cap with synthetic entries, then one more: the oldest is evicted.
    let mut t = Tracker::new(ident(1).id(), DiscoveryAccept::Any, []);
    for k in 0..MAX_TRACKED {
        let id = fake_id(k);
        t.seen.insert(
            id,
            Seen {
                counter: 1,
                endpoint: "198.18.0.1:1".parse().unwrap(),
                heard: t0 + Duration::from_millis(k as u64 + 1),
                reported: t0,
            },
        );
    }
    let oldest = fake_id(0);
    assert!(t.seen.contains_key(&oldest));
    let now = t0 + Duration::from_secs(5);
    assert!(
        t.on_datagram(&beacon(2, 51820, 1), src(2), "eth0", now)
            .unwrap()
            .is_some()
    );
    assert_eq!(t.len(), MAX_TRACKED);
    assert!(!t.seen.contains_key(&oldest));
    assert!(t.seen.contains_key(&ident(2).id()));
}

#[test]
fn counter_is_time_but_monotonic() {
    assert_eq!(next_counter(0, 1_000), 1_000);
    assert_eq!(next_counter(1_000, 1_000), 1_001);
    assert_eq!(next_counter(5_000, 1_000), 5_001); // clock went back
    assert_eq!(next_counter(u64::MAX, 0), u64::MAX);
}

#[tokio::test]
async fn disabled_returns_at_once_and_closed_channel_stops() {
    let (tx, rx) = mpsc::channel(1);
    run(DiscoveryConfig::default(), ident(1), 51820, vec![], tx)
        .await
        .unwrap();
    drop(rx);
    // Enabled on an interface that does not exist: warns, keeps going, stops when the
    // receiver is gone.
    let (tx, rx) = mpsc::channel(1);
    let cfg = DiscoveryConfig {
        enabled: true,
        interfaces: vec!["bcnosuchif0".into()],
        ..DiscoveryConfig::default()
    };
    let task = tokio::spawn(run(cfg, ident(1), 51820, vec![], tx));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!task.is_finished());
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[test]
fn a_flood_of_fake_ids_cannot_flush_a_neighbours_counter() {
    let t0 = Instant::now();
    let mut t = Tracker::new(ident(1).id(), DiscoveryAccept::Any, [ident(3).id()]);
    // B (discovered, then verified by a handshake) and C (configured) beacon once.
    assert!(
        t.on_datagram(&beacon(2, 51820, 5), src(2), "eth0", t0)
            .unwrap()
            .is_some()
    );
    assert!(
        t.on_datagram(&beacon(3, 51820, 5), src(3), "eth0", t0)
            .unwrap()
            .is_some()
    );
    assert!(t.protect(ident(2).id(), t0));
    // A LAN host floods more validly signed fresh ids than the stranger cache holds.
    for k in 0..MAX_TRACKED + 16 {
        let mut seed = [0xee; 32];
        seed[..8].copy_from_slice(&(k as u64).to_le_bytes());
        let id = Identity::from_secret(seed);
        let b = Beacon::sign(&id, 1, 1).encode();
        let _ = t.on_datagram(&b, src(66), "eth0", t0);
    }
    // The old beacons replayed from the flooder's address are still stale.
    for n in [2, 3] {
        assert!(
            matches!(
                t.on_datagram(&beacon(n, 51820, 5), src(66), "eth0", t0),
                Err(Ignored::Stale { .. })
            ),
            "replay of node {n} refused"
        );
    }
    assert!(t.len() <= MAX_TRACKED + MAX_NEIGHBOURS_TRACKED);
}
