//! LAN discovery on real namespaces: three nodes on one Linux bridge, each running only the
//! discovery task, learn each other's node id and endpoint from signed multicast beacons.
//! Needs root; without it the test prints SKIPPED (and fails under CI).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bitcloud::config::DiscoveryConfig;
use bitcloud::daemon::discovery::{Discovered, run};
use bitcloud::identity::{Identity, NodeId};
use common::{Lab, in_netns, root_or_skip, sh};
use tokio::sync::{mpsc, watch};

/// Every node must have found both others within this long (DESIGN.md §4 test budget).
const DEADLINE: Duration = Duration::from_secs(15);

#[test]
fn three_nodes_on_a_bridge_discover_each_other() {
    if !root_or_skip("three_nodes_on_a_bridge_discover_each_other") {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter("bitcloud=debug")
        .with_test_writer()
        .try_init();
    let mut lab = Lab::new();
    let br = lab.ns("br");
    let nss: Vec<String> = ["a", "b", "c"].iter().map(|t| lab.ns(t)).collect();
    let ips = ["198.18.7.1", "198.18.7.2", "198.18.7.3"];
    let cidrs: Vec<String> = ips.iter().map(|ip| format!("{ip}/24")).collect();
    let members: Vec<(&str, &str)> = nss
        .iter()
        .zip(&cidrs)
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .collect();
    let ifs = lab.bridge(&br, &members);
    // Node c starts without an IPv4 address: its task must warn, keep going, and start
    // beaconing once the address appears.
    sh(&["ip", "-n", &nss[2], "addr", "flush", "dev", &ifs[2]]);

    let ports = [40001u16, 40002, 40003];
    let seeds = [[11u8; 32], [12; 32], [13; 32]];
    let ids: Vec<NodeId> = seeds
        .iter()
        .map(|s| Identity::from_secret(*s).id())
        .collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (res_tx, res_rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    let mut threads = Vec::new();
    for i in 0..3 {
        let cfg = DiscoveryConfig {
            enabled: true,
            // A missing interface next to the real one must not stop anything.
            interfaces: vec![ifs[i].clone(), "bcnosuchif0".into()],
            interval: Duration::from_secs(1),
            ..DiscoveryConfig::default()
        };
        let (seed, port) = (seeds[i], ports[i]);
        let (res_tx, mut stop_rx) = (res_tx.clone(), stop_rx.clone());
        threads.push(in_netns(&nss[i], move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (tx, mut rx) = mpsc::channel::<Discovered>(16);
                let task = tokio::spawn(run(cfg, Identity::from_secret(seed), port, vec![], tx));
                let mut found: HashMap<NodeId, Discovered> = HashMap::new();
                let deadline = tokio::time::Instant::now() + DEADLINE;
                while found.len() < 2 {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(d)) => {
                            found.insert(d.id, d);
                        }
                        _ => break,
                    }
                }
                res_tx.send((i, found, started.elapsed())).unwrap();
                // Keep beaconing until every node is done, then stop by closing the channel.
                let _ = stop_rx.wait_for(|s| *s).await;
                drop(rx);
                tokio::time::timeout(Duration::from_secs(5), task)
                    .await
                    .expect("discovery task did not stop when its channel closed")
                    .unwrap()
            })
        }));
    }
    std::thread::sleep(Duration::from_secs(2));
    sh(&[
        "ip", "-n", &nss[2], "addr", "add", &cidrs[2], "dev", &ifs[2],
    ]);

    let mut results = HashMap::new();
    for _ in 0..3 {
        let (i, found, took) = res_rx
            .recv_timeout(DEADLINE + Duration::from_secs(5))
            .expect("a node thread died");
        results.insert(i, (found, took));
    }
    stop_tx.send(true).unwrap();
    for t in threads {
        t.join().unwrap().unwrap();
    }

    for i in 0..3 {
        let (found, took) = &results[&i];
        let want: HashMap<NodeId, String> = (0..3)
            .filter(|&j| j != i)
            .map(|j| (ids[j], format!("{}:{}", ips[j], ports[j])))
            .collect();
        let got: HashMap<NodeId, String> = found
            .iter()
            .map(|(id, d)| (*id, d.endpoint.to_string()))
            .collect();
        assert_eq!(got, want, "node {i} after {took:?}");
        assert!(found.values().all(|d| d.interface == ifs[i]));
        assert!(*took < DEADLINE, "node {i} took {took:?}");
        eprintln!("node {i} found both others after {took:?}");
    }
}
