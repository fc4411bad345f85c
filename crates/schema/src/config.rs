//! The schema config file (`reflexdb.yaml`), parsed with the line of every item.
//!
//! Two stages, both reporting every problem at once:
//!
//! - [`parse_schema_config`] checks the file on its own: YAML syntax, known keys, value types,
//!   and the rules that need no source (duplicate tables, `relations.include` with `exclude`, …).
//!   The control plane runs it when a config is saved.
//! - `apply` ([`crate::build_manifest`]) checks what the file names against an introspected
//!   source schema and derives the [`Manifest`](crate::Manifest): tables, columns, API names,
//!   row predicates and relations.
//!
//! `serde_yaml_ng::Value` has no positions, so the line of every key path comes from a small
//! indentation scanner over the text (`lines.rs`) and is kept in [`SchemaConfig::lines`].
//! `docs/schema-config.md` is the user's reference; keep it in step with the messages here.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

pub(crate) mod apply;
mod lines;
#[cfg(test)]
mod tests;

use lines::{join, line_of};

/// A parsed `reflexdb.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SchemaConfig {
    /// Format version; must be 1.
    pub version: u32,
    /// PostgreSQL schema to expose (default `public`).
    pub pg_schema: Option<String>,
    /// Global row predicate (SQL text).
    #[serde(rename = "where")]
    pub where_sql: Option<String>,
    /// The global predicate applies only to tables having all of these columns.
    pub where_columns: Vec<String>,
    /// Which tables are exposed when `tables` is given: only those listed (the default), or all.
    #[serde(default)]
    pub expose: Expose,
    /// Per-table settings; with [`Expose::Listed`] and at least one entry, only these tables are
    /// exposed.
    pub tables: Vec<TableConfig>,
    /// Line of each key path (`tables[2].columns`), for errors found after parsing.
    #[serde(skip)]
    pub lines: BTreeMap<String, usize>,
}

/// The top-level `expose` key: which tables a config with `tables` exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Expose {
    /// Only the tables listed under `tables` (every table when `tables` is absent).
    #[default]
    Listed,
    /// Every table of the source; entries of `tables` only change the ones they name.
    All,
}

/// One entry of `tables:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TableConfig {
    /// Source table name.
    pub name: String,
    /// API name.
    pub alias: Option<String>,
    /// Column allow-list (source names); `None` = all.
    pub columns: Option<Vec<String>>,
    /// Row predicate; overrides the global one.
    #[serde(rename = "where")]
    pub where_sql: Option<String>,
    /// Forward relations to keep (by relation name); exclusive with `relations_exclude`.
    pub relations_include: Option<Vec<String>>,
    /// Forward relations to drop.
    pub relations_exclude: Vec<String>,
    /// Reverse relations to drop.
    pub reverse_relations_exclude: Vec<String>,
    /// Forward relation name (as derived) → API name (`relations.aliases`).
    #[serde(default)]
    pub relation_aliases: BTreeMap<String, String>,
    /// Reverse relation name (`table` or `table.relation`) → API name
    /// (`reverse_relations.aliases`).
    #[serde(default)]
    pub reverse_relation_aliases: BTreeMap<String, String>,
    /// Column → API name.
    pub field_aliases: BTreeMap<String, String>,
    /// Column → note shown in the engine's OpenAPI document.
    pub field_notes: BTreeMap<String, String>,
}

/// A config file that cannot be parsed, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ConfigError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl SchemaConfig {
    /// The 1-based line of a key path (`tables[2].columns[0]`, `tables[0].field_aliases.email`),
    /// or of its nearest ancestor that has one (items of flow lists such as `columns: [a, b]`
    /// resolve to their key's line). `None` when the config was not parsed from text.
    pub fn line(&self, path: &str) -> Option<usize> {
        line_of(&self.lines, path)
    }
}

const TOP_KEYS: &[&str] = &[
    "version",
    "pg_schema",
    "where",
    "where_columns",
    "expose",
    "tables",
];
const TABLE_KEYS: &[&str] = &[
    "name",
    "alias",
    "columns",
    "where",
    "relations",
    "reverse_relations",
    "field_aliases",
    "field_notes",
];
const RELATIONS_KEYS: &[&str] = &["include", "exclude", "aliases"];
const REVERSE_RELATIONS_KEYS: &[&str] = &["exclude", "aliases"];

