//! Starting an engine: its client port (picked once per database), whether another engine of the
//! database serves (a takeover), and the launch itself (secrets as 0600 files).

use std::collections::HashSet;

use refract_runtime::RuntimeError;
use uuid::Uuid;

use super::bookkeeping::{admin_token, commit, Guard};
use super::engine;
use super::error::{LaunchError, LifecycleError, StepResult};
use super::state::Runtime;
use crate::api::RuntimeSettings;
use crate::api::RuntimeSettingsExt;
use crate::store::lifecycle::OpsRecord;
use crate::store::DatabaseRow;
use crate::store::StoreResult;
use crate::Service;

/// The database's client-facing engine port: the one recorded, or (first deploy) a free one,
/// recorded before any engine uses it. `Err` when none can be found.
/// `prefer`: a port to take when no database has it (the port of an engine started before
/// stable endpoints).
pub(super) async fn engine_port(
    s: &Service,
    db: &DatabaseRow,
    o: &OpsRecord,
    prefer: Option<u16>,
) -> StepResult<Result<u16, LaunchError>> {
    // Engines in pods of their own all listen on the runtime's one client port.
    if let refract_runtime::Network::Cluster { port, .. } = s
        .lifecycle
        .runtime()
        .map(|rt| rt.driver.network())
        .unwrap_or(refract_runtime::Network::Loopback)
    {
        return Ok(Ok(port));
    }
    if let Some(p) = o.engine_port {
        return Ok(Ok(p));
    }
    let taken: HashSet<u16> = s
        .read_store(|tx| tx.lifecycle().engine_ports())
        .await?
        .into_iter()
        .collect();
    let found = match prefer {
        Some(p) if p != 0 && !taken.contains(&p) => Some(p),
        _ => refract_runtime::pick_port(&taken),
    };
    let Some(port) = found else {
        return Ok(Err(LaunchError::NoFreePort {
            first: refract_runtime::STABLE_PORTS.start,
            last: refract_runtime::STABLE_PORTS.end - 1,
        }));
    };
    let guard = Guard::of(db, o);
    // No event of its own: the cutover's "engine healthy at URL" names it.
    let set = commit(s, db.id, guard, move |_, _d, o, _| {
        o.engine_port = Some(port);
        Ok(())
    })
    .await?;
    match set {
        Some(()) => Ok(Ok(port)),
        // Lost a race with an action: the next step reads the record again.
        None => Err(LifecycleError::Raced),
    }
}

/// The URL clients use for `db`'s engines: the runtime's stable address of the database (a
/// Kubernetes Service), else `http://127.0.0.1:PORT` of its recorded port.
pub(super) fn public_endpoint(rt: &Runtime, db: &DatabaseRow, o: &OpsRecord) -> Option<String> {
    rt.driver
        .group_endpoint(&db.id.to_string())
        .or_else(|| o.engine_port.map(engine::public_url))
}

/// Whether an engine of `database` other than `except` runs (a live instance row the driver
/// reports alive).
pub(super) async fn any_alive(
    s: &Service,
    rt: &Runtime,
    database: Uuid,
    except: Uuid,
) -> StoreResult<bool> {
    let live = s
        .read_store(move |tx| tx.lifecycle().live_instances(Some(database)))
        .await?;
    for i in live.iter().filter(|i| i.id != except) {
        if let Ok(st) = rt.driver.status(&i.runtime_id).await {
            if st.is_alive() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Starts engine `instance` running `build` with `settings` (secrets as 0600 files), listening
/// for clients on `port` (beside a live engine of the database when `takeover`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn launch(
    s: &Service,
    rt: &Runtime,
    db: &DatabaseRow,
    instance: Uuid,
    build: Uuid,
    settings: &RuntimeSettings,
    port: u16,
    takeover: bool,
) -> Result<(), LaunchError> {
    let (dbid, customer, conn_id) = (db.id, db.customer_id, db.connection_id);
    let found = s
        .read_store(move |tx| {
            let c = tx.get_connection(customer, conn_id)?;
            let b = tx.lifecycle().build(dbid, build)?;
            let m = tx.lifecycle().build_manifest(build)?;
            Ok((c, b, m))
        })
        .await
        .map_err(LaunchError::Records)?;
    let (Some(conn), Some(_build), Some(manifest)) = found else {
        return Err(LaunchError::NoManifest(build));
    };
    // The engine opens the SQLite file itself: give it the path checked now, canonical.
    let mut conn = conn;
    if conn.backend == crate::api::Backend::Sqlite {
        let (service, c) = (s.clone(), conn.clone());
        let params = tokio::task::spawn_blocking(move || service.checked_source_params(&c, None))
            .await
            .map_err(|e| LaunchError::Check(e.to_string()))?
            .map_err(LaunchError::Unreadable)?;
        conn.host = params.host;
    }
    // A secret that cannot be read fails the start with the reason, rather than starting an
    // engine without its password.
    let secret = |name: Option<&str>| -> Result<Option<String>, LaunchError> {
        match name {
            Some(n) => s
                .secrets
                .try_get(n)
                .map_err(|e| LaunchError::Secret(format!("{e:#}"))),
            None => Ok(None),
        }
    };
    let password = secret(conn.password_secret.as_deref())?;
    let ssl_root_cert = secret(conn.ssl_root_cert_secret.as_deref())?;
    let token = admin_token(s, db.id).map_err(LaunchError::AdminToken)?;
    let (keys, _) = super::querykeys::write_keys_file(s, rt, db.id)
        .await
        .map_err(|e| LaunchError::KeysFile(e.to_string()))?;
    // The mode of the settings being deployed, not the build's: `reconfigure` applies a changed
    // sync mode (a CDC mode the source cannot serve fails the deploy fast, see `deploy`).
    let sync_mode = settings.sync_mode.as_str().to_string();
    let spec = engine::spec(&engine::Launch {
        instance,
        program: &rt.engine_binary,
        database: db,
        connection: &conn,
        password,
        ssl_root_cert,
        manifest: &manifest,
        settings,
        sync_mode: &sync_mode,
        admin_token: &token,
        keys_file: &keys,
        port,
        takeover,
        network: rt.driver.network(),
        replicas: settings.replica_count(),
    });
    match rt.driver.start(&spec).await {
        Ok(_) | Err(RuntimeError::AlreadyRunning(_)) => Ok(()),
        Err(e) => Err(LaunchError::Start(e)),
    }
}
