//! One store test suite, run against both backends: the SQLite file and a real PostgreSQL
//! server (`REFRACT_TEST_PG_URL`, started by `scripts/testenv`; each test gets a database of its
//! own). Every operation round-trips exactly; writes are serialized (a read-then-write race
//! has one winner, the other sees its write); migrations run from an empty store and again
//! without effect, also from two processes' worth of threads at once.

use std::sync::{Arc, Barrier};

use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

use super::lifecycle::*;
use super::*;
use crate::api::*;

// ------------------------------------------------------------------ backends

/// A PostgreSQL database created for one test, dropped at the end.
pub(crate) struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    pub(crate) fn create() -> Self {
        let admin_url = std::env::var("REFRACT_TEST_PG_URL").unwrap_or_else(|_| {
            panic!(
                "REFRACT_TEST_PG_URL is not set: run the tests with ./scripts/test, which starts \
                 the database servers (the store suite runs on PostgreSQL too)"
            )
        });
        let name = format!("refract_store_{}", Uuid::new_v4().simple());
        let mut client = ::postgres::Client::connect(&admin_url, ::postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        let url = format!("{base}/{name}");
        PgDatabase {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = ::postgres::Client::connect(&self.admin_url, ::postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

#[allow(dead_code)] // held for its Drop: the database or directory lives as long as the store
enum Backend_ {
    Sqlite(tempfile::TempDir),
    Postgres(PgDatabase),
}

struct Fixture {
    store: Arc<dyn Store>,
    _backend: Backend_,
}

fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("refract.db")).unwrap();
    Fixture {
        store: Arc::new(store),
        _backend: Backend_::Sqlite(dir),
    }
}

fn postgres() -> Fixture {
    let db = PgDatabase::create();
    let store = PostgresStore::open(&db.url).unwrap();
    Fixture {
        store: Arc::new(store),
        _backend: Backend_::Postgres(db),
    }
}

fn both(test: fn(&dyn Store)) {
    test(sqlite().store.as_ref());
    test(postgres().store.as_ref());
}

fn write<T>(store: &dyn Store, f: impl FnOnce(&dyn Tx) -> StoreResult<T>) -> StoreResult<T> {
    let mut f = Some(f);
    let mut out = None;
    store.write(&mut |tx| {
        out = Some((f.take().expect("run once"))(tx)?);
        Ok(())
    })?;
    Ok(out.unwrap())
}

fn name_claim(owner: Uuid, name: &str, except: Option<Uuid>) -> NameClaim<'_> {
    NameClaim {
        owner,
        name,
        except,
    }
}

fn read<T>(store: &dyn Store, f: impl FnOnce(&dyn Tx) -> StoreResult<T>) -> T {
    let mut f = Some(f);
    let mut out = None;
    store
        .read(&mut |tx| {
            out = Some((f.take().expect("run once"))(tx)?);
            Ok(())
        })
        .unwrap();
    out.unwrap()
}

// ------------------------------------------------------------------ records

/// Microsecond precision: what both backends keep.
fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap()
        + Duration::minutes(minute)
        + Duration::microseconds(123_456)
}

fn customer(name: &str, admin: bool) -> Customer {
    Customer {
        id: Uuid::new_v4(),
        name: name.into(),
        plan: Plan::Pro,
        is_admin: admin,
        created_at: at(0),
        updated_at: at(1),
    }
}

fn connection(customer: Uuid, name: &str) -> ConnectionRow {
    ConnectionRow {
        wire: refract_api::Connection {
            id: Uuid::new_v4(),
            customer_id: customer,
            name: name.into(),
            backend: Backend::Mysql,
            host: "Db.Example".into(),
            port: Some(3306),
            available_schemas: vec!["shop".into(), "blog".into()],
            user: Some("reader".into()),
            allowed_sync_modes: vec![SyncMode::Poll, SyncMode::Binlog],
            min_sync_interval: 30,
            created_at: at(2),
            updated_at: at(2),
            ssl_mode: SslMode::VerifyFull,
            ssl_root_cert_set: true,
        },
        password_secret: Some(format!("connection/{name}/password")),
        ssl_root_cert_secret: Some(format!("connection/{name}/ssl-root-cert")),
    }
}

