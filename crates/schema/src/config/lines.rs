//! Key path → line, computed from the YAML text.
//!
//! `serde_yaml_ng::Value` carries no positions, so this scanner walks the text once and records
//! the 1-based line of every block-style key and sequence item under a path such as
//! `tables[2].columns[0]` (sequence indexes are 0-based, mapping keys are joined with `.`).
//! It follows indentation only, which is exact for block-style YAML: the content of flow
//! collections (`[a, b]`, `{k: v}`), block scalars (`|`, `>`) and multi-line scalars is skipped,
//! so those items resolve to the line of their parent key through [`line_of`].
//!
//! The scanner never fails: the text has already been parsed by `serde_yaml_ng`, and a line it
//! does not understand is skipped.

use std::collections::BTreeMap;

/// The line of `path`, or of its nearest ancestor that has one (`tables[1].columns[3]` →
/// `tables[1].columns` → `tables[1]` → `tables`).
pub(crate) fn line_of(lines: &BTreeMap<String, usize>, path: &str) -> Option<usize> {
    let mut path = path;
    loop {
        if let Some(line) = lines.get(path) {
            return Some(*line);
        }
        path = parent(path)?;
    }
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → `None`.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']') {
        if let Some(i) = path.rfind('[') {
            return Some(&path[..i]);
        }
    }
    match path.rfind('.') {
        Some(i) => Some(&path[..i]),
        None => Some(""),
    }
}

/// Join a parent path and a mapping key.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A mapping key that appears twice in one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Duplicate {
    /// Key path.
    pub path: String,
    /// Line of the first occurrence.
    pub first: usize,
    /// Line of the repeat.
    pub line: usize,
}

/// Record the line of every block-style key and sequence item of `text`, and the keys that
/// appear twice in one mapping.
pub(crate) fn scan(text: &str) -> (BTreeMap<String, usize>, Vec<Duplicate>) {
    let mut scanner = Scanner::default();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, line) in text.lines().enumerate() {
        scanner.line(i + 1, line);
    }
    (scanner.lines, scanner.duplicates)
}

#[derive(Debug)]
enum Kind {
    Map,
    Seq { next: usize },
}

/// An open block collection: a mapping whose keys sit at `col`, or a sequence whose dashes do.
#[derive(Debug)]
struct Frame {
    col: usize,
    path: String,
    kind: Kind,
}

/// A key or dash whose value starts on a later line (`tables:` then `- name: …`).
#[derive(Debug)]
struct Pending {
    col: usize,
    path: String,
    /// After a key, a sequence may start at the key's own column (`key:` / `- item`).
    from_key: bool,
}

/// Lines to skip because they continue a value that started earlier.
#[derive(Debug, Default)]
enum Skip {
    #[default]
    None,
    /// Block scalar or multi-line plain scalar: lines indented deeper than `parent`.
    Deeper { parent: usize, plain: bool },
    /// An unclosed flow collection or quoted scalar.
    Flow(FlowState),
}

#[derive(Debug, Default, Clone, Copy)]
struct FlowState {
    depth: usize,
    quote: Option<char>,
}

impl FlowState {
    /// Scan `s`; returns the state at its end.
    fn feed(mut self, s: &str) -> FlowState {
        let mut chars = s.chars().peekable();
        let mut prev_space = true;
        while let Some(c) = chars.next() {
            match self.quote {
                Some('"') => match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => self.quote = None,
                    _ => {}
                },
                Some(_) => {
                    if c == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            self.quote = None;
                        }
                    }
                }
                None => match c {
                    '"' | '\'' => self.quote = Some(c),
                    '[' | '{' => self.depth += 1,
                    ']' | '}' => self.depth = self.depth.saturating_sub(1),
                    '#' if prev_space => break,
                    _ => {}
                },
            }
            prev_space = c == ' ' || c == '\t';
        }
        self
    }

    fn open(&self) -> bool {
        self.depth > 0 || self.quote.is_some()
    }
}

#[derive(Debug)]
struct Scanner {
    lines: BTreeMap<String, usize>,
    duplicates: Vec<Duplicate>,
    stack: Vec<Frame>,
    pending: Option<Pending>,
    skip: Skip,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            lines: BTreeMap::new(),
            duplicates: Vec::new(),
            stack: Vec::new(),
            // The root: the first key or dash opens the top-level collection.
            pending: Some(Pending {
                col: 0,
                path: String::new(),
                from_key: true,
            }),
            skip: Skip::None,
        }
    }
}

impl Scanner {
    fn line(&mut self, number: usize, line: &str) {
        let content = line.trim_start_matches(' ');
        let col = line.len() - content.len();
        let blank = content.trim().is_empty();
        match &mut self.skip {
            Skip::None => {}
            Skip::Deeper { parent, plain } => {
                let comment = *plain && content.starts_with('#');
                if blank || (col > *parent && !comment) {
                    return;
                }
                self.skip = Skip::None;
            }
            Skip::Flow(state) => {
                let next = state.feed(line);
                self.skip = if next.open() {
                    Skip::Flow(next)
                } else {
                    Skip::None
                };
                return;
            }
        }
        if blank || content.starts_with('#') {
            return;
        }
        if col == 0 && (content.starts_with("---") || content.starts_with("...")) {
            return;
        }
        self.content(number, col, content);
    }

