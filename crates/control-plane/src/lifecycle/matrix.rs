//! The action matrix of `lifecycle.md`: **one table**, used by every action endpoint and served as
//! `actions` by `GET /v1/databases/{id}/instance`, so the two can never disagree.

use crate::api::Status;

/// A lifecycle action (a column of the matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Build and deploy from scratch.
    Provision,
    /// New build, deployed beside the running engine.
    Rebuild,
    /// Same build, new runtime settings.
    Reconfigure,
    /// Deploy a past build.
    Redeploy,
    /// New instance size.
    Resize,
    /// Scale to zero.
    Pause,
    /// Back from zero.
    Resume,
    /// Remove the runtime resources.
    Terminate,
    /// Soft delete.
    Delete,
    /// Full reload of the snapshot.
    Reload,
    /// Freeze the snapshot.
    PauseSync,
    /// Unfreeze the snapshot.
    ResumeSync,
}

impl Action {
    /// Every action, in the matrix's column order.
    pub const ALL: [Action; 12] = [
        Action::Provision,
        Action::Rebuild,
        Action::Reconfigure,
        Action::Redeploy,
        Action::Resize,
        Action::Pause,
        Action::Resume,
        Action::Terminate,
        Action::Delete,
        Action::Reload,
        Action::PauseSync,
        Action::ResumeSync,
    ];

    /// The key in `actions` (`pauseSync`).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Provision => "provision",
            Action::Rebuild => "rebuild",
            Action::Reconfigure => "reconfigure",
            Action::Redeploy => "redeploy",
            Action::Resize => "resize",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Terminate => "terminate",
            Action::Delete => "delete",
            Action::Reload => "reload",
            Action::PauseSync => "pauseSync",
            Action::ResumeSync => "resumeSync",
        }
    }

    /// The route segment (`pause-replication`).
    pub fn path(&self) -> &'static str {
        match self {
            Action::PauseSync => "pause-replication",
            Action::ResumeSync => "resume-replication",
            other => other.name(),
        }
    }

    fn column(&self) -> usize {
        Action::ALL.iter().position(|a| a == self).unwrap_or(0)
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// `Y`: done now.
    Immediate,
    /// `Q`: recorded as `desiredState`, done when a stable status is reached.
    Queued,
    /// `img`: done now if the database has a past successful build.
    NeedsBuild,
    /// `—`: refused with 409 `action_not_allowed`.
    Refused,
}

use Cell::{Immediate as Y, NeedsBuild as I, Queued as Q, Refused as N};

/// The matrix, row per status, columns in [`Action::ALL`] order:
/// provision rebuild reconfigure redeploy resize pause resume terminate delete reload pauseSync resumeSync.
pub const MATRIX: [(Status, [Cell; 12]); 13] = [
    (Status::Registered, [Y, N, N, N, Y, N, N, N, Y, N, N, N]),
    (
        Status::TestingConnection,
        [N, N, N, N, N, N, N, N, N, N, N, N],
    ),
    (Status::Queued, [N, N, N, N, N, Q, N, Y, N, N, N, N]),
    (Status::Building, [N, N, N, N, N, Q, N, Y, N, N, N, N]),
    (Status::Deploying, [N, N, N, N, Y, Q, N, Y, N, N, N, N]),
    (Status::Running, [N, Y, Y, I, Y, Y, N, Y, N, Y, Y, Y]),
    (Status::Pausing, [N, N, N, N, N, N, Q, Q, N, N, N, N]),
    (Status::Paused, [N, Y, N, I, Y, N, Y, Y, N, N, N, N]),
    (Status::Resuming, [N, N, N, N, N, Q, N, Y, N, N, N, N]),
    (Status::Failed, [Y, I, I, I, N, N, N, Y, Y, N, N, N]),
    (Status::Stopped, [Y, N, N, N, Y, N, N, N, Y, N, N, N]),
    (Status::Terminating, [N, N, N, N, N, N, N, N, N, N, N, N]),
    (Status::Terminated, [Y, N, N, N, N, N, N, N, Y, N, N, N]),
];

/// The matrix cell of `status` × `action`.
pub fn cell(status: Status, action: Action) -> Cell {
    MATRIX
        .iter()
        .find(|(s, _)| *s == status)
        .map(|(_, row)| row[action.column()])
        .unwrap_or(Cell::Refused)
}

