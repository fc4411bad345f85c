//! The control plane ↔ engine protocol: what an engine answers on `GET /health` (and at the head
//! of `GET /stats`), as types both sides use — the engine writes them, the control plane reads
//! them (deploy decisions, the health poller, `GET /v1/databases/{id}/instance`) — and the
//! engine's config file ([`engine_config`]), which the control plane writes and the engine reads.
//! Data and its validation only, so that neither side spells a field by hand.

use serde::{Deserialize, Serialize};

pub mod engine_config;
mod http_limits;
mod ssl_mode;

pub use http_limits::HttpLimits;
pub use ssl_mode::SslMode;

/// `GET /health` of an engine. Read leniently (a missing field is its default), so a control
/// plane reads the answer of an engine one version older or newer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// The engine as a whole.
    pub status: EngineStatus,
    /// Age of the published snapshot, ms (`null` before the first one).
    #[serde(default)]
    pub snapshot_age_ms: Option<u64>,
    /// Snapshots published since the engine started.
    #[serde(default)]
    pub swap_count: u64,
    /// How changes reach the snapshot.
    #[serde(default)]
    pub replication: Replication,
    /// The client-facing address (`http://127.0.0.1:PORT`), once listening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Engines with a private control address: whether the client-facing port accepts yet
    /// (`false` from its load until it listens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepting: Option<bool>,
    /// Why the last load failed (or why the cap was exceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// [`Health::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineStatus {
    /// Serving a snapshot, the last load worked.
    Ok,
    /// No snapshot yet.
    Loading,
    /// Serving the previous snapshot; the last load failed.
    Degraded,
    /// The data does not fit the memory cap.
    CapExceeded,
}

/// [`Health::replication`]: the sync loop.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Replication {
    /// `poll`, `binlog`, `logical` (the mode that runs; see `requested_mode`).
    pub mode: String,
    /// What the loop does now.
    pub state: ReplicationState,
    /// Poll: age of the data (`null` before the first load); CDC: age of the open batch (0 when
    /// caught up).
    pub lag_ms: Option<u64>,
    /// CDC: the last batch's first event → published, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_batch_lag_ms: Option<u64>,
    /// Replication paused (the snapshot is frozen).
    pub paused: bool,
    /// The poll interval (CDC: the resync delay of dirty tables), seconds.
    pub interval_s: u64,
    /// PostgreSQL logical: WAL the slot retains, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_wal_bytes: Option<i64>,
    /// CDC: the last error of the stream (kept after it recovered; `state` says whether it
    /// matters now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// CDC, with `last_error`: a setup problem of the source (grants, publication, server id,
    /// binlog off) that retrying will not fix; the control plane fails a deploy on it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fatal: Option<bool>,
    /// Poll fallback: the mode that was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_mode: Option<String>,
    /// Poll fallback: why it polls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// [`Replication::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationState {
    /// First load (or CDC: before the first stream).
    #[default]
    Loading,
    /// Poll mode, loads succeed.
    Polling,
    /// A CDC mode that cannot run here was requested; the engine polls.
    PollFallback,
    /// A change stream runs (and hears the source's heartbeats).
    Streaming,
    /// CDC: a full resync runs.
    Reloading,
    /// CDC: the stream was lost; reconnecting with backoff.
    Reconnecting,
    /// Replication paused.
    Paused,
    /// The last load (poll) or the stream's setup (CDC) failed.
    Error,
}

impl ReplicationState {
    /// The wire name (`poll_fallback`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationState::Loading => "loading",
            ReplicationState::Polling => "polling",
            ReplicationState::PollFallback => "poll_fallback",
            ReplicationState::Streaming => "streaming",
            ReplicationState::Reloading => "reloading",
            ReplicationState::Reconnecting => "reconnecting",
            ReplicationState::Paused => "paused",
            ReplicationState::Error => "error",
        }
    }
}

/// The part of `GET /stats` the control plane reads: the health, and rows per table (the rest —
/// memory, loads, CDC counters — is for people and dashboards).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsHead {
    /// The same fields as `GET /health`.
    #[serde(flatten)]
    pub health: Health,
    /// Rows per table (API names) of the published snapshot.
    #[serde(default)]
    pub row_counts: Option<serde_json::Map<String, serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reads_what_an_engine_writes() {
        let text = r#"{"status":"ok","snapshotAgeMs":12,"swapCount":3,
            "replication":{"mode":"logical","state":"streaming","lagMs":0,"lastBatchLagMs":4,
            "paused":false,"intervalS":30,"retainedWalBytes":1024},
            "listen":"http://127.0.0.1:7000","accepting":true}"#;
        let h: Health = serde_json::from_str(text).unwrap();
        assert_eq!(h.status, EngineStatus::Ok);
        assert_eq!(h.replication.state, ReplicationState::Streaming);
        assert_eq!(h.replication.fatal, None);
        let again: serde_json::Value = serde_json::to_value(&h).unwrap();
        let original: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(again, original, "the same JSON both ways");
        for s in [
            "loading",
            "polling",
            "poll_fallback",
            "streaming",
            "reloading",
            "reconnecting",
            "paused",
            "error",
        ] {
            let st: ReplicationState = serde_json::from_value(serde_json::json!(s)).unwrap();
            assert_eq!(st.as_str(), s);
        }
    }
}
