//! Config parsing and error-location tests.
use super::*;

const ID: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";

fn parse(t: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/bc/x.toml"), t)
}

/// The node part of `init`'s config (without the commented defaults, so the line numbers
/// below stay put).
fn base() -> String {
    let t = render_initial(
        "node.key",
        "0.0.0.0:51820".parse().unwrap(),
        "bc0",
        "bc.sock",
        "data",
    );
    let end = t.find("\n# Everything below").expect("template layout");
    t[..end].to_string()
}

#[test]
fn initial_config_parses_with_relative_paths() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.key_file, Path::new("/etc/bc/node.key"));
    assert_eq!(c.control_socket, Path::new("/etc/bc/bc.sock"));
    assert_eq!((c.tun.as_str(), c.mtu), ("bc0", 1420));
}

#[test]
fn errors_name_file_line_and_key() {
    let e = parse(&base().replace("mtu = 1420", "mtu = 1420\nbogus = 1")).unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.line, e.key.as_str()),
        ("/etc/bc/x.toml", 7, "node.bogus"),
        "{e}"
    );
    let e = parse(&base().replace("0.0.0.0:51820", "nope")).unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (4, "node.listen"), "{e}");
    let e = parse(&format!("{}[[peer]]\nid = \"abc\"\n", base())).unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (15, "peer.id"), "{e}");
    assert!(e.msg.contains("invalid node id"), "{e}");
    let e = parse(&base().replace("tun = \"bc0\"", "tun = \"this-name-is-too-long\"")).unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (5, "node.tun"), "{e}");
    let e = parse(&format!(
        "{}[session]\nrekey_after_time = 10\nreject_after_time = 5\n",
        base()
    ))
    .unwrap_err();
    assert_eq!(e.key, "session.reject_after_time", "{e}");
    assert!(e.to_string().starts_with("/etc/bc/x.toml:"));
}

#[test]
fn discovery_defaults_to_off() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.discovery, DiscoveryConfig::default());
    assert!(!c.discovery.enabled);
    assert_eq!(c.discovery.port, 51821);
    assert_eq!(c.discovery.interval, Duration::from_secs(5));
    assert_eq!(c.discovery.accept, DiscoveryAccept::Any);
    // An empty table is the default too.
    let c = parse(&format!("{}[discovery]\n", base())).unwrap();
    assert_eq!(c.discovery, DiscoveryConfig::default());
}

#[test]
fn discovery_table_parses() {
    let c = parse(&format!(
        "{}[discovery]\nenabled = true\ninterfaces = [\"eth0\", \"br-lan.5\"]\n\
         accept = \"configured\"\ninterval_secs = 2\nport = 40000\n",
        base()
    ))
    .unwrap();
    assert_eq!(
        c.discovery,
        DiscoveryConfig {
            enabled: true,
            interfaces: vec!["eth0".into(), "br-lan.5".into()],
            accept: DiscoveryAccept::Configured,
            interval: Duration::from_secs(2),
            port: 40000,
        }
    );
    // Disabled with interfaces listed is fine (kept for later).
    let c = parse(&format!(
        "{}[discovery]\nenabled = false\ninterfaces = [\"eth0\"]\n",
        base()
    ))
    .unwrap();
    assert!(!c.discovery.enabled);
}

