//! The daemon's driver of the host network changes in `crate::gateway` (docs/exits.md): the
//! exit role (forwarding, the exit table, announcing the default routes) and the client role
//! (policy routes, the kill switch, DNS) as the exit choice changes. Invariants: while a
//! client mode other than `off` is in force the kill switch (when enabled) stays installed,
//! whether or not an exit is selected, so nothing leaks between exits; leaving `off` or a
//! clean shutdown removes everything we installed; a crash leaves the kill switch in place
//! and the next start (or `bitcloud exit use off`) finds and removes or re-applies it by name.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::{ClientSettings, Config, DnsMechanism, ExitSettings};
use crate::exit::Mode;
use crate::gateway::cleanup::{clear_client, resolv_conf};
use crate::gateway::{self, FWMARK, exit as gexit, killswitch::KillSwitch, policy, resolv};
use crate::identity::NodeId;
use crate::node::{MESH_OVERHEAD, Node};

/// How often installed rules, routes and tables are checked and re-applied if something
/// else removed them.
const REPAIR_INTERVAL: Duration = Duration::from_secs(2);
/// The forwarding switches as they were before this host became an exit.
use crate::gateway::cleanup::FORWARDING_FILE;

/// Client DNS as applied.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DnsApplied {
    ResolvConf(Vec<IpAddr>),
    Resolved(Vec<IpAddr>),
    Redirect(Vec<IpAddr>),
}

/// The gateway driver.
pub struct Gateway {
    tun: String,
    mtu: u16,
    data_dir: PathBuf,
    client: ClientSettings,
    exit: ExitSettings,
    /// The client mode engaged on the host (routes and kill switch), if not off.
    engaged: bool,
    /// The exit whose resolvers DNS points at.
    dns_exit: Option<NodeId>,
    dns: Option<DnsApplied>,
    exit_on: bool,
    /// The uplink was down at the last check: the default routes are retracted meanwhile.
    uplink_down: bool,
    next_uplink_check: Instant,
    /// The exit's DNS on our mesh addresses.
    dns_forwarder: Option<gateway::dns::DnsForwarder>,
    next_repair: Instant,
    nl: Option<rtnetlink::Handle>,
}

impl Gateway {
    /// A driver for `cfg`; nothing is changed until [`Gateway::start`].
    pub fn new(cfg: &Config, now: Instant) -> Self {
        Gateway {
            tun: cfg.tun.clone(),
            mtu: cfg.mtu,
            data_dir: cfg.data_dir.clone(),
            client: cfg.client,
            exit: cfg.exit.clone(),
            engaged: false,
            dns_exit: None,
            dns: None,
            exit_on: false,
            uplink_down: false,
            next_uplink_check: now,
            dns_forwarder: None,
            next_repair: now + REPAIR_INTERVAL,
            nl: None,
        }
    }

    fn netlink(&mut self) -> anyhow::Result<rtnetlink::Handle> {
        if let Some(h) = &self.nl {
            return Ok(h.clone());
        }
        let h = policy::connect()?;
        self.nl = Some(h.clone());
        Ok(h)
    }

    /// The exit's DNS forwarder counters, if it serves.
    pub fn dns_stats(&self) -> Option<gateway::dns::DnsStats> {
        self.dns_forwarder.as_ref().map(|f| f.stats())
    }

    /// Whether a client mode is engaged on the host.
    pub fn kill_switch_on(&self) -> bool {
        self.engaged && self.client.kill_switch
    }

    /// Bring the host in line with the config and `mode` at start: the exit role if enabled;
    /// the client's routes and kill switch if `mode` is not off, else any leftover removed.
    pub async fn start(&mut self, node: &mut Node, mode: Mode, now: Instant) -> anyhow::Result<()> {
        if self.exit.enabled {
            if mode != Mode::Off {
                anyhow::bail!("an exit cannot use another exit: [client] exit must be off");
            }
            self.start_exit(node, now)?;
        } else {
            self.clear_exit_leftovers();
        }
        self.set_mode(node, mode, now).await
    }

