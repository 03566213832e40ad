//! The wallet: durable money state in SQLite through sqlx (DESIGN.md §5). Owns the database
//! file, its schema (embedded migrations) and the only connection that writes it. Invariants:
//! WAL with `synchronous=FULL`, checked on every open; one writer connection; amounts are exact
//! TEXT, never REAL; a voucher is committed (durable) before the caller sends it (outgoing) or
//! credits it (incoming); per channel the committed seq and totals never decrease (checked here
//! and by SQL triggers); on open all state is rebuilt from the file, so nothing is forgiven.
//!
//! Until a ledger settles vouchers, balance = received - paid, and may go below zero down to
//! minus the configured spend limit. The file also holds the node's price epoch, which only
//! increases (each bump is its own durable transaction), so an epoch never repeats.

mod commit;
mod read_only;
mod report;
mod retention;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hostile;
#[cfg(test)]
mod tests_report;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};

use crate::identity::NodeId;
use crate::money::{Amount, ChannelId, ChannelParams, SignedAmount};

pub use commit::CommitOutcome;
pub use report::{Balance, ChannelRecord, HistoryEntry, IntegrityReport, PeerTotals};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// `node_state` key of the price epoch.
const PRICE_EPOCH_KEY: &str = "price_epoch";

/// Wallet failures.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The database reported an error.
    #[error("wallet database: {0}")]
    Db(#[from] sqlx::Error),
    /// Applying the embedded migrations failed.
    #[error("wallet migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Creating the database file failed.
    #[error("wallet file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The connection is not in the durability mode we require.
    #[error("wallet pragma {name} is {actual}, expected {expected}")]
    Pragma {
        /// The pragma.
        name: &'static str,
        /// What it is.
        actual: String,
        /// What it must be.
        expected: &'static str,
    },
    /// No channel with this id was registered.
    #[error("unknown channel {0}")]
    UnknownChannel(ChannelId),
    /// The channel exists with another direction or other parameters.
    #[error("channel {0} is registered with different parameters or direction")]
    ChannelMismatch(ChannelId),
    /// The voucher would move the channel backwards or contradicts a stored one.
    #[error("channel {channel}: voucher seq {seq} is not monotonic with the stored state")]
    NonMonotonic {
        /// The channel.
        channel: ChannelId,
        /// The refused voucher's seq.
        seq: u64,
    },
    /// Paying this voucher would take the balance below minus the spend limit.
    #[error("spend limit: balance would be {balance_after}, limit is -{limit}")]
    SpendLimit {
        /// Balance after the voucher.
        balance_after: SignedAmount,
        /// The configured spend limit.
        limit: Amount,
    },
    /// A value does not fit the database column.
    #[error("{0} out of range for the wallet")]
    OutOfRange(&'static str),
    /// Stored data does not parse: the file was altered or damaged.
    #[error("wallet data corrupt: {0}")]
    Corrupt(String),
    /// The wallet is not open: its storage failed and is being retried (`state: error`).
    #[error("wallet unavailable ({0})")]
    Unavailable(String),
    /// The file's schema is not this binary's; a read-only opener does not migrate it.
    #[error("wallet schema is at migration {file} but this bitcloud expects {binary}: {hint}")]
    Schema {
        /// The newest migration applied to the file (0: none).
        file: i64,
        /// The newest migration this binary has.
        binary: i64,
        /// What to do about it.
        hint: &'static str,
    },
    /// `PRAGMA integrity_check` or a wallet invariant check failed.
    #[error("wallet integrity check failed: {0}")]
    Integrity(String),
}

/// Which way money flows on a channel, seen from this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// We are the payer.
    Outgoing,
    /// We are the payee.
    Incoming,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outgoing => "outgoing",
            Direction::Incoming => "incoming",
        }
    }

    fn parse(s: &str) -> Result<Self, WalletError> {
        match s {
            "outgoing" => Ok(Direction::Outgoing),
            "incoming" => Ok(Direction::Incoming),
            other => Err(WalletError::Corrupt(format!("direction {other:?}"))),
        }
    }
}

/// Wallet policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalletConfig {
    /// How far below zero the balance may go (IOU credit we extend to ourselves).
    pub spend_limit: Amount,
}

impl Default for WalletConfig {
    fn default() -> Self {
        WalletConfig {
            spend_limit: Amount::from_cc(1),
        }
    }
}

