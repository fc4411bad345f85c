//! The real `refract serve` binary over HTTP: every `/v1` route of the foundation (customers,
//! management keys, connections, databases, test-connection), every validation rule (tables),
//! tenant isolation, key expiry and revocation, restart after SIGKILL, and that a source password
//! never shows up in the metadata file, the logs or a response.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{self, ControlPlane};

const PASSWORD: &str = "S3cret-Pa55word-never-logged";

fn conn_body(name: &str) -> Value {
    json!({"name": name, "mysqlHost": "db.internal", "availableSchemas": ["shop", "blog", "crm"],
           "mysqlUser": "reader", "mysqlPassword": PASSWORD})
}

/// A control plane with a second, non-admin customer on the given plan.
fn with_customer(cp: &ControlPlane, plan: &str) -> String {
    let (s, v) = cp.admin(
        "POST",
        "/v1/admin/customers",
        Some(json!({"name": format!("cust-{plan}"), "plan": plan})),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["customer"]["plan"], plan);
    assert_eq!(v["customer"]["isAdmin"], false);
    v["managementKey"]["key"].as_str().unwrap().to_string()
}

fn create_conn(cp: &ControlPlane, token: &str, body: Value) -> Value {
    let (s, v) = cp.call("POST", "/v1/connections", Some(token), Some(body));
    assert_eq!(s, 201, "{v}");
    v
}

fn register(cp: &ControlPlane, token: &str, conn: &str, name: &str, db: &str) -> Value {
    let (s, v) = cp.call(
        "POST",
        "/v1/databases",
        Some(token),
        Some(json!({"connectionId": conn, "name": name, "mysqlDb": db})),
    );
    assert_eq!(s, 201, "{v}");
    v
}

#[test]
fn connections_crud_defaults_and_transactional_create() {
    let cp = ControlPlane::start_fresh();
    // Defaults of seed 001 and the spec.
    let v = create_conn(&cp, &cp.admin_key, conn_body("main"));
    let c = &v["connection"];
    assert_eq!(c["backend"], "mysql");
    assert_eq!(c["mysqlPort"], 3306);
    assert_eq!(c["allowedSyncModes"], json!(["poll"]));
    assert_eq!(c["minSyncInterval"], 30);
    assert_eq!(v["database"], Value::Null);
    assert!(c.get("mysqlPassword").is_none());
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
        assert!(c.get(f).is_some(), "{f} missing: {c}");
    }
    assert!(c["createdAt"].as_str().unwrap().ends_with('Z'));
    let id = c["id"].as_str().unwrap().to_string();

    let mut pg = conn_body("pg");
    pg["backend"] = json!("postgres");
    pg["syncMode"] = json!("logical");
    pg["syncInterval"] = json!(60);
    pg["instance"] = json!({"name": "first", "mysqlDb": "shop", "instanceSize": "small", "logLevel": "debug", "binlogServerId": 7});
    let v = create_conn(&cp, &cp.admin_key, pg);
    assert_eq!(v["connection"]["mysqlPort"], 5432);
    assert_eq!(
        v["connection"]["allowedSyncModes"],
        json!(["poll", "logical"])
    );
    let d = &v["database"];
    assert_eq!(d["status"], "registered");
    assert_eq!(
        d["syncMode"], "logical",
        "a database starts with the connection's sync mode"
    );
    assert_eq!(d["syncInterval"], 60);
    assert_eq!(
        (d["taskCpu"].as_i64(), d["taskMemoryMb"].as_i64()),
        (Some(512), Some(1024))
    );
    assert_eq!(d["logLevel"], "debug");
    assert_eq!(d["region"], "local");
    assert_eq!(d["binlogServerId"], 7);
    assert_eq!(d["tags"], json!([]));
    assert_eq!(d["pauseSchedule"], Value::Null);
    let pg_id = v["connection"]["id"].as_str().unwrap().to_string();

    // The instance part failing writes nothing, not even the connection.
    let mut bad = conn_body("atomic");
    bad["instance"] = json!({"name": "x", "mysqlDb": "not-there"});
    let (s, e) = cp.admin("POST", "/v1/connections", Some(bad));
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("invalid_request")),
        "{e}"
    );
    assert!(
        e["message"].as_str().unwrap().contains("instance.mysqlDb"),
        "{e}"
    );
    let (_, list) = cp.admin("GET", "/v1/connections", None);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["main", "pg"]);

    // GET one with its databases.
    let (s, one) = cp.admin("GET", &format!("/v1/connections/{pg_id}"), None);
    assert_eq!(s, 200);
    assert_eq!(one["databases"].as_array().unwrap().len(), 1);
    assert_eq!(one["name"], "pg");

    // PATCH.
    let (s, p) = cp.admin(
        "PATCH",
        &format!("/v1/connections/{id}"),
        Some(json!({"name": "main2", "mysqlPort": 3307, "availableSchemas": ["shop", "blog"], "syncMode": "binlog", "syncInterval": 10, "mysqlPassword": "new-pw-also-secret"})),
    );
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["name"], "main2");
    assert_eq!(p["mysqlPort"], 3307);
    assert_eq!(p["allowedSyncModes"], json!(["poll", "binlog"]));
    assert_eq!(p["minSyncInterval"], 10);

    // Schemas in use cannot be removed; the 409 names the database.
    let (s, e) = cp.admin(
        "PATCH",
        &format!("/v1/connections/{pg_id}"),
        Some(json!({"availableSchemas": ["blog"]})),
    );
    assert_eq!((s, e["error"].as_str()), (409, Some("conflict")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("first"), "{e}");

    // DELETE: 409 while databases reference it; 204 after they are deleted.
    let (s, e) = cp.admin("DELETE", &format!("/v1/connections/{pg_id}"), None);
    assert_eq!((s, e["error"].as_str()), (409, Some("conflict")), "{e}");
    let db_id = d["id"].as_str().unwrap();
    let (s, _) = cp.admin("DELETE", &format!("/v1/databases/{db_id}"), None);
    assert_eq!(s, 204);
    let (s, _) = cp.admin("DELETE", &format!("/v1/connections/{pg_id}"), None);
    assert_eq!(s, 204);
    let (s, e) = cp.admin("GET", &format!("/v1/connections/{pg_id}"), None);
    assert_eq!((s, e["error"].as_str()), (404, Some("not_found")));
    cp.assert_no_leak(&[PASSWORD, "new-pw-also-secret"]);
}

