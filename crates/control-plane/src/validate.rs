//! Field rules of `/v1` (seeds 000–003 and `control-plane-api.md`). Each check returns a 400 whose
//! message names the field and the rule; rules that need the store (uniqueness, schemas in use)
//! live in the service.

use crate::api::SyncModeExt;
use crate::api::{Backend, PauseSchedule, SslMode, SyncMode, Tag};
use crate::error::ApiError;

type R = Result<(), ApiError>;

/// Longest name (connections, databases, customers, keys), in characters.
pub const NAME_MAX: usize = 100;
/// Longest host name of a network source (a DNS name is at most 253 characters).
pub const HOST_MAX: usize = 255;
/// Longest SQLite file path (`PATH_MAX`).
pub const PATH_MAX: usize = 4096;
/// Longest login user name.
pub const USER_MAX: usize = 128;
/// Longest schema (database) name (defined beside the OpenAPI schema that states it).
pub use crate::api::SCHEMA_MAX;
/// Longest password.
pub const PASSWORD_MAX: usize = 1024;

/// Characters no name, host, user or schema may hold: control characters (`\n`, `\r`, `\0`,
/// …) and the Unicode bidirectional overrides, isolates and marks (U+202A–U+202E,
/// U+2066–U+2069, U+200E, U+200F, U+061C), which make a log line or a listing read differently
/// from what it holds.
pub fn forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
}

/// No [`forbidden_char`].
pub fn plain_text(field: &str, v: &str) -> R {
    if let Some((i, c)) = v.chars().enumerate().find(|(_, c)| forbidden_char(*c)) {
        return Err(ApiError::invalid(format!(
            "{field} must not contain control or bidirectional-override characters (found U+{:04X} at character {})",
            c as u32,
            i + 1
        )));
    }
    Ok(())
}

/// 1–`max` characters, none of them a [`forbidden_char`].
pub fn text(field: &str, v: &str, max: usize) -> R {
    let n = v.chars().count();
    if n == 0 || n > max {
        return Err(ApiError::invalid(format!(
            "{field} must be 1–{max} characters (got {n})"
        )));
    }
    plain_text(field, v)
}

/// 1–100 characters, not only spaces, no control or bidi characters.
pub fn name(field: &str, v: &str) -> R {
    let n = v.chars().count();
    if n == 0 || n > NAME_MAX || v.trim().is_empty() {
        return Err(ApiError::invalid(format!(
            "{field} must be 1–{NAME_MAX} characters (got {n})"
        )));
    }
    plain_text(field, v)
}

/// A source host (`sqlite`: a file path, up to [`PATH_MAX`]; else up to [`HOST_MAX`]).
pub fn host(field: &str, v: &str, backend: Backend) -> R {
    let max = if backend == Backend::Sqlite {
        PATH_MAX
    } else {
        HOST_MAX
    };
    text(field, v, max)
}

/// A login user.
pub fn user(field: &str, v: &str) -> R {
    text(field, v, USER_MAX)
}

/// A schema (database) name.
pub fn schema(field: &str, v: &str) -> R {
    text(field, v, SCHEMA_MAX)
}

/// A password: 1–1024 characters, no NUL (any other character may be part of a password).
pub fn password(field: &str, v: &str) -> R {
    let n = v.chars().count();
    if n == 0 || n > PASSWORD_MAX {
        return Err(ApiError::invalid(format!(
            "{field} must be 1–{PASSWORD_MAX} characters (got {n})"
        )));
    }
    if v.contains('\0') {
        return Err(ApiError::invalid(format!(
            "{field} must not contain a NUL character"
        )));
    }
    Ok(())
}

/// At least one character.
pub fn non_empty(field: &str, v: &str) -> R {
    if v.is_empty() {
        return Err(ApiError::invalid(format!(
            "{field} must be at least 1 character"
        )));
    }
    Ok(())
}

/// A required optional-typed field.
pub fn required<'a, T>(field: &str, v: &'a Option<T>) -> Result<&'a T, ApiError> {
    v.as_ref()
        .ok_or_else(|| ApiError::invalid(format!("{field} is required")))
}

