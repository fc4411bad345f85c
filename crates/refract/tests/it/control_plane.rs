//! The real `refract serve` binary over HTTP: every `/v1` route of the foundation (customers,
//! management keys, connections, databases, test-connection), every validation rule (tables),
//! tenant isolation, key expiry and revocation, restart after SIGKILL, and that a source password
//! never shows up in the metadata file, the logs or a response.
//!
//! Bodies are built and read through the `refract-api` wire types. Raw JSON stays where the test
//! is about the JSON itself: the validation tables (most of their cases are values no wire type
//! can hold: wrong types, unknown variants and fields, typos) and the checks of the served shape
//! (which fields are present, absent or `null`, how times are written).

use std::time::Duration;

use refract_api::{
    Backend, Connection, ConnectionWithDatabases, CreateConnectionRequest,
    CreateConnectionResponse, CreateCustomerRequest, CreateCustomerResponse, Database,
    InstanceSize, LogLevel, Plan, Status, SyncMode, TestConnectionRequest, TestConnectionResult,
    UpdateConnectionRequest, UpdateDatabaseRequest, Uuid,
};
use serde_json::{json, Value};

use crate::common::{
    self, connection_request, database_request, instance_request, wire_body, wire_error,
    ControlPlane,
};

const PASSWORD: &str = "S3cret-Pa55word-never-logged";

/// A MySQL connection (the default backend: none given) to `db.internal` as `reader`.
fn conn_request(name: &str) -> CreateConnectionRequest {
    CreateConnectionRequest {
        backend: None,
        available_schemas: Some(vec!["shop".into(), "blog".into(), "crm".into()]),
        user: Some("reader".into()),
        password: Some(PASSWORD.into()),
        ..connection_request(name, Backend::Mysql, "db.internal")
    }
}

/// [`conn_request`] as JSON, for the validation tables that change it field by field.
fn conn_body(name: &str) -> Value {
    wire_body(&conn_request(name))
}

/// A control plane with a second, non-admin customer on the given plan.
fn with_customer(cp: &ControlPlane, plan: &str) -> String {
    let plan = Plan::parse(plan).unwrap();
    let request = CreateCustomerRequest {
        name: format!("cust-{plan}"),
        plan: Some(plan),
    };
    let created: CreateCustomerResponse = cp.wire(
        "POST",
        "/v1/admin/customers",
        &cp.admin_key,
        Some(&request),
        201,
    );
    assert_eq!(created.customer.plan, plan);
    assert!(!created.customer.is_admin);
    created.management_key.key.unwrap()
}

fn create_conn(
    cp: &ControlPlane,
    token: &str,
    request: &CreateConnectionRequest,
) -> CreateConnectionResponse {
    cp.wire("POST", "/v1/connections", token, Some(request), 201)
}

fn register(cp: &ControlPlane, token: &str, conn: Uuid, name: &str, db: &str) -> Database {
    let request = database_request(conn, name, db);
    cp.wire("POST", "/v1/databases", token, Some(&request), 201)
}

#[test]
fn connections_crud_defaults_and_transactional_create() {
    let cp = ControlPlane::start_fresh();
    // Defaults of seed 001 and the spec.
    let (s, v) = cp.admin("POST", "/v1/connections", Some(conn_body("main")));
    let created: CreateConnectionResponse = common::wire_answer("create", 201, (s, v.clone()));
    let c = &created.connection;
    assert_eq!(c.backend, Backend::Mysql);
    assert_eq!(c.port, Some(3306));
    assert_eq!(c.allowed_sync_modes, [SyncMode::Poll]);
    assert_eq!(c.min_sync_interval, 30);
    assert!(created.database.is_none());
    // The served shape: no password, every field there, times in UTC.
    let c_json = &v["connection"];
    assert_eq!(v["database"], Value::Null);
    assert!(c_json.get("mysqlPassword").is_none());
    for f in [
        "id",
        "customerId",
        "name",
        "mysqlHost",
        "availableSchemas",
        "mysqlUser",
        "createdAt",
        "updatedAt",
    ] {
        assert!(c_json.get(f).is_some(), "{f} missing: {c_json}");
    }
    assert!(c_json["createdAt"].as_str().unwrap().ends_with('Z'));
    let id = c.id;

    let pg = CreateConnectionRequest {
        backend: Some(Backend::Postgres),
        sync_mode: Some(SyncMode::Logical),
        sync_interval: Some(60),
        instance: Some(refract_api::CreateInstanceRequest {
            instance_size: Some(InstanceSize::Small),
            log_level: Some(LogLevel::Debug),
            binlog_server_id: Some(7),
            ..instance_request("first", "shop")
        }),
        ..conn_request("pg")
    };
    let v = create_conn(&cp, &cp.admin_key, &pg);
    assert_eq!(v.connection.port, Some(5432));
    assert_eq!(
        v.connection.allowed_sync_modes,
        [SyncMode::Poll, SyncMode::Logical]
    );
    let d = v.database.expect("the first database");
    assert_eq!(d.status, Status::Registered);
    assert_eq!(
        d.sync_mode,
        SyncMode::Logical,
        "a database starts with the connection's sync mode"
    );
    assert_eq!(d.sync_interval, 60);
    assert_eq!((d.task_cpu, d.task_memory_mb), (512, 1024));
    assert_eq!(d.log_level, LogLevel::Debug);
    assert_eq!(d.region, "local");
    assert_eq!(d.binlog_server_id, Some(7));
    assert!(d.tags.is_empty());
    assert_eq!(d.pause_schedule, None);
    let pg_id = v.connection.id;

    // The instance part failing writes nothing, not even the connection.
    let bad = CreateConnectionRequest {
        instance: Some(instance_request("x", "not-there")),
        ..conn_request("atomic")
    };
    let e = wire_error(
        "instance on an unknown schema",
        (422, "invalid_request"),
        cp.admin("POST", "/v1/connections", Some(wire_body(&bad))),
    );
    assert!(e.message.contains("instance.mysqlDb"), "{e:?}");
    let list: Vec<Connection> =
        cp.wire::<(), _>("GET", "/v1/connections", &cp.admin_key, None, 200);
    let names: Vec<&str> = list.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["main", "pg"]);

    // GET one with its databases.
    let one: ConnectionWithDatabases = cp.wire::<(), _>(
        "GET",
        &format!("/v1/connections/{pg_id}"),
        &cp.admin_key,
        None,
        200,
    );
    assert_eq!(one.databases.len(), 1);
    assert_eq!(one.connection.name, "pg");

    // PATCH.
    let patch = UpdateConnectionRequest {
        name: Some("main2".into()),
        port: Some(3307),
        available_schemas: Some(vec!["shop".into(), "blog".into()]),
        sync_mode: Some(SyncMode::Binlog),
        sync_interval: Some(10),
        password: Some("new-pw-also-secret".into()),
        ..UpdateConnectionRequest::default()
    };
    let p: Connection = cp.wire(
        "PATCH",
        &format!("/v1/connections/{id}"),
        &cp.admin_key,
        Some(&patch),
        200,
    );
    assert_eq!(p.name, "main2");
    assert_eq!(p.port, Some(3307));
    assert_eq!(p.allowed_sync_modes, [SyncMode::Poll, SyncMode::Binlog]);
    assert_eq!(p.min_sync_interval, 10);

    // Schemas in use cannot be removed; the 409 names the database.
    let patch = UpdateConnectionRequest {
        available_schemas: Some(vec!["blog".into()]),
        ..UpdateConnectionRequest::default()
    };
    let e = wire_error(
        "removing a schema in use",
        (409, "conflict"),
        cp.admin(
            "PATCH",
            &format!("/v1/connections/{pg_id}"),
            Some(wire_body(&patch)),
        ),
    );
    assert!(e.message.contains("first"), "{e:?}");

    // DELETE: 409 while databases reference it; 204 after they are deleted.
    wire_error(
        "deleting a connection in use",
        (409, "conflict"),
        cp.admin("DELETE", &format!("/v1/connections/{pg_id}"), None),
    );
    let db_id = d.id;
    let (s, _) = cp.admin("DELETE", &format!("/v1/databases/{db_id}"), None);
    assert_eq!(s, 204);
    let (s, _) = cp.admin("DELETE", &format!("/v1/connections/{pg_id}"), None);
    assert_eq!(s, 204);
    wire_error(
        "a deleted connection",
        (404, "not_found"),
        cp.admin("GET", &format!("/v1/connections/{pg_id}"), None),
    );
    cp.assert_no_leak(&[PASSWORD, "new-pw-also-secret"]);
}

