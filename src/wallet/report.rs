//! Reads: balance, channels (also what restarts restore from), earnings and spending (total
//! and per channel), history and the integrity check. Invariants: everything is computed from
//! what is stored, with exact integer sums in Rust (SQLite would sum TEXT amounts as floating
//! point).

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Row;

use super::{
    Direction, Wallet, WalletError, channel_id, node_id, parse_amount, signed, to_u32, to_u64,
};
use crate::identity::NodeId;
use crate::money::{Amount, ChannelId, ChannelParams, MeterSnapshot, Price, SignedAmount, Voucher};

/// The wallet's money position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Balance {
    /// earned - spent; may be negative down to minus the spend limit.
    pub balance: SignedAmount,
    /// Total received on incoming channels (committed vouchers).
    pub earned: Amount,
    /// Total paid on outgoing channels (committed vouchers).
    pub spent: Amount,
    /// Metered on incoming channels (last checkpoint) but not yet paid.
    pub unpaid_owed_to_us: Amount,
    /// Metered on outgoing channels (last checkpoint) but not yet paid.
    pub unpaid_we_owe: Amount,
}

/// One channel as stored: enough to restore its sans-IO state after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRecord {
    /// The channel id.
    pub id: ChannelId,
    /// Whether we pay or are paid.
    pub direction: Direction,
    /// Payer, payee, nonce.
    pub params: ChannelParams,
    /// When it was registered (Unix ms).
    pub opened_at_ms: i64,
    /// The latest committed voucher.
    pub latest: Option<Voucher>,
    /// The last meter checkpoint.
    pub meter: MeterSnapshot,
    /// When that checkpoint was taken (Unix ms).
    pub checkpoint_at_ms: Option<i64>,
}

impl ChannelRecord {
    /// The other node.
    pub fn peer(&self) -> NodeId {
        match self.direction {
            Direction::Outgoing => self.params.payee,
            Direction::Incoming => self.params.payer,
        }
    }

    /// Paid so far (latest committed cumulative amount).
    pub fn paid(&self) -> Amount {
        self.latest.map_or(Amount::ZERO, |v| v.cumulative_amount)
    }

    /// Metered cost at the last checkpoint not covered by the latest voucher.
    pub fn unpaid(&self) -> Amount {
        self.meter.total_cost().saturating_sub(self.paid())
    }
}

/// One committed voucher, as history.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HistoryEntry {
    /// When it was committed (Unix ms).
    pub at_unix_ms: i64,
    /// Outgoing (we paid) or incoming (we were paid).
    pub direction: Direction,
    /// The channel.
    pub channel_id: ChannelId,
    /// The other node.
    pub peer: NodeId,
    /// Voucher seq.
    pub seq: u64,
    /// Cumulative amount after it.
    pub cumulative_amount: Amount,
    /// Increase over the previous voucher.
    pub delta: Amount,
    /// Cumulative bytes after it.
    pub cumulative_bytes: u64,
    /// Price epoch.
    pub price_epoch: u32,
}

/// What one channel moved in a time window: see [`Wallet::earnings_by_peer`] and
/// [`Wallet::spending_by_peer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PeerTotals {
    /// The other node (payer of an incoming channel, payee of an outgoing one).
    pub peer: NodeId,
    /// The channel.
    pub channel_id: ChannelId,
    /// Bytes the window's vouchers added (cumulative bytes over the previous voucher's).
    pub bytes: u64,
    /// Amount the window's vouchers added (sum of their deltas): earned or spent.
    pub amount: Amount,
    /// Vouchers committed in the window.
    pub vouchers: u64,
}

/// What [`Wallet::integrity_check`] examined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntegrityReport {
    /// Channels checked.
    pub channels: usize,
    /// Vouchers checked.
    pub vouchers: usize,
}

