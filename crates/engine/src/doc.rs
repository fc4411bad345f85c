//! `GET /schema` and `GET /openapi.json`, derived from the manifest.

use refract_schema::{ColumnType, Manifest, RelationKind, TableManifest};
use refract_storage::Snapshot;
use serde_json::{json, Map, Value};

fn column_names(table: Option<&TableManifest>, indexes: &[usize]) -> Vec<String> {
    indexes
        .iter()
        .map(|&i| {
            table
                .and_then(|t| t.columns.get(i))
                .map(|c| c.api_name.clone())
                .unwrap_or_default()
        })
        .collect()
}

/// The `GET /schema` body: tables, fields, primary keys, relations (API names throughout).
pub fn schema_json(manifest: &Manifest, snapshot: Option<&Snapshot>) -> Value {
    let tables: Vec<Value> = manifest
        .tables
        .iter()
        .map(|t| {
            let fields: Vec<Value> = t
                .columns
                .iter()
                .map(|c| {
                    let mut f = json!({
                        "name": c.api_name,
                        "type": c.ty.name(),
                        "sourceType": c.source_type,
                        "nullable": c.nullable,
                    });
                    if let ColumnType::Decimal { scale } = c.ty {
                        f["scale"] = json!(scale);
                    }
                    if let Some(note) = &c.note {
                        f["note"] = json!(note);
                    }
                    f
                })
                .collect();
            let relations: Vec<Value> = t
                .relations
                .iter()
                .map(|r| {
                    json!({
                        "name": r.name,
                        "kind": match r.kind { RelationKind::Forward => "forward", RelationKind::Reverse => "reverse" },
                        "table": r.target_table,
                        "columns": column_names(Some(t), &r.local_columns),
                        "targetColumns": column_names(manifest.table(&r.target_table), &r.target_columns),
                    })
                })
                .collect();
            let mut table = json!({
                "name": t.api_name,
                "sourceName": t.source_name,
                "primaryKey": column_names(Some(t), &t.primary_key),
                "fields": fields,
                "relations": relations,
            });
            if let Some(rows) = snapshot.and_then(|s| s.table(&t.api_name)).map(|t| t.row_count()) {
                table["rowCount"] = json!(rows);
            }
            table
        })
        .collect();
    json!({
        "database": manifest.database,
        "backend": manifest.backend.as_str(),
        "tables": tables,
    })
}

fn field_schema(ty: ColumnType, nullable: bool, note: Option<&str>) -> Value {
    let mut s = match ty {
        ColumnType::Bool => json!({"type": "boolean"}),
        ColumnType::Int => json!({"type": "integer", "format": "int64",
            "description": "Integers beyond ±2^53 are sent as strings."}),
        ColumnType::Float => json!({"type": "number", "format": "double"}),
        ColumnType::Decimal { scale } => json!({"type": "string", "format": "decimal",
            "description": format!("Exact decimal with {scale} digits after the point.")}),
        ColumnType::Text { .. } => json!({"type": "string"}),
        ColumnType::Bytes => json!({"type": "string", "format": "byte"}),
        ColumnType::Date => json!({"type": "string", "format": "date"}),
        ColumnType::Time => json!({"type": "string", "format": "time"}),
        ColumnType::DateTime => json!({"type": "string", "format": "date-time",
            "description": "Date and time without a zone."}),
        ColumnType::Timestamp => json!({"type": "string", "format": "date-time"}),
        ColumnType::Json => json!({"description": "A JSON document."}),
    };
    if let Some(note) = note {
        s["description"] = json!(match s.get("description").and_then(Value::as_str) {
            Some(d) => format!("{note} ({d})"),
            None => note.to_string(),
        });
    }
    if nullable {
        s["nullable"] = json!(true);
    }
    s
}

