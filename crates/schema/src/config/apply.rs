//! Applying a schema config to an introspected source schema: the [`Manifest`].
//!
//! Order of work: the config's own rules ([`check`]), the exposed tables and their columns,
//! row predicates, then relations derived from every foreign key of the source, filtered by
//! the config and checked for name clashes. Every problem is collected; nothing stops early.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{check, did_you_mean};
use crate::{
    Backend, BuildError, ColumnManifest, Expose, ForeignKey, Manifest, Relation, RelationKind,
    SchemaConfig, SourceSchema, SourceTable, TableConfig, TableManifest, MANIFEST_VERSION,
};

/// Apply the schema config (or none: every table and column) to an introspected source schema.
///
/// Checks everything the config names against the source (tables, columns, relations), derives
/// relations from foreign keys (forward: FK column minus a trailing `_id`; reverse: the
/// referencing table's API name) and reports every problem at once.
pub fn build_manifest(
    source: &SourceSchema,
    config: Option<&SchemaConfig>,
) -> Result<Manifest, Vec<BuildError>> {
    let no_config = SchemaConfig {
        version: 1,
        ..SchemaConfig::default()
    };
    let config = config.unwrap_or(&no_config);
    let mut errors = Errors {
        config,
        list: Vec::new(),
    };

    if config.version != 1 {
        errors.at(
            "version",
            format!(
                "unsupported schema config version {}: the only version is 1",
                config.version
            ),
        );
    }
    for (path, message) in check(config) {
        errors.at(&path, message);
    }
    if config.pg_schema.is_some() && source.backend != Backend::Postgres {
        errors.at(
            "pg_schema",
            format!(
                "`pg_schema` applies to PostgreSQL sources only, and this source is {}: remove the key",
                source.backend.as_str()
            ),
        );
    }
    let pg_schema = (source.backend == Backend::Postgres).then(|| {
        config
            .pg_schema
            .clone()
            .unwrap_or_else(|| "public".to_string())
    });

    let mut tables = select_tables(source, config, pg_schema.as_deref(), &mut errors);
    apply_where(config, &mut tables, &mut errors);
    let derived = derive_relations(source, &tables);
    let mut relation_warnings = Vec::new();
    let relations: Vec<Vec<Relation>> = (0..tables.len())
        .map(|t| relations_of(t, &tables, &derived, &mut errors, &mut relation_warnings))
        .collect();

    if !errors.list.is_empty() {
        let mut list = errors.list;
        list.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        list.dedup();
        return Err(list);
    }
    let mut manifest_tables: Vec<TableManifest> = tables
        .into_iter()
        .zip(relations)
        .map(|(t, relations)| {
            let primary_key = t
                .source
                .primary_key
                .iter()
                .filter_map(|k| t.column_index(k))
                .collect();
            TableManifest {
                source_name: t.source.name.clone(),
                api_name: t.api_name,
                columns: t.columns,
                primary_key,
                where_sql: t.where_sql,
                relations,
                estimated_bytes: t.source.estimated_bytes,
            }
        })
        .collect();
    manifest_tables.sort_by(|a, b| a.api_name.cmp(&b.api_name));
    let mut warnings = source.warnings.clone();
    warnings.extend(
        manifest_tables
            .iter()
            .filter(|t| t.primary_key.is_empty())
            .map(|t| no_primary_key_warning(&t.source_name)),
    );
    warnings.extend(relation_warnings);
    Ok(Manifest {
        version: MANIFEST_VERSION,
        backend: source.backend,
        database: source.database.clone(),
        pg_schema,
        tables: manifest_tables,
        warnings,
    })
}

/// The build warning for an exposed table without a primary key (none on the source, or one the
/// source user could not see, or a key column left out by the config).
fn no_primary_key_warning(table: &str) -> String {
    format!(
        "table `{table}` has no primary key: lookups by key scan the table and a change stream \
         matches its rows by every column. Add a primary key on the source (or, if it has one, \
         check that the source user may read its key constraints and that the config exposes \
         the key columns)"
    )
}

/// Build errors, with the config line of the key path they come from.
struct Errors<'c> {
    config: &'c SchemaConfig,
    list: Vec<BuildError>,
}

