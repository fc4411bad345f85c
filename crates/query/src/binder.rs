//! Stage 3: syntax tree → bound plan. Resolves table, field and relation names against the
//! snapshot's manifests and converts every literal to its column's type, so type errors are
//! reported before anything runs.
//!
//! Keys of a row object: each key appears once, at its first position in the query (wildcards
//! expand in column order at their own position); when an explicit item names a key that a
//! wildcard already produced, the explicit item supplies the value (`{ ... posts { id } }` keeps
//! `posts` where `...` put it, with only `id`). Listing the same field twice explicitly is an
//! error. A relation named without braces returns its scalar fields.

use refract_schema::{ColumnType, Relation, RelationKind, TableManifest};
use refract_storage::Snapshot;

use crate::ast::{self, CmpOp, Expr, Item, Name, PredOp, Selection, Value, ValueKind};
use crate::collate::{CiRules, Fold, LikePattern};
use crate::error::{error, suggestion, Result, Span};
use crate::literal::{parse_datetime, parse_time, Exact};
use crate::plan::{pk_order, Access, BExpr, BPred, Hop, Lit, Lookup, Node, OrderKey, Output, Test};

/// Bind a parsed query against `snapshot`.
pub(crate) fn bind<'a>(snapshot: &'a Snapshot, query: &'a Selection<'a>) -> Result<Node<'a>> {
    let b = Binder {
        snapshot,
        ci: CiRules::for_backend(snapshot.manifest.backend),
    };
    let name = &query.name;
    let Some(table) = snapshot
        .tables
        .iter()
        .position(|t| t.manifest.api_name == name.text)
    else {
        let names = snapshot.tables.iter().map(|t| t.manifest.api_name.as_str());
        let mut hint = suggestion(name.text, names.clone());
        if ["query", "mutation", "subscription"]
            .iter()
            .any(|kw| name.text.eq_ignore_ascii_case(kw))
        {
            // GraphQL's `query { users { id } }` wrapper.
            hint = " ('query { … }' is GraphQL: write the selection itself, like 'users { id }')"
                .into();
        } else if hint.is_empty() && snapshot.tables.len() <= 12 {
            hint = format!(" (tables: {})", names.collect::<Vec<_>>().join(", "));
        }
        return Err(error(
            name.span,
            format!("unknown table '{}'{hint}", name.text),
        ));
    };
    b.selection(query, table)
}

struct Binder<'a> {
    snapshot: &'a Snapshot,
    /// How case-insensitive columns compare on this source.
    ci: CiRules,
}

