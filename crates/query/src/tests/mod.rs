//! Tests over a small hand-built snapshot: every example of the query language, semantics,
//! errors with exact positions, JSON of every type, plans, and a fuzz test.

use std::sync::Arc;

use proptest::prelude::*;
use refract_schema::{Backend, RowSink, ValueRef};
use refract_storage::{Snapshot, TableBuilder};
use serde_json::{json, Value};

use crate::sample::{build, manifest};
use crate::{execute, explain, QueryError, QueryOptions};

pub(super) use crate::sample::snapshot;

mod bounds;
mod compressed;
mod differential;
mod pk_order;
mod semijoin;

thread_local! {
    static SNAPSHOT: Snapshot = snapshot();
}

fn run_with(q: &str, options: &QueryOptions) -> Result<(String, usize, bool), QueryError> {
    SNAPSHOT.with(|s| {
        execute(s, q, options).map(|out| {
            let text = String::from_utf8(out.body).expect("UTF-8 body");
            serde_json::from_str::<Value>(&text)
                .unwrap_or_else(|e| panic!("invalid JSON for {q}: {e}\n{text}"));
            (text, out.rows, out.truncated)
        })
    })
}

/// The body of `q`, as compact JSON text.
fn run(q: &str) -> String {
    run_with(q, &QueryOptions::default())
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .0
}

/// `q` must give exactly `want` (key order included).
fn check(q: &str, want: Value) {
    assert_eq!(run(q), want.to_string(), "query: {q}");
}