impl Errors<'_> {
    fn at(&mut self, path: &str, message: impl Into<String>) {
        let line = self.config.line(path);
        self.list.push(BuildError {
            line,
            message: message.into(),
        });
    }

    fn at_opt(&mut self, path: Option<&str>, message: impl Into<String>) {
        let line = path.and_then(|p| self.config.line(p));
        self.list.push(BuildError {
            line,
            message: message.into(),
        });
    }
}

/// One exposed table while the manifest is being built.
struct Exposed<'a> {
    source: &'a SourceTable,
    /// Index of its entry in `tables:` and the entry, when the config lists tables.
    entry: Option<(usize, &'a TableConfig)>,
    api_name: String,
    columns: Vec<ColumnManifest>,
    where_sql: Option<String>,
}

impl Exposed<'_> {
    /// Key path of this table's entry (`tables[2]`), or of one of its keys.
    fn path(&self, key: &str) -> Option<String> {
        self.entry.map(|(i, _)| {
            if key.is_empty() {
                format!("tables[{i}]")
            } else {
                format!("tables[{i}].{key}")
            }
        })
    }

    fn config(&self) -> Option<&TableConfig> {
        self.entry.map(|(_, c)| c)
    }

    /// Index into the exposed columns of the column with this source name.
    fn column_index(&self, source_name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.source_name == source_name)
    }

    /// The API name of a source column: its field alias, else its name (exposed or not).
    fn column_api_name<'s>(&'s self, source_name: &'s str) -> &'s str {
        match self.column_index(source_name) {
            Some(i) => &self.columns[i].api_name,
            None => source_name,
        }
    }
}

/// The exposed tables with their columns, in source or config order.
fn select_tables<'a>(
    source: &'a SourceSchema,
    config: &'a SchemaConfig,
    pg_schema: Option<&str>,
    errors: &mut Errors<'_>,
) -> Vec<Exposed<'a>> {
    if config.tables.is_empty() {
        return source
            .tables
            .iter()
            .map(|t| expose(t, None, errors))
            .collect();
    }
    let by_name: HashMap<&str, &SourceTable> =
        source.tables.iter().map(|t| (t.name.as_str(), t)).collect();
    if config.expose == Expose::All {
        // Every source table, in source order; a listed table gets its entry.
        let mut entries: HashMap<&str, usize> = HashMap::new();
        for (i, entry) in config.tables.iter().enumerate() {
            if entry.name.is_empty() {
                continue;
            }
            entries.entry(entry.name.as_str()).or_insert(i);
            if !by_name.contains_key(entry.name.as_str()) {
                unknown_table(source, pg_schema, i, &entry.name, errors);
            }
        }
        let tables: Vec<Exposed<'a>> = source
            .tables
            .iter()
            .map(|t| {
                let entry = entries
                    .get(t.name.as_str())
                    .map(|&i| (i, &config.tables[i]));
                expose(t, entry, errors)
            })
            .collect();
        // An alias may take the name of a table the config does not list.
        for table in &tables {
            let Some((i, cfg)) = table.entry else {
                continue;
            };
            let Some(alias) = &cfg.alias else { continue };
            if let Some(other) = tables
                .iter()
                .find(|o| o.entry.is_none() && o.api_name == *alias)
            {
                errors.at(
                    &format!("tables[{i}].alias"),
                    format!(
                        "tables `{}` and `{}` would both be exposed as `{alias}`: give table `{}` another `alias`, or list table `{}` with an `alias` of its own",
                        other.source.name, cfg.name, cfg.name, other.source.name
                    ),
                );
            }
        }
        return tables;
    }
    let mut seen = HashSet::new();
    let mut tables = Vec::new();
    for (i, entry) in config.tables.iter().enumerate() {
        if entry.name.is_empty() || !seen.insert(entry.name.as_str()) {
            continue; // reported by check()
        }
        match by_name.get(entry.name.as_str()) {
            Some(table) => tables.push(expose(table, Some((i, entry)), errors)),
            None => unknown_table(source, pg_schema, i, &entry.name, errors),
        }
    }
    tables
}

/// "table `usres` does not exist on the source", at entry `i`.
fn unknown_table(
    source: &SourceSchema,
    pg_schema: Option<&str>,
    i: usize,
    name: &str,
    errors: &mut Errors<'_>,
) {
    let schema = pg_schema
        .map(|s| format!(", schema `{s}`"))
        .unwrap_or_default();
    let hint = did_you_mean(name, source.tables.iter().map(|t| t.name.as_str()));
    errors.at(
        &format!("tables[{i}].name"),
        format!(
            "table `{name}` does not exist on the source (database `{}`{schema}){hint}",
            source.database
        ),
    );
}