#[test]
fn connection_validation_rules() {
    let cp = ControlPlane::start_fresh();
    create_conn(&cp, &cp.admin_key, conn_body("taken"));
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
            400,
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
            400,
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
            400,
            "invalid_request",
            "syncMode",
        ),
        (
            json!({"syncMode": "cdc"}),
            400,
            "invalid_request",
            "syncMode",
        ),
        (
            json!({"backend": "postgres", "syncMode": "binlog"}),
            400,
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
            400,
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
        let (s, e) = cp.admin("POST", "/v1/connections", Some(body));
        assert_eq!(s, status, "{change}: {e}");
        assert_eq!(e["error"], code, "{change}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{change}: message should name {needle}: {e}"
        );
    }
    // Missing required fields and malformed JSON.
    for (raw, needle) in [
        ("{\"name\": \"a\"}", "mysqlHost"),
        ("{\"name\": ", "malformed JSON"),
        ("[1]", ""),
        ("", "JSON"),
    ] {
        let (s, e) = cp.raw("POST", "/v1/connections", Some(&cp.admin_key), raw);
        assert_eq!(
            (s, e["error"].as_str()),
            (400, Some("invalid_request")),
            "{raw}: {e}"
        );
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{raw}: {e}"
        );
    }
    // Nothing of the failed requests was written.
    let (_, list) = cp.admin("GET", "/v1/connections", None);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, dbs) = cp.admin("GET", "/v1/databases", None);
    assert_eq!(dbs, json!([]));

    // sqlite: a file path, no user/password, schemas ["main"].
    let v = create_conn(
        &cp,
        &cp.admin_key,
        json!({"name": "lite", "backend": "sqlite", "mysqlHost": cp.sqlite_root().join("x.db").to_str().unwrap()}),
    );
    assert_eq!(v["connection"]["availableSchemas"], json!(["main"]));
    assert_eq!(v["connection"]["mysqlPort"], Value::Null);
    let (s, e) = cp.admin("POST", "/v1/connections", Some(json!({"name": "lite2", "backend": "sqlite", "mysqlHost": "/x", "availableSchemas": ["other"]})));
    assert_eq!(s, 400, "{e}");

    // PATCH rules.
    let id = create_conn(&cp, &cp.admin_key, conn_body("patchme"))["connection"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"name": ""}), 400, "name"),
        (json!({"name": "taken"}), 409, "taken"),
        (json!({"mysqlPort": 70000}), 400, "mysqlPort"),
        (json!({"availableSchemas": []}), 400, "availableSchemas"),
        (json!({"syncInterval": 1}), 400, "syncInterval"),
        (json!({"syncMode": "logical"}), 400, "syncMode"),
        (json!({"backend": "postgres"}), 400, "backend"),
        (json!({"mysqlPassword": ""}), 400, "mysqlPassword"),
    ];
    for (body, status, needle) in cases {
        let (s, e) = cp.admin(
            "PATCH",
            &format!("/v1/connections/{id}"),
            Some(body.clone()),
        );
        assert_eq!(s, status, "{body}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{body}: {e}"
        );
    }
}

