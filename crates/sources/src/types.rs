//! Source type → [`ColumnType`] mapping (documented in `docs/types.md`) and the small,
//! allocation-free parsers every loader shares: exact decimals, dates, times and timestamps.

use refract_schema::calendar;
pub(crate) use refract_schema::calendar::civil_from_days;
use refract_schema::{ColumnType, ValueRef};

/// Largest precision an `i128` mantissa always holds (38 decimal digits).
pub(crate) const MAX_DECIMAL_PRECISION: u32 = 38;

/// One MySQL/MariaDB column as `information_schema.COLUMNS` describes it.
pub(crate) struct MysqlColumnInfo<'a> {
    /// `DATA_TYPE` (`int`, `varchar`, ...).
    pub data_type: &'a str,
    /// `COLUMN_TYPE` (`int(10) unsigned`, `tinyint(1)`, `decimal(10,2)`, `enum('a','b')`).
    pub column_type: &'a str,
    /// `COLLATION_NAME`.
    pub collation: Option<&'a str>,
    /// `NUMERIC_PRECISION`.
    pub precision: Option<u64>,
    /// `NUMERIC_SCALE`.
    pub scale: Option<u64>,
    /// MariaDB: the column carries a `CHECK (json_valid(col))` constraint (its `JSON` alias).
    pub json_check: bool,
}

/// MySQL/MariaDB mapping.
pub(crate) fn mysql_type(c: &MysqlColumnInfo<'_>) -> ColumnType {
    let dt = c.data_type.to_ascii_lowercase();
    let ct = c.column_type.to_ascii_lowercase();
    let unsigned = ct.contains("unsigned");
    let ci = c
        .collation
        .is_some_and(|s| s.to_ascii_lowercase().ends_with("_ci"));
    match dt.as_str() {
        "tinyint" if ct.starts_with("tinyint(1)") => ColumnType::Bool,
        "bigint" if unsigned => ColumnType::Decimal { scale: 0 },
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
            ColumnType::Int
        }
        "decimal" | "numeric" | "dec" | "fixed" => {
            let p = c.precision.unwrap_or(10);
            if p > u64::from(MAX_DECIMAL_PRECISION) {
                ColumnType::Text {
                    case_insensitive: false,
                }
            } else {
                ColumnType::Decimal {
                    scale: c.scale.unwrap_or(0).min(38) as u8,
                }
            }
        }
        "float" | "double" | "real" | "double precision" => ColumnType::Float,
        // SET: a JSON array of its members (`crate::arrays::set_json`).
        "set" => ColumnType::Json,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" => {
            if c.json_check {
                ColumnType::Json
            } else {
                ColumnType::Text {
                    case_insensitive: ci,
                }
            }
        }
        "json" => ColumnType::Json,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            ColumnType::Bytes
        }
        "date" => ColumnType::Date,
        "time" => ColumnType::Time,
        "datetime" => ColumnType::DateTime,
        "timestamp" => ColumnType::Timestamp,
        "bit" => match paren_args(&ct).first() {
            Some(1) | None => ColumnType::Bool,
            Some(n) if *n < 64 => ColumnType::Int,
            _ => ColumnType::Decimal { scale: 0 },
        },
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "vector" => ColumnType::Bytes,
        // uuid, inet4, inet6 (MariaDB) and anything unknown: its text form.
        _ => ColumnType::Text {
            case_insensitive: false,
        },
    }
}

/// One PostgreSQL column as the catalog describes it (domains resolved to their base type).
pub(crate) struct PgColumnInfo<'a> {
    /// `pg_type.typname` of the (base) type.
    pub typname: &'a str,
    /// `pg_type.typtype` (`b` base, `e` enum, ...).
    pub typtype: &'a str,
    /// `pg_type.typcategory` (`A` for arrays).
    pub typcategory: &'a str,
    /// Type modifier (`atttypmod`, or the domain's `typtypmod`).
    pub typmod: i32,
}

