//! Unit and property tests of tables: building, scanning, lookups, fingerprints and `apply`
//! against a `BTreeMap` model.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use refract_schema::{
    ColumnManifest, ColumnType, Relation, RelationKind, RowSink, TableManifest, Value, ValueRef,
};

use crate::{ChangeBatch, Table, TableBuilder};

const TEXT: ColumnType = ColumnType::Text {
    case_insensitive: false,
};

fn manifest(types: &[ColumnType], pk: &[usize], fks: &[&[usize]]) -> Arc<TableManifest> {
    Arc::new(TableManifest {
        source_name: "t".into(),
        api_name: "t".into(),
        columns: types
            .iter()
            .enumerate()
            .map(|(i, &ty)| ColumnManifest {
                source_name: format!("c{i}"),
                api_name: format!("c{i}"),
                ty,
                source_type: ty.name().into(),
                nullable: true,
                note: None,
            })
            .collect(),
        primary_key: pk.to_vec(),
        where_sql: None,
        relations: fks
            .iter()
            .enumerate()
            .map(|(i, cols)| Relation {
                name: format!("r{i}"),
                kind: RelationKind::Forward,
                target_table: "other".into(),
                local_columns: cols.to_vec(),
                target_columns: vec![0],
            })
            .collect(),
        estimated_bytes: None,
    })
}

fn build(m: &Arc<TableManifest>, rows: &[Vec<Value>]) -> Table {
    let mut b = TableBuilder::new(m.clone());
    for row in rows {
        for (c, v) in row.iter().enumerate() {
            b.push(c, v.as_ref());
        }
        assert!(b.end_row());
    }
    b.finish()
}

fn row_of(t: &Table, r: u32) -> Vec<Value> {
    (0..t.manifest.columns.len())
        .map(|c| t.owned_value(c, r))
        .collect()
}

fn rows_of(t: &Table) -> Vec<Vec<Value>> {
    t.scan().map(|r| row_of(t, r)).collect()
}

use Value as O;

#[test]
fn tables_are_shareable_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Table>();
    send_sync::<crate::Snapshot>();
    send_sync::<ChangeBatch>();
}

#[test]
fn builds_scans_and_looks_up() {
    let m = manifest(
        &[ColumnType::Int, ColumnType::Int, TEXT, ColumnType::Bool],
        &[0],
        &[&[1]],
    );
    let mut b = TableBuilder::new(m.clone());
    // Out of primary-key order, a missing cell, a mismatched cell, a double push.
    for (id, user, name) in [(3, 10, "c"), (1, 20, "a"), (2, 10, "b")] {
        b.push(0, ValueRef::Int(id));
        b.push(1, ValueRef::Int(user));
        b.push(1, ValueRef::Int(999));
        b.push(2, ValueRef::Text(name));
        if id == 2 {
            b.push(3, ValueRef::Int(1));
        }
        assert!(b.end_row());
    }
    b.push(0, ValueRef::Int(4)); // a row never ended
    assert!(b.memory_bytes() > 0);
    let t = b.finish();
    assert_eq!(t.row_count(), 3);
    assert_eq!(t.row_id_bound(), 3);
    assert_eq!(
        rows_of(&t),
        vec![
            vec![O::Int(1), O::Int(20), O::Text("a".into()), O::Null],
            vec![O::Int(2), O::Int(10), O::Text("b".into()), O::Null],
            vec![O::Int(3), O::Int(10), O::Text("c".into()), O::Null],
        ]
    );
    assert_eq!(t.pk_lookup(&[ValueRef::Int(2)]), Some(1));
    assert_eq!(t.pk_lookup(&[ValueRef::Int(4)]), None);
    assert_eq!(t.pk_lookup(&[ValueRef::Text("2")]), None);
    assert_eq!(t.pk_lookup(&[]), None);
    assert!(t.has_index(&[0]));
    assert!(t.has_index(&[1]));
    assert!(!t.has_index(&[2]));
    assert_eq!(t.index_lookup(&[1], &[ValueRef::Int(10)]), vec![1, 2]);
    assert_eq!(
        t.index_lookup(&[1], &[ValueRef::Int(11)]),
        Vec::<u32>::new()
    );
    assert_eq!(t.index_lookup(&[1], &[ValueRef::Null]), Vec::<u32>::new());
    assert_eq!(t.index_lookup(&[0], &[ValueRef::Int(3)]), vec![2]);
    // Lazy index.
    assert_eq!(t.index_lookup(&[2], &[ValueRef::Text("b")]), vec![1]);
    assert!(t.has_index(&[2]));
    assert_eq!(
        t.index_lookup(&[1, 2], &[ValueRef::Int(10), ValueRef::Text("c")]),
        vec![2]
    );
    assert_eq!(t.index_lookup(&[], &[]), vec![0, 1, 2]);
    assert_eq!(t.column_type(2), TEXT);
    assert!(format!("{t:?}").contains("dense"));
}

#[test]
fn composite_text_and_sparse_keys() {
    let m = manifest(&[TEXT, ColumnType::Int, ColumnType::Float], &[0, 1], &[]);
    let rows: Vec<Vec<Value>> = (0..10_000)
        .rev()
        .map(|i| {
            vec![
                O::Text(format!("k{}", i % 7)),
                O::Int(i),
                O::Float(i as f64 / 2.0),
            ]
        })
        .collect();
    let t = build(&m, &rows);
    let mut want = rows.clone();
    want.sort_by(|a, b| match (&a[0], &b[0], &a[1], &b[1]) {
        (O::Text(x), O::Text(y), O::Int(p), O::Int(q)) => (x, p).cmp(&(y, q)),
        _ => unreachable!(),
    });
    assert_eq!(rows_of(&t), want);
    for i in [0, 1, 4095, 4096, 9999] {
        let r = t
            .pk_lookup(&[ValueRef::Text(&format!("k{}", i % 7)), ValueRef::Int(i)])
            .unwrap();
        assert_eq!(t.value(2, r), ValueRef::Float(i as f64 / 2.0));
    }
    assert_eq!(t.pk_lookup(&[ValueRef::Text("k1"), ValueRef::Int(0)]), None);
    assert!(format!("{t:?}").contains("hash"));

    // Sparse integer keys use the integer hash index.
    let m = manifest(&[ColumnType::Int], &[0], &[]);
    let rows: Vec<Vec<Value>> = (0..5000i64).map(|i| vec![O::Int(i * 1_000_003)]).collect();
    let t = build(&m, &rows);
    assert!(format!("{t:?}").contains("int-hash"));
    assert_eq!(t.pk_lookup(&[ValueRef::Int(4999 * 1_000_003)]), Some(4999));
    assert_eq!(t.pk_lookup(&[ValueRef::Int(1)]), None);
}

