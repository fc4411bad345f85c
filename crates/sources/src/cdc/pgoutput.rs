//! PostgreSQL logical replication with `pgoutput`, written by hand over one TCP connection.
//!
//! Why by hand: `tokio-postgres` 0.7 has no replication mode, and the crates that add one are
//! not in this workspace's lock file (no network for a new dependency tree). The protocol part
//! is small: a startup packet with `replication=database`, authentication (cleartext, MD5,
//! SCRAM-SHA-256 through `postgres-protocol`, already a dependency of `tokio-postgres`), simple
//! queries (`CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT`), then `START_REPLICATION … LOGICAL`,
//! whose CopyBoth stream carries `XLogData` (pgoutput v1 messages) and keepalives, answered by
//! standby status updates that confirm the applied LSN so the server can free WAL.
//!
//! Publications are managed over an ordinary `tokio-postgres` connection: one publication over
//! the exposed tables that have a primary key (all operations), and `<name>_nk` over the tables
//! without one with `publish = 'insert, truncate'` only — publishing updates/deletes of a table
//! without a replica identity would make those statements fail on the source. Tables without a
//! key are reloaded when an insert or truncate arrives; their updates and deletes are repaired
//! by the next reload (safety net), a documented limitation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use refract_schema::{ColumnType, Manifest, Row, TableManifest, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::event::{column_map, CdcError, CdcOptions, ChangeEvent, ChangeRow};
use crate::load::{quote_double, select_by_key_sql};
use crate::postgres::column_text_value;
use crate::tls::{pg_negotiate, PgStream};
use crate::{ExportedSnapshot, SourceError, SourceParams, SourcePosition};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// A pgoutput timestamp (µs since 2000-01-01) as ms since the Unix epoch; `None` out of range.
fn pg_ts_to_unix_ms(ts: i64) -> Option<i64> {
    ts.checked_add(PG_EPOCH_US).map(|us| us / 1000)
}

pub(crate) fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The schema holding the tables: the connection's (the engine sets it from its config or
/// manifest), else the manifest's, else `public`.
pub(crate) fn schema_of(params: &SourceParams, manifest: &Manifest) -> String {
    params
        .pg_schema
        .clone()
        .or_else(|| manifest.pg_schema.clone())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "public".into())
}

fn fmt_lsn(v: u64) -> String {
    format!("{:X}/{:X}", v >> 32, v & 0xFFFF_FFFF)
}

fn io_err(e: std::io::Error) -> CdcError {
    CdcError::Source(format!("replication connection: {e}"))
}

/// A connection in `replication=database` mode (TLS as the source's `sslMode` says).
pub(crate) struct ReplConn {
    sock: PgStream,
    buf: BytesMut,
    out: BytesMut,
}

/// One backend message, or a CopyBothResponse (which `postgres-protocol` does not know).
enum Msg {
    CopyBoth,
    Other(Message),
}

