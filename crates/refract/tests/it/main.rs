//! Integration tests: the real `refract` binary over HTTP, against real MariaDB and PostgreSQL
//! servers started by `scripts/test` (their addresses come in `REFRACT_TEST_*` variables).

mod common;
mod control_plane;
mod correctness;
mod engine;
mod lifecycle;
mod managed;
mod security_limits;
mod security_processes;
