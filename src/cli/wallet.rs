//! `bitcloud wallet ...`: the wallet subcommands, their control-socket requests and their human
//! output. Invariants: request and answer keys are a contract with the daemon (add, never
//! rename); amounts are shown exactly as the daemon's decimal strings, never parsed to floats;
//! every human wallet view of unbacked vouchers ends with the [`IOU_NOTE`] line.

use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use serde_json::Value;

use super::output::{bytes_of, cc, s as text, short, table_right, utc};
use crate::config::Config;

pub use crate::api::IOU_NOTE;
use crate::api::Request;

/// `bitcloud wallet` subcommands.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum WalletCmd {
    /// Balance: earned, spent, and metered traffic not yet paid in both directions.
    Balance {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Payment channels: peer, direction, paid, seqs, credit window, unpaid, metered, state.
    Channels {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// What each neighbour paid us, in coin and bytes.
    Earnings {
        /// Only vouchers committed this long ago or later: 90s, 15m, 2h, 7d, 1h30m (default:
        /// all time).
        #[arg(long, value_parser = parse_duration)]
        since: Option<Duration>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// On-chain ledger: claim every incoming channel now (`claimed[]`: peer, amount, tx).
    Settle {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// On-chain ledger: start closing our outgoing channel to PEER (its deposit comes back
    /// after the close delay, less what PEER claims).
    Close {
        /// The neighbour's node id.
        peer: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The node's chain address (derived from the node key; no daemon needed).
    Address {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Committed vouchers, both directions, newest first.
    History {
        /// How many vouchers to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

impl WalletCmd {
    /// The control-socket request for this subcommand.
    pub fn request(&self) -> Request {
        let w = |what: &str, since_secs, limit| Request::Wallet {
            what: what.into(),
            since_secs,
            limit,
        };
        match self {
            WalletCmd::Balance { .. } => w("balance", None, None),
            WalletCmd::Channels { .. } => w("channels", None, None),
            WalletCmd::Earnings { since, .. } => w("earnings", since.map(|d| d.as_secs()), None),
            WalletCmd::History { limit, .. } => w("history", None, Some(*limit)),
            WalletCmd::Address { .. } => w("address", None, None),
            WalletCmd::Settle { .. } => Request::Ledger {
                action: "settle".into(),
                peer: None,
            },
            WalletCmd::Close { peer, .. } => Request::Ledger {
                action: "close".into(),
                peer: Some(peer.clone()),
            },
        }
    }

    fn json(&self) -> bool {
        match self {
            WalletCmd::Balance { json }
            | WalletCmd::Channels { json }
            | WalletCmd::Earnings { json, .. }
            | WalletCmd::History { json, .. }
            | WalletCmd::Address { json }
            | WalletCmd::Settle { json }
            | WalletCmd::Close { json, .. } => *json,
        }
    }

    fn human(&self) -> fn(&Value) -> String {
        match self {
            WalletCmd::Balance { .. } => balance,
            WalletCmd::Channels { .. } => channels,
            WalletCmd::Earnings { .. } => earnings,
            WalletCmd::History { .. } | WalletCmd::Address { .. } => history,
            WalletCmd::Settle { .. } | WalletCmd::Close { .. } => ledger_action,
        }
    }
}

/// Send the subcommand's request to the daemon and print its answer (pretty JSON or a table).
pub fn run(config: &Path, cmd: &WalletCmd) -> anyhow::Result<()> {
    if let WalletCmd::Address { json } = cmd {
        return super::ledger::address(config, *json);
    }
    let cfg = Config::load(config)?;
    if matches!(cmd, WalletCmd::Settle { .. } | WalletCmd::Close { .. }) {
        anyhow::ensure!(
            daemon_running(&cfg.control_socket)?,
            "the daemon is not running: settling and closing are done by the running node"
        );
    }
    let v = if daemon_running(&cfg.control_socket)? {
        check_answer(crate::api::call(&cfg.control_socket, &cmd.request())?)?
    } else {
        eprintln!("bitcloud: the daemon is not running; showing what the wallet file holds");
        check_answer(crate::api::wallet::query_offline(
            &cfg,
            &serde_json::to_value(cmd.request())?,
        )?)?
    };
    if cmd.json() {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}{}", health_line(&v["wallet"]), (cmd.human())(&v));
    }
    Ok(())
}

/// A loud first line when the daemon's wallet cannot store (`wallet.state` not `ok`); empty
/// when it can, or when the answer has no `wallet` (an older daemon, the offline read).
pub fn health_line(w: &Value) -> String {
    match w["state"].as_str() {
        None | Some("ok") => String::new(),
        Some(state) => format!(
            "WALLET {}: {} (since {}); paid relaying and paying are paused, free traffic \
             flows, and work resumes by itself once the wallet can store again\n\n",
            state.to_ascii_uppercase().replace('_', " "),
            w["error"].as_str().unwrap_or("-"),
            w["since_unix_ms"].as_i64().map_or("-".into(), utc),
        ),
    }
}

/// Whether a daemon answers on `socket`. Only "no socket" and "nobody listening" mean it is
/// not running (then the CLI may read the file itself); any other error, permission denied
/// above all, is reported: reading the wallet beside a running daemon would be a second
/// opener of its database.
pub(super) fn daemon_running(socket: &Path) -> anyhow::Result<bool> {
    use std::io::ErrorKind;
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            Ok(false)
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => anyhow::bail!(
            "cannot reach the daemon at {}: permission denied (members of group bitcloud may \
             read; try sudo)",
            socket.display()
        ),
        Err(e) => anyhow::bail!("cannot reach the daemon at {}: {e}", socket.display()),
    }
}

/// The answer, or an error if it carries a non-null `"error"` (whatever its type).
fn check_answer(v: Value) -> anyhow::Result<Value> {
    match v.get("error") {
        None | Some(Value::Null) => Ok(v),
        Some(e) => anyhow::bail!("daemon: {}", text(e)),
    }
}

/// Why a `--since` duration did not parse (each variant carries the offending text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was given.
    #[error("empty duration: expected e.g. 90s, 15m, 2h, 7d or 1h30m")]
    Empty,
    /// Something other than a number where one was expected.
    #[error("expected a number at {0:?}: write e.g. 90s, 15m, 2h, 7d or 1h30m")]
    ExpectedNumber(String),
    /// A number without a unit.
    #[error("missing unit after {0}: use s, m, h or d (e.g. {0}m)")]
    MissingUnit(String),
    /// A unit other than s, m, h, d.
    #[error("unknown unit {0:?}: use s (seconds), m (minutes), h (hours) or d (days)")]
    UnknownUnit(String),
    /// A unit repeated, or after a smaller one.
    #[error("unit {0} repeated or after a smaller unit: write larger units first, once (1h30m)")]
    Order(String),
    /// More seconds than fit in 64 bits.
    #[error("duration too long")]
    TooLong,
}

/// Parse a duration like `90s`, `15m`, `2h`, `7d` or `1h30m`: numbers each followed by one of
/// `d`, `h`, `m`, `s`, larger units first, each unit at most once.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let (mut rest, mut total, mut last_rank) = (s, 0u64, None);
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError::ExpectedNumber(rest.into()));
        }
        let (number, after) = rest.split_at(digits);
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        if letters == 0 {
            return Err(DurationError::MissingUnit(number.into()));
        }
        let (unit, after) = after.split_at(letters);
        let (secs, rank) = match unit {
            "d" => (86_400, 3),
            "h" => (3_600, 2),
            "m" => (60, 1),
            "s" => (1, 0),
            _ => return Err(DurationError::UnknownUnit(unit.into())),
        };
        if last_rank.is_some_and(|l| rank >= l) {
            return Err(DurationError::Order(unit.into()));
        }
        last_rank = Some(rank);
        total = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(secs))
            .and_then(|n| n.checked_add(total))
            .ok_or(DurationError::TooLong)?;
        rest = after;
    }
    Ok(Duration::from_secs(total))
}

