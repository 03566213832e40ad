//! The wallet actor: the daemon's only writer of the SQLite wallet. It performs the node's
//! durable steps in the order the node produced them and reports each commit back, so the
//! event loop never waits on an fsync and the node still sends a voucher only after it is on
//! disk (and credits one only after that). It also answers the `wallet` CLI queries, merging
//! what is stored with the node's live channel state.
//!
//! Storage failures (disk full, read-only, I/O errors) never stop the daemon: the actor closes
//! the connection, reports the condition to the node ([`WalletDone::Health`]), fails every
//! commit until it works again (nothing is sent or credited that is not on disk), retries
//! every [`RETRY`] by reopening the file and making a fresh price epoch durable, and then
//! reports `ok` and the epoch. Reopening rebuilds every total from the file, so a commit whose
//! outcome was uncertain is counted exactly once (docs/wallet-failure.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::api::wallet::query;
use crate::money::Amount;
use crate::node::{ChannelView, WalletDone, WalletHealth, WalletOp, WalletState};
use crate::wallet::{ChannelRecord, Direction, Wallet, WalletConfig, WalletError};

/// How often a failed wallet is tried again.
pub const RETRY: Duration = Duration::from_secs(2);

/// A request to the actor.
pub enum Req {
    /// A durable step from the node.
    Op(WalletOp),
    /// Persist and return the next price epoch.
    BumpEpoch(oneshot::Sender<Result<u32, String>>),
    /// A `wallet` CLI query, with the node's live channels.
    Query {
        /// The request object (`what`, `since_secs`, `limit`).
        body: Value,
        /// Live channel state from the node.
        live: Vec<ChannelView>,
        /// Where the answer goes.
        reply: oneshot::Sender<Value>,
    },
    /// Answer once everything before it is done.
    Flush(oneshot::Sender<()>),
}

/// What the daemon starts from: the wallet (or none, if it cannot store now), the price
/// epoch, the stored channels and the spend headroom.
pub struct Opened {
    /// The writer, if the wallet works.
    pub wallet: Option<Wallet>,
    /// A fresh durable epoch, or (degraded) the last one stored: paid relaying is paused
    /// until the actor makes a fresh one durable.
    pub epoch: u32,
    /// The stored channels, to restore.
    pub channels: Vec<ChannelRecord>,
    /// How much more we may pay.
    pub headroom: Amount,
    /// The wallet's condition.
    pub health: WalletHealth,
}

/// Open the wallet at start. A storage failure (disk full, read-only) does not stop the
/// daemon: the state is read read-only and the node starts degraded (the actor retries).
/// Only a wallet that cannot be read at all, or is damaged, is an error.
pub async fn open(path: &Path, cfg: WalletConfig) -> anyhow::Result<Opened> {
    use anyhow::Context;
    let dir = path.parent().unwrap_or(Path::new("."));
    let failure = match read_only_fs(path) {
        Some(e) => e,
        None => match Wallet::open_with(path, cfg).await {
            Ok(mut w) => match w.bump_price_epoch().await {
                Ok(epoch) => {
                    let channels = w.channels().await.context("reading wallet channels")?;
                    return Ok(Opened {
                        headroom: w.spend_headroom(),
                        wallet: Some(w),
                        epoch,
                        channels,
                        health: WalletHealth::default(),
                    });
                }
                Err(e) => {
                    let _ = w.close().await;
                    e
                }
            },
            Err(e) => e,
        },
    };
    let Some(state) = storage_state(&failure, dir) else {
        return Err(failure).with_context(|| format!("opening the wallet {}", path.display()));
    };
    let health = degraded(state, &failure);
    tracing::error!(
        state = state.as_str(),
        "wallet {}: {failure}; starting degraded: paid relaying and paying pause until it can store again",
        path.display()
    );
    if !path.exists() {
        // A node that never ran: nothing to restore.
        return Ok(Opened {
            wallet: None,
            epoch: 0,
            channels: Vec::new(),
            headroom: cfg.spend_limit,
            health,
        });
    }
    let mut r = Wallet::open_read_only(path, cfg)
        .await
        .with_context(|| format!("reading the wallet {} (after: {failure})", path.display()))?;
    let opened = Opened {
        epoch: r.price_epoch().await?,
        channels: r.channels().await.context("reading wallet channels")?,
        headroom: r.spend_headroom(),
        wallet: None,
        health,
    };
    let _ = r.close().await;
    Ok(opened)
}

