-- Refract metadata store, version 2: lifecycle bookkeeping beside the `databases` row.
--
-- The databases row keeps the observed `status`, the intent `desired_state` and a summary of the
-- operation in flight (`op_kind`, `op_step`, `op_started_at`, `op_attempt`); this table keeps what
-- the reconciler needs to resume or roll that operation back after a crash, written in the same
-- transaction as the row. No foreign key: rows of deleted connections are harmless leftovers.
CREATE TABLE database_ops (
    database_id    TEXT PRIMARY KEY,
    op             TEXT,                       -- JSON of the operation in flight (OpData) or NULL
    crash          TEXT NOT NULL DEFAULT '{}', -- JSON of the crash-restart history (CrashLog)
    cleanup        TEXT NOT NULL DEFAULT '[]', -- JSON array of instance ids to stop and remove
    schedule_mark  TEXT,                       -- key of the last pause-schedule event fired
    updated_at     TEXT NOT NULL
);

CREATE INDEX instances_live ON instances(database_id) WHERE stopped_at IS NULL;
CREATE INDEX query_keys_live ON query_keys(database_id) WHERE revoked_at IS NULL;
