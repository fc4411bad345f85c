//! The schema manifest: what a build produces and an engine runs from.

use serde::{Deserialize, Serialize};

use crate::{Backend, ColumnType};

/// Version of the manifest format; an engine refuses a manifest of another version.
pub const MANIFEST_VERSION: u32 = 1;

/// The API view of one source schema after the schema config was applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_VERSION`] when written by this code.
    pub version: u32,
    /// Source backend.
    pub backend: Backend,
    /// Source database name.
    pub database: String,
    /// PostgreSQL schema the tables live in (`public` by default); `None` for other backends.
    #[serde(default)]
    pub pg_schema: Option<String>,
    /// Exposed tables, in API-name order.
    pub tables: Vec<TableManifest>,
    /// What the build wants a person to know although it succeeded: tables without a primary
    /// key, keys or relations the source user could not read, generated relation names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One exposed table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableManifest {
    /// Table name on the source.
    pub source_name: String,
    /// Name used in queries (the `alias`, else the source name).
    pub api_name: String,
    /// Exposed columns in source ordinal order (after the `columns` allow-list).
    pub columns: Vec<ColumnManifest>,
    /// Indexes into `columns` of the primary key; empty when the table has none.
    pub primary_key: Vec<usize>,
    /// Row predicate (SQL text) pushed into every source query for this table.
    #[serde(default)]
    pub where_sql: Option<String>,
    /// Forward and reverse relations of this table.
    pub relations: Vec<Relation>,
    /// Source estimate of the table's data size in bytes (for memory-cap planning and B2).
    #[serde(default)]
    pub estimated_bytes: Option<u64>,
}

/// One exposed column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnManifest {
    /// Column name on the source.
    pub source_name: String,
    /// Name used in queries and responses (the field alias, else the source name).
    pub api_name: String,
    /// Storage type.
    pub ty: ColumnType,
    /// Source type text, for `GET /schema`.
    pub source_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// The `field_notes` text, shown in the engine's OpenAPI document.
    #[serde(default)]
    pub note: Option<String>,
}

impl ColumnManifest {
    /// `column` exposed under its source name, without a note.
    pub fn exposing(column: &crate::SourceColumn) -> ColumnManifest {
        ColumnManifest {
            source_name: column.name.clone(),
            api_name: column.name.clone(),
            ty: column.ty,
            source_type: column.source_type.clone(),
            nullable: column.nullable,
            note: None,
        }
    }
}

/// Direction of a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    /// This table holds the foreign key: at most one related row (object or `null`).
    Forward,
    /// The other table holds the foreign key: any number of related rows (array).
    Reverse,
}

/// A named relation from this table to another exposed table, derived from a foreign key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relation {
    /// Name used in queries (`author`, `posts`).
    pub name: String,
    /// Forward (to-one) or reverse (to-many).
    pub kind: RelationKind,
    /// API name of the related table.
    pub target_table: String,
    /// Indexes into this table's columns, in key order.
    pub local_columns: Vec<usize>,
    /// Indexes into the related table's columns, in key order.
    pub target_columns: Vec<usize>,
}

impl Manifest {
    /// The table with this API name.
    pub fn table(&self, api_name: &str) -> Option<&TableManifest> {
        self.tables.iter().find(|t| t.api_name == api_name)
    }
}

impl TableManifest {
    /// Index of the column with this API name.
    pub fn column_index(&self, api_name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.api_name == api_name)
    }

    /// The relation with this name.
    pub fn relation(&self, name: &str) -> Option<&Relation> {
        self.relations.iter().find(|r| r.name == name)
    }
}

/// A problem that stops a build, with the config line it comes from when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct BuildError {
    /// 1-based line of `reflexdb.yaml`, when the error comes from it.
    pub line: Option<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}
