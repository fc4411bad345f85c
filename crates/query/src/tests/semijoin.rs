//! Relation filters by semi-join ([`crate::semijoin`]): the same answers as the nested loop,
//! chosen once the nested loop's work pays for the row set, never across snapshots, and
//! described by `explain`.

use serde_json::Value;

use crate::exec::SEMI_JOIN;
use crate::{execute, explain, QueryOptions};

use super::snapshot;

/// The strategy `explain` reports for the query's first relation filter.
fn strategy(s: &refract_storage::Snapshot, q: &str) -> Value {
    let plan = explain(s, q, &QueryOptions::default()).unwrap();
    plan["relation_filters"][0].clone()
}

fn body(s: &refract_storage::Snapshot, q: &str) -> Value {
    serde_json::from_slice(&execute(s, q, &QueryOptions::default()).unwrap().body).unwrap()
}

#[test]
fn forced_semi_joins_answer_like_the_nested_loop() {
    let queries = [
        "users(posts.comments.approved = false) { id }",
        "users(posts.comments.approved = false AND plan = \"free\") { id name }",
        "users(NOT posts.comments.approved = true ORDER BY name) { id }",
        "users(posts.comments.body IN (\"Spam\", \"Meh\") OR score > 5) { id }",
        "posts(author.plan = \"pro\") { id author { id } }",
        "comments(post.author.posts.published = false) { id }",
        "users(comments.post.published = true) { id posts(comments.approved IS NULL) { id } }",
        "users(posts.comments.approved IS NULL AND posts.views >= 5) { id }",
    ];
    for q in queries {
        let nested = {
            SEMI_JOIN.with(|f| f.set(Some(false)));
            let s = snapshot();
            let b = body(&s, q);
            assert_eq!(strategy(&s, q)["strategy"], "nested_loop", "{q}");
            b
        };
        SEMI_JOIN.with(|f| f.set(Some(true)));
        let s = snapshot();
        let semi = body(&s, q);
        SEMI_JOIN.with(|f| f.set(None));
        assert_eq!(semi, nested, "{q}");
        assert_eq!(
            strategy(&s, q)["strategy"],
            "semi_join",
            "{q}: {}",
            strategy(&s, q)
        );
    }
}

#[test]
fn the_nested_loop_pays_for_the_row_set_then_the_row_set_answers() {
    SEMI_JOIN.with(|f| f.set(None));
    let s = snapshot();
    let q = "users(posts.comments.approved = false) { id }";
    let first = strategy(&s, q);
    assert_eq!(first["strategy"], "nested_loop");
    assert_eq!(first["work_so_far"], 0);
    // users + posts + comments: 12 rows visited pay for it.
    assert_eq!(first["semi_join_after_work"], 12);
    let want = body(&s, q);
    assert_eq!(want, serde_json::json!([{"id": 1}, {"id": 2}]));
    let after_one = strategy(&s, q);
    assert_eq!(after_one["strategy"], "nested_loop");
    let work = after_one["work_so_far"].as_u64().unwrap();
    assert!(work > 0 && work < 12, "{after_one}");
    let mut runs = 1;
    while strategy(&s, q)["strategy"] == "nested_loop" {
        assert_eq!(body(&s, q), want);
        runs += 1;
        assert!(runs < 20, "never switched: {}", strategy(&s, q));
    }
    let done = strategy(&s, q);
    assert_eq!(done["matching_rows"], 2, "{done}");
    assert_eq!(body(&s, q), want);
    // A new snapshot (a swap) starts over.
    assert_eq!(strategy(&snapshot(), q)["strategy"], "nested_loop");
}
