//! The socket-free receive side of discovery: filters, verifies and deduplicates beacons and
//! decides what to report. Invariants: a beacon is reported only if its signature checks and
//! its counter is above the last one accepted for its id (checked before the signature, so
//! replays cost no verification); counters of ids that became neighbours (configured peers,
//! and ids the node reports as verified by a handshake) are kept apart from the bounded,
//! evicting cache of strangers, so a flood of fake ids cannot flush them to re-admit a replay.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::config::DiscoveryAccept;
use crate::identity::NodeId;
use crate::wire::discovery::{Beacon, BeaconError};

/// A sender already reported is reported again after this long, even if nothing changed.
pub const REPORT_REFRESH: Duration = Duration::from_secs(60);
/// A sender not heard from for this long is forgotten (its counter with it).
pub const FORGET_AFTER: Duration = Duration::from_secs(180);
/// At most this many strangers are remembered; beyond it the least recently heard is dropped.
pub const MAX_TRACKED: usize = 1024;
/// At most this many neighbours' counters are kept (the node's neighbour cap); never evicted
/// by strangers, beyond it no more are protected.
pub const MAX_NEIGHBOURS_TRACKED: usize = 1024;
/// A neighbour's counter is forgotten only after this much silence.
pub const NEIGHBOUR_FORGET_AFTER: Duration = Duration::from_secs(3600);
/// A neighbour found on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// Its node id (proven by the beacon's signature).
    pub id: NodeId,
    /// Its UDP endpoint: the beacon's source IPv4 address with the beacon's port.
    pub endpoint: SocketAddr,
    /// The interface the beacon arrived on.
    pub interface: String,
}

/// Why a received datagram was not reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    /// Not a well-formed beacon.
    #[error("malformed beacon: {0}")]
    Malformed(#[from] BeaconError),
    /// The source address cannot be an endpoint (unspecified, multicast or broadcast).
    #[error("unusable source address {0}")]
    BadSource(Ipv4Addr),
    /// Our own beacon.
    #[error("our own beacon")]
    Own,
    /// `accept = "configured"` and the sender is not a configured peer.
    #[error("sender {0} is not a configured peer")]
    NotConfigured(NodeId),
    /// The counter is not newer than the last accepted one for this id (replay or duplicate).
    #[error("stale counter {counter} from {id} (have {newest})")]
    Stale {
        /// The sender.
        id: NodeId,
        /// The beacon's counter.
        counter: u64,
        /// The newest counter accepted for it.
        newest: u64,
    },
    /// The signature does not verify under the claimed id.
    #[error("bad signature for {0}")]
    BadSignature(NodeId),
}

pub(super) struct Seen {
    pub(super) counter: u64,
    pub(super) endpoint: SocketAddr,
    pub(super) heard: Instant,
    pub(super) reported: Instant,
}

/// Socket-free state of the receive side: filters, verifies and deduplicates beacons.
pub struct Tracker {
    own: NodeId,
    accept: DiscoveryAccept,
    configured: HashSet<NodeId>,
    /// Strangers: bounded, least recently heard evicted.
    pub(super) seen: HashMap<NodeId, Seen>,
    /// Neighbours (configured or verified): never evicted by strangers.
    pub(super) neighbours: HashMap<NodeId, Seen>,
}

impl Tracker {
    /// A tracker for node `own`, reporting per `accept` (`configured` lists the `[[peer]]` ids).
    pub fn new(
        own: NodeId,
        accept: DiscoveryAccept,
        configured: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        Tracker {
            own,
            accept,
            configured: configured.into_iter().collect(),
            seen: HashMap::new(),
            neighbours: HashMap::new(),
        }
    }

    /// Handle one datagram from `src` on `interface`: `Ok(Some(_))` to report, `Ok(None)` for
    /// a valid fresh beacon with nothing new, `Err(_)` for one that is ignored.
    pub fn on_datagram(
        &mut self,
        bytes: &[u8],
        src: SocketAddrV4,
        interface: &str,
        now: Instant,
    ) -> Result<Option<Discovered>, Ignored> {
        let b = Beacon::decode(bytes)?;
        let ip = *src.ip();
        if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
            return Err(Ignored::BadSource(ip));
        }
        if b.id == self.own {
            return Err(Ignored::Own);
        }
        if self.accept == DiscoveryAccept::Configured && !self.configured.contains(&b.id) {
            return Err(Ignored::NotConfigured(b.id));
        }
        // Cheap checks first: a replayed or duplicate beacon costs no signature check.
        if let Some(s) = self.neighbours.get(&b.id).or_else(|| self.seen.get(&b.id))
            && b.counter <= s.counter
        {
            return Err(Ignored::Stale {
                id: b.id,
                counter: b.counter,
                newest: s.counter,
            });
        }
        if !b.verify() {
            return Err(Ignored::BadSignature(b.id));
        }
        let endpoint = SocketAddr::V4(SocketAddrV4::new(ip, b.port));
        let report = Discovered {
            id: b.id,
            endpoint,
            interface: interface.to_string(),
        };
        let known = match self.neighbours.get_mut(&b.id) {
            Some(s) => Some(s),
            None => self.seen.get_mut(&b.id),
        };
        if let Some(s) = known {
            s.counter = b.counter;
            s.heard = now;
            if s.endpoint == endpoint && now.saturating_duration_since(s.reported) < REPORT_REFRESH
            {
                return Ok(None);
            }
            s.endpoint = endpoint;
            s.reported = now;
            return Ok(Some(report));
        }
        let fresh = Seen {
            counter: b.counter,
            endpoint,
            heard: now,
            reported: now,
        };
        if self.configured.contains(&b.id) && self.neighbours.len() < MAX_NEIGHBOURS_TRACKED {
            self.neighbours.insert(b.id, fresh);
            return Ok(Some(report));
        }
        if self.seen.len() >= MAX_TRACKED
            && let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, s)| s.heard)
                .map(|(id, _)| *id)
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(b.id, fresh);
        Ok(Some(report))
    }

    /// The node completed a handshake with `id`: keep its counter among the neighbours', out
    /// of reach of strangers' evictions. False if that table is full.
    pub fn protect(&mut self, id: NodeId, now: Instant) -> bool {
        if self.neighbours.contains_key(&id) {
            return true;
        }
        if self.neighbours.len() >= MAX_NEIGHBOURS_TRACKED {
            return false;
        }
        let s = self.seen.remove(&id).unwrap_or(Seen {
            counter: 0,
            endpoint: SocketAddr::from(([0, 0, 0, 0], 0)),
            heard: now,
            reported: now,
        });
        self.neighbours.insert(id, s);
        true
    }

    /// Forget strangers not heard from for [`FORGET_AFTER`], neighbours after
    /// [`NEIGHBOUR_FORGET_AFTER`].
    pub fn expire(&mut self, now: Instant) {
        self.seen
            .retain(|_, s| now.saturating_duration_since(s.heard) < FORGET_AFTER);
        self.neighbours
            .retain(|_, s| now.saturating_duration_since(s.heard) < NEIGHBOUR_FORGET_AFTER);
    }

    /// How many senders are remembered (strangers and neighbours).
    pub fn len(&self) -> usize {
        self.seen.len() + self.neighbours.len()
    }

    /// Whether no sender is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty() && self.neighbours.is_empty()
    }
}
