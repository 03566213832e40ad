//! `bitcloud share status|off`: the shared interfaces (docs/share.md). Invariants: the JSON
//! keys are the daemon's (`guests[].{id, interface, exit_bytes, relayed_bytes, paid, unpaid,
//! enforcement}`, `bound.{per_guest, total}`); `share off` works with no daemon running (it
//! removes the share table itself), and so does `share status` (it then shows the config and
//! whether the table is installed, without guests).

use std::path::Path;

use clap::Subcommand;
use serde_json::{Value, json};

use super::output::{bytes_of, cc, s as text, table};
use crate::api::Request;
use crate::config::Config;

/// `bitcloud share` subcommands.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum ShareCmd {
    /// Guests seen on the shared interfaces, what each carried and paid, its service level
    /// (full, shaped, cut), and the bound on what guests may cost.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove the share table now (with or without a daemon): the interfaces are no longer
    /// guarded. The next start or reload applies `[share]` again.
    Off {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// Run a `share` subcommand.
pub fn run(config: &Path, cmd: &ShareCmd) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    let live = super::wallet::daemon_running(&cfg.control_socket)?;
    let (v, json_out) = match cmd {
        ShareCmd::Status { json } => {
            let v = if live {
                crate::api::call(&cfg.control_socket, &Request::Share { off: false })?
            } else {
                json!({
                    "sharing": false,
                    "live": false,
                    "interfaces": cfg.share.interfaces,
                    "table": crate::gateway::share::TABLE,
                    "table_installed": crate::gateway::share::installed().ok(),
                    "guests": [],
                })
            };
            (v, *json)
        }
        ShareCmd::Off { json } => {
            let v = if live {
                crate::api::call(&cfg.control_socket, &Request::Share { off: true })?
            } else {
                let was = crate::gateway::share::remove()?;
                json!({ "sharing": false, "removed": was, "live": false })
            };
            (v, *json)
        }
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if matches!(cmd, ShareCmd::Off { .. }) {
        println!(
            "share off{}: table {}",
            if live { "" } else { " (no daemon running)" },
            if v["removed"].as_bool() == Some(true) {
                "removed"
            } else {
                "was absent"
            }
        );
    } else {
        print!("{}", human(&v));
    }
    Ok(())
}

fn human(v: &Value) -> String {
    let ifs: Vec<String> = v["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let mut out = format!(
        "sharing {}  interfaces {}  table {}\n",
        if v["sharing"].as_bool() == Some(true) {
            "on"
        } else {
            "off"
        },
        if ifs.is_empty() {
            "-".into()
        } else {
            ifs.join(",")
        },
        match v["table_installed"].as_bool() {
            Some(true) => "installed",
            Some(false) => "absent",
            None => "unknown (needs root)",
        }
    );
    if v["live"].as_bool() == Some(false) {
        out.push_str("no daemon running: no guests to show\n");
        return out;
    }
    let mut rows = vec![vec![
        "GUEST".to_string(),
        "IF".into(),
        "EXIT".into(),
        "RELAYED".into(),
        "PAID".into(),
        "UNPAID".into(),
        "SERVICE".into(),
    ]];
    for g in v["guests"].as_array().into_iter().flatten() {
        rows.push(vec![
            text(&g["id"]).chars().take(16).collect(),
            text(&g["interface"]),
            bytes_of(&g["exit_bytes"]),
            bytes_of(&g["relayed_bytes"]),
            cc(&g["paid"]),
            cc(&g["unpaid"]),
            text(&g["enforcement"]),
        ]);
    }
    out.push_str(&table(&rows));
    let b = &v["bound"];
    let _ = std::fmt::Write::write_fmt(
        &mut out,
        format_args!(
            "a guest may leave at most {} unpaid before it is cut (window {}, free tier {} B/s, \
             grace {} s); {} guests at once: {}\n",
            cc(&b["per_guest"]),
            cc(&b["credit_window"]),
            text(&b["free_bytes_per_sec"]),
            text(&b["grace_secs"]),
            text(&b["max_guests"]),
            cc(&b["total"]),
        ),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_output_lists_guests_and_the_bound() {
        let v = json!({
            "sharing": true, "interfaces": ["wlan1"], "table_installed": true,
            "guests": [{"id": "ab".repeat(32), "interface": "wlan1", "exit_bytes": 2048,
                        "relayed_bytes": 0, "paid": "0.000100000", "unpaid": "0.000000000",
                        "enforcement": "full"}],
            "bound": {"per_guest": "0.001", "credit_window": "0.0005", "free_bytes_per_sec": 16384,
                      "grace_secs": 10, "max_guests": 1024, "total": "1.024"},
        });
        let h = human(&v);
        assert!(h.contains("sharing on") && h.contains("installed"), "{h}");
        assert!(
            h.contains("abababababababab") && h.contains("2.0 KiB"),
            "{h}"
        );
        assert!(h.contains("0.000100000 CC") && h.contains("full"), "{h}");
        assert!(h.contains("at most 0.001 CC unpaid"), "{h}");
        let off = human(
            &json!({"sharing": false, "live": false, "interfaces": [], "table_installed": false}),
        );
        assert!(off.contains("sharing off") && off.contains("absent") && off.contains("no daemon"));
    }
}
