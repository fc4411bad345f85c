//! The records of the managed metadata and the store's error, shared by both backends (the
//! SQLite file in `store.rs`, PostgreSQL in `store/postgres.rs`).

use chrono::{DateTime, Utc};

use crate::api::{DbType, Status};
use crate::catalog::ResolvedVersion;

/// What the user wants a server to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    /// Running (after create, `start`, `restart`).
    Running,
    /// Stopped (after `stop`).
    Stopped,
    /// Deleted.
    Destroyed,
}

impl Desired {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Desired::Running => "running",
            Desired::Stopped => "stopped",
            Desired::Destroyed => "destroyed",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Desired> {
        [Desired::Running, Desired::Stopped, Desired::Destroyed]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// What a reconciler works toward for a server ([`DbRecord::goal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Its servers run.
    Run,
    /// Its servers are stopped, their data kept.
    Stop,
    /// Destroyed: its servers, data and credentials are still to be removed.
    Purge,
    /// Destroyed and removed: nothing left to do.
    Done,
}

/// Why a server is in `error`, which decides what the reconciler does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Creating a server failed; left alone until a `start` action.
    Provision,
    /// A server exited; being restarted.
    Crash,
    /// It kept crashing; left alone until a `start` action.
    CrashLoop,
    /// Its data directory outgrew `storage_gb`; back to running when it fits again.
    Quota,
    /// It runs but the generated login does not work (yet); checked again.
    Runtime,
}

impl ErrorKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Provision => "provision",
            ErrorKind::Crash => "crash",
            ErrorKind::CrashLoop => "crash_loop",
            ErrorKind::Quota => "quota",
            ErrorKind::Runtime => "runtime",
        }
    }

    pub(super) fn parse(s: &str) -> Option<ErrorKind> {
        [
            ErrorKind::Provision,
            ErrorKind::Crash,
            ErrorKind::CrashLoop,
            ErrorKind::Quota,
            ErrorKind::Runtime,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// Whether the reconciler leaves the server alone until a user action.
    pub fn halts(self) -> bool {
        matches!(self, ErrorKind::Provision | ErrorKind::CrashLoop)
    }
}

/// One managed server as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DbRecord {
    /// `db_…`.
    pub id: String,
    /// Owner.
    pub customer_id: String,
    /// Project.
    pub project_id: String,
    /// Display name.
    pub name: String,
    /// Slug of the name.
    pub slug: String,
    /// Engine.
    pub db_type: DbType,
    /// Reported version.
    pub version: String,
    /// Requested version when it differs.
    pub requested_version: Option<String>,
    /// Server's own version once known.
    pub server_version: Option<String>,
    /// Plan id.
    pub plan_id: String,
    /// Region.
    pub region: String,
    /// Quota per server, GiB.
    pub storage_gb: i64,
    /// Intended number of servers.
    pub replicas: i64,
    /// Intent.
    pub desired: Desired,
    /// A restart was asked for (action or plan change) and has not run yet.
    pub restart_requested: bool,
    /// Reported status.
    pub status: Status,
    /// Why `error`.
    pub error_kind: Option<ErrorKind>,
    /// The message of `error`.
    pub error_message: Option<String>,
    /// Servers initialized so far (primary first).
    pub nodes_ready: usize,
    /// Port of each initialized (or initializing) server.
    pub ports: Vec<u16>,
    /// Destroyed and cleaned up.
    pub purged: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Who a new server belongs to (nobody for a standalone server, which has no tenant).
#[derive(Debug, Clone, Default)]
pub struct Owner {
    /// Customer.
    pub customer_id: String,
    /// Project.
    pub project_id: String,
}

/// Where a new server runs and how much of it there is.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Plan id.
    pub plan_id: String,
    /// Region.
    pub region: String,
    /// Quota per server, GiB.
    pub storage_gb: i64,
    /// Intended number of servers.
    pub replicas: i64,
}

