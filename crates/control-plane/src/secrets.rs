//! The secret store: source passwords (and, later, managed-server credentials) encrypted at rest.
//!
//! One file `DIR/secrets.enc` holds every secret as one AES-256-GCM sealed JSON map
//! `{name: value}`: `RFSE1` magic, 12-byte nonce, ciphertext+tag. Each write re-encrypts the whole
//! map with a fresh random nonce and replaces the file atomically (temp file, fsync, rename), mode
//! 0600. The map is small (one entry per connection) so this stays fast and never half-written.
//!
//! The key is 32 bytes from, in order: `REFRACT_MASTER_KEY` (64 hex characters are used as the
//! key itself; any other string is a passphrase hashed with SHA-256), else the file
//! `DIR/master.key` (64 hex characters, created with mode 0600 on first start). Losing the key
//! loses the secrets: back up `master.key` with the data dir, or set `REFRACT_MASTER_KEY`.
//!
//! Values never appear in `Debug` output, logs or errors of this module.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{bail, Context};
use rand::RngCore;
use sha2::{Digest, Sha256};

const MAGIC: &[u8] = b"RFSE1";

/// Encrypted name → value store in one file.
pub struct SecretStore {
    path: PathBuf,
    cipher: Aes256Gcm,
    /// Decrypted map, the file's content; writes hold the lock across the file replace so that
    /// two writers never lose each other's change.
    map: Mutex<BTreeMap<String, String>>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Derives the 32-byte key from `REFRACT_MASTER_KEY`'s value.
pub fn key_from_master(value: &str) -> [u8; 32] {
    let v = value.trim();
    if v.len() == 64 {
        if let Ok(bytes) = hex::decode(v) {
            let mut k = [0u8; 32];
            k.copy_from_slice(&bytes);
            return k;
        }
    }
    Sha256::digest(v.as_bytes()).into()
}

/// Reads `DIR/master.key`, creating it (0600) with a random key when missing.
pub fn key_from_file(dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = dir.join("master.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .with_context(|| format!("{} is not hex", path.display()))?;
            if bytes.len() != 32 {
                bail!("{} must hold 64 hex characters", path.display());
            }
            let mut k = [0u8; 32];
            k.copy_from_slice(&bytes);
            Ok(k)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut k = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut k);
            write_private(&path, hex::encode(k).as_bytes()).context("create master.key")?;
            Ok(k)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("read {}", path.display()))),
    }
}

/// Writes `bytes` to `path` atomically with mode 0600 (temp file in the same dir, fsync, rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_private_as(path, bytes, None)
}

/// [`write_private`], the file owned by `owner` (`(uid, gid)`) when given: given before the
/// rename, so the file is never in place with another owner.
pub fn write_private_as(
    path: &Path,
    bytes: &[u8],
    owner: Option<(u32, u32)>,
) -> anyhow::Result<()> {
    let dir = path.parent().context("path has no parent")?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        rand::random::<u32>()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("create {}", tmp.display()))?;
        #[cfg(unix)]
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
                .with_context(|| format!("give {} to uid {uid}", tmp.display()))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
        // The rename is durable only once the directory entry is.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl SecretStore {
    /// Opens (or creates empty) `DIR/secrets.enc` with `key`. Fails if the file exists but does
    /// not decrypt (wrong key): starting with an empty map would lose every secret.
    pub fn open(dir: &Path, key: [u8; 32]) -> anyhow::Result<Self> {
        let path = dir.join("secrets.enc");
        let cipher =
            Aes256Gcm::new_from_slice(&key).map_err(|_| anyhow::anyhow!("bad key length"))?;
        let map = match std::fs::read(&path) {
            Ok(bytes) => {
                if bytes.len() < MAGIC.len() + 12 || &bytes[..MAGIC.len()] != MAGIC {
                    bail!("{} is not a Refract secret store", path.display());
                }
                let nonce = Nonce::from_slice(&bytes[MAGIC.len()..MAGIC.len() + 12]);
                let plain = cipher
                    .decrypt(nonce, &bytes[MAGIC.len() + 12..])
                    .map_err(|_| {
                        anyhow::anyhow!(
                        "cannot decrypt {}: wrong master key (REFRACT_MASTER_KEY or master.key)?",
                        path.display()
                    )
                    })?;
                serde_json::from_slice(&plain).context("secret store content")?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("read {}", path.display()))),
        };
        Ok(SecretStore {
            path,
            cipher,
            map: Mutex::new(map),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // A panic while holding the lock cannot leave the map half-changed (changes are made on
        // a copy), so a poisoned lock is safe to use.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, map: &BTreeMap<String, String>) -> anyhow::Result<()> {
        let plain = serde_json::to_vec(map)?;
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = Vec::with_capacity(MAGIC.len() + 12 + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        write_private(&self.path, &out).context("write secret store")
    }

    /// Stores `value` under `name` (replacing any previous value).
    pub fn put(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let mut map = self.lock();
        let mut next = map.clone();
        next.insert(name.to_string(), value.to_string());
        self.persist(&next)?;
        *map = next;
        Ok(())
    }

    /// The value under `name`.
    pub fn get(&self, name: &str) -> Option<String> {
        self.lock().get(name).cloned()
    }

    /// Removes `name` (no error when absent).
    pub fn delete(&self, name: &str) -> anyhow::Result<()> {
        let mut map = self.lock();
        if !map.contains_key(name) {
            return Ok(());
        }
        let mut next = map.clone();
        next.remove(name);
        self.persist(&next)?;
        *map = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_from_file(dir.path()).unwrap();
        assert_eq!(
            key,
            key_from_file(dir.path()).unwrap(),
            "the key file is reused"
        );
        let s = SecretStore::open(dir.path(), key).unwrap();
        s.put("connection/1/password", "hunter2-very-secret")
            .unwrap();
        s.put("b", "x").unwrap();
        s.delete("b").unwrap();
        let bytes = std::fs::read(dir.path().join("secrets.enc")).unwrap();
        assert!(
            !bytes.windows(6).any(|w| w == b"hunter"),
            "plaintext on disk"
        );
        let again = SecretStore::open(dir.path(), key).unwrap();
        assert_eq!(
            again.get("connection/1/password").as_deref(),
            Some("hunter2-very-secret")
        );
        assert_eq!(again.get("b"), None);
        assert!(SecretStore::open(dir.path(), key_from_master("other")).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["secrets.enc", "master.key"] {
                let mode = std::fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
    }

    #[test]
    fn master_key_hex_or_passphrase() {
        let hex64 = "00".repeat(31) + "01";
        assert_eq!(key_from_master(&hex64)[31], 1);
        assert_ne!(key_from_master("correct horse"), [0u8; 32]);
    }
}
