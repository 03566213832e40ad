//! Exit fees on the data path (docs/payments.md, "Exit fees"): the end-to-end payment channel
//! from a client to the exit it uses (nonce [`EXIT_CHANNEL_NONCE`], apart from the link
//! channels that pay relays). Owns the exit-fee meters and the exit's ladder: the client meters
//! every internet-bound IP packet it hands towards its exit in use and every internet-sourced
//! packet it accepts from that exit; the exit meters every client packet it hands its TUN for
//! the internet and every internet reply it sends back. Invariants: only inner IP packet bytes
//! are metered (the same number on both ends), never channel messages; a client meters only
//! for its exit in use, at most the fee that exit announced in routing, so nobody else can bill
//! it; the exit judges only a client's internet traffic, never frames for the exit node itself;
//! channel state is bounded by [`MAX_EXIT_ACCOUNTS`] per side.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use super::{HEADROOM, Node, inner, ip_src_dst};
use crate::drops::DropReason;
use crate::identity::NodeId;
use crate::money::{
    Amount, ChannelParams, EXIT_CHANNEL_NONCE, PayeeChannel, PayerChannel, Price, PriceQuote,
    Verdict,
};
use crate::session::aead::TransportAead;

#[path = "exit_money_chain.rs"]
mod chain;
#[path = "exit_money_chan.rs"]
mod chan;

/// The share of the bytes an exit sent a client that the client may report never receiving
/// without being shaped: its download loss tolerance, in percent. The client pays for what it
/// received; the exit forgives nothing, but tolerates this much unpaid debt on top of the
/// credit window, so honest loss never shapes a client and a client claiming more loss than
/// this is shaped, then cut, like any debtor.
pub const DOWNLOAD_LOSS_PERCENT: u64 = 5;

/// Most exit channels held on each side (a client's exits, an exit's clients): one per
/// end-to-end session at most. Beyond it an account with nothing metered or signed makes room,
/// or the new client is refused.
pub const MAX_EXIT_ACCOUNTS: usize = super::mesh::MAX_E2E_SESSIONS;

/// Our channel paying an exit we use (client side).
#[derive(Debug)]
pub(super) struct ExitPayer {
    pub(super) payer: PayerChannel,
    /// The exit fee the exit announces in routing (refreshed at each money poll): we never
    /// meter above it, whatever it quotes.
    announced: u64,
    /// The end-to-end session is new: send our resync when it can carry it.
    resync_due: bool,
    /// The exit's latest quote above the fee it announced: taken once routing announces it.
    held_quote: Option<PriceQuote>,
    /// Registered in the wallet.
    registered: bool,
    /// Meter totals at the last checkpoint.
    checkpointed: (u64, Amount),
    /// The exit's proven chain address (under a ledger).
    peer_chain: Option<[u8; 20]>,
    /// We held traffic back for lack of credit: under a ledger, open an on-chain channel.
    wants_backing: bool,
}

/// A client's channel paying us as its exit (exit side).
#[derive(Debug)]
pub(super) struct ExitPayee {
    pub(super) payee: PayeeChannel,
    /// Bytes we sent the client from the internet: its tolerated loss is a share of them.
    down_bytes: u64,
    resync_due: bool,
    /// Restored (after our restart, or an eviction): the client's first resync may raise our
    /// meter.
    fresh: bool,
    /// Meter total at our last report, and when it went out.
    reported_bytes: u64,
    reported_at: Option<Instant>,
    /// A packet of the client's internet traffic was judged since the last report: even if we
    /// carried none of it (shaped, cut), the client must hear our count, or it pays for what
    /// we dropped.
    seen: bool,
    /// When the client last sent or got internet traffic or a channel message (eviction).
    last_active: Option<Instant>,
    registered: bool,
    checkpointed: (u64, Amount),
    /// The client's proven chain address (under a ledger).
    peer_chain: Option<[u8; 20]>,
    /// When we last passed an offer of the client's on (rate limit, as on links).
    offer_at: Option<Instant>,
}

