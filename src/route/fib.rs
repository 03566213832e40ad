//! The forwarding table the data path reads per packet: destination node id and overlay address
//! to (destination, next hop), plus the chosen default route. Invariants: it mirrors the
//! router's selected routes exactly; an IPv4 address claimed by two or more node ids (including
//! our own) maps to nobody, because 22 hash bits are not a cryptographic binding; lookups are
//! hash-map reads that never allocate.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use foldhash::{HashMap, HashMapExt};

use crate::identity::NodeId;

/// A routed destination node.
#[derive(Clone, Copy, Debug)]
struct NodeRoute {
    next_hop: NodeId,
    v6: Ipv6Addr,
    v4: Ipv4Addr,
    /// What the next hop bills per MiB for this destination, and its price epoch.
    price: (u64, u32),
}

/// An exit we have a route to.
#[derive(Clone, Copy, Debug)]
struct ExitRoute {
    next_hop: NodeId,
    score: u128,
}

/// The forwarding table.
#[derive(Debug)]
pub(crate) struct Fib {
    own: NodeId,
    nodes: HashMap<NodeId, NodeRoute>,
    addrs: HashMap<IpAddr, (NodeId, NodeId)>,
    /// Which node ids claim each IPv4 address: routed destinations and ourselves.
    v4_claims: HashMap<Ipv4Addr, Vec<NodeId>>,
    exits: BTreeMap<NodeId, ExitRoute>,
    default: Option<(NodeId, NodeId)>,
}

/// An IPv4 address claimed by more than one node id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Collision {
    pub addr: Ipv4Addr,
    pub nodes: Vec<NodeId>,
}

impl Fib {
    pub fn new(own: NodeId) -> Self {
        let mut fib = Fib {
            own,
            nodes: HashMap::new(),
            addrs: HashMap::new(),
            v4_claims: HashMap::new(),
            exits: BTreeMap::new(),
            default: None,
        };
        fib.v4_claims.insert(own.ipv4(), vec![own]);
        fib
    }

    /// Install, move or remove the route to node `dest`. Returns a collision when this makes an
    /// IPv4 address ambiguous.
    pub fn set_node(&mut self, dest: NodeId, next_hop: Option<NodeId>) -> Option<Collision> {
        match (self.nodes.get_mut(&dest), next_hop) {
            (Some(r), Some(nh)) => {
                r.next_hop = nh;
                let (v6, v4) = (r.v6, r.v4);
                self.addrs.insert(IpAddr::V6(v6), (dest, nh));
                if let Some(e) = self.addrs.get_mut(&IpAddr::V4(v4))
                    && e.0 == dest
                {
                    e.1 = nh;
                }
                None
            }
            (None, Some(nh)) => {
                let (v6, v4) = (dest.ipv6(), dest.ipv4());
                self.nodes.insert(
                    dest,
                    NodeRoute {
                        next_hop: nh,
                        v6,
                        v4,
                        price: (0, 0),
                    },
                );
                self.addrs.insert(IpAddr::V6(v6), (dest, nh));
                let claims = self.v4_claims.entry(v4).or_default();
                claims.push(dest);
                if claims.len() == 1 {
                    self.addrs.insert(IpAddr::V4(v4), (dest, nh));
                    None
                } else {
                    self.addrs.remove(&IpAddr::V4(v4));
                    Some(Collision {
                        addr: v4,
                        nodes: claims.clone(),
                    })
                }
            }
            (Some(_), None) => {
                let r = self.nodes.remove(&dest)?;
                self.addrs.remove(&IpAddr::V6(r.v6));
                self.addrs.remove(&IpAddr::V4(r.v4));
                if let Some(claims) = self.v4_claims.get_mut(&r.v4) {
                    claims.retain(|c| *c != dest);
                    match claims.as_slice() {
                        [] => {
                            self.v4_claims.remove(&r.v4);
                        }
                        // The address is unambiguous again: give it back to its remaining owner.
                        [only] if *only != self.own => {
                            if let Some(o) = self.nodes.get(only) {
                                self.addrs.insert(IpAddr::V4(r.v4), (*only, o.next_hop));
                            }
                        }
                        _ => {}
                    }
                }
                None
            }
            (None, None) => None,
        }
    }

    /// Install or remove the route to exit `exit`, then re-choose the default route: the best
    /// score, keeping the current exit unless `better` says a candidate beats it.
    pub fn set_exit(
        &mut self,
        exit: NodeId,
        route: Option<(NodeId, u128)>,
        better: impl Fn(u128, u128) -> bool,
    ) {
        match route {
            Some((next_hop, score)) => {
                self.exits.insert(exit, ExitRoute { next_hop, score });
            }
            None => {
                self.exits.remove(&exit);
            }
        }
        let best = self
            .exits
            .iter()
            .min_by_key(|(id, e)| (e.score, **id))
            .map(|(id, e)| (*id, *e));
        let current = self
            .default
            .and_then(|(id, _)| self.exits.get(&id).map(|e| (id, *e)));
        let chosen = match (current, best) {
            (Some((cid, c)), Some((_, b))) if !better(c.score, b.score) => Some((cid, c)),
            (_, b) => b,
        };
        self.default = chosen.map(|(id, e)| (id, e.next_hop));
    }