impl<'a> Binder<'a> {
    fn manifest(&self, table: usize) -> &'a TableManifest {
        &self.snapshot.tables[table].manifest
    }

    fn selection(&self, sel: &'a Selection<'a>, table: usize) -> Result<Node<'a>> {
        let tm = self.manifest(table);
        let mut outputs: Vec<(Output<'a>, bool)> = Vec::with_capacity(sel.items.len());
        let push =
            |outputs: &mut Vec<(Output<'a>, bool)>, out: Output<'a>, explicit: bool, span: Span| {
                match outputs.iter().position(|(o, _)| o.name() == out.name()) {
                    None => outputs.push((out, explicit)),
                    Some(i) if explicit && !outputs[i].1 => outputs[i] = (out, true),
                    Some(_) if explicit => {
                        return Err(error(
                            span,
                            format!("field '{}' is listed twice", out.name()),
                        ));
                    }
                    Some(_) => {}
                }
                Ok(())
            };
        for item in &sel.items {
            match item {
                Item::Star(span) | Item::Spread(span) => {
                    for col in 0..tm.columns.len() {
                        push(&mut outputs, Output::column(tm, col), false, *span)?;
                    }
                    if matches!(item, Item::Spread(_)) {
                        for rel in &tm.relations {
                            if let Ok(hop) = self.hop(tm, rel, *span) {
                                let node = self.scalars(hop.target);
                                push(&mut outputs, Output::relation(hop, node), false, *span)?;
                            }
                        }
                    }
                }
                Item::Field(name) => {
                    let out = if let Some(col) = tm.column_index(name.text) {
                        Output::column(tm, col)
                    } else if let Some(rel) = tm.relation(name.text) {
                        let hop = self.hop(tm, rel, name.span)?;
                        let node = self.scalars(hop.target);
                        Output::relation(hop, node)
                    } else {
                        return Err(unknown_field(tm, name));
                    };
                    push(&mut outputs, out, true, name.span)?;
                }
                Item::Nested(inner) => {
                    let name = &inner.name;
                    let Some(rel) = tm.relation(name.text) else {
                        if tm.column_index(name.text).is_some() {
                            return Err(error(
                                name.span,
                                format!(
                                    "'{}' is a field of table '{}', not a relation: it takes no '{{ }}' or '( )'",
                                    name.text, tm.api_name
                                ),
                            ));
                        }
                        return Err(unknown_relation(tm, name));
                    };
                    let hop = self.hop(tm, rel, name.span)?;
                    let node = self.selection(inner, hop.target)?;
                    push(&mut outputs, Output::relation(hop, node), true, name.span)?;
                }
            }
        }
        let args = &sel.args;
        let filter = match &args.filter {
            Some(e) => Some(self.expr(e, table)?),
            None => None,
        };
        let order = args
            .order
            .iter()
            .map(|o| self.order_key(o, table))
            .collect::<Result<Vec<_>>>()?;
        let count = |v: Option<(u64, Span)>, what: &str| -> Result<Option<usize>> {
            match v {
                None => Ok(None),
                Some((n, span)) => usize::try_from(n)
                    .map(Some)
                    .map_err(|_| error(span, format!("{what} is too large"))),
            }
        };
        Ok(Node {
            table,
            manifest: tm,
            outputs: outputs.into_iter().map(|(o, _)| o).collect(),
            filter,
            pk_order: pk_order(tm, &order),
            order,
            limit: count(args.limit, "LIMIT")?,
            offset: count(args.offset, "OFFSET")?.unwrap_or(0),
            access: Access::Relation,
            access_preds: Vec::new(),
        })
    }

    /// The scalar fields of a table, for `...` and relations named without braces.
    fn scalars(&self, table: usize) -> Node<'a> {
        let tm = self.manifest(table);
        Node {
            table,
            manifest: tm,
            outputs: (0..tm.columns.len())
                .map(|col| Output::column(tm, col))
                .collect(),
            filter: None,
            order: Vec::new(),
            pk_order: false,
            limit: None,
            offset: 0,
            access: Access::Relation,
            access_preds: Vec::new(),
        }
    }

    fn hop(&self, tm: &'a TableManifest, rel: &'a Relation, span: Span) -> Result<Hop<'a>> {
        let Some(target) = self
            .snapshot
            .tables
            .iter()
            .position(|t| t.manifest.api_name == rel.target_table)
        else {
            return Err(error(
                span,
                format!(
                    "relation '{}' of table '{}' leads to table '{}', which is not loaded",
                    rel.name, tm.api_name, rel.target_table
                ),
            ));
        };
        let target_manifest = self.manifest(target);
        let pk = &target_manifest.primary_key;
        let lookup = if !pk.is_empty()
            && pk.len() == rel.target_columns.len()
            && pk.iter().all(|c| rel.target_columns.contains(c))
        {
            Lookup::Pk(
                pk.iter()
                    .map(|c| rel.target_columns.iter().position(|t| t == c).unwrap_or(0))
                    .collect(),
            )
        } else {
            Lookup::Index
        };
        let key_types = rel
            .local_columns
            .iter()
            .zip(&rel.target_columns)
            .map(|(l, t)| (tm.columns[*l].ty, target_manifest.columns[*t].ty))
            .collect();
        Ok(Hop {
            rel,
            target,
            target_manifest,
            to_many: rel.kind == RelationKind::Reverse,
            lookup,
            key_types,
        })
    }

    /// Resolve `a.b.c`: relations, then a column of the last table.
    fn path(&self, path: &'a ast::Path<'a>, table: usize) -> Result<(Vec<Hop<'a>>, usize, usize)> {
        let mut hops = Vec::new();
        let mut table = table;
        let (last, rels) = path
            .segments
            .split_last()
            .expect("a path has at least one name");
        for name in rels {
            let tm = self.manifest(table);
            let Some(rel) = tm.relation(name.text) else {
                if tm.column_index(name.text).is_some() {
                    return Err(error(
                        name.span,
                        format!("'{}' is a field of table '{}', not a relation: only relations can be followed with '.'", name.text, tm.api_name),
                    ));
                }
                return Err(unknown_relation(tm, name));
            };
            let hop = self.hop(tm, rel, name.span)?;
            table = hop.target;
            hops.push(hop);
        }
        let tm = self.manifest(table);
        let Some(col) = tm.column_index(last.text) else {
            if let Some(rel) = tm.relation(last.text) {
                let example = self
                    .manifest_by_name(&rel.target_table)
                    .and_then(|t| t.columns.first())
                    .map(|c| c.api_name.as_str())
                    .unwrap_or("id");
                return Err(error(
                    last.span,
                    format!(
                        "'{}' is a relation of table '{}', not a field: name one of its fields, like '{}.{}'",
                        last.text, tm.api_name, last.text, example
                    ),
                ));
            }
            return Err(unknown_field(tm, last));
        };
        Ok((hops, table, col))
    }

    fn manifest_by_name(&self, name: &str) -> Option<&'a TableManifest> {
        self.snapshot.table(name).map(|t| &*t.manifest)
    }

    fn order_key(&self, o: &'a ast::Order<'a>, table: usize) -> Result<OrderKey<'a>> {
        let (hops, last_table, col) = self.path(&o.path, table)?;
        if let Some((i, _)) = hops.iter().enumerate().find(|(_, h)| h.to_many) {
            let name = &o.path.segments[i];
            return Err(error(
                name.span,
                format!(
                    "cannot order by '{}': '{}' is a to-many relation (only fields of this table and of to-one relations can order rows)",
                    o.path, name.text
                ),
            ));
        }
        let ty = self.manifest(last_table).columns[col].ty;
        Ok(OrderKey {
            hops,
            col,
            ty,
            desc: o.desc,
            nulls_first: o.nulls_first.unwrap_or(o.desc),
            src: o,
        })
    }

    fn expr(&self, e: &'a Expr<'a>, table: usize) -> Result<BExpr<'a>> {
        Ok(match e {
            Expr::Or(terms) => BExpr::Or(
                terms
                    .iter()
                    .map(|t| self.expr(t, table))
                    .collect::<Result<_>>()?,
            ),
            Expr::And(terms) => BExpr::And(
                terms
                    .iter()
                    .map(|t| self.expr(t, table))
                    .collect::<Result<_>>()?,
            ),
            Expr::Not(inner) => BExpr::Not(Box::new(self.expr(inner, table)?)),
            Expr::Pred(p) => BExpr::Pred(self.pred(p, table)?),
        })
    }

    fn pred(&self, p: &'a ast::Pred<'a>, table: usize) -> Result<BPred<'a>> {
        let (hops, last_table, col) = self.path(&p.path, table)?;
        let tm = self.manifest(last_table);
        let field = Field {
            name: &tm.columns[col].api_name,
            table: &tm.api_name,
            ty: tm.columns[col].ty,
            ci: self.ci,
        };
        let ty = field.ty;
        if ty == ColumnType::Json && !matches!(p.op, PredOp::IsNull { .. }) {
            return Err(error(
                p.op_span,
                format!(
                    "field '{}' on table '{}' is json: only IS NULL and IS NOT NULL apply to it",
                    field.name, field.table
                ),
            ));
        }
        let test = match &p.op {
            PredOp::Cmp(op, v) => match field.lit(v)? {
                Some(lit) => Test::Cmp(*op, lit),
                // `x = null` silently matching nothing is a classic trap: say so.
                None => {
                    let hint = match op {
                        CmpOp::Eq => format!("write '{} IS NULL'", field.name),
                        CmpOp::Ne => format!("write '{} IS NOT NULL'", field.name),
                        _ => "use IS NULL or IS NOT NULL".to_string(),
                    };
                    return Err(error(
                        v.span,
                        format!("a comparison with null is never true (SQL semantics): {hint}"),
                    ));
                }
            },
            PredOp::In { negated, values } => {
                let mut lits = Vec::with_capacity(values.len());
                let mut has_null = false;
                for v in values {
                    match field.lit(v)? {
                        Some(l) => lits.push(l),
                        None => has_null = true,
                    }
                }
                let sorted = sort_lits(&mut lits);
                Test::In {
                    lits,
                    sorted,
                    has_null,
                    negated: *negated,
                }
            }
            PredOp::IsNull { negated } => Test::IsNull { negated: *negated },
            PredOp::Between { negated, low, high } => Test::Between {
                low: field.lit(low)?,
                high: field.lit(high)?,
                negated: *negated,
            },
            PredOp::Like {
                negated,
                case_insensitive,
                pattern,
            } => {
                let ValueKind::Str(text) = &pattern.kind else {
                    return Err(error(pattern.span, "LIKE needs a string pattern"));
                };
                let ColumnType::Text {
                    case_insensitive: column_ci,
                } = ty
                else {
                    return Err(error(
                        p.op_span,
                        format!(
                            "{} needs a string field, but field '{}' on table '{}' is {}",
                            if *case_insensitive { "ILIKE" } else { "LIKE" },
                            field.name,
                            field.table,
                            ty.name()
                        ),
                    ));
                };
                let fold = match (column_ci, *case_insensitive) {
                    (true, _) => self.ci.fold,
                    (false, true) => Fold::Lower,
                    (false, false) => Fold::Exact,
                };
                Test::Like {
                    pattern: LikePattern::compile(text, fold),
                    negated: *negated,
                }
            }
        };
        Ok(BPred {
            hops,
            col,
            ty,
            test,
            src: p,
        })
    }
}

