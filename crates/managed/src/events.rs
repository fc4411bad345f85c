//! Events of a managed database (`GET /api/v1/databases/{id}/events`): important state changes
//! the reconciler and the backup scheduler make on their own, such as a failover or a backup.
//! Stored by [`crate::event_log`]; kept after a database is destroyed, like its row. No secrets
//! ever go in a message.

use crate::error::ManagedError;
use crate::event_log;
pub use crate::event_log::Event;
use crate::service::{Caller, ManagedService};

impl ManagedService {
    /// Appends an event (and logs it).
    pub(crate) fn record_event(&self, id: &str, kind: &str, message: &str) {
        tracing::warn!(db = %id, kind, message, "managed database event");
        event_log::append_event(&self.inner.config.data_dir, id, kind, message);
    }

    /// `GET /api/v1/databases/{id}/events`.
    pub async fn events(&self, caller: &Caller, id: &str) -> Result<Vec<Event>, ManagedError> {
        caller.need_read()?;
        self.owned(caller, id).await?;
        Ok(event_log::read_events(&self.inner.config.data_dir, id))
    }
}
