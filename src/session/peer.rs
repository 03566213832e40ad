//! Per-neighbour session state: up to three keypairs (previous, current, next, as in
//! WireGuard), the handshake in flight, liveness timers and counters. Sans-IO: every method
//! takes `now`, and messages come back as bytes for the node to send.
//! Invariants: only `current` seals; any of the three opens; `next` (a responder's unconfirmed
//! keypair) becomes `current` on the first packet it authenticates.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::aead::TransportAead;
use super::cookie::CookieJar;
use super::handshake::{PeerKeys, PendingInit, SessionKeys};
use super::keypair::{Keypair, OpenError, REJECT_AFTER_MESSAGES, SealJob};
use super::timers::{
    HANDSHAKE_BACKOFF_MAX, MIN_INITIATION_INTERVAL, REKEY_ATTEMPT_TIME, STAGED_PACKETS_MAX, Timers,
};
use crate::identity::NodeId;
use crate::wire::outer::{Kind, TransportHeader};

/// Endpoint hints kept per peer: enough for a node heard on two interfaces, not a list an
/// attacker can grow.
pub const MAX_HINTS: usize = 2;

/// Traffic counters of one neighbour. Bytes are plaintext IP bytes; wire bytes are UDP payload.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PeerStats {
    /// IP bytes received from the peer and delivered.
    pub rx_bytes: u64,
    /// IP bytes sent to the peer.
    pub tx_bytes: u64,
    /// IP packets received and delivered.
    pub rx_packets: u64,
    /// IP packets sent.
    pub tx_packets: u64,
    /// UDP payload bytes received in authenticated transport messages.
    pub rx_wire_bytes: u64,
    /// UDP payload bytes sent in transport messages.
    pub tx_wire_bytes: u64,
    /// Handshakes completed (either role).
    pub handshakes: u64,
}

/// Result of trying to seal an outgoing packet.
pub enum Seal {
    /// Sealed into the buffer: send this many bytes to the endpoint.
    Sent(usize, SocketAddr),
    /// No usable session (or no endpoint): the packet was staged if there was room.
    Staged,
    /// No session and the stage is full: dropped.
    Dropped,
}

/// One neighbour's session state.
pub struct Peer<A> {
    /// Its node id.
    pub id: NodeId,
    /// Its precomputed static keys.
    pub keys: PeerKeys,
    /// Its overlay IPv4 address (cached: the data path checks it per packet).
    pub addr_v4: Ipv4Addr,
    /// Its overlay IPv6 address.
    pub addr_v6: Ipv6Addr,
    /// Where its latest authenticated packet came from (roaming), or its configured endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Whether `endpoint` came from an authenticated packet (not only from config or a hint).
    pub confirmed: bool,
    /// Other addresses a beacon named (unauthenticated): initiations go there too, but only an
    /// authenticated answer from one of them moves `endpoint`. At most [`MAX_HINTS`].
    pub hints: Vec<SocketAddr>,
    /// When something last authenticated under one of its sessions.
    pub last_received: Option<Instant>,
    pub(crate) current: Option<Keypair<A>>,
    pub(crate) previous: Option<Keypair<A>>,
    pub(crate) next: Option<Keypair<A>>,
    pub(crate) pending: Option<PendingInit>,
    /// The cookie it gave us while under load: our initiations carry mac2 under it.
    pub cookies: CookieJar,
    /// When the current series of handshake attempts began.
    attempts_since: Option<Instant>,
    /// When to retransmit the initiation in flight.
    pub(crate) retry_at: Option<Instant>,
    last_init_ts: [u8; 12],
    last_init_rx: Option<Instant>,
    /// Send a keepalive if we have sent nothing by then (we owe the peer a sign of life).
    keepalive_at: Option<Instant>,
    /// Start a new handshake if we have received nothing by then (peer may have restarted).
    unanswered_at: Option<Instant>,
    last_sent: Option<Instant>,
    init_sent_at: Option<Instant>,
    /// When the latest handshake completed.
    pub last_handshake: Option<Instant>,
    staged: VecDeque<Vec<u8>>,
    /// Counters.
    pub stats: PeerStats,
}

impl<A: TransportAead> Peer<A> {
    /// A peer with no session yet.
    pub fn new(id: NodeId, keys: PeerKeys, endpoint: Option<SocketAddr>) -> Self {
        Peer {
            id,
            keys,
            addr_v4: id.ipv4(),
            addr_v6: id.ipv6(),
            endpoint,
            confirmed: false,
            hints: Vec::new(),
            last_received: None,
            current: None,
            previous: None,
            next: None,
            pending: None,
            cookies: CookieJar::default(),
            attempts_since: None,
            retry_at: None,
            last_init_ts: [0; 12],
            last_init_rx: None,
            keepalive_at: None,
            unanswered_at: None,
            last_sent: None,
            init_sent_at: None,
            last_handshake: None,
            staged: VecDeque::new(),
            stats: PeerStats::default(),
        }
    }

