//! Stage 2: tokens → syntax tree (recursive descent).
//!
//! Nesting of selections and of expressions (parentheses, `NOT`) is capped by
//! `QueryOptions::max_depth`, so adversarial input gets an error instead of a stack overflow.

use crate::ast::{Args, Expr, Item, Name, Order, Path, Pred, PredOp, Selection, Value, ValueKind};
use crate::error::{error, expected, Result, Span};
use crate::lexer::{Tok, Token};

/// Depth accepted whatever the options say: deeper would risk the stack of a small thread.
pub(crate) const HARD_MAX_DEPTH: usize = 128;

struct Parser<'t, 'a> {
    tokens: &'t [Token<'a>],
    pos: usize,
    depth: usize,
    max_depth: usize,
}

/// Parse a whole query: exactly one top-level selection.
pub(crate) fn parse<'a>(tokens: &[Token<'a>], max_depth: usize) -> Result<Selection<'a>> {
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
        max_depth: max_depth.clamp(1, HARD_MAX_DEPTH),
    };
    let first = p.peek();
    match &first.tok {
        Tok::Ident(_) => {}
        Tok::Eof => {
            return Err(error(
                first.span,
                "empty query: expected a table name, like 'users { id }'",
            ))
        }
        Tok::RBrace => {
            return Err(error(
                first.span,
                "unbalanced braces: '}' has no matching '{'",
            ))
        }
        Tok::LBrace => {
            return Err(error(
                first.span,
                "expected a table name before '{', like 'users { id }' (the body is the query \
                 text itself: not JSON, and no GraphQL '{ … }' around it)",
            ));
        }
        other => return Err(expected(first.span, "a table name", &other.describe())),
    }
    let sel = p.selection()?;
    let next = p.peek();
    match next.tok {
        Tok::Eof => Ok(sel),
        Tok::RBrace => Err(error(
            next.span,
            "unbalanced braces: '}' has no matching '{'",
        )),
        _ => Err(error(
            next.span,
            format!(
                "unexpected {} after the end of the query (a query is one table selection)",
                next.tok.describe()
            ),
        )),
    }
}

