//! The first steps of provision and rebuild: the connection test (`testing_connection`) and the
//! build (`queued` → `building`): introspect the source, apply the schema config, check it, and
//! store the manifest as the build's artifact (in the store and as
//! `DATA/builds/<build id>/manifest.json`, with the build log beside it).

use std::time::Duration;

use uuid::Uuid;

use super::bookkeeping::{commit, fail, now, set_step, InFlight, Next};
use super::error::StepResult;
use super::state::{step_delay, Runtime};
use crate::api::{Backend, SyncMode};
use crate::store::lifecycle::BuildStatus;
use crate::store::ConnectionRow;
use crate::store::StoreResult;
use crate::store::{DatabaseRow, OpStep};
use crate::Service;

const TEST_TIMEOUT: Duration = Duration::from_secs(5);
const INTROSPECT_TIMEOUT: Duration = Duration::from_secs(300);

fn stamp() -> String {
    now().format("%H:%M:%S%.3f").to_string()
}

/// Where a connection points, for messages.
fn source_text(c: &ConnectionRow) -> String {
    match c.backend {
        Backend::Sqlite => format!("SQLite file {}", c.host),
        b => format!("{b} server {}:{}", c.host, c.port.unwrap_or(0)),
    }
}

/// A source failure as a message a person can act on.
pub(super) fn actionable(err: &str, c: &ConnectionRow) -> String {
    let lower = err.to_lowercase();
    let fix = format!("PATCH /v1/connections/{}", c.id);
    if c.backend == Backend::Sqlite {
        return format!(
            "cannot read the {}: {err}. Check that the file exists and is readable by the control plane \
             ({fix} to change mysqlHost), then provision again",
            source_text(c)
        );
    }
    if lower.contains("tls to the source failed") {
        let fix_what = if lower.contains("host name mismatch") {
            "connect with a host name the certificate has (mysqlHost) or use sslMode verify-ca"
        } else if lower.contains("requires tls") {
            "set sslMode to prefer or stronger"
        } else if lower.contains("does not offer tls") {
            "enable TLS on the server or lower sslMode"
        } else if lower.contains("certificate") {
            "give the CA that signed the server's certificate in sslRootCert, or lower sslMode"
        } else {
            "check sslMode and sslRootCert"
        };
        return format!(
            "cannot set up TLS with the {}: {err}. Fix: {fix_what} ({fix}), then provision again",
            source_text(c)
        );
    }
    let login = [
        "denied",
        "authentication",
        "password",
        "rejected",
        "not permitted",
        "role",
    ]
    .iter()
    .any(|w| lower.contains(w));
    if login {
        format!(
            "the source refused the login of user {:?} on {}: {err}. Fix mysqlUser/mysqlPassword ({fix}) or the \
             user's grants on the source, then provision again",
            c.user.clone().unwrap_or_default(),
            source_text(c)
        )
    } else {
        format!(
            "cannot reach the {}: {err}. Check mysqlHost/mysqlPort ({fix}) and that the server accepts connections \
             from the control plane's host, then provision again",
            source_text(c)
        )
    }
}

/// The source parameters of `c` with a SQLite path checked against the roots (on a blocking
/// thread: it touches the file system); `Err` is the refusal as a `lastError`.
async fn checked_params(
    s: &Service,
    c: &ConnectionRow,
    db: &DatabaseRow,
) -> Result<refract_sources::SourceParams, String> {
    let (service, conn, schema) = (s.clone(), c.clone(), db.schema.clone());
    let checked =
        tokio::task::spawn_blocking(move || service.checked_source_params(&conn, Some(schema)))
            .await
            .unwrap_or_else(|e| Err(format!("checking the source failed: {e}")));
    checked.map_err(|msg| {
        format!(
            "the source may not be read: {msg}. Move the file under an allowed root (PATCH /v1/connections/{} \
             to change mysqlHost), then provision again",
            c.id
        )
    })
}

async fn connection(s: &Service, db: &DatabaseRow) -> StoreResult<Option<ConnectionRow>> {
    let (customer, id) = (db.customer_id, db.connection_id);
    s.read_store(move |tx| tx.get_connection(customer, id))
        .await
}

