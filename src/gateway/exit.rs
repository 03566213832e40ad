//! The exit's side (DESIGN.md §6): one nftables table, `inet bitcloud_exit`, that forwards
//! what clients send through the TUN only out of the uplink, masqueraded, clamps TCP MSS to
//! what the mesh carries, refuses blocked ports (SMTP by default), lets back in only replies
//! to flows clients opened, and keeps clients away from the exit host's LAN, the overlay
//! ranges and the host itself (except its own overlay addresses, where the exit's services
//! answer). Invariant: nothing from the TUN is forwarded to any interface but the uplink, and
//! nothing is forwarded into the TUN but conntrack replies; the table is replaced atomically
//! and removed by name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nftables::expr::MetaKey;
use nftables::schema::{NfListObject, Nftables};
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfHook};

use super::GatewayError;
use super::nft::{
    accept, ct_established, drop, eq, gt, has, mangle, masquerade, meta, n, ne, payload, prefix,
    reject, s, set, tcp_mss,
};

/// Our exit table's name.
pub const TABLE: &str = "bitcloud_exit";
/// SMTP (RFC 5321 §4.5.4.2's port 25): blocked by default, as paid VPN exits do, so an exit is
/// not an open spam relay.
pub const DEFAULT_BLOCKED_PORTS: &[u16] = &[25];

/// What the exit forwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitRules {
    /// The TUN interface.
    pub tun: String,
    /// The uplink interface towards the internet.
    pub uplink: String,
    /// Our own overlay addresses: the only host addresses clients may reach (DNS).
    pub own_v4: Ipv4Addr,
    /// Our own overlay IPv6 address.
    pub own_v6: Ipv6Addr,
    /// Prefixes clients must never reach: the exit host's connected networks (its LAN,
    /// uplink subnet included) besides the fixed overlay and special ranges.
    pub lan: Vec<(IpAddr, u8)>,
    /// TCP and UDP destination ports refused (an ICMP error goes back).
    pub blocked_ports: Vec<u16>,
    /// The largest TCP MSS through the tunnel for IPv4 (the IPv6 one is 20 less).
    pub mss_v4: u16,
}

