//! The reconciler's decisions, pure: no IO, no clock (`now` and elapsed times are arguments).
//!
//! - [`work`]: which step a database needs, from the store alone (intent: status, operation in
//!   flight, `desiredState`, engines to clean up).
//! - [`deploy`]: what a deploy does next, from what the runtime driver and the new engine's
//!   `/health` answered and how long the engine has had — the timeouts ([`READY_TIMEOUT`],
//!   [`FIRST_LOAD_FAILING`], [`LOAD_TIMEOUT`]) and the health answers (a fatal CDC setup error
//!   fails the deploy at once, a snapshot over the memory cap too).
//! - [`supervise`]: what a running database's engine needs — a new address recorded, a crash
//!   counted and its restart scheduled with backoff, a restart now, or giving up after
//!   [`CRASH_LIMIT`] crashes in [`CRASH_WINDOW`].
//!
//! The steps (`deploy.rs`, `supervise.rs`) gather the observations, call these, and carry the
//! verdict out.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::engine;
use crate::api::{DesiredState, Status};
use crate::store::lifecycle::{CrashLog, OpsRecord};
use crate::store::DatabaseRow;

/// An engine must print its ready line within this.
pub(super) const READY_TIMEOUT: TimeDelta = TimeDelta::seconds(60);
/// A first load that keeps failing for this long fails the deploy.
pub(super) const FIRST_LOAD_FAILING: TimeDelta = TimeDelta::seconds(20);
/// The first snapshot must be in within this.
pub(super) const LOAD_TIMEOUT: TimeDelta = TimeDelta::minutes(30);
/// Crash restarts: this many crashes within [`CRASH_WINDOW`] give up (`failed`).
pub(super) const CRASH_LIMIT: usize = 5;
/// See [`CRASH_LIMIT`].
pub(super) const CRASH_WINDOW: TimeDelta = TimeDelta::minutes(10);
/// Log lines kept in `lastError` after a crash loop or failed deploy.
pub(super) const LOG_LINES: usize = 20;

// ------------------------------------------------------------------ which step

/// The next step of a database.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Work {
    /// Stop and remove replaced or abandoned engines.
    Cleanup,
    /// Run a queued `desiredState`.
    ApplyDesired(DesiredState),
    /// `testing_connection`.
    TestConnection,
    /// `queued` / `building`.
    Build,
    /// `deploying` / `resuming`.
    Deploy,
    /// `pausing` / `terminating`.
    Stop,
    /// `running` with nothing in flight: watch the engine, restart it after a crash.
    Supervise,
    /// A transitional status without its operation record: roll back.
    Lost,
    /// Nothing.
    Nothing,
}

/// Decides the next step from the store alone.
pub(super) fn work(db: &DatabaseRow, o: &OpsRecord) -> Work {
    let transitional = !matches!(
        db.status,
        Status::Registered
            | Status::Running
            | Status::Paused
            | Status::Failed
            | Status::Stopped
            | Status::Terminated
    );
    if transitional && o.op.is_none() {
        return Work::Lost;
    }
    if !o.cleanup.is_empty() {
        return Work::Cleanup;
    }
    match db.status {
        Status::TestingConnection => Work::TestConnection,
        Status::Queued | Status::Building => Work::Build,
        Status::Deploying | Status::Resuming => Work::Deploy,
        Status::Pausing | Status::Terminating => Work::Stop,
        _ if db.desired_state.is_some() => {
            Work::ApplyDesired(db.desired_state.unwrap_or(DesiredState::Running))
        }
        Status::Running => Work::Supervise,
        _ => Work::Nothing,
    }
}

// ------------------------------------------------------------------ deploy

/// An engine's `/health` answer, as far as the lifecycle reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Health {
    /// `ok`, `degraded`, `loading`, `cap_exceeded`, … (empty when absent).
    pub status: String,
    /// Why it is not ok (a failing load, the cap exceeded).
    pub message: Option<String>,
    /// `false` while not yet listening on the database's port.
    pub accepting: Option<bool>,
    /// `replication.fatal`: the change stream cannot start and retrying will not fix it; the
    /// cause (`replication.lastError`).
    pub fatal: Option<String>,
}