/// Appends to a build's log (unguarded: the log is only ever appended to).
async fn log(s: &Service, db: Uuid, build: Option<Uuid>, text: String) -> StoreResult<()> {
    let Some(build) = build else { return Ok(()) };
    s.write_store(move |tx| {
        if let Some(mut b) = tx.lifecycle().build(db, build)? {
            b.log.push_str(&text);
            tx.lifecycle().update_build(&b)?;
        }
        Ok(())
    })
    .await
}

/// `testing_connection`: log in to the source within 5 s.
pub(super) async fn test_connection(s: &Service, rt: &Runtime, f: InFlight) -> StepResult<Next> {
    let InFlight { db, o, op, guard } = f;
    step_delay().await;
    let Some(c) = connection(s, &db).await? else {
        return fail(s, rt, &db, &o, "the database's connection is gone".into()).await;
    };
    let params = match checked_params(s, &c, &db).await {
        Ok(p) => p,
        Err(msg) => return fail(s, rt, &db, &o, msg).await,
    };
    let started = std::time::Instant::now();
    let report = match tokio::time::timeout(
        TEST_TIMEOUT + Duration::from_secs(1),
        refract_sources::test_connection(&params, TEST_TIMEOUT),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => refract_sources::TestConnectionReport {
            ok: false,
            error: Some(format!("timed out after {} s", TEST_TIMEOUT.as_secs())),
            ..Default::default()
        },
    };
    let mut text = format!(
        "{} testing the connection to the {} (schema {})\n",
        stamp(),
        source_text(&c),
        db.schema
    );
    if !report.ok {
        let err = report
            .error
            .clone()
            .unwrap_or_else(|| "unknown error".into());
        // What the database's owner may see: the same redaction as `test-connection`.
        let customer = db.customer_id;
        let is_admin = s
            .read_store(move |tx| Ok(tx.get_customer(customer)?.is_some_and(|c| c.is_admin)))
            .await
            .unwrap_or(false);
        let shown = crate::redact_report(
            crate::api::TestConnectionResult {
                ok: false,
                error: Some(err.clone()),
                ..Default::default()
            },
            is_admin,
            c.backend,
            &match c.backend {
                Backend::Sqlite => c.host.clone(),
                _ => format!("{}:{}", c.host, c.port.unwrap_or(0)),
            },
        )
        .error
        .unwrap_or_else(|| "unknown error".into());
        text.push_str(&format!("{} connection test failed: {shown}\n", stamp()));
        if shown != err {
            tracing::info!(database = %db.id, error = %err, "connection test failed");
        }
        log(s, db.id, op.build_id, text).await?;
        return fail(s, rt, &db, &o, actionable(&shown, &c)).await;
    }
    text.push_str(&format!(
        "{} connection ok ({} ms)\n",
        stamp(),
        started.elapsed().as_millis()
    ));
    // A CDC mode whose prerequisites are missing fails the provision now, with each missing
    // setting or grant: a silent fallback to poll would look healthy and be minutes stale.
    let issues = match db.sync_mode {
        SyncMode::Binlog => report
            .binlog
            .as_ref()
            .filter(|b| !b.ready)
            .map(|b| b.issues.join("; ")),
        SyncMode::Logical => report
            .logical
            .as_ref()
            .filter(|l| !l.ready)
            .map(|l| l.issues.join("; ")),
        _ => None,
    };
    if let Some(issues) = issues {
        let msg = format!(
            "{} mode cannot run on the {}: {issues}. Fix the source and provision again, or use poll mode \
             (PATCH /v1/databases/{} {{\"syncMode\": \"poll\"}})",
            db.sync_mode,
            source_text(&c),
            db.id
        );
        text.push_str(&format!("{} {msg}\n", stamp()));
        log(s, db.id, op.build_id, text).await?;
        return fail(s, rt, &db, &o, msg).await;
    }
    let sync_used = db.sync_mode.as_str().to_string();
    let source_server_id = report.binlog.as_ref().and_then(|b| b.server_id);
    let (host, port) = (c.host.clone(), c.port);
    let build = op.build_id;
    commit(s, db.id, guard, move |tx, d, _, _| {
        let mut text = text;
        // Binlog mode needs a replica server id unique among the source's replicas: one is
        // picked once, stored with the database (shown, kept across rebuilds).
        if d.sync_mode == SyncMode::Binlog && d.binlog_server_id.is_none() {
            let id = crate::service::pick_server_id(tx, d.id, &host, port, source_server_id)?;
            d.binlog_server_id = Some(id);
            text.push_str(&format!(
                "{} binlogServerId {id} assigned (unique among this control plane's databases on {host}:{})\n",
                stamp(),
                port.unwrap_or(0)
            ));
        }
        if let Some(b) = build {
            if let Some(mut rec) = tx.lifecycle().build(d.id, b)? {
                rec.log.push_str(&text);
                rec.log
                    .push_str(&format!("{} waiting for a build slot\n", stamp()));
                rec.sync_mode_used = Some(sync_used);
                tx.lifecycle().update_build(&rec)?;
            }
        }
        d.status = crate::api::Status::Queued;
        set_step(d, OpStep::WaitBuildSlot);
        Ok(())
    })
    .await?;
    Ok(Next::Again)
}