#[test]
fn discovery_errors_name_line_and_key() {
    // base() is 13 lines, so `[discovery]` is line 14 and its first key line 15.
    let bad = |body: &str| parse(&format!("{}[discovery]\n{body}", base())).unwrap_err();
    let e = bad("interfaces = [\"eth0\", \"this-name-is-too-long\"]\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (15, "discovery.interfaces"),
        "{e}"
    );
    assert!(e.msg.contains("invalid interface name"), "{e}");
    let e = bad("interfaces = [\"eth/0\"]\n");
    assert!(e.msg.contains("invalid interface name"), "{e}");
    let e = bad("interfaces = [\"\"]\n");
    assert!(e.msg.contains("invalid interface name"), "{e}");
    let e = bad("interfaces = [\"eth0\", \"eth0\"]\n");
    assert!(e.msg.contains("twice"), "{e}");
    let e = bad("enabled = true\n");
    assert_eq!((e.line, e.key.as_str()), (15, "discovery.enabled"), "{e}");
    assert!(e.msg.contains("interfaces is empty"), "{e}");
    let e = bad("interfaces = [\"eth0\"]\ninterval_secs = 0\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (16, "discovery.interval_secs"),
        "{e}"
    );
    let e = bad("interval_secs = 3601\n");
    assert_eq!(e.key, "discovery.interval_secs", "{e}");
    let e = bad("port = 0\n");
    assert_eq!((e.line, e.key.as_str()), (15, "discovery.port"), "{e}");
    let e = bad("port = 70000\n");
    assert_eq!(e.key, "discovery.port", "{e}");
    let e = bad("accept = \"everyone\"\n");
    assert_eq!((e.line, e.key.as_str()), (15, "discovery.accept"), "{e}");
    let e = bad("enabled = \"yes\"\n");
    assert_eq!(e.key, "discovery.enabled", "{e}");
    let e = bad("bogus = 1\n");
    assert_eq!((e.line, e.key.as_str()), (15, "discovery.bogus"), "{e}");
    assert!(
        e.to_string()
            .starts_with("/etc/bc/x.toml:15: discovery.bogus: "),
        "{e}"
    );
}

#[test]
fn peers_and_duplicates() {
    let p = format!("[[peer]]\nid = \"{ID}\"\nendpoint = \"198.18.0.2:51820\"\n");
    let c = parse(&format!("{}{p}", base())).unwrap();
    assert_eq!(c.peers.len(), 1);
    let e = parse(&format!("{}{p}{p}", base())).unwrap_err();
    assert!(e.msg.contains("twice"), "{e}");
}

#[test]
fn session_timers_have_upper_bounds() {
    // Huge timers used to overflow `d * 3 / 2` and the backoff's Instant additions (panics).
    for key in [
        "rekey_after_time",
        "reject_after_time",
        "keepalive_timeout",
        "rekey_timeout",
        "persistent_keepalive",
    ] {
        for v in ["86401", "9223372036854775807"] {
            let e = parse(&format!("{}[session]\n{key} = {v}\n", base())).unwrap_err();
            assert_eq!(
                (e.line, e.key.as_str()),
                (15, format!("session.{key}").as_str()),
                "{e}"
            );
            assert!(e.msg.contains("86400"), "{e}");
        }
    }
    let c = parse(&format!(
        "{}[session]\nrekey_after_time = 86400\nreject_after_time = 86400\n",
        base()
    ));
    assert!(c.is_err(), "reject must still exceed rekey");
    let c = parse(&format!("{}[session]\nrekey_after_time = 57600\n", base())).unwrap();
    assert_eq!(c.timers.reject_after_time, Duration::from_secs(86_400));
}

#[test]
fn session_ciphers_parse_and_bad_names_are_located() {
    use crate::session::aead::Cipher;
    assert_eq!(
        parse(&base()).unwrap().ciphers,
        None,
        "the backend's choice"
    );
    let c = parse(&format!(
        "{}[session]\nciphers = [\"chacha20-poly1305\"]\n",
        base()
    ))
    .unwrap();
    assert_eq!(c.ciphers, Some(Cipher::CHACHA20_POLY1305));
    let c = parse(&format!(
        "{}[session]\nciphers = [\"aes-256-gcm\", \"chacha20-poly1305\"]\n",
        base()
    ))
    .unwrap();
    assert_eq!(
        c.ciphers,
        Some(Cipher::AES_256_GCM | Cipher::CHACHA20_POLY1305)
    );
    for bad in ["[\"rot13\"]", "[]"] {
        let e = parse(&format!("{}[session]\nciphers = {bad}\n", base())).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (15, "session.ciphers"), "{e}");
    }
}