#[test]
fn empty_and_keyless_tables() {
    let m = manifest(&[ColumnType::Int, TEXT], &[], &[&[0]]);
    let t = build(&m, &[]);
    assert_eq!(t.row_count(), 0);
    assert_eq!(t.scan().count(), 0);
    assert_eq!(t.index_lookup(&[0], &[ValueRef::Int(1)]), Vec::<u32>::new());
    assert_eq!(t.pk_lookup(&[ValueRef::Int(1)]), None);
    let rows = vec![
        vec![O::Int(2), O::Text("x".into())],
        vec![O::Int(1), O::Null],
        vec![O::Int(2), O::Text("x".into())],
    ];
    let t = build(&m, &rows);
    assert_eq!(rows_of(&t), rows, "load order without a primary key");
    assert_eq!(t.index_lookup(&[0], &[ValueRef::Int(2)]), vec![0, 2]);
    let mut batch = ChangeBatch::new();
    batch
        .delete(vec![O::Int(2), O::Text("x".into())])
        .upsert(vec![O::Int(3)]);
    let t2 = t.apply(&batch);
    assert_eq!(
        rows_of(&t2),
        vec![
            vec![O::Int(1), O::Null],
            vec![O::Int(2), O::Text("x".into())],
            vec![O::Int(3), O::Null]
        ]
    );
    assert_eq!(rows_of(&t), rows, "the old version is unchanged");
}

#[test]
fn fingerprint_depends_on_content_only() {
    let m = manifest(
        &[ColumnType::Int, TEXT, ColumnType::Decimal { scale: 2 }],
        &[0],
        &[],
    );
    let rows: Vec<Vec<Value>> = (0..100)
        .map(|i| {
            vec![
                O::Int(i),
                O::Text(format!("n{i}")),
                O::Decimal(i as i128 * 1_000_000_000_000_000_000),
            ]
        })
        .collect();
    let a = build(&m, &rows);
    let mut rev = rows.clone();
    rev.reverse();
    let b = build(&m, &rev);
    assert_eq!(a.fingerprint(), b.fingerprint());
    let mut other = rows.clone();
    other[5][1] = O::Text("changed".into());
    assert_ne!(a.fingerprint(), build(&m, &other).fingerprint());
    other[5][1] = O::Null;
    assert_ne!(a.fingerprint(), build(&m, &other).fingerprint());
    assert_ne!(a.fingerprint(), build(&m, &rows[..99]).fingerprint());
    // Through apply (fingerprint carried incrementally) equals a fresh load.
    let mut batch = ChangeBatch::new();
    batch.upsert(other[5].clone());
    let c = a.apply(&batch);
    assert_eq!(c.fingerprint(), build(&m, &other).fingerprint());
}

#[test]
fn apply_updates_in_place_or_moves_rows() {
    let m = manifest(&[ColumnType::Int, ColumnType::Int, TEXT], &[0], &[&[1]]);
    let rows: Vec<Vec<Value>> = (0..10_000)
        .map(|i| vec![O::Int(i), O::Int(i % 10), O::Text(format!("t{i}"))])
        .collect();
    let t = build(&m, &rows);
    let before = t.memory_bytes();
    let mut batch = ChangeBatch::new();
    batch
        .upsert(vec![O::Int(5), O::Int(5), O::Text("new".into())]) // in place
        .upsert(vec![O::Int(6), O::Int(1), O::Text("t6".into())]) // foreign key moves
        .delete(vec![O::Int(7)])
        .upsert(vec![O::Int(10_000), O::Int(3), O::Null]) // append in order
        .upsert(vec![O::Int(-1), O::Int(3), O::Null]); // insert below every key
    let t2 = t.apply(&batch);
    assert_eq!(t2.row_count(), 10_001);
    assert_eq!(t2.row_id_bound(), 10_003);
    let r5 = t2.pk_lookup(&[ValueRef::Int(5)]).unwrap();
    assert_eq!(r5, 5);
    assert_eq!(t2.owned_value(2, r5), O::Text("new".into()));
    assert_eq!(
        t.owned_value(2, 5),
        O::Text("t5".into()),
        "old version unchanged"
    );
    assert!(t2.pk_lookup(&[ValueRef::Int(7)]).is_none());
    assert!(!t2.is_live(7));
    let r6 = t2.pk_lookup(&[ValueRef::Int(6)]).unwrap();
    assert_ne!(r6, 6);
    let ones = t2.index_lookup(&[1], &[ValueRef::Int(1)]);
    assert_eq!(ones.len(), 1001);
    let ones_keys: Vec<_> = ones.iter().map(|&r| t2.value(0, r)).collect();
    assert!(ones_keys.windows(2).all(|w| match (w[0], w[1]) {
        (ValueRef::Int(a), ValueRef::Int(b)) => a < b,
        _ => false,
    }));
    assert!(ones_keys.contains(&ValueRef::Int(6)));
    assert_eq!(
        t2.index_lookup(&[1], &[ValueRef::Int(3)])
            .iter()
            .map(|&r| t2.value(0, r))
            .collect::<Vec<_>>()[..2],
        [ValueRef::Int(-1), ValueRef::Int(3)]
    );
    let keys: Vec<_> = t2.scan().map(|r| t2.value(0, r)).collect();
    assert_eq!(keys[0], ValueRef::Int(-1));
    assert_eq!(keys[keys.len() - 1], ValueRef::Int(10_000));
    // Only touched chunks were copied: the middle chunk of every column is shared.
    for c in 0..3 {
        assert!(Arc::ptr_eq(
            &t.store.cols[c].chunks[1],
            &t2.store.cols[c].chunks[1]
        ));
        assert!(!Arc::ptr_eq(
            &t.store.cols[c].chunks[2],
            &t2.store.cols[c].chunks[2]
        ));
    }
    assert!(Arc::ptr_eq(
        &t.store.cols[2].chunks[1],
        &t2.store.cols[2].chunks[1]
    ));
    assert!(
        t2.memory_bytes() < 2 * before,
        "{} vs {before}",
        t2.memory_bytes()
    );
    // Compaction renumbers and keeps content.
    let c = t2.compact();
    assert_eq!(c.row_id_bound(), 10_001);
    assert_eq!(rows_of(&c), rows_of(&t2));
    assert_eq!(c.fingerprint(), t2.fingerprint());
}

/// The cells of the model row for key `k`: (fk, text, flag).
type ModelRow = (Option<i64>, Option<String>, bool);

/// The key cell: an integer, or a decimal (which takes the generic hash index).
fn key_cell(decimal: bool, k: i64) -> Value {
    if decimal {
        O::Decimal(k as i128)
    } else {
        O::Int(k)
    }
}

fn model_row_k(decimal: bool, k: i64, m: &ModelRow) -> Vec<Value> {
    let mut row = model_row(k, m);
    row[0] = key_cell(decimal, k);
    row
}

