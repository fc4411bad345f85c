//! [`QueryError`], positions, and the helpers that build every error of every stage.

/// A position in the query text: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub line: u32,
    pub column: u32,
}

impl Span {
    pub(crate) fn new(line: u32, column: u32) -> Span {
        Span { line, column }
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// The result type of every stage.
pub(crate) type Result<T> = std::result::Result<T, QueryError>;

/// An error at `span`.
pub(crate) fn error(span: Span, message: impl Into<String>) -> QueryError {
    QueryError {
        line: span.line.max(1) as usize,
        column: span.column.max(1) as usize,
        message: message.into(),
    }
}

/// The one "expected X, found Y" error of the parser.
pub(crate) fn expected(span: Span, what: &str, found: &str) -> QueryError {
    error(span, format!("expected {what}, found {found}"))
}

/// `(did you mean 'x'?)` for the closest of `candidates` to `name`, when one is close enough.
pub(crate) fn suggestion<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = strsim::osa_distance(name, c);
        let len = name.chars().count().max(c.chars().count());
        let limit = (len / 3).max(1);
        let case_only = name.eq_ignore_ascii_case(c);
        if (d <= limit || case_only) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((if case_only { 0 } else { d }, c));
        }
    }
    match best {
        Some((_, c)) => format!(" (did you mean '{c}'?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_pick_the_closest_name() {
        assert_eq!(
            suggestion("emial", ["id", "name", "email"]),
            " (did you mean 'email'?)"
        );
        assert_eq!(
            suggestion("usres", ["users", "posts"]),
            " (did you mean 'users'?)"
        );
        assert_eq!(
            suggestion("Name", ["id", "name"]),
            " (did you mean 'name'?)"
        );
        assert_eq!(suggestion("zzz", ["id", "name"]), "");
        assert_eq!(suggestion("name", ["plan"]), "");
    }
}

/// A query that cannot run, with the position of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct QueryError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong, with a suggestion when a name is misspelled.
    pub message: String,
}