#[test]
fn routing_bounds_default_parse_and_are_bounded() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.routing, RoutingSettings::default());
    assert_eq!(c.routing.max_routes_per_neighbour, 4096);
    assert_eq!(c.routing.max_routes, 16384);
    let c = parse(&format!(
        "{}[routing]\nmax_routes_per_neighbour = 100\nmax_routes = 1000\n",
        base()
    ))
    .unwrap();
    assert_eq!(
        (c.routing.max_routes_per_neighbour, c.routing.max_routes),
        (100, 1000)
    );
    for bad in [
        "max_routes_per_neighbour = 0",
        "max_routes_per_neighbour = 65537",
        "max_routes = 1048577",
        "bogus = 1",
    ] {
        let e = parse(&format!("{}[routing]\n{bad}\n", base())).unwrap_err();
        let key = bad.split(' ').next().unwrap();
        assert_eq!(
            (e.line, e.key.clone()),
            (15, format!("routing.{key}")),
            "{e}"
        );
    }
}

#[test]
fn exit_and_client_tables() {
    let c = parse(&base()).unwrap();
    assert!(!c.exit.enabled);
    assert_eq!(c.client, ClientSettings::default());
    assert_eq!(c.client.exit, crate::exit::Mode::Off);
    let c = parse(&format!(
        "{}[exit]\nenabled = true\nuplink = \"eth0\"\nfee_per_mib = 700\ndns = [\"198.19.0.53\", \"2001:db8::53\"]\nallow_ports = [25]\nblock_ports = [465, 587]\n[client]\nexit = \"auto\"\nkill_switch = false\nallow_lan = false\ndns = \"resolv.conf\"\n",
        base()
    ))
    .unwrap();
    assert_eq!((c.exit.uplink.as_str(), c.exit.fee_per_mib), ("eth0", 700));
    assert_eq!(c.exit.dns.len(), 2);
    assert_eq!(c.exit.blocked_ports, vec![465, 587], "25 allowed back");
    assert_eq!(c.client.exit, crate::exit::Mode::Auto);
    assert!(!c.client.kill_switch && !c.client.allow_lan);
    assert_eq!(c.client.dns, DnsMechanism::ResolvConf);
    let c = parse(&format!(
        "{}[exit]\nenabled = false\n[client]\nexit = \"{ID}\"\n",
        base()
    ))
    .unwrap();
    assert_eq!(c.exit.blocked_ports, vec![25], "SMTP blocked by default");
    assert!(matches!(c.client.exit, crate::exit::Mode::Fixed(_)));
}

#[test]
fn exit_and_client_errors_name_line_and_key() {
    let bad = [
        (
            "[exit]\nenabled = true\n",
            "exit.enabled",
            "needs exit.uplink",
        ),
        (
            "[exit]\nuplink = \"no way\"\n",
            "exit.uplink",
            "invalid interface",
        ),
        (
            "[exit]\ndns = [\"100.64.0.1\"]\n",
            "exit.dns",
            "cannot be an upstream",
        ),
        (
            "[exit]\ndns = [\"fd00::1\"]\n",
            "exit.dns",
            "cannot be an upstream",
        ),
        ("[exit]\ndns = [\"resolver\"]\n", "exit.dns", "not an IP"),
        (
            "[exit]\nallow_ports = [25]\nblock_ports = [25]\n",
            "exit.allow_ports",
            "both",
        ),
        (
            "[client]\nexit = \"cheapest\"\n",
            "client.exit",
            "not auto, off or a node id",
        ),
        (
            "[client]\ndns = \"dnsmasq\"\n",
            "client.dns",
            "unknown variant",
        ),
        ("[client]\nkill = true\n", "client.kill", "unknown field"),
    ];
    for (t, key, msg) in bad {
        let e = parse(&format!("{}{t}", base())).unwrap_err();
        assert_eq!(e.key, key, "{t}: {e}");
        assert!(e.msg.contains(msg), "{t}: {e}");
        assert!(e.line > 14, "{t}: {e}");
    }
}