    /// Record the price (units per MiB, epoch) the next hop bills for `dest`.
    pub fn set_price(&mut self, dest: &NodeId, price: (u64, u32)) {
        if let Some(r) = self.nodes.get_mut(dest) {
            r.price = price;
        }
    }

    /// What the next hop towards node `dest` bills for it: (units per MiB, epoch).
    pub fn price(&self, dest: &NodeId) -> Option<(u64, u32)> {
        self.nodes.get(dest).map(|r| r.price)
    }

    /// Next hop towards node `dest`.
    pub fn next_hop(&self, dest: &NodeId) -> Option<NodeId> {
        self.nodes.get(dest).map(|r| r.next_hop)
    }

    /// (destination, next hop) for an address: a node's overlay address, or for addresses
    /// outside the overlay ranges, the default route.
    pub fn lookup(&self, ip: IpAddr) -> Option<(NodeId, NodeId)> {
        if let Some(r) = self.addrs.get(&ip) {
            return Some(*r);
        }
        if is_overlay(ip) { None } else { self.default }
    }

    /// The chosen exit and next hop towards it.
    pub fn default_route(&self) -> Option<(NodeId, NodeId)> {
        self.default
    }

    /// Number of routed destination nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
}

/// The overlay ranges (DESIGN.md §2): fd00::/8 and 100.64.0.0/10. An unknown overlay address
/// must not leak to an exit.
pub(crate) fn is_overlay(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(a) => a.octets()[0] == 0xfd,
        IpAddr::V4(a) => {
            let [a, b, _, _] = a.octets();
            a == 100 && b & 0xc0 == 64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn id(n: u32) -> NodeId {
        let mut s = [0u8; 32];
        s[..4].copy_from_slice(&n.to_be_bytes());
        Identity::from_secret(s).id()
    }

    #[test]
    fn node_routes_and_overlay_fallthrough() {
        let (me, a, b, x) = (id(0), id(1), id(2), id(3));
        let mut f = Fib::new(me);
        assert_eq!(f.set_node(a, Some(b)), None);
        assert_eq!(f.lookup(IpAddr::V6(a.ipv6())), Some((a, b)));
        assert_eq!(f.lookup(IpAddr::V4(a.ipv4())), Some((a, b)));
        assert_eq!(f.next_hop(&a), Some(b));
        f.set_node(a, Some(x));
        assert_eq!(f.lookup(IpAddr::V4(a.ipv4())), Some((a, x)));
        let internet: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(f.lookup(internet), None);
        f.set_exit(x, Some((b, 5)), |c, n| n < c);
        assert_eq!(f.lookup(internet), Some((x, b)));
        assert_eq!(
            f.lookup("fd00::1".parse().unwrap()),
            None,
            "unknown overlay stays inside"
        );
        assert_eq!(f.lookup("100.64.0.9".parse().unwrap()), None);
        f.set_node(a, None);
        assert_eq!(f.lookup(IpAddr::V6(a.ipv6())), None);
        assert_eq!(f.len(), 0);
        f.set_exit(x, None, |c, n| n < c);
        assert_eq!(f.lookup(internet), None);
    }

    #[test]
    fn ipv4_collisions_make_the_address_unroutable() {
        // Find two ids whose IPv4 addresses collide (22 bits: a few thousand tries).
        let mut seen = HashMap::new();
        let (mut p, mut q) = (None, None);
        for n in 1..200_000u32 {
            let i = id(n);
            if let Some(prev) = seen.insert(i.ipv4(), i) {
                (p, q) = (Some(prev), Some(i));
                break;
            }
        }
        let (p, q) = (p.unwrap(), q.unwrap());
        let nh = id(0);
        let mut f = Fib::new(id(999_999_999));
        assert_eq!(f.set_node(p, Some(nh)), None);
        let c = f.set_node(q, Some(nh)).expect("collision reported");
        assert_eq!(c.nodes, vec![p, q]);
        assert_eq!(f.lookup(IpAddr::V4(p.ipv4())), None);
        assert_eq!(
            f.lookup(IpAddr::V6(q.ipv6())),
            Some((q, nh)),
            "IPv6 is unaffected"
        );
        f.set_node(p, None);
        assert_eq!(f.lookup(IpAddr::V4(q.ipv4())), Some((q, nh)));
    }
}
