//! MySQL/MariaDB binlog client: `COM_BINLOG_DUMP` from a file/offset through `mysql_async`'s
//! binlog stream (checksums on), ROW events decoded into manifest rows.
//!
//! Table map events carry column types but not names (unless `binlog_row_metadata=FULL`), so
//! the source columns of every exposed table are read from `information_schema.COLUMNS` by
//! ordinal at start and after each DDL; the table map's column count is checked against them.
//! Values go through the loader's decoding ([`crate::mysql::push_value`]) after fixing what the
//! binlog encodes differently from the binary protocol: unsigned integers without signedness
//! metadata, `ENUM` indexes, `SET` bitmaps, `TIMESTAMP` as epoch seconds, `YEAR` 0.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mysql_async::binlog::events::{EventData, RowsEventData, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn, Value};
use refract_schema::{self as schema, ColumnType, Manifest, Row, TableManifest};

use super::event::{column_map, table_index, CdcError, ChangeEvent, ChangeRow, RowBuffer};
use crate::error;
use crate::load::{quote_backtick, select_by_key_sql};
use crate::mysql::{connect, is_mariadb, is_set_column, push_value, Kind, CONNECT_TIMEOUT};
use crate::types::decimal_text;
use crate::{SourceError, SourceParams, SourcePosition};

/// MariaDB GTID event type.
const MARIADB_GTID_EVENT: u8 = 162;
/// MySQL/MariaDB heartbeat event type.
const HEARTBEAT_EVENT: u8 = 27;
/// Heartbeat period asked from the server (ns): a silent connection is a dead one.
const HEARTBEAT_NS: u64 = 1_000_000_000;

/// How a source column's binlog value differs from the binary protocol's.
#[derive(Debug, Clone)]
enum Fix {
    None,
    /// Unsigned integer of this many bits (the binlog may send it as signed).
    Unsigned(u32),
    /// `ENUM`: 1-based index into these labels.
    Enum(Vec<String>),
    /// `SET`: bitmap over these labels.
    Set(Vec<String>),
    /// `TIMESTAMP`: `seconds[.micros]` since the epoch.
    Timestamp,
    /// `YEAR`: 1900 means 0000.
    Year,
    /// `BIT(n)`.
    Bit,
    /// Text in MySQL's `latin1` (cp1252): the binlog has the stored bytes, not UTF-8.
    Latin1,
    /// Text in `ucs2`/`utf16` (big endian), `utf16le` or `utf32`.
    Wide(u8),
}

/// One source column, by ordinal.
#[derive(Debug, Clone)]
struct SrcCol {
    name: String,
    fix: Fix,
}

/// How to turn one table's binlog rows into manifest rows.
#[derive(Debug)]
struct TableShape {
    table: usize,
    /// Manifest column of each source ordinal.
    map: Vec<Option<usize>>,
    fixes: Vec<Fix>,
    types: Vec<ColumnType>,
    width: usize,
}

pub(crate) struct BinlogCdc {
    params: SourceParams,
    manifest: Arc<Manifest>,
    stream: mysql_async::BinlogStream,
    maria: bool,
    /// Source columns per exposed table (by source name).
    columns: HashMap<String, Vec<SrcCol>>,
    /// Table id → shape (`None`: not exposed, or shape unknown → reported once).
    shapes: HashMap<u64, Option<Arc<TableShape>>>,
    file: String,
    /// Whether this dump's format description event was read (events before it, the dump's
    /// artificial rotate, are decoded without knowing the checksum algorithm).
    fde_seen: bool,
    /// MariaDB: `domain → D-S-N`; MySQL: the last `uuid:gno`.
    gtids: Vec<(u32, String)>,
    mysql_gtid: Option<String>,
    txn_gtid: Option<(u32, String)>,
    pending: std::collections::VecDeque<ChangeEvent>,
    scratch: String,
}