impl Health {
    /// What the lifecycle reads of an engine's `/health`.
    pub(super) fn of(h: &refract_protocol::Health) -> Health {
        let fatal = (h.replication.fatal == Some(true)).then(|| {
            h.replication
                .last_error
                .clone()
                .unwrap_or_else(|| "unknown error".into())
        });
        let status = serde_json::to_value(h.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        Health {
            status,
            message: h.message.clone(),
            accepting: h.accepting,
            fatal,
        }
    }
}

/// What a deploy saw of its new engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DeployObserved {
    /// No engine is recorded for the operation yet.
    Unrecorded,
    /// The runtime driver does not know it (not started yet, or gone before it was recorded).
    NotFound,
    /// Started, not ready yet.
    Starting,
    /// Running; `/health` did not answer (the error).
    Unreachable(String),
    /// Running; `/health` answered.
    Answered(Health),
    /// Its process ended.
    Exited {
        /// Exit code.
        code: Option<i32>,
        /// Signal.
        signal: Option<i32>,
    },
}

/// What a deploy does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DeployStep {
    /// Record the new engine's id before anything is started.
    Record,
    /// Start the engine.
    Launch,
    /// Look again after this pause.
    Wait(Duration),
    /// Healthy and listening: move the endpoint to it.
    Cutover,
    /// End the operation with this error.
    Fail(DeployFailure),
}

/// Why a deploy fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DeployFailure {
    /// No ready line within [`READY_TIMEOUT`].
    ReadyTimeout,
    /// The engine's process ended.
    Exited {
        /// Exit code.
        code: Option<i32>,
        /// Signal.
        signal: Option<i32>,
    },
    /// `/health` did not answer within [`READY_TIMEOUT`].
    NoHealth(String),
    /// A CDC mode the source cannot serve (grants, publication, server id, binlog off).
    ReplicationFatal(String),
    /// The snapshot does not fit in the instance size (the engine's message).
    CapExceeded(String),
    /// The first load kept failing for [`FIRST_LOAD_FAILING`] (the engine's message).
    FirstLoad(String),
    /// No first snapshot within [`LOAD_TIMEOUT`].
    LoadTimeout,
}

impl DeployFailure {
    /// Whether the message ends with the engine's last log lines.
    pub(super) fn wants_logs(&self) -> bool {
        matches!(
            self,
            DeployFailure::ReadyTimeout | DeployFailure::Exited { .. }
        )
    }

    /// The operation's error (`lastError`); `logs` when [`Self::wants_logs`].
    pub(super) fn message(&self, db: &DatabaseRow, logs: &str) -> String {
        match self {
            DeployFailure::ReadyTimeout => {
                format!("the engine did not start within 60 s; last log lines:\n{logs}")
            }
            DeployFailure::Exited { code, signal } => format!(
                "the engine exited during deploy ({}); last log lines:\n{logs}",
                exit_text(*code, *signal)
            ),
            DeployFailure::NoHealth(e) => format!("the engine does not answer /health: {e}"),
            DeployFailure::ReplicationFatal(cause) => format!(
                "the engine cannot stream changes in {} mode: {cause}",
                db.sync_mode
            ),
            DeployFailure::CapExceeded(message) => {
                let cap = engine::memory_cap_mb(&db.runtime_settings());
                format!(
                    "the data does not fit in instanceSize {} (snapshot memory cap {cap} MB): {message}; \
                     resize to a larger size (POST /v1/databases/{}/resize)",
                    db.instance_size, db.id
                )
            }
            DeployFailure::FirstLoad(message) => {
                format!("the engine cannot load its first snapshot: {message}")
            }
            DeployFailure::LoadTimeout => {
                "the first snapshot did not load within 30 minutes".into()
            }
        }
    }
}