#[test]
fn database_register_update_delete_and_rules() {
    let cp = ControlPlane::start_fresh();
    let k = &cp.admin_key;
    let c = create_conn(&cp, k, conn_body("src"))["connection"].clone();
    let cid = c["id"].as_str().unwrap();
    let d = register(&cp, k, cid, "orders", "shop");
    assert_eq!(d["instanceSize"], "nano");
    assert_eq!(d["logLevel"], "info");
    assert_eq!(d["syncMode"], "poll");
    assert_eq!(d["syncInterval"], 30);
    assert_eq!(d["hasPendingChanges"], false);
    assert_eq!(d["desiredState"], Value::Null);
    let did = d["id"].as_str().unwrap().to_string();

    let post = |body: Value| cp.call("POST", "/v1/databases", Some(k), Some(body));
    let base = json!({"connectionId": cid, "name": "n2", "mysqlDb": "blog"});
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (json!({"name": "orders"}), 409, "conflict", "orders"),
        (json!({"name": ""}), 400, "invalid_request", "name"),
        (
            json!({"mysqlDb": "nope"}),
            400,
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
        let (s, e) = post(body);
        assert_eq!(
            (s, e["error"].as_str()),
            (status, Some(code)),
            "{change}: {e}"
        );
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{change}: {e}"
        );
    }
    // binlogServerId unique per source host+port, across connections to the same server.
    let mut b = base.clone();
    b["binlogServerId"] = json!(42);
    assert_eq!(post(b.clone()).0, 201);
    let other = create_conn(&cp, k, conn_body("same-server"))["connection"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, e) =
        post(json!({"connectionId": other, "name": "x", "mysqlDb": "shop", "binlogServerId": 42}));
    assert_eq!((s, e["error"].as_str()), (409, Some("conflict")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("binlogServerId"));
    let mut elsewhere = conn_body("other-server");
    elsewhere["mysqlPort"] = json!(3310);
    let oid = create_conn(&cp, k, elsewhere)["connection"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        post(json!({"connectionId": oid, "name": "x", "mysqlDb": "shop", "binlogServerId": 42})).0,
        201
    );

    // PATCH: good changes.
    let url = format!("/v1/databases/{did}");
    let (s, u) = cp.admin(
        "PATCH",
        &url,
        Some(json!({"name": "orders2", "mysqlDb": "crm", "instanceSize": "large", "logLevel": "warn", "binlogServerId": 9,
                    "buildComputeOverride": "medium", "reflexdbCustomDomain": "orders-eu",
                    "pauseSchedule": {"pauseAt": "22:00", "resumeAt": "06:30", "days": [1, 2, 3]},
                    "tags": [{"label": "prod", "color": "red"}, {"label": "eu", "color": "blue"}],
                    "syncInterval": 45, "safetyNet": 600})),
    );
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["name"], "orders2");
    assert_eq!(u["mysqlDb"], "crm");
    assert_eq!(
        (u["taskCpu"].as_i64(), u["taskMemoryMb"].as_i64()),
        (Some(2048), Some(4096))
    );
    assert_eq!(u["reflexdbCustomDomain"], "orders-eu");
    assert_eq!(u["pauseSchedule"]["resumeAt"], "06:30");
    assert_eq!(u["safetyNet"], 600);
    assert_eq!(
        u["hasPendingChanges"], false,
        "never deployed, so nothing is pending"
    );
    // null clears nullable fields; absent leaves them.
    let (_, u) = cp.admin(
        "PATCH",
        &url,
        Some(json!({"pauseSchedule": null, "binlogServerId": null})),
    );
    assert_eq!(u["pauseSchedule"], Value::Null);
    assert_eq!(u["binlogServerId"], Value::Null);
    assert_eq!(u["reflexdbCustomDomain"], "orders-eu");

    // PATCH rules (table).
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (json!({"name": "n2"}), 409, "conflict", "n2"),
        (
            json!({"mysqlDb": "nope"}),
            400,
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
            400,
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
            400,
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
        let (s, e) = cp.admin("PATCH", &url, Some(body.clone()));
        assert_eq!(
            (s, e["error"].as_str()),
            (status, Some(code)),
            "{body}: {e}"
        );
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{body}: {e}"
        );
    }
    // The custom domain is unique.
    let n2 = cp
        .admin("GET", &format!("/v1/databases?connectionId={cid}"), None)
        .1;
    let n2_id = n2
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "n2")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, e) = cp.admin(
        "PATCH",
        &format!("/v1/databases/{n2_id}"),
        Some(json!({"reflexdbCustomDomain": "orders-eu"})),
    );
    assert_eq!((s, e["error"].as_str()), (409, Some("conflict")), "{e}");
    // syncMode/syncInterval follow the connection: allow binlog there, then it is accepted.
    cp.admin(
        "PATCH",
        &format!("/v1/connections/{cid}"),
        Some(json!({"syncMode": "binlog"})),
    );
    let (s, u) = cp.admin("PATCH", &url, Some(json!({"syncMode": "binlog"})));
    assert_eq!((s, u["syncMode"].as_str()), (200, Some("binlog")), "{u}");
    // Dropping binlog from the connection while a database uses it: 409 naming it.
    let (s, e) = cp.admin(
        "PATCH",
        &format!("/v1/connections/{cid}"),
        Some(json!({"syncMode": "poll"})),
    );
    assert_eq!(s, 409, "{e}");
    assert!(e["message"].as_str().unwrap().contains("orders2"), "{e}");

    // Filters.
    cp.admin(
        "PATCH",
        &format!("/v1/databases/{n2_id}"),
        Some(json!({"tags": [{"label": "staging", "color": "gray"}]})),
    );
    let names = |q: &str| -> Vec<String> {
        let (s, v) = cp.admin("GET", &format!("/v1/databases{q}"), None);
        assert_eq!(s, 200, "{q}: {v}");
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(""), ["orders2", "n2", "x"]);
    assert_eq!(names(&format!("?connectionId={cid}")), ["orders2", "n2"]);
    assert_eq!(names("?tag=prod"), ["orders2"]);
    assert_eq!(names("?tag=staging"), ["n2"]);
    assert_eq!(names("?status=registered").len(), 3);
    assert!(names("?status=running").is_empty());
    let (s, e) = cp.admin("GET", "/v1/databases?status=bogus", None);
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_request")));

    // Soft delete frees the name; the deleted one is gone from lists and GET.
    let (s, _) = cp.admin("DELETE", &url, None);
    assert_eq!(s, 204);
    let (s, _) = cp.admin("GET", &url, None);
    assert_eq!(s, 404);
    let (s, _) = cp.admin("DELETE", &url, None);
    assert_eq!(s, 404);
    register(&cp, k, cid, "orders2", "shop");
    // The freed custom domain can be taken again.
    let (s, e) = cp.admin(
        "PATCH",
        &format!("/v1/databases/{n2_id}"),
        Some(json!({"reflexdbCustomDomain": "orders-eu"})),
    );
    assert_eq!(s, 200, "{e}");
    // Unknown and malformed ids are 404.
    for p in [
        "/v1/databases/00000000-0000-0000-0000-000000000000",
        "/v1/databases/nope",
        "/v1/connections/nope",
    ] {
        let (s, e) = cp.admin("GET", p, None);
        assert_eq!((s, e["error"].as_str()), (404, Some("not_found")), "{p}");
    }
}

