//! [`LifecycleTx`] for the SQLite store (a child of `sqlite` so that it shares its row helpers).

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};
use uuid::Uuid;

use super::{
    database_row, get_enum, get_enum_opt, get_ts, get_ts_opt, get_uuid, json, ts, ts_opt, SqlTx,
    DATABASE_SELECT,
};
use crate::api::*;
use crate::store::lifecycle::*;
use crate::store::{Event, StoreResult};

const BUILD_COLS: &str =
    "id, database_id, status, manifest IS NOT NULL, schema_config, sync_mode_used, \
     compute_type_used, log, error, created_at, started_at, finished_at";

fn build_row(r: &Row) -> rusqlite::Result<BuildRecord> {
    Ok(BuildRecord {
        id: get_uuid(r, 0)?,
        database_id: get_uuid(r, 1)?,
        status: get_enum(r, 2, BuildStatus::parse)?,
        has_manifest: r.get(3)?,
        schema_config: r.get(4)?,
        sync_mode_used: r.get(5)?,
        compute_type_used: r.get(6)?,
        log: r.get(7)?,
        error: r.get(8)?,
        created_at: get_ts(r, 9)?,
        started_at: get_ts_opt(r, 10)?,
        finished_at: get_ts_opt(r, 11)?,
    })
}

const INSTANCE_COLS: &str =
    "id, database_id, build_id, runtime_id, endpoint_url, health_status, snapshot_age_ms, \
     swap_count, row_counts, last_health_check, created_at, updated_at, stopped_at, control_url, replication";

fn instance_row(r: &Row) -> rusqlite::Result<InstanceRecord> {
    let row_counts: Option<String> = r.get(8)?;
    Ok(InstanceRecord {
        id: get_uuid(r, 0)?,
        database_id: get_uuid(r, 1)?,
        build_id: get_uuid(r, 2)?,
        runtime_id: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
        endpoint_url: r.get(4)?,
        health_status: get_enum_opt(r, 5, HealthStatus::parse)?,
        snapshot_age_ms: r.get(6)?,
        swap_count: r.get(7)?,
        row_counts: row_counts.and_then(|s| serde_json::from_str(&s).ok()),
        last_health_check: get_ts_opt(r, 9)?,
        created_at: get_ts(r, 10)?,
        updated_at: get_ts(r, 11)?,
        stopped_at: get_ts_opt(r, 12)?,
        control_url: r.get(13)?,
        replication: r
            .get::<_, Option<String>>(14)?
            .and_then(|s| serde_json::from_str(&s).ok()),
    })
}

const KEY_COLS: &str =
    "id, database_id, key_id, secret_sha256, name, expires_at, created_at, revoked_at";

fn key_row(r: &Row) -> rusqlite::Result<QueryKeyRecord> {
    Ok(QueryKeyRecord {
        id: get_uuid(r, 0)?,
        database_id: get_uuid(r, 1)?,
        key_id: r.get(2)?,
        secret_sha256: r.get(3)?,
        name: r.get(4)?,
        expires_at: get_ts_opt(r, 5)?,
        created_at: get_ts(r, 6)?,
        revoked_at: get_ts_opt(r, 7)?,
    })
}

fn ops_row(r: &Row) -> rusqlite::Result<OpsRecord> {
    let op: Option<String> = r.get(1)?;
    let crash: String = r.get(2)?;
    let cleanup: String = r.get(3)?;
    // A row this code cannot read back (written by a newer version) must not stop the
    // reconciler: an unreadable operation is treated as none and rolled back.
    Ok(OpsRecord {
        database_id: get_uuid(r, 0)?,
        op: op.and_then(|s| serde_json::from_str(&s).ok()),
        crash: serde_json::from_str(&crash).unwrap_or_default(),
        cleanup: serde_json::from_str(&cleanup).unwrap_or_default(),
        schedule_mark: r.get(4)?,
        engine_port: r
            .get::<_, Option<i64>>(5)?
            .and_then(|p| u16::try_from(p).ok()),
    })
}

