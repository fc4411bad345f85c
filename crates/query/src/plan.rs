//! The bound plan: names resolved to table, column and relation indexes, literals converted to
//! the column types. The binder builds it, the planner picks each node's access path, the
//! executor runs it.

use std::cmp::Ordering;

use refract_schema::{ColumnType, Relation, TableManifest, Value};

use crate::ast;
use crate::collate::{CiRules, LikePattern};

/// One selection: a table, the keys it writes, its filter and ordering.
#[derive(Debug)]
pub(crate) struct Node<'a> {
    /// Index into `Snapshot::tables`.
    pub table: usize,
    pub manifest: &'a TableManifest,
    pub outputs: Vec<Output<'a>>,
    pub filter: Option<BExpr<'a>>,
    pub order: Vec<OrderKey<'a>>,
    /// `order` is the table's primary key ascending (see [`pk_order`]): rows already come in
    /// this order, so they stream and stop early as without `ORDER BY`.
    pub pk_order: bool,
    pub limit: Option<usize>,
    pub offset: usize,
    /// How the rows are found (top-level nodes; nested nodes follow their relation).
    pub access: Access,
    /// The filter conjuncts that the access path answers (for `explain`).
    pub access_preds: Vec<&'a ast::Pred<'a>>,
}

/// One key of a row object.
#[derive(Debug)]
pub(crate) enum Output<'a> {
    Column {
        name: &'a str,
        col: usize,
        ty: ColumnType,
    },
    Relation {
        name: &'a str,
        hop: Hop<'a>,
        node: Box<Node<'a>>,
    },
}

impl<'a> Output<'a> {
    /// Column `col` of `table`, under its API name.
    pub(crate) fn column(table: &'a TableManifest, col: usize) -> Output<'a> {
        let c = &table.columns[col];
        Output::Column {
            name: &c.api_name,
            col,
            ty: c.ty,
        }
    }

    /// Relation `hop.rel`, its rows selected by `node`.
    pub(crate) fn relation(hop: Hop<'a>, node: Node<'a>) -> Output<'a> {
        Output::Relation {
            name: &hop.rel.name,
            hop,
            node: Box::new(node),
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Output::Column { name, .. } | Output::Relation { name, .. } => name,
        }
    }
}

/// Following one relation from a row of the source table to rows of the target table.
#[derive(Debug)]
pub(crate) struct Hop<'a> {
    pub rel: &'a Relation,
    /// Index into `Snapshot::tables` of the target.
    pub target: usize,
    pub target_manifest: &'a TableManifest,
    pub to_many: bool,
    pub lookup: Lookup,
    /// For each key column: (local type, target type), to convert keys whose types differ.
    pub key_types: Vec<(ColumnType, ColumnType)>,
}

/// The index a hop uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The target columns are the target's primary key; for each primary-key position, the
    /// position in the relation's key.
    Pk(Vec<usize>),
    /// A hash index on the target columns.
    Index,
}

