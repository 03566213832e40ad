//! Read-only opening of the wallet, for readers beside no writer (the CLI's fallback, the
//! daemon while its wallet cannot store). Invariants: the connection is
//! `SQLITE_OPEN_READONLY` (or `immutable` on a read-only file system whose WAL is empty), so
//! it never takes the write lock, never migrates and never changes a byte of the file; a
//! schema other than this binary's is refused, not migrated.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};

use super::{MIGRATOR, Totals, Wallet, WalletConfig, WalletError};

impl Wallet {
    /// Open the wallet at `path` read-only, for a reader while no daemon runs (the CLI's
    /// fallback): the connection is `SQLITE_OPEN_READONLY`, so it can never take the write
    /// lock, run a migration or change a byte of the database file; a missing file is an
    /// error, not created. A file whose schema is older (or newer) than this binary's is
    /// refused with [`WalletError::Schema`] rather than migrated: only the daemon migrates.
    pub async fn open_read_only(path: &Path, cfg: WalletConfig) -> Result<Wallet, WalletError> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(5));
        // On a read-only file system with everything in the main file, read it as immutable
        // at once: a WAL reader there has no -shm to use and fails.
        if wal_is_empty(path) && read_only_fs(path) {
            return Self::open_reader(opts.immutable(true), cfg).await;
        }
        match Self::open_reader(opts.clone(), cfg).await {
            // A read-only file system with no -shm: SQLite cannot set up WAL reading (it
            // fails at the first statement). With no (or an empty) -wal, the main file is the
            // whole state and nobody can change it now, so it is read as immutable (no
            // locks, no -shm).
            Err(e @ WalletError::Db(_)) if wal_is_empty(path) => {
                Self::open_reader(opts.immutable(true), cfg)
                    .await
                    .map_err(|_| e)
            }
            r => r,
        }
    }

    async fn open_reader(
        opts: SqliteConnectOptions,
        cfg: WalletConfig,
    ) -> Result<Wallet, WalletError> {
        let mut conn = opts.connect().await?;
        check_schema(&mut conn).await?;
        let mut w = Wallet {
            conn,
            cfg,
            totals: Totals::default(),
            pruned_at: std::collections::HashMap::new(),
        };
        w.totals = w.load_totals().await?;
        Ok(w)
    }
}

/// True if the file system holding `path` is mounted read-only.
fn read_only_fs(path: &Path) -> bool {
    let dir = path.parent().unwrap_or(Path::new("."));
    nix::sys::statvfs::statvfs(dir)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// True if `path`'s write-ahead log is absent or empty (everything is in the main file).
fn wal_is_empty(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(PathBuf::from(wal)).map_or(true, |m| m.len() == 0)
}

/// Refuse a file whose applied migrations are not exactly this binary's (read-only openers).
async fn check_schema(conn: &mut SqliteConnection) -> Result<(), WalletError> {
    let binary = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let has_table: bool = sqlx::query_scalar(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut *conn)
    .await?;
    let applied: Vec<i64> = if has_table {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut *conn)
            .await?
    } else {
        Vec::new()
    };
    let file = applied.iter().copied().max().unwrap_or(0);
    let expected: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    if applied == expected {
        return Ok(());
    }
    let hint = if file < binary {
        "older than this binary; start the daemon once (`bitcloud up`) to migrate it, a \
         read-only reader never does"
    } else {
        "written by a newer bitcloud; use that version"
    };
    Err(WalletError::Schema { file, binary, hint })
}
