//! What the demo shows: a live view while traffic runs (a progress bar with throughput and a
//! line of coins moving, read from the wallets every half second), plain timestamped lines
//! instead when the output is not a terminal, and the final tables. Invariant: with `--json`
//! all of this goes to stderr, so stdout carries only the machine-readable summary.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::books::{self, NodeBooks, Row, cc, cc_signed};
use super::checks::Check;
use super::stop;
use super::topology::Mesh;

/// Plain-mode progress lines come this often.
const PLAIN_EVERY: Duration = Duration::from_secs(1);
/// The wallets are read this often while traffic runs.
const COINS_EVERY: Duration = Duration::from_millis(500);

/// The demo's output.
pub struct View {
    to_stderr: bool,
    multi: Option<MultiProgress>,
    t0: Instant,
}

impl View {
    /// Output to stdout (stderr with `json`), live bars only on a terminal.
    pub fn new(json: bool) -> View {
        let tty = if json {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        let multi = tty.then(|| {
            MultiProgress::with_draw_target(if json {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::stdout()
            })
        });
        View {
            to_stderr: json,
            multi,
            t0: Instant::now(),
        }
    }

    /// Seconds since the demo started.
    pub fn elapsed(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// Print a line (above the bars, if any).
    pub fn say(&self, msg: &str) {
        let line = format!("[{:5.1}s] {msg}", self.elapsed());
        if let Some(m) = &self.multi {
            let _ = m.println(line);
        } else {
            self.raw(&line);
        }
    }

    /// Print text as is.
    pub fn raw(&self, text: &str) {
        if self.to_stderr {
            eprintln!("{text}");
        } else {
            println!("{text}");
            let _ = std::io::stdout().flush();
        }
    }

    /// Show `label` with `progress` (bytes, of `total` if known) and the coins moving until
    /// `done()` is true. Returns early with `Err` on a stop request.
    pub fn watch(
        &self,
        mesh: &Mesh,
        label: &str,
        total: Option<u64>,
        progress: &AtomicU64,
        done: impl Fn() -> bool,
    ) -> Result<(), stop::Interrupted> {
        let bars = self.multi.as_ref().map(|m| {
            let bar = match total {
                Some(t) => ProgressBar::new(t).with_style(
                    ProgressStyle::with_template(
                        "{prefix:>12} [{bar:32.cyan/blue}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{prefix:>12} {spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            let bar = m.add(bar.with_prefix(label.to_string()));
            let coins = m.add(ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix:>12} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ));
            coins.set_prefix("coins");
            (bar, coins)
        });
        let (mut last_coins, mut last_plain) = (Instant::now() - COINS_EVERY, Instant::now());
        let (mut plain_bytes, mut coins_text) = (0u64, String::new());
        while !done() {
            stop::check()?;
            let got = progress.load(Ordering::Relaxed);
            if last_coins.elapsed() >= COINS_EVERY {
                last_coins = Instant::now();
                coins_text = coins_line(mesh);
            }
            match &bars {
                Some((bar, coins)) => {
                    bar.set_position(got);
                    bar.tick();
                    coins.set_message(coins_text.clone());
                }
                None if last_plain.elapsed() >= PLAIN_EVERY => {
                    let rate = (got - plain_bytes.min(got)) as f64
                        / last_plain.elapsed().as_secs_f64()
                        / f64::from(1u32 << 20);
                    let traffic = total.map_or(String::new(), |t| {
                        format!(" {:.1}/{:.1} MiB, {rate:.1} MiB/s |", mib(got), mib(t))
                    });
                    self.say(&format!("{label}:{traffic} coins: {coins_text}"));
                    (last_plain, plain_bytes) = (Instant::now(), got);
                }
                None => {}
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some((bar, coins)) = bars {
            bar.finish_and_clear();
            coins.finish_and_clear();
        }
        Ok(())
    }

    /// The final tables: who carried what for whom and was paid, and each wallet.
    pub fn tables(&self, mesh: &Mesh, books: &[NodeBooks], rows: &[Row], checks: &[Check]) {
        let mut t =
            String::from("\nWho carried what (each carrier's own count, and what it was paid):\n");
        t.push_str(&format!(
            "  {:<7} {:<8} {:<5} {:>12} {:>9} {:>14} {:>14}\n",
            "carrier", "for", "kind", "bytes", "fee/MiB", "bytes x fee", "paid (CC)"
        ));
        for r in rows {
            t.push_str(&format!(
                "  {:<7} {:<8} {:<5} {:>12} {:>9} {:>14} {:>14}\n",
                r.carrier,
                r.payer,
                r.kind,
                r.bytes,
                r.fee_per_mib,
                cc(r.expected_units),
                cc(r.paid_units)
            ));
        }
        t.push_str("\nWallets (bitcloud wallet balance on each node):\n");
        t.push_str(&format!(
            "  {:<7} {:<6} {:>13} {:>14} {:>14} {:>15}\n",
            "node", "role", "carried bytes", "earned (CC)", "spent (CC)", "balance (CC)"
        ));
        for (n, b) in mesh.nodes.iter().zip(books) {
            let carried: u64 = rows
                .iter()
                .filter(|r| r.carrier == n.name)
                .map(|r| r.bytes)
                .sum();
            let role = serde_json::to_value(n.role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            t.push_str(&format!(
                "  {:<7} {:<6} {:>13} {:>14} {:>14} {:>15}\n",
                n.name,
                role,
                carried,
                cc(b.earned),
                cc(b.spent),
                cc_signed(b.balance)
            ));
        }
        let bad: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
        t.push_str(&format!(
            "\nChecks: {} of {} hold (wallets against the table, vouchers on both sides, price x bytes, downloads, pings).\n",
            checks.len() - bad.len(),
            checks.len()
        ));
        for c in bad {
            t.push_str(&format!("  FAILED {}: {}\n", c.name, c.detail));
        }
        self.raw(&t);
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1u32 << 20)
}

/// "client -0.001234 | relay1 +0.000120 | ...": each wallet's balance, 6 decimals.
fn coins_line(mesh: &Mesh) -> String {
    mesh.nodes
        .iter()
        .map(|n| match books::read(n) {
            Ok(b) => format!("{} {:+.6}", n.name, b.balance as f64 / 1e9),
            Err(_) => format!("{} ?", n.name),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}
