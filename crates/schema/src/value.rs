//! Column types and the borrowed cell values that loaders hand to storage.

use serde::{Deserialize, Serialize};

/// The engine's storage type of a column, chosen at introspection from the source type.
///
/// The mapping rules (see `docs/types.md`): integers up to 64 bits signed are [`ColumnType::Int`];
/// `BIGINT UNSIGNED` and exact numerics are [`ColumnType::Decimal`] (exact, never a float);
/// MySQL `TINYINT(1)` and PostgreSQL `boolean` are [`ColumnType::Bool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnType {
    /// `true`/`false`.
    Bool,
    /// Signed 64-bit integer; serialized as a JSON string beyond ±2^53.
    Int,
    /// IEEE 754 double.
    Float,
    /// Exact decimal stored as an `i128` mantissa with a fixed number of fraction digits.
    Decimal {
        /// Digits after the decimal point (the source column's scale).
        scale: u8,
    },
    /// UTF-8 text.
    Text {
        /// Equality and `LIKE` ignore case (MySQL `_ci` collations).
        case_insensitive: bool,
    },
    /// Raw bytes; serialized as base64.
    Bytes,
    /// Calendar date, stored as days since 1970-01-01.
    Date,
    /// Time of day (or MySQL `TIME` duration), stored as microseconds.
    Time,
    /// Date and time without zone, stored as microseconds since 1970-01-01T00:00:00.
    DateTime,
    /// Instant in UTC (PostgreSQL `timestamptz`, MySQL `TIMESTAMP`), microseconds since the epoch.
    Timestamp,
    /// JSON document, stored as its text and written into responses verbatim.
    Json,
}

impl ColumnType {
    /// The name used in error messages and `GET /schema`.
    pub fn name(&self) -> &'static str {
        match self {
            ColumnType::Bool => "boolean",
            ColumnType::Int => "integer",
            ColumnType::Float => "float",
            ColumnType::Decimal { .. } => "decimal",
            ColumnType::Text { .. } => "string",
            ColumnType::Bytes => "bytes",
            ColumnType::Date => "date",
            ColumnType::Time => "time",
            ColumnType::DateTime => "datetime",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Json => "json",
        }
    }
}

/// One cell as a loader decoded it, borrowing the driver's buffer so no allocation is needed
/// between the wire and the column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// SQL NULL.
    Null,
    /// Boolean.
    Bool(bool),
    /// 64-bit integer.
    Int(i64),
    /// Double.
    Float(f64),
    /// Decimal mantissa at the column's scale (`12.34` at scale 2 is `1234`).
    Decimal(i128),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Bytes(&'a [u8]),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds (time of day or duration).
    Time(i64),
    /// Microseconds since 1970-01-01T00:00:00 (no zone).
    DateTime(i64),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    /// JSON text.
    Json(&'a str),
}

/// Where a loader writes the rows of one table, cell by cell in manifest column order.
///
/// Storage implements it with its column builders; tests implement it with a `Vec`.
pub trait RowSink {
    /// Append the cell of column `column` (index into the table manifest's columns) of the
    /// current row. A value that does not fit the column type is stored as NULL by the sink.
    fn push(&mut self, column: usize, value: ValueRef<'_>);
    /// Close the current row. Returns `false` when the sink refuses more rows (memory cap
    /// reached); the loader then stops reading.
    fn end_row(&mut self) -> bool;
}
