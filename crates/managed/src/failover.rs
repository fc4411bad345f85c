//! When to fail over, decided purely (like [`crate::reconciler::decide`], and table-tested): a
//! database with standbys whose primary (node 0) is lost gets its most advanced standby promoted.
//!
//! "Lost" is deliberately narrow, so that a healthy primary is never demoted (no split brain):
//! the primary's process must be dead — observed dead on every pass for [`CONFIRM`] — and either
//! its data directory is gone (a lost disk or machine) or the reconciler's restarts failed
//! [`RESTARTS_BEFORE_FAILOVER`] times (or it gave up: `crash_loop`). A primary that merely
//! crashed is restarted in place, as without standbys. The promotion itself is `promotion.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::api::DbType;
use crate::store::{DbRecord, Desired, ErrorKind};

/// How long the primary must be seen dead, on every pass, before a failover.
pub const CONFIRM: Duration = Duration::from_secs(3);
/// Failed restarts of a primary whose data is still there before its standby takes over.
pub const RESTARTS_BEFORE_FAILOVER: usize = 2;

/// What the reconciler observed about one database's primary over the last passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// How long the primary has been dead on every pass (`None`: alive at the last pass).
    pub dead_for: Option<Duration>,
    /// Its data directory is gone.
    pub data_lost: bool,
    /// Restarts of the database's servers within the crash window.
    pub restarts: usize,
    /// "No healthy standby" was already reported for this loss.
    pub reported: bool,
}

/// The failover rule's answer for one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not a failover matter: the usual [`crate::reconciler::decide`] applies.
    Normal,
    /// The primary looks lost; confirm over the next passes (and do not restart it meanwhile).
    Wait,
    /// Promote the most advanced standby, for this reason.
    Failover(String),
    /// The primary is lost and no standby runs: say so (once), promote nothing.
    NoStandby(String),
}

/// Decides whether `db`, whose nodes are alive as `alive[n]`, fails over.
pub fn judge(db: &DbRecord, alive: &[bool], seen: &Seen) -> Verdict {
    let eligible = db.desired == Desired::Running
        && db.db_type != DbType::Mongodb
        && db.replicas >= 2
        && db.nodes_ready >= 2
        && !db.restart_requested;
    let primary_alive = alive.first().copied().unwrap_or(false);
    if !eligible || primary_alive {
        return Verdict::Normal;
    }
    let gave_up = db.error_kind == Some(ErrorKind::CrashLoop);
    let reason = if seen.data_lost {
        "its data directory is gone".to_string()
    } else if seen.restarts >= RESTARTS_BEFORE_FAILOVER || gave_up {
        format!(
            "its process is dead and {} restarts failed",
            seen.restarts.max(1)
        )
    } else {
        // A crash: restart it in place.
        return Verdict::Normal;
    };
    let reason = format!("primary n0 lost: {reason}");
    if seen.dead_for.is_none_or(|d| d < CONFIRM) {
        return Verdict::Wait;
    }
    let standby_alive = (1..db.nodes_ready).any(|n| alive.get(n).copied().unwrap_or(false));
    if standby_alive {
        Verdict::Failover(reason)
    } else if seen.reported {
        Verdict::Normal
    } else {
        Verdict::NoStandby(reason)
    }
}

/// The standby to promote: the highest replication position among those that answered
/// (`(node, Some(position))`); the lowest node number among equals. `None` when none answered.
pub fn pick_standby(positions: &[(usize, Option<u64>)]) -> Option<usize> {
    positions
        .iter()
        .filter_map(|(n, p)| p.map(|p| (*n, p)))
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(n, _)| n)
}

/// Per database: since when its primary has been seen dead, and whether "no standby" was said.
#[derive(Debug, Default)]
pub struct Watch {
    dead_since: HashMap<String, (Instant, bool)>,
}

impl Watch {
    /// Records one pass's observation of `db`'s primary; returns how long it has been dead and
    /// whether the loss was already reported.
    pub fn observe(&mut self, db: &str, primary_alive: bool) -> (Option<Duration>, bool) {
        if primary_alive {
            self.dead_since.remove(db);
            return (None, false);
        }
        let (since, reported) = *self
            .dead_since
            .entry(db.to_string())
            .or_insert((Instant::now(), false));
        (Some(since.elapsed()), reported)
    }

    /// Remembers that the loss of `db`'s primary was reported; returns whether it already was.
    pub fn reported(&mut self, db: &str) -> bool {
        let e = self
            .dead_since
            .entry(db.to_string())
            .or_insert((Instant::now(), false));
        std::mem::replace(&mut e.1, true)
    }

