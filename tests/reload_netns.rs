//! SIGHUP on real daemons (issue 10, "Reload"): a changed peer list adds one neighbour and
//! removes another while a third neighbour's ping runs on without a single loss; a broken
//! config is refused with its file and line, and the node keeps running on the old one.

mod common;

use std::time::{Duration, Instant};

use common::{Lab, mesh, root_or_skip, sh};

fn hup(pid: u32) {
    sh(&["kill", "-HUP", &pid.to_string()]);
}

fn neighbours(n: &common::Node) -> Vec<String> {
    n.status()["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

/// How many handshakes `n` completed with neighbour `peer`.
fn handshakes(n: &common::Node, peer: &common::Node) -> serde_json::Value {
    n.status()["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == peer.id.as_str())
        .unwrap()["handshakes"]
        .clone()
}

#[test]
fn sighup_adds_and_removes_peers_without_dropping_sessions() {
    if !root_or_skip("sighup_adds_and_removes_peers_without_dropping_sessions") {
        return;
    }
    let mut lab = Lab::new();
    // a - b, a - c, a - d; a starts with b and d only.
    let mut n = mesh(&mut lab, 4, &[(0, 1), (0, 2), (0, 3)]);
    let original = std::fs::read_to_string(&n[0].cfg).unwrap();
    let c_block = format!(
        "\n[[peer]]\nid = \"{}\"\nendpoint = \"198.18.0.6:51820\"\n",
        n[2].id
    );
    assert!(original.contains(&c_block), "{original}");
    std::fs::write(&n[0].cfg, original.replace(&c_block, "")).unwrap();
    for x in n.iter_mut() {
        x.start();
    }
    let (b, c, d) = (n[1].ipv4, n[2].ipv4, n[3].ipv4);
    assert!(n[0].wait_ping(b, Duration::from_secs(15)).is_some());
    assert!(n[0].wait_ping(d, Duration::from_secs(15)).is_some());
    assert!(!n[0].ping(c, 1), "c is not a peer yet");
    // Let start-up handshakes settle before counting (a retries its own initiation after
    // rekey_timeout, 5 s, when the two crossed).
    std::thread::sleep(Duration::from_secs(7));
    let b_handshakes = handshakes(&n[0], &n[1]);

    // b's ping runs the whole time: 80 echoes, 0.1 s apart.
    let ns = n[0].ns.clone();
    let pinger = std::thread::spawn(move || common::ping(&ns, b, 80, "0.1"));
    std::thread::sleep(Duration::from_secs(1));
    let d_block = format!(
        "\n[[peer]]\nid = \"{}\"\nendpoint = \"198.18.0.10:51820\"\n",
        n[3].id
    );
    let now_cfg = std::fs::read_to_string(&n[0].cfg).unwrap();
    assert!(now_cfg.contains(&d_block), "{now_cfg}");
    std::fs::write(
        &n[0].cfg,
        format!("{}{c_block}", now_cfg.replace(&d_block, "")),
    )
    .unwrap();
    hup(n[0].pid().unwrap());
    assert!(
        n[0].wait_ping(c, Duration::from_secs(10)).is_some(),
        "c not reached after reload"
    );
    let t0 = Instant::now();
    while neighbours(&n[0]).contains(&n[3].id) {
        assert!(t0.elapsed() < Duration::from_secs(5), "d still a neighbour");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        pinger.join().unwrap(),
        "b's ping lost packets across the reload"
    );
    assert_eq!(
        handshakes(&n[0], &n[1]),
        b_handshakes,
        "b's session was redone"
    );

    // A broken config: refused with file and line; the node runs on.
    let good = std::fs::read_to_string(&n[0].cfg).unwrap();
    std::fs::write(
        &n[0].cfg,
        format!("{good}\n[pricing]\nfee_per_mib = \"lots\"\n"),
    )
    .unwrap();
    hup(n[0].pid().unwrap());
    let t0 = Instant::now();
    let want = format!("{}:", n[0].cfg.display());
    loop {
        let log = std::fs::read_to_string(n[0].log_path()).unwrap();
        if let Some(l) = log.lines().find(|l| l.contains("reload refused")) {
            assert!(
                l.contains(&want) && l.contains("pricing.fee_per_mib"),
                "{l}"
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no refusal logged: {log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        n[0].ping(b, 3) && n[0].ping(c, 3),
        "the node stopped working"
    );
    std::fs::write(&n[0].cfg, good).unwrap();
    for x in n.iter_mut() {
        assert!(x.stop());
    }
}
