//! [`StoreError`]: why a store call failed, and [`StoreResult`], the result of every one. The HTTP
//! layer maps it to a 500 (`From<StoreError> for ApiError`, `crate::error`); the store knows
//! nothing of HTTP.

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQLite file: IO, SQL, a constraint, or a stored value that does not decode. (Not a
    /// `source`: the message carries it, once.)
    #[error("metadata store: {0}")]
    Sqlite(rusqlite::Error),
    /// The PostgreSQL store answered with an error (SQL, a constraint). Its text, once.
    #[error("metadata store: {0}")]
    Postgres(String),
    /// The store cannot be reached now (connection refused or lost, a lock or statement that
    /// waited too long): HTTP 503 `store_unavailable`; the request may be retried.
    #[error("the metadata store is unavailable: {0}")]
    Unavailable(String),
    /// A stored value that does not decode (written by a newer version, or edited by hand).
    #[error("{0}")]
    Corrupt(String),
    /// The caller's closure ended the transaction with an error of its own, which the caller
    /// keeps; everything it wrote was rolled back.
    #[error("the transaction was rolled back by its caller")]
    Aborted,
    /// The store ran a transaction's closure twice (a backend bug).
    #[error("transaction retried")]
    Retried,
    /// A transaction committed without its closure having run (a backend bug).
    #[error("transaction produced nothing")]
    Empty,
    /// The blocking task running the transaction panicked or was cancelled.
    #[error("store task failed: {0}")]
    Task(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;
