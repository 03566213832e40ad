//! The demo's lab on this machine: the network namespaces, veth links, scratch directory and
//! daemons it makes, all named from one prefix (`bcd<pid>`), and removed again on drop, by
//! name and by PID, whether the demo finished, failed or was interrupted. Invariants: it
//! removes only what it recorded making; daemons are stopped before their namespaces go (so
//! each shuts down cleanly inside its own); underlay addresses are 198.18.0.0/15 and the test
//! internet 198.19.0.0/16, nothing else.

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a daemon gets to exit on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Everything the demo made, removed on drop.
pub struct Lab {
    /// Name prefix of every namespace and link: `bcd<pid>`.
    pub prefix: String,
    /// Scratch directory: configs, keys, wallets, logs.
    pub dir: PathBuf,
    namespaces: Vec<String>,
    /// Root-namespace names of veth ends, deleted by name if a failure left one there.
    links: Vec<String>,
    daemons: Vec<Child>,
}

impl Lab {
    /// An empty lab with its scratch directory (mode 0700: it will hold node keys).
    pub fn new() -> anyhow::Result<Lab> {
        use std::os::unix::fs::DirBuilderExt;
        let prefix = format!("bcd{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("bitcloud-demo-{}", std::process::id()));
        // A directory of an earlier process with our PID is stale (PIDs are unique while alive).
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(Lab {
            prefix,
            dir,
            namespaces: vec![],
            links: vec![],
            daemons: vec![],
        })
    }

    /// Create namespace `<prefix>-<tag>` with loopback up.
    pub fn ns(&mut self, tag: &str) -> anyhow::Result<String> {
        let name = format!("{}-{tag}", self.prefix);
        ip(&["netns", "add", &name])?;
        self.namespaces.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }

    /// Join namespaces `a` and `b` with a veth pair named `a_dev` in `a` and `b_dev` in `b`,
    /// each end with its address (`198.18.x.y/len` or `198.19.x.y/len`).
    pub fn link(
        &mut self,
        (a, a_dev, a_addr): (&str, &str, &str),
        (b, b_dev, b_addr): (&str, &str, &str),
    ) -> anyhow::Result<()> {
        for addr in [a_addr, b_addr] {
            check_lab_address(addr)?;
        }
        // Unique names while the pair is in the root namespace; renamed once inside.
        let k = self.links.len() / 2;
        let (ta, tb) = (
            format!("{}v{k}a", self.prefix),
            format!("{}v{k}b", self.prefix),
        );
        if ta.len() > 15 {
            bail!("interface name {ta} too long");
        }
        self.links.push(ta.clone());
        self.links.push(tb.clone());
        ip(&["link", "add", &ta, "type", "veth", "peer", "name", &tb])?;
        for (ns, tmp, dev, addr) in [(a, &ta, a_dev, a_addr), (b, &tb, b_dev, b_addr)] {
            ip(&["link", "set", tmp, "netns", ns])?;
            ip(&["-n", ns, "link", "set", tmp, "name", dev])?;
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(())
    }

    /// Start `bitcloud up -c cfg` inside `ns`, stderr to `log`; returns its PID (`ip netns
    /// exec` execs the daemon, so the child is the daemon). In a process group of its own, so a
    /// Ctrl-C at the terminal reaches only the demo, which then stops its daemons in order.
    pub fn spawn_daemon(&mut self, ns: &str, cfg: &Path, log: &Path) -> anyhow::Result<u32> {
        let exe = std::env::current_exe().context("finding the bitcloud binary")?;
        let log = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .arg("up")
            .arg("-c")
            .arg(cfg)
            .env("BITCLOUD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting a daemon with `ip netns exec`")?;
        let pid = child.id();
        self.daemons.push(child);
        Ok(pid)
    }

    /// Whether the daemon with `pid` (one of ours) is still running.
    pub fn daemon_alive(&mut self, pid: u32) -> bool {
        self.daemons
            .iter_mut()
            .find(|c| c.id() == pid)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Run `f` on a new thread inside namespace `ns`: only that thread moves, and the sockets
    /// it opens stay in `ns` for their whole life.
    pub fn in_netns<T: Send + 'static>(
        &self,
        ns: &str,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<T>>> {
        let path = Path::new("/run/netns").join(ns);
        let file = std::fs::File::open(&path).with_context(|| format!("{}", path.display()))?;
        let h = std::thread::Builder::new()
            .name(format!("demo-{ns}"))
            .spawn(move || {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .context("setns into the lab namespace")?;
                drop(file);
                f()
            })?;
        Ok(h)
    }

    /// Stop the daemons (SIGTERM, then SIGKILL after [`STOP_GRACE`]), by PID.
    pub fn stop_daemons(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        for c in &mut self.daemons {
            if matches!(c.try_wait(), Ok(None))
                && let Ok(pid) = i32::try_from(c.id())
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for c in &mut self.daemons {
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(c.try_wait(), Ok(None)) {
                tracing::warn!(pid = c.id(), "daemon ignored SIGTERM; killing it");
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        self.daemons.clear();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_daemons();
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("bitcloud demo: removing namespace {ns}: {e:#}");
            }
        }
        // Deleting a namespace deletes the veths in it; these are only ends a failure left in
        // the root namespace before they were moved.
        for l in self.links.drain(..) {
            let gone = Command::new("ip")
                .args(["link", "show", &l])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| !s.success());
            if !gone {
                let _ = ip(&["link", "del", &l]);
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("bitcloud demo: removing {}: {e}", self.dir.display());
        }
    }
}

/// `ip ARGS`, with its stderr in the error.
pub fn ip(args: &[&str]) -> anyhow::Result<String> {
    run("ip", args)
}

/// Run a program, with its stderr in the error if it fails.
pub fn run(prog: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {prog}"))?;
    if !out.status.success() {
        bail!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Refuse any address outside the lab's ranges (underlay 198.18.0.0/15, which includes the
/// test internet 198.19.0.0/16).
fn check_lab_address(cidr: &str) -> anyhow::Result<()> {
    let a: Ipv4Addr = cidr
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("{cidr} is not an IPv4 address"))?;
    let [x, y, ..] = a.octets();
    if x != 198 || !(18..=19).contains(&y) {
        bail!("{cidr} is outside 198.18.0.0/15");
    }
    Ok(())
}

/// `prog` is on `PATH`.
pub fn have(prog: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(d.join(prog))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lab_addresses() {
        assert!(check_lab_address("198.18.1.2/24").is_ok());
        assert!(check_lab_address("198.19.0.1/32").is_ok());
        for bad in ["10.0.0.1/24", "198.20.0.1/24", "198.17.0.1/24", "x/24", ""] {
            assert!(check_lab_address(bad).is_err(), "{bad}");
        }
    }
}
