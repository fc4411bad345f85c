//! [`StoreResult`]: the result of every store call.

use crate::error::ApiError;

/// Result of store operations; store failures are [`ApiError::Internal`], and closures may
/// return any other variant to roll back with a client error.
pub type StoreResult<T> = Result<T, ApiError>;