impl ReplConn {
    pub(crate) async fn connect(params: &SourceParams) -> Result<ReplConn, CdcError> {
        let db = params.database.clone().unwrap_or_else(|| "postgres".into());
        let port = if params.port == 0 { 5432 } else { params.port };
        let sock = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((params.host.as_str(), port)),
        )
        .await
        .map_err(|_| CdcError::Source(format!("timed out connecting to {}:{port}", params.host)))?
        .map_err(|e| CdcError::Source(format!("cannot reach {}:{port}: {e}", params.host)))?;
        let _ = sock.set_nodelay(true);
        let sock = tokio::time::timeout(
            CONNECT_TIMEOUT,
            pg_negotiate(sock, &params.host, &params.tls),
        )
        .await
        .map_err(|_| {
            CdcError::Source(format!(
                "timed out negotiating TLS with {}:{port}",
                params.host
            ))
        })?
        .map_err(|e| CdcError::Source(e.scrubbed(params).to_string()))?;
        let mut c = ReplConn {
            sock,
            buf: BytesMut::with_capacity(64 * 1024),
            out: BytesMut::new(),
        };
        frontend::startup_message(
            [
                ("user", params.user.as_str()),
                ("database", db.as_str()),
                ("replication", "database"),
                ("application_name", "refract"),
                (
                    "options",
                    "-c TimeZone=UTC -c DateStyle=ISO,YMD -c extra_float_digits=3",
                ),
            ],
            &mut c.out,
        )
        .map_err(io_err)?;
        c.flush().await?;
        let password = params.password.clone().unwrap_or_default();
        let mut scram: Option<ScramSha256> = None;
        loop {
            match c.read().await? {
                Msg::Other(Message::AuthenticationOk) => {}
                Msg::Other(Message::AuthenticationCleartextPassword) => {
                    frontend::password_message(password.as_bytes(), &mut c.out).map_err(io_err)?;
                    c.flush().await?;
                }
                Msg::Other(Message::AuthenticationMd5Password(body)) => {
                    let h = postgres_protocol::authentication::md5_hash(
                        params.user.as_bytes(),
                        password.as_bytes(),
                        body.salt(),
                    );
                    frontend::password_message(h.as_bytes(), &mut c.out).map_err(io_err)?;
                    c.flush().await?;
                }
                Msg::Other(Message::AuthenticationSasl(_)) => {
                    let s = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut c.out)
                        .map_err(io_err)?;
                    c.flush().await?;
                    scram = Some(s);
                }
                Msg::Other(Message::AuthenticationSaslContinue(body)) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| CdcError::Source("unexpected SASL message".into()))?;
                    s.update(body.data()).map_err(io_err)?;
                    frontend::sasl_response(s.message(), &mut c.out).map_err(io_err)?;
                    c.flush().await?;
                }
                Msg::Other(Message::AuthenticationSaslFinal(body)) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| CdcError::Source("unexpected SASL message".into()))?;
                    s.finish(body.data()).map_err(io_err)?;
                }
                Msg::Other(Message::ErrorResponse(body)) => {
                    let e = error_text(&body);
                    return Err(if e.contains("no encryption") {
                        CdcError::NotReady(format!(
                                "TLS to the source failed: the server requires TLS for this user \
                                 and host (pg_hba.conf has only hostssl entries for it) and sslMode \
                                 is {}: set sslMode to prefer or stronger. Server said: {e}",
                                params.tls.mode
                            ))
                    } else if e.contains("replication")
                        || e.contains("permission")
                        || e.contains("pg_hba")
                    {
                        CdcError::NotReady(format!(
                            "{e} (the role needs REPLICATION and pg_hba.conf a `host replication` line)"
                        ))
                    } else {
                        CdcError::Source(e)
                    });
                }
                Msg::Other(Message::ReadyForQuery(_)) => return Ok(c),
                Msg::Other(_) => {}
                Msg::CopyBoth => {
                    return Err(CdcError::Source("unexpected CopyBoth at startup".into()))
                }
            }
        }
    }

    async fn flush(&mut self) -> Result<(), CdcError> {
        self.sock.write_all(&self.out).await.map_err(io_err)?;
        self.out.clear();
        Ok(())
    }

    /// The next whole backend message.
    async fn read(&mut self) -> Result<Msg, CdcError> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() > len {
                    if self.buf[0] == b'W' {
                        self.buf.advance(len + 1);
                        return Ok(Msg::CopyBoth);
                    }
                    let mut one = self.buf.split_to(len + 1);
                    match Message::parse(&mut one).map_err(io_err)? {
                        Some(m) => return Ok(Msg::Other(m)),
                        None => return Err(CdcError::Source("short message".into())),
                    }
                }
            }
            let n = self.sock.read_buf(&mut self.buf).await.map_err(io_err)?;
            if n == 0 {
                return Err(CdcError::Source(
                    "the source closed the replication connection".into(),
                ));
            }
        }
    }

    /// A simple query: rows as text cells.
    async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, CdcError> {
        frontend::query(sql, &mut self.out).map_err(io_err)?;
        self.flush().await?;
        let mut rows = vec![];
        let mut error = None;
        loop {
            match self.read().await? {
                Msg::Other(Message::DataRow(body)) => {
                    let buf = body.buffer();
                    let mut row = vec![];
                    let mut ranges = body.ranges();
                    while let Some(r) =
                        fallible_iterator::FallibleIterator::next(&mut ranges).map_err(io_err)?
                    {
                        row.push(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned()));
                    }
                    rows.push(row);
                }
                Msg::Other(Message::ErrorResponse(body)) => error = Some(error_text(&body)),
                Msg::Other(Message::ReadyForQuery(_)) => break,
                _ => {}
            }
        }
        match error {
            Some(e) if e.contains("does not exist") && e.contains("slot") => {
                Err(CdcError::PositionGone(e))
            }
            Some(e) => Err(CdcError::Source(e)),
            None => Ok(rows),
        }
    }
}