    fn start_exit(&mut self, node: &mut Node, now: Instant) -> anyhow::Result<()> {
        let uplink = self.exit.uplink.clone();
        let saved = self.data_dir.join(FORWARDING_FILE);
        let before = gexit::enable_forwarding(&uplink).context("enabling IP forwarding")?;
        // Only the first save counts: after a crash the switches are already ours.
        if !saved.exists() {
            crate::identity::write_file_atomic(
                &saved,
                format!("{}\n{}\n", before.v4.trim(), before.v6.trim()).as_bytes(),
                0o644,
            )
            .context("saving the forwarding switches")?;
        }
        let id = node.id();
        let max_inner = usize::from(self.mtu).saturating_sub(MESH_OVERHEAD);
        let rules = gexit::ExitRules {
            tun: self.tun.clone(),
            uplink,
            own_v4: id.ipv4(),
            own_v6: id.ipv6(),
            lan: gateway::lan::connected_prefixes(&[&self.tun]),
            blocked_ports: self.exit.blocked_ports.clone(),
            mss_v4: u16::try_from(max_inner.saturating_sub(40)).unwrap_or(1280),
        };
        rules.apply().context("installing the exit table")?;
        let upstreams: Vec<std::net::SocketAddr> = if self.exit.dns.is_empty() {
            let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            gateway::dns::host_upstreams(&text)
        } else {
            self.exit
                .dns
                .iter()
                .map(|a| std::net::SocketAddr::new(*a, gateway::dns::DNS_PORT))
                .collect()
        };
        let fwd = gateway::dns::DnsForwarder::start(
            &[IpAddr::V4(id.ipv4()), IpAddr::V6(id.ipv6())],
            gateway::dns::DNS_PORT,
            upstreams,
        )
        .context(
            "starting the exit's DNS forwarder (set [exit] dns if the host has no resolvers)",
        )?;
        tracing::info!(upstreams = ?fwd.upstreams(), "DNS for clients on our mesh addresses");
        self.dns_forwarder = Some(fwd);
        node.set_exit_role(true, self.exit.fee_per_mib, now);
        self.exit_on = true;
        tracing::info!(uplink = %self.exit.uplink, fee_per_mib = self.exit.fee_per_mib, blocked_ports = ?self.exit.blocked_ports, "serving as an exit");
        Ok(())
    }

    fn clear_exit_leftovers(&self) {
        match gexit::remove() {
            Ok(true) => tracing::info!("removed a leftover exit table"),
            Ok(false) => {}
            Err(e) => tracing::warn!("checking for a leftover exit table: {e}"),
        }
        self.restore_forwarding();
    }

    fn restore_forwarding(&self) {
        if let Err(e) = crate::gateway::cleanup::restore_forwarding(&self.data_dir) {
            tracing::warn!("restoring the forwarding switches: {e}");
        }
    }

    /// Change the client mode: engage routes and the kill switch, or remove everything.
    pub async fn set_mode(
        &mut self,
        node: &mut Node,
        mode: Mode,
        now: Instant,
    ) -> anyhow::Result<()> {
        if mode != Mode::Off && self.exit_on {
            anyhow::bail!("this node serves as an exit; it cannot use another exit");
        }
        node.set_exit_mode(mode, now);
        if mode == Mode::Off {
            if self.engaged {
                tracing::info!("exit off: removing routes, kill switch and DNS settings");
            }
            let r = clear_client(&self.tun, &self.data_dir).await?;
            tracing::debug!("client cleanup: {r}");
            self.engaged = false;
            self.dns = None;
            self.dns_exit = None;
            return Ok(());
        }
        self.engaged = true;
        self.apply_client(node.exit_in_use()).await
    }

    /// The exit in use changed: DNS and the kill switch follow it.
    pub async fn exit_changed(&mut self, exit: Option<NodeId>) -> anyhow::Result<()> {
        if !self.engaged {
            return Ok(());
        }
        self.apply_client(exit).await
    }

    async fn apply_client(&mut self, exit: Option<NodeId>) -> anyhow::Result<()> {
        // The kill switch first: routes into the TUN without it would be safe too, but DNS
        // to the host's resolvers must already be refused when the routes move.
        if exit.is_some() {
            self.dns_exit = exit;
        }
        let servers: Vec<IpAddr> = self
            .dns_exit
            .map(|x| vec![IpAddr::V4(x.ipv4()), IpAddr::V6(x.ipv6())])
            .unwrap_or_default();
        if self.client.kill_switch {
            self.kill_switch(&servers)
                .apply()
                .context("installing the kill switch")?;
        }
        let h = self.netlink()?;
        policy::apply(&h, &self.tun)
            .await
            .context("installing policy routes")?;
        if !servers.is_empty() {
            self.point_dns(&servers)?;
        }
        Ok(())
    }

