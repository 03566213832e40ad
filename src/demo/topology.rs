//! The demo mesh: who is where, what each charges, and their config files. Topology:
//!
//! ```text
//!            relay1 ── exitA ──┐
//!   client <                   internet (198.19.0.1)
//!            relay2 ── exitB ──┘
//! ```
//!
//! The client has no uplink of its own: the internet is reachable only through an exit, and
//! each exit only through its relay, so every byte of a download is carried (and paid for)
//! twice. Invariants: underlay links on 198.18.0.0/15, the internet on 198.19.0.0/16; every
//! path is client-relay-exit, so each link channel is billed at its relay's own fee, and the
//! client's cheaper path (relay1 + exitA) is more than 10 % cheaper than the other, so `auto`
//! settles on exitA.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;

use super::lab::{Lab, ip};
use crate::config::{self, Config};
use crate::identity::{Identity, NodeId};

/// Where the demo's web server listens, inside the internet namespace.
pub const INTERNET_ADDR: &str = "198.19.0.1";
/// The daemons' UDP port (each in its own namespace).
pub const PORT: u16 = 51820;
/// How often payers sign vouchers (ms): fast, so the live view shows coins moving.
pub const PAY_INTERVAL_MS: u64 = 500;

/// What a node does in the demo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Pays for everything it sends and receives.
    Client,
    /// Forwards for a fee per MiB.
    Relay,
    /// Sells its uplink for a fee per MiB.
    Exit,
}

/// One daemon of the demo.
#[derive(Clone, Debug)]
pub struct DemoNode {
    /// Short name: `client`, `relay1`, `relay2`, `exitA`, `exitB`.
    pub name: &'static str,
    /// What it does.
    pub role: Role,
    /// Its namespace.
    pub ns: String,
    /// Its config file.
    pub cfg: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
    /// Node id.
    pub id: NodeId,
    /// Overlay IPv6.
    pub ipv6: IpAddr,
    /// Overlay IPv4.
    pub ipv4: IpAddr,
    /// Relay fee (`[pricing] fee_per_mib`) or exit fee (`[exit] fee_per_mib`), units per MiB.
    pub fee_per_mib: u64,
    /// Exits: the uplink address the internet sees (its NAT source).
    pub uplink_addr: Option<IpAddr>,
    /// Daemon log.
    pub log: PathBuf,
}

/// The demo's nodes and the internet namespace.
pub struct Mesh {
    /// The internet namespace (web server on [`INTERNET_ADDR`]).
    pub internet: String,
    /// client, relay1, relay2, exitA, exitB, in that order.
    pub nodes: Vec<DemoNode>,
}

/// Indices into [`Mesh::nodes`].
pub const CLIENT: usize = 0;
/// relay1 (client - exitA).
pub const RELAY1: usize = 1;
/// relay2 (client - exitB).
pub const RELAY2: usize = 2;
/// exitA, the cheaper exit.
pub const EXIT_A: usize = 3;
/// exitB.
pub const EXIT_B: usize = 4;

/// (name, role, fee per MiB): the relays' fees differ, and so do the exits', so the table
/// shows each earning at its own price.
const NODES: [(&str, Role, u64); 5] = [
    ("client", Role::Client, 0),
    ("relay1", Role::Relay, 10_000),
    ("relay2", Role::Relay, 20_000),
    ("exitA", Role::Exit, 100_000),
    ("exitB", Role::Exit, 150_000),
];

/// Underlay links: (node a, its device, its address, node b, its device, its address).
const LINKS: [(usize, &str, &str, usize, &str, &str); 4] = [
    (
        0,
        "to-relay1",
        "198.18.1.2/24",
        1,
        "to-client",
        "198.18.1.1/24",
    ),
    (
        0,
        "to-relay2",
        "198.18.2.2/24",
        2,
        "to-client",
        "198.18.2.1/24",
    ),
    (
        1,
        "to-exitA",
        "198.18.3.1/24",
        3,
        "to-relay1",
        "198.18.3.2/24",
    ),
    (
        2,
        "to-exitB",
        "198.18.4.1/24",
        4,
        "to-relay2",
        "198.18.4.2/24",
    ),
];

