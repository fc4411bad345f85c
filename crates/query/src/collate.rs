//! Text comparison rules: exact, case-insensitive like MySQL's `utf8mb4_general_ci`, and `LIKE`.
//!
//! `general_ci` compares one weight per character: the uppercase letter with accents of
//! Latin-1 and Latin Extended-A removed (`é` = `E`, `ß` = `S`), and one shared weight for every
//! character beyond the Basic Multilingual Plane. It is a PAD SPACE collation: `=` and `<` ignore
//! trailing spaces (`'a ' = 'a'`); `LIKE` does not.

use std::cmp::Ordering;

/// How characters are folded before they are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fold {
    /// Byte equality (binary collations, PostgreSQL, SQLite).
    Exact,
    /// MySQL `utf8mb4_general_ci` weights.
    GeneralCi,
    /// Unicode simple lowercase (`ILIKE` on a case-sensitive column).
    Lower,
}

/// Latin-1 Supplement U+00C0..=U+00FF under `general_ci`.
const LATIN1: [char; 64] = [
    'A', 'A', 'A', 'A', 'A', 'A', 'Æ', 'C', 'E', 'E', 'E', 'E', 'I', 'I', 'I', 'I', //
    'Ð', 'N', 'O', 'O', 'O', 'O', 'O', '×', 'Ø', 'U', 'U', 'U', 'U', 'Y', 'Þ', 'S', //
    'A', 'A', 'A', 'A', 'A', 'A', 'Æ', 'C', 'E', 'E', 'E', 'E', 'I', 'I', 'I', 'I', //
    'Ð', 'N', 'O', 'O', 'O', 'O', 'O', '÷', 'Ø', 'U', 'U', 'U', 'U', 'Y', 'Þ', 'Y', //
];

/// Latin Extended-A U+0100..=U+017F under `general_ci` (digits stand for the letters below).
const LATIN_EXT_A: &[u8; 128] =
    b"AAAAAACCCCCCCCDDDDEEEEEEEEEEGGGGGGGGHHHHIIIIIIIIII11JJKK2LLLLLLLLLLNNNNNNN33OOOOOO44RRRRRRSSSSSSSSTTTTTTUUUUUUUUUUUUWWYYYZZZZZZS";

impl Fold {
    #[inline]
    pub(crate) fn apply(self, c: char) -> char {
        match self {
            Fold::Exact => c,
            Fold::GeneralCi => general_ci(c),
            Fold::Lower => {
                if c.is_ascii() {
                    c.to_ascii_lowercase()
                } else {
                    single(c.to_lowercase()).unwrap_or(c)
                }
            }
        }
    }
}

fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
    let c = it.next()?;
    it.next().is_none().then_some(c)
}

/// The `general_ci` weight of `c`.
#[inline]
pub(crate) fn general_ci(c: char) -> char {
    let u = c as u32;
    if u < 0x80 {
        return c.to_ascii_uppercase();
    }
    match u {
        0xC0..=0xFF => LATIN1[(u - 0xC0) as usize],
        0x100..=0x17F => match LATIN_EXT_A[(u - 0x100) as usize] {
            b'1' => '\u{132}',
            b'2' => '\u{138}',
            b'3' => '\u{14A}',
            b'4' => '\u{152}',
            b => b as char,
        },
        0x10000.. => '\u{FFFD}',
        _ => single(c.to_uppercase()).unwrap_or(c),
    }
}

/// Compare two folded character sequences with PAD SPACE semantics: the shorter one is
/// compared as if padded with spaces.
fn cmp_padded(mut a: impl Iterator<Item = char>, mut b: impl Iterator<Item = char>) -> Ordering {
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
            }
            (None, None) => return Ordering::Equal,
            (Some(x), None) => {
                return std::iter::once(x)
                    .chain(a)
                    .map(|c| c.cmp(&' '))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            }
            (None, Some(y)) => {
                return std::iter::once(y)
                    .chain(b)
                    .map(|c| ' '.cmp(&c))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            }
        }
    }
}

/// How a case-insensitive text column compares.
///
/// MySQL `_ci` columns follow `utf8mb4_general_ci` with PAD SPACE. Other sources that mark a
/// column case-insensitive (PostgreSQL nondeterministic collations) compare Unicode lowercase
/// without padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CiRules {
    pub fold: Fold,
    pub pad: bool,
}

