//! Payer/payee pair tests on a virtual clock with model wallets and a lossy, reordering link.
//! The model wallets follow the real wallet's rules (idempotent replays, refuse non-monotonic),
//! so the invariants checked here are the ones the daemon relies on.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::*;
use crate::identity::Identity;

mod backed;
mod exit;
mod hostile;
mod props;
mod scenarios;

const PRICE: Price = Price::new(1_000_000, 1); // 0.001 CC per MiB
const WINDOW: Amount = Amount::from_units(10_000_000); // 10 MiB of data at PRICE

#[derive(Clone, Debug)]
enum Msg {
    Voucher(Voucher),
    Ack(VoucherAck),
}

/// A model of one side's wallet table: the committed vouchers of one channel.
#[derive(Default, Clone)]
struct ModelWallet {
    vouchers: Vec<Voucher>,
    checkpoint: MeterSnapshot,
}

impl ModelWallet {
    fn latest(&self) -> Option<Voucher> {
        self.vouchers.last().copied()
    }

    /// Same rules as `Wallet::commit_*_voucher`.
    fn commit(&mut self, v: &Voucher) -> Result<(), ()> {
        if let Some(old) = self.vouchers.iter().find(|o| o.seq == v.seq) {
            return if old.body_bytes() == v.body_bytes() {
                Ok(())
            } else {
                Err(())
            };
        }
        match self.latest() {
            Some(l) if !v.is_monotonic_successor_of(&l) => Err(()),
            _ => {
                self.vouchers.push(*v);
                Ok(())
            }
        }
    }
}

struct Pair {
    a: Identity,
    b: Identity,
    params: ChannelParams,
    payer: PayerChannel,
    payee: PayeeChannel,
    payer_wallet: ModelWallet,
    payee_wallet: ModelWallet,
    to_payee: VecDeque<Msg>,
    to_payer: VecDeque<Msg>,
    now: Instant,
    payer_cfg: PayerConfig,
    payee_cfg: PayeeConfig,
    spend_cap: Amount,
}

fn payee_cfg(max_cumulative: Amount) -> PayeeConfig {
    PayeeConfig {
        enforce: EnforceConfig {
            credit_window: WINDOW,
            grace: Duration::from_secs(5),
            free_bytes_per_sec: 10_000,
            free_burst_bytes: 20_000,
        },
        max_cumulative,
        tolerance_bytes: 4 * MIB,
        max_loss_percent: 10,
        min_voucher_interval: Duration::ZERO,
    }
}

impl Pair {
    fn new(spend_cap: Amount, max_cumulative: Amount) -> Pair {
        let a = Identity::from_secret([0xa1; 32]);
        let b = Identity::from_secret([0xb2; 32]);
        let params = ChannelParams {
            payer: a.id(),
            payee: b.id(),
            nonce: 7,
        };
        let payer_cfg = PayerConfig::default();
        let payee_cfg = payee_cfg(max_cumulative);
        let mut payer = PayerChannel::new(params, payer_cfg, PRICE);
        payer.set_spend_cap(spend_cap);
        let payee = PayeeChannel::new(params, payee_cfg, PRICE);
        payer.on_credit_grant(&payee.grant()).unwrap();
        Pair {
            a,
            b,
            params,
            payer,
            payee,
            payer_wallet: ModelWallet::default(),
            payee_wallet: ModelWallet::default(),
            to_payee: VecDeque::new(),
            to_payer: VecDeque::new(),
            now: Instant::now(),
            payer_cfg,
            payee_cfg,
            spend_cap,
        }
    }

    /// Data frame over the link; returns the payee's verdict (None if lost or self-throttled).
    fn data(&mut self, bytes: u64, lost: bool) -> Option<Verdict> {
        if self.payer.throttled() {
            return None;
        }
        self.payer.on_data_sent(bytes);
        (!lost).then(|| self.payee.allow(bytes, self.now))
    }

    fn pump_payer(&mut self) {
        while let Some(act) = self.payer.poll(self.now, &self.a) {
            match act {
                Action::CommitThenSend(v) => {
                    assert!(v.cumulative_amount <= self.spend_cap, "signed over cap");
                    if let Some(l) = self.payer_wallet.latest() {
                        assert!(v.is_monotonic_successor_of(&l), "payer regressed");
                    }
                    assert!(self.payer_wallet.commit(&v).is_ok());
                    if self.payer.committed(&v, self.now) {
                        self.to_payee.push_back(Msg::Voucher(v));
                    }
                }
                Action::Resend(v) => self.to_payee.push_back(Msg::Voucher(v)),
                other => panic!("unexpected payer action {other:?}"),
            }
        }
    }