impl DbRecord {
    /// A server just asked for: wanted running, `provisioning`, none of its servers
    /// initialized and no port yet, created now; the slug follows the name.
    pub fn new(
        id: String,
        owner: Owner,
        name: String,
        db_type: DbType,
        version: ResolvedVersion,
        placement: Placement,
    ) -> DbRecord {
        let t = now();
        DbRecord {
            id,
            customer_id: owner.customer_id,
            project_id: owner.project_id,
            slug: slug(&name),
            name,
            db_type,
            version: version.version,
            requested_version: version.requested,
            server_version: None,
            plan_id: placement.plan_id,
            region: placement.region,
            storage_gb: placement.storage_gb,
            replicas: placement.replicas,
            desired: Desired::Running,
            restart_requested: false,
            status: Status::Provisioning,
            error_kind: None,
            error_message: None,
            nodes_ready: 0,
            ports: Vec::new(),
            purged: false,
            created_at: t,
            updated_at: t,
        }
    }

    /// What a reconciler (local or platform) works toward for this server: its intent, with a
    /// destroyed server's cleanup done or not.
    pub fn goal(&self) -> Goal {
        match self.desired {
            Desired::Running => Goal::Run,
            Desired::Stopped => Goal::Stop,
            Desired::Destroyed if self.purged => Goal::Done,
            Desired::Destroyed => Goal::Purge,
        }
    }

    /// Why the server is in `error` now: its `error_kind` while the status is `error`, else
    /// none (a kind left from before is not the current state).
    pub fn current_error(&self) -> Option<ErrorKind> {
        (self.status == Status::Error)
            .then_some(self.error_kind)
            .flatten()
    }
}

/// The slug of a name: lowercase, runs of anything but `[a-z0-9]` become one `-`, trimmed, at
/// most 63 characters.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut s = out.trim_matches('-').to_string();
    s.truncate(63);
    let s = s.trim_end_matches('-').to_string();
    if s.is_empty() {
        "db".into()
    } else {
        s
    }
}

/// A stored API token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    /// `tok_…`.
    pub id: String,
    /// Owner.
    pub customer_id: String,
    /// Display name.
    pub name: String,
    /// Public key id.
    pub key_id: String,
    /// SHA-256 hex of the secret.
    pub secret_sha256: String,
    /// Scopes (empty = full access).
    pub scopes: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last use.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Why a metadata read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQLite file.
    #[error("managed metadata store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL store.
    #[error("managed metadata store: {0}")]
    Postgres(String),
}

/// Current time at microsecond precision (what the store keeps, so values read back compare equal).
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    t - chrono::TimeDelta::nanoseconds((t.timestamp_subsec_nanos() % 1000) as i64)
}

pub(super) const DB_COLUMNS: &str = "id, customer_id, project_id, name, slug, db_type, version, requested_version, \
     server_version, plan_id, region, storage_gb, replicas, desired_state, restart_requested, status, \
     error_kind, error_message, nodes_ready, ports, purged, created_at, updated_at";

/// The columns set once, when a server is created: a save leaves them as they are.
const SET_AT_CREATE: [&str; 10] = [
    "id",
    "customer_id",
    "project_id",
    "name",
    "slug",
    "db_type",
    "version",
    "requested_version",
    "region",
    "created_at",
];