#[test]
fn connection_validation_rules() {
    let cp = ControlPlane::start_fresh();
    create_conn(&cp, &cp.admin_key, &conn_request("taken"));
    // Raw JSON on purpose: wrong types, unknown variants and fields, `null`s and typos are what
    // this table sends.
    // (change to the valid body, status, error code, text the message must contain)
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (json!({"name": ""}), 400, "invalid_request", "name"),
        (
            json!({"name": "x".repeat(101)}),
            400,
            "invalid_request",
            "name",
        ),
        (json!({"name": "taken"}), 409, "conflict", "taken"),
        (
            json!({"mysqlHost": ""}),
            400,
            "invalid_request",
            "mysqlHost",
        ),
        (json!({"mysqlPort": 0}), 400, "invalid_request", "mysqlPort"),
        (
            json!({"mysqlPort": 65536}),
            400,
            "invalid_request",
            "mysqlPort",
        ),
        (
            json!({"mysqlPort": "3306"}),
            400,
            "invalid_request",
            "mysqlPort",
        ),
        (
            json!({"availableSchemas": []}),
            400,
            "invalid_request",
            "availableSchemas",
        ),
        (
            json!({"availableSchemas": "shop"}),
            400,
            "invalid_request",
            "availableSchemas",
        ),
        (
            json!({"mysqlUser": ""}),
            400,
            "invalid_request",
            "mysqlUser",
        ),
        (
            json!({"mysqlUser": null}),
            422,
            "invalid_request",
            "mysqlUser",
        ),
        (
            json!({"mysqlPassword": ""}),
            400,
            "invalid_request",
            "mysqlPassword",
        ),
        (
            json!({"mysqlPassword": null}),
            422,
            "invalid_request",
            "mysqlPassword",
        ),
        (
            json!({"syncInterval": 4}),
            400,
            "invalid_request",
            "syncInterval",
        ),
        (
            json!({"syncInterval": 3601}),
            400,
            "invalid_request",
            "syncInterval",
        ),
        (
            json!({"syncMode": "sometimes"}),
            400,
            "invalid_request",
            "syncMode",
        ),
        (
            json!({"syncMode": "logical"}),
            422,
            "invalid_request",
            "syncMode",
        ),
        (
            json!({"syncMode": "cdc"}),
            422,
            "invalid_request",
            "syncMode",
        ),
        (
            json!({"backend": "postgres", "syncMode": "binlog"}),
            422,
            "invalid_request",
            "syncMode",
        ),
        (
            json!({"backend": "oracle"}),
            400,
            "invalid_request",
            "backend",
        ),
        (json!({"nmae": "typo"}), 400, "invalid_request", "nmae"),
        (
            json!({"instance": {"name": "d", "mysqlDb": "nope"}}),
            422,
            "invalid_request",
            "instance.mysqlDb",
        ),
        (
            json!({"instance": {"name": "", "mysqlDb": "shop"}}),
            400,
            "invalid_request",
            "instance.name",
        ),
        (
            json!({"instance": {"name": "d", "mysqlDb": "shop", "instanceSize": "huge"}}),
            400,
            "invalid_request",
            "instance.instanceSize",
        ),
        (
            json!({"instance": {"name": "d", "mysqlDb": "shop", "logLevel": "trace"}}),
            400,
            "invalid_request",
            "instance.logLevel",
        ),
        (
            json!({"instance": {"name": "d", "mysqlDb": "shop", "binlogServerId": 0}}),
            400,
            "invalid_request",
            "binlogServerId",
        ),
        (
            json!({"instance": {"name": "d", "mysqlDb": "shop", "extra": 1}}),
            400,
            "invalid_request",
            "extra",
        ),
    ];
    for (change, status, code, needle) in cases {
        let mut body = conn_body("new");
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let e = wire_error(
            &change.to_string(),
            (status, code),
            cp.admin("POST", "/v1/connections", Some(body)),
        );
        assert!(
            e.message.contains(needle),
            "{change}: message should name {needle}: {e:?}"
        );
    }
    // Missing required fields and malformed JSON (raw text on purpose).
    for (raw, needle) in [
        ("{\"name\": \"a\"}", "mysqlHost"),
        ("{\"name\": ", "malformed JSON"),
        ("[1]", ""),
        ("", "JSON"),
    ] {
        let e = wire_error(
            raw,
            (400, "invalid_request"),
            cp.raw("POST", "/v1/connections", Some(&cp.admin_key), raw),
        );
        assert!(e.message.contains(needle), "{raw}: {e:?}");
    }
    // Nothing of the failed requests was written.
    let list: Vec<Connection> =
        cp.wire::<(), _>("GET", "/v1/connections", &cp.admin_key, None, 200);
    assert_eq!(list.len(), 1);
    let dbs: Vec<Database> = cp.wire::<(), _>("GET", "/v1/databases", &cp.admin_key, None, 200);
    assert!(dbs.is_empty(), "{dbs:?}");

    // sqlite: a file path, no user/password, schemas ["main"].
    let lite = connection_request(
        "lite",
        Backend::Sqlite,
        cp.sqlite_root().join("x.db").to_str().unwrap(),
    );
    let v = create_conn(&cp, &cp.admin_key, &lite);
    assert_eq!(v.connection.available_schemas, ["main"]);
    assert_eq!(v.connection.port, None);
    let lite2 = CreateConnectionRequest {
        available_schemas: Some(vec!["other".into()]),
        ..connection_request("lite2", Backend::Sqlite, "/x")
    };
    let (s, e) = cp.admin("POST", "/v1/connections", Some(wire_body(&lite2)));
    assert_eq!(s, 422, "{e}");

    // PATCH rules (raw JSON on purpose, as above: `backend` is no field of a PATCH).
    let id = create_conn(&cp, &cp.admin_key, &conn_request("patchme"))
        .connection
        .id;
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"name": ""}), 400, "name"),
        (json!({"name": "taken"}), 409, "taken"),
        (json!({"mysqlPort": 70000}), 400, "mysqlPort"),
        (json!({"availableSchemas": []}), 400, "availableSchemas"),
        (json!({"syncInterval": 1}), 400, "syncInterval"),
        (json!({"syncMode": "logical"}), 422, "syncMode"),
        (json!({"backend": "postgres"}), 400, "backend"),
        (json!({"mysqlPassword": ""}), 400, "mysqlPassword"),
    ];
    for (body, status, needle) in cases {
        let (s, e) = cp.admin(
            "PATCH",
            &format!("/v1/connections/{id}"),
            Some(body.clone()),
        );
        let e: refract_api::ErrorBody = common::wire_answer(&body.to_string(), status, (s, e));
        assert!(e.message.contains(needle), "{body}: {e:?}");
    }
}

fn tag(label: &str, color: refract_api::TagColor) -> refract_api::Tag {
    refract_api::Tag {
        label: label.into(),
        color,
    }
}