impl ExitPayee {
    /// Meter `bytes` of the client's internet traffic. Billed at the channel's price (our fee
    /// at the epoch the client was quoted), never above our exit fee now (`fee_now`): a fee
    /// that fell applies at once, as the client meters at most what we announce; one that rose
    /// waits for a new price epoch and the client's acceptance ([`PayeeChannel::billing_price`]).
    fn bill(&mut self, fee_now: u64, bytes: u64) {
        let chan = self.payee.price();
        let billed = Price::new(chan.units_per_mib.min(fee_now), chan.epoch);
        let p = self.payee.billing_price(billed);
        self.payee.record_at(p, bytes);
    }

    /// Unpaid debt tolerated beyond the window: [`DOWNLOAD_LOSS_PERCENT`] of what we sent down.
    fn allowance(&self) -> Amount {
        let lost = self.down_bytes.saturating_mul(DOWNLOAD_LOSS_PERCENT) / 100;
        Price::new(self.payee.price().units_per_mib, 0).cost(lost)
    }
}

/// Every exit channel of the node.
#[derive(Debug)]
pub(super) struct ExitMoney {
    pub(super) payers: HashMap<NodeId, ExitPayer>,
    pub(super) payees: HashMap<NodeId, ExitPayee>,
    /// Tests only: bill clients this fee whatever we announce (a hostile exit).
    bill_override: Option<u64>,
    /// Tests only: meter this percentage of the internet bytes we receive (a client that
    /// claims loss); 100 otherwise.
    download_percent: u64,
}

impl Default for ExitMoney {
    fn default() -> Self {
        ExitMoney {
            payers: HashMap::new(),
            payees: HashMap::new(),
            bill_override: None,
            download_percent: 100,
        }
    }
}

impl ExitMoney {
    /// Client side: make room for one more exit if the table is full, dropping one with
    /// nothing metered or signed. False if every one holds money state (a client opens a
    /// channel only to an exit it chose, so this takes that many exits with money on them).
    fn room_for_exit(&mut self) -> bool {
        let map = &mut self.payers;
        if map.len() < MAX_EXIT_ACCOUNTS {
            return true;
        }
        let victim = map.iter().find(|(_, a)| blank_payer(a)).map(|(id, _)| *id);
        victim.is_some_and(|v| map.remove(&v).is_some())
    }
}

fn blank_payer(p: &ExitPayer) -> bool {
    p.payer.latest().is_none() && p.payer.meter().total_bytes() == 0
}

fn blank_payee(p: &ExitPayee) -> bool {
    p.payee.latest().is_none() && p.payee.meter().total_bytes() == 0
}

impl<A: TransportAead> Node<A> {
    /// Tests only (a hostile exit): bill our clients `fee` per MiB whatever we announce in
    /// routing. Applies to clients whose channel opens afterwards.
    pub fn set_exit_fee_billed(&mut self, fee: Option<u64>) {
        self.money.exit.bill_override = fee;
    }

    /// Tests only (a client claiming loss): meter only `percent` of the internet bytes we
    /// accept from our exit.
    pub fn set_exit_download_metering(&mut self, percent: u64) {
        self.money.exit.download_percent = percent.min(100);
    }

    /// Become (or stop being) an exit billing `fee_per_mib` per MiB of client traffic both
    /// ways, under the new price epoch `epoch` (above the current one; the daemon persists
    /// epochs as for [`Node::set_fee_epoch`]). Clients are quoted the new fee under the new
    /// epoch, and a rise is billed once they accept it; without a new epoch
    /// ([`Node::set_exit_role`] alone) a fall still applies at once, a rise not until the next
    /// epoch.
    pub fn set_exit_fee_epoch(&mut self, exit: bool, fee_per_mib: u64, epoch: u32, now: Instant) {
        self.router.set_exit(exit, fee_per_mib, now);
        let fee = self.router.config().fee_per_mib;
        self.set_fee_epoch(fee, epoch, now);
    }

