-- Refract metadata store, version 1. Timestamps are RFC 3339 UTC text with microseconds
-- (fixed width, so text order is time order). JSON columns hold small documents the API owns.

CREATE TABLE customers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    plan        TEXT NOT NULL,
    is_admin    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE management_keys (
    id             TEXT PRIMARY KEY,
    customer_id    TEXT NOT NULL REFERENCES customers(id),
    name           TEXT NOT NULL,
    key_id         TEXT NOT NULL UNIQUE,
    secret_sha256  TEXT NOT NULL,
    expires_at     TEXT,
    created_at     TEXT NOT NULL,
    last_used_at   TEXT,
    revoked_at     TEXT
);
CREATE INDEX management_keys_customer ON management_keys(customer_id);

CREATE TABLE connections (
    id                  TEXT PRIMARY KEY,
    customer_id         TEXT NOT NULL REFERENCES customers(id),
    name                TEXT NOT NULL,
    backend             TEXT NOT NULL,
    host                TEXT NOT NULL,
    port                INTEGER,
    available_schemas   TEXT NOT NULL,          -- JSON array of names
    username            TEXT,
    password_secret     TEXT,                   -- name in the secret store, never the password
    allowed_sync_modes  TEXT NOT NULL,          -- JSON array
    min_sync_interval   INTEGER NOT NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE UNIQUE INDEX connections_customer_name ON connections(customer_id, name);

CREATE TABLE databases (
    id                      TEXT PRIMARY KEY,
    customer_id             TEXT NOT NULL REFERENCES customers(id),
    connection_id           TEXT NOT NULL REFERENCES connections(id),
    name                    TEXT NOT NULL,
    mysql_db                TEXT NOT NULL,
    sync_mode               TEXT NOT NULL,
    sync_interval           INTEGER NOT NULL,
    safety_net              INTEGER NOT NULL,
    instance_size           TEXT NOT NULL,
    log_level               TEXT NOT NULL,
    region                  TEXT NOT NULL,
    binlog_server_id        INTEGER,
    build_compute_override  TEXT,
    custom_domain           TEXT,
    pause_schedule          TEXT,                -- JSON or NULL
    tags                    TEXT NOT NULL DEFAULT '[]',
    schema_config           TEXT,                -- reflexdb.yaml text or NULL (default config)
    -- lifecycle: observed status, intent, and the one operation in flight
    status                  TEXT NOT NULL,
    desired_state           TEXT,
    op_kind                 TEXT,
    op_step                 TEXT,
    op_started_at           TEXT,
    op_attempt              INTEGER NOT NULL DEFAULT 0,
    last_error              TEXT,
    deployed_config         TEXT,                -- JSON of the runtime settings last deployed, or NULL
    has_pending_changes     INTEGER NOT NULL DEFAULT 0,
    replication_paused      INTEGER NOT NULL DEFAULT 0,
    active_build_id         TEXT,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL,
    deleted_at              TEXT
);
-- Soft-deleted rows keep their name for audit but free it for reuse.
CREATE UNIQUE INDEX databases_connection_name ON databases(connection_id, name) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX databases_custom_domain ON databases(custom_domain)
    WHERE deleted_at IS NULL AND custom_domain IS NOT NULL;
CREATE INDEX databases_customer ON databases(customer_id, deleted_at, created_at);
CREATE INDEX databases_status ON databases(status) WHERE deleted_at IS NULL;

CREATE TABLE builds (
    id                  TEXT PRIMARY KEY,
    database_id         TEXT NOT NULL REFERENCES databases(id),
    status              TEXT NOT NULL,           -- queued | in_progress | succeeded | failed
    manifest            TEXT,                    -- schema manifest JSON (the artifact), NULL until built
    schema_config       TEXT,                    -- the reflexdb.yaml the build applied
    sync_mode_used      TEXT,
    compute_type_used   TEXT,
    log                 TEXT NOT NULL DEFAULT '',
    error               TEXT,
    created_at          TEXT NOT NULL,
    started_at          TEXT,
    finished_at         TEXT
);
CREATE INDEX builds_database ON builds(database_id, created_at);

CREATE TABLE instances (
    id                  TEXT PRIMARY KEY,
    database_id         TEXT NOT NULL REFERENCES databases(id),
    build_id            TEXT NOT NULL REFERENCES builds(id),
    runtime_id          TEXT,                    -- the driver's handle
    endpoint_url        TEXT,
    health_status       TEXT,
    snapshot_age_ms     INTEGER,
    swap_count          INTEGER,
    row_counts          TEXT,                    -- JSON object table -> rows
    last_health_check   TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    stopped_at          TEXT
);
CREATE INDEX instances_database ON instances(database_id, created_at);

CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    database_id   TEXT NOT NULL REFERENCES databases(id),
    at            TEXT NOT NULL,
    from_status   TEXT,
    to_status     TEXT NOT NULL,
    cause         TEXT NOT NULL,                 -- user | schedule | crash | reconciler
    message       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_database ON events(database_id, id);

CREATE TABLE query_keys (
    id             TEXT PRIMARY KEY,
    database_id    TEXT NOT NULL REFERENCES databases(id),
    key_id         TEXT NOT NULL UNIQUE,
    secret_sha256  TEXT NOT NULL,
    name           TEXT NOT NULL,
    expires_at     TEXT,
    created_at     TEXT NOT NULL,
    revoked_at     TEXT
);
CREATE INDEX query_keys_database ON query_keys(database_id);