    /// One line's content starting at column `col` (after any dashes already handled).
    fn content(&mut self, number: usize, mut col: usize, mut content: &str) {
        loop {
            if is_dash(content) {
                let Some(item) = self.seq_item(col) else {
                    return;
                };
                self.lines.insert(item.clone(), number);
                let rest = &content[1..];
                let trimmed = rest.trim_start_matches(' ');
                let item_col = col + 1 + (rest.len() - trimmed.len());
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    self.pending = Some(Pending {
                        col,
                        path: item,
                        from_key: false,
                    });
                    return;
                }
                if is_dash(trimmed) {
                    self.pending = Some(Pending {
                        col,
                        path: item,
                        from_key: false,
                    });
                    col = item_col;
                    content = trimmed;
                    continue;
                }
                if split_key(trimmed).is_some() {
                    self.stack.push(Frame {
                        col: item_col,
                        path: item,
                        kind: Kind::Map,
                    });
                    col = item_col;
                    content = trimmed;
                    continue;
                }
                self.value(col, trimmed);
                return;
            }
            let Some((key, value)) = split_key(content) else {
                self.pending = None;
                return;
            };
            let Some(parent) = self.map_at(col) else {
                return;
            };
            let path = join(&parent, &key);
            if let Some(first) = self.lines.insert(path.clone(), number) {
                self.lines.insert(path.clone(), first);
                self.duplicates.push(Duplicate {
                    path: path.clone(),
                    first,
                    line: number,
                });
            }
            let value = value.trim_start();
            if value.is_empty() || value.starts_with('#') {
                self.pending = Some(Pending {
                    col,
                    path,
                    from_key: true,
                });
            } else {
                self.value(col, value);
            }
            return;
        }
    }

    /// The path of the next item of the sequence whose dashes are at `col`.
    fn seq_item(&mut self, col: usize) -> Option<String> {
        if let Some(p) = self.pending.take() {
            if col > p.col || (p.from_key && col == p.col) || p.path.is_empty() {
                self.stack.push(Frame {
                    col,
                    path: p.path,
                    kind: Kind::Seq { next: 0 },
                });
            }
        }
        while self.stack.last().is_some_and(|f| f.col > col) {
            self.stack.pop();
        }
        let frame = self.stack.last_mut().filter(|f| f.col == col)?;
        let Kind::Seq { next } = &mut frame.kind else {
            return None;
        };
        let item = format!("{}[{}]", frame.path, next);
        *next += 1;
        Some(item)
    }

    /// The path of the mapping whose keys are at `col`.
    fn map_at(&mut self, col: usize) -> Option<String> {
        if let Some(p) = self.pending.take() {
            if col > p.col || p.path.is_empty() {
                self.stack.push(Frame {
                    col,
                    path: p.path,
                    kind: Kind::Map,
                });
            }
        }
        while self
            .stack
            .last()
            .is_some_and(|f| f.col > col || (f.col == col && matches!(f.kind, Kind::Seq { .. })))
        {
            self.stack.pop();
        }
        let frame = self.stack.last().filter(|f| f.col == col)?;
        matches!(frame.kind, Kind::Map).then(|| frame.path.clone())
    }

    /// A scalar or flow value on the line of its key or dash at column `parent`.
    fn value(&mut self, parent: usize, value: &str) {
        self.pending = None;
        let value = strip_properties(value);
        if value.is_empty() {
            return;
        }
        match value.as_bytes()[0] {
            b'|' | b'>' => {
                self.skip = Skip::Deeper {
                    parent,
                    plain: false,
                }
            }
            b'[' | b'{' | b'"' | b'\'' => {
                let state = FlowState::default().feed(value);
                if state.open() {
                    self.skip = Skip::Flow(state);
                }
            }
            _ => {
                self.skip = Skip::Deeper {
                    parent,
                    plain: true,
                }
            }
        }
    }
}

/// `- item` or a lone `-`.
fn is_dash(content: &str) -> bool {
    content == "-" || content.starts_with("- ") || content.starts_with("-\t")
}

/// Drop leading anchors and tags (`&a`, `!tag`).
fn strip_properties(mut value: &str) -> &str {
    while value.starts_with('&') || value.starts_with('!') {
        value = match value.find(' ') {
            Some(i) => value[i..].trim_start(),
            None => "",
        };
    }
    value
}

/// Byte index of the quote that closes the quoted scalar opening `content`.
fn closing_quote(content: &str, quote: char) -> Option<usize> {
    let mut chars = content.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if quote == '"' && c == '\\' {
            chars.next();
        } else if c == quote {
            if quote == '\'' && chars.peek().map(|&(_, c)| c) == Some('\'') {
                chars.next();
            } else {
                return Some(i);
            }
        }
    }
    None
}

