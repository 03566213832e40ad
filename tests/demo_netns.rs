//! `bitcloud demo` end to end (issue 10): run as a user would, to completion under a time
//! bound, its `--json` summary checked against itself (each node's wallet earned and spent
//! against the traffic table, both sides of every voucher, the mesh's books balance) and the
//! host checked afterwards: no namespace, link, file or daemon of it left. And Ctrl-C in the
//! middle of a download: the demo removes everything and exits non-zero.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{BIN, root_or_skip, sh};

/// The two tests compare the host's namespaces and links before and after; one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Namespace names and interface names on the host.
fn host_names() -> BTreeSet<String> {
    let mut s: BTreeSet<String> = sh(&["ip", "netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(|n| format!("netns {n}")))
        .collect();
    let links: serde_json::Value = serde_json::from_str(&sh(&["ip", "-j", "link"])).unwrap();
    for l in links.as_array().unwrap() {
        s.insert(format!("link {}", l["ifname"].as_str().unwrap()));
    }
    s
}

/// What a demo with PID `pid` names its namespaces and links.
fn ours(names: &BTreeSet<String>, pid: u32) -> Vec<String> {
    let p = format!("bcd{pid}");
    names
        .iter()
        .filter(|n| {
            n.split_whitespace()
                .nth(1)
                .is_some_and(|x| x.starts_with(&p))
        })
        .cloned()
        .collect()
}

/// A namespace or link named as a demo names them: `bcd<digits>...`.
fn demo_named(n: &str) -> bool {
    n.split_whitespace()
        .nth(1)
        .and_then(|x| x.strip_prefix("bcd"))
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
}

/// Whether `pid` is still a process (a daemon the demo started).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
}

/// The demo under test: killed (by PID) and its namespaces removed by name if a test fails.
struct Demo {
    child: Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let pid = self.child.id();
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            let t0 = Instant::now();
            while self.child.try_wait().ok().flatten().is_none()
                && t0.elapsed() < Duration::from_secs(20)
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for n in ours(&host_names(), pid) {
            if let Some(ns) = n.strip_prefix("netns ") {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }
}

fn start(args: &[&str]) -> Demo {
    let child = Command::new(BIN)
        .arg("demo")
        .args(args)
        .env("CI", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bitcloud demo");
    Demo { child }
}

/// Wait (at most `limit`) for the demo to exit; its status.
fn wait(d: &mut Demo, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            return st;
        }
        assert!(t0.elapsed() < limit, "the demo took longer than {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn units(v: &serde_json::Value) -> u128 {
    v.as_u64()
        .map(u128::from)
        .unwrap_or_else(|| panic!("not units: {v}"))
}

#[test]
fn demo_runs_to_completion_and_its_table_agrees_with_the_wallets() {
    if !root_or_skip("demo_runs_to_completion_and_its_table_agrees_with_the_wallets") {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = host_names();
    let t0 = Instant::now();
    let mut d = start(&["--json"]);
    let pid = d.child.id();
    let stderr = d.child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("demo: {l}");
            s.push_str(&l);
            s.push('\n');
        }
        s
    });
    let stdout = d.child.stdout.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    // The bound: under two minutes.
    let st = wait(&mut d, Duration::from_secs(120));
    let secs = t0.elapsed().as_secs_f64();
    let (out, log) = (out.join().unwrap(), log.join().unwrap());
    assert!(st.success(), "demo failed ({st}):\n{log}\n{out}");
    eprintln!("bitcloud demo took {secs:.1} s");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["cleaned"], true, "{v}");
    let checks = v["checks"].as_array().unwrap();
    assert!(checks.len() > 20, "{v}");
    for c in checks {
        assert_eq!(c["ok"], true, "{c}");
    }

    // The table agrees with the wallets, recomputed here from the summary.
    let rows = v["traffic"].as_array().unwrap();
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 5, "{v}");
    let (mut all_earned, mut all_spent) = (0u128, 0u128);
    for n in nodes {
        let name = n["name"].as_str().unwrap();
        let earned: u128 = rows
            .iter()
            .filter(|r| r["carrier"] == name)
            .map(|r| units(&r["paid_units"]))
            .sum();
        let spent: u128 = rows
            .iter()
            .filter(|r| r["payer"] == name)
            .map(|r| units(&r["payer_paid_units"]))
            .sum();
        assert_eq!(units(&n["earned_units"]), earned, "{name} earned: {v}");
        assert_eq!(units(&n["spent_units"]), spent, "{name} spent: {v}");
        if n["role"] != "client" {
            assert!(earned > 0, "{name} carried traffic and earned nothing: {v}");
        } else {
            assert_eq!(earned, 0, "the client carried nothing for anyone: {v}");
            assert!(spent > 0, "{v}");
        }
        all_earned += earned;
        all_spent += spent;
    }
    assert_eq!(all_earned, all_spent, "the mesh's books balance");
    for r in rows {
        assert_eq!(r["paid_units"], r["payer_paid_units"], "{r}");
        // Every carrier was paid its own fee on the bytes it counted (2 % for what a client
        // may not have received, and a few units of rounding).
        let (paid, want) = (units(&r["paid_units"]), units(&r["expected_units"]));
        assert!(paid <= want + 4 && paid + 4 >= want * 98 / 100, "{r}");
    }
    // Both exits carried a hash-checked download, seen by the internet from their uplinks.
    let downloads = v["downloads"].as_array().unwrap();
    let exits: Vec<&str> = downloads
        .iter()
        .map(|d| d["exit"].as_str().unwrap())
        .collect();
    assert_eq!(exits, ["exitA", "exitB"]);
    for d in downloads {
        assert_eq!(d["hash_ok"], true, "{d}");
        assert_eq!(d["bytes"], d["served_bytes"], "{d}");
        let billed: u64 = rows
            .iter()
            .filter(|r| r["carrier"] == d["exit"] && r["kind"] == "exit")
            .map(|r| r["bytes"].as_u64().unwrap())
            .sum();
        assert!(
            billed >= d["bytes"].as_u64().unwrap(),
            "{d} billed {billed}"
        );
    }

    // Nothing left: namespaces, links, files, daemons.
    let after = host_names();
    let new: Vec<&String> = after
        .difference(&before)
        .filter(|n| demo_named(n))
        .collect();
    assert!(new.is_empty(), "left behind: {new:?}");
    assert!(ours(&after, pid).is_empty());
    let dir = PathBuf::from(v["dir"].as_str().unwrap());
    assert!(!dir.exists(), "{} left", dir.display());
    for p in v["pids"].as_array().unwrap() {
        assert!(
            !alive(p.as_u64().unwrap() as u32),
            "daemon {p} still running"
        );
    }
}