fn database(c: &ConnectionRow, name: &str, minute: i64) -> DatabaseRow {
    let (task_cpu, task_memory_mb) = InstanceSize::Medium.resources();
    DatabaseRow {
        wire: refract_api::Database {
            id: Uuid::new_v4(),
            customer_id: c.customer_id,
            connection_id: c.id,
            name: name.into(),
            schema: "shop".into(),
            sync_mode: SyncMode::Binlog,
            sync_interval: 60,
            safety_net: 3600,
            task_cpu,
            task_memory_mb,
            // Not the default (1): the round trip must carry it.
            replicas: 3,
            log_level: LogLevel::Debug,
            status: Status::Running,
            last_error: Some("it broke, then healed".into()),
            endpoint_url: None,
            health_status: None,
            build_compute_override: Some(BuildCompute::Large),
            instance_size: InstanceSize::Medium,
            region: "local".into(),
            binlog_server_id: Some(4242),
            desired_state: Some(DesiredState::Paused),
            reflexdb_custom_domain: Some(format!("{name}.example.com")),
            pause_schedule: Some(PauseSchedule {
                pause_at: "22:00".into(),
                resume_at: "06:00".into(),
                days: vec![1, 2, 3],
            }),
            tags: vec![Tag {
                label: "team-a".into(),
                color: TagColor::Teal,
            }],
            has_pending_changes: true,
            replication_paused: true,
            created_at: at(minute),
            updated_at: at(minute + 1),
        },
        internal: DatabaseInternal {
            operation: Some(OperationInFlight {
                kind: OpKind::Provision,
                step: OpStep::WaitHealthy,
                started_at: at(5),
                attempt: 2,
            }),
            // In jsonb's key order (PostgreSQL normalizes it; `Value` equality ignores it, the
            // Debug comparison of this suite does not).
            deployed_config: Some(serde_json::json!({"n": [1, 2], "syncMode": "binlog"})),
            active_build_id: Some(Uuid::new_v4()),
            schema_config: Some("tables:\n  - name: a\n".into()),
            deleted_at: None,
        },
    }
}

