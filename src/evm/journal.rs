//! The ledger's durable journal (`data_dir/ledger.db`, SQLite via sqlx): signed transactions
//! before broadcast, and the on-chain channels behind our link channels. Invariants: a
//! transaction is stored before it is sent and every transaction of one intent (approve and
//! open) is stored in one SQLite transaction; a row's signed bytes never change; WAL with
//! `synchronous=FULL`, so a stored row survives a power cut.

use std::path::Path;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, U256};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::chain::Base;
use crate::identity::NodeId;
use crate::money::{Amount, ChannelId};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-ledger");

/// Journal failures.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// SQLite failed.
    #[error("ledger journal: {0}")]
    Db(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("ledger journal schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value has the wrong form.
    #[error("ledger journal corrupt: {0}")]
    Corrupt(String),
}

/// What a transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxKind {
    /// ERC-20 approve of the channels contract.
    Approve,
    /// `open`.
    Open,
    /// `topUp`.
    TopUp,
    /// `claim`.
    Claim,
    /// `requestClose`.
    Close,
    /// `withdraw`.
    Withdraw,
}

impl TxKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::Approve => "approve",
            TxKind::Open => "open",
            TxKind::TopUp => "top_up",
            TxKind::Claim => "claim",
            TxKind::Close => "close",
            TxKind::Withdraw => "withdraw",
        }
    }

    fn parse(s: &str) -> Result<TxKind, JournalError> {
        Ok(match s {
            "approve" => TxKind::Approve,
            "open" => TxKind::Open,
            "top_up" => TxKind::TopUp,
            "claim" => TxKind::Claim,
            "close" => TxKind::Close,
            "withdraw" => TxKind::Withdraw,
            other => return Err(JournalError::Corrupt(format!("tx kind {other:?}"))),
        })
    }
}

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    /// Stored; broadcast or about to be; no receipt yet.
    Pending,
    /// Mined and succeeded.
    Mined,
    /// Mined and reverted, or dropped for good.
    Failed,
}

impl TxState {
    fn as_str(self) -> &'static str {
        match self {
            TxState::Pending => "pending",
            TxState::Mined => "mined",
            TxState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<TxState, JournalError> {
        Ok(match s {
            "pending" => TxState::Pending,
            "mined" => TxState::Mined,
            "failed" => TxState::Failed,
            other => return Err(JournalError::Corrupt(format!("tx state {other:?}"))),
        })
    }
}

/// One journaled transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalTx {
    /// Its hash.
    pub hash: B256,
    /// Its account nonce.
    pub nonce: u64,
    /// What it does.
    pub kind: TxKind,
    /// The neighbour it concerns.
    pub peer: Option<NodeId>,
    /// The off-chain channel an approve or open is for (`None` in rows from before exit
    /// channels were backed: the link channel to `peer`).
    pub channel: Option<ChannelId>,
    /// The on-chain channel it concerns (none for approve and open).
    pub onchain: Option<B256>,
    /// open/top_up: amount locked; claim: cumulative amount claimed (token base units).
    pub amount: Option<U256>,
    /// The signed bytes.
    pub raw: Vec<u8>,
    /// Where it is.
    pub state: TxState,
    /// Gas used, once mined.
    pub gas_used: Option<u64>,
}

/// Which side of an on-chain channel we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We pay.
    Outgoing,
    /// We are paid.
    Incoming,
}

/// Lifecycle of an on-chain channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChanState {
    /// Open: the payee credits against it.
    Open,
    /// `requestClose` happened: it may be withdrawn at `close_at`.
    Closing,
    /// Withdrawn (deleted on chain).
    Closed,
}

/// An on-chain channel behind one of our link channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainChannelRow {
    /// Its on-chain id.
    pub onchain: B256,
    /// Our side.
    pub direction: Direction,
    /// The neighbour.
    pub peer: NodeId,
    /// The off-chain channel it backs.
    pub channel_id: ChannelId,
    /// Payer's chain address.
    pub payer: Address,
    /// Payee's chain address.
    pub payee: Address,
    /// Where the chain starts counting.
    pub base: Base,
    /// Locked (token base units), as last read or set.
    pub deposit: U256,
    /// Claimed so far (token base units), as last read.
    pub claimed: U256,
    /// When a close takes effect (chain time, seconds).
    pub close_at: Option<u64>,
    /// Lifecycle.
    pub state: ChanState,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn corrupt(what: impl Into<String>) -> JournalError {
    JournalError::Corrupt(what.into())
}