    fn payee_receive(&mut self, m: Msg) {
        let Msg::Voucher(v) = m else { return };
        let before = self.payee.state().clone();
        let credited = self.payee.credited();
        match self.payee.on_voucher(&v) {
            Ok(Some(Action::CommitThenCredit(v))) => {
                // Credit only after the commit.
                assert_eq!(self.payee.credited(), credited);
                self.payee_wallet.commit(&v).unwrap();
                if let Some(ack) = self.payee.committed(&v) {
                    self.to_payer.push_back(Msg::Ack(ack));
                }
            }
            Ok(Some(Action::SendAck(ack))) => {
                assert_eq!(self.payee.state(), &before);
                self.to_payer.push_back(Msg::Ack(ack));
            }
            Ok(None) => assert_eq!(self.payee.state(), &before),
            Ok(Some(other)) => panic!("unexpected payee action {other:?}"),
            Err(_) => assert_eq!(self.payee.state(), &before, "rejection changed state"),
        }
    }

    fn payer_receive(&mut self, m: Msg) {
        if let Msg::Ack(a) = m {
            let before = self.payer.state().clone();
            if self.payer.on_ack(&a).is_err() {
                assert_eq!(self.payer.state(), &before);
            }
        }
    }

    fn checkpoint(&mut self) {
        self.payer_wallet.checkpoint = self.payer.meter().snapshot();
        self.payee_wallet.checkpoint = self.payee.meter().snapshot();
    }

    /// Restart one or both sides from their wallets; in-flight messages die with the session,
    /// then the new handshake is followed by a resync in both directions.
    fn restart(&mut self, payer: bool, payee: bool) {
        if payer {
            self.payer = PayerChannel::restore(
                self.params,
                self.payer_cfg,
                self.payer.price(),
                self.payer_wallet.latest(),
                &self.payer_wallet.checkpoint,
            );
            self.payer.set_spend_cap(self.spend_cap);
        }
        if payee {
            self.payee = PayeeChannel::restore(
                self.params,
                self.payee_cfg,
                self.payee.price(),
                self.payee_wallet.latest(),
                &self.payee_wallet.checkpoint,
            );
        }
        self.to_payee.clear();
        self.to_payer.clear();
        self.payer.on_credit_grant(&self.payee.grant()).unwrap();
        self.resync();
    }

    fn resync(&mut self) {
        // A resync follows a handshake.
        self.payer.expect_resync();
        let (pr, er) = (self.payer.resync(), self.payee.resync());
        let max_seq = pr
            .latest
            .map_or(0, |v| v.seq)
            .max(er.latest.map_or(0, |v| v.seq));
        let before = self.payee.state().clone();
        match self.payee.on_resync(&pr) {
            Ok(Some(Action::CommitThenCredit(v))) => {
                self.payee_wallet.commit(&v).unwrap();
                self.payee.committed(&v).unwrap();
            }
            Ok(None) => {}
            Ok(other) => panic!("{other:?}"),
            Err(e) => panic!("honest resync rejected: {e:?} {before:?}"),
        }
        match self.payer.on_resync(&er).unwrap() {
            Some(Action::Commit(v)) => self.payer_wallet.commit(&v).unwrap(),
            None => {}
            other => panic!("{other:?}"),
        }
        // Both keep the maximum.
        assert_eq!(self.payee.latest().map_or(0, |v| v.seq), max_seq);
        assert_eq!(self.payer.latest().map_or(0, |v| v.seq), max_seq);
    }

    /// Deliver everything and let timers run with a perfect link until both sides agree.
    fn settle(&mut self) {
        for _ in 0..20 {
            self.pump_payer();
            while let Some(m) = self.to_payee.pop_front() {
                self.payee_receive(m);
            }
            while let Some(m) = self.to_payer.pop_front() {
                self.payer_receive(m);
            }
            self.now += self.payer_cfg.pay_interval;
        }
    }
}
