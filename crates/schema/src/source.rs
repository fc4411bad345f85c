//! What introspection found on a source database.

use serde::{Deserialize, Serialize};

use crate::ColumnType;

/// The kind of source server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// MySQL or MariaDB.
    Mysql,
    /// PostgreSQL.
    Postgres,
    /// A SQLite file (the embedded default).
    Sqlite,
    /// SQL Server (accepted by the API; no loader here).
    Mssql,
}

impl Backend {
    /// The lowercase name used in configs and the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Mysql => "mysql",
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
            Backend::Mssql => "mssql",
        }
    }
}

/// All tables of one source schema (a MySQL database, a PostgreSQL schema, a SQLite file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSchema {
    /// Which server the schema came from.
    pub backend: Backend,
    /// The source database (MySQL schema / PostgreSQL database / `main`).
    pub database: String,
    /// Tables in name order.
    pub tables: Vec<SourceTable>,
    /// What introspection could not see, in words a person can act on (e.g. key constraints
    /// hidden from the source user): shown in the build log, test-connection and `/schema`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One base table on the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceTable {
    /// Name on the source.
    pub name: String,
    /// Columns in ordinal order.
    pub columns: Vec<SourceColumn>,
    /// Primary-key column names in key order; empty when the table has none.
    pub primary_key: Vec<String>,
    /// Foreign keys declared on this table.
    pub foreign_keys: Vec<ForeignKey>,
    /// The source's own estimate of the table's data size in bytes, when it has one.
    #[serde(default)]
    pub estimated_bytes: Option<u64>,
    /// The source's row estimate, when it has one.
    #[serde(default)]
    pub estimated_rows: Option<u64>,
}

impl SourceTable {
    /// A table known by its name and the source's size estimates; columns and keys are added
    /// as introspection reads them.
    pub fn named(name: String, estimated_bytes: Option<u64>, estimated_rows: Option<u64>) -> Self {
        SourceTable {
            name,
            columns: Vec::new(),
            primary_key: Vec::new(),
            foreign_keys: Vec::new(),
            estimated_bytes,
            estimated_rows,
        }
    }
}

/// One column on the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceColumn {
    /// Name on the source.
    pub name: String,
    /// The source's type as it prints it (`varchar(255)`, `tinyint(1)`, `timestamp with time zone`).
    pub source_type: String,
    /// The storage type the engine uses for it.
    pub ty: ColumnType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Collation name for text columns (MySQL), when the source reports one.
    #[serde(default)]
    pub collation: Option<String>,
}

/// A foreign key (possibly composite) from this table to another table of the same schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    /// Constraint name on the source.
    pub name: String,
    /// Referencing columns on this table, in key order.
    pub columns: Vec<String>,
    /// Referenced table.
    pub referenced_table: String,
    /// Referenced columns, in key order (same length as `columns`).
    pub referenced_columns: Vec<String>,
}
