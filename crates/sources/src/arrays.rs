//! PostgreSQL arrays and MySQL/MariaDB `SET` values as JSON arrays (`docs/types.md`).
//!
//! Both are stored as `json` columns holding a compact JSON array. PostgreSQL arrays are read in
//! their text form (`{1,2,NULL}`, `{"a b","c"}`, `{{1,2},{3,4}}`) by the load (`col::text`) and
//! by logical replication (pgoutput sends text), and both go through [`pg_array_json`], so a
//! loaded value and one that arrives through CDC are the same bytes. `SET` values arrive as
//! comma-separated member text (the binlog's bitmask is mapped to that text first) and go
//! through [`set_json`].

use std::io::Write as _;

use refract_schema::{ColumnManifest, ColumnType, ValueRef};

use crate::types::{civil_from_days, parse_date, parse_temporal};

/// How the elements of a PostgreSQL array are written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Elem {
    /// `smallint`, `integer`, `bigint`, `oid`: numbers.
    Int,
    /// `real`, `double precision`: numbers; NaN and ±Infinity → `null`.
    Float,
    /// `numeric`: strings with the exact text; NaN and ±Infinity → `null`.
    Numeric,
    /// `boolean`: `true` / `false`.
    Bool,
    /// `date`: `"YYYY-MM-DD"`; ±infinity → `null`.
    Date,
    /// `timestamp`: `"YYYY-MM-DDTHH:MM:SS[.ffffff]"`; ±infinity → `null`.
    DateTime,
    /// `timestamptz`: the same in UTC with `Z`.
    Timestamp,
    /// `json`, `jsonb`: the document itself.
    Json,
    /// Anything else (`text`, `varchar`, `uuid`, enums, …): strings with the element's text.
    Text,
}

/// The element kind of a PostgreSQL array column, from its `format_type` text (`integer[]`,
/// `character varying(20)[]`, `timestamp(3) with time zone[]`); `None` for other columns.
pub(crate) fn pg_array_elem(c: &ColumnManifest) -> Option<Elem> {
    if c.ty != ColumnType::Json {
        return None;
    }
    let mut base = c.source_type.trim().strip_suffix("[]")?;
    while let Some(b) = base.strip_suffix("[]") {
        base = b;
    }
    // Drop type modifiers: `numeric(10,2)` → `numeric`, `timestamp(3) with time zone` →
    // `timestamp with time zone`.
    let mut name = String::with_capacity(base.len());
    let mut depth = 0u32;
    for ch in base.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => name.push(ch),
            _ => {}
        }
    }
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    Some(match name.as_str() {
        "smallint" | "integer" | "bigint" | "oid" => Elem::Int,
        "real" | "double precision" => Elem::Float,
        "numeric" => Elem::Numeric,
        "boolean" => Elem::Bool,
        "date" => Elem::Date,
        "timestamp without time zone" | "timestamp" => Elem::DateTime,
        "timestamp with time zone" => Elem::Timestamp,
        "json" | "jsonb" => Elem::Json,
        _ => Elem::Text,
    })
}

/// A PostgreSQL array in text form as a JSON array written into `out`; `Null` when the text is
/// not an array literal. Multi-dimensional arrays are nested JSON arrays; explicit bounds
/// (`[0:1]={1,2}`) are dropped.
pub(crate) fn pg_array_json<'a>(elem: Elem, text: &[u8], out: &'a mut Vec<u8>) -> ValueRef<'a> {
    out.clear();
    let mut s = text;
    if s.first() == Some(&b'[') {
        match s.iter().position(|&b| b == b'=') {
            Some(eq) => s = &s[eq + 1..],
            None => return ValueRef::Null,
        }
    }
    let mut p = Parser { s, i: 0, elem };
    let ok = p.array(out, 0).is_some() && {
        p.ws();
        p.i == p.s.len()
    };
    match ok.then(|| std::str::from_utf8(out).ok()).flatten() {
        Some(json) => ValueRef::Json(json),
        None => ValueRef::Null,
    }
}