/// PostgreSQL mapping.
pub(crate) fn pg_type(c: &PgColumnInfo<'_>) -> ColumnType {
    // Arrays: JSON arrays (`crate::arrays`), decoded from their text form by loads and CDC.
    if c.typcategory == "A" {
        return ColumnType::Json;
    }
    // Composites, ranges and enums: their text form (`(a,b)`, `[1,5)`), which is also what
    // logical replication (pgoutput) sends, so loads and CDC agree.
    if c.typtype == "c" || c.typtype == "r" || c.typtype == "m" {
        return ColumnType::Text {
            case_insensitive: false,
        };
    }
    if c.typtype == "e" {
        return ColumnType::Text {
            case_insensitive: false,
        };
    }
    match c.typname {
        "bool" => ColumnType::Bool,
        "int2" | "int4" | "int8" | "oid" => ColumnType::Int,
        "numeric" => match pg_numeric_typmod(c.typmod) {
            Some((p, s)) if p <= MAX_DECIMAL_PRECISION && s <= MAX_DECIMAL_PRECISION as i32 => {
                ColumnType::Decimal {
                    scale: s.max(0) as u8,
                }
            }
            // Unconstrained `numeric` (any scale per value, NaN, ±Infinity) or more than 38
            // digits: the exact text PostgreSQL prints (`3.14159…`, `NaN`).
            _ => ColumnType::Text {
                case_insensitive: false,
            },
        },
        "float4" | "float8" => ColumnType::Float,
        "citext" => ColumnType::Text {
            case_insensitive: true,
        },
        "bytea" => ColumnType::Bytes,
        "date" => ColumnType::Date,
        "time" => ColumnType::Time,
        "timestamp" => ColumnType::DateTime,
        "timestamptz" => ColumnType::Timestamp,
        "json" | "jsonb" => ColumnType::Json,
        // text, varchar, bpchar, name, uuid, inet, cidr, macaddr, interval, money, timetz, xml, ...
        _ => ColumnType::Text {
            case_insensitive: false,
        },
    }
}

/// `(precision, scale)` of a `numeric(p,s)` type modifier; `None` when unconstrained.
pub(crate) fn pg_numeric_typmod(typmod: i32) -> Option<(u32, i32)> {
    if typmod < 4 {
        return None;
    }
    let t = typmod - 4;
    let p = ((t >> 16) & 0xffff) as u32;
    // PostgreSQL 15 stores the scale as an 11-bit signed number (negative scales are allowed).
    let raw = t & 0x7ff;
    let s = if raw & 0x400 != 0 { raw - 0x800 } else { raw };
    Some((p, s))
}

/// SQLite mapping by declared type (SQLite's affinity rules, with names for the types SQLite
/// itself has no class for).
pub(crate) fn sqlite_type(declared: &str) -> ColumnType {
    let d = declared.trim().to_ascii_uppercase();
    let base = d.split('(').next().unwrap_or("").trim();
    if d.contains("BOOL") {
        return ColumnType::Bool;
    }
    if base.contains("DATETIME") || base.contains("TIMESTAMP") {
        return ColumnType::DateTime;
    }
    if base == "DATE" {
        return ColumnType::Date;
    }
    if base == "TIME" {
        return ColumnType::Time;
    }
    if base == "JSON" || base == "JSONB" {
        return ColumnType::Json;
    }
    if base.starts_with("DECIMAL") || base.starts_with("NUMERIC") {
        let args = paren_args(&d);
        return match args.as_slice() {
            [p, s] if *p <= u64::from(MAX_DECIMAL_PRECISION) => ColumnType::Decimal {
                scale: (*s).min(38) as u8,
            },
            [p] if *p <= u64::from(MAX_DECIMAL_PRECISION) => ColumnType::Decimal { scale: 0 },
            // A bare NUMERIC holds an INTEGER or a REAL in SQLite: a float is what it is.
            _ => ColumnType::Float,
        };
    }
    if d.contains("INT") {
        return ColumnType::Int;
    }
    if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        return ColumnType::Text {
            case_insensitive: false,
        };
    }
    if d.contains("BLOB") {
        return ColumnType::Bytes;
    }
    if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        return ColumnType::Float;
    }
    ColumnType::Text {
        case_insensitive: false,
    }
}

