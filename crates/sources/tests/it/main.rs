//! Integration tests of `refract-sources` against real servers (MariaDB and PostgreSQL started
//! by `scripts/test`; `REFRACT_TEST_MYSQL_URL` / `REFRACT_TEST_PG_URL`) and SQLite files.
//! A missing server URL fails the test with a message saying how to run them.

mod common;
mod mysql;
mod postgres;
mod sqlite;
mod tls;