struct Parser<'s> {
    s: &'s [u8],
    i: usize,
    elem: Elem,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: u32) -> Option<()> {
        // PostgreSQL allows at most 6 dimensions.
        if depth > 6 {
            return None;
        }
        self.ws();
        if self.s.get(self.i) != Some(&b'{') {
            return None;
        }
        self.i += 1;
        out.push(b'[');
        self.ws();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            out.push(b']');
            return Some(());
        }
        let mut item = Vec::new();
        loop {
            self.ws();
            match *self.s.get(self.i)? {
                b'{' => self.array(out, depth + 1)?,
                b'"' => {
                    self.i += 1;
                    item.clear();
                    loop {
                        match *self.s.get(self.i)? {
                            b'"' => break,
                            b'\\' => {
                                self.i += 1;
                                item.push(*self.s.get(self.i)?);
                            }
                            b => item.push(b),
                        }
                        self.i += 1;
                    }
                    self.i += 1;
                    self.element(out, Some(&item))?;
                }
                _ => {
                    item.clear();
                    let mut escaped = false;
                    let mut end = 0;
                    loop {
                        match *self.s.get(self.i)? {
                            b',' | b'}' => break,
                            b'\\' => {
                                self.i += 1;
                                item.push(*self.s.get(self.i)?);
                                escaped = true;
                                end = item.len();
                            }
                            b => {
                                item.push(b);
                                if !b.is_ascii_whitespace() {
                                    end = item.len();
                                }
                            }
                        }
                        self.i += 1;
                    }
                    item.truncate(end);
                    if !escaped && item.eq_ignore_ascii_case(b"null") {
                        self.element(out, None)?;
                    } else {
                        self.element(out, Some(&item))?;
                    }
                }
            }
            self.ws();
            match *self.s.get(self.i)? {
                b',' => {
                    self.i += 1;
                    out.push(b',');
                }
                b'}' => {
                    self.i += 1;
                    out.push(b']');
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// One element (`None`: NULL) in JSON.
    fn element(&self, out: &mut Vec<u8>, v: Option<&[u8]>) -> Option<()> {
        let Some(b) = v else {
            out.extend_from_slice(b"null");
            return Some(());
        };
        let s = std::str::from_utf8(b).ok()?;
        match self.elem {
            Elem::Int => match s.trim().parse::<i64>() {
                Ok(i) => out.extend_from_slice(itoa(i).as_bytes()),
                Err(_) => out.extend_from_slice(b"null"),
            },
            Elem::Float => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => {
                    out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes())
                }
                _ => out.extend_from_slice(b"null"),
            },
            Elem::Numeric => {
                let t = s.trim();
                let numeric = !t.is_empty()
                    && t.bytes().any(|c| c.is_ascii_digit())
                    && t.bytes().all(|c| {
                        c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')
                    });
                if numeric {
                    write_json_str(out, t);
                } else {
                    out.extend_from_slice(b"null");
                }
            }
            Elem::Bool => out.extend_from_slice(match s.trim() {
                "t" | "true" => b"true",
                "f" | "false" => b"false",
                _ => b"null",
            }),
            Elem::Date => match parse_date(b) {
                Some(days) => {
                    out.push(b'"');
                    write_date(out, i64::from(days));
                    out.push(b'"');
                }
                None => out.extend_from_slice(b"null"),
            },
            Elem::DateTime | Elem::Timestamp => {
                let ty = if self.elem == Elem::DateTime {
                    ColumnType::DateTime
                } else {
                    ColumnType::Timestamp
                };
                match parse_temporal(ty, b) {
                    Some(ValueRef::DateTime(t)) | Some(ValueRef::Timestamp(t)) => {
                        out.push(b'"');
                        write_datetime(out, t);
                        if self.elem == Elem::Timestamp {
                            out.push(b'Z');
                        }
                        out.push(b'"');
                    }
                    _ => out.extend_from_slice(b"null"),
                }
            }
            Elem::Json => {
                if serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok() {
                    out.extend_from_slice(s.trim().as_bytes());
                } else {
                    out.extend_from_slice(b"null");
                }
            }
            Elem::Text => write_json_str(out, s),
        }
        Some(())
    }
}

/// A MySQL `SET` value (`a,c`, the empty string for no member) as a JSON array of strings.
/// Members cannot contain commas (MySQL refuses them), so splitting is exact.
pub(crate) fn set_json(text: &str, out: &mut String) {
    let mut buf = Vec::with_capacity(text.len() + 4);
    buf.push(b'[');
    for (i, member) in text.split(',').filter(|m| !m.is_empty()).enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_json_str(&mut buf, member);
    }
    buf.push(b']');
    out.clear();
    out.push_str(std::str::from_utf8(&buf).unwrap_or("[]"));
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a string to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn itoa(i: i64) -> String {
    i.to_string()
}

const DAY_US: i64 = 86_400_000_000;