/// The actor's state.
struct Actor {
    w: Option<Wallet>,
    path: PathBuf,
    cfg: WalletConfig,
    health: WalletHealth,
    /// Last known spend headroom, reported with failed commits.
    headroom: Amount,
    done: mpsc::UnboundedSender<WalletDone>,
}

/// Run until every sender is dropped, then close the wallet cleanly. `opened` is what
/// [`open`] returned (its channels already handed to the node).
pub async fn run(
    opened: Opened,
    path: PathBuf,
    cfg: WalletConfig,
    mut rx: mpsc::UnboundedReceiver<Req>,
    done: mpsc::UnboundedSender<WalletDone>,
) {
    let mut a = Actor {
        w: opened.wallet,
        path,
        cfg,
        headroom: opened.headroom,
        health: opened.health,
        done,
    };
    if !a.health.ok() {
        let _ = a.done.send(WalletDone::Health(a.health.clone()));
    }
    let mut retry = tokio::time::interval(RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            req = rx.recv() => match req {
                Some(req) => a.handle(req).await,
                None => break,
            },
            _ = retry.tick(), if a.w.is_none() => a.recover().await,
        }
    }
    if let Some(w) = a.w.take()
        && let Err(e) = w.close().await
    {
        tracing::warn!("closing the wallet: {e}");
    }
}

impl Actor {
    async fn handle(&mut self, req: Req) {
        match req {
            Req::Op(op) => self.apply(op).await,
            Req::BumpEpoch(reply) => {
                let r = match self.w.as_mut() {
                    Some(w) => w.bump_price_epoch().await,
                    None => Err(WalletError::Unavailable(self.describe())),
                };
                let r = self.check(r).await.map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            Req::Query { body, live, reply } => {
                let _ = reply.send(self.query(body, live).await);
            }
            Req::Flush(reply) => {
                let _ = reply.send(());
            }
        }
    }

    /// A wallet query: from the writer, or while it is down from a read-only look at the
    /// file; every answer says the wallet's condition (`wallet`).
    async fn query(&mut self, body: Value, live: Vec<ChannelView>) -> Value {
        let r = match self.w.as_mut() {
            Some(w) => query(w, &body, &live).await,
            None => match open_reader(self.path.clone(), self.cfg).await {
                Ok(mut r) => {
                    let v = query(&mut r, &body, &live).await;
                    let _ = r.close().await;
                    v
                }
                Err(e) => Err(e),
            },
        };
        let mut v = match r {
            Ok(v) => v,
            Err(e) => json!({ "error": format!("wallet: {e}") }),
        };
        if !self.health.ok()
            && let Some(o) = v.as_object_mut()
            && !o.contains_key("error")
        {
            // Loud in the human output too: the CLI prints this line first.
            o.insert(
                "warning".into(),
                json!(format!("wallet {}", self.describe())),
            );
        }
        if let Some(o) = v.as_object_mut() {
            o.insert("wallet".into(), json!(self.health));
        }
        v
    }

    /// `disk_full: <error>`.
    fn describe(&self) -> String {
        let err = self.health.error.as_deref().unwrap_or("");
        format!("{}: {err}", self.health.state.as_str())
    }

    /// If `r` failed for the storage: which way, and the message.
    fn failure<T>(&self, r: &Result<T, WalletError>) -> Option<(WalletState, String)> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let e = r.as_ref().err()?;
        storage_state(e, dir).map(|s| (s, e.to_string()))
    }

    /// Pass `r` through; a storage failure closes the wallet and reports the condition.
    async fn check<T>(&mut self, r: Result<T, WalletError>) -> Result<T, WalletError> {
        if let Some((state, msg)) = self.failure(&r) {
            self.fail(state, msg).await;
        }
        r
    }