fn error_text(body: &postgres_protocol::message::backend::ErrorResponseBody) -> String {
    let mut fields = body.fields();
    let mut msg = String::new();
    let mut code = String::new();
    while let Ok(Some(f)) = fallible_iterator::FallibleIterator::next(&mut fields) {
        match f.type_() {
            b'M' => msg = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'C' => code = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            _ => {}
        }
    }
    format!("{msg} (SQLSTATE {code})")
}

/// One relation as the stream described it.
struct Rel {
    table: Option<usize>,
    /// Manifest column of each relation column.
    map: Vec<Option<usize>>,
}

pub(crate) struct LogicalCdc {
    conn: ReplConn,
    dec: Decoder,
    pub(crate) confirmed: Arc<AtomicU64>,
    last_status: Instant,
}

/// Turns pgoutput messages into change events: no IO, so it can be fed any bytes
/// (`crate::fuzzing`). Malformed input is an error, never a panic.
pub(crate) struct Decoder {
    manifest: Arc<Manifest>,
    schema: String,
    rels: HashMap<u32, Rel>,
    /// Column names first seen per manifest table (a later different list is DDL).
    shapes: HashMap<usize, Vec<String>>,
    pub(crate) pending: std::collections::VecDeque<ChangeEvent>,
    /// Highest WAL position received.
    received: u64,
    commit_ts: Option<i64>,
    scratch: Vec<u8>,
}

impl Decoder {
    pub(crate) fn new(manifest: Arc<Manifest>, schema: String, start: u64) -> Decoder {
        Decoder {
            manifest,
            schema,
            rels: HashMap::new(),
            shapes: HashMap::new(),
            pending: Default::default(),
            received: start,
            commit_ts: None,
            scratch: vec![],
        }
    }
}

impl LogicalCdc {
    pub(crate) async fn start(
        mut conn: ReplConn,
        schema: String,
        manifest: Arc<Manifest>,
        slot: &str,
        publications: &[String],
        lsn: &str,
    ) -> Result<LogicalCdc, CdcError> {
        let start = parse_lsn(lsn).ok_or_else(|| CdcError::Source(format!("bad LSN {lsn}")))?;
        let pubs = publications.join(",");
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names '{}')",
            quote_double(slot),
            fmt_lsn(start),
            pubs.replace('\'', "''")
        );
        frontend::query(&sql, &mut conn.out).map_err(io_err)?;
        conn.flush().await?;
        loop {
            match conn.read().await? {
                Msg::CopyBoth => break,
                Msg::Other(Message::ErrorResponse(body)) => {
                    let e = error_text(&body);
                    return Err(
                        if e.contains("does not exist")
                            || e.contains("42704")
                            || e.contains("58P01")
                            || e.contains("has already been removed")
                        {
                            CdcError::PositionGone(e)
                        } else {
                            CdcError::Source(e)
                        },
                    );
                }
                _ => {}
            }
        }
        Ok(LogicalCdc {
            conn,
            dec: Decoder::new(manifest, schema, start),
            confirmed: Arc::new(AtomicU64::new(start)),
            last_status: Instant::now(),
        })
    }

    async fn status(&mut self, reply: bool) -> Result<(), CdcError> {
        let applied = self.confirmed.load(Ordering::Relaxed);
        let now = chrono::Utc::now().timestamp_micros() - PG_EPOCH_US;
        let mut body = BytesMut::with_capacity(34);
        body.put_u8(b'r');
        body.put_u64(self.dec.received.max(applied));
        body.put_u64(applied);
        body.put_u64(applied);
        body.put_i64(now);
        body.put_u8(u8::from(reply));
        frontend::CopyData::new(&body[..])
            .map_err(io_err)?
            .write(&mut self.conn.out);
        self.conn.flush().await?;
        self.last_status = Instant::now();
        Ok(())
    }

    pub(crate) async fn next(&mut self) -> Result<ChangeEvent, CdcError> {
        loop {
            if let Some(e) = self.dec.pending.pop_front() {
                return Ok(e);
            }
            if self.last_status.elapsed() >= Duration::from_secs(10) {
                self.status(false).await?;
            }
            let msg = self.conn.read().await?;
            let data = match msg {
                Msg::Other(Message::CopyData(body)) => body.into_bytes(),
                Msg::Other(Message::ErrorResponse(body)) => {
                    return Err(CdcError::Source(error_text(&body)))
                }
                Msg::Other(Message::CopyDone) => {
                    return Err(CdcError::Source(
                        "the source ended the replication stream".into(),
                    ))
                }
                _ => continue,
            };
            let mut d = &data[..];
            if d.is_empty() {
                continue;
            }
            match d.get_u8() {
                b'k' if d.len() >= 17 => {
                    let wal_end = d.get_u64();
                    let _ts = d.get_i64();
                    let reply = d.get_u8() == 1;
                    self.dec.received = self.dec.received.max(wal_end);
                    if reply {
                        self.status(false).await?;
                    }
                    return Ok(ChangeEvent::Heartbeat);
                }
                b'w' if d.len() >= 24 => {
                    let _start = d.get_u64();
                    let _end = d.get_u64();
                    let _ts = d.get_i64();
                    self.dec.message(d)?;
                }
                _ => {}
            }
        }
    }
}