/// Build the namespaces, links and configs (the daemons are started by the caller).
pub fn build(lab: &mut Lab) -> anyhow::Result<Mesh> {
    let internet = lab.ns("internet")?;
    let mut spaces = Vec::new();
    for (name, ..) in NODES {
        spaces.push(lab.ns(name)?);
    }
    for (a, ad, aa, b, bd, ba) in LINKS {
        lab.link((&spaces[a], ad, aa), (&spaces[b], bd, ba))?;
    }
    // Uplinks: exitA 198.19.1.2, exitB 198.19.2.2; the web server on the internet's loopback.
    for (k, ns) in [(1, &spaces[3]), (2, &spaces[4])] {
        lab.link(
            (
                &internet,
                &format!("to-exit{k}"),
                &format!("198.19.{k}.1/24"),
            ),
            (ns, "uplink", &format!("198.19.{k}.2/24")),
        )?;
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            "default",
            "via",
            &format!("198.19.{k}.1"),
        ])?;
    }
    ip(&[
        "-n",
        &internet,
        "addr",
        "add",
        &format!("{INTERNET_ADDR}/32"),
        "dev",
        "lo",
    ])?;

    let ids: Vec<Identity> = NODES.iter().map(|_| Identity::generate()).collect();
    let mut nodes = Vec::new();
    for (i, (name, role, fee)) in NODES.into_iter().enumerate() {
        let dir = lab.dir.join(name);
        std::fs::create_dir_all(&dir)?;
        let mut text = config::render_initial(
            "node.key",
            SocketAddr::from(([0, 0, 0, 0], PORT)),
            "bc0",
            "bitcloud.sock",
            "data",
        );
        for (a, _, aa, b, _, ba) in LINKS {
            let (other, addr) = match i {
                _ if i == a => (b, ba),
                _ if i == b => (a, aa),
                _ => continue,
            };
            let host = addr.split('/').next().unwrap_or_default();
            text.push_str(&format!(
                "\n[[peer]]\nid = \"{}\"\nendpoint = \"{host}:{PORT}\"\n",
                ids[other].id()
            ));
        }
        text.push_str(&role_config(role, fee));
        let cfg_path = dir.join("bitcloud.toml");
        let cfg = Config::parse(&cfg_path, &text).context("the demo's own config")?;
        ids[i].save(&dir.join("node.key"))?;
        crate::identity::write_file_atomic(&cfg_path, text.as_bytes(), 0o644)?;
        let id = ids[i].id();
        nodes.push(DemoNode {
            name,
            role,
            ns: spaces[i].clone(),
            socket: cfg.control_socket.clone(),
            cfg: cfg_path,
            id,
            ipv6: id.ipv6().into(),
            ipv4: id.ipv4().into(),
            fee_per_mib: fee,
            uplink_addr: match name {
                "exitA" => Some([198, 19, 1, 2].into()),
                "exitB" => Some([198, 19, 2, 2].into()),
                _ => None,
            },
            log: dir.join("daemon.log"),
        });
    }
    Ok(Mesh { internet, nodes })
}

/// The config sections of a role (after the `[node]` table and the peers).
fn role_config(role: Role, fee: u64) -> String {
    let wallet = format!("\n[wallet]\npay_interval_ms = {PAY_INTERVAL_MS}\n");
    let own = match role {
        Role::Relay => format!("\n[pricing]\nfee_per_mib = {fee}\n"),
        // The exit's resolver upstream is the test internet: the host's own is never asked.
        Role::Exit => format!(
            "\n[exit]\nenabled = true\nuplink = \"uplink\"\nfee_per_mib = {fee}\ndns = [\"{INTERNET_ADDR}\"]\n"
        ),
        // DNS "off": the demo uses addresses, and the host's resolv.conf is never touched.
        Role::Client => {
            "\n[client]\nexit = \"auto\"\nkill_switch = true\nallow_lan = true\ndns = \"off\"\n"
                .to_string()
        }
    };
    format!("{own}{wallet}")
}
