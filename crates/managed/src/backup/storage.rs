//! Where backups live: the [`BackupStorage`] trait (keys like `db_x/base/20261204T200102Z/base.tar`)
//! and [`DirStorage`], a directory on this host (0700) with an optional byte limit. An
//! S3-compatible target can implement the same trait later.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

pub use super::types::BackupEvent;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage has no room (its limit, or the disk: `ENOSPC`).
    #[error("backup storage is full: {0}")]
    Full(String),
    /// No object under this key.
    #[error("no backup object {0}")]
    NotFound(String),
    /// Anything else.
    #[error("{0:#}")]
    Io(anyhow::Error),
}

/// One stored object.
#[derive(Debug, Clone)]
pub struct Object {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was written.
    pub modified: DateTime<Utc>,
}

/// A place for backup objects. Blocking: call it from `spawn_blocking`.
pub trait BackupStorage: Send + Sync + std::fmt::Debug {
    /// Copies the file `from` into `key` (replacing it); returns its size.
    fn put(&self, key: &str, from: &Path) -> Result<u64, StorageError>;
    /// Writes `data` into `key`.
    fn put_bytes(&self, key: &str, data: &[u8]) -> Result<(), StorageError>;
    /// Copies `key` into the file `to`.
    fn get(&self, key: &str, to: &Path) -> Result<(), StorageError>;
    /// Reads `key`.
    fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StorageError>;
    /// Every object whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<Object>, StorageError>;
    /// Removes `key` (no error when it does not exist).
    fn delete(&self, key: &str) -> Result<(), StorageError>;
}

/// Backups in a directory (mode 0700; files 0600). `max_bytes` caps the total it holds.
#[derive(Debug)]
pub struct DirStorage {
    root: PathBuf,
    max_bytes: Option<u64>,
}

fn io_err(what: &str, path: &Path, e: io::Error) -> StorageError {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        return StorageError::Full(format!("no space left on the device of {}", path.display()));
    }
    if e.kind() == io::ErrorKind::NotFound {
        return StorageError::NotFound(path.display().to_string());
    }
    StorageError::Io(anyhow::Error::new(e).context(format!("{what} {}", path.display())))
}

impl DirStorage {
    /// Opens (creating, mode 0700) the directory `root`.
    pub fn open(root: &Path, max_bytes: Option<u64>) -> anyhow::Result<DirStorage> {
        fs::create_dir_all(root)?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))?;
        Ok(DirStorage {
            root: root.to_path_buf(),
            max_bytes,
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        let ok = !key.is_empty()
            && key.split('/').all(|p| {
                !p.is_empty()
                    && p != "."
                    && p != ".."
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            });
        if !ok {
            return Err(StorageError::Io(anyhow::anyhow!(
                "invalid backup key {key:?}"
            )));
        }
        Ok(self.root.join(key))
    }

    fn used(&self) -> u64 {
        crate::os::disk_usage(&self.root)
    }

    fn room_for(&self, bytes: u64) -> Result<(), StorageError> {
        if let Some(max) = self.max_bytes {
            let used = self.used();
            if used + bytes > max {
                return Err(StorageError::Full(format!(
                    "{} holds {used} bytes of its {max}-byte limit and {bytes} more do not fit",
                    self.root.display()
                )));
            }
        }
        Ok(())
    }

    fn parent(&self, path: &Path) -> Result<(), StorageError> {
        let mut dirs = Vec::new();
        let mut p = path.parent();
        while let Some(d) = p {
            if d == self.root || d.exists() {
                break;
            }
            dirs.push(d.to_path_buf());
            p = d.parent();
        }
        for d in dirs.into_iter().rev() {
            fs::create_dir(&d).map_err(|e| io_err("create", &d, e))?;
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700))
                .map_err(|e| io_err("chmod", &d, e))?;
        }
        Ok(())
    }

    /// Writes through a temporary name, then renames: a reader never sees half an object.
    fn write_with(
        &self,
        key: &str,
        size: u64,
        write: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<(), StorageError> {
        let path = self.path(key)?;
        self.room_for(size)?;
        self.parent(&path)?;
        // Appended, not `with_extension`: keys that differ only after their last dot
        // (`binlog.000003`, `binlog.000004`) must not share a temporary name.
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".partial-upload");
        let tmp = path.with_file_name(tmp_name);
        let _ = fs::remove_file(&tmp);
        if let Err(e) = write(&tmp) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("write", &tmp, e));
        }
        let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600));
        fs::rename(&tmp, &path).map_err(|e| io_err("rename", &path, e))
    }
}

