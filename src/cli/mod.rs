//! The `bitcloud` command line: argument parsing (clap) and human or JSON output. Invariant:
//! command names, flags and JSON keys here are a contract that scripts rely on; add around
//! them, never rename.

mod assets;
mod exit;
pub mod ledger;
mod output;
mod share;
pub mod wallet;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::api;
use serde_json::json;

use crate::config::{self, Config};
use crate::identity::Identity;

/// Bitcloud: a mesh network where anyone carries anyone's traffic and is paid per byte.
#[derive(Parser, Debug)]
#[command(name = "bitcloud", version, about)]
pub struct Cli {
    /// Config file.
    #[arg(short, long, global = true, default_value = config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Write a config file and a new node key beside it.
    Init {
        /// UDP address to listen on.
        #[arg(long, default_value = "0.0.0.0:51820")]
        listen: SocketAddr,
        /// TUN device name.
        #[arg(long, default_value = "bc0")]
        tun: String,
        /// Control socket path (relative paths resolve against the config file's directory).
        #[arg(long, default_value = config::DEFAULT_CONTROL_SOCKET)]
        control_socket: String,
        /// State directory (relative paths resolve against the config file's directory).
        #[arg(long, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: String,
        /// Overwrite an existing config and key.
        #[arg(long)]
        force: bool,
    },
    /// Print this node's id and overlay addresses (offline).
    Id {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run the node in the foreground (what systemd runs).
    Up,
    /// Show the running node: addresses, peers, traffic, drops.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show the routing table: destination, originator, next hop, metric, seqno, price, age.
    Routes {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show (or with --set, change) this node's forwarding fee per MiB.
    Price {
        /// New fee in the smallest cloudcoin unit per MiB; announced at once, new price epoch.
        #[arg(long)]
        set: Option<u64>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show neighbours: endpoint, link quality, RTT, how they were found.
    Peers {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Undo what a stopped daemon left on the host (what the unit's ExecStopPost runs): the
    /// exit's table and forwarding switches, and the client's routes, kill switch and DNS,
    /// unless the daemon crashed while using an exit (then the kill switch holds). Reads
    /// $SERVICE_RESULT as systemd sets it.
    Cleanup,
    /// Write man pages and shell completions under DIR (the package build runs it).
    #[command(hide = true)]
    GenAssets {
        /// Output directory.
        dir: std::path::PathBuf,
    },
    /// Exits: list the known ones, choose which to use (auto, a node id, or off).
    Exit {
        /// What to do.
        #[command(subcommand)]
        what: exit::ExitCmd,
    },
    /// Share an interface with strangers for pay: guests, their payments, `share off`.
    Share {
        /// What to do.
        #[command(subcommand)]
        what: share::ShareCmd,
    },
    /// Development chains: deploy the settlement contracts, fund an address.
    Ledger {
        /// What to do.
        #[command(subcommand)]
        what: ledger::LedgerCmd,
    },
    /// Show the wallet: balance, payment channels, earnings per neighbour, voucher history.
    Wallet {
        /// What to show.
        #[command(subcommand)]
        what: wallet::WalletCmd,
    },
    /// Run a local demo mesh in network namespaces (root): an internet, two paid exits, two
    /// relays and a client; real traffic, a live view, a table checked against the wallets;
    /// everything is removed afterwards, also on Ctrl-C.
    Demo {
        /// Keep the mesh up afterwards to explore it (prints commands to try); Ctrl-C ends it.
        #[arg(long)]
        hold: bool,
        /// Print a machine-readable summary on stdout (the live view goes to stderr).
        #[arg(long)]
        json: bool,
    },
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Init {
            listen,
            tun,
            control_socket,
            data_dir,
            force,
        } => init(&cli.config, listen, &tun, &control_socket, &data_dir, force),
        Cmd::Id { json } => {
            let cfg = Config::load(&cli.config)?;
            let id = Identity::load(&cfg.key_file)?.id();
            let v = json!({"id": id, "ipv6": id.ipv6(), "ipv4": id.ipv4()});
            if json {
                println!("{v}");
            } else {
                println!("id    {id}\nipv6  {}\nipv4  {}", id.ipv6(), id.ipv4());
            }
            Ok(())
        }
        // The binary runs the daemon itself (src/main.rs): the CLI never imports it.
        Cmd::Up => anyhow::bail!("`bitcloud up` is run by the binary, not the CLI library"),
        Cmd::Status { json } => query(&cli.config, api::Request::Status, json, output::status),
        Cmd::Routes { json } => query(&cli.config, api::Request::Routes, json, output::routes),
        Cmd::Peers { json } => query(&cli.config, api::Request::Peers, json, output::peers),
        Cmd::Wallet { what } => wallet::run(&cli.config, &what),
        Cmd::Ledger { what } => ledger::run(&cli.config, &what),
        Cmd::Exit { what } => exit::run(&cli.config, &what),
        Cmd::Share { what } => share::run(&cli.config, &what),
        Cmd::GenAssets { dir } => assets::generate(&dir),
        Cmd::Demo { hold, json } => crate::demo::run(crate::demo::Options { hold, json }),
        Cmd::Cleanup => {
            let cfg = Config::load(&cli.config)?;
            let result = std::env::var("SERVICE_RESULT").ok();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let done = rt.block_on(crate::gateway::cleanup::after_stop(&cfg, result.as_deref()))?;
            println!("bitcloud cleanup: {done}");
            Ok(())
        }
        Cmd::Price { set, json } => {
            let cfg = Config::load(&cli.config)?;
            let v = api::call(&cfg.control_socket, &api::Request::Price { set })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", output::price(&v));
            }
            Ok(())
        }
    }
}

/// Ask the daemon and print its answer as JSON or through `human`.
fn query(
    config: &Path,
    req: api::Request,
    json: bool,
    human: fn(&serde_json::Value) -> String,
) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    let v = api::call(&cfg.control_socket, &req)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", human(&v));
    }
    Ok(())
}

/// Run as root on a host with the `bitcloud` service user (the package creates it), `init`
/// leaves the key to that user (0600) and the config and its directory readable by its group,
/// so `systemctl start bitcloud` can read what `sudo bitcloud init` wrote.
fn hand_to_service_user(dir: &Path, cfg: &Path, key: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let Some((uid, gid)) = root.then(|| service_user("bitcloud")).flatten() else {
        return Ok(());
    };
    std::os::unix::fs::chown(key, Some(uid), Some(gid))
        .with_context(|| format!("chown bitcloud {}", key.display()))?;
    std::os::unix::fs::chown(cfg, Some(0), Some(gid))
        .with_context(|| format!("chgrp bitcloud {}", cfg.display()))?;
    std::fs::set_permissions(cfg, std::fs::Permissions::from_mode(0o640))?;
    std::os::unix::fs::chown(dir, Some(0), Some(gid))
        .with_context(|| format!("chgrp bitcloud {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
    Ok(())
}

/// The uid and gid of user `name` from /etc/passwd.
fn service_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name)).then_some(())?;
        Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
    })
}

fn init(
    path: &Path,
    listen: SocketAddr,
    tun: &str,
    control_socket: &str,
    data_dir: &str,
    force: bool,
) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let key_path = dir.join("node.key");
    for p in [path, key_path.as_path()] {
        if p.exists() && !force {
            anyhow::bail!(
                "{} exists; pass --force to overwrite it (a new key is a new node id)",
                p.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = config::render_initial("node.key", listen, tun, control_socket, data_dir);
    // Validate before writing, so init never leaves a config that `up` would refuse.
    Config::parse(path, &text)?;
    let id = Identity::generate();
    id.save(&key_path)?;
    crate::identity::write_file_atomic(path, text.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", path.display()))?;
    hand_to_service_user(dir, path, &key_path)?;
    println!("wrote {} and {}", path.display(), key_path.display());
    println!(
        "node id {}\nipv6    {}\nipv4    {}",
        id.id(),
        id.id().ipv6(),
        id.id().ipv4()
    );
    Ok(())
}