/// One table's exposed columns: the allow-list, primary key, field aliases and notes.
fn expose<'a>(
    table: &'a SourceTable,
    entry: Option<(usize, &'a TableConfig)>,
    errors: &mut Errors<'_>,
) -> Exposed<'a> {
    let name = &table.name;
    let base = entry.map(|(i, _)| format!("tables[{i}]"));
    let path = |key: &str| base.as_ref().map(|b| format!("{b}.{key}"));
    let default = TableConfig::default();
    let cfg = entry.map(|(_, c)| c).unwrap_or(&default);
    let has = |column: &str| table.columns.iter().any(|c| c.name == column);
    let column_names = || table.columns.iter().map(|c| c.name.as_str());

    if let Some(list) = &cfg.columns {
        for (j, column) in list.iter().enumerate() {
            if !has(column) {
                errors.at_opt(
                    path(&format!("columns[{j}]")).as_deref(),
                    format!(
                        "table `{name}` has no column `{column}`{}",
                        did_you_mean(column, column_names())
                    ),
                );
            }
        }
        let missing: Vec<&str> = table
            .primary_key
            .iter()
            .filter(|k| !list.contains(k))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() && !list.is_empty() {
            errors.at_opt(
                path("columns").as_deref(),
                format!(
                    "`columns` of table `{name}` leaves out {}, part of its primary key, which identifies rows (updates, relations): add {} to `columns`",
                    quoted(&missing),
                    if missing.len() == 1 { "it" } else { "them" }
                ),
            );
        }
    }
    let listed = |column: &str| {
        cfg.columns
            .as_ref()
            .is_none_or(|l| l.iter().any(|c| c == column))
    };
    for (key, map) in [
        ("field_aliases", &cfg.field_aliases),
        ("field_notes", &cfg.field_notes),
    ] {
        for column in map.keys() {
            // A column missing from `columns` was reported by check().
            if listed(column) && !has(column) {
                errors.at_opt(
                    path(&format!("{key}.{column}")).as_deref(),
                    format!(
                        "`{key}` of table `{name}` names column `{column}`, which the table does not have{}",
                        did_you_mean(column, column_names())
                    ),
                );
            }
        }
    }

    let columns: Vec<ColumnManifest> = table
        .columns
        .iter()
        .filter(|c| listed(&c.name))
        .map(|c| ColumnManifest {
            api_name: cfg.field_aliases.get(&c.name).unwrap_or(&c.name).clone(),
            note: cfg.field_notes.get(&c.name).cloned(),
            ..ColumnManifest::exposing(c)
        })
        .collect();
    // A field alias that takes the name of another exposed column. (Two aliases with one name
    // were reported by check().)
    for column in &columns {
        if !cfg.field_aliases.contains_key(&column.source_name) {
            continue;
        }
        let taken = columns.iter().any(|other| {
            other.source_name != column.source_name
                && other.api_name == column.api_name
                && !cfg.field_aliases.contains_key(&other.source_name)
        });
        if taken {
            errors.at_opt(
                path(&format!("field_aliases.{}", column.source_name)).as_deref(),
                format!(
                    "field alias `{}` of column `{}` (table `{name}`) is the name of another column of the table: pick another alias, or rename that column too",
                    column.api_name, column.source_name
                ),
            );
        }
    }

    Exposed {
        source: table,
        entry,
        api_name: cfg.alias.clone().unwrap_or_else(|| name.clone()),
        columns,
        where_sql: None,
    }
}

