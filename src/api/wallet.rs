//! Answers to wallet queries (`bitcloud wallet balance|channels|earnings|history`), from the
//! daemon's live wallet or, with no daemon running, from the wallet file itself. Invariant:
//! read-only; amounts are decimal strings; every answer carries the IOU note.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::IOU_NOTE;
use crate::money::Amount;
use crate::node::ChannelView;
use crate::wallet::{Direction, Wallet};

/// The wallet database inside `data_dir`.
pub const WALLET_FILE: &str = "wallet.sqlite";

fn sum<'a>(views: impl Iterator<Item = &'a ChannelView>) -> Amount {
    views.fold(Amount::ZERO, |a, v| a.saturating_add(v.unpaid))
}

pub async fn query(
    w: &mut Wallet,
    body: &Value,
    live: &[ChannelView],
) -> Result<Value, crate::wallet::WalletError> {
    let backed = false;
    Ok(match body.get("what").and_then(|x| x.as_str()) {
        Some("balance") => {
            let b = w.balance().await?;
            // Unpaid debt lives in the node's meters; the file only has the last checkpoint.
            let owed_to_us = sum(live.iter().filter(|v| v.direction == "incoming"));
            let we_owe = sum(live.iter().filter(|v| v.direction == "outgoing"));
            json!({
                "balance": b.balance,
                "earned": b.earned,
                "spent": b.spent,
                "unpaid_owed_to_us": if live.is_empty() { b.unpaid_owed_to_us } else { owed_to_us },
                "unpaid_we_owe": if live.is_empty() { b.unpaid_we_owe } else { we_owe },
                "spend_limit": w.config().spend_limit,
                "spend_headroom": w.spend_headroom(),
                "backed": backed,
                "note": IOU_NOTE,
            })
        }
        Some("channels") => json!({ "channels": live, "backed": backed }),
        Some("earnings") => {
            let since_secs = body.get("since_secs").and_then(|x| x.as_u64());
            let since = since_secs.map_or(UNIX_EPOCH, |s| {
                SystemTime::now()
                    .checked_sub(Duration::from_secs(s))
                    .unwrap_or(UNIX_EPOCH)
            });
            // One line per neighbour with vouchers in the window (a peer may have had several
            // channels over time).
            let mut by_peer: std::collections::BTreeMap<String, (u64, Amount, u64)> =
                Default::default();
            for r in w.earnings_by_peer(since).await? {
                if r.vouchers == 0 {
                    continue;
                }
                let e = by_peer.entry(r.peer.to_string()).or_default();
                e.0 = e.0.saturating_add(r.bytes);
                e.1 = e.1.saturating_add(r.amount);
                e.2 += r.vouchers;
            }
            let total = by_peer
                .values()
                .fold(Amount::ZERO, |a, r| a.saturating_add(r.1));
            let total_bytes = by_peer.values().fold(0u64, |a, r| a.saturating_add(r.0));
            let since_ms = since_secs.map(|_| {
                since
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64)
            });
            let neighbours: Vec<Value> = by_peer
                .iter()
                .map(|(peer, (bytes, earned, vouchers))| {
                    json!({ "peer": peer, "bytes": bytes, "earned": earned, "vouchers": vouchers })
                })
                .collect();
            json!({
                "since_unix_ms": since_ms,
                "total": total,
                "total_bytes": total_bytes,
                "neighbours": neighbours,
                "backed": backed,
            })
        }
        Some("history") => {
            let limit = body
                .get("limit")
                .and_then(|x| x.as_u64())
                .map_or(50, |l| l.min(10_000) as u32);
            let rows: Vec<Value> = w
                .history(limit)
                .await?
                .iter()
                .map(|h| {
                    json!({
                        "at_unix_ms": h.at_unix_ms,
                        "direction": h.direction.as_str(),
                        "peer": h.peer,
                        "channel_id": h.channel_id,
                        "seq": h.seq,
                        "cumulative_amount": h.cumulative_amount,
                        "delta": h.delta,
                        "cumulative_bytes": h.cumulative_bytes,
                        "price_epoch": h.price_epoch,
                    })
                })
                .collect();
            json!({ "history": rows, "backed": backed })
        }
        Some("integrity") => {
            let r = w.integrity_check().await?;
            json!({ "ok": true, "channels": r.channels, "vouchers": r.vouchers })
        }
        other => json!({ "error": format!("unknown wallet query {other:?}") }),
    })
}

/// Answer a `wallet` query from the wallet file alone, for when the daemon is not running:
/// balances, earnings and history are what is stored; channels show the last checkpoint
/// (no enforcement state, which lives only in a running node). Only for when no daemon runs
/// (the CLI checks): the file is opened read-only ([`Wallet::open_read_only`]), so this never
/// takes the write lock, never migrates and leaves the database byte-identical.
pub fn query_offline(cfg: &crate::config::Config, body: &Value) -> anyhow::Result<Value> {
    use anyhow::Context;
    let path = cfg.data_dir.join(WALLET_FILE);
    if !path.exists() {
        anyhow::bail!(
            "no wallet at {} and no daemon running: the node has not run yet",
            path.display()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let wcfg = crate::wallet::WalletConfig {
            spend_limit: cfg.wallet.spend_limit,
        };
        let mut w = Wallet::open_read_only(&path, wcfg)
            .await
            .with_context(|| format!("opening the wallet {}", path.display()))?;
        let live: Vec<ChannelView> = w
            .channels()
            .await?
            .iter()
            .map(|c| stored_view(c, cfg.wallet.credit_window))
            .collect();
        let mut v = query(&mut w, body, &live).await?;
        if let Some(o) = v.as_object_mut() {
            o.insert("live".into(), Value::Bool(false));
        }
        w.close().await?;
        Ok(v)
    })
}

/// A stored channel as the CLI shows it, from its last checkpoint.
fn stored_view(c: &crate::wallet::ChannelRecord, window: Amount) -> ChannelView {
    let seq = c.latest.map_or(0, |v| v.seq);
    ChannelView {
        peer: c.peer(),
        channel_id: c.id,
        direction: c.direction.as_str(),
        cumulative_paid: c.paid(),
        latest_seq: seq,
        // Incoming vouchers are stored once credited; acks of outgoing ones are not stored.
        acked_seq: if c.direction == Direction::Incoming {
            seq
        } else {
            0
        },
        credit_window: window,
        unpaid: c.unpaid(),
        metered_bytes: c.meter.total_bytes(),
        metered_amount: c.meter.total_cost(),
        enforcement: None,
        throttled: None,
        rejected: 0,
        rejects: Default::default(),
        kind: if c.params.nonce == crate::money::EXIT_CHANNEL_NONCE {
            "exit"
        } else {
            "link"
        },
    }
}

#[cfg(test)]
#[path = "wallet_tests.rs"]
mod tests;