#[test]
fn delete_is_refused_outside_the_action_matrix() {
    let cp = ControlPlane::start_fresh();
    let cid = create_conn(&cp, &cp.admin_key, conn_body("src"))["connection"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let did = register(&cp, &cp.admin_key, &cid, "db", "shop")["id"]
        .as_str()
        .unwrap()
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
    conn.execute("UPDATE databases SET deployed_config = ?2 WHERE id = ?1", [&did, &json!({"instanceSize": "nano", "taskCpu": 256, "taskMemoryMb": 512, "syncMode": "poll", "syncInterval": 30, "logLevel": "info", "safetyNet": 3600, "binlogServerId": null}).to_string()]).unwrap();
    drop(conn);
    let cp = cp.restart();
    let (s, e) = cp.admin("DELETE", &format!("/v1/databases/{did}"), None);
    assert_eq!(
        (s, e["error"].as_str()),
        (409, Some("action_not_allowed")),
        "{e}"
    );
    assert!(e["message"].as_str().unwrap().contains("paused"), "{e}");
    // mysqlDb cannot change while paused (only registered, failed, stopped, terminated).
    let (s, e) = cp.admin(
        "PATCH",
        &format!("/v1/databases/{did}"),
        Some(json!({"mysqlDb": "blog"})),
    );
    assert_eq!((s, e["error"].as_str()), (409, Some("conflict")), "{e}");
    // A runtime setting change on a deployed database marks pending changes; reverting clears it.
    let (_, u) = cp.admin(
        "PATCH",
        &format!("/v1/databases/{did}"),
        Some(json!({"logLevel": "debug"})),
    );
    assert_eq!(u["hasPendingChanges"], true, "{u}");
    let (_, u) = cp.admin(
        "PATCH",
        &format!("/v1/databases/{did}"),
        Some(json!({"logLevel": "info", "tags": [{"label": "t", "color": "teal"}]})),
    );
    assert_eq!(u["hasPendingChanges"], false, "{u}");
}

#[test]
fn tenants_are_isolated_and_admin_routes_need_admin() {
    let cp = ControlPlane::start_fresh();
    let a = with_customer(&cp, "enterprise");
    let b = with_customer(&cp, "pro");
    let ca = create_conn(&cp, &a, conn_body("a-conn"))["connection"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let da = register(&cp, &a, &ca, "a-db", "shop")["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Same names are fine in another account.
    let cb = create_conn(&cp, &b, conn_body("a-conn"))["connection"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (m, p, body) in [
        ("GET", format!("/v1/connections/{ca}"), None),
        (
            "PATCH",
            format!("/v1/connections/{ca}"),
            Some(json!({"name": "stolen"})),
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
            Some(json!({"name": "stolen"})),
        ),
        ("DELETE", format!("/v1/databases/{da}"), None),
    ] {
        let (s, e) = cp.call(m, &p, Some(&b), body);
        assert_eq!(
            (s, e["error"].as_str()),
            (404, Some("not_found")),
            "{m} {p}: {e}"
        );
    }
    // Registering on another customer's connection: 404.
    let (s, _) = cp.call(
        "POST",
        "/v1/databases",
        Some(&b),
        Some(json!({"connectionId": ca, "name": "x", "mysqlDb": "shop"})),
    );
    assert_eq!(s, 404);
    let (_, l) = cp.call("GET", "/v1/databases", Some(&b), None);
    assert_eq!(l, json!([]));
    let (_, l) = cp.call("GET", "/v1/connections", Some(&b), None);
    assert_eq!(l.as_array().unwrap().len(), 1);
    assert_eq!(l[0]["id"], cb.as_str());
    // Another customer's key id cannot be revoked.
    let (_, keys_a) = cp.call("GET", "/v1/account/management-keys", Some(&a), None);
    let ka = keys_a[0]["id"].as_str().unwrap();
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
            Some(json!({"name": "x"})),
        ),
        (
            "PATCH",
            format!(
                "/v1/admin/customers/{}/plan",
                keys_a[0]["customerId"].as_str().unwrap()
            ),
            Some(json!({"plan": "free"})),
        ),
    ] {
        let (s, e) = cp.call(m, &p, Some(&b), body);
        assert_eq!(
            (s, e["error"].as_str()),
            (403, Some("forbidden")),
            "{m} {p}: {e}"
        );
    }
    let (s, list) = cp.admin("GET", "/v1/admin/customers", None);
    assert_eq!(s, 200);
    let plans: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["plan"].as_str().unwrap())
        .collect();
    assert_eq!(plans, ["enterprise", "enterprise", "pro"], "admin first");
    assert_eq!(list[0]["isAdmin"], true);
    let (s, e) = cp.admin(
        "POST",
        "/v1/admin/customers",
        Some(json!({"name": "x", "plan": "platinum"})),
    );
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("invalid_request")),
        "{e}"
    );
    let (s, e) = cp.admin(
        "PATCH",
        "/v1/admin/customers/00000000-0000-0000-0000-000000000000/plan",
        Some(json!({"plan": "pro"})),
    );
    assert_eq!(s, 404, "{e}");
}

