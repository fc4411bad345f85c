-- Managed database servers, metadata store version 1 (managed.sqlite). Timestamps are RFC 3339
-- UTC text with microseconds (fixed width, so text order is time order). No passwords here: the
-- secret store holds them under managed/<db id>/<role>.

CREATE TABLE api_tokens (
    id             TEXT PRIMARY KEY,           -- tok_…
    customer_id    TEXT NOT NULL,
    name           TEXT NOT NULL,
    key_id         TEXT NOT NULL UNIQUE,       -- the public part of dkc_<keyId>.<secret>
    secret_sha256  TEXT NOT NULL,
    scopes         TEXT NOT NULL,              -- JSON array; [] = full access
    created_at     TEXT NOT NULL,
    last_used_at   TEXT
);
CREATE INDEX api_tokens_customer ON api_tokens(customer_id);

CREATE TABLE databases (
    id                 TEXT PRIMARY KEY,       -- db_…
    customer_id        TEXT NOT NULL,
    project_id         TEXT NOT NULL,
    name               TEXT NOT NULL,
    slug               TEXT NOT NULL,
    db_type            TEXT NOT NULL,
    version            TEXT NOT NULL,          -- what runs, as reported
    requested_version  TEXT,                   -- what was asked, when it differs
    server_version     TEXT,                   -- the server's own version, once it answered
    plan_id            TEXT NOT NULL,
    region             TEXT NOT NULL,
    storage_gb         INTEGER NOT NULL,
    replicas           INTEGER NOT NULL,       -- intent: number of servers
    -- intent
    desired_state      TEXT NOT NULL,          -- running | stopped | destroyed
    restart_requested  INTEGER NOT NULL DEFAULT 0,
    -- observed / progress
    status             TEXT NOT NULL,
    error_kind         TEXT,                   -- provision | crash | crash_loop | quota | runtime
    error_message      TEXT,
    nodes_ready        INTEGER NOT NULL DEFAULT 0,  -- servers initialized (0 = none, 1 = primary, …)
    ports              TEXT NOT NULL DEFAULT '[]',  -- JSON array, port of node i
    purged             INTEGER NOT NULL DEFAULT 0,  -- destroyed and everything removed
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    destroyed_at       TEXT
);
CREATE INDEX databases_customer ON databases(customer_id);
-- Names are unique per customer and project among databases that are not destroyed.
CREATE UNIQUE INDEX databases_live_name ON databases(customer_id, project_id, name) WHERE status <> 'destroyed';