macro_rules! channel_select {
    () => {
        "SELECT c.id, c.direction, c.payer, c.payee, c.nonce, c.opened_at,
            c.latest_seq, c.latest_amount, c.latest_bytes, c.meter_base_bytes,
            c.meter_base_amount, c.checkpoint_at, v.price_epoch, v.signature, v.chain_sig
         FROM channels c
         LEFT JOIN vouchers v ON v.channel_id = c.id AND v.seq = c.latest_seq"
    };
}
const CHANNEL_SELECT: &str = channel_select!();
const CHANNEL_SELECT_ONE: &str = concat!(channel_select!(), " WHERE c.id = ?");

impl Wallet {
    /// Balance, earnings, spending and unpaid debt in both directions.
    pub async fn balance(&mut self) -> Result<Balance, WalletError> {
        let mut b = Balance {
            balance: SignedAmount::ZERO,
            earned: Amount::ZERO,
            spent: Amount::ZERO,
            unpaid_owed_to_us: Amount::ZERO,
            unpaid_we_owe: Amount::ZERO,
        };
        for c in self.channels().await? {
            let (total, unpaid) = match c.direction {
                Direction::Incoming => (&mut b.earned, &mut b.unpaid_owed_to_us),
                Direction::Outgoing => (&mut b.spent, &mut b.unpaid_we_owe),
            };
            *total = total.saturating_add(c.paid());
            *unpaid = unpaid.saturating_add(c.unpaid());
        }
        b.balance = signed(b.earned, b.spent);
        Ok(b)
    }

    /// Every channel with its latest voucher and last meter checkpoint.
    pub async fn channels(&mut self) -> Result<Vec<ChannelRecord>, WalletError> {
        let rows = sqlx::query(CHANNEL_SELECT)
            .fetch_all(&mut self.conn)
            .await?;
        let mut buckets = self.buckets(None).await?;
        rows.iter()
            .map(|r| channel_record(r, &mut buckets))
            .collect()
    }

    /// One channel, if registered.
    pub async fn channel(&mut self, id: &ChannelId) -> Result<Option<ChannelRecord>, WalletError> {
        let row = sqlx::query(CHANNEL_SELECT_ONE)
            .bind(id.0.to_vec())
            .fetch_optional(&mut self.conn)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut buckets = self.buckets(Some(id)).await?;
        channel_record(&row, &mut buckets).map(Some)
    }

    /// Checkpointed meter buckets of one channel, or of all channels.
    async fn buckets(
        &mut self,
        only: Option<&ChannelId>,
    ) -> Result<HashMap<Vec<u8>, Vec<(Price, u64)>>, WalletError> {
        let q = match only {
            Some(id) => sqlx::query(
                "SELECT channel_id, epoch, units_per_mib, bytes FROM meter_buckets
                 WHERE channel_id = ? ORDER BY epoch, units_per_mib",
            )
            .bind(id.0.to_vec()),
            None => sqlx::query(
                "SELECT channel_id, epoch, units_per_mib, bytes FROM meter_buckets
                 ORDER BY channel_id, epoch, units_per_mib",
            ),
        };
        let rows = q.fetch_all(&mut self.conn).await?;
        let mut m: HashMap<Vec<u8>, Vec<(Price, u64)>> = HashMap::new();
        for r in rows {
            let rate: String = r.try_get("units_per_mib")?;
            let rate: u64 = rate
                .parse()
                .map_err(|_| WalletError::Corrupt(format!("price {rate:?}")))?;
            let epoch = to_u32(r.try_get("epoch")?, "epoch")?;
            let bytes = to_u64(r.try_get("bytes")?, "bucket bytes")?;
            m.entry(r.try_get("channel_id")?)
                .or_default()
                .push((Price::new(rate, epoch), bytes));
        }
        Ok(m)
    }

    /// Total earned (incoming voucher increases) committed at or after `since`.
    pub async fn earnings(&mut self, since: SystemTime) -> Result<Amount, WalletError> {
        let rows = sqlx::query("SELECT delta FROM earnings WHERE committed_at >= ?")
            .bind(unix_ms(since))
            .fetch_all(&mut self.conn)
            .await?;
        let mut sum = Amount::ZERO;
        for r in rows {
            let d = parse_amount(&r.try_get::<String, _>("delta")?)?;
            sum = sum
                .checked_add(d)
                .ok_or(WalletError::OutOfRange("earnings"))?;
        }
        Ok(sum)
    }

