//! A wallet that cannot store (docs/wallet-failure.md), with real daemons in namespaces: the
//! paid relay R of the chain A - R - C keeps its data dir on a small tmpfs this test mounts.
//! During a paid transfer the file system is filled (and kept full), then remounted
//! read-only, then freed: R pauses paid relaying with its own drop reason instead of shaping
//! A, free traffic to R flows, `status` and `wallet` say so, nothing crashes, work resumes by
//! itself, and at the end A's spend is R's earnings voucher for voucher and both files pass
//! the integrity check. A daemon whose wallet is read-only at start comes up degraded and
//! recovers once it is writable. Also: the test build's daemon accepts `[testing]` (the
//! Cargo feature reaches CARGO_BIN_EXE_bitcloud).

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Lab, Node, drop_count, mesh, root_or_skip, udp_flood, units};

/// R's fee, smallest units per MiB.
const FEE: u128 = 1000;
const BIN: &str = env!("CARGO_BIN_EXE_bitcloud");

/// A tmpfs mounted by the test, lazily unmounted on drop (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .expect("mount");
        assert!(ok.success(), "mount tmpfs at {}", at.display());
        Tmpfs(at.to_path_buf())
    }

    /// `mount -o remount,MODE`; false if the kernel refused (busy: a file open for writing).
    fn remount(&self, mode: &str) -> bool {
        Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `remount,MODE` in the mount namespace of process `pid` too: `ip netns exec` gives each
    /// daemon its own copy of the mounts, and a copy made while the file system was read-only
    /// keeps its read-only flag when the original is remounted.
    fn remount_for(&self, pid: u32, mode: &str) {
        let ok = Command::new("nsenter")
            .arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .args(["mount", "-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount,{mode} in the daemon's mount namespace");
    }

    /// Retry the remount for up to 10 s (the daemon opens the file now and then).
    fn remount_retrying(&self, mode: &str) {
        let t0 = Instant::now();
        while !self.remount(mode) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "remount,{mode} stays busy"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Keep the file system at `dir` full with `dir/filler` until stopped (space the daemon frees,
/// e.g. a removed WAL, is taken again, as another program filling the disk would). The file
/// is open only while being appended to, so a remount can get through between rounds.
fn keep_full(dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let chunk = vec![0u8; 64 << 10];
        while !stop.load(Ordering::Relaxed) {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("filler"))
            {
                while f.write_all(&chunk).is_ok() {}
                // The last partial chunk: fill to the last byte.
                for size in [4096usize, 512, 1] {
                    while f.write_all(&chunk[..size]).is_ok() {}
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

fn chain(lab: &mut Lab) -> Vec<Node> {
    let n = mesh(lab, 3, &[(0, 1), (1, 2)]);
    for x in &n {
        x.append_config("\n[wallet]\npay_interval_ms = 500\n");
    }
    n[1].append_config(&format!("\n[pricing]\nfee_per_mib = {FEE}\n"));
    n
}

fn data_dir(n: &Node) -> PathBuf {
    n.cfg.with_file_name("data")
}

/// `wallet.state` from `status --json`.
fn wallet_state(n: &Node) -> String {
    n.status()["wallet"]["state"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

fn wait_state(n: &Node, want: &str, limit: Duration) {
    let t0 = Instant::now();
    loop {
        let s = wallet_state(n);
        if s == want {
            return;
        }
        assert!(
            t0.elapsed() < limit,
            "wallet state {s}, not {want}, after {limit:?}: {}",
            n.status()["wallet"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `bitcloud CMD...` as a human would run it: exit status and everything printed.
fn cli(n: &Node, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .args(["-c", n.cfg.to_str().expect("utf-8 path")])
        .output()
        .expect("run bitcloud");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// R says so loudly, in `status`, `status --json`, `wallet balance` and its JSON.
fn assert_reported(r: &Node, state: &str) {
    let (ok, human) = cli(r, &["status"]);
    let loud = format!("WALLET {}", state.to_ascii_uppercase().replace('_', " "));
    assert!(
        ok && human.contains(&loud),
        "status does not say {loud}:\n{human}"
    );
    let (ok, human) = cli(r, &["wallet", "balance"]);
    assert!(
        ok && human.contains(&loud),
        "wallet balance does not say {loud}:\n{human}"
    );
    let b = r.wallet("balance");
    assert_eq!(b["wallet"]["state"], state, "{b}");
    assert!(
        b["wallet"]["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{b}"
    );
}

fn earned(r: &Node) -> u128 {
    units(&r.wallet("balance")["earned"])
}

/// `(latest_seq, latest_amount, latest_bytes)` of every channel, and the integrity check,
/// read from a stopped node's wallet file.
fn stored(file: &Path) -> Vec<(String, u64, String, u64)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut w = bitcloud::wallet::Wallet::open_read_only(file, Default::default())
            .await
            .expect("open wallet read-only");
        w.integrity_check()
            .await
            .expect("PRAGMA integrity_check and the wallet invariants");
        let mut v: Vec<_> = w
            .channels()
            .await
            .expect("channels")
            .iter()
            .map(|c| {
                let l = c.latest;
                (
                    c.id.to_string(),
                    l.map_or(0, |v| v.seq),
                    l.map_or("0".into(), |v| v.cumulative_amount.to_string()),
                    l.map_or(0, |v| v.cumulative_bytes),
                )
            })
            .collect();
        v.sort();
        let _ = w.close().await;
        v
    })
}

#[test]
fn full_then_read_only_wallet_pauses_paid_relaying_and_loses_no_voucher() {
    if !root_or_skip("full_then_read_only_wallet_pauses_paid_relaying_and_loses_no_voucher") {
        return;
    }
    let t_test = Instant::now();
    let mut lab = Lab::new();
    let mut n = chain(&mut lab);
    let disk = Tmpfs::mount(&data_dir(&n[1]), "16m");
    for x in n.iter_mut() {
        x.start();
    }
    let (a, r, c) = (&n[0], &n[1], &n[2]);
    a.wait_ping(c.ipv6, Duration::from_secs(20))
        .expect("A reaches C through R");
    assert_eq!(wallet_state(r), "ok");
    // A paid transfer A -> C through R for the whole test (~2 MB/s, UDP: no retransmissions
    // to muddy the counts).
    let stop = Arc::new(AtomicBool::new(false));
    let flood = udp_flood(
        &a.ns,
        SocketAddr::new(c.ipv6, 9),
        1200,
        2 << 20,
        stop.clone(),
    );
    let t0 = Instant::now();
    while earned(r) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(15), "R earns nothing");
        std::thread::sleep(Duration::from_millis(200));
    }

    // 1. Disk full.
    let full = Arc::new(AtomicBool::new(false));
    let filler = keep_full(data_dir(r), full.clone());
    wait_state(r, "disk_full", Duration::from_secs(20));
    assert_reported(r, "disk_full");
    let before = r.status();
    let shaped_before = drop_count(&before, "unpaid_shaped") + drop_count(&before, "unpaid_cut");
    let paused_before = drop_count(&before, "wallet_unavailable");
    let earned_full = earned(r);
    std::thread::sleep(Duration::from_secs(3));
    // Free traffic (to R itself) flows; paid relaying pauses with its own reason, A is not
    // shaped for R's fault, and nothing is credited that is not stored.
    assert!(
        a.ping(r.ipv6, 3),
        "A cannot reach R itself while R's disk is full"
    );
    let during = r.status();
    assert!(
        drop_count(&during, "wallet_unavailable") > paused_before,
        "paid relaying did not pause: {}",
        during["drops"]
    );
    assert_eq!(
        drop_count(&during, "unpaid_shaped") + drop_count(&during, "unpaid_cut"),
        shaped_before,
        "A was shaped for R's full disk"
    );
    assert_eq!(r.channel(a, "incoming")["enforcement"], "full");
    assert_eq!(
        earned(r),
        earned_full,
        "R credited a voucher it could not store"
    );

    // 2. Read-only (while still full: the daemon holds no file open for writing now).
    disk.remount_retrying("ro");
    wait_state(r, "read_only", Duration::from_secs(10));
    assert_reported(r, "read_only");
    full.store(true, Ordering::Relaxed);
    filler.join().expect("filler");

    // 3. Writable with space again: work resumes by itself.
    disk.remount_retrying("rw");
    std::fs::remove_file(data_dir(r).join("filler")).expect("free the disk");
    let t_free = Instant::now();
    wait_state(r, "ok", Duration::from_secs(10));
    eprintln!(
        "R's wallet back to ok {:?} after the disk was freed",
        t_free.elapsed()
    );
    let (_, human) = cli(r, &["status"]);
    assert!(!human.contains("WALLET"), "status still warns:\n{human}");
    let t0 = Instant::now();
    while earned(r) <= earned_full {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "paid relaying did not resume"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().expect("flood");

    // 4. Nothing lost or double-counted: A's spend is R's earnings, voucher for voucher.
    std::thread::sleep(Duration::from_secs(1));
    let a_out = a.wait_settled(r, Duration::from_secs(20));
    let c_out = c.wait_settled(r, Duration::from_secs(20));
    let r_in = r.channel(a, "incoming");
    assert_eq!(a_out["cumulative_paid"], r_in["cumulative_paid"]);
    assert_eq!(a_out["latest_seq"], r_in["latest_seq"]);
    assert_eq!(
        c_out["cumulative_paid"],
        r.channel(c, "incoming")["cumulative_paid"]
    );
    // R earned exactly what A and C (its ping replies) spent.
    let (ba, br, bc) = (
        a.wallet("balance"),
        r.wallet("balance"),
        c.wallet("balance"),
    );
    assert_eq!(
        units(&ba["spent"]) + units(&bc["spent"]),
        units(&br["earned"]),
        "A {ba}\nR {br}\nC {bc}"
    );
    eprintln!(
        "A sent {sent} B; R earned {} over {} vouchers; test {:?}",
        br["earned"],
        r_in["latest_seq"],
        t_test.elapsed()
    );
    let (fa, fr, fc) = (a.wallet_file(), r.wallet_file(), c.wallet_file());
    for x in n.iter_mut() {
        assert!(x.alive(), "a daemon died");
        assert!(x.stop(), "a daemon did not stop cleanly");
    }
    let (sa, sr, sc) = (stored(&fa), stored(&fr), stored(&fc));
    let chan = a_out["channel_id"]
        .as_str()
        .expect("channel id")
        .to_string();
    let pick = |v: &[(String, u64, String, u64)]| {
        v.iter()
            .find(|x| x.0 == chan)
            .cloned()
            .unwrap_or_else(|| panic!("no channel {chan} in {v:?}"))
    };
    assert_eq!(pick(&sa), pick(&sr), "the stored latest vouchers differ");
    let chan_c = c_out["channel_id"]
        .as_str()
        .expect("channel id")
        .to_string();
    let pick_c = |v: &[(String, u64, String, u64)]| v.iter().find(|x| x.0 == chan_c).cloned();
    assert_eq!(
        pick_c(&sc),
        pick_c(&sr),
        "C's and R's stored vouchers differ"
    );
    assert!(pick(&sa).1 > 0);
    drop(disk);
}

#[test]
fn daemon_with_a_read_only_wallet_starts_degraded_and_recovers() {
    if !root_or_skip("daemon_with_a_read_only_wallet_starts_degraded_and_recovers") {
        return;
    }
    let mut lab = Lab::new();
    let mut n = mesh(&mut lab, 2, &[(0, 1)]);
    n[1].append_config(&format!("\n[pricing]\nfee_per_mib = {FEE}\n"));
    let disk = Tmpfs::mount(&data_dir(&n[1]), "8m");
    // A first run creates the wallet; then its file system goes read-only.
    n[1].start();
    let epoch0 = n[1].query("price")["price_epoch"].as_u64().expect("epoch");
    assert!(n[1].stop());
    assert!(disk.remount("ro"), "remount,ro with no daemon running");
    n[1].start();
    n[0].start();
    let (a, r) = (&n[0], &n[1]);
    assert_eq!(wallet_state(r), "read_only");
    assert_reported(r, "read_only");
    a.wait_ping(r.ipv6, Duration::from_secs(20))
        .expect("free traffic to R flows while its wallet is read-only");
    // Not a crash loop: still the same process after a few retries.
    let pid = r.pid();
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        n[1].alive() && n[1].pid() == pid,
        "the degraded daemon died"
    );
    disk.remount_retrying("rw");
    disk.remount_for(pid.expect("pid"), "rw");
    wait_state(&n[1], "ok", Duration::from_secs(10));
    // Back to ok with a fresh durable price epoch.
    let epoch = n[1].query("price")["price_epoch"].as_u64().expect("epoch");
    assert!(
        epoch > epoch0,
        "no fresh price epoch after recovery: {epoch} <= {epoch0}"
    );
    for x in n.iter_mut() {
        assert!(x.stop());
    }
    drop(disk);
}

/// `cargo test` builds the daemon these tests run with the `testing` feature, so `[testing]`
/// configs load; `cargo build` does not (src/config/tests.rs checks the refusal).
#[test]
fn the_test_build_of_the_daemon_accepts_testing_switches() {
    let dir = std::env::temp_dir().join(format!("bc-testing-feature-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "[node]\nkey_file = \"k\"\nlisten = \"198.18.0.1:51820\"\ntun = \"bc0\"\n\
         control_socket = \"none.sock\"\n\n[testing]\npay = false\n",
    )
    .expect("config");
    let out = Command::new(BIN)
        .args(["status", "-c", cfg.to_str().expect("utf-8")])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!err.contains("[testing] is accepted only"), "{err}");
}
