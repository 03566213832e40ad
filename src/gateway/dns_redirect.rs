//! DNS redirection for an exit client that may not edit the host's resolver settings (the
//! hardened service runs as user `bitcloud` under a read-only `/etc`; docs/dns.md): one
//! nftables table of ours, `inet bitcloud_dns`, that rewrites every DNS query the host sends
//! (UDP and TCP port 53, to any server but loopback stubs) to the exit's resolver through the
//! TUN, and gives the rewritten query the TUN's own address as source. Invariants: the daemon's
//! marked packets are never rewritten; queries to a loopback stub are left alone (the stub's
//! own upstream queries are rewritten instead); the table is replaced atomically and removed
//! by name, so a crash leaves it in place, which keeps DNS going to the exit alone (the kill
//! switch refuses the rest anyway).

use std::net::IpAddr;

use nftables::expr::MetaKey;
use nftables::schema::{NfListObject, Nftables};
use nftables::stmt::{NAT, NATFamily, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfHook};

use super::GatewayError;
use super::nft::{base_chain, eq, masquerade, meta, n, ne, payload, prefix, rule, s, set};

/// Our table's name.
pub const TABLE: &str = "bitcloud_dns";
/// DNS port (RFC 1035 §4.2).
const DNS_PORT: u32 = 53;
/// Destination NAT of locally generated packets runs before the filter (and kill switch) at 0,
/// so the kill switch sees the rewritten query (nft(8), "NAT", priority dstnat = -100).
const DSTNAT_PRIO: i32 = -100;
/// Source NAT after routing (priority srcnat = 100).
const SRCNAT_PRIO: i32 = 100;

/// Where the host's DNS goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRedirect {
    /// The TUN interface.
    pub tun: String,
    /// The mark on the daemon's own sockets.
    pub fwmark: u32,
    /// The exit's resolvers: the first of each family is the target.
    pub servers: Vec<IpAddr>,
}

impl DnsRedirect {
    fn chain(name: &'static str, hook: NfHook, prio: i32) -> NfListObject<'static> {
        base_chain(
            TABLE,
            name,
            NfChainType::NAT,
            hook,
            prio,
            NfChainPolicy::Accept,
        )
    }

    /// The output (dstnat) chain's rules: one per family that has a resolver.
    pub fn output_rules(&self) -> Vec<Vec<Statement<'static>>> {
        let mut rules = Vec::new();
        let v4 = self.servers.iter().find(|a| a.is_ipv4());
        let v6 = self.servers.iter().find(|a| a.is_ipv6());
        for (target, fam, proto, lo) in [
            (
                v4,
                NATFamily::IP,
                "ip",
                prefix(IpAddr::from([127, 0, 0, 0]), 8),
            ),
            (v6, NATFamily::IP6, "ip6", s("::1")),
        ] {
            let Some(target) = target else { continue };
            rules.push(vec![
                ne(meta(MetaKey::Mark), n(self.fwmark)),
                ne(payload(proto, "daddr"), lo),
                ne(payload(proto, "daddr"), s(&target.to_string())),
                eq(meta(MetaKey::L4proto), set(vec![s("tcp"), s("udp")])),
                eq(payload("th", "dport"), n(DNS_PORT)),
                Statement::DNAT(Some(NAT {
                    addr: Some(s(&target.to_string())),
                    family: Some(fam),
                    port: None,
                    flags: None,
                })),
            ]);
        }
        rules
    }

    /// The postrouting (srcnat) rule: a query rewritten towards the TUN after its source was
    /// chosen for another interface (a LAN resolver) leaves with the TUN's address.
    pub fn postrouting_rules(&self) -> Vec<Vec<Statement<'static>>> {
        vec![vec![
            eq(meta(MetaKey::Oifname), s(&self.tun)),
            eq(meta(MetaKey::L4proto), set(vec![s("tcp"), s("udp")])),
            eq(payload("th", "dport"), n(DNS_PORT)),
            masquerade(),
        ]]
    }

    /// One transaction that creates or replaces our table.
    pub fn batch(&self) -> Nftables<'static> {
        let mut b = super::nft::replace_table(TABLE);
        b.add(Self::chain("output", NfHook::Output, DSTNAT_PRIO));
        b.add(Self::chain("postrouting", NfHook::Postrouting, SRCNAT_PRIO));
        for (chain, rules) in [
            ("output", self.output_rules()),
            ("postrouting", self.postrouting_rules()),
        ] {
            for expr in rules {
                b.add(rule(TABLE, chain, expr));
            }
        }
        b.to_nftables()
    }

    /// Install or replace the redirection.
    pub fn apply(&self) -> Result<(), GatewayError> {
        nftables::helper::apply_ruleset(&self.batch())?;
        Ok(())
    }
}

/// Whether our table is installed.
pub fn installed() -> Result<bool, GatewayError> {
    Ok(super::nft::table_present(TABLE)?)
}

/// Remove the redirection if it is installed; returns whether it was.
pub fn remove() -> Result<bool, GatewayError> {
    Ok(super::nft::delete_table(TABLE)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(servers: &[&str]) -> DnsRedirect {
        DnsRedirect {
            tun: "bc0".into(),
            fwmark: super::super::FWMARK,
            servers: servers.iter().map(|a| a.parse().expect("addr")).collect(),
        }
    }

    #[test]
    fn one_rewrite_per_family_sparing_the_daemon_and_loopback() {
        let both = r(&["100.64.1.2", "100.64.1.3", "fd00::1"]);
        let rules = both.output_rules();
        assert_eq!(rules.len(), 2);
        let text = |r: &Vec<Statement>| serde_json::to_string(r).expect("json");
        let v4 = text(&rules[0]);
        assert!(v4.contains("\"dnat\"") && v4.contains("100.64.1.2") && !v4.contains("100.64.1.3"));
        assert!(v4.contains("127.0.0.0") && v4.contains(&super::super::FWMARK.to_string()));
        assert!(text(&rules[1]).contains("fd00::1") && text(&rules[1]).contains("::1"));
        assert_eq!(r(&["fd00::1"]).output_rules().len(), 1);
        let json = serde_json::to_string(&both.batch()).expect("json");
        assert!(
            json.contains("\"prio\":-100") && json.contains("masquerade"),
            "{json}"
        );
    }
}
