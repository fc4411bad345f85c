//! Stage 4: pick the access path of the top-level node and describe plans for `explain`.
//!
//! Equality (and `IN`) conjuncts of the top-level filter choose, in this order: primary-key
//! lookups when they cover the whole key; hash-index lookups on the columns of a foreign key;
//! lookups on any other column that already has an index; lookups on a lazily built index of
//! any other non-boolean column. Case-insensitive text and floats never use an index (index
//! equality is byte equality). The conjuncts an index answers are removed from the filter.
//! Nested nodes always follow their relation: primary-key lookups for forward relations,
//! foreign-key index lookups for reverse ones; relation filters use the same lookups per row.

use refract_schema::{ColumnType, RelationKind, TableManifest, Value};
use refract_storage::Snapshot;
use serde_json::{json, Map, Value as Json};

use crate::ast::CmpOp;
use crate::literal::DAY_US;
use crate::plan::{Access, BExpr, BPred, Hop, Lit, Lookup, Node, Output, Test};
use crate::QueryOptions;

/// Most lookups one query does through its access path; more falls back to a scan.
const MAX_LOOKUPS: usize = 4096;

/// Choose the access path of the top-level `node`.
pub(crate) fn plan<'a>(snapshot: &Snapshot, node: &mut Node<'a>) {
    order_child_filters(node);
    node.access = Access::Scan;
    let Some(filter) = node.filter.take() else {
        return;
    };
    let mut conjuncts = match filter {
        BExpr::And(terms) => terms,
        other => vec![other],
    };
    // (conjunct, column, keys) for each column with an indexable equality.
    let mut cands: Vec<(usize, usize, Vec<Value>)> = Vec::new();
    for (i, c) in conjuncts.iter().enumerate() {
        if let BExpr::Pred(p) = c {
            if let Some(keys) = index_keys(p) {
                if !cands.iter().any(|(_, col, _)| *col == p.col) {
                    cands.push((i, p.col, keys));
                }
            }
        }
    }
    let range = pk_range_start(node.manifest, &conjuncts);
    // Without a usable equality index: every row, or those from the range start.
    let scan = |node: &mut Node<'a>, conjuncts: Vec<BExpr<'a>>| {
        if let Some(from) = &range {
            node.access = Access::PkFrom(from.clone());
        }
        node.filter = rebuild(conjuncts);
    };
    if cands.is_empty() {
        scan(node, conjuncts);
        return;
    }
    let table = &snapshot.tables[node.table];
    let tm: &TableManifest = node.manifest;
    let covers = |cols: &[usize]| {
        !cols.is_empty() && cols.iter().all(|c| cands.iter().any(|(_, cc, _)| cc == c))
    };
    let (pk, cols): (bool, Vec<usize>) = if covers(&tm.primary_key) {
        (true, tm.primary_key.clone())
    } else if let Some(rel) = tm
        .relations
        .iter()
        .find(|r| r.kind == RelationKind::Forward && covers(&r.local_columns))
    {
        (false, rel.local_columns.clone())
    } else if range.is_some() && node.limit.is_some() && (node.order.is_empty() || node.pk_order) {
        // An index on an arbitrary column hands over every row with the value (maybe a third
        // of the table) before the limit applies; from the range start the scan stops at the
        // limit.
        scan(node, conjuncts);
        return;
    } else if let Some((_, col, _)) = cands.iter().find(|(_, col, _)| table.has_index(&[*col])) {
        (false, vec![*col])
    } else if let Some((_, col, _)) = cands
        .iter()
        .find(|(_, col, _)| tm.columns[*col].ty != ColumnType::Bool)
    {
        (false, vec![*col])
    } else {
        scan(node, conjuncts);
        return;
    };
    // Keys: the cartesian product of each column's values, in `cols` order.
    let mut keys: Vec<Vec<Value>> = vec![Vec::with_capacity(cols.len())];
    let mut used = Vec::with_capacity(cols.len());
    for col in &cols {
        let (i, _, values) = cands
            .iter()
            .find(|(_, c, _)| c == col)
            .expect("covered column");
        used.push(*i);
        if keys.len().saturating_mul(values.len()) > MAX_LOOKUPS {
            scan(node, conjuncts);
            return;
        }
        keys = keys
            .iter()
            .flat_map(|k| {
                values.iter().map(move |v| {
                    let mut k = k.clone();
                    k.push(v.clone());
                    k
                })
            })
            .collect();
    }
    used.sort_unstable();
    for i in used.into_iter().rev() {
        if let BExpr::Pred(p) = conjuncts.remove(i) {
            node.access_preds.insert(0, p.src);
        }
    }
    node.access = if pk {
        Access::Pk(keys)
    } else {
        Access::Index { cols, keys }
    };
    node.filter = rebuild(conjuncts);
}

