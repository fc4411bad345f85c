//! Which replica drives the fleet: with several `refract serve` replicas on one PostgreSQL store,
//! every replica serves the whole API, and exactly one — the holder of the **leader lease** —
//! runs the reconcilers, pause schedules and health pollers.
//!
//! # The lease
//!
//! One row (`leader_lease`) says who holds it and until when, **by the database's clock**
//! (`now()`), so a replica whose clock is off cannot make two leaders: taking and renewing are
//! one conditional `UPSERT` that only succeeds for the holder or once the lease has expired.
//! The holder renews every [`RENEW`]; it stops acting as leader when it has not renewed for
//! [`STEP_DOWN_AFTER`] (measured on its own monotonic clock, shorter than [`TTL`], so it steps
//! down before anyone else may take over). Followers try every [`RENEW`], so a dead leader is
//! replaced within `TTL + RENEW` (≈ 4 s). A replica shutting down gives the lease up at once.
//!
//! Stepping down cancels the leader's tasks like a crash would: the reconciler already resumes
//! every operation from the store after its own crash, and the new leader does exactly that.
//!
//! # Wake-ups
//!
//! An action taken through any replica wakes the leader's reconciler at once, not only at its
//! next tick: [`Lifecycle::wake`](crate::lifecycle::Lifecycle::wake) also sends
//! `NOTIFY refract_wake`, and every replica `LISTEN`s.
//!
//! With the SQLite store there is one process: it is always the leader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{PgPool, PostgresStore};

/// How long a lease lasts after its last renewal, by the database's clock.
pub const TTL: Duration = Duration::from_secs(3);
/// How often the holder renews, and followers try to take over.
pub const RENEW: Duration = Duration::from_millis(500);
/// The holder acts as leader only while its last renewal is younger than this.
pub const STEP_DOWN_AFTER: Duration = Duration::from_secs(2);
/// How long one attempt to take or renew the lease may wait for the store.
const ATTEMPT: Duration = Duration::from_secs(1);

/// The channel of wake-ups between replicas.
pub const WAKE_CHANNEL: &str = "refract_wake";

/// This replica's view: who it is and whether it leads now. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Leadership {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    replica: String,
    leader: AtomicBool,
    backend: &'static str,
}

impl Leadership {
    /// The only process on an embedded (SQLite) store: always the leader.
    pub fn single() -> Self {
        Leadership {
            inner: Arc::new(Inner {
                replica: replica_id(),
                leader: AtomicBool::new(true),
                backend: "sqlite",
            }),
        }
    }

    /// One of several replicas on a shared store; a follower until it takes the lease.
    pub fn replica() -> Self {
        Leadership {
            inner: Arc::new(Inner {
                replica: replica_id(),
                leader: AtomicBool::new(false),
                backend: "postgres",
            }),
        }
    }

    /// This replica's id (host name, process id, a random suffix).
    pub fn replica_name(&self) -> &str {
        &self.inner.replica
    }

    /// Whether this replica runs the reconcilers now.
    pub fn is_leader(&self) -> bool {
        self.inner.leader.load(Ordering::SeqCst)
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.inner.backend
    }

    fn set(&self, leader: bool) {
        self.inner.leader.store(leader, Ordering::SeqCst);
        metrics::gauge!("refract_control_plane_leader").set(if leader { 1.0 } else { 0.0 });
    }
}

fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{host}/{}/{suffix}", std::process::id())
}

/// Takes or renews the lease for `replica`; true when this replica holds it now.
pub(crate) fn try_lease(pool: &PgPool, replica: &str) -> anyhow::Result<bool> {
    let mut conn = pool.get_timeout(ATTEMPT)?;
    let row = conn.query_opt(
        "INSERT INTO leader_lease AS l (id, holder, expires_at, term) \
         VALUES (1, $1, now() + make_interval(secs => $2), 1) \
         ON CONFLICT (id) DO UPDATE SET holder = $1, expires_at = now() + make_interval(secs => $2), \
         term = CASE WHEN l.holder = $1 AND l.expires_at > now() THEN l.term ELSE l.term + 1 END \
         WHERE l.holder = $1 OR l.expires_at < now() \
         RETURNING term",
        &[&replica, &TTL.as_secs_f64()],
    )?;
    Ok(row.is_some())
}

/// Gives the lease up (on shutdown), so another replica takes over at once.
pub(crate) fn release(pool: &PgPool, replica: &str) -> anyhow::Result<()> {
    let mut conn = pool.get()?;
    conn.execute(
        "UPDATE leader_lease SET expires_at = now() - interval '1 second' WHERE holder = $1",
        &[&replica],
    )?;
    Ok(())
}