#[test]
fn database_register_update_delete_and_rules() {
    let cp = ControlPlane::start_fresh();
    let k = &cp.admin_key;
    let cid = create_conn(&cp, k, &conn_request("src")).connection.id;
    let d = register(&cp, k, cid, "orders", "shop");
    assert_eq!(d.instance_size, InstanceSize::Nano);
    assert_eq!(d.log_level, LogLevel::Info);
    assert_eq!(d.sync_mode, SyncMode::Poll);
    assert_eq!(d.sync_interval, 30);
    assert!(!d.has_pending_changes);
    assert_eq!(d.desired_state, None);
    let did = d.id;

    let post = |body: Value| cp.call("POST", "/v1/databases", Some(k), Some(body));
    let base = wire_body(&database_request(cid, "n2", "blog"));
    // Raw JSON on purpose: unknown variants, bad ids and out-of-range numbers.
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (json!({"name": "orders"}), 409, "conflict", "orders"),
        (json!({"name": ""}), 400, "invalid_request", "name"),
        (
            json!({"mysqlDb": "nope"}),
            422,
            "invalid_request",
            "mysqlDb",
        ),
        (
            json!({"instanceSize": "medium-ish"}),
            400,
            "invalid_request",
            "instanceSize",
        ),
        (
            json!({"binlogServerId": 0}),
            400,
            "invalid_request",
            "binlogServerId",
        ),
        (
            json!({"binlogServerId": -3}),
            400,
            "invalid_request",
            "binlogServerId",
        ),
        (
            json!({"connectionId": "00000000-0000-0000-0000-000000000000"}),
            404,
            "not_found",
            "connection",
        ),
        (
            json!({"connectionId": "not-a-uuid"}),
            400,
            "invalid_request",
            "connectionId",
        ),
        (json!({"tags": []}), 400, "invalid_request", "tags"),
    ];
    for (change, status, code, needle) in cases {
        let mut body = base.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let e = wire_error(&change.to_string(), (status, code), post(body));
        assert!(e.message.contains(needle), "{change}: {e:?}");
    }
    // binlogServerId unique per source host+port, across connections to the same server.
    let with_server_id =
        |conn: Uuid, name: &str, schema: &str| refract_api::RegisterDatabaseRequest {
            binlog_server_id: Some(42),
            ..database_request(conn, name, schema)
        };
    let _: Database = cp.wire(
        "POST",
        "/v1/databases",
        k,
        Some(&with_server_id(cid, "n2", "blog")),
        201,
    );
    let other = create_conn(&cp, k, &conn_request("same-server"))
        .connection
        .id;
    let e = wire_error(
        "the same binlogServerId on the same server",
        (409, "conflict"),
        post(wire_body(&with_server_id(other, "x", "shop"))),
    );
    assert!(e.message.contains("binlogServerId"), "{e:?}");
    let elsewhere = CreateConnectionRequest {
        port: Some(3310),
        ..conn_request("other-server")
    };
    let oid = create_conn(&cp, k, &elsewhere).connection.id;
    let _: Database = cp.wire(
        "POST",
        "/v1/databases",
        k,
        Some(&with_server_id(oid, "x", "shop")),
        201,
    );

    // PATCH: good changes.
    let url = format!("/v1/databases/{did}");
    let patch_db = |id: Uuid, request: &UpdateDatabaseRequest| -> Database {
        cp.wire(
            "PATCH",
            &format!("/v1/databases/{id}"),
            k,
            Some(request),
            200,
        )
    };
    let u = patch_db(
        did,
        &UpdateDatabaseRequest {
            name: Some("orders2".into()),
            schema: Some("crm".into()),
            instance_size: Some(InstanceSize::Large),
            log_level: Some(LogLevel::Warn),
            binlog_server_id: Some(Some(9)),
            build_compute_override: Some(Some(refract_api::BuildCompute::Medium)),
            reflexdb_custom_domain: Some(Some("orders-eu".into())),
            pause_schedule: Some(Some(refract_api::PauseSchedule {
                pause_at: "22:00".into(),
                resume_at: "06:30".into(),
                days: vec![1, 2, 3],
            })),
            tags: Some(vec![
                tag("prod", refract_api::TagColor::Red),
                tag("eu", refract_api::TagColor::Blue),
            ]),
            sync_interval: Some(45),
            safety_net: Some(600),
            ..UpdateDatabaseRequest::default()
        },
    );
    assert_eq!(u.name, "orders2");
    assert_eq!(u.schema, "crm");
    assert_eq!((u.task_cpu, u.task_memory_mb), (2048, 4096));
    assert_eq!(u.reflexdb_custom_domain.as_deref(), Some("orders-eu"));
    assert_eq!(u.pause_schedule.as_ref().unwrap().resume_at, "06:30");
    assert_eq!(u.safety_net, 600);
    assert!(
        !u.has_pending_changes,
        "never deployed, so nothing is pending"
    );
    // null clears nullable fields; absent leaves them.
    let clear = UpdateDatabaseRequest {
        pause_schedule: Some(None),
        binlog_server_id: Some(None),
        ..UpdateDatabaseRequest::default()
    };
    assert_eq!(
        wire_body(&clear),
        json!({"pauseSchedule": null, "binlogServerId": null}),
        "a cleared field is sent as null"
    );
    let u = patch_db(did, &clear);
    assert_eq!(u.pause_schedule, None);
    assert_eq!(u.binlog_server_id, None);
    assert_eq!(u.reflexdb_custom_domain.as_deref(), Some("orders-eu"));

    // PATCH rules (table; raw JSON on purpose: unknown variants, bad times, read-only fields).
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (json!({"name": "n2"}), 409, "conflict", "n2"),
        (
            json!({"mysqlDb": "nope"}),
            422,
            "invalid_request",
            "mysqlDb",
        ),
        (
            json!({"instanceSize": "giant"}),
            400,
            "invalid_request",
            "instanceSize",
        ),
        (
            json!({"logLevel": "verbose"}),
            400,
            "invalid_request",
            "logLevel",
        ),
        (
            json!({"binlogServerId": 0}),
            400,
            "invalid_request",
            "binlogServerId",
        ),
        (
            json!({"binlogServerId": 42}),
            409,
            "conflict",
            "binlogServerId",
        ),
        (
            json!({"buildComputeOverride": "huge"}),
            400,
            "invalid_request",
            "buildComputeOverride",
        ),
        (
            json!({"reflexdbCustomDomain": "Bad_Domain"}),
            400,
            "invalid_request",
            "reflexdbCustomDomain",
        ),
        (
            json!({"reflexdbCustomDomain": "-x"}),
            400,
            "invalid_request",
            "reflexdbCustomDomain",
        ),
        (
            json!({"pauseSchedule": {"pauseAt": "25:00", "resumeAt": "06:00", "days": []}}),
            400,
            "invalid_request",
            "pauseAt",
        ),
        (
            json!({"pauseSchedule": {"pauseAt": "22:00", "resumeAt": "6:00", "days": []}}),
            400,
            "invalid_request",
            "resumeAt",
        ),
        (
            json!({"pauseSchedule": {"pauseAt": "22:00", "resumeAt": "06:00", "days": [7]}}),
            400,
            "invalid_request",
            "days",
        ),
        (
            json!({"pauseSchedule": {"pauseAt": "22:00"}}),
            400,
            "invalid_request",
            "resumeAt",
        ),
        (
            json!({"tags": [{"label": "a", "color": "pink"}]}),
            400,
            "invalid_request",
            "color",
        ),
        (
            json!({"tags": [{"label": "", "color": "red"}]}),
            400,
            "invalid_request",
            "label",
        ),
        (
            json!({"tags": [{"label": "x".repeat(31), "color": "red"}]}),
            400,
            "invalid_request",
            "label",
        ),
        (
            json!({"tags": (0..6).map(|i| json!({"label": i.to_string(), "color": "red"})).collect::<Vec<_>>()}),
            400,
            "invalid_request",
            "tags",
        ),
        (
            json!({"syncMode": "binlog"}),
            422,
            "invalid_request",
            "syncMode",
        ),
        (
            json!({"syncMode": "teleport"}),
            400,
            "invalid_request",
            "syncMode",
        ),
        (
            json!({"syncInterval": 10}),
            422,
            "invalid_request",
            "minSyncInterval",
        ),
        (
            json!({"syncInterval": 4000}),
            400,
            "invalid_request",
            "syncInterval",
        ),
        (json!({"safetyNet": 5}), 400, "invalid_request", "safetyNet"),
        (
            json!({"status": "running"}),
            400,
            "invalid_request",
            "status",
        ),
        (
            json!({"connectionId": cid}),
            400,
            "invalid_request",
            "connectionId",
        ),
    ];
    for (body, status, code, needle) in cases {
        let e = wire_error(
            &body.to_string(),
            (status, code),
            cp.admin("PATCH", &url, Some(body.clone())),
        );
        assert!(e.message.contains(needle), "{body}: {e:?}");
    }
    // The custom domain is unique.
    let n2: Vec<Database> = cp.wire::<(), _>(
        "GET",
        &format!("/v1/databases?connectionId={cid}"),
        k,
        None,
        200,
    );
    let n2_id = n2.iter().find(|d| d.name == "n2").unwrap().id;
    let domain = UpdateDatabaseRequest {
        reflexdb_custom_domain: Some(Some("orders-eu".into())),
        ..UpdateDatabaseRequest::default()
    };
    wire_error(
        "a custom domain taken",
        (409, "conflict"),
        cp.admin(
            "PATCH",
            &format!("/v1/databases/{n2_id}"),
            Some(wire_body(&domain)),
        ),
    );
    // syncMode/syncInterval follow the connection: allow binlog there, then it is accepted.
    let conn_sync = |mode: SyncMode| UpdateConnectionRequest {
        sync_mode: Some(mode),
        ..UpdateConnectionRequest::default()
    };
    let _: Connection = cp.wire(
        "PATCH",
        &format!("/v1/connections/{cid}"),
        k,
        Some(&conn_sync(SyncMode::Binlog)),
        200,
    );
    let u = patch_db(
        did,
        &UpdateDatabaseRequest {
            sync_mode: Some(SyncMode::Binlog),
            ..UpdateDatabaseRequest::default()
        },
    );
    assert_eq!(u.sync_mode, SyncMode::Binlog);
    // Dropping binlog from the connection while a database uses it: 409 naming it.
    let (s, e) = cp.admin(
        "PATCH",
        &format!("/v1/connections/{cid}"),
        Some(wire_body(&conn_sync(SyncMode::Poll))),
    );
    assert_eq!(s, 409, "{e}");
    let e: refract_api::ErrorBody = common::wire_answer("dropping binlog", 409, (s, e));
    assert!(e.message.contains("orders2"), "{e:?}");

    // Filters.
    patch_db(
        n2_id,
        &UpdateDatabaseRequest {
            tags: Some(vec![tag("staging", refract_api::TagColor::Gray)]),
            ..UpdateDatabaseRequest::default()
        },
    );
    let names = |q: &str| -> Vec<String> {
        let list: Vec<Database> =
            cp.wire::<(), _>("GET", &format!("/v1/databases{q}"), k, None, 200);
        list.into_iter().map(|d| d.name).collect()
    };
    assert_eq!(names(""), ["orders2", "n2", "x"]);
    assert_eq!(names(&format!("?connectionId={cid}")), ["orders2", "n2"]);
    assert_eq!(names("?tag=prod"), ["orders2"]);
    assert_eq!(names("?tag=staging"), ["n2"]);
    assert_eq!(names("?status=registered").len(), 3);
    assert!(names("?status=running").is_empty());
    wire_error(
        "an unknown status filter",
        (400, "invalid_request"),
        cp.admin("GET", "/v1/databases?status=bogus", None),
    );

    // Soft delete frees the name; the deleted one is gone from lists and GET.
    let (s, _) = cp.admin("DELETE", &url, None);
    assert_eq!(s, 204);
    let (s, _) = cp.admin("GET", &url, None);
    assert_eq!(s, 404);
    let (s, _) = cp.admin("DELETE", &url, None);
    assert_eq!(s, 404);
    register(&cp, k, cid, "orders2", "shop");
    // The freed custom domain can be taken again.
    patch_db(n2_id, &domain);
    // Unknown and malformed ids are 404.
    for p in [
        "/v1/databases/00000000-0000-0000-0000-000000000000",
        "/v1/databases/nope",
        "/v1/connections/nope",
    ] {
        wire_error(p, (404, "not_found"), cp.admin("GET", p, None));
    }
}

