//! [`LifecycleTx`] for the PostgreSQL store (a child of `postgres` so that it shares its query
//! helpers). Same statements as the SQLite one, in PostgreSQL's types.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{json, PgTx, DATABASE_SELECT};
use crate::store::lifecycle::*;
use crate::store::sql::*;
use crate::store::{DatabaseRow, StoreResult};

impl LifecycleTx for PgTx<'_> {
    fn database(&self, id: Uuid) -> StoreResult<Option<DatabaseRow>> {
        self.row(
            &format!("{DATABASE_SELECT} WHERE d.id = $1 AND d.deleted_at IS NULL"),
            &[&id],
            database_row,
        )
    }

    fn ops(&self, database: Uuid) -> StoreResult<OpsRecord> {
        let found = self.row(OPS_OF_DATABASE, &[&database], ops_row)?;
        Ok(found.unwrap_or_else(|| OpsRecord::none(database)))
    }

    fn put_ops(&self, o: &OpsRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO database_ops (database_id, op, crash, cleanup, schedule_mark, updated_at, engine_port) \
             VALUES ($1, $2, $3, $4, $5, now(), $6) ON CONFLICT (database_id) DO UPDATE SET op = $2, crash = $3, \
             cleanup = $4, schedule_mark = $5, updated_at = now(), \
             engine_port = COALESCE($6, database_ops.engine_port)",
            &[
                &o.database_id,
                &o.op.as_ref().map(json),
                &json(&o.crash),
                &json(&o.cleanup),
                &o.schedule_mark,
                &o.engine_port.map(i64::from),
            ],
        )
    }

    fn engine_ports(&self) -> StoreResult<Vec<u16>> {
        let ports = self.rows(ENGINE_PORTS, &[], |r| engine_port(r, 0))?;
        Ok(ports.into_iter().flatten().collect())
    }

    fn all_ops(&self) -> StoreResult<Vec<OpsRecord>> {
        self.rows(ALL_OPS, &[], ops_row)
    }

    fn insert_build(&self, b: &BuildRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO builds (id, database_id, status, created_at) VALUES ($1, $2, $3, $4)",
            &[&b.id, &b.database_id, &b.status.as_str(), &b.created_at],
        )?;
        self.update_build(b)
    }

    fn update_build(&self, b: &BuildRecord) -> StoreResult<()> {
        self.execute(
            "UPDATE builds SET status = $2, schema_config = $3, sync_mode_used = $4, compute_type_used = $5, \
             log = $6, error = $7, started_at = $8, finished_at = $9 WHERE id = $1",
            &[
                &b.id,
                &b.status.as_str(),
                &b.schema_config,
                &b.sync_mode_used,
                &b.compute_type_used,
                &b.log,
                &b.error,
                &b.started_at,
                &b.finished_at,
            ],
        )
    }

    fn set_build_manifest(&self, build: Uuid, manifest: &str) -> StoreResult<()> {
        self.execute(
            "UPDATE builds SET manifest = $2 WHERE id = $1",
            &[&build, &manifest],
        )
    }

    fn build(&self, database: Uuid, id: Uuid) -> StoreResult<Option<BuildRecord>> {
        self.row(
            &format!("SELECT {BUILD_COLS} FROM builds WHERE id = $1 AND database_id = $2"),
            &[&id, &database],
            build_row,
        )
    }

    fn build_manifest(&self, build: Uuid) -> StoreResult<Option<String>> {
        Ok(self
            .row(
                "SELECT manifest FROM builds WHERE id = $1",
                &[&build],
                |r| Ok(r.try_get::<_, Option<String>>(0)?),
            )?
            .flatten())
    }

    fn builds(&self, database: Uuid) -> StoreResult<Vec<BuildRecord>> {
        self.rows(
            &format!(
                "SELECT {BUILD_COLS} FROM builds WHERE database_id = $1 ORDER BY created_at DESC, id DESC"
            ),
            &[&database],
            build_row,
        )
    }

    fn latest_deployable_build(&self, database: Uuid) -> StoreResult<Option<Uuid>> {
        self.row(
            "SELECT id FROM builds WHERE database_id = $1 AND manifest IS NOT NULL ORDER BY created_at DESC LIMIT 1",
            &[&database],
            |r| Ok(r.try_get(0)?),
        )
    }

    fn insert_instance(&self, i: &InstanceRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO instances (id, database_id, build_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
            &[&i.id, &i.database_id, &i.build_id, &i.created_at, &i.updated_at],
        )?;
        self.update_instance(i)
    }

    fn update_instance(&self, i: &InstanceRecord) -> StoreResult<()> {
        self.execute(
            "UPDATE instances SET runtime_id = $2, endpoint_url = $3, health_status = $4, snapshot_age_ms = $5, \
             swap_count = $6, row_counts = $7, last_health_check = $8, updated_at = $9, stopped_at = $10, \
             control_url = $11, replication = $12 WHERE id = $1",
            &[
                &i.id,
                &i.runtime_id,
                &i.endpoint_url,
                &i.health_status.map(|h| h.as_str()),
                &i.snapshot_age_ms,
                &i.swap_count,
                &i.row_counts,
                &i.last_health_check,
                &i.updated_at,
                &i.stopped_at,
                &i.control_url,
                &i.replication.as_ref().map(json),
            ],
        )
    }

    fn instance(&self, id: Uuid) -> StoreResult<Option<InstanceRecord>> {
        self.row(
            &format!("SELECT {INSTANCE_COLS} FROM instances WHERE id = $1"),
            &[&id],
            instance_row,
        )
    }

    fn live_instances(&self, database: Option<Uuid>) -> StoreResult<Vec<InstanceRecord>> {
        self.rows(
            &format!(
                "SELECT {INSTANCE_COLS} FROM instances WHERE stopped_at IS NULL \
                 AND ($1::uuid IS NULL OR database_id = $1) ORDER BY created_at DESC, id DESC"
            ),
            &[&database],
            instance_row,
        )
    }

    fn latest_instance(&self, database: Uuid) -> StoreResult<Option<InstanceRecord>> {
        self.row(
            &format!(
                "SELECT {INSTANCE_COLS} FROM instances WHERE database_id = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT 1"
            ),
            &[&database],
            instance_row,
        )
    }

    fn events(
        &self,
        database: Uuid,
        limit: usize,
        before: Option<i64>,
    ) -> StoreResult<Vec<EventRecord>> {
        self.rows(
            &format!(
                "SELECT {EVENT_COLS} FROM events \
                 WHERE database_id = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
            ),
            &[&database, &before, &(limit as i64)],
            event_row,
        )
    }

    fn insert_query_key(&self, k: &QueryKeyRecord) -> StoreResult<()> {
        self.execute(
            &format!(
                "INSERT INTO query_keys ({QUERY_KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                &k.id,
                &k.database_id,
                &k.key_id,
                &k.secret_sha256,
                &k.name,
                &k.expires_at,
                &k.created_at,
                &k.revoked_at,
            ],
        )
    }

    fn query_keys(&self, database: Uuid) -> StoreResult<Vec<QueryKeyRecord>> {
        self.rows(
            &format!(
                "SELECT {QUERY_KEY_COLS} FROM query_keys WHERE database_id = $1 ORDER BY created_at, id"
            ),
            &[&database],
            query_key_row,
        )
    }

    fn revoke_query_key(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()> {
        self.execute(
            "UPDATE query_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
            &[&id, &at],
        )
    }
}