/// The closing line: the IOU note unless the answer says a ledger backs the vouchers.
fn footer(v: &Value) -> String {
    if v["backed"].as_bool() == Some(true) {
        String::new()
    } else {
        format!("note: {IOU_NOTE}\n")
    }
}

fn header(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|c| c.to_string()).collect()
}

/// `bitcloud wallet balance` as text.
pub fn balance(v: &Value) -> String {
    let rows: Vec<Vec<String>> = [
        ("balance", "balance"),
        ("earned", "earned"),
        ("spent", "spent"),
        ("unpaid, owed to us", "unpaid_owed_to_us"),
        ("unpaid, we owe", "unpaid_we_owe"),
    ]
    .iter()
    .map(|(label, key)| vec![label.to_string(), cc(&v[key])])
    .collect();
    table_right(&rows, &[1]) + &footer(v)
}

/// `bitcloud wallet channels` as text.
pub fn channels(v: &Value) -> String {
    let list = v["channels"].as_array().map_or(&[][..], Vec::as_slice);
    if list.is_empty() {
        return format!("no payment channels\n{}", footer(v));
    }
    let mut rows = vec![header(&[
        "peer", "channel", "dir", "paid", "seq", "acked", "window", "unpaid", "metered", "state",
    ])];
    for c in list {
        let state = match (&c["enforcement"], c["throttled"].as_bool()) {
            (Value::String(e), _) => e.clone(),
            (_, Some(true)) => "throttled".into(),
            (_, Some(false)) => "ok".into(),
            _ => "-".into(),
        };
        rows.push(vec![
            short(&c["peer"]),
            short(&c["channel_id"]),
            text(&c["direction"]),
            cc(&c["cumulative_paid"]),
            text(&c["latest_seq"]),
            text(&c["acked_seq"]),
            cc(&c["credit_window"]),
            cc(&c["unpaid"]),
            bytes_of(&c["metered_bytes"]),
            state,
        ]);
    }
    table_right(&rows, &[3, 4, 5, 6, 7, 8]) + &footer(v)
}

