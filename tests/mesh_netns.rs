//! Multi-hop mesh end to end: real daemons in network namespaces where each node reaches only
//! its underlay neighbours. Chain, diamond failover under a live TCP connection, and a rogue
//! neighbour (the library's own node on a real socket) that forges routes and sources.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{Lab, Node, in_netns, mesh, root_or_skip};

fn tcp_transfer(
    from: &Node,
    to: &Node,
    port: u16,
    len: Option<usize>,
    dur: Duration,
) -> (usize, Vec<(Instant, usize)>) {
    common::tcp_transfer(&from.ns, &to.ns, SocketAddr::new(to.ipv6, port), len, dur)
}

fn tcp_transfer_to(
    from: &Node,
    to: &Node,
    listen: SocketAddr,
    len: Option<usize>,
    dur: Duration,
) -> (usize, Vec<(Instant, usize)>) {
    common::tcp_transfer(&from.ns, &to.ns, listen, len, dur)
}

#[test]
fn chain_a_b_c_d_ping_and_50mb_tcp() {
    if !root_or_skip("chain_a_b_c_d_ping_and_50mb_tcp") {
        return;
    }
    let mut lab = Lab::new();
    let mut n = mesh(&mut lab, 4, &[(0, 1), (1, 2), (2, 3)]);
    for x in n.iter_mut() {
        x.start();
    }
    let (a, d) = (&n[0], &n[3]);
    let took = a
        .wait_ping(d.ipv6, Duration::from_secs(20))
        .expect("A reaches D over two relays");
    eprintln!("A -> D routed after {took:?}");
    assert!(a.ping(d.ipv6, 3) && a.ping(d.ipv4, 3) && d.ping(a.ipv6, 3));
    let routes = a.query("routes");
    let to_d = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["originator"] == d.id.as_str() && r["selected"] == true);
    assert_eq!(to_d.expect("route to D")["next_hop"], n[1].id.as_str());
    let (got, _) = tcp_transfer(a, d, 5002, Some(50 << 20), Duration::ZERO);
    assert_eq!(got, 50 << 20);
    // IPv4 too: full-size segments get ICMP "fragmentation needed" and the kernel adapts.
    let (got, _) = tcp_transfer_to(
        a,
        d,
        SocketAddr::new(d.ipv4, 5004),
        Some(8 << 20),
        Duration::ZERO,
    );
    assert_eq!(got, 8 << 20);
    // B raises its fee: the new price reaches A's route to D within seconds.
    let before = n[1].query("price")["price_epoch"].as_u64().unwrap();
    let p = common::sh(&[
        common::BIN,
        "price",
        "--set",
        "40",
        "--json",
        "-c",
        n[1].cfg.to_str().unwrap(),
    ]);
    let p: serde_json::Value = serde_json::from_str(&p).unwrap();
    assert_eq!(
        (p["fee_per_mib"].as_u64(), p["price_epoch"].as_u64()),
        (Some(40), Some(before + 1))
    );
    let t0 = Instant::now();
    let price_at_a = || {
        let r = a.query("routes");
        r["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["originator"] == d.id.as_str() && r["selected"] == true)
            .and_then(|r| r["price"].as_u64())
    };
    while price_at_a() != Some(40) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(price_at_a(), Some(40), "A sees B's new price for D");
    let peers = n[1].query("peers");
    assert_eq!(peers["peers"].as_array().unwrap().len(), 2);
    // The relays B and C carried it; neither opened an end-to-end session for it.
    for relay in &n[1..3] {
        let st = relay.status();
        assert!(
            st["sessions"].as_array().unwrap().is_empty(),
            "relay has no e2e session: {}",
            st["sessions"]
        );
    }
}