/// What a deploy does next, given what its engine shows after `elapsed` (since it was started).
pub(super) fn deploy(seen: &DeployObserved, elapsed: TimeDelta) -> DeployStep {
    match seen {
        DeployObserved::Unrecorded => DeployStep::Record,
        DeployObserved::NotFound => DeployStep::Launch,
        DeployObserved::Starting if elapsed > READY_TIMEOUT => {
            DeployStep::Fail(DeployFailure::ReadyTimeout)
        }
        DeployObserved::Starting => DeployStep::Wait(Duration::from_millis(100)),
        DeployObserved::Exited { code, signal } => DeployStep::Fail(DeployFailure::Exited {
            code: *code,
            signal: *signal,
        }),
        DeployObserved::Unreachable(e) if elapsed > READY_TIMEOUT => {
            DeployStep::Fail(DeployFailure::NoHealth(e.clone()))
        }
        DeployObserved::Unreachable(_) => DeployStep::Wait(Duration::from_millis(200)),
        DeployObserved::Answered(h) => {
            if let Some(cause) = &h.fatal {
                // Retrying will not fix a setup problem of the source: fail now, with the cause.
                return DeployStep::Fail(DeployFailure::ReplicationFatal(cause.clone()));
            }
            match h.status.as_str() {
                // Loaded, not yet listening on the database's port (a few ms after the load).
                "ok" | "degraded" if h.accepting == Some(false) => {
                    DeployStep::Wait(Duration::from_millis(10))
                }
                "ok" | "degraded" => DeployStep::Cutover,
                "cap_exceeded" => DeployStep::Fail(DeployFailure::CapExceeded(
                    h.message.clone().unwrap_or_default(),
                )),
                _ if h.message.is_some() && elapsed > FIRST_LOAD_FAILING => DeployStep::Fail(
                    DeployFailure::FirstLoad(h.message.clone().unwrap_or_default()),
                ),
                _ if elapsed > LOAD_TIMEOUT => DeployStep::Fail(DeployFailure::LoadTimeout),
                _ => DeployStep::Wait(Duration::from_millis(100)),
            }
        }
    }
}

/// How an engine's process ended, in words.
pub(super) fn exit_text(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (_, Some(9)) => "killed by signal 9 — out of memory?".into(),
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(c), None) => format!("exit code {c}"),
        (None, None) => "exit status unknown".into(),
    }
}

// ------------------------------------------------------------------ supervise

/// What the runtime driver says of a running database's engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EngineSeen {
    /// No live instance row.
    NoEngine,
    /// Running at this private control address.
    Running(String),
    /// Starting.
    Starting,
    /// Its process ended at `at`.
    Exited {
        /// When (one exit is one crash).
        at: DateTime<Utc>,
        /// Exit code.
        code: Option<i32>,
        /// Signal.
        signal: Option<i32>,
    },
    /// The driver does not know it.
    NotFound,
}

/// Where the instance row says its engine listens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Addresses {
    /// Private control address (`/health`, `/admin`).
    pub control: Option<String>,
    /// Client-facing address.
    pub client: Option<String>,
}

/// What a running database's engine needs.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum SuperviseStep {
    /// Running without an engine: deploy the active build again.
    Redeploy,
    /// Nothing now.
    Idle,
    /// Running at new addresses (restarted): record them on its instance row.
    Readdress {
        /// The private control address.
        control: String,
        /// The client-facing one.
        client: String,
    },
    /// A new crash, counted in `crash`: give up (`failed`) or restart after `delay`.
    Crashed {
        /// The crash log with this crash (and `next_restart_at` unless giving up).
        crash: CrashLog,
        /// Crashes within [`CRASH_WINDOW`], this one included.
        n: usize,
        /// How it ended, in words.
        what: String,
        /// `None`: [`CRASH_LIMIT`] reached, give up.
        restart_in: Option<TimeDelta>,
    },
    /// A restart is due later: look again after this pause.
    Wait(Duration),
    /// Restart the engine now (restart number `n`).
    Restart {
        /// Crashes counted.
        n: usize,
    },
}

