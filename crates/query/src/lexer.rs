//! Stage 1: query text → tokens with spans.
//!
//! Keywords are not tokens of their own: they are names that the parser recognizes
//! case-insensitively where the grammar expects one, so a field may be called `order`.

use std::borrow::Cow;

use crate::ast::CmpOp;
use crate::error::{error, Result, Span};

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok<'a> {
    /// A name (`users`, `ORDER`), or a `` `quoted name` `` without the backticks.
    Ident(&'a str),
    /// A string literal, escapes resolved.
    Str(Cow<'a, str>),
    /// A number literal as written (`-12.50`, `1e3`).
    Number(&'a str),
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    Dot,
    Star,
    Ellipsis,
    /// `=`, `!=` or `<>`, `<`, `<=`, `>`, `>=`.
    Cmp(CmpOp),
    Eof,
}

impl Tok<'_> {
    /// How an error message names this token.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Number(s) => format!("number {s}"),
            Tok::Eof => "end of query".into(),
            other => format!("'{}'", other.symbol()),
        }
    }

    /// The text of a punctuation token.
    pub(crate) fn symbol(&self) -> &'static str {
        match self {
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::Comma => ",",
            Tok::Dot => ".",
            Tok::Star => "*",
            Tok::Ellipsis => "...",
            Tok::Cmp(op) => op.symbol(),
            Tok::Ident(_) | Tok::Str(_) | Tok::Number(_) | Tok::Eof => "",
        }
    }
}

/// A token and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token<'a> {
    pub tok: Tok<'a>,
    pub span: Span,
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
    line: u32,
    column: u32,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        let b = *self.text.as_bytes().get(self.pos)?;
        if b < 0x80 {
            Some(b as char)
        } else {
            self.text[self.pos..].chars().next()
        }
    }

    fn peek_byte(&self, ahead: usize) -> u8 {
        self.text
            .as_bytes()
            .get(self.pos + ahead)
            .copied()
            .unwrap_or(0)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// Advance over ASCII bytes known not to be newlines.
    fn skip_ascii(&mut self, n: usize) {
        self.pos += n;
        self.column += n as u32;
    }

    fn span(&self) -> Span {
        Span::new(self.line, self.column)
    }
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c == '$' || c.is_alphanumeric()
}

/// Split `text` into tokens; the last one is always [`Tok::Eof`].
pub(crate) fn lex(text: &str) -> Result<Vec<Token<'_>>> {
    let mut cur = Cursor {
        text,
        pos: 0,
        line: 1,
        column: 1,
    };
    let mut tokens = Vec::with_capacity(text.len() / 3 + 2);
    loop {
        // Whitespace and comments.
        while let Some(c) = cur.peek() {
            if c.is_whitespace() {
                cur.bump();
            } else if c == '-' && cur.peek_byte(1) == b'-' {
                while let Some(c) = cur.peek() {
                    if c == '\n' {
                        break;
                    }
                    cur.bump();
                }
            } else {
                break;
            }
        }
        let span = cur.span();
        let Some(c) = cur.peek() else {
            tokens.push(Token {
                tok: Tok::Eof,
                span,
            });
            return Ok(tokens);
        };
        let start = cur.pos;
        let tok = match c {
            '{' | '}' | '(' | ')' | ',' | '*' | '=' => {
                cur.skip_ascii(1);
                match c {
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    ',' => Tok::Comma,
                    '*' => Tok::Star,
                    _ => Tok::Cmp(CmpOp::Eq),
                }
            }
            '.' => {
                if cur.peek_byte(1) == b'.' && cur.peek_byte(2) == b'.' {
                    cur.skip_ascii(3);
                    Tok::Ellipsis
                } else {
                    cur.skip_ascii(1);
                    Tok::Dot
                }
            }
            '!' if cur.peek_byte(1) == b'=' => {
                cur.skip_ascii(2);
                Tok::Cmp(CmpOp::Ne)
            }
            '<' => match cur.peek_byte(1) {
                b'=' => {
                    cur.skip_ascii(2);
                    Tok::Cmp(CmpOp::Le)
                }
                b'>' => {
                    cur.skip_ascii(2);
                    Tok::Cmp(CmpOp::Ne)
                }
                _ => {
                    cur.skip_ascii(1);
                    Tok::Cmp(CmpOp::Lt)
                }
            },
            '>' => {
                if cur.peek_byte(1) == b'=' {
                    cur.skip_ascii(2);
                    Tok::Cmp(CmpOp::Ge)
                } else {
                    cur.skip_ascii(1);
                    Tok::Cmp(CmpOp::Gt)
                }
            }
            '"' | '\'' => Tok::Str(string(&mut cur, c)?),
            '`' => {
                cur.skip_ascii(1);
                let inner = cur.pos;
                loop {
                    match cur.bump() {
                        Some('`') => break,
                        Some(_) => {}
                        None => {
                            return Err(error(
                                span,
                                "unterminated quoted name: '`' is never closed",
                            ))
                        }
                    }
                }
                let name = &text[inner..cur.pos - 1];
                if name.is_empty() {
                    return Err(error(span, "empty quoted name"));
                }
                Tok::Ident(name)
            }
            '-' if cur.peek_byte(1).is_ascii_digit() => {
                cur.skip_ascii(1);
                number(&mut cur);
                Tok::Number(&text[start..cur.pos])
            }
            c if c.is_ascii_digit() => {
                number(&mut cur);
                Tok::Number(&text[start..cur.pos])
            }
            c if is_name_start(c) => {
                while cur.peek().is_some_and(is_name_char) {
                    cur.bump();
                }
                Tok::Ident(&text[start..cur.pos])
            }
            c => {
                let shown = if c.is_control() {
                    format!("{:?}", c)
                } else {
                    format!("'{c}'")
                };
                // JSON bodies and GraphQL arguments/aliases fail here first: say what to write.
                let hint = match c {
                    ':' => {
                        " (the body is the query text itself, not JSON like {\"query\": …}; \
                         filters are written 'field = value', and there are no GraphQL aliases)"
                    }
                    '$' => " (GraphQL variables do not exist here: write the value in the query)",
                    _ => "",
                };
                return Err(error(span, format!("unexpected character {shown}{hint}")));
            }
        };
        tokens.push(Token { tok, span });
    }
}