/// A bound filter expression.
#[derive(Debug)]
pub(crate) enum BExpr<'a> {
    And(Vec<BExpr<'a>>),
    Or(Vec<BExpr<'a>>),
    Not(Box<BExpr<'a>>),
    Pred(BPred<'a>),
}

/// A predicate on one column, maybe reached through relations (then it holds when at least one
/// related row satisfies it).
#[derive(Debug)]
pub(crate) struct BPred<'a> {
    pub hops: Vec<Hop<'a>>,
    pub col: usize,
    pub ty: ColumnType,
    pub test: Test,
    pub src: &'a ast::Pred<'a>,
}

/// The scalar part of a predicate.
#[derive(Debug)]
pub(crate) enum Test {
    Cmp(ast::CmpOp, Lit),
    In {
        lits: Vec<Lit>,
        /// `lits` are sorted and free of duplicates: membership is a binary search.
        sorted: bool,
        has_null: bool,
        negated: bool,
    },
    Between {
        low: Option<Lit>,
        high: Option<Lit>,
        negated: bool,
    },
    IsNull {
        negated: bool,
    },
    Like {
        pattern: LikePattern,
        negated: bool,
    },
}

/// A literal converted to its column's type.
#[derive(Debug, Clone)]
pub(crate) enum Lit {
    /// Integers, decimals (mantissa at the column's scale), dates and times (microseconds):
    /// `floor(value)` and whether a fraction was cut off.
    Ord(i128, bool),
    Float(f64),
    Bool(bool),
    Text(String),
    /// Folded by the rules of a case-insensitive column.
    TextCi(Vec<char>, CiRules),
    Bytes(Vec<u8>),
}

/// One `ORDER BY` key.
#[derive(Debug)]
pub(crate) struct OrderKey<'a> {
    /// Forward relations followed to reach the column.
    pub hops: Vec<Hop<'a>>,
    pub col: usize,
    pub ty: ColumnType,
    pub desc: bool,
    pub nulls_first: bool,
    pub src: &'a ast::Order<'a>,
}

/// Whether `order` sorts exactly as storage's primary-key order: the full primary key, column
/// by column, ascending, with no relation hops, where the executor's comparison of each column
/// equals storage's. Storage orders integers, decimals, dates and times numerically and text by
/// bytes, with NULL first; the executor compares case-sensitive text by bytes too
/// (`str::cmp`), but case-insensitive text by collation, and floats differently (`-0.0`, NaN),
/// so those (and any other type) never qualify. A nullable key column qualifies only with
/// `NULLS FIRST`, where NULLs sort where storage puts them. Ties (duplicate keys) keep
/// primary-key order in both paths.
pub(crate) fn pk_order(tm: &TableManifest, order: &[OrderKey<'_>]) -> bool {
    !tm.primary_key.is_empty()
        && order.len() == tm.primary_key.len()
        && order.iter().zip(&tm.primary_key).all(|(k, &pk)| {
            let col = &tm.columns[pk];
            k.hops.is_empty()
                && k.col == pk
                && !k.desc
                && (!col.nullable || k.nulls_first)
                && matches!(
                    col.ty,
                    ColumnType::Int
                        | ColumnType::Decimal { .. }
                        | ColumnType::Date
                        | ColumnType::DateTime
                        | ColumnType::Timestamp
                        | ColumnType::Time
                        | ColumnType::Text {
                            case_insensitive: false
                        }
                )
        })
}

/// How a node finds its candidate rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Access {
    /// Every row in primary-key order.
    Scan,
    /// Primary-key lookups, one per key (values in primary-key column order).
    Pk(Vec<Vec<Value>>),
    /// Hash-index lookups on `cols`, one per key.
    Index {
        cols: Vec<usize>,
        keys: Vec<Vec<Value>>,
    },
    /// Rows related to the parent row (nested nodes).
    Relation,
    /// Every row in primary-key order from the first whose first primary-key column (an
    /// integer) is not below the value: `id >= N` / `id > N` skip the rows before `N`. The
    /// predicate stays in the filter.
    PkFrom(Value),
}

/// SQL's three-valued logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tri {
    False,
    Unknown,
    True,
}

impl Tri {
    pub(crate) fn not(self) -> Tri {
        match self {
            Tri::False => Tri::True,
            Tri::Unknown => Tri::Unknown,
            Tri::True => Tri::False,
        }
    }

    pub(crate) fn from_bool(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }

    pub(crate) fn from_ordering(o: Option<Ordering>, op: ast::CmpOp) -> Tri {
        let Some(o) = o else { return Tri::Unknown };
        Tri::from_bool(match op {
            ast::CmpOp::Eq => o.is_eq(),
            ast::CmpOp::Ne => o.is_ne(),
            ast::CmpOp::Lt => o.is_lt(),
            ast::CmpOp::Le => o.is_le(),
            ast::CmpOp::Gt => o.is_gt(),
            ast::CmpOp::Ge => o.is_ge(),
        })
    }
}
