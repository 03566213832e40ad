//! Writes: committing vouchers (both directions) and meter checkpoints. Invariants: each
//! write is one `BEGIN IMMEDIATE` transaction that returns only once durable; a replayed
//! voucher is a no-op; a voucher that would move a channel backwards, or contradict a stored
//! voucher of the same seq, is refused and changes nothing; checkpoints never lower a meter.
//! Signatures are verified by the sans-IO channel before anything reaches here
//! ([`Wallet::integrity_check`] re-verifies the stored latest vouchers).

use sqlx::{Connection, Row, SqliteConnection};

use super::{Direction, Totals, Wallet, WalletError, now_ms, parse_amount, signed, to_i64};
use crate::money::{Amount, ChannelId, MeterSnapshot, SignedAmount, Voucher};

/// Result of committing a voucher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Newly stored.
    Committed,
    /// This exact voucher (same channel, seq and body) was already stored: nothing changed.
    AlreadyCommitted,
}

impl Wallet {
    /// Payer side: store a voucher we are about to send. Refused if it would take the balance
    /// below minus the spend limit. Only send after this returns `Ok`.
    pub async fn commit_outgoing_voucher(
        &mut self,
        v: &Voucher,
    ) -> Result<CommitOutcome, WalletError> {
        self.commit(v, Direction::Outgoing, true).await
    }

    /// Payer side: store a voucher we signed earlier and learned back in a resync (we had
    /// restored an older state). The payee holds it, so it is owed whatever the spend limit.
    pub async fn adopt_outgoing_voucher(
        &mut self,
        v: &Voucher,
    ) -> Result<CommitOutcome, WalletError> {
        self.commit(v, Direction::Outgoing, false).await
    }

    /// Payee side: store a verified voucher before crediting the payer. Idempotent on replays;
    /// refuses non-monotonic vouchers.
    pub async fn commit_incoming_voucher(
        &mut self,
        v: &Voucher,
    ) -> Result<CommitOutcome, WalletError> {
        self.commit(v, Direction::Incoming, false).await
    }

    async fn commit(
        &mut self,
        v: &Voucher,
        dir: Direction,
        enforce_limit: bool,
    ) -> Result<CommitOutcome, WalletError> {
        // IMMEDIATE takes the write lock up front, so the reads in `stage` cannot go stale.
        let mut tx = self.conn.begin_with("BEGIN IMMEDIATE").await?;
        let mut totals = self.totals;
        let limit = enforce_limit.then_some(self.cfg.spend_limit);
        let out = stage(&mut tx, v, dir, limit, &mut totals).await?;
        // Retention, in the same transaction: at most once a minute per channel.
        let now = now_ms();
        let due = self
            .pruned_at
            .get(&v.channel_id)
            .is_none_or(|t| now.saturating_sub(*t) >= super::retention::PRUNE_EVERY_MS);
        if out == CommitOutcome::Committed && due {
            super::retention::prune(&mut tx, &v.channel_id, now).await?;
        }
        tx.commit().await?;
        if out == CommitOutcome::Committed && due {
            self.pruned_at.insert(v.channel_id, now);
        }
        // Only now, with the commit durable, does the in-memory view move.
        self.totals = totals;
        Ok(out)
    }

    /// Payee side, many vouchers (e.g. from several channels) in one durable transaction:
    /// one fsync instead of one per voucher. Each voucher gets its own outcome; a refused one
    /// writes nothing and does not affect the others. Credit each only after this returns
    /// `Ok`. An outer error means nothing was committed.
    pub async fn commit_incoming_vouchers(
        &mut self,
        vs: &[Voucher],
    ) -> Result<Vec<Result<CommitOutcome, WalletError>>, WalletError> {
        let mut tx = self.conn.begin_with("BEGIN IMMEDIATE").await?;
        let mut totals = self.totals;
        let mut out = Vec::with_capacity(vs.len());
        for v in vs {
            match stage(&mut tx, v, Direction::Incoming, None, &mut totals).await {
                // A database failure may have left a statement half done: abandon the batch
                // (dropping `tx` rolls it back).
                Err(e @ WalletError::Db(_)) => return Err(e),
                r => out.push(r),
            }
        }
        tx.commit().await?;
        self.totals = totals;
        Ok(out)
    }