    /// Per incoming channel (every one, zeros included; ordered by peer, then channel id): what
    /// the vouchers committed at or after `since` added in amount and in bytes.
    pub async fn earnings_by_peer(
        &mut self,
        since: SystemTime,
    ) -> Result<Vec<PeerTotals>, WalletError> {
        self.totals_by_peer(Direction::Incoming, since).await
    }

    /// [`Wallet::earnings_by_peer`] for outgoing channels: what we paid each payee.
    pub async fn spending_by_peer(
        &mut self,
        since: SystemTime,
    ) -> Result<Vec<PeerTotals>, WalletError> {
        self.totals_by_peer(Direction::Outgoing, since).await
    }

    async fn totals_by_peer(
        &mut self,
        dir: Direction,
        since: SystemTime,
    ) -> Result<Vec<PeerTotals>, WalletError> {
        let chans = sqlx::query("SELECT id, payer, payee FROM channels WHERE direction = ?")
            .bind(dir.as_str())
            .fetch_all(&mut self.conn)
            .await?;
        // By channel while summing; sorted by (peer, channel) at the end.
        let mut by_chan: HashMap<ChannelId, PeerTotals> = HashMap::new();
        for r in &chans {
            let id = channel_id(&r.try_get::<Vec<u8>, _>("id")?)?;
            let peer = match dir {
                Direction::Incoming => node_id(&r.try_get::<Vec<u8>, _>("payer")?, "payer")?,
                Direction::Outgoing => node_id(&r.try_get::<Vec<u8>, _>("payee")?, "payee")?,
            };
            by_chan.insert(
                id,
                PeerTotals {
                    peer,
                    channel_id: id,
                    bytes: 0,
                    amount: Amount::ZERO,
                    vouchers: 0,
                },
            );
        }
        // The previous voucher may predate `since`: look it up by primary key, whatever its
        // seq (seqs may skip).
        let rows = sqlx::query(
            "SELECT v.channel_id, v.seq, v.delta, v.cumulative_bytes,
                    COALESCE((SELECT p.cumulative_bytes FROM vouchers p
                     WHERE p.channel_id = v.channel_id AND p.seq < v.seq
                     ORDER BY p.seq DESC LIMIT 1),
                     (SELECT b.cumulative_bytes FROM voucher_base b
                      WHERE b.channel_id = v.channel_id)) AS prev_bytes
             FROM vouchers v JOIN channels c ON c.id = v.channel_id
             WHERE c.direction = ? AND v.committed_at >= ?",
        )
        .bind(dir.as_str())
        .bind(unix_ms(since))
        .fetch_all(&mut self.conn)
        .await?;
        for r in &rows {
            let id = channel_id(&r.try_get::<Vec<u8>, _>("channel_id")?)?;
            let seq = to_u64(r.try_get("seq")?, "seq")?;
            let delta = parse_amount(&r.try_get::<String, _>("delta")?)?;
            let bytes = to_u64(r.try_get("cumulative_bytes")?, "bytes")?;
            let prev = to_u64(
                r.try_get::<Option<i64>, _>("prev_bytes")?.unwrap_or(0),
                "bytes",
            )?;
            let added = bytes.checked_sub(prev).ok_or_else(|| {
                WalletError::Corrupt(format!("channel {id}: voucher {seq} lowers its bytes"))
            })?;
            let t = by_chan
                .get_mut(&id)
                .ok_or_else(|| WalletError::Corrupt(format!("voucher for channel {id}")))?;
            t.amount = t
                .amount
                .checked_add(delta)
                .ok_or(WalletError::OutOfRange("channel total"))?;
            t.bytes = t
                .bytes
                .checked_add(added)
                .ok_or(WalletError::OutOfRange("channel bytes"))?;
            t.vouchers += 1;
        }
        let sorted: BTreeMap<_, _> = by_chan
            .into_values()
            .map(|t| ((t.peer.0, t.channel_id.0), t))
            .collect();
        Ok(sorted.into_values().collect())
    }

