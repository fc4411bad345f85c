//! Events of a managed database (`GET /api/v1/databases/{id}/events`): important state changes
//! the reconciler makes on its own, such as a failover. Appended as JSON lines to
//! `DIR/managed/events/<db id>.jsonl` (0600, in a 0700 directory); kept after a database is
//! destroyed, like its row. No secrets ever go in a message.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ManagedError;
use crate::service::{Caller, ManagedService};

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
pub(crate) fn events_file(data_dir: &Path, id: &str) -> PathBuf {
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

impl ManagedService {
    /// Appends an event (and logs it).
    pub(crate) fn record_event(&self, id: &str, kind: &str, message: &str) {
        tracing::warn!(db = %id, kind, message, "managed database event");
        append_event(&self.inner.config.data_dir, id, kind, message);
    }

    /// The events of a database, oldest first (at most the newest [`MAX_EVENTS`]).
    pub(crate) fn read_events(&self, id: &str) -> Vec<Event> {
        let text = std::fs::read_to_string(events_file(&self.inner.config.data_dir, id))
            .unwrap_or_default();
        let mut events: Vec<Event> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let skip = events.len().saturating_sub(MAX_EVENTS);
        events.drain(..skip);
        events
    }

    /// `GET /api/v1/databases/{id}/events`.
    pub async fn events(&self, caller: &Caller, id: &str) -> Result<Vec<Event>, ManagedError> {
        caller.need_read()?;
        self.owned(caller, id).await?;
        Ok(self.read_events(id))
    }
}