/// `queued` → `building` → `deploying`: at most [`super::state::BUILD_SLOTS`] at once.
pub(super) async fn build(s: &Service, rt: &Runtime, f: InFlight) -> StepResult<Next> {
    let InFlight {
        mut db,
        o,
        op,
        mut guard,
    } = f;
    let Some(build_id) = op.build_id else {
        return fail(s, rt, &db, &o, "the operation has no build".into()).await;
    };
    if db.status == crate::api::Status::Queued {
        step_delay().await;
    }
    let Ok(_slot) = s.lifecycle.build_slots().try_acquire_owned() else {
        return Ok(Next::Idle); // stays queued; retried on the next tick
    };
    if db.status == crate::api::Status::Queued {
        let started = commit(s, db.id, guard, move |tx, d, _, _| {
            if let Some(mut b) = tx.lifecycle().build(d.id, build_id)? {
                b.status = BuildStatus::InProgress;
                b.started_at = Some(now());
                b.log.push_str(&format!("{} building\n", stamp()));
                tx.lifecycle().update_build(&b)?;
            }
            d.status = crate::api::Status::Building;
            set_step(d, OpStep::Build);
            Ok(())
        })
        .await?;
        if started.is_none() {
            return Ok(Next::Again);
        }
        db.status = crate::api::Status::Building;
        guard.status = db.status;
    } else {
        // `building` after a control-plane restart: the build runs again from the start.
        log(
            s,
            db.id,
            Some(build_id),
            format!(
                "{} building (again, after a control-plane restart)\n",
                stamp()
            ),
        )
        .await?;
    }
    step_delay().await;
    let Some(c) = connection(s, &db).await? else {
        return fail(s, rt, &db, &o, "the database's connection is gone".into()).await;
    };
    let config_text = db.internal.schema_config.clone();
    let config = match &config_text {
        Some(text) => match refract_schema::parse_schema_config(text) {
            Ok(cfg) => Some(cfg),
            Err(errors) => {
                let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                let msg = format!("the schema config is invalid: {}", list.join("; "));
                return fail(s, rt, &db, &o, msg).await;
            }
        },
        None => None,
    };
    // Checked again here, right before introspection: a SQLite path valid when it was registered
    // may be a symlink to elsewhere now.
    let mut params = match checked_params(s, &c, &db).await {
        Ok(p) => p,
        Err(msg) => {
            log(s, db.id, Some(build_id), format!("{} {msg}\n", stamp())).await?;
            return fail(s, rt, &db, &o, msg).await;
        }
    };
    // The engine reads a SQLite file as its own user (not root): say so now, not in a crash loop.
    if c.backend == Backend::Sqlite {
        let path = std::path::Path::new(&params.host);
        if let Some(reason) = refract_runtime::user::unreadable_reason(path, &rt.engine_user) {
            let msg = format!(
                "engines run as user {} and cannot read the SQLite file {}: {reason}. Make the file \
                 readable by that user (e.g. chown {} FILE, or chmod o+r FILE and o+x on its \
                 directories), then provision again",
                rt.engine_user.name,
                params.host,
                rt.engine_user.name
            );
            return fail(s, rt, &db, &o, msg).await;
        }
    }
    params.pg_schema = config.as_ref().and_then(|c| c.pg_schema.clone());
    let t0 = std::time::Instant::now();
    let schema = match tokio::time::timeout(
        INTROSPECT_TIMEOUT,
        refract_sources::introspect(&params),
    )
    .await
    {
        Ok(Ok(schema)) => schema,
        Ok(Err(e)) => return fail(s, rt, &db, &o, actionable(&e.to_string(), &c)).await,
        Err(_) => {
            return fail(
                s,
                rt,
                &db,
                &o,
                "introspecting the source took more than 5 minutes".into(),
            )
            .await
        }
    };
    let mut text = format!(
        "{} introspected {} tables in {} ms\n",
        stamp(),
        schema.tables.len(),
        t0.elapsed().as_millis()
    );
    let manifest = match refract_schema::build_manifest(&schema, config.as_ref()) {
        Ok(m) => m,
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            log(s, db.id, Some(build_id), text).await?;
            let msg = format!(
                "the schema config does not fit the source: {}",
                list.join("; ")
            );
            return fail(s, rt, &db, &o, msg).await;
        }
    };
    let columns: usize = manifest.tables.iter().map(|t| t.columns.len()).sum();
    let relations: usize = manifest.tables.iter().map(|t| t.relations.len()).sum();
    text.push_str(&format!(
        "{} manifest: {} tables, {columns} columns, {relations} relations, {} warnings{}\n",
        stamp(),
        manifest.tables.len(),
        manifest.warnings.len(),
        if config_text.is_some() {
            " (schema config applied)"
        } else {
            " (default config: every table)"
        }
    ));
    for w in &manifest.warnings {
        text.push_str(&format!("{} warning: {w}\n", stamp()));
    }
    if manifest.tables.is_empty() {
        log(s, db.id, Some(build_id), text).await?;
        let msg = format!("the source schema {:?} has no tables to expose", db.schema);
        return fail(s, rt, &db, &o, msg).await;
    }
    let json = match serde_json::to_string_pretty(&manifest) {
        Ok(j) => j,
        Err(e) => return fail(s, rt, &db, &o, format!("cannot encode the manifest: {e}")).await,
    };
    // The artifact on disk, for operators (the store holds the same text).
    let dir = rt.data_dir.join("builds").join(build_id.to_string());
    if let Err(e) =
        std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(dir.join("manifest.json"), &json))
    {
        tracing::warn!(build = %build_id, error = %e, "cannot write the manifest artifact file");
    }
    let compute = db
        .build_compute_override
        .map(|b| b.as_str().to_string())
        .unwrap_or_else(|| "small".into());
    let data_dir = rt.data_dir.clone();
    commit(s, db.id, guard, move |tx, d, _, note| {
        if let Some(mut b) = tx.lifecycle().build(d.id, build_id)? {
            let t = now();
            let secs = b
                .started_at
                .map(|st| (t - st).num_milliseconds() as f64 / 1000.0)
                .unwrap_or(0.0);
            b.log.push_str(&text);
            b.log
                .push_str(&format!("{} build succeeded in {secs:.2} s\n", stamp()));
            metrics::counter!("refract_builds_total", "result" => "succeeded").increment(1);
            metrics::histogram!("refract_build_duration_seconds").record(secs);
            b.status = BuildStatus::Succeeded;
            b.finished_at = Some(t);
            b.schema_config = config_text;
            b.compute_type_used = Some(compute);
            tx.lifecycle().update_build(&b)?;
            tx.lifecycle().set_build_manifest(build_id, &json)?;
            let _ = std::fs::write(
                data_dir
                    .join("builds")
                    .join(build_id.to_string())
                    .join("build.log"),
                &b.log,
            );
        }
        d.status = crate::api::Status::Deploying;
        set_step(d, OpStep::StartEngine);
        note.message = format!("build {build_id} succeeded");
        Ok(())
    })
    .await?;
    Ok(Next::Again)
}