/// An OpenAPI 3.0 document of `POST /query` (and `/query/explain`, `/schema`) for this schema:
/// one component schema per table with its fields (notes as descriptions) and relations.
pub fn openapi_json(manifest: &Manifest, keys_enforced: bool, default_limit: usize) -> Value {
    let mut schemas = Map::new();
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        }),
    );
    let mut refs = Vec::new();
    for t in &manifest.tables {
        let mut props = Map::new();
        for c in &t.columns {
            props.insert(
                c.api_name.clone(),
                field_schema(c.ty, c.nullable, c.note.as_deref()),
            );
        }
        for r in &t.relations {
            let target = json!({"$ref": format!("#/components/schemas/{}", r.target_table)});
            let s = match r.kind {
                RelationKind::Forward => json!({"allOf": [target], "nullable": true,
                    "description": format!("Forward relation to {} (object or null).", r.target_table)}),
                RelationKind::Reverse => json!({"type": "array", "items": target,
                    "description": format!("Reverse relation: the {} rows that refer to this row.", r.target_table)}),
            };
            props.insert(r.name.clone(), s);
        }
        let pk = column_names(Some(t), &t.primary_key);
        schemas.insert(
            t.api_name.clone(),
            json!({
                "type": "object",
                "description": format!(
                    "A row of `{}` (source table `{}`; primary key: {}). Only the fields a query selects are present.",
                    t.api_name, t.source_name, if pk.is_empty() { "none".to_string() } else { pk.join(", ") }),
                "properties": props,
            }),
        );
        refs.push(json!({"$ref": format!("#/components/schemas/{}", t.api_name)}));
    }
    let example = manifest
        .tables
        .first()
        .map(|t| {
            let fields: Vec<&str> = t
                .columns
                .iter()
                .take(3)
                .map(|c| c.api_name.as_str())
                .collect();
            format!("{} {{ {} }}", t.api_name, fields.join(" "))
        })
        .unwrap_or_else(|| "table { field }".to_string());
    let err = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let text_body = json!({
        "required": true,
        "content": {"text/plain": {"schema": {"type": "string"}, "example": example}},
    });
    let mut query_op = json!({
        "summary": "Run a query",
        "description": format!(
            "Body: a query in the Refract query language (any Content-Type). Answers a JSON array of the \
             top-level table's rows. Without LIMIT at most {default_limit} rows are returned and the header \
             X-Refract-Truncated: true says when the result was cut."),
        "requestBody": text_body,
        "responses": {
            "200": {
                "description": "The rows.",
                "headers": {"X-Refract-Truncated": {"schema": {"type": "string", "enum": ["true"]},
                    "description": "Present when the default limit cut the result."}},
                "content": {"application/json": {"schema": {"type": "array", "items": {"oneOf": refs}}}},
            },
            "400": err("query_error: the message starts with `line L, column C:`."),
            "401": err("unauthorized: missing, malformed, unknown, revoked or expired query key."),
            "413": err("too_large: the query text is over 1 MiB."),
            "503": err("not_ready: the first snapshot is still loading."),
        },
    });
    let mut explain_op = json!({
        "summary": "Check a query and show its plan without running it",
        "requestBody": text_body,
        "responses": {
            "200": {"description": "The plan.", "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": err("query_error"), "401": err("unauthorized"), "503": err("not_ready"),
        },
    });
    let mut schema_op = json!({
        "summary": "Tables, fields, types, relations and notes",
        "responses": {
            "200": {"description": "The schema.", "content": {"application/json": {"schema": {"type": "object"}}}},
            "401": err("unauthorized"),
        },
    });
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": format!("Refract engine: {}", manifest.database),
            "version": "1",
            "description": format!("Read-only query API over the {} source `{}`.", manifest.backend.as_str(), manifest.database),
        },
        "paths": {},
        "components": {"schemas": schemas},
    });
    if keys_enforced {
        let security = json!([{"queryKey": []}]);
        for op in [&mut query_op, &mut explain_op, &mut schema_op] {
            op["security"] = security.clone();
        }
        doc["components"]["securitySchemes"] = json!({
            "queryKey": {"type": "http", "scheme": "bearer", "description": "A query key: rxk_<keyId>.<secret>"},
        });
    }
    doc["paths"] = json!({
        "/query": {"post": query_op},
        "/query/explain": {"post": explain_op},
        "/schema": {"get": schema_op},
    });
    doc
}
