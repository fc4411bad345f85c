//! Column types and values: [`ValueRef`] borrows a decoder's buffer (loaders hand it to
//! storage), [`Value`] owns its text and bytes (rows that outlive their buffer: change streams,
//! change batches). Both have the same variants, one per storage type, and the same total order.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

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

/// One value as a loader decoded it, borrowing the driver's buffer so no allocation is needed
/// between the wire and the column. [`Value`] is its owned counterpart.
///
/// `==` is IEEE equality on floats (`NaN != NaN`); [`ValueRef::total_cmp`] is the total order
/// that keys and indexes use.
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

impl ValueRef<'_> {
    /// The total order of values: NULL first, then by value (integers and temporal values
    /// numerically, text, JSON and bytes by bytes, floats by [`f64::total_cmp`]: `-0.0 < 0.0`,
    /// NaNs after the numbers). Values of different variants (never in one column) order by
    /// variant, in declaration order. Equal exactly when [`ValueRef::same`].
    #[inline]
    pub fn total_cmp(&self, other: &ValueRef<'_>) -> Ordering {
        use ValueRef as V;
        match (*self, *other) {
            (V::Null, V::Null) => Ordering::Equal,
            (V::Bool(x), V::Bool(y)) => x.cmp(&y),
            (V::Int(x), V::Int(y))
            | (V::Time(x), V::Time(y))
            | (V::DateTime(x), V::DateTime(y))
            | (V::Timestamp(x), V::Timestamp(y)) => x.cmp(&y),
            (V::Date(x), V::Date(y)) => x.cmp(&y),
            (V::Float(x), V::Float(y)) => x.total_cmp(&y),
            (V::Decimal(x), V::Decimal(y)) => x.cmp(&y),
            (V::Text(x), V::Text(y)) | (V::Json(x), V::Json(y)) => x.as_bytes().cmp(y.as_bytes()),
            (V::Bytes(x), V::Bytes(y)) => x.cmp(y),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }

    /// Exact equality: same variant and same value, floats by bits (`NaN` equals itself,
    /// `-0.0` differs from `0.0`), NULL equals NULL. What a key lookup means by "equal".
    #[inline]
    pub fn same(&self, other: &ValueRef<'_>) -> bool {
        match (self, other) {
            (ValueRef::Float(x), ValueRef::Float(y)) => x.to_bits() == y.to_bits(),
            _ => self == other,
        }
    }

    /// The variant's position in declaration order.
    #[inline]
    fn rank(&self) -> u8 {
        match self {
            ValueRef::Null => 0,
            ValueRef::Bool(_) => 1,
            ValueRef::Int(_) => 2,
            ValueRef::Float(_) => 3,
            ValueRef::Decimal(_) => 4,
            ValueRef::Text(_) => 5,
            ValueRef::Bytes(_) => 6,
            ValueRef::Date(_) => 7,
            ValueRef::Time(_) => 8,
            ValueRef::DateTime(_) => 9,
            ValueRef::Timestamp(_) => 10,
            ValueRef::Json(_) => 11,
        }
    }
}

/// One owned value: the owned counterpart of [`ValueRef`], for rows that outlive the buffer
/// they were decoded from (change streams, rows re-read from a source, change batches).
///
/// `Eq`, `Ord` and `Hash` follow [`ValueRef::total_cmp`] and [`ValueRef::same`] (floats by
/// bits), so rows of values can be sorted, deduplicated and used as map keys.
#[derive(Debug, Clone, Default)]
pub enum Value {
    /// SQL NULL.
    #[default]
    Null,
    /// Boolean.
    Bool(bool),
    /// 64-bit integer.
    Int(i64),
    /// Double.
    Float(f64),
    /// Decimal mantissa at the column's scale.
    Decimal(i128),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds (time of day or duration).
    Time(i64),
    /// Microseconds since 1970-01-01T00:00:00 (no zone).
    DateTime(i64),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    /// JSON text.
    Json(String),
}

/// One row of owned values, in manifest column order (or primary-key order for a key).
pub type Row = Vec<Value>;

