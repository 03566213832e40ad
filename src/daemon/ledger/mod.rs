//! The on-chain ledger task (`[ledger] kind = "evm"`, docs/ledger.md): opens, tops up, claims,
//! closes and withdraws `CloudcoinChannels` channels for the node's link and exit channels, and
//! checks the channels neighbours and exit clients offer. Invariants: every transaction is signed and stored in the
//! journal before it is broadcast, and its effects are applied only from its receipt, once;
//! RPC calls run on the blocking pool, never on the forwarding loop; the node hears of a
//! backing only once the chain shows it; an RPC that is down (at start or later) delays
//! settlement, never the tunnel: nothing is sent to a chain whose id was not checked.

mod steps;
mod txs;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall;
use anyhow::Context;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::chain::abi::{ICloudcoin, ICloudcoinChannels};
use crate::chain::policy::OnChain;
use crate::chain::{ChainKey, ChannelBacking, Domain, TokenScale};
use crate::config::EvmLedger;
use crate::evm::Rpc;
use crate::evm::journal::{ChainChannelRow, Direction, Journal};
use crate::identity::NodeId;
use crate::money::{ChainChannel, ChannelId, ChannelParams, LINK_CHANNEL_NONCE, SharedBacking};
use crate::node::{ChainEvent, ChainView};

/// The journal beside the wallet.
pub const LEDGER_FILE: &str = "ledger.db";
/// How often the task looks at the channels and the chain.
const STEP: Duration = Duration::from_secs(1);
/// How often incoming channels are re-read from the chain (deposit, claims, close).
const READ_EVERY: Duration = Duration::from_secs(2);
/// How often an offer is sent again while the payee has not acknowledged a cosigned voucher.
const OFFER_AGAIN: Duration = Duration::from_secs(5);
/// How often an unreachable RPC is tried again.
const CONNECT_AGAIN: Duration = Duration::from_secs(5);
/// The decimals assumed before the chain was ever reached: no channel exists then, so no
/// amount is converted with it before [`Ledger::connect`] replaces it.
const UNKNOWN_DECIMALS: u8 = 18;

/// From the forwarding loop.
#[derive(Debug)]
pub enum In {
    /// The node's channels, sent every step.
    Views(Vec<ChainView>),
    /// A chain event from the node.
    Event(Box<ChainEvent>),
    /// `wallet settle`: claim everything now.
    Settle(oneshot::Sender<Value>),
    /// `wallet close PEER`.
    Close(NodeId, oneshot::Sender<Value>),
    /// The chain side of `wallet balance`.
    Balance(oneshot::Sender<Value>),
}

/// To the forwarding loop.
pub enum Out {
    /// Back (or stop backing) our outgoing channel to `peer`; send `offer` if any.
    PayerBacking {
        /// The neighbour (or exit).
        peer: NodeId,
        /// Our off-chain channel (link or exit).
        channel: ChannelId,
        /// The backing.
        backing: Option<SharedBacking>,
        /// The offer to send it.
        offer: Option<ChainChannel>,
    },
    /// Back (or stop backing) the incoming channel from `peer`.
    PayeeBacking {
        /// The neighbour (or exit client).
        peer: NodeId,
        /// Its off-chain channel (link or exit).
        channel: ChannelId,
        /// The backing.
        backing: Option<SharedBacking>,
    },
}

/// The task's state.
pub struct Ledger {
    cfg: EvmLedger,
    /// Our node id.
    me: NodeId,
    key: ChainKey,
    rpc: Arc<Rpc>,
    journal: Journal,
    domain: Domain,
    scale: TokenScale,
    out: mpsc::UnboundedSender<Out>,
    /// Neighbours' (and exit peers') proven chain addresses.
    addresses: HashMap<NodeId, Address>,
    /// The node's channels by peer and kind (`true`: exit channels).
    views: HashMap<(NodeId, bool), ChainView>,
    /// Live on-chain channels by id.
    rows: HashMap<B256, ChainChannelRow>,
    /// Which backing the node has, per channel (to install once, and again after a restart
    /// of the link or a top-up).
    installed: HashMap<B256, U256>,
    last_read: Option<Instant>,
    offered_at: HashMap<B256, Instant>,
    /// Chain time of the last block we saw.
    chain_time: u64,
    /// The RPC answered and reports the configured chain id: only then does the task send or
    /// read anything on chain.
    connected: bool,
    /// When the RPC was last tried, and how the last try failed.
    tried: Option<(Instant, String)>,
}

