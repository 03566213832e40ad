//! The shared interfaces' guard (docs/share.md): one nftables table of ours,
//! `inet bitcloud_share`, through which a stranger on a shared interface reaches only what it
//! needs to join Bitcloud: DHCP and DHCPv6 servers, router and neighbour solicitation and
//! advertisement, our discovery beacons, our UDP port, and ICMP errors. Everything else from a
//! shared interface to this host is dropped, and nothing is forwarded from or to it, so there
//! is no route around the tunnel. Invariants: the table is a kernel object that outlives the
//! daemon (fail closed: a crash or a clean stop leaves the interfaces locked); only
//! [`remove`] takes it away, run when the config stops sharing or by `bitcloud share off`;
//! it is replaced in one transaction and found by its name alone.

use std::net::IpAddr;

use nftables::expr::MetaKey;
use nftables::schema::Nftables;
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfHook};

use super::GatewayError;
use super::nft::{accept, drop, eq, meta, n, payload, s, set};

/// Our table's name.
pub const TABLE: &str = "bitcloud_share";
/// DHCPv4 server port (RFC 2131 §4.1).
const DHCP_SERVER: u32 = 67;
/// DHCPv6 server and relay port (RFC 8415 §7.2).
const DHCP6_SERVER: u32 = 547;
/// Before the filter chains of other tables (priority 0), so our verdict is seen even if the
/// operator's own firewall accepts first (an accept in one base chain never skips another's
/// drop).
const PRIORITY: i32 = -10;

/// What a shared interface lets in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareRules {
    /// The shared interfaces (matched by name, so one that appears later is covered at once).
    pub interfaces: Vec<String>,
    /// Our UDP listen port: the mesh.
    pub udp_port: u16,
    /// The discovery beacon port.
    pub beacon_port: u16,
}

impl ShareRules {
    fn in_from_shared(&self) -> Statement<'static> {
        eq(
            meta(MetaKey::Iifname),
            set(self.interfaces.iter().map(|i| s(i)).collect()),
        )
    }

    fn out_to_shared(&self) -> Statement<'static> {
        eq(
            meta(MetaKey::Oifname),
            set(self.interfaces.iter().map(|i| s(i)).collect()),
        )
    }

    /// The input chain's rules, in order: what a guest may send to this host.
    pub fn input_rules(&self) -> Vec<Vec<Statement<'static>>> {
        let ports = vec![
            n(DHCP_SERVER),
            n(DHCP6_SERVER),
            n(u32::from(self.beacon_port)),
            n(u32::from(self.udp_port)),
        ];
        vec![
            vec![
                self.in_from_shared(),
                eq(payload("udp", "dport"), set(ports)),
                accept(),
            ],
            // Router solicitation and neighbour discovery (RFC 4861): IPv6 on the link. Router
            // advertisements are not accepted: a guest is never our router.
            vec![
                self.in_from_shared(),
                eq(
                    payload("icmpv6", "type"),
                    set(vec![
                        s("nd-router-solicit"),
                        s("nd-neighbor-solicit"),
                        s("nd-neighbor-advert"),
                    ]),
                ),
                accept(),
            ],
            // ICMP errors, so path MTU discovery and unreachable ports work for our own UDP;
            // echo requests are not among them (a guest cannot even ping this host).
            vec![
                self.in_from_shared(),
                eq(
                    payload("icmp", "type"),
                    set(vec![
                        s("destination-unreachable"),
                        s("time-exceeded"),
                        s("parameter-problem"),
                    ]),
                ),
                accept(),
            ],
            vec![
                self.in_from_shared(),
                eq(
                    payload("icmpv6", "type"),
                    set(vec![
                        s("destination-unreachable"),
                        s("packet-too-big"),
                        s("time-exceeded"),
                        s("parameter-problem"),
                    ]),
                ),
                accept(),
            ],
            // Everything else: counted, so an operator sees what guests tried.
            vec![
                self.in_from_shared(),
                Statement::Counter(nftables::stmt::Counter::Anonymous(None)),
                drop(),
            ],
        ]
    }

    /// The forward chain's rules: nothing in or out of a shared interface is routed.
    pub fn forward_rules(&self) -> Vec<Vec<Statement<'static>>> {
        let counter = || Statement::Counter(nftables::stmt::Counter::Anonymous(None));
        vec![
            vec![self.in_from_shared(), counter(), drop()],
            vec![self.out_to_shared(), counter(), drop()],
        ]
    }

    /// One transaction that creates or replaces the table.
    pub fn batch(&self) -> Nftables<'static> {
        let mut b = super::nft::replace_table(TABLE);
        for (name, hook) in [("input", NfHook::Input), ("forward", NfHook::Forward)] {
            // Accept: the chains judge only shared interfaces; other traffic is not ours.
            b.add(super::nft::base_chain(
                TABLE,
                name,
                NfChainType::Filter,
                hook,
                PRIORITY,
                NfChainPolicy::Accept,
            ));
        }
        let rule = |chain, expr| super::nft::rule(TABLE, chain, expr);
        for r in self.input_rules() {
            b.add(rule("input", r));
        }
        for r in self.forward_rules() {
            b.add(rule("forward", r));
        }
        b.to_nftables()
    }

    /// Install or replace the table.
    pub fn apply(&self) -> Result<(), GatewayError> {
        nftables::helper::apply_ruleset(&self.batch())?;
        Ok(())
    }
}

