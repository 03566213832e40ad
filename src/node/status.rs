//! Read-only views of the node for `status`, `peers` and `routes`.

use std::collections::BTreeMap;
use std::time::Instant;

use super::Node;
use crate::identity::NodeId;
use crate::session::aead::TransportAead;
use crate::session::peer::PeerStats;

/// How a neighbour became one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Found {
    /// A `[[peer]]` in the config.
    Config,
    /// LAN discovery.
    Discovery,
}

/// A neighbour's state for `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerStatus {
    /// Node id.
    pub id: NodeId,
    /// Current endpoint.
    pub endpoint: Option<std::net::SocketAddr>,
    /// Seconds since the latest handshake, if any.
    pub last_handshake_secs: Option<u64>,
    /// Whether a session is up.
    pub connected: bool,
    /// The current session's transport cipher (`aes-256-gcm`, `chacha20-poly1305`).
    pub cipher: Option<&'static str>,
    /// How it was found.
    pub found: Found,
    /// Traffic counters.
    #[serde(flatten)]
    pub stats: PeerStats,
    /// Drops attributed to this peer.
    pub drops: BTreeMap<&'static str, u64>,
}

/// An end-to-end session's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionStatus {
    /// The remote node.
    pub id: NodeId,
    /// Its overlay IPv6 address.
    pub ipv6: std::net::Ipv6Addr,
    /// Seconds since the latest handshake, if any.
    pub last_handshake_secs: Option<u64>,
    /// Whether a session is up.
    pub connected: bool,
    /// The current session's transport cipher.
    pub cipher: Option<&'static str>,
    /// Traffic counters (IP bytes).
    #[serde(flatten)]
    pub stats: PeerStats,
}

impl<A: TransportAead> Node<A> {
    /// Per-neighbour state.
    pub fn peer_status(&self, now: Instant) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .zip(&self.peer_drops)
            .zip(&self.found)
            .zip(&self.slots)
            .filter(|(_, s)| !s.free)
            .map(|(((p, d), f), _)| PeerStatus {
                id: p.id,
                endpoint: p.endpoint,
                last_handshake_secs: p
                    .last_handshake
                    .map(|t| now.saturating_duration_since(t).as_secs()),
                connected: p.has_session(now, &self.cfg.timers),
                cipher: p.current.as_ref().map(|k| k.cipher.name()),
                found: *f,
                stats: p.stats.clone(),
                drops: d.to_map(),
            })
            .collect()
    }

    /// End-to-end sessions with distant nodes.
    pub fn session_status(&self, now: Instant) -> Vec<SessionStatus> {
        let mut v: Vec<_> = self
            .e2e
            .values()
            .map(|e| SessionStatus {
                id: e.id,
                ipv6: e.addr_v6,
                last_handshake_secs: e
                    .last_handshake
                    .map(|t| now.saturating_duration_since(t).as_secs()),
                connected: e.has_session(now, &self.cfg.timers),
                cipher: e.current.as_ref().map(|k| k.cipher.name()),
                stats: e.stats.clone(),
            })
            .collect();
        v.sort_by_key(|s| s.id);
        v
    }
}
