//! TOML config file -> validated `Config`. Invariant: every error names the file, the line
//! and the key (`file:line: key: message`), and unknown keys are errors, not silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::identity::NodeId;
use crate::session::timers::Timers;

mod exit;
mod ledger;
mod routing;
mod share;
mod template;
mod wallet;
pub use exit::{ClientSettings, DnsMechanism, ExitSettings, mode_name, parse_mode};
pub use ledger::{EvmLedger, LedgerKind, LedgerSettings};
pub use routing::RoutingSettings;
pub use share::ShareSettings;
pub use wallet::{Testing, WalletSettings};

/// Default config path.
pub const DEFAULT_CONFIG: &str = "/etc/bitcloud/bitcloud.toml";
/// Default TUN MTU: 1420 leaves room for IPv6 + UDP + our 32 bytes in a 1500 underlay.
pub const DEFAULT_MTU: u16 = 1420;
/// Default control socket.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/bitcloud/bitcloud.sock";
/// Default state directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/bitcloud";
/// Default time between two LAN discovery beacons.
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);
/// The largest `[session]` timer accepted (one day), so no timer arithmetic can overflow.
pub const MAX_TIMER_SECS: u64 = 86_400;
/// Longest beacon interval accepted, in seconds (an hour; longer is discovery in name only).
pub const MAX_DISCOVERY_INTERVAL_SECS: u64 = 3600;
/// Upper bound of `[session] crypto_threads`: more threads than this only add wakeups.
pub const MAX_CRYPTO_THREADS: usize = 16;

/// A config error with its place.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {key}: {msg}")]
pub struct ConfigError {
    /// The config file.
    pub file: String,
    /// 1-based line (0 if the file could not be read).
    pub line: usize,
    /// The key (dotted with its table), or `-` if none applies.
    pub key: String,
    /// What is wrong.
    pub msg: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// Node key file (absolute).
    pub key_file: PathBuf,
    /// UDP listen address.
    pub listen: SocketAddr,
    /// TUN device name.
    pub tun: String,
    /// TUN MTU.
    pub mtu: u16,
    /// Control socket path (absolute).
    pub control_socket: PathBuf,
    /// State directory (absolute).
    pub data_dir: PathBuf,
    /// Session timers.
    pub timers: Timers,
    /// `[session] ciphers`: the transport ciphers offered in handshakes
    /// (`session::aead::Cipher` bits; `None`: AES-256-GCM where the CPU has AES, and
    /// ChaCha20-Poly1305).
    pub ciphers: Option<u8>,
    /// `[session] crypto_threads`: how many threads seal a TUN batch, the event loop's
    /// included (1..=[`MAX_CRYPTO_THREADS`]; `None`: chosen from the CPU count at start,
    /// docs/crypto-threads.md).
    pub crypto_threads: Option<usize>,
    /// Configured neighbours.
    pub peers: Vec<PeerEntry>,
    /// LAN discovery (`[discovery]`).
    pub discovery: DiscoveryConfig,
    /// Prices (`[pricing]`).
    pub pricing: Pricing,
    /// Money policy (`[wallet]`).
    pub wallet: WalletSettings,
    /// Router bounds (`[routing]`).
    pub routing: RoutingSettings,
    /// Test-only switches (`[testing]`).
    pub testing: Testing,
    /// Selling the uplink (`[exit]`).
    pub exit: ExitSettings,
    /// Using an exit (`[client]`).
    pub client: ClientSettings,
    /// Prometheus metrics (`[metrics] listen`); None: off.
    pub metrics: Option<SocketAddr>,
    /// Interfaces shared with strangers (`[share]`, docs/share.md).
    pub share: ShareSettings,
    /// Where channels settle (`[ledger]`, docs/ledger.md).
    pub ledger: LedgerSettings,
}

/// `[discovery]`: LAN beacons (docs/discovery.md). Default: disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Whether to send and receive beacons at all.
    pub enabled: bool,
    /// Interfaces to beacon on (valid names, no duplicates; non-empty when enabled).
    pub interfaces: Vec<String>,
    /// Which senders to report.
    pub accept: DiscoveryAccept,
    /// Time between two beacons (1 s ..= 1 h).
    pub interval: Duration,
    /// UDP port beacons go to and are received on (never 0).
    pub port: u16,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            enabled: false,
            interfaces: Vec::new(),
            accept: DiscoveryAccept::Any,
            interval: DEFAULT_DISCOVERY_INTERVAL,
            port: crate::wire::discovery::BEACON_PORT,
        }
    }
}