/// Whether our table is installed.
pub fn installed() -> Result<bool, GatewayError> {
    Ok(super::nft::table_present(TABLE)?)
}

/// Remove the table if it is installed; returns whether it was.
pub fn remove() -> Result<bool, GatewayError> {
    Ok(super::nft::delete_table(TABLE)?)
}

/// The prefixes of the addresses on interface `name` (IPv4 and IPv6, link-local included):
/// where a guest on it speaks from.
pub fn interface_prefixes(name: &str) -> Vec<(IpAddr, u8)> {
    let others: Vec<String> = nix::ifaddrs::getifaddrs()
        .map(|a| a.map(|i| i.interface_name).filter(|n| n != name).collect())
        .unwrap_or_default();
    let skip: Vec<&str> = others.iter().map(String::as_str).collect();
    super::lan::connected_prefixes(&skip)
}

/// Whether `addr` lies in one of `prefixes`.
pub fn in_prefixes(addr: IpAddr, prefixes: &[(IpAddr, u8)]) -> bool {
    // A dual-stack socket reports IPv4 guests as mapped IPv6 addresses.
    let addr = addr.to_canonical();
    prefixes.iter().any(|(p, len)| match (addr, p) {
        (IpAddr::V4(a), IpAddr::V4(p)) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(*len).min(32))
                .unwrap_or(0);
            u32::from(a) & m == u32::from(*p) & m
        }
        (IpAddr::V6(a), IpAddr::V6(p)) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(*len).min(128))
                .unwrap_or(0);
            u128::from(a) & m == u128::from(*p) & m
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ShareRules {
        ShareRules {
            interfaces: vec!["wlan1".into(), "eth2".into()],
            udp_port: 51820,
            beacon_port: 51821,
        }
    }

    fn text(r: &[Statement]) -> String {
        serde_json::to_string(r).expect("serialises")
    }

    #[test]
    fn input_lets_in_only_what_joining_needs_then_drops() {
        let r = rules().input_rules();
        let first = text(&r[0]);
        for p in ["67", "547", "51820", "51821"] {
            assert!(first.contains(p), "{p}: {first}");
        }
        assert!(
            first.contains("\"wlan1\"") && first.contains("\"eth2\""),
            "{first}"
        );
        assert!(first.contains("\"udp\""), "UDP only: {first}");
        assert!(
            !first.contains("\"tcp\"") && !first.contains("53,"),
            "{first}"
        );
        let nd = text(&r[1]);
        assert!(nd.contains("nd-router-solicit") && !nd.contains("nd-router-advert"));
        let icmp = text(&r[2]) + &text(&r[3]);
        assert!(icmp.contains("destination-unreachable") && icmp.contains("packet-too-big"));
        assert!(!icmp.contains("echo-request"), "no ping: {icmp}");
        // Every rule matches a shared interface, the last drops whatever is left from one.
        for rule in &r {
            assert!(text(rule).contains("iifname"), "{}", text(rule));
        }
        assert!(matches!(
            r.last().and_then(|x| x.last()),
            Some(Statement::Drop(_))
        ));
    }

    #[test]
    fn nothing_is_forwarded_from_or_to_a_shared_interface() {
        let r = rules().forward_rules();
        assert_eq!(r.len(), 2);
        assert!(text(&r[0]).contains("iifname") && text(&r[1]).contains("oifname"));
        for rule in &r {
            assert!(matches!(rule.last(), Some(Statement::Drop(_))));
        }
    }

    #[test]
    fn the_batch_replaces_one_table_with_two_accepting_chains() {
        let j = serde_json::to_string(&rules().batch()).expect("serialises");
        assert!(j.contains(TABLE));
        assert_eq!(j.matches("\"flush\"").count(), 1, "{j}");
        assert!(j.contains("\"hook\":\"input\"") && j.contains("\"hook\":\"forward\""));
        assert!(
            !j.contains("\"policy\":\"drop\""),
            "other interfaces are not ours: {j}"
        );
        assert!(!j.contains("bitcloud_exit") && !j.contains("\"bitcloud\""));
    }

    #[test]
    fn prefixes_match_by_family_and_length() {
        let p = vec![
            ("198.18.5.0".parse().expect("ip"), 24),
            ("fe80::".parse().expect("ip"), 64),
        ];
        assert!(in_prefixes("198.18.5.77".parse().expect("ip"), &p));
        assert!(!in_prefixes("198.18.6.1".parse().expect("ip"), &p));
        assert!(in_prefixes("fe80::1".parse().expect("ip"), &p));
        assert!(in_prefixes("::ffff:198.18.5.1".parse().expect("ip"), &p));
        assert!(!in_prefixes("2001:db8::1".parse().expect("ip"), &p));
        assert!(in_prefixes(
            "10.0.0.1".parse().expect("ip"),
            &[("0.0.0.0".parse().expect("ip"), 0)]
        ));
    }
}