    /// The newest `limit` committed vouchers, both directions, newest first.
    pub async fn history(&mut self, limit: u32) -> Result<Vec<HistoryEntry>, WalletError> {
        let rows = sqlx::query(
            "SELECT committed_at, direction, channel_id, peer, seq, cumulative_amount, delta,
                    cumulative_bytes, price_epoch
             FROM history ORDER BY committed_at DESC, seq DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut self.conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HistoryEntry {
                    at_unix_ms: r.try_get("committed_at")?,
                    direction: Direction::parse(&r.try_get::<String, _>("direction")?)?,
                    channel_id: channel_id(&r.try_get::<Vec<u8>, _>("channel_id")?)?,
                    peer: node_id(&r.try_get::<Vec<u8>, _>("peer")?, "peer")?,
                    seq: to_u64(r.try_get("seq")?, "seq")?,
                    cumulative_amount: parse_amount(&r.try_get::<String, _>("cumulative_amount")?)?,
                    delta: parse_amount(&r.try_get::<String, _>("delta")?)?,
                    cumulative_bytes: to_u64(r.try_get("cumulative_bytes")?, "bytes")?,
                    price_epoch: to_u32(r.try_get("price_epoch")?, "epoch")?,
                })
            })
            .collect()
    }

    /// `PRAGMA integrity_check` and `foreign_key_check`, then the wallet's own invariants:
    /// per channel the vouchers are monotonic, their deltas add up, the denormalised latest
    /// matches the newest voucher, and that voucher's signature verifies.
    pub async fn integrity_check(&mut self) -> Result<IntegrityReport, WalletError> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&mut self.conn)
            .await?;
        if rows.as_slice() != ["ok"] {
            return Err(WalletError::Integrity(rows.join("; ")));
        }
        let fk = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(&mut self.conn)
            .await?;
        if !fk.is_empty() {
            return Err(WalletError::Integrity(format!(
                "{} foreign key violations",
                fk.len()
            )));
        }
        let channels = self.channels().await?;
        let rows = sqlx::query(
            "SELECT channel_id, seq, cumulative_amount, cumulative_bytes, delta FROM vouchers
             ORDER BY channel_id, seq",
        )
        .fetch_all(&mut self.conn)
        .await?;
        // Per channel: (last seq, last amount, last bytes, sum of deltas), starting from the
        // base that older vouchers were folded into (retention).
        let mut seen: HashMap<ChannelId, (u64, Amount, u64, Amount)> = HashMap::new();
        let bases = sqlx::query(
            "SELECT channel_id, seq, cumulative_amount, cumulative_bytes FROM voucher_base",
        )
        .fetch_all(&mut self.conn)
        .await?;
        for r in &bases {
            let id = channel_id(&r.try_get::<Vec<u8>, _>("channel_id")?)?;
            let amt = parse_amount(&r.try_get::<String, _>("cumulative_amount")?)?;
            let seq = to_u64(r.try_get("seq")?, "seq")?;
            let bytes = to_u64(r.try_get("cumulative_bytes")?, "bytes")?;
            seen.insert(id, (seq, amt, bytes, amt));
        }
        for r in &rows {
            let id = channel_id(&r.try_get::<Vec<u8>, _>("channel_id")?)?;
            let seq = to_u64(r.try_get("seq")?, "seq")?;
            let amt = parse_amount(&r.try_get::<String, _>("cumulative_amount")?)?;
            let bytes = to_u64(r.try_get("cumulative_bytes")?, "bytes")?;
            let delta = parse_amount(&r.try_get::<String, _>("delta")?)?;
            let e = seen.entry(id).or_insert((0, Amount::ZERO, 0, Amount::ZERO));
            if seq <= e.0 || amt < e.1 || bytes < e.2 || amt.checked_sub(e.1) != Some(delta) {
                return Err(WalletError::Integrity(format!(
                    "channel {id}: voucher {seq} is not monotonic or its delta is wrong"
                )));
            }
            *e = (seq, amt, bytes, e.3.saturating_add(delta));
        }
        for c in &channels {
            let (seq, amt, bytes, sum) =
                seen.get(&c.id)
                    .copied()
                    .unwrap_or((0, Amount::ZERO, 0, Amount::ZERO));
            let latest = c
                .latest
                .map(|v| (v.seq, v.cumulative_amount, v.cumulative_bytes));
            let want = (seq > 0).then_some((seq, amt, bytes));
            if latest != want || sum != amt {
                return Err(WalletError::Integrity(format!(
                    "channel {}: latest voucher does not match the voucher table",
                    c.id
                )));
            }
            if c.latest.is_some_and(|v| !v.verify(&c.params.payer)) {
                return Err(WalletError::Integrity(format!(
                    "channel {}: latest voucher signature does not verify",
                    c.id
                )));
            }
        }
        Ok(IntegrityReport {
            channels: channels.len(),
            vouchers: rows.len(),
        })
    }
}

