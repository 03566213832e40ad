//! WireGuard's timer constants (whitepaper §6.1), configurable so tests can force a rekey.

use std::time::Duration;

/// Initiators rekey a session this old when they next send (REKEY_AFTER_TIME, §6.1).
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// No session older than this seals or opens (REJECT_AFTER_TIME, §6.1).
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// Retransmit an unanswered initiation after this (REKEY_TIMEOUT, §6.1).
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Keep retrying at REKEY_TIMEOUT for this long, then back off (REKEY_ATTEMPT_TIME, §6.1).
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// Send a keepalive if we received data and sent nothing for this long (KEEPALIVE_TIMEOUT, §6.1).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Rekey after this many messages (REKEY_AFTER_MESSAGES, §6.1).
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// Longest pause between handshake retries once REKEY_ATTEMPT_TIME has passed. Ours, not
/// WireGuard's: mesh links to configured neighbours never give up, they slow down.
pub const HANDSHAKE_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// At most one initiation per peer per this interval is answered (WireGuard's
/// INITIATIONS_PER_SECOND = 50), so a replayed-initiation flood costs little.
pub const MIN_INITIATION_INTERVAL: Duration = Duration::from_millis(20);
/// Packets held per peer while its handshake is in flight (wireguard-go: QueueStagedSize 128).
pub const STAGED_PACKETS_MAX: usize = 128;

/// The timer settings in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// REKEY_AFTER_TIME.
    pub rekey_after_time: Duration,
    /// REJECT_AFTER_TIME.
    pub reject_after_time: Duration,
    /// REKEY_TIMEOUT.
    pub rekey_timeout: Duration,
    /// KEEPALIVE_TIMEOUT.
    pub keepalive_timeout: Duration,
    /// REKEY_AFTER_MESSAGES.
    pub rekey_after_messages: u64,
    /// Send something at least this often, for NATs and to notice dead peers (off if None).
    pub persistent_keepalive: Option<Duration>,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            rekey_after_time: REKEY_AFTER_TIME,
            reject_after_time: REJECT_AFTER_TIME,
            rekey_timeout: REKEY_TIMEOUT,
            keepalive_timeout: KEEPALIVE_TIMEOUT,
            rekey_after_messages: REKEY_AFTER_MESSAGES,
            persistent_keepalive: None,
        }
    }
}