/// `bitcloud wallet earnings` as text.
pub fn earnings(v: &Value) -> String {
    let since = match v["since_unix_ms"].as_i64() {
        Some(ms) => format!("{} UTC", utc(ms)),
        None => "all time".into(),
    };
    let mut out = format!(
        "since  {since}\ntotal  {} for {}\n\n",
        cc(&v["total"]),
        bytes_of(&v["total_bytes"])
    );
    let list = v["neighbours"].as_array().map_or(&[][..], Vec::as_slice);
    if list.is_empty() {
        out.push_str("no earnings\n");
    } else {
        let mut rows = vec![header(&["peer", "bytes", "earned", "vouchers"])];
        for n in list {
            rows.push(vec![
                short(&n["peer"]),
                bytes_of(&n["bytes"]),
                cc(&n["earned"]),
                text(&n["vouchers"]),
            ]);
        }
        out.push_str(&table_right(&rows, &[1, 2, 3]));
    }
    out + &footer(v)
}

/// `bitcloud wallet history` as text.
pub fn history(v: &Value) -> String {
    let list = v["history"].as_array().map_or(&[][..], Vec::as_slice);
    if list.is_empty() {
        return format!("no vouchers yet\n{}", footer(v));
    }
    let mut rows = vec![header(&[
        "time (UTC)",
        "dir",
        "peer",
        "seq",
        "delta",
        "cumulative",
        "bytes",
        "epoch",
    ])];
    for h in list {
        rows.push(vec![
            h["at_unix_ms"].as_i64().map_or_else(|| "-".into(), utc),
            text(&h["direction"]),
            short(&h["peer"]),
            text(&h["seq"]),
            cc(&h["delta"]),
            cc(&h["cumulative_amount"]),
            bytes_of(&h["cumulative_bytes"]),
            text(&h["price_epoch"]),
        ]);
    }
    table_right(&rows, &[3, 4, 5, 6, 7]) + &footer(v)
}

#[cfg(test)]
#[path = "wallet_tests.rs"]
mod tests;

/// `wallet settle` / `wallet close`: what was claimed, or the channel now closing.
fn ledger_action(v: &Value) -> String {
    if let Some(claimed) = v["claimed"].as_array() {
        if claimed.is_empty() {
            return "nothing to claim\n".into();
        }
        return claimed
            .iter()
            .map(|c| {
                format!(
                    "claimed {} CC from {} (tx {})\n",
                    text(&c["amount"]),
                    short(&c["peer"]),
                    text(&c["tx"])
                )
            })
            .collect();
    }
    format!(
        "closing channel {} to {}: withdraws itself after chain time {}\n",
        text(&v["channel"]),
        short(&v["peer"]),
        v["close_at"]
    )
}
