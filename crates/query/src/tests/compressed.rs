//! Queries over compressed text: tables whose non-key text is FSST-compressed, reached
//! through relations whose *target* column is such text (the related table declares no
//! relation over it, so that column is not a key of its own and is compressed): a to-one
//! relation `posts.author` onto `authors.email`, a to-many relation `authors.reviews` onto
//! `reviews.author_email`. Every way the
//! executor reads a cell (filters, outputs, forward hops by index, semi-joins and nested loops,
//! sorting, ordered scans, relation ordering) must answer as over plain text, and never panic.

use std::sync::Arc;

use refract_schema::{Backend, Manifest, RelationKind, ValueRef};
use refract_storage::Snapshot;
use serde_json::{json, Value};

use crate::exec::SEMI_JOIN;
use crate::sample::{build, col, rel, table, TEXT};
use crate::{execute, QueryOptions};

const AUTHORS: i64 = 300;
const POSTS: i64 = 900;
const REVIEWS: i64 = 600;

fn email(i: i64) -> String {
    format!("author.number.{i}@example-publishing-house.com")
}

fn bio(i: i64) -> String {
    format!(
        "Writes about {} and {}; née Zoë ☕",
        ["rust", "sql", "go"][i as usize % 3],
        i % 17
    )
}

/// The author reviewed by review `r`, and its text.
fn review(r: i64) -> (Option<String>, String) {
    let author = (r % 13 != 0).then(|| email(r * 7 % (AUTHORS + 20)));
    (
        author,
        format!(
            "Review {}: {}",
            r % 9,
            ["loved it", "meh", "a classic"][r as usize % 3]
        ),
    )
}

/// The author of post `p`: by e-mail, none for every 10th post, an unknown address for
/// every 11th.
fn post_author(p: i64) -> Option<String> {
    if p % 10 == 0 {
        None
    } else if p % 11 == 0 {
        Some(format!("nobody{p}@example-publishing-house.com"))
    } else {
        Some(email(p % AUTHORS))
    }
}

fn snapshot() -> Snapshot {
    use refract_schema::ColumnType::Int;
    let authors = table(
        "authors",
        vec![col("id", Int), col("email", TEXT), col("bio", TEXT)],
        vec![rel("reviews", RelationKind::Reverse, "reviews", 1, 1)],
    );
    let reviews = table(
        "reviews",
        vec![col("id", Int), col("author_email", TEXT), col("text", TEXT)],
        vec![],
    );
    let posts = table(
        "posts",
        vec![
            col("id", Int),
            col("author_email", TEXT),
            col("title", TEXT),
        ],
        vec![rel("author", RelationKind::Forward, "authors", 1, 1)],
    );
    let emails: Vec<String> = (0..AUTHORS).map(email).collect();
    let bios: Vec<String> = (0..AUTHORS).map(bio).collect();
    // Loaded in descending id order: the builder sorts (and compresses again).
    let a = build(
        &authors,
        (0..AUTHORS)
            .rev()
            .map(|i| {
                vec![
                    ValueRef::Int(i),
                    ValueRef::Text(&emails[i as usize]),
                    ValueRef::Text(&bios[i as usize]),
                ]
            })
            .collect(),
    );
    assert!(
        !a.is_compressed(1),
        "a relation's local column is a key: never compressed"
    );
    assert!(a.is_compressed(2), "authors' bios are compressed");
    let post_authors: Vec<Option<String>> = (0..POSTS).map(post_author).collect();
    let titles: Vec<String> = (0..POSTS)
        .map(|p| format!("Post number {p} of the blog"))
        .collect();
    let p = build(
        &posts,
        (0..POSTS)
            .map(|p| {
                vec![
                    ValueRef::Int(p),
                    post_authors[p as usize]
                        .as_deref()
                        .map_or(ValueRef::Null, ValueRef::Text),
                    ValueRef::Text(&titles[p as usize]),
                ]
            })
            .collect(),
    );
    assert!(
        !p.is_compressed(1),
        "a relation's local column is a key: never compressed"
    );
    assert!(p.is_compressed(2), "posts' titles are compressed");
    let review_rows: Vec<(Option<String>, String)> = (0..REVIEWS).map(review).collect();
    let r = build(
        &reviews,
        (0..REVIEWS)
            .map(|i| {
                let (author, text) = &review_rows[i as usize];
                vec![
                    ValueRef::Int(i),
                    author.as_deref().map_or(ValueRef::Null, ValueRef::Text),
                    ValueRef::Text(text),
                ]
            })
            .collect(),
    );
    assert!(
        r.is_compressed(1) && r.is_compressed(2),
        "reviews' text is compressed"
    );
    let m = Manifest {
        warnings: Vec::new(),
        version: refract_schema::MANIFEST_VERSION,
        backend: Backend::Mysql,
        database: "compressed".into(),
        pg_schema: None,
        tables: vec![authors, posts, reviews],
    };
    Snapshot::new(Arc::new(m), vec![a, p, r])
}

