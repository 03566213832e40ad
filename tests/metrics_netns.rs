//! `[metrics] listen` on a real daemon (issue 10, "Metrics"): the relay of a - b - c serves
//! OpenMetrics text that a Prometheus text parser reads; traffic and earnings counters move
//! when a transfer crosses it, and labels name only its neighbours.

mod common;

use std::time::{Duration, Instant};

use common::{Lab, mesh, root_or_skip, sh};

fn scrape(ns: &str) -> prometheus_parse::Scrape {
    let text = sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "curl",
        "-sS",
        "--max-time",
        "5",
        "http://127.0.0.1:9477/metrics",
    ]);
    assert!(text.contains("# EOF"), "not OpenMetrics text: {text}");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses")
}

fn value(s: &prometheus_parse::Scrape, name: &str, label: (&str, &str)) -> f64 {
    s.samples
        .iter()
        .find(|x| x.metric == name && x.labels.get(label.0) == Some(label.1))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .unwrap_or_else(|| panic!("no {name}{{{}={}}} in {:?}", label.0, label.1, s.samples))
}

#[test]
fn metrics_parse_and_move_with_traffic() {
    if !root_or_skip("metrics_parse_and_move_with_traffic") {
        return;
    }
    let mut lab = Lab::new();
    let mut n = mesh(&mut lab, 3, &[(0, 1), (1, 2)]);
    n[1].append_config(
        "\n[pricing]\nfee_per_mib = 100000\n\n[metrics]\nlisten = \"127.0.0.1:9477\"\n",
    );
    for x in n.iter_mut() {
        x.start();
    }
    assert!(n[0].wait_ping(n[2].ipv4, Duration::from_secs(20)).is_some());
    let before = scrape(&n[1].ns);
    let a = n[0].id.clone();
    let rx0 = value(&before, "bitcloud_peer_rx_bytes_total", ("peer", &a));
    let earned0 = value(&before, "bitcloud_money_units", ("what", "earned"));
    common::tcp_transfer(
        &n[0].ns,
        &n[2].ns,
        format!("{}:5201", n[2].ipv4).parse().unwrap(),
        Some(4 << 20),
        Duration::ZERO,
    );
    let t0 = Instant::now();
    loop {
        let after = scrape(&n[1].ns);
        let rx = value(&after, "bitcloud_peer_rx_bytes_total", ("peer", &a));
        let earned = value(&after, "bitcloud_money_units", ("what", "earned"));
        if rx >= rx0 + 4e6 && earned > earned0 {
            let peers: Vec<_> = after
                .samples
                .iter()
                .filter(|x| x.metric == "bitcloud_peer_rx_bytes_total")
                .collect();
            assert_eq!(peers.len(), 2, "labels only for its two neighbours");
            assert!(value(&after, "bitcloud_drops_total", ("reason", "no_route")) >= 0.0);
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "counters did not move: rx {rx0} -> {rx}, earned {earned0} -> {earned}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let other = sh(&[
        "ip",
        "netns",
        "exec",
        &n[1].ns,
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "http://127.0.0.1:9477/",
    ]);
    assert_eq!(other, "404");
    for x in n.iter_mut() {
        assert!(x.stop());
    }
}
