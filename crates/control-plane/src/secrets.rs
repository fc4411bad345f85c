//! The secret store: source passwords (and, later, managed-server credentials) encrypted at rest.
//!
//! One file `DIR/secrets.enc` holds every secret as one AES-256-GCM sealed JSON map
//! `{name: value}`: `RFSE1` magic, 12-byte nonce, ciphertext+tag. Each write re-encrypts the whole
//! map with a fresh random nonce and replaces the file atomically (temp file, fsync, rename), mode
//! 0600. The map is small (one entry per connection) so this stays fast and never half-written.
//!
//! With the PostgreSQL metadata store (several replicas), the secrets are rows of its `secrets`
//! table instead, each sealed on its own with the same key (its name as associated data), read
//! through on every `get`. The key is never stored in the database: every replica reads it from
//! its own `master.key` (copied by the operator) or `REFRACT_MASTER_KEY`; a `refract/key-check`
//! row makes a replica with another key fail at start.
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

/// Encrypted name → value store: one file (the embedded default), or rows of the PostgreSQL
/// metadata store shared by every control-plane replica.
pub struct SecretStore {
    cipher: Aes256Gcm,
    backend: Backend,
}

enum Backend {
    File {
        path: PathBuf,
        /// Decrypted map, the file's content; writes hold the lock across the file replace so
        /// that two writers never lose each other's change.
        map: Mutex<BTreeMap<String, String>>,
    },
    /// Table `secrets` of the PostgreSQL store: each value sealed on its own (fresh nonce, its
    /// name as associated data, so a row copied under another name does not decrypt). Read
    /// through on every `get`: another replica may have changed it.
    Postgres(crate::store::PgPool),
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("SecretStore");
        match &self.backend {
            Backend::File { path, .. } => d.field("path", path),
            Backend::Postgres(_) => d.field("backend", &"postgres"),
        };
        d.finish_non_exhaustive()
    }
}

/// Blocking PostgreSQL calls go through this: secrets are read from async code (engine
/// launches), where the blocking client may not run.
use refract_managed::store::off_runtime;