    async fn fail(&mut self, state: WalletState, e: String) {
        tracing::error!(
            state = state.as_str(),
            "wallet {}: {e}; paid relaying and paying pause until it can store again",
            self.path.display()
        );
        if let Some(w) = self.w.take() {
            // Best effort: a full disk may fail the final checkpoint; the WAL keeps it.
            let _ = w.close().await;
        }
        let changed = self.health.state != state;
        self.health = WalletHealth {
            since_unix_ms: if changed {
                now_ms()
            } else {
                self.health.since_unix_ms
            },
            ..degraded(state, &e)
        };
        let _ = self.done.send(WalletDone::Health(self.health.clone()));
    }

    /// Try the wallet again: reopen it and make a fresh price epoch durable (the probe that a
    /// write works, and the epoch the node was running without).
    async fn recover(&mut self) {
        // Not even tried on a read-only file system: a writer cannot open there, and the
        // attempt would only make SQLite fall back to a read-only handle.
        let r = match read_only_fs(&self.path) {
            Some(e) => Err(e),
            None => open_and_bump(self.path.clone(), self.cfg).await,
        };
        match r {
            Ok((w, epoch)) => {
                tracing::info!(
                    epoch,
                    "wallet {} stores again; paid relaying and paying resume",
                    self.path.display()
                );
                self.headroom = w.spend_headroom();
                self.w = Some(w);
                self.health = WalletHealth {
                    since_unix_ms: now_ms(),
                    ..WalletHealth::default()
                };
                let _ = self.done.send(WalletDone::Health(self.health.clone()));
                let _ = self.done.send(WalletDone::Epoch(epoch));
            }
            Err(e) => {
                let dir = self.path.parent().unwrap_or(Path::new("."));
                tracing::debug!("wallet {} still cannot store: {e}", self.path.display());
                let state = storage_state(&e, dir).unwrap_or(WalletState::Error);
                let msg = e.to_string();
                if state != self.health.state || Some(&msg) != self.health.error.as_ref() {
                    self.fail(state, msg).await;
                }
            }
        }
    }

    async fn apply(&mut self, op: WalletOp) {
        let Some(w) = self.w.as_mut() else {
            // Down: commits fail (nothing unstored is sent or credited); registrations and
            // checkpoints are redone by the node once the wallet is back.
            match op {
                WalletOp::CommitOutgoing(voucher) | WalletOp::AdoptOutgoing(voucher) => {
                    let _ = self.done.send(WalletDone::Outgoing {
                        voucher,
                        ok: false,
                        headroom: self.headroom,
                    });
                }
                WalletOp::CommitIncoming(voucher) => {
                    let _ = self.done.send(WalletDone::Incoming { voucher, ok: false });
                }
                _ => {}
            }
            return;
        };
        match op {
            WalletOp::EnsureOutgoing(p) => {
                let r = w.ensure_channel(&p, Direction::Outgoing).await;
                if let Err(e) = self.check(r).await {
                    tracing::error!(payee = %p.payee, "registering outgoing channel: {e}");
                }
            }
            WalletOp::EnsureIncoming(p) => {
                let r = w.ensure_channel(&p, Direction::Incoming).await;
                if let Err(e) = self.check(r).await {
                    tracing::error!(payer = %p.payer, "registering incoming channel: {e}");
                }
            }
            WalletOp::CommitOutgoing(v) | WalletOp::AdoptOutgoing(v) => {
                let adopt = matches!(op, WalletOp::AdoptOutgoing(_));
                let r = if adopt {
                    w.adopt_outgoing_voucher(&v).await
                } else {
                    w.commit_outgoing_voucher(&v).await
                };
                self.headroom = w.spend_headroom();
                let r = self.check(r).await;
                if let Err(e) = &r {
                    tracing::warn!(channel = %v.channel_id, seq = v.seq, "outgoing voucher not committed: {e}");
                }
                let _ = self.done.send(WalletDone::Outgoing {
                    voucher: v,
                    ok: r.is_ok(),
                    headroom: self.headroom,
                });
            }
            WalletOp::CommitIncoming(v) => {
                let r = w.commit_incoming_voucher(&v).await;
                let r = self.check(r).await;
                if let Err(e) = &r {
                    tracing::warn!(channel = %v.channel_id, seq = v.seq, "incoming voucher not committed: {e}");
                }
                let _ = self.done.send(WalletDone::Incoming {
                    voucher: v,
                    ok: r.is_ok(),
                });
            }
            WalletOp::Checkpoint(snaps) => {
                // No longer silent: a failing checkpoint marks the wallet down like a commit.
                let r = w.checkpoint_meters(&snaps).await;
                if let Err(e) = self.check(r).await {
                    tracing::warn!("meter checkpoint: {e}");
                }
            }
        }
    }
}