/// In-memory totals, rebuilt from the file on open and updated after each commit. Valid
/// because this wallet's connection is the only writer.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    received: Amount,
    paid: Amount,
}

/// The open wallet: one SQLite connection, the only writer.
pub struct Wallet {
    conn: SqliteConnection,
    cfg: WalletConfig,
    totals: Totals,
    /// When each channel's vouchers were last pruned (Unix ms; `retention`).
    pruned_at: std::collections::HashMap<ChannelId, i64>,
}

impl Wallet {
    /// Open (creating if needed, mode 0600) the wallet at `path` with the default config.
    pub async fn open(path: &Path) -> Result<Wallet, WalletError> {
        Self::open_with(path, WalletConfig::default()).await
    }

    /// Open with a config: WAL, `synchronous=FULL`, foreign keys, migrations applied, totals
    /// rebuilt from what is stored.
    pub async fn open_with(path: &Path, cfg: WalletConfig) -> Result<Wallet, WalletError> {
        create_private(path)?;
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let mut conn = opts.connect().await?;
        // `run_direct` on the connection itself: `run` goes through `Acquire`, whose future is
        // not `Send` for every lifetime, and the wallet actor reopens the file in a spawned task.
        MIGRATOR.run_direct(None, &mut conn, false).await?;
        let mut w = Wallet {
            conn,
            cfg,
            totals: Totals::default(),
            pruned_at: std::collections::HashMap::new(),
        };
        w.check_durability().await?;
        w.totals = w.load_totals().await?;
        Ok(w)
    }

    /// Close the connection cleanly (checkpoints the WAL).
    pub async fn close(self) -> Result<(), WalletError> {
        self.conn.close().await?;
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &WalletConfig {
        &self.cfg
    }

    /// Current `(journal_mode, synchronous)` of the connection, e.g. `("wal", 2)`.
    pub async fn durability(&mut self) -> Result<(String, i64), WalletError> {
        let jm: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut self.conn)
            .await?;
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut self.conn)
            .await?;
        Ok((jm.to_ascii_lowercase(), sync))
    }

    async fn check_durability(&mut self) -> Result<(), WalletError> {
        let (jm, sync) = self.durability().await?;
        if jm != "wal" {
            return Err(WalletError::Pragma {
                name: "journal_mode",
                actual: jm,
                expected: "wal",
            });
        }
        // 2 = FULL: the WAL is fsynced at every commit, so a returned commit survives power loss.
        if sync != 2 {
            return Err(WalletError::Pragma {
                name: "synchronous",
                actual: sync.to_string(),
                expected: "2 (FULL)",
            });
        }
        Ok(())
    }

    async fn load_totals(&mut self) -> Result<Totals, WalletError> {
        let rows = sqlx::query("SELECT direction, latest_amount FROM channels")
            .fetch_all(&mut self.conn)
            .await?;
        let mut t = Totals::default();
        for r in rows {
            let amt = parse_amount(&r.try_get::<String, _>("latest_amount")?)?;
            let slot = match Direction::parse(&r.try_get::<String, _>("direction")?)? {
                Direction::Incoming => &mut t.received,
                Direction::Outgoing => &mut t.paid,
            };
            *slot = slot
                .checked_add(amt)
                .ok_or(WalletError::OutOfRange("total"))?;
        }
        Ok(t)
    }

    /// Register a channel (idempotent). Fails if the id is already registered with another
    /// direction or other parameters.
    pub async fn ensure_channel(
        &mut self,
        params: &ChannelParams,
        direction: Direction,
    ) -> Result<ChannelId, WalletError> {
        let id = params.id();
        sqlx::query(
            "INSERT INTO channels (id, direction, payer, payee, nonce, opened_at)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.0.to_vec())
        .bind(direction.as_str())
        .bind(params.payer.0.to_vec())
        .bind(params.payee.0.to_vec())
        .bind(params.nonce.to_string())
        .bind(now_ms())
        .execute(&mut self.conn)
        .await?;
        let rec = self
            .channel(&id)
            .await?
            .ok_or(WalletError::UnknownChannel(id))?;
        if rec.direction != direction || rec.params != *params {
            return Err(WalletError::ChannelMismatch(id));
        }
        Ok(id)
    }

    /// How much more we may pay in total before hitting the spend limit.
    pub fn spend_headroom(&self) -> Amount {
        let floor = SignedAmount::from_amount(self.cfg.spend_limit)
            .map_or(i128::MIN, |l| l.0.saturating_neg());
        let bal = self.balance_now();
        SignedAmount(bal.0.saturating_sub(floor)).positive_part()
    }

    /// The spend cap to give a channel's `PayerChannel::set_spend_cap`: what it has paid plus
    /// the wallet's headroom.
    pub async fn spend_cap(&mut self, id: &ChannelId) -> Result<Amount, WalletError> {
        let rec = self
            .channel(id)
            .await?
            .ok_or(WalletError::UnknownChannel(*id))?;
        Ok(rec.paid().saturating_add(self.spend_headroom()))
    }

    /// The node's current price epoch: the last value [`Wallet::bump_price_epoch`] returned,
    /// or 0 if it was never bumped.
    pub async fn price_epoch(&mut self) -> Result<u32, WalletError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT value FROM node_state WHERE key = ?")
            .bind(PRICE_EPOCH_KEY)
            .fetch_optional(&mut self.conn)
            .await?;
        v.map_or(Ok(0), |v| to_u32(v, "price epoch"))
    }

    /// Move to a new price epoch (old + 1) in one durable `BEGIN IMMEDIATE` transaction and
    /// return it. Call at every start and every fee change: an epoch is never handed out twice,
    /// even across crashes, because it is on disk before it is returned.
    pub async fn bump_price_epoch(&mut self) -> Result<u32, WalletError> {
        let mut tx = self.conn.begin_with("BEGIN IMMEDIATE").await?;
        let old: Option<i64> = sqlx::query_scalar("SELECT value FROM node_state WHERE key = ?")
            .bind(PRICE_EPOCH_KEY)
            .fetch_optional(&mut *tx)
            .await?;
        let old = old.map_or(Ok(0), |v| to_u32(v, "price epoch"))?;
        let new = old
            .checked_add(1)
            .ok_or(WalletError::OutOfRange("price epoch"))?;
        sqlx::query(
            "INSERT INTO node_state (key, value) VALUES (?, ?)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(PRICE_EPOCH_KEY)
        .bind(i64::from(new))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new)
    }

    /// received - paid from the in-memory totals (saturating at the i128 range).
    fn balance_now(&self) -> SignedAmount {
        signed(self.totals.received, self.totals.paid)
    }
}