impl Value {
    /// This value borrowed.
    #[inline]
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::Int(x) => ValueRef::Int(*x),
            Value::Float(x) => ValueRef::Float(*x),
            Value::Decimal(x) => ValueRef::Decimal(*x),
            Value::Text(s) => ValueRef::Text(s),
            Value::Bytes(b) => ValueRef::Bytes(b),
            Value::Date(x) => ValueRef::Date(*x),
            Value::Time(x) => ValueRef::Time(*x),
            Value::DateTime(x) => ValueRef::DateTime(*x),
            Value::Timestamp(x) => ValueRef::Timestamp(*x),
            Value::Json(s) => ValueRef::Json(s),
        }
    }

    /// An owned copy of a borrowed value.
    pub fn from_ref(v: ValueRef<'_>) -> Value {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Int(x) => Value::Int(x),
            ValueRef::Float(x) => Value::Float(x),
            ValueRef::Decimal(x) => Value::Decimal(x),
            ValueRef::Text(s) => Value::Text(s.to_owned()),
            ValueRef::Bytes(b) => Value::Bytes(b.to_vec()),
            ValueRef::Date(x) => Value::Date(x),
            ValueRef::Time(x) => Value::Time(x),
            ValueRef::DateTime(x) => Value::DateTime(x),
            ValueRef::Timestamp(x) => Value::Timestamp(x),
            ValueRef::Json(s) => Value::Json(s.to_owned()),
        }
    }
}

impl From<ValueRef<'_>> for Value {
    fn from(v: ValueRef<'_>) -> Self {
        Value::from_ref(v)
    }
}

impl PartialEq for Value {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_ref().same(&other.as_ref())
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_ref().total_cmp(&other.as_ref())
    }
}

impl Hash for Value {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let v = self.as_ref();
        v.rank().hash(h);
        match v {
            ValueRef::Null => {}
            ValueRef::Bool(b) => b.hash(h),
            ValueRef::Int(x)
            | ValueRef::Time(x)
            | ValueRef::DateTime(x)
            | ValueRef::Timestamp(x) => x.hash(h),
            ValueRef::Float(x) => x.to_bits().hash(h),
            ValueRef::Decimal(x) => x.hash(h),
            ValueRef::Text(s) | ValueRef::Json(s) => s.hash(h),
            ValueRef::Bytes(b) => b.hash(h),
            ValueRef::Date(x) => x.hash(h),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn all() -> Vec<Value> {
        vec![
            Value::Null,
            Value::Bool(false),
            Value::Bool(true),
            Value::Int(-3),
            Value::Int(7),
            Value::Float(-0.0),
            Value::Float(0.0),
            Value::Float(1.5),
            Value::Float(f64::NAN),
            Value::Decimal(-1234),
            Value::Text("A".into()),
            Value::Text("a".into()),
            Value::Bytes(vec![0, 255]),
            Value::Date(19_723),
            Value::Time(1),
            Value::DateTime(2),
            Value::Timestamp(3),
            Value::Json("{}".into()),
        ]
    }

    #[test]
    fn owned_and_borrowed_round_trip() {
        for v in all() {
            assert_eq!(Value::from_ref(v.as_ref()), v);
        }
    }

    #[test]
    fn order_is_total_and_agrees_with_eq_and_hash() {
        let vs = all();
        let mut sorted = vs.clone();
        sorted.sort();
        // Declaration order of the list above is ascending.
        assert_eq!(sorted, vs);
        for a in &vs {
            for b in &vs {
                assert_eq!(a == b, a.cmp(b) == Ordering::Equal, "{a:?} {b:?}");
                assert_eq!(a.cmp(b), b.cmp(a).reverse());
            }
        }
        // Floats by bits: NaN is itself, -0.0 is not 0.0.
        assert_eq!(Value::Float(f64::NAN), Value::Float(f64::NAN));
        assert_ne!(Value::Float(-0.0), Value::Float(0.0));
        let set: HashSet<Value> = vs.iter().chain(&vs).cloned().collect();
        assert_eq!(set.len(), vs.len());
        // Same text, different variant: different values.
        assert_ne!(Value::Text("{}".into()), Value::Json("{}".into()));
    }
}