/// `key: value` → (`key`, `value`), for plain and quoted keys.
fn split_key(content: &str) -> Option<(String, &str)> {
    let first = content.chars().next()?;
    if first == '"' || first == '\'' {
        let close = closing_quote(content, first)?;
        let inner = &content[1..close];
        let value = content[close + 1..].trim_start().strip_prefix(':')?;
        if !(value.is_empty() || value.starts_with(' ') || value.starts_with('\t')) {
            return None;
        }
        let key = if first == '\'' {
            inner.replace("''", "'")
        } else {
            inner.replace("\\\"", "\"")
        };
        return Some((key, value));
    }
    if matches!(
        first,
        '[' | '{' | '#' | '|' | '>' | '&' | '*' | '!' | '?' | '%' | '@' | '`'
    ) {
        return None;
    }
    let bytes = content.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && i > 0 && (bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
            return None;
        }
        if b == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ' || bytes[i + 1] == b'\t') {
            let key = content[..i].trim_end();
            if key.is_empty() {
                return None;
            }
            return Some((key.to_string(), &content[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<(String, usize)> {
        scan(text).0.into_iter().collect()
    }

    fn at(text: &str, path: &str) -> Option<usize> {
        line_of(&scan(text).0, path)
    }

    #[test]
    fn block_mappings_and_sequences() {
        let text = "\
version: 1
# comment

tables:
  - name: posts
    alias: articles
    columns:
      - id
      - title
    relations:
      exclude: [author]
  - name: users
    field_aliases:
      email: mail
";
        assert_eq!(
            lines(text),
            vec![
                ("tables".into(), 4),
                ("tables[0]".into(), 5),
                ("tables[0].alias".into(), 6),
                ("tables[0].columns".into(), 7),
                ("tables[0].columns[0]".into(), 8),
                ("tables[0].columns[1]".into(), 9),
                ("tables[0].name".into(), 5),
                ("tables[0].relations".into(), 10),
                ("tables[0].relations.exclude".into(), 11),
                ("tables[1]".into(), 12),
                ("tables[1].field_aliases".into(), 13),
                ("tables[1].field_aliases.email".into(), 14),
                ("tables[1].name".into(), 12),
                ("version".into(), 1),
            ]
        );
    }

    #[test]
    fn indentless_sequences() {
        let text = "\
tables:
- name: a
  columns:
  - id
- name: b
version: 1
";
        assert_eq!(at(text, "tables[0].columns[0]"), Some(4));
        assert_eq!(at(text, "tables[1].name"), Some(5));
        assert_eq!(at(text, "version"), Some(6));
    }

    #[test]
    fn flow_items_resolve_to_their_key() {
        let text = "\
version: 1
tables: [
  {name: a},
  {name: b}]
where_columns: [tenant_id]
";
        assert_eq!(at(text, "tables[1].name"), Some(2));
        assert_eq!(at(text, "where_columns[0]"), Some(5));
        assert_eq!(lines(text).len(), 3);
    }

    #[test]
    fn block_and_multiline_scalars_are_skipped() {
        let text = "\
where: |
  a: b
  - c
tables:
  - name: x
    where: >-
      deleted_at: null
    alias: y
  - name: z
    where: status = 1
      and x: 2
    alias: w
  - name: 'quoted: key'
    field_notes:
      \"a b\": \"multi
        line: yes\"
      c: d
";
        assert_eq!(at(text, "tables"), Some(4));
        assert_eq!(at(text, "tables[0].alias"), Some(8));
        assert_eq!(at(text, "tables[1].alias"), Some(12));
        assert_eq!(at(text, "tables[2].name"), Some(13));
        assert_eq!(at(text, "tables[2].field_notes.a b"), Some(15));
        assert_eq!(at(text, "tables[2].field_notes.c"), Some(17));
        assert!(!scan(text).0.keys().any(|k| k.contains("line") || k == "a"));
    }

    #[test]
    fn nested_dashes_and_null_items() {
        let text = "\
a:
  -
  - - x
    - y
  -
    k: v
";
        assert_eq!(at(text, "a[0]"), Some(2));
        assert_eq!(at(text, "a[1]"), Some(3));
        assert_eq!(at(text, "a[1][0]"), Some(3));
        assert_eq!(at(text, "a[1][1]"), Some(4));
        assert_eq!(at(text, "a[2].k"), Some(6));
    }

    #[test]
    fn duplicate_keys() {
        let text = "version: 1\ntables:\n  - name: a\n    name: b\n  - name: a\nversion: 1\n";
        let (lines, duplicates) = scan(text);
        assert_eq!(lines["version"], 1);
        assert_eq!(
            duplicates,
            vec![
                Duplicate {
                    path: "tables[0].name".into(),
                    first: 3,
                    line: 4
                },
                Duplicate {
                    path: "version".into(),
                    first: 1,
                    line: 6
                },
            ]
        );
    }

    #[test]
    fn ancestors_and_crlf() {
        let text = "version: 1\r\ntables:\r\n  - name: a # the table\r\n";
        assert_eq!(at(text, "tables[0].columns[3]"), Some(3));
        assert_eq!(at(text, "nothing"), None);
        assert_eq!(at(text, "tables[0].name"), Some(3));
    }
}
