//! This crate provides the vocabulary shared by every stage between a source database and a query:
//!
//! - [`SourceSchema`]: what introspection found on the source (tables, columns, keys, collations);
//! - [`SchemaConfig`]: the user's `reflexdb.yaml` (which tables, columns, rows, names), parsed with
//!   line numbers so every error points at its line;
//! - [`Manifest`]: the result of applying the config to the source schema. It is the artifact a
//!   build produces and an engine runs from: API names, column types, keys and relations;
//! - [`ColumnType`], [`ValueRef`] and [`RowSink`]: the typed values that loaders stream into
//!   storage; [`Value`] and [`Row`]: the same values owned, for change streams and change batches.
//!
//! **Architecture invariant:** this crate does no IO and knows nothing about HTTP or any source
//! driver; it is pure data and pure functions, tested on its own.
#![deny(missing_docs)]

pub mod calendar;
mod config;
mod manifest;
mod source;
mod value;

pub use config::apply::build_manifest;
pub use config::{parse_schema_config, ConfigError, Expose, SchemaConfig, TableConfig};
pub use manifest::{
    BuildError, ColumnManifest, Manifest, Relation, RelationKind, TableManifest, MANIFEST_VERSION,
};
pub use source::{Backend, ForeignKey, SourceColumn, SourceSchema, SourceTable};
pub use value::{ColumnType, Row, RowSink, Value, ValueRef};
