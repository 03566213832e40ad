//! Policy routing for a client that uses an exit, through netlink (rtnetlink), as wg-quick's
//! `add_default` does it: default routes for IPv4 and IPv6 go into a table of ours
//! ([`ROUTE_TABLE`]) through the TUN; one rule sends every packet without our fwmark there,
//! and one rule before it keeps the main table's specific routes (`suppress_prefixlength 0`:
//! everything but its default route), so the LAN and the underlay stay reachable. The daemon's
//! own marked UDP falls through to the main table's default route. Invariant: our rules are
//! the only ones at [`PRIO_MAIN`] and [`PRIO_OURS`], and our routes the only ones in our
//! table, so [`remove`] finds them without state and leaves every other rule and route as it
//! was.

use std::net::{Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage, RouteScope};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};

use super::{FWMARK, GatewayError, ROUTE_TABLE};

/// `lookup main suppress_prefixlength 0`. Spaced 20 apart (as Tailscale's rules are) so an
/// operator can put rules of their own between and around ours.
pub const PRIO_MAIN: u32 = 5300;
/// `not fwmark FWMARK lookup ROUTE_TABLE`.
pub const PRIO_OURS: u32 = 5320;
/// The main table's id (RT_TABLE_MAIN).
const MAIN: u32 = 254;

/// What is installed now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    /// Our rules, IPv4 and IPv6 (4 when complete).
    pub rules: usize,
    /// Our routes (2 when complete: one default per family).
    pub routes: usize,
}

impl Installed {
    /// Everything we install is there.
    pub fn complete(&self) -> bool {
        self.rules == 4 && self.routes == 2
    }
}

/// A netlink handle on the calling thread's network namespace, with its connection task
/// spawned on the current tokio runtime.
pub fn connect() -> Result<Handle, GatewayError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| GatewayError::Io {
        what: "opening a netlink socket",
        source,
    })?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The interface index of `name`.
pub async fn ifindex(h: &Handle, name: &str) -> Result<u32, GatewayError> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(l.header.index),
        Ok(None) | Err(_) => Err(GatewayError::NoInterface(name.to_string())),
    }
}

/// Install (or re-install what is missing of) the default routes through `tun` and our two
/// rules per family. Idempotent.
pub async fn apply(h: &Handle, tun: &str) -> Result<(), GatewayError> {
    let idx = ifindex(h, tun).await?;
    let v4 = RouteMessageBuilder::<Ipv4Addr>::new()
        .table_id(ROUTE_TABLE)
        .output_interface(idx)
        .scope(RouteScope::Link)
        .build();
    let v6 = RouteMessageBuilder::<Ipv6Addr>::new()
        .table_id(ROUTE_TABLE)
        .output_interface(idx)
        .build();
    for r in [v4, v6] {
        h.route().add(r).replace().execute().await?;
    }
    let have = our_rules(h).await?;
    for v6 in [false, true] {
        let has = |prio: u32| {
            have.iter()
                .any(|m| is_v6(m) == v6 && priority(m) == Some(prio))
        };
        if !has(PRIO_MAIN) {
            let mut m = rule_message(v6, PRIO_MAIN, MAIN);
            m.attributes.push(RuleAttribute::SuppressPrefixLen(0));
            add_rule(h, m).await?;
        }
        if !has(PRIO_OURS) {
            let mut m = rule_message(v6, PRIO_OURS, ROUTE_TABLE);
            m.header.flags |= RuleFlags::Invert;
            m.attributes.push(RuleAttribute::FwMark(FWMARK));
            m.attributes.push(RuleAttribute::FwMask(u32::MAX));
            add_rule(h, m).await?;
        }
    }
    Ok(())
}

/// Remove our rules and every route in our table, whatever else is installed; returns what
/// was there.
pub async fn remove(h: &Handle) -> Result<Installed, GatewayError> {
    let rules = our_rules(h).await?;
    let routes = our_routes(h).await?;
    let found = Installed {
        rules: rules.len(),
        routes: routes.len(),
    };
    for m in rules {
        h.rule().del(m).execute().await?;
    }
    for r in routes {
        h.route().del(r).execute().await?;
    }
    Ok(found)
}

/// What of ours is installed (to re-apply what something else deleted).
pub async fn installed(h: &Handle) -> Result<Installed, GatewayError> {
    Ok(Installed {
        rules: our_rules(h).await?.len(),
        routes: our_routes(h).await?.len(),
    })
}

/// A `lookup TABLE` rule at `prio`, laid out as iproute2 does: tables above 255 go in an
/// attribute with the header's table unspecified.
fn rule_message(v6: bool, prio: u32, table: u32) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    m.header.action = RuleAction::ToTable;
    match u8::try_from(table) {
        Ok(t) => m.header.table = t,
        Err(_) => m.attributes.push(RuleAttribute::Table(table)),
    }
    m.attributes.push(RuleAttribute::Priority(prio));
    m
}

async fn add_rule(h: &Handle, m: RuleMessage) -> Result<(), GatewayError> {
    let mut req = h.rule().add();
    *req.message_mut() = m;
    req.execute().await?;
    Ok(())
}

fn priority(m: &RuleMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        RuleAttribute::Priority(p) => Some(*p),
        _ => None,
    })
}

fn is_v6(m: &RuleMessage) -> bool {
    m.header.family == AddressFamily::Inet6
}

fn rule_table(m: &RuleMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

/// Rules at our priorities that look up our table or the main table (the suppressing rule).
async fn our_rules(h: &Handle) -> Result<Vec<RuleMessage>, GatewayError> {
    let mut out = Vec::new();
    for v in [IpVersion::V4, IpVersion::V6] {
        let mut s = h.rule().get(v).execute();
        while let Some(m) = s.try_next().await? {
            let ours = match priority(&m) {
                Some(PRIO_MAIN) => rule_table(&m) == MAIN,
                Some(PRIO_OURS) => rule_table(&m) == ROUTE_TABLE,
                _ => false,
            };
            if ours {
                out.push(m);
            }
        }
    }
    Ok(out)
}

fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

/// Every route in our table, both families.
async fn our_routes(h: &Handle) -> Result<Vec<RouteMessage>, GatewayError> {
    let mut out = Vec::new();
    let queries = [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ];
    for q in queries {
        let mut s = h.route().get(q).execute();
        while let Some(r) = s.try_next().await? {
            if route_table(&r) == ROUTE_TABLE {
                out.push(r);
            }
        }
    }
    Ok(out)
}
