//! The node's interface to money outside it: its settings ([`MoneyConfig`]), the durable
//! steps it asks of the wallet ([`WalletOp`]) and their outcomes ([`WalletDone`]), what a
//! restart restores ([`Restored`]), and traffic counters. Plain values, no behaviour.

use std::time::Duration;

use crate::money::{
    Amount, ChannelId, ChannelParams, MeterSnapshot, PayeeConfig, PayerConfig, Voucher,
};

/// Money settings of a node.
#[derive(Clone, Debug)]
pub struct MoneyConfig {
    /// Our side as payer: pay interval, resend, default window.
    pub payer: PayerConfig,
    /// Our side as payee: credit window, grace, free tier, channel limit.
    pub payee: PayeeConfig,
    /// Sign vouchers and self-throttle. `false` exists only to test enforcement (config
    /// `[testing] pay = false`): the node forwards and never pays.
    pub pay: bool,
    /// How often meters are checkpointed to the wallet.
    pub checkpoint_interval: Duration,
    /// How much more the wallet lets us pay in total (updated after each commit).
    pub headroom: Amount,
    /// The credit window granted to a neighbour found by discovery rather than configured
    /// (`[wallet] unknown_credit_window`; never above `payee`'s window).
    pub unknown_credit_window: Amount,
}

/// Default `[wallet] unknown_credit_window`: a tenth of the default credit window
/// (docs/money.md, "What a node can lose").
pub const DEFAULT_UNKNOWN_CREDIT_WINDOW: Amount = Amount::from_units(1_000_000);

impl Default for MoneyConfig {
    fn default() -> Self {
        MoneyConfig {
            payer: PayerConfig::default(),
            payee: PayeeConfig::default(),
            pay: true,
            checkpoint_interval: Duration::from_secs(3),
            headroom: Amount::from_cc(1),
            unknown_credit_window: DEFAULT_UNKNOWN_CREDIT_WINDOW,
        }
    }
}

/// A durable step for the wallet. The caller performs them in order and reports each
/// commit back with [`super::Node::wallet_done`]; the node acts on a voucher only after that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalletOp {
    /// Register the channel where we pay `params.payee` (idempotent).
    EnsureOutgoing(ChannelParams),
    /// Register the channel where `params.payer` pays us (idempotent).
    EnsureIncoming(ChannelParams),
    /// Store a voucher we signed; report [`WalletDone::Outgoing`].
    CommitOutgoing(Voucher),
    /// Store a voucher of ours learned back in a resync; report [`WalletDone::Outgoing`].
    AdoptOutgoing(Voucher),
    /// Store a verified incoming voucher; report [`WalletDone::Incoming`].
    CommitIncoming(Voucher),
    /// Store meter checkpoints (never lowers one). Nothing to report.
    Checkpoint(Vec<(ChannelId, MeterSnapshot)>),
}

/// Whether the wallet can store anything now (docs/wallet-failure.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WalletState {
    /// Commits work.
    #[default]
    Ok,
    /// The file system is full (`SQLITE_FULL`, `ENOSPC`).
    DiskFull,
    /// The file system or the file is read-only.
    ReadOnly,
    /// Another storage failure (I/O error, cannot open).
    Error,
}

impl WalletState {
    /// The stable name in `status --json`, `wallet --json` and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            WalletState::Ok => "ok",
            WalletState::DiskFull => "disk_full",
            WalletState::ReadOnly => "read_only",
            WalletState::Error => "error",
        }
    }
}

/// The wallet's condition as the daemon last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WalletHealth {
    /// `ok`, `disk_full`, `read_only` or `error`.
    pub state: WalletState,
    /// The storage error that caused it (none while `ok`).
    pub error: Option<String>,
    /// Since when (Unix ms, wall clock of the daemon) it is in this state.
    pub since_unix_ms: u64,
}

impl WalletHealth {
    /// True if commits work.
    pub fn ok(&self) -> bool {
        self.state == WalletState::Ok
    }
}

/// The outcome of a commit, or news from the wallet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalletDone {
    /// An outgoing voucher: stored (`ok`) or refused; the wallet's remaining spend headroom.
    Outgoing {
        /// The voucher.
        voucher: Voucher,
        /// Whether it is durable now.
        ok: bool,
        /// How much more we may pay in total.
        headroom: Amount,
    },
    /// An incoming voucher: stored (`ok`) or refused.
    Incoming {
        /// The voucher.
        voucher: Voucher,
        /// Whether it is durable now.
        ok: bool,
    },
    /// The wallet's condition changed (it failed, or works again).
    Health(WalletHealth),
    /// The wallet works again and made this new price epoch durable (the node was running
    /// without a fresh epoch, or stored nothing for a while): apply it to our fee.
    Epoch(u32),
}

/// Wallet state of one channel, to restore after a restart.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    /// Latest committed voucher.
    pub latest: Option<Voucher>,
    /// Last meter checkpoint.
    pub meter: MeterSnapshot,
}

/// Payment-channel traffic, for the overhead figure (payment bytes per GB carried).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct MoneyStats {
    /// Channel frames sent.
    pub frames_sent: u64,
    /// Their datagram bytes (link header and tag included).
    pub bytes_sent: u64,
    /// Channel frames received.
    pub frames_received: u64,
    /// Their datagram bytes.
    pub bytes_received: u64,
    /// End-to-end channel messages with exits or clients (exit fees) sent.
    pub exit_frames_sent: u64,
    /// Their plaintext bytes (end-to-end and mesh headers, tags and link layer not included).
    pub exit_bytes_sent: u64,
    /// End-to-end channel messages received.
    pub exit_frames_received: u64,
    /// Their plaintext bytes.
    pub exit_bytes_received: u64,
    /// As a client: inner IP bytes sent to our exit in use, metered at its fee.
    pub exit_fee_bytes_up: u64,
    /// As a client: inner IP bytes from the internet accepted from our exit, metered.
    pub exit_fee_bytes_down: u64,
    /// As an exit: client bytes handed to our TUN for the internet, billed at our fee.
    pub exit_billed_bytes_up: u64,
    /// As an exit: internet bytes sent back to clients, billed at our fee.
    pub exit_billed_bytes_down: u64,
}
