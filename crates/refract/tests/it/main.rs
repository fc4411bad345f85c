//! Integration tests: the real `refract` binary over HTTP, against real MariaDB and PostgreSQL
//! servers started by `scripts/test` (their addresses come in `REFRACT_TEST_*` variables).

mod admin_keys;
mod api_fuzz;
mod cli_output;
mod common;
mod control_plane;
mod correctness;
mod dashboard;
mod docs;
mod endpoints_keys;
mod engine;
mod ha_store;
mod kubernetes;
mod kubernetes_managed;
mod lifecycle;
mod managed;
mod readme_tour;
mod security_limits;
mod security_processes;
mod security_sources;
mod sources_real;
mod tls_sources;