/// The current holder of a live lease, if any (for `GET /health`).
pub fn holder(pool: &PgPool) -> anyhow::Result<Option<String>> {
    let mut conn = pool.get()?;
    Ok(conn
        .query_opt(
            "SELECT holder FROM leader_lease WHERE id = 1 AND expires_at > now()",
            &[],
        )?
        .map(|r| r.get(0)))
}

/// Runs the election until `cancel`: calls `lead` with a fresh token each time this replica
/// becomes leader, and cancels that token (awaiting what `lead` started) when it stops being
/// one. Gives the lease up on the way out.
pub async fn run<F>(
    store: Arc<PostgresStore>,
    leadership: Leadership,
    cancel: CancellationToken,
    mut lead: F,
) where
    F: FnMut(CancellationToken) -> Vec<tokio::task::JoinHandle<()>>,
{
    let pool = store.pool();
    let replica = leadership.replica_name().to_string();
    let mut last_renewal: Option<tokio::time::Instant> = None;
    let mut term: Option<(CancellationToken, Vec<tokio::task::JoinHandle<()>>)> = None;
    loop {
        let attempt = tokio::time::Instant::now();
        let (p, r) = (pool.clone(), replica.clone());
        let lease = tokio::task::spawn_blocking(move || try_lease(&p, &r));
        // A leader steps down at `last_renewal + STEP_DOWN_AFTER` even while its attempt to
        // renew still waits for an answer: the lease must never outlive its acting.
        let step_down_at = last_renewal
            .filter(|_| term.is_some())
            .map(|t| t + STEP_DOWN_AFTER);
        let held = tokio::select! {
            r = tokio::time::timeout(ATTEMPT, lease) => match r {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(anyhow::Error::new(e)),
                Err(_) => Err(anyhow::anyhow!("no answer within {ATTEMPT:?}")),
            },
            _ = async {
                match step_down_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => Err(anyhow::anyhow!("the lease could not be renewed in time")),
        };
        match held {
            Ok(true) => last_renewal = Some(attempt),
            Ok(false) => last_renewal = None,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "leader lease: the store did not answer")
            }
        }
        let leading = last_renewal.is_some_and(|t| t.elapsed() < STEP_DOWN_AFTER);
        match (leading, term.is_some()) {
            (true, false) => {
                tracing::info!(replica = %replica, "this replica is now the leader");
                leadership.set(true);
                let token = cancel.child_token();
                let tasks = lead(token.clone());
                term = Some((token, tasks));
            }
            (false, true) => {
                tracing::warn!(replica = %replica, "this replica is no longer the leader: stopping its reconcilers");
                leadership.set(false);
                end_term(term.take()).await;
            }
            _ => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(RENEW) => {}
        }
    }
    end_term(term.take()).await;
    leadership.set(false);
    let (p, r) = (pool.clone(), replica.clone());
    let _ = tokio::task::spawn_blocking(move || release(&p, &r)).await;
}

/// Cancels what a term as leader started and waits for it to stop.
async fn end_term(term: Option<(CancellationToken, Vec<tokio::task::JoinHandle<()>>)>) {
    if let Some((token, tasks)) = term {
        token.cancel();
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Sends a wake-up to every replica (the leader's reconciler acts on it). Best effort: the
/// reconciler also ticks every second.
pub fn notify_peers(pool: &PgPool) {
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        if let Ok(mut conn) = pool.get() {
            let _ = conn.batch_execute(&format!("NOTIFY {WAKE_CHANNEL}"));
        }
    });
}

/// `LISTEN`s for wake-ups from other replicas until `cancel`, calling `wake` for each;
/// reconnects after a lost connection.
pub async fn listen(url: String, cancel: CancellationToken, wake: impl Fn() + Send + 'static) {
    use futures_util::StreamExt;
    loop {
        let connected = async {
            let mut config: tokio_postgres::Config = url.parse()?;
            config.connect_timeout(Duration::from_secs(3));
            let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            let statement = format!("LISTEN {WAKE_CHANNEL}");
            let listen = client.batch_execute(&statement);
            // The connection must be polled for the LISTEN to complete.
            let mut listen = std::pin::pin!(listen);
            loop {
                tokio::select! {
                    r = &mut listen => { r?; break; }
                    m = messages.next() => match m {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(anyhow::Error::new(e)),
                        None => anyhow::bail!("connection closed"),
                    }
                }
            }
            while let Some(m) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notification(_) = m? {
                    wake();
                }
            }
            anyhow::Ok(())
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = connected => {
                if let Err(e) = r {
                    tracing::debug!(error = %format!("{e:#}"), "wake-up listener: reconnecting");
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
