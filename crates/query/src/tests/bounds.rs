//! Bounded runs: byte cap, deadline, a sink that goes away, pieces that add up to the answer,
//! and the nested default limit.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::snapshot;
use crate::{execute, explain, run, Interrupt, QueryOptions, RunError, RunLimits, Sink};

/// A cyclic selection: users → posts → author → posts → … `levels` deep.
fn cyclic(levels: usize) -> String {
    let mut q = String::from("id");
    for level in (0..levels).rev() {
        let rel = if level % 2 == 0 { "posts" } else { "author" };
        q = format!("id {rel} {{ {q} }}");
    }
    format!("users {{ {q} }}")
}

/// Collects pieces; says it is gone after `gone_after` pieces.
struct Pieces {
    pieces: Vec<Vec<u8>>,
    gone_after: usize,
}

impl Sink for Pieces {
    fn write(&mut self, piece: Vec<u8>) -> bool {
        self.pieces.push(piece);
        self.pieces.len() < self.gone_after
    }
    fn wanted(&self) -> bool {
        self.pieces.len() < self.gone_after
    }
}

fn limits(max_bytes: usize, flush_bytes: usize) -> RunLimits {
    RunLimits {
        max_bytes,
        deadline: None,
        flush_bytes,
    }
}

#[test]
fn pieces_add_up_to_the_unbounded_answer() {
    let s = snapshot();
    let options = QueryOptions::default();
    for q in [
        "users { * posts { * comments { * } } }",
        &cyclic(6),
        "posts(ORDER BY title DESC) { id title author { name } }",
    ] {
        let whole = execute(&s, q, &options).unwrap();
        for flush in [1, 7, 64, usize::MAX] {
            let mut sink = Pieces {
                pieces: Vec::new(),
                gone_after: usize::MAX,
            };
            let sum = run(&s, q, &options, &limits(usize::MAX, flush), &mut sink).unwrap();
            let mut joined: Vec<u8> = sink.pieces.concat();
            joined.extend_from_slice(&sum.tail);
            assert_eq!(joined, whole.body, "{q} flushed every {flush} bytes");
            assert_eq!(sum.bytes, whole.body.len());
            assert_eq!((sum.rows, sum.truncated), (whole.rows, whole.truncated));
            if flush == 1 {
                assert!(sink.pieces.len() > 1, "{q}: nothing was flushed");
            }
        }
    }
}

#[test]
fn the_byte_cap_stops_a_run() {
    let s = snapshot();
    let options = QueryOptions::default();
    let q = cyclic(8);
    let whole = execute(&s, &q, &options).unwrap().body.len();
    let mut sink = Pieces {
        pieces: Vec::new(),
        gone_after: usize::MAX,
    };
    let e = run(&s, &q, &options, &limits(whole / 3, 16), &mut sink).unwrap_err();
    assert_eq!(e, RunError::Interrupted(Interrupt::TooLarge));
    let sent: usize = sink.pieces.iter().map(Vec::len).sum();
    assert!(
        sent <= whole / 3,
        "{sent} bytes sent past a cap of {}",
        whole / 3
    );
    // Exactly at the size, the run completes.
    assert!(run(&s, &q, &options, &limits(whole, 16), &mut ()).is_ok());
}

#[test]
fn a_passed_deadline_stops_a_run() {
    let s = snapshot();
    let options = QueryOptions::default();
    let limits = RunLimits {
        max_bytes: usize::MAX,
        deadline: Some(Instant::now() - Duration::from_millis(1)),
        flush_bytes: usize::MAX,
    };
    // The clock is read every few hundred rows: a query that visits that many stops.
    let e = run(&s, &cyclic(20), &options, &limits, &mut ()).map(|s| s.bytes);
    assert_eq!(e, Err(RunError::Interrupted(Interrupt::Timeout)));
    // A small query finishes before it looks at the clock.
    assert!(run(&s, "users(id = 1) { id }", &options, &limits, &mut ()).is_ok());
}

#[test]
fn a_sink_that_goes_away_stops_the_run() {
    let s = snapshot();
    let options = QueryOptions::default();
    let mut sink = Pieces {
        pieces: Vec::new(),
        gone_after: 2,
    };
    let e = run(&s, &cyclic(10), &options, &limits(usize::MAX, 8), &mut sink).unwrap_err();
    assert_eq!(e, RunError::Interrupted(Interrupt::Cancelled));
    assert_eq!(
        sink.pieces.len(),
        2,
        "no piece after the sink said it was gone"
    );
}

#[test]
fn query_errors_come_before_any_byte() {
    let s = snapshot();
    let mut sink = Pieces {
        pieces: Vec::new(),
        gone_after: usize::MAX,
    };
    let e = run(
        &s,
        "users { nope }",
        &QueryOptions::default(),
        &limits(usize::MAX, 1),
        &mut sink,
    )
    .unwrap_err();
    assert!(matches!(e, RunError::Query(_)), "{e:?}");
    assert!(sink.pieces.is_empty());
}

#[test]
fn nested_selections_without_limit_get_the_nested_default() {
    let s = snapshot();
    let options = QueryOptions {
        default_nested_limit: 1,
        ..QueryOptions::default()
    };
    // Alice has posts 10 and 11: one is shown, and the result says it was cut.
    let out = execute(&s, "users(id = 1) { posts { id } }", &options).unwrap();
    assert_eq!(out.body, br#"[{"posts":[{"id":10}]}]"#);
    assert!(out.truncated);
    // The same with an ORDER BY (the sorting path).
    let out = execute(
        &s,
        "users(id = 1) { posts(ORDER BY id DESC) { id } }",
        &options,
    )
    .unwrap();
    assert_eq!(out.body, br#"[{"posts":[{"id":11}]}]"#);
    assert!(out.truncated);
    // An explicit LIMIT is honored as given, and does not report a cut.
    let out = execute(&s, "users(id = 1) { posts(LIMIT 5) { id } }", &options).unwrap();
    assert_eq!(out.body, br#"[{"posts":[{"id":10},{"id":11}]}]"#);
    assert!(!out.truncated);
    // Exactly at the default: nothing was cut.
    let out = execute(&s, "users(id = 3) { posts { id } }", &options).unwrap();
    assert!(!out.truncated, "{}", String::from_utf8_lossy(&out.body));
    // Forward relations are one row: no default applies.
    let out = execute(&s, "posts(id = 10) { author { id } }", &options).unwrap();
    assert!(!out.truncated);
    // explain shows the default of the nested selection.
    let plan: Value = explain(&s, "users { posts { id author { id } } }", &options).unwrap();
    let posts = &plan["children"][0];
    assert_eq!(posts["default_limit"], 1, "{plan}");
    assert_eq!(posts["limit"], Value::Null);
    assert!(
        posts["children"][0].get("default_limit").is_none(),
        "{plan}"
    );
    assert_eq!(plan["default_limit"], 10_000);
}

/// The query fuzz target's corpus (fuzz/corpus/query) replays within its bounds.
#[test]
fn the_fuzz_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/query");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        crate::sample::fuzz_query(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n > 0, "{} is empty", dir.display());
}