/// The integers between the first parentheses: `decimal(10,2)` → `[10, 2]`.
fn paren_args(t: &str) -> Vec<u64> {
    let Some(open) = t.find('(') else {
        return Vec::new();
    };
    let Some(close) = t[open..].find(')') else {
        return Vec::new();
    };
    t[open + 1..open + close]
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

const POW10: [i128; 39] = {
    let mut t = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// `10^n` as `i128` (n ≤ 38).
pub(crate) fn pow10(n: u32) -> i128 {
    POW10[n.min(38) as usize]
}

/// Parse a decimal number (`-12.345`, `1e3`, `.5`) into a mantissa at `scale` fraction digits,
/// rounding half away from zero when it has more. `None` when it is not a number or does not fit.
pub(crate) fn parse_decimal(s: &[u8], scale: u8) -> Option<i128> {
    let mut i = 0;
    let mut neg = false;
    while i < s.len() && s[i] == b' ' {
        i += 1;
    }
    if i < s.len() && (s[i] == b'-' || s[i] == b'+') {
        neg = s[i] == b'-';
        i += 1;
    }
    let mut mant: i128 = 0;
    let mut digits_after_point: i32 = 0;
    let mut seen_point = false;
    let mut any = false;
    let mut exp: i32 = 0;
    while i < s.len() {
        let c = s[i];
        match c {
            b'0'..=b'9' => {
                any = true;
                let d = i128::from(c - b'0');
                if seen_point {
                    // Fraction digits past i128 precision cannot matter for any scale we hold.
                    if mant < POW10[37] {
                        digits_after_point += 1;
                        mant = mant * 10 + d;
                    }
                } else {
                    mant = mant.checked_mul(10)?.checked_add(d)?;
                }
            }
            b'.' if !seen_point => seen_point = true,
            b'e' | b'E' => {
                let rest = std::str::from_utf8(&s[i + 1..]).ok()?;
                exp = rest.trim().parse().ok()?;
                break;
            }
            b' ' => {
                if s[i..].iter().any(|&b| b != b' ') {
                    return None;
                }
                break;
            }
            _ => return None,
        }
        i += 1;
    }
    if !any {
        return None;
    }
    // value = mant * 10^(exp - digits_after_point); the result is value * 10^scale.
    let shift = i32::from(scale) + exp - digits_after_point;
    let v = if shift >= 0 {
        if mant == 0 {
            0
        } else if shift > 38 {
            return None;
        } else {
            mant.checked_mul(pow10(shift as u32))?
        }
    } else {
        let drop = (-shift) as u32;
        if drop > 38 {
            0
        } else {
            let d = pow10(drop);
            let (q, r) = (mant / d, mant % d);
            // half away from zero (the sign is applied below)
            if r >= d - r {
                q + 1
            } else {
                q
            }
        }
    };
    Some(if neg { -v } else { v })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (`None` when not a real date or out of
/// the `i32` days a `Date` holds).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i32> {
    calendar::days_from_civil(y, m, d).and_then(|days| i32::try_from(days).ok())
}

/// Microseconds in a day.
pub(crate) const DAY_MICROS: i64 = 86_400_000_000;

fn num(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Parse `YYYY-MM-DD` (more year digits allowed, optional ` BC` suffix); returns days and the rest.
fn parse_date_prefix(s: &[u8]) -> Option<(i32, &[u8])> {
    let (neg, s) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let d1 = s.iter().position(|&c| c == b'-')?;
    let y = num(&s[..d1])?;
    let rest = &s[d1 + 1..];
    if rest.len() < 5 || rest[2] != b'-' {
        return None;
    }
    let m = num(&rest[..2])? as u32;
    let d = num(&rest[3..5])? as u32;
    let mut tail = &rest[5..];
    let mut year = if neg { -y } else { y };
    if let Some(t) = strip_bc(tail) {
        // 1 BC is year 0 in the proleptic calendar.
        year = 1 - year;
        tail = t;
    }
    Some((days_from_civil(year, m, d)?, tail))
}

fn strip_bc(s: &[u8]) -> Option<&[u8]> {
    if s.ends_with(b" BC") {
        Some(&s[..s.len() - 3])
    } else {
        None
    }
}

/// `YYYY-MM-DD` → days since the epoch.
pub(crate) fn parse_date(s: &[u8]) -> Option<i32> {
    let (days, rest) = parse_date_prefix(s)?;
    if rest.is_empty() {
        Some(days)
    } else {
        None
    }
}

/// `[-]H+:MM[:SS[.ffffff]]` → microseconds (hours may pass 24: MySQL `TIME` durations).
pub(crate) fn parse_time(s: &[u8]) -> Option<i64> {
    let (neg, s) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let c1 = s.iter().position(|&c| c == b':')?;
    let h = num(&s[..c1])?;
    let rest = &s[c1 + 1..];
    if rest.len() < 2 {
        return None;
    }
    let mi = num(&rest[..2])?;
    let rest = &rest[2..];
    let (sec, frac) = if rest.is_empty() {
        (0, 0)
    } else {
        if rest[0] != b':' || rest.len() < 3 {
            return None;
        }
        let sec = num(&rest[1..3])?;
        let frac = parse_fraction(&rest[3..])?;
        (sec, frac)
    };
    let v = h
        .checked_mul(3600)?
        .checked_add(mi * 60 + sec)?
        .checked_mul(1_000_000)?
        .checked_add(frac)?;
    Some(if neg { -v } else { v })
}

/// `.ffffff` (any number of digits, rounded to microseconds) or empty → microseconds.
fn parse_fraction(s: &[u8]) -> Option<i64> {
    if s.is_empty() {
        return Some(0);
    }
    if s[0] != b'.' {
        return None;
    }
    let digits = &s[1..];
    let mut v: i64 = 0;
    for (i, &c) in digits.iter().enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        if i < 6 {
            v = v * 10 + i64::from(c - b'0');
        }
    }
    for _ in digits.len()..6 {
        v *= 10;
    }
    Some(v)
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.ffffff][Z|±HH[:MM[:SS]]][ BC]` → (local micros, offset seconds).
/// A bare date is midnight.
pub(crate) fn parse_datetime(s: &[u8]) -> Option<(i64, i64)> {
    let (s, bc) = match strip_bc(s) {
        Some(t) => (t, true),
        None => (s, false),
    };
    // Re-attach " BC" to the date part for the year sign.
    let (days, rest) = parse_date_prefix(s)?;
    let days = if bc {
        let date_end = s.len() - rest.len();
        let mut buf = [0u8; 32];
        let d = &s[..date_end];
        if d.len() + 3 > buf.len() {
            return None;
        }
        buf[..d.len()].copy_from_slice(d);
        buf[d.len()..d.len() + 3].copy_from_slice(b" BC");
        parse_date(&buf[..d.len() + 3])?
    } else {
        days
    };
    let base = i64::from(days).checked_mul(DAY_MICROS)?;
    if rest.is_empty() {
        return Some((base, 0));
    }
    if rest[0] != b' ' && rest[0] != b'T' {
        return None;
    }
    let t = &rest[1..];
    // Split off the zone: first '+', '-' or 'Z' after the time's start.
    let zpos = t.iter().position(|&c| c == b'+' || c == b'-' || c == b'Z');
    let (time, zone) = match zpos {
        Some(p) => (&t[..p], &t[p..]),
        None => (t, &t[t.len()..]),
    };
    let micros = parse_time(time)?;
    let offset = parse_offset(zone)?;
    Some((base.checked_add(micros)?, offset))
}

fn parse_offset(z: &[u8]) -> Option<i64> {
    if z.is_empty() || z == b"Z" {
        return Some(0);
    }
    let sign = match z[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let parts = &z[1..];
    let mut total = 0i64;
    let mut mult = 3600;
    for p in parts.split(|&c| c == b':') {
        total = total.checked_add(num(p)?.checked_mul(mult)?)?;
        mult /= 60;
        if mult == 0 {
            break;
        }
    }
    // `+0530` form
    if !parts.contains(&b':') && parts.len() == 4 {
        total = num(&parts[..2])?.checked_mul(3600)? + num(&parts[2..])?.checked_mul(60)?;
    }
    Some(sign * total)
}

/// A timestamp's text → micros since the epoch in UTC.
pub(crate) fn parse_timestamp_utc(s: &[u8]) -> Option<i64> {
    let (local, off) = parse_datetime(s)?;
    local.checked_sub(off.checked_mul(1_000_000)?)
}

/// A date/time type's text form (`2024-01-31`, `-12:30:00`, `2024-01-31 10:00:00.5+02`) as a
/// cell of column type `ty`; `None` when the text is not valid for it (zero dates included).
pub(crate) fn parse_temporal(ty: ColumnType, s: &[u8]) -> Option<ValueRef<'static>> {
    match ty {
        ColumnType::Date => parse_date(s).map(ValueRef::Date),
        ColumnType::Time => parse_time(s).map(ValueRef::Time),
        ColumnType::DateTime => parse_datetime(s).map(|(local, _)| ValueRef::DateTime(local)),
        ColumnType::Timestamp => parse_timestamp_utc(s).map(ValueRef::Timestamp),
        _ => None,
    }
}

/// Hex digits (`414243`) → bytes, appended to `out`; `None` when not hex.
pub(crate) fn decode_hex(s: &[u8], out: &mut Vec<u8>) -> Option<()> {
    if s.len() & 1 == 1 {
        return None;
    }
    out.reserve(s.len() / 2);
    for pair in s.chunks_exact(2) {
        out.push((hex_val(pair[0])? << 4) | hex_val(pair[1])?);
    }
    Some(())
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A decimal mantissa as text at `scale`.
pub(crate) fn decimal_text(m: i128, scale: u32) -> String {
    if scale == 0 {
        return m.to_string();
    }
    let neg = m < 0;
    let digits = m.unsigned_abs().to_string();
    let s = scale as usize;
    let padded = if digits.len() <= s {
        format!("{}{digits}", "0".repeat(s + 1 - digits.len()))
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - s);
    format!("{}{int}.{frac}", if neg { "-" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzzers: out-of-range text is no value, never an overflow.
    #[test]
    fn out_of_range_temporal_text_is_none() {
        assert_eq!(parse_time(b"999999999999999999:00:00"), None);
        assert_eq!(parse_time(b"-2562047789:00:00"), None);
        assert_eq!(parse_offset(b"+999999999999999999"), None);
        assert_eq!(
            parse_timestamp_utc(b"2024-01-01 00:00:00+99999999999999"),
            None
        );
        assert_eq!(parse_time(b"12:30:00.5"), Some(45_000_500_000));
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(b"12.34", 2), Some(1234));
        assert_eq!(parse_decimal(b"-12.3", 2), Some(-1230));
        assert_eq!(parse_decimal(b"12.345", 2), Some(1235));
        assert_eq!(parse_decimal(b"-12.345", 2), Some(-1235));
        assert_eq!(parse_decimal(b"12.344", 2), Some(1234));
        assert_eq!(parse_decimal(b"7", 3), Some(7000));
        assert_eq!(parse_decimal(b".5", 1), Some(5));
        assert_eq!(parse_decimal(b"1e3", 0), Some(1000));
        assert_eq!(parse_decimal(b"1.5e-1", 2), Some(15));
        assert_eq!(
            parse_decimal(b"18446744073709551615", 0),
            Some(18_446_744_073_709_551_615)
        );
        assert_eq!(
            parse_decimal(b"99999999999999999999999999999.999999999", 9),
            Some(99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
        assert_eq!(parse_decimal(b"abc", 2), None);
        assert_eq!(parse_decimal(b"", 2), None);
        assert_eq!(parse_decimal(b"-0.00", 2), Some(0));
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(parse_date(b"1970-01-01"), Some(0));
        assert_eq!(parse_date(b"2000-03-01"), Some(11017));
        assert_eq!(parse_date(b"1969-12-31"), Some(-1));
        assert_eq!(parse_date(b"0000-00-00"), None);
        assert_eq!(parse_date(b"2023-02-29"), None);
        assert_eq!(parse_date(b"0001-01-01 BC"), days_from_civil(0, 1, 1));
        assert_eq!(
            parse_time(b"-838:59:59"),
            Some(-(838 * 3600 + 59 * 60 + 59) * 1_000_000)
        );
        assert_eq!(parse_time(b"12:00:00.5"), Some(43_200_500_000));
        assert_eq!(
            parse_datetime(b"1970-01-02 00:00:01.000001"),
            Some((DAY_MICROS + 1_000_001, 0))
        );
        assert_eq!(parse_timestamp_utc(b"1970-01-01 01:00:00+01"), Some(0));
        assert_eq!(
            parse_timestamp_utc(b"1970-01-01T00:00:00-05:30"),
            Some(19_800_000_000)
        );
        assert_eq!(parse_timestamp_utc(b"1970-01-01 00:00:00Z"), Some(0));
    }

    #[test]
    fn mappings() {
        let m = |dt: &str, ct: &str, coll: Option<&str>| {
            mysql_type(&MysqlColumnInfo {
                data_type: dt,
                column_type: ct,
                collation: coll,
                precision: Some(10),
                scale: Some(2),
                json_check: false,
            })
        };
        assert_eq!(m("tinyint", "tinyint(1)", None), ColumnType::Bool);
        assert_eq!(m("tinyint", "tinyint(4)", None), ColumnType::Int);
        assert_eq!(
            m("bigint", "bigint(20) unsigned", None),
            ColumnType::Decimal { scale: 0 }
        );
        assert_eq!(m("int", "int(10) unsigned", None), ColumnType::Int);
        assert_eq!(
            m("decimal", "decimal(10,2)", None),
            ColumnType::Decimal { scale: 2 }
        );
        assert_eq!(
            m("varchar", "varchar(10)", Some("utf8mb4_general_ci")),
            ColumnType::Text {
                case_insensitive: true
            }
        );
        assert_eq!(
            m("varchar", "varchar(10)", Some("utf8mb4_bin")),
            ColumnType::Text {
                case_insensitive: false
            }
        );
        assert_eq!(m("bit", "bit(1)", None), ColumnType::Bool);
        assert_eq!(m("bit", "bit(8)", None), ColumnType::Int);
        assert_eq!(pg_numeric_typmod(-1), None);
        assert_eq!(pg_numeric_typmod(((10 << 16) | 2) + 4), Some((10, 2)));
        let pg = |name: &str, typtype: &str, cat: &str, typmod: i32| {
            pg_type(&PgColumnInfo {
                typname: name,
                typtype,
                typcategory: cat,
                typmod,
            })
        };
        let text = ColumnType::Text {
            case_insensitive: false,
        };
        assert_eq!(
            pg("numeric", "b", "N", ((12 << 16) | 2) + 4),
            ColumnType::Decimal { scale: 2 }
        );
        assert_eq!(pg("numeric", "b", "N", -1), text);
        assert_eq!(pg("numeric", "b", "N", ((39 << 16) | 2) + 4), text);
        assert_eq!(pg("numeric", "b", "N", ((10 << 16) | 50) + 4), text);
        assert_eq!(
            pg("numeric", "b", "N", ((5 << 16) | 0x7fe) + 4),
            ColumnType::Decimal { scale: 0 }
        ); // scale -2
        assert_eq!(pg("_int4", "b", "A", -1), ColumnType::Json);
        assert_eq!(pg("mood", "e", "E", -1), text);
        assert_eq!(
            pg("citext", "b", "S", -1),
            ColumnType::Text {
                case_insensitive: true
            }
        );
        assert_eq!(pg("timestamptz", "b", "D", -1), ColumnType::Timestamp);
        assert_eq!(pg("jsonb", "b", "U", -1), ColumnType::Json);
        assert_eq!(sqlite_type("INTEGER"), ColumnType::Int);
        assert_eq!(
            sqlite_type("decimal(10, 2)"),
            ColumnType::Decimal { scale: 2 }
        );
        assert_eq!(sqlite_type("BOOLEAN"), ColumnType::Bool);
        assert_eq!(sqlite_type("DATETIME"), ColumnType::DateTime);
        assert_eq!(
            sqlite_type("varchar(20)"),
            ColumnType::Text {
                case_insensitive: false
            }
        );
        assert_eq!(
            sqlite_type(""),
            ColumnType::Text {
                case_insensitive: false
            }
        );
    }
}
