//! The lifecycle's errors, typed: [`ActionError`] (an action that cannot begin), [`LaunchError`]
//! (an engine that cannot be started) and [`LifecycleError`] (a reconciler step that did not
//! finish). None knows HTTP: an action's error becomes an HTTP answer in one place,
//! `From<ActionError> for ApiError` (`crate::error`); the others end in `lastError`, the event log
//! or the reconciler's log.

use refract_runtime::RuntimeError;
use uuid::Uuid;

use crate::store::StoreError;

/// Why an action cannot begin, beyond the matrix's refusal.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `redeploy` without `buildId` (400).
    #[error("buildId is required")]
    BuildIdRequired,
    /// `redeploy` of a build the database does not have (404).
    #[error("build not found")]
    BuildNotFound,
    /// `redeploy` of a build without an artifact (409 `action_not_allowed`).
    #[error("build {build} is not deployable (status {status}): it has no artifact")]
    NotDeployable {
        /// The build.
        build: Uuid,
        /// Its status.
        status: &'static str,
    },
}

/// Why an engine could not be started; its text is the operation's error (`lastError`).
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Reading the connection, build and manifest failed.
    #[error("cannot read the deploy's records: internal error: {0}")]
    Records(StoreError),
    /// The build has no manifest, or the connection is gone.
    #[error("build {0} has no manifest (or the connection is gone): redeploy another build")]
    NoManifest(Uuid),
    /// The SQLite source check did not run.
    #[error("checking the source failed: {0}")]
    Check(String),
    /// The SQLite source may not be read.
    #[error("the source may not be read: {0}")]
    Unreadable(String),
    /// A secret of the connection (password, CA) cannot be read from the secret store (store
    /// unreachable, or sealed with another master key).
    #[error("cannot read the connection's secrets: {0} (is the metadata store reachable, and the master key the one the secrets were sealed with?)")]
    Secret(String),
    /// The engine's admin token cannot be read or created.
    #[error("cannot read or create the engine's admin token: {0:#}")]
    AdminToken(anyhow::Error),
    /// The keys file cannot be written.
    #[error("cannot write the keys file: {0}")]
    KeysFile(String),
    /// No free client port in the stable range.
    #[error("no free port for the engine in {first}–{last}")]
    NoFreePort {
        /// The range's first port.
        first: u16,
        /// Its last port.
        last: u16,
    },
    /// The runtime driver refused.
    #[error("cannot start the engine: {0}")]
    Start(RuntimeError),
}

/// Why a reconciler step did not finish; the step is retried (logged and counted).
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A queued or scheduled action could not begin.
    #[error(transparent)]
    Action(#[from] ActionError),
    /// The step lost a race with an action while recording the database's port; the next step
    /// reads the record again.
    #[error("the operation changed meanwhile")]
    Raced,
}

/// The result of a reconciler step.
pub(super) type StepResult<T> = Result<T, LifecycleError>;