#[test]
fn delete_is_refused_outside_the_action_matrix() {
    let cp = ControlPlane::start_fresh();
    let cid = create_conn(&cp, &cp.admin_key, &conn_request("src"))
        .connection
        .id;
    let did = register(&cp, &cp.admin_key, cid, "db", "shop")
        .id
        .to_string();
    // Put the row in `paused` directly (a deployed database scaled to zero: a stable status with
    // no process, which the reconciler leaves alone), without needing a source to provision from.
    cp.kill();
    let conn = rusqlite::Connection::open(cp.dir.join("refract.db")).unwrap();
    conn.execute(
        "UPDATE databases SET status = 'paused' WHERE id = ?1",
        [&did],
    )
    .unwrap();
    let deployed = refract_api::RuntimeSettings {
        instance_size: InstanceSize::Nano,
        task_cpu: 256,
        task_memory_mb: 512,
        sync_mode: SyncMode::Poll,
        sync_interval: 30,
        log_level: LogLevel::Info,
        safety_net: 3600,
        binlog_server_id: None,
        replicas: 1,
    };
    let deployed = serde_json::to_string(&deployed).unwrap();
    conn.execute(
        "UPDATE databases SET deployed_config = ?2 WHERE id = ?1",
        [&did, &deployed],
    )
    .unwrap();
    drop(conn);
    let cp = cp.restart();
    let e = wire_error(
        "delete while paused",
        (409, "action_not_allowed"),
        cp.admin("DELETE", &format!("/v1/databases/{did}"), None),
    );
    assert!(e.message.contains("paused"), "{e:?}");
    // mysqlDb cannot change while paused (only registered, failed, stopped, terminated).
    let schema = UpdateDatabaseRequest {
        schema: Some("blog".into()),
        ..UpdateDatabaseRequest::default()
    };
    wire_error(
        "mysqlDb while paused",
        (409, "conflict"),
        cp.admin(
            "PATCH",
            &format!("/v1/databases/{did}"),
            Some(wire_body(&schema)),
        ),
    );
    // A runtime setting change on a deployed database marks pending changes; reverting clears it.
    let patch = |request: &UpdateDatabaseRequest| -> Database {
        cp.wire(
            "PATCH",
            &format!("/v1/databases/{did}"),
            &cp.admin_key,
            Some(request),
            200,
        )
    };
    let u = patch(&UpdateDatabaseRequest {
        log_level: Some(LogLevel::Debug),
        ..UpdateDatabaseRequest::default()
    });
    assert!(u.has_pending_changes, "{u:?}");
    let u = patch(&UpdateDatabaseRequest {
        log_level: Some(LogLevel::Info),
        tags: Some(vec![tag("t", refract_api::TagColor::Teal)]),
        ..UpdateDatabaseRequest::default()
    });
    assert!(!u.has_pending_changes, "{u:?}");
}

#[test]
fn tenants_are_isolated_and_admin_routes_need_admin() {
    let cp = ControlPlane::start_fresh();
    let a = with_customer(&cp, "enterprise");
    let b = with_customer(&cp, "pro");
    let ca = create_conn(&cp, &a, &conn_request("a-conn")).connection.id;
    let da = register(&cp, &a, ca, "a-db", "shop").id;
    // Same names are fine in another account.
    let cb = create_conn(&cp, &b, &conn_request("a-conn")).connection.id;
    let rename_connection = UpdateConnectionRequest {
        name: Some("stolen".into()),
        ..UpdateConnectionRequest::default()
    };
    let rename_database = UpdateDatabaseRequest {
        name: Some("stolen".into()),
        ..UpdateDatabaseRequest::default()
    };
    for (m, p, body) in [
        ("GET", format!("/v1/connections/{ca}"), None),
        (
            "PATCH",
            format!("/v1/connections/{ca}"),
            Some(wire_body(&rename_connection)),
        ),
        ("DELETE", format!("/v1/connections/{ca}"), None),
        (
            "POST",
            format!("/v1/connections/{ca}/test-connection"),
            None,
        ),
        ("GET", format!("/v1/databases/{da}"), None),
        (
            "PATCH",
            format!("/v1/databases/{da}"),
            Some(wire_body(&rename_database)),
        ),
        ("DELETE", format!("/v1/databases/{da}"), None),
    ] {
        wire_error(
            &format!("{m} {p}"),
            (404, "not_found"),
            cp.call(m, &p, Some(&b), body),
        );
    }
    // Registering on another customer's connection: 404.
    let (s, _) = cp.call(
        "POST",
        "/v1/databases",
        Some(&b),
        Some(wire_body(&database_request(ca, "x", "shop"))),
    );
    assert_eq!(s, 404);
    let l: Vec<Database> = cp.wire::<(), _>("GET", "/v1/databases", &b, None, 200);
    assert!(l.is_empty(), "{l:?}");
    let l: Vec<Connection> = cp.wire::<(), _>("GET", "/v1/connections", &b, None, 200);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].id, cb);
    // Another customer's key id cannot be revoked.
    let keys_a: Vec<refract_api::ManagementKey> =
        cp.wire::<(), _>("GET", "/v1/account/management-keys", &a, None, 200);
    let ka = keys_a[0].id;
    let (s, _) = cp.call(
        "DELETE",
        &format!("/v1/account/management-keys/{ka}"),
        Some(&b),
        None,
    );
    assert_eq!(s, 404);
    // Admin routes.
    for (m, p, body) in [
        ("GET", "/v1/admin/customers".to_string(), None),
        (
            "POST",
            "/v1/admin/customers".to_string(),
            Some(wire_body(&CreateCustomerRequest {
                name: "x".into(),
                plan: None,
            })),
        ),
        (
            "PATCH",
            format!("/v1/admin/customers/{}/plan", keys_a[0].customer_id),
            Some(wire_body(&refract_api::SetPlanRequest { plan: Plan::Free })),
        ),
    ] {
        wire_error(
            &format!("{m} {p}"),
            (403, "forbidden"),
            cp.call(m, &p, Some(&b), body),
        );
    }
    let list: Vec<refract_api::Customer> =
        cp.wire::<(), _>("GET", "/v1/admin/customers", &cp.admin_key, None, 200);
    let plans: Vec<Plan> = list.iter().map(|c| c.plan).collect();
    assert_eq!(
        plans,
        [Plan::Enterprise, Plan::Enterprise, Plan::Pro],
        "admin first"
    );
    assert!(list[0].is_admin);
    wire_error(
        "an unknown plan",
        (400, "invalid_request"),
        cp.admin(
            "POST",
            "/v1/admin/customers",
            // Raw on purpose: a plan no wire type can hold.
            Some(json!({"name": "x", "plan": "platinum"})),
        ),
    );
    let (s, e) = cp.admin(
        "PATCH",
        "/v1/admin/customers/00000000-0000-0000-0000-000000000000/plan",
        Some(wire_body(&refract_api::SetPlanRequest { plan: Plan::Pro })),
    );
    assert_eq!(s, 404, "{e}");
}

