//! Crash safety of on-chain settlement: kill -9 of the payer or the payee at random instants
//! while a channel opens, while the payee claims and while the payer closes, 21 times over
//! seven rounds (each round opens a new channel, claims it and closes it). Afterwards every
//! journaled transaction is final and the account nonce has no gap (none lost), the payee
//! was paid on chain exactly what the payer signed (nothing twice, nothing missing), and
//! every wallet agrees with the chain. `BITCLOUD_CRASH_SEED` replays a schedule.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use bitcloud::evm::journal::{Journal, TxState};
use common::inet::cli;
use common::ledger::{CLOSE_DELAY, Chain, FEE, address, chain_lab, tokens, wait_for};
use common::{BIN, Lab, Node, root_or_skip, udp_flood, units};

const ROUNDS: usize = 7;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn restart(n: &mut Node, rng: &mut Rng, what: &str, kills: &mut u32) {
    let wait = rng.below(900);
    std::thread::sleep(Duration::from_millis(wait));
    eprintln!("kill -9 {} {wait} ms into {what}", &n.id[..8]);
    n.kill9();
    *kills += 1;
    n.start();
}

/// A's live outgoing channel to R on chain, from A's journal file (read-only beside the
/// running daemon: WAL allows it).
fn live_channel(a: &Node, chain: &Chain) -> Option<B256> {
    let j = journal(a);
    let rows = rt().block_on(j.channels()).unwrap();
    rows.into_iter()
        .map(|r| r.onchain)
        .find(|id| chain.channel(*id).payer != Address::ZERO)
}