/// `YYYY-MM-DD`, as the query crate writes a `date` cell.
fn write_date(out: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        let _ = write!(out, "{y:04}");
    } else if y < 0 && y > -10_000 {
        let _ = write!(out, "-{:04}", -y);
    } else {
        let _ = write!(out, "{y}");
    }
    let _ = write!(out, "-{m:02}-{d:02}");
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]`, as the query crate writes a `datetime` cell.
fn write_datetime(out: &mut Vec<u8>, micros: i64) {
    write_date(out, micros.div_euclid(DAY_US));
    let t = micros.rem_euclid(DAY_US) as u64;
    let secs = t / 1_000_000;
    let frac = t % 1_000_000;
    let _ = write!(
        out,
        "T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        let _ = write!(out, ".{frac:06}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(source_type: &str) -> ColumnManifest {
        ColumnManifest {
            source_name: "c".into(),
            api_name: "c".into(),
            ty: ColumnType::Json,
            source_type: source_type.into(),
            nullable: true,
            note: None,
        }
    }

    fn json(elem: Elem, text: &str) -> String {
        let mut buf = Vec::new();
        match pg_array_json(elem, text.as_bytes(), &mut buf) {
            ValueRef::Json(s) => s.to_string(),
            ValueRef::Null => "NULL".into(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn element_kinds_from_format_type() {
        for (t, e) in [
            ("integer[]", Some(Elem::Int)),
            ("smallint[]", Some(Elem::Int)),
            ("bigint[][]", Some(Elem::Int)),
            ("real[]", Some(Elem::Float)),
            ("double precision[]", Some(Elem::Float)),
            ("numeric(10,2)[]", Some(Elem::Numeric)),
            ("boolean[]", Some(Elem::Bool)),
            ("text[]", Some(Elem::Text)),
            ("character varying(20)[]", Some(Elem::Text)),
            ("uuid[]", Some(Elem::Text)),
            ("date[]", Some(Elem::Date)),
            ("timestamp(3) without time zone[]", Some(Elem::DateTime)),
            ("timestamp with time zone[]", Some(Elem::Timestamp)),
            ("jsonb[]", Some(Elem::Json)),
            ("mood[]", Some(Elem::Text)),
            ("jsonb", None),
        ] {
            assert_eq!(pg_array_elem(&col(t)), e, "{t}");
        }
        let mut text = col("text[]");
        text.ty = ColumnType::Text {
            case_insensitive: false,
        };
        assert_eq!(pg_array_elem(&text), None);
    }

    #[test]
    fn arrays_in_text_form_become_json() {
        assert_eq!(json(Elem::Int, "{1,2,NULL,-3}"), "[1,2,null,-3]");
        assert_eq!(json(Elem::Int, "{}"), "[]");
        assert_eq!(json(Elem::Int, "{{1,2},{3,4}}"), "[[1,2],[3,4]]");
        assert_eq!(json(Elem::Int, "[0:1]={5,6}"), "[5,6]");
        assert_eq!(
            json(Elem::Float, "{1.5,NaN,Infinity,-0.25,3}"),
            "[1.5,null,null,-0.25,3.0]"
        );
        assert_eq!(
            json(Elem::Numeric, "{1.50,NaN,-2}"),
            r#"["1.50",null,"-2"]"#
        );
        assert_eq!(json(Elem::Bool, "{t,f,NULL}"), "[true,false,null]");
        assert_eq!(
            json(
                Elem::Text,
                r#"{"Deleted Scenes","Behind the Scenes",plain,"NULL",NULL,"a\"b\\c",""}"#
            ),
            r#"["Deleted Scenes","Behind the Scenes","plain","NULL",null,"a\"b\\c",""]"#
        );
        assert_eq!(json(Elem::Text, "{é,ü}"), r#"["é","ü"]"#);
        assert_eq!(
            json(Elem::Date, "{2024-02-29,infinity,NULL}"),
            r#"["2024-02-29",null,null]"#
        );
        assert_eq!(
            json(
                Elem::DateTime,
                r#"{"2024-01-31 10:20:30.5","2024-01-31 10:20:30"}"#
            ),
            r#"["2024-01-31T10:20:30.500000","2024-01-31T10:20:30"]"#
        );
        assert_eq!(
            json(
                Elem::Timestamp,
                r#"{"2024-01-31 10:20:30.5+02","2024-01-31 08:20:30.5+00"}"#
            ),
            r#"["2024-01-31T08:20:30.500000Z","2024-01-31T08:20:30.500000Z"]"#
        );
        assert_eq!(
            json(Elem::Json, r#"{"{\"a\": 1}","[1, 2]",NULL}"#),
            r#"[{"a": 1},[1, 2],null]"#
        );
        // Not an array literal.
        assert_eq!(json(Elem::Int, "1,2"), "NULL");
        assert_eq!(json(Elem::Int, "{1,2"), "NULL");
        assert_eq!(json(Elem::Text, r#"{"a}"#), "NULL");
        assert_eq!(json(Elem::Int, "{1,2} x"), "NULL");
        assert_eq!(json(Elem::Int, &"{".repeat(10)), "NULL");
    }

    #[test]
    fn dates_match_the_query_writer() {
        let mut out = Vec::new();
        write_date(&mut out, 0);
        out.push(b' ');
        write_date(&mut out, -719_528); // 0000-01-01
        out.push(b' ');
        write_datetime(&mut out, -1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01 0000-01-01 1969-12-31T23:59:59.999999"
        );
    }

    #[test]
    fn set_values() {
        let mut s = String::new();
        set_json("a,c", &mut s);
        assert_eq!(s, r#"["a","c"]"#);
        set_json("", &mut s);
        assert_eq!(s, "[]");
        set_json("x\"y", &mut s);
        assert_eq!(s, r#"["x\"y"]"#);
    }
}
