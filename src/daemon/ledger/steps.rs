//! What the ledger task does each step and on request: open, top up, close and withdraw our
//! outgoing channels; check offered channels; read incoming ones and claim. Invariants: at
//! most one pending transaction of a kind per channel (one open per off-chain channel, link or
//! exit), so a step
//! repeated after a crash or a slow chain never doubles an intent; a payee claims only a
//! voucher that verifies for the row's channel, exactly as the contract will check it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall;
use serde_json::{Value, json};

use super::txs::Call;
use super::{Ledger, OFFER_AGAIN, READ_EVERY};
use crate::chain::abi::{ICloudcoin, ICloudcoinChannels};
use crate::chain::policy::{accept_offer, claim_due, top_up_due};
use crate::chain::{Base, verify};
use crate::evm::journal::{ChainChannelRow, ChanState, Direction, TxKind, TxState};
use crate::identity::NodeId;
use crate::money::{Amount, ChainChannel, ChannelId, Voucher};
use crate::node::ChainView;

/// The longest close delay a payee demands of an offered channel (its own `close_delay_secs`
/// up to this): long enough to claim through an outage of the payee or the RPC.
const MAX_REQUIRED_DELAY: u64 = 3600;
/// How long `wallet settle` and `wallet close` wait for their transactions to be mined.
const WAIT_MINED: Duration = Duration::from_secs(60);

/// The base of a new outgoing channel: what the payee acknowledged crediting (it refuses an
/// offer whose base is above that).
pub(super) fn base_of(view: &ChainView) -> Base {
    match (view.outgoing_ack, view.outgoing_latest) {
        (Some(a), Some(l)) if a.seq == l.seq => Base {
            seq: l.seq,
            amount: l.cumulative_amount,
            bytes: l.cumulative_bytes,
        },
        (Some(a), _) => Base {
            seq: a.seq,
            amount: a.credited,
            bytes: 0,
        },
        (None, _) => Base::default(),
    }
}

/// A claim `step` sent.
pub(super) struct Claim {
    pub peer: NodeId,
    /// An exit channel's (else a link channel's).
    pub exit: bool,
    /// What it adds to our address (token base units).
    pub amount: U256,
    pub tx: B256,
}

/// Whether we need a channel to the neighbour: we owe it something it has not credited (an
/// unbacked voucher it refused, or no voucher yet), or we held data back for lack of credit.
fn owes_more(view: &ChainView) -> bool {
    let credited = view.outgoing_ack.map_or(Amount::ZERO, |a| a.credited);
    view.outgoing_wanted || view.outgoing_owed > credited
}

impl Ledger {
    fn pending_keys(
        &self,
        txs: &[crate::evm::journal::JournalTx],
    ) -> (HashSet<ChannelId>, HashSet<(B256, TxKind)>) {
        let mut opens = HashSet::new();
        let mut by_channel = HashSet::new();
        for t in txs {
            if matches!(t.kind, TxKind::Approve | TxKind::Open)
                && let Some(c) = self.tx_channel(t)
            {
                opens.insert(c);
            }
            if let Some(id) = t.onchain {
                by_channel.insert((id, t.kind));
            }
        }
        (opens, by_channel)
    }

    /// One pass; `forced` claims whatever is claimable now. Returns the claims it sent.
    pub(super) async fn step(&mut self, forced: bool) -> anyhow::Result<Vec<Claim>> {
        self.reap().await?;
        self.chain_time = self.rpc(|r| Ok(r.latest_timestamp()?)).await?;
        let pending = self.journal.txs(TxState::Pending).await?;
        let (opening, busy) = self.pending_keys(&pending);
        self.outgoing(&opening, &busy).await?;
        self.reinstall_incoming();
        let read_due = self.last_read.is_none_or(|t| t.elapsed() >= READ_EVERY);
        if read_due || forced {
            self.last_read = Some(Instant::now());
            self.read_incoming().await?;
        }
        self.claims(&busy, forced).await
    }