/// Parse and check a `reflexdb.yaml` text on its own (without a source schema).
///
/// Returns every error found, ordered by line. A key with an empty value (`alias:`) is the same
/// as leaving it out, except `version` (required) and `tables` (when present, it lists at least
/// one table).
pub fn parse_schema_config(text: &str) -> Result<SchemaConfig, Vec<ConfigError>> {
    let (lines, duplicates) = lines::scan(text);
    let value: Value = match serde_yaml_ng::from_str(text) {
        Ok(value) => value,
        Err(e) if !duplicates.is_empty() && e.to_string().contains("duplicate entry") => {
            let errors = duplicates
                .into_iter()
                .map(|d| ConfigError {
                    line: d.line,
                    message: format!(
                        "key `{}` is given twice (first at line {})",
                        d.path, d.first
                    ),
                })
                .collect();
            return Err(errors);
        }
        Err(e) => return Err(vec![yaml_error(&e)]),
    };
    let mut parser = Parser {
        lines,
        errors: Vec::new(),
    };
    let mut config = parser.config(&value);
    config.lines = std::mem::take(&mut parser.lines);
    for (path, message) in check(&config) {
        parser.errors.push(ConfigError {
            line: config.line(&path).unwrap_or(1),
            message,
        });
    }
    let mut errors = parser.errors;
    if errors.is_empty() {
        return Ok(config);
    }
    errors.sort_by_key(|e| e.line);
    errors.dedup();
    Err(errors)
}

