-- Managed database servers on the PostgreSQL metadata store (`refract serve --store postgres://…`),
-- version 1: the records of the SQLite `managed.sqlite` (migrations/0001_init.sql) in schema
-- `managed`, beside the control plane's tables, with native types. No passwords here: the secret
-- store holds them under managed/<db id>/<role>.

CREATE TABLE managed.api_tokens (
    id             text PRIMARY KEY,
    customer_id    text NOT NULL,
    name           text NOT NULL,
    key_id         text NOT NULL UNIQUE,
    secret_sha256  text NOT NULL,
    scopes         jsonb NOT NULL,
    created_at     timestamptz NOT NULL,
    last_used_at   timestamptz
);
CREATE INDEX api_tokens_customer ON managed.api_tokens(customer_id);

CREATE TABLE managed.databases (
    id                 text PRIMARY KEY,
    customer_id        text NOT NULL,
    project_id         text NOT NULL,
    name               text NOT NULL,
    slug               text NOT NULL,
    db_type            text NOT NULL,
    version            text NOT NULL,
    requested_version  text,
    server_version     text,
    plan_id            text NOT NULL,
    region             text NOT NULL,
    storage_gb         bigint NOT NULL,
    replicas           bigint NOT NULL,
    desired_state      text NOT NULL,
    restart_requested  boolean NOT NULL DEFAULT false,
    status             text NOT NULL,
    error_kind         text,
    error_message      text,
    nodes_ready        bigint NOT NULL DEFAULT 0,
    ports              jsonb NOT NULL DEFAULT '[]',
    purged             boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    destroyed_at       timestamptz
);
CREATE INDEX databases_customer ON managed.databases(customer_id);
CREATE UNIQUE INDEX databases_live_name ON managed.databases(customer_id, project_id, name)
    WHERE status <> 'destroyed';
