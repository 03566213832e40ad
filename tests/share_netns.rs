//! Sharing an interface for pay (issue 14), on real namespaces with real daemons: a sharer
//! that is an exit, with an uplink to a test internet (HTTP server on 198.19.0.1, which knows
//! the way back to the guests, so a packet past the guard would be answered) and a shared
//! bridge to two guest namespaces whose default route points at the sharer, as if a DHCP
//! server had given it; the sharer host forwards IP and runs a web service of its own. Before
//! a guest runs Bitcloud it reaches nothing (a capture on the uplink sees none of its packets);
//! running Bitcloud with discovery and `exit = "auto"`, configured with nothing about the
//! sharer, it fetches 20 MB through the sharer's exit and pays for it; a guest that never
//! pays is shaped then cut while the payer carries on at full service; a reload without
//! `[share]` lifts the guard and one with it restores it, a deleted table comes back, and
//! `share off` with the daemon running lifts it until the next reload; after kill -9 of the
//! sharer the guard holds, the service manager's cleanup keeps it, and `share off` with no
//! daemon leaves the ruleset exactly as before sharing.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::inet::{
    Procs, capture, captured, channel, cli, fetch, http_server, http_sources, pattern_file,
    server_addresses, stop_capture, v6, wait_exit,
};
use common::{BIN, Lab, Node, root_or_skip, sh, udp_flood, units};

const BIG: usize = 20 << 20;
/// The sharer's exit fee, smallest units per MiB: the default unknown-neighbour window
/// (0.001 CC) is then 10 MiB of service.
const FEE: u128 = 100_000;
const GUEST_NET: &str = "198.18.5.0/24";
const GUEST_NET6: &str = "2001:db8:5::/64";

fn nft_ruleset(ns: &str) -> String {
    sh(&["ip", "netns", "exec", ns, "nft", "list", "ruleset"])
}

fn share_table(ns: &str) -> bool {
    sh(&["ip", "netns", "exec", ns, "nft", "list", "tables"]).contains("inet bitcloud_share")
}

fn share_status(n: &Node) -> serde_json::Value {
    serde_json::from_str(&cli(n, &["share", "status", "--json"])).expect("share status JSON")
}

fn guest<'a>(st: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    st["guests"].as_array()?.iter().find(|g| g["id"] == id)
}

/// Every way a guest without Bitcloud might get out, through the sharer or to it: none may
/// succeed, and the uplink must see none of its packets (while it sees the sharer's own ping,
/// so the capture would have seen a leak).
fn assert_locked_out(lab: &Lab, g: &str, s: &str, uplink: &str, tag: &str) {
    let pcap = lab.dir.join(format!("{tag}.pcap"));
    let cap = capture(
        s,
        uplink,
        &pcap,
        &lab.dir.join(format!("{tag}.tcpdump.log")),
    );
    // All at once (each one waits out its timeout): a fetch or ping that succeeds fails.
    let fetches = [
        ("-4", "http://198.19.0.1/small"),      // the internet
        ("-4", "http://198.19.1.2:8080/small"), // the sharer's uplink address, its own service
        ("-4", "http://198.18.5.1:8080/small"), // the sharer's address on the shared link
        ("-6", "http://[2001:db8::1]/small"),
        ("-6", "http://[2001:db8:5::1]:8080/small"),
    ];
    let pings = [
        "198.19.0.1",
        "198.19.1.2",
        "198.18.5.1",
        "2001:db8::1",
        "2001:db8:5::1",
    ];
    std::thread::scope(|sc| {
        let mut checks = Vec::new();
        for (k, (fam, url)) in fetches.into_iter().enumerate() {
            let dl = lab.dir.join(format!("dl-locked-{tag}-{k}"));
            checks.push(sc.spawn(move || (url, fetch(g, fam, url, 2, &dl).is_none())));
        }
        for dst in pings {
            checks.push(sc.spawn(move || (dst, !common::ping(g, dst.parse().unwrap(), 1, "0.2"))));
        }
        for c in checks {
            let (what, refused) = c.join().unwrap();
            assert!(refused, "{tag}: a guest without Bitcloud reached {what}");
        }
    });
    assert!(
        common::ping(s, "198.19.0.1".parse().unwrap(), 1, "0.2"),
        "the sharer's own uplink works"
    );
    stop_capture(cap);
    let from_guests = captured(
        &pcap,
        &format!("src net {GUEST_NET} or src net {GUEST_NET6}"),
    );
    assert!(
        from_guests.is_empty(),
        "{tag}: guest packets on the uplink:\n{from_guests}"
    );
    assert!(
        !captured(&pcap, "icmp").is_empty(),
        "{tag}: the capture missed the sharer's ping"
    );
}