    fn usable(k: &Keypair<A>, now: Instant, t: &Timers) -> bool {
        now.saturating_duration_since(k.created) < t.reject_after_time
            && k.sent() < REJECT_AFTER_MESSAGES
    }

    /// Whether a session is up that can seal now.
    pub fn has_session(&self, now: Instant, t: &Timers) -> bool {
        self.current
            .as_ref()
            .is_some_and(|k| Self::usable(k, now, t))
    }

    /// Whether a session is up that seals under the latest handshake's keys: none of ours
    /// waits in `next` for the initiator's first message. While one does, `current` still
    /// seals under the keys before it, which a restarted peer no longer has, so a message
    /// sent only once (a resync, our chain address) must wait for this.
    pub fn has_confirmed_session(&self, now: Instant, t: &Timers) -> bool {
        self.next.is_none() && self.has_session(now, t)
    }

    /// Whether a new initiation should be sent now: none in flight, or its retry is due.
    pub fn handshake_due(&self, now: Instant) -> bool {
        self.pending.is_none() || self.retry_at.is_some_and(|r| now >= r)
    }

    /// Record a freshly sent initiation and schedule its retransmission (with `jitter`).
    pub fn initiation_sent(&mut self, p: PendingInit, now: Instant, t: &Timers, jitter: Duration) {
        let since = *self.attempts_since.get_or_insert(now);
        // Retry at REKEY_TIMEOUT while within REKEY_ATTEMPT_TIME, then back off exponentially.
        let elapsed = now.saturating_duration_since(since);
        let delay = if elapsed < REKEY_ATTEMPT_TIME {
            t.rekey_timeout
        } else {
            let doublings = ((elapsed - REKEY_ATTEMPT_TIME).as_secs() / 30).min(4) as u32;
            (t.rekey_timeout * 2u32.pow(doublings + 1)).min(HANDSHAKE_BACKOFF_MAX)
        };
        self.pending = Some(p);
        self.init_sent_at = Some(now);
        self.retry_at = Some(now + delay + jitter);
        self.mark_sent(now);
    }

    /// When our latest initiation went out (its response gives an RTT sample).
    pub fn last_initiation(&self) -> Option<Instant> {
        self.init_sent_at
    }

    /// Is `index` the index of our initiation in flight?
    pub fn pending_index(&self) -> Option<u32> {
        self.pending.as_ref().map(|p| p.local_index)
    }

    /// Take the initiation in flight (to complete it with a response).
    pub fn take_pending(&mut self) -> Option<PendingInit> {
        self.pending.take()
    }

    /// Check an initiation's timestamp and rate; true if it may be answered.
    pub fn accept_initiation(&mut self, ts: [u8; 12], now: Instant) -> Result<(), InitRefused> {
        if ts <= self.last_init_ts {
            return Err(InitRefused::Stale);
        }
        if self
            .last_init_rx
            .is_some_and(|l| now.saturating_duration_since(l) < MIN_INITIATION_INTERVAL)
        {
            return Err(InitRefused::Flood);
        }
        self.last_init_ts = ts;
        self.last_init_rx = Some(now);
        Ok(())
    }

    /// Install the keys of a handshake we answered: they wait in `next` until confirmed.
    pub fn responder_keys(
        &mut self,
        keys: &SessionKeys,
        local: u32,
        remote: u32,
        now: Instant,
        from: SocketAddr,
    ) {
        self.next = Some(Keypair::new(keys, local, remote, now, false));
        self.confirm_endpoint(from, now);
        self.handshake_done(now);
        self.mark_sent(now);
    }

    /// Install the keys of our completed initiation as `current`. The caller then sends staged
    /// packets, or a keepalive, so the responder can confirm the session.
    pub fn initiator_keys(
        &mut self,
        keys: &SessionKeys,
        local: u32,
        remote: u32,
        now: Instant,
        from: SocketAddr,
    ) {
        let k = Keypair::new(keys, local, remote, now, true);
        // As wireguard-go: an unconfirmed `next` is kept as `previous` so its packets still open.
        self.previous = match self.next.take() {
            Some(n) => Some(n),
            None => self.current.take(),
        };
        self.current = Some(k);
        self.confirm_endpoint(from, now);
        self.pending = None;
        self.retry_at = None;
        self.attempts_since = None;
        self.handshake_done(now);
        self.mark_received();
    }

