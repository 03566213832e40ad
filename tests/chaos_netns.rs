//! Chaos soak (issue 12): six real daemons (two payers, two paid relays, a paid exit with an
//! uplink to a test internet, a free destination) under netem-style loss, delay, reordering and
//! duplication, random link flaps, kill -9 and restart of random nodes, and wall-clock jumps
//! (libfaketime, back and forth, with and without a restart), for `BITCLOUD_CHAOS_SECS`
//! (60 in CI; `scripts/soak-chaos.sh` runs 600). The kernel here has no `sch_netem`, so each
//! link's impairment is a user-space impairer at one end (`common::impair`) that both daemons
//! talk through; link flaps are real (`ip link set down`). After every fault: no daemon died on its own,
//! every daemon answers, every link has a live session, the payer has a route to every node,
//! and traffic flows again (to the destination and through the exit). At the end: for every
//! channel in every wallet, the payee holds exactly the payer's latest voucher, earned equals
//! spent, and every wallet passes `PRAGMA integrity_check` and its own checks.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bitcloud::wallet::{Direction, Wallet};
use common::impair::{Impairer, Impairment};
use common::inet::{Procs, http_server, pattern_file, server_addresses, v6};
use common::{Lab, Node, root_or_skip, sh, udp_flood, units};

/// libfaketime's multithreaded build (Debian package `faketime`).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
/// How long the network may take to heal after a fault.
const CONVERGE: Duration = Duration::from_secs(45);

fn secs() -> u64 {
    std::env::var("BITCLOUD_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// xorshift64, seeded from the clock and printed so a failing schedule can be replayed with
/// `BITCLOUD_CHAOS_SEED`.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("BITCLOUD_CHAOS_SEED")
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("chaos seed {seed:#x} (BITCLOUD_CHAOS_SEED={seed:x} replays it)");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One underlay link: both ends' namespace and interface, and its impairer.
struct Link {
    ends: [(String, String); 2],
    name: String,
    impair: Impairer,
}

/// A random impairment, netem-like: up to 40 ms delay, 10 ms jitter, 8 % loss, 3 %
/// duplication, 15 % reordering.
fn random_impairment(rng: &mut Rng) -> Impairment {
    Impairment {
        delay: Duration::from_millis(1 + rng.below(40)),
        jitter: Duration::from_millis(rng.below(10)),
        loss_pm: rng.below(80) as u32,
        dup_pm: rng.below(30) as u32,
        reorder_pm: rng.below(150) as u32,
    }
}

fn set_clock(file: &Path, offset_secs: i64) {
    std::fs::write(file, format!("{offset_secs:+}\n")).unwrap();
}

/// The daemon environment that puts its wall clock (not its monotonic clock, as on a host
/// whose NTP steps the clock) at the offset in `file`, re-read every second.
fn faketime_env(file: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), FAKETIME.into()),
        ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
        ("FAKETIME_CACHE_DURATION".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ]
}

/// Whether `ns` gets an answer from `dst` within `limit`.
fn reaches(ns: &str, dst: IpAddr, limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if common::ping(ns, dst, 1, "0.2") {
            return true;
        }
    }
    false
}

/// Why the mesh has not converged yet, or None when it has.
fn unconverged(n: &mut [Node], server: IpAddr) -> Option<String> {
    for (i, x) in n.iter_mut().enumerate() {
        if !x.alive() {
            panic!(
                "node {i} died on its own: {}",
                std::fs::read_to_string(x.log_path()).unwrap_or_default()
            );
        }
    }
    for x in n.iter() {
        let Some(st) = x.try_status() else {
            return Some(format!("{} does not answer", x.ns));
        };
        for p in st["peers"].as_array().into_iter().flatten() {
            if p["connected"] != true {
                return Some(format!("{} -> {}: {p}", x.ns, p["id"]));
            }
        }
    }
    let routes = n[0].query("routes");
    for x in n.iter().skip(1) {
        let found = routes["routes"].as_array().is_some_and(|rs| {
            rs.iter()
                .any(|r| r["originator"] == x.id.as_str() && r["selected"] == true)
        });
        if !found {
            return Some(format!("{} has no route to {}", n[0].ns, x.ns));
        }
    }
    if !reaches(&n[0].ns, n[5].ipv6, Duration::from_secs(2)) {
        return Some("payer A does not reach C".into());
    }
    if !reaches(&n[1].ns, server, Duration::from_secs(2)) {
        return Some("payer B does not reach the internet through the exit".into());
    }
    None
}