/// Row predicates: the table's own `where`, else the global one where it applies.
fn apply_where(config: &SchemaConfig, tables: &mut [Exposed<'_>], errors: &mut Errors<'_>) {
    let has = |t: &Exposed<'_>, column: &str| t.source.columns.iter().any(|c| c.name == column);
    let applies = |t: &Exposed<'_>| config.where_columns.iter().all(|w| has(t, w));
    if config.where_sql.is_some() && !config.where_columns.is_empty() && !tables.is_empty() {
        let mut all_known = true;
        for (j, column) in config.where_columns.iter().enumerate() {
            if !tables.iter().any(|t| has(t, column)) {
                all_known = false;
                let names = tables
                    .iter()
                    .flat_map(|t| t.source.columns.iter().map(|c| c.name.as_str()));
                let names: Vec<&str> = names
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                errors.at(
                    &format!("where_columns[{j}]"),
                    format!(
                        "`where_columns` names `{column}`, a column no exposed table has{}",
                        did_you_mean(column, names)
                    ),
                );
            }
        }
        if all_known && !tables.iter().any(applies) {
            errors.at(
                "where_columns",
                format!(
                    "the global `where` applies to no exposed table: none has all of `where_columns` ({})",
                    config.where_columns.join(", ")
                ),
            );
        }
    }
    for table in tables {
        let own = table.config().and_then(|c| c.where_sql.clone());
        table.where_sql = own.or_else(|| config.where_sql.clone().filter(|_| applies(table)));
    }
}

/// What one foreign key of the source gives: a forward and a reverse relation, or why not.
struct Derived<'a> {
    /// Source table holding the foreign key.
    from: &'a SourceTable,
    fk: &'a ForeignKey,
    /// Exposed tables (indexes) holding and referenced by the foreign key.
    from_exposed: Option<usize>,
    to_exposed: Option<usize>,
    /// Name of the forward relation on `from`.
    forward: String,
    /// Name of the reverse relation on the referenced table.
    reverse: String,
    /// `reverse.forward`: names this reverse relation among several of one name.
    qualified: String,
    /// `posts(author_id) → users(id)`, for messages.
    describe: String,
    /// Why there are no relations (a table or column is not exposed), or `None`.
    dropped: Option<String>,
    local: Vec<usize>,
    target: Vec<usize>,
}

/// Every foreign key of the source, with the names its relations get (or would get).
fn derive_relations<'a>(source: &'a SourceSchema, tables: &[Exposed<'a>]) -> Vec<Derived<'a>> {
    let exposed: HashMap<&str, usize> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| (t.source.name.as_str(), i))
        .collect();
    let mut out = Vec::new();
    for from in &source.tables {
        let from_exposed = exposed.get(from.name.as_str()).copied();
        for fk in &from.foreign_keys {
            let to_exposed = exposed.get(fk.referenced_table.as_str()).copied();
            let from_api = from_exposed.map_or(from.name.as_str(), |i| tables[i].api_name.as_str());
            let to_api = to_exposed.map_or(fk.referenced_table.as_str(), |i| {
                tables[i].api_name.as_str()
            });
            let forward = match fk.columns.as_slice() {
                [column] => {
                    let api =
                        from_exposed.map_or(column.as_str(), |i| tables[i].column_api_name(column));
                    strip_id(api).to_string()
                }
                _ => to_api.to_string(),
            };
            let reverse = from_api.to_string();
            let describe = format!(
                "{}({}) → {}({})",
                from.name,
                fk.columns.join(", "),
                fk.referenced_table,
                fk.referenced_columns.join(", ")
            );
            let mut dropped = None;
            let mut local = Vec::new();
            let mut target = Vec::new();
            if fk.columns.is_empty() || fk.columns.len() != fk.referenced_columns.len() {
                dropped = Some(format!("foreign key {describe} is malformed"));
            } else if !source.tables.iter().any(|t| t.name == fk.referenced_table) {
                dropped = Some(format!(
                    "table `{}` is not on the source",
                    fk.referenced_table
                ));
            }
            let sides = [
                (from_exposed, &from.name, &fk.columns, &mut local),
                (
                    to_exposed,
                    &fk.referenced_table,
                    &fk.referenced_columns,
                    &mut target,
                ),
            ];
            for (side, table_name, columns, indexes) in sides {
                if dropped.is_some() {
                    break;
                }
                let Some(t) = side.map(|i| &tables[i]) else {
                    dropped = Some(format!("table `{table_name}` is not exposed"));
                    break;
                };
                for column in columns {
                    match t.column_index(column) {
                        Some(c) => indexes.push(c),
                        None => {
                            dropped = Some(format!(
                                "column `{column}` of table `{table_name}` is not exposed"
                            ));
                            break;
                        }
                    }
                }
            }
            out.push(Derived {
                from,
                fk,
                from_exposed,
                to_exposed,
                qualified: format!("{reverse}.{forward}"),
                forward,
                reverse,
                describe,
                dropped,
                local,
                target,
            });
        }
    }
    out
}

/// `author_id` → `author`; `user` stays `user`; `_id` stays `_id`.
pub(super) fn strip_id(name: &str) -> &str {
    let n = name.len();
    if n > 3 && name.is_char_boundary(n - 3) && name[n - 3..].eq_ignore_ascii_case("_id") {
        &name[..n - 3]
    } else {
        name
    }
}

