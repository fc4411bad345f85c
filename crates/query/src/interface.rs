//! What a run of a query takes and gives: options and limits in, the JSON answer out (in pieces
//! to a [`Sink`]), or why it stopped. Re-exported at the crate root.

use crate::error::QueryError;

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

/// The bounds of one run of a query ([`crate::run`]).
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
