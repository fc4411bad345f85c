//! The reference "blog" dataset, generated inside the source server by one deterministic
//! `INSERT … SELECT` per table, so that scale L (4M+ rows) fills in seconds rather than minutes.
//!
//! Every value is a pure function of the row number, so MariaDB and PostgreSQL receive the same
//! data and every run the same rows.

use anyhow::Context;

/// Dataset scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    /// 10k users / 100k posts / 300k comments.
    S,
    /// 100k users / 1M posts / 3M comments.
    L,
    /// 1M users / 10M posts / 30M comments (the scaling table of docs/benchmarks.md;
    /// PostgreSQL is enough).
    Xl,
    /// 1k users / 10k posts / 30k comments (tests and smoke runs).
    Xs,
}

impl Scale {
    /// Number of users; posts are 10×, comments 30×.
    pub fn users(self) -> u64 {
        match self {
            Scale::Xs => 1_000,
            Scale::S => 10_000,
            Scale::L => 100_000,
            Scale::Xl => 1_000_000,
        }
    }
}

/// Which server dialect the statements are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// MariaDB / MySQL.
    Mysql,
    /// PostgreSQL.
    Postgres,
}

/// Table names of the dataset, in load order.
#[cfg(test)]
pub const TABLES: [&str; 5] = ["users", "posts", "comments", "tags", "post_tags"];

/// The statements that create and fill the dataset at `scale`.
pub fn statements(dialect: Dialect, scale: Scale) -> Vec<String> {
    let users = scale.users();
    let posts = users * 10;
    let comments = users * 30;
    let (series, ts, boolean, text) = match dialect {
        Dialect::Mysql => (
            (|n: u64| format!("seq_1_to_{n}")) as fn(u64) -> String,
            (|expr: &str| format!("TIMESTAMP '2024-01-01 00:00:00' + INTERVAL ({expr}) MINUTE"))
                as fn(&str) -> String,
            "BOOLEAN",
            "VARCHAR(255)",
        ),
        Dialect::Postgres => (
            (|n: u64| format!("generate_series(1::bigint, {n}) AS s(seq)")) as fn(u64) -> String,
            (|expr: &str| {
                format!("TIMESTAMP '2024-01-01 00:00:00' + ({expr}) * INTERVAL '1 minute'")
            }) as fn(&str) -> String,
            "BOOLEAN",
            "VARCHAR(255)",
        ),
    };
    let int_pk = "BIGINT NOT NULL PRIMARY KEY";
    let body_text = "TEXT";
    let plan = "CASE seq % 3 WHEN 0 THEN 'free' WHEN 1 THEN 'pro' ELSE 'teams' END";
    let mut stmts = vec![
        "DROP TABLE IF EXISTS post_tags".into(),
        "DROP TABLE IF EXISTS comments".into(),
        "DROP TABLE IF EXISTS tags".into(),
        "DROP TABLE IF EXISTS posts".into(),
        "DROP TABLE IF EXISTS users".into(),
        format!(
            "CREATE TABLE users (id {int_pk}, name {text} NOT NULL, email {text} NOT NULL, \
             plan {text} NOT NULL, verified {boolean} NOT NULL, created_at TIMESTAMP NOT NULL)"
        ),
        format!(
            "CREATE TABLE posts (id {int_pk}, user_id BIGINT NOT NULL REFERENCES users(id), \
             title {text} NOT NULL, body {body_text} NOT NULL, published {boolean} NOT NULL, \
             created_at TIMESTAMP NOT NULL)"
        ),
        format!(
            "CREATE TABLE comments (id {int_pk}, post_id BIGINT NOT NULL REFERENCES posts(id), \
             user_id BIGINT NOT NULL REFERENCES users(id), body {body_text} NOT NULL, \
             approved {boolean} NOT NULL, created_at TIMESTAMP NOT NULL)"
        ),
        format!("CREATE TABLE tags (id {int_pk}, name {text} NOT NULL)"),
        "CREATE TABLE post_tags (post_id BIGINT NOT NULL REFERENCES posts(id), \
         tag_id BIGINT NOT NULL REFERENCES tags(id))"
            .into(),
        format!(
            "INSERT INTO users SELECT seq, CONCAT('user ', seq), CONCAT('user', seq, '@example.com'), \
             {plan}, seq % 4 = 0, {} FROM {}",
            ts("seq"),
            series(users)
        ),
        format!(
            "INSERT INTO posts SELECT seq, 1 + (seq * 7919) % {users}, CONCAT('post number ', seq), \
             CONCAT('Body of post ', seq, ': lorem ipsum dolor sit amet, consectetur adipiscing elit, \
             sed do eiusmod tempor incididunt ut labore.'), seq % 4 <> 0, {} FROM {}",
            ts("seq / 10"),
            series(posts)
        ),
        format!(
            "INSERT INTO comments SELECT seq, 1 + (seq * 104729) % {posts}, 1 + (seq * 31) % {users}, \
             CONCAT('Comment ', seq, ' says hello'), seq % 5 <> 0, {} FROM {}",
            ts("seq / 30"),
            series(comments)
        ),
        format!("INSERT INTO tags SELECT seq, CONCAT('tag', seq) FROM {}", series(100)),
        format!(
            "INSERT INTO post_tags SELECT 1 + (seq - 1) / 2, 1 + (seq * 7) % 100 FROM {}",
            series(posts * 2)
        ),
        "CREATE INDEX posts_created_at ON posts (created_at)".into(),
    ];
    if dialect == Dialect::Postgres {
        // MariaDB indexes foreign-key columns by itself; PostgreSQL needs them spelled out for the
        // SQL baseline to be an honest one.
        stmts.push("CREATE INDEX posts_user_id ON posts (user_id)".into());
        stmts.push("CREATE INDEX comments_post_id ON comments (post_id)".into());
        stmts.push("CREATE INDEX comments_user_id ON comments (user_id)".into());
    }
    if dialect == Dialect::Mysql {
        // MariaDB's `/` yields a decimal; the generator means integer division.
        for stmt in &mut stmts {
            *stmt = stmt.replace(" / ", " DIV ");
        }
    }
    stmts
}