    /// Apply the voucher retention to channel `id` as if it were `now_ms` (Unix ms) in one
    /// transaction; returns how many vouchers were removed (docs/money.md, "Voucher
    /// retention"). Commits do this on their own once a minute per channel.
    pub async fn prune_vouchers(
        &mut self,
        id: &ChannelId,
        now_ms: i64,
    ) -> Result<usize, WalletError> {
        let mut tx = self.conn.begin_with("BEGIN IMMEDIATE").await?;
        let n = super::retention::prune(&mut tx, id, now_ms).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Store meter checkpoints in one transaction. A snapshot whose totals are below the stored
    /// ones is skipped: a checkpoint never lowers a meter. Returns how many were stored.
    pub async fn checkpoint_meters(
        &mut self,
        meters: &[(ChannelId, MeterSnapshot)],
    ) -> Result<usize, WalletError> {
        let mut tx = self.conn.begin_with("BEGIN IMMEDIATE").await?;
        let mut stored = 0;
        let at = now_ms();
        for (id, snap) in meters {
            let cid = id.0.to_vec();
            let row = sqlx::query("SELECT meter_bytes, meter_amount FROM channels WHERE id = ?")
                .bind(cid.clone())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(WalletError::UnknownChannel(*id))?;
            let old_bytes: i64 = row.try_get("meter_bytes")?;
            let old_amount = parse_amount(&row.try_get::<String, _>("meter_amount")?)?;
            // A meter beyond what the file can hold (the channel layer bounds what a
            // neighbour may add, `money::MAX_WIRE_BYTES`) skips this channel only: one bad
            // channel must never stop every other channel's checkpoint.
            let fits = snap.buckets.iter().all(|(_, b)| i64::try_from(*b).is_ok())
                && i64::try_from(snap.base_bytes).is_ok();
            let Ok(total_bytes) = to_i64(snap.total_bytes(), "meter bytes") else {
                tracing::warn!(channel = %id, "meter beyond the wallet's range, not checkpointed");
                continue;
            };
            if !fits {
                tracing::warn!(channel = %id, "meter beyond the wallet's range, not checkpointed");
                continue;
            }
            let total_amount = snap.total_cost();
            if total_bytes < old_bytes || total_amount < old_amount {
                continue;
            }
            sqlx::query(
                "UPDATE channels SET meter_bytes = ?, meter_amount = ?, meter_base_bytes = ?,
                        meter_base_amount = ?, checkpoint_at = ? WHERE id = ?",
            )
            .bind(total_bytes)
            .bind(total_amount.to_db_text())
            .bind(to_i64(snap.base_bytes, "meter bytes")?)
            .bind(snap.base_amount.to_db_text())
            .bind(at)
            .bind(cid.clone())
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM meter_buckets WHERE channel_id = ?")
                .bind(cid.clone())
                .execute(&mut *tx)
                .await?;
            for (price, bytes) in &snap.buckets {
                sqlx::query(
                    "INSERT INTO meter_buckets (channel_id, epoch, units_per_mib, bytes)
                     VALUES (?, ?, ?, ?)
                     ON CONFLICT (channel_id, epoch, units_per_mib)
                     DO UPDATE SET bytes = bytes + excluded.bytes",
                )
                .bind(cid.clone())
                .bind(i64::from(price.epoch))
                .bind(price.units_per_mib.to_string())
                .bind(to_i64(*bytes, "meter bytes")?)
                .execute(&mut *tx)
                .await?;
            }
            stored += 1;
        }
        tx.commit().await?;
        Ok(stored)
    }
}

/// Check `v` against the stored channel and, if it is new and monotonic, write it, all inside
/// the caller's transaction. Every refusal happens before the first write, so a refused voucher
/// leaves the transaction as it was. `totals` moves only when the voucher is written.
async fn stage(
    conn: &mut SqliteConnection,
    v: &Voucher,
    dir: Direction,
    spend_limit: Option<Amount>,
    totals: &mut Totals,
) -> Result<CommitOutcome, WalletError> {
    let seq = to_i64(v.seq, "voucher seq")?;
    let bytes = to_i64(v.cumulative_bytes, "voucher bytes")?;
    let cid = v.channel_id.0.to_vec();
    let non_monotonic = || WalletError::NonMonotonic {
        channel: v.channel_id,
        seq: v.seq,
    };
    let row = sqlx::query(
        "SELECT direction, latest_seq, latest_amount, latest_bytes FROM channels WHERE id = ?",
    )
    .bind(cid.clone())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(WalletError::UnknownChannel(v.channel_id))?;
    if Direction::parse(&row.try_get::<String, _>("direction")?)? != dir {
        return Err(WalletError::ChannelMismatch(v.channel_id));
    }
    let latest_seq: i64 = row.try_get("latest_seq")?;
    let latest_amount = parse_amount(&row.try_get::<String, _>("latest_amount")?)?;
    let latest_bytes: i64 = row.try_get("latest_bytes")?;

    if seq <= latest_seq {
        let old = sqlx::query(
            "SELECT cumulative_amount, cumulative_bytes, price_epoch FROM vouchers
                 WHERE channel_id = ? AND seq = ?",
        )
        .bind(cid.clone())
        .bind(seq)
        .fetch_optional(&mut *conn)
        .await?;
        let same = match old {
            Some(o) => {
                parse_amount(&o.try_get::<String, _>("cumulative_amount")?)? == v.cumulative_amount
                    && o.try_get::<i64, _>("cumulative_bytes")? == bytes
                    && o.try_get::<i64, _>("price_epoch")? == i64::from(v.price_epoch)
            }
            None => false,
        };
        return if same {
            Ok(CommitOutcome::AlreadyCommitted)
        } else {
            Err(non_monotonic())
        };
    }
    if v.cumulative_amount < latest_amount || bytes < latest_bytes {
        return Err(non_monotonic());
    }
    let delta = v.cumulative_amount.saturating_sub(latest_amount);

    let mut new_totals = *totals;
    let slot = match dir {
        Direction::Outgoing => &mut new_totals.paid,
        Direction::Incoming => &mut new_totals.received,
    };
    *slot = slot
        .checked_add(delta)
        .ok_or(WalletError::OutOfRange("wallet total"))?;
    if let Some(limit) = spend_limit {
        let balance_after = signed(new_totals.received, new_totals.paid);
        let floor = SignedAmount::from_amount(limit).map_or(i128::MIN, |l| l.0.saturating_neg());
        if balance_after.0 < floor {
            return Err(WalletError::SpendLimit {
                balance_after,
                limit,
            });
        }
    }

    let amount = v.cumulative_amount.to_db_text();
    sqlx::query(
        "INSERT INTO vouchers (channel_id, seq, cumulative_amount, cumulative_bytes,
                               price_epoch, signature, delta, committed_at, chain_sig)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(cid.clone())
    .bind(seq)
    .bind(amount.clone())
    .bind(bytes)
    .bind(i64::from(v.price_epoch))
    .bind(v.signature.to_vec())
    .bind(delta.to_db_text())
    .bind(now_ms())
    .bind(v.chain_sig.map(|c| c.0.to_vec()))
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE channels SET latest_seq = ?, latest_amount = ?, latest_bytes = ? WHERE id = ?",
    )
    .bind(seq)
    .bind(amount)
    .bind(bytes)
    .bind(cid)
    .execute(&mut *conn)
    .await?;
    *totals = new_totals;
    Ok(CommitOutcome::Committed)
}
