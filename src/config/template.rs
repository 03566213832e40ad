//! The commented configuration `bitcloud init` writes (and the package ships as an example).
//! Invariant: every `# key = value` line under a `# [section]` header states the built-in
//! default, so uncommenting it changes nothing (a unit test uncomments them all and compares);
//! example lines that are not defaults are written `#   ` (indented) and stay comments.

use std::net::SocketAddr;

use super::DEFAULT_MTU;

/// The settings every node has, with their defaults commented out below them.
pub fn render(
    key_file: &str,
    listen: SocketAddr,
    tun: &str,
    control_socket: &str,
    data_dir: &str,
) -> String {
    format!(
        "# Bitcloud node configuration. Relative paths resolve against this file's directory.\n\
         [node]\n\
         key_file = \"{key_file}\"\n\
         listen = \"{listen}\"\n\
         tun = \"{tun}\"\n\
         mtu = {DEFAULT_MTU}\n\
         control_socket = \"{control_socket}\"\n\
         data_dir = \"{data_dir}\"\n\
         \n\
         # Neighbours, one block each:\n\
         #   [[peer]]\n\
         #   id = \"<64 hex digits from `bitcloud id` on the other node>\"\n\
         #   endpoint = \"198.18.0.2:51820\"\n\
         {DEFAULTS}"
    )
}

/// Every other section, commented out at its default (amounts in CC, 1 CC = 10^9 units).
const DEFAULTS: &str = r#"
# Everything below is commented out at its default; uncomment a line to change it.
# `systemctl reload bitcloud` applies peers, fees, discovery and [client] without a restart.

# Find neighbours on the LAN by signed beacons (docs/discovery.md).
# [discovery]
# enabled = false
# interfaces = []             # e.g. ["eth0"]; required when enabled
# accept = "any"              # or "configured": only [[peer]] entries
# interval_secs = 5
# port = 51821

# What we bill for relaying, and the most we pay (units per MiB; docs/pricing.md).
# [pricing]
# fee_per_mib = 0
# max_price_per_mib = 10000000
# price_weight_milli = 1000   # how much price counts against path metric in route choice

# Payment channels (docs/payments.md).
# [wallet]
# spend_limit = "1"           # CC we may ever owe in vouchers, all channels together
# credit_window = "0.01"      # CC a configured neighbour may owe us before it is shaped
# unknown_credit_window = "0.001" # the same for neighbours found by discovery
# grace_secs = 10             # how long an unpaid neighbour is shaped before it is cut
# free_bytes_per_sec = 16384  # free tier for anyone, paid or not
# max_channel = "10"          # CC one channel may reach before it must settle
# pay_interval_ms = 2000
# max_accepted_window = "0.05" # the largest credit window a payee may ask of us

# Sell this host's uplink as an exit (docs/exits.md).
# [exit]
# enabled = false
#   uplink = "eth0"           # required when enabled
# fee_per_mib = 0
# dns = []                    # upstreams for clients' DNS; empty: this host's resolv.conf
# allow_ports = []            # ports to allow that are blocked by default (SMTP, 25)
# block_ports = []            # more ports to block

# Use an exit for this host's internet (docs/exits.md).
# [client]
# exit = "off"                # "auto" (cheapest healthy), a node id, or "off"
# kill_switch = true          # no traffic outside the mesh while an exit is in use
# allow_lan = true
# dns = "auto"                # "resolved", "resolv.conf", "redirect" or "off"

# Share an interface (an open guest SSID) with strangers who pay per byte (docs/share.md).
# [share]
# interfaces = []             # e.g. ["wlan1"]
# dhcp = false

# Prometheus text at http://LISTEN/metrics (docs/service.md).
# [metrics]
#   listen = "127.0.0.1:9477"

# Bounds on what neighbours may announce (docs/routing.md).
# [routing]
# max_routes_per_neighbour = 4096
# max_routes = 16384

# Tunnel timers in seconds (WireGuard's; docs/session.md).
# [session]
# rekey_after_time = 120
# reject_after_time = 180
# rekey_timeout = 5
# keepalive_timeout = 10
# Threads that seal a TUN batch, the event loop's included (1-16; unset: 1 on two CPUs,
# else half the CPUs, at most 4; docs/crypto-threads.md), for example
#   crypto_threads = 2
# Transport ciphers offered in handshakes (docs/aead.md), by default AES-256-GCM where the
# CPU has AES instructions and ChaCha20-Poly1305 always; to never use AES, set
#   ciphers = ["chacha20-poly1305"]
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn text() -> String {
        render(
            "node.key",
            "0.0.0.0:51820".parse().expect("addr"),
            "bc0",
            "bc.sock",
            "data",
        )
    }

    /// Uncomment `# [section]` headers and `# key = value` lines (not indented examples).
    fn uncommented(t: &str) -> String {
        t.lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                        }) =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn commented_values_are_the_defaults() {
        let path = Path::new("/etc/bc/x.toml");
        let plain = Config::parse(path, &text()).expect("template parses");
        let open = uncommented(&text());
        assert!(open.contains("\n[wallet]\n") && open.contains("\nfee_per_mib = 0"));
        let all = Config::parse(path, &open).unwrap_or_else(|e| panic!("{e}\n{open}"));
        assert_eq!(format!("{plain:?}"), format!("{all:?}"));
    }
}
