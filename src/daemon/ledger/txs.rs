//! The ledger task's transactions: sign with the next nonce, journal, broadcast, and apply
//! each one's effects from its receipt exactly once. Invariant: nothing is broadcast that is
//! not stored, and a receipt is applied before its row leaves `pending`, so a crash between
//! the two applies it again from the same receipt with the same result (row updates are
//! idempotent: "claimed at least", "state closing", "deposit as read").

use std::time::Instant;

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{SolCall, SolEvent};

use super::{Ledger, Out};
use crate::chain::abi::{ICloudcoin, ICloudcoinChannels};
use crate::chain::tx::{TxRequest, sign};
use crate::evm::journal::{ChainChannelRow, ChanState, Direction, JournalTx, TxKind, TxState};
use crate::evm::submit::broadcast;
use crate::evm::{Receipt, RpcError};
use crate::identity::NodeId;
use crate::money::ChannelId;

/// Gas limits per kind: measured use (`tests/ledger_contracts.rs`, docs/ledger.md) with
/// generous headroom, fixed so that an approve and an open can be signed together (the open
/// cannot be estimated before the approve is mined).
fn gas_limit(kind: TxKind) -> u64 {
    match kind {
        TxKind::Approve => 80_000,
        TxKind::Open => 250_000,
        TxKind::TopUp => 120_000,
        TxKind::Claim => 150_000,
        TxKind::Close => 80_000,
        TxKind::Withdraw => 120_000,
    }
}

/// One transaction of an intent.
pub(super) struct Call {
    pub kind: TxKind,
    pub peer: Option<NodeId>,
    /// The off-chain channel (approve and open: the one the new channel will back).
    pub channel: Option<ChannelId>,
    pub onchain: Option<B256>,
    pub amount: Option<U256>,
    pub to: Address,
    pub data: Vec<u8>,
}

impl Ledger {
    pub(super) fn approve(&self, peer: NodeId, channel: ChannelId, amount: U256) -> Call {
        Call {
            kind: TxKind::Approve,
            peer: Some(peer),
            channel: Some(channel),
            onchain: None,
            amount: Some(amount),
            to: self.cfg.token,
            data: ICloudcoin::approveCall {
                spender: self.cfg.channels,
                value: amount,
            }
            .abi_encode(),
        }
    }

    /// Sign `calls` with consecutive nonces, journal them together, then broadcast them.
    pub(super) async fn submit(&mut self, calls: Vec<Call>) -> anyhow::Result<Vec<B256>> {
        let me = self.key.address();
        let (chain_nonce, gas_price) = self
            .rpc(move |r| Ok((r.nonce(me)?, r.gas_price()?)))
            .await?;
        let mut nonce = match self.journal.max_nonce().await? {
            Some(n) => chain_nonce.max(n + 1),
            None => chain_nonce,
        };
        let mut txs = Vec::new();
        for c in calls {
            let req = TxRequest {
                chain_id: self.domain.chain_id,
                nonce,
                gas_price,
                gas: gas_limit(c.kind),
                to: c.to,
                value: U256::ZERO,
                input: c.data,
            };
            let s = sign(&req, &self.key);
            txs.push(JournalTx {
                hash: s.hash,
                nonce,
                kind: c.kind,
                peer: c.peer,
                channel: c.channel,
                onchain: c.onchain,
                amount: c.amount,
                raw: s.raw,
                state: TxState::Pending,
                gas_used: None,
            });
            nonce += 1;
        }
        // Durable before anything leaves: a crash from here on re-broadcasts them.
        self.journal.record(&txs).await?;
        let hashes = txs.iter().map(|t| t.hash).collect();
        for t in txs {
            tracing::info!(kind = t.kind.as_str(), tx = %t.hash, nonce = t.nonce, "ledger: sending");
            self.send(t).await;
        }
        Ok(hashes)
    }

    async fn send(&self, t: JournalTx) {
        let tx = crate::chain::tx::SignedTx {
            raw: t.raw,
            hash: t.hash,
        };
        let r = self.rpc(move |r| Ok(broadcast(r, &tx)?)).await;
        if let Err(e) = r {
            // Stays pending: re-broadcast later; a nonce the chain already used means a
            // receipt exists or the transaction is gone (then `reap` marks it failed).
            tracing::debug!(tx = %t.hash, "ledger: broadcast: {e:#}");
        }
    }

    /// Send every pending transaction again (after a restart).
    pub(super) async fn rebroadcast(&mut self) -> anyhow::Result<()> {
        self.reap().await?;
        for t in self.journal.txs(TxState::Pending).await? {
            self.send(t).await;
        }
        Ok(())
    }

    /// Look for receipts of pending transactions and apply them.
    pub(super) async fn reap(&mut self) -> anyhow::Result<()> {
        let pending = self.journal.txs(TxState::Pending).await?;
        if pending.is_empty() {
            return Ok(());
        }
        let me = self.key.address();
        let hashes: Vec<B256> = pending.iter().map(|t| t.hash).collect();
        let (receipts, mined_nonce) = self
            .rpc(move |r| {
                // The nonce first: a transaction mined between the two reads then has its
                // receipt, and one without a receipt below this nonce was never mined.
                let mined = r.mined_nonce(me)?;
                let rs = hashes
                    .iter()
                    .map(|h| r.receipt(*h))
                    .collect::<Result<Vec<_>, RpcError>>()?;
                Ok((rs, mined))
            })
            .await?;
        for (t, rec) in pending.into_iter().zip(receipts) {
            match rec {
                Some(rec) => {
                    if rec.success {
                        self.apply(&t, &rec).await?;
                    } else {
                        tracing::warn!(kind = t.kind.as_str(), tx = %t.hash, "ledger: transaction reverted");
                    }
                    let state = if rec.success {
                        TxState::Mined
                    } else {
                        TxState::Failed
                    };
                    self.journal
                        .set_state(t.hash, state, Some(rec.gas_used))
                        .await?;
                }
                // Its nonce is used and it has no receipt: another transaction of ours took
                // the nonce (only possible if a journal row was lost); it will never mine.
                None if t.nonce < mined_nonce => {
                    tracing::warn!(tx = %t.hash, "ledger: transaction dropped");
                    self.journal
                        .set_state(t.hash, TxState::Failed, None)
                        .await?;
                }
                None => {}
            }
        }
        Ok(())
    }

