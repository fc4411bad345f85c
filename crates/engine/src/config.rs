//! The engine config file: its types live in `refract_protocol::engine_config` (the control
//! plane writes the file the engine reads); here is what only the engine does with it — read the
//! source password and build the source crate's connection parameters.

use anyhow::{bail, Context};
use refract_schema::Backend;
use refract_sources::SourceParams;

pub use refract_protocol::engine_config::{
    EngineConfig, ReconnectMode, SourceConfig, SyncConfig, SyncMode,
};

/// Read the source's password (from its file or environment variable) and build the connection
/// parameters the source crate takes.
pub fn source_params(source: &SourceConfig) -> anyhow::Result<SourceParams> {
    let s = source;
    let password = if let Some(file) = &s.password_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading source.password_file {}", file.display()))?;
        Some(text.trim_end_matches(['\n', '\r']).to_string())
    } else if let Some(var) = &s.password_env {
        match std::env::var(var) {
            Ok(v) => Some(v),
            Err(_) => bail!("source.password_env: environment variable {var} is not set"),
        }
    } else {
        None
    };
    let (host, port, database) = match s.backend {
        Backend::Sqlite => (
            s.sqlite_path()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            0,
            Some(s.database.clone().unwrap_or_else(|| "main".to_string())),
        ),
        Backend::Postgres => (s.host.clone(), s.port.unwrap_or(5432), s.database.clone()),
        _ => (s.host.clone(), s.port.unwrap_or(3306), s.database.clone()),
    };
    let root_cert = match &s.ssl_root_cert_file {
        Some(file) => {
            let pem = std::fs::read_to_string(file)
                .with_context(|| format!("reading source.ssl_root_cert_file {}", file.display()))?;
            refract_sources::parse_root_cert(&pem).map_err(|e| {
                anyhow::anyhow!("source.ssl_root_cert_file {}: {e}", file.display())
            })?;
            Some(pem)
        }
        None => None,
    };
    let tls = match s.backend {
        Backend::Sqlite => refract_sources::SourceTls::disabled(),
        _ => refract_sources::SourceTls {
            mode: s.ssl_mode.unwrap_or_default(),
            root_cert,
        },
    };
    Ok(SourceParams {
        backend: s.backend,
        host,
        port,
        user: s.user.clone(),
        password,
        database,
        pg_schema: s.pg_schema.clone(),
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example() {
        let c = EngineConfig::parse(
            "listen: 127.0.0.1:0\n\
             source: {backend: mysql, host: 127.0.0.1, port: 3306, user: reader, password_file: /p, database: shop}\n\
             manifest: /path/manifest.json\n\
             sync: {mode: binlog, interval: 30, safety_net: 3600, reconnect: full, server_id: 1001}\n\
             memory_cap_mb: 409\nlog_level: info\nkeys_file: /k.json\nadmin_token_file: /a\n",
        )
        .unwrap();
        assert_eq!(c.sync.mode, SyncMode::Binlog);
        assert_eq!(c.sync.server_id, Some(1001));
        assert_eq!(c.memory_cap_mb, Some(409));
        assert_eq!(c.default_limit, 10_000);
        assert_eq!(c.load_parallelism, 4);
        assert_eq!(c.source.port, Some(3306));
    }

    #[test]
    fn tls_settings_and_the_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = EngineConfig::parse(
            "source: {backend: mysql, host: db, user: u, database: d, ssl_mode: verify-full, ssl_root_cert_file: ca.pem}\n",
        )
        .unwrap();
        c.resolve_paths(dir.path());
        assert_eq!(
            c.source.ssl_root_cert_file.as_deref(),
            Some(dir.path().join("ca.pem").as_path())
        );
        // A missing or broken file is an error that names it.
        let e = source_params(&c.source).unwrap_err().to_string();
        assert!(e.contains("ssl_root_cert_file"), "{e}");
        std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
        let e = format!("{:#}", source_params(&c.source).unwrap_err());
        assert!(e.contains("no PEM certificate"), "{e}");
        // No ssl_mode: libpq's default, prefer; unknown names are refused.
        let c =
            EngineConfig::parse("source: {backend: postgres, host: db, user: u, database: d}\n")
                .unwrap();
        let p = source_params(&c.source).unwrap();
        assert_eq!(p.tls.mode, refract_sources::SslMode::Prefer);
        assert!(p.tls.root_cert.is_none());
        assert!(EngineConfig::parse(
            "source: {backend: postgres, host: db, user: u, database: d, ssl_mode: verify_full}\n"
        )
        .is_err());
    }

    #[test]
    fn json_and_defaults() {
        let c = EngineConfig::parse(r#"{"source": {"backend": "sqlite", "path": "db.sqlite"}}"#)
            .unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.sync.mode, SyncMode::Poll);
        assert_eq!(c.sync.interval, 30);
        assert_eq!(c.sync.reconnect, ReconnectMode::Full);
        assert!(c.keys_file.is_none());
        let p = source_params(&c.source).unwrap();
        assert_eq!(p.host, "db.sqlite");
        assert_eq!(p.database.as_deref(), Some("main"));
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let e = EngineConfig::parse("source: {backend: sqlite, path: x}\nlisten_port: 3\n")
            .unwrap_err();
        assert!(format!("{e:#}").contains("listen_port"), "{e:#}");
        let e =
            EngineConfig::parse("source: {backend: sqlite, path: x, pasword: y}\n").unwrap_err();
        assert!(format!("{e:#}").contains("pasword"), "{e:#}");
        let e = EngineConfig::parse("source: {backend: sqlite, path: x}\nsync: {mode: push}\n")
            .unwrap_err();
        assert!(format!("{e:#}").contains("push"), "{e:#}");
    }

    #[test]
    fn checks_values() {
        for (text, needle) in [
            (
                "source: {backend: sqlite, path: x}\nsync: {interval: 0}\n",
                "interval",
            ),
            (
                "source: {backend: mysql, host: h, database: d}\n",
                "source.user",
            ),
            (
                "source: {backend: postgres, host: h, user: u}\n",
                "source.database",
            ),
            ("source: {backend: sqlite}\n", "path"),
            (
                "source: {backend: sqlite, path: x, password_file: a, password_env: B}\n",
                "either",
            ),
            (
                "source: {backend: sqlite, path: x}\nlog_level: loud\n",
                "log_level",
            ),
            (
                "source: {backend: sqlite, path: x}\nmemory_cap_mb: 0\n",
                "memory_cap_mb",
            ),
        ] {
            let e = EngineConfig::parse(text).unwrap_err();
            assert!(format!("{e:#}").contains(needle), "{text}: {e:#}");
        }
    }

    #[test]
    fn password_from_file_or_env_and_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        std::fs::write(
            dir.path().join("engine.yaml"),
            "source: {backend: postgres, host: db, user: u, database: d, password_file: pw}\nkeys_file: keys.json\n",
        )
        .unwrap();
        let c = EngineConfig::load(&dir.path().join("engine.yaml")).unwrap();
        assert_eq!(
            c.keys_file.as_deref(),
            Some(dir.path().join("keys.json").as_path())
        );
        let p = source_params(&c.source).unwrap();
        assert_eq!(p.password.as_deref(), Some("s3cret"));
        assert_eq!(p.port, 5432);
        assert!(!format!("{p:?}").contains("s3cret"));

        let mut c = c;
        c.source.password_file = None;
        c.source.password_env = Some("REFRACT_ENGINE_TEST_UNSET_VAR".into());
        assert!(source_params(&c.source).is_err());
    }
}