/// `digits [. digits] [e [+-] digits]`; the cursor is on the first digit.
fn number(cur: &mut Cursor<'_>) {
    let digits = |cur: &mut Cursor<'_>| {
        while cur.peek_byte(0).is_ascii_digit() {
            cur.skip_ascii(1);
        }
    };
    digits(cur);
    if cur.peek_byte(0) == b'.' && cur.peek_byte(1).is_ascii_digit() {
        cur.skip_ascii(1);
        digits(cur);
    }
    if matches!(cur.peek_byte(0), b'e' | b'E') {
        let sign = matches!(cur.peek_byte(1), b'+' | b'-') as usize;
        if cur.peek_byte(1 + sign).is_ascii_digit() {
            cur.skip_ascii(1 + sign);
            digits(cur);
        }
    }
}

/// A string literal; the cursor is on the opening quote. `\"`, `\'` and `\\` are escapes (and
/// `''` inside single quotes); any other backslash stays as written, so `LIKE "50\%"` works.
fn string<'a>(cur: &mut Cursor<'a>, quote: char) -> Result<Cow<'a, str>> {
    let open = cur.span();
    cur.skip_ascii(1);
    let start = cur.pos;
    let mut owned: Option<String> = None;
    loop {
        let here = cur.pos;
        let Some(c) = cur.bump() else {
            return Err(error(
                open,
                format!("unterminated string: {quote} is never closed"),
            ));
        };
        if c == quote {
            if quote == '\'' && cur.peek() == Some('\'') {
                cur.bump();
                owned
                    .get_or_insert_with(|| cur.text[start..here].to_string())
                    .push('\'');
                continue;
            }
            return Ok(match owned {
                Some(s) => Cow::Owned(s),
                None => Cow::Borrowed(&cur.text[start..here]),
            });
        }
        if c == '\\' {
            if let Some(next @ ('"' | '\'' | '\\')) = cur.peek() {
                cur.bump();
                owned
                    .get_or_insert_with(|| cur.text[start..here].to_string())
                    .push(next);
                continue;
            }
        }
        if let Some(s) = owned.as_mut() {
            s.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Tok<'_>> {
        lex(text).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn tokens_and_spans() {
        let toks = lex("users(id = 42) {\n  id  name\n}").unwrap();
        let spans: Vec<(u32, u32)> = toks.iter().map(|t| (t.span.line, t.span.column)).collect();
        assert_eq!(
            spans,
            vec![
                (1, 1),
                (1, 6),
                (1, 7),
                (1, 10),
                (1, 12),
                (1, 14),
                (1, 16),
                (2, 3),
                (2, 7),
                (3, 1),
                (3, 2)
            ]
        );
        assert_eq!(toks[4].tok, Tok::Number("42"));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let toks = lex("\"Zoë\" x").unwrap();
        assert_eq!(toks[1].span, Span::new(1, 7));
    }

    #[test]
    fn operators_numbers_and_comments() {
        assert_eq!(
            kinds("a != -5 <> 1.25e-3 <= >= < > ... . * -- comment\n,"),
            vec![
                Tok::Ident("a"),
                Tok::Cmp(CmpOp::Ne),
                Tok::Number("-5"),
                Tok::Cmp(CmpOp::Ne),
                Tok::Number("1.25e-3"),
                Tok::Cmp(CmpOp::Le),
                Tok::Cmp(CmpOp::Ge),
                Tok::Cmp(CmpOp::Lt),
                Tok::Cmp(CmpOp::Gt),
                Tok::Ellipsis,
                Tok::Dot,
                Tok::Star,
                Tok::Comma,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            kinds(r#""a\"b\\c""#)[0],
            Tok::Str(Cow::Owned("a\"b\\c".into()))
        );
        assert_eq!(kinds(r"'it''s'")[0], Tok::Str(Cow::Owned("it's".into())));
        assert_eq!(kinds(r"'it\'s'")[0], Tok::Str(Cow::Owned("it's".into())));
        assert_eq!(kinds(r#""50\%""#)[0], Tok::Str(Cow::Borrowed(r"50\%")));
        assert_eq!(kinds("`my col`")[0], Tok::Ident("my col"));
    }

    #[test]
    fn errors_have_positions() {
        let e = lex("users(name = \"abc) { id }").unwrap_err();
        assert_eq!((e.line, e.column), (1, 14));
        assert!(e.message.contains("unterminated string"), "{}", e.message);
        let e = lex("users {\n id # }").unwrap_err();
        assert_eq!((e.line, e.column), (2, 5));
        assert_eq!(e.message, "unexpected character '#'");
    }
}
