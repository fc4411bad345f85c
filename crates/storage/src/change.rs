//! Owned rows and change batches, the input of [`crate::Table::apply`].

use refract_schema::ValueRef;

/// An owned cell: the owned counterpart of [`ValueRef`], for rows that outlive the buffer they
/// were decoded from (change data capture).
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    /// SQL NULL.
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

impl OwnedValue {
    /// This cell as a borrowed [`ValueRef`].
    pub fn as_value_ref(&self) -> ValueRef<'_> {
        match self {
            OwnedValue::Null => ValueRef::Null,
            OwnedValue::Bool(b) => ValueRef::Bool(*b),
            OwnedValue::Int(x) => ValueRef::Int(*x),
            OwnedValue::Float(x) => ValueRef::Float(*x),
            OwnedValue::Decimal(x) => ValueRef::Decimal(*x),
            OwnedValue::Text(s) => ValueRef::Text(s),
            OwnedValue::Bytes(b) => ValueRef::Bytes(b),
            OwnedValue::Date(x) => ValueRef::Date(*x),
            OwnedValue::Time(x) => ValueRef::Time(*x),
            OwnedValue::DateTime(x) => ValueRef::DateTime(*x),
            OwnedValue::Timestamp(x) => ValueRef::Timestamp(*x),
            OwnedValue::Json(s) => ValueRef::Json(s),
        }
    }
}

impl From<ValueRef<'_>> for OwnedValue {
    fn from(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Null => OwnedValue::Null,
            ValueRef::Bool(b) => OwnedValue::Bool(b),
            ValueRef::Int(x) => OwnedValue::Int(x),
            ValueRef::Float(x) => OwnedValue::Float(x),
            ValueRef::Decimal(x) => OwnedValue::Decimal(x),
            ValueRef::Text(s) => OwnedValue::Text(s.to_owned()),
            ValueRef::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            ValueRef::Date(x) => OwnedValue::Date(x),
            ValueRef::Time(x) => OwnedValue::Time(x),
            ValueRef::DateTime(x) => OwnedValue::DateTime(x),
            ValueRef::Timestamp(x) => OwnedValue::Timestamp(x),
            ValueRef::Json(s) => OwnedValue::Json(s.to_owned()),
        }
    }
}

/// One row as owned cells, in table column order.
pub type OwnedRow = Vec<OwnedValue>;

/// One change to a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Delete the row with this key: the primary-key values in primary-key column order, or for
    /// a table without a primary key the whole row (one equal row is deleted). Deleting an absent
    /// key does nothing.
    Delete(OwnedRow),
    /// Insert this full row (all columns, table column order), or replace the row with the same
    /// primary key. Missing trailing cells are NULL; a cell whose variant does not fit its column
    /// is stored as NULL. Without a primary key the row is always appended.
    Upsert(OwnedRow),
}

/// An ordered batch of changes to one table, applied in order by [`crate::Table::apply`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeBatch {
    /// The changes, in source commit order.
    pub changes: Vec<Change>,
}

impl ChangeBatch {
    /// An empty batch.
    pub fn new() -> Self {
        ChangeBatch::default()
    }

    /// Add a delete by key (see [`Change::Delete`]).
    pub fn delete(&mut self, key: OwnedRow) -> &mut Self {
        self.changes.push(Change::Delete(key));
        self
    }

    /// Add an upsert of a full row (see [`Change::Upsert`]).
    pub fn upsert(&mut self, row: OwnedRow) -> &mut Self {
        self.changes.push(Change::Upsert(row));
        self
    }

    /// Add a delete by key given as borrowed cells.
    pub fn delete_refs(&mut self, key: &[ValueRef<'_>]) -> &mut Self {
        self.delete(key.iter().map(|&v| v.into()).collect())
    }

    /// Add an upsert of a full row given as borrowed cells.
    pub fn upsert_refs(&mut self, row: &[ValueRef<'_>]) -> &mut Self {
        self.upsert(row.iter().map(|&v| v.into()).collect())
    }

    /// Number of changes.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether the batch has no change.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}