    /// A mined transaction's effects on our channel rows (idempotent).
    async fn apply(&mut self, t: &JournalTx, rec: &Receipt) -> anyhow::Result<()> {
        let contract = self.cfg.channels;
        let ours: Vec<_> = rec
            .logs
            .iter()
            .filter(|l| l.address == contract)
            .cloned()
            .collect();
        match t.kind {
            TxKind::Approve => {}
            TxKind::Open => {
                for l in &ours {
                    let Ok(e) =
                        ICloudcoinChannels::Opened::decode_raw_log(l.topics.clone(), &l.data)
                    else {
                        continue;
                    };
                    let (Some(peer), Some(channel)) = (t.peer, self.tx_channel(t)) else {
                        continue;
                    };
                    self.opened(peer, channel, e.channelId, e.payee, e.deposit)
                        .await?;
                }
            }
            TxKind::TopUp | TxKind::Claim | TxKind::Close | TxKind::Withdraw => {
                let Some(id) = t.onchain else { return Ok(()) };
                let chain = self.read_channel(id).await?;
                // What the payee was paid in all, final once withdrawn: deposit less the rest
                // the withdrawal returned.
                let rest = ours.iter().find_map(|l| {
                    ICloudcoinChannels::Withdrawn::decode_raw_log(l.topics.clone(), &l.data)
                        .ok()
                        .filter(|e| e.channelId == id)
                        .map(|e| e.amount)
                });
                let Some(row) = self.rows.get_mut(&id) else {
                    return Ok(());
                };
                if let Some(rest) = rest {
                    row.claimed = row.claimed.max(row.deposit.saturating_sub(rest));
                }
                if chain.payer == Address::ZERO {
                    row.state = ChanState::Closed;
                } else {
                    row.deposit = chain.deposit;
                    row.claimed = row.claimed.max(chain.claimed);
                    if chain.close_at != 0 {
                        row.state = ChanState::Closing;
                        row.close_at = Some(chain.close_at);
                    }
                }
                let row = row.clone();
                self.journal.put_channel(&row).await?;
                self.publish(&row);
            }
        }
        Ok(())
    }

    /// Our open was mined: the row, with the base the payee has acknowledged.
    async fn opened(
        &mut self,
        peer: NodeId,
        channel: ChannelId,
        id: B256,
        payee: Address,
        deposit: U256,
    ) -> anyhow::Result<()> {
        if self.rows.contains_key(&id) {
            return Ok(());
        }
        let Some(view) = self.view_out(channel) else {
            anyhow::bail!("opened a channel to {peer}: waiting to see its channel {channel}");
        };
        // The base is what the payee credited; after a restart we learn it from its first
        // ack (until then the receipt is applied again next step).
        anyhow::ensure!(
            view.outgoing_latest.is_none() || view.outgoing_ack.is_some(),
            "opened a channel to {peer}: waiting for its first ack"
        );
        let mut base = super::steps::base_of(view);
        // Never below what earlier on-chain channels behind this channel paid: the chain must
        // not pay twice for the same cumulative amount.
        let paid_before = self
            .rows
            .values()
            .filter(|r| r.direction == Direction::Outgoing && r.channel_id == channel)
            .map(|r| {
                r.base.amount.saturating_add(
                    self.scale
                        .to_amount(r.claimed)
                        .unwrap_or(crate::money::Amount::MAX),
                )
            })
            .max()
            .unwrap_or(crate::money::Amount::ZERO);
        base.amount = base.amount.max(paid_before);
        let row = ChainChannelRow {
            onchain: id,
            direction: Direction::Outgoing,
            peer,
            channel_id: view.outgoing,
            payer: self.key.address(),
            payee,
            base,
            deposit,
            claimed: U256::ZERO,
            close_at: None,
            state: ChanState::Open,
        };
        self.journal.put_channel(&row).await?;
        tracing::info!(%peer, channel = %id, "ledger: opened");
        self.rows.insert(id, row.clone());
        self.publish(&row);
        Ok(())
    }

    /// Tell the node about a row's backing (or its end).
    pub(super) fn publish(&mut self, row: &ChainChannelRow) {
        let live = row.state == ChanState::Open;
        let backing: Option<crate::money::SharedBacking> =
            live.then(|| std::sync::Arc::new(self.backing_of(row)) as _);
        match row.direction {
            Direction::Outgoing => {
                let offer = live.then(|| self.backing_of(row).offer(row.channel_id));
                self.offered_at.insert(row.onchain, Instant::now());
                let _ = self.out.send(Out::PayerBacking {
                    peer: row.peer,
                    channel: row.channel_id,
                    backing,
                    offer,
                });
            }
            Direction::Incoming => {
                let _ = self.out.send(Out::PayeeBacking {
                    peer: row.peer,
                    channel: row.channel_id,
                    backing,
                });
            }
        }
        if live {
            self.installed.insert(row.onchain, row.deposit);
        } else {
            self.installed.remove(&row.onchain);
        }
    }
}
