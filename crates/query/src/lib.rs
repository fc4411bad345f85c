//! This crate provides the query language of `POST /query`: text → tokens with spans → AST →
//! bound plan (names resolved against a [`refract_storage::Snapshot`]) → execution that writes
//! JSON straight from column data.
//!
//! The entry points are [`execute`] (run a query, get the JSON body) and [`explain`] (check a
//! query and describe its plan without running it). Both report problems as a [`QueryError`]
//! with the line and column of the offending token.
//!
//! ```no_run
//! # fn demo(snapshot: &refract_storage::Snapshot) -> Result<(), refract_query::QueryError> {
//! let options = refract_query::QueryOptions::default();
//! let out = refract_query::execute(snapshot, "users(id = 42) { id name posts { title } }", &options)?;
//! assert!(out.body.starts_with(b"["));
//! # Ok(()) }
//! ```
//!
//! Stages, one module each: `lexer` (tokens with spans), `parser` (syntax tree,
//! depth-capped), `binder` (names, types, literals), `planner` (access paths, `explain`), `exec`
//! (evaluation and JSON). Semantics worth knowing:
//!
//! - Filters use SQL three-valued logic: a comparison with NULL is unknown, `NOT unknown` is
//!   unknown, and only rows whose filter is true are returned.
//! - A predicate through relations (`posts.published = true`) holds when at least one related row
//!   satisfies it; each such predicate is checked on its own.
//! - On case-insensitive text columns (MySQL `_ci`), `=`, `<`, `IN` and `LIKE` compare like
//!   `utf8mb4_general_ci` (accents of Latin letters ignored; trailing spaces ignored by `=`/`<`).
//!   `ILIKE` is always case-insensitive.
//! - Without `ORDER BY`, rows come in primary-key order. `ORDER BY` accepts fields of the table
//!   and of to-one relations (`author.name`); NULLs sort as in PostgreSQL: last for `ASC`, first
//!   for `DESC`, unless `NULLS FIRST`/`NULLS LAST` says otherwise. Ties keep primary-key order.
//! - Keys appear in query order; wildcards expand in column order at their position, and an
//!   explicit item for a key a wildcard produced supplies that key's value without moving it.
#![deny(missing_docs)]

mod ast;
mod binder;
mod collate;
mod error;
mod exec;
mod interface;
mod json;
mod lexer;
mod literal;
mod parser;
mod plan;
mod planner;
#[doc(hidden)]
pub mod sample;
mod semijoin;
#[cfg(any(test, feature = "testgen"))]
pub mod testgen;

pub use error::QueryError;
pub use interface::{Interrupt, QueryOptions, QueryOutput, RunError, RunLimits, RunSummary, Sink};

#[cfg(test)]
mod tests;

use refract_storage::Snapshot;

/// Parse, bind and run `text` against `snapshot`, unbounded, into one buffer.
pub fn execute(
    snapshot: &Snapshot,
    text: &str,
    options: &QueryOptions,
) -> Result<QueryOutput, QueryError> {
    match run(snapshot, text, options, &RunLimits::UNBOUNDED, &mut ()) {
        Ok(s) => Ok(QueryOutput {
            body: s.tail,
            rows: s.rows,
            truncated: s.truncated,
        }),
        Err(RunError::Query(e)) => Err(e),
        Err(RunError::Interrupted(i)) => unreachable!("an unbounded run was interrupted: {i:?}"),
    }
}

/// Parse, bind and run `text` against `snapshot` within `limits`, handing the JSON to `sink`
/// in pieces as it is written. Errors in the query come before any byte is written; an
/// interrupted run has handed an incomplete array to the sink.
pub fn run(
    snapshot: &Snapshot,
    text: &str,
    options: &QueryOptions,
    limits: &RunLimits,
    sink: &mut dyn Sink,
) -> Result<RunSummary, RunError> {
    let tokens = lexer::lex(text)?;
    let ast = parser::parse(&tokens, options.max_depth)?;
    let mut node = binder::bind(snapshot, &ast)?;
    planner::plan(snapshot, &mut node);
    exec::run(snapshot, &node, options, limits, sink).map_err(RunError::Interrupted)
}

/// Parse and bind `text` and describe the plan without running it.
///
/// The JSON names the table, the access path (`pk_lookup`, `index_lookup(cols)`,
/// `pk_range(col >= N)` or `scan`), the estimated rows (a heuristic), the remaining filter,
/// relation filters with the lookups they do per row, the ordering (`sort` says whether rows
/// stream, walk a column order or are all sorted), limit and offset, the fields, and the same for
/// every nested relation under `children`.
pub fn explain(
    snapshot: &Snapshot,
    text: &str,
    options: &QueryOptions,
) -> Result<serde_json::Value, QueryError> {
    let tokens = lexer::lex(text)?;
    let ast = parser::parse(&tokens, options.max_depth)?;
    let mut node = binder::bind(snapshot, &ast)?;
    planner::plan(snapshot, &mut node);
    Ok(planner::explain(snapshot, &node, options))
}
