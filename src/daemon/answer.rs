//! Answers to control-socket queries that the event loop can give from the node alone
//! (`status`, `routes`, `peers`, `price`). Invariant: read-only; nothing here changes state.

use std::time::Instant;

use serde_json::json;

use crate::config::Config;
use crate::node::Node;

/// The JSON answer to one request.
pub fn answer(
    cfg: &Config,
    node: &Node,
    started: Instant,
    req: &serde_json::Value,
) -> serde_json::Value {
    let now = Instant::now();
    match req.get("cmd").and_then(|c| c.as_str()) {
        Some("status") => {
            let id = node.id();
            json!({
                "id": id,
                "ipv6": id.ipv6(),
                "ipv4": id.ipv4(),
                "listen": cfg.listen,
                "listen_port": cfg.listen.port(),
                "tun": cfg.tun,
                "mtu": cfg.mtu,
                "uptime_secs": now.saturating_duration_since(started).as_secs(),
                "peers": node.peer_status(now),
                "sessions": node.session_status(now),
                "routing": node.router().stats(),
                "drops": node.drops().to_map(),
                "payments": node.money_stats(),
                "neighbour_table": node.table_stats(),
                "ipv4_collisions": node.ipv4_collisions(),
            })
        }
        Some("routes") => json!({ "routes": crate::cli::views::routes(node.router(), now) }),
        Some("peers") => json!({ "peers": crate::cli::views::peers(node, now) }),
        Some("price") => {
            let rc = node.router().config();
            json!({
                "fee_per_mib": rc.fee_per_mib,
                "price_epoch": rc.price_epoch,
                "max_price_per_mib": rc.policy.max_price_per_mib,
                "price_weight_milli": rc.policy.price_weight_milli,
            })
        }
        Some(other) => json!({"error": format!("unknown command {other:?}")}),
        None => json!({"error": "request needs a \"cmd\""}),
    }
}