impl CiRules {
    pub(crate) fn for_backend(backend: refract_schema::Backend) -> CiRules {
        match backend {
            refract_schema::Backend::Mysql => CiRules {
                fold: Fold::GeneralCi,
                pad: true,
            },
            _ => CiRules {
                fold: Fold::Lower,
                pad: false,
            },
        }
    }

    /// Fold a literal once, for [`CiRules::cmp_folded`].
    pub(crate) fn fold_str(self, s: &str) -> Vec<char> {
        s.chars().map(|c| self.fold.apply(c)).collect()
    }

    fn cmp_iters(self, a: impl Iterator<Item = char>, b: impl Iterator<Item = char>) -> Ordering {
        if self.pad {
            cmp_padded(a, b)
        } else {
            a.cmp(b)
        }
    }

    /// Compare two strings.
    pub(crate) fn cmp(self, a: &str, b: &str) -> Ordering {
        if self.fold == Fold::GeneralCi && a.is_ascii() && b.is_ascii() {
            let up = |c: u8| c.to_ascii_uppercase() as char;
            return self.cmp_iters(a.bytes().map(up), b.bytes().map(up));
        }
        self.cmp_iters(
            a.chars().map(|c| self.fold.apply(c)),
            b.chars().map(|c| self.fold.apply(c)),
        )
    }

