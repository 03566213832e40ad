//! What a client's use of an exit leaves on the host that must be undone without a daemon
//! (after a crash, or `bitcloud exit use off` with none running), and the exit mode kept across
//! restarts. Invariant: everything is found by fixed names and paths (rule priorities, our
//! table, the nftables table, the backup file in `data_dir`), never by daemon state.

use std::path::{Path, PathBuf};

use super::{GatewayError, killswitch, policy, resolv};
use crate::config::{Config, mode_name, parse_mode};
use crate::exit::Mode;

/// The run-time exit mode (`bitcloud exit use`), kept across restarts in `data_dir`.
const MODE_FILE: &str = "exit-mode";
/// The forwarding switches as they were before this host became an exit.
pub const FORWARDING_FILE: &str = "exit-forwarding";
/// The resolver file's original, saved before we replace it.
const RESOLV_BACKUP: &str = "resolv.conf.orig.json";
/// The host's resolver file and our backup of it.
pub fn resolv_conf(data_dir: &Path) -> resolv::ResolvConf {
    resolv::ResolvConf {
        path: PathBuf::from("/etc/resolv.conf"),
        backup: data_dir.join(RESOLV_BACKUP),
    }
}

/// The exit mode to start in: what `bitcloud exit use` last set, else the config's.
pub fn start_mode(cfg: &Config) -> Mode {
    match std::fs::read_to_string(cfg.data_dir.join(MODE_FILE)) {
        Ok(t) => parse_mode(t.trim()).unwrap_or_else(|e| {
            tracing::warn!("ignoring {MODE_FILE}: {e}");
            cfg.client.exit
        }),
        Err(_) => cfg.client.exit,
    }
}

/// Remember `mode` for the next start.
pub fn save_mode(data_dir: &Path, mode: Mode) -> std::io::Result<()> {
    crate::identity::write_file_atomic(
        &data_dir.join(MODE_FILE),
        format!("{}\n", mode_name(mode)).as_bytes(),
        0o644,
    )
}

/// Remove every client-side change we may have made, whether or not a daemon runs (after a
/// crash, or `exit use off` with no daemon): rules and routes, the kill switch, DNS. Returns
/// what it found, for the log.
pub async fn clear_client(tun: &str, data_dir: &Path) -> Result<String, GatewayError> {
    let h = policy::connect()?;
    let found = policy::remove(&h).await?;
    let ks = killswitch::remove()?;
    let redirect = super::dns_redirect::remove()?;
    let dns = resolv_conf(data_dir).restore()?;
    resolved_revert(tun);
    Ok(format!(
        "rules {} routes {} kill switch {} resolver file {} DNS redirect {}",
        found.rules,
        found.routes,
        if ks { "removed" } else { "absent" },
        if dns { "restored" } else { "untouched" },
        if redirect { "removed" } else { "absent" }
    ))
}

/// Undo the daemon's per-link resolved settings, best effort (the link may be gone, resolved may not run).
pub fn resolved_revert(tun: &str) {
    if resolv::resolved_running(Path::new("/")) {
        let _ = std::process::Command::new("resolvectl")
            .args(["revert", tun])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Put back the forwarding switches saved when this host became an exit, if any were saved.
pub fn restore_forwarding(data_dir: &Path) -> Result<bool, GatewayError> {
    let saved = data_dir.join(FORWARDING_FILE);
    let Ok(text) = std::fs::read_to_string(&saved) else {
        return Ok(false);
    };
    let mut l = text.lines();
    let f = super::exit::Forwarding {
        v4: l.next().unwrap_or("0").to_string(),
        v6: l.next().unwrap_or("0").to_string(),
    };
    super::exit::restore_forwarding(&f)?;
    let _ = std::fs::remove_file(&saved);
    Ok(true)
}

/// What the service manager runs after the daemon stopped (`ExecStopPost`), however it
/// stopped: the exit's table and forwarding switches go; the client's rules, routes, kill
/// switch and DNS go too, unless the daemon did not stop cleanly (`service_result` is not
/// `success`) while an exit mode with the kill switch was on: then the kill switch must hold.
pub async fn after_stop(
    cfg: &Config,
    service_result: Option<&str>,
) -> Result<String, GatewayError> {
    let exit_table = super::exit::remove()?;
    let fwd = restore_forwarding(&cfg.data_dir)?;
    let crashed = service_result.is_some_and(|r| r != "success");
    let client = if crashed && start_mode(cfg) != Mode::Off && cfg.client.kill_switch {
        "kept: the daemon did not stop cleanly while using an exit, so the kill switch holds \
         (`bitcloud exit use off` lifts it)"
            .to_string()
    } else {
        clear_client(&cfg.tun, &cfg.data_dir).await?
    };
    Ok(format!(
        "exit table {}, forwarding {}; client: {client}",
        if exit_table { "removed" } else { "absent" },
        if fwd { "restored" } else { "untouched" }
    ))
}