/// `a - b` as a signed amount, saturating (amounts above i128::MAX are not reachable in
/// practice: that is 1.7e29 CC).
fn signed(a: Amount, b: Amount) -> SignedAmount {
    let a = i128::try_from(a.units()).unwrap_or(i128::MAX);
    let b = i128::try_from(b.units()).unwrap_or(i128::MAX);
    SignedAmount(a.saturating_sub(b))
}

/// Create the database file with mode 0600 if it does not exist (SQLite then creates the
/// -wal and -shm files with the same mode).
fn create_private(path: &Path) -> Result<(), WalletError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(WalletError::File {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Milliseconds since the Unix epoch (wall clock: the wallet records when things happened).
fn now_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn parse_amount(s: &str) -> Result<Amount, WalletError> {
    Amount::from_db_text(s).map_err(|e| WalletError::Corrupt(format!("amount {s:?}: {e}")))
}

fn to_i64(x: u64, what: &'static str) -> Result<i64, WalletError> {
    i64::try_from(x).map_err(|_| WalletError::OutOfRange(what))
}

fn to_u64(x: i64, what: &str) -> Result<u64, WalletError> {
    u64::try_from(x).map_err(|_| WalletError::Corrupt(format!("{what} {x}")))
}

fn to_u32(x: i64, what: &str) -> Result<u32, WalletError> {
    u32::try_from(x).map_err(|_| WalletError::Corrupt(format!("{what} {x}")))
}

fn node_id(b: &[u8], what: &str) -> Result<NodeId, WalletError> {
    <[u8; 32]>::try_from(b)
        .map(NodeId)
        .map_err(|_| WalletError::Corrupt(format!("{what} length {}", b.len())))
}

fn channel_id(b: &[u8]) -> Result<ChannelId, WalletError> {
    <[u8; 32]>::try_from(b)
        .map(ChannelId)
        .map_err(|_| WalletError::Corrupt(format!("channel id length {}", b.len())))
}