fn wait_converged(n: &mut [Node], server: IpAddr, what: &str) -> Duration {
    let t0 = Instant::now();
    loop {
        match unconverged(n, server) {
            None => return t0.elapsed(),
            Some(why) if t0.elapsed() > CONVERGE => {
                panic!("not converged {CONVERGE:?} after {what}: {why}")
            }
            Some(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// B fetches a file from the internet through the exit, over and over, until `stop`;
/// (fetches that completed with the right hash, fetches that failed).
fn fetch_loop(
    ns: String,
    dir: PathBuf,
    want: Vec<u8>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u32, u32)> {
    std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, 0);
        let out = dir.join("fetched");
        while !stop.load(Ordering::Relaxed) {
            match common::inet::fetch(&ns, "-4", "http://198.19.0.1:8080/f", 10, &out) {
                Some(h) => {
                    assert_eq!(h, want, "a fetch through the exit came back corrupted");
                    ok += 1;
                }
                None => {
                    failed += 1;
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        (ok, failed)
    })
}

#[test]
fn chaos_soak_heals_and_keeps_the_books() {
    if !root_or_skip("chaos_soak_heals_and_keeps_the_books") {
        return;
    }
    for tool in ["tc", "curl", "python3"] {
        assert!(
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "{tool} is needed (.ci/run installs it)"
        );
    }
    assert!(
        Path::new(FAKETIME).exists(),
        "{FAKETIME} is needed for clock jumps (.ci/run installs Debian's faketime)"
    );
    let mut lab = Lab::new();
    // 0 a, 1 b: payers; 2 r1, 3 r2: paid relays; 4 x: paid exit; 5 c: free destination.
    let tags = ["a", "b", "r1", "r2", "x", "c"];
    let names: Vec<String> = tags.iter().map(|t| lab.ns(t)).collect();
    let inet = lab.ns("i");
    let pairs = [
        (0, 2),
        (0, 3),
        (1, 2),
        (1, 3),
        (2, 5),
        (3, 5),
        (2, 4),
        (3, 4),
        (2, 3),
    ];
    let mut links = Vec::new();
    let mut nodes: Vec<Node> = names
        .iter()
        .zip(tags)
        .map(|(ns, t)| lab.node(ns, t, "0.0.0.0:51820"))
        .collect();
    for (k, &(x, y)) in pairs.iter().enumerate() {
        let (ax, ay) = (
            format!("198.18.0.{}", k * 4 + 1),
            format!("198.18.0.{}", k * 4 + 2),
        );
        let (ix, iy) = lab.link(
            &names[x],
            &format!("{ax}/30"),
            &names[y],
            &format!("{ay}/30"),
        );
        // Both daemons reach each other through the impairer on y's side of the link.
        let impair = Impairer::start(
            &names[y],
            format!("{ay}:51821").parse().unwrap(),
            format!("{ay}:51820").parse().unwrap(),
            format!("{ax}:51820").parse().unwrap(),
            0x9e37_79b9_7f4a_7c15 ^ k as u64,
        );
        nodes[x].add_peer_at(&nodes[y], &impair.addr.to_string());
        nodes[y].add_peer_at(&nodes[x], &impair.addr.to_string());
        links.push(Link {
            ends: [(names[x].clone(), ix), (names[y].clone(), iy)],
            name: format!("{}-{}", tags[x], tags[y]),
            impair,
        });
    }
    // The exit's uplink to the test internet.
    let (i_dev, up) = lab.link(&inet, "198.19.1.1/24", &names[4], "198.19.1.2/24");
    v6(&inet, "2001:db8:1::1/64", &i_dev);
    v6(&names[4], "2001:db8:1::2/64", &up);
    sh(&[
        "ip",
        "-n",
        &names[4],
        "route",
        "add",
        "default",
        "via",
        "198.19.1.1",
    ]);
    server_addresses(&inet);
    let server: IpAddr = "198.19.0.1".parse().unwrap();
    let www = lab.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let want = pattern_file(&www.join("f"), 1 << 20);
    let _servers = Procs(vec![http_server(
        &inet,
        8080,
        &www,
        &lab.dir.join("http.log"),
    )]);

    for x in &nodes {
        x.append_config("\n[wallet]\npay_interval_ms = 200\n");
    }
    nodes[2].append_config("\n[pricing]\nfee_per_mib = 2000\n");
    nodes[3].append_config("\n[pricing]\nfee_per_mib = 3000\n");
    nodes[4].append_config(&format!(
        "\n[exit]\nenabled = true\nuplink = \"{up}\"\nfee_per_mib = 4000\ndns = [\"198.19.0.1\"]\n"
    ));
    nodes[1].append_config("\n[client]\nexit = \"auto\"\ndns = \"off\"\n");
    // Every daemon runs under libfaketime, its wall clock offset by its own file (re-read each
    // second); the monotonic clock stays real, as on a host whose NTP steps the clock.
    let clocks: Vec<PathBuf> = tags
        .iter()
        .map(|t| lab.dir.join(format!("clock-{t}")))
        .collect();
    for (x, f) in nodes.iter_mut().zip(&clocks) {
        set_clock(f, 0);
        x.env = faketime_env(f);
        x.start();
    }
    let took = wait_converged(&mut nodes, server, "start");
    eprintln!("converged after start in {took:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let flood = udp_flood(
        &nodes[0].ns,
        SocketAddr::new(nodes[5].ipv6, 9),
        1200,
        1 << 20,
        stop.clone(),
    );
    let fetches = fetch_loop(nodes[1].ns.clone(), lab.dir.clone(), want, stop.clone());

    // First, deterministically, the worst clock fault: a relay restarted an hour in the past
    // (its RTC lost, say). Its peers stayed up and remember its last handshake timestamp.
    set_clock(&clocks[2], -3600);
    std::thread::sleep(Duration::from_millis(1100));
    nodes[2].kill9();
    nodes[2].start();
    let took = wait_converged(
        &mut nodes,
        server,
        "r1 restarted with its clock an hour back",
    );
    eprintln!("r1 restarted an hour in the past: converged in {took:?}");
    set_clock(&clocks[2], 0);

    let mut rng = Rng::new();
    // Light impairment everywhere from the start; faults change it link by link.
    for l in &links {
        l.impair.set(Impairment {
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(2),
            loss_pm: 10,
            dup_pm: 10,
            reorder_pm: 50,
        });
    }
    let t0 = Instant::now();
    let mut faults: BTreeMap<&str, u32> = BTreeMap::new();
    let mut worst = Duration::ZERO;
    let mut clock_back_restarts = 0;
    while t0.elapsed() < Duration::from_secs(secs()) {
        std::thread::sleep(Duration::from_millis(500 + rng.below(2000)));
        let what = match rng.below(4) {
            0 => {
                let l = &links[rng.below(links.len() as u64) as usize];
                let i = random_impairment(&mut rng);
                l.impair.set(i);
                *faults.entry("impair").or_default() += 1;
                format!("impair {} {i}", l.name)
            }
            1 => {
                let l = &links[rng.below(links.len() as u64) as usize];
                let down = Duration::from_millis(300 + rng.below(4000));
                let (ns, dev) = &l.ends[rng.below(2) as usize];
                sh(&["ip", "-n", ns, "link", "set", dev, "down"]);
                std::thread::sleep(down);
                sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
                *faults.entry("flap").or_default() += 1;
                format!("flap {} for {down:?}", l.name)
            }
            2 => {
                let i = rng.below(6) as usize;
                nodes[i].kill9();
                std::thread::sleep(Duration::from_millis(rng.below(1500)));
                nodes[i].start();
                *faults.entry("kill9").or_default() += 1;
                format!("kill -9 and restart {}", tags[i])
            }
            _ => {
                let i = rng.below(6) as usize;
                let offset = [-3600, -600, -30, 0, 30, 600, 3600][rng.below(7) as usize];
                set_clock(&clocks[i], offset);
                let restart = rng.below(2) == 0;
                if restart {
                    // Let libfaketime's one-second cache see the new offset first.
                    std::thread::sleep(Duration::from_millis(1100));
                    nodes[i].kill9();
                    nodes[i].start();
                    clock_back_restarts += u32::from(offset < 0);
                }
                *faults.entry("clock").or_default() += 1;
                format!(
                    "clock of {} to {offset:+} s{}",
                    tags[i],
                    if restart { ", kill -9 and restart" } else { "" }
                )
            }
        };
        let took = wait_converged(&mut nodes, server, &what);
        worst = worst.max(took);
        eprintln!(
            "[{:>5.1}s] {what}: converged in {took:?}",
            t0.elapsed().as_secs_f64()
        );
    }
    // Heal: impairments off, clocks back, traffic stopped, then everyone settles.
    for l in &links {
        l.impair.set(Impairment::default());
    }
    stop.store(true, Ordering::Relaxed);
    let offered = flood.join().unwrap();
    let (fetched, failed) = fetches.join().unwrap();
    eprintln!(
        "faults {faults:?} ({clock_back_restarts} restarts with the clock set back); worst \
         convergence {worst:?}; A offered {offered} B to C; B fetched {fetched} MiB through the \
         exit ({failed} fetches failed during faults)"
    );
    assert!(fetched > 0, "B fetched nothing through the exit");
    wait_converged(&mut nodes, server, "the end of the faults");

    // Every outgoing channel settles: nothing unpaid, the last voucher acknowledged, and two
    // snapshots a moment apart agree (the nodes are read one after another, so a late packet
    // paid between two reads would show a payer ahead of its payee).
    let t_settle = Instant::now();
    let mut chans: Vec<(usize, serde_json::Value)> = Vec::new();
    let mut previous: Option<Vec<(usize, serde_json::Value)>> = None;
    loop {
        chans.clear();
        for (i, x) in nodes.iter().enumerate() {
            for c in x.wallet("channels")["channels"].as_array().unwrap() {
                chans.push((i, c.clone()));
            }
        }
        let open = chans.iter().find(|(_, c)| {
            c["direction"] == "outgoing"
                && (units(&c["unpaid"]) != 0 || c["acked_seq"] != c["latest_seq"])
        });
        let stable = previous.as_ref().is_some_and(|p| {
            let paid = |v: &[(usize, serde_json::Value)]| {
                v.iter()
                    .map(|(i, c)| {
                        (
                            *i,
                            c["channel_id"].clone(),
                            c["direction"].clone(),
                            c["cumulative_paid"].clone(),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            paid(p) == paid(&chans)
        });
        previous = Some(chans.clone());
        match open {
            None if stable => break,
            None => std::thread::sleep(Duration::from_millis(500)),
            Some((i, c)) if t_settle.elapsed() > Duration::from_secs(30) => {
                panic!("{}'s channel not settled after 30 s: {c}", tags[*i])
            }
            Some(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
    let (spent, earned): (u128, u128) = chans.iter().fold((0, 0), |(s, e), (_, c)| {
        let paid = units(&c["cumulative_paid"]);
        if c["direction"] == "outgoing" {
            (s + paid, e)
        } else {
            (s, e + paid)
        }
    });
    eprintln!(
        "{} channels; spent {spent} units, earned {earned}",
        chans.len()
    );
    assert!(spent > 0, "payments happened");
    // Channel by channel first, so a mismatch names its channel.
    for (i, out) in chans.iter().filter(|(_, c)| c["direction"] == "outgoing") {
        let inc = chans.iter().find(|(j, c)| {
            j != i && c["direction"] == "incoming" && c["channel_id"] == out["channel_id"]
        });
        let got = inc.map_or(0, |(_, c)| units(&c["cumulative_paid"]));
        assert_eq!(
            units(&out["cumulative_paid"]),
            got,
            "{}'s outgoing channel {out} vs its payee's {:?}",
            tags[*i],
            inc
        );
    }
    assert_eq!(
        spent, earned,
        "total spent by payers = total earned by payees"
    );
    // All at once: a payer still running after its payee stopped may sign one voucher more.
    for x in &nodes {
        x.term();
    }
    for x in nodes.iter_mut() {
        assert!(x.stop(), "clean shutdown of {}", x.ns);
    }

    // Voucher for voucher, from the databases themselves.
    let ids: Vec<String> = nodes.iter().map(|x| x.id.clone()).collect();
    let files: Vec<PathBuf> = nodes.iter().map(Node::wallet_file).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut all = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let mut w = Wallet::open(f).await.unwrap();
            let check = w
                .integrity_check()
                .await
                .unwrap_or_else(|e| panic!("{}'s wallet fails its integrity check: {e}", tags[i]));
            eprintln!("{}: {check:?}", tags[i]);
            all.push(w.channels().await.unwrap());
        }
        let mut matched = 0;
        for (i, chans) in all.iter().enumerate() {
            for out in chans.iter().filter(|c| c.direction == Direction::Outgoing) {
                let j = ids
                    .iter()
                    .position(|id| *id == out.peer().to_string())
                    .expect("payee is one of ours");
                let inc = all[j]
                    .iter()
                    .find(|c| c.direction == Direction::Incoming && c.id == out.id)
                    .unwrap_or_else(|| {
                        panic!("{} has no channel {:?} from {}", tags[j], out.id, tags[i])
                    });
                // Equal, or the payer committed one last voucher (for the few bytes sent
                // between the settle check and the stop) that the payee never received.
                let one_unsent = match (inc.latest, out.latest) {
                    (Some(p), Some(o)) => {
                        p.seq + 1 == o.seq
                            && o.cumulative_amount
                                .saturating_sub(p.cumulative_amount)
                                .units()
                                <= 100_000
                    }
                    _ => false,
                };
                assert!(
                    inc.latest == out.latest || one_unsent,
                    "{} holds {}'s latest voucher, no more, no less: {:?} vs {:?}",
                    tags[j],
                    tags[i],
                    inc.latest,
                    out.latest
                );
                matched += 1;
            }
        }
        assert!(
            matched >= 3,
            "payers paid relays and the exit: {matched} channels"
        );
    });
}

/// A node restarted with its wall clock an hour back reconnects at once to a peer that does not
/// know its endpoint (a server with a roaming client): its handshake timestamps continue above
/// the ones that peer accepted before (docs/clock.md), so they are not refused as stale.
#[test]
fn restart_with_clock_set_back_reconnects_at_once() {
    if !root_or_skip("restart_with_clock_set_back_reconnects_at_once") {
        return;
    }
    assert!(Path::new(FAKETIME).exists(), "{FAKETIME} is needed");
    let mut lab = Lab::new();
    let (a_ns, s_ns) = (lab.ns("a"), lab.ns("s"));
    lab.link(&a_ns, "198.18.0.1/30", &s_ns, "198.18.0.2/30");
    let mut a = lab.node(&a_ns, "a", "0.0.0.0:51820");
    let mut s = lab.node(&s_ns, "s", "0.0.0.0:51820");
    a.add_peer_at(&s, "198.18.0.2:51820");
    s.append_config(&format!("\n[[peer]]\nid = \"{}\"\n", a.id));
    let clock = lab.dir.join("clock-a");
    set_clock(&clock, 0);
    a.env = faketime_env(&clock);
    s.start();
    a.start();
    a.wait_ping(s.ipv6, Duration::from_secs(10))
        .expect("a reaches s");
    set_clock(&clock, -3600);
    std::thread::sleep(Duration::from_millis(1100));
    a.kill9();
    a.start();
    let took = a.wait_ping(s.ipv6, Duration::from_secs(8));
    eprintln!("after a restart an hour in the past: {took:?}");
    assert!(
        took.is_some(),
        "a restarted with its clock set back is refused by s: {}",
        s.status()["peers"]
    );
    // The clock really went back (libfaketime took hold: the floor alone makes a quick restart
    // start up to 11 s ahead, so only an hour-sized gap proves it), and the daemon started from
    // its floor.
    let log = std::fs::read_to_string(a.log_path()).unwrap();
    let behind: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("wall clock is ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        behind.iter().any(|&s| (3500..3700).contains(&s)),
        "a's daemon did not start an hour ahead of its set-back clock: {behind:?}"
    );
}
