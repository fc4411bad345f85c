//! Integration tests of managed database servers: the `/api/v1` router through `oneshot`, and
//! real PostgreSQL, MariaDB and Redis servers started by the local runtime driver, reached with
//! real clients through the returned `connection_string`.
//!
//! Engine tests skip (with a message) when the engine's binaries are not installed.

mod api;
mod backup;
mod failover;
mod harness;
mod mariadb;
mod plaintext;
mod pools;
mod postgres;
mod redis;