    /// Forgets `db` (after a failover, or when it is gone).
    pub fn forget(&mut self, db: &str) {
        self.dead_since.remove(db);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Status;

    fn db(db_type: DbType) -> DbRecord {
        DbRecord {
            customer_id: "c".into(),
            nodes_ready: 2,
            replicas: 2,
            status: Status::Running,
            ports: vec![5000, 5001],
            ..crate::store::test_record("db_x", "x", db_type)
        }
    }

    fn seen(dead_for: u64, data_lost: bool, restarts: usize) -> Seen {
        Seen {
            dead_for: Some(Duration::from_secs(dead_for)),
            data_lost,
            restarts,
            reported: false,
        }
    }

    #[test]
    fn the_rule_table() {
        let pg = db(DbType::Postgresql);
        let lost = "primary n0 lost: its data directory is gone".to_string();
        let failed = "primary n0 lost: its process is dead and 2 restarts failed".to_string();
        let mut one = pg.clone();
        one.replicas = 1;
        one.nodes_ready = 1;
        let mut building = pg.clone();
        building.nodes_ready = 1;
        let mut stopped = pg.clone();
        stopped.desired = Desired::Stopped;
        let mut restarting = pg.clone();
        restarting.restart_requested = true;
        let mut looping = pg.clone();
        looping.status = Status::Error;
        looping.error_kind = Some(ErrorKind::CrashLoop);
        let mongo = db(DbType::Mongodb);
        let cases: Vec<(&str, &DbRecord, Vec<bool>, Seen, Verdict)> = vec![
            // A healthy primary is never demoted, whatever else is seen.
            (
                "healthy",
                &pg,
                vec![true, true],
                seen(60, true, 9),
                Verdict::Normal,
            ),
            (
                "healthy, no standby",
                &pg,
                vec![true, false],
                seen(60, true, 9),
                Verdict::Normal,
            ),
            // A crash is restarted in place.
            (
                "a crash",
                &pg,
                vec![false, true],
                seen(60, false, 0),
                Verdict::Normal,
            ),
            (
                "one failed restart",
                &pg,
                vec![false, true],
                seen(60, false, 1),
                Verdict::Normal,
            ),
            // Lost: confirmed over CONFIRM first, without restarting it meanwhile.
            (
                "data gone, just seen",
                &pg,
                vec![false, true],
                seen(1, true, 0),
                Verdict::Wait,
            ),
            (
                "data gone, first pass",
                &pg,
                vec![false, true],
                Seen {
                    dead_for: None,
                    data_lost: true,
                    restarts: 0,
                    reported: false,
                },
                Verdict::Wait,
            ),
            (
                "data gone, confirmed",
                &pg,
                vec![false, true],
                seen(3, true, 0),
                Verdict::Failover(lost.clone()),
            ),
            (
                "restarts failed",
                &pg,
                vec![false, true],
                seen(5, false, 2),
                Verdict::Failover(failed),
            ),
            (
                "crash loop",
                &looping,
                vec![false, true],
                seen(5, false, 0),
                Verdict::Failover(
                    "primary n0 lost: its process is dead and 1 restarts failed".into(),
                ),
            ),
            // No healthy standby: reported once, nothing promoted.
            (
                "no standby",
                &pg,
                vec![false, false],
                seen(5, true, 0),
                Verdict::NoStandby(lost.clone()),
            ),
            (
                "no standby, reported",
                &pg,
                vec![false, false],
                Seen {
                    reported: true,
                    ..seen(5, true, 0)
                },
                Verdict::Normal,
            ),
            (
                "standby not observed",
                &pg,
                vec![false],
                seen(5, true, 0),
                Verdict::NoStandby(lost),
            ),
            // Not eligible: no standby wanted or built, not meant to run, a restart pending, MongoDB.
            (
                "replicas 1",
                &one,
                vec![false],
                seen(60, true, 9),
                Verdict::Normal,
            ),
            (
                "standby still building",
                &building,
                vec![false, true],
                seen(60, true, 9),
                Verdict::Normal,
            ),
            (
                "stopped",
                &stopped,
                vec![false, false],
                seen(60, true, 9),
                Verdict::Normal,
            ),
            (
                "restart requested",
                &restarting,
                vec![false, true],
                seen(60, true, 9),
                Verdict::Normal,
            ),
            (
                "mongodb",
                &mongo,
                vec![false, true],
                seen(60, true, 9),
                Verdict::Normal,
            ),
        ];
        for (name, d, alive, s, want) in cases {
            assert_eq!(judge(d, &alive, &s), want, "{name}");
        }
    }

    #[test]
    fn the_most_advanced_standby_is_promoted() {
        assert_eq!(pick_standby(&[]), None);
        assert_eq!(pick_standby(&[(1, None), (2, None)]), None);
        assert_eq!(pick_standby(&[(1, Some(10))]), Some(1));
        assert_eq!(pick_standby(&[(1, Some(10)), (2, Some(12))]), Some(2));
        assert_eq!(pick_standby(&[(1, Some(12)), (2, Some(10))]), Some(1));
        assert_eq!(pick_standby(&[(1, None), (2, Some(0))]), Some(2));
        assert_eq!(pick_standby(&[(1, Some(7)), (2, Some(7))]), Some(1));
    }

    #[test]
    fn the_watch_confirms_over_time() {
        let mut w = Watch::default();
        assert_eq!(w.observe("a", true), (None, false));
        let (d, r) = w.observe("a", false);
        assert!(d.unwrap() < CONFIRM && !r);
        assert!(!w.reported("a"));
        assert!(w.reported("a"), "reported once per loss");
        assert!(w.observe("a", false).1);
        assert_eq!(w.observe("a", true), (None, false));
        assert!(!w.observe("a", false).1, "a new loss is reported again");
        w.forget("a");
        assert!(w.observe("a", false).0.unwrap() < Duration::from_secs(1));
    }
}