#[test]
fn plan_limits_are_enforced() {
    let cp = ControlPlane::start_fresh();
    let free = with_customer(&cp, "free");
    let cid = create_conn(&cp, &free, &conn_request("c")).connection.id;
    // Size above the plan's largest.
    let big = refract_api::RegisterDatabaseRequest {
        instance_size: Some(InstanceSize::Xlarge),
        ..database_request(cid, "big", "shop")
    };
    wire_error(
        "a size above the plan",
        (403, "forbidden"),
        cp.call("POST", "/v1/databases", Some(&free), Some(wire_body(&big))),
    );
    let d1 = register(&cp, &free, cid, "d1", "shop");
    register(&cp, &free, cid, "d2", "blog");
    // Database count.
    let d3 = wire_body(&database_request(cid, "d3", "crm"));
    wire_error(
        "a database over the plan's count",
        (403, "forbidden"),
        cp.call("POST", "/v1/databases", Some(&free), Some(d3.clone())),
    );
    // Also through a connection's instance, which then writes nothing.
    let body = CreateConnectionRequest {
        instance: Some(instance_request("d3", "shop")),
        ..conn_request("c2")
    };
    let (s, _) = cp.call(
        "POST",
        "/v1/connections",
        Some(&free),
        Some(wire_body(&body)),
    );
    assert_eq!(s, 403);
    let conns: Vec<Connection> = cp.wire::<(), _>("GET", "/v1/connections", &free, None, 200);
    assert_eq!(conns.len(), 1);
    // Custom domains need teams.
    let url = format!("/v1/databases/{}", d1.id);
    let domain = wire_body(&UpdateDatabaseRequest {
        reflexdb_custom_domain: Some(Some("mine".into())),
        ..UpdateDatabaseRequest::default()
    });
    wire_error(
        "a custom domain on the free plan",
        (403, "forbidden"),
        cp.call("PATCH", &url, Some(&free), Some(domain.clone())),
    );
    let size = UpdateDatabaseRequest {
        instance_size: Some(InstanceSize::X2large),
        ..UpdateDatabaseRequest::default()
    };
    let (s, e) = cp.call("PATCH", &url, Some(&free), Some(wire_body(&size)));
    assert_eq!(s, 403, "{e}");
    // An admin upgrades the plan: both work now.
    let me: Vec<refract_api::ManagementKey> =
        cp.wire::<(), _>("GET", "/v1/account/management-keys", &free, None, 200);
    let customer = me[0].customer_id;
    let p: refract_api::SetPlanResponse = cp.wire(
        "PATCH",
        &format!("/v1/admin/customers/{customer}/plan"),
        &cp.admin_key,
        Some(&refract_api::SetPlanRequest { plan: Plan::Teams }),
        200,
    );
    assert_eq!(p.plan, Plan::Teams);
    let (s, e) = cp.call("PATCH", &url, Some(&free), Some(domain));
    assert_eq!(s, 200, "{e}");
    let (s, _) = cp.call("POST", "/v1/databases", Some(&free), Some(d3));
    assert_eq!(s, 201);
}

#[test]
fn management_keys_create_list_revoke_expire() {
    let cp = ControlPlane::start_fresh();
    let (s, k) = cp.admin(
        "POST",
        "/v1/account/management-keys",
        Some(wire_body(&key_request("ci", None))),
    );
    let created: refract_api::ManagementKey =
        common::wire_answer("create key", 201, (s, k.clone()));
    let key = created.key.clone().unwrap();
    let key_id = created.key_id.as_str();
    assert!(key.starts_with(&format!("rmk_{key_id}.")), "{key}");
    let secret = key.rsplit('.').next().unwrap();
    assert!(
        secret.len() >= 42 && secret.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{secret}"
    );
    for f in [
        "id",
        "customerId",
        "name",
        "keyId",
        "expiresAt",
        "createdAt",
        "lastUsedAt",
        "revokedAt",
    ] {
        // The served shape: every field present, `null` when unset.
        assert!(k.get(f).is_some(), "{f}: {k}");
    }
    assert_eq!(k["lastUsedAt"], Value::Null);
    // The new key works; lastUsedAt is then set.
    let list: Vec<refract_api::ManagementKey> =
        cp.wire::<(), _>("GET", "/v1/account/management-keys", &key, None, 200);
    assert!(
        list.iter().all(|k| k.key.is_none()),
        "list never shows keys: {list:?}"
    );
    let list: Vec<refract_api::ManagementKey> = cp.wire::<(), _>(
        "GET",
        "/v1/account/management-keys",
        &cp.admin_key,
        None,
        200,
    );
    let me = list.iter().find(|x| x.key_id == key_id).unwrap();
    assert!(me.last_used_at.is_some(), "{me:?}");
    // Only a hash is stored.
    let db = std::fs::read(cp.dir.join("refract.db")).unwrap();
    let wal = std::fs::read(cp.dir.join("refract.db-wal")).unwrap_or_default();
    assert!(!contains(&db, secret.as_bytes()) && !contains(&wal, secret.as_bytes()));

    // Tampered, unknown, malformed keys: 401.
    let mut tampered = key.clone();
    tampered.pop();
    tampered.push(if key.ends_with('a') { 'b' } else { 'a' });
    for t in [
        tampered.as_str(),
        "rmk_unknown.abc",
        "Bearer",
        "rxk_a.b",
        "",
    ] {
        let (s, e) = cp.call("GET", "/v1/connections", Some(t), None);
        wire_error(t, (401, "unauthorized"), (s, e));
    }
    let (s, _) = cp.call("GET", "/v1/connections", None, None);
    assert_eq!(s, 401);

    // Revocation is immediate.
    let id = created.id;
    let r: refract_api::ManagementKey = cp.wire::<(), _>(
        "DELETE",
        &format!("/v1/account/management-keys/{id}"),
        &cp.admin_key,
        None,
        200,
    );
    assert!(r.revoked_at.is_some(), "{r:?}");
    let (s, _) = cp.call("GET", "/v1/connections", Some(&key), None);
    assert_eq!(s, 401);

    // Expiry.
    let past = "2020-01-01T00:00:00Z".parse().unwrap();
    let e = wire_error(
        "an expiry in the past",
        (422, "invalid_request"),
        cp.admin(
            "POST",
            "/v1/account/management-keys",
            Some(wire_body(&key_request("old", Some(past)))),
        ),
    );
    assert!(e.message.contains("expiresAt"), "{e:?}");
    let (s, e) = cp.admin(
        "POST",
        "/v1/account/management-keys",
        // Raw on purpose: no time type holds "tomorrow".
        Some(json!({"name": "bad", "expiresAt": "tomorrow"})),
    );
    assert_eq!(s, 400, "{e}");
    let (s, e) = cp.admin(
        "POST",
        "/v1/account/management-keys",
        Some(wire_body(&key_request("", None))),
    );
    assert_eq!(s, 400, "{e}");
    let soon = chrono_now_plus(2).parse().unwrap();
    let k2: refract_api::ManagementKey = cp.wire(
        "POST",
        "/v1/account/management-keys",
        &cp.admin_key,
        Some(&key_request("short", Some(soon))),
        201,
    );
    let k2 = k2.key.unwrap();
    assert_eq!(cp.call("GET", "/v1/connections", Some(&k2), None).0, 200);
    std::thread::sleep(Duration::from_millis(3600));
    assert_eq!(cp.call("GET", "/v1/connections", Some(&k2), None).0, 401);
}

