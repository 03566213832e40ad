//! The wallet actor: the daemon's only writer of the SQLite wallet. It performs the node's
//! durable steps in the order the node produced them and reports each commit back, so the
//! event loop never waits on an fsync and the node still sends a voucher only after it is on
//! disk (and credits one only after that). It also answers the `wallet` CLI queries, merging
//! what is stored with the node's live channel state.

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::api::wallet::query;
use crate::node::{ChannelView, WalletDone, WalletOp};
use crate::wallet::{Direction, Wallet};

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

/// Run until every sender is dropped, then close the wallet cleanly.
pub async fn run(
    mut w: Wallet,
    mut rx: mpsc::UnboundedReceiver<Req>,
    done: mpsc::UnboundedSender<WalletDone>,
) {
    while let Some(req) = rx.recv().await {
        match req {
            Req::Op(op) => apply(&mut w, op, &done).await,
            Req::BumpEpoch(reply) => {
                let r = w.bump_price_epoch().await.map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            Req::Query { body, live, reply } => {
                let v = match query(&mut w, &body, &live).await {
                    Ok(v) => v,
                    Err(e) => json!({ "error": format!("wallet: {e}") }),
                };
                let _ = reply.send(v);
            }
            Req::Flush(reply) => {
                let _ = reply.send(());
            }
        }
    }
    if let Err(e) = w.close().await {
        tracing::warn!("closing the wallet: {e}");
    }
}

async fn apply(w: &mut Wallet, op: WalletOp, done: &mpsc::UnboundedSender<WalletDone>) {
    match op {
        WalletOp::EnsureOutgoing(p) => {
            if let Err(e) = w.ensure_channel(&p, Direction::Outgoing).await {
                tracing::error!(payee = %p.payee, "registering outgoing channel: {e}");
            }
        }
        WalletOp::EnsureIncoming(p) => {
            if let Err(e) = w.ensure_channel(&p, Direction::Incoming).await {
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
            if let Err(e) = &r {
                tracing::warn!(channel = %v.channel_id, seq = v.seq, "outgoing voucher not committed: {e}");
            }
            let _ = done.send(WalletDone::Outgoing {
                voucher: v,
                ok: r.is_ok(),
                headroom: w.spend_headroom(),
            });
        }
        WalletOp::CommitIncoming(v) => {
            let r = w.commit_incoming_voucher(&v).await;
            if let Err(e) = &r {
                tracing::warn!(channel = %v.channel_id, seq = v.seq, "incoming voucher not committed: {e}");
            }
            let _ = done.send(WalletDone::Incoming {
                voucher: v,
                ok: r.is_ok(),
            });
        }
        WalletOp::Checkpoint(snaps) => {
            if let Err(e) = w.checkpoint_meters(&snaps).await {
                tracing::warn!("meter checkpoint: {e}");
            }
        }
    }
}
