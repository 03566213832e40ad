//! Who owns each overlay IPv4 address: our own id, our neighbours and the nodes the router
//! holds a route to. Invariant: an address claimed by two or more distinct node ids (ours
//! included) belongs to nobody — 22 hash bits are no cryptographic binding, so a ground key
//! must not win another node's IPv4 traffic or its IPv4 source. IPv6 is unaffected. The
//! forwarding table applies the same rule to routed nodes alone; this view adds neighbours,
//! so a neighbour colliding with a distant node counts too.

use std::net::Ipv4Addr;

use foldhash::HashMap;

use crate::identity::NodeId;

/// Why a node id claims an address (a neighbour can be routed too: one id, two reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Own,
    Neighbour(usize),
    Routed,
}

/// A colliding IPv4 address and the node ids claiming it, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct V4Collision {
    /// The address.
    pub addr: Ipv4Addr,
    /// The distinct node ids claiming it, sorted.
    pub nodes: Vec<NodeId>,
}

/// Claims per address. Lookups are one hash read; a claim list is almost always one entry.
#[derive(Debug, Default)]
pub(super) struct V4Claims {
    claims: HashMap<Ipv4Addr, Vec<(NodeId, Via)>>,
}

impl V4Claims {
    pub(super) fn new(own: NodeId) -> Self {
        let mut c = V4Claims::default();
        c.add(own, Via::Own);
        c
    }

    fn add(&mut self, id: NodeId, via: Via) {
        let v = self.claims.entry(id.ipv4()).or_default();
        if !v.contains(&(id, via)) {
            v.push((id, via));
        }
    }

    fn remove(&mut self, id: NodeId, via: Via) {
        let a = id.ipv4();
        if let Some(v) = self.claims.get_mut(&a) {
            v.retain(|c| *c != (id, via));
            if v.is_empty() {
                self.claims.remove(&a);
            }
        }
    }

    pub(super) fn add_neighbour(&mut self, id: NodeId, pi: usize) {
        self.add(id, Via::Neighbour(pi));
    }

    pub(super) fn remove_neighbour(&mut self, id: NodeId, pi: usize) {
        self.remove(id, Via::Neighbour(pi));
    }

    pub(super) fn add_routed(&mut self, id: NodeId) {
        self.add(id, Via::Routed);
    }

    pub(super) fn remove_routed(&mut self, id: NodeId) {
        self.remove(id, Via::Routed);
    }

    /// Replace every routed claim by `routed` (heals events the router dropped).
    pub(super) fn set_routed(&mut self, routed: impl IntoIterator<Item = NodeId>) {
        self.claims.retain(|_, v| {
            v.retain(|(_, via)| *via != Via::Routed);
            !v.is_empty()
        });
        for id in routed {
            self.add_routed(id);
        }
    }

    /// Whether two or more distinct node ids claim `a`.
    pub(super) fn collides(&self, a: Ipv4Addr) -> bool {
        self.claims.get(&a).is_some_and(|v| {
            v.first()
                .is_some_and(|(first, _)| v.iter().any(|(id, _)| id != first))
        })
    }

    /// The neighbour that alone owns `a`, if any.
    pub(super) fn neighbour(&self, a: Ipv4Addr) -> Option<usize> {
        if self.collides(a) {
            return None;
        }
        self.claims.get(&a)?.iter().find_map(|(_, via)| match via {
            Via::Neighbour(pi) => Some(*pi),
            _ => None,
        })
    }

    /// The node ids claiming the same address as `id` (itself included).
    pub(super) fn claimants(&self, a: Ipv4Addr) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .claims
            .get(&a)
            .map(|v| v.iter().map(|(id, _)| *id).collect())
            .unwrap_or_default();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Every colliding address, sorted.
    pub(super) fn collisions(&self) -> Vec<V4Collision> {
        let mut out: Vec<V4Collision> = self
            .claims
            .keys()
            .filter(|a| self.collides(**a))
            .map(|a| V4Collision {
                addr: *a,
                nodes: self.claimants(*a),
            })
            .collect();
        out.sort_by_key(|c| c.addr);
        out
    }
}