fn model_row(k: i64, m: &ModelRow) -> Vec<Value> {
    vec![
        O::Int(k),
        m.0.map_or(O::Null, O::Int),
        m.1.clone().map_or(O::Null, O::Text),
        O::Bool(m.2),
    ]
}

fn check(t: &Table, model: &BTreeMap<i64, ModelRow>, fresh_manifest: &Arc<TableManifest>) {
    let decimal = t.column_type(0) != ColumnType::Int;
    let want: Vec<Vec<Value>> = model
        .iter()
        .map(|(&k, m)| model_row_k(decimal, k, m))
        .collect();
    assert_eq!(rows_of(t), want);
    assert_eq!(t.row_count(), model.len());
    for (&k, _) in model.iter() {
        let key = key_cell(decimal, k);
        let r = t.pk_lookup(&[key.as_ref()]).expect("key present");
        assert_eq!(t.value(0, r), key.as_ref());
    }
    let mut fks: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (&k, m) in model {
        if let Some(f) = m.0 {
            fks.entry(f).or_default().push(k);
        }
    }
    for f in -1..12 {
        let got = t
            .index_lookup(&[1], &[ValueRef::Int(f)])
            .iter()
            .map(|&r| t.value(0, r).into())
            .collect::<Vec<Value>>();
        let want: Vec<Value> = fks
            .get(&f)
            .map(|ks| ks.iter().map(|&k| key_cell(decimal, k)).collect())
            .unwrap_or_default();
        assert_eq!(got, want, "fk {f}");
    }
    // Lazy index on the flag, if one exists on this version.
    if t.has_index(&[3]) {
        let got = t.index_lookup(&[3], &[ValueRef::Bool(true)]).len();
        assert_eq!(got, model.values().filter(|m| m.2).count());
    }
    let fresh = build(fresh_manifest, &want);
    assert_eq!(t.fingerprint(), fresh.fingerprint());
}

#[derive(Debug, Clone)]
enum Op {
    Upsert(i64, ModelRow),
    Delete(i64),
}

fn op(keys: std::ops::Range<i64>) -> impl Strategy<Value = Op> {
    let row = (
        proptest::option::of(0i64..10),
        proptest::option::of("[a-z]{0,12}"),
        any::<bool>(),
    );
    prop_oneof![
        3 => (keys.clone(), row).prop_map(|(k, r)| Op::Upsert(k, r)),
        1 => keys.prop_map(Op::Delete),
    ]
}

fn run_model(
    decimal: bool,
    scale: i64,
    initial: Vec<(i64, ModelRow)>,
    batches: Vec<Vec<Op>>,
    compaction: bool,
    lazy: bool,
) {
    let kt = if decimal {
        ColumnType::Decimal { scale: 0 }
    } else {
        ColumnType::Int
    };
    let m = manifest(
        &[kt, ColumnType::Int, TEXT, ColumnType::Bool],
        &[0],
        &[&[1]],
    );
    let mut model: BTreeMap<i64, ModelRow> = BTreeMap::new();
    for (k, r) in initial {
        model.entry(k * scale).or_insert(r);
    }
    // Load in descending order: the builder must sort.
    let rows: Vec<Vec<Value>> = model
        .iter()
        .rev()
        .map(|(&k, m)| model_row_k(decimal, k, m))
        .collect();
    let mut t = build(&m, &rows);
    if lazy {
        t.index_lookup(&[3], &[ValueRef::Bool(true)]);
    }
    check(&t, &model, &m);
    for (i, ops) in batches.into_iter().enumerate() {
        if i % 2 == 0 {
            t.fingerprint(); // exercise both the carried and the recomputed fingerprint
        }
        let mut batch = ChangeBatch::new();
        for op in ops {
            match op {
                Op::Upsert(k, r) => {
                    batch.upsert(model_row_k(decimal, k * scale, &r));
                    model.insert(k * scale, r);
                }
                Op::Delete(k) => {
                    batch.delete(vec![key_cell(decimal, k * scale)]);
                    model.remove(&(k * scale));
                }
            }
        }
        t = t.apply_inner(&batch, compaction);
        check(&t, &model, &m);
    }
}

proptest! {
    // 256 cases by default; PROPTEST_CASES overrides.

    #[test]
    fn apply_matches_model_dense(
        initial in proptest::collection::vec((0i64..60, (proptest::option::of(0i64..10), proptest::option::of("[a-z]{0,12}"), any::<bool>())), 0..40),
        batches in proptest::collection::vec(proptest::collection::vec(op(-5..70), 0..20), 0..6),
        compaction in any::<bool>(),
        lazy in any::<bool>(),
    ) {
        run_model(false, 1, initial, batches, compaction, lazy);
    }

    #[test]
    fn apply_matches_model_sparse(
        initial in proptest::collection::vec((0i64..60, (proptest::option::of(0i64..10), proptest::option::of("[a-z]{0,12}"), any::<bool>())), 0..40),
        batches in proptest::collection::vec(proptest::collection::vec(op(-5..70), 0..20), 0..6),
        compaction in any::<bool>(),
    ) {
        run_model(false, 1_000_000_007_000, initial, batches, compaction, false);
    }

    #[test]
    fn apply_matches_model_generic_hash(
        initial in proptest::collection::vec((0i64..60, (proptest::option::of(0i64..10), proptest::option::of("[a-z]{0,12}"), any::<bool>())), 0..40),
        batches in proptest::collection::vec(proptest::collection::vec(op(-5..70), 0..20), 0..6),
        compaction in any::<bool>(),
        lazy in any::<bool>(),
    ) {
        run_model(true, 3, initial, batches, compaction, lazy);
    }

    #[test]
    fn builder_roundtrips_any_values(
        cells in proptest::collection::vec((any::<i64>(), any::<Option<i64>>(), any::<Option<String>>(), any::<Option<i128>>(), any::<Option<f64>>()), 0..300)
    ) {
        let m = manifest(
            &[ColumnType::Int, ColumnType::DateTime, TEXT, ColumnType::Decimal { scale: 3 }, ColumnType::Float],
            &[0],
            &[&[1]],
        );
        let mut by_key: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
        for (k, a, s, d, f) in cells {
            by_key.entry(k).or_insert_with(|| vec![
                O::Int(k),
                a.map_or(O::Null, O::DateTime),
                s.map_or(O::Null, O::Text),
                d.map_or(O::Null, O::Decimal),
                f.map_or(O::Null, O::Float),
            ]);
        }
        let rows: Vec<Vec<Value>> = by_key.values().cloned().collect();
        let mut shuffled = rows.clone();
        shuffled.reverse();
        let t = build(&m, &shuffled);
        let got = rows_of(&t);
        prop_assert_eq!(got.len(), rows.len());
        for (g, w) in got.iter().zip(&rows) {
            for (a, b) in g.iter().zip(w) {
                match (a, b) {
                    (O::Float(x), O::Float(y)) => prop_assert_eq!(x.to_bits(), y.to_bits()),
                    _ => prop_assert_eq!(a, b),
                }
            }
        }
        for row in &rows {
            if let O::Int(k) = row[0] {
                let r = t.pk_lookup(&[ValueRef::Int(k)]);
                prop_assert!(r.is_some());
                if let O::DateTime(a) = row[1] {
                    prop_assert!(t.index_lookup(&[1], &[ValueRef::DateTime(a)]).contains(&r.unwrap()));
                }
            }
        }
    }
}

