//! The daemon's driver of the shared interfaces (docs/share.md): installs the share table at
//! start when `[share]` names interfaces, removes a leftover one when it does not, follows a
//! reload, re-applies the table if something else deleted it, and answers `share status`
//! (guests seen, what each carried and paid, enforcement, the bound on what guests may cost).
//! Invariants: the table is never removed on shutdown or crash (fail closed); only a config
//! without `[share]` applied at start or reload, or `share off`, removes it; guests are
//! neighbours heard on a shared interface (discovery) or whose endpoint lies in one's
//! prefixes; the guest list is bounded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::discovery::Discovered;
use crate::config::{Config, ShareSettings};
use crate::gateway::share::{self as gshare, ShareRules};
use crate::identity::NodeId;
use crate::money::{Amount, EnforceConfig, MIB};
use crate::node::{ChannelView, Node};

/// How often the table is checked and re-applied if something removed it.
const REPAIR_INTERVAL: Duration = Duration::from_secs(2);
/// Guests remembered (by discovery); the least recently heard goes first. As many as the
/// neighbour table holds: no more can be guests at once.
const MAX_GUESTS: usize = crate::node::MAX_NEIGHBOURS;

/// Where a guest was heard.
struct Seen {
    interface: String,
    first: Instant,
    last: Instant,
}

/// The share driver.
pub struct Share {
    settings: ShareSettings,
    udp_port: u16,
    beacon_port: u16,
    /// The table is in force (and kept so by `repair`).
    on: bool,
    next_repair: Instant,
    seen: HashMap<NodeId, Seen>,
}

impl Share {
    /// A driver for `cfg`; nothing changes until [`Share::start`].
    pub fn new(cfg: &Config, now: Instant) -> Self {
        Share {
            settings: cfg.share.clone(),
            udp_port: cfg.listen.port(),
            beacon_port: cfg.discovery.port,
            on: false,
            next_repair: now + REPAIR_INTERVAL,
            seen: HashMap::new(),
        }
    }

    fn rules(&self) -> ShareRules {
        ShareRules {
            interfaces: self.settings.interfaces.clone(),
            udp_port: self.udp_port,
            beacon_port: self.beacon_port,
        }
    }

    /// Bring the host in line with the config: the table if sharing, else no leftover. A
    /// table that cannot be installed is fatal: never share an unguarded interface.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.settings.enabled() {
            self.rules()
                .apply()
                .context("installing the share table (nftables)")?;
            self.on = true;
            tracing::info!(interfaces = ?self.settings.interfaces, "sharing: strangers on these interfaces reach only Bitcloud");
        } else {
            match gshare::remove() {
                Ok(true) => tracing::info!("sharing is off in the config: removed the share table"),
                Ok(false) => {}
                Err(e) => tracing::warn!("checking for a leftover share table: {e}"),
            }
            self.on = false;
        }
        Ok(())
    }

    /// A reloaded config: apply its `[share]` (and our ports, which the table names).
    pub fn update(&mut self, cfg: &Config) {
        self.settings = cfg.share.clone();
        self.beacon_port = cfg.discovery.port;
        if let Err(e) = self.start() {
            tracing::error!("reload: {e:#}");
        }
    }

    /// `share off`: remove the table now; sharing stays off until a start or reload.
    pub fn off(&mut self) -> anyhow::Result<bool> {
        self.on = false;
        let was = gshare::remove().context("removing the share table")?;
        tracing::warn!(
            removed = was,
            "share off: the shared interfaces are no longer guarded"
        );
        Ok(was)
    }

    /// Re-apply the table if something else removed it; call from the event loop's tick.
    pub fn repair(&mut self, now: Instant) {
        if !self.on || now < self.next_repair {
            return;
        }
        self.next_repair = now + REPAIR_INTERVAL;
        if gshare::installed().unwrap_or(true) {
            return;
        }
        tracing::warn!("something removed the share table; re-applying");
        if let Err(e) = self.rules().apply() {
            tracing::error!("re-applying the share table: {e}");
        }
    }

    /// A discovery report: remember senders heard on a shared interface.
    pub fn discovered(&mut self, d: &Discovered, now: Instant) {
        if !self.settings.interfaces.contains(&d.interface) {
            return;
        }
        if let Some(s) = self.seen.get_mut(&d.id) {
            s.last = now;
            s.interface.clone_from(&d.interface);
            return;
        }
        if self.seen.len() >= MAX_GUESTS
            && let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| *k)
        {
            self.seen.remove(&oldest);
        }
        tracing::info!(guest = %d.id, interface = %d.interface, "guest on a shared interface");
        self.seen.insert(
            d.id,
            Seen {
                interface: d.interface.clone(),
                first: now,
                last: now,
            },
        );
    }

    /// The control request `share` (`off`: `share off`, else `share status`).
    pub fn answer(&mut self, off: bool, cfg: &Config, node: &Node, now: Instant) -> Value {
        if !off {
            return self.status(cfg, node, now);
        }
        match self.off() {
            Ok(was) => json!({ "sharing": false, "removed": was, "live": true }),
            Err(e) => json!({ "error": format!("{e:#}") }),
        }
    }

    /// `share status`.
    pub fn status(&self, cfg: &Config, node: &Node, now: Instant) -> Value {
        let prefixes: Vec<(String, Vec<_>)> = self
            .settings
            .interfaces
            .iter()
            .map(|i| (i.clone(), gshare::interface_prefixes(i)))
            .collect();
        let channels = node.channel_views(now);
        let mut guests = Vec::new();
        for p in node.peer_status(now) {
            let by_addr = p.endpoint.and_then(|e| {
                prefixes
                    .iter()
                    .find(|(_, px)| gshare::in_prefixes(e.ip(), px))
                    .map(|(i, _)| i.clone())
            });
            let seen = self.seen.get(&p.id);
            let Some(interface) = seen.map(|s| s.interface.clone()).or(by_addr) else {
                continue;
            };
            let mine: Vec<&ChannelView> = channels
                .iter()
                .filter(|c| c.peer == p.id && c.direction == "incoming")
                .collect();
            let of = |kind: &str| mine.iter().find(|c| c.kind == kind).copied();
            let sum = |f: fn(&ChannelView) -> Amount| {
                mine.iter()
                    .fold(Amount::ZERO, |a, c| a.saturating_add(f(c)))
            };
            // The worst level of its ladders (exit fee, relay fee): what the guest feels.
            let enforcement = mine
                .iter()
                .filter_map(|c| c.enforcement)
                .max_by_key(|l| match *l {
                    "cut" => 2,
                    "shaped" => 1,
                    _ => 0,
                })
                .unwrap_or("full");
            guests.push(json!({
                "id": p.id,
                "interface": interface,
                "endpoint": p.endpoint,
                "connected": p.connected,
                "seen_secs": seen.map(|s| now.saturating_duration_since(s.first).as_secs()),
                "last_heard_secs": seen.map(|s| now.saturating_duration_since(s.last).as_secs()),
                "exit_bytes": of("exit").map_or(0, |c| c.metered_bytes),
                "relayed_bytes": of("link").map_or(0, |c| c.metered_bytes),
                "link_rx_bytes": p.stats.rx_bytes,
                "link_tx_bytes": p.stats.tx_bytes,
                "billed": sum(|c| c.metered_amount),
                "paid": sum(|c| c.cumulative_paid),
                "unpaid": sum(|c| c.unpaid),
                "enforcement": enforcement,
            }));
        }
        let w = &cfg.wallet;
        let enforce = EnforceConfig {
            credit_window: w.unknown_credit_window,
            ..w.payee().enforce
        };
        let exit_fee = cfg.exit.enabled.then_some(cfg.exit.fee_per_mib);
        let per_guest = guest_bound(&enforce, cfg.pricing.fee_per_mib, exit_fee);
        let max_guests = MAX_GUESTS as u128;
        json!({
            "sharing": self.on,
            "live": true,
            "interfaces": self.settings.interfaces,
            "table": gshare::TABLE,
            "table_installed": gshare::installed().ok(),
            "exit": cfg.exit.enabled,
            "exit_fee_per_mib": exit_fee,
            "fee_per_mib": cfg.pricing.fee_per_mib,
            "guests": guests,
            "bound": {
                "credit_window": enforce.credit_window,
                "free_bytes_per_sec": enforce.free_bytes_per_sec,
                "free_burst_bytes": enforce.free_burst_bytes,
                "grace_secs": enforce.grace.as_secs(),
                "per_guest": per_guest,
                "max_guests": max_guests,
                "total": per_guest.checked_mul(max_guests).unwrap_or(Amount::MAX),
            },
        })
    }
}