    /// An authenticated packet came from `from`: that is where the peer is (roaming), and
    /// hints are no longer needed.
    fn confirm_endpoint(&mut self, from: SocketAddr, now: Instant) {
        if self.endpoint != Some(from) {
            self.endpoint = Some(from);
        }
        self.confirmed = true;
        self.last_received = Some(now);
        if !self.hints.is_empty() {
            self.hints.clear();
        }
    }

    /// A beacon said the peer is at `ep` (unauthenticated). It never replaces an endpoint an
    /// authenticated packet confirmed while a session is up; otherwise it becomes the
    /// endpoint if there is none, or a hint tried alongside it. Returns whether it was kept.
    pub fn hint(&mut self, ep: SocketAddr, now: Instant, t: &Timers) -> bool {
        if self.endpoint == Some(ep) || self.hints.contains(&ep) {
            return false;
        }
        if self.confirmed && self.has_session(now, t) {
            return false;
        }
        if self.endpoint.is_none() {
            self.endpoint = Some(ep);
            return true;
        }
        if self.hints.len() >= MAX_HINTS {
            self.hints.remove(0);
        }
        self.hints.push(ep);
        true
    }

    /// No initiation could be sent now (the node's budget for unverified endpoints is spent):
    /// try again at `at`.
    pub fn defer_handshake(&mut self, at: Instant) {
        self.retry_at = Some(at);
    }

    /// The latest instant anything was sent to or authenticated from this peer.
    pub fn last_activity(&self) -> Option<Instant> {
        self.last_received.max(self.last_sent)
    }

    /// Forget every session, handshake, timer and hint (the slot is freed for another peer).
    pub fn reset(&mut self) {
        *self = Peer::new(self.id, self.keys.clone(), None);
    }

    fn handshake_done(&mut self, now: Instant) {
        self.last_handshake = Some(now);
        self.stats.handshakes += 1;
    }

    /// Staged packets waiting for a session, oldest first.
    pub fn take_staged(&mut self) -> VecDeque<Vec<u8>> {
        std::mem::take(&mut self.staged)
    }

    /// Whether packets wait for a session.
    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Hold a packet until the session is up; false if the stage is full.
    pub fn stage(&mut self, packet: &[u8]) -> bool {
        if self.staged.len() >= STAGED_PACKETS_MAX {
            return false;
        }
        self.staged.push_back(packet.to_vec());
        true
    }

    /// Seal the plaintext at `buf[16..16 + len]` with the current session.
    pub fn seal(
        &mut self,
        kind: Kind,
        buf: &mut [u8],
        len: usize,
        now: Instant,
        t: &Timers,
    ) -> Option<(usize, SocketAddr)> {
        self.seal_with(now, t, |k| Some((k.seal(kind, buf, len)?, ())), kind, len)
            .map(|(n, ep, ())| (n, ep))
    }

    /// As [`Peer::seal`], with the AEAD work left to the returned job (which may run on
    /// another thread before the datagram is sent); counters and statistics are final now.
    pub fn seal_deferred(
        &mut self,
        kind: Kind,
        buf: &mut [u8],
        len: usize,
        now: Instant,
        t: &Timers,
    ) -> Option<(usize, SocketAddr, SealJob<A>)> {
        self.seal_with(now, t, |k| k.seal_deferred(kind, buf, len), kind, len)
    }

    /// The current, usable session seals by `f` (which returns the message's length), then
    /// the send is counted.
    fn seal_with<R>(
        &mut self,
        now: Instant,
        t: &Timers,
        f: impl FnOnce(&mut Keypair<A>) -> Option<(usize, R)>,
        kind: Kind,
        len: usize,
    ) -> Option<(usize, SocketAddr, R)> {
        let ep = self.endpoint?;
        let k = self.current.as_mut().filter(|k| Self::usable(k, now, t))?;
        let (n, r) = f(k)?;
        if len > 0 && kind != Kind::Routing {
            self.stats.tx_bytes += len as u64;
            self.stats.tx_packets += 1;
            // Data expects an answer; if none comes, the peer may have lost the session.
            if self.unanswered_at.is_none() {
                self.unanswered_at = Some(now + t.keepalive_timeout + t.rekey_timeout);
            }
        }
        self.stats.tx_wire_bytes += n as u64;
        self.mark_sent(now);
        Some((n, ep, r))
    }

