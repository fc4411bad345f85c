//! Query keys (`rxk_<keyId>.<secret>`) and the admin token.
//!
//! The keys file is JSON: `{"keys":[{"key_id":"abc","secret_sha256":"<hex>","expires_at":null}]}`.
//! Only the SHA-256 of each secret is stored. The file is re-read when its modification time or
//! size changes ([`KeyStore::refresh`], called every second by the engine), so a revoked key stops
//! working within about a second — or at once after `POST /admin/keys/reload`
//! ([`KeyStore::reload_now`]), which the control plane calls after every key change.
//!
//! Verifying a token costs one SHA-256 the first time; verified tokens are then cached in the
//! current key set (a new key set starts with an empty cache, so revocation empties it), and later
//! requests cost one hash-map lookup and an expiry check.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::SystemTime;

use anyhow::Context;
use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Tokens kept in a key set's cache at most; past it the cache starts over.
const CACHE_MAX: usize = 10_000;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing Authorization header: send `Authorization: Bearer <token>`")]
    Missing,
    /// Not `Bearer rxk_<keyId>.<secret>`.
    #[error("malformed Authorization header: expected `Bearer rxk_<keyId>.<secret>`")]
    Malformed,
    /// No such key, or a wrong secret (also what a revoked key gets).
    #[error("unknown or revoked query key")]
    Unknown,
    /// The key is past its `expires_at`.
    #[error("the query key has expired")]
    Expired,
    /// Wrong admin token, or no admin token configured.
    #[error("admin token required: send `Authorization: Bearer <admin token>`")]
    Admin,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<KeyRecord>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRecord {
    key_id: String,
    secret_sha256: String,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct KeyEntry {
    hash: [u8; 32],
    /// Unix seconds.
    expires_at: Option<i64>,
}

/// One version of the keys file, with the tokens verified against it.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, KeyEntry>,
    /// Full token → expiry (unix seconds) of its key.
    verified: RwLock<HashMap<Box<str>, Option<i64>>>,
}