    /// Compare a string with a literal folded by [`CiRules::fold_str`].
    pub(crate) fn cmp_folded(self, a: &str, folded: &[char]) -> Ordering {
        if self.fold == Fold::GeneralCi && a.is_ascii() {
            return self.cmp_iters(
                a.bytes().map(|c| c.to_ascii_uppercase() as char),
                folded.iter().copied(),
            );
        }
        self.cmp_iters(
            a.chars().map(|c| self.fold.apply(c)),
            folded.iter().copied(),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PTok {
    Char(char),
    /// `_`
    One,
    /// `%`
    Any,
}

/// A compiled `LIKE` pattern: `%` any run, `_` one character, `\` escapes the next character.
#[derive(Debug, Clone)]
pub(crate) struct LikePattern {
    toks: Vec<PTok>,
    fold: Fold,
    /// For exact patterns of the shapes `abc`, `abc%`, `%abc`, `%abc%`: the literal part.
    shape: Shape,
}

#[derive(Debug, Clone)]
enum Shape {
    General,
    Equals(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
}

impl LikePattern {
    pub(crate) fn compile(pattern: &str, fold: Fold) -> LikePattern {
        let mut toks = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let t = match c {
                '%' => {
                    if toks.last() == Some(&PTok::Any) {
                        continue;
                    }
                    PTok::Any
                }
                '_' => PTok::One,
                '\\' => PTok::Char(fold.apply(chars.next().unwrap_or('\\'))),
                c => PTok::Char(fold.apply(c)),
            };
            toks.push(t);
        }
        let shape = if fold == Fold::Exact {
            shape(&toks)
        } else {
            Shape::General
        };
        LikePattern { toks, fold, shape }
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        match &self.shape {
            Shape::Equals(s) => text == s,
            Shape::Prefix(s) => text.starts_with(s.as_str()),
            Shape::Suffix(s) => text.ends_with(s.as_str()),
            Shape::Contains(s) => text.contains(s.as_str()),
            Shape::General => like(text, &self.toks, self.fold),
        }
    }
}

fn shape(toks: &[PTok]) -> Shape {
    let lead = toks.first() == Some(&PTok::Any);
    let trail = toks.len() > lead as usize && toks.last() == Some(&PTok::Any);
    let inner = &toks[lead as usize..toks.len() - trail as usize];
    let mut lit = String::new();
    for t in inner {
        match t {
            PTok::Char(c) => lit.push(*c),
            _ => return Shape::General,
        }
    }
    match (lead, trail) {
        (false, false) => Shape::Equals(lit),
        (false, true) => Shape::Prefix(lit),
        (true, false) => Shape::Suffix(lit),
        (true, true) => Shape::Contains(lit),
    }
}

/// Wildcard matching with one backtrack point (the last `%`): O(text × pattern) at worst.
fn like(text: &str, pat: &[PTok], fold: Fold) -> bool {
    let (mut ti, mut pi) = (0usize, 0usize);
    let mut back: Option<(usize, usize)> = None;
    loop {
        if pi < pat.len() {
            let next = text[ti..].chars().next();
            match (pat[pi], next) {
                (PTok::Any, _) => {
                    if pi + 1 == pat.len() {
                        return true;
                    }
                    pi += 1;
                    back = Some((pi, ti));
                    continue;
                }
                (PTok::One, Some(c)) => {
                    ti += c.len_utf8();
                    pi += 1;
                    continue;
                }
                (PTok::Char(p), Some(c)) if fold.apply(c) == p => {
                    ti += c.len_utf8();
                    pi += 1;
                    continue;
                }
                _ => {}
            }
        } else if ti == text.len() {
            return true;
        }
        // Mismatch: let the last `%` swallow one more character.
        match back {
            Some((bp, bt)) => match text[bt..].chars().next() {
                Some(c) => {
                    let nt = bt + c.len_utf8();
                    back = Some((bp, nt));
                    ti = nt;
                    pi = bp;
                }
                None => return false,
            },
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str, pat: &str, fold: Fold) -> bool {
        LikePattern::compile(pat, fold).matches(text)
    }

    #[test]
    fn like_patterns() {
        let e = Fold::Exact;
        assert!(m("hello", "hello", e));
        assert!(m("hello", "h%", e));
        assert!(m("hello", "%llo", e));
        assert!(m("hello", "%ell%", e));
        assert!(m("hello", "h_llo", e));
        assert!(m("hello", "%", e));
        assert!(m("", "%", e));
        assert!(!m("", "_", e));
        assert!(m("hello", "h%l%o", e));
        assert!(m("hello", "%l_", e));
        assert!(!m("hello", "%x%", e));
        assert!(!m("Hello", "h%", e));
        assert!(m("Zoë", "Zo_", e));
        assert!(m("Zoë", "%ë", e));
        assert!(m("100%", "100\\%", e));
        assert!(!m("1000", "100\\%", e));
        assert!(m("a_b", "a\\_b", e));
        assert!(!m("axb", "a\\_b", e));
        assert!(m("aaab", "%a%b", e));
        assert!(m("abcabcabd", "%abc%abd", e));
        assert!(!m("ab", "a%b%c", e));
    }

    #[test]
    fn case_insensitive_like_and_equality() {
        let ci = Fold::GeneralCi;
        assert!(m("Hello World", "hello%", ci));
        assert!(m("Zoë", "%E", ci));
        assert!(m("Alice", "%ë", ci));
        assert!(m("straße", "STRASE", ci));
        assert!(!m("hello ", "hello", ci));
        assert!(m("ÄBC", "äbc", Fold::Lower));
        assert!(!m("Äbc", "abc", Fold::Lower));
        let my = CiRules::for_backend(refract_schema::Backend::Mysql);
        assert_eq!(my.cmp("Pro", "pro"), Ordering::Equal);
        assert_eq!(my.cmp("pro  ", "PRO"), Ordering::Equal);
        assert_eq!(my.cmp("pro\t", "PRO"), Ordering::Less);
        assert_eq!(my.cmp("a", "B"), Ordering::Less);
        assert_eq!(my.cmp("é", "E"), Ordering::Equal);
        assert_eq!(my.cmp("😀", "😁"), Ordering::Equal);
        assert_eq!(my.cmp_folded("bob ", &my.fold_str("BOB")), Ordering::Equal);
        assert_eq!(my.cmp_folded("Zoë", &my.fold_str("zoe")), Ordering::Equal);
        assert_eq!(my.cmp_folded("Ā", &my.fold_str("a")), Ordering::Equal);
        let pg = CiRules::for_backend(refract_schema::Backend::Postgres);
        assert_eq!(pg.cmp("Straße", "STRASSE"), Ordering::Greater);
        assert_eq!(pg.cmp("ÄBC", "äbc"), Ordering::Equal);
        assert_eq!(pg.cmp("abc ", "ABC"), Ordering::Greater);
        assert_eq!(pg.cmp_folded("Zoë", &pg.fold_str("ZOË")), Ordering::Equal);
        assert_eq!(pg.cmp_folded("Zoë", &pg.fold_str("zoe")), Ordering::Greater);
        assert_eq!(general_ci('ž'), 'Z');
        assert_eq!(general_ci('œ'), 'Œ');
        assert_eq!(general_ci('ſ'), 'S');
    }
}
