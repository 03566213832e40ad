//! Test lab on real network namespaces: unique names, veth links on 198.18.0.0/15 only, real
//! `bitcloud up` daemons, and cleanup by name and PID even when a test panics.
#![allow(dead_code)] // each test binary uses a different part of the lab

pub mod anvil;
pub mod impair;
pub mod inet;
pub mod ledger;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The built daemon binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_bitcloud");

/// True if namespace tests can run here. Without root they are skipped loudly, except
/// under CI, where skipping would hide a broken test run, so they fail instead.
pub fn root_or_skip(test: &str) -> bool {
    let root = unsafe_free_euid_is_root();
    if root {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: CI is set but the test is not running as root; namespace tests must run in CI"
        );
    }
    eprintln!(
        "SKIPPED {test}: needs root for network namespaces and TUN devices (run with sudo, or set CI to force)"
    );
    false
}

fn unsafe_free_euid_is_root() -> bool {
    // /proc/self/status "Uid: real effective saved fs": no libc call needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Run a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A set of namespaces, links and daemons for one test, removed on drop.
pub struct Lab {
    /// Unique name prefix.
    pub prefix: String,
    /// Scratch directory for configs and keys.
    pub dir: PathBuf,
    namespaces: Vec<String>,
    links: u32,
}

impl Lab {
    /// A new, empty lab.
    pub fn new() -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("bc{}x{n}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("bitcloud-test-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Lab {
            prefix,
            dir,
            namespaces: vec![],
            links: 0,
        }
    }

    /// Create a namespace `<prefix><tag>` with loopback up.
    pub fn ns(&mut self, tag: &str) -> String {
        let name = format!("{}{tag}", self.prefix);
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        sh(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// Join two namespaces with a veth pair and give each end an address (198.18.0.0/15 only).
    pub fn link(&mut self, a: &str, a_addr: &str, b: &str, b_addr: &str) -> (String, String) {
        for addr in [a_addr, b_addr] {
            assert!(
                addr.starts_with("198.18.") || addr.starts_with("198.19."),
                "underlay must be 198.18.0.0/15"
            );
        }
        self.links += 1;
        let (ia, ib) = (
            format!("{}v{}a", self.prefix, self.links),
            format!("{}v{}b", self.prefix, self.links),
        );
        assert!(ia.len() <= 15, "interface name {ia} too long");
        sh(&[
            "ip", "link", "add", &ia, "type", "veth", "peer", "name", &ib,
        ]);
        sh(&["ip", "link", "set", &ia, "netns", a]);
        sh(&["ip", "link", "set", &ib, "netns", b]);
        sh(&["ip", "-n", a, "addr", "add", a_addr, "dev", &ia]);
        sh(&["ip", "-n", b, "addr", "add", b_addr, "dev", &ib]);
        sh(&["ip", "-n", a, "link", "set", &ia, "up"]);
        sh(&["ip", "-n", b, "link", "set", &ib, "up"]);
        (ia, ib)
    }

    /// Put a Linux bridge in namespace `br_ns` and join each `(namespace, address)` to it with
    /// a veth pair (198.18.0.0/15 only). Returns the member-side interface names, in order.
    pub fn bridge(&mut self, br_ns: &str, members: &[(&str, &str)]) -> Vec<String> {
        let br = format!("{}br", self.prefix);
        assert!(br.len() <= 15, "interface name {br} too long");
        sh(&["ip", "-n", br_ns, "link", "add", &br, "type", "bridge"]);
        sh(&["ip", "-n", br_ns, "link", "set", &br, "up"]);
        let mut names = Vec::new();
        for (ns, addr) in members {
            assert!(
                addr.starts_with("198.18.") || addr.starts_with("198.19."),
                "underlay must be 198.18.0.0/15"
            );
            self.links += 1;
            let (member, port) = (
                format!("{}v{}a", self.prefix, self.links),
                format!("{}v{}b", self.prefix, self.links),
            );
            assert!(member.len() <= 15, "interface name {member} too long");
            sh(&[
                "ip", "link", "add", &member, "type", "veth", "peer", "name", &port,
            ]);
            sh(&["ip", "link", "set", &member, "netns", ns]);
            sh(&["ip", "link", "set", &port, "netns", br_ns]);
            sh(&["ip", "-n", br_ns, "link", "set", &port, "master", &br]);
            sh(&["ip", "-n", br_ns, "link", "set", &port, "up"]);
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", &member]);
            sh(&["ip", "-n", ns, "link", "set", &member, "up"]);
            names.push(member);
        }
        names
    }

    /// Write a node config (via `bitcloud init`) for namespace `ns`, listening on `listen`.
    pub fn node(&self, ns: &str, tag: &str, listen: &str) -> Node {
        let dir = self.dir.join(tag);
        let cfg = dir.join("bitcloud.toml");
        let out = Command::new(BIN)
            .args([
                "init",
                "-c",
                cfg.to_str().unwrap(),
                "--listen",
                listen,
                "--tun",
                "bc0",
            ])
            .args(["--control-socket", "bitcloud.sock", "--data-dir", "data"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id: serde_json::Value =
            serde_json::from_str(&sh(&[BIN, "id", "-c", cfg.to_str().unwrap(), "--json"])).unwrap();
        Node {
            ns: ns.to_string(),
            cfg,
            listen: listen.parse().unwrap(),
            id: id["id"].as_str().unwrap().to_string(),
            ipv4: id["ipv4"].as_str().unwrap().parse().unwrap(),
            ipv6: id["ipv6"].as_str().unwrap().parse().unwrap(),
            env: Vec::new(),
            child: None,
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "test failed: configs and daemon logs kept in {}",
                self.dir.display()
            );
        }
    }
}

/// One node: its config, addresses, and (while running) its daemon process.
pub struct Node {
    /// Namespace it runs in.
    pub ns: String,
    /// Its config file.
    pub cfg: PathBuf,
    /// Its underlay listen address.
    pub listen: SocketAddr,
    /// Node id (hex).
    pub id: String,
    /// Overlay IPv4.
    pub ipv4: IpAddr,
    /// Overlay IPv6.
    pub ipv6: IpAddr,
    /// Extra environment for the daemon (e.g. libfaketime's, for clock jumps).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Node {
    /// Append text to the config file.
    pub fn append_config(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.cfg)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Configure `other` as a neighbour at its listen address.
    pub fn add_peer(&self, other: &Node) {
        self.append_config(&format!(
            "\n[[peer]]\nid = \"{}\"\nendpoint = \"{}\"\n",
            other.id, other.listen
        ));
    }

    /// Configure `other` as a neighbour at an explicit endpoint.
    pub fn add_peer_at(&self, other: &Node, endpoint: &str) {
        self.append_config(&format!(
            "\n[[peer]]\nid = \"{}\"\nendpoint = \"{endpoint}\"\n",
            other.id
        ));
    }

    /// Wait up to `limit` for one ping to `dst` to succeed; returns how long it took.
    pub fn wait_ping(&self, dst: IpAddr, limit: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if ping(&self.ns, dst, 1, "0.2") {
                return Some(t0.elapsed());
            }
        }
        None
    }

    /// Run a bitcloud read command (`routes`, `peers`, `status`) with --json.
    pub fn query(&self, cmd: &str) -> serde_json::Value {
        let out = sh(&[BIN, cmd, "--json", "-c", self.cfg.to_str().unwrap()]);
        serde_json::from_str(&out).unwrap()
    }

    /// Start the daemon and wait (at most 10 s) until its control socket answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.cfg.with_file_name("daemon.log"))
            .unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                BIN,
                "up",
                "-c",
                self.cfg.to_str().unwrap(),
            ])
            .env(
                "BITCLOUD_LOG",
                std::env::var("BITCLOUD_TEST_LOG").unwrap_or_else(|_| "debug".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.try_status().is_none() {
            assert!(
                Instant::now() < deadline,
                "daemon in {} did not come up: see {}",
                self.ns,
                self.log_path().display()
            );
            if let Some(Some(st)) = self.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "daemon exited with {st}: {}",
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon log file.
    pub fn log_path(&self) -> PathBuf {
        self.cfg.with_file_name("daemon.log")
    }

    /// PID of the running daemon (`ip netns exec` execs it, so it is the daemon's PID).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the daemon process is still alive.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGKILL the daemon (by PID) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the daemon without waiting (to stop several at the same instant).
    pub fn term(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }

    /// SIGTERM the daemon and wait (at most 5 s) for a clean exit; returns its exit success.
    pub fn stop(&mut self) -> bool {
        self.term();
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `status --json`, or None if the daemon does not answer.
    pub fn try_status(&self) -> Option<serde_json::Value> {
        let out = Command::new(BIN)
            .args(["status", "--json", "-c", self.cfg.to_str().unwrap()])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// `status --json`, panicking if the daemon does not answer.
    pub fn status(&self) -> serde_json::Value {
        self.try_status()
            .unwrap_or_else(|| panic!("no status from daemon in {}", self.ns))
    }

    /// Run `ping` from this node's namespace; true if all `count` replies came back.
    pub fn ping(&self, dst: IpAddr, count: u32) -> bool {
        ping(&self.ns, dst, count, "0.2")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// ping from a namespace: `count` echoes at `interval` seconds, 1 s timeout each.
pub fn ping(ns: &str, dst: IpAddr, count: u32, interval: &str) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "ping",
            "-n",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            interval,
            "-W",
            "1",
        ])
        .arg(dst.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run `f` on a thread inside network namespace `ns` (only that thread changes namespace).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = Path::new("/run/netns").join(ns);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        setns_net(&file);
        f()
    })
}

fn setns_net(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: setns(2) on a valid namespace fd we own; it only changes this thread's network
    // namespace, which is what the spawned test thread is for.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Counter helper: a peer's number field from `status --json`.
pub fn peer_u64(status: &serde_json::Value, key: &str) -> u64 {
    status["peers"][0][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

/// A drop counter from `status --json`.
pub fn drop_count(status: &serde_json::Value, reason: &str) -> u64 {
    status["drops"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no drop reason {reason} in {status}"))
}

/// The kernel's own byte counters of the TUN device `bc0` in `ns`: (rx, tx) as the kernel
/// sees them, i.e. rx = what the daemon wrote in, tx = what the daemon read out.
pub fn tun_counters(ns: &str) -> (u64, u64) {
    let out = sh(&["ip", "-n", ns, "-s", "-j", "link", "show", "bc0"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let st = &v[0]["stats64"];
    (
        st["rx"]["bytes"].as_u64().unwrap(),
        st["tx"]["bytes"].as_u64().unwrap(),
    )
}

/// Stream `len` pseudo-random bytes (or, with `len` None, paced for `dur`) over TCP from
/// namespace `from_ns` to a server on `listen` in `to_ns`; asserts byte count and SHA-256 of
/// both ends agree. Returns the bytes and the server's (time, bytes) log of every read.
pub fn tcp_transfer(
    from_ns: &str,
    to_ns: &str,
    listen: SocketAddr,
    len: Option<usize>,
    dur: Duration,
) -> (usize, Vec<(Instant, usize)>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    let server = in_netns(to_ns, move || {
        let l = TcpListener::bind(listen).unwrap();
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let (mut h, mut n, mut buf) = (Sha256::new(), 0usize, vec![0u8; 1 << 16]);
        loop {
            let k = s.read(&mut buf).expect("connection survived");
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k;
            log2.lock().unwrap().push((Instant::now(), k));
        }
        (n, h.finalize().to_vec())
    });
    std::thread::sleep(Duration::from_millis(200));
    let client = in_netns(from_ns, move || {
        let mut s = TcpStream::connect_timeout(&listen, Duration::from_secs(5)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let (mut h, mut rng, mut buf) = (Sha256::new(), 0x9e37_79b9_u64, vec![0u8; 1 << 14]);
        let (t0, mut sent) = (Instant::now(), 0usize);
        while len.map_or(t0.elapsed() < dur, |l| sent < l) {
            for c in buf.chunks_mut(8) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                c.copy_from_slice(&rng.to_le_bytes());
            }
            s.write_all(&buf).expect("connection survived");
            h.update(&buf);
            sent += buf.len();
            if len.is_none() {
                // Paced, so the test measures continuity rather than fills buffers.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        (sent, h.finalize().to_vec())
    });
    let (sent, sh) = client.join().expect("client");
    let (got, gh) = server.join().expect("server");
    assert_eq!(got, sent, "byte count");
    assert_eq!(gh, sh, "hash");
    let log = log.lock().unwrap().clone();
    (got, log)
}

/// Build nodes on `links` (pairs of node indices with their /30 subnet's two addresses).
pub fn mesh(lab: &mut Lab, n: usize, links: &[(usize, usize)]) -> Vec<Node> {
    let names: Vec<String> = (0..n)
        .map(|i| lab.ns(&format!("{}", (b'a' + i as u8) as char)))
        .collect();
    let mut addrs = Vec::new();
    for (k, &(x, y)) in links.iter().enumerate() {
        let (ax, ay) = (
            format!("198.18.{}.{}", k / 64, (k % 64) * 4 + 1),
            format!("198.18.{}.{}", k / 64, (k % 64) * 4 + 2),
        );
        lab.link(
            &names[x],
            &format!("{ax}/30"),
            &names[y],
            &format!("{ay}/30"),
        );
        addrs.push((ax, ay));
    }
    let nodes: Vec<Node> = (0..n)
        .map(|i| {
            lab.node(
                &names[i],
                &format!("{}", (b'a' + i as u8) as char),
                "0.0.0.0:51820",
            )
        })
        .collect();
    for (k, &(x, y)) in links.iter().enumerate() {
        nodes[x].add_peer_at(&nodes[y], &format!("{}:51820", addrs[k].1));
        nodes[y].add_peer_at(&nodes[x], &format!("{}:51820", addrs[k].0));
    }
    nodes
}

impl Node {
    /// `bitcloud wallet <what> --json`.
    pub fn wallet(&self, what: &str) -> serde_json::Value {
        let out = sh(&[
            BIN,
            "wallet",
            what,
            "--json",
            "-c",
            self.cfg.to_str().unwrap(),
        ]);
        serde_json::from_str(&out).unwrap()
    }

    /// This node's channel with `peer` in `direction` (`outgoing`/`incoming`), from
    /// `wallet channels --json`.
    pub fn channel(&self, peer: &Node, direction: &str) -> serde_json::Value {
        let v = self.wallet("channels");
        v["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["peer"] == peer.id.as_str() && c["direction"] == direction)
            .cloned()
            .unwrap_or_else(|| panic!("no {direction} channel with {} in {v}", peer.id))
    }

    /// Wait until this node's channel paying `payee` is fully paid and acknowledged.
    pub fn wait_settled(&self, payee: &Node, limit: Duration) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            let c = self.channel(payee, "outgoing");
            let settled = units(&c["unpaid"]) == 0 && c["acked_seq"] == c["latest_seq"];
            if settled || t0.elapsed() > limit {
                assert!(settled, "not settled after {limit:?}: {c}");
                return c;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// This node's wallet database file.
    pub fn wallet_file(&self) -> PathBuf {
        self.cfg.with_file_name("data").join("wallet.sqlite")
    }
}

/// Send UDP datagrams of `size` bytes from namespace `ns` to `dst` at about `bytes_per_sec`
/// until `stop` is set; returns how many bytes were handed to the kernel. Send errors (no
/// route while a daemon restarts) are ignored: the traffic is only there to be metered.
pub fn udp_flood(
    ns: &str,
    dst: SocketAddr,
    size: usize,
    bytes_per_sec: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    in_netns(ns, move || {
        let bind: SocketAddr = if dst.is_ipv6() {
            "[::]:0".parse().unwrap()
        } else {
            "0.0.0.0:0".parse().unwrap()
        };
        let s = std::net::UdpSocket::bind(bind).unwrap();
        let buf = vec![0x5au8; size];
        let (t0, mut sent) = (Instant::now(), 0u64);
        while !stop.load(Ordering::Relaxed) {
            let due = (t0.elapsed().as_secs_f64() * bytes_per_sec as f64) as u64;
            if sent >= due {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            if s.send_to(&buf, dst).is_ok() {
                sent += size as u64;
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        sent
    })
}

/// Parse a wallet amount string ("0.000050000") into smallest units.
pub fn units(v: &serde_json::Value) -> u128 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("amount is not a string: {v}"));
    let neg = s.starts_with('-');
    let s = s.trim_start_matches('-');
    let (w, f) = s.split_once('.').unwrap_or((s, ""));
    let f = format!("{f:0<9}");
    let u = w.parse::<u128>().unwrap() * 1_000_000_000 + f[..9].parse::<u128>().unwrap();
    assert!(
        !neg || u == 0,
        "negative amount where units() expects >= 0: {s}"
    );
    u
}

/// Ping `dst` from `ns` `count` times every `interval` (ping's `-i`, e.g. "0.01"), one second
/// of patience for each; (sent, received), from ping's summary line.
pub fn ping_counts(ns: &str, dst: IpAddr, count: u32, interval: &str) -> (u32, u32) {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-n", "-q", "-i", interval, "-W", "1",
        ])
        .args(["-c", &count.to_string(), &dst.to_string()])
        .output()
        .expect("ping runs");
    let text = String::from_utf8_lossy(&out.stdout);
    // "N packets transmitted, M received, ..."
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("ping output: {text}"));
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}