/// `[testing]` only in a build with the `testing` feature (which `cargo test` has, through the
/// self dev-dependency): elsewhere it is an error at the table's line.
#[test]
fn testing_table_needs_the_testing_feature() {
    let text = format!("{}\n[testing]\npay = false\n", base());
    let line = text.lines().position(|l| l == "[testing]").expect("table") + 1;
    let r = parse(&text);
    if cfg!(feature = "testing") {
        assert!(!r.expect("a test build accepts [testing]").testing.pay);
    } else {
        let e = r.expect_err("a production build refuses [testing]");
        assert_eq!((e.file.as_str(), e.line), ("/etc/bc/x.toml", line), "{e}");
        assert!(e.msg.contains("feature `testing`"), "{e}");
    }
    // Without the table, paying is on in every build.
    assert!(parse(&base()).expect("base").testing.pay);
}

/// `cargo test` (the README's command) must build this crate with the feature: otherwise the
/// integration tests' daemons could not be told `pay = false`.
#[test]
fn cargo_test_builds_with_the_testing_feature() {
    // black_box: the value is fixed at build time, which is exactly what is checked.
    let on = std::hint::black_box(cfg!(feature = "testing"));
    assert!(on, "the self dev-dependency should enable `testing`");
}

#[test]
fn ledger_settings_and_errors_name_line_and_key() {
    let good = "[ledger]\nkind = \"evm\"\nrpc = \"http://198.18.9.2:8545\"\nchain_id = 31337\n\
                token = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n\
                channels = \"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512\"\ndeposit = \"2.5\"\n";
    let c = parse(&format!("{}{good}", base())).expect("evm ledger");
    let evm = c.ledger.evm.expect("evm");
    assert_eq!(
        (evm.chain_id, evm.deposit),
        (31337, crate::money::Amount::from_units(2_500_000_000))
    );
    assert_eq!(evm.close_delay, Duration::from_secs(86_400));
    assert!(
        parse(&base()).expect("base").ledger.evm.is_none(),
        "iou by default"
    );
    let with = |extra: &str| format!("{}{good}{extra}", base());
    let bad = [
        (
            "[ledger]\nkind = \"evm\"\n".to_string(),
            "ledger",
            "needs rpc",
        ),
        (
            "[ledger]\nkind = \"btc\"\n".to_string(),
            "ledger.kind",
            "unknown variant",
        ),
        (
            with("close_delay_secs = 5\n"),
            "ledger.close_delay_secs",
            "10..=",
        ),
        (
            with("claim_threshold = \"0\"\n"),
            "ledger.claim_threshold",
            "above 0",
        ),
        (
            with("claim_threshold = \"2000000\"\n"),
            "ledger.claim_threshold",
            "at most",
        ),
        (
            format!(
                "{}{}",
                base(),
                good.replace("0x5FbDB2315678afecb367f032d93F642f64180aa3", "0x12")
            ),
            "ledger.token",
            "not an address",
        ),
        (
            format!("{}{}", base(), good.replace("http://198", "ftp://198")),
            "ledger.rpc",
            "http",
        ),
    ];
    for (t, key, msg) in bad {
        let text = if t.starts_with("[ledger]") {
            format!("{}{t}", base())
        } else {
            t
        };
        let e = parse(&text).unwrap_err();
        assert_eq!(e.key, key, "{text}: {e}");
        assert!(e.msg.contains(msg), "{text}: {e}");
        assert!(e.line >= 14, "{text}: {e}");
    }
}

#[test]
fn session_crypto_threads_parse_and_bounds_are_located() {
    assert_eq!(parse(&base()).unwrap().crypto_threads, None, "auto");
    let c = parse(&format!("{}[session]\ncrypto_threads = 2\n", base())).unwrap();
    assert_eq!(c.crypto_threads, Some(2));
    for bad in ["0", "17", "-1"] {
        let e = parse(&format!("{}[session]\ncrypto_threads = {bad}\n", base())).unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (15, "session.crypto_threads"),
            "{bad}: {e}"
        );
    }
}
