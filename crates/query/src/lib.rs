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
#[doc(hidden)]
pub mod sample;

#[cfg(test)]
mod tests;

use refract_storage::Snapshot;

/// Limits and defaults of query execution.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Rows returned at top level when the query gives no `LIMIT` (default 10,000).
    pub default_limit: usize,
    /// Rows returned per parent row by a nested to-many selection without `LIMIT` (default
    /// 1,000): without it, a few levels of a cyclic relation multiply into gigabytes.
    pub default_nested_limit: usize,
    /// Deepest nesting of selections and expressions accepted (default 32; at most 128 is
    /// honored, so a query never risks the stack).
    pub max_depth: usize,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            default_limit: 10_000,
            default_nested_limit: 1_000,
            max_depth: 32,
        }
    }
}

/// The bounds of one run of a query ([`run`]).
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    /// The run stops with [`Interrupt::TooLarge`] once its JSON passes this many bytes.
    pub max_bytes: usize,
    /// The run stops with [`Interrupt::Timeout`] at this instant (checked every few hundred
    /// rows visited, so it overshoots by microseconds, not by a sort of a whole table).
    pub deadline: Option<std::time::Instant>,
    /// Once this many bytes are buffered (at the end of a row, at any depth), they go to the
    /// [`Sink`]; `usize::MAX` keeps the whole answer in [`RunSummary::tail`].
    pub flush_bytes: usize,
}

impl RunLimits {
    /// No bound: the whole answer in one buffer.
    pub const UNBOUNDED: RunLimits = RunLimits {
        max_bytes: usize::MAX,
        deadline: None,
        flush_bytes: usize::MAX,
    };
}

/// Why a run stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// The JSON passed [`RunLimits::max_bytes`].
    TooLarge,
    /// [`RunLimits::deadline`] passed.
    Timeout,
    /// The [`Sink`] no longer wants the answer (the client went away).
    Cancelled,
}

/// Where a run's JSON goes, in pieces of about [`RunLimits::flush_bytes`].
pub trait Sink {
    /// Take the next piece; `false` when nobody wants more, which stops the run with
    /// [`Interrupt::Cancelled`].
    fn write(&mut self, piece: Vec<u8>) -> bool;
    /// Whether the answer is still wanted; asked now and then while no piece is written.
    fn wanted(&self) -> bool {
        true
    }
}

/// A sink for runs that keep their whole answer in [`RunSummary::tail`].
impl Sink for () {
    fn write(&mut self, _piece: Vec<u8>) -> bool {
        true
    }
}

/// The end of a run: what was not handed to the sink, and what was returned.
#[derive(Debug)]
pub struct RunSummary {
    /// The last bytes of the JSON array (all of it when nothing was flushed).
    pub tail: Vec<u8>,
    /// Top-level rows returned.
    pub rows: usize,
    /// A default limit (top level or nested) cut the result.
    pub truncated: bool,
    /// Bytes of the whole answer.
    pub bytes: usize,
}

/// A run that did not finish: the query is wrong, or a bound stopped it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The query cannot run (before any byte was written).
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A bound of [`RunLimits`] or the sink stopped the run.
    #[error("query interrupted: {0:?}")]
    Interrupted(Interrupt),
}

/// The result of a query: a JSON array, ready to send.
#[derive(Debug)]
pub struct QueryOutput {
    /// UTF-8 JSON array of row objects.
    pub body: Vec<u8>,
    /// Top-level rows returned.
    pub rows: usize,
    /// A default limit (top level or nested) cut the result (`X-Refract-Truncated: true`).
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