/// Deterministic large run: crosses chunk boundaries, splits order chunks, extends and converts
/// the dense index, compacts.
#[test]
fn apply_large_against_model() {
    let m = manifest(
        &[ColumnType::Int, ColumnType::Int, TEXT, ColumnType::Bool],
        &[0],
        &[&[1]],
    );
    let mut model: BTreeMap<i64, ModelRow> = BTreeMap::new();
    for k in (0..20_000i64).step_by(2) {
        model.insert(k, (Some(k % 10), Some(format!("v{k}")), k % 3 == 0));
    }
    let rows: Vec<Vec<Value>> = model.iter().map(|(&k, m)| model_row(k, m)).collect();
    let mut t = build(&m, &rows);
    t.index_lookup(&[3], &[ValueRef::Bool(true)]);
    check(&t, &model, &m);
    let mut seed = 0x1234_5678_u64;
    let mut rnd = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for round in 0..6 {
        let mut batch = ChangeBatch::new();
        for _ in 0..3000 {
            let k = match round {
                4 => 40_000 + rnd(100_000) as i64 * 1000, // sparse: converts the dense index
                _ => rnd(25_000) as i64 - 1000,
            };
            if rnd(5) == 0 {
                batch.delete(vec![O::Int(k)]);
                model.remove(&k);
            } else {
                let r = (
                    Some(rnd(10) as i64),
                    Some(format!("w{}", rnd(1000))),
                    rnd(2) == 0,
                );
                batch.upsert(model_row(k, &r));
                model.insert(k, r);
            }
        }
        t = t.apply(&batch);
        check(&t, &model, &m);
    }
}

/// Memory of an (int, int, text ~40 bytes, bool, datetime) row, indexes included.
#[test]
fn memory_per_row() {
    let m = manifest(
        &[
            ColumnType::Int,
            ColumnType::Int,
            TEXT,
            ColumnType::Bool,
            ColumnType::DateTime,
        ],
        &[0],
        &[&[1]],
    );
    let n = 200_000i64;
    let mut b = TableBuilder::new(m);
    let text = "x".repeat(30);
    for i in 1..=n {
        b.push(0, ValueRef::Int(i));
        b.push(1, ValueRef::Int(1 + (i * 7919) % 20_000));
        b.push(2, ValueRef::Text(&format!("{text} {i:09}")));
        b.push(3, ValueRef::Bool(i % 4 == 0));
        b.push(
            4,
            ValueRef::DateTime(1_600_000_000_000_000 + i * 37_000_000),
        );
        b.end_row();
    }
    let t = b.finish();
    let per_row = t.memory_bytes() as f64 / n as f64;
    eprintln!("memory per (int, int, text40, bool, datetime) row: {per_row:.1} bytes");
    assert!(per_row < 75.0, "{per_row}");
}

/// Timings (run with `cargo test --release -p refract-storage perf -- --ignored --nocapture`).
#[test]
#[ignore]
fn perf() {
    use std::time::Instant;
    let m = manifest(
        &[
            ColumnType::Int,
            ColumnType::Int,
            TEXT,
            ColumnType::Bool,
            ColumnType::DateTime,
        ],
        &[0],
        &[&[1]],
    );
    let n = 1_000_000i64;
    let texts: Vec<String> = (0..n)
        .map(|i| format!("{} {i:09}", "x".repeat(30)))
        .collect();
    for reversed in [false, true] {
        let t0 = Instant::now();
        let mut b = TableBuilder::new(m.clone());
        for j in 0..n {
            let i = if reversed { n - j } else { j + 1 };
            b.push(0, ValueRef::Int(i));
            b.push(1, ValueRef::Int(1 + (i * 7919) % 20_000));
            b.push(2, ValueRef::Text(&texts[(i - 1) as usize]));
            b.push(3, ValueRef::Bool(i % 4 == 0));
            b.push(
                4,
                ValueRef::DateTime(1_600_000_000_000_000 + i * 37_000_000),
            );
            b.end_row();
        }
        let pushed = t0.elapsed();
        let t = b.finish();
        eprintln!(
            "load 1M rows (reversed={reversed}): push {:?}, finish {:?}, {:.1} B/row",
            pushed,
            t0.elapsed() - pushed,
            t.memory_bytes() as f64 / n as f64
        );
        if reversed {
            continue;
        }
        let t1 = Instant::now();
        let mut hits = 0u64;
        let mut x = 1u64;
        for _ in 0..1_000_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let k = (x >> 33) as i64 % n + 1;
            hits += t.pk_lookup(&[ValueRef::Int(k)]).is_some() as u64;
        }
        eprintln!(
            "pk_lookup dense: {:?}/op ({hits})",
            t1.elapsed() / 1_000_000
        );
        let t1 = Instant::now();
        let mut found = 0usize;
        for k in 1..=20_000 {
            found += t.index_lookup(&[1], &[ValueRef::Int(k)]).len();
        }
        eprintln!(
            "fk index_lookup (50 rows each): {:?}/op ({found})",
            t1.elapsed() / 20_000
        );
        let t1 = Instant::now();
        let mut sum = 0i64;
        for r in t.scan() {
            if let ValueRef::Int(v) = t.value(1, r) {
                sum += v;
            }
            sum += t.with_value(2, r, |v| match v {
                ValueRef::Text(s) => s.len() as i64,
                _ => 0,
            });
        }
        eprintln!("scan 2 columns: {:?}/row ({sum})", t1.elapsed() / n as u32);
        let t1 = Instant::now();
        let fp = t.fingerprint();
        eprintln!("fingerprint: {:?} ({fp:x})", t1.elapsed());
        let mut batch = ChangeBatch::new();
        for i in 0..100 {
            batch.upsert(vec![
                O::Int(i * 9973 + 1),
                O::Int(5),
                O::Text("u".into()),
                O::Bool(true),
                O::DateTime(0),
            ]);
            batch.upsert(vec![
                O::Int(n + 1 + i),
                O::Int(5),
                O::Text("n".into()),
                O::Bool(true),
                O::DateTime(0),
            ]);
            batch.delete(vec![O::Int(i * 7 + 3)]);
        }
        let t1 = Instant::now();
        let t2 = t.apply(&batch);
        eprintln!(
            "apply 300 changes to 1M rows: {:?}, rows {}",
            t1.elapsed(),
            t2.row_count()
        );
        let t1 = Instant::now();
        let t3 = t2.compact();
        eprintln!("compact 1M rows: {:?} ({})", t1.elapsed(), t3.row_count());
        // Sparse keys: hash primary-key index.
        let ms = manifest(&[ColumnType::Int], &[0], &[]);
        let mut b = TableBuilder::new(ms);
        for i in 0..n {
            b.push(0, ValueRef::Int(i * 1_000_003));
            b.end_row();
        }
        let t = b.finish();
        let t1 = Instant::now();
        let mut hits = 0u64;
        for _ in 0..1_000_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let k = ((x >> 33) as i64 % n) * 1_000_003;
            hits += t.pk_lookup(&[ValueRef::Int(k)]).is_some() as u64;
        }
        eprintln!(
            "pk_lookup hash: {:?}/op ({hits}), {:.1} B/row",
            t1.elapsed() / 1_000_000,
            t.memory_bytes() as f64 / n as f64
        );
    }
}

