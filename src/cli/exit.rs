//! `bitcloud exit list|use`: which exits the node knows and which one it uses. Invariants:
//! the JSON keys are the daemon's (`exits[].{id, price_per_mib, metric, rtt_ms, healthy,
//! selected}`); `exit use off` works with no daemon running: it then removes our rules,
//! routes, kill switch and DNS settings itself and records `off` for the next start.

use std::path::Path;

use clap::Subcommand;
use serde_json::{Value, json};

use super::output::{s as text, table};
use crate::api::Request;
use crate::config::Config;

/// `bitcloud exit` subcommands.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum ExitCmd {
    /// Known exits: id, price per MiB, metric, probe RTT, health, which one is in use.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Use the cheapest healthy exit (`auto`), one exit (its node id), or none (`off`).
    Use {
        /// auto, off or a node id.
        mode: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// Run an `exit` subcommand.
pub fn run(config: &Path, cmd: &ExitCmd) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    let (req, json_out) = match cmd {
        ExitCmd::List { json } => (Request::Exit { mode: None }, *json),
        ExitCmd::Use { mode, json } => {
            crate::config::parse_mode(mode).map_err(|e| anyhow::anyhow!(e))?;
            (
                Request::Exit {
                    mode: Some(mode.clone()),
                },
                *json,
            )
        }
    };
    if let ExitCmd::Use { mode, .. } = cmd
        && mode == "off"
        && !super::wallet::daemon_running(&cfg.control_socket)?
    {
        return offline_off(&cfg, json_out);
    }
    let v = crate::api::call(&cfg.control_socket, &req)?;
    if let Some(e) = v.get("error") {
        anyhow::bail!("{}", text(e));
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", human(&v));
    }
    Ok(())
}

/// `exit use off` with no daemon: undo what a crashed or stopped daemon left.
fn offline_off(cfg: &Config, json_out: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let done = rt.block_on(crate::gateway::cleanup::clear_client(
        &cfg.tun,
        &cfg.data_dir,
    ))?;
    if cfg.data_dir.exists() {
        crate::gateway::cleanup::save_mode(&cfg.data_dir, crate::exit::Mode::Off)?;
    }
    if json_out {
        println!("{}", json!({"mode": "off", "live": false, "cleared": done}));
    } else {
        println!("exit off (no daemon running): {done}");
    }
    Ok(())
}

fn human(v: &Value) -> String {
    let mut rows = vec![vec![
        "EXIT".to_string(),
        "PRICE/MiB".into(),
        "METRIC".into(),
        "RTT".into(),
        "HEALTHY".into(),
        "IN USE".into(),
    ]];
    for e in v["exits"].as_array().into_iter().flatten() {
        rows.push(vec![
            text(&e["id"]),
            text(&e["price_per_mib"]),
            text(&e["metric"]),
            e["rtt_ms"]
                .as_f64()
                .map_or("-".into(), |r| format!("{r:.1} ms")),
            if e["healthy"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            }
            .into(),
            if e["selected"].as_bool() == Some(true) {
                "*"
            } else {
                ""
            }
            .into(),
        ]);
    }
    let current = match &v["current"] {
        Value::Null => "none".to_string(),
        c => text(c),
    };
    format!(
        "mode {}  in use {current}\n{}",
        text(&v["mode"]),
        table(&rows)
    )
}