/// `discovery.accept`: whose beacons are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryAccept {
    /// Any node with a validly signed beacon (`"any"`).
    #[default]
    Any,
    /// Only nodes listed as `[[peer]]` (`"configured"`): discovery just finds their endpoints.
    Configured,
}

/// One `[[peer]]`.
#[derive(Debug, Clone)]
pub struct PeerEntry {
    /// Node id.
    pub id: NodeId,
    /// Endpoint, if known.
    pub endpoint: Option<SocketAddr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    node: RawNode,
    #[serde(default)]
    session: RawSession,
    #[serde(default)]
    peer: Vec<RawPeer>,
    #[serde(default)]
    discovery: RawDiscovery,
    #[serde(default)]
    pricing: Pricing,
    #[serde(default)]
    routing: routing::RawRouting,
    #[serde(default)]
    wallet: wallet::RawWallet,
    testing: Option<Spanned<wallet::RawTesting>>,
    #[serde(default)]
    exit: exit::RawExit,
    #[serde(default)]
    client: exit::RawClient,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    share: share::RawShare,
    ledger: Option<Spanned<ledger::RawLedger>>,
}

/// `[metrics]`: where Prometheus text is served (off unless `listen` is set).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<SocketAddr>,
}

/// `[pricing]`: what this node bills for forwarding and what it will pay (units per MiB of
/// the smallest cloudcoin unit; integers, never floats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pricing {
    /// Our own fee for forwarding, added to every route we advertise.
    pub fee_per_mib: u64,
    /// Routes priced above this are never used, and we never pay above it (default
    /// [`crate::money::payer::DEFAULT_MAX_PRICE_PER_MIB`], docs/money.md).
    pub max_price_per_mib: Option<u64>,
    /// How much one unit of price per MiB weighs against one unit of routing metric, in
    /// thousandths (1000: a 256-cost hop is worth 256 units per MiB).
    pub price_weight_milli: u64,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            fee_per_mib: 0,
            max_price_per_mib: Some(crate::money::payer::DEFAULT_MAX_PRICE_PER_MIB),
            price_weight_milli: 1000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    key_file: PathBuf,
    listen: SocketAddr,
    tun: Spanned<String>,
    mtu: Option<Spanned<u16>>,
    control_socket: Option<PathBuf>,
    data_dir: Option<PathBuf>,
}

