//! Host network changes for exit clients (and, later, exits): policy routing through netlink
//! (`policy`), the fail-closed kill switch through nftables (`killswitch`, rule builders in
//! `nft`), the shared interfaces' guard (`share`), and the host's connected prefixes (`lan`).
//! Everything here is I/O; what to install is the caller's decision. Invariant: everything
//! installed is recognisable by fixed names alone (the nftables tables `inet bitcloud`,
//! `bitcloud_exit` and `bitcloud_share`, two rule priorities, one route table), so it can be
//! found and removed without any daemon state: after a crash, or by a command run while no
//! daemon runs. Design and the reasons for it: docs/gateway.md.

pub mod cleanup;
pub mod dns;
pub mod dns_redirect;
pub mod exit;
pub mod killswitch;
pub mod lan;
pub mod nft;
pub mod policy;
pub mod resolv;
pub mod share;
pub mod tun;

/// The firewall mark on the daemon's own UDP sockets (SO_MARK): marked packets bypass the
/// exit route and are let through the kill switch. 51820 = 0xca6c, as wg-quick marks with its
/// table number.
pub const FWMARK: u32 = 0xca6c;
/// The route table holding our default routes (IPv4 and IPv6) through the TUN.
pub const ROUTE_TABLE: u32 = 51820;

/// What went wrong changing the host's network.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// `nft` failed or could not run (is the `nftables` package installed?).
    #[error("nftables: {0}")]
    Nft(#[from] nftables::helper::NftablesError),
    /// A netlink request failed.
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    /// Opening the netlink socket or another system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// The system's error.
        source: std::io::Error,
    },
    /// An interface we need does not exist.
    #[error("no interface named {0:?}")]
    NoInterface(String),
}
