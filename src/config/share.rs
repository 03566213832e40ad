//! `[share]`: interfaces handed to strangers, on which they may speak only Bitcloud
//! (docs/share.md). Invariants: every shared interface is a valid name listed once, never the
//! TUN nor the exit's uplink (locking the uplink would cut the exit off); sharing turns
//! discovery on for its interfaces and needs `discovery.accept = "any"` (guests are strangers).

use serde::Deserialize;
use toml::Spanned;

use super::wallet::SpanError;

/// `[share]`, validated. Empty `interfaces`: not sharing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShareSettings {
    /// The interfaces strangers join (an open guest SSID, a spare port).
    pub interfaces: Vec<String>,
}

impl ShareSettings {
    /// Whether any interface is shared.
    pub fn enabled(&self) -> bool {
        !self.interfaces.is_empty()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShare {
    #[serde(default)]
    interfaces: Vec<Spanned<String>>,
    dhcp: Option<Spanned<bool>>,
}

impl RawShare {
    /// Validate on its own; `tun` and `uplink` (the exit's, if any) may not be shared.
    pub(super) fn validate(
        &self,
        tun: &str,
        uplink: Option<&str>,
    ) -> Result<ShareSettings, SpanError> {
        if let Some(d) = &self.dhcp
            && *d.get_ref()
        {
            // No small DHCP server crate we would trust with a public link is worth the
            // dependency; dnsmasq does it in three lines (docs/share.md).
            return Err((
                d.span(),
                "no built-in DHCP server: run dnsmasq on the interface (docs/share.md)".into(),
            ));
        }
        let mut s = ShareSettings::default();
        for i in &self.interfaces {
            let name = i.get_ref();
            if !super::valid_ifname(name) {
                return Err((
                    i.span(),
                    format!("invalid interface name {name:?}: 1-15 of [A-Za-z0-9._-]"),
                ));
            }
            if s.interfaces.contains(name) {
                return Err((i.span(), format!("interface {name:?} is listed twice")));
            }
            if name == tun {
                return Err((
                    i.span(),
                    format!("{name:?} is our TUN, not a link to share"),
                ));
            }
            if Some(name.as_str()) == uplink {
                return Err((
                    i.span(),
                    format!("{name:?} is the exit's uplink: guests must join on another interface"),
                ));
            }
            s.interfaces.push(name.clone());
        }
        Ok(s)
    }

    /// Where an error about the whole table points: the first interface.
    pub(super) fn span(&self) -> Option<std::ops::Range<usize>> {
        self.interfaces.first().map(|i| i.span())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    const BASE: &str = "[node]\nkey_file = \"k\"\nlisten = \"0.0.0.0:51820\"\ntun = \"bc0\"\n";

    fn parse(extra: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(Path::new("/etc/bitcloud/b.toml"), &format!("{BASE}{extra}"))
    }

    #[test]
    fn sharing_turns_discovery_on_for_its_interfaces() {
        let c = parse("[share]\ninterfaces = [\"wlan1\", \"eth2\"]\n").expect("valid");
        assert_eq!(c.share.interfaces, ["wlan1", "eth2"]);
        assert!(c.discovery.enabled);
        assert_eq!(c.discovery.interfaces, ["wlan1", "eth2"]);
        let c = parse(
            "[discovery]\nenabled = true\ninterfaces = [\"eth0\", \"wlan1\"]\n\
             [share]\ninterfaces = [\"wlan1\"]\n",
        )
        .expect("valid");
        assert_eq!(c.discovery.interfaces, ["eth0", "wlan1"], "no duplicate");
        let c = parse("").expect("valid");
        assert!(!c.share.enabled() && !c.discovery.enabled);
    }

    #[test]
    fn bad_share_settings_name_their_line() {
        for (extra, key, msg) in [
            (
                "[share]\ninterfaces = [\"a b\"]\n",
                "share.interfaces",
                "invalid interface",
            ),
            (
                "[share]\ninterfaces = [\"x\", \"x\"]\n",
                "share.interfaces",
                "twice",
            ),
            (
                "[share]\ninterfaces = [\"bc0\"]\n",
                "share.interfaces",
                "TUN",
            ),
            (
                "[exit]\nenabled = true\nuplink = \"up0\"\n[share]\ninterfaces = [\"up0\"]\n",
                "share.interfaces",
                "uplink",
            ),
            (
                "[share]\ninterfaces = [\"w\"]\ndhcp = true\n",
                "share.dhcp",
                "dnsmasq",
            ),
            (
                "[discovery]\naccept = \"configured\"\n[share]\ninterfaces = [\"w\"]\n",
                "share.interfaces",
                "accept",
            ),
            ("[share]\nport = 1\n", "share.port", "unknown field"),
        ] {
            let e = parse(extra).expect_err(extra);
            assert_eq!(e.key, key, "{extra}: {e}");
            assert!(e.to_string().contains(msg), "{extra}: {e}");
        }
        assert!(parse("[share]\ninterfaces = [\"w\"]\ndhcp = false\n").is_ok());
    }
}