    /// What we bill clients as an exit: our exit fee at our price epoch.
    pub(super) fn exit_fee_price(&self) -> Price {
        let rc = self.router.config();
        let fee = self.money.exit.bill_override.unwrap_or(rc.exit_fee_per_mib);
        Price::new(fee, rc.price_epoch)
    }

    /// The exit fee `exit` announces in routing (0 if it announces no default route).
    pub(super) fn announced_exit_fee(&self, exit: &NodeId) -> u64 {
        self.router
            .exit_routes()
            .iter()
            .find(|r| r.id == *exit)
            .map_or(0, |r| r.exit_fee_per_mib())
    }

    /// Our channel paying `exit`, created (or restored) on first use.
    fn exit_payer(&mut self, exit: NodeId) -> Option<&mut ExitPayer> {
        if !self.money.exit.payers.contains_key(&exit) {
            if !self.money.exit.room_for_exit() {
                return None;
            }
            let announced = self.announced_exit_fee(&exit);
            let params = ChannelParams {
                payer: self.id,
                payee: exit,
                nonce: EXIT_CHANNEL_NONCE,
            };
            let m = &mut self.money;
            let restored = m.restored.remove(&params.id());
            let registered = restored.is_some();
            let r = restored.unwrap_or_default();
            // Until the exit quotes, meter at the fee it announced, under epoch 0: a quote of
            // the same fee at epoch 0 is then no contradiction, and one at its real epoch
            // opens a new bucket (at most one unit of rounding apart from the exit's meter).
            let price = Price::new(announced, 0);
            let mut payer = PayerChannel::restore(params, m.cfg.payer, price, r.latest, &r.meter);
            if self.chain.ours.is_some() {
                payer.set_backing(self.chain.backings.get(&params.id()).cloned());
            }
            let paid = r.latest.map_or(Amount::ZERO, |v| v.cumulative_amount);
            payer.set_spend_cap(paid.saturating_add(m.cfg.headroom));
            if !registered {
                // New in this process: our meter lost nothing, so no count of the exit's may
                // raise it (it could only be a hostile exit's claim).
                payer.forgo_resync_raise();
            }
            let checkpointed = (r.meter.total_bytes(), r.meter.total_cost());
            tracing::debug!(exit = %exit, announced, "exit channel opened");
            m.exit.payers.insert(
                exit,
                ExitPayer {
                    payer,
                    announced,
                    resync_due: true,
                    held_quote: None,
                    registered,
                    checkpointed,
                    peer_chain: None,
                    wants_backing: false,
                },
            );
        }
        self.money.exit.payers.get_mut(&exit)
    }

    /// A client's channel paying us as its exit, created (or restored) on first use.
    fn exit_payee(&mut self, client: NodeId) -> Option<&mut ExitPayee> {
        if !self.money.exit.payees.contains_key(&client) {
            self.room_for_client();
            let price = self.exit_fee_price();
            let params = ChannelParams {
                payer: client,
                payee: self.id,
                nonce: EXIT_CHANNEL_NONCE,
            };
            let m = &mut self.money;
            let restored = m.restored.remove(&params.id());
            let fresh = restored.is_some();
            let r = restored.unwrap_or_default();
            // A client is a stranger (any node with a route to us): the smaller window of a
            // discovered neighbour, so a minted id gets little service on credit.
            let mut cfg = m.cfg.payee;
            let w = &mut cfg.enforce.credit_window;
            *w = (*w).min(m.cfg.unknown_credit_window);
            let mut payee = PayeeChannel::restore(params, cfg, price, r.latest, &r.meter);
            if self.chain.ours.is_some() {
                payee.require_backing();
                payee.set_backing(self.chain.backings.get(&params.id()).cloned());
            }
            let checkpointed = (r.meter.total_bytes(), r.meter.total_cost());
            m.exit.payees.insert(
                client,
                ExitPayee {
                    payee,
                    // Restored: which share went down is not stored, so the tolerance covers
                    // the whole count (it postpones shaping, it forgives nothing).
                    down_bytes: r.meter.total_bytes(),
                    resync_due: true,
                    fresh,
                    reported_bytes: 0,
                    reported_at: None,
                    seen: false,
                    last_active: None,
                    registered: fresh,
                    checkpointed,
                    peer_chain: None,
                    offer_at: None,
                },
            );
        }
        self.money.exit.payees.get_mut(&client)
    }