#[test]
fn demo_ctrl_c_mid_run_removes_everything() {
    if !root_or_skip("demo_ctrl_c_mid_run_removes_everything") {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = host_names();
    let mut d = start(&[]);
    let pid = d.child.id();
    let stdout = d.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("demo: {l}");
            let _ = tx.send(l);
        }
    });
    // Wait until the first download runs: every namespace and daemon exists.
    let t0 = Instant::now();
    loop {
        let l = rx
            .recv_timeout(Duration::from_secs(60).saturating_sub(t0.elapsed()))
            .expect("the demo reached its first download");
        if l.contains("downloading") {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let mid = host_names();
    let made = ours(&mid, pid);
    assert_eq!(
        made.iter().filter(|n| n.starts_with("netns ")).count(),
        6,
        "internet, client, two relays, two exits: {made:?}"
    );
    // The daemons are the demo's children (`ip netns exec` execs them).
    let daemons: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                // ppid is the 2nd field after the ")" that ends the command name.
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("\0up\0"))
        })
        .collect();
    assert_eq!(daemons.len(), 5, "five daemons running: {daemons:?}");
    let dir = PathBuf::from(format!("/tmp/bitcloud-demo-{pid}"));
    assert!(dir.exists());

    sh(&["kill", "-INT", &pid.to_string()]);
    let st = wait(&mut d, Duration::from_secs(30));
    assert!(!st.success(), "an interrupted demo exits non-zero: {st}");
    let mut err = String::new();
    std::io::Read::read_to_string(d.child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("interrupted"), "{err}");
    let after = host_names();
    let new: Vec<&String> = after
        .difference(&before)
        .filter(|n| demo_named(n))
        .collect();
    assert!(new.is_empty(), "left behind after Ctrl-C: {new:?}");
    assert!(ours(&after, pid).is_empty());
    assert!(!dir.exists(), "{} left", dir.display());
    for p in daemons {
        assert!(!alive(p), "daemon {p} still running after Ctrl-C");
    }
}
