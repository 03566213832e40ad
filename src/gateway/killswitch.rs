//! The kill switch (DESIGN.md §6): one nftables table of ours, `inet bitcloud`, whose output
//! chain drops by policy everything that is not loopback, the TUN, the daemon's own marked
//! UDP, DHCP and neighbour discovery, or (when allowed) the LAN; DNS may leave only through
//! the TUN to the exit's resolvers. Invariant: the table is a kernel object, so it stays in
//! force when the daemon crashes or is killed (fail closed, as Mullvad's client does); only an
//! explicit [`remove`] takes it away. The whole table is replaced in one nft transaction, so
//! there is never a moment with half a rule set.

use std::net::IpAddr;

use nftables::expr::MetaKey;
use nftables::schema::Nftables;
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfHook};

use super::GatewayError;
use super::nft::{accept, base_chain, eq, meta, n, payload, prefix, reject, rule, s, set};

/// Our table's name (family `inet`: one table for IPv4 and IPv6).
pub const TABLE: &str = "bitcloud";
/// The output chain.
const CHAIN: &str = "output";
/// DNS port (RFC 1035 §4.2).
const DNS_PORT: u32 = 53;

/// What the kill switch lets out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillSwitch {
    /// The TUN interface: everything through it is sealed into the mesh.
    pub tun: String,
    /// The mark on the daemon's own UDP sockets.
    pub fwmark: u32,
    /// The exit's resolvers, reached through the TUN: the only DNS servers allowed.
    pub dns: Vec<IpAddr>,
    /// Destinations let out directly while `allow_lan` is on: the host's connected prefixes
    /// (see [`super::lan`]); link-local and link-scope multicast are added to them.
    pub lan: Option<Vec<(IpAddr, u8)>>,
}

impl KillSwitch {
    /// The rules of the output chain, in order.
    pub fn rules(&self) -> Vec<Vec<Statement<'static>>> {
        let tun = || eq(meta(MetaKey::Oifname), s(&self.tun));
        let dport53 = || eq(payload("th", "dport"), n(DNS_PORT));
        let tcp_udp = || eq(meta(MetaKey::L4proto), set(vec![s("tcp"), s("udp")]));
        let mut rules = vec![
            vec![eq(meta(MetaKey::Oifname), s("lo")), accept()],
            vec![eq(meta(MetaKey::Mark), n(self.fwmark)), accept()],
        ];
        for a in &self.dns {
            let daddr = match a {
                IpAddr::V4(_) => payload("ip", "daddr"),
                IpAddr::V6(_) => payload("ip6", "daddr"),
            };
            rules.push(vec![
                tun(),
                eq(daddr, s(&a.to_string())),
                tcp_udp(),
                dport53(),
                accept(),
            ]);
        }
        // Any other DNS, through the TUN or not, LAN resolvers included: refused.
        rules.push(vec![tcp_udp(), dport53(), reject()]);
        rules.push(vec![tun(), accept()]);
        // DHCPv4 (RFC 2131 §4.1) and DHCPv6 (RFC 8415 §7.2) clients keep the lease alive.
        for (sport, dport) in [(68, 67), (546, 547)] {
            rules.push(vec![
                eq(payload("udp", "sport"), n(sport)),
                eq(payload("udp", "dport"), n(dport)),
                accept(),
            ]);
        }
        // Router and neighbour discovery (RFC 4861): without them IPv6 on the link dies.
        rules.push(vec![
            eq(
                payload("icmpv6", "type"),
                set(vec![
                    s("nd-router-solicit"),
                    s("nd-neighbor-solicit"),
                    s("nd-neighbor-advert"),
                ]),
            ),
            accept(),
        ]);
        if let Some(lan) = &self.lan {
            let mut v4 = vec![
                prefix(IpAddr::from([169, 254, 0, 0]), 16),
                prefix(IpAddr::from([224, 0, 0, 0]), 24),
            ];
            let mut v6 = vec![
                prefix(IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 0u16]), 10),
                prefix(IpAddr::from([0xff02, 0, 0, 0, 0, 0, 0, 0u16]), 16),
            ];
            for (a, len) in lan {
                match a {
                    IpAddr::V4(_) => v4.push(prefix(*a, *len)),
                    IpAddr::V6(_) => v6.push(prefix(*a, *len)),
                }
            }
            rules.push(vec![eq(payload("ip", "daddr"), set(v4)), accept()]);
            rules.push(vec![eq(payload("ip6", "daddr"), set(v6)), accept()]);
        }
        // The policy drops too; rejecting first makes local senders fail at once.
        rules.push(vec![reject()]);
        rules
    }

    /// One transaction that creates or replaces our table with these rules.
    pub fn batch(&self) -> Nftables<'static> {
        let mut b = super::nft::replace_table(TABLE);
        b.add(base_chain(
            TABLE,
            CHAIN,
            NfChainType::Filter,
            NfHook::Output,
            0,
            NfChainPolicy::Drop,
        ));
        for expr in self.rules() {
            b.add(rule(TABLE, CHAIN, expr));
        }
        b.to_nftables()
    }

    /// Install or replace the kill switch.
    pub fn apply(&self) -> Result<(), GatewayError> {
        nftables::helper::apply_ruleset(&self.batch())?;
        Ok(())
    }
}

/// Whether our table is installed.
pub fn installed() -> Result<bool, GatewayError> {
    Ok(super::nft::table_present(TABLE)?)
}

/// Remove the kill switch if it is installed; returns whether it was.
pub fn remove() -> Result<bool, GatewayError> {
    Ok(super::nft::delete_table(TABLE)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ks(lan: bool) -> KillSwitch {
        KillSwitch {
            tun: "bc0".into(),
            fwmark: super::super::FWMARK,
            dns: vec!["100.64.1.2".parse().unwrap(), "fd00::1".parse().unwrap()],
            lan: lan.then(|| vec![("198.18.0.0".parse().unwrap(), 30)]),
        }
    }

    #[test]
    fn rules_end_in_a_reject_and_the_chain_drops_by_policy() {
        let k = ks(false);
        let json = serde_json::to_string(&k.batch()).unwrap();
        assert!(json.contains("\"policy\":\"drop\""), "{json}");
        assert!(json.contains("\"hook\":\"output\""), "{json}");
        let rules = k.rules();
        assert!(matches!(
            rules.last().unwrap().as_slice(),
            [Statement::Reject(_)]
        ));
        // Loopback and marked UDP first, then one DNS accept per exit resolver, then the
        // DNS refusal before the TUN accept (so DNS to other servers never passes the TUN).
        let text = |r: &Vec<Statement>| serde_json::to_string(r).unwrap();
        assert!(text(&rules[0]).contains("\"lo\""));
        assert!(text(&rules[1]).contains(&super::super::FWMARK.to_string()));
        assert!(text(&rules[2]).contains("100.64.1.2") && text(&rules[3]).contains("fd00::1"));
        assert!(text(&rules[4]).contains("reject") && text(&rules[4]).contains("53"));
        assert!(text(&rules[5]).contains("bc0") && text(&rules[5]).contains("accept"));
        assert!(!json.contains("198.18.0.0"), "no LAN rule unless allowed");
    }

    #[test]
    fn allow_lan_adds_the_connected_prefixes_and_link_scope() {
        let json = serde_json::to_string(&ks(true).batch()).unwrap();
        for p in ["198.18.0.0", "169.254.0.0", "fe80::", "ff02::", "224.0.0.0"] {
            assert!(json.contains(p), "{p} missing: {json}");
        }
    }
}
