//! TLS to sources against the TLS-only servers of `scripts/testenv`
//! (`REFRACT_TEST_MYSQL_TLS_URL`, `REFRACT_TEST_PG_TLS_URL`, `REFRACT_TEST_TLS_CA`,
//! `REFRACT_TEST_TLS_OTHER_CA`, `REFRACT_TEST_TLS_MISMATCH_HOST`) and the plain ones: every
//! `sslMode`, a wrong CA, a host name the certificate lacks, and a server without TLS.

use std::time::Duration;

use refract_schema::Backend;
use refract_sources::{test_connection, SourceParams, SourceTls, SslMode, TestConnectionReport};

use crate::common::{env_url, ServerUrl};

const TIMEOUT: Duration = Duration::from_secs(10);

fn pem(var: &str) -> String {
    let path = env_url(var);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{var}={path}: {e}"))
}

fn tls_params(backend: Backend, mode: SslMode, ca: Option<&str>) -> SourceParams {
    let var = match backend {
        Backend::Mysql => "REFRACT_TEST_MYSQL_TLS_URL",
        _ => "REFRACT_TEST_PG_TLS_URL",
    };
    let mut p = ServerUrl::parse(&env_url(var)).source_params(backend, None);
    p.tls = SourceTls {
        mode,
        root_cert: ca.map(pem),
    };
    p
}

async fn check(p: &SourceParams) -> TestConnectionReport {
    test_connection(p, TIMEOUT).await
}

fn assert_tls_ok(r: &TestConnectionReport, what: &str) {
    assert!(r.ok, "{what}: {:?}", r.error);
    assert_eq!(r.tls, Some(true), "{what}: {r:?}");
    let v = r.tls_version.as_deref().unwrap_or_default();
    assert!(v.starts_with("TLSv1."), "{what}: TLS version {v:?}");
}

fn assert_fails(r: &TestConnectionReport, what: &str, needles: &[&str]) {
    assert!(!r.ok, "{what}: connected but should not have");
    let e = r.error.clone().unwrap_or_default();
    for n in needles {
        assert!(e.contains(n), "{what}: {e:?} should mention {n:?}");
    }
    assert!(!e.contains("refract-test-pw"), "{what}: password in {e:?}");
}

async fn matrix(backend: Backend) {
    let b = backend.as_str();
    let ca = Some("REFRACT_TEST_TLS_CA");
    let other = Some("REFRACT_TEST_TLS_OTHER_CA");

    for mode in [SslMode::Prefer, SslMode::Require] {
        assert_tls_ok(
            &check(&tls_params(backend, mode, None)).await,
            &format!("{b} {mode}"),
        );
    }
    for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
        assert_tls_ok(
            &check(&tls_params(backend, mode, ca)).await,
            &format!("{b} {mode} with the CA"),
        );
    }

    // A CA that did not sign the server's certificate; none at all (the built-in web roots).
    for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
        assert_fails(
            &check(&tls_params(backend, mode, other)).await,
            &format!("{b} {mode} with another CA"),
            &[
                "TLS to the source failed",
                "not signed by the CA certificate given in sslRootCert",
            ],
        );
    }
    assert_fails(
        &check(&tls_params(backend, SslMode::VerifyFull, None)).await,
        &format!("{b} verify-full without a CA"),
        &["not signed by any CA of the built-in public roots"],
    );

    // A host name the certificate does not have: verify-ca does not look, verify-full does.
    let mismatch = env_url("REFRACT_TEST_TLS_MISMATCH_HOST");
    let mut p = tls_params(backend, SslMode::VerifyCa, ca);
    p.host = mismatch.clone();
    assert_tls_ok(&check(&p).await, &format!("{b} verify-ca via {mismatch}"));
    p.tls.mode = SslMode::VerifyFull;
    assert_fails(
        &check(&p).await,
        &format!("{b} verify-full via {mismatch}"),
        &["host name mismatch", "localhost", &format!("{mismatch:?}")],
    );

    // Plain text is refused by the server.
    assert_fails(
        &check(&tls_params(backend, SslMode::Disable, None)).await,
        &format!("{b} disable"),
        &[
            "TLS to the source failed",
            "the server requires TLS",
            "set sslMode to prefer",
        ],
    );

    // Introspection over TLS too.
    let mut p = tls_params(backend, SslMode::VerifyFull, ca);
    p.database = Some(match backend {
        Backend::Mysql => "mysql".into(),
        _ => "postgres".into(),
    });
    refract_sources::introspect(&p)
        .await
        .unwrap_or_else(|e| panic!("{b} introspect over TLS: {e}"));
}

#[tokio::test]
async fn mysql_tls_modes_against_a_tls_only_server() {
    matrix(Backend::Mysql).await;
}

#[tokio::test]
async fn pg_tls_modes_against_a_tls_only_server() {
    matrix(Backend::Postgres).await;
}

/// The plain test servers offer no TLS: `prefer` goes on without, `require` says why not.
#[tokio::test]
async fn servers_without_tls() {
    for (backend, var) in [
        (Backend::Mysql, "REFRACT_TEST_MYSQL_URL"),
        (Backend::Postgres, "REFRACT_TEST_PG_URL"),
    ] {
        let b = backend.as_str();
        let mut p = ServerUrl::parse(&env_url(var)).source_params(backend, None);
        p.tls.mode = SslMode::Prefer;
        let r = check(&p).await;
        assert!(r.ok, "{b} prefer: {:?}", r.error);
        assert_eq!(r.tls, Some(false), "{b} prefer: {r:?}");
        p.tls.mode = SslMode::Disable;
        let r = check(&p).await;
        assert!(r.ok && r.tls == Some(false), "{b} disable: {r:?}");
        p.tls.mode = SslMode::Require;
        assert_fails(
            &check(&p).await,
            &format!("{b} require"),
            &["does not offer TLS"],
        );
    }
}
