//! SIGHUP (`systemctl reload bitcloud`): re-read the config and apply what can change live
//! (peers, the forwarding fee, discovery, the exit fee, `[client]`, `[share]`), keeping every
//! session. Invariants: an invalid config changes nothing (the error names file and line); settings
//! that cannot change live (listen address, TUN, MTU, key, paths, exit role) are reported and
//! the running values kept.

use std::time::Instant;

use super::gateway::Gateway;
use crate::config::Config;
use crate::node::Node;

/// What the event loop must redo after a reload.
pub struct Outcome {
    /// `[discovery]` changed: restart the beacon task with the new config.
    pub discovery_changed: bool,
    /// `[pricing] fee_per_mib` changed to this.
    pub fee: Option<u64>,
    /// The config was read: `[share]` applies again (it may also undo a `share off`).
    pub apply_share: bool,
}

/// Re-read `cfg.path` and apply it; `cfg` becomes the new config (with the live-only fields
/// kept as they run).
pub async fn reload(cfg: &mut Config, node: &mut Node, gw: &mut Gateway) -> Outcome {
    let none = Outcome {
        discovery_changed: false,
        fee: None,
        apply_share: false,
    };
    let mut new = match Config::load(&cfg.path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload refused, keeping the running config: {e}");
            return none;
        }
    };
    let now = Instant::now();
    let mut restart: Vec<&str> = Vec::new();
    if new.listen != cfg.listen {
        restart.push("node.listen");
    }
    if new.tun != cfg.tun {
        restart.push("node.tun");
    }
    if new.mtu != cfg.mtu {
        restart.push("node.mtu");
    }
    if new.key_file != cfg.key_file
        || new.control_socket != cfg.control_socket
        || new.data_dir != cfg.data_dir
    {
        restart.push("node.key_file/control_socket/data_dir");
    }
    if new.timers != cfg.timers {
        restart.push("session");
    }
    if new.wallet != cfg.wallet || new.routing != cfg.routing || new.testing != cfg.testing {
        restart.push("wallet/routing/testing");
    }
    if new.pricing.max_price_per_mib != cfg.pricing.max_price_per_mib
        || new.pricing.price_weight_milli != cfg.pricing.price_weight_milli
    {
        restart.push("pricing.max_price_per_mib/price_weight_milli");
    }
    let ch = node.set_configured_peers(&super::peer_configs(&new), now);
    // A new forwarding fee needs a durable price epoch first: the event loop asks the wallet
    // without waiting on it.
    let fee =
        (new.pricing.fee_per_mib != cfg.pricing.fee_per_mib).then_some(new.pricing.fee_per_mib);
    restart.extend(gw.update(node, &new.exit, new.client, now).await);
    if new.client.exit != cfg.client.exit
        && let Err(e) = gw.set_mode(node, new.client.exit, now).await
    {
        tracing::warn!("reload: [client] exit not applied: {e:#}");
    }
    // With `accept = "configured"` the beacon task filters by the peer list, so it restarts
    // when that changes too.
    let peers_changed = !ch.added.is_empty() || !ch.removed.is_empty();
    let discovery_changed = new.discovery != cfg.discovery
        || (peers_changed && new.discovery.accept == crate::config::DiscoveryAccept::Configured);
    // Keep what runs for everything that needs a restart.
    new.listen = cfg.listen;
    new.tun = cfg.tun.clone();
    new.mtu = cfg.mtu;
    new.key_file = cfg.key_file.clone();
    new.control_socket = cfg.control_socket.clone();
    new.data_dir = cfg.data_dir.clone();
    new.timers = cfg.timers;
    new.wallet = cfg.wallet;
    new.routing = cfg.routing;
    new.testing = cfg.testing;
    new.pricing.max_price_per_mib = cfg.pricing.max_price_per_mib;
    new.pricing.price_weight_milli = cfg.pricing.price_weight_milli;
    if !restart.is_empty() {
        new.exit = cfg.exit.clone();
    }
    let added: Vec<String> = ch.added.iter().map(|i| i.to_string()).collect();
    let removed: Vec<String> = ch.removed.iter().map(|i| i.to_string()).collect();
    tracing::info!(
        ?added,
        ?removed,
        kept = ch.kept,
        discovery_changed,
        "config reloaded from {}",
        cfg.path.display()
    );
    if !restart.is_empty() {
        tracing::warn!(settings = ?restart, "changed settings that apply only after a restart; the running values are kept");
    }
    *cfg = new;
    Outcome {
        discovery_changed,
        fee,
        apply_share: true,
    }
}
