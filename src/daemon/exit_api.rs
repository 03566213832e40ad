//! The control-socket side of exits: `exit list`, `exit use` and the `exit` object of
//! `status`. Invariant: the JSON keys are a contract with the CLI and outside checks (issue 9):
//! `exits[].{id, price_per_mib, metric, rtt_ms, healthy, selected}` and
//! `exit.{mode, current, kill_switch, switches}`; add keys, never rename them.

use std::time::Instant;

use serde_json::{Value, json};

use super::gateway::Gateway;
use crate::config::mode_name;
use crate::node::Node;

/// `status`'s `exit` object.
pub fn status(node: &Node, gw: &Gateway) -> Value {
    json!({
        "mode": mode_name(node.exit_mode()),
        "current": node.exit_in_use(),
        "kill_switch": gw.kill_switch_on(),
        "switches": node.exit_switches(),
        "serving": node.router().config().exit,
        "dns": gw.dns_stats(),
    })
}

/// `exit list`: every known exit, cheapest first.
pub fn list(node: &Node, now: Instant) -> Value {
    let exits: Vec<Value> = node
        .exit_list(now)
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "price_per_mib": e.price_per_mib,
                "metric": e.metric,
                "rtt_ms": e.rtt.map(|d| d.as_secs_f64() * 1000.0),
                "healthy": e.healthy,
                "selected": e.selected,
            })
        })
        .collect();
    json!({
        "mode": mode_name(node.exit_mode()),
        "current": node.exit_in_use(),
        "exits": exits,
    })
}