fn is_kw(tok: &Tok<'_>, kw: &str) -> bool {
    matches!(tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
}

impl<'t, 'a> Parser<'t, 'a> {
    fn peek(&self) -> &'t Token<'a> {
        &self.tokens[self.pos]
    }

    fn peek_at(&self, ahead: usize) -> &'t Token<'a> {
        &self.tokens[(self.pos + ahead).min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> &'t Token<'a> {
        let t = &self.tokens[self.pos];
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn at_kw(&self, kw: &str) -> bool {
        is_kw(&self.peek().tok, kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.at_kw(kw) {
            self.next();
            true
        } else {
            false
        }
    }

    fn eat(&mut self, tok: &Tok<'_>) -> bool {
        if &self.peek().tok == tok {
            self.next();
            true
        } else {
            false
        }
    }

    fn enter(&mut self, span: Span) -> Result<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(error(
                span,
                format!(
                    "query nested too deeply (more than {} levels)",
                    self.max_depth
                ),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn name(&mut self, what: &str) -> Result<Name<'a>> {
        let t = self.next();
        match t.tok {
            Tok::Ident(text) => Ok(Name { text, span: t.span }),
            ref other => Err(expected(t.span, what, &other.describe())),
        }
    }

    /// `name [ "(" args ")" ] "{" item* "}"`; the current token is the name.
    fn selection(&mut self) -> Result<Selection<'a>> {
        let name = self.name("a name")?;
        self.enter(name.span)?;
        let args = if self.peek().tok == Tok::LParen {
            let open = self.next().span;
            let args = self.args()?;
            let close = self.next();
            if close.tok != Tok::RParen {
                return Err(expected(
                    close.span,
                    &format!("')' to close the '(' at {open}"),
                    &close.tok.describe(),
                ));
            }
            args
        } else {
            Args::default()
        };
        let open = self.next();
        if open.tok != Tok::LBrace {
            return Err(expected(
                open.span,
                &format!("'{{' and the fields to return after '{}'", name.text),
                &open.tok.describe(),
            ));
        }
        let mut items = Vec::new();
        loop {
            let t = self.peek();
            match &t.tok {
                Tok::RBrace => {
                    self.next();
                    break;
                }
                Tok::Eof => {
                    return Err(error(
                        open.span,
                        "unbalanced braces: this '{' is never closed",
                    ));
                }
                Tok::Comma => {
                    self.next();
                }
                Tok::Star => {
                    self.next();
                    items.push(Item::Star(t.span));
                }
                Tok::Ellipsis => {
                    self.next();
                    items.push(Item::Spread(t.span));
                }
                Tok::Ident(text) => {
                    if matches!(self.peek_at(1).tok, Tok::LParen | Tok::LBrace) {
                        items.push(Item::Nested(self.selection()?));
                    } else {
                        self.next();
                        items.push(Item::Field(Name { text, span: t.span }));
                    }
                }
                Tok::LBrace => {
                    return Err(error(
                        t.span,
                        "unexpected '{': a nested selection needs a relation name before it",
                    ));
                }
                other => {
                    return Err(expected(
                        t.span,
                        "a field name, '*', '...' or '}'",
                        &other.describe(),
                    ));
                }
            }
        }
        self.leave();
        Ok(Selection { name, args, items })
    }

    fn starts_clause(&self) -> bool {
        let clause_word = (self.at_kw("ORDER") && matches!(self.peek_at(1).tok, Tok::Ident(_)))
            || self.at_kw("LIMIT")
            || self.at_kw("OFFSET");
        clause_word && !self.is_pred_operator(1)
    }

    /// `[ expr ] [ ORDER BY … ] [ LIMIT n ] [ OFFSET n ]`, up to the closing parenthesis.
    fn args(&mut self) -> Result<Args<'a>> {
        let mut args = Args::default();
        if self.peek().tok != Tok::RParen && !self.starts_clause() {
            args.filter = Some(self.expr()?);
        }
        if self.at_kw("ORDER") {
            self.next();
            if !self.eat_kw("BY") {
                let t = self.peek();
                return Err(expected(t.span, "BY after ORDER", &t.tok.describe()));
            }
            loop {
                let path = self.path("a field to order by")?;
                let desc = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                let nulls_first = if self.eat_kw("NULLS") {
                    if self.eat_kw("FIRST") {
                        Some(true)
                    } else if self.eat_kw("LAST") {
                        Some(false)
                    } else {
                        let t = self.peek();
                        return Err(expected(
                            t.span,
                            "FIRST or LAST after NULLS",
                            &t.tok.describe(),
                        ));
                    }
                } else {
                    None
                };
                args.order.push(Order {
                    path,
                    desc,
                    nulls_first,
                });
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        if self.eat_kw("LIMIT") {
            args.limit = Some(self.count("LIMIT")?);
        }
        if self.eat_kw("OFFSET") {
            args.offset = Some(self.count("OFFSET")?);
        }
        let t = self.peek();
        if t.tok != Tok::RParen {
            let what = match (&args.filter, args.order.is_empty(), args.limit, args.offset) {
                (_, _, _, Some(_)) => "')'",
                (_, _, Some(_), None) => "OFFSET or ')'",
                (_, false, None, None) => "',', LIMIT, OFFSET or ')'",
                (Some(_), true, None, None) => "AND, OR, ORDER BY, LIMIT, OFFSET or ')'",
                (None, true, None, None) => "a filter, ORDER BY, LIMIT, OFFSET or ')'",
            };
            if matches!(t.tok, Tok::Star | Tok::Ellipsis) {
                return Err(wildcard_in_filter(t));
            }
            return Err(expected(t.span, what, &t.tok.describe()));
        }
        Ok(args)
    }

    fn count(&mut self, what: &str) -> Result<(u64, Span)> {
        let t = self.next();
        match t.tok {
            Tok::Number(n) => match n.parse::<u64>() {
                Ok(v) => Ok((v, t.span)),
                Err(_) => Err(error(
                    t.span,
                    format!("{what} needs a whole number of rows, found {n}"),
                )),
            },
            ref other => Err(expected(
                t.span,
                &format!("a number of rows after {what}"),
                &other.describe(),
            )),
        }
    }

    fn path(&mut self, what: &str) -> Result<Path<'a>> {
        let mut segments = Vec::with_capacity(1);
        loop {
            let t = self.peek();
            match t.tok {
                Tok::Ident(text) => {
                    self.next();
                    segments.push(Name { text, span: t.span });
                }
                Tok::Star | Tok::Ellipsis => return Err(wildcard_in_filter(t)),
                ref other => return Err(expected(t.span, what, &other.describe())),
            }
            if segments.len() > self.max_depth {
                return Err(error(
                    t.span,
                    format!("path longer than {} names", self.max_depth),
                ));
            }
            if !self.eat(&Tok::Dot) {
                return Ok(Path { segments });
            }
        }
    }

    /// `and { OR and }`.
    fn expr(&mut self) -> Result<Expr<'a>> {
        let first = self.and()?;
        if !self.at_kw("OR") {
            return Ok(first);
        }
        let mut terms = vec![first];
        while self.eat_kw("OR") {
            terms.push(self.and()?);
        }
        Ok(Expr::Or(terms))
    }

    /// `atom { AND atom }`.
    fn and(&mut self) -> Result<Expr<'a>> {
        let first = self.atom()?;
        if !self.at_kw("AND") {
            return Ok(first);
        }
        let mut terms = vec![first];
        while self.eat_kw("AND") {
            terms.push(self.atom()?);
        }
        Ok(Expr::And(terms))
    }

    /// `NOT atom | "(" expr ")" | pred`.
    fn atom(&mut self) -> Result<Expr<'a>> {
        let t = self.peek();
        match &t.tok {
            Tok::Ident(_) if self.at_kw("NOT") && !self.is_pred_operator(1) => {
                self.next();
                self.enter(t.span)?;
                let inner = self.atom()?;
                self.leave();
                Ok(Expr::Not(Box::new(inner)))
            }
            Tok::LParen => {
                self.next();
                self.enter(t.span)?;
                let inner = self.expr()?;
                let close = self.next();
                if close.tok != Tok::RParen {
                    return Err(expected(
                        close.span,
                        &format!("')' to close the '(' at {}", t.span),
                        &close.tok.describe(),
                    ));
                }
                self.leave();
                Ok(inner)
            }
            Tok::Star | Tok::Ellipsis => Err(wildcard_in_filter(t)),
            Tok::Ident(_) => Ok(Expr::Pred(self.pred()?)),
            other => Err(expected(
                t.span,
                "a filter (a field name, NOT or '(')",
                &other.describe(),
            )),
        }
    }

    /// Whether the token `ahead` starts a predicate operator, so a field named `not` still works
    /// in `not = 1`.
    fn is_pred_operator(&self, ahead: usize) -> bool {
        let t = &self.peek_at(ahead).tok;
        matches!(t, Tok::Cmp(_) | Tok::Dot)
            || ["IN", "IS", "BETWEEN", "LIKE", "ILIKE"]
                .iter()
                .any(|k| is_kw(t, k))
    }

    fn pred(&mut self) -> Result<Pred<'a>> {
        let path = self.path("a field name")?;
        let t = self.next();
        let op_span = t.span;
        let op = match &t.tok {
            Tok::Cmp(op) => PredOp::Cmp(*op, self.value()?),
            tok if is_kw(tok, "IS") => {
                let negated = self.eat_kw("NOT");
                if !self.eat_kw("NULL") {
                    let t = self.peek();
                    return Err(expected(
                        t.span,
                        &format!("NULL after IS{}", if negated { " NOT" } else { "" }),
                        &t.tok.describe(),
                    ));
                }
                PredOp::IsNull { negated }
            }
            tok => {
                let negated = is_kw(tok, "NOT");
                let t = if negated { self.next() } else { t };
                match &t.tok {
                    tok if is_kw(tok, "IN") => PredOp::In {
                        negated,
                        values: self.list()?,
                    },
                    tok if is_kw(tok, "BETWEEN") => {
                        let low = self.value()?;
                        if !self.eat_kw("AND") {
                            let t = self.peek();
                            return Err(expected(
                                t.span,
                                "AND between the bounds of BETWEEN",
                                &t.tok.describe(),
                            ));
                        }
                        let high = self.value()?;
                        PredOp::Between { negated, low, high }
                    }
                    tok if is_kw(tok, "LIKE") || is_kw(tok, "ILIKE") => {
                        let pattern = self.value()?;
                        if !matches!(pattern.kind, ValueKind::Str(_)) {
                            return Err(error(
                                pattern.span,
                                format!(
                                    "{} needs a string pattern, found {pattern}",
                                    if is_kw(tok, "LIKE") { "LIKE" } else { "ILIKE" }
                                ),
                            ));
                        }
                        PredOp::Like {
                            negated,
                            case_insensitive: is_kw(tok, "ILIKE"),
                            pattern,
                        }
                    }
                    other if negated => {
                        return Err(expected(
                            t.span,
                            "IN, BETWEEN, LIKE or ILIKE after NOT",
                            &other.describe(),
                        ));
                    }
                    Tok::Star | Tok::Ellipsis => return Err(wildcard_in_filter(t)),
                    other => {
                        return Err(expected(
                            t.span,
                            &format!(
                                "an operator after '{path}' (=, !=, <, <=, >, >=, IN, IS, BETWEEN, LIKE, ILIKE)"
                            ),
                            &other.describe(),
                        ));
                    }
                }
            }
        };
        Ok(Pred { path, op, op_span })
    }

    /// `"(" value { "," value } ")"`.
    fn list(&mut self) -> Result<Vec<Value<'a>>> {
        let open = self.next();
        if open.tok != Tok::LParen {
            return Err(expected(
                open.span,
                "'(' and a list of values after IN",
                &open.tok.describe(),
            ));
        }
        let mut values = Vec::new();
        loop {
            if values.is_empty() && self.peek().tok == Tok::RParen {
                return Err(error(self.peek().span, "IN needs at least one value"));
            }
            values.push(self.value()?);
            let t = self.next();
            match t.tok {
                Tok::Comma => {}
                Tok::RParen => return Ok(values),
                ref other => {
                    return Err(expected(
                        t.span,
                        &format!("',' or ')' to close the '(' at {}", open.span),
                        &other.describe(),
                    ));
                }
            }
        }
    }

    /// `string | number | true | false | null`.
    fn value(&mut self) -> Result<Value<'a>> {
        let t = self.next();
        let kind = match &t.tok {
            Tok::Str(s) => ValueKind::Str(s.clone()),
            Tok::Number(n) => ValueKind::Number(n),
            tok if is_kw(tok, "true") => ValueKind::Bool(true),
            tok if is_kw(tok, "false") => ValueKind::Bool(false),
            tok if is_kw(tok, "null") => ValueKind::Null,
            Tok::Star | Tok::Ellipsis => return Err(wildcard_in_filter(t)),
            other => {
                let hint = if matches!(other, Tok::Ident(_)) {
                    " (strings need quotes)"
                } else {
                    ""
                };
                return Err(expected(
                    t.span,
                    &format!("a value (string, number, true, false or null){hint}"),
                    &other.describe(),
                ));
            }
        };
        Ok(Value { kind, span: t.span })
    }
}