/// A table that starts empty and grows through `apply` only (CDC after an empty load).
#[test]
fn grows_from_empty_through_apply() {
    let m = manifest(
        &[ColumnType::Int, ColumnType::Int, TEXT, ColumnType::Bool],
        &[0],
        &[&[1]],
    );
    let mut model: BTreeMap<i64, ModelRow> = BTreeMap::new();
    let mut t = build(&m, &[]);
    let mut seed = 42u64;
    let mut rnd = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut next = 1i64;
    for round in 0..6 {
        if round == 3 {
            t.index_lookup(&[3], &[ValueRef::Bool(true)]);
        }
        let mut batch = ChangeBatch::new();
        for _ in 0..3000 {
            let r = (
                Some(rnd(10) as i64),
                Some("y".repeat(rnd(50) as usize)),
                rnd(2) == 0,
            );
            match rnd(10) {
                0 if next > 1 => {
                    let k = 1 + rnd(next as u64 - 1) as i64;
                    batch.delete(vec![O::Int(k)]);
                    model.remove(&k);
                }
                1 | 2 if next > 1 => {
                    let k = 1 + rnd(next as u64 - 1) as i64;
                    batch.upsert(model_row(k, &r));
                    model.insert(k, r);
                }
                _ => {
                    batch.upsert(model_row(next, &r));
                    model.insert(next, r);
                    next += 1;
                }
            }
        }
        t = t.apply(&batch);
        check(&t, &model, &m);
    }
    let fresh = build(&m, &rows_of(&t));
    assert!(t.memory_bytes() < 2 * fresh.memory_bytes());
}

#[test]
fn scan_from_starts_at_the_first_key_not_below() {
    let m = manifest(&[ColumnType::Int, ColumnType::Int], &[0, 1], &[]);
    let rows: Vec<Vec<Value>> = (0..9_000)
        .map(|i| vec![O::Int(i / 3 * 2), O::Int(i % 3)])
        .collect();
    let loaded = build(&m, &rows);
    // Keys below the largest (an order list), deletes (tombstones) and appends.
    let mut batch = ChangeBatch::new();
    for i in (1..6_000).step_by(97) {
        batch.upsert(vec![O::Int(i), O::Int(0)]);
    }
    for i in (0..6_000).step_by(31) {
        batch.delete(vec![O::Int(i), O::Int(1)]);
    }
    batch.upsert(vec![O::Int(-5), O::Int(9)]);
    batch.upsert(vec![O::Int(99_999), O::Int(0)]);
    let changed = loaded.apply(&batch);
    for t in [&loaded, &changed] {
        let all: Vec<u32> = t.scan().collect();
        for from in [
            -10i64, -5, 0, 1, 2, 97, 98, 3_001, 5_999, 5_998, 6_000, 99_999, 100_000,
        ] {
            let want: Vec<u32> = all
                .iter()
                .copied()
                .filter(|&r| matches!(t.value(0, r), ValueRef::Int(k) if k >= from))
                .collect();
            let got: Vec<u32> = t.scan_from(ValueRef::Int(from)).collect();
            assert_eq!(got, want, "from {from}");
        }
        // A value that does not fit the column scans everything.
        assert_eq!(t.scan_from(ValueRef::Text("x")).count(), all.len());
    }
}

#[test]
fn integer_foreign_keys_of_any_magnitude_group_and_append() {
    // The built layer stores one-integer keys inline (two 32-bit words): negative keys, keys
    // past 32 bits and keys equal in their low word must stay apart.
    let m = manifest(&[ColumnType::Int, ColumnType::Int], &[0], &[&[1]]);
    let keys = [i64::MIN, -1, 0, 1, 1 << 32, (1 << 32) + 1, i64::MAX];
    let rows: Vec<Vec<Value>> = (0..keys.len() * 3)
        .map(|i| vec![O::Int(i as i64), O::Int(keys[i % keys.len()])])
        .collect();
    let t = build(&m, &rows);
    for (k, &key) in keys.iter().enumerate() {
        let want: Vec<u32> = (0..rows.len() as u32)
            .filter(|r| *r as usize % keys.len() == k)
            .collect();
        assert_eq!(
            t.index_lookup(&[1], &[ValueRef::Int(key)]),
            want,
            "key {key}"
        );
    }
    assert!(t.index_lookup(&[1], &[ValueRef::Int(2)]).is_empty());
    assert!(t.index_lookup(&[1], &[ValueRef::Int(-2)]).is_empty());
    // Appended rows (the chained layer) follow the built ones; deleted rows are skipped.
    let mut batch = ChangeBatch::new();
    batch
        .upsert(vec![O::Int(100), O::Int(-1)])
        .upsert(vec![O::Int(101), O::Int(2)])
        .delete(vec![O::Int(1)]);
    let t2 = t.apply(&batch);
    let n = rows.len() as u32;
    assert_eq!(
        t2.index_lookup(&[1], &[ValueRef::Int(-1)]),
        vec![8, 15, n],
        "row 1 deleted, row {n} appended"
    );
    assert_eq!(t2.index_lookup(&[1], &[ValueRef::Int(2)]), vec![n + 1]);
    assert_eq!(t.index_lookup(&[1], &[ValueRef::Int(-1)]), vec![1, 8, 15]);
}