    fn kill_switch(&self, dns: &[IpAddr]) -> KillSwitch {
        KillSwitch {
            tun: self.tun.clone(),
            fwmark: FWMARK,
            dns: dns.to_vec(),
            lan: self
                .client
                .allow_lan
                .then(|| gateway::lan::connected_prefixes(&[&self.tun])),
        }
    }

    fn point_dns(&mut self, servers: &[IpAddr]) -> anyhow::Result<()> {
        let servers = servers.to_vec();
        let want = match self.client.dns {
            DnsMechanism::Off => {
                // Turned off by a reload: undo what the previous mechanism did.
                if let Some(old) = self.dns.take() {
                    self.undo_dns(&old);
                }
                return Ok(());
            }
            DnsMechanism::ResolvConf => DnsApplied::ResolvConf(servers),
            DnsMechanism::Resolved => DnsApplied::Resolved(servers),
            DnsMechanism::Redirect => DnsApplied::Redirect(servers),
            DnsMechanism::Auto if resolv::resolved_running(Path::new("/")) => {
                DnsApplied::Resolved(servers)
            }
            DnsMechanism::Auto if resolv::writable(Path::new("/etc/resolv.conf")) => {
                DnsApplied::ResolvConf(servers)
            }
            DnsMechanism::Auto => DnsApplied::Redirect(servers),
        };
        if self.dns.as_ref() == Some(&want) {
            return Ok(());
        }
        if let Some(old) = self.dns.take()
            && std::mem::discriminant(&old) != std::mem::discriminant(&want)
        {
            self.undo_dns(&old);
        }
        match &want {
            DnsApplied::Resolved(s) => resolved_point(&self.tun, s)?,
            DnsApplied::ResolvConf(s) => resolv_conf(&self.data_dir)
                .point_at(s)
                .context("pointing /etc/resolv.conf at the exit")?,
            DnsApplied::Redirect(s) => gateway::dns_redirect::DnsRedirect {
                tun: self.tun.clone(),
                fwmark: FWMARK,
                servers: s.clone(),
            }
            .apply()
            .context("redirecting DNS to the exit")?,
        }
        tracing::info!(dns = ?want, "DNS points at the exit");
        self.dns = Some(want);
        Ok(())
    }

    /// Take back one DNS mechanism's changes (a reload chose another), best effort: the
    /// kill switch keeps DNS from leaking meanwhile.
    fn undo_dns(&self, old: &DnsApplied) {
        let r = match old {
            DnsApplied::ResolvConf(_) => resolv_conf(&self.data_dir).restore().map(drop),
            DnsApplied::Resolved(_) => {
                gateway::cleanup::resolved_revert(&self.tun);
                Ok(())
            }
            DnsApplied::Redirect(_) => gateway::dns_redirect::remove().map(drop),
        };
        if let Err(e) = r {
            tracing::warn!("undoing the previous DNS settings: {e}");
        }
    }

    /// Re-apply what something else removed (rules, routes, the kill switch, our resolver
    /// file); cheap when nothing changed. Call from the event loop's tick.
    pub async fn repair(&mut self, now: Instant) {
        if now < self.next_repair || !self.engaged {
            return;
        }
        self.next_repair = now + REPAIR_INTERVAL;
        let Ok(h) = self.netlink() else { return };
        let complete = policy::installed(&h).await.is_ok_and(|i| i.complete());
        let ks = !self.client.kill_switch || gateway::killswitch::installed().unwrap_or(true);
        let dns_ok = match &self.dns {
            Some(DnsApplied::ResolvConf(_)) => resolv_conf(&self.data_dir).is_ours(),
            Some(DnsApplied::Redirect(_)) => gateway::dns_redirect::installed().unwrap_or(true),
            _ => true,
        };
        if complete && ks && dns_ok {
            return;
        }
        tracing::warn!(
            routes = complete,
            kill_switch = ks,
            dns = dns_ok,
            "something removed our settings; re-applying"
        );
        if !dns_ok {
            self.dns = None;
        }
        if let Err(e) = self.apply_client(self.dns_exit).await {
            tracing::warn!("re-applying the exit settings: {e:#}");
        }
    }