fn gone_or_source(e: mysql_async::Error, params: &SourceParams) -> CdcError {
    if let mysql_async::Error::Server(se) = &e {
        // 1236: ER_MASTER_FATAL_ERROR_READING_BINLOG (purged or unknown file / position).
        if se.code == 1236 && se.message.contains("same server") {
            return CdcError::NotReady(format!(
                "{} (another replica of this source uses the same server_id: give this database another \
                 binlogServerId)",
                se.message
            ));
        }
        if se.code == 1236 {
            return CdcError::PositionGone(se.message.clone());
        }
        // 1227/1045: no REPLICATION SLAVE right; 1236 handled above.
        if se.code == 1227 || se.code == 1045 {
            return CdcError::NotReady(format!(
                "{} (grant REPLICATION SLAVE, REPLICATION CLIENT to the engine's user)",
                se.message
            ));
        }
    }
    CdcError::Source(error::mysql(e, params).scrubbed(params).to_string())
}

impl BinlogCdc {
    pub(crate) async fn open(
        params: &SourceParams,
        manifest: Arc<Manifest>,
        position: &SourcePosition,
        server_id: u32,
    ) -> Result<BinlogCdc, CdcError> {
        let (file, pos) = match position {
            SourcePosition::Binlog { file, position, .. } => (file.clone(), *position),
            other => {
                return Err(CdcError::NotReady(format!(
                    "no binlog position to stream from ({other:?}): is log_bin ON?"
                )))
            }
        };
        if server_id == 0 {
            return Err(CdcError::NotReady(
                "sync.server_id must be a non-zero replica id".into(),
            ));
        }
        let mut conn = connect(params, None, CONNECT_TIMEOUT).await?;
        let maria = is_mariadb(&mut conn, params).await?;
        let columns = source_columns(&mut conn, params, &manifest).await?;
        let map = |e| gone_or_source(e, params);
        if maria {
            // GTID events as they are (type 162), so the GTID position can be tracked.
            conn.query_drop("SET @mariadb_slave_capability = 4")
                .await
                .map_err(map)?;
        }
        conn.query_drop(format!("SET @master_heartbeat_period = {HEARTBEAT_NS}"))
            .await
            .map_err(map)?;
        let request = BinlogStreamRequest::new(server_id)
            .with_filename(file.as_bytes())
            .with_pos(pos);
        let mut stream = conn.get_binlog_stream(request).await.map_err(map)?;
        // The first events (a fake rotate, the format description) confirm the position; an
        // error here is most often "could not find the log file" (purged).
        let first = tokio::time::timeout(Duration::from_secs(30), stream.next()).await;
        let mut me = BinlogCdc {
            params: params.clone(),
            manifest,
            stream,
            maria,
            columns,
            shapes: HashMap::new(),
            file,
            fde_seen: false,
            gtids: vec![],
            mysql_gtid: None,
            txn_gtid: None,
            pending: Default::default(),
            scratch: String::new(),
        };
        if let SourcePosition::Binlog { gtid: Some(g), .. } = position {
            if maria {
                me.gtids = parse_maria_gtids(g);
            } else {
                me.mysql_gtid = Some(g.clone());
            }
        }
        match first {
            Ok(Some(Ok(ev))) => me.handle(ev).await?,
            Ok(Some(Err(e))) => return Err(gone_or_source(e, params)),
            Ok(None) => return Err(CdcError::Source("the binlog stream ended at once".into())),
            Err(_) => {
                return Err(CdcError::Source(
                    "no binlog event within 30 s of the dump request".into(),
                ))
            }
        }
        Ok(me)
    }

