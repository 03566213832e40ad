//! Crash safety of the wallet: a child process (this test binary, re-executed) commits
//! vouchers in a loop and is SIGKILLed at random instants, about 50 times. After each kill
//! the wallet is reopened and checked: everything the child reported as sent or credited is
//! stored (commit-before-send / commit-before-credit), nothing beyond what it attempted is
//! stored, the stored cumulatives only ever grow, and `integrity_check` passes.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bitcloud::identity::Identity;
use bitcloud::money::{Amount, ChannelParams, MeterSnapshot, Voucher};
use bitcloud::wallet::{Direction, Wallet, WalletConfig};

const CHILD_ENV: &str = "BITCLOUD_WALLET_CRASH_CHILD";
const KILLS: usize = 50;

fn me() -> Identity {
    Identity::from_secret([0x41; 32])
}
fn peer() -> Identity {
    Identity::from_secret([0x42; 32])
}
fn out_params() -> ChannelParams {
    ChannelParams {
        payer: me().id(),
        payee: peer().id(),
        nonce: 1,
    }
}
fn in_params() -> ChannelParams {
    ChannelParams {
        payer: peer().id(),
        payee: me().id(),
        nonce: 2,
    }
}

/// The deterministic voucher for `seq` on a channel, so a restarted child continues exactly.
fn voucher(signer: &Identity, p: &ChannelParams, seq: u64) -> Voucher {
    Voucher::sign(
        signer,
        p.id(),
        seq,
        Amount::from_units(u128::from(seq) * 1_000),
        seq * 1_400,
        1,
    )
}

fn cfg() -> WalletConfig {
    WalletConfig {
        spend_limit: Amount::MAX,
    }
}

/// Not a test on its own: the body of the child process when `CHILD_ENV` is set.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(child_loop(Path::new(&path)));
}

async fn child_loop(path: &Path) {
    let mut out = std::io::stdout().lock();
    let mut say = |s: String| {
        out.write_all(s.as_bytes()).unwrap();
        out.flush().unwrap();
    };
    let (a, b) = (me(), peer());
    let mut w = Wallet::open_with(path, cfg()).await.unwrap();
    let oid = w
        .ensure_channel(&out_params(), Direction::Outgoing)
        .await
        .unwrap();
    let iid = w
        .ensure_channel(&in_params(), Direction::Incoming)
        .await
        .unwrap();
    // Resume from what is stored: nothing forgiven, nothing repeated.
    let mut seq_out = w
        .channel(&oid)
        .await
        .unwrap()
        .unwrap()
        .latest
        .map_or(0, |v| v.seq);
    let mut seq_in = w
        .channel(&iid)
        .await
        .unwrap()
        .unwrap()
        .latest
        .map_or(0, |v| v.seq);
    say("READY\n".into());
    loop {
        seq_out += 1;
        let v = voucher(&a, &out_params(), seq_out);
        say(format!("INTENT out {seq_out}\n"));
        w.commit_outgoing_voucher(&v).await.unwrap();
        say(format!("SENT out {seq_out}\n"));

        seq_in += 1;
        let v = voucher(&b, &in_params(), seq_in);
        say(format!("INTENT in {seq_in}\n"));
        w.commit_incoming_voucher(&v).await.unwrap();
        say(format!("CREDITED in {seq_in}\n"));

        if seq_out % 4 == 0 {
            let snap = |seq: u64| MeterSnapshot {
                base_bytes: seq * 1_400,
                base_amount: Amount::from_units(u128::from(seq) * 1_000),
                buckets: vec![],
            };
            w.checkpoint_meters(&[(oid, snap(seq_out)), (iid, snap(seq_in))])
                .await
                .unwrap();
        }
    }
}

/// xorshift64*: deterministic given the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[derive(Default, Debug, Clone, Copy)]
struct Seen {
    intent: u64,
    done: u64,
}

fn parse(lines: &[String], tag: &str, done_word: &str, s: &mut Seen) -> bool {
    let mut ready = false;
    for l in lines {
        // The test harness prints "test crash_child ... " before the child's first line.
        if l.ends_with("READY") {
            ready = true;
            continue;
        }
        let mut it = l.split_whitespace();
        match (
            it.next(),
            it.next(),
            it.next().and_then(|n| n.parse::<u64>().ok()),
        ) {
            (Some("INTENT"), Some(t), Some(n)) if t == tag => s.intent = s.intent.max(n),
            (Some(w), Some(t), Some(n)) if w == done_word && t == tag => s.done = s.done.max(n),
            _ => {}
        }
    }
    ready
}