fn wildcard_in_filter(t: &Token<'_>) -> crate::QueryError {
    let w = t.tok.symbol();
    error(
        t.span,
        format!("'{w}' cannot be used inside a filter: wildcards select fields between braces, like 'users {{ {w} }}'"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::lex;

    fn parse_str(text: &str) -> Result<Selection<'_>> {
        parse(&lex(text)?, 32)
    }

    fn err(text: &str) -> (usize, usize, String) {
        let e = parse_str(text).unwrap_err();
        (e.line, e.column, e.message)
    }

    fn round_trip(text: &str) {
        let first = parse_str(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .to_string();
        let second = parse_str(&first)
            .unwrap_or_else(|e| panic!("{first}: {e}"))
            .to_string();
        assert_eq!(first, second, "round trip of {text}");
    }

    #[test]
    fn every_grammar_rule_round_trips() {
        for q in [
            "users { id name email }",
            "users { * }",
            "users { ... }",
            "users { * posts { id title } }",
            "users(plan = \"pro\") { id name email }",
            "posts(published = true AND user_id = 42) { id title }",
            "users(plan = \"pro\" OR (plan = \"free\" AND verified = true)) { id name }",
            "users(posts.published = true) { id name }",
            "users(posts.comments.approved = true) { id name }",
            "posts { id title author { id name } comments { id body } }",
            "posts { id comments(approved = true) { id } }",
            "users(id IN (1, 2, 3) AND name NOT IN ('a', \"b\")) { id, name }",
            "users(score IS NULL OR score IS NOT NULL) { id }",
            "users(score BETWEEN 1 AND 5 OR score NOT BETWEEN -1.5 AND 2e3) { id }",
            "users(name LIKE \"a%\" AND NOT name ILIKE 'B_' AND name NOT LIKE \"x\\\\%\") { id }",
            "users(NOT (a = 1 OR b != 2) AND c < 3 AND d <= 4 AND e > 5 AND f >= null) { id }",
            "users(ORDER BY name DESC NULLS FIRST, id ASC NULLS LAST LIMIT 10 OFFSET 5) { id }",
            "users(verified = true ORDER BY author.name LIMIT 1) { id }",
            "users(LIMIT 3) { id posts(OFFSET 2) { id } }",
            "users() { `odd name` }",
        ] {
            round_trip(q);
        }
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let s = parse_str("t(a = 1 OR b = 2 AND c = 3) { x }").unwrap();
        assert!(
            matches!(&s.args.filter, Some(Expr::Or(terms)) if terms.len() == 2 && matches!(terms[1], Expr::And(_)))
        );
    }

    #[test]
    fn keywords_are_case_insensitive_and_names_are_not_keywords() {
        parse_str("t(a = 1 and b = 2 or not c in (1) order by a desc nulls last limit 1 offset 2) { order limit }").unwrap();
        let s = parse_str("t(limit = 5) { id }").unwrap();
        assert!(s.args.filter.is_some() && s.args.limit.is_none());
        let s = parse_str("t(not = 5) { id }").unwrap();
        assert!(matches!(s.args.filter, Some(Expr::Pred(_))));
    }

    #[test]
    fn error_positions_are_exact() {
        assert_eq!(
            err("users { id"),
            (1, 7, "unbalanced braces: this '{' is never closed".into())
        );
        assert_eq!(
            err("users { id } }"),
            (1, 14, "unbalanced braces: '}' has no matching '{'".into())
        );
        assert_eq!(
            err("users(id = 1 { id }"),
            (
                1,
                14,
                "expected AND, OR, ORDER BY, LIMIT, OFFSET or ')', found '{'".into()
            )
        );
        assert_eq!(
            err("users"),
            (
                1,
                6,
                "expected '{' and the fields to return after 'users', found end of query".into()
            )
        );
        assert_eq!(
            err(""),
            (
                1,
                1,
                "empty query: expected a table name, like 'users { id }'".into()
            )
        );
        assert_eq!(
            err("users(id = ) { id }"),
            (
                1,
                12,
                "expected a value (string, number, true, false or null), found ')'".into()
            )
        );
        assert_eq!(err("users(name = bob) { id }"), (1, 14, "expected a value (string, number, true, false or null) (strings need quotes), found 'bob'".into()));
        assert_eq!(
            err("users(id IN ()) { id }"),
            (1, 14, "IN needs at least one value".into())
        );
        assert_eq!(
            err("users(name LIKE 5) { id }"),
            (1, 17, "LIKE needs a string pattern, found 5".into())
        );
        assert_eq!(
            err("users(id == 1) { id }"),
            (
                1,
                11,
                "expected a value (string, number, true, false or null), found '='".into()
            )
        );
        assert_eq!(
            err("users { id } posts { id }"),
            (
                1,
                14,
                "unexpected 'posts' after the end of the query (a query is one table selection)"
                    .into()
            )
        );
        assert_eq!(err("users(id) { id }"), (1, 9, "expected an operator after 'id' (=, !=, <, <=, >, >=, IN, IS, BETWEEN, LIKE, ILIKE), found ')'".into()));
        assert_eq!(
            err("users(LIMIT x) { id }"),
            (
                1,
                13,
                "expected a number of rows after LIMIT, found 'x'".into()
            )
        );
        assert_eq!(
            err("users(LIMIT 1.5) { id }"),
            (
                1,
                13,
                "LIMIT needs a whole number of rows, found 1.5".into()
            )
        );
        assert_eq!(
            err("users(ORDER name) { id }"),
            (1, 13, "expected BY after ORDER, found 'name'".into())
        );
        assert_eq!(
            err("users(id = 1 AND (a = 1 { id }"),
            (
                1,
                25,
                "expected ')' to close the '(' at line 1, column 18, found '{'".into()
            )
        );
        assert_eq!(
            err("users {\n  id\n  posts(\n    x = 1\n  {"),
            (
                5,
                3,
                "expected AND, OR, ORDER BY, LIMIT, OFFSET or ')', found '{'".into()
            )
        );
    }

    #[test]
    fn wildcards_inside_filters_have_their_own_message() {
        let msg = "'*' cannot be used inside a filter: wildcards select fields between braces, like 'users { * }'";
        assert_eq!(err("users(*) { id }"), (1, 7, msg.into()));
        assert_eq!(err("users(id = 1 AND *) { id }"), (1, 18, msg.into()));
        assert_eq!(err("users(posts.* = 1) { id }"), (1, 13, msg.into()));
        let e = err("users(...) { id }");
        assert_eq!((e.0, e.1), (1, 7));
        assert!(
            e.2.starts_with("'...' cannot be used inside a filter"),
            "{}",
            e.2
        );
        assert_eq!(err("users(id = *) { id }").1, 12);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for text in [
            "(".repeat(100_000),
            format!(
                "t({} a = 1 {}) {{ id }}",
                "(".repeat(10_000),
                ")".repeat(10_000)
            ),
            format!("t({} a = 1) {{ id }}", "NOT ".repeat(10_000)),
            format!("{}{}", "a { ".repeat(10_000), "}".repeat(10_000)),
            "{".repeat(100_000),
        ] {
            let e = parse_str(&text).unwrap_err();
            assert!(e.line >= 1 && e.column >= 1);
        }
        let e = parse_str(&format!(
            "t({} a = 1 {}) {{ id }}",
            "(".repeat(40),
            ")".repeat(40)
        ))
        .unwrap_err();
        assert_eq!(e.message, "query nested too deeply (more than 32 levels)");
        parse_str(&format!(
            "t({} a = 1 {}) {{ id }}",
            "(".repeat(31),
            ")".repeat(31)
        ))
        .unwrap();
    }
}