fn same<T: std::fmt::Debug>(a: &T, b: &T) {
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

// ------------------------------------------------------------------ the suite

#[test]
fn customers_and_management_keys_round_trip() {
    both(|s| {
        let admin = customer("admin", true);
        let other = customer("acme", false);
        assert!(!read(s, |tx| tx.admin_exists()));
        write(s, |tx| {
            tx.insert_customer(&admin)?;
            tx.insert_customer(&other)
        })
        .unwrap();
        assert!(read(s, |tx| tx.admin_exists()));
        same(&read(s, |tx| tx.get_customer(other.id)).unwrap(), &other);
        assert_eq!(read(s, |tx| tx.list_customers()).len(), 2);
        write(s, |tx| tx.set_customer_plan(other.id, Plan::Teams, at(9))).unwrap();
        let c = read(s, |tx| tx.get_customer(other.id)).unwrap();
        assert_eq!((c.plan, c.updated_at), (Plan::Teams, at(9)));

        let key = ManagementKeyRow {
            wire: refract_api::ManagementKey {
                id: Uuid::new_v4(),
                customer_id: other.id,
                name: "ci".into(),
                key_id: "rmk_abc".into(),
                key: None,
                expires_at: Some(at(60)),
                created_at: at(3),
                last_used_at: None,
                revoked_at: None,
            },
            secret_sha256: "00ff".into(),
        };
        write(s, |tx| tx.insert_management_key(&key)).unwrap();
        same(
            &read(s, |tx| tx.get_management_key(other.id, key.id)).unwrap(),
            &key,
        );
        // Another customer's key is not found by id.
        assert!(read(s, |tx| tx.get_management_key(admin.id, key.id)).is_none());
        same(
            &read(s, |tx| tx.find_management_key("rmk_abc")).unwrap(),
            &key,
        );
        write(s, |tx| {
            tx.touch_management_key(key.id, at(4))?;
            tx.revoke_management_key(key.id, at(5))?;
            tx.revoke_management_key(key.id, at(6)) // the first revocation stays
        })
        .unwrap();
        let k = read(s, |tx| tx.list_management_keys(other.id))
            .pop()
            .unwrap();
        assert_eq!((k.last_used_at, k.revoked_at), (Some(at(4)), Some(at(5))));
        // A duplicate public key id is refused, and nothing of that transaction stays.
        let mut dup = key.clone();
        dup.id = Uuid::new_v4();
        let err = write(s, |tx| {
            tx.insert_customer(&customer("ghost", false))?;
            tx.insert_management_key(&dup)
        });
        assert!(err.is_err());
        assert_eq!(read(s, |tx| tx.list_customers()).len(), 2);
    });
}

#[test]
fn connections_and_databases_round_trip_with_filters() {
    both(|s| {
        let cust = customer("acme", false);
        let stranger = customer("other", false);
        let c = connection(cust.id, "main");
        let mut a = database(&c, "alpha", 10);
        let mut b = database(&c, "beta", 20);
        b.status = Status::Paused;
        b.tags.clear();
        b.reflexdb_custom_domain = None;
        b.pause_schedule = None;
        b.internal = DatabaseInternal::default();
        b.binlog_server_id = None;
        write(s, |tx| {
            tx.insert_customer(&cust)?;
            tx.insert_customer(&stranger)?;
            tx.insert_connection(&c)?;
            tx.insert_database(&a)?;
            tx.insert_database(&b)
        })
        .unwrap();
        same(&read(s, |tx| tx.get_connection(cust.id, c.id)).unwrap(), &c);
        assert!(read(s, |tx| tx.get_connection(stranger.id, c.id)).is_none());
        assert!(read(s, |tx| tx
            .connection_name_taken(&name_claim(cust.id, "main", None))));
        assert!(!read(s, |tx| tx.connection_name_taken(&name_claim(
            cust.id,
            "main",
            Some(c.id)
        ))));
        assert!(!read(s, |tx| tx.connection_name_taken(&name_claim(
            stranger.id,
            "main",
            None
        ))));
        let mut c2 = c.clone();
        c2.name = "renamed".into();
        c2.ssl_root_cert_secret = None;
        c2.ssl_root_cert_set = false;
        c2.updated_at = at(30);
        write(s, |tx| tx.update_connection(&c2)).unwrap();
        same(
            &read(s, |tx| tx.list_connections(cust.id)),
            &vec![c2.clone()],
        );

        same(&read(s, |tx| tx.get_database(cust.id, a.id)).unwrap(), &a);
        assert!(read(s, |tx| tx.get_database(stranger.id, a.id)).is_none());
        same(&read(s, |tx| tx.get_database(cust.id, b.id)).unwrap(), &b);
        let all = read(s, |tx| {
            tx.list_databases(cust.id, &DatabaseFilter::default())
        });
        assert_eq!(
            all.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["alpha", "beta"],
            "oldest first"
        );
        let by = |f: DatabaseFilter| -> Vec<String> {
            read(s, |tx| tx.list_databases(cust.id, &f))
                .into_iter()
                .map(|d| d.wire.name)
                .collect()
        };
        assert_eq!(
            by(DatabaseFilter {
                status: Some(Status::Paused),
                ..Default::default()
            }),
            ["beta"]
        );
        assert_eq!(
            by(DatabaseFilter {
                tag: Some("team-a".into()),
                ..Default::default()
            }),
            ["alpha"]
        );
        assert!(by(DatabaseFilter {
            connection_id: Some(Uuid::new_v4()),
            ..Default::default()
        })
        .is_empty());
        assert_eq!(
            by(DatabaseFilter {
                connection_id: Some(c.id),
                tag: Some("team-a".into()),
                status: Some(Status::Running),
            }),
            ["alpha"]
        );
        assert!(read(s, |tx| tx.list_databases(stranger.id, &Default::default())).is_empty());
        assert_eq!(read(s, |tx| tx.count_databases(cust.id)), 2);
        assert_eq!(read(s, |tx| tx.list_all_databases()).len(), 2);
        assert!(read(s, |tx| tx
            .database_name_taken(&name_claim(c.id, "alpha", None))));
        assert!(!read(s, |tx| tx.database_name_taken(&name_claim(
            c.id,
            "alpha",
            Some(a.id)
        ))));
        assert_eq!(
            read(s, |tx| tx
                .databases_using_schemas(c.id, &["shop".into(), "x".into()])),
            vec![
                ("alpha".to_string(), "shop".to_string()),
                ("beta".to_string(), "shop".to_string())
            ]
        );
        assert!(read(s, |tx| tx.databases_using_schemas(c.id, &[])).is_empty());
        // Host compared without case; the port must match too; `except` excludes.
        fn claim(port: i64, except: &[Uuid]) -> ServerIdClaim<'_> {
            ServerIdClaim {
                host: "db.example",
                port: Some(port),
                server_id: 4242,
                except,
            }
        }
        assert!(read(s, |tx| tx.binlog_server_id_taken(&claim(3306, &[]))));
        assert!(!read(s, |tx| tx.binlog_server_id_taken(&claim(3307, &[]))));
        assert!(!read(s, |tx| tx.binlog_server_id_taken(&claim(3306, &[a.id]))));
        assert!(read(s, |tx| tx.custom_domain_taken("alpha.example.com", None)));
        assert!(!read(s, |tx| tx
            .custom_domain_taken("alpha.example.com", Some(a.id))));

        // Update every column, then soft-delete: the name is free again.
        a.status = Status::Failed;
        a.desired_state = None;
        a.internal.deployed_config = None;
        a.internal.operation = None;
        a.tags.push(Tag {
            label: "x".into(),
            color: TagColor::Red,
        });
        a.updated_at = at(40);
        write(s, |tx| tx.update_database(&a)).unwrap();
        same(&read(s, |tx| tx.lifecycle().database(a.id)).unwrap(), &a);
        write(s, |tx| tx.soft_delete_database(a.id, at(50))).unwrap();
        assert!(read(s, |tx| tx.get_database(cust.id, a.id)).is_none());
        assert!(!read(s, |tx| tx
            .database_name_taken(&name_claim(c.id, "alpha", None))));
        assert!(!read(s, |tx| tx.custom_domain_taken("alpha.example.com", None)));
        assert_eq!(read(s, |tx| tx.count_databases(cust.id)), 1);
        // A new database may take the freed name.
        let again = database(&c, "alpha", 60);
        write(s, |tx| tx.insert_database(&again)).unwrap();

        // Deleting the connection removes its databases and their history.
        write(s, |tx| {
            tx.insert_event(&Event {
                database_id: b.id,
                at: at(70),
                from_status: None,
                to_status: Status::Registered,
                cause: "user".into(),
                message: "registered".into(),
            })?;
            tx.delete_connection(c.id)
        })
        .unwrap();
        assert!(read(s, |tx| tx.list_connections(cust.id)).is_empty());
        assert!(read(s, |tx| tx.list_all_databases()).is_empty());
        assert!(read(s, |tx| tx.lifecycle().events(b.id, 10, None)).is_empty());
    });
}

