//! The lifecycle of databases: actions, builds, the reconciler, crash restarts, the health poller,
//! pause schedules and query keys.
//!
//! - [`matrix`]: the action matrix, one table used by every action endpoint and by
//!   `GET /v1/databases/{id}/instance`.
//! - `actions` (methods on [`crate::Service`]): an action only *records* intent — a new status
//!   and the operation in flight, or a `desiredState` — and wakes the reconciler; it never starts
//!   or stops a process itself. `apply_action` is the one path of an action (matrix, then begin,
//!   queue or refuse) for the endpoints, pause schedules and queued `desiredState`s.
//! - `reconciler`: one loop that wakes on every action and at least every second, compares what
//!   the store says with what the runtime driver reports, and takes the next step of each
//!   database's operation on a task of its own (one per database at a time). Every step is
//!   written to the store before it is taken and is idempotent, so a control plane killed at any
//!   point finishes or rolls back the operation after its restart.
//! - `decide`: the reconciler's decisions, pure and table-tested: which step (`work`), what a
//!   deploy does next (`deploy`: timeouts, health answers), what a running engine needs
//!   (`supervise`: addresses, crashes, backoff).
//! - The steps, IO only, each carrying out a decision: `deploy` (start, wait healthy, cutover),
//!   `supervise` (crash restarts), `stop` (pause/terminate, cleanup, the orphan sweep), `launch`
//!   (the engine's port and start), `builds` (the connection test and the build — introspection +
//!   schema config → manifest — bounded to [`BUILD_SLOTS`] at once).
//! - `bookkeeping`: what steps and actions record — the clock, operation records, guarded
//!   commits, the end of a failed operation. Steps and actions import it, never the reconciler.
//! - `state`: the shared handles ([`Lifecycle`], [`Runtime`]); `error`: the typed errors
//!   (`ActionError`, `LaunchError`, `LifecycleError`).
//! - `health`: every 5 s, the health of every live engine into its instance row.
//! - [`schedule`]: when a pause schedule fires.
//!
//! Dependencies point one way: `reconciler` → steps → `decide`, `launch`, `bookkeeping` →
//! `state`, `engine`; this file only declares, re-exports and starts the tasks
//! (`scripts/check-cycles`).
//!
//! Engines get their secrets by file (0600): the source password, the admin token of
//! `/admin/*` and `/stats` (kept in the secret store as `database/<id>/admin-token`), and the
//! query keys file `DATA/keys/<database id>.json`, which the control plane rewrites
//! (write-then-rename) on every key change, then tells each running engine to re-read it
//! (`POST /admin/keys/reload`) and waits for the acknowledgement, at most 2 s.

mod actions;
mod bookkeeping;
mod builds;
mod decide;
mod deploy;
mod engine;
mod error;
mod health;
pub mod http;
mod launch;
pub mod matrix;
mod querykeys;
mod reconciler;
pub mod schedule;
mod state;
mod stop;
mod supervise;
pub mod types;

use tokio_util::sync::CancellationToken;

use crate::Service;

pub use actions::ActionParams;
pub use engine::EngineClient;
pub(crate) use engine::{admin_token_secret, keys_file};
pub(crate) use error::ActionError;
pub use state::{set_step_delay, Lifecycle, Runtime, BUILD_SLOTS, ENGINE_FILES_FALLBACK};

impl Lifecycle {
    /// Starts the reconciler and the health poller for `service`; they stop when `cancel` is
    /// cancelled. Engines keep running: they are adopted again by the next start.
    pub fn start(
        &self,
        service: Service,
        cancel: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        if self.runtime().is_none() {
            tracing::warn!("no runtime configured: the reconciler does not run");
            return Vec::new();
        }
        vec![
            tokio::spawn(reconciler::run(service.clone(), cancel.clone())),
            tokio::spawn(health::run(service, cancel)),
        ]
    }
}