#[test]
fn diamond_failover_keeps_a_tcp_connection() {
    if !root_or_skip("diamond_failover_keeps_a_tcp_connection") {
        return;
    }
    let mut lab = Lab::new();
    // a=0, b=1, c=2, d=3: a-b, b-d, a-c, c-d.
    let links = [(0, 1), (1, 3), (0, 2), (2, 3)];
    let mut n = mesh(&mut lab, 4, &links);
    for x in n.iter_mut() {
        x.start();
    }
    assert!(n[0].wait_ping(n[3].ipv6, Duration::from_secs(20)).is_some());
    let (b_ns, c_ns) = (n[1].ns.clone(), n[2].ns.clone());
    let (b_id, d_id) = (n[1].id.clone(), n[3].id.clone());
    let a_cfg = n[0].cfg.clone();
    let prefix = lab.prefix.clone();
    // Cut the link in use 3 s into a 30 s transfer and restore it 15 s later: longer than the
    // stall bound, so the transfer can only meet it if traffic moved to the other relay.
    let cutter = std::thread::spawn(move || {
        let next_hop_to_d = || {
            let out = common::sh(&[
                common::BIN,
                "routes",
                "--json",
                "-c",
                a_cfg.to_str().unwrap(),
            ]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            v["routes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["originator"] == d_id.as_str() && r["selected"] == true)
                .map(|r| r["next_hop"].as_str().unwrap().to_string())
        };
        std::thread::sleep(Duration::from_secs(3));
        let before = next_hop_to_d().expect("a route to D before the cut");
        // Link 2 is b-d, link 4 is c-d (veth ends named <prefix>v<k>a / b).
        let (k, ns) = if before == b_id {
            (2, &b_ns)
        } else {
            (4, &c_ns)
        };
        let ifname = format!("{prefix}v{k}a");
        let cut = Instant::now();
        common::sh(&["ip", "-n", ns, "link", "set", &ifname, "down"]);
        std::thread::sleep(Duration::from_secs(8));
        let during = next_hop_to_d();
        std::thread::sleep(Duration::from_secs(7));
        common::sh(&["ip", "-n", ns, "link", "set", &ifname, "up"]);
        (cut, before, during)
    });
    let (got, log) = tcp_transfer(&n[0], &n[3], 5003, None, Duration::from_secs(30));
    let (cut, before, during) = cutter.join().unwrap();
    let mut last = cut;
    let mut worst = Duration::ZERO;
    for (t, _) in log.iter().filter(|(t, _)| *t > cut) {
        worst = worst.max(t.duration_since(last));
        last = *t;
    }
    eprintln!(
        "diamond: {got} bytes, longest stall after the cut {worst:?}, next hop {before} -> {during:?}"
    );
    assert!(
        during.as_deref().is_some_and(|d| d != before),
        "the route to D moved to the other relay during the outage: {before} -> {during:?}"
    );
    assert!(
        worst <= Duration::from_secs(10),
        "traffic stalled {worst:?} after the link went down (outage 15 s)"
    );
    let resumed = log
        .iter()
        .any(|(t, _)| *t > cut + Duration::from_secs(12) && *t < cut + Duration::from_secs(15));
    assert!(resumed, "bytes arrived while the cut link was still down");
    assert!(
        n[0].ping(n[3].ipv6, 3),
        "still routed after the link came back"
    );
}

#[test]
fn rogue_neighbour_cannot_claim_an_address_or_spoof_a_source() {
    if !root_or_skip("rogue_neighbour_cannot_claim_an_address_or_spoof_a_source") {
        return;
    }
    use bitcloud::identity::Identity;
    use bitcloud::node::{Node as SansIoNode, NodeConfig, PeerConfig, UdpOut};
    use bitcloud::wire::outer::Kind;
    use bitcloud::wire::routing::{self, PrefixKind, Seqno, Tlv, Update};

    let mut lab = Lab::new();
    let (r_ns, a_ns, c_ns) = (lab.ns("r"), lab.ns("a"), lab.ns("c"));
    lab.link(&r_ns, "198.18.0.1/30", &a_ns, "198.18.0.2/30");
    lab.link(&a_ns, "198.18.0.5/30", &c_ns, "198.18.0.6/30");
    let mut a = lab.node(&a_ns, "a", "0.0.0.0:51820");
    let mut c = lab.node(&c_ns, "c", "198.18.0.6:51820");
    let rogue = Identity::generate();
    let rogue_hex = rogue.id().to_string();
    a.append_config(&format!(
        "\n[[peer]]\nid = \"{}\"\nendpoint = \"198.18.0.1:51820\"\n",
        rogue.id()
    ));
    a.add_peer_at(&c, "198.18.0.6:51820");
    c.add_peer_at(&a, "198.18.0.5:51820");
    a.start();
    c.start();
    assert!(a.wait_ping(c.ipv6, Duration::from_secs(10)).is_some());

    let (a_id, c_id): (bitcloud::identity::NodeId, bitcloud::identity::NodeId) =
        (a.id.parse().unwrap(), c.id.parse().unwrap());
    let a_v4 = a.ipv4;
    let rogue_thread = in_netns(&r_ns, move || {
        let sock = UdpSocket::bind("198.18.0.1:51820").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let cfg = NodeConfig {
            router: bitcloud::route::RouterConfig {
                hello_interval: Duration::from_secs(1),
                ..Default::default()
            },
            ..Default::default()
        };
        let peers = [PeerConfig {
            id: a_id,
            endpoint: Some("198.18.0.2:51820".parse().unwrap()),
        }];
        let mut node: SansIoNode = SansIoNode::new(
            &rogue,
            &peers,
            cfg,
            Instant::now(),
            1_800_000_000_000_000_000,
            5,
        )
        .unwrap();
        node.start(Instant::now());
        let (t0, mut attacked, mut buf) = (Instant::now(), None::<Instant>, vec![0u8; 2048]);
        // C learns its route back to us a moment after we learn ours to C; it answers an
        // end-to-end handshake only once it has one, so the attack waits 2 s past our route
        // and the loop runs long enough for a handshake retry (5 s).
        let mut route_seen: Option<Instant> = None;
        while t0.elapsed() < Duration::from_secs(30) {
            let now = Instant::now();
            if route_seen.is_none() && node.router().next_hop(&c_id).is_some() {
                route_seen = Some(now);
            }
            if attacked.is_none()
                && route_seen.is_some_and(|t| now.duration_since(t) > Duration::from_secs(2))
            {
                // 1. Announce C's address, signed with our own key.
                let forged = Update {
                    kind: PrefixKind::Node,
                    interval: Duration::from_secs(4),
                    seqno: Seqno(40_000),
                    metric: 0,
                    price_per_mib: 0,
                    price_epoch: 0,
                    originator: c_id,
                    signature: routing::sign_announcement(&rogue, Seqno(40_000), PrefixKind::Node),
                };
                assert!(node.send_frame(
                    a_id,
                    Kind::Routing,
                    &routing::encode(&[Tlv::Update(forged)]),
                    now
                ));
                // 2. Route packets to C: one honest, then ones claiming A's source address.
                for (src, seq) in [
                    (rogue.id().ipv4(), 1u8),
                    (
                        match a_v4 {
                            IpAddr::V4(v) => v,
                            _ => unreachable!(),
                        },
                        2,
                    ),
                ] {
                    let b = etherparse::PacketBuilder::ipv4(src.octets(), c_id.ipv4().octets(), 64)
                        .udp(4000, 4001);
                    let mut p = Vec::new();
                    b.write(&mut p, &[seq; 32]).unwrap();
                    for _ in 0..3 {
                        let mut tb =
                            vec![
                                0u8;
                                bitcloud::node::HEADROOM + p.len() + bitcloud::node::TAILROOM
                            ];
                        tb[bitcloud::node::HEADROOM..bitcloud::node::HEADROOM + p.len()]
                            .copy_from_slice(&p);
                        if let Some((r, dst)) = node.handle_tun(now, &mut tb, p.len()) {
                            sock.send_to(&tb[r], dst).unwrap();
                        }
                    }
                }
                attacked = Some(now);
            }
            if attacked.is_some_and(|t| now.duration_since(t) > Duration::from_secs(8)) {
                break;
            }
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
            }
            while let Some(t) = node.poll_transmit() {
                let _ = sock.send_to(&t.data, t.dst);
            }
            if let Ok((k, from)) = sock.recv_from(&mut buf)
                && let UdpOut::Forward(len, dst) =
                    node.handle_udp(Instant::now(), from, &mut buf[..k])
            {
                let _ = sock.send_to(&buf[..len], dst);
            }
        }
        attacked.is_some()
    });
    assert!(
        rogue_thread.join().expect("rogue"),
        "the rogue learned a route to C and attacked"
    );
    let st = a.status();
    assert!(
        st["routing"]["bad_signature"].as_u64().unwrap() >= 1,
        "forged route counted: {}",
        st["routing"]
    );
    let routes = a.query("routes");
    // The route must exist and still lead to C itself: a missing route would not pass.
    let to_c = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["originator"] == c.id.as_str() && r["selected"] == true)
        .expect("A still has a selected route to C");
    assert_eq!(
        to_c["next_hop"],
        c.id.as_str(),
        "A still routes C's address to C"
    );
    let cst = c.status();
    assert!(
        cst["drops"]["spoofed_source"].as_u64().unwrap() >= 1,
        "spoofed source dropped: {}",
        cst["drops"]
    );
    let honest = cst["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == rogue_hex.as_str())
        .map(|s| s["rx_packets"].as_u64().unwrap());
    assert!(
        honest.unwrap_or(0) >= 1,
        "the honest routed packet from the rogue's own address arrived: {}",
        cst["sessions"]
    );
    assert!(a.ping(c.ipv6, 2), "A and C unaffected");
}

#[test]
fn three_nodes_on_a_bridge_find_each_other_by_discovery_and_route() {
    if !root_or_skip("three_nodes_on_a_bridge_find_each_other_by_discovery_and_route") {
        return;
    }
    let mut lab = Lab::new();
    // Two LANs: A and B share one bridge, B and C another; A reaches C only through B.
    let (x1, x2) = (lab.ns("x1"), lab.ns("x2"));
    let (a_ns, b_ns, c_ns) = (lab.ns("a"), lab.ns("b"), lab.ns("c"));
    let left = lab.bridge(&x1, &[(&a_ns, "198.18.1.1/24"), (&b_ns, "198.18.1.2/24")]);
    let right = lab.bridge(&x2, &[(&b_ns, "198.18.2.2/24"), (&c_ns, "198.18.2.3/24")]);
    let mut nodes: Vec<Node> = [&a_ns, &b_ns, &c_ns]
        .iter()
        .zip(["a", "b", "c"])
        .map(|(ns, tag)| lab.node(ns, tag, "0.0.0.0:51820"))
        .collect();
    let ifaces = [
        vec![left[0].clone()],
        vec![left[1].clone(), right[0].clone()],
        vec![right[1].clone()],
    ];
    for (n, ifs) in nodes.iter().zip(&ifaces) {
        // No [[peer]] at all: neighbours come only from beacons.
        let list: Vec<String> = ifs.iter().map(|i| format!("\"{i}\"")).collect();
        n.append_config(&format!(
            "\n[discovery]\nenabled = true\ninterfaces = [{}]\ninterval_secs = 1\n",
            list.join(", ")
        ));
    }
    for n in nodes.iter_mut() {
        n.start();
    }
    for (i, j) in [(0, 1), (1, 2), (0, 2), (2, 0)] {
        let t = nodes[i].wait_ping(nodes[j].ipv6, Duration::from_secs(20));
        assert!(
            t.is_some(),
            "{} reaches {} after discovery",
            nodes[i].ns,
            nodes[j].ns
        );
    }
    for (i, only) in [(0, 1), (2, 1)] {
        let peers = nodes[i].query("peers");
        let found: Vec<_> = peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_string(),
                    p["found"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [(nodes[only].id.clone(), "discovery".to_string())],
            "{peers}"
        );
    }
    // A's traffic for C is routed, through B.
    let routes = nodes[0].query("routes");
    let to_c = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["originator"] == nodes[2].id.as_str() && r["selected"] == true)
        .cloned()
        .unwrap_or_else(|| panic!("A has a route to C: {routes}"));
    assert_eq!(to_c["next_hop"], nodes[1].id.as_str(), "{to_c}");
    assert!(
        nodes[0].ping(nodes[2].ipv4, 2),
        "IPv4 through the relay too"
    );
    let sessions = nodes[0].status()["sessions"].clone();
    assert!(
        sessions
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == nodes[2].id.as_str() && s["rx_packets"].as_u64() > Some(0)),
        "an end-to-end session with C carried the pings: {sessions}"
    );
}