impl KeySet {
    /// Parse the JSON text of a keys file.
    pub fn parse(text: &str) -> anyhow::Result<KeySet> {
        let file: KeysFile = serde_json::from_str(text).context("invalid keys file")?;
        let mut keys = HashMap::with_capacity(file.keys.len());
        for k in file.keys {
            if k.key_id.is_empty() || k.key_id.contains('.') {
                anyhow::bail!(
                    "invalid keys file: key_id '{}' must be non-empty and contain no '.'",
                    k.key_id
                );
            }
            let mut hash = [0u8; 32];
            hex::decode_to_slice(k.secret_sha256.trim(), &mut hash).with_context(|| {
                format!(
                    "invalid keys file: secret_sha256 of key '{}' is not 64 hex digits",
                    k.key_id
                )
            })?;
            let expires_at = k.expires_at.map(|t| t.timestamp());
            if keys
                .insert(k.key_id.clone(), KeyEntry { hash, expires_at })
                .is_some()
            {
                anyhow::bail!("invalid keys file: key_id '{}' appears twice", k.key_id);
            }
        }
        Ok(KeySet {
            keys,
            verified: RwLock::new(HashMap::new()),
        })
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys (every query is refused).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Check a bearer token (`rxk_<keyId>.<secret>`) at time `now` (unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<(), AuthError> {
        let cached = self
            .verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .copied();
        if let Some(expires_at) = cached {
            return check_expiry(expires_at, now);
        }
        let rest = token.strip_prefix("rxk_").ok_or(AuthError::Malformed)?;
        let (key_id, secret) = rest.split_once('.').ok_or(AuthError::Malformed)?;
        if key_id.is_empty() || secret.is_empty() {
            return Err(AuthError::Malformed);
        }
        let entry = self.keys.get(key_id).ok_or(AuthError::Unknown)?;
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if !constant_time_eq(&digest, &entry.hash) {
            return Err(AuthError::Unknown);
        }
        check_expiry(entry.expires_at, now)?;
        let mut cache = self.verified.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(token.into(), entry.expires_at);
        Ok(())
    }
}

fn check_expiry(expires_at: Option<i64>, now: i64) -> Result<(), AuthError> {
    match expires_at {
        Some(t) if now >= t => Err(AuthError::Expired),
        _ => Ok(()),
    }
}

/// Compare two byte strings in time that depends only on their length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The hex SHA-256 of a secret, as the keys file stores it.
pub fn secret_sha256(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The bearer token from an `Authorization` header value.
pub fn bearer(header: Option<&[u8]>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    let value = std::str::from_utf8(value).map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

type FileStamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> FileStamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The query keys of an engine: none (open access) or a keys file watched for changes.
#[derive(Debug)]
pub struct KeyStore {
    path: Option<PathBuf>,
    current: ArcSwap<KeySet>,
    stamp: Mutex<FileStamp>,
    /// Key sets installed so far (1 = the one read at start).
    version: AtomicU64,
}

impl KeyStore {
    /// A store without keys: every query is allowed.
    pub fn open_access() -> KeyStore {
        KeyStore {
            path: None,
            current: ArcSwap::from_pointee(KeySet::default()),
            stamp: Mutex::new(None),
            version: AtomicU64::new(1),
        }
    }

    /// Read the keys file; a missing or invalid file is an error at start.
    pub fn from_file(path: &Path) -> anyhow::Result<KeyStore> {
        let st = stamp(path);
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading keys_file {}", path.display()))?;
        let set = KeySet::parse(&text).with_context(|| format!("keys_file {}", path.display()))?;
        Ok(KeyStore {
            path: Some(path.to_path_buf()),
            current: ArcSwap::from_pointee(set),
            stamp: Mutex::new(st),
            version: AtomicU64::new(1),
        })
    }

    /// Whether queries need a key.
    pub fn is_enforced(&self) -> bool {
        self.path.is_some()
    }

    /// The keys file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Number of keys in the current set.
    pub fn key_count(&self) -> usize {
        self.current.load().len()
    }

    /// Check the `Authorization` header value of a query request.
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), AuthError> {
        if self.path.is_none() {
            return Ok(());
        }
        let token = bearer(header)?;
        self.current.load().verify(token, Utc::now().timestamp())
    }

    /// The version of the key set in force: 1 at start, plus one per set installed since.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Re-read the keys file now, changed or not, and install it; returns the version and the
    /// number of keys in force. An unreadable or invalid file keeps the previous keys and is an
    /// error; a deleted file means no keys. Without a keys file: nothing to read, `Ok`.
    pub fn reload_now(&self) -> anyhow::Result<(u64, usize)> {
        let Some(path) = &self.path else {
            return Ok((self.version(), 0));
        };
        let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        let st = stamp(path);
        let set = match st {
            None => KeySet::default(),
            Some(_) => std::fs::read_to_string(path)
                .map_err(anyhow::Error::from)
                .and_then(|t| KeySet::parse(&t))
                .with_context(|| format!("keys_file {}", path.display()))?,
        };
        let n = set.len();
        self.current.store(std::sync::Arc::new(set));
        *last = st;
        let v = self.version.fetch_add(1, Ordering::AcqRel) + 1;
        tracing::info!(keys = n, version = v, "query keys reloaded on request");
        Ok((v, n))
    }

    /// Re-read the keys file if it changed since the last read. A deleted file means no keys
    /// (every query refused); an unreadable or invalid file keeps the previous keys and is
    /// retried on the next call. Returns whether a new key set was installed.
    pub fn refresh(&self) -> bool {
        let Some(path) = &self.path else { return false };
        let st = stamp(path);
        let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *last == st {
            return false;
        }
        let set = match st {
            None => {
                tracing::warn!(path = %path.display(), "keys_file is gone: refusing every query key");
                KeySet::default()
            }
            Some(_) => match std::fs::read_to_string(path)
                .map_err(anyhow::Error::from)
                .and_then(|t| KeySet::parse(&t))
            {
                Ok(set) => set,
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %format!("{e:#}"), "cannot read keys_file; keeping the previous keys");
                    return false;
                }
            },
        };
        tracing::info!(keys = set.len(), "query keys reloaded");
        self.current.store(std::sync::Arc::new(set));
        *last = st;
        self.version.fetch_add(1, Ordering::AcqRel);
        true
    }
}

/// The admin bearer token (from `admin_token_file`), or none: admin routes refused.
#[derive(Debug)]
pub struct AdminToken(Option<Vec<u8>>);

impl AdminToken {
    /// No admin token: `/stats` and `/admin/*` are refused.
    pub fn none() -> AdminToken {
        AdminToken(None)
    }

    /// A token given directly.
    pub fn new(token: &str) -> AdminToken {
        AdminToken(Some(token.as_bytes().to_vec()))
    }