#[test]
fn plan_limits_are_enforced() {
    let cp = ControlPlane::start_fresh();
    let free = with_customer(&cp, "free");
    let cid = create_conn(&cp, &free, conn_body("c"))["connection"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Size above the plan's largest.
    let (s, e) = cp.call("POST", "/v1/databases", Some(&free), Some(json!({"connectionId": cid, "name": "big", "mysqlDb": "shop", "instanceSize": "xlarge"})));
    assert_eq!((s, e["error"].as_str()), (403, Some("forbidden")), "{e}");
    let d1 = register(&cp, &free, &cid, "d1", "shop");
    register(&cp, &free, &cid, "d2", "blog");
    // Database count.
    let (s, e) = cp.call(
        "POST",
        "/v1/databases",
        Some(&free),
        Some(json!({"connectionId": cid, "name": "d3", "mysqlDb": "crm"})),
    );
    assert_eq!((s, e["error"].as_str()), (403, Some("forbidden")), "{e}");
    // Also through a connection's instance, which then writes nothing.
    let mut body = conn_body("c2");
    body["instance"] = json!({"name": "d3", "mysqlDb": "shop"});
    let (s, _) = cp.call("POST", "/v1/connections", Some(&free), Some(body));
    assert_eq!(s, 403);
    assert_eq!(
        cp.call("GET", "/v1/connections", Some(&free), None)
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Custom domains need teams.
    let url = format!("/v1/databases/{}", d1["id"].as_str().unwrap());
    let (s, e) = cp.call(
        "PATCH",
        &url,
        Some(&free),
        Some(json!({"reflexdbCustomDomain": "mine"})),
    );
    assert_eq!((s, e["error"].as_str()), (403, Some("forbidden")), "{e}");
    let (s, e) = cp.call(
        "PATCH",
        &url,
        Some(&free),
        Some(json!({"instanceSize": "2xlarge"})),
    );
    assert_eq!(s, 403, "{e}");
    // An admin upgrades the plan: both work now.
    let (_, me) = cp.call("GET", "/v1/account/management-keys", Some(&free), None);
    let customer = me[0]["customerId"].as_str().unwrap();
    let (s, p) = cp.admin(
        "PATCH",
        &format!("/v1/admin/customers/{customer}/plan"),
        Some(json!({"plan": "teams"})),
    );
    assert_eq!((s, p["plan"].as_str()), (200, Some("teams")));
    let (s, e) = cp.call(
        "PATCH",
        &url,
        Some(&free),
        Some(json!({"reflexdbCustomDomain": "mine"})),
    );
    assert_eq!(s, 200, "{e}");
    let (s, _) = cp.call(
        "POST",
        "/v1/databases",
        Some(&free),
        Some(json!({"connectionId": cid, "name": "d3", "mysqlDb": "crm"})),
    );
    assert_eq!(s, 201);
}

#[test]
fn management_keys_create_list_revoke_expire() {
    let cp = ControlPlane::start_fresh();
    let (s, k) = cp.admin(
        "POST",
        "/v1/account/management-keys",
        Some(json!({"name": "ci"})),
    );
    assert_eq!(s, 201, "{k}");
    let key = k["key"].as_str().unwrap().to_string();
    let key_id = k["keyId"].as_str().unwrap();
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
        assert!(k.get(f).is_some(), "{f}: {k}");
    }
    assert_eq!(k["lastUsedAt"], Value::Null);
    // The new key works; lastUsedAt is then set.
    let (s, list) = cp.call("GET", "/v1/account/management-keys", Some(&key), None);
    assert_eq!(s, 200);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("key").is_none()),
        "list never shows keys: {list}"
    );
    let (_, list) = cp.admin("GET", "/v1/account/management-keys", None);
    let me = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["keyId"] == key_id)
        .unwrap();
    assert!(me["lastUsedAt"].is_string(), "{me}");
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
        assert_eq!((s, e["error"].as_str()), (401, Some("unauthorized")), "{t}");
    }
    let (s, _) = cp.call("GET", "/v1/connections", None, None);
    assert_eq!(s, 401);

    // Revocation is immediate.
    let id = k["id"].as_str().unwrap();
    let (s, r) = cp.admin("DELETE", &format!("/v1/account/management-keys/{id}"), None);
    assert_eq!(s, 200);
    assert!(r["revokedAt"].is_string());
    let (s, _) = cp.call("GET", "/v1/connections", Some(&key), None);
    assert_eq!(s, 401);

    // Expiry.
    let (s, e) = cp.admin(
        "POST",
        "/v1/account/management-keys",
        Some(json!({"name": "old", "expiresAt": "2020-01-01T00:00:00Z"})),
    );
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("invalid_request")),
        "{e}"
    );
    assert!(e["message"].as_str().unwrap().contains("expiresAt"));
    let (s, e) = cp.admin(
        "POST",
        "/v1/account/management-keys",
        Some(json!({"name": "bad", "expiresAt": "tomorrow"})),
    );
    assert_eq!(s, 400, "{e}");
    let (s, e) = cp.admin(
        "POST",
        "/v1/account/management-keys",
        Some(json!({"name": ""})),
    );
    assert_eq!(s, 400, "{e}");
    let soon = (chrono_now_plus(2)).to_string();
    let (s, k2) = cp.admin(
        "POST",
        "/v1/account/management-keys",
        Some(json!({"name": "short", "expiresAt": soon})),
    );
    assert_eq!(s, 201, "{k2}");
    let k2 = k2["key"].as_str().unwrap().to_string();
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

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn restart_after_sigkill_keeps_every_record_and_no_password_leaks() {
    let cp = ControlPlane::start_fresh();
    let other = with_customer(&cp, "pro");
    let (_, k) = cp.admin(
        "POST",
        "/v1/account/management-keys",
        Some(json!({"name": "kept"})),
    );
    let extra_key = k["key"].as_str().unwrap().to_string();
    let mut body = conn_body("persisted");
    body["instance"] = json!({"name": "db1", "mysqlDb": "shop", "binlogServerId": 3});
    let v = create_conn(&cp, &cp.admin_key, body);
    let cid = v["connection"]["id"].as_str().unwrap().to_string();
    let did = v["database"]["id"].as_str().unwrap().to_string();
    cp.admin(
        "PATCH",
        &format!("/v1/databases/{did}"),
        Some(json!({"tags": [{"label": "keep", "color": "green"}]})),
    );
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
    let (s, t) = cp.admin(
        "POST",
        &format!("/v1/connections/{cid}/test-connection"),
        None,
    );
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["ok"], false);

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
    create_conn(&cp, &cp.admin_key, conn_body("c"));
    assert!(
        !cp.dir.join("master.key").exists(),
        "no key file when REFRACT_MASTER_KEY is set"
    );
    let (dir, data) = cp.stop_keep_dir();
    // A different key cannot open the secret store: refuse to start rather than lose secrets.
    let out = std::process::Command::new(common::refract_bin())
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
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
    let (s, h) = cp.call("GET", "/health", None, None);
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")));
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
    let (s, e) = cp.call("GET", "/v1/nothing-here", None, None);
    assert_eq!((s, e["error"].as_str()), (404, Some("not_found")));
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
    let v: Value = serde_json::from_str(&out).unwrap();
    let cid = v["connection"]["id"].as_str().unwrap().to_string();
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
    let dbs: Value = serde_json::from_str(&out).unwrap();
    let did = dbs[0]["id"].as_str().unwrap().to_string();
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
    let k: Value = serde_json::from_str(&out).unwrap();
    assert!(k["key"].as_str().unwrap().starts_with("rmk_"));
    let (ok, out, _) = cli(&["keys", "list"]);
    assert!(ok && out.contains("from-cli"), "{out}");
    let (ok, out, _) = cli(&["keys", "revoke", k["id"].as_str().unwrap()]);
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

