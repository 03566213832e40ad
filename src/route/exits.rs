//! The exits the routing layer knows: every originator of a selected default route, with what
//! it costs through the route in use. Read by the exit choice (`crate::exit`); the data path
//! uses the forwarding table instead. Invariant: only selected, finite-metric default routes
//! are offered, and an exit's own fee is the default route's price less the price of the
//! route to the exit node itself (what the relays on the path bill), never negative.

use super::{INFINITY, PrefixKind, RouteKey, Router, table};
use crate::identity::NodeId;

/// A known exit as routed now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitRouteInfo {
    /// The exit node.
    pub id: NodeId,
    /// What the default route through it costs per MiB: the exit's fee plus every relay's.
    pub price_per_mib: u64,
    /// Route metric to it.
    pub metric: u16,
    /// What the relays on the path bill per MiB for frames to the exit node (0 for a
    /// neighbour exit): the part of `price_per_mib` paid hop by hop.
    pub path_price_per_mib: u64,
}

impl ExitRouteInfo {
    /// The exit's own fee as announced: what the client pays the exit end to end.
    pub fn exit_fee_per_mib(&self) -> u64 {
        self.price_per_mib.saturating_sub(self.path_price_per_mib)
    }
}

impl Router {
    /// Every exit with a selected default route, in node id order.
    pub fn exit_routes(&self) -> Vec<ExitRouteInfo> {
        self.dests
            .iter()
            .filter(|(k, _)| k.kind == PrefixKind::Default && k.originator != self.id)
            .filter_map(|(k, d)| {
                let r = d.selected_route()?;
                let metric = table::add_metric(r.refmetric, self.link_cost(&r.neighbour));
                if metric == INFINITY {
                    return None;
                }
                let path = self
                    .dests
                    .get(&RouteKey {
                        originator: k.originator,
                        kind: PrefixKind::Node,
                    })
                    .and_then(|n| n.selected_route())
                    .map_or(0, |n| n.price_per_mib);
                Some(ExitRouteInfo {
                    id: k.originator,
                    price_per_mib: r.price_per_mib,
                    metric,
                    path_price_per_mib: path,
                })
            })
            .collect()
    }
}
