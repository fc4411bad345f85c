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
mod json;
mod lexer;
mod literal;
mod parser;
mod plan;
mod planner;

#[cfg(test)]
mod tests;

use refract_storage::Snapshot;

/// Limits and defaults of query execution.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Rows returned at top level when the query gives no `LIMIT` (default 10,000).
    pub default_limit: usize,
    /// Deepest nesting of selections and expressions accepted (default 32; at most 128 is
    /// honored, so a query never risks the stack).
    pub max_depth: usize,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            default_limit: 10_000,
            max_depth: 32,
        }
    }
}

/// The result of a query: a JSON array, ready to send.
#[derive(Debug)]
pub struct QueryOutput {
    /// UTF-8 JSON array of row objects.
    pub body: Vec<u8>,
    /// Top-level rows returned.
    pub rows: usize,
    /// The default limit cut the result (`X-Refract-Truncated: true`).
    pub truncated: bool,
}

/// A query that cannot run, with the position of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct QueryError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong, with a suggestion when a name is misspelled.
    pub message: String,
}

/// Parse, bind and run `text` against `snapshot`.
pub fn execute(
    snapshot: &Snapshot,
    text: &str,
    options: &QueryOptions,
) -> Result<QueryOutput, QueryError> {
    let tokens = lexer::lex(text)?;
    let ast = parser::parse(&tokens, options.max_depth)?;
    let mut node = binder::bind(snapshot, &ast)?;
    planner::plan(snapshot, &mut node);
    Ok(exec::run(snapshot, &node, options.default_limit))
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
    Ok(planner::explain(snapshot, &node, options.default_limit))
}
