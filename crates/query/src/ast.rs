//! Stage 2 output: the syntax tree, with the span of every name and value.
//!
//! `Display` prints a tree back as canonical query text; parsing that text gives the same tree
//! (the round-trip tests of the parser check it).

use std::borrow::Cow;
use std::fmt::{self, Display, Formatter, Write};

use crate::error::Span;

/// A name and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Name<'a> {
    pub text: &'a str,
    pub span: Span,
}

/// `name [ "(" args ")" ] "{" item* "}"`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Selection<'a> {
    pub name: Name<'a>,
    pub args: Args<'a>,
    pub items: Vec<Item<'a>>,
}

/// One entry between braces.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item<'a> {
    /// `*`: every scalar field.
    Star(Span),
    /// `...`: every scalar field and every relation with its scalar fields.
    Spread(Span),
    /// A field, or a relation without braces (its scalar fields).
    Field(Name<'a>),
    /// A relation with its own selection.
    Nested(Selection<'a>),
}

/// What is between the parentheses of a selection.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Args<'a> {
    pub filter: Option<Expr<'a>>,
    pub order: Vec<Order<'a>>,
    pub limit: Option<(u64, Span)>,
    pub offset: Option<(u64, Span)>,
}

/// `path [ASC|DESC] [NULLS FIRST|LAST]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Order<'a> {
    pub path: Path<'a>,
    pub desc: bool,
    /// `Some(true)` for `NULLS FIRST`, `Some(false)` for `NULLS LAST`.
    pub nulls_first: Option<bool>,
}

/// `name { "." name }`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Path<'a> {
    pub segments: Vec<Name<'a>>,
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr<'a> {
    Or(Vec<Expr<'a>>),
    And(Vec<Expr<'a>>),
    Not(Box<Expr<'a>>),
    Pred(Pred<'a>),
}

/// A predicate on one path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pred<'a> {
    pub path: Path<'a>,
    pub op: PredOp<'a>,
    /// Where the operator is written.
    pub op_span: Span,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// The operator part of a predicate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PredOp<'a> {
    Cmp(CmpOp, Value<'a>),
    In {
        negated: bool,
        values: Vec<Value<'a>>,
    },
    IsNull {
        negated: bool,
    },
    Between {
        negated: bool,
        low: Value<'a>,
        high: Value<'a>,
    },
    Like {
        negated: bool,
        case_insensitive: bool,
        pattern: Value<'a>,
    },
}

/// A literal and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Value<'a> {
    pub kind: ValueKind<'a>,
    pub span: Span,
}

/// The literals of the grammar.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ValueKind<'a> {
    Str(Cow<'a, str>),
    /// The number as written.
    Number(&'a str),
    Bool(bool),
    Null,
}

impl ValueKind<'_> {
    /// How an error message names this literal's kind.
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            ValueKind::Str(_) => "a string",
            ValueKind::Number(_) => "a number",
            ValueKind::Bool(_) => "a boolean",
            ValueKind::Null => "null",
        }
    }
}

fn write_name(f: &mut Formatter<'_>, name: &str) -> fmt::Result {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c == '_' || c.is_alphabetic())
        && name
            .chars()
            .all(|c| c == '_' || c == '$' || c.is_alphanumeric());
    if plain {
        f.write_str(name)
    } else {
        write!(f, "`{name}`")
    }
}

impl Display for Name<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_name(f, self.text)
    }
}

impl Display for Path<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, s) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_char('.')?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

impl Display for Value<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ValueKind::Str(s) => {
                f.write_char('"')?;
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        f.write_char('\\')?;
                    }
                    f.write_char(c)?;
                }
                f.write_char('"')
            }
            ValueKind::Number(n) => f.write_str(n),
            ValueKind::Bool(b) => write!(f, "{b}"),
            ValueKind::Null => f.write_str("null"),
        }
    }
}

impl Display for Pred<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let not = |n: bool| if n { "NOT " } else { "" };
        write!(f, "{} ", self.path)?;
        match &self.op {
            PredOp::Cmp(op, v) => write!(f, "{} {v}", op.symbol()),
            PredOp::In { negated, values } => {
                write!(f, "{}IN (", not(*negated))?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_char(')')
            }
            PredOp::IsNull { negated } => write!(f, "IS {}NULL", not(*negated)),
            PredOp::Between { negated, low, high } => {
                write!(f, "{}BETWEEN {low} AND {high}", not(*negated))
            }
            PredOp::Like {
                negated,
                case_insensitive,
                pattern,
            } => {
                write!(
                    f,
                    "{}{} {pattern}",
                    not(*negated),
                    if *case_insensitive { "ILIKE" } else { "LIKE" }
                )
            }
        }
    }
}

impl Display for Expr<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        // Every compound operand is parenthesized, so the text parses back to the same tree.
        let operand = |f: &mut Formatter<'_>, e: &Expr<'_>| match e {
            Expr::Pred(_) | Expr::Not(_) => write!(f, "{e}"),
            _ => write!(f, "({e})"),
        };
        match self {
            Expr::Or(terms) | Expr::And(terms) => {
                let sep = if matches!(self, Expr::Or(_)) {
                    " OR "
                } else {
                    " AND "
                };
                for (i, t) in terms.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    operand(f, t)?;
                }
                Ok(())
            }
            Expr::Not(e) => {
                f.write_str("NOT ")?;
                operand(f, e)
            }
            Expr::Pred(p) => write!(f, "{p}"),
        }
    }
}

impl Display for Order<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if self.desc {
            f.write_str(" DESC")?;
        }
        match self.nulls_first {
            Some(true) => f.write_str(" NULLS FIRST"),
            Some(false) => f.write_str(" NULLS LAST"),
            None => Ok(()),
        }
    }
}

impl Args<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.filter.is_none()
            && self.order.is_empty()
            && self.limit.is_none()
            && self.offset.is_none()
    }
}

impl Display for Args<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(e) = &self.filter {
            parts.push(e.to_string());
        }
        if !self.order.is_empty() {
            let list: Vec<String> = self.order.iter().map(|o| o.to_string()).collect();
            parts.push(format!("ORDER BY {}", list.join(", ")));
        }
        if let Some((n, _)) = self.limit {
            parts.push(format!("LIMIT {n}"));
        }
        if let Some((n, _)) = self.offset {
            parts.push(format!("OFFSET {n}"));
        }
        f.write_str(&parts.join(" "))
    }
}

impl Display for Selection<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if !self.args.is_empty() {
            write!(f, "({})", self.args)?;
        }
        f.write_str(" {")?;
        for item in &self.items {
            f.write_char(' ')?;
            match item {
                Item::Star(_) => f.write_char('*')?,
                Item::Spread(_) => f.write_str("...")?,
                Item::Field(n) => write!(f, "{n}")?,
                Item::Nested(s) => write!(f, "{s}")?,
            }
        }
        f.write_str(" }")
    }
}
