//! JSON output written straight into the response buffer from column values.

use base64::Engine as _;
use refract_schema::{ColumnType, ValueRef};

use refract_schema::calendar::civil_from_days;

use crate::literal::DAY_US;

/// Largest integer magnitude written as a JSON number (2^53); larger ones are strings.
const MAX_SAFE: u64 = 1 << 53;

/// `0` for bytes copied as they are, else the escape letter (`u` for `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Whether any of the 8 bytes of `w` must be escaped: below 0x20, a quote or a backslash
/// (exact: the borrow of a subtraction only spreads above a byte that matched).
#[inline(always)]
fn any_escape(w: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let control = w.wrapping_sub(LO * 0x20) & !w & HI;
    let q = w ^ (LO * b'"' as u64);
    let quote = q.wrapping_sub(LO) & !q & HI;
    let b = w ^ (LO * b'\\' as u64);
    let backslash = b.wrapping_sub(LO) & !b & HI;
    control | quote | backslash != 0
}

/// A JSON string.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Most strings need no escape: skip clean 8-byte words, then go byte by byte from the
    // first word that may need one.
    let mut clean = 0;
    while clean + 8 <= bytes.len() {
        let w = u64::from_le_bytes(bytes[clean..clean + 8].try_into().expect("8 bytes"));
        if any_escape(w) {
            break;
        }
        clean += 8;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        let esc = ESCAPE[b as usize];
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if esc == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', esc]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `"name":`.
#[inline]
pub(crate) fn write_key(out: &mut Vec<u8>, name: &str) {
    write_str(out, name);
    out.push(b':');
}

fn two(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&[b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8]);
}

fn date(out: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        let y = y as u32;
        two(out, y / 100);
        two(out, y % 100);
    } else {
        if y < 0 {
            out.push(b'-');
        }
        let a = y.unsigned_abs();
        if a < 10_000 {
            two(out, (a / 100) as u32);
            two(out, (a % 100) as u32);
        } else {
            out.extend_from_slice(itoa::Buffer::new().format(a).as_bytes());
        }
    }
    out.push(b'-');
    two(out, m);
    out.push(b'-');
    two(out, d);
}

/// `HH:MM:SS[.ffffff]` of a non-negative number of microseconds (hours may pass 24).
fn clock(out: &mut Vec<u8>, micros: u64) {
    let secs = micros / 1_000_000;
    let frac = (micros % 1_000_000) as u32;
    let h = secs / 3600;
    if h < 100 {
        two(out, h as u32);
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(h).as_bytes());
    }
    out.push(b':');
    two(out, (secs / 60 % 60) as u32);
    out.push(b':');
    two(out, (secs % 60) as u32);
    if frac != 0 {
        out.push(b'.');
        two(out, frac / 10_000);
        two(out, frac / 100 % 100);
        two(out, frac % 100);
    }
}

fn datetime(out: &mut Vec<u8>, micros: i64) {
    date(out, micros.div_euclid(DAY_US));
    out.push(b'T');
    clock(out, micros.rem_euclid(DAY_US) as u64);
}

/// A decimal mantissa at `scale` as a string with exactly `scale` fraction digits.
fn decimal(out: &mut Vec<u8>, mantissa: i128, scale: u8) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(mantissa.unsigned_abs()).as_bytes();
    let scale = scale as usize;
    out.push(b'"');
    if mantissa < 0 {
        out.push(b'-');
    }
    if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int);
        if scale > 0 {
            out.push(b'.');
            out.extend_from_slice(frac);
        }
    } else {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + scale - digits.len(), b'0');
        out.extend_from_slice(digits);
    }
    out.push(b'"');
}