impl Decoder {
    fn rel_for(&mut self, oid: u32) -> Option<(usize, Vec<Option<usize>>)> {
        let r = self.rels.get(&oid)?;
        Some((r.table?, r.map.clone()))
    }

    /// One pgoutput message.
    pub(crate) fn message(&mut self, mut d: &[u8]) -> Result<(), CdcError> {
        let bad = || CdcError::Source("malformed pgoutput message".into());
        if d.is_empty() {
            return Err(bad());
        }
        let tag = d.get_u8();
        // Every message below starts with a 4-byte field (relation id or count).
        if matches!(tag, b'R' | b'I' | b'U' | b'D' | b'T') && d.len() < 4 {
            return Err(bad());
        }
        match tag {
            b'B' => {
                if d.len() < 20 {
                    return Err(bad());
                }
                let _final = d.get_u64();
                let ts = d.get_i64();
                self.commit_ts = pg_ts_to_unix_ms(ts);
            }
            b'C' => {
                if d.len() < 25 {
                    return Err(bad());
                }
                let _flags = d.get_u8();
                let _lsn = d.get_u64();
                let end = d.get_u64();
                let ts = d.get_i64();
                self.received = self.received.max(end);
                self.pending.push_back(ChangeEvent::Commit {
                    position: SourcePosition::Lsn { lsn: fmt_lsn(end) },
                    committed_at_ms: pg_ts_to_unix_ms(ts).or(self.commit_ts),
                });
            }
            b'R' => {
                let oid = d.get_u32();
                let ns = cstr(&mut d).ok_or_else(bad)?;
                let name = cstr(&mut d).ok_or_else(bad)?;
                if d.len() < 3 {
                    return Err(bad());
                }
                let _ident = d.get_u8();
                let n = d.get_i16().max(0) as usize;
                let mut names = Vec::with_capacity(n);
                for _ in 0..n {
                    if d.is_empty() {
                        return Err(bad());
                    }
                    let _flags = d.get_u8();
                    names.push(cstr(&mut d).ok_or_else(bad)?);
                    if d.len() < 8 {
                        return Err(bad());
                    }
                    let _ty = d.get_u32();
                    let _typmod = d.get_i32();
                }
                let table = (ns == self.schema)
                    .then(|| super::event::table_index(&self.manifest, &name))
                    .flatten();
                let map = match table {
                    Some(t) => {
                        column_map(&self.manifest.tables[t], names.iter().map(String::as_str))
                    }
                    None => vec![],
                };
                if let Some(t) = table {
                    let tm = &self.manifest.tables[t];
                    let missing = tm.columns.iter().any(|c| !names.contains(&c.source_name));
                    let changed = self.shapes.get(&t).is_some_and(|old| *old != names);
                    if missing || changed {
                        self.pending.push_back(ChangeEvent::TableChanged {
                            table: t,
                            reason: format!("the columns of {name} changed"),
                        });
                    }
                    self.shapes.insert(t, names);
                }
                self.rels.insert(oid, Rel { table, map });
            }
            b'I' => {
                let oid = d.get_u32();
                let Some((table, map)) = self.rel_for(oid) else {
                    return Ok(());
                };
                if d.is_empty() || d.get_u8() != b'N' {
                    return Err(bad());
                }
                let row = self.tuple(&mut d, table, &map)?;
                self.pending.push_back(ChangeEvent::Insert { table, row });
            }
            b'U' => {
                let oid = d.get_u32();
                let Some((table, map)) = self.rel_for(oid) else {
                    return Ok(());
                };
                let mut before = None;
                let mut kind = d.first().copied().ok_or_else(bad)?;
                d.advance(1);
                if kind == b'K' || kind == b'O' {
                    before = Some(self.tuple(&mut d, table, &map)?);
                    kind = d.first().copied().ok_or_else(bad)?;
                    d.advance(1);
                }
                if kind != b'N' {
                    return Err(bad());
                }
                let after = self.tuple(&mut d, table, &map)?;
                let before = before.unwrap_or_else(|| after.clone());
                self.pending.push_back(ChangeEvent::Update {
                    table,
                    before,
                    after,
                });
            }
            b'D' => {
                let oid = d.get_u32();
                let Some((table, map)) = self.rel_for(oid) else {
                    return Ok(());
                };
                if d.is_empty() {
                    return Err(bad());
                }
                d.advance(1);
                let before = self.tuple(&mut d, table, &map)?;
                self.pending
                    .push_back(ChangeEvent::Delete { table, before });
            }
            b'T' => {
                if d.len() < 5 {
                    return Err(bad());
                }
                let n = d.get_i32().max(0) as usize;
                let _opts = d.get_u8();
                let mut tables = vec![];
                for _ in 0..n {
                    if d.len() < 4 {
                        break;
                    }
                    let oid = d.get_u32();
                    if let Some(t) = self.rels.get(&oid).and_then(|r| r.table) {
                        tables.push(t);
                    }
                }
                if !tables.is_empty() {
                    self.pending.push_back(ChangeEvent::Truncate { tables });
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn tuple(
        &mut self,
        d: &mut &[u8],
        table: usize,
        map: &[Option<usize>],
    ) -> Result<ChangeRow, CdcError> {
        let bad = || CdcError::Source("malformed pgoutput tuple".into());
        let t: &TableManifest = &self.manifest.tables[table];
        let mut row = vec![Some(Value::Null); t.columns.len()];
        if d.len() < 2 {
            return Err(bad());
        }
        let n = d.get_i16().max(0) as usize;
        for i in 0..n {
            if d.is_empty() {
                return Err(bad());
            }
            let kind = d.get_u8();
            let target = map.get(i).copied().flatten();
            match kind {
                b'n' => {}
                b'u' => {
                    if let Some(c) = target {
                        row[c] = None;
                    }
                }
                b't' | b'b' => {
                    if d.len() < 4 {
                        return Err(bad());
                    }
                    let len = d.get_i32().max(0) as usize;
                    if d.len() < len {
                        return Err(bad());
                    }
                    let bytes = &d[..len];
                    if let Some(c) = target {
                        row[c] = Some(Value::from_ref(column_text_value(
                            &t.columns[c],
                            bytes,
                            &mut self.scratch,
                        )));
                    }
                    d.advance(len);
                }
                _ => return Err(bad()),
            }
        }
        Ok(row)
    }
}

fn cstr(d: &mut &[u8]) -> Option<String> {
    let end = d.iter().position(|&b| b == 0)?;
    let s = String::from_utf8_lossy(&d[..end]).into_owned();
    d.advance(end + 1);
    Some(s)
}

/// A logical slot just created on a replication connection, with its exported snapshot.
pub struct LogicalSlot {
    /// The exported snapshot (valid until [`LogicalSlot::start`]); load inside it.
    pub snapshot: ExportedSnapshot,
    conn: ReplConn,
    slot: String,
    schema: String,
    publications: Vec<String>,
}

impl std::fmt::Debug for LogicalSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogicalSlot")
            .field("snapshot", &self.snapshot)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl LogicalSlot {
    /// The stream of [`LogicalSlot::start`](super::CdcStream).
    pub(crate) async fn start_logical(
        self,
        manifest: Arc<Manifest>,
    ) -> Result<LogicalCdc, CdcError> {
        LogicalCdc::start(
            self.conn,
            self.schema,
            manifest,
            &self.slot,
            &self.publications,
            &self.snapshot.lsn,
        )
        .await
    }
}

/// Replication bookkeeping of one database on a PostgreSQL source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogicalStatus {
    /// The slot exists.
    pub slot_exists: bool,
    /// A connection streams from it.
    pub active: bool,
    /// WAL bytes the slot retains (`pg_current_wal_lsn() - restart_lsn`).
    pub retained_wal_bytes: Option<i64>,
    /// The slot's `confirmed_flush_lsn`.
    pub confirmed_flush_lsn: Option<String>,
}

async fn sql_client(params: &SourceParams) -> Result<tokio_postgres::Client, SourceError> {
    let db = params.database.clone().unwrap_or_else(|| "postgres".into());
    let mut c = tokio_postgres::Config::new();
    c.host(&params.host)
        .port(if params.port == 0 { 5432 } else { params.port })
        .user(&params.user)
        .dbname(&db)
        .application_name("refract")
        .connect_timeout(CONNECT_TIMEOUT)
        .ssl_mode(crate::tls::pg_ssl_mode(&params.tls));
    if let Some(pw) = &params.password {
        c.password(pw.as_bytes());
    }
    let (client, conn) = c
        .connect(crate::tls::PgTls::new(&params.tls)?)
        .await
        .map_err(|e| crate::error::pg(e, params))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn pg_err(e: tokio_postgres::Error, params: &SourceParams) -> SourceError {
    crate::error::pg(e, params)
}

/// The publications to stream from, created or updated when this user may: `<name>` over the
/// exposed tables with a primary key and `<name>_nk` over the others. When the user may not
/// (`CREATE PUBLICATION … FOR TABLE` needs ownership of the tables), a publication an owner
/// created is used if it covers every exposed table ([`covering_publication`]); else the error
/// says exactly what an owner has to run.
async fn ensure_publications(
    params: &SourceParams,
    manifest: &Manifest,
    options: &CdcOptions,
) -> Result<Vec<String>, CdcError> {
    let client = sql_client(params).await?;
    let schema = schema_of(params, manifest);
    let name =
        |t: &TableManifest| format!("{}.{}", quote_double(&schema), quote_double(&t.source_name));
    let keyed: Vec<String> = manifest
        .tables
        .iter()
        .filter(|t| !t.primary_key.is_empty())
        .map(name)
        .collect();
    let keyless: Vec<String> = manifest
        .tables
        .iter()
        .filter(|t| t.primary_key.is_empty())
        .map(name)
        .collect();
    let mut refusal = None;
    for (pubname, tables, with) in [
        (options.publication.clone(), keyed, ""),
        (
            format!("{}_nk", options.publication),
            keyless,
            " WITH (publish = 'insert, truncate')",
        ),
    ] {
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_publication WHERE pubname = $1",
                &[&pubname],
            )
            .await
            .map_err(|e| pg_err(e, params))?
            .is_some();
        let sql = match (exists, tables.is_empty()) {
            (false, true) => format!("CREATE PUBLICATION {}{with}", quote_double(&pubname)),
            (false, false) => format!("CREATE PUBLICATION {} FOR TABLE {}{with}", quote_double(&pubname), tables.join(", ")),
            (true, true) => format!(
                "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = '{p}') THEN \
                 EXECUTE (SELECT 'ALTER PUBLICATION {q} DROP TABLE ' || string_agg(format('%I.%I', schemaname, tablename), ', ') \
                 FROM pg_publication_tables WHERE pubname = '{p}'); END IF; END $$",
                p = pubname.replace('\'', "''"),
                q = quote_double(&pubname).replace('\'', "''")
            ),
            (true, false) => format!("ALTER PUBLICATION {} SET TABLE {}", quote_double(&pubname), tables.join(", ")),
        };
        if let Err(e) = client.batch_execute(&sql).await {
            refusal = Some(pg_err(e, params).to_string());
            break;
        }
    }
    let Some(refusal) = refusal else {
        return Ok(vec![
            options.publication.clone(),
            format!("{}_nk", options.publication),
        ]);
    };
    if let Some(found) = covering_publication(&client, &schema, manifest, options)
        .await
        .map_err(|e| pg_err(e, params))?
    {
        tracing::info!(publication = %found, reason = %refusal, "using a publication created by an owner of the tables");
        return Ok(vec![found]);
    }
    let all: Vec<String> = manifest.tables.iter().map(name).collect();
    Err(CdcError::NotReady(format!(
        "user {user} cannot create the publication {p} ({refusal}), and no publication covers every exposed \
         table with inserts, updates and deletes. Have an owner of the tables (or a superuser) run \
         `CREATE PUBLICATION {p} FOR TABLE {list};` on database {db}, or make {user} the owner of the tables, \
         then provision again",
        user = params.user,
        p = quote_double(&options.publication),
        list = all.join(", "),
        db = params.database.as_deref().unwrap_or("?"),
    )))
}

/// A publication (this database's own name first, then by name) that covers every exposed table:
/// all of them listed (or `FOR ALL TABLES`), inserts published, and updates and deletes too when
/// a table has a primary key. Row filters and column lists (PostgreSQL 15) are not looked at:
/// a publication that has them makes the replica miss rows (documented in docs/engine.md).
async fn covering_publication(
    client: &tokio_postgres::Client,
    schema: &str,
    manifest: &Manifest,
    options: &CdcOptions,
) -> Result<Option<String>, tokio_postgres::Error> {
    let tables: Vec<String> = manifest
        .tables
        .iter()
        .map(|t| t.source_name.clone())
        .collect();
    let keyed = manifest.tables.iter().any(|t| !t.primary_key.is_empty());
    let rows = client
        .query(
            "SELECT p.pubname::text, p.pubinsert, p.pubupdate, p.pubdelete, \
               (SELECT count(DISTINCT pt.tablename)::int FROM pg_publication_tables pt \
                 WHERE pt.pubname = p.pubname AND pt.schemaname::text = $1 \
                   AND pt.tablename::text = ANY($2::text[])) \
             FROM pg_publication p ORDER BY p.pubname::text = $3 DESC, p.pubname",
            &[&schema, &tables, &options.publication],
        )
        .await?;
    Ok(rows.into_iter().find_map(|r| {
        let (name, insert, update, delete, covered): (String, bool, bool, bool, i32) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        (covered as usize == tables.len() && insert && (!keyed || (update && delete)))
            .then_some(name)
    }))
}

/// The publications a resumed stream reads: this database's own ones where they exist, else
/// the covering publication an owner created.
pub(crate) async fn publication_names(
    params: &SourceParams,
    manifest: &Manifest,
    options: &CdcOptions,
) -> Result<Vec<String>, CdcError> {
    let client = sql_client(params).await?;
    let own = [
        options.publication.clone(),
        format!("{}_nk", options.publication),
    ];
    let existing: Vec<String> = client
        .query(
            "SELECT pubname::text FROM pg_publication WHERE pubname::text = ANY($1::text[]) ORDER BY pubname",
            &[&own.to_vec()],
        )
        .await
        .map_err(|e| pg_err(e, params))?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    if existing.len() == own.len() {
        return Ok(existing);
    }
    let schema = schema_of(params, manifest);
    match covering_publication(&client, &schema, manifest, options)
        .await
        .map_err(|e| pg_err(e, params))?
    {
        Some(found) => Ok(vec![found]),
        None if !existing.is_empty() => Ok(existing),
        None => Err(CdcError::NotReady(format!(
            "the publication {} is gone and no other publication covers the exposed tables: \
             redeploy the database to create it again",
            options.publication
        ))),
    }
}

/// Create (or replace) the publications and the slot, exporting a snapshot: the load reads in
/// [`LogicalSlot::snapshot`], then [`LogicalSlot::start`] streams from exactly its end.
pub async fn create_logical_slot(
    params: &SourceParams,
    manifest: &Manifest,
    options: &CdcOptions,
) -> Result<LogicalSlot, CdcError> {
    let publications = ensure_publications(params, manifest, options).await?;
    let client = sql_client(params).await?;
    // A full load starts a new slot: the old one (if any) is behind the new snapshot.
    drop_slot_if_any(&client, &options.slot)
        .await
        .map_err(|e| {
            CdcError::Source(format!("dropping the previous slot: {}", pg_err(e, params)))
        })?;
    let mut conn = ReplConn::connect(params).await?;
    let rows = conn
        .query(&format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT",
            quote_double(&options.slot)
        ))
        .await
        .map_err(|e| match e {
            CdcError::Source(m)
                if m.contains("55000")
                    || m.contains("max_replication_slots")
                    || m.contains("wal_level") =>
            {
                CdcError::NotReady(m)
            }
            other => other,
        })?;
    let row = rows
        .into_iter()
        .next()
        .ok_or_else(|| CdcError::Source("CREATE_REPLICATION_SLOT returned no row".into()))?;
    let lsn = row
        .get(1)
        .cloned()
        .flatten()
        .ok_or_else(|| CdcError::Source("no consistent point".into()))?;
    let name = row
        .get(2)
        .cloned()
        .flatten()
        .ok_or_else(|| CdcError::Source("no exported snapshot".into()))?;
    Ok(LogicalSlot {
        snapshot: ExportedSnapshot { name, lsn },
        conn,
        slot: options.slot.clone(),
        schema: schema_of(params, manifest),
        publications,
    })
}

/// Drops the replication slot `slot`; one that does not exist is fine.
async fn drop_slot_if_any(
    client: &tokio_postgres::Client,
    slot: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map(drop)
}

/// Drop the slot and the publications (absent ones are fine).
pub async fn drop_logical_slot(
    params: &SourceParams,
    options: &CdcOptions,
) -> Result<(), CdcError> {
    let client = sql_client(params).await?;
    drop_slot_if_any(&client, &options.slot)
        .await
        .map_err(|e| CdcError::Source(pg_err(e, params).to_string()))?;
    for p in [
        options.publication.clone(),
        format!("{}_nk", options.publication),
    ] {
        match client
            .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", quote_double(&p)))
            .await
        {
            Ok(()) => {}
            // An owner's publication (created for this database, see `ensure_publications`)
            // stays: it is theirs to drop.
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                tracing::info!(publication = %p, "publication owned by another role left in place");
            }
            Err(e) => return Err(CdcError::Source(pg_err(e, params).to_string())),
        }
    }
    Ok(())
}

/// The slot's state and retained WAL.
pub async fn logical_status(
    params: &SourceParams,
    options: &CdcOptions,
) -> Result<LogicalStatus, SourceError> {
    let client = sql_client(params).await?;
    let row = client
        .query_opt(
            "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, confirmed_flush_lsn::text \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&options.slot],
        )
        .await
        .map_err(|e| pg_err(e, params))?;
    Ok(match row {
        Some(r) => LogicalStatus {
            slot_exists: true,
            active: r.get(0),
            retained_wal_bytes: r.get(1),
            confirmed_flush_lsn: r.get(2),
        },
        None => LogicalStatus::default(),
    })
}

/// Re-read rows by key: `SELECT cols FROM t WHERE (pk) IN (('1', ...), ...) AND (where)`;
/// keys are sent as quoted literals that PostgreSQL casts to the key columns' types.
pub(crate) async fn fetch_rows(
    params: &SourceParams,
    manifest: &Manifest,
    table: &TableManifest,
    keys: &[Row],
) -> Result<Vec<Row>, SourceError> {
    let client = sql_client(params).await?;
    client
        .batch_execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3",
        )
        .await
        .map_err(|e| pg_err(e, params))?;
    let schema = schema_of(params, manifest);
    let cols: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("{}::text", quote_double(&c.source_name)))
        .collect();
    let pk: Vec<String> = table
        .primary_key
        .iter()
        .map(|&i| quote_double(&table.columns[i].source_name))
        .collect();
    let mut out = vec![];
    let mut scratch = vec![];
    for chunk in keys.chunks(500) {
        let tuples: Vec<String> = chunk
            .iter()
            .map(|k| {
                let lits: Vec<String> = k
                    .iter()
                    .zip(&table.primary_key)
                    .map(|(c, &i)| literal(c, table.columns[i].ty))
                    .collect();
                format!("({})", lits.join(", "))
            })
            .collect();
        let sql = select_by_key_sql(
            &cols,
            &format!(
                "{}.{}",
                quote_double(&schema),
                quote_double(&table.source_name)
            ),
            &pk,
            &tuples.join(", "),
            table.where_sql.as_deref(),
        );
        let rows = client
            .simple_query(&sql)
            .await
            .map_err(|e| pg_err(e, params))?;
        for m in rows {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                let mut row = vec![Value::Null; table.columns.len()];
                for (i, c) in table.columns.iter().enumerate() {
                    if let Some(v) = r.get(i) {
                        row[i] = Value::from_ref(column_text_value(c, v.as_bytes(), &mut scratch));
                    }
                }
                out.push(row);
            }
        }
    }
    Ok(out)
}