/// `lo..=hi`.
pub fn range(field: &str, v: i64, lo: i64, hi: i64) -> R {
    if v < lo || v > hi {
        return Err(ApiError::invalid(format!(
            "{field} must be between {lo} and {hi} (got {v})"
        )));
    }
    Ok(())
}

/// TCP port.
pub fn port(field: &str, v: i64) -> R {
    range(field, v, 1, 65535)
}

/// Poll interval bounds of the seed.
pub fn sync_interval(field: &str, v: i64) -> R {
    range(field, v, 5, 3600)
}

/// MySQL `server_id` is an unsigned 32-bit number; 0 is not allowed for a replica.
pub fn binlog_server_id(v: i64) -> R {
    range("binlogServerId", v, 1, u32::MAX as i64)
}

/// 0 (off) or 60 s – 1 day.
pub fn safety_net(v: i64) -> R {
    if v != 0 && !(60..=86400).contains(&v) {
        return Err(ApiError::invalid(format!(
            "safetyNet must be 0 (off) or between 60 and 86400 seconds (got {v})"
        )));
    }
    Ok(())
}

/// ≥ 1 non-empty, distinct names.
pub fn schemas(field: &str, v: &[String]) -> R {
    if v.is_empty() {
        return Err(ApiError::invalid(format!(
            "{field} must have at least 1 item"
        )));
    }
    if v.len() > 1000 {
        return Err(ApiError::invalid(format!(
            "{field} must have at most 1000 items (got {})",
            v.len()
        )));
    }
    for (i, s) in v.iter().enumerate() {
        schema(&format!("{field}[{i}]"), s)?;
        if v[..i].contains(s) {
            return Err(ApiError::invalid(format!("{field} lists {s:?} twice")));
        }
    }
    Ok(())
}

/// A CDC mode must fit the backend (`binlog` → mysql, `logical` → postgres, `cdc` → mssql);
/// `sqlite` polls only.
pub fn sync_mode_fits(field: &str, mode: SyncMode, backend: Backend) -> R {
    match mode.required_backend() {
        Some(b) if b != backend => Err(ApiError::invalid(format!(
            "{field} {mode} needs backend {b}; backend {backend} supports poll{}",
            match backend {
                Backend::Mysql => " and binlog",
                Backend::Postgres => " and logical",
                Backend::Mssql => " and cdc",
                Backend::Sqlite => "",
            }
        ))),
        _ => Ok(()),
    }
}

/// Longest `sslRootCert`, in characters (the schema's `maxLength`; PEM is ASCII, so also bytes).
pub const ROOT_CERT_MAX: usize = refract_sources::MAX_ROOT_CERT_BYTES;

/// `sslRootCert`: 1–65536 characters (400), then PEM holding only CA certificates that parse
/// (422, with what is wrong).
pub fn root_cert(field: &str, pem: &str) -> R {
    let n = pem.chars().count();
    if n == 0 || n > ROOT_CERT_MAX {
        return Err(ApiError::invalid(format!(
            "{field} must be 1–{ROOT_CERT_MAX} characters of PEM (got {n})"
        )));
    }
    refract_sources::parse_root_cert(pem)
        .map(|_| ())
        .map_err(|e| ApiError::unprocessable(format!("{field} {e}")))
}

/// TLS settings that fit the backend: a SQLite source is a local file, so it takes only
/// `sslMode` `disable` and no `sslRootCert` (422 otherwise).
pub fn tls_fits(mode: Option<SslMode>, root_cert: bool, backend: Backend) -> R {
    if backend != Backend::Sqlite {
        return Ok(());
    }
    if let Some(m) = mode.filter(|m| *m != SslMode::Disable) {
        return Err(ApiError::unprocessable(format!(
            "sslMode {m} does not apply to backend sqlite (a local file, no network): leave it out \
             or give disable"
        )));
    }
    if root_cert {
        return Err(ApiError::unprocessable(
            "sslRootCert does not apply to backend sqlite (a local file, no network)",
        ));
    }
    Ok(())
}