fn guest_config(n: &Node, dev: &str, pay: bool) {
    // Nothing about the sharer: it is found by its beacons.
    n.append_config(&format!(
        "\n[discovery]\nenabled = true\ninterfaces = [\"{dev}\"]\ninterval_secs = 1\n\
         [client]\nexit = \"auto\"\ndns = \"off\"\n[wallet]\npay_interval_ms = 500\n\
         [testing]\npay = {pay}\n"
    ));
}

#[test]
fn shared_interface_admits_only_bitcloud_and_guests_pay_for_the_uplink() {
    if !root_or_skip("shared_interface_admits_only_bitcloud_and_guests_pay_for_the_uplink") {
        return;
    }
    let t_start = Instant::now();
    let mut lab = Lab::new();
    let (inet, s, g1, g2) = (lab.ns("i"), lab.ns("s"), lab.ns("g1"), lab.ns("g2"));
    let (i_dev, up) = lab.link(&inet, "198.19.1.1/24", &s, "198.19.1.2/24");
    let members = lab.bridge(&s, &[(&g1, "198.18.5.2/24"), (&g2, "198.18.5.3/24")]);
    let shared = format!("{}br", lab.prefix);
    sh(&[
        "ip",
        "-n",
        &s,
        "addr",
        "add",
        "198.18.5.1/24",
        "dev",
        &shared,
    ]);
    sh(&[
        "ip",
        "-n",
        &s,
        "route",
        "add",
        "default",
        "via",
        "198.19.1.1",
    ]);
    // The internet knows the way back to the guests and the sharer is a router: without the
    // guard a guest's packet would go out and be answered.
    sh(&[
        "ip",
        "-n",
        &inet,
        "route",
        "add",
        GUEST_NET,
        "via",
        "198.19.1.2",
    ]);
    for k in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
        sh(&["ip", "netns", "exec", &s, "sysctl", "-qw", k]);
    }
    // IPv6 too (the test internet's 2001:db8::/32): the guard is one table for both.
    server_addresses(&inet);
    v6(&inet, "2001:db8:1::1/64", &i_dev);
    v6(&s, "2001:db8:1::2/64", &up);
    v6(&s, "2001:db8:5::1/64", &shared);
    let route6 = |ns: &str, dst: &str, via: &str| {
        sh(&["ip", "-n", ns, "-6", "route", "add", dst, "via", via]);
    };
    route6(&s, "default", "2001:db8:1::1");
    route6(&inet, GUEST_NET6, "2001:db8:1::2");
    for (k, (g, dev)) in [(&g1, &members[0]), (&g2, &members[1])]
        .into_iter()
        .enumerate()
    {
        sh(&[
            "ip",
            "-n",
            g,
            "route",
            "add",
            "default",
            "via",
            "198.18.5.1",
        ]);
        v6(g, &format!("2001:db8:5::{}/64", k + 2), dev);
        route6(g, "default", "2001:db8:5::1");
    }
    // Whole segments on the uplink, as on a wire (see exit_netns.rs).
    for (ns, dev) in [(&inet, &i_dev), (&s, &up)] {
        sh(&[
            "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro",
            "off",
        ]);
    }
    let www = lab.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let big_hash = pattern_file(&www.join("big"), BIG);
    std::fs::write(www.join("small"), b"small file\n").unwrap();
    let http_log = lab.dir.join("http.log");
    let host_log = lab.dir.join("host-http.log");
    let procs = Procs(vec![
        http_server(&inet, 80, &www, &http_log),
        // A service of the sharer host, on every address: guests must not reach it.
        http_server(&s, 8080, &www, &host_log),
    ]);
    std::thread::sleep(Duration::from_millis(500));
    let before_sharing = nft_ruleset(&s);

    let mut sn = lab.node(&s, "s", "0.0.0.0:51820");
    let share_cfg = format!("\n[share]\ninterfaces = [\"{shared}\"]\n");
    sn.append_config(&format!(
        "\n[exit]\nenabled = true\nuplink = \"{up}\"\nfee_per_mib = {FEE}\ndns = [\"198.19.0.1\"]\n\
         [discovery]\ninterval_secs = 1\n\
         [wallet]\ngrace_secs = 2\nfree_bytes_per_sec = 1048576\n{share_cfg}"
    ));
    sn.start();
    assert!(share_table(&s), "share table installed at start");

    // (1) A guest that does not run Bitcloud reaches nothing.
    assert_locked_out(&lab, &g1, &s, &up, "before");
    assert!(
        http_sources(&http_log, "/small").is_empty()
            && http_sources(&host_log, "/small").is_empty(),
        "a server saw a guest"
    );

    // (2) The guest runs Bitcloud: it finds the sharer, uses it as its exit and pays.
    let mut p = lab.node(&g1, "g1", "0.0.0.0:51820");
    guest_config(&p, &members[0], true);
    p.start();
    wait_exit(&p, Some(&sn.id), Duration::from_secs(20));
    let dl = lab.dir.join("dl");
    assert_eq!(
        fetch(&g1, "-4", "http://198.19.0.1/big", 60, &dl).as_deref(),
        Some(big_hash.as_slice()),
        "20 MB through the sharer"
    );
    assert_eq!(
        http_sources(&http_log, "/big"),
        ["::ffff:198.19.1.2"],
        "the server sees the sharer's uplink"
    );
    let t0 = Instant::now();
    let (paid, got) = loop {
        let out = channel(&p, &sn.id, "outgoing", "exit");
        let inc = channel(&sn, &p.id, "incoming", "exit");
        let (paid, got) = (
            units(&out["cumulative_paid"]),
            units(&inc["cumulative_paid"]),
        );
        if units(&out["unpaid"]) == 0 && out["acked_seq"] == out["latest_seq"] && paid == got {
            break (paid, inc);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "not settled: {out} {inc}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let billed = u128::from(got["metered_bytes"].as_u64().unwrap());
    assert!(billed >= BIG as u128, "billed {billed} B for a 20 MB fetch");
    let expect = billed * FEE / (1 << 20);
    assert!(
        paid.abs_diff(expect) * 200 < expect,
        "paid {paid} for {billed} B at {FEE}/MiB (expected {expect})"
    );
    let st = share_status(&sn);
    let g = guest(&st, &p.id).unwrap_or_else(|| panic!("guest not listed: {st}"));
    assert_eq!(g["interface"], shared.as_str(), "{g}");
    assert_eq!(units(&g["paid"]), paid, "{g}");
    assert_eq!(g["enforcement"], "full", "{g}");
    assert!(g["exit_bytes"].as_u64().unwrap() >= BIG as u64, "{g}");
    assert_eq!(st["sharing"], true);
    assert_eq!(st["table_installed"], true);
    let bound = units(&st["bound"]["per_guest"]);
    assert!(bound > 0, "{st}");
    eprintln!(
        "guest paid {paid} units for {billed} B through the sharer; per-guest bound {bound} units"
    );

    // (4) A guest that never pays is shaped, then cut, while the payer keeps full service.
    let mut np = lab.node(&g2, "g2", "0.0.0.0:51820");
    guest_config(&np, &members[1], false);
    np.start();
    wait_exit(&np, Some(&sn.id), Duration::from_secs(20));
    let stop = Arc::new(AtomicBool::new(false));
    let flood = udp_flood(
        &g2,
        SocketAddr::from(([198, 19, 0, 1], 9)),
        1200,
        8 << 20,
        stop.clone(),
    );
    let (g1n, dl2, hash2) = (g1.clone(), lab.dir.join("dl2"), big_hash.clone());
    let payer_fetch = std::thread::spawn(move || {
        fetch(&g1n, "-4", "http://198.19.0.1/big", 60, &dl2).as_deref() == Some(hash2.as_slice())
    });
    let t0 = Instant::now();
    let (mut np_levels, mut p_levels) = (Vec::new(), Vec::new());
    loop {
        let st = share_status(&sn);
        if let Some(g) = guest(&st, &np.id) {
            let l = g["enforcement"].as_str().unwrap().to_string();
            if np_levels.last() != Some(&l) {
                np_levels.push(l);
            }
        }
        if let Some(g) = guest(&st, &p.id) {
            p_levels.push(g["enforcement"].as_str().unwrap().to_string());
        }
        if np_levels.last().map(String::as_str) == Some("cut") && payer_fetch.is_finished() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "non-payer {np_levels:?}, payer fetch done {}",
            payer_fetch.is_finished()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    assert!(
        payer_fetch.join().unwrap(),
        "the payer's 20 MB while the other is cut"
    );
    assert_eq!(np_levels, ["full", "shaped", "cut"], "non-payer's ladder");
    assert!(p_levels.iter().all(|l| l == "full"), "payer: {p_levels:?}");
    let st = share_status(&sn);
    let g = guest(&st, &np.id).unwrap();
    assert_eq!(units(&g["paid"]), 0, "{g}");
    let owed = units(&g["unpaid"]);
    assert!(
        owed > 0 && owed <= bound,
        "the non-payer owes {owed}, bound {bound}"
    );
    eprintln!("non-payer cut owing {owed} units (bound {bound}); payer stayed at full service");
    assert!(
        fetch(&g2, "-4", "http://198.19.0.1/small", 3, &dl).is_none(),
        "no service while cut"
    );

    // A reload without [share] lifts the guard; with it again, the guard is back.
    let with = std::fs::read_to_string(&sn.cfg).unwrap();
    let reload = |text: &str, want: bool| {
        std::fs::write(&sn.cfg, text).unwrap();
        sh(&["kill", "-HUP", &sn.pid().unwrap().to_string()]);
        let t0 = Instant::now();
        while share_table(&s) != want {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "reload: table {want}?"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    reload(&with.replace(&share_cfg, "\n"), false);
    assert_eq!(share_status(&sn)["sharing"], false);
    reload(&with, true);
    assert_eq!(share_status(&sn)["sharing"], true);
    // Something else deletes the table: the daemon puts it back.
    sh(&[
        "ip",
        "netns",
        "exec",
        &s,
        "nft",
        "delete",
        "table",
        "inet",
        "bitcloud_share",
    ]);
    let t0 = Instant::now();
    while !share_table(&s) {
        assert!(t0.elapsed() < Duration::from_secs(5), "not repaired");
        std::thread::sleep(Duration::from_millis(100));
    }
    // `share off` with the daemon running lifts it until the next reload or start.
    let out = cli(&sn, &["share", "off", "--json"]);
    assert!(
        out.contains("\"live\": true") && out.contains("\"removed\": true"),
        "{out}"
    );
    assert!(!share_table(&s) && share_status(&sn)["sharing"] == false);
    std::thread::sleep(Duration::from_secs(3));
    assert!(!share_table(&s), "share off was undone without a reload");
    reload(&with, true);

    // (3) The sharer's daemon dies: the guard holds. The guests stop their own daemons (so
    // their kill switches are gone and only the sharer's guard stands in the way).
    sn.kill9();
    let (p_ok, np_ok) = (p.stop(), np.stop());
    assert!(p_ok && np_ok, "guests stop cleanly");
    for g in [&g1, &g2] {
        assert!(
            !nft_ruleset(g).contains("bitcloud"),
            "a guest kill switch is left"
        );
    }
    assert_locked_out(&lab, &g1, &s, &up, "killed");
    // What the service manager runs after the crash keeps the guard (the exit table goes).
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        &s,
        "env",
        "SERVICE_RESULT=signal",
        BIN,
        "cleanup",
        "-c",
        sn.cfg.to_str().unwrap(),
    ]);
    assert!(out.contains("exit table removed"), "{out}");
    assert!(share_table(&s), "cleanup removed the guard");
    assert_locked_out(&lab, &g2, &s, &up, "cleaned");
    let st = share_status(&sn);
    assert_eq!(
        (st["live"].as_bool(), st["table_installed"].as_bool()),
        (Some(false), Some(true))
    );
    // `share off` with no daemon: the ruleset is as before sharing, and the way the guard
    // blocked is open (so the checks above would have seen a missing guard).
    let out = cli(&sn, &["share", "off"]);
    assert!(
        out.contains("no daemon running") && out.contains("removed"),
        "{out}"
    );
    assert_eq!(
        nft_ruleset(&s),
        before_sharing,
        "share off left rules behind"
    );
    assert!(fetch(&g1, "-4", "http://198.19.0.1/small", 5, &dl).is_some());
    assert_eq!(
        http_sources(&http_log, "/small"),
        ["::ffff:198.18.5.2"],
        "direct, unguarded"
    );
    assert!(fetch(&g1, "-4", "http://198.18.5.1:8080/small", 5, &dl).is_some());
    assert!(fetch(&g1, "-6", "http://[2001:db8::1]/small", 5, &dl).is_some());
    assert_eq!(
        http_sources(&http_log, "/small").last().map(String::as_str),
        Some("2001:db8:5::2"),
        "direct over IPv6, unguarded"
    );
    drop(procs);
    eprintln!("share test took {:?}", t_start.elapsed());
}