/// RFC 3339 time `secs` from now (whole seconds, UTC), without a chrono dependency.
fn chrono_now_plus(secs: u64) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs
        + 1;
    let (days, rem) = (t / 86400, t % 86400);
    // Civil-from-days (Howard Hinnant).
    let z = days as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn key_request(
    name: &str,
    expires_at: Option<refract_api::DateTime<refract_api::Utc>>,
) -> refract_api::CreateManagementKeyRequest {
    refract_api::CreateManagementKeyRequest {
        name: name.into(),
        expires_at,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn restart_after_sigkill_keeps_every_record_and_no_password_leaks() {
    let cp = ControlPlane::start_fresh();
    let other = with_customer(&cp, "pro");
    let k: refract_api::ManagementKey = cp.wire(
        "POST",
        "/v1/account/management-keys",
        &cp.admin_key,
        Some(&key_request("kept", None)),
        201,
    );
    let extra_key = k.key.unwrap();
    let body = CreateConnectionRequest {
        instance: Some(refract_api::CreateInstanceRequest {
            binlog_server_id: Some(3),
            ..instance_request("db1", "shop")
        }),
        ..conn_request("persisted")
    };
    let v = create_conn(&cp, &cp.admin_key, &body);
    let cid = v.connection.id;
    let did = v.database.unwrap().id;
    let _: Database = cp.wire(
        "PATCH",
        &format!("/v1/databases/{did}"),
        &cp.admin_key,
        Some(&UpdateDatabaseRequest {
            tags: Some(vec![tag("keep", refract_api::TagColor::Green)]),
            ..UpdateDatabaseRequest::default()
        }),
        200,
    );
    // Raw answers on purpose: after the restart they must be the same JSON, field for field.
    let before_conn = cp.admin("GET", &format!("/v1/connections/{cid}"), None).1;
    let before_dbs = cp.admin("GET", "/v1/databases", None).1;
    let before_customers = cp.admin("GET", "/v1/admin/customers", None).1;
    let admin_key_file = std::fs::read_to_string(cp.dir.join("admin-key")).unwrap();

    // SIGKILL: no graceful anything.
    let out_before = cp.kill();
    let cp = cp.restart();
    assert!(
        !cp.output().contains("admin management key written"),
        "the admin key is created once"
    );
    assert_eq!(
        std::fs::read_to_string(cp.dir.join("admin-key")).unwrap(),
        admin_key_file
    );
    assert_eq!(
        cp.admin("GET", &format!("/v1/connections/{cid}"), None).1,
        before_conn
    );
    assert_eq!(cp.admin("GET", "/v1/databases", None).1, before_dbs);
    assert_eq!(
        cp.admin("GET", "/v1/admin/customers", None).1,
        before_customers
    );
    assert_eq!(
        cp.call("GET", "/v1/connections", Some(&extra_key), None).0,
        200
    );
    assert_eq!(cp.call("GET", "/v1/connections", Some(&other), None).0, 200);
    // The stored password survived too (in the secret store): the stored-credentials test uses it,
    // and is a 200 with ok:false for this unreachable host.
    let t: refract_api::TestConnectionResult = cp.wire::<(), _>(
        "POST",
        &format!("/v1/connections/{cid}/test-connection"),
        &cp.admin_key,
        None,
        200,
    );
    assert!(!t.ok, "{t:?}");

    // No password in the metadata files, the logs, or any response.
    cp.kill();
    for f in ["refract.db", "refract.db-wal", "refract.db-shm"] {
        let bytes = std::fs::read(cp.dir.join(f)).unwrap_or_default();
        assert!(
            !contains(&bytes, PASSWORD.as_bytes()),
            "{f} holds the password"
        );
    }
    let secrets = std::fs::read(cp.dir.join("secrets.enc")).unwrap();
    assert!(
        !contains(&secrets, PASSWORD.as_bytes()),
        "secrets.enc holds the plaintext"
    );
    assert!(!out_before.contains(PASSWORD));
    cp.assert_no_leak(&[PASSWORD]);
    #[cfg(unix)]
    for f in ["admin-key", "secrets.enc", "master.key", "refract.db"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cp.dir.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
}

#[test]
fn master_key_from_environment_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cp = ControlPlane::start_with(&data, Some("my passphrase"), Some(dir));
    create_conn(&cp, &cp.admin_key, &conn_request("c"));
    assert!(
        !cp.dir.join("master.key").exists(),
        "no key file when REFRACT_MASTER_KEY is set"
    );
    let (dir, data) = cp.stop_keep_dir();
    // A different key cannot open the secret store: refuse to start rather than lose secrets.
    let out = common::serve_on_free_port(&data)
        .env("REFRACT_MASTER_KEY", "another passphrase")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("master key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(dir);
}

#[test]
fn docs_health_metrics_and_request_ids() {
    let cp = ControlPlane::start_fresh();
    let (s, doc) = cp.call("GET", "/v1/openapi.json", None, None);
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/v1/admin/customers",
        "/v1/admin/customers/{id}/plan",
        "/v1/account/management-keys",
        "/v1/account/management-keys/{id}",
        "/v1/connections",
        "/v1/connections/{id}",
        "/v1/connections/test-connection",
        "/v1/connections/{id}/test-connection",
        "/v1/databases",
        "/v1/databases/{id}",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} not in the OpenAPI document"
        );
    }
    let db = &doc["components"]["schemas"]["Database"]["properties"];
    for f in [
        "mysqlDb",
        "taskCpu",
        "reflexdbCustomDomain",
        "pauseSchedule",
        "tags",
        "replication_paused",
    ] {
        assert!(db.get(f).is_some(), "Database.{f} missing in the schema");
    }
    let client = reqwest::blocking::Client::new();
    let page = client.get(format!("{}/v1/docs/", cp.url)).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text().unwrap().contains("swagger"),
        "the docs page is served from the binary"
    );
    let h: refract_api::HealthResponse =
        common::wire_answer("/health", 200, cp.call("GET", "/health", None, None));
    assert_eq!(h.status, "ok");
    cp.admin("GET", "/v1/connections", None);
    let metrics = client
        .get(format!("{}/metrics", cp.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("refract_http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/v1/connections\""), "{metrics}");
    let resp = client
        .get(format!("{}/v1/connections", cp.url))
        .header("x-request-id", "req-123")
        .send()
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    let resp = client
        .get(format!("{}/v1/connections", cp.url))
        .send()
        .unwrap();
    assert!(resp.headers().contains_key("x-request-id"));
    wire_error(
        "an unknown route",
        (404, "not_found"),
        cp.call("GET", "/v1/nothing-here", None, None),
    );
}