impl Ledger {
    /// Open the journal and restore its channels. Needs no RPC: the token's decimals were
    /// stored when the chain was first reached (the RPC is checked by [`Ledger::connect`]).
    pub async fn start(
        cfg: EvmLedger,
        me: NodeId,
        key: ChainKey,
        data_dir: &std::path::Path,
        out: mpsc::UnboundedSender<Out>,
    ) -> anyhow::Result<Ledger> {
        let rpc = Arc::new(Rpc::new(&cfg.rpc));
        let journal = Journal::open(&data_dir.join(LEDGER_FILE)).await?;
        let decimals = match journal.meta(&decimals_key(&cfg)).await? {
            Some(d) => d.parse().context("ledger.db: stored token decimals")?,
            None => UNKNOWN_DECIMALS,
        };
        let scale = TokenScale::new(decimals)?;
        let rows = journal
            .channels()
            .await?
            .into_iter()
            .map(|r| (r.onchain, r))
            .collect();
        Ok(Ledger {
            domain: Domain {
                chain_id: cfg.chain_id,
                contract: cfg.channels,
            },
            cfg,
            me,
            key,
            rpc,
            journal,
            scale,
            out,
            addresses: HashMap::new(),
            views: HashMap::new(),
            rows,
            installed: HashMap::new(),
            last_read: None,
            offered_at: HashMap::new(),
            chain_time: 0,
            connected: false,
            tried: None,
        })
    }

    /// Reach the RPC: it must report the configured chain id; the token's decimals are read
    /// (and stored, for a start without RPC); then whatever a crash left in flight goes out
    /// again (same bytes, same hash).
    async fn connect(&mut self) -> anyhow::Result<()> {
        let token = self.cfg.token;
        let (chain_id, decimals) = self
            .rpc(move |r| {
                let id = r.chain_id()?;
                let d = r.call(token, &ICloudcoin::decimalsCall {}.abi_encode())?;
                Ok((id, ICloudcoin::decimalsCall::abi_decode_returns(&d)?))
            })
            .await
            .with_context(|| format!("[ledger] rpc {}", self.cfg.rpc))?;
        anyhow::ensure!(
            chain_id == self.cfg.chain_id,
            "[ledger] chain_id is {} but {} reports {chain_id}",
            self.cfg.chain_id,
            self.cfg.rpc
        );
        let scale = TokenScale::new(decimals)?;
        anyhow::ensure!(
            self.rows.is_empty() || scale == self.scale,
            "[ledger] token {token} reports {decimals} decimals, not the ones its channels use"
        );
        self.journal
            .set_meta(&decimals_key(&self.cfg), &decimals.to_string())
            .await?;
        self.scale = scale;
        self.connected = true;
        tracing::info!(address = %self.key.address(), chain_id, rpc = %self.cfg.rpc, "on-chain ledger");
        if let Err(e) = self.rebroadcast().await {
            tracing::warn!("ledger: re-broadcasting journaled transactions: {e:#}");
        }
        Ok(())
    }

    /// Try the RPC if it is time; true once connected.
    async fn ensure_connected(&mut self) -> bool {
        if self.connected {
            return true;
        }
        if self
            .tried
            .as_ref()
            .is_some_and(|(t, _)| t.elapsed() < CONNECT_AGAIN)
        {
            return false;
        }
        match self.connect().await {
            Ok(()) => {
                self.tried = None;
                true
            }
            Err(e) => {
                let e = format!("{e:#}");
                // Once per distinct failure, not every few seconds.
                if self.tried.as_ref().is_none_or(|(_, last)| *last != e) {
                    tracing::warn!(
                        "ledger: chain unreachable, settlement waits (the tunnel does not): {e}"
                    );
                }
                self.tried = Some((Instant::now(), e));
                false
            }
        }
    }

    /// The answer to a request while the chain is unreachable.
    fn unreachable(&self, key: &str) -> Value {
        let why = self
            .tried
            .as_ref()
            .map_or("not reached yet", |(_, e)| e.as_str());
        serde_json::json!({ key: format!("chain unreachable: {why}") })
    }