/// `apply_may_compact` is an upper bound that is exact for deletes: false just below the
/// quarter of tombstones, true at the batch that compacts.
#[test]
fn apply_may_compact_predicts_compaction() {
    let m = manifest(&[ColumnType::Int], &[0], &[]);
    let rows: Vec<Vec<Value>> = (0..1000).map(|i| vec![Value::Int(i)]).collect();
    let mut t = build(&m, &rows);
    assert!(!t.apply_may_compact(250) && t.apply_may_compact(251));
    let mut batch = ChangeBatch::new();
    for i in 0..249 {
        batch.delete(vec![Value::Int(i)]);
    }
    t = t.apply(&batch);
    assert_eq!(
        (t.row_count(), t.row_id_bound()),
        (751, 1000),
        "not compacted yet"
    );
    assert!(!t.apply_may_compact(1));
    assert!(t.apply_may_compact(2));
    let mut batch = ChangeBatch::new();
    batch.delete(vec![Value::Int(249)]);
    batch.delete(vec![Value::Int(250)]);
    let t = t.apply(&batch);
    assert_eq!(t.row_id_bound(), 749, "compacted");
}

/// Text of non-key columns is FSST-compressed at load, and every way of reading it answers the
/// text as loaded: values, lazy indexes over it, ordered scans, writes through `apply` (which
/// store the written chunk uncompressed) and `compact` (which compresses again).
#[test]
fn compressed_text_reads_back_through_every_path() {
    // id, parent (foreign key), body (text, compressible), code (text foreign key: a key,
    // never compressed), noise (text that does not compress).
    let m = manifest(
        &[ColumnType::Int, ColumnType::Int, TEXT, TEXT, TEXT],
        &[0],
        &[&[1], &[3]],
    );
    let body = |i: i64| format!("Body of post {i}: lorem ipsum dolor sit amet, consectetur.");
    // Pseudo-random printable characters (94 of them): no substrings repeat often enough to
    // learn, so compressing saves less than a fifth.
    let noise = |i: i64| -> String {
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (0..24)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'!' + (x % 94) as u8)
            })
            .collect()
    };
    let rows: Vec<Vec<Value>> = (0..10_000)
        .map(|i| {
            vec![
                O::Int(i),
                O::Int(i % 10),
                if i % 97 == 0 {
                    O::Null
                } else {
                    O::Text(body(i))
                },
                O::Text(format!("code {}", i % 50)),
                O::Text(noise(i)),
            ]
        })
        .collect();
    let t = build(&m, &rows);
    assert!(t.is_compressed(2), "body is compressed");
    assert!(!t.is_compressed(3), "a key column is never compressed");
    assert!(
        !t.is_compressed(4),
        "text that does not compress stays as it is"
    );
    let raw: usize = (0..10_000).map(|i| body(i).len()).sum();
    let mem = t.column_memory_bytes()[2];
    assert!(
        mem * 3 < raw,
        "body takes {mem} bytes for {raw} bytes of text"
    );
    assert_eq!(rows_of(&t), rows);

    // A lazy index over the compressed column, and lookups through it.
    let hits = t.index_lookup(&[2], &[ValueRef::Text(&body(4321))]);
    assert_eq!(hits, vec![4321]);
    assert!(t
        .index_lookup(&[2], &[ValueRef::Text("Body of post")])
        .is_empty());
    assert_eq!(t.index_lookup(&[2], &[ValueRef::Null]), Vec::<u32>::new());

    // Held at once: a value decompressed into a caller's buffer next to a borrowed one.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (x, y) = (t.value_in(2, 1, &mut a), t.value_in(2, 2, &mut b));
    assert_eq!((x, y), (ValueRef::Text(&body(1)), ValueRef::Text(&body(2))));
    // Nested reads (a comparison) each get their own buffer.
    let ordered = t.with_value(2, 10, |v10| {
        t.with_value(2, 9, |v9| {
            (v10, v9) == (ValueRef::Text(&body(10)), ValueRef::Text(&body(9)))
        })
    });
    assert!(ordered);

    // Change capture writes into compressed chunks: the rows read back, the index follows.
    let mut batch = ChangeBatch::new();
    batch
        .upsert(vec![
            O::Int(5),
            O::Int(5),
            O::Text("rewritten".into()),
            O::Text("code 5".into()),
            O::Null,
        ])
        .upsert(vec![
            O::Int(10_000),
            O::Int(1),
            O::Text(body(10_000)),
            O::Text("code 0".into()),
            O::Null,
        ])
        .delete(vec![O::Int(6)]);
    let t2 = t.apply(&batch);
    let mut want = rows.clone();
    want[5][2] = O::Text("rewritten".into());
    want[5][4] = O::Null;
    want.remove(6);
    want.push(vec![
        O::Int(10_000),
        O::Int(1),
        O::Text(body(10_000)),
        O::Text("code 0".into()),
        O::Null,
    ]);
    assert_eq!(rows_of(&t2), want);
    assert_eq!(rows_of(&t), rows, "the old version is unchanged");
    let r5 = t2.pk_lookup(&[ValueRef::Int(5)]).expect("row 5");
    assert_eq!(
        t2.index_lookup(&[2], &[ValueRef::Text("rewritten")]),
        vec![r5]
    );
    assert_eq!(
        t2.index_lookup(&[2], &[ValueRef::Text(&body(5))]),
        Vec::<u32>::new()
    );
    assert_eq!(t2.fingerprint(), build(&m, &want).fingerprint());

    let t3 = t2.compact();
    assert!(t3.is_compressed(2), "compaction compresses again");
    assert_eq!(rows_of(&t3), want);
    assert_eq!(t3.fingerprint(), t2.fingerprint());
}

/// Foreign-key indexes take the dense layout when the keys fill their range and the hashed one
/// when they are sparse; both answer the same rows, before and after change capture.
#[test]
fn foreign_key_index_layouts_answer_the_same_rows() {
    let m = manifest(&[ColumnType::Int, ColumnType::Int], &[0], &[&[1]]);
    let mut index_bytes = Vec::new();
    for spread in [1i64, 1_000_003] {
        let rows: Vec<Vec<Value>> = (0..20_000i64)
            .map(|i| {
                let fk = if i % 11 == 0 {
                    O::Null
                } else {
                    O::Int((i * 7 % 500 - 250) * spread)
                };
                vec![O::Int(i), fk]
            })
            .collect();
        let t = build(&m, &rows);
        index_bytes.push(t.memory_bytes() - t.column_memory_bytes().iter().sum::<usize>());
        let check = |t: &Table, rows: &[Vec<Value>]| {
            for k in -252..252i64 {
                let mut want: Vec<i64> = rows
                    .iter()
                    .filter(|r| r[1] == O::Int(k * spread))
                    .map(|r| match r[0] {
                        O::Int(id) => id,
                        _ => unreachable!(),
                    })
                    .collect();
                want.sort();
                let got: Vec<i64> = t
                    .index_lookup(&[1], &[ValueRef::Int(k * spread)])
                    .into_iter()
                    .map(|r| match t.value(0, r) {
                        ValueRef::Int(id) => id,
                        v => panic!("{v:?}"),
                    })
                    .collect();
                assert_eq!(got, want, "key {k} × {spread}");
            }
            assert!(t.index_lookup(&[1], &[ValueRef::Int(i64::MIN)]).is_empty());
            assert!(t.index_lookup(&[1], &[ValueRef::Int(i64::MAX)]).is_empty());
        };
        check(&t, &rows);
        let mut batch = ChangeBatch::new();
        batch
            .delete(vec![O::Int(1)])
            .upsert(vec![O::Int(2), O::Int(3 * spread)])
            .upsert(vec![O::Int(50_000), O::Int(3 * spread)]);
        let t2 = t.apply(&batch);
        let mut rows2: Vec<Vec<Value>> =
            rows.iter().filter(|r| r[0] != O::Int(1)).cloned().collect();
        rows2[1][1] = O::Int(3 * spread);
        rows2.push(vec![O::Int(50_000), O::Int(3 * spread)]);
        check(&t2, &rows2);
        check(&t2.compact(), &rows2);
    }
    // Dense: the primary key's direct map and the foreign key's rows (4 bytes per row each)
    // plus 4 bytes per key of the range; hashed adds slots and inline keys.
    let [dense, hashed] = index_bytes[..] else {
        unreachable!()
    };
    assert!(
        dense < 2 * 20_000 * 4 + 500 * 4 + 8192,
        "dense indexes take {dense} bytes"
    );
    assert!(dense < hashed, "dense {dense} bytes, hashed {hashed}");
}

