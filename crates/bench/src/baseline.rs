//! The "no platform" baseline of B3: a minimal HTTP service that answers each benchmark query by
//! running the equivalent SQL on the source through a connection pool and returning JSON.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

/// Where the baseline reads from.
pub enum Pool {
    /// MariaDB through mysql_async's pool.
    Mysql(mysql_async::Pool),
    /// PostgreSQL through a fixed set of pipelined clients.
    Postgres(Vec<tokio_postgres::Client>, AtomicUsize),
}

impl Pool {
    /// Open a pool of `size` connections to `url` (a database URL).
    pub async fn open(url: &str, size: usize) -> anyhow::Result<Pool> {
        if url.starts_with("mysql://") {
            let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(url)?)
                .pool_opts(mysql_async::PoolOpts::default().with_constraints(
                    mysql_async::PoolConstraints::new(size, size).expect("valid pool size"),
                ));
            Ok(Pool::Mysql(mysql_async::Pool::new(opts)))
        } else {
            let mut clients = Vec::new();
            for _ in 0..size {
                let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                clients.push(c);
            }
            Ok(Pool::Postgres(clients, AtomicUsize::new(0)))
        }
    }

    async fn rows(&self, sql_my: &str, sql_pg: &str, arg: i64) -> anyhow::Result<Vec<Vec<Value>>> {
        match self {
            Pool::Mysql(pool) => {
                let mut conn = pool.get_conn().await?;
                let rows: Vec<mysql_async::Row> = conn.exec(sql_my, (arg,)).await?;
                Ok(rows
                    .into_iter()
                    .map(|r| r.unwrap().into_iter().map(mysql_value).collect())
                    .collect())
            }
            Pool::Postgres(clients, next) => {
                let c = &clients[next.fetch_add(1, Ordering::Relaxed) % clients.len()];
                let rows = c.query(sql_pg, &[&arg]).await?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| {
                                if let Ok(v) = r.try_get::<_, i64>(i) {
                                    json!(v)
                                } else if let Ok(v) = r.try_get::<_, String>(i) {
                                    json!(v)
                                } else if let Ok(v) = r.try_get::<_, bool>(i) {
                                    json!(v)
                                } else {
                                    Value::Null
                                }
                            })
                            .collect()
                    })
                    .collect())
            }
        }
    }
}

fn mysql_value(v: mysql_async::Value) -> Value {
    match v {
        mysql_async::Value::Int(i) => json!(i),
        mysql_async::Value::UInt(u) => json!(u),
        mysql_async::Value::Bytes(b) => json!(String::from_utf8_lossy(&b)),
        mysql_async::Value::Double(d) => json!(d),
        mysql_async::Value::Float(f) => json!(f),
        _ => Value::Null,
    }
}

type Shared = Arc<Pool>;

/// The baseline router: `POST /q/{n}` with the query's parameter as the body.
pub fn router(pool: Pool) -> Router {
    Router::new()
        .route("/q/{n}", post(handle))
        .with_state(Arc::new(pool))
}

async fn handle(
    State(pool): State<Shared>,
    Path(n): Path<u8>,
    body: String,
) -> (StatusCode, String) {
    let arg: i64 = body.trim().parse().unwrap_or(1);
    match answer(&pool, n, arg).await {
        Ok(v) => (StatusCode::OK, v.to_string()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn answer(pool: &Pool, n: u8, arg: i64) -> anyhow::Result<Value> {
    Ok(match n {
        1 => {
            let rows = pool
                .rows(
                    "SELECT id, name, email FROM users WHERE id = ?",
                    "SELECT id, name, email FROM users WHERE id = $1",
                    arg,
                )
                .await?;
            Value::Array(
                rows.into_iter()
                    .map(|r| json!({"id": r[0], "name": r[1], "email": r[2]}))
                    .collect(),
            )
        }
        2 => {
            let posts = pool
                .rows(
                    "SELECT id, title FROM posts WHERE user_id = ? ORDER BY id",
                    "SELECT id, title FROM posts WHERE user_id = $1 ORDER BY id",
                    arg,
                )
                .await?;
            let comments = pool
                .rows(
                    "SELECT c.post_id, c.id, c.body FROM comments c JOIN posts p ON p.id = c.post_id WHERE p.user_id = ? ORDER BY c.id",
                    "SELECT c.post_id, c.id, c.body FROM comments c JOIN posts p ON p.id = c.post_id WHERE p.user_id = $1 ORDER BY c.id",
                    arg,
                )
                .await?;
            Value::Array(
                posts
                    .into_iter()
                    .map(|p| {
                        let cs: Vec<Value> = comments
                            .iter()
                            .filter(|c| c[0] == p[0])
                            .map(|c| json!({"id": c[1], "body": c[2]}))
                            .collect();
                        json!({"id": p[0], "title": p[1], "comments": cs})
                    })
                    .collect(),
            )
        }
        3 => {
            let rows = pool
                .rows(
                    "SELECT u.id FROM users u WHERE u.plan = 'pro' AND u.id >= ? AND EXISTS (SELECT 1 FROM posts p JOIN comments c ON c.post_id = p.id WHERE p.user_id = u.id AND c.approved = false) ORDER BY u.id LIMIT 50",
                    "SELECT u.id FROM users u WHERE u.plan = 'pro' AND u.id >= $1 AND EXISTS (SELECT 1 FROM posts p JOIN comments c ON c.post_id = p.id WHERE p.user_id = u.id AND c.approved = false) ORDER BY u.id LIMIT 50",
                    arg,
                )
                .await?;
            Value::Array(rows.into_iter().map(|r| json!({"id": r[0]})).collect())
        }
        _ => {
            let rows = pool
                .rows(
                    "SELECT id, title FROM posts WHERE published = true AND user_id >= ? ORDER BY created_at DESC, id LIMIT 20",
                    "SELECT id, title FROM posts WHERE published = true AND user_id >= $1 ORDER BY created_at DESC, id LIMIT 20",
                    arg,
                )
                .await?;
            Value::Array(
                rows.into_iter()
                    .map(|r| json!({"id": r[0], "title": r[1]}))
                    .collect(),
            )
        }
    })
}
