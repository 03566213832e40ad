//! The client's resolver file while an exit is in use, for hosts without systemd-resolved
//! (docs/gateway.md, "DNS"): `/etc/resolv.conf` is replaced by ours, pointing at the exit's
//! resolver through the tunnel, after the original (a file, a symlink, or nothing) is saved
//! beside our state. Invariants: the original is saved durably before anything is changed and
//! is never overwritten by a later save (a second `point_at`, or a start after a crash, keeps
//! the first one), so `restore` always puts back what the host had; a file that is a mount
//! point (as `ip netns exec` bind-mounts `/etc/netns/NAME/resolv.conf`) is written in place,
//! since it cannot be renamed over.

use std::io::ErrorKind;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::GatewayError;

/// The first line of a resolver file we wrote.
pub const MARKER: &str = "# Written by bitcloud: DNS goes through the exit in use.";

/// What the host's resolver file was before we replaced it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Original {
    /// A regular file with this text.
    File { text: String },
    /// A symbolic link to this target.
    Symlink { target: PathBuf },
    /// No file at all.
    Absent,
}

/// The resolver file and where its original is kept.
#[derive(Clone, Debug)]
pub struct ResolvConf {
    /// Usually `/etc/resolv.conf`.
    pub path: PathBuf,
    /// Our saved copy of the original, e.g. `/var/lib/bitcloud/resolv.conf.orig.json`.
    pub backup: PathBuf,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> GatewayError {
    move |source| GatewayError::Io { what, source }
}

impl ResolvConf {
    /// Point the host at `servers` (the exit's resolvers), saving the original first unless a
    /// saved original already exists.
    pub fn point_at(&self, servers: &[IpAddr]) -> Result<(), GatewayError> {
        if !self.backup.exists() {
            let orig = self.read_original()?;
            let json = serde_json::to_vec(&orig).unwrap_or_default();
            crate::identity::write_file_atomic(&self.backup, &json, 0o600)
                .map_err(io("saving the original resolver file"))?;
        }
        let mut text = format!("{MARKER}\n# `bitcloud exit use off` restores the original.\n");
        for s in servers {
            text.push_str(&format!("nameserver {s}\n"));
        }
        // No search domains and no fallbacks: every query goes to the exit.
        text.push_str("options edns0\n");
        self.replace_with(text.as_bytes())
    }

    /// Whether the file now is one we wrote.
    pub fn is_ours(&self) -> bool {
        std::fs::read_to_string(&self.path).is_ok_and(|t| t.starts_with(MARKER))
    }

    /// Put the saved original back and forget the copy; false if nothing was saved.
    pub fn restore(&self) -> Result<bool, GatewayError> {
        let raw = match std::fs::read(&self.backup) {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io("reading the saved resolver file")(e)),
        };
        let orig: Original = serde_json::from_slice(&raw).map_err(|e| GatewayError::Io {
            what: "parsing the saved resolver file",
            source: std::io::Error::new(ErrorKind::InvalidData, e),
        })?;
        match orig {
            Original::File { text } => self.replace_with(text.as_bytes())?,
            Original::Symlink { target } => {
                let tmp = self.path.with_extension("bitcloud-link");
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(&target, &tmp).map_err(io("recreating the symlink"))?;
                std::fs::rename(&tmp, &self.path).map_err(io("restoring the symlink"))?;
            }
            Original::Absent => match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io("removing our resolver file")(e)),
            },
        }
        std::fs::remove_file(&self.backup).map_err(io("forgetting the saved resolver file"))?;
        Ok(true)
    }

    fn read_original(&self) -> Result<Original, GatewayError> {
        match std::fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Original::Absent),
            Err(e) => Err(io("reading the resolver file")(e)),
            Ok(m) if m.file_type().is_symlink() => Ok(Original::Symlink {
                target: std::fs::read_link(&self.path).map_err(io("reading the symlink"))?,
            }),
            Ok(_) => Ok(Original::File {
                text: std::fs::read_to_string(&self.path)
                    .map_err(io("reading the resolver file"))?,
            }),
        }
    }

    /// Replace the file atomically; where it is a mount point (rename gives EBUSY), or a
    /// symlink we must not follow into, fall back as documented above.
    fn replace_with(&self, data: &[u8]) -> Result<(), GatewayError> {
        match crate::identity::write_file_atomic(&self.path, data, 0o644) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::fs::write(&self.path, data).map_err(io("writing the resolver file in place"))
            }
            Err(e) => Err(io("replacing the resolver file")(e)),
        }
    }
}

/// Whether systemd-resolved manages this host's DNS (then DNS is set per link on the TUN with
/// `resolvectl`, and this file is left alone): its stub resolver file exists.
pub fn resolved_running(root: &Path) -> bool {
    root.join("run/systemd/resolve/stub-resolv.conf").exists()
}

/// Whether we may replace the resolver file at `path`: false under the hardened service (a
/// read-only `/etc`, a file owned by root) or when there is none. Opening for append writes
/// nothing, so the host's file is untouched.
pub fn writable(path: &Path) -> bool {
    std::fs::OpenOptions::new().append(true).open(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, ResolvConf) {
        let d = tempfile::tempdir().unwrap();
        let r = ResolvConf {
            path: d.path().join("resolv.conf"),
            backup: d.path().join("state").join("resolv.orig.json"),
        };
        std::fs::create_dir_all(d.path().join("state")).unwrap();
        (d, r)
    }

    fn exit_dns() -> Vec<IpAddr> {
        vec!["100.64.1.2".parse().unwrap(), "fd00::2".parse().unwrap()]
    }

    #[test]
    fn a_file_is_replaced_and_restored_byte_for_byte() {
        let (_d, r) = setup();
        let orig = "# from DHCP\nnameserver 198.18.0.1\nsearch lan\n";
        std::fs::write(&r.path, orig).unwrap();
        r.point_at(&exit_dns()).unwrap();
        let now = std::fs::read_to_string(&r.path).unwrap();
        assert!(r.is_ours() && now.contains("nameserver 100.64.1.2") && now.contains("fd00::2"));
        assert!(
            !now.contains("198.18.0.1") && !now.contains("search"),
            "{now}"
        );
        // A second call (another exit, or a start after a crash) keeps the first original.
        r.point_at(&["100.64.9.9".parse().unwrap()]).unwrap();
        assert!(r.restore().unwrap());
        assert_eq!(std::fs::read_to_string(&r.path).unwrap(), orig);
        assert!(!r.restore().unwrap(), "nothing left to restore");
    }

    #[test]
    fn a_symlink_and_an_absent_file_come_back_as_they_were() {
        let (d, r) = setup();
        let target = d.path().join("stub.conf");
        std::fs::write(&target, "nameserver 127.0.0.53\n").unwrap();
        std::os::unix::fs::symlink(&target, &r.path).unwrap();
        r.point_at(&exit_dns()).unwrap();
        assert!(r.is_ours());
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "nameserver 127.0.0.53\n",
            "the link's target was not written through"
        );
        r.restore().unwrap();
        assert_eq!(std::fs::read_link(&r.path).unwrap(), target);

        std::fs::remove_file(&r.path).unwrap();
        r.point_at(&exit_dns()).unwrap();
        assert!(r.is_ours());
        r.restore().unwrap();
        assert!(!r.path.exists(), "no resolver file before, none after");
    }
}
