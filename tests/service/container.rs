//! A throwaway machine booted by a real systemd: an overlay of the host's root with a tmpfs
//! upper layer, booted with `systemd-nspawn --boot` under a pseudo-terminal, commands run
//! inside through `nsenter`. Invariant: nothing it writes reaches the host's root (the upper
//! layer is a tmpfs of ours), and drop powers it off, unmounts and removes everything by path,
//! killing only the nspawn process it started.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the container may take to reach `running` (or `degraded`).
const BOOT_LIMIT: Duration = Duration::from_secs(90);

pub struct Container {
    /// The tmpfs holding the overlay's upper and work dirs, and the merged root under it.
    base: PathBuf,
    merged: PathBuf,
    nspawn: Child,
    /// The container's init (systemd), as the host sees it.
    init: u32,
}

impl Container {
    /// Boot a container named `name` with `deb_dir` visible read-only at /mnt/deb.
    pub fn boot(name: &str, deb_dir: &Path) -> Container {
        let base = std::env::temp_dir().join(format!("{name}-root"));
        let _ = std::fs::create_dir_all(&base);
        run_ok(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=2g,mode=0755",
            "tmpfs",
            s(&base),
        ]);
        for d in ["upper", "work", "merged"] {
            std::fs::create_dir_all(base.join(d)).expect("overlay dirs");
        }
        let merged = base.join("merged");
        // Our own /dev/net/tun node, mode 0666 as udev makes it on Debian: the host's may be
        // root's only, and changing the host's device is not the test's business.
        run_ok(&[
            "mknod",
            "-m",
            "0666",
            s(&base.join("tun")),
            "c",
            "10",
            "200",
        ]);
        let opts = format!(
            "lowerdir=/,upperdir={},workdir={}",
            base.join("upper").display(),
            base.join("work").display()
        );
        run_ok(&["mount", "-t", "overlay", "overlay", "-o", &opts, s(&merged)]);
        // The host's machine-id would make journald and D-Bus think they are the host's.
        let _ = std::fs::write(merged.join("etc/machine-id"), "");
        // The host's mounts are not the container's to make.
        let _ = std::fs::write(merged.join("etc/fstab"), "");
        // A machine built from a container image may forbid maintainer scripts to start or
        // stop services (Docker's policy-rc.d exits 101); a real install has none.
        let _ = std::fs::remove_file(merged.join("usr/sbin/policy-rc.d"));
        let nspawn_cmd = format!(
            "exec systemd-nspawn -D {} --boot --register=no --keep-unit --private-network \
             --machine={name} --bind={}:/dev/net/tun '--property=DeviceAllow=/dev/net/tun rw' \
             --bind-ro={}:/mnt/deb -- systemd.unit=basic.target",
            merged.display(),
            base.join("tun").display(),
            deb_dir.display()
        );
        let log = std::fs::File::create(base.with_extension("log")).expect("console log");
        // basic.target: the host's own services (databases, getty) are not ours to boot.
        // nspawn wants a terminal for the console; `script` gives it one.
        let nspawn = Command::new("script")
            .args(["-qfec", &nspawn_cmd, "/dev/null"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("script + systemd-nspawn");
        let mut c = Container {
            base,
            merged,
            nspawn,
            init: 0,
        };
        c.init = c.find_init();
        c.wait_running();
        c
    }

    /// The container's init: the descendant of our `script` whose innermost pid is 1.
    fn find_init(&mut self) -> u32 {
        let t0 = Instant::now();
        while t0.elapsed() < BOOT_LIMIT {
            if let Ok(Some(st)) = self.nspawn.try_wait() {
                panic!("systemd-nspawn exited early ({st}):\n{}", self.console());
            }
            let root = self.nspawn.id();
            for pid in descendants(root) {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:"));
                // "NSpid:\t<host pid>\t1": pid 1 in a namespace below ours.
                let inner: Vec<&str> = nspid.unwrap_or("").split_whitespace().collect();
                if inner.len() > 1 && inner.last() == Some(&"1") {
                    return pid;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "no container init after {BOOT_LIMIT:?}:\n{}",
            self.console()
        );
    }

    fn wait_running(&self) {
        let t0 = Instant::now();
        loop {
            let out = self.run("systemctl is-system-running");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                return;
            }
            assert!(
                t0.elapsed() < BOOT_LIMIT,
                "container never finished booting (state {state:?}):\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The console output so far (for failure messages).
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.base.with_extension("log")).unwrap_or_default()
    }

    /// Run `cmd` with `sh -c` inside the container, as root.
    pub fn run(&self, cmd: &str) -> Output {
        Command::new("nsenter")
            .args([
                "-t",
                &self.init.to_string(),
                "-m",
                "-u",
                "-i",
                "-n",
                "-p",
                "--",
            ])
            .args(["sh", "-c", cmd])
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env_remove("CI")
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    /// Run `cmd` inside; panic with its output unless it succeeds; return its stdout.
    pub fn ok(&self, cmd: &str) -> String {
        let out = self.run(cmd);
        if !out.status.success() {
            // The service's own words, when a unit is involved.
            let journal = self.run("journalctl -u bitcloud --no-pager -n 40 -o cat");
            panic!(
                "in the container: {cmd}\nfailed ({}):\n{}{}\njournal:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&journal.stdout)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run `cmd` inside and return (success, stdout + stderr).
    pub fn try_run(&self, cmd: &str) -> (bool, String) {
        let out = self.run(cmd);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Where the container's `path` is on the host.
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.merged.join(path.trim_start_matches('/'))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.init != 0 {
            let _ = self.run("systemctl poweroff --no-block");
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if matches!(self.nspawn.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !matches!(self.nspawn.try_wait(), Ok(Some(_))) {
            // Our own processes only: the container's init and the script we started.
            if self.init != 0 {
                let _ = Command::new("kill")
                    .args(["-9", &self.init.to_string()])
                    .status();
            }
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
        for m in [&self.merged, &self.base] {
            for _ in 0..20 {
                let st = Command::new("umount").arg(m).stderr(Stdio::null()).status();
                if st.is_ok_and(|s| s.success()) || !is_mount(m) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        let _ = std::fs::remove_dir(&self.base);
        let _ = std::fs::remove_file(self.base.with_extension("log"));
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn run_ok(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect(args[0]);
    assert!(st.success(), "{args:?} failed");
}

fn is_mount(p: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let p = p.display().to_string();
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(p.as_str()))
}

/// Every process below `root`, by walking /proc's parent links.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // comm may hold spaces: the fields after the last ')' are fixed.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pp) = ppid {
                parent.push((pid, pp));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out.remove(0);
    out
}