/// ≤ 5 tags, label 1–30 characters, distinct labels.
pub fn tags(v: &[Tag]) -> R {
    if v.len() > 5 {
        return Err(ApiError::invalid(format!(
            "tags must have at most 5 items (got {})",
            v.len()
        )));
    }
    for (i, t) in v.iter().enumerate() {
        let n = t.label.chars().count();
        if n == 0 || n > 30 {
            return Err(ApiError::invalid(format!(
                "tags[{i}].label must be 1–30 characters (got {n})"
            )));
        }
        plain_text(&format!("tags[{i}].label"), &t.label)?;
        if v[..i].iter().any(|o| o.label == t.label) {
            // 422: distinct labels is not something the schema can say.
            return Err(ApiError::unprocessable(format!(
                "tags lists the label {:?} twice",
                t.label
            )));
        }
    }
    Ok(())
}

fn hh_mm(field: &str, v: &str) -> R {
    let ok = v.len() == 5
        && v.as_bytes()[2] == b':'
        && v[..2].parse::<u32>().is_ok_and(|h| h < 24)
        && v[3..].parse::<u32>().is_ok_and(|m| m < 60)
        && v.bytes()
            .enumerate()
            .all(|(i, b)| i == 2 || b.is_ascii_digit());
    if !ok {
        return Err(ApiError::invalid(format!(
            "{field} must be a time HH:MM (00:00–23:59), got {v:?}"
        )));
    }
    Ok(())
}

/// `HH:MM` times and days 0..6 (distinct).
pub fn pause_schedule(v: &PauseSchedule) -> R {
    hh_mm("pauseSchedule.pauseAt", &v.pause_at)?;
    hh_mm("pauseSchedule.resumeAt", &v.resume_at)?;
    if v.pause_at == v.resume_at {
        // 422: a rule between two fields, which the schema cannot say.
        return Err(ApiError::unprocessable(
            "pauseSchedule.pauseAt and pauseSchedule.resumeAt must differ",
        ));
    }
    for (i, d) in v.days.iter().enumerate() {
        if !(0..=6).contains(d) {
            return Err(ApiError::invalid(format!(
                "pauseSchedule.days[{i}] must be 0 (Sunday) to 6 (Saturday), got {d}"
            )));
        }
        if v.days[..i].contains(d) {
            return Err(ApiError::invalid(format!(
                "pauseSchedule.days lists {d} twice"
            )));
        }
    }
    Ok(())
}

