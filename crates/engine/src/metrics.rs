//! Prometheus metrics of one engine.
//!
//! Each engine owns its recorder (not the process-global one), so several engines in one process
//! (tests) keep separate numbers. Hot-path handles (query counters, the latency histogram) are
//! registered once; recording is an atomic add or a lock-free push.

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

const QUERY_SECONDS: &str = "refract_query_duration_seconds";
const META: Metadata<'static> = Metadata::new(
    "refract_engine",
    metrics::Level::INFO,
    Some("refract_engine"),
);

/// Outcome of a query request, the `status` label of `refract_queries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryStatus {
    /// 200.
    Ok,
    /// 400 query_error.
    QueryError,
    /// 401.
    Unauthorized,
    /// 413.
    TooLarge,
    /// 503.
    NotReady,
    /// 413 result_too_large: the answer passed `max_response_bytes`.
    ResultTooLarge,
    /// 408 query_timeout: the query ran past `max_query_ms`.
    Timeout,
    /// The client went away before the answer was complete.
    Cancelled,
}

impl From<refract_query::Interrupt> for QueryStatus {
    fn from(i: refract_query::Interrupt) -> QueryStatus {
        match i {
            refract_query::Interrupt::TooLarge => QueryStatus::ResultTooLarge,
            refract_query::Interrupt::Timeout => QueryStatus::Timeout,
            refract_query::Interrupt::Cancelled => QueryStatus::Cancelled,
        }
    }
}

/// Counts one query running on a blocking thread while it lives.
pub struct RunningQuery(Gauge);

impl Drop for RunningQuery {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The engine's metric handles.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    queries: [Counter; 8],
    /// Queries whose answer was streamed (over 1 MiB, or over 20 ms of work).
    pub queries_streamed: Counter,
    queries_running: Gauge,
    /// Label per-table gauges with table names (`metrics_table_labels`).
    table_labels: bool,
    latency: Histogram,
    /// Snapshots published.
    pub swaps: Counter,
    /// Loads that succeeded.
    pub loads_ok: Counter,
    /// Loads that failed (source error).
    pub loads_failed: Counter,
    /// Loads stopped by the memory cap.
    pub loads_cap_exceeded: Counter,
    /// Duration of the last successful load.
    pub last_load_seconds: Gauge,
    /// Seconds since the data of the current snapshot was read.
    pub replication_lag_seconds: Gauge,
    /// 1 when replication is paused.
    pub replication_paused: Gauge,
    /// Age of the current snapshot.
    pub snapshot_age_seconds: Gauge,
    /// Source changes applied by CDC.
    pub replication_changes: Counter,
    /// PostgreSQL: WAL bytes the slot retains.
    pub replication_retained_wal: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh recorder with every engine metric registered.
    pub fn new() -> Metrics {
        Self::for_database(None)
    }