/// The column a literal is compared with, for conversions and their error messages.
struct Field<'m> {
    name: &'m str,
    table: &'m str,
    ty: ColumnType,
    ci: CiRules,
}

impl Field<'_> {
    fn mismatch(&self, v: &Value<'_>) -> crate::QueryError {
        error(
            v.span,
            format!(
                "type mismatch: field '{}' on table '{}' is {}, but {} is {}",
                self.name,
                self.table,
                self.ty.name(),
                v,
                v.kind.kind_name()
            ),
        )
    }

    fn invalid(&self, v: &Value<'_>, expected: &str) -> crate::QueryError {
        error(
            v.span,
            format!(
                "invalid {} {} for field '{}' on table '{}' (expected {expected})",
                self.ty.name(),
                v,
                self.name,
                self.table
            ),
        )
    }

    /// `v` converted to this field's type; `None` for `null`.
    fn lit(&self, v: &Value<'_>) -> Result<Option<Lit>> {
        let lit = match (&v.kind, self.ty) {
            (ValueKind::Null, _) => return Ok(None),
            (ValueKind::Number(n), ColumnType::Int) => {
                let x = Exact::parse(n)
                    .ok_or_else(|| error(v.span, format!("number {n} is out of range")))?;
                let (q, frac) = x.at_scale(0);
                Lit::Ord(q, frac)
            }
            (ValueKind::Number(n), ColumnType::Decimal { scale }) => {
                let x = Exact::parse(n)
                    .ok_or_else(|| error(v.span, format!("number {n} is out of range")))?;
                let (q, frac) = x.at_scale(scale as u32);
                Lit::Ord(q, frac)
            }
            (ValueKind::Number(n), ColumnType::Float) => Lit::Float(
                n.parse::<f64>()
                    .map_err(|_| error(v.span, format!("number {n} is out of range")))?,
            ),
            (ValueKind::Bool(b), ColumnType::Bool) => Lit::Bool(*b),
            (ValueKind::Number(n), ColumnType::Bool) if *n == "0" || *n == "1" => {
                Lit::Bool(*n == "1")
            }
            (
                ValueKind::Str(s),
                ColumnType::Text {
                    case_insensitive: false,
                },
            ) => Lit::Text(s.to_string()),
            (
                ValueKind::Str(s),
                ColumnType::Text {
                    case_insensitive: true,
                },
            ) => Lit::TextCi(self.ci.fold_str(s), self.ci),
            (ValueKind::Str(s), ColumnType::Bytes) => Lit::Bytes(s.as_bytes().to_vec()),
            (ValueKind::Str(s), ColumnType::Date | ColumnType::DateTime) => {
                let expected = if self.ty == ColumnType::Date {
                    "YYYY-MM-DD"
                } else {
                    "YYYY-MM-DDTHH:MM:SS[.ffffff]"
                };
                let d = parse_datetime(s).ok_or_else(|| self.invalid(v, expected))?;
                if d.offset.is_some() {
                    return Err(error(
                        v.span,
                        format!(
                            "field '{}' on table '{}' is {} without a time zone: write {v} without a zone",
                            self.name,
                            self.table,
                            self.ty.name()
                        ),
                    ));
                }
                Lit::Ord(d.micros, d.frac)
            }
            (ValueKind::Str(s), ColumnType::Timestamp) => {
                let d = parse_datetime(s)
                    .ok_or_else(|| self.invalid(v, "YYYY-MM-DDTHH:MM:SS[.ffffff][Z|±HH:MM]"))?;
                Lit::Ord(d.micros - d.offset.unwrap_or(0) as i128 * 1_000_000, d.frac)
            }
            (ValueKind::Str(s), ColumnType::Time) => {
                let (t, frac) =
                    parse_time(s).ok_or_else(|| self.invalid(v, "HH:MM:SS[.ffffff]"))?;
                Lit::Ord(t, frac)
            }
            _ => return Err(self.mismatch(v)),
        };
        Ok(Some(lit))
    }
}

