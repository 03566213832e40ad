//! Node identity: one Ed25519 key pair per node, its X25519 (Noise) form, and the overlay
//! addresses derived from the node id. Invariant: every address and key here is a pure
//! function of the 32-byte secret, so one file serves signing, the handshake and addressing.

use std::fmt;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::str::FromStr;

use blake2::{Blake2s256, Digest};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// Length of a node id (an Ed25519 public key) in bytes.
pub const NODE_ID_LEN: usize = 32;

/// Domain separation for the address hash (DESIGN.md §2).
const ADDR_HASH_DOMAIN: &[u8] = b"bitcloud address v1";

/// Errors from key and id handling.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A node id string was not 64 hex digits.
    #[error("invalid node id {0:?}: expected 64 lowercase hex digits")]
    BadIdText(String),
    /// The 32 bytes are not a valid Ed25519 point.
    #[error("node id is not a valid Ed25519 public key")]
    BadKey,
    /// The key file could not be read or had the wrong form.
    #[error("key file {path}: {msg}")]
    KeyFile {
        /// The file.
        path: String,
        /// What was wrong.
        msg: String,
    },
    /// An I/O error while writing the key.
    #[error("writing key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A node id: the node's Ed25519 public key. Printed as 64 lowercase hex digits everywhere.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; NODE_ID_LEN]);

impl NodeId {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; NODE_ID_LEN] {
        &self.0
    }

    /// The Ed25519 verifying key, or an error if the bytes are not a valid point.
    pub fn verifying_key(&self) -> Result<VerifyingKey, IdentityError> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| IdentityError::BadKey)
    }

    /// The X25519 public key used as the Noise static key (Ed25519 -> Montgomery form).
    pub fn x25519_public(&self) -> Result<[u8; 32], IdentityError> {
        Ok(self.verifying_key()?.to_montgomery().to_bytes())
    }

    /// Verify `sig` over `msg` under `domain` (see [`Identity::sign`]).
    pub fn verify(&self, domain: &[u8], msg: &[u8], sig: &[u8; 64]) -> bool {
        let Ok(vk) = self.verifying_key() else {
            return false;
        };
        let sig = Signature::from_bytes(sig);
        vk.verify(&domain_separated(domain, msg), &sig).is_ok()
    }

    /// The mesh IPv6 address: `fd` followed by the first 15 bytes of the address hash.
    pub fn ipv6(&self) -> Ipv6Addr {
        let h = addr_hash(&self.0);
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[1..].copy_from_slice(&h[..15]);
        Ipv6Addr::from(a)
    }

    /// The IPv4 overlay address in 100.64.0.0/10 (22 host bits from the hash, after the v6 bytes).
    /// Collisions are possible (1 in ~4M per pair); the routing layer detects and reports them.
    pub fn ipv4(&self) -> Ipv4Addr {
        let h = addr_hash(&self.0);
        let host = u32::from_be_bytes([0, h[16], h[17], h[18]]) & 0x003f_ffff;
        // Avoid the all-zeros and all-ones host of the /10 so no tool mistakes it for a network
        // or broadcast address.
        let host = match host {
            0 => 1,
            0x003f_ffff => 0x003f_fffe,
            h => h,
        };
        Ipv4Addr::from(0x6440_0000 | host)
    }
}

fn addr_hash(id: &[u8; 32]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    h.update(ADDR_HASH_DOMAIN);
    h.update(id);
    h.finalize().into()
}

fn domain_separated(domain: &[u8], msg: &[u8]) -> Vec<u8> {
    // Length-prefix the domain so no (domain, msg) pair can collide with another.
    let mut v = Vec::with_capacity(1 + domain.len() + msg.len());
    v.push(u8::try_from(domain.len()).unwrap_or(u8::MAX));
    v.extend_from_slice(domain);
    v.extend_from_slice(msg);
    v
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", &hex::encode(&self.0[..4]))
    }
}

impl FromStr for NodeId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut b = [0u8; 32];
        if s.len() != 64 || hex::decode_to_slice(s, &mut b).is_err() {
            return Err(IdentityError::BadIdText(s.to_string()));
        }
        let id = NodeId(b);
        id.verifying_key()?;
        Ok(id)
    }
}

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A node's secret identity.
pub struct Identity {
    signing: SigningKey,
    id: NodeId,
}

impl Identity {
    /// Build from the 32-byte Ed25519 secret seed.
    pub fn from_secret(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let id = NodeId(signing.verifying_key().to_bytes());
        Identity { signing, id }
    }