fn body(s: &Snapshot, q: &str) -> Value {
    let out = execute(s, q, &QueryOptions::default()).unwrap_or_else(|e| panic!("{q}: {e}"));
    serde_json::from_slice(&out.body).unwrap()
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn queries_over_compressed_text_answer_as_over_plain_text() {
    let s = snapshot();
    // Filters and outputs of compressed cells.
    assert_eq!(
        body(
            &s,
            &format!("authors(email = \"{}\") {{ id email bio }}", email(7))
        ),
        json!([{"id": 7, "email": email(7), "bio": bio(7)}])
    );
    assert_eq!(
        ids(&body(
            &s,
            &format!("authors(bio = \"{}\" LIMIT 1000) {{ id }}", bio(4))
        )),
        (0..AUTHORS)
            .filter(|&i| bio(i) == bio(4))
            .collect::<Vec<_>>()
    );
    // Sorting by compressed text (full sort, and the ordered scan of ORDER BY ... LIMIT).
    let mut by_email: Vec<i64> = (0..AUTHORS).collect();
    by_email.sort_by_key(|&i| email(i));
    assert_eq!(
        ids(&body(&s, "authors(ORDER BY email DESC LIMIT 5) { id }")),
        by_email.iter().rev().take(5).copied().collect::<Vec<_>>()
    );
    assert_eq!(
        ids(&body(&s, "authors(ORDER BY bio, email LIMIT 1000) { id }")),
        {
            let mut v: Vec<i64> = (0..AUTHORS).collect();
            v.sort_by_key(|&i| (bio(i), email(i)));
            v
        }
    );
    // Forward hops whose target is compressed text: output through the relation.
    let want: Vec<Value> = (0..30)
        .map(|p| {
            let author = post_author(p)
                .and_then(|e| (0..AUTHORS).find(|&i| email(i) == e))
                .map_or(
                    Value::Null,
                    |i| json!({"id": i, "email": email(i), "bio": bio(i)}),
                );
            json!({"id": p, "title": format!("Post number {p} of the blog"), "author": author})
        })
        .collect();
    assert_eq!(
        body(&s, "posts(id < 30) { id title author { id email bio } }"),
        Value::Array(want)
    );
    // Ordering through the relation.
    let mut by_author: Vec<i64> = (0..POSTS).filter(|p| p % 10 != 0 && p % 11 != 0).collect();
    by_author.sort_by_key(|&p| (bio(p % AUTHORS), p));
    let got = ids(&body(
        &s,
        "posts(author.bio IS NOT NULL ORDER BY author.bio, id LIMIT 1000) { id }",
    ));
    assert_eq!(got, by_author);
    // To-many hops onto compressed text: nested output.
    let want: Vec<Value> = (0..4)
        .map(|a| {
            let reviews: Vec<Value> = (0..REVIEWS)
                .filter(|&r| review(r).0 == Some(email(a)))
                .map(|r| json!({"id": r, "author_email": email(a), "text": review(r).1}))
                .collect();
            json!({"id": a, "reviews": reviews})
        })
        .collect();
    assert_eq!(
        body(
            &s,
            "authors(id < 4) { id reviews { id author_email text } }"
        ),
        Value::Array(want)
    );
    // Relation filters on compressed text, by semi-join and by nested loop: the semi-join
    // of a to-many hop reads the compressed key of the far table.
    let loved =
        |a: i64| (0..REVIEWS).any(|r| review(r) == (Some(email(a)), "Review 3: loved it".into()));
    let queries = [
        (
            "authors(reviews.text = \"Review 3: loved it\" LIMIT 1000) { id }".to_string(),
            (0..AUTHORS).filter(|&a| loved(a)).collect::<Vec<_>>(),
        ),
        (
            format!("posts(author.email = \"{}\" LIMIT 1000) {{ id }}", email(7)),
            (0..POSTS)
                .filter(|&p| post_author(p).as_deref() == Some(email(7).as_str()))
                .collect::<Vec<_>>(),
        ),
        (
            "posts(author.bio = \"Writes about go and 5; née Zoë ☕\" LIMIT 1000) { id }".into(),
            (0..POSTS)
                .filter(|&p| {
                    post_author(p).is_some_and(|e| {
                        (0..AUTHORS)
                            .any(|i| email(i) == e && bio(i) == "Writes about go and 5; née Zoë ☕")
                    })
                })
                .collect(),
        ),
    ];
    for (q, want) in &queries {
        assert!(!want.is_empty(), "{q} selects something");
        for forced in [Some(false), Some(true), None] {
            SEMI_JOIN.with(|f| f.set(forced));
            let got = ids(&body(&s, q));
            SEMI_JOIN.with(|f| f.set(None));
            assert_eq!(&got, want, "{q} with semi-join {forced:?}");
        }
    }
}
