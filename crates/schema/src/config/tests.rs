//! Tests of `parse_schema_config` and `build_manifest`: every rule and every error, with lines.

use super::*;
use crate::{
    build_manifest, Backend, BuildError, ColumnType, ForeignKey, Manifest, RelationKind,
    SourceColumn, SourceSchema, SourceTable, TableManifest, MANIFEST_VERSION,
};

// ---------------------------------------------------------------- helpers

fn col(name: &str, ty: ColumnType) -> SourceColumn {
    SourceColumn {
        name: name.into(),
        source_type: match ty {
            ColumnType::Int => "bigint".into(),
            ColumnType::Bool => "boolean".into(),
            _ => "text".into(),
        },
        ty,
        nullable: false,
        collation: None,
    }
}

fn int(name: &str) -> SourceColumn {
    col(name, ColumnType::Int)
}

fn text(name: &str) -> SourceColumn {
    col(
        name,
        ColumnType::Text {
            case_insensitive: true,
        },
    )
}

fn fk(columns: &[&str], table: &str, referenced: &[&str]) -> ForeignKey {
    ForeignKey {
        name: format!("fk_{}", columns.join("_")),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        referenced_table: table.into(),
        referenced_columns: referenced.iter().map(|c| c.to_string()).collect(),
    }
}

fn table(name: &str, columns: Vec<SourceColumn>, pk: &[&str], fks: Vec<ForeignKey>) -> SourceTable {
    SourceTable {
        name: name.into(),
        columns,
        primary_key: pk.iter().map(|c| c.to_string()).collect(),
        foreign_keys: fks,
        estimated_bytes: Some(1000 + name.len() as u64),
        estimated_rows: Some(10),
    }
}

fn schema(backend: Backend, tables: Vec<SourceTable>) -> SourceSchema {
    let mut tables = tables;
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    SourceSchema {
        backend,
        database: "blog".into(),
        tables,
        warnings: Vec::new(),
    }
}

/// users, posts (author_id → users), comments (post_id → posts, user_id → users), tags,
/// post_tags (no primary key).
fn blog() -> SourceSchema {
    schema(
        Backend::Mysql,
        vec![
            table(
                "users",
                vec![int("id"), text("name"), text("email"), int("tenant_id")],
                &["id"],
                vec![],
            ),
            table(
                "posts",
                vec![
                    int("id"),
                    int("author_id"),
                    text("title"),
                    text("body"),
                    int("tenant_id"),
                ],
                &["id"],
                vec![fk(&["author_id"], "users", &["id"])],
            ),
            table(
                "comments",
                vec![
                    int("id"),
                    int("post_id"),
                    int("user_id"),
                    text("body"),
                    int("tenant_id"),
                ],
                &["id"],
                vec![
                    fk(&["post_id"], "posts", &["id"]),
                    fk(&["user_id"], "users", &["id"]),
                ],
            ),
            table("tags", vec![int("id"), text("name")], &["id"], vec![]),
            table(
                "post_tags",
                vec![int("post_id"), int("tag_id")],
                &[],
                vec![
                    fk(&["post_id"], "posts", &["id"]),
                    fk(&["tag_id"], "tags", &["id"]),
                ],
            ),
        ],
    )
}

fn parse(text: &str) -> SchemaConfig {
    match parse_schema_config(text) {
        Ok(config) => config,
        Err(errors) => panic!("config does not parse: {errors:#?}"),
    }
}

fn parse_err(text: &str) -> Vec<ConfigError> {
    match parse_schema_config(text) {
        Ok(config) => panic!("config parses: {config:#?}"),
        Err(errors) => errors,
    }
}

/// The single error of `text`; checks its line and that its message contains every part.
#[track_caller]
fn one_error(text: &str, line: usize, parts: &[&str]) {
    let errors = parse_err(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].line, line, "{errors:#?}");
    for part in parts {
        assert!(
            errors[0].message.contains(part),
            "{:?} lacks {part:?}",
            errors[0].message
        );
    }
}

fn build(source: &SourceSchema, text: &str) -> Manifest {
    let config = parse(text);
    match build_manifest(source, Some(&config)) {
        Ok(manifest) => manifest,
        Err(errors) => panic!("manifest does not build: {errors:#?}"),
    }
}

fn build_err(source: &SourceSchema, text: &str) -> Vec<BuildError> {
    let config = parse(text);
    match build_manifest(source, Some(&config)) {
        Ok(manifest) => panic!("manifest builds: {manifest:#?}"),
        Err(errors) => errors,
    }
}

#[track_caller]
fn one_build_error(source: &SourceSchema, text: &str, line: Option<usize>, parts: &[&str]) {
    let errors = build_err(source, text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].line, line, "{errors:#?}");
    for part in parts {
        assert!(
            errors[0].message.contains(part),
            "{:?} lacks {part:?}",
            errors[0].message
        );
    }
}

fn t<'m>(manifest: &'m Manifest, api_name: &str) -> &'m TableManifest {
    manifest
        .table(api_name)
        .unwrap_or_else(|| panic!("no table {api_name}"))
}

fn column_names(table: &TableManifest) -> Vec<&str> {
    table.columns.iter().map(|c| c.api_name.as_str()).collect()
}

/// `name kind target(local → target)` per relation, with column API names.
fn relations(manifest: &Manifest, api_name: &str) -> Vec<String> {
    let table = t(manifest, api_name);
    table
        .relations
        .iter()
        .map(|r| {
            let target = t(manifest, &r.target_table);
            let local: Vec<&str> = r
                .local_columns
                .iter()
                .map(|&i| table.columns[i].api_name.as_str())
                .collect();
            let remote: Vec<&str> = r
                .target_columns
                .iter()
                .map(|&i| target.columns[i].api_name.as_str())
                .collect();
            let kind = match r.kind {
                RelationKind::Forward => "forward",
                RelationKind::Reverse => "reverse",
            };
            format!(
                "{} {kind} {}({} → {})",
                r.name,
                r.target_table,
                local.join(","),
                remote.join(",")
            )
        })
        .collect()
}

const FULL: &str = "\
# reflexdb.yaml
version: 1
where: tenant_id = 42
where_columns: [tenant_id]
tables:
  - name: posts
    alias: articles
    columns:
      - id
      - author_id
      - title
      - tenant_id
    where: tenant_id = 42 AND published
    relations:
      exclude: [author]
    field_aliases:
      title: headline
    field_notes:
      title: \"Shown on the front page\"
  - name: users
    relations: {include: []}
    reverse_relations:
      exclude:
        - comments
  - name: comments
";

// ---------------------------------------------------------------- parsing