    /// Exit side: make room for one more client if the table is full: one with nothing metered
    /// or signed goes, or else the one idle longest, its channel checkpointed and kept with
    /// the restored ones (as after a restart), so a return finds its debt and vouchers, and a
    /// flood of fresh ids cannot lock paying clients out.
    fn room_for_client(&mut self) {
        let e = &mut self.money.exit;
        if e.payees.len() < MAX_EXIT_ACCOUNTS {
            return;
        }
        let victim = e
            .payees
            .iter()
            .find(|(_, a)| blank_payee(a))
            .or_else(|| e.payees.iter().min_by_key(|(_, a)| a.last_active))
            .map(|(id, _)| *id);
        let Some(a) = victim.and_then(|v| e.payees.remove(&v)) else {
            return;
        };
        if blank_payee(&a) {
            return;
        }
        let (id, snap) = (a.payee.id(), a.payee.meter().snapshot());
        let m = &mut self.money;
        if !a.registered {
            m.ops
                .push_back(super::WalletOp::EnsureIncoming(*a.payee.params()));
        }
        m.ops
            .push_back(super::WalletOp::Checkpoint(vec![(id, snap.clone())]));
        let latest = a.payee.latest();
        m.restored.insert(
            id,
            super::Restored {
                latest,
                meter: snap,
            },
        );
    }

    /// The price a client meters at for its exit: the exit's accepted quote, never above the
    /// fee the exit announces now.
    fn client_price(p: &ExitPayer) -> Price {
        let q = p.payer.price();
        Price::new(q.units_per_mib.min(p.announced), q.epoch)
    }

    /// Client: an internet-bound TUN packet of `len` bytes for our exit `exit`. Metered at the
    /// exit's fee before it is sealed (one the exit never receives shows in its reports and is
    /// not paid); held back if we cannot pay for more (self-throttle).
    pub(super) fn send_internet_paid(
        &mut self,
        exit: NodeId,
        now: Instant,
        buf: &mut [u8],
        len: usize,
    ) -> Option<(Range<usize>, SocketAddr)> {
        let pay = self.money.cfg.pay;
        let wallet_ok = self.money.health.ok();
        let Some(p) = self.exit_payer(exit) else {
            self.drops.add(DropReason::SelfThrottled);
            return None;
        };
        if pay && p.payer.throttled() {
            // Under a ledger: we would pay the exit if we could (an on-chain channel is
            // opened on demand).
            p.wants_backing = true;
            self.drops.add(DropReason::SelfThrottled);
            return None;
        }
        // Our wallet cannot store a voucher: no paid internet traffic we could not pay for.
        if pay && !wallet_ok && Self::client_price(p).units_per_mib > 0 {
            self.drops.add(DropReason::WalletUnavailable);
            return None;
        }
        let price = Self::client_price(p);
        p.payer.on_data_sent_at(price, len as u64);
        self.money.stats.exit_fee_bytes_up += len as u64;
        self.send_via(exit, now, buf, len)
    }