    async fn outgoing(
        &mut self,
        opening: &HashSet<ChannelId>,
        busy: &HashSet<(B256, TxKind)>,
    ) -> anyhow::Result<()> {
        let views: Vec<ChainView> = self.views.values().cloned().collect();
        for view in views {
            let Some(&payee) = self.addresses.get(&view.peer) else {
                tracing::trace!(peer = %view.peer, "ledger: no chain address yet");
                continue;
            };
            let row = self
                .rows
                .values()
                .filter(|r| r.direction == Direction::Outgoing && r.channel_id == view.outgoing)
                .find(|r| r.state != ChanState::Closed)
                .cloned();
            let deposit = self.scale.to_token(self.cfg.deposit);
            tracing::trace!(peer = %view.peer, exit = view.exit, owes = owes_more(&view), row = row.is_some(), "ledger: outgoing");
            match row {
                None if owes_more(&view) && !opening.contains(&view.outgoing) => {
                    tracing::info!(peer = %view.peer, exit = view.exit, "ledger: opening a channel");
                    let open = Call {
                        kind: TxKind::Open,
                        peer: Some(view.peer),
                        channel: Some(view.outgoing),
                        onchain: None,
                        amount: Some(deposit),
                        to: self.cfg.channels,
                        data: ICloudcoinChannels::openCall {
                            payee,
                            amount: deposit,
                            closeDelay: self.cfg.close_delay.as_secs(),
                        }
                        .abi_encode(),
                    };
                    self.submit(vec![self.approve(view.peer, view.outgoing, deposit), open])
                        .await?;
                }
                None => {}
                Some(row) if row.state == ChanState::Open => {
                    let stale = self.installed.get(&row.onchain) != Some(&row.deposit);
                    let unacked =
                        view.outgoing_latest.map(|v| v.seq) > view.outgoing_ack.map(|a| a.seq);
                    let again = unacked
                        && self
                            .offered_at
                            .get(&row.onchain)
                            .is_none_or(|t| t.elapsed() >= OFFER_AGAIN);
                    if !view.outgoing_backed || stale || again {
                        self.publish(&row);
                    }
                    let used = view
                        .outgoing_latest
                        .map_or(Amount::ZERO, |v| v.cumulative_amount)
                        .saturating_sub(row.base.amount);
                    let locked = self.scale.to_amount(row.deposit).unwrap_or(Amount::MAX);
                    if top_up_due(locked, used, self.cfg.deposit)
                        && !busy.contains(&(row.onchain, TxKind::TopUp))
                    {
                        let top = Call {
                            kind: TxKind::TopUp,
                            peer: Some(view.peer),
                            channel: Some(view.outgoing),
                            onchain: Some(row.onchain),
                            amount: Some(deposit),
                            to: self.cfg.channels,
                            data: ICloudcoinChannels::topUpCall {
                                channelId: row.onchain,
                                amount: deposit,
                            }
                            .abi_encode(),
                        };
                        let mut approve = self.approve(view.peer, view.outgoing, deposit);
                        approve.onchain = Some(row.onchain);
                        self.submit(vec![approve, top]).await?;
                    }
                }
                Some(row) => {
                    let due = row.close_at.is_some_and(|t| self.chain_time >= t);
                    if due && !busy.contains(&(row.onchain, TxKind::Withdraw)) {
                        self.submit(vec![
                            self.channel_call(
                                TxKind::Withdraw,
                                &row,
                                ICloudcoinChannels::withdrawCall {
                                    channelId: row.onchain,
                                }
                                .abi_encode(),
                            ),
                        ])
                        .await?;
                    }
                }
            }
        }
        Ok(())
    }

    fn channel_call(&self, kind: TxKind, row: &ChainChannelRow, data: Vec<u8>) -> Call {
        Call {
            kind,
            peer: Some(row.peer),
            channel: Some(row.channel_id),
            onchain: Some(row.onchain),
            amount: None,
            to: self.cfg.channels,
            data,
        }
    }

    /// After a restart of ours or of the link, the node has no backing for an incoming
    /// channel that the journal shows open: install it again.
    fn reinstall_incoming(&mut self) {
        let due: Vec<ChainChannelRow> = self
            .rows
            .values()
            .filter(|r| r.direction == Direction::Incoming && r.state == ChanState::Open)
            .filter(|r| {
                self.view_in(r.channel_id)
                    .is_some_and(|v| !v.incoming_backed)
            })
            .cloned()
            .collect();
        for row in due {
            self.publish(&row);
        }
    }

    /// Re-read live channels, ours and theirs: deposit, claims, a close request, a
    /// withdrawal (the chain is the truth, also for what a lost receipt did not tell us).
    async fn read_incoming(&mut self) -> anyhow::Result<()> {
        let ids: Vec<B256> = self
            .rows
            .values()
            .filter(|r| r.state != ChanState::Closed)
            .map(|r| r.onchain)
            .collect();
        for id in ids {
            let chain = self.read_channel(id).await?;
            let Some(row) = self.rows.get_mut(&id) else {
                continue;
            };
            let before = row.clone();
            if chain.payer == Address::ZERO {
                row.state = ChanState::Closed;
            } else {
                row.deposit = chain.deposit;
                row.claimed = row.claimed.max(chain.claimed);
                if chain.close_at != 0 && row.state == ChanState::Open {
                    // The payer wants its rest back: as payee credit nothing more and claim
                    // in time; as payer stop paying into it and withdraw when due.
                    tracing::info!(peer = %row.peer, close_at = chain.close_at, "ledger: close requested");
                    row.state = ChanState::Closing;
                    row.close_at = Some(chain.close_at);
                }
            }
            if *row != before {
                let row = row.clone();
                self.journal.put_channel(&row).await?;
                if row.state != before.state || row.deposit != before.deposit {
                    self.publish(&row);
                }
            }
        }
        Ok(())
    }

