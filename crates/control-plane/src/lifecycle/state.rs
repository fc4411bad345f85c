//! The lifecycle's shared state: where engines run ([`Runtime`]), the reconciler's wake-up, build
//! slots, the keys-file lock, which databases have a task, and the test hook that slows steps.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use refract_runtime::Driver;
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use super::engine::EngineClient;

/// Builds that may run at once; extra ones wait in `queued`.
pub const BUILD_SLOTS: usize = 2;

/// Where engines' files go as root when the data directory is out of their user's reach.
pub const ENGINE_FILES_FALLBACK: &str = "/var/lib/refract/engines";

/// Where the lifecycle runs engines, set once by [`crate::open`].
#[derive(Clone)]
pub struct Runtime {
    /// The runtime driver.
    pub driver: Arc<dyn Driver>,
    /// The control plane's data directory (builds).
    pub data_dir: PathBuf,
    /// Where the files engines read live (`instances/`, `keys/`): the data directory, or, as root
    /// when other users cannot reach it (a data directory under `/root`), a directory of its own
    /// under [`ENGINE_FILES_FALLBACK`].
    pub engine_dir: PathBuf,
    /// The `refract` executable started as `refract engine`.
    pub engine_binary: PathBuf,
    /// The user engines run as (`refract` when the control plane is root, else its own user):
    /// the keys files are given to it, and a SQLite source must be readable by it.
    pub engine_user: refract_runtime::user::ServiceUser,
}

/// The lifecycle's shared state, held by [`crate::Service`]. Cheap to clone.
#[derive(Clone, Default)]
pub struct Lifecycle {
    inner: Arc<Shared>,
}

/// Sends a wake-up to the other control-plane replicas (PostgreSQL store: `NOTIFY`).
pub type PeerWake = Arc<dyn Fn() + Send + Sync>;

struct Shared {
    runtime: OnceLock<Runtime>,
    wake: Notify,
    peers: OnceLock<PeerWake>,
    build_slots: Arc<Semaphore>,
    /// Serializes writes of keys files (see `querykeys::write_keys_file`).
    keys_lock: tokio::sync::Mutex<()>,
    /// Databases with a reconciler task running.
    busy: Mutex<HashSet<Uuid>>,
    engine: EngineClient,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            runtime: OnceLock::new(),
            wake: Notify::new(),
            peers: OnceLock::new(),
            build_slots: Arc::new(Semaphore::new(BUILD_SLOTS)),
            keys_lock: tokio::sync::Mutex::new(()),
            busy: Mutex::new(HashSet::new()),
            engine: EngineClient::new(),
        }
    }
}

/// Milliseconds the reconciler waits before each transitional step (0 = none). A test hook, so
/// that integration tests can stop the control plane *during* a given status; set by the binary
/// from `REFRACT_TEST_STEP_DELAY_MS`.
static STEP_DELAY_MS: AtomicU64 = AtomicU64::new(0);

/// Sets the test-only pause before each transitional step (see `docs/api.md`).
pub fn set_step_delay(delay: Duration) {
    STEP_DELAY_MS.store(delay.as_millis() as u64, Ordering::Relaxed);
}

pub(super) async fn step_delay() {
    let ms = STEP_DELAY_MS.load(Ordering::Relaxed);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

impl Lifecycle {
    /// Sets where engines run. Called once; later calls are ignored.
    pub fn configure(&self, runtime: Runtime) {
        let _ = self.inner.runtime.set(runtime);
    }

    /// The runtime, when configured.
    pub fn runtime(&self) -> Option<&Runtime> {
        self.inner.runtime.get()
    }

    /// Wakes the reconciler (after an action): this replica's, and the leader's when it is
    /// another replica.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
        if let Some(peers) = self.inner.peers.get() {
            peers();
        }
    }

    /// Wakes this replica's reconciler only (a wake-up that came from another replica).
    pub fn wake_local(&self) {
        self.inner.wake.notify_one();
    }

    /// How [`Self::wake`] reaches the other replicas. Set once, by [`crate::open`].
    pub fn set_peer_wake(&self, peers: PeerWake) {
        let _ = self.inner.peers.set(peers);
    }

    /// The HTTP client of engines' admin and health routes.
    pub fn engine(&self) -> &EngineClient {
        &self.inner.engine
    }

    pub(super) fn try_claim(&self, id: Uuid) -> bool {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id)
    }

    pub(super) fn release(&self, id: Uuid) {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    pub(super) async fn keys_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.keys_lock.lock().await
    }

    pub(super) fn build_slots(&self) -> Arc<Semaphore> {
        self.inner.build_slots.clone()
    }

    pub(super) async fn woken(&self) {
        self.inner.wake.notified().await
    }
}
