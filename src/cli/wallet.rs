//! `bitcloud wallet ...`: the wallet subcommands, their control-socket requests and their human
//! output. Invariants: request and answer keys are a contract with the daemon (add, never
//! rename); amounts are shown exactly as the daemon's decimal strings, never parsed to floats;
//! every human wallet view of unbacked vouchers ends with the [`IOU_NOTE`] line.

use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};

use super::output::{bytes_of, cc, s as text, short, table_right, utc};
use crate::config::Config;

/// What every wallet view says while no ledger backs the vouchers: the daemon's JSON `note`
/// field, and the human output's last line after `note: `.
pub const IOU_NOTE: &str =
    "vouchers are signed IOUs until a ledger settles them; balances are not spendable coin.";

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
    pub fn request(&self) -> Value {
        match self {
            WalletCmd::Balance { .. } => json!({"cmd": "wallet", "what": "balance"}),
            WalletCmd::Channels { .. } => json!({"cmd": "wallet", "what": "channels"}),
            WalletCmd::Earnings { since, .. } => json!({
                "cmd": "wallet",
                "what": "earnings",
                "since_secs": since.map(|d| d.as_secs()),
            }),
            WalletCmd::History { limit, .. } => {
                json!({"cmd": "wallet", "what": "history", "limit": limit})
            }
        }
    }

    fn json(&self) -> bool {
        match self {
            WalletCmd::Balance { json }
            | WalletCmd::Channels { json }
            | WalletCmd::Earnings { json, .. }
            | WalletCmd::History { json, .. } => *json,
        }
    }

    fn human(&self) -> fn(&Value) -> String {
        match self {
            WalletCmd::Balance { .. } => balance,
            WalletCmd::Channels { .. } => channels,
            WalletCmd::Earnings { .. } => earnings,
            WalletCmd::History { .. } => history,
        }
    }
}

