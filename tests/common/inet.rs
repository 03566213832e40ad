//! The test "internet" and what tests do with it: processes started in a namespace and killed
//! by PID (`Procs`, `spawn_in`), an HTTP server with a hash-checkable file, fetches with curl,
//! tcpdump captures that a test reads back with a filter, and exit helpers (the exit table's
//! counters, channels by kind, the exit in use).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{BIN, Node, sh};

/// Processes we started (servers, captures), killed by PID before the namespaces go.
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Start `args` in namespace `ns`, stdout and stderr to `log`.
pub fn spawn_in(ns: &str, args: &[&str], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// `len` bytes of a fixed pattern (so a fetch can be hash-checked) written to `path`; returns
/// their SHA-256.
pub fn pattern_file(path: &Path, len: usize) -> Vec<u8> {
    let body: Vec<u8> = (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(path, &body).unwrap();
    Sha256::digest(&body).to_vec()
}

/// Python's HTTP server on `[::]:port` in `ns`, serving `dir`, access log in `log`.
pub fn http_server(ns: &str, port: u16, dir: &Path, log: &Path) -> Child {
    let port = port.to_string();
    spawn_in(
        ns,
        &[
            "python3",
            "-u",
            "-m",
            "http.server",
            &port,
            "--bind",
            "::",
            "--directory",
            dir.to_str().unwrap(),
        ],
        log,
    )
}

/// The client addresses of every logged request for `path` on an `http_server`.
pub fn http_sources(log: &Path, path: &str) -> Vec<String> {
    let needle = format!("GET {path} ");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Fetch `url` from `ns` with curl (`-4`/`-6`), at most `secs`; the body's SHA-256.
pub fn fetch(ns: &str, family: &str, url: &str, secs: u32, out: &Path) -> Option<Vec<u8>> {
    let _ = std::fs::remove_file(out);
    let ok = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            family,
            "-sS",
            "-f",
            "--max-time",
        ])
        .arg(secs.to_string())
        .args(["--connect-timeout", "3", "-o"])
        .arg(out)
        .arg(url)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Sha256::digest(std::fs::read(out).unwrap()).to_vec())
}

/// Start a capture on `dev` in `ns`; returns it once it is listening.
pub fn capture(ns: &str, dev: &str, file: &Path, log: &Path) -> Child {
    let c = spawn_in(
        ns,
        &[
            "tcpdump",
            "-i",
            dev,
            "-n",
            // Each packet to the file at once: with the default buffering a capture stopped
            // within a second shows nothing (and so would miss a leak).
            "-U",
            "--immediate-mode",
            "-w",
            file.to_str().unwrap(),
        ],
        log,
    );
    let t0 = Instant::now();
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("listening")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "tcpdump did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c
}

/// Stop a capture (after letting the last packets reach its file).
pub fn stop_capture(mut c: Child) {
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-INT", &c.id().to_string()])
        .status();
    let _ = c.wait();
}

/// The packets of a capture file matching tcpdump `filter` (empty: all), one per line.
pub fn captured(file: &Path, filter: &str) -> String {
    let mut args = vec!["tcpdump", "-r", file.to_str().unwrap(), "-n"];
    if !filter.is_empty() {
        args.push(filter);
    }
    sh(&args)
}

/// IP bytes the exit's uplink carried for clients, both ways: the counters of the exit table's
/// two accept rules (TUN to uplink, and replies back), as an operator would read them.
pub fn exit_counted(ns: &str) -> u64 {
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "nft",
        "-j",
        "list",
        "table",
        "inet",
        "bitcloud_exit",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut total = 0;
    for item in v["nftables"].as_array().unwrap() {
        for e in item["rule"]["expr"].as_array().into_iter().flatten() {
            if let Some(b) = e["counter"]["bytes"].as_u64() {
                total += b;
            }
        }
    }
    total
}

/// `n`'s channel with `peer` in `direction` of `kind` (`link`/`exit`).
pub fn channel(n: &Node, peer: &str, direction: &str, kind: &str) -> serde_json::Value {
    let v = n.wallet("channels");
    v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["peer"] == peer && c["direction"] == direction && c["kind"] == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} {direction} channel with {peer}: {v}"))
}

/// `status`'s `exit` object.
pub fn exit_status(n: &Node) -> serde_json::Value {
    n.status()["exit"].clone()
}

/// Wait until `n` uses exit `want` (None: no exit); how long it took.
pub fn wait_exit(n: &Node, want: Option<&str>, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let cur = exit_status(n)["current"].as_str().map(str::to_string);
        if cur.as_deref() == want {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "exit in use {cur:?}, wanted {want:?} within {limit:?}: {}",
            n.status()["exit"]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Run `bitcloud ARGS -c CONFIG` in `n`'s namespace; its stdout.
pub fn cli(n: &Node, args: &[&str]) -> String {
    let mut a = vec!["ip", "netns", "exec", &n.ns, BIN];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-c", n.cfg.to_str().unwrap()]);
    sh(&a)
}

/// Add an IPv6 address to `dev` in `ns` without duplicate address detection (usable at once).
pub fn v6(ns: &str, addr: &str, dev: &str) {
    sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev, "nodad"]);
}

/// The test internet's server addresses, 198.19.0.1 and 2001:db8::1, on `ns`'s loopback.
pub fn server_addresses(ns: &str) {
    sh(&["ip", "-n", ns, "addr", "add", "198.19.0.1/32", "dev", "lo"]);
    v6(ns, "2001:db8::1/128", "lo");
}