/// The JSON of one cell of a column of type `ty`.
pub(crate) fn write_value(out: &mut Vec<u8>, v: ValueRef<'_>, ty: ColumnType) {
    match v {
        ValueRef::Null => out.extend_from_slice(b"null"),
        ValueRef::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        ValueRef::Int(i) => {
            let mut buf = itoa::Buffer::new();
            let s = buf.format(i).as_bytes();
            if i.unsigned_abs() <= MAX_SAFE {
                out.extend_from_slice(s);
            } else {
                out.push(b'"');
                out.extend_from_slice(s);
                out.push(b'"');
            }
        }
        ValueRef::Float(f) => {
            if f.is_finite() {
                out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
            } else {
                out.extend_from_slice(b"null");
            }
        }
        ValueRef::Decimal(m) => decimal(
            out,
            m,
            if let ColumnType::Decimal { scale } = ty {
                scale
            } else {
                0
            },
        ),
        ValueRef::Text(s) => write_str(out, s),
        ValueRef::Bytes(b) => {
            out.push(b'"');
            let start = out.len();
            out.resize(start + base64::encoded_len(b.len(), true).unwrap_or(0), 0);
            let n = base64::engine::general_purpose::STANDARD
                .encode_slice(b, &mut out[start..])
                .unwrap_or(0);
            out.truncate(start + n);
            out.push(b'"');
        }
        ValueRef::Date(d) => {
            out.push(b'"');
            date(out, d as i64);
            out.push(b'"');
        }
        ValueRef::Time(t) => {
            out.push(b'"');
            if t < 0 {
                out.push(b'-');
            }
            clock(out, t.unsigned_abs());
            out.push(b'"');
        }
        ValueRef::DateTime(t) => {
            out.push(b'"');
            datetime(out, t);
            out.push(b'"');
        }
        ValueRef::Timestamp(t) => {
            out.push(b'"');
            datetime(out, t);
            out.extend_from_slice(b"Z\"");
        }
        ValueRef::Json(s) => {
            let s = s.trim();
            if s.is_empty() {
                out.extend_from_slice(b"null");
            } else {
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(v: ValueRef<'_>, ty: ColumnType) -> String {
        let mut out = Vec::new();
        write_value(&mut out, v, ty);
        let s = String::from_utf8(out).unwrap();
        serde_json::from_str::<serde_json::Value>(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
        s
    }

    #[test]
    fn strings_escape_like_serde_json_at_every_position() {
        // Every ASCII byte and a multi-byte character, at each offset of words and tails.
        let specials: Vec<String> = (0u8..0x80)
            .map(|b| (b as char).to_string())
            .chain(["é".to_string(), "\u{2028}".to_string()])
            .collect();
        for len in 0..20 {
            for at in 0..len.max(1) {
                for sp in &specials {
                    let mut s: String = "abcdefghijklmnopqrstuvwxyz"[..len].to_string();
                    if len > 0 {
                        s.replace_range(at..at + 1, sp);
                    }
                    let mut out = Vec::new();
                    write_str(&mut out, &s);
                    let written = String::from_utf8(out).unwrap();
                    let back: String = serde_json::from_str(&written)
                        .unwrap_or_else(|e| panic!("{written:?}: {e}"));
                    assert_eq!(back, s);
                    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
                        assert_eq!(written, format!("\"{s}\""), "copied as is");
                    }
                }
            }
        }
    }

    #[test]
    fn every_type_formats() {
        let text = ColumnType::Text {
            case_insensitive: false,
        };
        assert_eq!(j(ValueRef::Null, ColumnType::Int), "null");
        assert_eq!(j(ValueRef::Bool(true), ColumnType::Bool), "true");
        assert_eq!(j(ValueRef::Bool(false), ColumnType::Bool), "false");
        assert_eq!(j(ValueRef::Int(-42), ColumnType::Int), "-42");
        assert_eq!(
            j(ValueRef::Int(1 << 53), ColumnType::Int),
            "9007199254740992"
        );
        assert_eq!(
            j(ValueRef::Int(-(1 << 53)), ColumnType::Int),
            "-9007199254740992"
        );
        assert_eq!(
            j(ValueRef::Int((1 << 53) + 1), ColumnType::Int),
            "\"9007199254740993\""
        );
        assert_eq!(
            j(ValueRef::Int(i64::MIN), ColumnType::Int),
            "\"-9223372036854775808\""
        );
        assert_eq!(j(ValueRef::Float(1.5), ColumnType::Float), "1.5");
        assert_eq!(j(ValueRef::Float(1.0), ColumnType::Float), "1.0");
        assert_eq!(j(ValueRef::Float(1e300), ColumnType::Float), "1e300");
        assert_eq!(j(ValueRef::Float(f64::NAN), ColumnType::Float), "null");
        assert_eq!(
            j(ValueRef::Float(f64::NEG_INFINITY), ColumnType::Float),
            "null"
        );
        let d2 = ColumnType::Decimal { scale: 2 };
        assert_eq!(j(ValueRef::Decimal(1234), d2), "\"12.34\"");
        assert_eq!(j(ValueRef::Decimal(-5), d2), "\"-0.05\"");
        assert_eq!(j(ValueRef::Decimal(0), d2), "\"0.00\"");
        assert_eq!(j(ValueRef::Decimal(-100), d2), "\"-1.00\"");
        assert_eq!(
            j(ValueRef::Decimal(7), ColumnType::Decimal { scale: 0 }),
            "\"7\""
        );
        assert_eq!(
            j(
                ValueRef::Decimal(u64::MAX as i128),
                ColumnType::Decimal { scale: 0 }
            ),
            "\"18446744073709551615\""
        );
        assert_eq!(
            j(
                ValueRef::Decimal(i128::MIN),
                ColumnType::Decimal { scale: 38 }
            ),
            "\"-1.70141183460469231731687303715884105728\""
        );
        assert_eq!(
            j(ValueRef::Text("a\"b\\c\n\u{1}\u{7f}é"), text),
            "\"a\\\"b\\\\c\\n\\u0001\u{7f}é\""
        );
        assert_eq!(
            j(ValueRef::Text("\t\r\u{8}\u{c}\u{1f}"), text),
            r#""\t\r\b\f\u001f""#
        );
        assert_eq!(
            j(ValueRef::Bytes(b"hello"), ColumnType::Bytes),
            "\"aGVsbG8=\""
        );
        assert_eq!(j(ValueRef::Bytes(b""), ColumnType::Bytes), "\"\"");
        assert_eq!(j(ValueRef::Date(0), ColumnType::Date), "\"1970-01-01\"");
        assert_eq!(
            j(ValueRef::Date(19_723), ColumnType::Date),
            "\"2024-01-01\""
        );
        assert_eq!(
            j(ValueRef::Date(-719_528), ColumnType::Date),
            "\"0000-01-01\""
        );
        assert_eq!(
            j(ValueRef::Date(2_932_897), ColumnType::Date),
            "\"10000-01-01\""
        );
        assert_eq!(
            j(ValueRef::Time(45_296_000_000), ColumnType::Time),
            "\"12:34:56\""
        );
        assert_eq!(
            j(ValueRef::Time(45_296_000_123), ColumnType::Time),
            "\"12:34:56.000123\""
        );
        assert_eq!(
            j(ValueRef::Time(-3_020_399_000_000), ColumnType::Time),
            "\"-838:59:59\""
        );
        assert_eq!(
            j(ValueRef::Time(90_000_000_000), ColumnType::Time),
            "\"25:00:00\""
        );
        assert_eq!(
            j(
                ValueRef::DateTime(1_704_067_200_500_000),
                ColumnType::DateTime
            ),
            "\"2024-01-01T00:00:00.500000\""
        );
        assert_eq!(
            j(ValueRef::DateTime(-1), ColumnType::DateTime),
            "\"1969-12-31T23:59:59.999999\""
        );
        assert_eq!(
            j(
                ValueRef::Timestamp(1_704_067_200_000_000),
                ColumnType::Timestamp
            ),
            "\"2024-01-01T00:00:00Z\""
        );
        assert_eq!(
            j(ValueRef::Json(r#"{"a": [1, null]}"#), ColumnType::Json),
            r#"{"a": [1, null]}"#
        );
        assert_eq!(j(ValueRef::Json(""), ColumnType::Json), "null");
    }

    #[test]
    fn keys_are_escaped() {
        let mut out = Vec::new();
        write_key(&mut out, "we\"ird");
        assert_eq!(out, br#""we\"ird":"#);
    }
}