/// A key value as a quoted SQL literal (its text form).
fn literal(c: &Value, ty: ColumnType) -> String {
    let text = match c {
        Value::Null => return "NULL".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Decimal(m) => crate::types::decimal_text(
            *m,
            match ty {
                ColumnType::Decimal { scale } => u32::from(scale),
                _ => 0,
            },
        ),
        Value::Text(s) | Value::Json(s) => s.clone(),
        Value::Bytes(b) => format!(
            "\\x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
        Value::Date(d) => {
            let (y, m, dd) = crate::types::civil_from_days(i64::from(*d));
            format!("{y:04}-{m:02}-{dd:02}")
        }
        Value::Time(us) => format!("{} microseconds", us),
        Value::DateTime(us) | Value::Timestamp(us) => {
            let days = us.div_euclid(86_400_000_000);
            let rem = us.rem_euclid(86_400_000_000);
            let (y, m, d) = crate::types::civil_from_days(days);
            let s = rem / 1_000_000;
            format!(
                "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:06}{}",
                s / 3600,
                (s / 60) % 60,
                s % 60,
                rem % 1_000_000,
                if matches!(c, Value::Timestamp(_)) {
                    "+00"
                } else {
                    ""
                }
            )
        }
    };
    format!("'{}'", text.replace('\'', "''"))
}