/// `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`: one DNS label.
pub fn custom_domain(v: &str) -> R {
    let b = v.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !b.is_empty()
        && b.len() <= 63
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter().all(|&c| alnum(c) || c == b'-');
    if !ok {
        return Err(ApiError::invalid(format!(
            "reflexdbCustomDomain must match ^[a-z0-9]([a-z0-9-]{{0,61}}[a-z0-9])?$ (lowercase letters, digits and \
             inner hyphens, at most 63 characters), got {v:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TagColor;

    #[test]
    fn rules() {
        assert!(name("name", "a").is_ok());
        assert!(name("name", &"x".repeat(100)).is_ok());
        assert!(name("name", &"x".repeat(101)).is_err());
        assert!(name("name", "").is_err());
        assert!(name("name", "  ").is_err());
        assert!(port("mysqlPort", 0).is_err());
        assert!(port("mysqlPort", 65535).is_ok());
        assert!(port("mysqlPort", 65536).is_err());
        assert!(sync_interval("syncInterval", 4).is_err());
        assert!(sync_interval("syncInterval", 5).is_ok());
        assert!(sync_interval("syncInterval", 3601).is_err());
        assert!(schemas("availableSchemas", &[]).is_err());
        assert!(schemas("availableSchemas", &["a".into(), "a".into()]).is_err());
        assert!(sync_mode_fits("syncMode", SyncMode::Binlog, Backend::Mysql).is_ok());
        assert!(sync_mode_fits("syncMode", SyncMode::Binlog, Backend::Postgres).is_err());
        assert!(sync_mode_fits("syncMode", SyncMode::Logical, Backend::Postgres).is_ok());
        assert!(sync_mode_fits("syncMode", SyncMode::Cdc, Backend::Mysql).is_err());
        assert!(sync_mode_fits("syncMode", SyncMode::Poll, Backend::Sqlite).is_ok());
        assert!(tls_fits(Some(SslMode::VerifyFull), true, Backend::Mysql).is_ok());
        assert!(tls_fits(None, false, Backend::Sqlite).is_ok());
        assert!(tls_fits(Some(SslMode::Disable), false, Backend::Sqlite).is_ok());
        assert!(matches!(
            tls_fits(Some(SslMode::Prefer), false, Backend::Sqlite),
            Err(ApiError::Unprocessable(m)) if m.contains("sslMode prefer does not apply")
        ));
        assert!(tls_fits(None, true, Backend::Sqlite).is_err());
        assert!(matches!(
            root_cert("sslRootCert", ""),
            Err(ApiError::InvalidRequest(_))
        ));
        assert!(matches!(
            root_cert("sslRootCert", &"x".repeat(ROOT_CERT_MAX + 1)),
            Err(ApiError::InvalidRequest(_))
        ));
        assert!(matches!(
            root_cert("sslRootCert", "not a certificate"),
            Err(ApiError::Unprocessable(m)) if m.starts_with("sslRootCert holds no PEM certificate")
        ));
        for d in ["a", "a1", "my-db", &"a".repeat(63)] {
            assert!(custom_domain(d).is_ok(), "{d}");
        }
        for d in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(custom_domain(d).is_err(), "{d}");
        }
        let tag = |l: &str| Tag {
            label: l.into(),
            color: TagColor::Red,
        };
        assert!(tags(&[tag("a"), tag("b")]).is_ok());
        assert!(tags(&[tag("")]).is_err());
        assert!(tags(&[tag(&"x".repeat(31))]).is_err());
        assert!(tags(&(0..6).map(|i| tag(&i.to_string())).collect::<Vec<_>>()).is_err());
        let ps = |a: &str, b: &str, d: Vec<i64>| PauseSchedule {
            pause_at: a.into(),
            resume_at: b.into(),
            days: d,
        };
        assert!(pause_schedule(&ps("22:00", "06:30", vec![1, 2])).is_ok());
        assert!(pause_schedule(&ps("24:00", "06:30", vec![])).is_err());
        assert!(pause_schedule(&ps("2:00", "06:30", vec![])).is_err());
        assert!(pause_schedule(&ps("22:00", "06:60", vec![])).is_err());
        assert!(pause_schedule(&ps("22:00", "06:00", vec![7])).is_err());
        assert!(pause_schedule(&ps("+1:00", "06:00", vec![])).is_err());
        assert!(binlog_server_id(0).is_err());
        assert!(safety_net(30).is_err());
        assert!(safety_net(0).is_ok());
    }

    #[test]
    fn control_and_bidi_characters_and_lengths() {
        for bad in [
            "a\nb",
            "a\rb",
            "a\0b",
            "a\u{202E}b",
            "a\u{2066}b",
            "\u{2069}",
            "a\tb",
            "a\u{7f}",
        ] {
            let e = name("name", bad).unwrap_err().to_string();
            assert!(
                e.starts_with("name must not contain control"),
                "{bad:?}: {e}"
            );
            assert!(host("mysqlHost", bad, Backend::Mysql).is_err(), "{bad:?}");
            assert!(user("mysqlUser", bad).is_err(), "{bad:?}");
            assert!(schema("mysqlDb", bad).is_err(), "{bad:?}");
            assert!(
                schemas("availableSchemas", &[bad.to_string()]).is_err(),
                "{bad:?}"
            );
        }
        assert!(name("name", "Grüße – 東京").is_ok());
        assert!(host("mysqlHost", &"h".repeat(255), Backend::Mysql).is_ok());
        let long = host(
            "mysqlHost",
            &format!("{}\n", "h".repeat(100_000)),
            Backend::Mysql,
        )
        .unwrap_err();
        assert!(
            long.to_string().starts_with("mysqlHost must be 1–255"),
            "{long}"
        );
        assert!(host("mysqlHost", &"/p".repeat(1000), Backend::Sqlite).is_ok());
        assert!(user("mysqlUser", &"u".repeat(129)).is_err());
        assert!(schema("mysqlDb", &"s".repeat(129)).is_err());
        assert!(password("mysqlPassword", "p\nw").is_ok());
        assert!(password("mysqlPassword", "p\0w").is_err());
        assert!(password("mysqlPassword", &"p".repeat(1025)).is_err());
    }
}