    /// A fresh random identity from the OS RNG.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("OS random number generator unavailable");
        Self::from_secret(seed)
    }

    /// The node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The 32-byte secret seed (what the key file holds).
    pub fn secret(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The X25519 private key for Noise: the clamped-before-use scalar of the Ed25519 key.
    pub fn x25519_secret(&self) -> [u8; 32] {
        self.signing.to_scalar_bytes()
    }

    /// The X25519 public key for Noise.
    pub fn x25519_public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_montgomery().to_bytes()
    }

    /// Sign `msg` under a domain-separation label (e.g. `b"bitcloud route v1"`).
    pub fn sign(&self, domain: &[u8], msg: &[u8]) -> [u8; 64] {
        self.signing.sign(&domain_separated(domain, msg)).to_bytes()
    }

    /// Read a key file: one line, 64 hex digits of the secret seed.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let err = |msg: String| IdentityError::KeyFile {
            path: path.display().to_string(),
            msg,
        };
        let text = read_private(path).map_err(err)?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed)
            .map_err(|_| err("expected 64 hex digits of an Ed25519 secret".into()))?;
        Ok(Self::from_secret(seed))
    }

    /// Write the key file atomically with mode 0600: temp file, fsync, rename, fsync dir.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        write_secret_file(path, format!("{}\n", hex::encode(self.secret())).as_bytes()).map_err(
            |source| IdentityError::Io {
                path: path.display().to_string(),
                source,
            },
        )
    }
}

/// Atomically replace `path` with `data`, mode 0600, durable once this returns.
pub fn write_secret_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_file_atomic(path, data, 0o600)
}

/// Read a secret file, refusing one that others could have read or replaced: it must be a
/// regular file (not reached through a symlink) with no group or world permission bits.
fn read_private(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    // O_NOFOLLOW: a symlink planted at the key's path is refused rather than followed.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "is a symbolic link; refusing to follow it".to_string(),
            _ => e.to_string(),
        })?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "is readable or writable by group or others (mode {mode:03o}); the secret may be \
             compromised: fix with `chmod 600 {}` or generate a new key",
            path.display()
        ));
    }
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(|e| e.to_string())?;
    Ok(text)
}

/// Atomically replace `path` with `data` with the given mode: a temp file created exclusively
/// (never an existing file or a planted symlink; `tempfile` picks a random name with O_EXCL),
/// fsync, rename, fsync the directory, so a crash leaves the old file or the new one, never a
/// torn one, and the data is never readable beyond `mode`.
pub fn write_file_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_in_overlay_ranges_and_stable() {
        let a = Identity::from_secret([7u8; 32]);
        let v6 = a.id().ipv6();
        assert_eq!(v6.octets()[0], 0xfd);
        let v4 = a.id().ipv4().octets();
        assert_eq!(v4[0], 100);
        assert_eq!(v4[1] & 0xc0, 64);
        assert_eq!(a.id().ipv6(), Identity::from_secret([7u8; 32]).id().ipv6());
        assert_ne!(a.id().ipv6(), Identity::from_secret([8u8; 32]).id().ipv6());
    }

    #[test]
    fn x25519_forms_agree() {
        let a = Identity::from_secret([1u8; 32]);
        let b = Identity::from_secret([2u8; 32]);
        assert_eq!(a.id().x25519_public().unwrap(), a.x25519_public());
        let ab = x25519_dalek::x25519(a.x25519_secret(), b.x25519_public());
        let ba = x25519_dalek::x25519(b.x25519_secret(), a.x25519_public());
        assert_eq!(ab, ba);
    }

    #[test]
    fn id_text_roundtrip_and_rejects() {
        let id = Identity::from_secret([3u8; 32]).id();
        assert_eq!(id.to_string().parse::<NodeId>().unwrap(), id);
        assert!("zz".parse::<NodeId>().is_err());
        assert!("00".repeat(33).parse::<NodeId>().is_err());
    }

    #[test]
    fn signatures_are_domain_separated() {
        let a = Identity::from_secret([4u8; 32]);
        let sig = a.sign(b"d1", b"msg");
        assert!(a.id().verify(b"d1", b"msg", &sig));
        assert!(!a.id().verify(b"d2", b"msg", &sig));
        assert!(!a.id().verify(b"d1", b"msh", &sig));
    }

    #[test]
    fn key_file_roundtrip_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("bc-id-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("node.key");
        let a = Identity::generate();
        a.save(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(Identity::load(&p).unwrap().id(), a.id());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn key_file_readable_by_others_or_a_symlink_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.key");
        let a = Identity::generate();
        a.save(&p).unwrap();
        for mode in [0o640, 0o604, 0o620, 0o666] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = Identity::load(&p).err().expect("refused").to_string();
            assert!(
                e.contains("group or others") && e.contains("node.key"),
                "{e}"
            );
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(Identity::load(&p).unwrap().id(), a.id());
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let e = Identity::load(&link).err().expect("refused").to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(Identity::load(dir.path()).is_err(), "a directory is no key");
    }

    #[test]
    fn save_never_writes_through_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        // An attacker who can write the directory plants links at every name the old code
        // used for its temp file; the new one picks an unpredictable name with O_EXCL.
        let p = dir.path().join("node.key");
        let old_tmp = dir
            .path()
            .join(format!(".node.key.tmp{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
        Identity::generate().save(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(Identity::load(&p).is_ok());
    }
}
