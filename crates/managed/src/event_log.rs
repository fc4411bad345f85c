//! The event log of a managed database: one JSON line per event in
//! `DIR/managed/events/<db id>.jsonl` (0600, in a 0700 directory). Every event of a database is
//! appended here (failovers by the reconciler, backups and restores by the backup scheduler);
//! `events.rs` serves them. Depends on nothing else of the crate, so that any part can record.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Events returned per request (the newest).
const MAX_EVENTS: usize = 1000;

/// One event of a managed database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = ManagedEvent)]
pub struct Event {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What kind: `failover`, `failover_impossible`, `failover_failed`, `backup_started`,
    /// `backup_completed`, `backup_failed`, `restore_requested`, ….
    pub kind: String,
    /// What happened, for a person.
    pub message: String,
}

/// The events file of database `id` under the control plane's data dir.
fn events_file(data_dir: &Path, id: &str) -> PathBuf {
    data_dir
        .join("managed")
        .join("events")
        .join(format!("{id}.jsonl"))
}

/// Appends an event of database `id` to its file; a failure to write is logged, never fatal.
/// Every event of a database goes through here (failovers, backups, restores), so that
/// `GET …/events` shows them all.
pub(crate) fn append_event(data_dir: &Path, id: &str, kind: &str, message: &str) {
    let event = Event {
        at: Utc::now(),
        kind: kind.into(),
        message: message.into(),
    };
    let path = events_file(data_dir, id);
    let result = (|| -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        let mut line = serde_json::to_vec(&event)?;
        line.push(b'\n');
        f.write_all(&line)
    })();
    if let Err(e) = result {
        tracing::error!(db = %id, error = %e, path = %path.display(), "cannot record a managed database event");
    }
}

/// The events of database `id`, oldest first (at most the newest [`MAX_EVENTS`]).
pub(crate) fn read_events(data_dir: &Path, id: &str) -> Vec<Event> {
    let text = std::fs::read_to_string(events_file(data_dir, id)).unwrap_or_default();
    let mut events: Vec<Event> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let skip = events.len().saturating_sub(MAX_EVENTS);
    events.drain(..skip);
    events
}