#[test]
fn lifecycle_records_round_trip() {
    both(|s| {
        let cust = customer("acme", false);
        let c = connection(cust.id, "main");
        let d = database(&c, "alpha", 10);
        write(s, |tx| {
            tx.insert_customer(&cust)?;
            tx.insert_connection(&c)?;
            tx.insert_database(&d)
        })
        .unwrap();
        let l = |f: &dyn Fn(&dyn LifecycleTx) -> StoreResult<()>| {
            write(s, |tx| f(tx.lifecycle())).unwrap()
        };

        // Builds: the manifest is kept byte for byte; "deployable" = has one.
        let mut b1 = BuildRecord {
            id: Uuid::new_v4(),
            database_id: d.id,
            status: BuildStatus::Queued,
            has_manifest: false,
            schema_config: None,
            sync_mode_used: None,
            compute_type_used: None,
            log: String::new(),
            error: None,
            created_at: at(11),
            started_at: None,
            finished_at: None,
        };
        l(&|tx| tx.insert_build(&b1));
        assert_eq!(
            read(s, |tx| tx.lifecycle().latest_deployable_build(d.id)),
            None
        );
        b1.status = BuildStatus::Succeeded;
        b1.schema_config = Some("x: 1".into());
        b1.sync_mode_used = Some("binlog".into());
        b1.compute_type_used = Some("small".into());
        b1.log = "line 1\nline 2\n".into();
        b1.started_at = Some(at(12));
        b1.finished_at = Some(at(13));
        let manifest = "{ \"b\": 1,  \"a\": [2] }";
        l(&|tx| {
            tx.update_build(&b1)?;
            tx.set_build_manifest(b1.id, manifest)
        });
        b1.has_manifest = true;
        same(
            &read(s, |tx| tx.lifecycle().build(d.id, b1.id)).unwrap(),
            &b1,
        );
        assert!(read(s, |tx| tx.lifecycle().build(Uuid::new_v4(), b1.id)).is_none());
        assert_eq!(
            read(s, |tx| tx.lifecycle().build_manifest(b1.id)).as_deref(),
            Some(manifest)
        );
        assert_eq!(
            read(s, |tx| tx.lifecycle().latest_deployable_build(d.id)),
            Some(b1.id)
        );
        let b2 = BuildRecord {
            id: Uuid::new_v4(),
            created_at: at(14),
            has_manifest: false,
            ..b1.clone()
        };
        l(&|tx| tx.insert_build(&b2));
        let builds = read(s, |tx| tx.lifecycle().builds(d.id));
        assert_eq!(
            builds.iter().map(|b| b.id).collect::<Vec<_>>(),
            [b2.id, b1.id],
            "newest first"
        );

        // Instances: live until stopped; the newest live one is the database's endpoint.
        let i1 = InstanceRecord {
            id: Uuid::new_v4(),
            database_id: d.id,
            build_id: b1.id,
            runtime_id: "rt-1".into(),
            endpoint_url: Some("http://127.0.0.1:9001".into()),
            control_url: Some("http://127.0.0.1:9101".into()),
            health_status: Some(HealthStatus::Degraded),
            snapshot_age_ms: Some(1500),
            swap_count: Some(7),
            row_counts: Some(serde_json::json!({"users": 3})),
            last_health_check: Some(at(15)),
            created_at: at(15),
            updated_at: at(15),
            stopped_at: None,
            replication: Some(ReplicationView {
                mode: "binlog".into(),
                state: ReplicationState::Error,
                lag_ms: Some(3),
                error: Some("the binary log is off: set log_bin".into()),
                fatal: Some(true),
            }),
        };
        let mut i2 = InstanceRecord {
            id: Uuid::new_v4(),
            endpoint_url: Some("http://127.0.0.1:9002".into()),
            health_status: Some(HealthStatus::Ok),
            created_at: at(16),
            ..i1.clone()
        };
        l(&|tx| {
            tx.insert_instance(&i1)?;
            tx.insert_instance(&i2)
        });
        same(&read(s, |tx| tx.lifecycle().instance(i1.id)).unwrap(), &i1);
        let db = read(s, |tx| tx.get_database(cust.id, d.id)).unwrap();
        assert_eq!(db.endpoint_url, i2.endpoint_url);
        assert_eq!(db.health_status, Some(HealthStatus::Ok));
        assert_eq!(
            read(s, |tx| tx.lifecycle().live_instances(Some(d.id))).len(),
            2
        );
        assert_eq!(read(s, |tx| tx.lifecycle().live_instances(None)).len(), 2);
        assert!(read(s, |tx| tx.lifecycle().live_instances(Some(Uuid::new_v4()))).is_empty());
        i2.stopped_at = Some(at(17));
        l(&|tx| tx.update_instance(&i2));
        let db = read(s, |tx| tx.get_database(cust.id, d.id)).unwrap();
        assert_eq!(db.endpoint_url, i1.endpoint_url, "the newest live instance");
        same(
            &read(s, |tx| tx.lifecycle().latest_instance(d.id)).unwrap(),
            &i2,
        );

        // Events: newest first, paged by id.
        for n in 0..5 {
            write(s, |tx| {
                tx.insert_event(&Event {
                    database_id: d.id,
                    at: at(20 + n),
                    from_status: Some(Status::Deploying),
                    to_status: Status::Running,
                    cause: "reconciler".into(),
                    message: format!("event {n}"),
                })
            })
            .unwrap();
        }
        let page = read(s, |tx| tx.lifecycle().events(d.id, 2, None));
        assert_eq!(page.len(), 2);
        assert_eq!(page[0].event.message, "event 4");
        let next = read(s, |tx| tx.lifecycle().events(d.id, 10, Some(page[1].id)));
        assert_eq!(
            next.iter()
                .map(|e| e.event.message.as_str())
                .collect::<Vec<_>>(),
            ["event 2", "event 1", "event 0"]
        );
        assert_eq!(next[0].event.from_status, Some(Status::Deploying));
        assert_eq!(next[0].event.at, at(22));

        // Query keys.
        let k = QueryKeyRecord {
            id: Uuid::new_v4(),
            database_id: d.id,
            key_id: "rxk_1".into(),
            secret_sha256: "ab".into(),
            name: "app".into(),
            expires_at: Some(at(99)),
            created_at: at(18),
            revoked_at: None,
        };
        l(&|tx| tx.insert_query_key(&k));
        same(
            &read(s, |tx| tx.lifecycle().query_keys(d.id)),
            &vec![k.clone()],
        );
        l(&|tx| {
            tx.revoke_query_key(k.id, at(19))?;
            tx.revoke_query_key(k.id, at(20))
        });
        assert_eq!(
            read(s, |tx| tx.lifecycle().query_keys(d.id))[0].revoked_at,
            Some(at(19))
        );

        // The operation record: absent = default; the engine port, once set, stays.
        let empty = read(s, |tx| tx.lifecycle().ops(d.id));
        assert_eq!(empty.database_id, d.id);
        assert!(empty.op.is_none() && empty.engine_port.is_none());
        let ops = OpsRecord {
            database_id: d.id,
            op: Some(OpData {
                id: Uuid::new_v4(),
                kind: OpKind::Provision,
                cause: "user".into(),
                origin: Status::Registered,
                started_at: at(21),
                build_id: Some(b1.id),
                new_instance: Some(i1.id),
                instance_started_at: Some(at(22)),
                old_instance: None,
                settings: None,
                note: Some("n".into()),
            }),
            crash: CrashLog {
                crashes: vec![at(23)],
                last_exit: Some("exit 137".into()),
                next_restart_at: Some(at(24)),
                restarted_at: None,
            },
            cleanup: vec![i2.id],
            schedule_mark: Some("2026-12-04/pause".into()),
            engine_port: Some(7801),
        };
        l(&|tx| tx.put_ops(&ops));
        same(&read(s, |tx| tx.lifecycle().ops(d.id)), &ops);
        l(&|tx| {
            tx.put_ops(&OpsRecord {
                database_id: d.id,
                ..Default::default()
            })
        });
        let cleared = read(s, |tx| tx.lifecycle().ops(d.id));
        assert!(cleared.op.is_none() && cleared.cleanup.is_empty());
        assert_eq!(cleared.engine_port, Some(7801), "the engine port stays");
        assert_eq!(read(s, |tx| tx.lifecycle().engine_ports()), vec![7801]);
        assert_eq!(read(s, |tx| tx.lifecycle().all_ops()).len(), 1);
        // A second database may not take the same port.
        let other = database(&c, "beta", 30);
        let taken = write(s, |tx| {
            tx.insert_database(&other)?;
            tx.lifecycle().put_ops(&OpsRecord {
                database_id: other.id,
                engine_port: Some(7801),
                ..Default::default()
            })
        });
        assert!(taken.is_err(), "engine ports are unique");
        assert!(read(s, |tx| tx.lifecycle().database(other.id)).is_none());
    });
}