async fn check(path: &Path, out: Seen, inc: Seen, prev: &mut (u64, u64)) {
    let mut w = Wallet::open_with(path, cfg()).await.unwrap();
    w.integrity_check().await.unwrap();
    for (params, dir, seen, prev_seq, signer) in [
        (out_params(), Direction::Outgoing, out, &mut prev.0, me()),
        (in_params(), Direction::Incoming, inc, &mut prev.1, peer()),
    ] {
        let Some(rec) = w.channel(&params.id()).await.unwrap() else {
            assert_eq!(seen.done, 0, "{dir:?}: reported work but no channel stored");
            continue;
        };
        let seq = rec.latest.map_or(0, |v| v.seq);
        // Everything reported as sent/credited is durable...
        assert!(
            seq >= seen.done,
            "{dir:?}: stored {seq} < reported {}",
            seen.done
        );
        // ...nothing beyond what was attempted is stored...
        assert!(
            seq <= seen.intent,
            "{dir:?}: stored {seq} > attempted {}",
            seen.intent
        );
        // ...and the stored state only grows, and is exactly the voucher for that seq.
        assert!(
            seq >= *prev_seq,
            "{dir:?}: went back from {prev_seq} to {seq}"
        );
        if let Some(v) = rec.latest {
            assert_eq!(v, voucher(&signer, &params, seq));
        }
        let m = rec.meter.total_cost();
        assert!(m <= rec.latest.map_or(Amount::ZERO, |v| v.cumulative_amount));
        *prev_seq = seq;
    }
    let b = w.balance().await.unwrap();
    assert_eq!(b.earned.units(), u128::from(prev.1) * 1_000);
    assert_eq!(b.spent.units(), u128::from(prev.0) * 1_000);
    w.close().await.unwrap();
}

/// Kill a child within its first milliseconds on a new file (creation, migrations), then check
/// that the file opens, migrates and passes the integrity check.
fn fresh_file_run(exe: &Path, path: &Path, rng: &mut Rng, rt: &tokio::runtime::Runtime) {
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(rng.next() % 15));
    child.kill().unwrap();
    child.wait().unwrap();
    rt.block_on(async {
        let mut w = Wallet::open_with(path, cfg()).await.unwrap();
        w.integrity_check().await.unwrap();
        w.close().await.unwrap();
    });
}

#[test]
fn wallet_survives_sigkill_at_random_instants() {
    let dir = std::env::temp_dir().join(format!("bc-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join("wallet.db");
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).unwrap();
    let seed = u64::from_le_bytes(seed) | 1;
    eprintln!("crash test seed {seed:#x}");
    let mut rng = Rng(seed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let (mut out, mut inc) = (Seen::default(), Seen::default());
    let mut prev = (0u64, 0u64);
    let (mut before_ready, mut started) = (0, Instant::now());
    for i in 0..KILLS {
        if i % 10 == 0 {
            // Fresh-file run on a side path: only opening must survive the kill.
            fresh_file_run(&exe, &dir.join(format!("fresh{i}.db")), &mut rng, &rt);
        }
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        // Kill anywhere from process start-up (inside open) to mid-loop; every fourth run early.
        let max_ms = if i % 4 == 1 { 25 } else { 120 };
        std::thread::sleep(Duration::from_millis(rng.next() % max_ms));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "child {i} exited by itself: {status}");
        let lines = reader.join().unwrap();
        let ready = parse(&lines, "out", "SENT", &mut out);
        parse(&lines, "in", "CREDITED", &mut inc);
        before_ready += usize::from(!ready);
        rt.block_on(check(&path, out, inc, &mut prev));
        if i == 0 {
            started = Instant::now();
        }
    }
    eprintln!(
        "crash test: {KILLS} kills ({before_ready} before the wallet was open), \
         {} outgoing and {} incoming vouchers committed, {:?} after the first",
        prev.0,
        prev.1,
        started.elapsed()
    );
    assert!(
        prev.0 > KILLS as u64 / 2,
        "too little progress to mean anything"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
