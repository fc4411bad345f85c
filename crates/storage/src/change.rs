//! Change batches, the input of [`crate::Table::apply`], made of owned rows
//! ([`refract_schema::Row`]).

use refract_schema::{Row, Value, ValueRef};

/// One change to a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Delete the row with this key: the primary-key values in primary-key column order, or for
    /// a table without a primary key the whole row (one equal row is deleted). Deleting an absent
    /// key does nothing.
    Delete(Row),
    /// Insert this full row (all columns, table column order), or replace the row with the same
    /// primary key. Missing trailing cells are NULL; a cell whose variant does not fit its column
    /// is stored as NULL. Without a primary key the row is always appended.
    Upsert(Row),
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
    pub fn delete(&mut self, key: Row) -> &mut Self {
        self.changes.push(Change::Delete(key));
        self
    }

    /// Add an upsert of a full row (see [`Change::Upsert`]).
    pub fn upsert(&mut self, row: Row) -> &mut Self {
        self.changes.push(Change::Upsert(row));
        self
    }

    /// Add a delete by key given as borrowed cells.
    pub fn delete_refs(&mut self, key: &[ValueRef<'_>]) -> &mut Self {
        self.delete(key.iter().map(|&v| Value::from_ref(v)).collect())
    }

    /// Add an upsert of a full row given as borrowed cells.
    pub fn upsert_refs(&mut self, row: &[ValueRef<'_>]) -> &mut Self {
        self.upsert(row.iter().map(|&v| Value::from_ref(v)).collect())
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