/// What a running database's engine needs at `now`. `public`: the database's client-facing URL
/// (`None` before stable endpoints).
pub(super) fn supervise(
    seen: &EngineSeen,
    recorded: &Addresses,
    public: Option<&str>,
    crash: &CrashLog,
    now: DateTime<Utc>,
) -> SuperviseStep {
    let exit_key = match seen {
        EngineSeen::NoEngine => return SuperviseStep::Redeploy,
        EngineSeen::Running(endpoint) => {
            // Restarted: its private control address follows; the client-facing one is the
            // database's port (the engine's own address for a database without one).
            let client = public.unwrap_or(endpoint).to_string();
            if recorded.control.as_deref() != Some(endpoint.as_str())
                || recorded.client.as_deref() != Some(client.as_str())
            {
                return SuperviseStep::Readdress {
                    control: endpoint.clone(),
                    client,
                };
            }
            return SuperviseStep::Idle;
        }
        EngineSeen::Starting => return SuperviseStep::Idle,
        EngineSeen::Exited { at, .. } => at.to_rfc3339(),
        EngineSeen::NotFound => "not_found".to_string(),
    };
    if crash.last_exit.as_deref() != Some(exit_key.as_str()) {
        let mut crash = crash.clone();
        crash.crashes.retain(|c| now - *c < CRASH_WINDOW);
        crash.crashes.push(now);
        crash.last_exit = Some(exit_key);
        let n = crash.crashes.len();
        let what = match seen {
            EngineSeen::Exited { code, signal, .. } => exit_text(*code, *signal),
            _ => "its process is gone".into(),
        };
        let restart_in = (n < CRASH_LIMIT).then(|| backoff(n));
        if let Some(delay) = restart_in {
            crash.next_restart_at = Some(now + delay);
        }
        return SuperviseStep::Crashed {
            crash,
            n,
            what,
            restart_in,
        };
    }
    match crash.next_restart_at {
        None => SuperviseStep::Idle,
        Some(due) if now < due => SuperviseStep::Wait(
            (due - now)
                .to_std()
                .unwrap_or_default()
                .min(Duration::from_secs(1)),
        ),
        Some(_) => SuperviseStep::Restart {
            n: crash.crashes.len(),
        },
    }
}