    pub(crate) async fn next(&mut self) -> Result<ChangeEvent, CdcError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(e);
            }
            match self.stream.next().await {
                Some(Ok(ev)) => {
                    if ev.header().event_type_raw() == HEARTBEAT_EVENT {
                        return Ok(ChangeEvent::Heartbeat);
                    }
                    self.handle(ev).await?
                }
                Some(Err(e)) => return Err(gone_or_source(e, &self.params)),
                None => {
                    return Err(CdcError::Source(
                        "the source closed the binlog stream".into(),
                    ))
                }
            }
        }
    }

    fn position(&self, pos: u64) -> SourcePosition {
        let gtid = if self.maria {
            (!self.gtids.is_empty()).then(|| {
                self.gtids
                    .iter()
                    .map(|(_, g)| g.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
        } else {
            self.mysql_gtid.clone()
        };
        SourcePosition::Binlog {
            file: self.file.clone(),
            position: pos,
            gtid,
        }
    }

    fn commit(&mut self, log_pos: u64, timestamp: u32) {
        if let Some((domain, g)) = self.txn_gtid.take() {
            match self.gtids.iter_mut().find(|(d, _)| *d == domain) {
                Some(slot) => slot.1 = g,
                None => self.gtids.push((domain, g)),
            }
        }
        let position = self.position(log_pos);
        self.pending.push_back(ChangeEvent::Commit {
            position,
            committed_at_ms: Some(i64::from(timestamp) * 1000),
        });
    }

    async fn handle(&mut self, ev: mysql_async::binlog::events::Event) -> Result<(), CdcError> {
        let header = ev.header();
        let log_pos = u64::from(header.log_pos());
        if header.event_type_raw() == MARIADB_GTID_EVENT {
            let d = ev.data();
            if d.len() >= 13 {
                let seq = u64::from_le_bytes(d[0..8].try_into().unwrap_or_default());
                let domain = u32::from_le_bytes(d[8..12].try_into().unwrap_or_default());
                self.txn_gtid = Some((domain, format!("{domain}-{}-{seq}", header.server_id())));
            }
            return Ok(());
        }
        let data = match ev.read_data() {
            Ok(Some(d)) => d,
            // Event types this library does not know (MariaDB annotate rows, checkpoints, ...).
            Ok(None) | Err(_) => return Ok(()),
        };
        match data {
            EventData::FormatDescriptionEvent(_) => self.fde_seen = true,
            EventData::RotateEvent(r) => {
                let name = r.name();
                if !self.fde_seen {
                    // The dump's artificial rotate, read before the format description: its
                    // name may end with the 4 checksum bytes, which can be ASCII digits
                    // (`binlog.000009` + CRC → `binlog.0000095`, a file that does not exist:
                    // the next resume would find its position "gone" and reload fully). It
                    // names the file that was asked for; keep that one.
                    if !name.starts_with(self.file.as_str()) {
                        self.file = clean_file_name(&name);
                    }
                    return Ok(());
                }
                self.file = name.into_owned();
                let artificial = header.flags_raw() & 0x0020 != 0; // LOG_EVENT_ARTIFICIAL_F
                if log_pos != 0 && !artificial {
                    // A real rotate is the old file's last event (never inside a
                    // transaction): everything in it was read, so the position moves to the
                    // new file. A resume then no longer needs the old file, which the source
                    // may purge (PURGE BINARY LOGS, expire_logs_days).
                    self.commit(r.position(), header.timestamp());
                }
            }
            EventData::GtidEvent(g) => {
                let sid = g.sid();
                let uuid = format!(
                    "{}-{}-{}-{}-{}",
                    hex(&sid[0..4]),
                    hex(&sid[4..6]),
                    hex(&sid[6..8]),
                    hex(&sid[8..10]),
                    hex(&sid[10..16])
                );
                self.mysql_gtid = Some(format!("{uuid}:{}", g.gno()));
            }
            EventData::XidEvent(_) => self.commit(log_pos, header.timestamp()),
            EventData::QueryEvent(q) => {
                let sql = q.query().trim().to_string();
                let upper = sql.to_ascii_uppercase();
                if upper == "BEGIN"
                    || upper.starts_with("XA START")
                    || upper.starts_with("SAVEPOINT")
                {
                    return Ok(());
                }
                if upper == "COMMIT"
                    || upper.starts_with("XA COMMIT")
                    || upper.starts_with("XA END")
                {
                    self.commit(log_pos, header.timestamp());
                    return Ok(());
                }
                if upper == "ROLLBACK" {
                    // Non-transactional changes were written already; nothing to undo here.
                    self.commit(log_pos, header.timestamp());
                    return Ok(());
                }
                let schema = q.schema().into_owned();
                self.ddl(&sql, &schema).await?;
                self.commit(log_pos, header.timestamp());
            }
            EventData::TableMapEvent(_) => {
                // Kept by the stream reader; shapes are resolved when rows arrive.
            }
            EventData::RowsEvent(rows) => self.rows(&rows).await?,
            _ => {}
        }
        Ok(())
    }

    /// A statement other than BEGIN/COMMIT: DDL on an exposed table reloads it.
    async fn ddl(&mut self, sql: &str, schema: &str) -> Result<(), CdcError> {
        let lower = sql.to_ascii_lowercase();
        let db = self.manifest.database.to_ascii_lowercase();
        let mut hit = vec![];
        for (i, t) in self.manifest.tables.iter().enumerate() {
            let name = t.source_name.to_ascii_lowercase();
            if mentions(&lower, &name)
                && (schema.eq_ignore_ascii_case(&db) || mentions(&lower, &db))
            {
                hit.push(i);
            }
        }
        if hit.is_empty() {
            return Ok(());
        }
        // Table ids are reassigned after DDL; re-read column shapes.
        self.shapes.clear();
        let mut conn = connect(&self.params, None, CONNECT_TIMEOUT).await?;
        self.columns = source_columns(&mut conn, &self.params, &self.manifest).await?;
        let _ = conn.disconnect().await;
        let truncate = lower.trim_start().starts_with("truncate");
        if truncate {
            self.pending
                .push_back(ChangeEvent::Truncate { tables: hit });
        } else {
            for table in hit {
                let reason = format!("DDL: {}", sql.chars().take(200).collect::<String>());
                self.pending
                    .push_back(ChangeEvent::TableChanged { table, reason });
            }
        }
        Ok(())
    }

    fn shape(&mut self, tme: &TableMapEvent<'_>) -> Option<Arc<TableShape>> {
        let id = tme.table_id();
        if let Some(s) = self.shapes.get(&id) {
            return s.clone();
        }
        let shape = (|| {
            if tme.database_name() != self.manifest.database.as_str() {
                return None;
            }
            let name = tme.table_name();
            let table = table_index(&self.manifest, &name)?;
            let t = &self.manifest.tables[table];
            let cols = self.columns.get(&t.source_name)?;
            if cols.len() as u64 != tme.columns_count() {
                tracing::warn!(
                    table = %t.source_name,
                    "binlog table map has {} columns, information_schema {}: reloading the table",
                    tme.columns_count(),
                    cols.len()
                );
                self.pending.push_back(ChangeEvent::TableChanged {
                    table,
                    reason: "the table's columns changed".into(),
                });
                return None;
            }
            Some(Arc::new(TableShape {
                table,
                map: column_map(t, cols.iter().map(|c| c.name.as_str())),
                fixes: cols.iter().map(|c| c.fix.clone()).collect(),
                types: t.columns.iter().map(|c| c.ty).collect(),
                width: t.columns.len(),
            }))
        })();
        self.shapes.insert(id, shape.clone());
        shape
    }

    async fn rows(&mut self, rows: &RowsEventData<'_>) -> Result<(), CdcError> {
        let Some(tme) = self.stream.get_tme(rows.table_id()).cloned() else {
            return Ok(());
        };
        let Some(shape) = self.shape(&tme) else {
            return Ok(());
        };
        for r in rows.rows(&tme) {
            let (before, after) =
                r.map_err(|e| CdcError::Source(format!("decoding a binlog row: {e}")))?;
            let before = before.map(|b| self.decode(&shape, b));
            let after = after.map(|a| self.decode(&shape, a));
            let table = shape.table;
            let ev = match (before, after) {
                (None, Some(row)) => ChangeEvent::Insert { table, row },
                (Some(before), Some(after)) => ChangeEvent::Update {
                    table,
                    before,
                    after,
                },
                (Some(before), None) => ChangeEvent::Delete { table, before },
                (None, None) => continue,
            };
            self.pending.push_back(ev);
        }
        Ok(())
    }

    /// A binlog row as a streamed row. With the required `binlog_row_image=FULL` every column
    /// is sent: none is marked unchanged.
    fn decode(&mut self, shape: &TableShape, mut row: BinlogRow) -> ChangeRow {
        let mut sink = RowBuffer::new(shape.width);
        for (ordinal, target) in shape.map.iter().enumerate() {
            let Some(col) = *target else { continue };
            let ty = shape.types[col];
            let Some(bv) = row.take(ordinal) else {
                continue;
            };
            let v = match Value::try_from(bv) {
                Ok(v) => v,
                Err(_) => continue,
            };
            decode_value(
                &shape.fixes[ordinal],
                ty,
                v,
                &mut sink,
                col,
                &mut self.scratch,
            );
        }
        sink.take_row().into_iter().map(Some).collect()
    }
}

/// One binlog value into column `col` of `sink`, with the source column's fix applied.
fn decode_value(
    fix: &Fix,
    ty: ColumnType,
    v: Value,
    sink: &mut RowBuffer,
    col: usize,
    scratch: &mut String,
) {
    if let (Fix::Timestamp, Value::Bytes(b)) = (fix, &v) {
        sink.row[col] = epoch_text_micros(b)
            .map(schema::Value::Timestamp)
            .unwrap_or(schema::Value::Null);
        return;
    }
    let v = fixed(fix, v);
    let kind = match fix {
        Fix::Bit => Kind::Bit,
        Fix::Set(_) => Kind::Set,
        _ => Kind::Plain,
    };
    push_value(sink, col, ty, &v, kind, scratch);
}

/// Fuzzing entry (`crate::fuzzing::binlog_values`): bytes pick a source column's fix, a
/// column type and a binlog value, which go through the conversions a binlog row's values go
/// through; the rest is also read as a column type text and a MariaDB GTID list.
pub(crate) fn fuzz_values(data: &[u8]) {
    const TYPES: [ColumnType; 12] = [
        ColumnType::Bool,
        ColumnType::Int,
        ColumnType::Float,
        ColumnType::Decimal { scale: 0 },
        ColumnType::Decimal { scale: 4 },
        ColumnType::Text {
            case_insensitive: true,
        },
        ColumnType::Bytes,
        ColumnType::Date,
        ColumnType::Time,
        ColumnType::DateTime,
        ColumnType::Timestamp,
        ColumnType::Json,
    ];
    let [a, b, c, rest @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let fix = match a % 10 {
        0 => Fix::None,
        1 => Fix::Unsigned(u32::from(*b % 65)),
        2 => Fix::Enum(labels(&text)),
        3 => Fix::Set(labels(&text)),
        4 => Fix::Timestamp,
        5 => Fix::Year,
        6 => Fix::Bit,
        7 => Fix::Latin1,
        _ => Fix::Wide(2 + b % 3),
    };
    let ty = TYPES[usize::from(*b) % TYPES.len()];
    let mut word = [0u8; 8];
    for (w, x) in word.iter_mut().zip(rest) {
        *w = *x;
    }
    let n = u64::from_le_bytes(word);
    let byte = |i: usize| rest.get(i).copied().unwrap_or(0);
    let v = match c % 7 {
        0 => Value::Bytes(rest.to_vec()),
        1 => Value::Int(n as i64),
        2 => Value::UInt(n),
        3 => Value::Float(f32::from_bits(n as u32)),
        4 => Value::Double(f64::from_bits(n)),
        5 => Value::Date(
            u16::from_le_bytes([byte(0), byte(1)]),
            byte(2),
            byte(3),
            byte(4),
            byte(5),
            byte(6),
            u32::from_le_bytes([byte(7), byte(8), byte(9), byte(10)]),
        ),
        _ => Value::Time(
            byte(0) & 1 == 1,
            u32::from_le_bytes([byte(1), byte(2), byte(3), byte(4)]),
            byte(5),
            byte(6),
            byte(7),
            u32::from_le_bytes([byte(8), byte(9), byte(10), byte(11)]),
        ),
    };
    let mut sink = RowBuffer::new(1);
    let mut scratch = String::new();
    decode_value(&fix, ty, v, &mut sink, 0, &mut scratch);
    let _ = parse_maria_gtids(&text);
}

/// The rotate event that starts a dump is read before the format description, so its name may
/// carry the 4 checksum bytes: keep `base.NNNNNN` only.
fn clean_file_name(name: &str) -> String {
    match name.rfind('.') {
        Some(dot) => {
            let digits = name[dot + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            name[..dot + 1 + digits].to_string()
        }
        None => name.to_string(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `sql` (lower case) names `ident` as a word (quoted or not).
fn mentions(sql: &str, ident: &str) -> bool {
    let bytes = sql.as_bytes();
    let mut from = 0;
    while let Some(i) = sql[from..].find(ident) {
        let start = from + i;
        let end = start + ident.len();
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$';
        let before_ok = start == 0 || !word(bytes[start - 1]);
        let after_ok = end >= bytes.len() || !word(bytes[end]);
        if before_ok && after_ok {
            return true;
        }
        from = start + 1;
    }
    false
}

/// `1700000000[.123456]` → microseconds.
fn epoch_text_micros(b: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(b).ok()?;
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().ok()?;
    let mut us: i64 = 0;
    if !frac.is_empty() {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
        us = digits.parse().ok()?;
    }
    sec.checked_mul(1_000_000)?.checked_add(us)
}

fn fixed(fix: &Fix, v: Value) -> Value {
    match (fix, v) {
        (Fix::Unsigned(bits), Value::Int(i)) if i < 0 => {
            let u = if *bits >= 64 {
                i as u64
            } else {
                (i as u64) & ((1u64 << bits) - 1)
            };
            Value::UInt(u)
        }
        (Fix::Enum(labels), Value::Int(i)) => {
            let label = usize::try_from(i)
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| labels.get(i));
            Value::Bytes(label.cloned().unwrap_or_default().into_bytes())
        }
        (Fix::Enum(labels), Value::UInt(i)) => {
            let label = (i as usize).checked_sub(1).and_then(|i| labels.get(i));
            Value::Bytes(label.cloned().unwrap_or_default().into_bytes())
        }
        (Fix::Set(labels), Value::Bytes(b)) => {
            let mut bits: u64 = 0;
            for (i, byte) in b.iter().enumerate().take(8) {
                bits |= u64::from(*byte) << (8 * i);
            }
            let names: Vec<&str> = labels
                .iter()
                .enumerate()
                .filter(|(i, _)| *i < 64 && bits & (1u64 << i) != 0)
                .map(|(_, l)| l.as_str())
                .collect();
            Value::Bytes(names.join(",").into_bytes())
        }
        (Fix::Year, Value::Bytes(b)) if b == b"1900" => Value::Int(0),
        (Fix::Latin1, Value::Bytes(b)) => Value::Bytes(
            b.iter()
                .map(|&x| cp1252(x))
                .collect::<String>()
                .into_bytes(),
        ),
        (Fix::Wide(kind), Value::Bytes(b)) => Value::Bytes(wide(*kind, &b).into_bytes()),
        (_, v) => v,
    }
}

/// MySQL `latin1` is Windows-1252.
fn cp1252(b: u8) -> char {
    const HIGH: [u16; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
        0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9F => char::from_u32(u32::from(HIGH[usize::from(b - 0x80)])).unwrap_or('\u{FFFD}'),
        _ => char::from(b),
    }
}

/// UTF-16 BE (2), UTF-16 LE (3) or UTF-32 BE (4) bytes → text.
fn wide(kind: u8, b: &[u8]) -> String {
    match kind {
        4 => b
            .chunks(4)
            .map(|c| {
                let v = c.iter().fold(0u32, |a, &x| (a << 8) | u32::from(x));
                char::from_u32(v).unwrap_or('\u{FFFD}')
            })
            .collect(),
        _ => {
            let units: Vec<u16> = b
                .chunks(2)
                .map(|c| {
                    let (x, y) = (u16::from(c[0]), u16::from(*c.get(1).unwrap_or(&0)));
                    if kind == 3 {
                        (y << 8) | x
                    } else {
                        (x << 8) | y
                    }
                })
                .collect();
            String::from_utf16_lossy(&units)
        }
    }
}

/// `'a','b''c'` (the inside of `enum(...)` / `set(...)`) → labels.
fn labels(column_type: &str) -> Vec<String> {
    let Some(open) = column_type.find('(') else {
        return vec![];
    };
    let close = column_type
        .rfind(')')
        .filter(|&c| c > open)
        .unwrap_or(column_type.len());
    let inner = &column_type[open + 1..close];
    let mut out = vec![];
    let mut cur = String::new();
    let mut chars = inner.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    cur.push('\'');
                    chars.next();
                } else {
                    in_str = false;
                    out.push(std::mem::take(&mut cur));
                }
            } else if c == '\\' {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            } else {
                cur.push(c);
            }
        } else if c == '\'' {
            in_str = true;
        }
    }
    out
}

/// Columns of every exposed table, by ordinal.
async fn source_columns(
    conn: &mut Conn,
    params: &SourceParams,
    manifest: &Manifest,
) -> Result<HashMap<String, Vec<SrcCol>>, SourceError> {
    let rows: Vec<(String, String, String, String, Option<String>)> = conn
        .exec(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME \
             FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (manifest.database.as_str(),),
        )
        .await
        .map_err(|e| error::mysql(e, params))?;
    let mut out: HashMap<String, Vec<SrcCol>> = HashMap::new();
    for (table, name, data_type, column_type, charset) in rows {
        if table_index(manifest, &table).is_none() {
            continue;
        }
        let dt = data_type.to_ascii_lowercase();
        let ct = column_type.to_ascii_lowercase();
        let fix = match dt.as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint"
                if ct.contains("unsigned") =>
            {
                Fix::Unsigned(match dt.as_str() {
                    "tinyint" => 8,
                    "smallint" => 16,
                    "mediumint" => 24,
                    "int" | "integer" => 32,
                    _ => 64,
                })
            }
            "enum" => Fix::Enum(labels(&column_type)),
            "set" => Fix::Set(labels(&column_type)),
            "timestamp" => Fix::Timestamp,
            "year" => Fix::Year,
            "bit" => Fix::Bit,
            _ => match charset.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("latin1") => Fix::Latin1,
                Some("ucs2" | "utf16") => Fix::Wide(2),
                Some("utf16le") => Fix::Wide(3),
                Some("utf32") => Fix::Wide(4),
                _ => Fix::None,
            },
        };
        out.entry(table).or_default().push(SrcCol { name, fix });
    }
    Ok(out)
}