    /// Run until the forwarding loop goes away.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<In>) {
        self.ensure_connected().await;
        let mut tick = tokio::time::interval(STEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    None => break,
                    Some(m) => self.on_input(m).await,
                },
                _ = tick.tick() => {
                    if self.ensure_connected().await
                        && let Err(e) = self.step(false).await
                    {
                        tracing::warn!("ledger: {e:#}");
                    }
                }
            }
        }
    }

    async fn on_input(&mut self, m: In) {
        match m {
            In::Views(v) => {
                self.views = v.into_iter().map(|v| ((v.peer, v.exit), v)).collect();
            }
            In::Event(e) => match *e {
                ChainEvent::PeerAddress { peer, address } => {
                    tracing::debug!(%peer, address = %Address::from(address), "ledger: neighbour's chain address");
                    self.addresses.insert(peer, Address::from(address));
                }
                // Checked on chain only once the chain is reached (the payer offers again).
                ChainEvent::ChannelOffered { .. } if !self.connected => {}
                ChainEvent::ChannelOffered {
                    peer,
                    payer_address,
                    offer,
                    credited,
                } => {
                    if let Err(e) = self
                        .on_offer(
                            peer,
                            Address::from(payer_address),
                            offer,
                            credited.map(|b| *b),
                        )
                        .await
                    {
                        tracing::info!(%peer, "ledger: refused the offered channel: {e:#}");
                    }
                }
            },
            In::Settle(reply) | In::Close(_, reply) if !self.ensure_connected().await => {
                let _ = reply.send(self.unreachable("error"));
            }
            In::Balance(reply) if !self.ensure_connected().await => {
                let _ = reply.send(self.unreachable("chain_error"));
            }
            In::Settle(reply) => {
                let answer = self
                    .settle()
                    .await
                    .unwrap_or_else(|e| serde_json::json!({ "error": format!("settle: {e:#}") }));
                let _ = reply.send(answer);
            }
            In::Close(peer, reply) => {
                let answer = self
                    .close(peer)
                    .await
                    .unwrap_or_else(|e| serde_json::json!({ "error": format!("close: {e:#}") }));
                let _ = reply.send(answer);
            }
            In::Balance(reply) => {
                let answer = self
                    .balance()
                    .await
                    .unwrap_or_else(|e| serde_json::json!({ "chain_error": format!("{e:#}") }));
                let _ = reply.send(answer);
            }
        }
    }

    /// Run a blocking RPC closure on the blocking pool.
    async fn rpc<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Rpc) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let r = self.rpc.clone();
        tokio::task::spawn_blocking(move || f(&r)).await?
    }

    /// `channels(id)` on chain.
    async fn read_channel(&self, id: B256) -> anyhow::Result<OnChain> {
        let to = self.cfg.channels;
        self.rpc(move |r| {
            let out = r.call(
                to,
                &ICloudcoinChannels::channelsCall { channelId: id }.abi_encode(),
            )?;
            let c = ICloudcoinChannels::channelsCall::abi_decode_returns(&out)?;
            Ok(OnChain {
                payer: c.payer,
                payee: c.payee,
                deposit: c.deposit,
                claimed: c.claimed,
                close_delay: c.closeDelay,
                close_at: c.closeAt,
            })
        })
        .await
    }

    /// The backings of the journal's open channels, for the node before it starts.
    fn restored(&self) -> Vec<(ChannelId, SharedBacking)> {
        self.rows
            .values()
            .filter(|r| r.state == crate::evm::journal::ChanState::Open)
            .map(|r| {
                let b: SharedBacking = Arc::new(self.backing_of(r));
                (r.channel_id, b)
            })
            .collect()
    }

    /// The view holding our outgoing channel `id`.
    fn view_out(&self, id: ChannelId) -> Option<&ChainView> {
        self.views.values().find(|v| v.outgoing == id)
    }

    /// The view holding the incoming channel `id`.
    fn view_in(&self, id: ChannelId) -> Option<&ChainView> {
        self.views.values().find(|v| v.incoming == id)
    }

    /// The off-chain channel a journaled approve or open is for (rows from before exit
    /// channels had a column for it were for the link channel to their peer).
    fn tx_channel(&self, t: &crate::evm::journal::JournalTx) -> Option<ChannelId> {
        t.channel.or_else(|| {
            t.peer.map(|payee| {
                ChannelParams {
                    payer: self.me,
                    payee,
                    nonce: LINK_CHANNEL_NONCE,
                }
                .id()
            })
        })
    }

    /// The backing a row stands for (ours to cosign when we pay).
    fn backing_of(&self, row: &ChainChannelRow) -> ChannelBacking {
        ChannelBacking {
            domain: self.domain,
            onchain: row.onchain,
            payer: row.payer,
            scale: self.scale,
            base: row.base,
            deposit: self
                .scale
                .to_amount(row.deposit)
                .unwrap_or(crate::money::Amount::MAX),
            key: (row.direction == Direction::Outgoing).then(|| self.key.clone()),
        }
    }
}

/// The journal's key for the token's decimals on the configured chain.
fn decimals_key(cfg: &EvmLedger) -> String {
    format!("decimals {} {}", cfg.chain_id, cfg.token)
}