    /// What the chain would pay on `row` for `v`, if `v` verifies for it.
    fn claimable(
        &self,
        row: &ChainChannelRow,
        v: &Voucher,
    ) -> Option<(U256, crate::chain::ChainVoucher)> {
        let cv = self.backing_of(row).chain_voucher(v)?;
        let sig = v.chain_sig?;
        if !verify(&self.domain, &cv, &sig.0, row.payer) {
            return None;
        }
        let owed = cv.cumulative_amount.min(row.deposit);
        Some((owed.saturating_sub(row.claimed), cv))
    }

    async fn claims(
        &mut self,
        busy: &HashSet<(B256, TxKind)>,
        forced: bool,
    ) -> anyhow::Result<Vec<Claim>> {
        let threshold = self.scale.to_token(self.cfg.claim_threshold);
        let rows: Vec<ChainChannelRow> = self
            .rows
            .values()
            .filter(|r| r.direction == Direction::Incoming && r.state != ChanState::Closed)
            .cloned()
            .collect();
        let mut sent = Vec::new();
        for row in rows {
            let Some(v) = self.view_in(row.channel_id).and_then(|v| v.incoming_latest) else {
                continue;
            };
            let Some((unclaimed, cv)) = self.claimable(&row, &v) else {
                continue;
            };
            let closing = row.state == ChanState::Closing;
            if !claim_due(unclaimed, threshold, closing, forced)
                || busy.contains(&(row.onchain, TxKind::Claim))
            {
                continue;
            }
            let Some(sig) = v.chain_sig else { continue };
            let mut call = self.channel_call(
                TxKind::Claim,
                &row,
                ICloudcoinChannels::claimCall {
                    channelId: row.onchain,
                    seq: cv.seq,
                    cumulativeAmount: cv.cumulative_amount,
                    cumulativeBytes: cv.cumulative_bytes,
                    priceEpoch: cv.price_epoch,
                    signature: sig.0.to_vec().into(),
                }
                .abi_encode(),
            );
            call.amount = Some(cv.cumulative_amount.min(row.deposit));
            let hashes = self.submit(vec![call]).await?;
            if let Some(h) = hashes.first() {
                tracing::info!(peer = %row.peer, tx = %h, "ledger: claiming");
                sent.push(Claim {
                    peer: row.peer,
                    exit: self.view_in(row.channel_id).is_some_and(|v| v.exit),
                    amount: unclaimed,
                    tx: *h,
                });
            }
        }
        Ok(sent)
    }

    /// A neighbour offers an on-chain channel: check it on chain, then back the channel.
    pub(super) async fn on_offer(
        &mut self,
        peer: NodeId,
        payer: Address,
        offer: ChainChannel,
        credited: Option<Voucher>,
    ) -> anyhow::Result<()> {
        let id = B256::from(offer.onchain_id);
        if let Some(row) = self.rows.get(&id) {
            // Known: the payer re-sends after a reconnect; the node needs it again only if
            // the link restarted (cheap to re-publish). One deposit backs one channel: offered
            // again for another (its link and its exit channel), it is refused.
            anyhow::ensure!(
                row.direction == Direction::Incoming
                    && row.peer == peer
                    && row.channel_id == offer.channel_id,
                "on-chain channel {id} already backs another channel"
            );
            let row = row.clone();
            self.publish(&row);
            return Ok(());
        }
        let chain = self.read_channel(id).await?;
        let min_delay = self.cfg.close_delay.as_secs().min(MAX_REQUIRED_DELAY);
        let b = accept_offer(
            &offer,
            &chain,
            payer,
            self.key.address(),
            credited.as_ref(),
            min_delay,
            self.domain,
            self.scale,
        )?;
        let row = ChainChannelRow {
            onchain: id,
            direction: Direction::Incoming,
            peer,
            channel_id: offer.channel_id,
            payer,
            payee: self.key.address(),
            base: b.base,
            deposit: chain.deposit,
            claimed: chain.claimed,
            close_at: None,
            state: ChanState::Open,
        };
        self.journal.put_channel(&row).await?;
        tracing::info!(%peer, channel = %id, "ledger: incoming channel backed on chain");
        self.rows.insert(id, row.clone());
        self.publish(&row);
        Ok(())
    }