fn parse_maria_gtids(s: &str) -> Vec<(u32, String)> {
    s.split(',')
        .filter_map(|g| {
            let g = g.trim();
            let domain = g.split('-').next()?.parse().ok()?;
            Some((domain, g.to_string()))
        })
        .collect()
}

/// `SELECT <cols> FROM db.t WHERE (pk) IN ((?, ...), ...) [AND (where)]`, by chunks of 500 keys.
pub(crate) async fn fetch_rows(
    params: &SourceParams,
    db: &str,
    table: &TableManifest,
    keys: &[Row],
) -> Result<Vec<Row>, SourceError> {
    let mut conn = connect(params, Some(db), CONNECT_TIMEOUT).await?;
    let map = |e| error::mysql(e, params);
    let cols: Vec<String> = table
        .columns
        .iter()
        .map(|c| quote_backtick(&c.source_name))
        .collect();
    let pk: Vec<String> = table
        .primary_key
        .iter()
        .map(|&i| quote_backtick(&table.columns[i].source_name))
        .collect();
    let types: Vec<ColumnType> = table.columns.iter().map(|c| c.ty).collect();
    let mut out = vec![];
    let mut scratch = String::new();
    for chunk in keys.chunks(500) {
        let tuple = format!("({})", vec!["?"; pk.len()].join(", "));
        let sql = select_by_key_sql(
            &cols,
            &format!(
                "{}.{}",
                quote_backtick(db),
                quote_backtick(&table.source_name)
            ),
            &pk,
            &vec![tuple.as_str(); chunk.len()].join(", "),
            table.where_sql.as_deref(),
        );
        let mut args: Vec<Value> = Vec::with_capacity(chunk.len() * pk.len());
        for key in chunk {
            for v in key {
                args.push(key_argument(
                    v,
                    &table.columns[table.primary_key[args.len() % pk.len()]].ty,
                ));
            }
        }
        let rows: Vec<mysql_async::Row> = conn.exec(sql.as_str(), args).await.map_err(map)?;
        let mut sink = RowBuffer::new(types.len());
        for row in rows {
            for (i, ty) in types.iter().enumerate() {
                let v = row.as_ref(i).unwrap_or(&Value::NULL);
                let is_bit = row.columns_ref().get(i).is_some_and(|c| {
                    c.column_type() == mysql_async::consts::ColumnType::MYSQL_TYPE_BIT
                });
                let kind = if is_set_column(&table.columns[i]) {
                    Kind::Set
                } else if is_bit {
                    Kind::Bit
                } else {
                    Kind::Plain
                };
                push_value(&mut sink, i, *ty, v, kind, &mut scratch);
            }
            out.push(sink.take_row());
        }
    }
    let _ = conn.disconnect().await;
    Ok(out)
}

