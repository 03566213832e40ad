//! The client gateway on real namespaces: policy routing through netlink and the nftables
//! kill switch (src/gateway), applied and removed by the library as the daemon will, checked
//! with the kernel's own view (`ip route get`, `ip rule`, `nft list ruleset`) and with real
//! traffic to a test "internet" address (198.19.0.1) in another namespace.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bitcloud::gateway::{self, killswitch::KillSwitch, policy};
use common::{Lab, in_netns, root_or_skip, sh};

/// Run an async gateway call on a thread inside `ns` (netlink sockets and `nft` children
/// belong to the namespace of the thread that opens them).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    in_netns(ns, f).join().expect("namespace thread")
}

fn policy_call<F, T>(ns: &str, f: F) -> T
where
    F: FnOnce(rtnetlink::Handle) -> std::pin::Pin<Box<dyn Future<Output = T> + Send>>
        + Send
        + 'static,
    T: Send + 'static,
{
    in_ns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let h = policy::connect().expect("netlink");
            f(h).await
        })
    })
}

/// Everything routing-related in `ns`, as text.
fn routing_text(ns: &str) -> String {
    [
        &["ip", "-n", ns, "rule"][..],
        &["ip", "-n", ns, "-6", "rule"],
        &["ip", "-n", ns, "route", "show", "table", "all"],
        &["ip", "-n", ns, "-6", "route", "show", "table", "all"],
    ]
    .iter()
    .map(|a| sh(a))
    .collect::<Vec<_>>()
    .join("\n--\n")
}

/// Client `c` with a TUN `bct0` and an underlay link to `r`, which also holds the test
/// internet address 198.19.0.1 and is c's default gateway.
fn client_lab(lab: &mut Lab) -> (String, String, String) {
    let (c, r) = (lab.ns("c"), lab.ns("r"));
    let (c_if, _) = lab.link(&c, "198.18.0.1/30", &r, "198.18.0.2/30");
    // The test internet's address lives on r's loopback (no dummy module needed).
    sh(&["ip", "-n", &r, "addr", "add", "198.19.0.1/32", "dev", "lo"]);
    sh(&[
        "ip",
        "-n",
        &c,
        "route",
        "add",
        "default",
        "via",
        "198.18.0.2",
    ]);
    sh(&[
        "ip", "-n", &c, "tuntap", "add", "dev", "bct0", "mode", "tun",
    ]);
    sh(&[
        "ip",
        "-n",
        &c,
        "addr",
        "add",
        "100.64.0.5/10",
        "dev",
        "bct0",
    ]);
    sh(&["ip", "-n", &c, "link", "set", "bct0", "up"]);
    (c, r, c_if)
}

#[test]
fn policy_routing_sends_unmarked_traffic_to_the_tun_and_leaves_nothing_behind() {
    if !root_or_skip("policy_routing_sends_unmarked_traffic_to_the_tun_and_leaves_nothing_behind") {
        return;
    }
    let mut lab = Lab::new();
    let (c, _r, c_if) = client_lab(&mut lab);
    let before = routing_text(&c);
    for _ in 0..2 {
        // Twice: applying is idempotent.
        policy_call(&c, |h| {
            Box::pin(async move { policy::apply(&h, "bct0").await })
        })
        .expect("apply");
    }
    let got = policy_call(&c, |h| Box::pin(async move { policy::installed(&h).await })).unwrap();
    assert!(got.complete(), "{got:?}");
    let get = |args: &[&str]| sh(&[&["ip", "-n", &c][..], args].concat());
    let inet = get(&["route", "get", "198.19.0.1"]);
    assert!(
        inet.contains("dev bct0"),
        "internet goes to the TUN: {inet}"
    );
    let marked = get(&["route", "get", "198.19.0.1", "mark", "0xca6c"]);
    assert!(
        marked.contains("via 198.18.0.2") && marked.contains(&c_if),
        "the daemon's marked UDP keeps the underlay: {marked}"
    );
    let lan = get(&["route", "get", "198.18.0.2"]);
    assert!(
        lan.contains(&format!("dev {c_if}")),
        "the LAN keeps its route: {lan}"
    );
    let v6 = get(&["-6", "route", "get", "2001:db8::1"]);
    assert!(v6.contains("dev bct0"), "IPv6 goes to the TUN too: {v6}");
    let rules = get(&["rule"]);
    assert!(
        rules.contains("5300:\tfrom all lookup main suppress_prefixlength 0")
            && rules.contains("5320:\tnot from all fwmark 0xca6c lookup 51820"),
        "{rules}"
    );
    // Something else deletes one of our rules: the next apply restores it.
    get(&["rule", "del", "priority", "5320"]);
    let got = policy_call(&c, |h| Box::pin(async move { policy::installed(&h).await })).unwrap();
    assert_eq!(got.rules, 3);
    policy_call(&c, |h| {
        Box::pin(async move { policy::apply(&h, "bct0").await })
    })
    .unwrap();
    let removed =
        policy_call(&c, |h| Box::pin(async move { policy::remove(&h).await })).expect("remove");
    assert!(removed.complete(), "{removed:?}");
    assert_eq!(
        routing_text(&c),
        before,
        "rules and routes exactly as before"
    );
    let again = policy_call(&c, |h| Box::pin(async move { policy::remove(&h).await })).unwrap();
    assert_eq!(
        again,
        policy::Installed::default(),
        "removing twice is harmless"
    );
}