/// Two transactions check a name and insert it at the same time: writes are serialized, so
/// exactly one inserts and the other sees the name taken (the API answers it 409).
#[test]
fn concurrent_read_then_write_has_one_winner() {
    for fixture in [sqlite(), postgres()] {
        let store = fixture.store.clone();
        let cust = customer("acme", false);
        write(store.as_ref(), |tx| tx.insert_customer(&cust)).unwrap();
        let barrier = Arc::new(Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|n| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    write(store.as_ref(), |tx| {
                        if tx.connection_name_taken(&name_claim(cust.id, "same", None))? {
                            return Ok(false);
                        }
                        // Widen the window between the check and the insert.
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        let mut c = connection(cust.id, "same");
                        c.user = Some(format!("writer-{n}"));
                        tx.insert_connection(&c)?;
                        Ok(true)
                    })
                    .unwrap()
                })
            })
            .collect();
        let won: Vec<bool> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        assert_eq!(
            read(store.as_ref(), |tx| tx.list_connections(cust.id)).len(),
            1
        );
    }
}

/// Opening runs the migrations once: again on an opened store, and from several replicas
/// starting at the same moment.
#[test]
fn migrations_apply_once_from_empty_and_concurrently() {
    let db = PgDatabase::create();
    let barrier = Arc::new(Barrier::new(3));
    let opens: Vec<_> = (0..3)
        .map(|_| {
            let (url, barrier) = (db.url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                PostgresStore::open(&url).map(|_| ())
            })
        })
        .collect();
    for o in opens {
        o.join().unwrap().unwrap();
    }
    let store = PostgresStore::open(&db.url).unwrap();
    let mut conn = store.conn().unwrap();
    let versions: Vec<i64> = conn
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let all: Vec<i64> = super::postgres::MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(versions, all);
    // SQLite: an existing file is opened again without re-running anything.
    let f = sqlite();
    let cust = customer("acme", true);
    write(f.store.as_ref(), |tx| tx.insert_customer(&cust)).unwrap();
    let Backend_::Sqlite(dir) = &f._backend else {
        unreachable!()
    };
    let again = SqliteStore::open(&dir.path().join("refract.db")).unwrap();
    assert!(read(&again, |tx| tx.admin_exists()));
}