/// `a`, `a` and `b`, `a`, `b` and `c` — in backticks.
fn quoted(names: &[&str]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The relations of exposed table `t`, after `relations` / `reverse_relations`; reports unknown
/// names and name clashes.
fn relations_of(
    t: usize,
    tables: &[Exposed<'_>],
    derived: &[Derived<'_>],
    errors: &mut Errors<'_>,
    warnings: &mut Vec<String>,
) -> Vec<Relation> {
    let table = &tables[t];
    let name = &table.source.name;
    let forwards: Vec<&Derived<'_>> = derived
        .iter()
        .filter(|d| d.from_exposed == Some(t))
        .collect();
    let mut reverses: Vec<&Derived<'_>> =
        derived.iter().filter(|d| d.to_exposed == Some(t)).collect();
    reverses.sort_by(|a, b| {
        (&a.reverse, &a.from.name, &a.fk.columns).cmp(&(&b.reverse, &b.from.name, &b.fk.columns))
    });
    let forward_names = || {
        unique(
            forwards
                .iter()
                .filter(|d| d.dropped.is_none())
                .map(|d| d.forward.as_str()),
        )
    };
    let reverse_names = || {
        unique(
            reverses
                .iter()
                .filter(|d| d.dropped.is_none())
                .flat_map(|d| [d.reverse.as_str(), d.qualified.as_str()]),
        )
    };
    let listing = |names: Vec<&str>| {
        if names.is_empty() {
            "it has none".to_string()
        } else {
            format!("it has {}", names.join(", "))
        }
    };

    let mut keep_forward: Vec<&Derived<'_>> = forwards
        .iter()
        .copied()
        .filter(|d| d.dropped.is_none())
        .collect();
    let mut keep_reverse: Vec<&Derived<'_>> = reverses
        .iter()
        .copied()
        .filter(|d| d.dropped.is_none())
        .collect();
    if let Some(cfg) = table.config() {
        if let Some(include) = &cfg.relations_include {
            for (j, wanted) in include.iter().enumerate() {
                let path = table.path(&format!("relations.include[{j}]"));
                let matches: Vec<&&Derived<'_>> =
                    forwards.iter().filter(|d| d.forward == *wanted).collect();
                if matches.is_empty() {
                    errors.at_opt(
                        path.as_deref(),
                        format!(
                            "`relations.include` of table `{name}` names `{wanted}`, which is not one of its relations{} ({})",
                            did_you_mean(wanted, forward_names()),
                            listing(forward_names())
                        ),
                    );
                } else if !matches.iter().any(|d| d.dropped.is_none()) {
                    let why = matches[0].dropped.as_deref().unwrap_or_default();
                    errors.at_opt(
                        path.as_deref(),
                        format!("relation `{wanted}` of table `{name}` cannot be included: {why}"),
                    );
                }
            }
            keep_forward.retain(|d| include.contains(&d.forward));
        }
        for (j, unwanted) in cfg.relations_exclude.iter().enumerate() {
            if !forwards.iter().any(|d| d.forward == *unwanted) {
                errors.at_opt(
                    table.path(&format!("relations.exclude[{j}]")).as_deref(),
                    format!(
                        "`relations.exclude` of table `{name}` names `{unwanted}`, which is not one of its relations{} ({})",
                        did_you_mean(unwanted, forward_names()),
                        listing(forward_names())
                    ),
                );
            }
        }
        keep_forward.retain(|d| !cfg.relations_exclude.contains(&d.forward));
        for (j, unwanted) in cfg.reverse_relations_exclude.iter().enumerate() {
            if !reverses
                .iter()
                .any(|d| d.reverse == *unwanted || d.qualified == *unwanted)
            {
                errors.at_opt(
                    table.path(&format!("reverse_relations.exclude[{j}]")).as_deref(),
                    format!(
                        "`reverse_relations.exclude` of table `{name}` names `{unwanted}`, which is not one of its reverse relations{} ({})",
                        did_you_mean(unwanted, reverse_names()),
                        listing(reverse_names())
                    ),
                );
            }
        }
        keep_reverse.retain(|d| {
            !cfg.reverse_relations_exclude
                .iter()
                .any(|x| *x == d.reverse || *x == d.qualified)
        });
    }

    // Relation aliases from the config: which relation each one names.
    let mut aliases: Vec<(&Derived<'_>, bool, &str, Option<String>)> = Vec::new();
    if let Some(cfg) = table.config() {
        for (key, alias) in &cfg.relation_aliases {
            let path = table.path(&format!("relations.aliases.{key}"));
            let matches: Vec<&Derived<'_>> = forwards
                .iter()
                .copied()
                .filter(|d| d.forward == *key)
                .collect();
            match matches.as_slice() {
                [] => errors.at_opt(
                    path.as_deref(),
                    format!(
                        "`relations.aliases` of table `{name}` names `{key}`, which is not one of its relations{} ({})",
                        did_you_mean(key, forward_names()),
                        listing(forward_names())
                    ),
                ),
                [d] => aliases.push((d, false, alias.as_str(), path)),
                several => {
                    let each: Vec<String> = several.iter().map(|d| d.describe.clone()).collect();
                    errors.at_opt(
                        path.as_deref(),
                        format!(
                            "`relations.aliases` of table `{name}` names `{key}`, the name of {} relations ({}): give one of the foreign-key columns another name with `field_aliases` instead",
                            several.len(),
                            each.join("; ")
                        ),
                    );
                }
            }
        }
        for (key, alias) in &cfg.reverse_relation_aliases {
            let path = table.path(&format!("reverse_relations.aliases.{key}"));
            let matches: Vec<&Derived<'_>> = reverses
                .iter()
                .copied()
                .filter(|d| d.reverse == *key || d.qualified == *key)
                .collect();
            match matches.as_slice() {
                [] => errors.at_opt(
                    path.as_deref(),
                    format!(
                        "`reverse_relations.aliases` of table `{name}` names `{key}`, which is not one of its reverse relations{} ({})",
                        did_you_mean(key, reverse_names()),
                        listing(reverse_names())
                    ),
                ),
                [d] => aliases.push((d, true, alias.as_str(), path)),
                several => {
                    let each: Vec<String> =
                        several.iter().map(|d| format!("`{}`", d.qualified)).collect();
                    errors.at_opt(
                        path.as_deref(),
                        format!(
                            "`reverse_relations.aliases` of table `{name}` names `{key}`, the name of {} reverse relations: name one of them with {}",
                            several.len(),
                            each.join(" or ")
                        ),
                    );
                }
            }
        }
    }

    // Columns and relations share one namespace (the keys of a response object). Columns keep
    // their names and aliased relations the config's; a derived name already taken gets a
    // generated one (with a warning); two names the config sets that clash are an error.
    let slots: Vec<Slot<'_, '_>> = keep_forward
        .iter()
        .map(|d| (*d, false))
        .chain(keep_reverse.iter().map(|d| (*d, true)))
        .map(|(d, reverse)| Slot {
            d,
            reverse,
            base: if reverse { &d.reverse } else { &d.forward },
            alias: aliases
                .iter()
                .find(|(a, r, _, _)| std::ptr::eq(*a, d) && *r == reverse)
                .map(|(_, _, alias, path)| (*alias, path.clone())),
        })
        .collect();
    let mut holders: BTreeMap<String, String> = BTreeMap::new();
    for column in &table.columns {
        holders
            .entry(column.api_name.clone())
            .or_insert_with(|| describe_column(column));
    }
    let mut names: Vec<Option<String>> = vec![None; slots.len()];
    for (i, slot) in slots.iter().enumerate() {
        let Some((alias, path)) = &slot.alias else {
            continue;
        };
        let this = slot.describe();
        if let Some(other) = holders.get(*alias) {
            errors.at_opt(
                path.as_deref(),
                format!(
                    "table `{name}`: the alias `{alias}` of {this} is also the name of {other}: pick another alias"
                ),
            );
            continue;
        }
        holders.insert(alias.to_string(), this);
        names[i] = Some(alias.to_string());
    }
    // Derived names, each group in a stable order: forward before reverse, then by the
    // referencing table and its foreign-key columns.
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, slot) in slots.iter().enumerate() {
        if slot.alias.is_none() {
            groups.entry(slot.base).or_default().push(i);
        }
    }
    for group in groups.values_mut() {
        group.sort_by_key(|&i| {
            let d = slots[i].d;
            (slots[i].reverse, &d.from.name, &d.fk.columns, &d.fk.name)
        });
    }
    for (base, group) in &groups {
        if !holders.contains_key(*base) {
            holders.insert(base.to_string(), slots[group[0]].describe());
            names[group[0]] = Some(base.to_string());
        }
    }
    for (base, group) in &groups {
        for &i in group {
            if names[i].is_some() {
                continue;
            }
            let slot = &slots[i];
            let from = &tables[slot.d.from_exposed.expect("live relation")];
            let columns: Vec<&str> = slot
                .d
                .fk
                .columns
                .iter()
                .map(|c| from.column_api_name(c))
                .collect();
            let stem = format!("{base}_by_{}", columns.join("_and_"));
            let mut generated = stem.clone();
            let mut n = 2;
            while holders.contains_key(&generated) {
                generated = format!("{stem}_{n}");
                n += 1;
            }
            warnings.push(generated_name_warning(
                table,
                slot,
                &generated,
                &holders[*base],
                &forwards,
                &reverses,
            ));
            holders.insert(generated.clone(), slot.describe());
            names[i] = Some(generated);
        }
    }

    slots
        .iter()
        .zip(names)
        .filter_map(|(slot, name)| {
            let d = slot.d;
            Some(if slot.reverse {
                Relation {
                    name: name?,
                    kind: RelationKind::Reverse,
                    target_table: tables[d.from_exposed.expect("live relation")]
                        .api_name
                        .clone(),
                    local_columns: d.target.clone(),
                    target_columns: d.local.clone(),
                }
            } else {
                Relation {
                    name: name?,
                    kind: RelationKind::Forward,
                    target_table: tables[d.to_exposed.expect("live relation")]
                        .api_name
                        .clone(),
                    local_columns: d.local.clone(),
                    target_columns: d.target.clone(),
                }
            })
        })
        .collect()
}

/// One kept relation of a table while its name is chosen.
struct Slot<'d, 'a> {
    d: &'d Derived<'a>,
    reverse: bool,
    /// The derived name.
    base: &'d str,
    /// The config's alias, with its key path.
    alias: Option<(&'d str, Option<String>)>,
}

impl Slot<'_, '_> {
    fn describe(&self) -> String {
        if self.reverse {
            format!(
                "reverse relation `{}` (from {})",
                self.d.reverse, self.d.describe
            )
        } else {
            format!("relation `{}` ({})", self.d.forward, self.d.describe)
        }
    }
}

fn describe_column(column: &ColumnManifest) -> String {
    if column.api_name != column.source_name {
        format!(
            "column `{}` (field alias of `{}`)",
            column.api_name, column.source_name
        )
    } else {
        format!("column `{}`", column.api_name)
    }
}

/// The warning for a relation whose derived name was taken, with the config line that names it.
fn generated_name_warning(
    table: &Exposed<'_>,
    slot: &Slot<'_, '_>,
    generated: &str,
    holder: &str,
    forwards: &[&Derived<'_>],
    reverses: &[&Derived<'_>],
) -> String {
    let d = slot.d;
    let name = &table.source.name;
    let how = if slot.reverse {
        let shared = reverses.iter().filter(|o| o.reverse == d.reverse).count() > 1;
        let key = if shared { &d.qualified } else { &d.reverse };
        format!(
            "to keep or change it, add `reverse_relations: {{aliases: {{{key}: {generated}}}}}` to the entry of table `{name}` in the schema config"
        )
    } else if forwards.iter().filter(|o| o.forward == d.forward).count() == 1 {
        format!(
            "to keep or change it, add `relations: {{aliases: {{{}: {generated}}}}}` to the entry of table `{name}` in the schema config",
            d.forward
        )
    } else if let [column] = d.fk.columns.as_slice() {
        format!(
            "to change it, rename the foreign-key column with `field_aliases: {{{column}: <name>_id}}` on table `{name}` in the schema config"
        )
    } else {
        format!(
            "to change it, give table `{}` another `alias` in the schema config",
            d.fk.referenced_table
        )
    };
    format!(
        "table `{}`: {} was named `{generated}` automatically because `{}` is taken by {holder}; {how} (with `expose: all`, no other table needs an entry)",
        table.api_name,
        slot.describe(),
        slot.base
    )
}

/// Names in first-seen order, without repeats.
fn unique<'s>(names: impl Iterator<Item = &'s str>) -> Vec<&'s str> {
    let mut seen = HashSet::new();
    names.filter(|n| seen.insert(*n)).collect()
}