/// The name of the row that proves the master key: a wrong key fails at start, not at the
/// first secret read.
const KEY_CHECK: &str = "refract/key-check";

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
            // Written whole beside, then linked into place, which fails if another process
            // (a second replica starting on the same directory) created it first: then that
            // key is the key, never a second one.
            let staged = dir.join(format!(".master.key.{}", std::process::id()));
            write_private(&staged, hex::encode(k).as_bytes()).context("create master.key")?;
            let linked = std::fs::hard_link(&staged, &path);
            let _ = std::fs::remove_file(&staged);
            match linked {
                Ok(()) => Ok(k),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => key_from_file(dir),
                Err(e) => Err(anyhow::Error::new(e).context("create master.key")),
            }
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
            cipher,
            backend: Backend::File {
                path,
                map: Mutex::new(map),
            },
        })
    }

    /// The secrets in the PostgreSQL metadata store's `secrets` table, sealed with `key` (which
    /// is never stored there). Fails if the rows were sealed with another key.
    pub fn open_postgres(pool: crate::store::PgPool, key: [u8; 32]) -> anyhow::Result<Self> {
        let cipher =
            Aes256Gcm::new_from_slice(&key).map_err(|_| anyhow::anyhow!("bad key length"))?;
        let store = SecretStore {
            cipher,
            backend: Backend::Postgres(pool),
        };
        match store.get_pg(KEY_CHECK) {
            Ok(Some(_)) => {}
            Ok(None) => store.put(KEY_CHECK, "ok")?,
            Err(e) => return Err(e),
        }
        Ok(store)
    }

    fn seal(&self, name: &str, value: &[u8]) -> anyhow::Result<([u8; 12], Vec<u8>)> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                aes_gcm::aead::Payload {
                    msg: value,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        Ok((nonce, sealed))
    }

    fn get_pg(&self, name: &str) -> anyhow::Result<Option<String>> {
        let Backend::Postgres(pool) = &self.backend else {
            unreachable!("only the PostgreSQL backend")
        };
        let Some(row) = off_runtime(|| -> anyhow::Result<_> {
            let mut conn = pool.get().context("connect to the metadata store")?;
            Ok(conn.query_opt(
                "SELECT nonce, ciphertext FROM secrets WHERE name = $1",
                &[&name],
            )?)
        })?
        else {
            return Ok(None);
        };
        let nonce: Vec<u8> = row.get(0);
        let sealed: Vec<u8> = row.get(1);
        anyhow::ensure!(nonce.len() == 12, "secret {name:?}: bad nonce");
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                aes_gcm::aead::Payload {
                    msg: &sealed,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "cannot decrypt the secrets in the metadata store: wrong master key? Every \
                     replica needs the same master.key (or REFRACT_MASTER_KEY)"
                )
            })?;
        Ok(Some(
            String::from_utf8(plain).context("secret is not UTF-8")?,
        ))
    }

    fn lock(
        map: &Mutex<BTreeMap<String, String>>,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // A panic while holding the lock cannot leave the map half-changed (changes are made on
        // a copy), so a poisoned lock is safe to use.
        map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, path: &Path, map: &BTreeMap<String, String>) -> anyhow::Result<()> {
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
        write_private(path, &out).context("write secret store")
    }

    /// Stores `value` under `name` (replacing any previous value).
    pub fn put(&self, name: &str, value: &str) -> anyhow::Result<()> {
        match &self.backend {
            Backend::File { path, map } => {
                let mut map = Self::lock(map);
                let mut next = map.clone();
                next.insert(name.to_string(), value.to_string());
                self.persist(path, &next)?;
                *map = next;
            }
            Backend::Postgres(pool) => {
                let (nonce, sealed) = self.seal(name, value.as_bytes())?;
                off_runtime(|| -> anyhow::Result<()> {
                    let mut conn = pool.get().context("connect to the metadata store")?;
                    conn.execute(
                        "INSERT INTO secrets (name, nonce, ciphertext, updated_at) VALUES ($1, $2, $3, now()) \
                         ON CONFLICT (name) DO UPDATE SET nonce = $2, ciphertext = $3, updated_at = now()",
                        &[&name, &nonce.as_slice(), &sealed],
                    )
                    .context("write a secret")?;
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    /// The value under `name`; an error when the store cannot be read or the value does not
    /// decrypt (never "no value": a caller must not act as if there were none).
    pub fn try_get(&self, name: &str) -> anyhow::Result<Option<String>> {
        match &self.backend {
            Backend::File { map, .. } => Ok(Self::lock(map).get(name).cloned()),
            Backend::Postgres(_) => self.get_pg(name),
        }
    }

    /// The value under `name` (none, logged, when the store cannot be read).
    pub fn get(&self, name: &str) -> Option<String> {
        self.try_get(name).unwrap_or_else(|e| {
            tracing::error!(secret = name, error = %format!("{e:#}"), "cannot read a secret");
            None
        })
    }

    /// Removes `name` (no error when absent).
    pub fn delete(&self, name: &str) -> anyhow::Result<()> {
        match &self.backend {
            Backend::File { path, map } => {
                let mut map = Self::lock(map);
                if !map.contains_key(name) {
                    return Ok(());
                }
                let mut next = map.clone();
                next.remove(name);
                self.persist(path, &next)?;
                *map = next;
            }
            Backend::Postgres(pool) => off_runtime(|| -> anyhow::Result<()> {
                let mut conn = pool.get().context("connect to the metadata store")?;
                conn.execute("DELETE FROM secrets WHERE name = $1", &[&name])
                    .context("delete a secret")?;
                Ok(())
            })?,
        }
        Ok(())
    }

    /// Seals every secret again with `new_key`, in one step (the file replaced atomically; the
    /// rows updated in one transaction), and returns how many there are. `self` stays on the
    /// old key: open the store again with the new one. Offline: stop every control plane first.
    pub fn reseal(&self, new_key: [u8; 32]) -> anyhow::Result<usize> {
        let next = SecretStore {
            cipher: Aes256Gcm::new_from_slice(&new_key)
                .map_err(|_| anyhow::anyhow!("bad key length"))?,
            backend: match &self.backend {
                Backend::File { path, .. } => Backend::File {
                    path: path.clone(),
                    map: Mutex::new(BTreeMap::new()),
                },
                Backend::Postgres(pool) => Backend::Postgres(pool.clone()),
            },
        };
        let entries = self.entries()?;
        match &next.backend {
            Backend::File { path, .. } => {
                next.persist(path, &entries.iter().cloned().collect())?;
            }
            Backend::Postgres(pool) => {
                let mut rows = Vec::new();
                for (name, value) in entries
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .chain([(KEY_CHECK, "ok")])
                {
                    let (nonce, sealed) = next.seal(name, value.as_bytes())?;
                    rows.push((name.to_string(), nonce, sealed));
                }
                off_runtime(|| -> anyhow::Result<()> {
                    let mut conn = pool.get().context("connect to the metadata store")?;
                    let mut tx = conn.transaction()?;
                    tx.execute("DELETE FROM secrets", &[])?;
                    for (name, nonce, sealed) in &rows {
                        tx.execute(
                            "INSERT INTO secrets (name, nonce, ciphertext, updated_at) VALUES ($1, $2, $3, now())",
                            &[name, &nonce.as_slice(), sealed],
                        )?;
                    }
                    tx.commit()?;
                    Ok(())
                })?;
            }
        }
        Ok(entries.len())
    }

    /// Removes the secrets named `prefix…` last written more than `age` ago (PostgreSQL rows;
    /// nothing on the file backend, which keeps no such entries).
    pub fn purge_older(&self, prefix: &str, age: std::time::Duration) -> anyhow::Result<u64> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(0);
        };
        let pattern = format!("{}%", prefix.replace('%', "\\%").replace('_', "\\_"));
        let secs = age.as_secs_f64();
        off_runtime(|| {
            let mut conn = pool.get().context("connect to the metadata store")?;
            Ok(conn.execute(
                "DELETE FROM secrets WHERE name LIKE $1 AND updated_at < now() - make_interval(secs => $2)",
                &[&pattern, &secs],
            )?)
        })
    }

    /// Every `(name, value)` (for `refract store migrate` and key rotation).
    pub fn entries(&self) -> anyhow::Result<Vec<(String, String)>> {
        match &self.backend {
            Backend::File { map, .. } => Ok(Self::lock(map)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()),
            Backend::Postgres(pool) => {
                let names: Vec<String> = off_runtime(|| -> anyhow::Result<_> {
                    let mut conn = pool.get().context("connect to the metadata store")?;
                    Ok(conn
                        .query("SELECT name FROM secrets ORDER BY name", &[])?
                        .iter()
                        .map(|r| r.get(0))
                        .collect())
                })?;
                let mut out = Vec::new();
                for name in names.into_iter().filter(|n| n != KEY_CHECK) {
                    if let Some(v) = self.get_pg(&name)? {
                        out.push((name, v));
                    }
                }
                Ok(out)
            }
        }
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
    fn reseal_under_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = ([1u8; 32], [2u8; 32]);
        let s = SecretStore::open(dir.path(), old).unwrap();
        s.put("a", "alpha").unwrap();
        s.put("b", "beta").unwrap();
        assert_eq!(s.reseal(new).unwrap(), 2);
        assert!(
            SecretStore::open(dir.path(), old).is_err(),
            "the old key no longer opens it"
        );
        let again = SecretStore::open(dir.path(), new).unwrap();
        assert_eq!(again.get("a").as_deref(), Some("alpha"));
        assert_eq!(again.get("b").as_deref(), Some("beta"));
    }

    #[test]
    fn master_key_hex_or_passphrase() {
        let hex64 = "00".repeat(31) + "01";
        assert_eq!(key_from_master(&hex64)[31], 1);
        assert_ne!(key_from_master("correct horse"), [0u8; 32]);
    }
}