/// A key value as a statement argument.
fn key_argument(v: &schema::Value, ty: &ColumnType) -> Value {
    match v {
        schema::Value::Null => Value::NULL,
        schema::Value::Bool(b) => Value::Int(i64::from(*b)),
        schema::Value::Int(i) => Value::Int(*i),
        schema::Value::Float(f) => Value::Double(*f),
        schema::Value::Decimal(m) => {
            let scale = match ty {
                ColumnType::Decimal { scale } => u32::from(*scale),
                _ => 0,
            };
            Value::Bytes(decimal_text(*m, scale).into_bytes())
        }
        schema::Value::Text(s) | schema::Value::Json(s) => Value::Bytes(s.clone().into_bytes()),
        schema::Value::Bytes(b) => Value::Bytes(b.clone()),
        schema::Value::Date(d) => {
            let (y, m, dd) = crate::types::civil_from_days(i64::from(*d));
            Value::Date(y as u16, m as u8, dd as u8, 0, 0, 0, 0)
        }
        schema::Value::DateTime(us) | schema::Value::Timestamp(us) => {
            let days = us.div_euclid(86_400_000_000);
            let rem = us.rem_euclid(86_400_000_000);
            let (y, m, d) = crate::types::civil_from_days(days);
            let secs = rem / 1_000_000;
            Value::Date(
                y as u16,
                m as u8,
                d as u8,
                (secs / 3600) as u8,
                ((secs / 60) % 60) as u8,
                (secs % 60) as u8,
                (rem % 1_000_000) as u32,
            )
        }
        schema::Value::Time(us) => {
            let neg = *us < 0;
            let a = us.unsigned_abs();
            let secs = a / 1_000_000;
            Value::Time(
                neg,
                (secs / 86_400) as u32,
                ((secs / 3600) % 24) as u8,
                ((secs / 60) % 60) as u8,
                (secs % 60) as u8,
                (a % 1_000_000) as u32,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(clean_file_name("binlog.000001\u{fffd}-"), "binlog.000001");
        assert_eq!(labels("enum('a','b''c','d,e')"), vec!["a", "b'c", "d,e"]);
        assert_eq!(
            epoch_text_micros(b"1700000000.5"),
            Some(1_700_000_000_500_000)
        );
        assert_eq!(epoch_text_micros(b"12"), Some(12_000_000));
        assert!(mentions("alter table `shop`.`posts` add x int", "posts"));
        assert!(!mentions("alter table posts2 add x int", "posts"));
        assert_eq!(decimal_text(-1234, 2), "-12.34");
        assert_eq!(decimal_text(5, 3), "0.005");
        assert_eq!(crate::types::civil_from_days(0), (1970, 1, 1));
        assert_eq!(crate::types::civil_from_days(19_723), (2024, 1, 1));
        match fixed(&Fix::Unsigned(32), Value::Int(-1)) {
            Value::UInt(u) => assert_eq!(u, u32::MAX as u64),
            v => panic!("{v:?}"),
        }
    }
}