/// The most one guest (one node id) can leave unpaid before each of its ladders cuts it:
/// per priced ladder, 1.25 x the window (shaped from 1 x, cut after the grace above 1.25 x),
/// plus the free tier carried during the grace and its burst, at that ladder's price. The
/// exit ladder also tolerates `DOWNLOAD_LOSS_PERCENT` of what it sent down; that part grows
/// only with bytes the guest did pay for, so it is shown in docs/share.md, not here.
pub fn guest_bound(e: &EnforceConfig, fee_per_mib: u64, exit_fee: Option<u64>) -> Amount {
    let free = u128::from(e.free_bytes_per_sec)
        .saturating_mul(u128::from(e.grace.as_secs()))
        .saturating_add(u128::from(e.free_burst_bytes));
    let ladder = |price: u64| {
        if price == 0 {
            return Amount::ZERO;
        }
        let tier = Amount::from_units(
            free.saturating_mul(u128::from(price))
                .div_ceil(u128::from(MIB)),
        );
        e.credit_window.mul_ratio(5, 4).saturating_add(tier)
    };
    ladder(fee_per_mib).saturating_add(exit_fee.map_or(Amount::ZERO, ladder))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_adds_the_priced_ladders() {
        let e = EnforceConfig {
            credit_window: Amount::from_units(1_000_000),
            grace: Duration::from_secs(10),
            free_bytes_per_sec: 16 * 1024,
            free_burst_bytes: 64 * 1024,
        };
        // Nothing is owed where nothing is charged.
        assert_eq!(guest_bound(&e, 0, None), Amount::ZERO);
        assert_eq!(guest_bound(&e, 0, Some(0)), Amount::ZERO);
        // 1.25 x 1,000,000 + (16 KiB x 10 + 64 KiB) = 224 KiB at 1 MiB-price 1,048,576.
        let one = 1_250_000 + 224 * 1024;
        assert_eq!(guest_bound(&e, 0, Some(1 << 20)).units(), one);
        assert_eq!(guest_bound(&e, 1 << 20, Some(1 << 20)).units(), 2 * one);
        assert_eq!(guest_bound(&e, 1 << 20, None).units(), one);
        assert!(
            guest_bound(&e, u64::MAX, Some(u64::MAX)) > Amount::ZERO,
            "no overflow"
        );
    }
}
