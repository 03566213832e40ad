//! JSON views of the routing table and neighbours, built in the daemon for `routes` and
//! `peers`. Invariant: these keys are part of the CLI contract (add, never rename).

use std::time::Instant;

use serde_json::{Value, json};

use crate::node::Node;
use crate::route::Router;
use crate::session::aead::TransportAead;
use crate::wire::routing::{INFINITY, PrefixKind};

/// Every route the router holds, selected ones first.
pub fn routes(r: &Router, now: Instant) -> Vec<Value> {
    let mut v: Vec<_> = r
        .routes(now)
        .map(|ri| {
            let [(a6, l6), (a4, l4)] = ri.key.prefixes();
            json!({
                "destination": format!("{a6}/{l6}"),
                "destination_ipv4": format!("{a4}/{l4}"),
                "kind": match ri.key.kind { PrefixKind::Node => "node", PrefixKind::Default => "default" },
                "originator": ri.key.originator,
                "next_hop": ri.next_hop,
                "metric": (ri.metric != INFINITY).then_some(ri.metric),
                "seqno": ri.seqno,
                "price": (ri.price_per_mib > 0).then_some(ri.price_per_mib),
                "price_epoch": ri.price_epoch,
                "age_secs": ri.age.as_secs(),
                "selected": ri.selected,
                "feasible": ri.feasible,
            })
        })
        .collect();
    v.sort_by_key(|r| {
        (
            !r["selected"].as_bool().unwrap_or(false),
            r["destination"].as_str().map(String::from),
        )
    });
    v
}

/// Neighbours: link session state joined with the router's view of link quality.
pub fn peers<A: TransportAead>(node: &Node<A>, now: Instant) -> Vec<Value> {
    let quality: std::collections::HashMap<_, _> =
        node.router().neighbours().map(|n| (n.id, n)).collect();
    node.peer_status(now)
        .into_iter()
        .map(|p| {
            let q = quality.get(&p.id);
            json!({
                "id": p.id,
                "endpoint": p.endpoint,
                "found": p.found,
                "connected": p.connected,
                "last_handshake_secs": p.last_handshake_secs,
                "cipher": p.cipher,
                "link_cost": q.and_then(|q| (q.cost != INFINITY).then_some(q.cost)),
                "rxcost": q.map(|q| q.rxcost),
                "txcost": q.map(|q| q.txcost),
                "hellos": q.map(|q| format!("{}/{}", q.hellos_received, q.hellos_expected)),
                "rtt_ms": q.and_then(|q| q.rtt).map(|d| d.as_secs_f64() * 1000.0),
                "rx_bytes": p.stats.rx_bytes,
                "tx_bytes": p.stats.tx_bytes,
            })
        })
        .collect()
}