/// A YAML syntax error, with the positions in its text reduced to lines.
fn yaml_error(e: &serde_yaml_ng::Error) -> ConfigError {
    let line = e.location().map(|l| l.line()).unwrap_or(1).max(1);
    let text = e.to_string();
    // "did not find expected key at line 3 column 5, while parsing a block mapping at line 1
    // column 1": the error's own line is in `line`; other marks keep their line only.
    let mut message = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find(" at line ") {
        message.push_str(&rest[..i]);
        let after = &rest[i + " at line ".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let mark_line: Option<usize> = after[..digits].parse().ok();
        let mut end = digits;
        if let Some(col) = after[digits..].strip_prefix(" column ") {
            end += " column ".len() + col.bytes().take_while(u8::is_ascii_digit).count();
        }
        match mark_line {
            Some(l) if l != line => message.push_str(&format!(" (line {l})")),
            Some(_) => {}
            None => message.push_str(" at line "),
        }
        rest = &after[end..];
    }
    message.push_str(rest);
    ConfigError {
        line,
        message: format!("invalid YAML: {message}"),
    }
}

/// What a value is, for "expected X, found Y" messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Whether `name` can be used as an API name in queries: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_api_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The candidate closest to `name`, when it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// ` (did you mean `x`?)`, or nothing.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    suggest(name, candidates)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

struct Parser {
    lines: BTreeMap<String, usize>,
    errors: Vec<ConfigError>,
}

impl Parser {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        let line = line_of(&self.lines, path).unwrap_or(1);
        self.errors.push(ConfigError {
            line,
            message: message.into(),
        });
    }

    fn config(&mut self, value: &Value) -> SchemaConfig {
        let mut config = SchemaConfig::default();
        let root = match value {
            Value::Mapping(root) => root,
            Value::Null => {
                self.error(
                    "",
                    "the file is empty: a schema config needs at least `version: 1`",
                );
                return config;
            }
            other => {
                self.error(
                    "",
                    format!(
                        "expected a mapping of keys ({}) at the top level, found {}",
                        TOP_KEYS.join(", "),
                        kind(other)
                    ),
                );
                return config;
            }
        };
        let mut has_version = false;
        for (key, value) in self.keys(root, "", "at the top level", TOP_KEYS) {
            match key.as_str() {
                "version" => {
                    has_version = true;
                    match value {
                        Value::Number(n) if n.as_u64() == Some(1) => config.version = 1,
                        Value::Number(n) => self.error(
                            "version",
                            format!("unsupported `version: {n}`: the only version is 1"),
                        ),
                        other => self.error(
                            "version",
                            format!("`version` must be the number 1, found {}", kind(other)),
                        ),
                    }
                }
                "pg_schema" => config.pg_schema = self.text(value, "pg_schema", "`pg_schema`"),
                "where" => config.where_sql = self.text(value, "where", "`where`"),
                "where_columns" => {
                    config.where_columns = self
                        .names(value, "where_columns", "`where_columns`")
                        .unwrap_or_default()
                }
                "expose" => match self.text(value, "expose", "`expose`").as_deref() {
                    Some("all") => config.expose = Expose::All,
                    Some("listed") | None => config.expose = Expose::Listed,
                    Some(other) => self.error(
                        "expose",
                        format!(
                            "`expose` must be `all` (every table; entries of `tables` change the ones they name) or `listed` (only the tables under `tables`), found `{other}`"
                        ),
                    ),
                },
                "tables" => config.tables = self.tables(value),
                _ => unreachable!("keys() returns allowed keys only"),
            }
        }
        if !has_version {
            self.error(
                "",
                "missing `version: 1` at the top level (the format version, required)",
            );
        }
        config
    }

    fn tables(&mut self, value: &Value) -> Vec<TableConfig> {
        let items = match value {
            Value::Sequence(items) if !items.is_empty() => items,
            Value::Sequence(_) | Value::Null => {
                self.error(
                    "tables",
                    "`tables` is empty: list the tables to expose, or remove the key to expose every table",
                );
                return Vec::new();
            }
            other => {
                self.error(
                    "tables",
                    format!(
                        "`tables` must be a list of table entries (`- name: posts`), found {}",
                        kind(other)
                    ),
                );
                return Vec::new();
            }
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.table(i, item))
            .collect()
    }

    fn table(&mut self, i: usize, value: &Value) -> TableConfig {
        let path = format!("tables[{i}]");
        let mut table = TableConfig::default();
        let Value::Mapping(map) = value else {
            self.error(
                &path,
                format!(
                    "table entry {} must be a mapping with at least `name` (`- name: posts`), found {}",
                    i + 1,
                    kind(value)
                ),
            );
            return table;
        };
        let name_path = join(&path, "name");
        match map.get("name") {
            Some(v @ Value::String(_)) => {
                table.name = self.text(v, &name_path, "`name`").unwrap_or_default()
            }
            Some(Value::Null) | None => self.error(
                &path,
                format!(
                    "table entry {} has no `name` (the table's name on the source)",
                    i + 1
                ),
            ),
            Some(other) => {
                self.text(
                    other,
                    &name_path,
                    &format!("`name` of table entry {}", i + 1),
                );
            }
        }
        let label = if table.name.is_empty() {
            format!("table entry {}", i + 1)
        } else {
            format!("table `{}`", table.name)
        };
        for (key, value) in self.keys(map, &path, &format!("in {label}"), TABLE_KEYS) {
            let key_path = join(&path, &key);
            let what = format!("`{key}` of {label}");
            match key.as_str() {
                "name" => {}
                "alias" => table.alias = self.text(value, &key_path, &what),
                "columns" => table.columns = self.names(value, &key_path, &what),
                "where" => table.where_sql = self.text(value, &key_path, &what),
                "relations" => {
                    let Some(map) = self.mapping(value, &key_path, &what, "{include: [...]}")
                    else {
                        continue;
                    };
                    let context = format!("in `relations` of {label}");
                    for (key, value) in self.keys(map, &key_path, &context, RELATIONS_KEYS) {
                        let item_path = join(&key_path, &key);
                        let what = format!("`relations.{key}` of {label}");
                        if key == "aliases" {
                            table.relation_aliases = self.text_map(value, &item_path, &what);
                            continue;
                        }
                        let names = self.names(value, &item_path, &what);
                        if key == "include" {
                            table.relations_include = names;
                        } else {
                            table.relations_exclude = names.unwrap_or_default();
                        }
                    }
                }
                "reverse_relations" => {
                    let Some(map) = self.mapping(value, &key_path, &what, "{exclude: [...]}")
                    else {
                        continue;
                    };
                    let context = format!("in `reverse_relations` of {label}");
                    for (key, value) in self.keys(map, &key_path, &context, REVERSE_RELATIONS_KEYS)
                    {
                        let item_path = join(&key_path, &key);
                        let what = format!("`reverse_relations.{key}` of {label}");
                        if key == "aliases" {
                            table.reverse_relation_aliases =
                                self.text_map(value, &item_path, &what);
                        } else {
                            table.reverse_relations_exclude =
                                self.names(value, &item_path, &what).unwrap_or_default();
                        }
                    }
                }
                "field_aliases" => table.field_aliases = self.text_map(value, &key_path, &what),
                "field_notes" => table.field_notes = self.text_map(value, &key_path, &what),
                _ => unreachable!("keys() returns allowed keys only"),
            }
        }
        table
    }

    /// The entries of `map` whose keys are in `allowed`; every other key is an error.
    fn keys<'v>(
        &mut self,
        map: &'v Mapping,
        path: &str,
        context: &str,
        allowed: &[&str],
    ) -> Vec<(String, &'v Value)> {
        let mut known = Vec::new();
        for (key, value) in map {
            let Value::String(key) = key else {
                self.error(
                    path,
                    format!(
                        "keys must be names, found {} {context}; allowed keys: {}",
                        kind(key),
                        allowed.join(", ")
                    ),
                );
                continue;
            };
            if allowed.contains(&key.as_str()) {
                known.push((key.clone(), value));
            } else {
                let hint = did_you_mean(key, allowed.iter().copied());
                self.error(
                    &join(path, key),
                    format!(
                        "unknown key `{key}` {context}{hint}; allowed keys: {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        known
    }

    /// A mapping value; `None` (and no error) for an empty value.
    fn mapping<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        what: &str,
        example: &str,
    ) -> Option<&'v Mapping> {
        match value {
            Value::Mapping(map) => Some(map),
            Value::Null => None,
            other => {
                self.error(
                    path,
                    format!(
                        "{what} must be a mapping (`{example}`), found {}",
                        kind(other)
                    ),
                );
                None
            }
        }
    }

    /// A non-empty string; `None` (and no error) for an empty value.
    fn text(&mut self, value: &Value, path: &str, what: &str) -> Option<String> {
        match value {
            Value::String(s) if s.trim().is_empty() => {
                self.error(path, format!("{what} must not be empty"));
                None
            }
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            Value::Number(n) => {
                self.error(
                    path,
                    format!("{what} must be a string, found the number {n} (quote it: \"{n}\")"),
                );
                None
            }
            Value::Bool(b) => {
                self.error(
                    path,
                    format!("{what} must be a string, found the boolean {b} (quote it: \"{b}\")"),
                );
                None
            }
            other => {
                self.error(
                    path,
                    format!("{what} must be a string, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A list of non-empty strings (`[a, b]` or one `- a` per line); `None` for an empty value.
    fn names(&mut self, value: &Value, path: &str, what: &str) -> Option<Vec<String>> {
        match value {
            Value::Sequence(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(j, item)| {
                        let item_path = format!("{path}[{j}]");
                        match item {
                            Value::Null => {
                                self.error(&item_path, format!("{what}: item {} is empty", j + 1));
                                None
                            }
                            _ => self.text(item, &item_path, &format!("{what}: item {}", j + 1)),
                        }
                    })
                    .collect(),
            ),
            Value::Null => None,
            other => {
                self.error(
                    path,
                    format!(
                        "{what} must be a list of names (`[a, b]`), found {}",
                        kind(other)
                    ),
                );
                None
            }
        }
    }

    /// A mapping of column name → text.
    fn text_map(&mut self, value: &Value, path: &str, what: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(map) = self.mapping(value, path, what, "{column: text}") else {
            return out;
        };
        for (key, value) in map {
            let Value::String(column) = key else {
                self.error(
                    path,
                    format!("{what}: keys must be column names, found {}", kind(key)),
                );
                continue;
            };
            let item_path = join(path, column);
            match value {
                Value::Null => self.error(&item_path, format!("{what}: `{column}` has no value")),
                _ => {
                    if let Some(text) = self.text(value, &item_path, &format!("{what}: `{column}`"))
                    {
                        out.insert(column.clone(), text);
                    }
                }
            }
        }
        out
    }
}

/// The rules a config must follow on its own, as (key path, message) pairs.
///
/// Shared by [`parse_schema_config`] and `apply`, so a config built in code is held to the same
/// rules as one parsed from a file.
pub(crate) fn check(config: &SchemaConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let first_at = |path: String, fallback: String| match config.line(&path) {
        Some(line) => format!("line {line}"),
        None => fallback,
    };
    if config.where_sql.is_none() && !config.where_columns.is_empty() {
        out.push((
            "where_columns".to_string(),
            "`where_columns` has no effect without a global `where`: add `where`, or remove `where_columns`"
                .to_string(),
        ));
    }
    let mut seen = HashMap::new();
    for (j, column) in config.where_columns.iter().enumerate() {
        if seen.insert(column.as_str(), j).is_some() {
            out.push((
                format!("where_columns[{j}]"),
                format!("column `{column}` is listed twice in `where_columns`"),
            ));
        }
    }
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let mut by_api: HashMap<&str, usize> = HashMap::new();
    for (i, table) in config.tables.iter().enumerate() {
        if table.name.is_empty() {
            continue; // reported by the parser
        }
        let path = format!("tables[{i}]");
        let name = table.name.as_str();
        if let Some(&first) = by_name.get(name) {
            let first = first_at(format!("tables[{first}]"), format!("entry {}", first + 1));
            out.push((
                join(&path, "name"),
                format!("table `{name}` is listed twice (first at {first}): merge the two entries"),
            ));
            continue;
        }
        by_name.insert(name, i);
        if let Some(alias) = &table.alias {
            if !is_api_name(alias) {
                out.push((
                    join(&path, "alias"),
                    format!(
                        "alias `{alias}` of table `{name}` is not a valid API name: use letters, digits and `_`, not starting with a digit"
                    ),
                ));
            }
        }
        let api = table.alias.as_deref().unwrap_or(name);
        if let Some(&other) = by_api.get(api) {
            let other_name = &config.tables[other].name;
            let other_at = first_at(format!("tables[{other}]"), format!("entry {}", other + 1));
            let key = if table.alias.is_some() {
                "alias"
            } else {
                "name"
            };
            out.push((
                join(&path, key),
                format!(
                    "tables `{other_name}` ({other_at}) and `{name}` would both be exposed as `{api}`: give one of them another `alias`"
                ),
            ));
        } else {
            by_api.insert(api, i);
        }
        if let Some(columns) = &table.columns {
            if columns.is_empty() {
                out.push((
                    join(&path, "columns"),
                    format!(
                        "`columns` of table `{name}` is empty: list the columns to expose, or remove the key to expose every column"
                    ),
                ));
            }
            let mut seen = HashSet::new();
            for (j, column) in columns.iter().enumerate() {
                if !seen.insert(column) {
                    out.push((
                        format!("{path}.columns[{j}]"),
                        format!("column `{column}` is listed twice in `columns` of table `{name}`"),
                    ));
                }
            }
        }
        if table.relations_include.is_some() && !table.relations_exclude.is_empty() {
            out.push((
                join(&path, "relations"),
                format!(
                    "`relations.include` and `relations.exclude` of table `{name}` are mutually exclusive: list the relations to keep in `include`, or the ones to drop in `exclude`"
                ),
            ));
        }
        let listed = |column: &str| {
            table
                .columns
                .as_ref()
                .is_none_or(|c| c.iter().any(|c| c == column))
        };
        let mut alias_of: HashMap<&str, &str> = HashMap::new();
        for (column, alias) in &table.field_aliases {
            let key_path = format!("{path}.field_aliases.{column}");
            if !listed(column) {
                out.push((
                    key_path.clone(),
                    format!(
                        "`field_aliases` of table `{name}` renames column `{column}`, which is not in its `columns`: add it to `columns`, or remove the alias"
                    ),
                ));
            }
            if !is_api_name(alias) {
                out.push((
                    key_path.clone(),
                    format!(
                        "field alias `{alias}` of column `{column}` (table `{name}`) is not a valid API name: use letters, digits and `_`, not starting with a digit"
                    ),
                ));
            }
            if let Some(other) = alias_of.insert(alias.as_str(), column.as_str()) {
                out.push((
                    key_path,
                    format!(
                        "columns `{other}` and `{column}` of table `{name}` both have the field alias `{alias}`: pick another alias for one of them"
                    ),
                ));
            }
        }
        // Relation aliases: valid API names, one name per relation of the table.
        let mut relation_alias_of: HashMap<&str, String> = HashMap::new();
        for (key, aliases, kind) in [
            ("relations", &table.relation_aliases, "relation"),
            (
                "reverse_relations",
                &table.reverse_relation_aliases,
                "reverse relation",
            ),
        ] {
            for (relation, alias) in aliases {
                let key_path = format!("{path}.{key}.aliases.{relation}");
                if !is_api_name(alias) {
                    out.push((
                        key_path.clone(),
                        format!(
                            "alias `{alias}` of {kind} `{relation}` (table `{name}`) is not a valid API name: use letters, digits and `_`, not starting with a digit"
                        ),
                    ));
                }
                let this = format!("{kind} `{relation}`");
                if let Some(other) = relation_alias_of.insert(alias.as_str(), this.clone()) {
                    out.push((
                        key_path,
                        format!(
                            "{other} and {this} of table `{name}` both have the alias `{alias}`: pick another alias for one of them"
                        ),
                    ));
                }
            }
        }
        for column in table.field_notes.keys() {
            if !listed(column) {
                out.push((
                    format!("{path}.field_notes.{column}"),
                    format!(
                        "`field_notes` of table `{name}` describes column `{column}`, which is not in its `columns`: add it to `columns`, or remove the note"
                    ),
                ));
            }
        }
    }
    out
}
