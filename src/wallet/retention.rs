//! Voucher retention (docs/money.md, "Voucher retention"): keeps the wallet's size bounded by
//! its channels, whatever a payer sends. Invariants: the latest voucher of a channel is never
//! removed; a removed voucher's delta is added to the next kept voucher, so per channel the
//! base plus the deltas still sum to the latest cumulative amount (`integrity_check`); vouchers
//! older than the retention are folded into `voucher_base`, which only moves forward. Runs
//! inside the caller's transaction.

use sqlx::{Row, SqliteConnection};

use super::{WalletError, parse_amount};
use crate::money::{Amount, ChannelId};

/// Vouchers younger than this are all kept (the rate limit allows 20 per second).
pub(super) const KEEP_ALL_MS: i64 = 60_000;
/// Up to this age one voucher per minute is kept, then one per hour.
const PER_MINUTE_MS: i64 = 86_400_000;
/// Older vouchers are folded into the channel's base.
pub(super) const RETENTION_MS: i64 = 30 * PER_MINUTE_MS;
/// How often one channel is pruned (at a commit on it).
pub(super) const PRUNE_EVERY_MS: i64 = 60_000;

struct Stored {
    seq: i64,
    amount: Amount,
    bytes: i64,
    delta: Amount,
    at: i64,
}

/// The thinning slot of a voucher committed at `at`, seen at `now` (None: keep it).
fn slot(at: i64, now: i64) -> Option<(u8, i64)> {
    let age = now.saturating_sub(at);
    if age > PER_MINUTE_MS {
        Some((1, at / 3_600_000))
    } else if age > KEEP_ALL_MS {
        Some((0, at / 60_000))
    } else {
        None
    }
}

/// Thin and fold channel `id`'s vouchers as of `now` (Unix ms). Returns how many were removed.
pub(super) async fn prune(
    conn: &mut SqliteConnection,
    id: &ChannelId,
    now: i64,
) -> Result<usize, WalletError> {
    let cid = id.0.to_vec();
    let rows = sqlx::query(
        "SELECT seq, cumulative_amount, cumulative_bytes, delta, committed_at FROM vouchers
         WHERE channel_id = ? ORDER BY seq",
    )
    .bind(cid.clone())
    .fetch_all(&mut *conn)
    .await?;
    let mut vs = Vec::with_capacity(rows.len());
    for r in &rows {
        vs.push(Stored {
            seq: r.try_get("seq")?,
            amount: parse_amount(&r.try_get::<String, _>("cumulative_amount")?)?,
            bytes: r.try_get("cumulative_bytes")?,
            delta: parse_amount(&r.try_get::<String, _>("delta")?)?,
            at: r.try_get("committed_at")?,
        });
    }
    let Some((_, older)) = vs.split_last() else {
        return Ok(0);
    };
    // Fold the prefix older than the retention into the base.
    let folded = older
        .iter()
        .take_while(|v| now.saturating_sub(v.at) > RETENTION_MS)
        .count();
    let mut removed = Vec::new();
    if let Some(b) = folded.checked_sub(1).and_then(|i| older.get(i)) {
        sqlx::query(
            "INSERT INTO voucher_base (channel_id, seq, cumulative_amount, cumulative_bytes)
             VALUES (?, ?, ?, ?)
             ON CONFLICT (channel_id) DO UPDATE SET seq = excluded.seq,
                 cumulative_amount = excluded.cumulative_amount,
                 cumulative_bytes = excluded.cumulative_bytes",
        )
        .bind(cid.clone())
        .bind(b.seq)
        .bind(b.amount.to_db_text())
        .bind(b.bytes)
        .execute(&mut *conn)
        .await?;
        removed.extend(older.iter().take(folded).map(|v| v.seq));
    }
    // Thin the rest: of each run of consecutive vouchers in one slot, keep the last and add
    // the others' deltas to it (the next voucher in seq order is the run's last).
    let mut carry = Amount::ZERO;
    let rest = vs.get(folded..).unwrap_or_default();
    for (i, v) in rest.iter().enumerate() {
        let next = rest.get(i + 1);
        let same_run = next.is_some_and(|n| {
            let s = slot(v.at, now);
            s.is_some() && s == slot(n.at, now)
        });
        if same_run {
            carry = carry
                .checked_add(v.delta)
                .ok_or(WalletError::OutOfRange("voucher delta"))?;
            removed.push(v.seq);
            continue;
        }
        if !carry.is_zero() {
            let delta = v
                .delta
                .checked_add(carry)
                .ok_or(WalletError::OutOfRange("voucher delta"))?;
            sqlx::query("UPDATE vouchers SET delta = ? WHERE channel_id = ? AND seq = ?")
                .bind(delta.to_db_text())
                .bind(cid.clone())
                .bind(v.seq)
                .execute(&mut *conn)
                .await?;
            carry = Amount::ZERO;
        }
    }
    for seq in &removed {
        sqlx::query("DELETE FROM vouchers WHERE channel_id = ? AND seq = ?")
            .bind(cid.clone())
            .bind(*seq)
            .execute(&mut *conn)
            .await?;
    }
    Ok(removed.len())
}
