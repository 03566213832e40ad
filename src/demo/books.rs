//! The demo's books: each node's wallet (`wallet balance`) and channels (`wallet channels`),
//! read through the typed control API, and the traffic table built from them: one row per
//! payer and carrier, with the bytes the carrier counted and what it was paid. Invariant:
//! amounts stay exact integers of the smallest unit (never floats) from the daemons' decimal
//! strings to the checks.

use std::str::FromStr;

use anyhow::Context;
use serde_json::Value;

use super::topology::{DemoNode, Mesh};
use crate::api::{self, Request};
use crate::money::{Amount, MIB};

/// One channel as a node reports it.
#[derive(Clone, Debug)]
pub struct Chan {
    /// The other node (hex id).
    pub peer: String,
    /// `outgoing` (we pay) or `incoming` (we are paid).
    pub direction: String,
    /// `link` or `exit`.
    pub kind: String,
    /// Latest voucher's cumulative amount (units).
    pub paid: u128,
    /// Bytes this side metered.
    pub bytes: u64,
    /// Metered but not yet covered by a voucher (units).
    pub unpaid: u128,
    /// Voucher seqs: latest and acknowledged.
    pub seqs: (u64, u64),
}

/// One node's wallet and channels.
#[derive(Clone, Debug, Default)]
pub struct NodeBooks {
    /// `wallet balance`: earned, spent (units) and balance (may be negative).
    pub earned: u128,
    /// Units paid out.
    pub spent: u128,
    /// earned - spent, as the wallet says.
    pub balance: i128,
    /// `wallet channels`.
    pub channels: Vec<Chan>,
}

/// Ask one daemon for its balance and channels.
pub fn read(n: &DemoNode) -> anyhow::Result<NodeBooks> {
    let q = |what: &str| {
        api::call(
            &n.socket,
            &Request::Wallet {
                what: what.into(),
                since_secs: None,
                limit: None,
            },
        )
        .with_context(|| format!("{}: wallet {what}", n.name))
    };
    let b = q("balance")?;
    let c = q("channels")?;
    let mut out = NodeBooks {
        earned: units(&b["earned"])?,
        spent: units(&b["spent"])?,
        balance: signed_units(&b["balance"])?,
        channels: vec![],
    };
    for ch in c["channels"].as_array().into_iter().flatten() {
        let s = |k: &str| ch[k].as_str().unwrap_or_default().to_string();
        out.channels.push(Chan {
            peer: s("peer"),
            direction: s("direction"),
            kind: s("kind"),
            paid: units(&ch["cumulative_paid"])?,
            bytes: ch["metered_bytes"].as_u64().unwrap_or(0),
            unpaid: units(&ch["unpaid"])?,
            seqs: (
                ch["latest_seq"].as_u64().unwrap_or(0),
                ch["acked_seq"].as_u64().unwrap_or(0),
            ),
        });
    }
    Ok(out)
}

/// Every node's books, in mesh order.
pub fn read_all(mesh: &Mesh) -> anyhow::Result<Vec<NodeBooks>> {
    mesh.nodes.iter().map(read).collect()
}

/// A decimal cloudcoin string from the API as units.
pub fn units(v: &Value) -> anyhow::Result<u128> {
    let s = v
        .as_str()
        .with_context(|| format!("amount {v} is not a string"))?;
    Ok(Amount::from_str(s)
        .with_context(|| format!("amount {s:?}"))?
        .units())
}

fn signed_units(v: &Value) -> anyhow::Result<i128> {
    let s = v
        .as_str()
        .with_context(|| format!("amount {v} is not a string"))?;
    let (neg, mag) = s.strip_prefix('-').map_or((false, s), |m| (true, m));
    let u = i128::try_from(Amount::from_str(mag)?.units())?;
    Ok(if neg { -u } else { u })
}

/// One row of the traffic table: what `carrier` carried for `payer` and was paid for it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    /// Who carried (relay, or exit for its exit fee).
    pub carrier: &'static str,
    /// Who paid.
    pub payer: &'static str,
    /// `link` (relay fee per forwarded frame) or `exit` (exit fee on the internet bytes).
    pub kind: String,
    /// Bytes the carrier counted.
    pub bytes: u64,
    /// The carrier's fee, units per MiB.
    pub fee_per_mib: u64,
    /// bytes x fee, rounded up (units).
    pub expected_units: u128,
    /// What the carrier's wallet credited (units).
    pub paid_units: u128,
    /// What the payer's wallet says it paid (units).
    pub payer_paid_units: u128,
}

/// The traffic table: every incoming channel of every node, with its payer's side beside it.
pub fn table(mesh: &Mesh, books: &[NodeBooks]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (q, qb) in mesh.nodes.iter().zip(books) {
        for c in qb.channels.iter().filter(|c| c.direction == "incoming") {
            let Some((p, pb)) = mesh
                .nodes
                .iter()
                .zip(books)
                .find(|(p, _)| p.id.to_string() == c.peer)
            else {
                continue;
            };
            let payer_paid = pb
                .channels
                .iter()
                .find(|o| {
                    o.direction == "outgoing" && o.kind == c.kind && o.peer == q.id.to_string()
                })
                .map_or(0, |o| o.paid);
            if c.bytes == 0 && c.paid == 0 && payer_paid == 0 {
                continue;
            }
            rows.push(Row {
                carrier: q.name,
                payer: p.name,
                kind: c.kind.clone(),
                bytes: c.bytes,
                fee_per_mib: q.fee_per_mib,
                expected_units: (u128::from(c.bytes) * u128::from(q.fee_per_mib))
                    .div_ceil(u128::from(MIB)),
                paid_units: c.paid,
                payer_paid_units: payer_paid,
            });
        }
    }
    rows
}

/// Whether every payer's vouchers are signed, acknowledged and credited: nothing left to pay.
pub fn settled(mesh: &Mesh, books: &[NodeBooks]) -> bool {
    let outgoing_done = books.iter().all(|b| {
        b.channels
            .iter()
            .filter(|c| c.direction == "outgoing")
            .all(|c| c.unpaid == 0 && c.seqs.0 == c.seqs.1)
    });
    outgoing_done
        && table(mesh, books)
            .iter()
            .all(|r| r.paid_units == r.payer_paid_units)
}

/// Format units as cloudcoins with all 9 decimals.
pub fn cc(units: u128) -> String {
    format!("{}.{:09}", units / 1_000_000_000, units % 1_000_000_000)
}

/// Signed [`cc`].
pub fn cc_signed(units: i128) -> String {
    let sign = if units < 0 { "-" } else { "" };
    format!("{sign}{}", cc(units.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact() {
        assert_eq!(units(&"0.000050000".into()).unwrap(), 50_000);
        assert_eq!(
            signed_units(&"-1.000000001".into()).unwrap(),
            -1_000_000_001
        );
        assert!(units(&Value::from(5)).is_err());
        assert!(units(&"x".into()).is_err());
        assert_eq!(cc(1_250_000_000), "1.250000000");
        assert_eq!(cc_signed(-5), "-0.000000005");
    }
}