/// The remaining filter, cheapest terms first: `AND` stops at the first term that is not true,
/// so a column test placed before a relation filter spares the relation's lookups for every
/// row it rejects. (`AND` is commutative in three-valued logic, so the order never changes a
/// result.)
fn rebuild(mut conjuncts: Vec<BExpr<'_>>) -> Option<BExpr<'_>> {
    conjuncts.sort_by_key(hops_in);
    match conjuncts.len() {
        0 => None,
        1 => conjuncts.pop(),
        _ => Some(BExpr::And(conjuncts)),
    }
}

/// The start of a primary-key range scan: the largest `N` of the conjuncts `pk >= N` and
/// `pk > N` on the first primary-key column, when it is an integer (the one type whose storage
/// order is the comparison's order for every literal accepted).
fn pk_range_start(tm: &TableManifest, conjuncts: &[BExpr<'_>]) -> Option<Value> {
    let &pk0 = tm.primary_key.first()?;
    if tm.columns[pk0].ty != ColumnType::Int {
        return None;
    }
    conjuncts
        .iter()
        .filter_map(|c| match c {
            BExpr::Pred(p) if p.hops.is_empty() && p.col == pk0 => match &p.test {
                Test::Cmp(CmpOp::Ge | CmpOp::Gt, lit) => match key_of(ColumnType::Int, lit) {
                    Some(Some(Value::Int(n))) => Some(n),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .max()
        .map(Value::Int)
}

/// Children keep the access of their relation; only their filters' terms are ordered.
fn order_child_filters(node: &mut Node<'_>) {
    for o in &mut node.outputs {
        if let Output::Relation { node: child, .. } = o {
            if let Some(BExpr::And(terms)) = &mut child.filter {
                terms.sort_by_key(hops_in);
            }
            order_child_filters(child);
        }
    }
}

/// Relation hops an expression follows: a cost estimate (0 for tests of the row's own columns).
fn hops_in(e: &BExpr<'_>) -> usize {
    match e {
        BExpr::And(terms) | BExpr::Or(terms) => terms.iter().map(hops_in).sum(),
        BExpr::Not(inner) => hops_in(inner),
        BExpr::Pred(p) => p.hops.len(),
    }
}

/// The index keys that answer `p` exactly (`col = v`, `col IN (…)`), or `None` when an index
/// cannot answer it. Values that can never be equal (`int_col = 1.5`) give no key.
fn index_keys(p: &BPred<'_>) -> Option<Vec<Value>> {
    if !p.hops.is_empty() {
        return None;
    }
    let lits: &[Lit] = match &p.test {
        Test::Cmp(CmpOp::Eq, lit) => std::slice::from_ref(lit),
        Test::In {
            lits,
            negated: false,
            ..
        } => lits,
        _ => return None,
    };
    let mut keys = Vec::with_capacity(lits.len());
    for lit in lits {
        // Duplicate keys cost a lookup each; the executor drops duplicate rows.
        if let Some(k) = key_of(p.ty, lit)? {
            keys.push(k);
        }
    }
    Some(keys)
}

/// `None`: not indexable; `Some(None)`: matches nothing; `Some(Some(k))`: this key.
fn key_of(ty: ColumnType, lit: &Lit) -> Option<Option<Value>> {
    Some(match (ty, lit) {
        (_, Lit::Ord(_, true)) => None,
        (ColumnType::Int, Lit::Ord(q, _)) => i64::try_from(*q).ok().map(Value::Int),
        (ColumnType::Decimal { .. }, Lit::Ord(q, _)) => Some(Value::Decimal(*q)),
        (ColumnType::Date, Lit::Ord(q, _)) => {
            let day = DAY_US as i128;
            if q % day == 0 {
                i32::try_from(q / day).ok().map(Value::Date)
            } else {
                None
            }
        }
        (ColumnType::Time, Lit::Ord(q, _)) => i64::try_from(*q).ok().map(Value::Time),
        (ColumnType::DateTime, Lit::Ord(q, _)) => i64::try_from(*q).ok().map(Value::DateTime),
        (ColumnType::Timestamp, Lit::Ord(q, _)) => i64::try_from(*q).ok().map(Value::Timestamp),
        (ColumnType::Bool, Lit::Bool(b)) => Some(Value::Bool(*b)),
        (
            ColumnType::Text {
                case_insensitive: false,
            },
            Lit::Text(s),
        ) => Some(Value::Text(s.clone())),
        (ColumnType::Bytes, Lit::Bytes(b)) => Some(Value::Bytes(b.clone())),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// explain

/// The plan of `node` as JSON.
pub(crate) fn explain(snapshot: &Snapshot, node: &Node<'_>, options: &QueryOptions) -> Json {
    let default_limit = options.default_limit;
    let table = &snapshot.tables[node.table];
    let rows = table.row_count();
    let tm = node.manifest;
    let col_names = |cols: &[usize]| {
        cols.iter()
            .map(|c| tm.columns[*c].api_name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut obj = Map::new();
    obj.insert("table".into(), json!(tm.api_name));
    let (access, candidates) = match &node.access {
        Access::Scan | Access::Relation => ("scan".to_string(), rows),
        Access::PkFrom(from) => (
            format!(
                "pk_range({} >= {})",
                col_names(&tm.primary_key[..1]),
                match from {
                    Value::Int(n) => n.to_string(),
                    other => format!("{other:?}"),
                }
            ),
            rows,
        ),
        Access::Pk(keys) => ("pk_lookup".to_string(), keys.len().min(rows)),
        Access::Index { cols, keys } => {
            let per_key = per_key_estimate(snapshot, tm, cols, rows);
            (
                format!("index_lookup({})", col_names(cols)),
                keys.len().saturating_mul(per_key).min(rows),
            )
        }
    };
    obj.insert("access".into(), json!(access));
    if let Access::Index { cols, .. } = &node.access {
        // `false`: the first lookup builds the index (once per table version).
        obj.insert("index_exists".into(), json!(table.has_index(cols)));
    }
    if !node.access_preds.is_empty() {
        obj.insert(
            "access_filter".into(),
            json!(node
                .access_preds
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()),
        );
    }
    if let Access::Pk(keys) | Access::Index { keys, .. } = &node.access {
        obj.insert("lookups".into(), json!(keys.len()));
    }
    obj.insert(
        "estimated_rows".into(),
        json!(estimate(node, candidates, Some(default_limit))),
    );
    node_details(snapshot, node, &mut obj, Some(default_limit), options);
    Json::Object(obj)
}

/// Rows per key of a hash index: rows per parent for a foreign key, else a 1 % guess.
fn per_key_estimate(snapshot: &Snapshot, tm: &TableManifest, cols: &[usize], rows: usize) -> usize {
    if cols == tm.primary_key.as_slice() {
        return 1;
    }
    let parent = tm
        .relations
        .iter()
        .find(|r| r.kind == RelationKind::Forward && r.local_columns == cols)
        .and_then(|r| snapshot.table(&r.target_table))
        .map(|t| t.row_count());
    match parent {
        Some(p) => rows.div_ceil(p.max(1)).max(1),
        None => (rows / 100).max(1),
    }
}

/// Candidate rows cut by the filter (a guess: half per conjunct, at least one) and the limit.
fn estimate(node: &Node<'_>, candidates: usize, default_limit: Option<usize>) -> usize {
    let mut n = candidates;
    if let Some(f) = &node.filter {
        let conjuncts = if let BExpr::And(t) = f { t.len() } else { 1 };
        for _ in 0..conjuncts.min(8) {
            n = n.div_ceil(2);
        }
    }
    let limit = node.limit.or(default_limit).unwrap_or(usize::MAX);
    n.saturating_sub(node.offset).min(limit)
}

fn hop_access(hop: &Hop<'_>) -> String {
    match hop.lookup {
        Lookup::Pk(_) => "pk_lookup".into(),
        Lookup::Index => {
            let tm = hop.target_manifest;
            let cols: Vec<&str> = hop
                .rel
                .target_columns
                .iter()
                .map(|c| tm.columns[*c].api_name.as_str())
                .collect();
            format!("index_lookup({})", cols.join(", "))
        }
    }
}

fn hop_json(hop: &Hop<'_>) -> Json {
    json!({
        "relation": hop.rel.name,
        "kind": if hop.to_many { "reverse" } else { "forward" },
        "table": hop.target_manifest.api_name,
        "access": hop_access(hop),
    })
}

fn node_details(
    snapshot: &Snapshot,
    node: &Node<'_>,
    obj: &mut Map<String, Json>,
    default_limit: Option<usize>,
    options: &QueryOptions,
) {
    obj.insert(
        "filter".into(),
        node.filter
            .as_ref()
            .map(|f| json!(expr_text(f)))
            .unwrap_or(Json::Null),
    );
    let mut relation_filters = Vec::new();
    if let Some(f) = &node.filter {
        collect_relation_filters(snapshot, node.table, f, &mut relation_filters);
    }
    if !relation_filters.is_empty() {
        obj.insert("relation_filters".into(), Json::Array(relation_filters));
    }
    if !node.order.is_empty() {
        let keys: Vec<String> = node
            .order
            .iter()
            .map(|k| {
                format!(
                    "{} {} NULLS {}",
                    k.src.path,
                    if k.desc { "DESC" } else { "ASC" },
                    if k.nulls_first { "FIRST" } else { "LAST" }
                )
            })
            .collect();
        obj.insert("order_by".into(), json!(keys));
        // The primary key ascending is the order rows come in: no sort, and the scan stops
        // after `offset + limit` matches as without `ORDER BY`.
        obj.insert(
            "sort".into(),
            json!(if node.pk_order {
                "none (primary-key order)".to_string()
            } else if crate::exec::walks_column_order(node, &snapshot.tables[node.table]) {
                format!(
                    "first rows in the order of {} (built {})",
                    node.order[0].src.path,
                    if snapshot.tables[node.table].has_column_order(node.order[0].col) {
                        "already"
                    } else {
                        "on first use"
                    }
                )
            } else {
                "all matches".to_string()
            }),
        );
    } else {
        obj.insert("order_by".into(), json!("primary key"));
    }
    obj.insert("limit".into(), json!(node.limit));
    if let (None, Some(default)) = (node.limit, default_limit) {
        obj.insert("default_limit".into(), json!(default));
    }
    obj.insert("offset".into(), json!(node.offset));
    obj.insert(
        "fields".into(),
        json!(node.outputs.iter().map(|o| o.name()).collect::<Vec<_>>()),
    );
    let parent_rows = snapshot.tables[node.table].row_count().max(1);
    let mut children = Vec::new();
    for o in &node.outputs {
        if let Output::Relation {
            hop, node: child, ..
        } = o
        {
            let target_rows = snapshot.tables[hop.target].row_count();
            let per_parent = match (&hop.lookup, hop.to_many) {
                (Lookup::Pk(_), _) | (_, false) => 1.min(target_rows),
                (Lookup::Index, true) => target_rows.div_ceil(parent_rows),
            };
            let mut c = Map::new();
            c.insert("relation".into(), json!(hop.rel.name));
            c.insert(
                "kind".into(),
                json!(if hop.to_many { "reverse" } else { "forward" }),
            );
            c.insert("table".into(), json!(hop.target_manifest.api_name));
            c.insert("access".into(), json!(hop_access(hop)));
            // To-many selections without `LIMIT` show at most the nested default per parent.
            let child_default = hop.to_many.then_some(options.default_nested_limit);
            c.insert(
                "estimated_rows_per_parent".into(),
                json!(estimate(child, per_parent, child_default)),
            );
            node_details(snapshot, child, &mut c, child_default, options);
            children.push(Json::Object(c));
        }
    }
    obj.insert("children".into(), Json::Array(children));
}

fn collect_relation_filters(snapshot: &Snapshot, table: usize, e: &BExpr<'_>, out: &mut Vec<Json>) {
    match e {
        BExpr::And(t) | BExpr::Or(t) => t
            .iter()
            .for_each(|x| collect_relation_filters(snapshot, table, x, out)),
        BExpr::Not(x) => collect_relation_filters(snapshot, table, x, out),
        BExpr::Pred(p) if !p.hops.is_empty() => {
            let mut v = json!({
                "predicate": p.src.to_string(),
                "any_of": p.hops.iter().any(|h| h.to_many),
                "path": p.hops.iter().map(hop_json).collect::<Vec<_>>(),
            });
            if let (Json::Object(o), Json::Object(how)) =
                (&mut v, crate::semijoin::describe(snapshot, table, p))
            {
                o.extend(how);
            }
            out.push(v);
        }
        BExpr::Pred(_) => {}
    }
}

/// A bound expression as query text.
fn expr_text(e: &BExpr<'_>) -> String {
    let operand = |e: &BExpr<'_>| match e {
        BExpr::Pred(_) | BExpr::Not(_) => expr_text(e),
        _ => format!("({})", expr_text(e)),
    };
    match e {
        BExpr::And(t) => t.iter().map(operand).collect::<Vec<_>>().join(" AND "),
        BExpr::Or(t) => t.iter().map(operand).collect::<Vec<_>>().join(" OR "),
        BExpr::Not(x) => format!("NOT {}", operand(x)),
        BExpr::Pred(p) => p.src.to_string(),
    }
}