/// Facts beyond the status that the matrix depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    /// The database has a past successful build (for `img` cells).
    pub has_deployable_build: bool,
    /// The running engine's snapshot is frozen (`pauseSync` / `resumeSync`).
    pub replication_paused: bool,
}

/// What an action request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Do it now.
    Immediate,
    /// Record it as `desiredState`.
    Queued,
    /// 409 `action_not_allowed` with this reason.
    Refused(String),
}

/// `mode` of an allowed action (a wire type).
pub use refract_api::Mode;

/// The one decision function: the matrix plus its two side conditions.
pub fn decide(status: Status, action: Action, ctx: &Context) -> Decision {
    match cell(status, action) {
        Cell::Immediate | Cell::NeedsBuild if action == Action::PauseSync && ctx.replication_paused => {
            Decision::Refused("replication is already paused (resume-replication unfreezes it)".into())
        }
        Cell::Immediate | Cell::NeedsBuild if action == Action::ResumeSync && !ctx.replication_paused => {
            Decision::Refused("replication is not paused (resume-replication is allowed only while it is)".into())
        }
        Cell::Immediate => Decision::Immediate,
        Cell::Queued => Decision::Queued,
        Cell::NeedsBuild if ctx.has_deployable_build => Decision::Immediate,
        Cell::NeedsBuild => Decision::Refused(format!(
            "{} needs a past successful build and this database has none: provision it (or rebuild) first",
            action.name()
        )),
        Cell::Refused => Decision::Refused(refusal(status, action)),
    }
}

/// The reason of a `—` cell: what is wrong now and in which statuses the action is allowed.
fn refusal(status: Status, action: Action) -> String {
    let allowed: Vec<&str> = MATRIX
        .iter()
        .filter(|(_, row)| row[action.column()] != Cell::Refused)
        .map(|(s, _)| s.as_str())
        .collect();
    let why = match status {
        Status::TestingConnection | Status::Queued | Status::Building | Status::Deploying | Status::Pausing
        | Status::Resuming | Status::Terminating => {
            " while an operation is in progress; wait until it finishes (GET /v1/databases/{id}/instance)"
        }
        _ => "",
    };
    format!(
        "{} is not allowed in status {status}{why}; it is allowed in: {}",
        action.name(),
        allowed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_one_row() {
        for s in Status::ALL {
            assert_eq!(MATRIX.iter().filter(|(r, _)| r == s).count(), 1, "{s}");
        }
    }

    #[test]
    fn cells_follow_the_spec() {
        let ctx = Context::default();
        assert_eq!(
            decide(Status::Registered, Action::Provision, &ctx),
            Decision::Immediate
        );
        assert_eq!(
            decide(Status::Building, Action::Pause, &ctx),
            Decision::Queued
        );
        assert_eq!(
            decide(Status::Pausing, Action::Resume, &ctx),
            Decision::Queued
        );
        assert!(
            matches!(decide(Status::Running, Action::Redeploy, &ctx), Decision::Refused(r) if r.contains("successful build"))
        );
        let built = Context {
            has_deployable_build: true,
            replication_paused: false,
        };
        assert_eq!(
            decide(Status::Running, Action::Redeploy, &built),
            Decision::Immediate
        );
        assert_eq!(
            decide(Status::Running, Action::PauseSync, &built),
            Decision::Immediate
        );
        assert!(matches!(
            decide(Status::Running, Action::ResumeSync, &built),
            Decision::Refused(_)
        ));
        let frozen = Context {
            has_deployable_build: true,
            replication_paused: true,
        };
        assert_eq!(
            decide(Status::Running, Action::ResumeSync, &frozen),
            Decision::Immediate
        );
        match decide(Status::Paused, Action::Reload, &ctx) {
            Decision::Refused(r) => assert!(r.contains("allowed in: running"), "{r}"),
            other => panic!("{other:?}"),
        }
        match decide(Status::Building, Action::Provision, &ctx) {
            Decision::Refused(r) => assert!(r.contains("operation is in progress"), "{r}"),
            other => panic!("{other:?}"),
        }
    }
}
