//! Entry points for the fuzz targets in `fuzz/` (and their replay test below): the decoders of
//! change streams, fed arbitrary bytes. Each must return, never panic, whatever it is given.
//! Not an API: hidden from the docs, and nothing else calls it.

use std::sync::Arc;

use refract_schema::Manifest;

use crate::cdc::pgoutput::Decoder;

/// The manifest the pgoutput target decodes against: one table `public.t` with a column of
/// every storage type.
fn manifest() -> Arc<Manifest> {
    let col = |name: &str, ty: serde_json::Value| {
        serde_json::json!({"source_name": name, "api_name": name, "ty": ty,
                           "source_type": "x", "nullable": true})
    };
    let m = serde_json::json!({
        "version": 1, "backend": "postgres", "database": "fuzz", "pg_schema": "public",
        "tables": [{
            "source_name": "t", "api_name": "t", "primary_key": [0], "relations": [],
            "columns": [
                col("id", serde_json::json!({"kind": "int"})),
                col("b", serde_json::json!({"kind": "bool"})),
                col("f", serde_json::json!({"kind": "float"})),
                col("d", serde_json::json!({"kind": "decimal", "scale": 2})),
                col("s", serde_json::json!({"kind": "text", "case_insensitive": false})),
                col("y", serde_json::json!({"kind": "bytes"})),
                col("dt", serde_json::json!({"kind": "date"})),
                col("tm", serde_json::json!({"kind": "time"})),
                col("ts", serde_json::json!({"kind": "date_time"})),
                col("tz", serde_json::json!({"kind": "timestamp"})),
                col("j", serde_json::json!({"kind": "json"})),
            ],
        }],
    });
    Arc::new(serde_json::from_value(m).expect("the fuzz manifest is valid"))
}

/// pgoutput: `data` is a sequence of messages, each a big-endian `u16` length and that many
/// bytes, decoded in order by one decoder (so relation messages shape the later rows).
pub fn pgoutput_messages(data: &[u8]) {
    let mut dec = Decoder::new(manifest(), "public".into(), 0);
    let mut d = data;
    while d.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([d[0], d[1]]));
        let end = (2 + len).min(d.len());
        let _ = dec.message(&d[2..end]);
        dec.pending.clear();
        d = &d[end..];
    }
}

/// Binlog: one value through the conversions of a binlog row's values (see
/// `cdc::binlog::fuzz_values`).
pub fn binlog_values(data: &[u8]) {
    crate::cdc::binlog::fuzz_values(data);
}

#[cfg(test)]
mod tests {
    /// The fuzz corpora kept in the repository replay without a panic (the fuzzers grow them;
    /// this keeps what they found fixed).
    #[test]
    fn fuzz_corpora_replay() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        for (target, run) in [
            ("pgoutput", super::pgoutput_messages as fn(&[u8])),
            ("binlog_values", super::binlog_values),
        ] {
            let dir = root.join(target);
            let mut n = 0;
            for entry in
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                run(&bytes);
                n += 1;
            }
            assert!(n > 0, "{} is empty", dir.display());
        }
    }

    #[test]
    fn short_and_truncated_messages_are_errors_not_panics() {
        for msg in [
            &b"I"[..],
            b"I\x00\x00",
            b"U\x00",
            b"D\x00\x00\x00",
            b"R\x00",
            b"T\x00\x00\x00\x01",
            b"T\x00\x00",
            b"B\x00",
            b"C\x00",
        ] {
            let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(msg);
            super::pgoutput_messages(&framed);
        }
        super::binlog_values(b"\x04\x00\x00999999999999999999");
        super::binlog_values(b"\x02\x00\x00x)(");
    }
}