    /// An exit whose uplink goes down retracts its default routes (its clients fail over at
    /// once rather than buying a dead uplink) and announces them again when it comes back.
    /// Reads the uplink's operstate every [`REPAIR_INTERVAL`].
    pub fn watch_uplink(&mut self, node: &mut Node, now: Instant) {
        if !self.exit_on || now < self.next_uplink_check {
            return;
        }
        self.next_uplink_check = now + REPAIR_INTERVAL;
        let state =
            std::fs::read_to_string(format!("/sys/class/net/{}/operstate", self.exit.uplink))
                .unwrap_or_default();
        // "unknown" is what interfaces without carrier detection (tun, some virtual) report.
        let down = !matches!(state.trim(), "up" | "unknown");
        if down != self.uplink_down {
            self.uplink_down = down;
            tracing::warn!(uplink = %self.exit.uplink, state = state.trim(), "uplink {}: {} the default routes", if down { "down" } else { "up" }, if down { "retracting" } else { "announcing" });
            node.set_exit_role(!down, self.exit.fee_per_mib, now);
        }
    }

    /// A reloaded config: new client settings (kill switch, LAN, DNS) apply at once if a mode
    /// is engaged; a new exit fee is announced at once. Returns what needs a restart instead.
    pub async fn update(
        &mut self,
        node: &mut Node,
        exit: &ExitSettings,
        client: ClientSettings,
        now: Instant,
    ) -> Vec<&'static str> {
        let mut restart = Vec::new();
        if exit.enabled != self.exit.enabled || exit.uplink != self.exit.uplink {
            restart.push("exit.enabled/exit.uplink");
        } else if exit.dns != self.exit.dns || exit.blocked_ports != self.exit.blocked_ports {
            restart.push("exit.dns/exit.block_ports/exit.allow_ports");
        } else if exit.fee_per_mib != self.exit.fee_per_mib && self.exit_on {
            self.exit.fee_per_mib = exit.fee_per_mib;
            if !self.uplink_down {
                node.set_exit_role(true, exit.fee_per_mib, now);
            }
            tracing::info!(fee_per_mib = exit.fee_per_mib, "exit fee changed");
        }
        if client != self.client {
            let was_kill_switch = self.client.kill_switch;
            self.client = client;
            if self.engaged {
                if was_kill_switch && !client.kill_switch {
                    let _ = gateway::killswitch::remove();
                }
                // `self.dns` stays: point_dns undoes it if the mechanism changed.
                if let Err(e) = self.apply_client(self.dns_exit).await {
                    tracing::warn!("applying the new [client] settings: {e:#}");
                }
            }
        }
        restart
    }

    /// Clean shutdown: stop serving (the retraction goes out with the node's last flush) and
    /// remove everything we installed.
    pub async fn shutdown(&mut self, node: &mut Node, now: Instant) {
        if self.exit_on {
            node.set_exit_role(false, self.exit.fee_per_mib, now);
            if let Err(e) = gexit::remove() {
                tracing::warn!("removing the exit table: {e}");
            }
            self.restore_forwarding();
            self.exit_on = false;
            if let Some(f) = self.dns_forwarder.take() {
                f.stop().await;
            }
        }
        if self.engaged {
            match clear_client(&self.tun, &self.data_dir).await {
                Ok(r) => tracing::info!("exit settings removed: {r}"),
                Err(e) => tracing::warn!("removing the exit settings: {e:#}"),
            }
            self.engaged = false;
        }
    }
}

/// Per-link DNS on the TUN through systemd-resolved (`resolvectl`): the settings die with
/// the link, so a crash leaves nothing to restore.
fn resolved_point(tun: &str, servers: &[IpAddr]) -> anyhow::Result<()> {
    let mut dns = vec!["dns".to_string(), tun.to_string()];
    dns.extend(servers.iter().map(|s| s.to_string()));
    for args in [
        dns,
        vec!["domain".into(), tun.into(), "~.".into()],
        vec!["default-route".into(), tun.into(), "true".into()],
    ] {
        let st = std::process::Command::new("resolvectl")
            .args(&args)
            .status()
            .with_context(|| format!("running resolvectl {}", args.join(" ")))?;
        if !st.success() {
            anyhow::bail!("resolvectl {} failed: {st}", args.join(" "));
        }
    }
    Ok(())
}
