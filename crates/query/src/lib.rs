//! This crate provides the query language of `POST /query`: text → tokens with spans → AST →
//! bound plan (names resolved against a [`refract_storage::Snapshot`]) → execution that writes
//! JSON straight from column data.
#![deny(missing_docs)]

use refract_storage::Snapshot;

/// Limits and defaults of query execution.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Rows returned at top level when the query gives no `LIMIT` (default 10,000).
    pub default_limit: usize,
    /// Deepest nesting of selections and expressions accepted (default 32).
    pub max_depth: usize,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions { default_limit: 10_000, max_depth: 32 }
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
pub fn execute(snapshot: &Snapshot, text: &str, options: &QueryOptions) -> Result<QueryOutput, QueryError> {
    let _ = (snapshot, text, options);
    Err(QueryError { line: 1, column: 1, message: "not implemented".into() })
}

/// Parse and bind `text` and describe the plan without running it.
pub fn explain(snapshot: &Snapshot, text: &str, options: &QueryOptions) -> Result<serde_json::Value, QueryError> {
    let _ = (snapshot, text, options);
    Err(QueryError { line: 1, column: 1, message: "not implemented".into() })
}