#[test]
fn parses_every_key_with_lines() {
    let config = parse(FULL);
    assert_eq!(config.version, 1);
    assert_eq!(config.pg_schema, None);
    assert_eq!(config.where_sql.as_deref(), Some("tenant_id = 42"));
    assert_eq!(config.where_columns, vec!["tenant_id"]);
    assert_eq!(config.tables.len(), 3);
    let posts = &config.tables[0];
    assert_eq!(posts.name, "posts");
    assert_eq!(posts.alias.as_deref(), Some("articles"));
    assert_eq!(
        posts.columns.as_deref(),
        Some(
            &[
                "id".to_string(),
                "author_id".into(),
                "title".into(),
                "tenant_id".into()
            ][..]
        )
    );
    assert_eq!(
        posts.where_sql.as_deref(),
        Some("tenant_id = 42 AND published")
    );
    assert_eq!(posts.relations_include, None);
    assert_eq!(posts.relations_exclude, vec!["author"]);
    assert_eq!(
        posts.field_aliases.get("title").map(String::as_str),
        Some("headline")
    );
    assert_eq!(
        posts.field_notes.get("title").map(String::as_str),
        Some("Shown on the front page")
    );
    let users = &config.tables[1];
    assert_eq!(users.relations_include, Some(vec![]));
    assert_eq!(users.reverse_relations_exclude, vec!["comments"]);
    assert_eq!(
        config.tables[2],
        TableConfig {
            name: "comments".into(),
            ..TableConfig::default()
        }
    );

    assert_eq!(config.line("version"), Some(2));
    assert_eq!(config.line("where_columns[0]"), Some(4));
    assert_eq!(config.line("tables[0]"), Some(6));
    assert_eq!(config.line("tables[0].columns"), Some(8));
    assert_eq!(config.line("tables[0].columns[2]"), Some(11));
    assert_eq!(config.line("tables[0].relations.exclude[0]"), Some(15));
    assert_eq!(config.line("tables[0].field_aliases.title"), Some(17));
    assert_eq!(config.line("tables[0].field_notes.title"), Some(19));
    assert_eq!(config.line("tables[1].relations.include"), Some(21));
    assert_eq!(
        config.line("tables[1].reverse_relations.exclude[0]"),
        Some(24)
    );
    assert_eq!(config.line("tables[2].name"), Some(25));
}