/// An installation of an older version (every migration but the last applied, with data) is
/// brought to the current schema on open, its rows intact.
#[test]
fn sqlite_migrates_from_the_previous_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("refract.db");
    let all = super::sqlite::MIGRATIONS;
    let (last, previous) = all.split_last().unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .unwrap();
        for (version, name, sql) in previous {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, ?2, '2026-01-01T00:00:00.000000Z')",
                rusqlite::params![version, name],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO customers (id, name, plan, is_admin, created_at, updated_at) \
             VALUES ('6a0f3a38-7d2a-4c34-9d0e-2f2a8d3b8c11', 'old', 'free', 1, \
             '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')",
            [],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let customers = read(&store, |tx| tx.list_customers());
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0].name, "old");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let applied: i64 = conn
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(applied, last.0, "the last migration ran");
}

/// A store that cannot be reached is `Unavailable` (HTTP 503), quickly — never a hang.
#[test]
fn unreachable_postgres_is_unavailable_quickly() {
    let db = PgDatabase::create();
    let store = PostgresStore::open(&db.url).unwrap();
    // Every connection of the pool is cut by the server.
    let mut admin = ::postgres::Client::connect(&db.admin_url, ::postgres::NoTls).unwrap();
    let started = std::time::Instant::now();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&db.name],
        )
        .unwrap();
    // A dropped connection is replaced: the next transaction works.
    assert!(!read(&store, |tx| tx.admin_exists()));
    drop(db); // the database itself is gone now
    let err = write(&store, |tx| tx.admin_exists()).unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(_) | StoreError::Postgres(_)),
        "{err:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "answered after {:?}",
        started.elapsed()
    );
    // A server that is not there: opening fails within the connect timeout, saying where.
    let started = std::time::Instant::now();
    let err = PostgresStore::open("postgres://refract:secret@127.0.0.1:1/refract").unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("127.0.0.1:1") || text.contains("metadata store"),
        "{text}"
    );
    assert!(
        !text.contains("secret"),
        "the password is never shown: {text}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

/// Secrets in the PostgreSQL store: sealed per row (no plaintext in the table), readable by a
/// replica with the same master key, refused at start with another key; a row copied under
/// another name does not decrypt.
#[test]
fn postgres_secrets_are_sealed_and_need_the_master_key() {
    use crate::secrets::SecretStore;
    let db = PgDatabase::create();
    let store = PostgresStore::open(&db.url).unwrap();
    let key = [7u8; 32];
    let a = SecretStore::open_postgres(store.pool(), key).unwrap();
    a.put("connection/1/password", "hunter2-very-secret")
        .unwrap();
    a.put("connection/2/password", "other").unwrap();
    a.delete("connection/2/password").unwrap();
    // Another replica (same key) reads what the first wrote.
    let b = SecretStore::open_postgres(store.pool(), key).unwrap();
    assert_eq!(
        b.get("connection/1/password").as_deref(),
        Some("hunter2-very-secret")
    );
    assert_eq!(b.get("connection/2/password"), None);
    assert_eq!(
        b.entries().unwrap(),
        vec![(
            "connection/1/password".to_string(),
            "hunter2-very-secret".to_string()
        )]
    );
    let mut conn = store.conn().unwrap();
    let raw: Vec<Vec<u8>> = conn
        .query("SELECT ciphertext FROM secrets", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(raw.iter().all(|c| !c.windows(6).any(|w| w == b"hunter")));
    // A row moved under another name is not that name's secret.
    conn.execute(
        "INSERT INTO secrets (name, nonce, ciphertext, updated_at) \
         SELECT 'connection/3/password', nonce, ciphertext, now() FROM secrets \
         WHERE name = 'connection/1/password'",
        &[],
    )
    .unwrap();
    assert_eq!(b.get("connection/3/password"), None);
    // A replica with another master key fails at start, saying why.
    let err = SecretStore::open_postgres(store.pool(), [8u8; 32]).unwrap_err();
    assert!(format!("{err:#}").contains("master key"), "{err:#}");
    // Key rotation: every row sealed again; the old key no longer opens the store.
    conn.execute(
        "DELETE FROM secrets WHERE name = 'connection/3/password'",
        &[],
    )
    .unwrap();
    assert_eq!(b.reseal([9u8; 32]).unwrap(), 1);
    assert!(SecretStore::open_postgres(store.pool(), key).is_err());
    let rotated = SecretStore::open_postgres(store.pool(), [9u8; 32]).unwrap();
    assert_eq!(
        rotated.get("connection/1/password").as_deref(),
        Some("hunter2-very-secret")
    );
}

/// The leader lease: one holder at a time, decided by the database; taken over once expired or
/// given up.
#[test]
fn leader_lease_has_one_holder() {
    use crate::leader::{release, try_lease};
    let db = PgDatabase::create();
    let store = PostgresStore::open(&db.url).unwrap();
    let pool = store.pool();
    assert!(try_lease(&pool, "a").unwrap());
    assert!(!try_lease(&pool, "b").unwrap(), "held by a");
    assert!(try_lease(&pool, "a").unwrap(), "a renews");
    assert_eq!(crate::leader::holder(&pool).unwrap().as_deref(), Some("a"));
    // Expired (a dead holder stops renewing): b takes it, and a cannot renew any more.
    store
        .conn()
        .unwrap()
        .execute(
            "UPDATE leader_lease SET expires_at = now() - interval '1 second'",
            &[],
        )
        .unwrap();
    assert!(try_lease(&pool, "b").unwrap());
    assert!(!try_lease(&pool, "a").unwrap());
    // Given up on shutdown: taken at once.
    release(&pool, "b").unwrap();
    assert_eq!(crate::leader::holder(&pool).unwrap(), None);
    assert!(try_lease(&pool, "a").unwrap());
}
