//! Applying a re-read peer list without dropping sessions (SIGHUP, issue 10): configured peers
//! that are new get a slot and a handshake, ones no longer listed leave (their meters are
//! checkpointed first, as for an expired neighbour), and ones that stay keep their sessions,
//! counters and channels. Invariant: a peer that stays is never touched beyond its endpoint,
//! and only when the config names one it did not have.

use std::time::Instant;

use super::{Found, Node, PeerConfig};
use crate::identity::NodeId;
use crate::session::aead::TransportAead;

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerChanges {
    /// Peers added.
    pub added: Vec<NodeId>,
    /// Peers removed.
    pub removed: Vec<NodeId>,
    /// Peers kept (a discovered one now configured counts here).
    pub kept: usize,
}

impl<A: TransportAead> Node<A> {
    /// Make the configured peers exactly `peers`; discovered neighbours are left alone.
    pub fn set_configured_peers(&mut self, peers: &[PeerConfig], now: Instant) -> PeerChanges {
        let mut ch = PeerChanges::default();
        let gone: Vec<usize> = self
            .found
            .iter()
            .enumerate()
            .filter(|(pi, f)| {
                **f == Found::Config
                    && !self.slots.get(*pi).is_some_and(|s| s.free)
                    && self
                        .peers
                        .get(*pi)
                        .is_some_and(|p| !peers.iter().any(|c| c.id == p.id))
            })
            .map(|(pi, _)| pi)
            .collect();
        for &pi in &gone {
            if let Some(p) = self.peers.get(pi) {
                ch.removed.push(p.id);
            }
            self.free_slot(pi, now);
        }
        self.indices.retain(|_, pi| !gone.contains(pi));
        for c in peers {
            match self.by_id.get(&c.id).copied() {
                Some(pi) => {
                    if let Some(f) = self.found.get_mut(pi) {
                        *f = Found::Config;
                    }
                    if let Some(p) = self.peers.get_mut(pi)
                        && p.endpoint.is_none()
                    {
                        p.endpoint = c.endpoint;
                    }
                    ch.kept += 1;
                }
                None => match self.insert_peer(c.id, c.endpoint, Found::Config, now) {
                    Ok(pi) => {
                        ch.added.push(c.id);
                        if c.endpoint.is_some() {
                            self.initiate(pi, now);
                        }
                    }
                    Err(e) => tracing::warn!(peer = %c.id, "reload: {e}"),
                },
            }
        }
        ch
    }
}