impl BackupStorage for DirStorage {
    fn put(&self, key: &str, from: &Path) -> Result<u64, StorageError> {
        let size = fs::metadata(from)
            .map_err(|e| io_err("read", from, e))?
            .len();
        self.write_with(key, size, |tmp| fs::copy(from, tmp).map(|_| ()))?;
        Ok(size)
    }

    fn put_bytes(&self, key: &str, data: &[u8]) -> Result<(), StorageError> {
        self.write_with(key, data.len() as u64, |tmp| fs::write(tmp, data))
    }

    fn get(&self, key: &str, to: &Path) -> Result<(), StorageError> {
        let path = self.path(key)?;
        fs::copy(&path, to).map_err(|e| io_err("copy", &path, e))?;
        Ok(())
    }

    fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        let path = self.path(key)?;
        fs::read(&path).map_err(|e| io_err("read", &path, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<Object>, StorageError> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("list", &dir, e)),
            };
            for entry in entries.flatten() {
                let p = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                let Ok(rel) = p.strip_prefix(&self.root) else {
                    continue;
                };
                let key = rel.to_string_lossy().to_string();
                if meta.is_dir() {
                    if prefix.starts_with(&format!("{key}/"))
                        || key.starts_with(prefix)
                        || prefix.starts_with(&key)
                    {
                        stack.push(p);
                    }
                } else if key.starts_with(prefix) && !key.ends_with(".partial-upload") {
                    out.push(Object {
                        key,
                        size: meta.len(),
                        modified: meta
                            .modified()
                            .map(DateTime::<Utc>::from)
                            .unwrap_or_else(|_| Utc::now()),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("remove", &path, e)),
        }
        // Drop emptied directories up to the root.
        let mut p = path.parent();
        while let Some(d) = p {
            if d == self.root || fs::remove_dir(d).is_err() {
                break;
            }
            p = d.parent();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_round_trip_list_and_the_limit_holds() {
        let dir = tempfile::tempdir().unwrap();
        let s = DirStorage::open(&dir.path().join("b"), Some(64 * 1024)).unwrap();
        s.put_bytes("db_a/wal/000000010000000000000001", b"one")
            .unwrap();
        s.put_bytes("db_a/base/x/manifest.json", b"{}").unwrap();
        s.put_bytes("db_b/wal/1", b"b").unwrap();
        let keys: Vec<String> = s
            .list("db_a/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(
            keys,
            [
                "db_a/base/x/manifest.json",
                "db_a/wal/000000010000000000000001"
            ]
        );
        assert_eq!(s.get_bytes("db_a/base/x/manifest.json").unwrap(), b"{}");
        assert!(matches!(
            s.get_bytes("db_a/nope"),
            Err(StorageError::NotFound(_))
        ));
        assert!(s.put_bytes("../escape", b"x").is_err());
        let big = vec![0u8; 128 * 1024];
        assert!(matches!(
            s.put_bytes("db_a/big", &big),
            Err(StorageError::Full(_))
        ));
        s.delete("db_a/base/x/manifest.json").unwrap();
        assert!(!dir.path().join("b/db_a/base").exists());
        let mode = fs::metadata(dir.path().join("b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
    }
}

/// Backup settings of the managed service (the binary sets `dir` from `refract serve
/// --managed-backup-dir`; tests shorten the intervals and set a byte limit).
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// The directory backups live in; default `DIR/managed/backups` (0700).
    pub dir: Option<PathBuf>,
    /// A cap on the bytes that directory may hold (none by default: the disk's own size).
    pub max_bytes: Option<u64>,
    /// How often a base backup (snapshot for Redis) is taken of every running server.
    pub interval: std::time::Duration,
    /// How often archived WAL is shipped into the storage, backups are scheduled and old ones pruned.
    pub tick: std::time::Duration,
    /// Whether the scheduler runs at all (tests of the API alone turn it off).
    pub scheduled: bool,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: None,
            max_bytes: None,
            interval: std::time::Duration::from_secs(24 * 3600),
            tick: std::time::Duration::from_secs(15),
            scheduled: true,
        }
    }
}

/// The service's backup state: the storage, runs in flight, recent events.
#[derive(Debug)]
pub struct Backups {
    /// Where backups live.
    pub storage: std::sync::Arc<dyn BackupStorage>,
    /// Settings.
    pub config: BackupConfig,
    /// Databases with a backup running, and since when.
    pub running: std::sync::Mutex<std::collections::HashMap<String, DateTime<Utc>>>,
    /// When the last scheduled backup of each database failed (retried after a pause, not every tick).
    pub failed: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Recent events, oldest first (bounded).
    pub events: std::sync::Mutex<Vec<BackupEvent>>,
    /// Held while archived logs (PostgreSQL WAL, MariaDB binary logs) are shipped: a scheduler
    /// tick and a restore's seal never upload the same file at once (they would share its
    /// temporary upload name).
    pub log_shipping: tokio::sync::Mutex<()>,
    /// The binary log each MariaDB primary writes, as the archiver last saw it (when to rotate).
    pub active_binlogs:
        std::sync::Mutex<std::collections::HashMap<String, super::types::ActiveBinlog>>,
    /// Restore plans of databases being restored: `DIR/managed/restores/<id>.json`.
    pub restores_dir: PathBuf,
    /// Where events are appended: `DIR/managed/backup-events.jsonl` (all databases), and each
    /// database's own events file (`GET …/events`).
    events_file: PathBuf,
    data_dir: PathBuf,
}

/// Events kept in memory.
const EVENTS_KEPT: usize = 1000;

impl Backups {
    /// Opens the storage of `config` for the data dir `data_dir`.
    pub fn open(data_dir: &Path, config: &BackupConfig) -> anyhow::Result<Backups> {
        let root = config
            .dir
            .clone()
            .unwrap_or_else(|| data_dir.join("managed").join("backups"));
        let storage = DirStorage::open(&root, config.max_bytes)?;
        let restores_dir = data_dir.join("managed").join("restores");
        fs::create_dir_all(&restores_dir)?;
        fs::set_permissions(&restores_dir, fs::Permissions::from_mode(0o700))?;
        Ok(Backups {
            storage: std::sync::Arc::new(storage),
            config: config.clone(),
            running: Default::default(),
            failed: Default::default(),
            events: Default::default(),
            active_binlogs: Default::default(),
            log_shipping: Default::default(),
            restores_dir,
            events_file: data_dir.join("managed").join("backup-events.jsonl"),
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// Records an event: logged, kept in memory, appended to the events file.
    pub fn event(&self, database_id: &str, kind: &str, message: String) {
        if kind.ends_with("failed") || kind.ends_with("refused") {
            tracing::warn!(db = %database_id, kind, %message, "managed backup event");
        } else {
            tracing::info!(db = %database_id, kind, %message, "managed backup event");
        }
        crate::event_log::append_event(&self.data_dir, database_id, kind, &message);
        let e = BackupEvent {
            at: Utc::now(),
            database_id: database_id.to_string(),
            kind: kind.to_string(),
            message,
        };
        if let Ok(line) = serde_json::to_string(&e) {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let _ = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.events_file)
                .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        }
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.push(e);
        if events.len() > EVENTS_KEPT {
            let extra = events.len() - EVENTS_KEPT;
            events.drain(..extra);
        }
    }

    /// The latest `n` events of one database, oldest first.
    pub fn events_of(&self, database_id: &str, n: usize) -> Vec<BackupEvent> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let mine: Vec<BackupEvent> = events
            .iter()
            .filter(|e| e.database_id == database_id)
            .cloned()
            .collect();
        mine[mine.len().saturating_sub(n)..].to_vec()
    }
}