/// Send one UDP datagram from `ns` (optionally with a firewall mark) to `to`; true if the
/// listener in `listen_ns` received it within 500 ms.
fn udp_passes(ns: &str, mark: Option<u32>, listen_ns: &str, to: SocketAddr) -> bool {
    let rx = in_netns(listen_ns, move || {
        let s = UdpSocket::bind(to).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(800)))
            .unwrap();
        let mut b = [0u8; 64];
        s.recv_from(&mut b).is_ok()
    });
    std::thread::sleep(Duration::from_millis(100));
    in_ns(ns, move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        if let Some(m) = mark {
            s.set_mark(m).unwrap();
        }
        // An error here (EPERM from the firewall) also means nothing left.
        let _ = s.send_to(b"probe", &to.into());
    });
    rx.join().unwrap()
}

#[test]
fn kill_switch_fails_closed_lets_marked_udp_and_the_lan_out_and_removes_cleanly() {
    if !root_or_skip("kill_switch_fails_closed_lets_marked_udp_and_the_lan_out_and_removes_cleanly")
    {
        return;
    }
    let mut lab = Lab::new();
    let (c, r, _) = client_lab(&mut lab);
    let nft_before = sh(&["ip", "netns", "exec", &c, "nft", "list", "ruleset"]);
    let inet: SocketAddr = "198.19.0.1:9999".parse().unwrap();
    let lan_dns: SocketAddr = "198.18.0.2:53".parse().unwrap();
    let lan: SocketAddr = "198.18.0.2:9999".parse().unwrap();
    assert!(
        udp_passes(&c, None, &r, inet),
        "the internet is reachable before"
    );
    assert!(common::ping(&c, "198.19.0.1".parse().unwrap(), 1, "0.2"));

    for allow_lan in [false, true] {
        let c2 = c.clone();
        in_ns(&c, move || {
            let lan = allow_lan.then(|| gateway::lan::connected_prefixes(&["bct0"]));
            KillSwitch {
                tun: "bct0".into(),
                fwmark: gateway::FWMARK,
                dns: vec!["100.64.0.9".parse().unwrap()],
                lan,
            }
            .apply()
            .unwrap_or_else(|e| panic!("{c2}: {e}"));
        });
        assert!(in_ns(&c, || gateway::killswitch::installed().unwrap()));
        assert!(
            !udp_passes(&c, None, &r, inet),
            "unmarked UDP to the internet leaked"
        );
        assert!(
            !common::ping(&c, "198.19.0.1".parse().unwrap(), 1, "0.2"),
            "ping to the internet leaked"
        );
        assert!(
            !udp_passes(&c, None, &r, lan_dns),
            "DNS to a LAN resolver leaked"
        );
        assert!(
            udp_passes(&c, Some(gateway::FWMARK), &r, inet),
            "the daemon's marked UDP must pass"
        );
        assert_eq!(
            udp_passes(&c, None, &r, lan),
            allow_lan,
            "LAN traffic passes exactly when allowed"
        );
    }
    // The rules belong to the kernel: nothing of ours runs now, and they still hold.
    assert!(!udp_passes(&c, None, &r, inet));
    assert!(in_ns(&c, || gateway::killswitch::remove().unwrap()));
    assert!(
        !in_ns(&c, || gateway::killswitch::remove().unwrap()),
        "nothing left to remove"
    );
    assert_eq!(
        sh(&["ip", "netns", "exec", &c, "nft", "list", "ruleset"]),
        nft_before,
        "the ruleset is exactly as before"
    );
    assert!(
        udp_passes(&c, None, &r, inet),
        "direct connectivity is back"
    );
}
