-- Refract metadata store on PostgreSQL, version 1: the same records as the SQLite migrations
-- 0001–0005, with native types (uuid, timestamptz, jsonb, boolean). Migrations are versioned per
-- backend: the SQLite history is not replayed here. Applied by `PostgresStore::open` under an
-- advisory lock, so replicas starting together do not race.

CREATE TABLE customers (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    plan        text NOT NULL,
    is_admin    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE management_keys (
    id             uuid PRIMARY KEY,
    customer_id    uuid NOT NULL REFERENCES customers(id),
    name           text NOT NULL,
    key_id         text NOT NULL UNIQUE,
    secret_sha256  text NOT NULL,
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL,
    last_used_at   timestamptz,
    revoked_at     timestamptz
);
CREATE INDEX management_keys_customer ON management_keys(customer_id);

CREATE TABLE connections (
    id                    uuid PRIMARY KEY,
    customer_id           uuid NOT NULL REFERENCES customers(id),
    name                  text NOT NULL,
    backend               text NOT NULL,
    host                  text NOT NULL,
    port                  bigint,
    available_schemas     jsonb NOT NULL,
    username              text,
    password_secret       text,                  -- name in the secret store, never the password
    allowed_sync_modes    jsonb NOT NULL,
    min_sync_interval     bigint NOT NULL,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    ssl_mode              text NOT NULL DEFAULT 'prefer',
    ssl_root_cert_secret  text
);
CREATE UNIQUE INDEX connections_customer_name ON connections(customer_id, name);

CREATE TABLE databases (
    id                      uuid PRIMARY KEY,
    customer_id             uuid NOT NULL REFERENCES customers(id),
    connection_id           uuid NOT NULL REFERENCES connections(id),
    name                    text NOT NULL,
    mysql_db                text NOT NULL,
    sync_mode               text NOT NULL,
    sync_interval           bigint NOT NULL,
    safety_net              bigint NOT NULL,
    instance_size           text NOT NULL,
    log_level               text NOT NULL,
    region                  text NOT NULL,
    binlog_server_id        bigint,
    build_compute_override  text,
    custom_domain           text,
    pause_schedule          jsonb,
    tags                    jsonb NOT NULL DEFAULT '[]',
    schema_config           text,
    status                  text NOT NULL,
    desired_state           text,
    op_kind                 text,
    op_step                 text,
    op_started_at           timestamptz,
    op_attempt              bigint NOT NULL DEFAULT 0,
    last_error              text,
    deployed_config         jsonb,
    has_pending_changes     boolean NOT NULL DEFAULT false,
    replication_paused      boolean NOT NULL DEFAULT false,
    active_build_id         uuid,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    deleted_at              timestamptz
);
CREATE UNIQUE INDEX databases_connection_name ON databases(connection_id, name) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX databases_custom_domain ON databases(custom_domain)
    WHERE deleted_at IS NULL AND custom_domain IS NOT NULL;
CREATE INDEX databases_customer ON databases(customer_id, deleted_at, created_at);
CREATE INDEX databases_status ON databases(status) WHERE deleted_at IS NULL;

CREATE TABLE builds (
    id                  uuid PRIMARY KEY,
    database_id         uuid NOT NULL REFERENCES databases(id),
    status              text NOT NULL,
    manifest            text,                    -- the artifact, byte for byte as built
    schema_config       text,
    sync_mode_used      text,
    compute_type_used   text,
    log                 text NOT NULL DEFAULT '',
    error               text,
    created_at          timestamptz NOT NULL,
    started_at          timestamptz,
    finished_at         timestamptz
);
CREATE INDEX builds_database ON builds(database_id, created_at);

CREATE TABLE instances (
    id                  uuid PRIMARY KEY,
    database_id         uuid NOT NULL REFERENCES databases(id),
    build_id            uuid NOT NULL REFERENCES builds(id),
    runtime_id          text,
    endpoint_url        text,
    control_url         text,
    health_status       text,
    snapshot_age_ms     bigint,
    swap_count          bigint,
    row_counts          jsonb,
    replication         jsonb,
    last_health_check   timestamptz,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    stopped_at          timestamptz
);
CREATE INDEX instances_database ON instances(database_id, created_at);
CREATE INDEX instances_live ON instances(database_id) WHERE stopped_at IS NULL;

CREATE TABLE events (
    id            bigserial PRIMARY KEY,
    database_id   uuid NOT NULL REFERENCES databases(id),
    at            timestamptz NOT NULL,
    from_status   text,
    to_status     text NOT NULL,
    cause         text NOT NULL,
    message       text NOT NULL DEFAULT ''
);
CREATE INDEX events_database ON events(database_id, id);

CREATE TABLE query_keys (
    id             uuid PRIMARY KEY,
    database_id    uuid NOT NULL REFERENCES databases(id),
    key_id         text NOT NULL UNIQUE,
    secret_sha256  text NOT NULL,
    name           text NOT NULL,
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL,
    revoked_at     timestamptz
);
CREATE INDEX query_keys_database ON query_keys(database_id);
CREATE INDEX query_keys_live ON query_keys(database_id) WHERE revoked_at IS NULL;

CREATE TABLE database_ops (
    database_id    uuid PRIMARY KEY,
    op             jsonb,
    crash          jsonb NOT NULL DEFAULT '{}',
    cleanup        jsonb NOT NULL DEFAULT '[]',
    schedule_mark  text,
    engine_port    bigint,
    updated_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX database_ops_engine_port ON database_ops(engine_port) WHERE engine_port IS NOT NULL;

-- Secrets, encrypted by the control plane (AES-256-GCM, the master key never stored here).
CREATE TABLE secrets (
    name        text PRIMARY KEY,
    nonce       bytea NOT NULL,
    ciphertext  bytea NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- The leader lease: one row; who holds it and until when, by the database's clock.
CREATE TABLE leader_lease (
    id          integer PRIMARY KEY CHECK (id = 1),
    holder      text NOT NULL,
    expires_at  timestamptz NOT NULL,
    term        bigint NOT NULL
);