    /// Whether the initiator side should start a rekey (age or message count), WireGuard §6.2.
    pub fn rekey_wanted(&self, now: Instant, t: &Timers) -> bool {
        match &self.current {
            None => true,
            Some(k) => {
                let age = now.saturating_duration_since(k.created);
                (k.initiator && age >= t.rekey_after_time)
                    || k.sent() >= t.rekey_after_messages
                    || !Self::usable(k, now, t)
            }
        }
    }

    /// Open a transport message addressed to one of our keypairs.
    pub fn open(
        &mut self,
        hdr: &TransportHeader,
        msg: &mut [u8],
        from: SocketAddr,
        now: Instant,
        t: &Timers,
    ) -> Result<usize, OpenError> {
        let slot = if self
            .current
            .as_ref()
            .is_some_and(|k| k.local_index == hdr.receiver)
        {
            &mut self.current
        } else if self
            .next
            .as_ref()
            .is_some_and(|k| k.local_index == hdr.receiver)
        {
            &mut self.next
        } else if self
            .previous
            .as_ref()
            .is_some_and(|k| k.local_index == hdr.receiver)
        {
            &mut self.previous
        } else {
            return Err(OpenError::Decrypt);
        };
        let k = slot.as_mut().ok_or(OpenError::Decrypt)?;
        if now.saturating_duration_since(k.created) >= t.reject_after_time {
            return Err(OpenError::Exhausted);
        }
        let n = k.open(hdr, msg)?;
        if self
            .next
            .as_ref()
            .is_some_and(|k| k.local_index == hdr.receiver)
        {
            // The initiator used our response's keys: the session is confirmed.
            self.previous = self.current.take();
            self.current = self.next.take();
        }
        // Roaming: the session follows the latest authenticated packet.
        self.confirm_endpoint(from, now);
        self.stats.rx_wire_bytes += msg.len() as u64;
        self.mark_received();
        if n > 0 && self.keepalive_at.is_none() {
            self.keepalive_at = Some(now + t.keepalive_timeout);
        }
        Ok(n)
    }

    fn mark_sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
        self.keepalive_at = None;
    }

    /// Something authenticated arrived: the peer is alive, no rehandshake is needed.
    fn mark_received(&mut self) {
        self.unanswered_at = None;
    }

    /// Timer work due at `now`.
    pub fn due(&mut self, now: Instant, t: &Timers) -> Due {
        // Forget expired keys, so nothing opens under them.
        for slot in [&mut self.previous, &mut self.current, &mut self.next] {
            if slot
                .as_ref()
                .is_some_and(|k| now.saturating_duration_since(k.created) >= t.reject_after_time)
            {
                *slot = None;
            }
        }
        let mut due = Due::default();
        if self.unanswered_at.is_some_and(|u| now >= u) {
            self.unanswered_at = None;
            due.handshake = true;
        }
        // Also when the initiation was lost to a bad response: `pending` is gone, the retry stays.
        if self.retry_at.is_some_and(|r| now >= r) {
            due.handshake = true;
        }
        if self.keepalive_at.is_some_and(|k| now >= k) {
            self.keepalive_at = None;
            due.keepalive = true;
        }
        if let (Some(p), Some(last)) = (t.persistent_keepalive, self.last_sent)
            && now.saturating_duration_since(last) >= p
        {
            due.keepalive = true;
        }
        due
    }

    /// The earliest instant at which `due` has work.
    pub fn next_deadline(&self, t: &Timers) -> Option<Instant> {
        let expiries = [&self.previous, &self.current, &self.next]
            .into_iter()
            .flatten()
            .map(|k| k.created + t.reject_after_time);
        let persistent = t
            .persistent_keepalive
            .and_then(|p| self.last_sent.map(|l| l + p));
        [
            self.unanswered_at,
            self.keepalive_at,
            self.retry_at,
            persistent,
        ]
        .into_iter()
        .flatten()
        .chain(expiries)
        .min()
    }

    /// The local indices this peer still uses (for the node's index table).
    pub fn owns_index(&self, idx: u32) -> bool {
        [&self.previous, &self.current, &self.next]
            .into_iter()
            .flatten()
            .any(|k| k.local_index == idx)
            || self.pending_index() == Some(idx)
    }
}

/// Why an authenticated initiation is not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitRefused {
    /// Its timestamp is not newer than the last one answered (a replay).
    Stale,
    /// Over the per-peer initiation rate.
    Flood,
}

/// Timer work for one peer.
#[derive(Debug, Default, Clone, Copy)]
pub struct Due {
    /// Send (or resend) a handshake initiation.
    pub handshake: bool,
    /// Send a keepalive.
    pub keepalive: bool,
}