impl LifecycleTx for SqlTx<'_> {
    fn database(&self, id: Uuid) -> StoreResult<Option<Database>> {
        let sql = format!("{DATABASE_SELECT} WHERE d.id = ?1 AND d.deleted_at IS NULL");
        let mut stmt = self.0.prepare_cached(&sql)?;
        Ok(stmt.query_row([id.to_string()], database_row).optional()?)
    }

    fn ops(&self, database: Uuid) -> StoreResult<OpsRecord> {
        let mut stmt = self.0.prepare_cached(
            "SELECT database_id, op, crash, cleanup, schedule_mark, engine_port FROM database_ops WHERE database_id = ?1",
        )?;
        let found = stmt.query_row([database.to_string()], ops_row).optional()?;
        Ok(found.unwrap_or(OpsRecord {
            database_id: database,
            ..Default::default()
        }))
    }

    fn put_ops(&self, o: &OpsRecord) -> StoreResult<()> {
        self.0.execute(
            "INSERT INTO database_ops (database_id, op, crash, cleanup, schedule_mark, updated_at, engine_port) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(database_id) DO UPDATE SET op = ?2, crash = ?3, \
             cleanup = ?4, schedule_mark = ?5, updated_at = ?6, engine_port = COALESCE(?7, engine_port)",
            params![
                o.database_id.to_string(),
                o.op.as_ref().map(json),
                json(&o.crash),
                json(&o.cleanup),
                o.schedule_mark,
                ts(&Utc::now()),
                o.engine_port.map(i64::from)
            ],
        )?;
        Ok(())
    }

    fn engine_ports(&self) -> StoreResult<Vec<u16>> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT engine_port FROM database_ops WHERE engine_port IS NOT NULL")?;
        let rows = stmt
            .query_map([], |r| r.get::<_, i64>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|p| u16::try_from(p).ok())
            .collect())
    }

    fn all_ops(&self) -> StoreResult<Vec<OpsRecord>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT o.database_id, o.op, o.crash, o.cleanup, o.schedule_mark, o.engine_port FROM database_ops o \
             JOIN databases d ON d.id = o.database_id WHERE d.deleted_at IS NULL",
        )?;
        let rows = stmt
            .query_map([], ops_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn insert_build(&self, b: &BuildRecord) -> StoreResult<()> {
        self.0.execute(
            "INSERT INTO builds (id, database_id, status, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![
                b.id.to_string(),
                b.database_id.to_string(),
                b.status.as_str(),
                ts(&b.created_at)
            ],
        )?;
        self.update_build(b)
    }

    fn update_build(&self, b: &BuildRecord) -> StoreResult<()> {
        self.0.execute(
            "UPDATE builds SET status = ?2, schema_config = ?3, sync_mode_used = ?4, compute_type_used = ?5, \
             log = ?6, error = ?7, started_at = ?8, finished_at = ?9 WHERE id = ?1",
            params![
                b.id.to_string(),
                b.status.as_str(),
                b.schema_config,
                b.sync_mode_used,
                b.compute_type_used,
                b.log,
                b.error,
                ts_opt(&b.started_at),
                ts_opt(&b.finished_at)
            ],
        )?;
        Ok(())
    }

    fn set_build_manifest(&self, build: Uuid, manifest: &str) -> StoreResult<()> {
        self.0.execute(
            "UPDATE builds SET manifest = ?2 WHERE id = ?1",
            params![build.to_string(), manifest],
        )?;
        Ok(())
    }

    fn build(&self, database: Uuid, id: Uuid) -> StoreResult<Option<BuildRecord>> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT {BUILD_COLS} FROM builds WHERE id = ?1 AND database_id = ?2"
        ))?;
        Ok(stmt
            .query_row([id.to_string(), database.to_string()], build_row)
            .optional()?)
    }

    fn build_manifest(&self, build: Uuid) -> StoreResult<Option<String>> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT manifest FROM builds WHERE id = ?1")?;
        Ok(stmt
            .query_row([build.to_string()], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }

    fn builds(&self, database: Uuid) -> StoreResult<Vec<BuildRecord>> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT {BUILD_COLS} FROM builds WHERE database_id = ?1 ORDER BY created_at DESC, id DESC"
        ))?;
        let rows = stmt
            .query_map([database.to_string()], build_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn latest_deployable_build(&self, database: Uuid) -> StoreResult<Option<Uuid>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT id FROM builds WHERE database_id = ?1 AND manifest IS NOT NULL ORDER BY created_at DESC LIMIT 1",
        )?;
        Ok(stmt
            .query_row([database.to_string()], |r| get_uuid(r, 0))
            .optional()?)
    }

    fn insert_instance(&self, i: &InstanceRecord) -> StoreResult<()> {
        self.0.execute(
            "INSERT INTO instances (id, database_id, build_id, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                i.id.to_string(),
                i.database_id.to_string(),
                i.build_id.to_string(),
                ts(&i.created_at),
                ts(&i.updated_at)
            ],
        )?;
        self.update_instance(i)
    }

    fn update_instance(&self, i: &InstanceRecord) -> StoreResult<()> {
        self.0.execute(
            "UPDATE instances SET runtime_id = ?2, endpoint_url = ?3, health_status = ?4, snapshot_age_ms = ?5, \
             swap_count = ?6, row_counts = ?7, last_health_check = ?8, updated_at = ?9, stopped_at = ?10, \
             control_url = ?11, replication = ?12 WHERE id = ?1",
            params![
                i.id.to_string(),
                i.runtime_id,
                i.endpoint_url,
                i.health_status.map(|h| h.as_str()),
                i.snapshot_age_ms,
                i.swap_count,
                i.row_counts.as_ref().map(json),
                ts_opt(&i.last_health_check),
                ts(&i.updated_at),
                ts_opt(&i.stopped_at),
                i.control_url,
                i.replication.as_ref().map(json)
            ],
        )?;
        Ok(())
    }

    fn instance(&self, id: Uuid) -> StoreResult<Option<InstanceRecord>> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT {INSTANCE_COLS} FROM instances WHERE id = ?1"
        ))?;
        Ok(stmt.query_row([id.to_string()], instance_row).optional()?)
    }

    fn live_instances(&self, database: Option<Uuid>) -> StoreResult<Vec<InstanceRecord>> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT {INSTANCE_COLS} FROM instances WHERE stopped_at IS NULL AND (?1 IS NULL OR database_id = ?1) \
             ORDER BY created_at DESC, id DESC"
        ))?;
        let rows = stmt
            .query_map([database.map(|d| d.to_string())], instance_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn latest_instance(&self, database: Uuid) -> StoreResult<Option<InstanceRecord>> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT {INSTANCE_COLS} FROM instances WHERE database_id = ?1 ORDER BY created_at DESC, id DESC LIMIT 1"
        ))?;
        Ok(stmt
            .query_row([database.to_string()], instance_row)
            .optional()?)
    }

    fn events(
        &self,
        database: Uuid,
        limit: usize,
        before: Option<i64>,
    ) -> StoreResult<Vec<EventRecord>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT id, database_id, at, from_status, to_status, cause, message FROM events \
             WHERE database_id = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![database.to_string(), before, limit as i64], |r| {
                Ok(EventRecord {
                    id: r.get(0)?,
                    event: Event {
                        database_id: get_uuid(r, 1)?,
                        at: get_ts(r, 2)?,
                        from_status: get_enum_opt(r, 3, Status::parse)?,
                        to_status: get_enum(r, 4, Status::parse)?,
                        cause: r.get(5)?,
                        message: r.get(6)?,
                    },
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn insert_query_key(&self, k: &QueryKeyRecord) -> StoreResult<()> {
        self.0.execute(
            &format!("INSERT INTO query_keys ({KEY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                k.id.to_string(),
                k.database_id.to_string(),
                k.key_id,
                k.secret_sha256,
                k.name,
                ts_opt(&k.expires_at),
                ts(&k.created_at),
                ts_opt(&k.revoked_at)
            ],
        )?;
        Ok(())
    }

    fn query_keys(&self, database: Uuid) -> StoreResult<Vec<QueryKeyRecord>> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT {KEY_COLS} FROM query_keys WHERE database_id = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt
            .query_map([database.to_string()], key_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn revoke_query_key(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()> {
        self.0.execute(
            "UPDATE query_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
            params![id.to_string(), ts(&at)],
        )?;
        Ok(())
    }
}