#[test]
fn minimal_and_flow_style_configs_parse() {
    let config = parse("version: 1\n");
    assert_eq!(
        config,
        SchemaConfig {
            version: 1,
            lines: config.lines.clone(),
            ..SchemaConfig::default()
        }
    );
    let config = parse("{version: 1, pg_schema: app, tables: [{name: a, columns: [id, b]}]}");
    assert_eq!(config.pg_schema.as_deref(), Some("app"));
    assert_eq!(config.tables[0].columns.as_ref().map(Vec::len), Some(2));
    // JSON is YAML too.
    let config = parse(r#"{"version": 1, "tables": [{"name": "a", "alias": "b"}]}"#);
    assert_eq!(config.tables[0].alias.as_deref(), Some("b"));
}

#[test]
fn empty_values_mean_absent() {
    let config = parse(
        "version: 1\nwhere:\ntables:\n  - name: a\n    alias:\n    columns:\n    relations:\n",
    );
    assert_eq!(config.where_sql, None);
    assert_eq!(
        config.tables[0],
        TableConfig {
            name: "a".into(),
            ..TableConfig::default()
        }
    );
}

#[test]
fn yaml_syntax_errors_have_their_line() {
    one_error(
        "version: 1\ntables:\n  - name: a\n   alias: b\n",
        4,
        &["invalid YAML"],
    );
    one_error(
        "version: 1\nwhere_columns: [a\n",
        3,
        &["invalid YAML", "flow sequence (line 2)"],
    );
}

#[test]
fn yaml_errors_drop_columns_from_the_message() {
    let errors = parse_err("a: [b\n");
    assert!(!errors[0].message.contains("column"), "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        format!("line {}: {}", errors[0].line, errors[0].message)
    );
}

#[test]
fn duplicate_keys_name_both_lines() {
    let errors =
        parse_err("version: 1\ntables:\n  - name: a\n    alias: b\n    alias: c\nversion: 1\n");
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(errors[0].line, 5);
    assert!(
        errors[0]
            .message
            .contains("`tables[0].alias` is given twice (first at line 4)"),
        "{errors:?}"
    );
    assert_eq!(errors[1].line, 6);
}

#[test]
fn empty_file_and_wrong_top_level() {
    one_error("", 1, &["empty", "`version: 1`"]);
    one_error("# only a comment\n", 1, &["empty"]);
    one_error("- version: 1\n", 1, &["expected a mapping", "found a list"]);
    one_error("hello\n", 1, &["found a string"]);
}

#[test]
fn version_is_required_and_must_be_1() {
    one_error("tables:\n  - name: a\n", 1, &["missing `version: 1`"]);
    one_error(
        "# x\nversion: 2\n",
        2,
        &["unsupported `version: 2`", "only version is 1"],
    );
    one_error(
        "version: \"1\"\n",
        1,
        &["must be the number 1", "found a string"],
    );
    one_error("version:\n", 1, &["must be the number 1", "found nothing"]);
}

#[test]
fn unknown_keys_name_the_key_and_the_allowed_ones() {
    one_error(
        "version: 1\ntabels:\n  - name: a\n",
        2,
        &[
            "unknown key `tabels` at the top level",
            "did you mean `tables`?",
            "allowed keys: version, pg_schema, where, where_columns, expose, tables",
        ],
    );
    one_error(
        "version: 1\ntables:\n  - name: posts\n    colums: [id]\n",
        4,
        &["unknown key `colums` in table `posts`", "did you mean `columns`?", "allowed keys: name, alias, columns, where, relations, reverse_relations, field_aliases, field_notes"],
    );
    one_error(
        "version: 1\ntables:\n  - name: posts\n    relations:\n      includes: [a]\n",
        5,
        &[
            "unknown key `includes` in `relations` of table `posts`",
            "did you mean `include`?",
            "allowed keys: include, exclude, aliases",
        ],
    );
    one_error(
        "version: 1\ntables:\n  - name: posts\n    reverse_relations:\n      include: [a]\n",
        5,
        &[
            "unknown key `include` in `reverse_relations` of table `posts`",
            "allowed keys: exclude",
        ],
    );
    one_error(
        "version: 1\n1: x\n",
        1,
        &["keys must be names", "found a number"],
    );
}

#[test]
fn value_types_are_checked() {
    one_error(
        "version: 1\npg_schema: [a]\n",
        2,
        &["`pg_schema` must be a string, found a list"],
    );
    one_error(
        "version: 1\nwhere: 5\n",
        2,
        &["`where` must be a string, found the number 5", "quote it"],
    );
    one_error(
        "version: 1\nwhere: \"  \"\n",
        2,
        &["`where` must not be empty"],
    );
    one_error(
        "version: 1\nwhere: x\nwhere_columns: tenant_id\n",
        3,
        &["`where_columns` must be a list of names", "found a string"],
    );
    one_error(
        "version: 1\ntables: posts\n",
        2,
        &["`tables` must be a list of table entries", "found a string"],
    );
    one_error(
        "version: 1\ntables:\n  - posts\n",
        3,
        &["table entry 1 must be a mapping", "found a string"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    alias: true\n",
        4,
        &["`alias` of table `a` must be a string, found the boolean true"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    columns:\n      - id\n      - 2020\n",
        6,
        &[
            "`columns` of table `a`: item 2 must be a string, found the number 2020",
            "quote it: \"2020\"",
        ],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    columns:\n      - id\n      -\n",
        6,
        &["item 2 is empty"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    relations: [x]\n",
        4,
        &["`relations` of table `a` must be a mapping", "found a list"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    reverse_relations: x\n",
        4,
        &["must be a mapping"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    relations:\n      exclude: x\n",
        5,
        &["`relations.exclude` of table `a` must be a list"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    field_aliases: [x]\n",
        4,
        &["`field_aliases` of table `a` must be a mapping"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    field_notes:\n      x: 1\n",
        5,
        &["`field_notes` of table `a`: `x` must be a string, found the number 1"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    field_notes:\n      x:\n",
        5,
        &["`x` has no value"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    field_aliases:\n      1: x\n",
        4,
        &["keys must be column names"],
    );
}

#[test]
fn tables_need_a_name_and_an_entry() {
    one_error(
        "version: 1\ntables:\n  - alias: x\n",
        3,
        &["table entry 1 has no `name`"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n  - name:\n    alias: b\n",
        4,
        &["table entry 2 has no `name`"],
    );
    one_error(
        "version: 1\ntables:\n  - name: [a]\n",
        3,
        &["`name` of table entry 1 must be a string"],
    );
    one_error(
        "version: 1\ntables: []\n",
        2,
        &["`tables` is empty", "remove the key to expose every table"],
    );
    one_error("version: 1\ntables:\n", 2, &["`tables` is empty"]);
}

#[test]
fn duplicate_tables_and_api_names() {
    one_error(
        "version: 1\ntables:\n  - name: posts\n  - name: users\n  - name: posts\n",
        5,
        &["table `posts` is listed twice (first at line 3)", "merge"],
    );
    one_error(
        "version: 1\ntables:\n  - name: posts\n  - name: articles\n    alias: posts\n",
        5,
        &[
            "tables `posts` (line 3) and `articles` would both be exposed as `posts`",
            "another `alias`",
        ],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    alias: x\n  - name: b\n    alias: x\n",
        6,
        &["tables `a` (line 3) and `b` would both be exposed as `x`"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    alias: my table\n",
        4,
        &["alias `my table` of table `a` is not a valid API name"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    alias: 2fa\n",
        4,
        &["not a valid API name", "not starting with a digit"],
    );
}

#[test]
fn relations_include_and_exclude_are_exclusive() {
    one_error(
        "version: 1\ntables:\n  - name: a\n    relations:\n      include: [x]\n      exclude: [y]\n",
        4,
        &["`relations.include` and `relations.exclude` of table `a` are mutually exclusive"],
    );
    // An empty exclude next to include changes nothing and is accepted.
    parse("version: 1\ntables:\n  - name: a\n    relations: {include: [x], exclude: []}\n");
}

#[test]
fn column_lists_and_field_maps_are_checked() {
    one_error(
        "version: 1\ntables:\n  - name: a\n    columns: []\n",
        4,
        &["`columns` of table `a` is empty"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    columns:\n      - id\n      - b\n      - id\n",
        7,
        &["column `id` is listed twice in `columns` of table `a`"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    columns: [id]\n    field_aliases:\n      b: c\n",
        6,
        &["`field_aliases` of table `a` renames column `b`, which is not in its `columns`"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    columns: [id]\n    field_notes:\n      b: c\n",
        6,
        &["`field_notes` of table `a` describes column `b`, which is not in its `columns`"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    field_aliases:\n      b: c-d\n",
        5,
        &["field alias `c-d` of column `b` (table `a`) is not a valid API name"],
    );
    one_error(
        "version: 1\ntables:\n  - name: a\n    field_aliases:\n      b: x\n      c: x\n",
        6,
        &["columns `b` and `c` of table `a` both have the field alias `x`"],
    );
}

#[test]
fn where_columns_need_a_where() {
    one_error(
        "version: 1\nwhere_columns: [tenant_id]\n",
        2,
        &["`where_columns` has no effect without a global `where`"],
    );
    one_error(
        "version: 1\nwhere: x\nwhere_columns:\n  - a\n  - a\n",
        5,
        &["column `a` is listed twice in `where_columns`"],
    );
}

#[test]
fn every_error_is_reported_at_once_in_line_order() {
    let text = "\
version: 3
pg_schema: [x]
tables:
  - name: posts
    colums: [id]
    alias: bad alias
  - alias: x
  - name: posts
    relations:
      include: [a]
      exclude: [b]
unknown: 1
";
    let errors = parse_err(text);
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![1, 2, 5, 6, 7, 8, 12], "{errors:#?}");
}

#[test]
fn flow_style_errors_point_at_the_parent_key() {
    one_error(
        "version: 1\ntables:\n  - name: a\n    columns: [id, 5]\n",
        4,
        &["item 2 must be a string"],
    );
    one_error(
        "version: 1\ntables: [{name: a}, {name: a}]\n",
        2,
        &["listed twice"],
    );
}

// ---------------------------------------------------------------- building

#[test]
fn without_config_every_table_and_column_is_exposed() {
    let source = blog();
    let manifest = build_manifest(&source, None).unwrap();
    assert_eq!(manifest.version, MANIFEST_VERSION);
    assert_eq!(manifest.backend, Backend::Mysql);
    assert_eq!(manifest.database, "blog");
    assert_eq!(manifest.pg_schema, None);
    let names: Vec<&str> = manifest
        .tables
        .iter()
        .map(|t| t.api_name.as_str())
        .collect();
    assert_eq!(
        names,
        vec!["comments", "post_tags", "posts", "tags", "users"]
    );
    let posts = t(&manifest, "posts");
    assert_eq!(posts.source_name, "posts");
    assert_eq!(
        column_names(posts),
        vec!["id", "author_id", "title", "body", "tenant_id"]
    );
    assert_eq!(posts.primary_key, vec![0]);
    assert_eq!(posts.where_sql, None);
    assert_eq!(posts.estimated_bytes, Some(1005));
    assert_eq!(
        posts.columns[2].ty,
        ColumnType::Text {
            case_insensitive: true
        }
    );
    assert_eq!(posts.columns[2].source_type, "text");
    assert_eq!(posts.columns[2].note, None);
    assert!(t(&manifest, "post_tags").primary_key.is_empty());

    assert_eq!(
        relations(&manifest, "posts"),
        vec![
            "author forward users(author_id → id)",
            "comments reverse comments(id → post_id)",
            "post_tags reverse post_tags(id → post_id)",
        ]
    );
    assert_eq!(
        relations(&manifest, "users"),
        vec![
            "comments reverse comments(id → user_id)",
            "posts reverse posts(id → author_id)",
        ]
    );
    assert_eq!(
        relations(&manifest, "comments"),
        vec![
            "post forward posts(post_id → id)",
            "user forward users(user_id → id)",
        ]
    );
    assert_eq!(
        relations(&manifest, "post_tags"),
        vec![
            "post forward posts(post_id → id)",
            "tag forward tags(tag_id → id)",
        ]
    );
    // A config with only `version` is the same as none.
    assert_eq!(build(&source, "version: 1\n"), manifest);
}

#[test]
fn pg_schema_is_recorded_for_postgres_only() {
    let mut source = blog();
    source.backend = Backend::Postgres;
    assert_eq!(
        build_manifest(&source, None).unwrap().pg_schema.as_deref(),
        Some("public")
    );
    assert_eq!(
        build(&source, "version: 1\npg_schema: app\n")
            .pg_schema
            .as_deref(),
        Some("app")
    );
    let source = blog();
    one_build_error(
        &source,
        "version: 1\n\npg_schema: app\n",
        Some(3),
        &["`pg_schema` applies to PostgreSQL sources only", "mysql"],
    );
}

#[test]
fn listed_tables_only_and_relations_to_others_dropped() {
    let source = blog();
    let manifest = build(
        &source,
        "version: 1\ntables:\n  - name: posts\n  - name: comments\n",
    );
    let names: Vec<&str> = manifest
        .tables
        .iter()
        .map(|t| t.api_name.as_str())
        .collect();
    assert_eq!(names, vec!["comments", "posts"]);
    // users and post_tags are not exposed: their relations disappear without an error.
    assert_eq!(
        relations(&manifest, "posts"),
        vec!["comments reverse comments(id → post_id)"]
    );
    assert_eq!(
        relations(&manifest, "comments"),
        vec!["post forward posts(post_id → id)"]
    );
}

#[test]
fn unknown_tables_suggest_a_name() {
    let source = blog();
    one_build_error(
        &source,
        "version: 1\ntables:\n  - name: posts\n  - name: usres\n",
        Some(4),
        &[
            "table `usres` does not exist on the source (database `blog`)",
            "did you mean `users`?",
        ],
    );
    one_build_error(
        &source,
        "version: 1\ntables:\n  - name: zzz\n",
        Some(3),
        &["`zzz` does not exist"],
    );
    let mut pg = blog();
    pg.backend = Backend::Postgres;
    one_build_error(
        &pg,
        "version: 1\ntables:\n  - name: Users\n",
        Some(3),
        &[
            "(database `blog`, schema `public`)",
            "did you mean `users`?",
        ],
    );
}

#[test]
fn column_allow_list() {
    let source = blog();
    let manifest = build(
        &source,
        "version: 1\ntables:\n  - name: posts\n    columns: [title, id]\n  - name: users\n",
    );
    let posts = t(&manifest, "posts");
    // Source order, not list order.
    assert_eq!(column_names(posts), vec!["id", "title"]);
    assert_eq!(posts.primary_key, vec![0]);
    // author_id is not exposed: no relation between posts and users.
    assert!(posts.relations.is_empty());
    assert!(t(&manifest, "users").relations.is_empty());

    one_build_error(
        &source,
        "version: 1\ntables:\n  - name: posts\n    columns:\n      - id\n      - titel\n",
        Some(6),
        &[
            "table `posts` has no column `titel`",
            "did you mean `title`?",
        ],
    );
}

#[test]
fn primary_key_columns_must_stay() {
    let source = blog();
    one_build_error(
        &source,
        "version: 1\ntables:\n  - name: posts\n    columns: [title]\n",
        Some(4),
        &[
            "`columns` of table `posts` leaves out `id`, part of its primary key",
            "add it to `columns`",
        ],
    );
    let composite = schema(
        Backend::Sqlite,
        vec![table(
            "pairs",
            vec![int("a"), int("b"), text("c")],
            &["a", "b"],
            vec![],
        )],
    );
    one_build_error(
        &composite,
        "version: 1\ntables:\n  - name: pairs\n    columns: [c]\n",
        Some(4),
        &["leaves out `a` and `b`", "add them"],
    );
    // A table without a primary key can keep any columns.
    build(
        &source,
        "version: 1\ntables:\n  - name: post_tags\n    columns: [tag_id]\n",
    );
}

#[test]
fn field_aliases_and_notes() {
    let source = blog();
    let manifest = build(
        &source,
        "version: 1\ntables:\n  - name: posts\n    field_aliases:\n      title: headline\n      author_id: writer_id\n    field_notes:\n      body: Markdown\n  - name: users\n",
    );
    let posts = t(&manifest, "posts");
    assert_eq!(
        column_names(posts),
        vec!["id", "writer_id", "headline", "body", "tenant_id"]
    );
    assert_eq!(posts.columns[2].source_name, "title");
    assert_eq!(posts.column_index("headline"), Some(2));
    assert_eq!(posts.columns[3].note.as_deref(), Some("Markdown"));
    // The forward relation is named after the column's API name.
    assert_eq!(
        relations(&manifest, "posts"),
        vec!["writer forward users(writer_id → id)"]
    );

    one_build_error(
        &source,
        "version: 1\ntables:\n  - name: posts\n    field_aliases:\n      titel: headline\n",
        Some(5),
        &[
            "`field_aliases` of table `posts` names column `titel`, which the table does not have",
            "did you mean `title`?",
        ],
    );
    one_build_error(
        &source,
        "version: 1\ntables:\n  - name: posts\n    field_notes:\n      nope: x\n",
        Some(5),
        &["`field_notes` of table `posts` names column `nope`"],
    );
    one_build_error(
        &source,
        "version: 1\ntables:\n  - name: posts\n    field_aliases:\n      body: title\n",
        Some(5),
        &["field alias `title` of column `body` (table `posts`) is the name of another column"],
    );
    // Swapping two names is fine.
    let manifest = build(
        &source,
        "version: 1\ntables:\n  - name: posts\n    field_aliases: {body: title, title: body}\n",
    );
    assert_eq!(
        column_names(t(&manifest, "posts")),
        vec!["id", "author_id", "body", "title", "tenant_id"]
    );
}

#[test]
fn global_and_table_where() {
    let source = blog();
    let manifest = build(
        &source,
        "version: 1\nwhere: tenant_id = 7\nwhere_columns: [tenant_id]\ntables:\n  - name: posts\n    where: published\n  - name: comments\n  - name: tags\n",
    );
    assert_eq!(
        t(&manifest, "posts").where_sql.as_deref(),
        Some("published")
    );
    assert_eq!(
        t(&manifest, "comments").where_sql.as_deref(),
        Some("tenant_id = 7")
    );
    assert_eq!(t(&manifest, "tags").where_sql, None);

    // Without where_columns the global predicate applies to every table.
    let manifest = build(&source, "version: 1\nwhere: 1 = 1\n");
    assert!(manifest
        .tables
        .iter()
        .all(|t| t.where_sql.as_deref() == Some("1 = 1")));

    one_build_error(
        &source,
        "version: 1\nwhere: x\nwhere_columns:\n  - tenant_id\n  - tenantid\n",
        Some(5),
        &[
            "`where_columns` names `tenantid`, a column no exposed table has",
            "did you mean `tenant_id`?",
        ],
    );
    one_build_error(
        &source,
        "version: 1\nwhere: x\nwhere_columns: [tenant_id, tag_id]\n",
        Some(3),
        &[
            "the global `where` applies to no exposed table",
            "tenant_id, tag_id",
        ],
    );
}

#[test]
fn relation_names_strip_id_only() {
    assert_eq!(apply::strip_id("author_id"), "author");
    assert_eq!(apply::strip_id("AUTHOR_ID"), "AUTHOR");
    assert_eq!(apply::strip_id("user"), "user");
    assert_eq!(apply::strip_id("userid"), "userid");
    assert_eq!(apply::strip_id("_id"), "_id");
    assert_eq!(apply::strip_id("id"), "id");
}

/// orders(id, owner) with `owner` → users: the relation named `owner` clashes with its column.
fn user_column_schema() -> SourceSchema {
    schema(
        Backend::Sqlite,
        vec![
            table("users", vec![int("id"), text("name")], &["id"], vec![]),
            table(
                "orders",
                vec![int("id"), int("user"), int("total")],
                &["id"],
                vec![fk(&["user"], "users", &["id"])],
            ),
        ],
    )
}

#[test]
fn fk_column_without_id_keeps_its_name_and_the_relation_gets_another() {
    let source = user_column_schema();
    let manifest = build_manifest(&source, None).unwrap();
    // The column keeps its name; the relation is named after it.
    assert_eq!(
        relations(&manifest, "orders"),
        vec!["user_by_user forward users(user → id)"]
    );
    assert_eq!(manifest.warnings.len(), 1, "{:#?}", manifest.warnings);
    let warning = &manifest.warnings[0];
    for part in [
        "table `orders`: relation `user` (orders(user) → users(id)) was named `user_by_user` automatically because `user` is taken by column `user`",
        "add `relations: {aliases: {user: user_by_user}}` to the entry of table `orders`",
    ] {
        assert!(warning.contains(part), "{warning:?} lacks {part:?}");
    }
    // Either old fix still works, without a warning.
    let manifest = build(&source, "version: 1\ntables:\n  - name: users\n  - name: orders\n    field_aliases: {user: user_id}\n");
    assert_eq!(
        column_names(t(&manifest, "orders")),
        vec!["id", "user_id", "total"]
    );
    assert_eq!(
        relations(&manifest, "orders"),
        vec!["user forward users(user_id → id)"]
    );
    assert!(manifest.warnings.is_empty(), "{:#?}", manifest.warnings);
    let manifest = build(&source, "version: 1\ntables:\n  - name: users\n  - name: orders\n    relations: {exclude: [user]}\n");
    assert!(t(&manifest, "orders").relations.is_empty());
    assert_eq!(
        relations(&manifest, "users"),
        vec!["orders reverse orders(id → user)"]
    );
    // The warning's own line pins the name (and silences the warning); another alias renames.
    let manifest = build(&source, "version: 1\nexpose: all\ntables:\n  - name: orders\n    relations: {aliases: {user: customer}}\n");
    assert_eq!(
        relations(&manifest, "orders"),
        vec!["customer forward users(user → id)"]
    );
    assert!(manifest.warnings.is_empty(), "{:#?}", manifest.warnings);
    // An alias that is a column's name is the user's own clash: an error, at its line.
    one_build_error(
        &source,
        "version: 1\nexpose: all\ntables:\n  - name: orders\n    relations:\n      aliases:\n        user: total\n",
        Some(7),
        &["table `orders`: the alias `total` of relation `user` (orders(user) → users(id)) is also the name of column `total`: pick another alias"],
    );
}

/// shops, products (shop_id, sku) and order_lines (shop_id, sku) → products(shop_id, sku).
fn composite_schema() -> SourceSchema {
    schema(
        Backend::Postgres,
        vec![
            table("shops", vec![int("id")], &["id"], vec![]),
            table(
                "products",
                vec![text("name"), int("shop_id"), text("sku")],
                &["shop_id", "sku"],
                vec![fk(&["shop_id"], "shops", &["id"])],
            ),
            table(
                "order_lines",
                vec![int("id"), text("sku"), int("qty"), int("shop_id")],
                &["id"],
                vec![fk(&["shop_id", "sku"], "products", &["shop_id", "sku"])],
            ),
        ],
    )
}

#[test]
fn composite_foreign_keys_are_named_after_the_referenced_table() {
    let source = composite_schema();
    let manifest = build_manifest(&source, None).unwrap();
    assert_eq!(t(&manifest, "products").primary_key, vec![1, 2]);
    assert_eq!(
        relations(&manifest, "order_lines"),
        vec!["products forward products(shop_id,sku → shop_id,sku)"]
    );
    let lines = t(&manifest, "order_lines");
    assert_eq!(lines.relations[0].local_columns, vec![3, 1]);
    assert_eq!(lines.relations[0].target_columns, vec![1, 2]);
    assert_eq!(
        relations(&manifest, "products"),
        vec![
            "shop forward shops(shop_id → id)",
            "order_lines reverse order_lines(shop_id,sku → shop_id,sku)",
        ]
    );
    // The referenced table's alias renames the relation.
    let manifest = build(
        &source,
        "version: 1\ntables:\n  - name: products\n    alias: product\n  - name: order_lines\n",
    );
    assert_eq!(
        relations(&manifest, "order_lines"),
        vec!["product forward product(shop_id,sku → shop_id,sku)"]
    );
    // One column of the key not exposed: no relation.
    let manifest = build(&source, "version: 1\ntables:\n  - name: products\n  - name: order_lines\n    columns: [id, shop_id, qty]\n");
    assert!(t(&manifest, "order_lines").relations.is_empty());
}

/// comments with two foreign keys to users.
fn two_fk_schema() -> SourceSchema {
    schema(
        Backend::Mysql,
        vec![
            table("users", vec![int("id"), text("name")], &["id"], vec![]),
            table(
                "comments",
                vec![int("id"), int("author_id"), int("editor_id"), text("body")],
                &["id"],
                vec![
                    fk(&["author_id"], "users", &["id"]),
                    fk(&["editor_id"], "users", &["id"]),
                ],
            ),
        ],
    )
}

#[test]
fn two_foreign_keys_to_one_table_get_distinct_reverse_names() {
    let source = two_fk_schema();
    let manifest = build_manifest(&source, None).unwrap();
    // By foreign-key column: author_id < editor_id.
    assert_eq!(
        relations(&manifest, "users"),
        vec![
            "comments reverse comments(id → author_id)",
            "comments_by_editor_id reverse comments(id → editor_id)",
        ]
    );
    assert_eq!(
        relations(&manifest, "comments"),
        vec![
            "author forward users(author_id → id)",
            "editor forward users(editor_id → id)",
        ]
    );
    assert_eq!(manifest.warnings.len(), 1, "{:#?}", manifest.warnings);
    let warning = &manifest.warnings[0];
    for part in [
        "table `users`: reverse relation `comments` (from comments(editor_id) → users(id)) was named `comments_by_editor_id` automatically because `comments` is taken by reverse relation `comments` (from comments(author_id) → users(id))",
        "add `reverse_relations: {aliases: {comments.editor: comments_by_editor_id}}` to the entry of table `users`",
        "with `expose: all`, no other table needs an entry",
    ] {
        assert!(warning.contains(part), "{warning:?} lacks {part:?}");
    }
    // Deterministic: the same source in another table/foreign-key order gives the same names.
    let mut shuffled = two_fk_schema();
    shuffled.tables.reverse();
    for t in &mut shuffled.tables {
        t.foreign_keys.reverse();
    }
    let reordered = build_manifest(&shuffled, None).unwrap();
    for table in ["users", "comments"] {
        let mut a = relations(&manifest, table);
        let mut b = relations(&reordered, table);
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
    assert_eq!(reordered.warnings, manifest.warnings);

    // Excluding one keeps the other under the plain name, as before.
    let config = "version: 1\ntables:\n  - name: comments\n  - name: users\n    reverse_relations:\n      exclude: [comments.editor]\n";
    let manifest = build(&source, config);
    assert_eq!(
        relations(&manifest, "users"),
        vec!["comments reverse comments(id → author_id)"]
    );
    assert!(manifest.warnings.is_empty());
    let manifest = build(&source, "version: 1\ntables:\n  - name: comments\n  - name: users\n    reverse_relations: {exclude: [comments]}\n");
    assert!(t(&manifest, "users").relations.is_empty());

    // Aliases win over generated names, in both orders.
    let manifest = build(&source, "version: 1\nexpose: all\ntables:\n  - name: users\n    reverse_relations:\n      aliases: {comments.author: authored, comments.editor: edited}\n");
    assert_eq!(
        relations(&manifest, "users"),
        vec![
            "authored reverse comments(id → author_id)",
            "edited reverse comments(id → editor_id)",
        ]
    );
    assert!(manifest.warnings.is_empty());
    // Aliasing the second one lets the first keep the plain name.
    let manifest = build(&source, "version: 1\nexpose: all\ntables:\n  - name: users\n    reverse_relations: {aliases: {comments.author: authored}}\n");
    assert_eq!(
        relations(&manifest, "users"),
        vec![
            "authored reverse comments(id → author_id)",
            "comments reverse comments(id → editor_id)",
        ]
    );
    // The plain name is ambiguous for an alias.
    one_build_error(
        &source,
        "version: 1\nexpose: all\ntables:\n  - name: users\n    reverse_relations:\n      aliases:\n        comments: c\n",
        Some(7),
        &["`reverse_relations.aliases` of table `users` names `comments`, the name of 2 reverse relations: name one of them with `comments.author` or `comments.editor`"],
    );
    // Two aliases with one name: an error when saving.
    one_error(
        "version: 1\ntables:\n  - name: users\n    reverse_relations:\n      aliases:\n        comments.author: c\n        comments.editor: c\n",
        7,
        &["reverse relation `comments.author` and reverse relation `comments.editor` of table `users` both have the alias `c`"],
    );
    one_error(
        "version: 1\ntables:\n  - name: users\n    relations: {aliases: {author: 1x}}\n",
        4,
        &["alias `1x` of relation `author` (table `users`) is not a valid API name"],
    );
    one_build_error(
        &source,
        "version: 1\nexpose: all\ntables:\n  - name: users\n    reverse_relations:\n      aliases:\n        coments.author: c\n",
        Some(7),
        &["names `coments.author`, which is not one of its reverse relations", "did you mean `comments.author`?"],
    );
}

#[test]
fn relation_and_column_clash_renames_the_relation() {
    // users has a column `posts` and the reverse relation `posts`.
    let source = schema(
        Backend::Mysql,
        vec![
            table("users", vec![int("id"), int("posts")], &["id"], vec![]),
            table(
                "posts",
                vec![int("id"), int("author_id")],
                &["id"],
                vec![fk(&["author_id"], "users", &["id"])],
            ),
        ],
    );
    let manifest = build_manifest(&source, None).unwrap();
    assert_eq!(
        relations(&manifest, "users"),
        vec!["posts_by_author_id reverse posts(id → author_id)"]
    );
    assert!(manifest.warnings[0].contains("because `posts` is taken by column `posts`"));
    let manifest = build(&source, "version: 1\ntables:\n  - name: users\n    field_aliases: {posts: post_count}\n  - name: posts\n");
    assert_eq!(
        relations(&manifest, "users"),
        vec!["posts reverse posts(id → author_id)"]
    );
    let manifest = build(
        &source,
        "version: 1\ntables:\n  - name: users\n  - name: posts\n    alias: articles\n",
    );
    assert_eq!(
        relations(&manifest, "users"),
        vec!["articles reverse articles(id → author_id)"]
    );
    // A generated name that is taken too gets a number.
    let source = schema(
        Backend::Mysql,
        vec![
            table(
                "users",
                vec![int("id"), int("posts"), int("posts_by_author_id")],
                &["id"],
                vec![],
            ),
            table(
                "posts",
                vec![int("id"), int("author_id")],
                &["id"],
                vec![fk(&["author_id"], "users", &["id"])],
            ),
        ],
    );
    let manifest = build_manifest(&source, None).unwrap();
    assert_eq!(
        relations(&manifest, "users"),
        vec!["posts_by_author_id_2 reverse posts(id → author_id)"]
    );
}

#[test]
fn forward_relations_with_one_name() {
    let source = schema(
        Backend::Mysql,
        vec![
            table("users", vec![int("id")], &["id"], vec![]),
            table(
                "posts",
                vec![int("id"), int("user"), int("user_id")],
                &["id"],
                vec![fk(&["user_id"], "users", &["id"])],
            ),
        ],
    );
    // `user_id` → relation `user`, which is also a column name.
    let manifest = build_manifest(&source, None).unwrap();
    assert_eq!(
        relations(&manifest, "posts"),
        vec!["user_by_user_id forward users(user_id → id)"]
    );
    let source = schema(
        Backend::Mysql,
        vec![
            table("users", vec![int("id")], &["id"], vec![]),
            table(
                "posts",
                vec![int("id"), int("owner_id"), int("owner_ID")],
                &["id"],
                vec![
                    fk(&["owner_id"], "users", &["id"]),
                    fk(&["owner_ID"], "users", &["id"]),
                ],
            ),
        ],
    );
    // Two forward `owner` on posts, and two reverse `posts` on users.
    let manifest = build_manifest(&source, None).unwrap();
    assert_eq!(
        relations(&manifest, "posts"),
        vec![
            "owner_by_owner_id forward users(owner_id → id)",
            "owner forward users(owner_ID → id)",
        ]
    );
    assert_eq!(
        relations(&manifest, "users"),
        vec![
            "posts reverse posts(id → owner_ID)",
            "posts_by_owner_id reverse posts(id → owner_id)",
        ]
    );
    assert_eq!(manifest.warnings.len(), 2, "{:#?}", manifest.warnings);
    assert!(manifest.warnings.iter().any(|w| w.contains(
        "to change it, rename the foreign-key column with `field_aliases: {owner_id: <name>_id}` on table `posts`"
    )));
    one_build_error(
        &source,
        "version: 1\nexpose: all\ntables:\n  - name: posts\n    relations:\n      aliases:\n        owner: o\n",
        Some(7),
        &["`relations.aliases` of table `posts` names `owner`, the name of 2 relations"],
    );
}

/// Sakila-like: film has two foreign keys to language; staff → store and store → staff.
fn sakila_schema() -> SourceSchema {
    schema(
        Backend::Postgres,
        vec![
            table(
                "language",
                vec![int("language_id"), text("name")],
                &["language_id"],
                vec![],
            ),
            table(
                "film",
                vec![
                    int("film_id"),
                    text("title"),
                    int("original_language_id"),
                    int("language_id"),
                ],
                &["film_id"],
                vec![
                    fk(&["original_language_id"], "language", &["language_id"]),
                    fk(&["language_id"], "language", &["language_id"]),
                ],
            ),
            table(
                "store",
                vec![int("store_id"), int("manager_staff_id")],
                &["store_id"],
                vec![fk(&["manager_staff_id"], "staff", &["staff_id"])],
            ),
            table(
                "staff",
                vec![int("staff_id"), int("store_id"), text("name")],
                &["staff_id"],
                vec![fk(&["store_id"], "store", &["store_id"])],
            ),
        ],
    )
}

#[test]
fn sakila_builds_without_a_config() {
    let source = sakila_schema();
    let manifest = build_manifest(&source, None).unwrap();
    assert_eq!(
        relations(&manifest, "language"),
        vec![
            "film reverse film(language_id → language_id)",
            "film_by_original_language_id reverse film(language_id → original_language_id)",
        ]
    );
    assert_eq!(
        relations(&manifest, "film"),
        vec![
            "original_language forward language(original_language_id → language_id)",
            "language forward language(language_id → language_id)",
        ]
    );
    // A forward relation keeps its name before a reverse one.
    assert_eq!(
        relations(&manifest, "staff"),
        vec![
            "store forward store(store_id → store_id)",
            "store_by_manager_staff_id reverse store(staff_id → manager_staff_id)",
        ]
    );
    assert_eq!(
        relations(&manifest, "store"),
        vec![
            "manager_staff forward staff(manager_staff_id → staff_id)",
            "staff reverse staff(store_id → store_id)",
        ]
    );
    assert_eq!(manifest.warnings.len(), 2, "{:#?}", manifest.warnings);
    assert!(manifest.warnings[0].starts_with("table `language`: reverse relation `film` (from film(original_language_id) → language(language_id)) was named `film_by_original_language_id` automatically"), "{:#?}", manifest.warnings);
    assert!(manifest.warnings[1].contains("add `reverse_relations: {aliases: {store: store_by_manager_staff_id}}` to the entry of table `staff`"), "{:#?}", manifest.warnings);

    // The fix is one table entry: the others stay exposed as they are.
    let manifest = build(
        &source,
        "version: 1\nexpose: all\ntables:\n  - name: language\n    reverse_relations: {aliases: {film.original_language: original_films}}\n",
    );
    let names: Vec<&str> = manifest
        .tables
        .iter()
        .map(|t| t.api_name.as_str())
        .collect();
    assert_eq!(names, vec!["film", "language", "staff", "store"]);
    assert_eq!(
        relations(&manifest, "language"),
        vec![
            "film reverse film(language_id → language_id)",
            "original_films reverse film(language_id → original_language_id)",
        ]
    );
    assert_eq!(manifest.warnings.len(), 1, "{:#?}", manifest.warnings);
    // Without `expose: all`, the one entry is the whole API (today's meaning of `tables`).
    let manifest = build(
        &source,
        "version: 1\ntables:\n  - name: language\n    reverse_relations: {aliases: {film.original_language: original_films}}\n",
    );
    assert_eq!(manifest.tables.len(), 1);
    assert!(t(&manifest, "language").relations.is_empty());
}

#[test]
fn expose_all() {
    let source = blog();
    let manifest = build(
        &source,
        "version: 1\nexpose: all\ntables:\n  - name: posts\n    alias: articles\n    columns: [id, author_id, title]\n",
    );
    let names: Vec<&str> = manifest
        .tables
        .iter()
        .map(|t| t.api_name.as_str())
        .collect();
    assert_eq!(
        names,
        vec!["articles", "comments", "post_tags", "tags", "users"]
    );
    assert_eq!(
        column_names(t(&manifest, "articles")),
        vec!["id", "author_id", "title"]
    );
    assert_eq!(
        relations(&manifest, "users"),
        vec![
            "articles reverse articles(id → author_id)",
            "comments reverse comments(id → user_id)",
        ]
    );
    // `expose: listed` is today's meaning, and the default.
    let listed = build(
        &source,
        "version: 1\nexpose: listed\ntables:\n  - name: tags\n",
    );
    assert_eq!(
        listed,
        build(&source, "version: 1\ntables:\n  - name: tags\n")
    );
    assert_eq!(listed.tables.len(), 1);
    // Without `tables`, every table either way.
    assert_eq!(build(&source, "version: 1\nexpose: all\n").tables.len(), 5);
    // Unknown tables, a value that is neither, an alias taking an unlisted table's name.
    one_build_error(
        &source,
        "version: 1\nexpose: all\ntables:\n  - name: tags\n  - name: usres\n",
        Some(5),
        &[
            "table `usres` does not exist on the source",
            "did you mean `users`?",
        ],
    );
    one_error(
        "version: 1\nexpose: everything\n",
        2,
        &[
            "`expose` must be `all`",
            "or `listed`",
            "found `everything`",
        ],
    );
    one_build_error(
        &source,
        "version: 1\nexpose: all\ntables:\n  - name: posts\n    alias: users\n",
        Some(5),
        &["tables `users` and `posts` would both be exposed as `users`"],
    );
}

#[test]
fn table_aliases_rename_reverse_relations_and_targets() {
    let source = blog();
    let manifest = build(
        &source,
        "version: 1\ntables:\n  - name: posts\n    alias: articles\n  - name: users\n    alias: people\n  - name: comments\n",
    );
    assert_eq!(
        relations(&manifest, "people"),
        vec![
            "articles reverse articles(id → author_id)",
            "comments reverse comments(id → user_id)",
        ]
    );
    assert_eq!(
        relations(&manifest, "articles"),
        vec![
            "author forward people(author_id → id)",
            "comments reverse comments(id → post_id)",
        ]
    );
    assert_eq!(
        relations(&manifest, "comments"),
        vec![
            "post forward articles(post_id → id)",
            "user forward people(user_id → id)",
        ]
    );
    assert_eq!(t(&manifest, "articles").source_name, "posts");
    let names: Vec<&str> = manifest
        .tables
        .iter()
        .map(|t| t.api_name.as_str())
        .collect();
    assert_eq!(names, vec!["articles", "comments", "people"]);
}

#[test]
fn self_references() {
    let source = schema(
        Backend::Sqlite,
        vec![table(
            "employees",
            vec![int("id"), int("manager_id")],
            &["id"],
            vec![fk(&["manager_id"], "employees", &["id"])],
        )],
    );
    let manifest = build_manifest(&source, None).unwrap();
    assert_eq!(
        relations(&manifest, "employees"),
        vec![
            "manager forward employees(manager_id → id)",
            "employees reverse employees(id → manager_id)",
        ]
    );
    assert!(manifest.warnings.is_empty());
    // A self-reference named like its table (`employee_id` in `employee`): forward keeps it.
    let source = schema(
        Backend::Sqlite,
        vec![table(
            "employee",
            vec![int("id"), int("employee_id")],
            &["id"],
            vec![fk(&["employee_id"], "employee", &["id"])],
        )],
    );
    let manifest = build_manifest(&source, None).unwrap();
    assert_eq!(
        relations(&manifest, "employee"),
        vec![
            "employee forward employee(employee_id → id)",
            "employee_by_employee_id reverse employee(id → employee_id)",
        ]
    );
    // An alias for the forward one only, on the same table.
    let manifest = build(
        &source,
        "version: 1\ntables:\n  - name: employee\n    relations: {aliases: {employee: boss}}\n",
    );
    assert_eq!(
        relations(&manifest, "employee"),
        vec![
            "boss forward employee(employee_id → id)",
            "employee reverse employee(id → employee_id)",
        ]
    );
    // A composite self-reference: forward and reverse are both named after the table.
    let source = schema(
        Backend::Sqlite,
        vec![table(
            "nodes",
            vec![int("tree"), int("id"), int("parent")],
            &["tree", "id"],
            vec![fk(&["tree", "parent"], "nodes", &["tree", "id"])],
        )],
    );
    let manifest = build_manifest(&source, None).unwrap();
    assert_eq!(
        relations(&manifest, "nodes"),
        vec![
            "nodes forward nodes(tree,parent → tree,id)",
            "nodes_by_tree_and_parent reverse nodes(tree,id → tree,parent)",
        ]
    );
}

#[test]
fn relations_include_and_exclude() {
    let source = blog();
    let all = "version: 1\ntables:\n  - name: users\n  - name: posts\n  - name: tags\n  - name: post_tags\n";
    let manifest = build(
        &source,
        &format!("{all}  - name: comments\n    relations:\n      include: [post]\n"),
    );
    assert_eq!(
        relations(&manifest, "comments"),
        vec!["post forward posts(post_id → id)"]
    );
    // The reverse relation of an excluded forward one stays: they are configured apart.
    assert!(relations(&manifest, "users")
        .contains(&"comments reverse comments(id → user_id)".to_string()));
    let manifest = build(
        &source,
        &format!("{all}  - name: comments\n    relations:\n      exclude: [post]\n"),
    );
    assert_eq!(
        relations(&manifest, "comments"),
        vec!["user forward users(user_id → id)"]
    );
    let manifest = build(
        &source,
        &format!("{all}  - name: comments\n    relations: {{include: []}}\n"),
    );
    assert!(relations(&manifest, "comments").is_empty());

    one_build_error(
        &source,
        &format!("{all}  - name: comments\n    relations:\n      include:\n        - post\n        - usr\n"),
        Some(11),
        &["`relations.include` of table `comments` names `usr`, which is not one of its relations", "did you mean `user`?", "(it has post, user)"],
    );
    one_build_error(
        &source,
        &format!("{all}  - name: comments\n    relations:\n      exclude: [author]\n"),
        Some(9),
        &["`relations.exclude` of table `comments` names `author`"],
    );
    one_build_error(
        &source,
        "version: 1\ntables:\n  - name: tags\n    relations: {exclude: [x]}\n",
        Some(4),
        &["(it has none)"],
    );
    // Excluding a relation that is gone anyway (users not exposed) is fine; including it is not.
    let manifest = build(
        &source,
        "version: 1\ntables:\n  - name: posts\n    relations: {exclude: [author]}\n",
    );
    assert!(t(&manifest, "posts").relations.is_empty());
    one_build_error(
        &source,
        "version: 1\ntables:\n  - name: posts\n    relations:\n      include: [author]\n",
        Some(5),
        &["relation `author` of table `posts` cannot be included: table `users` is not exposed"],
    );
    one_build_error(
        &source,
        "version: 1\ntables:\n  - name: users\n  - name: posts\n    columns: [id, title]\n    relations:\n      include: [author]\n",
        Some(7),
        &["cannot be included: column `author_id` of table `posts` is not exposed"],
    );
}

#[test]
fn reverse_relations_exclude() {
    let source = blog();
    let all = "version: 1\ntables:\n  - name: posts\n  - name: comments\n";
    let manifest = build(
        &source,
        &format!("{all}  - name: users\n    reverse_relations:\n      exclude: [posts]\n"),
    );
    assert_eq!(
        relations(&manifest, "users"),
        vec!["comments reverse comments(id → user_id)"]
    );
    // The forward relation stays.
    assert_eq!(
        relations(&manifest, "posts"),
        vec![
            "author forward users(author_id → id)",
            "comments reverse comments(id → post_id)"
        ]
    );
    // The qualified form picks one reverse relation.
    let manifest = build(
        &source,
        &format!("{all}  - name: users\n    reverse_relations:\n      exclude: [posts.author]\n"),
    );
    assert_eq!(
        relations(&manifest, "users"),
        vec!["comments reverse comments(id → user_id)"]
    );
    one_build_error(
        &source,
        &format!("{all}  - name: users\n    reverse_relations:\n      exclude:\n        - comments\n        - post\n"),
        Some(9),
        &["`reverse_relations.exclude` of table `users` names `post`, which is not one of its reverse relations", "did you mean `posts`?", "it has comments, comments.user, posts, posts.author"],
    );
    // Reverse relations from a table that is not exposed can be excluded without error.
    build(
        &source,
        "version: 1\ntables:\n  - name: users\n    reverse_relations: {exclude: [posts]}\n",
    );
}

#[test]
fn build_errors_come_all_at_once_with_lines() {
    let source = blog();
    let text = "\
version: 1
pg_schema: app
tables:
  - name: posts
    columns: [title, nope]
  - name: usres
  - name: comments
    field_notes:
      bodyy: x
";
    let errors = build_err(&source, text);
    let lines: Vec<Option<usize>> = errors.iter().map(|e| e.line).collect();
    assert_eq!(
        lines,
        vec![Some(2), Some(5), Some(5), Some(6), Some(9)],
        "{errors:#?}"
    );
    assert_eq!(
        errors[3].to_string(),
        format!("line 6: {}", errors[3].message)
    );
}

#[test]
fn configs_built_in_code_are_checked_too() {
    let source = blog();
    let config = SchemaConfig {
        version: 1,
        tables: vec![
            TableConfig {
                name: "posts".into(),
                ..TableConfig::default()
            },
            TableConfig {
                name: "posts".into(),
                ..TableConfig::default()
            },
        ],
        ..SchemaConfig::default()
    };
    let errors = build_manifest(&source, Some(&config)).unwrap_err();
    assert_eq!(
        errors,
        vec![BuildError {
            line: None,
            message: "table `posts` is listed twice (first at entry 1): merge the two entries"
                .into()
        }]
    );
    let config = SchemaConfig::default();
    let errors = build_manifest(&source, Some(&config)).unwrap_err();
    assert!(
        errors[0]
            .message
            .contains("unsupported schema config version 0"),
        "{errors:?}"
    );
    assert_eq!(errors[0].to_string(), errors[0].message);
}

#[test]
fn full_example_builds() {
    let source = blog();
    let manifest = build(&source, FULL);
    let articles = t(&manifest, "articles");
    assert_eq!(
        column_names(articles),
        vec!["id", "author_id", "headline", "tenant_id"]
    );
    assert_eq!(
        articles.columns[2].note.as_deref(),
        Some("Shown on the front page")
    );
    assert_eq!(
        articles.where_sql.as_deref(),
        Some("tenant_id = 42 AND published")
    );
    assert_eq!(
        relations(&manifest, "articles"),
        vec!["comments reverse comments(id → post_id)"]
    );
    assert_eq!(
        t(&manifest, "comments").where_sql.as_deref(),
        Some("tenant_id = 42")
    );
    assert_eq!(
        relations(&manifest, "users"),
        vec!["articles reverse articles(id → author_id)"]
    );
    assert_eq!(
        relations(&manifest, "comments"),
        vec![
            "post forward articles(post_id → id)",
            "user forward users(user_id → id)",
        ]
    );
}

#[test]
fn the_docs_example_parses_and_builds() {
    let docs = include_str!("../../../../docs/schema-config.md");
    let start = docs.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + docs[start..].find("```").unwrap();
    let manifest = build(&blog(), &docs[start..end]);
    // The table of the docs that follows the example.
    let names: Vec<&str> = manifest
        .tables
        .iter()
        .map(|t| t.api_name.as_str())
        .collect();
    assert_eq!(names, vec!["articles", "comments", "tags", "users"]);
    assert_eq!(
        column_names(t(&manifest, "articles")),
        vec!["id", "author_id", "headline", "body", "tenant_id"]
    );
    assert_eq!(
        column_names(t(&manifest, "comments")),
        vec!["id", "post_id", "user_id", "body", "tenant_id"]
    );
    assert_eq!(
        column_names(t(&manifest, "users")),
        vec!["id", "name", "tenant_id"]
    );
    assert_eq!(
        relations(&manifest, "articles"),
        vec![
            "author forward users(author_id → id)",
            "comments reverse comments(id → post_id)",
        ]
    );
    assert_eq!(
        relations(&manifest, "comments"),
        vec!["post forward articles(post_id → id)"]
    );
    assert_eq!(
        relations(&manifest, "users"),
        vec!["articles reverse articles(id → author_id)"]
    );
    assert!(relations(&manifest, "tags").is_empty());
    assert_eq!(t(&manifest, "tags").where_sql, None);
    assert_eq!(
        t(&manifest, "users").where_sql.as_deref(),
        Some("tenant_id = 42")
    );
    assert_eq!(
        t(&manifest, "articles").where_sql.as_deref(),
        Some("tenant_id = 42 AND body <> ''")
    );
    assert_eq!(
        t(&manifest, "articles").columns[3].note.as_deref(),
        Some("Markdown source of the article.")
    );
}