/// Sort long `IN` lists of numbers, dates or exact text so membership is a binary search
/// (a list can hold 100,000 values); returns whether it did.
fn sort_lits(lits: &mut Vec<Lit>) -> bool {
    if lits.len() <= 8 {
        return false;
    }
    if lits.iter().all(|l| matches!(l, Lit::Ord(..))) {
        let key = |l: &Lit| match l {
            Lit::Ord(q, f) => (*q, *f),
            _ => (0, false),
        };
        lits.sort_unstable_by_key(key);
        lits.dedup_by_key(|l| key(l));
        return true;
    }
    if lits.iter().all(|l| matches!(l, Lit::Text(_))) {
        lits.sort_unstable_by(|a, b| match (a, b) {
            (Lit::Text(x), Lit::Text(y)) => x.cmp(y),
            _ => std::cmp::Ordering::Equal,
        });
        lits.dedup_by(|a, b| matches!((a, b), (Lit::Text(x), Lit::Text(y)) if x == y));
        return true;
    }
    false
}

fn unknown_field(tm: &TableManifest, name: &Name<'_>) -> crate::QueryError {
    let candidates = tm
        .columns
        .iter()
        .map(|c| c.api_name.as_str())
        .chain(tm.relations.iter().map(|r| r.name.as_str()));
    error(
        name.span,
        format!(
            "unknown field '{}' on table '{}'{}",
            name.text,
            tm.api_name,
            suggestion(name.text, candidates)
        ),
    )
}

fn unknown_relation(tm: &TableManifest, name: &Name<'_>) -> crate::QueryError {
    let mut hint = suggestion(name.text, tm.relations.iter().map(|r| r.name.as_str()));
    if hint.is_empty() {
        hint = if tm.relations.is_empty() {
            " (it has no relations)".into()
        } else {
            format!(
                " (relations: {})",
                tm.relations
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
    }
    error(
        name.span,
        format!(
            "unknown relation '{}' on table '{}'{hint}",
            name.text, tm.api_name
        ),
    )
}
