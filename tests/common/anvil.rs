//! A real local EVM chain for tests: `anvil` (installed by `scripts/install-anvil.sh`), started
//! on a free port, stopped by PID when dropped. Without anvil a test is skipped loudly, except
//! under CI, where it fails: CI installs anvil, so a missing one is a broken run.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bitcloud::evm::Rpc;
use serde_json::json;

/// A running anvil.
pub struct Anvil {
    child: Child,
    /// Its JSON-RPC URL.
    pub url: String,
}

/// The anvil binary: `BITCLOUD_ANVIL`, else the repo's `.tools/anvil/bin/anvil`.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BITCLOUD_ANVIL") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/anvil/bin/anvil");
    p.exists().then_some(p)
}

impl Anvil {
    /// Start anvil, or skip (`None`) when it is not installed and CI is not set.
    pub fn start_or_skip(test: &str) -> Option<Anvil> {
        let Some(bin) = binary() else {
            if std::env::var_os("CI").is_some() {
                panic!("{test}: CI is set but anvil is missing (scripts/install-anvil.sh)");
            }
            eprintln!("SKIPPED {test}: anvil not installed (run scripts/install-anvil.sh)");
            return None;
        };
        Some(Anvil::start(&bin, &[]))
    }

    /// Start `bin` on a free loopback port with `extra` arguments.
    pub fn start(bin: &std::path::Path, extra: &[&str]) -> Anvil {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--silent",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning anvil");
        let url = format!("http://127.0.0.1:{port}");
        let a = Anvil { child, url };
        let rpc = a.rpc();
        let start = Instant::now();
        while rpc.chain_id().is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "anvil did not answer"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        a
    }

    /// A client for it.
    pub fn rpc(&self) -> Rpc {
        Rpc::new(&self.url)
    }

    /// Move the chain's clock forward and mine a block at the new time.
    pub fn advance(&self, secs: u64) {
        let rpc = self.rpc();
        rpc.request("evm_increaseTime", json!([secs]))
            .expect("evm_increaseTime");
        rpc.request("evm_mine", json!([])).expect("evm_mine");
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        // Our own child, by PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An anvil in a test namespace, reachable from the nodes' namespaces over the underlay.
pub struct NsAnvil {
    child: Child,
    /// Its namespace.
    pub ns: String,
    /// Where it listens (`http://IP:PORT` on one of the namespace's underlay addresses).
    pub url: String,
}

impl NsAnvil {
    /// Start anvil in `ns` on all its addresses, port 8545; `url` is how it is reached.
    /// `None` (skipped) without anvil, except under CI.
    pub fn start_or_skip(
        test: &str,
        ns: &str,
        url: &str,
        log: &std::path::Path,
    ) -> Option<NsAnvil> {
        let Some(bin) = binary() else {
            if std::env::var_os("CI").is_some() {
                panic!("{test}: CI is set but anvil is missing (scripts/install-anvil.sh)");
            }
            eprintln!("SKIPPED {test}: anvil not installed (run scripts/install-anvil.sh)");
            return None;
        };
        let child = super::inet::spawn_in(
            ns,
            &[bin.to_str().unwrap(), "--host", "0.0.0.0", "--port", "8545"],
            log,
        );
        let a = NsAnvil {
            child,
            ns: ns.to_string(),
            url: url.to_string(),
        };
        let start = Instant::now();
        while a.with_rpc(|r| r.chain_id().is_err()) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "anvil did not answer"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(a)
    }

    /// Run `f` with a client, from inside the namespace.
    pub fn with_rpc<T: Send + 'static>(&self, f: impl FnOnce(&Rpc) -> T + Send + 'static) -> T {
        let url = self.url.clone();
        super::in_netns(&self.ns, move || f(&Rpc::new(&url)))
            .join()
            .expect("rpc thread")
    }

    /// Move the chain's clock forward and mine a block at the new time.
    pub fn advance(&self, secs: u64) {
        self.with_rpc(move |r| {
            r.request("evm_increaseTime", json!([secs]))
                .expect("evm_increaseTime");
            r.request("evm_mine", json!([])).expect("evm_mine");
        });
    }
}

impl Drop for NsAnvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