/// Boxed futures with `Send` proven here, where the lifetimes are concrete: sqlx's open and
/// migrate futures are not `Send` for every lifetime, which a spawned task would require.
type SendFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Reopen the writer and make a fresh price epoch durable (the probe that writing works).
fn open_and_bump(
    path: PathBuf,
    cfg: WalletConfig,
) -> SendFuture<Result<(Wallet, u32), WalletError>> {
    Box::pin(async move {
        let mut w = Wallet::open_with(&path, cfg).await?;
        match w.bump_price_epoch().await {
            Ok(epoch) => Ok((w, epoch)),
            Err(e) => {
                let _ = w.close().await;
                Err(e)
            }
        }
    })
}

/// A read-only look at the file while the writer is down.
fn open_reader(path: PathBuf, cfg: WalletConfig) -> SendFuture<Result<Wallet, WalletError>> {
    Box::pin(async move { Wallet::open_read_only(&path, cfg).await })
}

/// The health for a storage failure `e` classified as `state`, since now.
fn degraded(state: WalletState, e: &impl std::fmt::Display) -> WalletHealth {
    WalletHealth {
        state,
        error: Some(e.to_string()),
        since_unix_ms: now_ms(),
    }
}

/// If `e` is the storage failing (rather than a refused voucher or damaged data), which way:
/// SQLite's own code first, else what the file system `dir` says (read-only, or no space).
pub fn storage_state(e: &WalletError, dir: &Path) -> Option<WalletState> {
    use crate::wallet::WalletError as W;
    let db = match e {
        W::Db(d) => d,
        W::Migrate(
            sqlx::migrate::MigrateError::Execute(d)
            | sqlx::migrate::MigrateError::ExecuteMigration(d, _),
        ) => d,
        W::File { source, .. } => {
            return Some(match source.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) => WalletState::DiskFull,
                Some(libc::EROFS) => WalletState::ReadOnly,
                _ => fs_state(dir),
            });
        }
        W::Unavailable(_) => return Some(fs_state(dir)),
        _ => return None,
    };
    match db {
        sqlx::Error::Database(d) => {
            let code = d.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0) & 0xff;
            match code {
                // SQLITE_FULL
                13 => Some(WalletState::DiskFull),
                // SQLITE_READONLY
                8 => Some(WalletState::ReadOnly),
                // SQLITE_BUSY, LOCKED, IOERR, CORRUPT is not storage, CANTOPEN, PROTOCOL
                5 | 6 | 10 | 14 | 15 => Some(fs_state(dir)),
                _ => None,
            }
        }
        sqlx::Error::Io(_) => Some(fs_state(dir)),
        _ => None,
    }
}

/// An `EROFS` error for `path` if the file system holding it is mounted read-only.
fn read_only_fs(path: &Path) -> Option<WalletError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    (fs_state(dir) == WalletState::ReadOnly).then(|| WalletError::File {
        path: path.to_path_buf(),
        source: std::io::Error::from_raw_os_error(libc::EROFS),
    })
}

/// What the file system holding the wallet says: read-only, out of space, or neither.
fn fs_state(dir: &Path) -> WalletState {
    use nix::sys::statvfs::{FsFlags, statvfs};
    match statvfs(dir) {
        Ok(s) if s.flags().contains(FsFlags::ST_RDONLY) => WalletState::ReadOnly,
        Ok(s) if s.blocks_available() == 0 => WalletState::DiskFull,
        _ => WalletState::Error,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
