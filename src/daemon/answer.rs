//! Answers to control-socket queries that the event loop can give from the node alone
//! (`status`, `routes`, `peers`, `price`). Invariant: read-only; nothing here changes state.

use std::time::Instant;

use serde_json::json;

use crate::api::Request;
use crate::config::Config;
use crate::node::Node;

/// The JSON answer to one request.
pub fn answer(cfg: &Config, node: &Node, started: Instant, req: &Request) -> serde_json::Value {
    let now = Instant::now();
    match req {
        Request::Status => {
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
                "wallet": node.wallet_health(),
            })
        }
        Request::Routes => json!({ "routes": crate::api::views::routes(node.router(), now) }),
        Request::Peers => json!({ "peers": crate::api::views::peers(node, now) }),
        Request::Price { .. } => {
            let rc = node.router().config();
            json!({
                "fee_per_mib": rc.fee_per_mib,
                "price_epoch": rc.price_epoch,
                "max_price_per_mib": rc.policy.max_price_per_mib,
                "price_weight_milli": rc.policy.price_weight_milli,
            })
        }
        // The event loop answers these itself.
        Request::Wallet { .. }
        | Request::Exit { .. }
        | Request::Reload
        | Request::Share { .. }
        | Request::Ledger { .. } => {
            json!({"error": "not answered here"})
        }
    }
}