    /// [`Metrics::new`], with every series labelled `database="<id>"` when the engine serves a
    /// database of the control plane (so one Prometheus scraping many engines tells them apart).
    pub fn for_database(database: Option<&str>) -> Metrics {
        let buckets = [
            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            0.25, 0.5, 1.0, 2.5,
        ];
        let labelled = || match database {
            Some(id) => PrometheusBuilder::new().add_global_label("database", id),
            None => PrometheusBuilder::new(),
        };
        let builder = match labelled()
            .set_buckets_for_metric(Matcher::Full(QUERY_SECONDS.to_string()), &buckets)
        {
            Ok(b) => b,
            // Only fails on an empty bucket list.
            Err(_) => labelled(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        for (name, help) in [
            (
                "refract_queries_total",
                "Query requests (POST /query) by outcome.",
            ),
            (
                QUERY_SECONDS,
                "Time to answer POST /query, auth to last byte of the body built.",
            ),
            (
                "refract_snapshot_swaps_total",
                "Snapshots published (one atomic swap each).",
            ),
            ("refract_loads_total", "Full loads by result."),
            (
                "refract_table_rows",
                "Rows per table in the current snapshot.",
            ),
            (
                "refract_table_memory_bytes",
                "Memory per table in the current snapshot.",
            ),
            (
                "refract_replication_lag_seconds",
                "Age of the source data the snapshot holds.",
            ),
            (
                "refract_replication_paused",
                "1 while replication is paused.",
            ),
            (
                "refract_queries_running",
                "Queries running on a blocking thread (big or slow ones) right now.",
            ),
            (
                "refract_replication_retained_wal_bytes",
                "PostgreSQL logical mode: WAL bytes the replication slot retains on the source.",
            ),
        ] {
            recorder.describe_gauge(name.into(), None, help.into());
        }
        let q = |status: &'static str| {
            recorder.register_counter(
                &Key::from_parts("refract_queries_total", vec![Label::new("status", status)]),
                &META,
            )
        };
        let queries = [
            q("ok"),
            q("query_error"),
            q("unauthorized"),
            q("too_large"),
            q("not_ready"),
            q("result_too_large"),
            q("timeout"),
            q("cancelled"),
        ];
        let load = |result: &'static str| {
            recorder.register_counter(
                &Key::from_parts("refract_loads_total", vec![Label::new("result", result)]),
                &META,
            )
        };
        let gauge = |name: &'static str| recorder.register_gauge(&Key::from_name(name), &META);
        Metrics {
            latency: recorder.register_histogram(&Key::from_name(QUERY_SECONDS), &META),
            swaps: recorder
                .register_counter(&Key::from_name("refract_snapshot_swaps_total"), &META),
            loads_ok: load("ok"),
            loads_failed: load("error"),
            loads_cap_exceeded: load("cap_exceeded"),
            last_load_seconds: gauge("refract_last_load_duration_seconds"),
            replication_lag_seconds: gauge("refract_replication_lag_seconds"),
            replication_paused: gauge("refract_replication_paused"),
            snapshot_age_seconds: gauge("refract_snapshot_age_seconds"),
            replication_changes: recorder
                .register_counter(&Key::from_name("refract_replication_changes_total"), &META),
            replication_retained_wal: gauge("refract_replication_retained_wal_bytes"),
            queries,
            queries_streamed: recorder
                .register_counter(&Key::from_name("refract_queries_streamed_total"), &META),
            queries_running: gauge("refract_queries_running"),
            table_labels: false,
            recorder,
            handle,
        }
    }

    /// Count one query request and, for answered ones, its latency.
    #[inline]
    pub fn query(&self, status: QueryStatus, seconds: Option<f64>) {
        self.queries[status as usize].increment(1);
        if let Some(s) = seconds {
            self.latency.record(s);
        }
    }

    /// Count source changes applied by CDC.
    pub fn add_changes(&self, n: u64) {
        self.replication_changes.increment(n);
    }

    /// PostgreSQL logical mode: WAL retained by the slot.
    pub fn set_retained_wal(&self, bytes: f64) {
        self.replication_retained_wal.set(bytes);
    }

    /// Label the per-table gauges with table names (off by default: `/metrics` needs no key).
    pub fn with_table_labels(mut self, on: bool) -> Metrics {
        self.table_labels = on;
        self
    }

    /// A query moved to a blocking thread: counted in `refract_queries_running` until the
    /// returned guard drops.
    pub fn query_running(&self) -> RunningQuery {
        self.queries_running.increment(1.0);
        RunningQuery(self.queries_running.clone())
    }

    /// Set the per-table gauges (rows, memory), when table labels are on.
    pub fn set_table(&self, table: &str, rows: usize, memory_bytes: usize) {
        if !self.table_labels {
            return;
        }
        let labels = || vec![Label::new("table", table.to_string())];
        self.recorder
            .register_gauge(&Key::from_parts("refract_table_rows", labels()), &META)
            .set(rows as f64);
        self.recorder
            .register_gauge(
                &Key::from_parts("refract_table_memory_bytes", labels()),
                &META,
            )
            .set(memory_bytes as f64);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drain histogram samples into their buckets (bounded memory); call every few seconds.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}
