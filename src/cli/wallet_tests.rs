//! Unit tests of the wallet CLI: duration parsing and the human tables from sample answers.

use super::*;
use serde_json::json;

impl WalletCmd {
    fn request_json(&self) -> Value {
        serde_json::to_value(self.request()).expect("a request serialises")
    }
}

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
        e.request_json(),
        json!({"cmd": "wallet", "what": "earnings", "since_secs": 5400})
    );
    assert!(e.json());
    assert!(Cli::try_parse_from(["bitcloud", "wallet", "earnings", "--since", "5"]).is_err());
    assert_eq!(
        parse(&["bitcloud", "wallet", "earnings"]).request_json()["since_secs"],
        Value::Null
    );
    assert_eq!(
        parse(&["bitcloud", "wallet", "history", "--limit", "7"]).request_json(),
        json!({"cmd": "wallet", "what": "history", "limit": 7})
    );
    assert_eq!(
        parse(&["bitcloud", "wallet", "balance"]).request_json(),
        json!({"cmd": "wallet", "what": "balance"})
    );
    assert_eq!(
        parse(&["bitcloud", "wallet", "channels"]).request_json(),
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

#[test]
fn only_a_missing_or_dead_socket_means_no_daemon() {
    let dir = tempfile::tempdir().expect("test setup");
    let missing = dir.path().join("none.sock");
    assert!(!daemon_running(&missing).expect("test setup"));
    let dead = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).expect("test setup"));
    assert!(
        !daemon_running(&dead).expect("test setup"),
        "a stale socket file"
    );
    let live = dir.path().join("live.sock");
    let _l = std::os::unix::net::UnixListener::bind(&live).expect("test setup");
    assert!(daemon_running(&live).expect("test setup"));
    // Any other failure is an error, never a silent second opener of the wallet.
    let file = dir.path().join("file");
    std::fs::write(&file, "").expect("test setup");
    let e = daemon_running(&file.join("x.sock"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot reach the daemon"), "{e}");
}