fn b256(b: &[u8]) -> Result<B256, JournalError> {
    B256::try_from(b).map_err(|_| corrupt("hash length"))
}

fn u256(s: &str) -> Result<U256, JournalError> {
    U256::from_str(s).map_err(|_| corrupt(format!("amount {s:?}")))
}

fn node(b: &[u8]) -> Result<NodeId, JournalError> {
    <[u8; 32]>::try_from(b)
        .map(NodeId)
        .map_err(|_| corrupt("node id length"))
}

fn channel_id(b: &[u8]) -> Result<ChannelId, JournalError> {
    <[u8; 32]>::try_from(b)
        .map(ChannelId)
        .map_err(|_| corrupt("channel id length"))
}

fn i64_of(v: u64) -> Result<i64, JournalError> {
    i64::try_from(v).map_err(|_| corrupt("integer above i64"))
}

fn u64_of(v: i64) -> Result<u64, JournalError> {
    u64::try_from(v).map_err(|_| corrupt("negative integer"))
}

/// The journal.
#[derive(Clone, Debug)]
pub struct Journal {
    pool: SqlitePool,
}

impl Journal {
    /// Open (or create) `path`, with migrations applied.
    pub async fn open(path: &Path) -> Result<Journal, JournalError> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Journal { pool })
    }

    /// Store signed transactions (one intent), all or none, before any is broadcast.
    pub async fn record(&self, txs: &[JournalTx]) -> Result<(), JournalError> {
        let mut t = self.pool.begin().await?;
        for tx in txs {
            sqlx::query(
                "INSERT INTO txs (hash, nonce, kind, peer, channel_id, onchain_id, amount, raw,
                                  state, gas_used, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', NULL, ?)",
            )
            .bind(tx.hash.as_slice().to_vec())
            .bind(i64_of(tx.nonce)?)
            .bind(tx.kind.as_str())
            .bind(tx.peer.map(|p| p.0.to_vec()))
            .bind(tx.channel.map(|c| c.0.to_vec()))
            .bind(tx.onchain.map(|o| o.as_slice().to_vec()))
            .bind(tx.amount.map(|a| a.to_string()))
            .bind(tx.raw.clone())
            .bind(now_ms())
            .execute(&mut *t)
            .await?;
        }
        t.commit().await?;
        Ok(())
    }

    /// Record a transaction's outcome.
    pub async fn set_state(
        &self,
        hash: B256,
        state: TxState,
        gas_used: Option<u64>,
    ) -> Result<(), JournalError> {
        sqlx::query("UPDATE txs SET state = ?, gas_used = ? WHERE hash = ?")
            .bind(state.as_str())
            .bind(gas_used.map(i64_of).transpose()?)
            .bind(hash.as_slice().to_vec())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Transactions in `state`, by nonce.
    pub async fn txs(&self, state: TxState) -> Result<Vec<JournalTx>, JournalError> {
        let rows = sqlx::query(
            "SELECT hash, nonce, kind, peer, channel_id, onchain_id, amount, raw, state, gas_used
             FROM txs WHERE state = ? ORDER BY nonce",
        )
        .bind(state.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let peer: Option<Vec<u8>> = r.try_get("peer")?;
                let channel: Option<Vec<u8>> = r.try_get("channel_id")?;
                let onchain: Option<Vec<u8>> = r.try_get("onchain_id")?;
                let amount: Option<String> = r.try_get("amount")?;
                let gas: Option<i64> = r.try_get("gas_used")?;
                Ok(JournalTx {
                    hash: b256(&r.try_get::<Vec<u8>, _>("hash")?)?,
                    nonce: u64_of(r.try_get("nonce")?)?,
                    kind: TxKind::parse(&r.try_get::<String, _>("kind")?)?,
                    peer: peer.as_deref().map(node).transpose()?,
                    channel: channel.as_deref().map(channel_id).transpose()?,
                    onchain: onchain.as_deref().map(b256).transpose()?,
                    amount: amount.as_deref().map(u256).transpose()?,
                    raw: r.try_get("raw")?,
                    state: TxState::parse(&r.try_get::<String, _>("state")?)?,
                    gas_used: gas.map(u64_of).transpose()?,
                })
            })
            .collect()
    }

    /// A value learned from the chain (`meta` table).
    pub async fn meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Remember a value learned from the chain.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), JournalError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The highest nonce journaled (the next transaction uses at least one more).
    pub async fn max_nonce(&self) -> Result<Option<u64>, JournalError> {
        let n: Option<i64> = sqlx::query_scalar("SELECT max(nonce) FROM txs")
            .fetch_one(&self.pool)
            .await?;
        n.map(u64_of).transpose()
    }

    /// Insert or update an on-chain channel.
    pub async fn put_channel(&self, c: &ChainChannelRow) -> Result<(), JournalError> {
        sqlx::query(
            "INSERT INTO chain_channels (onchain_id, direction, peer, channel_id, payer, payee,
                 base_seq, base_amount, base_bytes, deposit, claimed, close_at, state, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (onchain_id) DO UPDATE SET deposit = excluded.deposit,
                 claimed = excluded.claimed, close_at = excluded.close_at,
                 state = excluded.state, updated_at = excluded.updated_at",
        )
        .bind(c.onchain.as_slice().to_vec())
        .bind(match c.direction {
            Direction::Outgoing => "outgoing",
            Direction::Incoming => "incoming",
        })
        .bind(c.peer.0.to_vec())
        .bind(c.channel_id.0.to_vec())
        .bind(c.payer.as_slice().to_vec())
        .bind(c.payee.as_slice().to_vec())
        .bind(i64_of(c.base.seq)?)
        .bind(c.base.amount.to_db_text())
        .bind(i64_of(c.base.bytes)?)
        .bind(c.deposit.to_string())
        .bind(c.claimed.to_string())
        .bind(c.close_at.map(i64_of).transpose()?)
        .bind(match c.state {
            ChanState::Open => "open",
            ChanState::Closing => "closing",
            ChanState::Closed => "closed",
        })
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every on-chain channel, closed ones included (a new channel's base starts above
    /// what the closed ones paid).
    pub async fn channels(&self) -> Result<Vec<ChainChannelRow>, JournalError> {
        let rows = sqlx::query(
            "SELECT onchain_id, direction, peer, channel_id, payer, payee, base_seq, base_amount,
                    base_bytes, deposit, claimed, close_at, state
             FROM chain_channels",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let addr = |k: &str| -> Result<Address, JournalError> {
                    let b: Vec<u8> = r.try_get(k)?;
                    Address::try_from(b.as_slice()).map_err(|_| corrupt("address length"))
                };
                let close_at: Option<i64> = r.try_get("close_at")?;
                let cid: Vec<u8> = r.try_get("channel_id")?;
                Ok(ChainChannelRow {
                    onchain: b256(&r.try_get::<Vec<u8>, _>("onchain_id")?)?,
                    direction: match r.try_get::<String, _>("direction")?.as_str() {
                        "outgoing" => Direction::Outgoing,
                        _ => Direction::Incoming,
                    },
                    peer: node(&r.try_get::<Vec<u8>, _>("peer")?)?,
                    channel_id: channel_id(&cid)?,
                    payer: addr("payer")?,
                    payee: addr("payee")?,
                    base: Base {
                        seq: u64_of(r.try_get("base_seq")?)?,
                        amount: Amount::from_db_text(&r.try_get::<String, _>("base_amount")?)
                            .map_err(|_| corrupt("base amount"))?,
                        bytes: u64_of(r.try_get("base_bytes")?)?,
                    },
                    deposit: u256(&r.try_get::<String, _>("deposit")?)?,
                    claimed: u256(&r.try_get::<String, _>("claimed")?)?,
                    close_at: close_at.map(u64_of).transpose()?,
                    state: match r.try_get::<String, _>("state")?.as_str() {
                        "open" => ChanState::Open,
                        "closing" => ChanState::Closing,
                        _ => ChanState::Closed,
                    },
                })
            })
            .collect()
    }
}