#[test]
fn cli_drives_the_api() {
    let cp = ControlPlane::start_fresh();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(common::refract_bin())
            .args(args)
            .env("REFRACT_URL", &cp.url)
            .env("REFRACT_TOKEN", &cp.admin_key)
            .env("REFRACT_SOURCE_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = cli(&[
        "connections",
        "create",
        "--name",
        "cli",
        "--host",
        "db.local",
        "--schema",
        "shop,blog",
        "--user",
        "u",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: CreateConnectionResponse = serde_json::from_str(&out).unwrap();
    let cid = v.connection.id.to_string();
    let (ok, out, _) = cli(&["connections", "list"]);
    assert!(
        ok && out.contains("NAME") && out.contains("cli") && out.contains("shop,blog"),
        "{out}"
    );
    let (ok, out, err) = cli(&[
        "databases",
        "register",
        "--connection",
        &cid,
        "--name",
        "d1",
        "--schema",
        "shop",
        "--size",
        "small",
    ]);
    assert!(
        ok && out.contains("d1") && out.contains("registered"),
        "{out}{err}"
    );
    let (ok, out, _) = cli(&["databases", "list", "--json"]);
    assert!(ok);
    let dbs: Vec<Database> = serde_json::from_str(&out).unwrap();
    let did = dbs[0].id.to_string();
    let (ok, out, err) = cli(&[
        "databases",
        "update",
        &did,
        "--tag",
        "prod:red",
        "--log-level",
        "warn",
    ]);
    assert!(ok && out.contains("prod"), "{out}{err}");
    let (ok, out, _) = cli(&["databases", "list", "--tag", "prod"]);
    assert!(ok && out.contains("d1"), "{out}");
    let (ok, out, _) = cli(&["connections", "get", &cid]);
    assert!(ok && out.contains("d1"), "{out}");
    // API errors: `error: <message>` and a non-zero exit.
    let (ok, _, err) = cli(&[
        "databases",
        "register",
        "--connection",
        &cid,
        "--name",
        "d1",
        "--schema",
        "shop",
    ]);
    assert!(!ok);
    assert!(
        err.starts_with("error: ") && err.contains("already exists"),
        "{err}"
    );
    let (ok, _, err) = cli(&["connections", "delete", &cid]);
    assert!(!ok && err.contains("still has databases"), "{err}");
    let (ok, _, _) = cli(&["databases", "delete", &did]);
    assert!(ok);
    let (ok, _, _) = cli(&["connections", "delete", &cid]);
    assert!(ok);
    // Keys.
    let (ok, out, _) = cli(&["keys", "create", "--name", "from-cli", "--json"]);
    assert!(ok);
    let k: refract_api::ManagementKey = serde_json::from_str(&out).unwrap();
    assert!(k.key.as_deref().unwrap().starts_with("rmk_"), "{k:?}");
    let (ok, out, _) = cli(&["keys", "list"]);
    assert!(ok && out.contains("from-cli"), "{out}");
    let (ok, out, _) = cli(&["keys", "revoke", &k.id.to_string()]);
    assert!(ok && out.contains("from-cli"), "{out}");
    // Missing token.
    let out = std::process::Command::new(common::refract_bin())
        .args(["connections", "list"])
        .env("REFRACT_URL", &cp.url)
        .env_remove("REFRACT_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("REFRACT_TOKEN"));
    cp.assert_no_leak(&[PASSWORD]);
}

// ------------------------------------------------------------ test-connection against real servers

fn test_conn(cp: &ControlPlane, request: &TestConnectionRequest) -> TestConnectionResult {
    let start = std::time::Instant::now();
    let v = cp.wire(
        "POST",
        "/v1/connections/test-connection",
        &cp.admin_key,
        Some(request),
        200,
    );
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "bounded by the 5 s timeout"
    );
    v
}

/// `POST /v1/connections/test-connection` body: `backend` (none = the default) at `host:port`.
fn test_request(
    backend: Option<Backend>,
    host: &str,
    port: u16,
    user: &str,
    password: &str,
) -> TestConnectionRequest {
    TestConnectionRequest {
        backend,
        host: host.into(),
        port: Some(i64::from(port)),
        user: Some(user.into()),
        password: Some(password.into()),
        ssl_mode: None,
        ssl_root_cert: None,
    }
}

/// `POST /v1/connections/{id}/test-connection` of a stored connection.
fn test_stored(cp: &ControlPlane, id: Uuid) -> TestConnectionResult {
    let path = format!("/v1/connections/{id}/test-connection");
    cp.wire::<(), _>("POST", &path, &cp.admin_key, None, 200)
}

fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn test_connection_mariadb() {
    let my = common::mysql();
    let cp = ControlPlane::start_fresh();
    let ok = test_conn(
        &cp,
        &test_request(
            Some(Backend::Mysql),
            &my.host,
            my.port,
            &my.user,
            &my.password,
        ),
    );
    assert!(ok.ok, "{ok:?}");
    assert!(ok.latency_ms.is_some(), "{ok:?}");
    let schemas = ok.available_schemas.as_ref().expect("availableSchemas");
    assert!(
        !schemas
            .iter()
            .any(|s| s == "mysql" || s == "information_schema" || s == "performance_schema"),
        "{ok:?}"
    );
    assert!(ok.binlog.is_some(), "{ok:?}");
    let bad = test_conn(
        &cp,
        &test_request(None, &my.host, my.port, &my.user, "wrong-password"),
    );
    assert!(!bad.ok, "{bad:?}");
    assert!(bad.error.as_ref().is_some_and(|e| !e.is_empty()), "{bad:?}");
    let down = test_conn(
        &cp,
        &test_request(None, "127.0.0.1", unused_port(), "x", "y"),
    );
    assert!(!down.ok, "{down:?}");
    // Stored credentials.
    let c = create_conn(
        &cp,
        &cp.admin_key,
        &common::server_connection_request("maria", Backend::Mysql, &my, &["x"]),
    );
    let t = test_stored(&cp, c.connection.id);
    assert!(t.ok, "{t:?}");
    cp.assert_no_leak(&[&my.password, "wrong-password"]);
}

#[test]
fn test_connection_postgres() {
    let pg = common::postgres();
    let cp = ControlPlane::start_fresh();
    let postgres = Some(Backend::Postgres);
    let ok = test_conn(
        &cp,
        &test_request(postgres, &pg.host, pg.port, &pg.user, &pg.password),
    );
    assert!(ok.ok, "{ok:?}");
    assert!(ok.logical.is_some(), "{ok:?}");
    let bad = test_conn(
        &cp,
        &test_request(postgres, &pg.host, pg.port, &pg.user, "wrong-password"),
    );
    assert!(!bad.ok, "{bad:?}");
    let down = test_conn(
        &cp,
        &test_request(postgres, "127.0.0.1", unused_port(), "x", "y"),
    );
    assert!(!down.ok, "{down:?}");
    let c = create_conn(
        &cp,
        &cp.admin_key,
        &common::server_connection_request("pg", Backend::Postgres, &pg, &["postgres"]),
    );
    let t = test_stored(&cp, c.connection.id);
    assert!(t.ok, "{t:?}");
    cp.assert_no_leak(&[&pg.password, "wrong-password"]);
}

#[test]
fn name_lengths_and_instance_rules() {
    let cp = ControlPlane::start_fresh();
    let k = &cp.admin_key;
    let cid = create_conn(&cp, k, &conn_request("c")).connection.id;
    // 100 characters (not bytes) are fine, 101 are not: database names too.
    let long = "é".repeat(100);
    let d = register(&cp, k, cid, &long, "shop");
    let e = wire_error(
        "a 101-character name",
        (400, "invalid_request"),
        cp.admin(
            "POST",
            "/v1/databases",
            Some(wire_body(&database_request(cid, &"x".repeat(101), "shop"))),
        ),
    );
    assert!(e.message.contains("name"), "{e:?}");
    let (s, e) = cp.admin(
        "PATCH",
        &format!("/v1/databases/{}", d.id),
        Some(wire_body(&UpdateDatabaseRequest {
            name: Some("y".repeat(101)),
            ..UpdateDatabaseRequest::default()
        })),
    );
    assert_eq!(s, 400, "{e}");
    let (s, e) = cp.admin(
        "PATCH",
        &format!("/v1/connections/{cid}"),
        Some(wire_body(&UpdateConnectionRequest {
            name: Some("y".repeat(101)),
            ..UpdateConnectionRequest::default()
        })),
    );
    assert_eq!(s, 400, "{e}");
    let with_instance = |name: &str, instance: refract_api::CreateInstanceRequest| {
        wire_body(&CreateConnectionRequest {
            instance: Some(instance),
            ..conn_request(name)
        })
    };
    let e = wire_error(
        "a 101-character instance name",
        (400, "invalid_request"),
        cp.admin(
            "POST",
            "/v1/connections",
            Some(with_instance(
                "c2",
                instance_request(&"z".repeat(101), "shop"),
            )),
        ),
    );
    assert!(e.message.contains("instance.name"), "{e:?}");
    // The instance's binlogServerId is checked against the source like any other.
    let _: Database = cp.wire(
        "PATCH",
        &format!("/v1/databases/{}", d.id),
        k,
        Some(&UpdateDatabaseRequest {
            binlog_server_id: Some(Some(5)),
            ..UpdateDatabaseRequest::default()
        }),
        200,
    );
    let dup = refract_api::CreateInstanceRequest {
        binlog_server_id: Some(5),
        ..instance_request("dup-sid", "shop")
    };
    wire_error(
        "an instance with a taken binlogServerId",
        (409, "conflict"),
        cp.admin("POST", "/v1/connections", Some(with_instance("c3", dup))),
    );
    // Missing instance fields (raw on purpose: no wire type lacks `mysqlDb`).
    let mut body = conn_body("c4");
    body["instance"] = json!({"name": "d"});
    let e = wire_error(
        "an instance without mysqlDb",
        (400, "invalid_request"),
        cp.admin("POST", "/v1/connections", Some(body)),
    );
    assert!(e.message.contains("mysqlDb"), "{e:?}");
    // None of the failed creates left a connection behind.
    let list: Vec<Connection> = cp.wire::<(), _>("GET", "/v1/connections", k, None, 200);
    assert_eq!(list.len(), 1, "{list:?}");
    cp.assert_no_leak(&[PASSWORD]);
}

#[test]
fn bad_requests_never_break_the_server() {
    let cp = ControlPlane::start_fresh();
    let k = cp.admin_key.clone();
    let cid = create_conn(&cp, &k, &conn_request("c")).connection.id;
    // Raw text on purpose: malformed and out-of-range bodies.
    let bodies = [
        "null",
        "1",
        "\"text\"",
        "{\"name\": 1e400}",
        "{\"name\": \"a\", \"mysqlPort\": 1e30}",
        "{\"name\": \"a\", \"mysqlPort\": -9223372036854775809}",
        "{\"name\": \"a\", \"mysqlPort\": 3.5}",
        "{\"name\": \"\\u0000\"}",
        "{\"name\": \"a\", \"name\": \"b\"}",
        "{\"availableSchemas\": [null]}",
        "{\"instance\": []}",
        "{\"tags\": {}}",
        "{\"pauseSchedule\": {\"pauseAt\": \"é:00\", \"resumeAt\": \"12:é\"}}",
        "{\"pauseSchedule\": {\"pauseAt\": \"22:00\", \"resumeAt\": \"06:00\", \"days\": [99999999999999999999]}}",
        "{\"binlogServerId\": 99999999999}",
        "{\"syncInterval\": -1}",
    ];
    let did = register(&cp, &k, cid, "d", "shop").id;
    let paths = [
        ("POST", "/v1/connections".to_string()),
        ("PATCH", format!("/v1/connections/{cid}")),
        ("PATCH", format!("/v1/databases/{did}")),
        ("POST", "/v1/databases".to_string()),
        ("POST", "/v1/connections/test-connection".to_string()),
        ("POST", "/v1/account/management-keys".to_string()),
        ("POST", "/v1/admin/customers".to_string()),
    ];
    for (m, p) in &paths {
        for b in bodies {
            let (s, e) = cp.raw(m, p, Some(&k), b);
            // A NUL character is a valid (odd) name; everything else is refused.
            assert!(
                s < 500 && (s >= 400 || b.contains("u0000")),
                "{m} {p} {b}: {s} {e}"
            );
            if s >= 400 {
                common::wire_answer::<refract_api::ErrorBody>(&format!("{m} {p} {b}"), s, (s, e));
            }
        }
    }
    // Odd paths and queries.
    for p in [
        "/v1/connections/%FF",
        "/v1/connections/..%2F..%2Fetc",
        "/v1/databases?tag=%00",
        "/v1/databases?connectionId=",
        "/v1//databases",
    ] {
        let (s, e) = cp.call("GET", p, Some(&k), None);
        assert!(
            (s == 200 && e.is_array()) || (400..500).contains(&s),
            "{p}: {s} {e}"
        );
        if s != 200 {
            common::wire_answer::<refract_api::ErrorBody>(p, s, (s, e));
        }
    }
    let h: refract_api::HealthResponse =
        common::wire_answer("/health", 200, cp.call("GET", "/health", None, None));
    assert_eq!(h.status, "ok");
    let list: Vec<Connection> = cp.wire::<(), _>("GET", "/v1/connections", &k, None, 200);
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(!cp.output().contains("panicked"), "{}", cp.output());
}

#[test]
fn cli_against_real_servers() {
    let my = common::mysql();
    let pg = common::postgres();
    let cp = ControlPlane::start_fresh();
    let cli = |args: &[&str], password: &str| {
        let out = std::process::Command::new(common::refract_bin())
            .args(args)
            .env("REFRACT_URL", &cp.url)
            .env("REFRACT_TOKEN", &cp.admin_key)
            .env("REFRACT_SOURCE_PASSWORD", password)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let port = my.port.to_string();
    // Raw credentials: ok, then a wrong password (exit 1, the reason printed).
    let (ok, out, err) = cli(
        &[
            "connections",
            "test",
            "--host",
            &my.host,
            "--port",
            &port,
            "--user",
            &my.user,
        ],
        &my.password,
    );
    assert!(ok && out.starts_with("ok ("), "{out}{err}");
    // Readiness per sync mode, not only the login (the test MariaDB has a ROW binlog).
    assert!(out.contains("\npoll: ready\n"), "{out}");
    assert!(
        out.contains("\nbinlog: ready\n") || out.contains("\nbinlog: NOT ready\n  - "),
        "{out}"
    );
    let (ok, out, _) = cli(
        &[
            "connections",
            "test",
            "--host",
            &my.host,
            "--port",
            &port,
            "--user",
            &my.user,
        ],
        "wrong-password",
    );
    assert!(!ok && out.starts_with("failed: "), "{out}");
    // Stored credentials, by id.
    let (ok, out, err) = cli(
        &[
            "connections",
            "create",
            "--name",
            "maria",
            "--host",
            &my.host,
            "--port",
            &port,
            "--user",
            &my.user,
            "--schema",
            "app",
            "--sync-mode",
            "binlog",
            "--json",
        ],
        &my.password,
    );
    assert!(ok, "{err}");
    let c: CreateConnectionResponse = serde_json::from_str(&out).unwrap();
    assert_eq!(
        c.connection.allowed_sync_modes,
        [SyncMode::Poll, SyncMode::Binlog]
    );
    let cid = c.connection.id.to_string();
    let (ok, out, err) = cli(&["connections", "test", &cid, "--json"], "");
    assert!(ok, "{out}{err}");
    // Read as the wire type: `binlog` (with its `issues`) must be there and of its shape.
    let t: TestConnectionResult = serde_json::from_str(&out).unwrap();
    assert!(t.ok, "{t:?}");
    assert!(t.binlog.is_some(), "{t:?}");
    // Update through the CLI, then the stored test uses the new (wrong) password.
    let (ok, out, err) = cli(
        &[
            "connections",
            "update",
            &cid,
            "--name",
            "maria2",
            "--sync-interval",
            "60",
            "--password",
            "also-wrong",
        ],
        "",
    );
    assert!(
        ok && out.contains("maria2") && out.contains("60"),
        "{out}{err}"
    );
    let (ok, out, _) = cli(&["connections", "test", &cid], "");
    assert!(!ok && out.starts_with("failed: "), "{out}");
    // Postgres through the CLI.
    let pg_port = pg.port.to_string();
    let (ok, out, err) = cli(
        &[
            "connections",
            "test",
            "--backend",
            "postgres",
            "--host",
            &pg.host,
            "--port",
            &pg_port,
            "--user",
            &pg.user,
            "--json",
        ],
        &pg.password,
    );
    assert!(ok, "{out}{err}");
    let t: TestConnectionResult = serde_json::from_str(&out).unwrap();
    assert!(
        t.logical.as_ref().is_some_and(|l| l.wal_level.is_some()),
        "{t:?}"
    );
    // databases get / update prints fields; errors exit non-zero with the API's message.
    let (ok, out, err) = cli(
        &[
            "databases",
            "register",
            "--connection",
            &cid,
            "--name",
            "d",
            "--schema",
            "app",
            "--json",
        ],
        "",
    );
    assert!(ok, "{err}");
    let did = serde_json::from_str::<Database>(&out)
        .unwrap()
        .id
        .to_string();
    let (ok, out, _) = cli(&["databases", "get", &did], "");
    assert!(
        ok && out.contains("mysqlDb") && out.contains("registered"),
        "{out}"
    );
    let (ok, _, err) = cli(&["databases", "update", &did, "--sync-interval", "5"], "");
    assert!(!ok && err.contains("minSyncInterval"), "{err}");
    let (ok, out, err) = cli(
        &[
            "databases",
            "update",
            &did,
            "--set",
            // Raw on purpose: `--set` takes JSON text, and `days` is left out to get its default.
            r#"{"pauseSchedule": {"pauseAt": "22:00", "resumeAt": "06:00"}}"#,
            "--json",
        ],
        "",
    );
    assert!(ok, "{err}");
    let d: Database = serde_json::from_str(&out).unwrap();
    assert_eq!(d.pause_schedule.map(|p| p.days), Some(vec![]));
    let (ok, _, err) = cli(
        &["databases", "get", "00000000-0000-0000-0000-000000000000"],
        "",
    );
    assert!(!ok && err.contains("not found"), "{err}");
    cp.assert_no_leak(&[&my.password, &pg.password, "also-wrong", "wrong-password"]);
}