/// The `id`s returned by `q`.
fn ids(q: &str) -> Vec<i64> {
    let v: Value = serde_json::from_str(&run(q)).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

fn err(q: &str) -> String {
    SNAPSHOT.with(|s| match execute(s, q, &QueryOptions::default()) {
        Ok(out) => panic!(
            "{q} should fail, got {}",
            String::from_utf8_lossy(&out.body)
        ),
        Err(e) => e.to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// The examples of query-language.md.

#[test]
fn example_fields() {
    check(
        "users { id name email }",
        json!([
            {"id": 1, "name": "Alice", "email": "alice@example.com"},
            {"id": 2, "name": "bob", "email": null},
            {"id": 3, "name": "Carol", "email": "carol@x.org"},
            {"id": 4, "name": "Dave", "email": "dave@x.org "},
        ]),
    );
}

#[test]
fn example_star() {
    check(
        "users(id = 1) { * }",
        json!([{"id": 1, "name": "Alice", "email": "alice@example.com", "plan": "pro", "verified": true, "score": 10, "balance": "1234.56"}]),
    );
    assert_eq!(ids("users { * }"), vec![1, 2, 3, 4]);
}

#[test]
fn example_spread() {
    check(
        "posts(id = 12) { ... }",
        json!([{
            "id": 12, "user_id": 3, "title": "Rust", "published": true, "views": 5,
            "author": {"id": 3, "name": "Carol", "email": "carol@x.org", "plan": "free", "verified": true, "score": 5, "balance": "-1.50"},
            "comments": [{"id": 102, "post_id": 12, "user_id": 1, "body": "Great", "approved": null}],
        }]),
    );
}

#[test]
fn example_star_with_explicit_relation() {
    check(
        "users(id = 3) { * posts { id title } }",
        json!([{"id": 3, "name": "Carol", "email": "carol@x.org", "plan": "free", "verified": true, "score": 5, "balance": "-1.50",
                "posts": [{"id": 12, "title": "Rust"}]}]),
    );
}

#[test]
fn example_filter_on_string() {
    check(
        "users(plan = \"pro\") { id name email }",
        json!([{"id": 1, "name": "Alice", "email": "alice@example.com"}]),
    );
}

#[test]
fn example_and() {
    check(
        "posts(published = true AND user_id = 1) { id title }",
        json!([{"id": 10, "title": "Hello world"}]),
    );
    check(
        "posts(published = true AND user_id = 42) { id title }",
        json!([]),
    );
}

#[test]
fn example_or_with_parentheses() {
    check(
        "users(plan = \"pro\" OR (plan = \"free\" AND verified = true)) { id name }",
        json!([{"id": 1, "name": "Alice"}, {"id": 3, "name": "Carol"}]),
    );
}

#[test]
fn example_relation_filter() {
    check(
        "users(posts.published = true) { id name }",
        json!([{"id": 1, "name": "Alice"}, {"id": 3, "name": "Carol"}]),
    );
}

#[test]
fn example_two_level_relation_filter() {
    check(
        "users(posts.comments.approved = true) { id name }",
        json!([{"id": 1, "name": "Alice"}]),
    );
}

#[test]
fn example_includes() {
    check(
        "posts { id title author { id name } comments { id body } }",
        json!([
            {"id": 10, "title": "Hello world", "author": {"id": 1, "name": "Alice"}, "comments": [{"id": 100, "body": "Nice"}, {"id": 101, "body": "Spam"}]},
            {"id": 11, "title": "Draft", "author": {"id": 1, "name": "Alice"}, "comments": []},
            {"id": 12, "title": "Rust", "author": {"id": 3, "name": "Carol"}, "comments": [{"id": 102, "body": "Great"}]},
            {"id": 13, "title": "SQL", "author": {"id": 2, "name": "bob"}, "comments": [{"id": 103, "body": "Meh"}]},
        ]),
    );
}

#[test]
fn example_nested_filter() {
    check(
        "posts { id comments(approved = true) { id } }",
        json!([
            {"id": 10, "comments": [{"id": 100}]},
            {"id": 11, "comments": []},
            {"id": 12, "comments": []},
            {"id": 13, "comments": []},
        ]),
    );
}

// ---------------------------------------------------------------------------------------------
// Semantics.

#[test]
fn three_valued_logic() {
    // score: 1 → 10, 2 → NULL, 3 → 5, 4 → -3.
    assert_eq!(ids("users(score > 4) { id }"), vec![1, 3]);
    assert_eq!(ids("users(NOT score > 4) { id }"), vec![4]);
    assert_eq!(
        ids("users(NOT (score > 4 AND verified = true)) { id }"),
        vec![2, 4]
    );
    assert_eq!(
        ids("users(NOT (score > 4 OR verified = false)) { id }"),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids("users(score > 4 OR verified = false) { id }"),
        vec![1, 2, 3, 4]
    );
    // A comparison with null is never true: an error that points to IS NULL.
    assert_eq!(
        err("users(score = null) { id }"),
        "line 1, column 15: a comparison with null is never true (SQL semantics): write 'score IS NULL'"
    );
    assert_eq!(
        err("users(NOT score != null) { id }"),
        "line 1, column 20: a comparison with null is never true (SQL semantics): write 'score IS NOT NULL'"
    );
    assert!(err("users(score > null) { id }").contains("never true"));
    assert_eq!(ids("users(score IS NULL) { id }"), vec![2]);
    assert_eq!(ids("users(score IS NOT NULL) { id }"), vec![1, 3, 4]);
    assert_eq!(ids("users(email IS NULL OR score IS NULL) { id }"), vec![2]);
}

#[test]
fn json_and_graphql_bodies_get_a_hint() {
    let e = err(r#"{"query": "users { id }"}"#);
    assert!(e.contains("not JSON"), "{e}");
    let e = err("users(id: 1) { id }");
    assert!(e.contains("'field = value'"), "{e}");
    let e = err("query { users { id } }");
    assert!(e.contains("is GraphQL"), "{e}");
    let e = err("{ users { id } }");
    assert!(e.contains("not JSON"), "{e}");
    let e = err("users(id = $id) { id }");
    assert!(e.contains("GraphQL variables"), "{e}");
}

#[test]
fn in_and_between() {
    assert_eq!(ids("users(score IN (5, 10, 11)) { id }"), vec![1, 3]);
    assert_eq!(ids("users(score NOT IN (5, 10)) { id }"), vec![4]);
    assert_eq!(
        ids("users(score NOT IN (5, null)) { id }"),
        Vec::<i64>::new()
    );
    assert_eq!(ids("users(score IN (5, null)) { id }"), vec![3]);
    assert_eq!(
        ids("users(NOT score IN (5, null)) { id }"),
        Vec::<i64>::new()
    );
    assert_eq!(ids("users(score BETWEEN -3 AND 5) { id }"), vec![3, 4]);
    assert_eq!(ids("users(score NOT BETWEEN -3 AND 5) { id }"), vec![1]);
    assert_eq!(
        ids("users(score BETWEEN 5 AND -3) { id }"),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids("users(score BETWEEN null AND 5) { id }"),
        Vec::<i64>::new()
    );
    assert_eq!(ids("users(score NOT BETWEEN null AND 5) { id }"), vec![1]);
    assert_eq!(ids("users(id IN (4, 2, 2, 9)) { id }"), vec![2, 4]);
    assert_eq!(
        ids("users(plan IN (\"teams\", \"pro\")) { id }"),
        vec![1, 4]
    );
}

#[test]
fn long_in_lists() {
    let many = |first: &str| {
        format!(
            "{first}, {}",
            (20..40)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    assert_eq!(
        ids(&format!(
            "users(score IN ({})) {{ id }}",
            many("10, 5, 5.5")
        )),
        vec![1, 3]
    );
    assert_eq!(
        ids(&format!("users(score NOT IN ({})) {{ id }}", many("10, 5"))),
        vec![4]
    );
    assert_eq!(
        ids(&format!(
            "users(score NOT IN ({})) {{ id }}",
            many("10, null")
        )),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(&format!(
            "users(balance IN ({})) {{ id }}",
            many("-1.5, 1234.56")
        )),
        vec![1, 3]
    );
    let names: Vec<String> = (0..30).map(|i| format!("\"n{i}\"")).collect();
    assert_eq!(
        ids(&format!(
            "users(name IN (\"Dave\", \"bob\", {})) {{ id }}",
            names.join(", ")
        )),
        vec![2, 4]
    );
    assert_eq!(
        ids(&format!(
            "users(NOT name IN (\"Dave\", \"bob\", {})) {{ id }}",
            names.join(", ")
        )),
        vec![1, 3]
    );
    assert_eq!(
        ids(&format!(
            "users(email IN (\"BOB\", \"DAVE@X.ORG\", {})) {{ id }}",
            names.join(", ")
        )),
        vec![4]
    );
    // 100,000 values: one binary search per row, not a scan of the list.
    let huge = (0..100_000)
        .map(|i| (i * 5).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let start = std::time::Instant::now();
    assert_eq!(
        ids(&format!(
            "users(score IN ({huge}) OR id IN ({huge})) {{ id }}"
        )),
        vec![1, 3]
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn numbers_compare_exactly() {
    // balance (scale 2): 1 → 1234.56, 2 → 0.00, 3 → -1.50, 4 → NULL.
    assert_eq!(ids("users(balance = 1234.56) { id }"), vec![1]);
    assert_eq!(ids("users(balance = 1234.560000) { id }"), vec![1]);
    assert_eq!(
        ids("users(balance = 1234.5600001) { id }"),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids("users(balance > 1234.5599999999999999999) { id }"),
        vec![1]
    );
    assert_eq!(ids("users(balance < -1.499) { id }"), vec![3]);
    assert_eq!(ids("users(balance <= -1.5) { id }"), vec![3]);
    assert_eq!(ids("users(balance = 0) { id }"), vec![2]);
    assert_eq!(ids("users(balance >= 1e3) { id }"), vec![1]);
    assert_eq!(ids("users(id = 1.0) { id }"), vec![1]);
    assert_eq!(ids("users(id = 1.5) { id }"), Vec::<i64>::new());
    assert_eq!(ids("users(id < 1.5) { id }"), vec![1]);
    assert_eq!(ids("users(id > -0.5 AND id <= 2.9) { id }"), vec![1, 2]);
    assert_eq!(
        ids("users(id < 99999999999999999999999999) { id }"),
        vec![1, 2, 3, 4]
    );
    assert_eq!(ids("users(verified = 1) { id }"), vec![1, 3]);
}

#[test]
fn case_insensitive_columns() {
    // email is a `_ci` column: `=` ignores case and trailing spaces, LIKE ignores case.
    assert_eq!(ids("users(email = \"ALICE@example.com\") { id }"), vec![1]);
    assert_eq!(ids("users(email = \"dave@x.org\") { id }"), vec![4]);
    assert_eq!(ids("users(email = \"carol@x.org   \") { id }"), vec![3]);
    assert_eq!(
        ids("users(email IN (\"CAROL@X.ORG\", \"nobody\")) { id }"),
        vec![3]
    );
    assert_eq!(ids("users(email LIKE \"%X.ORG\") { id }"), vec![3]);
    assert_eq!(ids("users(email LIKE \"%X.ORG%\") { id }"), vec![3, 4]);
    assert_eq!(
        ids("users(email != \"ALICE@EXAMPLE.COM\") { id }"),
        vec![3, 4]
    );
    // name is case-sensitive: LIKE is exact, ILIKE is not.
    assert_eq!(ids("users(name = \"alice\") { id }"), Vec::<i64>::new());
    assert_eq!(ids("users(name LIKE \"b%\") { id }"), vec![2]);
    assert_eq!(ids("users(name ILIKE \"B%\") { id }"), vec![2]);
    assert_eq!(ids("users(name NOT ILIKE \"%a%\") { id }"), vec![2]);
    assert_eq!(ids("users(name LIKE \"_a%\") { id }"), vec![3, 4]);
    assert_eq!(ids("users(name < \"D\") { id }"), vec![1, 3]);
    // The `kinds.ci` column holds "Zoë": general_ci ignores the accent.
    assert_eq!(ids("kinds(ci = \"ZOE\") { id }"), vec![1]);
    assert_eq!(ids("kinds(ci LIKE \"%e\") { id }"), vec![1]);
    assert_eq!(ids("kinds(t LIKE \"line%\") { id }"), vec![1]);
}

#[test]
fn case_insensitive_columns_of_other_sources_do_not_pad_or_strip_accents() {
    let mut m = manifest();
    m.backend = Backend::Postgres;
    let users = build(
        &m.tables[0],
        vec![
            vec![
                ValueRef::Int(1),
                ValueRef::Text("a"),
                ValueRef::Text("Zoë@X.org"),
                ValueRef::Text("p"),
                ValueRef::Bool(true),
                ValueRef::Null,
                ValueRef::Null,
            ],
            vec![
                ValueRef::Int(2),
                ValueRef::Text("b"),
                ValueRef::Text("zoe@x.org "),
                ValueRef::Text("p"),
                ValueRef::Bool(true),
                ValueRef::Null,
                ValueRef::Null,
            ],
        ],
    );
    let empty = |i: usize| Arc::new(TableBuilder::new(Arc::new(m.tables[i].clone())).finish());
    let snap = Snapshot::new(
        Arc::new(m.clone()),
        vec![users, empty(1), empty(2), empty(3)],
    );
    let ids = |q: &str| -> Vec<i64> {
        let out =
            execute(&snap, q, &QueryOptions::default()).unwrap_or_else(|e| panic!("{q}: {e}"));
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids("users(email = \"ZOË@x.ORG\") { id }"), vec![1]);
    assert_eq!(
        ids("users(email = \"zoe@x.org\") { id }"),
        Vec::<i64>::new()
    );
    assert_eq!(ids("users(email LIKE \"zo%\") { id }"), vec![1, 2]);
    assert_eq!(ids("users(ORDER BY email DESC) { id }"), vec![1, 2]);
}

#[test]
fn relation_filters_use_any_semantics_per_predicate() {
    // Alice has one published and one unpublished post: each predicate finds its own post.
    assert_eq!(
        ids("users(posts.published = true AND posts.published = false) { id }"),
        vec![1]
    );
    assert_eq!(ids("users(NOT posts.published = true) { id }"), vec![2, 4]);
    assert_eq!(ids("users(posts.views IS NULL) { id }"), vec![1]);
    assert_eq!(ids("comments(user.plan = \"free\") { id }"), vec![100, 103]);
    assert_eq!(
        ids("comments(NOT user.plan = \"free\") { id }"),
        vec![101, 102]
    );
    assert_eq!(
        ids("comments(post.author.name = \"Alice\") { id }"),
        vec![100, 101]
    );
    assert_eq!(
        ids("posts(comments.user.verified = true) { id }"),
        vec![12, 13]
    );
    assert_eq!(
        ids("users(comments.post.author.name = \"Alice\") { id }"),
        vec![2]
    );
}

#[test]
fn long_relation_paths_do_not_explode() {
    // Each `posts.author` pair fans out again; remembered rows keep this linear.
    let path = "posts.author.".repeat(14);
    assert_eq!(
        ids(&format!("users({path}name = \"Alice\") {{ id }}")),
        vec![1]
    );
    assert_eq!(
        ids(&format!("users({path}name = \"nobody\") {{ id }}")),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids("users(posts.comments.post.comments.user.name = \"bob\") { id }"),
        vec![1]
    );
    assert_eq!(
        ids("users(NOT posts.comments.post.author.plan = \"free\") { id }"),
        vec![1, 4]
    );
}

#[test]
fn ordering_limits_and_offsets() {
    assert_eq!(ids("users(ORDER BY score) { id }"), vec![4, 3, 1, 2]);
    assert_eq!(ids("users(ORDER BY score DESC) { id }"), vec![2, 1, 3, 4]);
    assert_eq!(
        ids("users(ORDER BY score NULLS FIRST) { id }"),
        vec![2, 4, 3, 1]
    );
    assert_eq!(
        ids("users(ORDER BY score DESC NULLS LAST) { id }"),
        vec![1, 3, 4, 2]
    );
    assert_eq!(
        ids("users(ORDER BY plan, id DESC) { id }"),
        vec![3, 2, 1, 4]
    );
    assert_eq!(
        ids("users(ORDER BY verified DESC, score ASC LIMIT 2) { id }"),
        vec![3, 1]
    );
    assert_eq!(
        ids("users(ORDER BY id DESC LIMIT 2 OFFSET 1) { id }"),
        vec![3, 2]
    );
    assert_eq!(ids("users(LIMIT 2 OFFSET 1) { id }"), vec![2, 3]);
    assert_eq!(ids("users(LIMIT 0) { id }"), Vec::<i64>::new());
    assert_eq!(ids("users(OFFSET 10) { id }"), Vec::<i64>::new());
    assert_eq!(ids("users(ORDER BY email) { id }"), vec![1, 3, 4, 2]);
    // Through a to-one relation.
    assert_eq!(
        ids("posts(ORDER BY author.name DESC, id) { id }"),
        vec![13, 12, 10, 11]
    );
    assert_eq!(
        ids("comments(ORDER BY user.score NULLS FIRST, id DESC) { id }"),
        vec![101, 100, 103, 102]
    );
    // Nested: per parent row.
    check(
        "users(id IN (1, 3)) { id posts(ORDER BY id DESC LIMIT 1) { id } }",
        json!([{"id": 1, "posts": [{"id": 11}]}, {"id": 3, "posts": [{"id": 12}]}]),
    );
    check(
        "users(id = 1) { posts(OFFSET 1) { id } comments(LIMIT 0) { id } }",
        json!([{"posts": [{"id": 11}], "comments": []}]),
    );
    check(
        "posts(id IN (10, 12)) { id author(verified = false) { id } }",
        json!([{"id": 10, "author": null}, {"id": 12, "author": null}]),
    );
    check(
        "comments(id = 101) { id user { id } }",
        json!([{"id": 101, "user": null}]),
    );
}

#[test]
fn default_limit_truncates_only_without_an_explicit_limit() {
    let small = QueryOptions {
        default_limit: 2,
        ..QueryOptions::default()
    };
    let (body, rows, truncated) = run_with("users { id }", &small).unwrap();
    assert_eq!(
        (body.as_str(), rows, truncated),
        ("[{\"id\":1},{\"id\":2}]", 2, true)
    );
    let (_, rows, truncated) = run_with("users(id > 2) { id }", &small).unwrap();
    assert_eq!((rows, truncated), (2, false));
    let (_, rows, truncated) = run_with("users(LIMIT 3) { id }", &small).unwrap();
    assert_eq!((rows, truncated), (3, false));
    let (_, rows, truncated) = run_with("users(ORDER BY id DESC) { id }", &small).unwrap();
    assert_eq!((rows, truncated), (2, true));
    let (_, rows, truncated) = run_with("users(LIMIT 2) { id }", &small).unwrap();
    assert_eq!((rows, truncated), (2, false));
    // The default limit is for the top level only.
    let (body, _, _) = run_with(
        "users(id = 1) { posts { id } }",
        &QueryOptions {
            default_limit: 1,
            ..QueryOptions::default()
        },
    )
    .unwrap();
    assert_eq!(body, "[{\"posts\":[{\"id\":10},{\"id\":11}]}]");
}

#[test]
fn wildcards_and_explicit_items() {
    // An explicit relation replaces what `...` put at its position.
    check(
        "posts(id = 13) { ... author { name } comments(approved = true) { id } }",
        json!([{"id": 13, "user_id": 2, "title": "SQL", "published": false, "views": 7, "author": {"name": "bob"}, "comments": []}]),
    );
    // A key appears once, at its first position.
    check(
        "users(id = 2) { name * }",
        json!([{"name": "bob", "id": 2, "email": null, "plan": "free", "verified": false, "score": null, "balance": "0.00"}]),
    );
    check(
        "users(id = 2) { id, name, }",
        json!([{"id": 2, "name": "bob"}]),
    );
    // A relation without braces gives its scalar fields.
    check(
        "comments(id = 103) { id user }",
        json!([{"id": 103, "user": {"id": 3, "name": "Carol", "email": "carol@x.org", "plan": "free", "verified": true, "score": 5, "balance": "-1.50"}}]),
    );
    check("users(id = 4) { posts }", json!([{"posts": []}]));
}

#[test]
fn json_of_every_type() {
    check(
        "kinds { * }",
        json!([
            {
                "id": 1, "b": true, "f": 1.5, "d": "-12.345", "t": "line\n\"quoted\" \\ tab\t\u{1}", "ci": "Zoë",
                "by": "AP9oaQ==", "da": "2024-01-01", "ti": "-838:59:59.000001", "dt": "2024-01-01T00:00:00.000001",
                "ts": "2024-01-01T00:00:00Z", "j": {"a": [1, 2, {"b": null}]}, "big": "1152921504606846976",
            },
            {"id": 2, "b": null, "f": null, "d": null, "t": null, "ci": null, "by": null, "da": null, "ti": null, "dt": null, "ts": null, "j": null, "big": -7},
        ]),
    );
    let body = run("kinds(id = 1) { t }");
    assert_eq!(
        body,
        "[{\"t\":\"line\\n\\\"quoted\\\" \\\\ tab\\t\\u0001\"}]"
    );
}

#[test]
fn literals_of_every_type_filter() {
    assert_eq!(ids("kinds(b = true) { id }"), vec![1]);
    assert_eq!(ids("kinds(f > 1.25) { id }"), vec![1, 2]);
    assert_eq!(ids("kinds(d = -12.345) { id }"), vec![1]);
    assert_eq!(ids("kinds(d < -12.3449) { id }"), vec![1]);
    assert_eq!(ids("kinds(by = \"\") { id }"), Vec::<i64>::new());
    assert_eq!(ids("kinds(da = \"2024-01-01\") { id }"), vec![1]);
    assert_eq!(ids("kinds(da < \"2024-01-01T00:00:01\") { id }"), vec![1]);
    assert_eq!(
        ids("kinds(da BETWEEN \"2023-12-31\" AND \"2024-01-02\") { id }"),
        vec![1]
    );
    assert_eq!(ids("kinds(ti < \"-838:59:59\") { id }"), vec![1]);
    assert_eq!(ids("kinds(ti = \"-838:59:59.000001\") { id }"), vec![1]);
    assert_eq!(ids("kinds(dt > \"2024-01-01T00:00:00\") { id }"), vec![1]);
    assert_eq!(
        ids("kinds(dt = \"2024-01-01 00:00:00.000001\") { id }"),
        vec![1]
    );
    assert_eq!(
        ids("kinds(ts = \"2024-01-01T02:00:00+02:00\") { id }"),
        vec![1]
    );
    assert_eq!(ids("kinds(ts = \"2024-01-01\") { id }"), vec![1]);
    assert_eq!(ids("kinds(j IS NOT NULL) { id }"), vec![1]);
    assert_eq!(ids("kinds(big > 9007199254740993) { id }"), vec![1]);
}

// ---------------------------------------------------------------------------------------------
// Errors: each kind has its own message and an exact position.

#[test]
fn name_errors() {
    assert_eq!(
        err("usres { id }"),
        "line 1, column 1: unknown table 'usres' (did you mean 'users'?)"
    );
    assert_eq!(
        err("zzz { id }"),
        "line 1, column 1: unknown table 'zzz' (tables: users, posts, comments, kinds)"
    );
    assert_eq!(
        err("users { id emial }"),
        "line 1, column 12: unknown field 'emial' on table 'users' (did you mean 'email'?)"
    );
    assert_eq!(
        err("users { id\n  postz { id } }"),
        "line 2, column 3: unknown relation 'postz' on table 'users' (did you mean 'posts'?)"
    );
    assert_eq!(
        err("users(postz.id = 1) { id }"),
        "line 1, column 7: unknown relation 'postz' on table 'users' (did you mean 'posts'?)"
    );
    assert_eq!(
        err("users(posts.titel = \"x\") { id }"),
        "line 1, column 13: unknown field 'titel' on table 'posts' (did you mean 'title'?)"
    );
    assert_eq!(
        err("users(ORDER BY nmae) { id }"),
        "line 1, column 16: unknown field 'nmae' on table 'users' (did you mean 'name'?)"
    );
    assert_eq!(err("users { name { id } }"), "line 1, column 9: 'name' is a field of table 'users', not a relation: it takes no '{ }' or '( )'");
    assert_eq!(err("users(name.x = 1) { id }"), "line 1, column 7: 'name' is a field of table 'users', not a relation: only relations can be followed with '.'");
    assert_eq!(err("users(posts = 1) { id }"), "line 1, column 7: 'posts' is a relation of table 'users', not a field: name one of its fields, like 'posts.id'");
    assert_eq!(err("users(ORDER BY posts.id) { id }"), "line 1, column 16: cannot order by 'posts.id': 'posts' is a to-many relation (only fields of this table and of to-one relations can order rows)");
    assert_eq!(
        err("users { id id }"),
        "line 1, column 12: field 'id' is listed twice"
    );
    assert_eq!(
        err("kinds { x { id } }"),
        "line 1, column 9: unknown relation 'x' on table 'kinds' (it has no relations)"
    );
}

#[test]
fn type_errors() {
    assert_eq!(err("users(id = \"x\") { id }"), "line 1, column 12: type mismatch: field 'id' on table 'users' is integer, but \"x\" is a string");
    assert_eq!(err("users(name = 5) { id }"), "line 1, column 14: type mismatch: field 'name' on table 'users' is string, but 5 is a number");
    assert_eq!(err("users(verified = \"yes\") { id }"), "line 1, column 18: type mismatch: field 'verified' on table 'users' is boolean, but \"yes\" is a string");
    assert_eq!(err("users(posts.views IN (1, true)) { id }"), "line 1, column 26: type mismatch: field 'views' on table 'posts' is integer, but true is a boolean");
    assert_eq!(
        err("users(id LIKE \"1%\") { id }"),
        "line 1, column 10: LIKE needs a string field, but field 'id' on table 'users' is integer"
    );
    assert_eq!(err("kinds(da = \"2024-13-01\") { id }"), "line 1, column 12: invalid date \"2024-13-01\" for field 'da' on table 'kinds' (expected YYYY-MM-DD)");
    assert_eq!(err("kinds(dt = \"2024-01-01T00:00Z\") { id }"), "line 1, column 12: field 'dt' on table 'kinds' is datetime without a time zone: write \"2024-01-01T00:00Z\" without a zone");
    assert_eq!(err("kinds(j = \"{}\") { id }"), "line 1, column 9: field 'j' on table 'kinds' is json: only IS NULL and IS NOT NULL apply to it");
    assert_eq!(err("kinds(ti = \"noon\") { id }"), "line 1, column 12: invalid time \"noon\" for field 'ti' on table 'kinds' (expected HH:MM:SS[.ffffff])");
}

#[test]
fn syntax_errors_through_execute() {
    assert_eq!(
        err("users { id"),
        "line 1, column 7: unbalanced braces: this '{' is never closed"
    );
    assert_eq!(
        err("users { id } }"),
        "line 1, column 14: unbalanced braces: '}' has no matching '{'"
    );
    assert!(
        err("users(*) { id }").starts_with("line 1, column 7: '*' cannot be used inside a filter")
    );
    assert!(err("users(id = 1 AND ...) { id }")
        .starts_with("line 1, column 18: '...' cannot be used inside a filter"));
}

#[test]
fn ten_thousand_open_brackets_are_an_error() {
    for text in [
        "(".repeat(10_000),
        "{".repeat(10_000),
        format!("users({}", "(".repeat(10_000)),
        "users { posts { ".repeat(10_000),
    ] {
        let e = SNAPSHOT
            .with(|s| execute(s, &text, &QueryOptions::default()))
            .unwrap_err();
        assert!(e.line >= 1 && e.column >= 1, "{e}");
    }
    let e = SNAPSHOT
        .with(|s| {
            execute(
                s,
                &format!("users({} id = 1) {{ id }}", "NOT ".repeat(10_000)),
                &QueryOptions::default(),
            )
        })
        .unwrap_err();
    assert_eq!(e.message, "query nested too deeply (more than 32 levels)");
}

// ---------------------------------------------------------------------------------------------
// Plans.

fn plan(q: &str) -> Value {
    SNAPSHOT
        .with(|s| explain(s, q, &QueryOptions::default()))
        .unwrap_or_else(|e| panic!("{q}: {e}"))
}

#[test]
fn access_paths() {
    let p = plan("users(id = 2) { id name email }");
    assert_eq!(p["access"], "pk_lookup");
    assert_eq!(p["estimated_rows"], 1);
    assert_eq!(p["filter"], Value::Null);
    let p = plan("posts(user_id = 1 AND published = true) { id }");
    assert_eq!(p["access"], "index_lookup(user_id)");
    assert_eq!(p["index_exists"], true);
    assert_eq!(p["filter"], "published = true");
    let p = plan("users(id IN (1, 2) AND score > 3) { id }");
    assert_eq!(
        (p["access"].as_str(), p["lookups"].as_i64()),
        (Some("pk_lookup"), Some(2))
    );
    // Case-insensitive text never uses an index; booleans only an existing one.
    assert_eq!(plan("users(email = \"x\") { id }")["access"], "scan");
    assert_eq!(plan("users(verified = true) { id }")["access"], "scan");
    assert_eq!(plan("users(id = 1 OR id = 2) { id }")["access"], "scan");
    // Any other column: a lazily built index.
    assert_eq!(
        plan("users(name = \"bob\") { id }")["access"],
        "index_lookup(name)"
    );
    assert_eq!(ids("users(name = \"bob\") { id }"), vec![2]);
    assert_eq!(
        ids("users(name IN (\"bob\", \"Dave\", \"bob\")) { id }"),
        vec![2, 4]
    );
    // Children follow their relation.
    let p = plan("posts { id author { id } comments(approved = true) { id } }");
    assert_eq!(p["access"], "scan");
    assert_eq!(p["children"][0]["access"], "pk_lookup");
    assert_eq!(p["children"][1]["access"], "index_lookup(post_id)");
    assert_eq!(p["children"][1]["filter"], "approved = true");
    let p = plan("users(posts.comments.approved = true) { id }");
    let path = &p["relation_filters"][0]["path"];
    assert_eq!(path[0]["access"], "index_lookup(user_id)");
    assert_eq!(path[1]["access"], "index_lookup(post_id)");
    // `id >= N` / `id > N` on an integer primary key start the scan at N.
    let p = plan("users(id >= 2 AND score > 3) { id }");
    assert_eq!(p["access"], "pk_range(id >= 2)");
    assert_eq!(p["filter"], "id >= 2 AND score > 3");
    assert_eq!(
        plan("users(id > 2 AND id >= 1) { id }")["access"],
        "pk_range(id >= 2)"
    );
    assert_eq!(ids("users(id > 2) { id }"), vec![3, 4]);
    assert_eq!(ids("users(id >= 2 AND id < 4) { id }"), vec![2, 3]);
    assert_eq!(ids("users(id >= 9) { id }"), Vec::<i64>::new());
    assert_eq!(ids("users(id >= -9 LIMIT 2) { id }"), vec![1, 2]);
    assert_eq!(plan("users(id >= 2.5) { id }")["access"], "scan");
    assert_eq!(ids("users(id >= 2.5) { id }"), vec![3, 4]);
    assert_eq!(plan("users(id >= 2 OR score > 3) { id }")["access"], "scan");
    // With a limit in key order, the range beats an index on an arbitrary column; without a
    // limit, the index (which hands over only the matching rows) stays.
    assert_eq!(
        plan("users(name = \"bob\" AND id >= 2 LIMIT 5) { id }")["access"],
        "pk_range(id >= 2)"
    );
    assert_eq!(
        ids("users(name = \"bob\" AND id >= 2 LIMIT 5) { id }"),
        vec![2]
    );
    assert_eq!(
        plan("users(name = \"bob\" AND id >= 2) { id }")["access"],
        "index_lookup(name)"
    );
    // Tests of the row's own columns run before relation filters, at every level.
    let p = plan("users(posts.comments.approved = false AND score > 3 AND id >= 2) { id }");
    assert_eq!(
        p["filter"],
        "score > 3 AND id >= 2 AND posts.comments.approved = false"
    );
    let p = plan("users { posts(comments.approved = true AND published = true) { id } }");
    assert_eq!(
        p["children"][0]["filter"],
        "published = true AND comments.approved = true"
    );
}

#[test]
fn explain_reports_errors_like_execute() {
    let e = SNAPSHOT
        .with(|s| explain(s, "users { emial }", &QueryOptions::default()))
        .unwrap_err();
    assert_eq!((e.line, e.column), (1, 9));
}

// ---------------------------------------------------------------------------------------------
// Fuzz: any text gives valid JSON or a positioned error, never a panic.

const WORDS: &[&str] = &[
    "users",
    "posts",
    "comments",
    "kinds",
    "id",
    "name",
    "email",
    "plan",
    "score",
    "balance",
    "verified",
    "author",
    "user",
    "post",
    "title",
    "views",
    "body",
    "approved",
    "published",
    "user_id",
    "t",
    "ci",
    "d",
    "da",
    "ti",
    "j",
    "{",
    "}",
    "(",
    ")",
    ",",
    ".",
    "*",
    "...",
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "<>",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS",
    "NULL",
    "BETWEEN",
    "LIKE",
    "ILIKE",
    "ORDER",
    "BY",
    "ASC",
    "DESC",
    "NULLS",
    "FIRST",
    "LAST",
    "LIMIT",
    "OFFSET",
    "true",
    "false",
    "null",
    "0",
    "1",
    "-5",
    "2.50",
    "1e3",
    "\"pro\"",
    "'a%'",
    "\"2024-01-01\"",
    "\"\\\"\"",
    "--c\n",
    "\n",
    "é",
    "`x`",
    "\"",
    "'",
    "#",
];

fn words() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(WORDS), 0..40).prop_map(|w| w.join(" "))
}

/// Mostly well-formed queries with random parts.
fn queries() -> impl Strategy<Value = String> {
    let table = prop::sample::select(&["users", "posts", "comments", "kinds"][..]);
    (table, words(), words(), prop::bool::ANY).prop_map(|(t, args, items, with_args)| {
        if with_args {
            format!("{t}({args}) {{ {items} }}")
        } else {
            format!("{t} {{ {items} }}")
        }
    })
}

fn check_any(text: &str) {
    let result = SNAPSHOT.with(|s| execute(s, text, &QueryOptions::default()));
    match result {
        Ok(out) => {
            let v: Value = serde_json::from_slice(&out.body)
                .unwrap_or_else(|e| panic!("{text}: invalid JSON: {e}"));
            assert_eq!(v.as_array().map(|a| a.len()), Some(out.rows), "{text}");
        }
        Err(e) => assert!(
            e.line >= 1 && e.column >= 1 && !e.message.is_empty(),
            "{text}: {e:?}"
        ),
    }
    let _ = SNAPSHOT.with(|s| explain(s, text, &QueryOptions::default()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn fuzz_token_soup(text in words()) {
        check_any(&text);
    }

    #[test]
    fn fuzz_query_shapes(text in queries()) {
        check_any(&text);
    }

    #[test]
    fn fuzz_arbitrary_text(text in "\\PC{0,80}") {
        check_any(&text);
    }

    #[test]
    fn fuzz_mutated_examples(pos in 0usize..200, cut in 0usize..20, insert in prop::sample::select(WORDS)) {
        for q in [
            "users(plan = \"pro\" OR (plan = \"free\" AND verified = true)) { id name }",
            "posts(published = true AND user_id = 1 ORDER BY author.name DESC NULLS LAST LIMIT 2) { id title author { id name } comments(approved = true) { id } }",
            "users(posts.comments.approved = true AND score NOT BETWEEN 1 AND 3) { ... }",
        ] {
            let chars: Vec<char> = q.chars().collect();
            let p = pos.min(chars.len());
            let end = (p + cut).min(chars.len());
            let text: String = chars[..p].iter().collect::<String>() + insert + &chars[end..].iter().collect::<String>();
            check_any(&text);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timing (not an assertion): `cargo test --release -p refract-query -- --ignored --nocapture`.

#[test]
#[ignore]
fn time_pk_lookup_query() {
    let m = manifest();
    let mut b = TableBuilder::new(Arc::new(m.tables[0].clone()));
    let names: Vec<String> = (0..100_000).map(|i| format!("user {i}")).collect();
    let emails: Vec<String> = (0..100_000)
        .map(|i| format!("user{i}@example.com"))
        .collect();
    for i in 0..100_000usize {
        let row = [
            ValueRef::Int(i as i64),
            ValueRef::Text(&names[i]),
            ValueRef::Text(&emails[i]),
            ValueRef::Text("free"),
            ValueRef::Bool(i % 2 == 0),
            ValueRef::Int(i as i64 % 50),
            ValueRef::Decimal(i as i128),
        ];
        for (c, v) in row.into_iter().enumerate() {
            b.push(c, v);
        }
        b.end_row();
    }
    let empty = |i: usize| Arc::new(TableBuilder::new(Arc::new(m.tables[i].clone())).finish());
    let snap = Snapshot::new(
        Arc::new(m.clone()),
        vec![Arc::new(b.finish()), empty(1), empty(2), empty(3)],
    );
    let options = QueryOptions::default();
    for (label, q) in [
        ("pk lookup", "users(id = 42) { id name email }"),
        (
            "pk lookup + include",
            "users(id = 42) { id name posts { id title } }",
        ),
        (
            "scan 100k, filter, limit 10",
            "users(score = 7 LIMIT 10) { id name }",
        ),
    ] {
        let n = 200_000 / if label.starts_with("scan") { 100 } else { 1 };
        for _ in 0..n / 10 {
            execute(&snap, q, &options).unwrap();
        }
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(execute(&snap, q, &options).unwrap());
        }
        let per = start.elapsed() / n as u32;
        println!("{label}: {per:?} per query ({q})");
    }
}