    async fn wait_mined(&mut self, hashes: &[B256]) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            self.reap().await?;
            let pending = self.journal.txs(TxState::Pending).await?;
            if !pending.iter().any(|t| hashes.contains(&t.hash)) {
                return Ok(());
            }
            anyhow::ensure!(
                start.elapsed() < WAIT_MINED,
                "transactions not mined in {WAIT_MINED:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `wallet settle`: claim every incoming channel now.
    pub(super) async fn settle(&mut self) -> anyhow::Result<Value> {
        let sent = self.step(true).await?;
        let hashes: Vec<B256> = sent.iter().map(|s| s.tx).collect();
        self.wait_mined(&hashes).await?;
        let claimed: Vec<Value> = sent
            .iter()
            .map(|c| {
                json!({
                    "peer": c.peer,
                    "kind": if c.exit { "exit" } else { "link" },
                    "amount": self.scale.to_amount(c.amount).unwrap_or(Amount::MAX),
                    "tx": c.tx.to_string(),
                })
            })
            .collect();
        Ok(json!({ "claimed": claimed }))
    }

    /// `wallet close PEER`: request close of our outgoing channels to `peer` (the link
    /// channel's and, if `peer` is also our exit, the exit channel's). The answer's top-level
    /// fields are for the first (the link channel's if there is one); `closed[]` lists all.
    pub(super) async fn close(&mut self, peer: NodeId) -> anyhow::Result<Value> {
        let mut rows: Vec<ChainChannelRow> = self
            .rows
            .values()
            .filter(|r| {
                r.direction == Direction::Outgoing && r.peer == peer && r.state == ChanState::Open
            })
            .cloned()
            .collect();
        anyhow::ensure!(!rows.is_empty(), "no open on-chain channel to {peer}");
        let is_exit = |r: &ChainChannelRow| self.view_out(r.channel_id).is_some_and(|v| v.exit);
        rows.sort_by_key(|r| is_exit(r));
        let kinds: Vec<bool> = rows.iter().map(is_exit).collect();
        let calls = rows
            .iter()
            .map(|row| {
                self.channel_call(
                    TxKind::Close,
                    row,
                    ICloudcoinChannels::requestCloseCall {
                        channelId: row.onchain,
                    }
                    .abi_encode(),
                )
            })
            .collect();
        let hashes = self.submit(calls).await?;
        self.wait_mined(&hashes).await?;
        let closed: Vec<Value> = rows
            .iter()
            .zip(&hashes)
            .zip(&kinds)
            .map(|((row, h), exit)| {
                json!({
                    "peer": peer,
                    "kind": if *exit { "exit" } else { "link" },
                    "channel": row.onchain.to_string(),
                    "close_at": self.rows.get(&row.onchain).and_then(|r| r.close_at),
                    "tx": h.to_string(),
                })
            })
            .collect();
        let mut first = closed.first().cloned().unwrap_or_default();
        if let Some(o) = first.as_object_mut() {
            o.insert("closed".into(), Value::Array(closed));
        }
        Ok(first)
    }

    /// The chain side of `wallet balance`: our token balance, what we have locked, and what
    /// we may claim.
    pub(super) async fn balance(&mut self) -> anyhow::Result<Value> {
        let me = self.key.address();
        let token = self.cfg.token;
        let onchain = self
            .rpc(move |r| {
                let out = r.call(token, &ICloudcoin::balanceOfCall { owner: me }.abi_encode())?;
                Ok(ICloudcoin::balanceOfCall::abi_decode_returns(&out)?)
            })
            .await?;
        let mut deposited = U256::ZERO;
        let mut claimable = U256::ZERO;
        let rows: Vec<ChainChannelRow> = self
            .rows
            .values()
            .filter(|r| r.state != ChanState::Closed)
            .cloned()
            .collect();
        for row in rows {
            let chain = self.read_channel(row.onchain).await?;
            if chain.payer == Address::ZERO {
                continue;
            }
            match row.direction {
                Direction::Outgoing => {
                    deposited += chain.deposit.saturating_sub(chain.claimed);
                }
                Direction::Incoming => {
                    let fresh = ChainChannelRow {
                        deposit: chain.deposit,
                        claimed: chain.claimed,
                        ..row.clone()
                    };
                    if let Some(v) = self.view_in(row.channel_id).and_then(|v| v.incoming_latest)
                        && let Some((c, _)) = self.claimable(&fresh, &v)
                    {
                        claimable += c;
                    }
                }
            }
        }
        let cc = |t: U256| self.scale.to_amount(t).unwrap_or(Amount::MAX);
        Ok(json!({
            "backed": true,
            "address": me.to_string(),
            "onchain": cc(onchain),
            "deposited": cc(deposited),
            "claimable": cc(claimable),
        }))
    }
}
