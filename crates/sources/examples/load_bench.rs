//! Load speed of one source database: introspect, then load every table (or the tables named
//! after the database) into a columnar-ish sink that copies every value, and print rows/s.
//!
//! ```text
//! cargo run --release -p refract-sources --example load_bench -- \
//!     postgres://user:pw@127.0.0.1:5432/db [parallelism] [table ...]
//! ```
//! Compare with `psql -c "\copy (SELECT …) TO /dev/null"` (benchmark B1).

use std::time::Instant;

use refract_schema::{
    Backend, ColumnManifest, Manifest, RowSink, TableManifest, ValueRef, MANIFEST_VERSION,
};
use refract_sources::SourceParams;

/// Copies every cell into typed vectors and one byte arena, as a storage builder would.
#[derive(Default)]
struct CopySink {
    ints: Vec<i64>,
    floats: Vec<f64>,
    decimals: Vec<i128>,
    arena: Vec<u8>,
    offsets: Vec<u32>,
    nulls: usize,
    rows: usize,
}

impl RowSink for CopySink {
    fn push(&mut self, _column: usize, value: ValueRef<'_>) {
        match value {
            ValueRef::Null => self.nulls += 1,
            ValueRef::Bool(b) => self.ints.push(i64::from(b)),
            ValueRef::Int(i)
            | ValueRef::Time(i)
            | ValueRef::DateTime(i)
            | ValueRef::Timestamp(i) => self.ints.push(i),
            ValueRef::Date(d) => self.ints.push(i64::from(d)),
            ValueRef::Float(f) => self.floats.push(f),
            ValueRef::Decimal(d) => self.decimals.push(d),
            ValueRef::Text(s) | ValueRef::Json(s) => {
                self.arena.extend_from_slice(s.as_bytes());
                self.offsets.push(self.arena.len() as u32);
            }
            ValueRef::Bytes(b) => {
                self.arena.extend_from_slice(b);
                self.offsets.push(self.arena.len() as u32);
            }
        }
    }

    fn end_row(&mut self) -> bool {
        self.rows += 1;
        true
    }
}

fn params(url: &str) -> SourceParams {
    let (scheme, rest) = url.split_once("://").expect("scheme://");
    let (auth, hostpart) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = match auth.split_once(':') {
        Some((u, p)) => (u.to_string(), Some(p.to_string())),
        None => (auth.to_string(), None),
    };
    let (hostport, db) = hostpart.split_once('/').unwrap_or((hostpart, ""));
    let (host, port) = hostport
        .rsplit_once(':')
        .map(|(h, p)| (h, p.parse().expect("port")))
        .unwrap_or((hostport, 0));
    let backend = match scheme {
        "mysql" | "mariadb" => Backend::Mysql,
        "sqlite" => Backend::Sqlite,
        _ => Backend::Postgres,
    };
    SourceParams {
        backend,
        host: host.to_string(),
        port,
        user,
        password,
        database: Some(db.to_string()),
        pg_schema: None,
        tls: Default::default(),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .expect("usage: load_bench URL [parallelism] [table ...]");
    let parallelism: usize = args.get(1).and_then(|p| p.parse().ok()).unwrap_or(4);
    let only: Vec<&String> = args.iter().skip(2).collect();
    let p = params(url);
    let schema = refract_sources::introspect(&p).await.expect("introspect");
    let tables: Vec<TableManifest> = schema
        .tables
        .iter()
        .filter(|t| only.is_empty() || only.iter().any(|o| **o == t.name))
        .map(|t| TableManifest {
            source_name: t.name.clone(),
            api_name: t.name.clone(),
            columns: t.columns.iter().map(ColumnManifest::exposing).collect(),
            primary_key: Vec::new(),
            where_sql: None,
            relations: Vec::new(),
            estimated_bytes: t.estimated_bytes,
        })
        .collect();
    let m = Manifest {
        warnings: Vec::new(),
        version: MANIFEST_VERSION,
        backend: schema.backend,
        database: schema.database.clone(),
        pg_schema: None,
        tables,
    };
    for run in 1..=3 {
        let sinks: Vec<CopySink> = m.tables.iter().map(|_| CopySink::default()).collect();
        let t = Instant::now();
        let (sinks, pos) = refract_sources::load_tables(
            &p,
            &m,
            sinks,
            refract_sources::LoadOptions::parallel(parallelism),
        )
        .await
        .expect("load");
        let secs = t.elapsed().as_secs_f64();
        let rows: usize = sinks.iter().map(|s| s.rows).sum();
        let bytes: usize = sinks.iter().map(|s| s.arena.len()).sum();
        println!(
            "run {run}: {rows} rows in {secs:.3} s = {:.0} rows/s ({:.1} MiB text), position {pos:?}",
            rows as f64 / secs,
            bytes as f64 / 1048576.0
        );
    }
}
