//! `[exit]` (this node sells its uplink) and `[client]` (this node's internet goes through an
//! exit), docs/exits.md. Invariants: an enabled exit names a valid uplink interface; upstream
//! resolvers are never overlay addresses (they would loop into the mesh); a port is either
//! blocked or allowed, never both; a fixed exit is a valid node id.

use std::net::IpAddr;

use serde::Deserialize;
use toml::Spanned;

use super::wallet::SpanError;
use crate::exit::Mode;
use crate::gateway::exit::DEFAULT_BLOCKED_PORTS;
use crate::identity::NodeId;

/// `[exit]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExitSettings {
    /// Sell the uplink: announce the default routes, forward and masquerade.
    pub enabled: bool,
    /// The interface towards the internet.
    pub uplink: String,
    /// What clients pay per MiB carried to or from the internet (both directions).
    pub fee_per_mib: u64,
    /// Upstream resolvers for the DNS we answer on our mesh addresses (empty: the host's own,
    /// read from `/etc/resolv.conf` at start).
    pub dns: Vec<IpAddr>,
    /// TCP and UDP destination ports refused: SMTP by default, plus `block_ports`, less
    /// `allow_ports`.
    pub blocked_ports: Vec<u16>,
}

/// How the client points the host's DNS at its exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum DnsMechanism {
    /// systemd-resolved per link when it runs, else `/etc/resolv.conf` if we may write it,
    /// else `redirect` (the hardened service may not write `/etc`).
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// Always replace `/etc/resolv.conf` (with a backup restored on `exit use off`).
    #[serde(rename = "resolv.conf")]
    ResolvConf,
    /// Always systemd-resolved (`resolvectl`) on the TUN.
    #[serde(rename = "resolved")]
    Resolved,
    /// Rewrite the host's DNS queries to the exit's resolver in nftables (`inet bitcloud_dns`),
    /// whatever resolver the host is configured with; needs only CAP_NET_ADMIN.
    #[serde(rename = "redirect")]
    Redirect,
    /// Leave the host's DNS alone (the kill switch still refuses DNS to anyone but the exit).
    #[serde(rename = "off")]
    Off,
}

/// `[client]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    /// Which exit to use at start (`bitcloud exit use` changes it at run time).
    pub exit: Mode,
    /// Fail closed while an exit is in use: nothing leaves but through the mesh.
    pub kill_switch: bool,
    /// Keep the host's LAN reachable while an exit is in use.
    pub allow_lan: bool,
    /// How DNS is pointed at the exit.
    pub dns: DnsMechanism,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            exit: Mode::Off,
            kill_switch: true,
            allow_lan: true,
            dns: DnsMechanism::Auto,
        }
    }
}

/// Parse `auto`, `off` or a node id, as `[client] exit` and `bitcloud exit use` take them.
pub fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "auto" => Ok(Mode::Auto),
        "off" => Ok(Mode::Off),
        id => id
            .parse::<NodeId>()
            .map(Mode::Fixed)
            .map_err(|e| format!("{id:?} is not auto, off or a node id: {e}")),
    }
}

/// The text form of a mode (what `parse_mode` reads).
pub fn mode_name(m: Mode) -> String {
    match m {
        Mode::Off => "off".into(),
        Mode::Auto => "auto".into(),
        Mode::Fixed(id) => id.to_string(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExit {
    enabled: Option<Spanned<bool>>,
    uplink: Option<Spanned<String>>,
    fee_per_mib: Option<u64>,
    #[serde(default)]
    dns: Vec<Spanned<String>>,
    #[serde(default)]
    allow_ports: Vec<Spanned<u16>>,
    #[serde(default)]
    block_ports: Vec<Spanned<u16>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    exit: Option<Spanned<String>>,
    kill_switch: Option<bool>,
    allow_lan: Option<bool>,
    #[serde(default)]
    dns: DnsMechanism,
}

impl RawExit {
    pub(super) fn validate(&self) -> Result<ExitSettings, SpanError> {
        let mut e = ExitSettings {
            enabled: self.enabled.as_ref().is_some_and(|v| *v.get_ref()),
            fee_per_mib: self.fee_per_mib.unwrap_or(0),
            ..ExitSettings::default()
        };
        match &self.uplink {
            Some(u) if !super::valid_ifname(u.get_ref()) => {
                return Err((
                    u.span(),
                    format!(
                        "invalid interface name {:?}: 1-15 of [A-Za-z0-9._-]",
                        u.get_ref()
                    ),
                ));
            }
            Some(u) => e.uplink = u.get_ref().clone(),
            None => {
                if let Some(en) = self.enabled.as_ref().filter(|v| *v.get_ref()) {
                    return Err((en.span(), "an enabled exit needs exit.uplink".into()));
                }
            }
        }
        for d in &self.dns {
            let a: IpAddr = d
                .get_ref()
                .parse()
                .map_err(|_| (d.span(), format!("{:?} is not an IP address", d.get_ref())))?;
            if crate::route::is_overlay(a) || a.is_unspecified() || a.is_multicast() {
                return Err((
                    d.span(),
                    format!(
                        "{a} cannot be an upstream resolver (overlay, unspecified or multicast)"
                    ),
                ));
            }
            e.dns.push(a);
        }
        for p in &self.allow_ports {
            if self.block_ports.iter().any(|b| b.get_ref() == p.get_ref()) {
                return Err((
                    p.span(),
                    format!("port {} is both allowed and blocked", p.get_ref()),
                ));
            }
        }
        let allowed = |port: u16| self.allow_ports.iter().any(|a| *a.get_ref() == port);
        let mut blocked: Vec<u16> = DEFAULT_BLOCKED_PORTS.to_vec();
        blocked.extend(self.block_ports.iter().map(|b| *b.get_ref()));
        blocked.retain(|&p| p != 0 && !allowed(p));
        blocked.sort_unstable();
        blocked.dedup();
        e.blocked_ports = blocked;
        Ok(e)
    }
}

impl RawClient {
    pub(super) fn validate(&self) -> Result<ClientSettings, SpanError> {
        let mut c = ClientSettings {
            dns: self.dns,
            ..ClientSettings::default()
        };
        if let Some(x) = &self.exit {
            c.exit = parse_mode(x.get_ref()).map_err(|m| (x.span(), m))?;
        }
        c.kill_switch = self.kill_switch.unwrap_or(true);
        c.allow_lan = self.allow_lan.unwrap_or(true);
        Ok(c)
    }
}