/// Crash backoff: 0.5 s, 1 s, 2 s, 4 s, … (at most a minute).
pub(super) fn backoff(crashes: usize) -> TimeDelta {
    let ms = 500u64.saturating_mul(1 << (crashes.saturating_sub(1)).min(7));
    TimeDelta::milliseconds(ms.min(60_000) as i64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::lifecycle::bookkeeping::tests::db;
    use crate::lifecycle::bookkeeping::{begin_op, new_op};
    use crate::lifecycle::matrix::MATRIX;
    use crate::store::lifecycle::OpKind;
    use crate::store::OpStep;

    fn ops(op: bool, cleanup: bool) -> OpsRecord {
        OpsRecord {
            op: op.then(|| new_op(OpKind::Provision, "user", Status::Registered, None, None)),
            cleanup: if cleanup {
                vec![Uuid::new_v4()]
            } else {
                Vec::new()
            },
            ..Default::default()
        }
    }

    /// Every kind of operation begins in a status whose step the reconciler runs: the status
    /// `begin_op` gives (`bookkeeping::start_of`) routes through `work` to the step that handles
    /// its first step.
    #[test]
    fn every_operation_begins_where_the_reconciler_runs_its_first_step() {
        for kind in OpKind::ALL {
            let mut d = db(Status::Running, None);
            let mut o = OpsRecord::none(d.id);
            let op = new_op(kind, "user", d.status, None, None);
            begin_op(&mut d, &mut o, op);
            let step = d.internal.operation.map(|op| op.step);
            let expected = match step {
                Some(OpStep::TestConnection) => Work::TestConnection,
                Some(OpStep::WaitBuildSlot | OpStep::Build) => Work::Build,
                Some(OpStep::StartEngine | OpStep::WaitHealthy) => Work::Deploy,
                Some(OpStep::StopEngine) => Work::Stop,
                None => panic!("{kind:?}: no operation recorded"),
            };
            assert_eq!(work(&d, &o), expected, "{kind:?} begins in {}", d.status);
            assert_eq!(o.op.map(|op| op.kind), Some(kind));
        }
    }

    /// Every status × (operation record, engines to clean up, a queued `desiredState`).
    #[test]
    fn work_for_every_status_and_intent() {
        use Work::*;
        const P: Work = ApplyDesired(DesiredState::Paused);
        // Columns: with an operation record / without; each without and with engines to clean
        // up; then with `desiredState: paused` (no cleanup), with and without a record.
        #[rustfmt::skip]
        let table: [(Status, [Work; 6]); 13] = [
            (Status::Registered,        [Nothing,        Cleanup, Nothing,   Cleanup, P,              P]),
            (Status::TestingConnection, [TestConnection, Cleanup, Lost,      Lost,    TestConnection, Lost]),
            (Status::Queued,            [Build,          Cleanup, Lost,      Lost,    Build,          Lost]),
            (Status::Building,          [Build,          Cleanup, Lost,      Lost,    Build,          Lost]),
            (Status::Deploying,         [Deploy,         Cleanup, Lost,      Lost,    Deploy,         Lost]),
            (Status::Running,           [Supervise,      Cleanup, Supervise, Cleanup, P,              P]),
            (Status::Pausing,           [Stop,           Cleanup, Lost,      Lost,    Stop,           Lost]),
            (Status::Paused,            [Nothing,        Cleanup, Nothing,   Cleanup, P,              P]),
            (Status::Resuming,          [Deploy,         Cleanup, Lost,      Lost,    Deploy,         Lost]),
            (Status::Failed,            [Nothing,        Cleanup, Nothing,   Cleanup, P,              P]),
            (Status::Stopped,           [Nothing,        Cleanup, Nothing,   Cleanup, P,              P]),
            (Status::Terminating,       [Stop,           Cleanup, Lost,      Lost,    Stop,           Lost]),
            (Status::Terminated,        [Nothing,        Cleanup, Nothing,   Cleanup, P,              P]),
        ];
        let statuses: Vec<Status> = MATRIX.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            table.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            statuses,
            "one row per status"
        );
        for (status, want) in table {
            let cases = [
                (None, true, false),
                (None, true, true),
                (None, false, false),
                (None, false, true),
                (Some(DesiredState::Paused), true, false),
                (Some(DesiredState::Paused), false, false),
            ];
            for ((desired, op, cleanup), want) in cases.into_iter().zip(want) {
                assert_eq!(
                    work(&db(status, desired), &ops(op, cleanup)),
                    want,
                    "{status:?}, desired {desired:?}, op {op}, cleanup {cleanup}"
                );
            }
        }
    }

    fn health(v: serde_json::Value) -> DeployObserved {
        let h: refract_protocol::Health = serde_json::from_value(v).unwrap();
        DeployObserved::Answered(Health::of(&h))
    }

    /// Every observation of the new engine × the elapsed times the deploy tells apart (0, just
    /// past [`FIRST_LOAD_FAILING`], exactly and just past [`READY_TIMEOUT`], just past
    /// [`LOAD_TIMEOUT`]).
    #[test]
    fn deploy_for_every_observation_and_elapsed_time() {
        use DeployFailure as F;
        use DeployStep::*;
        let ms = Duration::from_millis;
        let (t0, t21, t60, t61, t31m) = (
            TimeDelta::zero(),
            TimeDelta::seconds(21),
            TimeDelta::seconds(60),
            TimeDelta::seconds(61),
            TimeDelta::minutes(31),
        );
        let exited = DeployObserved::Exited {
            code: Some(1),
            signal: None,
        };
        let fatal = health(json!({"status": "loading", "replication": {"fatal": true,
            "lastError": "permission denied for REPLICATION"}}));
        let fatal_ok = health(json!({"status": "ok", "replication": {"fatal": true}}));
        let not_fatal = health(json!({"status": "ok", "replication": {"fatal": false,
            "lastError": "reconnecting"}}));
        let ok = health(json!({"status": "ok", "accepting": true}));
        let ok_old = health(json!({"status": "ok"}));
        let degraded = health(json!({"status": "degraded"}));
        let not_accepting = health(json!({"status": "ok", "accepting": false}));
        let degraded_not_accepting = health(json!({"status": "degraded", "accepting": false}));
        let cap = health(json!({"status": "cap_exceeded", "message": "needs 900 MB"}));
        let loading = health(json!({"status": "loading"}));
        let failing = health(json!({"status": "loading", "message": "access denied"}));
        let unreachable = DeployObserved::Unreachable("connection refused".into());
        let cause = "permission denied for REPLICATION".to_string();
        #[rustfmt::skip]
        let table: Vec<(&str, &DeployObserved, [DeployStep; 5])> = vec![
            //                         0                      21 s                   60 s                   61 s                                    31 min
            ("unrecorded", &DeployObserved::Unrecorded, [Record, Record, Record, Record, Record]),
            ("not found", &DeployObserved::NotFound, [Launch, Launch, Launch, Launch, Launch]),
            ("starting", &DeployObserved::Starting, [Wait(ms(100)), Wait(ms(100)), Wait(ms(100)), Fail(F::ReadyTimeout), Fail(F::ReadyTimeout)]),
            ("exited", &exited, [0, 1, 2, 3, 4].map(|_| Fail(F::Exited { code: Some(1), signal: None }))),
            ("no /health", &unreachable, [Wait(ms(200)), Wait(ms(200)), Wait(ms(200)), Fail(F::NoHealth("connection refused".into())), Fail(F::NoHealth("connection refused".into()))]),
            ("fatal replication", &fatal, [0, 1, 2, 3, 4].map(|_| Fail(F::ReplicationFatal(cause.clone())))),
            ("fatal even when ok", &fatal_ok, [0, 1, 2, 3, 4].map(|_| Fail(F::ReplicationFatal("unknown error".into())))),
            ("replication not fatal", &not_fatal, [Cutover, Cutover, Cutover, Cutover, Cutover]),
            ("ok", &ok, [Cutover, Cutover, Cutover, Cutover, Cutover]),
            ("ok, older engine", &ok_old, [Cutover, Cutover, Cutover, Cutover, Cutover]),
            ("degraded", &degraded, [Cutover, Cutover, Cutover, Cutover, Cutover]),
            ("ok, not accepting", &not_accepting, [0, 1, 2, 3, 4].map(|_| Wait(ms(10)))),
            ("degraded, not accepting", &degraded_not_accepting, [0, 1, 2, 3, 4].map(|_| Wait(ms(10)))),
            ("cap exceeded", &cap, [0, 1, 2, 3, 4].map(|_| Fail(F::CapExceeded("needs 900 MB".into())))),
            ("loading", &loading, [Wait(ms(100)), Wait(ms(100)), Wait(ms(100)), Wait(ms(100)), Fail(F::LoadTimeout)]),
            ("load failing", &failing, [Wait(ms(100)), Fail(F::FirstLoad("access denied".into())), Fail(F::FirstLoad("access denied".into())), Fail(F::FirstLoad("access denied".into())), Fail(F::FirstLoad("access denied".into()))]),
        ];
        for (name, seen, want) in table {
            for (elapsed, want) in [t0, t21, t60, t61, t31m].into_iter().zip(want) {
                assert_eq!(deploy(seen, elapsed), want, "{name} after {elapsed}");
            }
        }
    }

    #[test]
    fn deploy_failures_say_why() {
        let mut d = db(Status::Deploying, None);
        d.sync_mode = crate::api::SyncMode::Logical;
        let cases = [
            (
                DeployFailure::ReadyTimeout,
                "the engine did not start within 60 s; last log lines:\nLOGS",
            ),
            (
                DeployFailure::Exited {
                    code: None,
                    signal: Some(9),
                },
                "the engine exited during deploy (killed by signal 9 — out of memory?); last log lines:\nLOGS",
            ),
            (
                DeployFailure::NoHealth("refused".into()),
                "the engine does not answer /health: refused",
            ),
            (
                DeployFailure::ReplicationFatal("no grant".into()),
                "the engine cannot stream changes in logical mode: no grant",
            ),
            (
                DeployFailure::FirstLoad("denied".into()),
                "the engine cannot load its first snapshot: denied",
            ),
            (
                DeployFailure::LoadTimeout,
                "the first snapshot did not load within 30 minutes",
            ),
        ];
        for (why, want) in cases {
            assert_eq!(why.message(&d, "LOGS"), want);
            assert_eq!(why.wants_logs(), want.contains("LOGS"));
        }
        let cap = DeployFailure::CapExceeded("needs 900 MB".into()).message(&d, "");
        assert!(cap.starts_with("the data does not fit in instanceSize nano (snapshot memory cap "));
        assert!(cap.ends_with(&format!(
            "MB): needs 900 MB; resize to a larger size (POST /v1/databases/{}/resize)",
            d.id
        )));
    }

    /// Every observation of a running database's engine × its crash log × the clock.
    #[test]
    fn supervise_for_every_observation_crash_log_and_time() {
        use SuperviseStep::*;
        let t = DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let secs = TimeDelta::seconds;
        let at = t - secs(3);
        let exited = EngineSeen::Exited {
            at,
            code: Some(2),
            signal: None,
        };
        let here = Addresses {
            control: Some("http://127.0.0.1:4100".into()),
            client: Some("http://127.0.0.1:9000".into()),
        };
        let public = Some("http://127.0.0.1:9000");
        let fresh = CrashLog::default();

        // Running: idle when the row has its addresses, else record them.
        let running = EngineSeen::Running("http://127.0.0.1:4100".into());
        assert_eq!(supervise(&running, &here, public, &fresh, t), Idle);
        let moved = EngineSeen::Running("http://127.0.0.1:4200".into());
        assert_eq!(
            supervise(&moved, &here, public, &fresh, t),
            Readdress {
                control: "http://127.0.0.1:4200".into(),
                client: "http://127.0.0.1:9000".into()
            }
        );
        // Without a database port, the client-facing address is the engine's own.
        assert_eq!(
            supervise(&moved, &here, None, &fresh, t),
            Readdress {
                control: "http://127.0.0.1:4200".into(),
                client: "http://127.0.0.1:4200".into()
            }
        );
        assert_eq!(
            supervise(&EngineSeen::Starting, &here, public, &fresh, t),
            Idle
        );
        assert_eq!(
            supervise(&EngineSeen::NoEngine, &here, public, &fresh, t),
            Redeploy
        );

        // A new exit is a crash: restart after the backoff, the window forgets old crashes.
        let old = CrashLog {
            crashes: vec![t - secs(700), t - secs(30)],
            last_exit: Some("earlier".into()),
            ..Default::default()
        };
        let Crashed {
            crash,
            n,
            what,
            restart_in,
        } = supervise(&exited, &here, public, &old, t)
        else {
            panic!("a crash")
        };
        assert_eq!((n, what.as_str()), (2, "exit code 2"));
        assert_eq!(restart_in, Some(TimeDelta::milliseconds(1000)));
        assert_eq!(crash.crashes, vec![t - secs(30), t]);
        assert_eq!(crash.last_exit, Some(at.to_rfc3339()));
        assert_eq!(
            crash.next_restart_at,
            Some(t + TimeDelta::milliseconds(1000))
        );
        // A vanished process is a crash too.
        let Crashed { what, n, .. } = supervise(&EngineSeen::NotFound, &here, public, &fresh, t)
        else {
            panic!("a crash")
        };
        assert_eq!((n, what.as_str()), (1, "its process is gone"));
        // The fifth crash within the window gives up.
        let four = CrashLog {
            crashes: (1..=4).map(|i| t - secs(i * 60)).collect(),
            ..Default::default()
        };
        let Crashed {
            n,
            restart_in,
            crash,
            ..
        } = supervise(&exited, &here, public, &four, t)
        else {
            panic!("a crash")
        };
        assert_eq!((n, restart_in, crash.next_restart_at), (5, None, None));
        // …but not when the older ones are out of the window.
        let spread = CrashLog {
            crashes: (1..=4).map(|i| t - secs(i * 200)).collect(),
            ..Default::default()
        };
        let Crashed { n, restart_in, .. } = supervise(&exited, &here, public, &spread, t) else {
            panic!("a crash")
        };
        assert_eq!((n, restart_in), (3, Some(TimeDelta::milliseconds(2000))));

        // The same exit seen again: wait for the restart (at most a second at a time), then
        // restart; nothing when no restart is due.
        let counted = |due: Option<DateTime<Utc>>| CrashLog {
            crashes: vec![t - secs(1)],
            last_exit: Some(at.to_rfc3339()),
            next_restart_at: due,
            restarted_at: None,
        };
        let pending = counted(Some(t + TimeDelta::milliseconds(400)));
        assert_eq!(
            supervise(&exited, &here, public, &pending, t),
            Wait(Duration::from_millis(400))
        );
        let later = counted(Some(t + secs(30)));
        assert_eq!(
            supervise(&exited, &here, public, &later, t),
            Wait(Duration::from_secs(1))
        );
        assert_eq!(
            supervise(&exited, &here, public, &counted(Some(t)), t),
            Restart { n: 1 }
        );
        assert_eq!(supervise(&exited, &here, public, &counted(None), t), Idle);
        let gone = CrashLog {
            last_exit: Some("not_found".into()),
            crashes: vec![t],
            next_restart_at: Some(t - secs(1)),
            restarted_at: None,
        };
        assert_eq!(
            supervise(&EngineSeen::NotFound, &here, public, &gone, t),
            Restart { n: 1 }
        );
    }

    #[test]
    fn backoff_doubles_and_starts_fast() {
        assert_eq!(backoff(1).num_milliseconds(), 500);
        assert_eq!(backoff(2).num_milliseconds(), 1000);
        assert_eq!(backoff(4).num_milliseconds(), 4000);
        assert_eq!(backoff(30).num_milliseconds(), 60_000);
    }
}