/// Timer overrides in seconds; they exist so tests can force a rekey quickly.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSession {
    rekey_after_time: Option<Spanned<u64>>,
    reject_after_time: Option<Spanned<u64>>,
    keepalive_timeout: Option<Spanned<u64>>,
    rekey_timeout: Option<Spanned<u64>>,
    persistent_keepalive: Option<Spanned<u64>>,
    ciphers: Option<Spanned<Vec<Spanned<String>>>>,
    crypto_threads: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDiscovery {
    enabled: Option<Spanned<bool>>,
    #[serde(default)]
    interfaces: Vec<Spanned<String>>,
    #[serde(default)]
    accept: DiscoveryAccept,
    interval_secs: Option<Spanned<u64>>,
    port: Option<Spanned<u16>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    id: Spanned<NodeId>,
    endpoint: Option<SocketAddr>,
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            key: "-".into(),
            msg: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Validate config text as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let at = |span: Option<std::ops::Range<usize>>, msg: String| {
            let (line, key) = locate(text, span.map_or(0, |s| s.start));
            ConfigError {
                file: path.display().to_string(),
                line,
                key,
                msg,
            }
        };
        let raw: Raw = toml::from_str(text).map_err(|e| at(e.span(), e.message().to_string()))?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };

        let tun = raw.node.tun.get_ref().clone();
        if !valid_ifname(&tun) {
            return Err(at(
                Some(raw.node.tun.span()),
                format!("invalid interface name {tun:?}: 1-15 of [A-Za-z0-9._-]"),
            ));
        }
        let mtu = match raw.node.mtu {
            None => DEFAULT_MTU,
            Some(m) if (1280..=9000).contains(m.get_ref()) => *m.get_ref(),
            Some(m) => {
                return Err(at(
                    Some(m.span()),
                    format!("mtu {} out of range 1280..=9000", m.get_ref()),
                ));
            }
        };

        let mut timers = Timers::default();
        let s = &raw.session;
        let ciphers = match &s.ciphers {
            None => None,
            Some(list) => {
                let mut set = 0u8;
                for c in list.get_ref() {
                    set |= match c.get_ref().as_str() {
                        "chacha20-poly1305" => crate::session::aead::Cipher::CHACHA20_POLY1305,
                        "aes-256-gcm" => crate::session::aead::Cipher::AES_256_GCM,
                        other => {
                            return Err(at(
                                Some(c.span()),
                                format!(
                                    "unknown cipher {other:?} (\"aes-256-gcm\", \"chacha20-poly1305\")"
                                ),
                            ));
                        }
                    };
                }
                if set == 0 {
                    return Err(at(Some(list.span()), "name at least one cipher".into()));
                }
                Some(set)
            }
        };
        // Upper bound: timer arithmetic (backoff doubling, Instant additions, 3/2 ratios) must
        // never overflow, and a day is far beyond any useful session timer.
        let secs = |v: &Option<Spanned<u64>>, min: u64| -> Result<Option<Duration>, ConfigError> {
            match v {
                None => Ok(None),
                Some(x) if (min..=MAX_TIMER_SECS).contains(x.get_ref()) => {
                    Ok(Some(Duration::from_secs(*x.get_ref())))
                }
                Some(x) => Err(at(
                    Some(x.span()),
                    format!("must be {min} to {MAX_TIMER_SECS} seconds"),
                )),
            }
        };
        if let Some(d) = secs(&s.rekey_after_time, 1)? {
            timers.rekey_after_time = d;
            // Keep WireGuard's 180/120 ratio unless reject is given too.
            timers.reject_after_time = d * 3 / 2;
        }
        if let Some(d) = secs(&s.reject_after_time, 1)? {
            timers.reject_after_time = d;
        }
        if timers.reject_after_time <= timers.rekey_after_time {
            let span = s
                .reject_after_time
                .as_ref()
                .or(s.rekey_after_time.as_ref())
                .map(|x| x.span());
            return Err(at(
                span,
                "reject_after_time must exceed rekey_after_time".into(),
            ));
        }
        if let Some(d) = secs(&s.keepalive_timeout, 1)? {
            timers.keepalive_timeout = d;
        }
        if let Some(d) = secs(&s.rekey_timeout, 1)? {
            timers.rekey_timeout = d;
        }
        timers.persistent_keepalive = secs(&s.persistent_keepalive, 1)?;
        let crypto_threads = match &s.crypto_threads {
            None => None,
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(v) if (1..=MAX_CRYPTO_THREADS).contains(&v) => Some(v),
                _ => {
                    return Err(at(
                        Some(n.span()),
                        format!("crypto_threads must be 1 to {MAX_CRYPTO_THREADS}"),
                    ));
                }
            },
        };

        let mut peers: Vec<PeerEntry> = Vec::new();
        for p in &raw.peer {
            let id = *p.id.get_ref();
            if peers.iter().any(|q| q.id == id) {
                return Err(at(Some(p.id.span()), format!("peer {id} is listed twice")));
            }
            peers.push(PeerEntry {
                id,
                endpoint: p.endpoint,
            });
        }

        let d = &raw.discovery;
        let mut discovery = DiscoveryConfig {
            enabled: d.enabled.as_ref().is_some_and(|e| *e.get_ref()),
            accept: d.accept,
            ..DiscoveryConfig::default()
        };
        for i in &d.interfaces {
            let name = i.get_ref();
            if !valid_ifname(name) {
                return Err(at(
                    Some(i.span()),
                    format!("invalid interface name {name:?}: 1-15 of [A-Za-z0-9._-]"),
                ));
            }
            if discovery.interfaces.contains(name) {
                return Err(at(
                    Some(i.span()),
                    format!("interface {name:?} is listed twice"),
                ));
            }
            discovery.interfaces.push(name.clone());
        }
        if let Some(e) = &d.enabled
            && *e.get_ref()
            && discovery.interfaces.is_empty()
        {
            return Err(at(
                Some(e.span()),
                "discovery is enabled but discovery.interfaces is empty".into(),
            ));
        }
        if let Some(x) = &d.interval_secs {
            let v = *x.get_ref();
            if !(1..=MAX_DISCOVERY_INTERVAL_SECS).contains(&v) {
                return Err(at(
                    Some(x.span()),
                    format!("interval {v} s out of range 1..={MAX_DISCOVERY_INTERVAL_SECS}"),
                ));
            }
            discovery.interval = Duration::from_secs(v);
        }
        if let Some(p) = &d.port {
            if *p.get_ref() == 0 {
                return Err(at(Some(p.span()), "port must not be 0".into()));
            }
            discovery.port = *p.get_ref();
        }

        let exit = raw
            .exit
            .validate()
            .map_err(|(span, msg)| at(Some(span), msg))?;
        let uplink = exit.enabled.then_some(exit.uplink.as_str());
        let share = raw
            .share
            .validate(&tun, uplink)
            .map_err(|(span, msg)| at(Some(span), msg))?;
        // Guests find the sharer by its beacons on the shared interfaces, as strangers.
        if share.enabled() {
            if discovery.accept == DiscoveryAccept::Configured {
                return Err(at(
                    raw.share.span(),
                    "sharing needs discovery.accept = \"any\": guests are strangers".into(),
                ));
            }
            discovery.enabled = true;
            for i in &share.interfaces {
                if !discovery.interfaces.contains(i) {
                    discovery.interfaces.push(i.clone());
                }
            }
        }

        Ok(Config {
            path: path.to_path_buf(),
            key_file: abs(&raw.node.key_file),
            listen: raw.node.listen,
            tun,
            mtu,
            control_socket: abs(raw
                .node
                .control_socket
                .as_deref()
                .unwrap_or(Path::new(DEFAULT_CONTROL_SOCKET))),
            data_dir: abs(raw
                .node
                .data_dir
                .as_deref()
                .unwrap_or(Path::new(DEFAULT_DATA_DIR))),
            timers,
            ciphers,
            crypto_threads,
            peers,
            discovery,
            pricing: raw.pricing,
            wallet: raw
                .wallet
                .validate()
                .map_err(|(span, msg)| at(Some(span), msg))?,
            routing: raw
                .routing
                .validate()
                .map_err(|(span, msg)| at(Some(span), msg))?,
            testing: wallet::RawTesting::validate(raw.testing.as_ref())
                .map_err(|(span, msg)| at(Some(span), msg))?,
            exit,
            client: raw
                .client
                .validate()
                .map_err(|(span, msg)| at(Some(span), msg))?,
            metrics: raw.metrics.listen,
            share,
            ledger: match &raw.ledger {
                None => LedgerSettings::default(),
                Some(l) => l
                    .get_ref()
                    .validate(l.span())
                    .map_err(|(span, msg)| at(Some(span), msg))?,
            },
        })
    }
}

/// A Linux interface name: 1-15 of `[A-Za-z0-9._-]`.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The 1-based line of byte `offset` and the dotted key written on that line, if any.
fn locate(text: &str, offset: usize) -> (usize, String) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    let mut table = String::new();
    for l in text.lines().take(line_no) {
        let t = l.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
    }
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let full = match (key, table.is_empty()) {
        (Some(k), true) => k,
        (Some(k), false) => format!("{table}.{k}"),
        (None, false) => table,
        (None, true) => "-".into(),
    };
    (line_no, full)
}

/// Config text that `bitcloud init` writes: the node's own settings, then every other section
/// commented out at its default ([`template`]).
pub fn render_initial(
    key_file: &str,
    listen: SocketAddr,
    tun: &str,
    control_socket: &str,
    data_dir: &str,
) -> String {
    template::render(key_file, listen, tun, control_socket, data_dir)
}

#[cfg(test)]
mod tests;