    /// Read the token file (surrounding whitespace ignored; an empty file is an error).
    pub fn from_file(path: &Path) -> anyhow::Result<AdminToken> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading admin_token_file {}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            anyhow::bail!("admin_token_file {} is empty", path.display());
        }
        Ok(AdminToken::new(token))
    }

    /// Check the `Authorization` header value of an admin request.
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), AuthError> {
        let Some(expected) = &self.0 else {
            return Err(AuthError::Admin);
        };
        match bearer(header) {
            Ok(token) if constant_time_eq(token.as_bytes(), expected) => Ok(()),
            _ => Err(AuthError::Admin),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_json(entries: &[(&str, &str, Option<&str>)]) -> String {
        let keys: Vec<_> = entries
            .iter()
            .map(|(id, secret, exp)| {
                serde_json::json!({"key_id": id, "secret_sha256": secret_sha256(secret), "expires_at": exp})
            })
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    #[test]
    fn parses_and_verifies() {
        let set = KeySet::parse(&keys_json(&[
            ("abc", "s1", None),
            ("old", "s2", Some("2020-01-01T00:00:00Z")),
            ("later", "s3", Some("2999-01-01T00:00:00Z")),
        ]))
        .unwrap();
        let now = Utc::now().timestamp();
        assert_eq!(set.verify("rxk_abc.s1", now), Ok(()));
        // Cached path gives the same answers.
        assert_eq!(set.verify("rxk_abc.s1", now), Ok(()));
        assert_eq!(set.verify("rxk_abc.wrong", now), Err(AuthError::Unknown));
        assert_eq!(set.verify("rxk_nope.s1", now), Err(AuthError::Unknown));
        assert_eq!(set.verify("rxk_old.s2", now), Err(AuthError::Expired));
        assert_eq!(set.verify("rxk_later.s3", now), Ok(()));
        // A cached token still expires.
        let year_3000 = DateTime::parse_from_rfc3339("3000-01-01T00:00:00Z")
            .unwrap()
            .timestamp();
        assert_eq!(
            set.verify("rxk_later.s3", year_3000),
            Err(AuthError::Expired)
        );
        for bad in ["abc.s1", "rxk_abc", "rxk_.s1", "rxk_abc.", "Bearer x"] {
            assert_eq!(set.verify(bad, now), Err(AuthError::Malformed), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_files() {
        assert!(KeySet::parse("{}").is_err());
        assert!(KeySet::parse(r#"{"keys":[{"key_id":"a","secret_sha256":"zz"}]}"#).is_err());
        assert!(
            KeySet::parse(r#"{"keys":[{"key_id":"a","secret_sha256":"00","extra":1}]}"#).is_err()
        );
        let dup = keys_json(&[("a", "x", None), ("a", "y", None)]);
        assert!(format!("{:#}", KeySet::parse(&dup).unwrap_err()).contains("twice"));
        assert!(KeySet::parse(r#"{"keys":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer(None), Err(AuthError::Missing));
        assert_eq!(bearer(Some(b"Basic abc")), Err(AuthError::Malformed));
        assert_eq!(bearer(Some(b"Bearer ")), Err(AuthError::Malformed));
        assert_eq!(bearer(Some(b"Bearer rxk_a.b")), Ok("rxk_a.b"));
        assert_eq!(bearer(Some(b"bearer rxk_a.b")), Ok("rxk_a.b"));
        assert_eq!(bearer(Some(&[0xff, 0xfe])), Err(AuthError::Malformed));
    }

    #[test]
    fn store_reloads_on_change_and_revokes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, keys_json(&[("a", "sa", None), ("b", "sb", None)])).unwrap();
        let store = KeyStore::from_file(&path).unwrap();
        assert!(store.is_enforced());
        assert_eq!(store.check(Some(b"Bearer rxk_a.sa")), Ok(()));
        assert_eq!(store.check(Some(b"Bearer rxk_b.sb")), Ok(()));
        assert_eq!(store.check(None), Err(AuthError::Missing));
        assert!(!store.refresh(), "unchanged file is not re-read");

        // Revoke `a` (different size, so the change is seen even with a coarse mtime).
        std::fs::write(&path, keys_json(&[("b", "sb", None)])).unwrap();
        assert!(store.refresh());
        assert_eq!(
            store.check(Some(b"Bearer rxk_a.sa")),
            Err(AuthError::Unknown)
        );
        assert_eq!(store.check(Some(b"Bearer rxk_b.sb")), Ok(()));

        // An invalid file keeps the previous keys.
        std::fs::write(&path, "{not json").unwrap();
        assert!(!store.refresh());
        assert_eq!(store.check(Some(b"Bearer rxk_b.sb")), Ok(()));

        // A deleted file refuses everything.
        std::fs::remove_file(&path).unwrap();
        assert!(store.refresh());
        assert_eq!(
            store.check(Some(b"Bearer rxk_b.sb")),
            Err(AuthError::Unknown)
        );
    }

    #[test]
    fn reload_now_reads_an_unchanged_stamp_and_counts_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, keys_json(&[("a", "sa", None)])).unwrap();
        let store = KeyStore::from_file(&path).unwrap();
        assert_eq!(store.version(), 1);
        // Same size, written within the same mtime tick: `refresh` may miss it, `reload_now` not.
        std::fs::write(&path, keys_json(&[("b", "sa", None)])).unwrap();
        assert_eq!(store.reload_now().unwrap(), (2, 1));
        assert_eq!(
            store.check(Some(b"Bearer rxk_a.sa")),
            Err(AuthError::Unknown)
        );
        assert_eq!(store.check(Some(b"Bearer rxk_b.sa")), Ok(()));
        std::fs::write(&path, "{broken").unwrap();
        assert!(store.reload_now().is_err());
        assert_eq!(store.version(), 2);
        assert_eq!(store.check(Some(b"Bearer rxk_b.sa")), Ok(()));
    }

    #[test]
    fn open_access_and_admin() {
        let open = KeyStore::open_access();
        assert_eq!(open.check(None), Ok(()));
        assert!(!open.refresh());

        let admin = AdminToken::new("t0ken");
        assert_eq!(admin.check(Some(b"Bearer t0ken")), Ok(()));
        assert_eq!(admin.check(Some(b"Bearer t0ke")), Err(AuthError::Admin));
        assert_eq!(admin.check(None), Err(AuthError::Admin));
        assert_eq!(
            AdminToken::none().check(Some(b"Bearer t0ken")),
            Err(AuthError::Admin)
        );
    }
}