    /// An IP packet `pkt` from node `from`'s end-to-end session passed the address checks and
    /// is about to reach the TUN. Client: a reply from the internet from our exit is metered at
    /// its fee. Exit: a client packet for the internet passes the client's ladder and is
    /// metered. False if it must be dropped (the client does not pay).
    pub(super) fn bill_e2e_inbound(&mut self, from: NodeId, pkt: &[u8], now: Instant) -> bool {
        let from_our_exit = self.exit_in_use == Some(from);
        if !from_our_exit && !self.router.config().exit {
            return true; // neither a client of `from` nor an exit: nothing to bill, no parse
        }
        let Some((src, dst)) = ip_src_dst(pkt) else {
            return true;
        };
        let len = pkt.len() as u64;
        if from_our_exit && inner::internet(src) {
            let pct = self.money.exit.download_percent;
            if let Some(p) = self.exit_payer(from) {
                let price = Self::client_price(p);
                p.payer
                    .on_data_sent_at(price, len.saturating_mul(pct) / 100);
            }
            self.money.stats.exit_fee_bytes_down += len;
            return true;
        }
        if !(self.router.config().exit && inner::internet(dst)) {
            return true; // for us: free
        }
        self.exit_judge_and_bill(from, len, false, now)
    }

    /// Exit side: the client's ladder for `len` more bytes of its internet traffic (`down`:
    /// a reply to it), and the bill if they pass. False if they must be dropped.
    fn exit_judge_and_bill(&mut self, client: NodeId, len: u64, down: bool, now: Instant) -> bool {
        let fee_now = self.exit_fee_price().units_per_mib;
        // Our wallet cannot store the client's vouchers: paid exit service pauses, unbilled.
        if fee_now > 0 && !self.money.health.ok() {
            self.drops.add(DropReason::WalletUnavailable);
            return false;
        }
        let Some(a) = self.exit_payee(client) else {
            self.drops.add(DropReason::E2eSessionsFull);
            return false;
        };
        let v = a.payee.judge_allowing(len, a.allowance(), now);
        a.seen = true;
        a.last_active = Some(now);
        if v.is_forward() {
            a.bill(fee_now, len);
            if down {
                a.down_bytes = a.down_bytes.saturating_add(len);
            }
            let st = &mut self.money.stats;
            let n = if down {
                &mut st.exit_billed_bytes_down
            } else {
                &mut st.exit_billed_bytes_up
            };
            *n += len;
        }
        match v {
            Verdict::Forward => true,
            Verdict::DropShaped => {
                self.drops.add(DropReason::UnpaidShaped);
                false
            }
            Verdict::DropCut => {
                self.drops.add(DropReason::UnpaidCut);
                false
            }
        }
    }

    /// Whether the TUN packet at `buf[HEADROOM..HEADROOM + len]` is, on an exit, a reply from
    /// the internet (an internet source): one header parse, on exits only.
    pub(super) fn is_exit_reply(&self, buf: &[u8], len: usize) -> bool {
        self.router.config().exit
            && buf
                .get(HEADROOM..HEADROOM + len)
                .and_then(ip_src_dst)
                .is_some_and(|(src, _)| inner::internet(src))
    }

    /// [`Node::send_routed`] for a TUN packet to node `dest`. On an exit, a reply from the
    /// internet to a client passes the client's ladder and is metered at our fee; anything
    /// else is sent as it is.
    pub(super) fn send_routed_billed(
        &mut self,
        dest: NodeId,
        next_hop: NodeId,
        now: Instant,
        buf: &mut [u8],
        len: usize,
    ) -> Option<(Range<usize>, SocketAddr)> {
        let reply = self.is_exit_reply(buf, len);
        // Metered before it is sealed, as the client meters its uploads: one the client never
        // receives (dropped here or on the way) is the download gap the client does not pay,
        // within `DOWNLOAD_LOSS_PERCENT` before it counts against the window.
        if reply && !self.exit_judge_and_bill(dest, len as u64, true, now) {
            return None;
        }
        self.send_routed(dest, next_hop, now, buf, len)
    }

    /// An end-to-end handshake with `peer` completed: resync our exit channels with it.
    pub(super) fn exit_money_handshake(&mut self, peer: NodeId) {
        let e = &mut self.money.exit;
        if let Some(p) = e.payers.get_mut(&peer) {
            p.resync_due = true;
            p.payer.expect_resync();
        }
        if let Some(p) = e.payees.get_mut(&peer) {
            p.resync_due = true;
        }
    }
}

#[cfg(test)]
#[path = "exit_money_tests.rs"]
mod tests;