/// Heap bytes allocated minus freed by the current thread: the oracle of the memory accounting
/// tests (other tests run on other threads, so they do not disturb it).
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static NET: Cell<isize> = const { Cell::new(0) };
    }

    fn add(n: isize) {
        let _ = NET.try_with(|c| c.set(c.get() + n));
    }

    pub(super) fn net() -> isize {
        NET.with(|c| c.get())
    }

    struct Counting;

    // SAFETY: every call is forwarded to the system allocator unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(l) };
            if !p.is_null() {
                add(l.size() as isize);
            }
            p
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(l) };
            if !p.is_null() {
                add(l.size() as isize);
            }
            p
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            unsafe { System.dealloc(p, l) };
            add(-(l.size() as isize));
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
            let q = unsafe { System.realloc(p, l, new_size) };
            if !q.is_null() {
                add(new_size as isize - l.size() as isize);
            }
            q
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;
}

/// The memory cap of a load reads [`TableBuilder::memory_bytes`], and the engine reports
/// [`Table::memory_bytes`]: both must cover the heap they hold. A builder of compressing text
/// columns holds, besides its buffers and sealed chunks, one FSST compressor per column for the
/// rest of the load (its lookup tables take about 160 KiB).
#[test]
fn builder_and_table_memory_cover_the_heap_they_hold() {
    let columns = 8;
    let mut types = vec![ColumnType::Int];
    types.extend(std::iter::repeat_n(TEXT, columns));
    let m = manifest(&types, &[0], &[]);
    let before = heap::net();
    let mut b = TableBuilder::new(m);
    // Short, repetitive text: compresses, and its buffers are small next to a compressor.
    let words = ["alpha", "beta", "gamma", "delta", "omega"];
    for i in 0..crate::chunk::CHUNK_ROWS + 100 {
        b.push(0, ValueRef::Int(i as i64));
        for c in 1..=columns {
            let s = format!("{} {}", words[(i + c) % 5], words[i * 7 % 5]);
            b.push(c, ValueRef::Text(&s));
        }
        assert!(b.end_row());
    }
    let held = heap::net() - before;
    let measured = b.memory_bytes() as isize;
    assert!(
        measured * 10 >= held * 8,
        "the builder measures {measured} bytes and holds {held}"
    );
    let t = b.finish();
    let held = heap::net() - before;
    assert!((1..=columns).all(|c| t.is_compressed(c)), "text compressed");
    let measured = t.memory_bytes() as isize;
    assert!(
        measured * 10 >= held * 8 && measured * 8 <= held * 10,
        "the table measures {measured} bytes and holds {held}"
    );
}

/// Body text of the compressed-table model: repetitive (so that it compresses), with multi-byte
/// characters and NUL bytes, and a few distinct values per variant (lookups find several rows).
fn model_body(v: u32) -> String {
    match v % 4 {
        0 => format!("The quick brown fox {} jumps over the lazy dog", v % 13),
        1 => format!("naïve café ☕ — 日本語のテキスト {}", v % 7),
        2 => format!("nul\0inside\0{}\0", v % 5),
        _ => format!("{{\"kind\":\"event\",\"n\":{}}}", v % 11),
    }
}

/// Model cells of the compressed table: (fk, body, score).
type BodyRow = (Option<i64>, Option<u32>, Option<i64>);

fn body_row(k: i64, r: &BodyRow) -> Vec<Value> {
    vec![
        O::Int(k),
        r.0.map_or(O::Null, O::Int),
        r.1.map_or(O::Null, |v| O::Text(model_body(v))),
        r.2.map_or(O::Null, O::Int),
    ]
}

#[derive(Debug, Clone)]
enum BodyOp {
    Upsert(i64, BodyRow),
    Delete(i64),
}