/// Unix milliseconds of `t`, clamped to the database's range (before 1970 is 0).
fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn channel_record(
    r: &sqlx::sqlite::SqliteRow,
    buckets: &mut HashMap<Vec<u8>, Vec<(Price, u64)>>,
) -> Result<ChannelRecord, WalletError> {
    let raw_id: Vec<u8> = r.try_get("id")?;
    let id = channel_id(&raw_id)?;
    let nonce: String = r.try_get("nonce")?;
    let params = ChannelParams {
        payer: node_id(&r.try_get::<Vec<u8>, _>("payer")?, "payer")?,
        payee: node_id(&r.try_get::<Vec<u8>, _>("payee")?, "payee")?,
        nonce: nonce
            .parse()
            .map_err(|_| WalletError::Corrupt(format!("nonce {nonce:?}")))?,
    };
    if params.id() != id {
        return Err(WalletError::Corrupt(format!(
            "channel {id} does not match its parameters"
        )));
    }
    let seq = to_u64(r.try_get("latest_seq")?, "seq")?;
    let latest = if seq == 0 {
        None
    } else {
        let sig: Option<Vec<u8>> = r.try_get("signature")?;
        let sig = sig
            .and_then(|s| <[u8; 64]>::try_from(s.as_slice()).ok())
            .ok_or_else(|| WalletError::Corrupt(format!("channel {id}: latest voucher missing")))?;
        let epoch: Option<i64> = r.try_get("price_epoch")?;
        Some(Voucher {
            channel_id: id,
            seq,
            cumulative_amount: parse_amount(&r.try_get::<String, _>("latest_amount")?)?,
            cumulative_bytes: to_u64(r.try_get("latest_bytes")?, "bytes")?,
            price_epoch: to_u32(epoch.unwrap_or(-1), "epoch")?,
            signature: sig,
            chain_sig: chain_sig(r.try_get("chain_sig")?, id)?,
        })
    };
    Ok(ChannelRecord {
        id,
        direction: Direction::parse(&r.try_get::<String, _>("direction")?)?,
        params,
        opened_at_ms: r.try_get("opened_at")?,
        latest,
        meter: MeterSnapshot {
            base_bytes: to_u64(r.try_get("meter_base_bytes")?, "bytes")?,
            base_amount: parse_amount(&r.try_get::<String, _>("meter_base_amount")?)?,
            buckets: buckets.remove(&raw_id).unwrap_or_default(),
        },
        checkpoint_at_ms: r.try_get("checkpoint_at")?,
    })
}

/// A stored chain signature: absent, or exactly 65 bytes (the schema's CHECK).
fn chain_sig(
    raw: Option<Vec<u8>>,
    id: ChannelId,
) -> Result<Option<crate::money::ChainSig>, WalletError> {
    raw.map(|b| {
        <[u8; 65]>::try_from(b.as_slice())
            .map(crate::money::ChainSig)
            .map_err(|_| WalletError::Corrupt(format!("channel {id}: chain signature length")))
    })
    .transpose()
}