/// Create database `db` on a MariaDB server and fill it.
pub async fn fill_mysql(url: &str, db: &str, scale: Scale) -> anyhow::Result<()> {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_async::Conn::from_url(url)
        .await
        .context("connect to MariaDB")?;
    conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{db}`"))
        .await?;
    conn.query_drop(format!("USE `{db}`")).await?;
    for stmt in statements(Dialect::Mysql, scale) {
        conn.query_drop(&stmt)
            .await
            .with_context(|| format!("run: {stmt}"))?;
    }
    conn.query_drop("ANALYZE TABLE users, posts, comments, tags, post_tags")
        .await?;
    conn.disconnect().await?;
    Ok(())
}

/// Create database `db` on a PostgreSQL server (URL of any database there) and fill it.
pub async fn fill_postgres(url: &str, db: &str, scale: Scale) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connect to PostgreSQL")?;
    tokio::spawn(conn);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .await?;
    if exists.is_none() {
        client
            .batch_execute(&format!("CREATE DATABASE \"{db}\""))
            .await?;
    }
    let db_url = replace_database(url, db);
    let (client, conn) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    for stmt in statements(Dialect::Postgres, scale) {
        client
            .batch_execute(&stmt)
            .await
            .with_context(|| format!("run: {stmt}"))?;
    }
    client.batch_execute("VACUUM ANALYZE").await?;
    Ok(())
}

/// `postgres://u:p@h:port/x` → `postgres://u:p@h:port/db`.
pub fn replace_database(url: &str, db: &str) -> String {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[scheme_end..].find('/') {
        Some(i) => format!("{}/{db}", &url[..scheme_end + i]),
        None => format!("{url}/{db}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            replace_database("postgres://a:b@h:1/postgres", "blog"),
            "postgres://a:b@h:1/blog"
        );
        assert_eq!(
            replace_database("postgres://a:b@h:1", "blog"),
            "postgres://a:b@h:1/blog"
        );
    }

    #[test]
    fn both_dialects_fill_the_same_tables() {
        for d in [Dialect::Mysql, Dialect::Postgres] {
            let s = statements(d, Scale::Xs).join("\n");
            for t in TABLES {
                assert!(s.contains(&format!("INSERT INTO {t} ")), "{t} in {d:?}");
            }
        }
    }
}