fn body_op(keys: std::ops::Range<i64>) -> impl Strategy<Value = BodyOp> {
    let score = prop_oneof![
        4 => (0i64..5000).prop_map(|i| Some(1000 + 3 * i)),
        1 => any::<i64>().prop_map(Some),
        1 => Just(Some(i64::MIN)),
        1 => Just(Some(i64::MAX)),
        1 => Just(None),
    ];
    let row = (
        proptest::option::of(prop_oneof![0i64..1500, Just(i64::MIN), Just(i64::MAX)]),
        proptest::option::of(0u32..1000),
        score,
    );
    prop_oneof![
        4 => (keys.clone(), row).prop_map(|(k, r)| BodyOp::Upsert(k, r)),
        1 => keys.prop_map(BodyOp::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// A table whose text is FSST-compressed, whose ids and scores are packed along a line (a
    /// full first chunk) and whose foreign key takes the dense layout, changed by batches of
    /// upserts and deletes (with and without a lazy index over the compressed text, so that
    /// writes go in place into compressed chunks or append), compacted or not: every row, every
    /// lookup and the fingerprint match a model.
    #[test]
    fn compressed_table_apply_matches_model(
        extra in 0usize..300,
        batches in proptest::collection::vec(proptest::collection::vec(body_op(-5..4500), 0..60), 1..4),
        lazy in any::<bool>(),
        compaction in any::<bool>(),
    ) {
        let n = crate::chunk::CHUNK_ROWS + extra;
        let m = manifest(&[ColumnType::Int, ColumnType::Int, TEXT, ColumnType::Int], &[0], &[&[1]]);
        let mut model: BTreeMap<i64, BodyRow> = (0..n as i64)
            .map(|k| {
                let fk = (k % 97 != 0).then_some(k / 3);
                let body = (k % 89 != 0).then_some((k as u32).wrapping_mul(2_654_435_761) >> 22);
                let score = (k % 61 != 0).then_some(1000 + 3 * k + (k % 7 == 0) as i64);
                (k, (fk, body, score))
            })
            .collect();
        let rows: Vec<Vec<Value>> = model.iter().map(|(&k, r)| body_row(k, r)).collect();
        let mut t = build(&m, &rows);
        prop_assert!(t.is_compressed(2), "the body column is compressed");
        if lazy {
            t.index_lookup(&[2], &[ValueRef::Text(&model_body(0))]);
        }
        for ops in batches {
            let mut batch = ChangeBatch::new();
            for op in ops {
                match op {
                    BodyOp::Upsert(k, r) => {
                        batch.upsert(body_row(k, &r));
                        model.insert(k, r);
                    }
                    BodyOp::Delete(k) => {
                        batch.delete(vec![O::Int(k)]);
                        model.remove(&k);
                    }
                }
            }
            t = t.apply_inner(&batch, compaction);
            let want: Vec<Vec<Value>> = model.iter().map(|(&k, r)| body_row(k, r)).collect();
            prop_assert_eq!(rows_of(&t), want.clone());
            let keys_of = |rows: Vec<u32>| -> Vec<Value> {
                rows.into_iter().map(|r| t.owned_value(0, r)).collect()
            };
            // Every key present, and keys around and outside the range.
            let mut by_fk: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
            let mut by_body: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for (&k, r) in &model {
                if let Some(fk) = r.0 {
                    by_fk.entry(fk).or_default().push(O::Int(k));
                }
                if let Some(b) = r.1 {
                    by_body.entry(model_body(b)).or_default().push(O::Int(k));
                }
            }
            let probes = by_fk.keys().copied().chain([-1, 1500, 1501, i64::MIN, i64::MAX]);
            for fk in probes.collect::<Vec<_>>() {
                let want = by_fk.get(&fk).cloned().unwrap_or_default();
                prop_assert_eq!(keys_of(t.index_lookup(&[1], &[ValueRef::Int(fk)])), want, "fk {}", fk);
            }
            for (body, want) in &by_body {
                prop_assert_eq!(&keys_of(t.index_lookup(&[2], &[ValueRef::Text(body)])), want, "body {:?}", body);
            }
            prop_assert!(t.index_lookup(&[2], &[ValueRef::Text("nul")]).is_empty());
            prop_assert_eq!(t.fingerprint(), build(&m, &want).fingerprint());
        }
        let c = t.compact();
        prop_assert!(c.is_compressed(2), "compaction compresses the body again");
        prop_assert_eq!(rows_of(&c), rows_of(&t));
    }
}

/// Compressed cells of a table without a primary key (deletes find their row by comparing every
/// cell) and of a JSON column; reads nested deeper than the scratch pool, and reads after a
/// panic inside a reading closure.
#[test]
fn compressed_cells_in_keyless_tables_json_and_nested_or_panicking_reads() {
    let m = manifest(&[ColumnType::Int, TEXT, ColumnType::Json], &[], &[]);
    let text = |i: i64| {
        format!(
            "keyless row {} says: the rain in Spain ☔ {}",
            i % 50,
            i % 3
        )
    };
    let json = |i: i64| format!("{{\"id\":{i},\"tags\":[\"a\",\"b\"],\"note\":\"ok\\u0000\"}}");
    let row = |i: i64| vec![O::Int(i), O::Text(text(i)), O::Json(json(i))];
    let rows: Vec<Vec<Value>> = (0..5000).map(row).collect();
    let t = build(&m, &rows);
    assert!(t.is_compressed(1) && t.is_compressed(2));
    assert_eq!(rows_of(&t), rows);
    assert!(t.with_value(2, 7, |v| v == ValueRef::Json(&json(7))));

    // Deletes of whole rows (no key): each compares compressed cells.
    let mut batch = ChangeBatch::new();
    for i in (0..5000).step_by(7) {
        batch.delete(row(i));
    }
    batch.delete(vec![O::Int(1), O::Text(text(2)), O::Json(json(1))]); // no such row
    let t2 = t.apply(&batch);
    let want: Vec<Vec<Value>> = (0..5000).filter(|i| i % 7 != 0).map(row).collect();
    assert_eq!(rows_of(&t2), want);
    assert_eq!(t2.fingerprint(), build(&m, &want).fingerprint());

    // Nested reads, deeper than the per-thread pool of buffers, each see their own cell.
    fn nest(t: &Table, depth: u32, seen: &mut Vec<String>) {
        if depth == 0 {
            return;
        }
        t.with_value(1, depth, |v| {
            nest(t, depth - 1, seen);
            let ValueRef::Text(s) = v else {
                panic!("{v:?}")
            };
            seen.push(s.to_string());
        });
    }
    let mut seen = Vec::new();
    nest(&t, 9, &mut seen);
    assert_eq!(seen, (1..=9).map(text).collect::<Vec<_>>());

    // A panic inside a read leaves the pool usable.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        t.with_value(1, 3, |_| t.with_value(1, 4, |_| panic!("inside a read")))
    }));
    assert!(caught.is_err());
    for r in 0..50u32 {
        assert_eq!(t.owned_value(1, r), O::Text(text(r as i64)));
    }
}

/// Dense foreign-key indexes over keys at the ends of `i64`: lookups of every key, of the
/// extremes and of keys outside the range.
#[test]
fn dense_foreign_key_indexes_at_the_ends_of_i64() {
    let m = manifest(&[ColumnType::Int, ColumnType::Int], &[0], &[&[1]]);
    for (lo, name) in [
        (i64::MAX - 99, "top"),
        (i64::MIN, "bottom"),
        (-50, "around zero"),
    ] {
        let fk = |i: i64| lo + (i * 37) % 100;
        let rows: Vec<Vec<Value>> = (0..3000).map(|i| vec![O::Int(i), O::Int(fk(i))]).collect();
        let t = build(&m, &rows);
        let probes = (0..100)
            .map(|k| lo + k)
            .chain([
                i64::MIN,
                i64::MIN + 1,
                i64::MAX,
                i64::MAX - 1,
                0,
                lo.wrapping_sub(1),
            ])
            .chain([lo.wrapping_add(100)]);
        for k in probes {
            let want: Vec<u32> = (0..3000)
                .filter(|&i| fk(i) == k)
                .map(|i| i as u32)
                .collect();
            assert_eq!(
                t.index_lookup(&[1], &[ValueRef::Int(k)]),
                want,
                "{name}: key {k}"
            );
            t.prefetch_lookup(&[1], &[ValueRef::Int(k)]);
        }
    }
}