fn test_conn(cp: &ControlPlane, body: Value) -> Value {
    let start = std::time::Instant::now();
    let (s, v) = cp.admin("POST", "/v1/connections/test-connection", Some(body));
    assert_eq!(s, 200, "{v}");
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "bounded by the 5 s timeout"
    );
    v
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
        json!({"backend": "mysql", "mysqlHost": my.host, "mysqlPort": my.port, "mysqlUser": my.user, "mysqlPassword": my.password}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    assert!(ok["latencyMs"].is_number(), "{ok}");
    let schemas = ok["availableSchemas"].as_array().expect("availableSchemas");
    assert!(
        !schemas
            .iter()
            .any(|s| s == "mysql" || s == "information_schema" || s == "performance_schema"),
        "{ok}"
    );
    assert!(ok["binlog"].is_object(), "{ok}");
    let bad = test_conn(
        &cp,
        json!({"mysqlHost": my.host, "mysqlPort": my.port, "mysqlUser": my.user, "mysqlPassword": "wrong-password"}),
    );
    assert_eq!(bad["ok"], false, "{bad}");
    assert!(
        bad["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{bad}"
    );
    let down = test_conn(
        &cp,
        json!({"mysqlHost": "127.0.0.1", "mysqlPort": unused_port(), "mysqlUser": "x", "mysqlPassword": "y"}),
    );
    assert_eq!(down["ok"], false, "{down}");
    // Stored credentials.
    let c = create_conn(
        &cp,
        &cp.admin_key,
        json!({"name": "maria", "mysqlHost": my.host, "mysqlPort": my.port, "availableSchemas": ["x"], "mysqlUser": my.user, "mysqlPassword": my.password}),
    );
    let (s, t) = cp.admin(
        "POST",
        &format!(
            "/v1/connections/{}/test-connection",
            c["connection"]["id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!((s, t["ok"].as_bool()), (200, Some(true)), "{t}");
    cp.assert_no_leak(&[&my.password, "wrong-password"]);
}

#[test]
fn test_connection_postgres() {
    let pg = common::postgres();
    let cp = ControlPlane::start_fresh();
    let ok = test_conn(
        &cp,
        json!({"backend": "postgres", "mysqlHost": pg.host, "mysqlPort": pg.port, "mysqlUser": pg.user, "mysqlPassword": pg.password}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    assert!(ok["logical"].is_object(), "{ok}");
    let bad = test_conn(
        &cp,
        json!({"backend": "postgres", "mysqlHost": pg.host, "mysqlPort": pg.port, "mysqlUser": pg.user, "mysqlPassword": "wrong-password"}),
    );
    assert_eq!(bad["ok"], false, "{bad}");
    let down = test_conn(
        &cp,
        json!({"backend": "postgres", "mysqlHost": "127.0.0.1", "mysqlPort": unused_port(), "mysqlUser": "x", "mysqlPassword": "y"}),
    );
    assert_eq!(down["ok"], false, "{down}");
    let c = create_conn(
        &cp,
        &cp.admin_key,
        json!({"name": "pg", "backend": "postgres", "mysqlHost": pg.host, "mysqlPort": pg.port, "availableSchemas": ["postgres"], "mysqlUser": pg.user, "mysqlPassword": pg.password}),
    );
    let (s, t) = cp.admin(
        "POST",
        &format!(
            "/v1/connections/{}/test-connection",
            c["connection"]["id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!((s, t["ok"].as_bool()), (200, Some(true)), "{t}");
    cp.assert_no_leak(&[&pg.password, "wrong-password"]);
}

#[test]
fn name_lengths_and_instance_rules() {
    let cp = ControlPlane::start_fresh();
    let k = &cp.admin_key;
    let cid = create_conn(&cp, k, conn_body("c"))["connection"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // 100 characters (not bytes) are fine, 101 are not: database names too.
    let long = "é".repeat(100);
    let (s, d) = cp.admin(
        "POST",
        "/v1/databases",
        Some(json!({"connectionId": cid, "name": long, "mysqlDb": "shop"})),
    );
    assert_eq!(s, 201, "{d}");
    let (s, e) = cp.admin(
        "POST",
        "/v1/databases",
        Some(json!({"connectionId": cid, "name": "x".repeat(101), "mysqlDb": "shop"})),
    );
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("invalid_request")),
        "{e}"
    );
    assert!(e["message"].as_str().unwrap().contains("name"), "{e}");
    let (s, e) = cp.admin(
        "PATCH",
        &format!("/v1/databases/{}", d["id"].as_str().unwrap()),
        Some(json!({"name": "y".repeat(101)})),
    );
    assert_eq!(s, 400, "{e}");
    let (s, e) = cp.admin(
        "PATCH",
        &format!("/v1/connections/{cid}"),
        Some(json!({"name": "y".repeat(101)})),
    );
    assert_eq!(s, 400, "{e}");
    let mut body = conn_body("c2");
    body["instance"] = json!({"name": "z".repeat(101), "mysqlDb": "shop"});
    let (s, e) = cp.admin("POST", "/v1/connections", Some(body));
    assert_eq!(s, 400, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("instance.name"),
        "{e}"
    );
    // The instance's binlogServerId is checked against the source like any other.
    let (s, _) = cp.admin(
        "PATCH",
        &format!("/v1/databases/{}", d["id"].as_str().unwrap()),
        Some(json!({"binlogServerId": 5})),
    );
    assert_eq!(s, 200);
    let mut body = conn_body("c3");
    body["instance"] = json!({"name": "dup-sid", "mysqlDb": "shop", "binlogServerId": 5});
    let (s, e) = cp.admin("POST", "/v1/connections", Some(body));
    assert_eq!((s, e["error"].as_str()), (409, Some("conflict")), "{e}");
    // Missing instance fields.
    let mut body = conn_body("c4");
    body["instance"] = json!({"name": "d"});
    let (s, e) = cp.admin("POST", "/v1/connections", Some(body));
    assert_eq!(s, 400, "{e}");
    assert!(e["message"].as_str().unwrap().contains("mysqlDb"), "{e}");
    // None of the failed creates left a connection behind.
    let (_, list) = cp.admin("GET", "/v1/connections", None);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    cp.assert_no_leak(&[PASSWORD]);
}

#[test]
fn bad_requests_never_break_the_server() {
    let cp = ControlPlane::start_fresh();
    let k = cp.admin_key.clone();
    let cid = create_conn(&cp, &k, conn_body("c"))["connection"]["id"]
        .as_str()
        .unwrap()
        .to_string();
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
    let did = register(&cp, &k, &cid, "d", "shop")["id"]
        .as_str()
        .unwrap()
        .to_string();
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
                assert!(
                    e["error"].is_string() && e["message"].is_string(),
                    "{m} {p} {b}: {e}"
                );
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
            assert!(
                e["error"].is_string() && e["message"].is_string(),
                "{p}: {e}"
            );
        }
    }
    let (s, h) = cp.call("GET", "/health", None, None);
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")));
    let (_, list) = cp.admin("GET", "/v1/connections", None);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
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
    let c: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        c["connection"]["allowedSyncModes"],
        json!(["poll", "binlog"])
    );
    let cid = c["connection"]["id"].as_str().unwrap().to_string();
    let (ok, out, err) = cli(&["connections", "test", &cid, "--json"], "");
    assert!(ok, "{out}{err}");
    let t: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(t["ok"], true, "{t}");
    assert!(t["binlog"]["issues"].is_array(), "{t}");
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
    let t: Value = serde_json::from_str(&out).unwrap();
    assert!(t["logical"]["walLevel"].is_string(), "{t}");
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
    let did = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
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
            r#"{"pauseSchedule": {"pauseAt": "22:00", "resumeAt": "06:00"}}"#,
            "--json",
        ],
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["pauseSchedule"]["days"],
        json!([])
    );
    let (ok, _, err) = cli(
        &["databases", "get", "00000000-0000-0000-0000-000000000000"],
        "",
    );
    assert!(!ok && err.contains("not found"), "{err}");
    cp.assert_no_leak(&[&my.password, &pg.password, "also-wrong", "wrong-password"]);
}
