//! Backups and restores on real servers: PostgreSQL and MySQL (MariaDB) point-in-time restore to
//! a second between two batches (exactly the rows committed before it), Redis snapshot + restore, and every refusal
//! (outside the window, unknown backup, another customer's source, full backup storage) as a
//! clear `{error, message}` plus an event.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use chrono::{DateTime, SecondsFormat, Utc};
use refract_managed::DbType;
use serde_json::{json, Value};

use crate::harness::{Harness, Options, KEY_A, KEY_B};

fn pg_body(name: &str) -> Value {
    json!({"name": name, "db_type": "postgresql", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1", "storage_gb": 5})
}

fn fmt(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A harness that takes backups; `None` (the test returns) when `db_type` cannot run here.
fn backup_harness(db_type: DbType) -> Option<Harness> {
    let h = Harness::new(Options {
        backups: true,
        ..Options::default()
    });
    h.installed(db_type).then_some(h)
}

/// A 409 answer whose message says `says`.
fn assert_conflict(status: StatusCode, v: &Value, says: &str) {
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(message.contains(says), "{v}");
}

async fn sleep_until(t: DateTime<Utc>) {
    if let Ok(d) = (t - Utc::now()).to_std() {
        tokio::time::sleep(d).await;
    }
}

async fn backups(h: &Harness, id: &str) -> Value {
    let (status, v) = h.get(&format!("/api/v1/databases/{id}/backups")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

fn has_event(list: &Value, kind: &str) -> bool {
    list["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == kind)
}

/// Waits for the scheduler's first backup of `id`: listed once its manifest is stored, finished
/// (event recorded) once no backup is in progress.
async fn first_scheduled_backup(h: &Harness, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let list = backups(h, id).await;
        let first = list["backups"].as_array().unwrap().first();
        if let Some(b) = first.filter(|_| list.get("in_progress_since").is_none()) {
            assert!(has_event(&list, "backup_completed"), "{list}");
            return b.clone();
        }
        assert!(Instant::now() < deadline, "no scheduled backup: {list}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Creates a database from `body` (a restore: `backup_restore` set) and waits until it runs;
/// returns its id.
async fn restore_and_wait(h: &Harness, body: Value) -> String {
    let (status, v) = h.post("/api/v1/databases", body).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    h.wait_status(&id, "running", Duration::from_secs(120))
        .await;
    id
}

async fn batch_counts(tls: &refract_managed::tls::PgTls, url: &str) -> (i64, i64) {
    let c = crate::postgres::connect(tls, url)
        .await
        .expect("log in to the restored server");
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE batch = 1), count(*) FILTER (WHERE batch = 2) FROM items",
            &[],
        )
        .await
        .expect("query items");
    (row.get(0), row.get(1))
}

/// The refusals of a restore from the source `name` (`id`, the caller's only database, whose
/// oldest backup is `first`), each a clear error that creates nothing: `restore_to` before the
/// window or in the future (422), an unknown `backup_created_at` (404), a time that is not RFC
/// 3339 (400), another customer's request (404, also for the list); a `restore_refused` event.
async fn assert_restores_refused(
    h: &Harness,
    restore: &dyn Fn(Value) -> Value,
    name: &str,
    id: &str,
    first: &Value,
    target: DateTime<Utc>,
) {
    let early = fmt(
        DateTime::parse_from_rfc3339(first["created_at"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
            - chrono::TimeDelta::hours(1),
    );
    let future = fmt(Utc::now() + chrono::TimeDelta::hours(1));
    let at_target = fmt(target);
    let window = Some(("invalid_request", "outside the restore window"));
    let cases = [
        (
            KEY_A,
            json!({"database_name": name, "restore_to": early}),
            StatusCode::UNPROCESSABLE_ENTITY,
            window,
        ),
        (
            KEY_A,
            json!({"database_name": id, "restore_to": future}),
            StatusCode::UNPROCESSABLE_ENTITY,
            window,
        ),
        (
            KEY_A,
            json!({"database_name": id, "backup_created_at": "2020-01-01T00:00:00Z"}),
            StatusCode::NOT_FOUND,
            Some(("not_found", "no backup created at")),
        ),
        (
            KEY_A,
            json!({"database_name": id, "restore_to": "yesterday"}),
            StatusCode::BAD_REQUEST,
            None,
        ),
        // Another customer's source.
        (
            KEY_B,
            json!({"database_name": name, "restore_to": at_target}),
            StatusCode::NOT_FOUND,
            Some(("not_found", "")),
        ),
        (
            KEY_B,
            json!({"database_name": id, "restore_to": at_target}),
            StatusCode::NOT_FOUND,
            Some(("not_found", "")),
        ),
    ];
    for (key, backup_restore, want, error) in cases {
        let (status, v) = h
            .call(
                Method::POST,
                "/api/v1/databases",
                Some(key),
                Some(restore(backup_restore.clone())),
            )
            .await;
        assert_eq!(status, want, "{backup_restore}: {v}");
        if let Some((code, message)) = error {
            assert_eq!(v["error"], code, "{backup_restore}: {v}");
            assert!(
                v["message"].as_str().unwrap().contains(message),
                "{backup_restore}: {v}"
            );
        }
    }
    let (status, v) = h
        .call(
            Method::GET,
            &format!("/api/v1/databases/{id}/backups"),
            Some(KEY_B),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert!(has_event(&backups(h, id).await, "restore_refused"));
    let (_, all) = h.get("/api/v1/databases").await;
    assert_eq!(
        all.as_array().unwrap().len(),
        1,
        "a refused restore created nothing: {all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_point_in_time_restore_holds_exactly_the_rows_committed_before_the_second() {
    let Some(h) = backup_harness(DbType::Postgresql) else {
        return;
    };
    let tls = h.service.client_tls();
    let (src, _) = h.create_running(pg_body("pitr-source")).await;
    // The scheduler takes the first base backup of a running server by itself.
    let first = first_scheduled_backup(&h, &src).await;
    // The database's own event list shows it too, beside failovers.
    let (status, events) = h.get(&format!("/api/v1/databases/{src}/events")).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "backup_completed"),
        "{events}"
    );
    assert!(first["size_bytes"].as_u64().unwrap() > 1_000_000, "{first}");
    assert_eq!(first["kind"], "base");
    let url = h.connection_string(&src).await;
    let c = crate::postgres::connect(&tls, &url).await.unwrap();
    c.batch_execute("CREATE TABLE items (id serial PRIMARY KEY, batch int NOT NULL)")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO items (batch) SELECT 1 FROM generate_series(1, 25)")
        .await
        .unwrap();
    // The target: a whole second after batch 1 committed; batch 2 commits a second after it.
    let target = DateTime::<Utc>::from_timestamp(Utc::now().timestamp() + 2, 0).unwrap();
    sleep_until(target + chrono::TimeDelta::milliseconds(1200)).await;
    c.batch_execute("INSERT INTO items (batch) SELECT 2 FROM generate_series(1, 7)")
        .await
        .unwrap();

    // Refusals first: each a clear error, nothing created.
    let restore = |br: Value| {
        let mut b = pg_body("restored");
        b["backup_restore"] = br;
        b
    };
    assert_restores_refused(&h, &restore, "pitr-source", &src, &first, target).await;

    // The restore to the second between the batches.
    let started = Instant::now();
    let new = restore_and_wait(
        &h,
        restore(json!({"database_name": "pitr-source", "restore_to": fmt(target)})),
    )
    .await;
    let took = started.elapsed();
    eprintln!(
        "BENCH postgresql point-in-time restore: {:.2} s",
        took.as_secs_f64()
    );
    let restored_url = h.connection_string(&new).await;
    assert_ne!(restored_url, url);
    assert_eq!(batch_counts(&tls, &restored_url).await, (25, 0));
    assert_eq!(
        batch_counts(&tls, &url).await,
        (25, 7),
        "the source is untouched"
    );
    // The restored server is a normal one: it takes writes, and the source's password is not its.
    let rc = crate::postgres::connect(&tls, &restored_url).await.unwrap();
    rc.batch_execute("INSERT INTO items (batch) VALUES (3)")
        .await
        .unwrap();
    let src_pw = h.password(&src).await;
    let new_pw = h.password(&new).await;
    let wrong = restored_url.replace(&new_pw, &src_pw);
    assert!(
        crate::postgres::connect(&tls, &wrong).await.is_err(),
        "the source's password must not log in"
    );
    let list = backups(&h, &new).await;
    assert!(has_event(&list, "restore_completed"), "{list}");

    // Restoring the base backup itself (no target): the table did not exist yet.
    let at = restore_and_wait(&h, json!({"name": "at-backup", "db_type": "postgresql", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1",
            "backup_restore": {"database_name": src, "backup_created_at": first["created_at"]}})).await;
    let at_url = h.connection_string(&at).await;
    let ac = crate::postgres::connect(&tls, &at_url).await.unwrap();
    let row = ac
        .query_one("SELECT to_regclass('items') IS NULL", &[])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the backup predates the table");

    // Open sessions would hold a PostgreSQL smart shutdown for its whole grace period.
    drop((c, rc, ac));
    for id in [&new, &at, &src] {
        h.delete_and_check_gone(id).await;
    }
}

fn my_body(name: &str) -> Value {
    json!({"name": name, "db_type": "mysql", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1"})
}

/// Rows per batch in `items`, as `[(batch, rows)]` (`None`: no such table).
async fn my_batches(ca: &str, url: &str) -> Option<Vec<(i64, i64)>> {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_async::Conn::new(crate::mariadb::opts(ca, url))
        .await
        .expect("log in to the server");
    let rows: Option<Vec<(i64, i64)>> = conn
        .query("SELECT batch, COUNT(*) FROM items GROUP BY batch ORDER BY batch")
        .await
        .ok();
    let _ = conn.disconnect().await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_point_in_time_restore_holds_exactly_the_rows_committed_before_the_second() {
    use mysql_async::prelude::Queryable;
    let Some(h) = backup_harness(DbType::Mysql) else {
        return;
    };
    let ca = h.service.ca_pem().to_string();
    let (src, _) = h.create_running(my_body("pitr-my")).await;
    let first = first_scheduled_backup(&h, &src).await;
    assert_eq!(first["kind"], "base", "{first}");
    assert!(first["size_bytes"].as_u64().unwrap() > 1_000_000, "{first}");
    let listed = backups(&h, &src).await;
    assert_eq!(
        listed["restore_window"]["earliest"], first["created_at"],
        "{listed}"
    );

    let url = h.connection_string(&src).await;
    let mut c = mysql_async::Conn::new(crate::mariadb::opts(&ca, &url))
        .await
        .unwrap();
    c.query_drop(
        "CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, batch INT NOT NULL) ENGINE=InnoDB",
    )
    .await
    .unwrap();
    let insert = |batch: u32, n: usize| {
        format!(
            "INSERT INTO items (batch) VALUES {}",
            vec![format!("({batch})"); n].join(",")
        )
    };
    c.query_drop(insert(1, 25)).await.unwrap();
    // The target: a whole second after batch 1 committed; batch 2 commits a second after it.
    // The second's edges: batch 4 commits 300 ms before it (in), batch 5 300 ms after (out).
    let target = DateTime::<Utc>::from_timestamp(Utc::now().timestamp() + 2, 0).unwrap();
    sleep_until(target - chrono::TimeDelta::milliseconds(300)).await;
    c.query_drop(insert(4, 2)).await.unwrap();
    sleep_until(target + chrono::TimeDelta::milliseconds(300)).await;
    c.query_drop(insert(5, 3)).await.unwrap();
    sleep_until(target + chrono::TimeDelta::milliseconds(1200)).await;
    c.query_drop(insert(2, 7)).await.unwrap();
    // A named backup holding batches 1 and 2, then batch 3 after it.
    let (status, named) = h
        .post(&format!("/api/v1/databases/{src}/backups"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{named}");
    assert_eq!(named["kind"], "base");
    c.query_drop(insert(3, 4)).await.unwrap();

    // Refusals first: each a clear error, nothing created.
    let restore = |br: Value| {
        let mut b = my_body("my-restored");
        b["backup_restore"] = br;
        b
    };
    assert_restores_refused(&h, &restore, "pitr-my", &src, &first, target).await;

    // The restore to the second between batches 1 and 2: the scheduled backup (before the
    // table existed) plus the binary logs replayed up to that second; with a standby, built
    // from a backup of the restored primary (its binary log holds only the replayed part).
    let started = Instant::now();
    let mut with_standby = restore(json!({"database_name": "pitr-my", "restore_to": fmt(target)}));
    with_standby["replicas"] = json!(2);
    let new = restore_and_wait(&h, with_standby).await;
    eprintln!(
        "BENCH mysql (MariaDB) point-in-time restore: {:.2} s (base backup {} bytes)",
        started.elapsed().as_secs_f64(),
        first["size_bytes"]
    );
    let creds = h.credentials(&new).await;
    assert_eq!(creds["database"], "my_restored");
    let restored_url = creds["connection_string"].as_str().unwrap().to_string();
    assert_ne!(restored_url, url);
    assert_eq!(
        my_batches(&ca, &restored_url).await,
        Some(vec![(1, 25), (4, 2)]),
        "exactly the rows committed before {}",
        fmt(target)
    );
    assert_eq!(
        my_batches(&ca, &url).await,
        Some(vec![(1, 25), (2, 7), (3, 4), (4, 2), (5, 3)]),
        "the source is untouched"
    );
    // A normal server: it takes writes, and the source's password does not log in.
    let mut rc = mysql_async::Conn::new(crate::mariadb::opts(&ca, &restored_url))
        .await
        .unwrap();
    rc.query_drop("INSERT INTO items (batch) VALUES (9)")
        .await
        .unwrap();
    let _ = rc.disconnect().await;
    let standby = crate::harness::wait_streaming(&h, &new).await;
    let standby_url = crate::harness::node_url(&restored_url, &standby);
    assert_ne!(standby_url, restored_url);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut sc = mysql_async::Conn::new(crate::mariadb::opts(&ca, &standby_url))
            .await
            .expect("log in to the standby");
        let rows: Option<(i64, i64)> = sc
            .query_first("SELECT COUNT(*), CAST(COALESCE(SUM(batch = 9), 0) AS SIGNED) FROM items")
            .await
            .unwrap();
        let _ = sc.disconnect().await;
        if rows == Some((28, 1)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the standby has the restored rows and the write after: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let src_pw = h.password(&src).await;
    let wrong = restored_url.replace(creds["password"].as_str().unwrap(), &src_pw);
    assert!(
        mysql_async::Conn::new(crate::mariadb::opts(&ca, &wrong))
            .await
            .is_err(),
        "the source's password must not log in"
    );
    let list = backups(&h, &new).await;
    assert!(has_event(&list, "restore_completed"), "{list}");

    // The named backup alone: batches 1 and 2, not 3.
    let mut at = my_body("my-at-backup");
    at["backup_restore"] = json!({"database_name": src, "backup_created_at": named["created_at"]});
    let started = Instant::now();
    let at = restore_and_wait(&h, at).await;
    eprintln!(
        "BENCH mysql (MariaDB) restore of a named backup: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let at_url = h.connection_string(&at).await;
    assert_eq!(
        my_batches(&ca, &at_url).await,
        Some(vec![(1, 25), (2, 7), (4, 2), (5, 3)]),
        "the named backup's rows, not batch 3 written after it"
    );

    let _ = c.disconnect().await;
    for id in [&new, &at, &src] {
        h.delete_and_check_gone(id).await;
    }
    // The destroyed source's archived binary log still restores to the same second (by its id),
    // and not past where that log was shipped.
    let again = restore_and_wait(&h, json!({"name": "my-from-destroyed", "db_type": "mysql", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1",
                "backup_restore": {"database_name": src, "restore_to": fmt(target)}})).await;
    let again_url = h.connection_string(&again).await;
    assert_eq!(
        my_batches(&ca, &again_url).await,
        Some(vec![(1, 25), (4, 2)])
    );
    let (status, v) = h
        .post(
            "/api/v1/databases",
            json!({"name": "my-too-late", "db_type": "mysql", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1",
                "backup_restore": {"database_name": src, "restore_to": fmt(Utc::now())}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    h.delete_and_check_gone(&again).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_backups_follow_a_failover_and_restore_past_it() {
    use mysql_async::prelude::Queryable;
    let Some(h) = backup_harness(DbType::Mysql) else {
        return;
    };
    let ca = h.service.ca_pem().to_string();
    let mut body = my_body("ha-pitr");
    body["replicas"] = json!(2);
    let (src, _) = h.create_running(body).await;
    crate::harness::wait_streaming(&h, &src).await;
    let first = first_scheduled_backup(&h, &src).await;
    let url = h.connection_string(&src).await;
    let mut c = crate::failover::my(&ca, &url).await.expect("log in");
    c.query_drop("CREATE TABLE items (id INT PRIMARY KEY, batch INT NOT NULL) ENGINE=InnoDB")
        .await
        .unwrap();
    let insert = |batch: i64, ids: std::ops::Range<i64>| {
        let rows: Vec<String> = ids.map(|i| format!("({i}, {batch})")).collect();
        // IGNORE: a write retried through a failover may have committed the first time.
        format!(
            "INSERT IGNORE INTO items (id, batch) VALUES {}",
            rows.join(",")
        )
    };
    c.query_drop(insert(1, 0..10)).await.unwrap();
    drop(c);

    let since = Instant::now();
    crate::failover::destroy_primary(&h, &src);
    crate::failover::first_write_after(since, || {
        let (ca, url) = (ca.clone(), url.clone());
        let sql = insert(2, 100..105);
        async move {
            let Some(mut c) = crate::failover::my(&ca, &url).await else {
                return false;
            };
            c.query_drop(sql).await.is_ok()
        }
    })
    .await;
    // The promoted primary writes another binary-log lineage: the scheduler backs it up at once.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let list = backups(&h, &src).await;
        if list["backups"].as_array().unwrap().len() >= 2 && list.get("in_progress_since").is_none()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no backup of the promoted primary: {list}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let target = DateTime::<Utc>::from_timestamp(Utc::now().timestamp() + 2, 0).unwrap();
    sleep_until(target + chrono::TimeDelta::milliseconds(1200)).await;
    let mut c = crate::failover::my(&ca, &url).await.expect("log in");
    c.query_drop(insert(3, 200..203)).await.unwrap();
    drop(c);

    let mut restore = my_body("ha-restored");
    restore["backup_restore"] = json!({"database_name": src, "restore_to": fmt(target)});
    let new = restore_and_wait(&h, restore).await;
    let new_url = h.connection_string(&new).await;
    assert_eq!(
        my_batches(&ca, &new_url).await,
        Some(vec![(1, 10), (2, 5)]),
        "the rows committed before {} on both sides of the failover",
        fmt(target)
    );
    // The first backup (the old primary's) still restores as it was.
    let mut at = my_body("ha-first");
    at["backup_restore"] = json!({"database_name": src, "backup_created_at": first["created_at"]});
    let at = restore_and_wait(&h, at).await;
    let at_url = h.connection_string(&at).await;
    assert_eq!(
        my_batches(&ca, &at_url).await,
        None,
        "the first backup predates the table"
    );
    for id in [&new, &at, &src] {
        h.delete_and_check_gone(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_snapshot_restores_its_keys_and_a_full_backup_storage_is_a_clear_error() {
    let h = Harness::new(Options {
        backup_max_bytes: Some(256 * 1024),
        ..Options::default()
    });
    if !h.installed(DbType::Redis) {
        return;
    }
    let tls = h.service.client_tls();
    let body = |name: &str| json!({"name": name, "db_type": "redis", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1"});
    let src = h.create(body("cache")).await;
    h.wait_status(&src, "running", Duration::from_secs(60))
        .await;
    let url = h.connection_string(&src).await;
    let mut r = crate::redis::login(&tls, &url).await.expect("login");
    for i in 0..50 {
        crate::redis::resp(&mut r, &["SET", &format!("k{i}"), &format!("v{i}")]).await;
    }
    let (status, b) = h
        .post(&format!("/api/v1/databases/{src}/backups"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    assert_eq!(b["kind"], "snapshot");
    crate::redis::resp(&mut r, &["SET", "after", "snapshot"]).await;

    let started = Instant::now();
    let mut rb = body("cache-restored");
    rb["backup_restore"] = json!({"database_name": "cache", "backup_created_at": b["created_at"]});
    let (status, v) = h.post("/api/v1/databases", rb).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let new = v["id"].as_str().unwrap().to_string();
    h.wait_status(&new, "running", Duration::from_secs(60))
        .await;
    eprintln!(
        "BENCH redis snapshot restore: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let new_url = h.connection_string(&new).await;
    assert_eq!(
        crate::redis::get(&tls, &new_url, "k7").await.as_deref(),
        Some("v7")
    );
    assert_eq!(
        crate::redis::get(&tls, &new_url, "k49").await.as_deref(),
        Some("v49")
    );
    assert_eq!(
        crate::redis::get(&tls, &new_url, "after").await.as_deref(),
        Some("(nil)"),
        "written after the snapshot"
    );

    // point-in-time is PostgreSQL's only
    let mut rb = body("cache-pitr");
    rb["backup_restore"] = json!({"database_name": "cache", "restore_to": fmt(Utc::now())});
    let (status, v) = h.post("/api/v1/databases", rb).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // A snapshot bigger than the storage's room: a clear 409 and a backup_failed event.
    // Incompressible (RDB compresses strings with LZF): xorshift bytes as letters.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let big: String = (0..512 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect();
    crate::redis::resp(&mut r, &["SET", "big", &big]).await;
    let (status, v) = h
        .post(&format!("/api/v1/databases/{src}/backups"), json!({}))
        .await;
    assert_conflict(status, &v, "backup storage is full");
    assert_eq!(v["error"], "conflict");
    let list = backups(&h, &src).await;
    assert!(has_event(&list, "backup_failed"), "{list}");
    assert_eq!(
        list["backups"].as_array().unwrap().len(),
        1,
        "the failed backup left nothing: {list}"
    );
    let _ = KEY_A;
    for id in [&new, &src] {
        h.delete_and_check_gone(id).await;
    }
    // Backups outlive their database: still listed, and restorable by the destroyed one's id.
    assert_eq!(
        backups(&h, &src).await["backups"].as_array().unwrap().len(),
        1
    );
    let mut rb = body("cache-again");
    rb["backup_restore"] = json!({"database_name": src, "backup_created_at": b["created_at"]});
    let (status, v) = h.post("/api/v1/databases", rb).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let again = v["id"].as_str().unwrap().to_string();
    h.wait_status(&again, "running", Duration::from_secs(60))
        .await;
    let again_url = h.connection_string(&again).await;
    assert_eq!(
        crate::redis::get(&tls, &again_url, "k7").await.as_deref(),
        Some("v7")
    );
    h.delete_and_check_gone(&again).await;
}

#[tokio::test]
async fn sources_without_a_backup_and_servers_not_running_are_refused_clearly() {
    let h = Harness::new(Options {
        reconcile: false,
        ..Options::default()
    });
    // A MySQL server that does not run yet takes no backup (409), and has none to restore.
    let mysql = h
        .create(json!({"name": "my", "db_type": "mysql", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1"}))
        .await;
    let (status, v) = h
        .post(&format!("/api/v1/databases/{mysql}/backups"), json!({}))
        .await;
    assert_conflict(status, &v, "needs it running");
    let (status, v) = h
        .post(
            "/api/v1/databases",
            json!({"name": "my2", "db_type": "mysql", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1",
            "backup_restore": {"database_name": "my"}}),
        )
        .await;
    assert_conflict(status, &v, "no completed backup");
    // A PostgreSQL source without any backup yet: 409, saying how to take one.
    let pg = h.create(pg_body("fresh")).await;
    let (status, v) = h
        .post("/api/v1/databases", json!({"name": "fresh2", "db_type": "postgresql", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1",
            "backup_restore": {"database_name": pg}}))
        .await;
    assert_conflict(status, &v, "POST /api/v1/databases/");
    // A typo in backup_restore is a 400; a stopped/provisioning server takes no backup (409).
    let (status, v) = h
        .post("/api/v1/databases", json!({"name": "fresh3", "db_type": "postgresql", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1",
            "backup_restore": {"database_nam": pg}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = h
        .post(&format!("/api/v1/databases/{pg}/backups"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (status, v) = h
        .post("/api/v1/databases/db_nosuchthing1/backups", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error"], "not_found");
    let (_, all) = h.get("/api/v1/databases").await;
    assert_eq!(
        all.as_array().unwrap().len(),
        2,
        "refusals created nothing: {all}"
    );
}