impl ExitRules {
    fn chain(
        name: &'static str,
        kind: NfChainType,
        hook: NfHook,
        prio: i32,
    ) -> NfListObject<'static> {
        super::nft::base_chain(TABLE, name, kind, hook, prio, NfChainPolicy::Accept)
    }

    /// The forward chain's rules, in order.
    pub fn forward_rules(&self) -> Vec<Vec<Statement<'static>>> {
        let from_tun = || eq(meta(MetaKey::Iifname), s(&self.tun));
        let to_tun = || eq(meta(MetaKey::Oifname), s(&self.tun));
        let mut v4 = vec![
            prefix(IpAddr::from([0, 0, 0, 0]), 8),
            prefix(IpAddr::from([100, 64, 0, 0]), 10),
            prefix(IpAddr::from([127, 0, 0, 0]), 8),
            prefix(IpAddr::from([169, 254, 0, 0]), 16),
            prefix(IpAddr::from([224, 0, 0, 0]), 3),
        ];
        let mut v6 = vec![
            prefix(IpAddr::from(Ipv6Addr::LOCALHOST), 128),
            prefix(IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 0u16]), 8),
            prefix(IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 0u16]), 10),
            prefix(IpAddr::from([0xff00, 0, 0, 0, 0, 0, 0, 0u16]), 8),
        ];
        for (a, len) in &self.lan {
            match a {
                IpAddr::V4(_) => v4.push(prefix(*a, *len)),
                IpAddr::V6(_) => v6.push(prefix(*a, *len)),
            }
        }
        let mut rules = vec![
            vec![from_tun(), eq(payload("ip", "daddr"), set(v4)), drop()],
            vec![from_tun(), eq(payload("ip6", "daddr"), set(v6)), drop()],
            vec![
                from_tun(),
                ne(meta(MetaKey::Oifname), s(&self.uplink)),
                drop(),
            ],
        ];
        if !self.blocked_ports.is_empty() {
            let ports = self
                .blocked_ports
                .iter()
                .map(|p| n(u32::from(*p)))
                .collect();
            rules.push(vec![
                from_tun(),
                eq(meta(MetaKey::L4proto), set(vec![s("tcp"), s("udp")])),
                eq(payload("th", "dport"), set(ports)),
                reject(),
            ]);
        }
        // Clamp SYNs both ways, so neither end sends segments the mesh would have to refuse
        // with ICMP "too big" (which many paths lose).
        for (proto, mss) in [
            ("ipv4", u32::from(self.mss_v4)),
            ("ipv6", u32::from(self.mss_v4.saturating_sub(20))),
        ] {
            for dir in [from_tun(), to_tun()] {
                rules.push(vec![
                    dir,
                    eq(meta(MetaKey::Nfproto), s(proto)),
                    has(payload("tcp", "flags"), s("syn")),
                    gt(tcp_mss(), n(mss)),
                    mangle(tcp_mss(), n(mss)),
                ]);
            }
        }
        // Counted (IP bytes, what the uplink carries for clients, both ways): what an operator
        // reads with `nft list table inet bitcloud_exit` and checks its exit earnings against.
        let counter = || Statement::Counter(nftables::stmt::Counter::Anonymous(None));
        rules.push(vec![from_tun(), counter(), accept()]);
        rules.push(vec![to_tun(), ct_established(), counter(), accept()]);
        rules.push(vec![to_tun(), drop()]);
        rules
    }

    /// One transaction that creates or replaces the exit table.
    pub fn batch(&self) -> Nftables<'static> {
        let mut b = super::nft::replace_table(TABLE);
        b.add(Self::chain(
            "forward",
            NfChainType::Filter,
            NfHook::Forward,
            0,
        ));
        b.add(Self::chain("input", NfChainType::Filter, NfHook::Input, 0));
        b.add(Self::chain(
            "postrouting",
            NfChainType::NAT,
            NfHook::Postrouting,
            100,
        ));
        let rule = |chain, expr| super::nft::rule(TABLE, chain, expr);
        for r in self.forward_rules() {
            b.add(rule("forward", r));
        }
        let from_tun = || eq(meta(MetaKey::Iifname), s(&self.tun));
        // From the mesh the host itself is reachable only at its overlay addresses.
        b.add(rule(
            "input",
            vec![
                from_tun(),
                ne(payload("ip", "daddr"), s(&self.own_v4.to_string())),
                drop(),
            ],
        ));
        b.add(rule(
            "input",
            vec![
                from_tun(),
                ne(payload("ip6", "daddr"), s(&self.own_v6.to_string())),
                drop(),
            ],
        ));
        b.add(rule(
            "postrouting",
            vec![
                from_tun(),
                eq(meta(MetaKey::Oifname), s(&self.uplink)),
                masquerade(),
            ],
        ));
        b.to_nftables()
    }

    /// Install or replace the exit table.
    pub fn apply(&self) -> Result<(), GatewayError> {
        nftables::helper::apply_ruleset(&self.batch())?;
        Ok(())
    }
}

/// Remove the exit table if it is installed; returns whether it was.
pub fn remove() -> Result<bool, GatewayError> {
    Ok(super::nft::delete_table(TABLE)?)
}

/// The kernel's forwarding switches, to restore what was there before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarding {
    /// `net.ipv4.ip_forward`.
    pub v4: String,
    /// `net.ipv6.conf.all.forwarding`.
    pub v6: String,
}

const FWD_V4: &str = "/proc/sys/net/ipv4/ip_forward";
const FWD_V6: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

/// Turn IP forwarding on for both families (in the calling thread's network namespace) and
/// return what was set before. With IPv6 forwarding on, the kernel ignores router
/// advertisements unless `accept_ra` is 2, so the uplink keeps its SLAAC address that way.
pub fn enable_forwarding(uplink: &str) -> Result<Forwarding, GatewayError> {
    let io = |what: &'static str| move |source| GatewayError::Io { what, source };
    let before = Forwarding {
        v4: std::fs::read_to_string(FWD_V4).map_err(io("reading ip_forward"))?,
        v6: std::fs::read_to_string(FWD_V6).map_err(io("reading ipv6 forwarding"))?,
    };
    let ra = format!("/proc/sys/net/ipv6/conf/{uplink}/accept_ra");
    if std::path::Path::new(&ra).exists() {
        std::fs::write(&ra, "2").map_err(io("setting accept_ra on the uplink"))?;
    }
    std::fs::write(FWD_V4, "1").map_err(io("enabling ip_forward"))?;
    std::fs::write(FWD_V6, "1").map_err(io("enabling ipv6 forwarding"))?;
    Ok(before)
}

/// Put the forwarding switches back as they were.
pub fn restore_forwarding(f: &Forwarding) -> Result<(), GatewayError> {
    let io = |what: &'static str| move |source| GatewayError::Io { what, source };
    std::fs::write(FWD_V4, f.v4.trim()).map_err(io("restoring ip_forward"))?;
    std::fs::write(FWD_V6, f.v6.trim()).map_err(io("restoring ipv6 forwarding"))?;
    Ok(())
}