/// The forwarding loop's end of the ledger task.
pub struct LedgerLink {
    tx: mpsc::UnboundedSender<In>,
    rx: mpsc::UnboundedReceiver<Out>,
    task: tokio::task::JoinHandle<()>,
    last_views: Option<Instant>,
}

/// Start the ledger task if `[ledger] kind = "evm"`: the node announces its chain address
/// and requires on-chain backing from then on.
pub async fn spawn(
    cfg: &crate::config::Config,
    identity: &crate::identity::Identity,
    node: &mut crate::node::Node,
) -> anyhow::Result<Option<LedgerLink>> {
    let Some(evm) = cfg.ledger.evm.clone() else {
        return Ok(None);
    };
    let key = ChainKey::derive(identity);
    let b = key.binding(identity);
    node.enable_chain(crate::money::ChainAddress {
        address: b.address.into_array(),
        signature: b.signature,
    });
    let (out_tx, rx) = mpsc::unbounded_channel();
    let ledger = Ledger::start(evm, identity.id(), key, &cfg.data_dir, out_tx).await?;
    for (channel, backing) in ledger.restored() {
        node.restore_backing(channel, backing);
    }
    let (tx, in_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(ledger.run(in_rx));
    Ok(Some(LedgerLink {
        tx,
        rx,
        task,
        last_views: None,
    }))
}

impl LedgerLink {
    /// Each tick: pass the node's chain events on, and its channels once per step.
    pub fn tick(&mut self, node: &mut crate::node::Node, now: Instant) {
        while let Some(e) = node.poll_chain_event() {
            let _ = self.tx.send(In::Event(Box::new(e)));
        }
        if self
            .last_views
            .is_none_or(|t| now.saturating_duration_since(t) >= STEP)
        {
            self.last_views = Some(now);
            let _ = self.tx.send(In::Views(node.chain_views()));
        }
    }

    /// Apply what the task decided.
    pub fn apply(node: &mut crate::node::Node, out: Out, now: Instant) {
        match out {
            Out::PayerBacking {
                peer,
                channel,
                backing,
                offer,
            } => {
                node.set_payer_backing(&peer, channel, backing, offer, now);
            }
            Out::PayeeBacking {
                peer,
                channel,
                backing,
            } => node.set_payee_backing(&peer, channel, backing, now),
        }
    }

    /// The next decision (never resolves without a task).
    pub async fn recv(link: &mut Option<LedgerLink>) -> Option<Out> {
        match link {
            Some(l) => l.rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// A control request for the ledger (`wallet settle`, `wallet close`).
    pub fn request(
        link: &Option<LedgerLink>,
        node: &crate::node::Node,
        action: &str,
        peer: Option<&str>,
        reply: oneshot::Sender<Value>,
    ) {
        let Some(l) = link else {
            let _ = reply.send(serde_json::json!({
                "error": "no on-chain ledger: set [ledger] kind = \"evm\" (vouchers are IOUs)"
            }));
            return;
        };
        let msg = match (action, peer.map(str::parse::<NodeId>)) {
            ("settle", _) => In::Settle(reply),
            ("close", Some(Ok(p))) => In::Close(p, reply),
            ("close", _) => {
                let _ = reply.send(serde_json::json!({ "error": "close: PEER must be a node id" }));
                return;
            }
            (other, _) => {
                let _ = reply.send(
                    serde_json::json!({ "error": format!("unknown ledger action {other:?}") }),
                );
                return;
            }
        };
        // Decide on the node's channels as they are now, not as of the last step.
        let _ = l.tx.send(In::Views(node.chain_views()));
        let _ = l.tx.send(msg);
    }

    /// `wallet balance` under a ledger: the wallet's answer with the chain's fields merged in.
    pub fn balance(
        &self,
        node: &crate::node::Node,
        wallet_answer: oneshot::Receiver<Value>,
        reply: oneshot::Sender<Value>,
    ) {
        let (btx, brx) = oneshot::channel();
        let _ = self.tx.send(In::Views(node.chain_views()));
        let _ = self.tx.send(In::Balance(btx));
        tokio::spawn(async move {
            let mut w = wallet_answer.await.unwrap_or_default();
            let chain = brx.await.unwrap_or_default();
            if let (Some(o), Some(c)) = (w.as_object_mut(), chain.as_object()) {
                o.remove("note");
                for (k, v) in c {
                    o.insert(k.clone(), v.clone());
                }
            }
            let _ = reply.send(w);
        });
    }

    /// Stop the task.
    pub fn stop(self) {
        self.task.abort();
    }
}