fn journal(n: &Node) -> Journal {
    let path = n.cfg.with_file_name("data").join("ledger.db");
    rt().block_on(Journal::open(&path)).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What `payee` has credited from `payer` (0 before any channel exists).
fn credited(payee: &Node, payer: &Node) -> u128 {
    payee.wallet("channels")["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["peer"] == payer.id.as_str() && c["direction"] == "incoming")
        .map_or(0, |c| units(&c["cumulative_paid"]))
}

fn spawn_cli(n: &Node, args: &[&str]) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", &n.ns, BIN])
        .args(args)
        .args(["-c", n.cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_9_during_open_claim_and_close_loses_nothing() {
    let test = "kill_9_during_open_claim_and_close_loses_nothing";
    if !root_or_skip(test) {
        return;
    }
    let seed = std::env::var("BITCLOUD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("BITCLOUD_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let mut lab = Lab::new();
    let Some((mut n, chain)) = chain_lab(&mut lab, test) else {
        return;
    };
    let addrs: Vec<Address> = n.iter().map(address).collect();
    let hundred = tokens(100 * 1_000_000_000);
    for x in n.iter_mut() {
        x.start();
    }
    let mut kills = 0u32;
    let dst = SocketAddr::new(n[2].ipv6, 5099);
    for round in 0..ROUNDS {
        eprintln!("round {round}");
        // Open: paid traffic makes A open a channel; one side dies meanwhile.
        let before = credited(&n[1], &n[0]);
        let stop = Arc::new(AtomicBool::new(false));
        let flood = udp_flood(&n[0].ns, dst, 1200, 1 << 20, stop.clone());
        let victim = rng.below(2) as usize; // A or R
        restart(&mut n[victim], &mut rng, "open", &mut kills);
        let (a, r) = (&n[0], &n[1]);
        // Paid traffic flows on the new channel: R credits at least a MiB's worth more.
        wait_for(
            "A's channel open and paid into",
            Duration::from_secs(40),
            || live_channel(a, &chain).is_some() && credited(r, a) >= before + FEE,
        );
        stop.store(true, Ordering::Relaxed);
        flood.join().unwrap();
        let id = live_channel(a, &chain).unwrap();
        let a_out = a.wait_settled(r, Duration::from_secs(20));

        // Claim: R settles and dies at some instant of it; after a restart it settles again.
        let mut s = spawn_cli(&n[1], &["wallet", "settle", "--json"]);
        restart(&mut n[1], &mut rng, "settle", &mut kills);
        let _ = s.kill();
        let _ = s.wait();
        let (a, r) = (&n[0], &n[1]);
        wait_for(
            "R settles after its restart",
            Duration::from_secs(30),
            || {
                serde_json::from_str::<serde_json::Value>(&cli(r, &["wallet", "settle", "--json"]))
                    .is_ok_and(|v| v["claimed"].is_array())
                    && chain.channel(id).claimed > U256::ZERO
            },
        );
        let paid = units(&a_out["cumulative_paid"]);
        let claimed = chain.channel(id).claimed;
        assert!(claimed <= tokens(paid), "claimed more than A signed");

        // Close: A asks, one side dies; A asks again if the request never reached the chain.
        let mut c = spawn_cli(a, &["wallet", "close", &r.id, "--json"]);
        let victim = rng.below(2) as usize;
        restart(&mut n[victim], &mut rng, "close", &mut kills);
        let _ = c.kill();
        let _ = c.wait();
        let (a, r) = (&n[0], &n[1]);
        wait_for(
            "the close request on chain",
            Duration::from_secs(30),
            || {
                if chain.channel(id).closeAt != 0 {
                    return true;
                }
                let _ = Command::new("ip")
                    .args(["netns", "exec", &a.ns, BIN, "wallet", "close", &r.id, "-c"])
                    .arg(&a.cfg)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                chain.channel(id).closeAt != 0
            },
        );
        // R claims everything A signed on this channel before the delay ends, unprompted.
        let a_latest = units(&a.channel(r, "outgoing")["cumulative_paid"]);
        let base = rt()
            .block_on(journal(a).channels())
            .unwrap()
            .into_iter()
            .find(|x| x.onchain == id)
            .unwrap()
            .base
            .amount
            .units();
        wait_for(
            "R claims while A's close is pending",
            Duration::from_secs(30),
            || {
                chain.channel(id).claimed
                    >= tokens(units(&r.channel(a, "incoming")["cumulative_paid"]) - base)
            },
        );
        assert!(chain.channel(id).claimed <= tokens(a_latest - base));
        chain.anvil.advance(CLOSE_DELAY + 1);
        wait_for("A withdraws", Duration::from_secs(30), || {
            chain.channel(id).payer == Address::ZERO
        });
    }
    assert!(kills >= 20, "only {kills} kills");
    let (a, r, c) = (&n[0], &n[1], &n[2]);
    // C's channel too, then every books check.
    let _ = cli(r, &["wallet", "settle", "--json"]);
    let a_paid_onchain: u128 = rt()
        .block_on(journal(a).channels())
        .unwrap()
        .iter()
        .map(|x| x.claimed)
        .fold(U256::ZERO, |s, x| s + x)
        .to::<u128>();
    let r_gain = chain.balance(addrs[1]) - hundred;
    let c_claimed = rt()
        .block_on(journal(r).channels())
        .unwrap()
        .iter()
        .filter(|x| x.peer.to_string() == c.id)
        .map(|x| chain.channel(x.onchain).claimed)
        .fold(U256::ZERO, |s, x| s + x);
    eprintln!("A paid on chain {a_paid_onchain}, R gained {r_gain}, of which from C {c_claimed}");
    // Nothing claimed twice: R gained exactly what A's channels paid out plus C's claims, and
    // A lost exactly that.
    assert_eq!(r_gain, U256::from(a_paid_onchain) + c_claimed);
    assert_eq!(
        chain.balance(addrs[0]),
        hundred - U256::from(a_paid_onchain)
    );
    // And what A paid on chain is what it signed, less only the last unacknowledged
    // voucher's worth (vouchers R refused after it saw the close).
    let a_signed = tokens(units(&a.channel(r, "outgoing")["cumulative_paid"]));
    assert!(U256::from(a_paid_onchain) <= a_signed);
    // No transaction lost: all final (each node reaps its receipts every second), no nonce
    // gap.
    for x in &n {
        wait_for(
            "every journaled transaction final",
            Duration::from_secs(10),
            || {
                rt().block_on(journal(x).txs(TxState::Pending))
                    .unwrap()
                    .is_empty()
            },
        );
    }
    for (x, addr) in n.iter().zip(&addrs) {
        let j = journal(x);
        let pending = rt().block_on(j.txs(TxState::Pending)).unwrap();
        let all: Vec<_> = [TxState::Mined, TxState::Failed]
            .iter()
            .flat_map(|s| rt().block_on(j.txs(*s)).unwrap())
            .collect();
        let mined_nonce = chain.anvil.with_rpc({
            let a = *addr;
            move |r| r.mined_nonce(a).unwrap()
        });
        eprintln!(
            "{}: {} txs final, {} pending, chain nonce {mined_nonce}",
            &x.id[..8],
            all.len(),
            pending.len()
        );
        assert!(pending.is_empty(), "pending after the run: {pending:?}");
        let mut nonces: Vec<u64> = all.iter().map(|t| t.nonce).collect();
        nonces.sort();
        nonces.dedup();
        assert_eq!(
            nonces,
            (0..mined_nonce).collect::<Vec<_>>(),
            "every nonce is a journaled transaction"
        );
        let b = x.wallet("balance");
        assert_eq!(tokens(units(&b["onchain"])), chain.balance(*addr), "{b}");
    }
}