/// One value of a stored [`DbRecord`]; each store says how it keeps each kind.
#[derive(Debug, Clone, Copy)]
pub(super) enum DbValue<'a> {
    Text(&'a str),
    MaybeText(Option<&'a str>),
    Int(i64),
    Bool(bool),
    /// A JSON array.
    Ports(&'a [u16]),
    Time(DateTime<Utc>),
}

/// The values of `d` in the order of [`DB_COLUMNS`].
pub(super) fn db_values(d: &DbRecord) -> [DbValue<'_>; 23] {
    use DbValue::*;
    [
        Text(&d.id),
        Text(&d.customer_id),
        Text(&d.project_id),
        Text(&d.name),
        Text(&d.slug),
        Text(d.db_type.as_str()),
        Text(&d.version),
        MaybeText(d.requested_version.as_deref()),
        MaybeText(d.server_version.as_deref()),
        Text(&d.plan_id),
        Text(&d.region),
        Int(d.storage_gb),
        Int(d.replicas),
        Text(d.desired.as_str()),
        Bool(d.restart_requested),
        Text(d.status.as_str()),
        MaybeText(d.error_kind.map(ErrorKind::as_str)),
        MaybeText(d.error_message.as_deref()),
        Int(d.nodes_ready as i64),
        Ports(&d.ports),
        Bool(d.purged),
        Time(d.created_at),
        Time(d.updated_at),
    ]
}

/// The statements that write a [`DbRecord`] to `table`, with one backend's placeholders
/// (`placeholder(1)` is `?1` or `$1`). The insert binds every value of [`db_values`], the save
/// those of `save_binds`.
pub(super) struct DbWrites {
    /// `INSERT` of every column.
    pub insert: String,
    /// `UPDATE` of every column but [`SET_AT_CREATE`], by `id`; `destroyed_at` is set the first
    /// time the status is `destroyed` and cleared when it is not.
    pub save: String,
    /// The positions in [`DB_COLUMNS`] of the values `save` binds, in its placeholders' order.
    pub save_binds: Vec<usize>,
}

impl DbWrites {
    pub(super) fn new(table: &str, placeholder: fn(usize) -> String) -> DbWrites {
        let columns: Vec<&str> = DB_COLUMNS.split(',').map(str::trim).collect();
        let values: Vec<String> = (1..=columns.len()).map(placeholder).collect();
        let insert = format!(
            "INSERT INTO {table} ({DB_COLUMNS}) VALUES ({})",
            values.join(", ")
        );
        // `id` first: the row to update.
        let save_binds: Vec<usize> = std::iter::once(0)
            .chain((0..columns.len()).filter(|i| !SET_AT_CREATE.contains(&columns[*i])))
            .collect();
        let bound = |column: &str| {
            let at = save_binds.iter().position(|i| columns[*i] == column);
            placeholder(at.expect("a saved column") + 1)
        };
        let sets: Vec<String> = save_binds[1..]
            .iter()
            .map(|i| format!("{} = {}", columns[*i], bound(columns[*i])))
            .collect();
        let save = format!(
            "UPDATE {table} SET {}, destroyed_at = CASE WHEN {status} = 'destroyed' \
             THEN COALESCE(destroyed_at, {updated_at}) ELSE NULL END WHERE id = {id}",
            sets.join(", "),
            status = bound("status"),
            updated_at = bound("updated_at"),
            id = bound("id"),
        );
        DbWrites {
            insert,
            save,
            save_binds,
        }
    }
}

pub(super) const TOKEN_COLUMNS: &str =
    "id, customer_id, name, key_id, secret_sha256, scopes, created_at, last_used_at";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_writes_what_can_change_and_an_insert_everything() {
        let writes = DbWrites::new("databases", |n| format!("?{n}"));
        assert_eq!(
            writes.save,
            "UPDATE databases SET server_version = ?2, plan_id = ?3, storage_gb = ?4, replicas = ?5, \
             desired_state = ?6, restart_requested = ?7, status = ?8, error_kind = ?9, \
             error_message = ?10, nodes_ready = ?11, ports = ?12, purged = ?13, updated_at = ?14, \
             destroyed_at = CASE WHEN ?8 = 'destroyed' THEN COALESCE(destroyed_at, ?14) ELSE NULL END \
             WHERE id = ?1"
        );
        assert_eq!(
            writes.save_binds,
            [0, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22]
        );
        let pg = DbWrites::new("managed.databases", |n| format!("${n}"));
        assert!(pg.insert.starts_with(&format!(
            "INSERT INTO managed.databases ({DB_COLUMNS}) VALUES ($1, $2, "
        )));
        assert!(pg.insert.ends_with(", $22, $23)"));
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("main-postgres"), "main-postgres");
        assert_eq!(slug("  My Cache_01!! "), "my-cache-01");
        assert_eq!(slug("Ünïcode"), "n-code");
        assert_eq!(slug("---"), "db");
    }
}