/// Send the subcommand's request to the daemon and print its answer (pretty JSON or a table).
pub fn run(config: &Path, cmd: &WalletCmd) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    let v = check_answer(crate::daemon::control::call(
        &cfg.control_socket,
        &cmd.request(),
    )?)?;
    if cmd.json() {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", (cmd.human())(&v));
    }
    Ok(())
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
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccdddddddddddddddd";
    const B: &str = "1111111111111111222222222222222233333333333333334444444444444444";
    const NOTE: &str = "note: vouchers are signed IOUs until a ledger settles them; balances are not spendable coin.\n";

    #[test]
    fn durations_parse() {
        let ok = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(ok("90s"), Ok(90));
        assert_eq!(ok("15m"), Ok(900));
        assert_eq!(ok("2h"), Ok(7200));
        assert_eq!(ok("7d"), Ok(604_800));
        assert_eq!(ok("1h30m"), Ok(5400));
        assert_eq!(ok("1d2h3m4s"), Ok(93_784));
        assert_eq!(ok("0s"), Ok(0));
        assert_eq!(ok("120m"), Ok(7200));
    }

    #[test]
    fn bad_durations_say_why() {
        use DurationError::*;
        let err = |s: &str| parse_duration(s).unwrap_err();
        assert_eq!(err(""), Empty);
        assert_eq!(err("90"), MissingUnit("90".into()));
        assert_eq!(err("1h30"), MissingUnit("30".into()));
        assert_eq!(err("5 m"), MissingUnit("5".into()));
        assert_eq!(err("h"), ExpectedNumber("h".into()));
        assert_eq!(err("-5m"), ExpectedNumber("-5m".into()));
        assert_eq!(err("1.5h"), MissingUnit("1".into()));
        assert_eq!(err("3w"), UnknownUnit("w".into()));
        assert_eq!(err("3min"), UnknownUnit("min".into()));
        assert_eq!(err("30m1h"), Order("h".into()));
        assert_eq!(err("1h1h"), Order("h".into()));
        assert_eq!(err("99999999999999999999s"), TooLong);
        assert_eq!(err("213503982334602d"), TooLong);
        assert!(err("90").to_string().contains("use s, m, h or d"));
    }

    #[test]
    fn clap_parses_the_subcommands() {
        use super::super::{Cli, Cmd};
        use clap::{CommandFactory, Parser};
        Cli::command().debug_assert();
        let parse = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(Cli {
                cmd: Cmd::Wallet { what },
                ..
            }) => what,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            parse(&["bitcloud", "wallet", "history"]),
            WalletCmd::History {
                limit: 50,
                json: false
            }
        );
        let e = parse(&[
            "bitcloud", "wallet", "earnings", "--since", "1h30m", "--json",
        ]);
        assert_eq!(
            e.request(),
            json!({"cmd": "wallet", "what": "earnings", "since_secs": 5400})
        );
        assert!(e.json());
        assert!(Cli::try_parse_from(["bitcloud", "wallet", "earnings", "--since", "5"]).is_err());
        assert_eq!(
            parse(&["bitcloud", "wallet", "earnings"]).request()["since_secs"],
            Value::Null
        );
        assert_eq!(
            parse(&["bitcloud", "wallet", "history", "--limit", "7"]).request(),
            json!({"cmd": "wallet", "what": "history", "limit": 7})
        );
        assert_eq!(
            parse(&["bitcloud", "wallet", "balance"]).request(),
            json!({"cmd": "wallet", "what": "balance"})
        );
        assert_eq!(
            parse(&["bitcloud", "wallet", "channels"]).request(),
            json!({"cmd": "wallet", "what": "channels"})
        );
    }

    #[test]
    fn answers_with_an_error_are_refused() {
        assert!(check_answer(json!({"balance": "0.000000000"})).is_ok());
        assert!(check_answer(json!({"error": null, "balance": "1"})).is_ok());
        let e = check_answer(json!({"error": "wallet closed"})).unwrap_err();
        assert_eq!(e.to_string(), "daemon: wallet closed");
        assert!(check_answer(json!({"error": {"code": 3}})).is_err());
    }

    #[test]
    fn balance_table() {
        let v = json!({"balance": "-0.000050000", "earned": "0.000000000",
            "spent": "0.000050000", "unpaid_owed_to_us": "0.000000000",
            "unpaid_we_owe": "0.000001000", "backed": false, "note": IOU_NOTE});
        let out = balance(&v);
        assert_eq!(
            out,
            format!(
                "balance             -0.000050000 CC\n\
                 earned               0.000000000 CC\n\
                 spent                0.000050000 CC\n\
                 unpaid, owed to us   0.000000000 CC\n\
                 unpaid, we owe       0.000001000 CC\n{NOTE}"
            )
        );
        let backed = json!({"balance": "1.000000000", "backed": true});
        assert!(!balance(&backed).contains("note:"));
        let spent = balance(&backed).lines().nth(2).map(String::from);
        assert_eq!(spent.as_deref(), Some("spent                            -"));
    }

    #[test]
    fn channels_table() {
        let v = json!({"channels": [
            {"peer": A, "channel_id": B, "direction": "outgoing", "cumulative_paid": "0.000050000",
             "latest_seq": 7, "acked_seq": 7, "credit_window": "0.010000000",
             "unpaid": "0.000000100", "metered_bytes": 1_572_864, "enforcement": null,
             "throttled": true},
            {"peer": B, "channel_id": A, "direction": "incoming", "cumulative_paid": "1.000000000",
             "latest_seq": 12, "acked_seq": null, "credit_window": "0.010000000",
             "unpaid": "0.000000000", "metered_bytes": 100, "enforcement": "shaped",
             "throttled": null}
        ], "backed": false});
        let out = channels(&v);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[0].starts_with("peer               channel            dir       "));
        assert!(lines[1].starts_with("aaaaaaaaaaaaaaaa…  1111111111111111…  outgoing"));
        assert!(
            lines[1].contains(" 0.000050000 CC    7      7  0.010000000 CC"),
            "{out}"
        );
        assert!(lines[1].ends_with("1.5 MiB  throttled"), "{out}");
        assert!(
            lines[2].contains(" 1.000000000 CC   12      -  0.010000000 CC"),
            "{out}"
        );
        assert!(lines[2].ends_with("  100 B  shaped"), "{out}");
        assert_eq!(format!("{}\n", lines[3]), NOTE);
        assert!(!out.contains(A), "peers are shortened");
        assert_eq!(
            channels(&json!({"channels": [], "backed": false})),
            format!("no payment channels\n{NOTE}")
        );
    }

    #[test]
    fn earnings_table() {
        let v = json!({"since_unix_ms": 1_700_000_000_000i64, "total": "0.000300000",
            "total_bytes": 3_145_728, "neighbours": [
                {"peer": A, "bytes": 2_097_152, "earned": "0.000200000", "vouchers": 12},
                {"peer": B, "bytes": 1_048_576, "earned": "0.000100000", "vouchers": 3}],
            "backed": false});
        let out = earnings(&v);
        assert_eq!(
            out,
            format!(
                "since  2023-11-14 22:13:20 UTC\ntotal  0.000300000 CC for 3.0 MiB\n\n\
                 peer                 bytes          earned  vouchers\n\
                 aaaaaaaaaaaaaaaa…  2.0 MiB  0.000200000 CC        12\n\
                 1111111111111111…  1.0 MiB  0.000100000 CC         3\n{NOTE}"
            )
        );
        let none = json!({"since_unix_ms": null, "total": "0.000000000", "total_bytes": 0,
            "neighbours": [], "backed": false});
        assert_eq!(
            earnings(&none),
            format!("since  all time\ntotal  0.000000000 CC for 0 B\n\nno earnings\n{NOTE}")
        );
    }

    #[test]
    fn history_table() {
        let v = json!({"history": [
            {"at_unix_ms": 951_782_400_000i64, "direction": "incoming", "peer": A,
             "channel_id": B, "seq": 3, "cumulative_amount": "0.000000300",
             "delta": "0.000000100", "cumulative_bytes": 3072, "price_epoch": 2}
        ], "backed": false});
        let lines = [
            "time (UTC)           dir       peer               seq           delta      cumulative    bytes  epoch",
            "2000-02-29 00:00:00  incoming  aaaaaaaaaaaaaaaa…    3  0.000000100 CC  0.000000300 CC  3.0 KiB      2",
        ];
        assert_eq!(history(&v), format!("{}\n{NOTE}", lines.join("\n")));
        assert_eq!(
            history(&json!({"history": [], "backed": true})),
            "no vouchers yet\n"
        );
    }

    #[test]
    fn note_matches_the_contract() {
        assert_eq!(format!("note: {IOU_NOTE}\n"), NOTE);
        // Missing `backed` is treated as unbacked: the note is never silently dropped.
        assert_eq!(footer(&json!({})), NOTE);
    }
}
