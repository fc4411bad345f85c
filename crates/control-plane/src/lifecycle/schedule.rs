//! Pause schedules: when the reconciler behaves as if `pause` or `resume` was requested.
//!
//! A schedule `{pauseAt, resumeAt, days}` (UTC) describes windows: each starts at `pauseAt` on a
//! listed day (every day when `days` is empty; 0 = Sunday) and ends at the next `resumeAt` — the
//! same day when `resumeAt` is later than `pauseAt`, else the next day (a window across
//! midnight belongs to the day it starts). Each window edge fires once: the reconciler remembers
//! the last edge it fired, and fires only edges of the last [`FIRE_WITHIN`] (so a control plane that
//! was down at an edge still fires it when it comes back soon, but a schedule set today does not
//! undo a manual pause with a resume edge of last week).

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc};

use crate::api::PauseSchedule;

/// How old an edge may be and still fire.
pub const FIRE_WITHIN: Duration = Duration::minutes(10);

/// What a schedule edge asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// `pauseAt`: behave as if `pause` was requested.
    Pause,
    /// `resumeAt`: behave as if `resume` was requested.
    Resume,
}

impl Edge {
    /// `pause` / `resume`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Edge::Pause => "pause",
            Edge::Resume => "resume",
        }
    }
}

fn parse_hm(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

/// The latest edge at or before `now`, with its time; `None` for an unreadable schedule.
pub fn latest_edge(s: &PauseSchedule, now: DateTime<Utc>) -> Option<(Edge, DateTime<Utc>)> {
    let pause = parse_hm(&s.pause_at)?;
    let resume = parse_hm(&s.resume_at)?;
    let mut length = resume - pause;
    if length <= Duration::zero() {
        length += Duration::days(1);
    }
    let mut best: Option<(Edge, DateTime<Utc>)> = None;
    // Windows starting in the last 8 days cover every edge up to a week back.
    for back in 0..=8 {
        let day = (now - Duration::days(back)).date_naive();
        let weekday = day.weekday().num_days_from_sunday() as i64;
        if !s.days.is_empty() && !s.days.contains(&weekday) {
            continue;
        }
        let start = Utc.from_utc_datetime(&day.and_time(pause));
        for (edge, at) in [(Edge::Pause, start), (Edge::Resume, start + length)] {
            if at <= now && best.is_none_or(|(_, b)| at > b) {
                best = Some((edge, at));
            }
        }
    }
    best
}

/// The edge to fire now, if any: the latest edge, when it is recent and not the one fired last
/// (`mark`, from [`mark`]).
pub fn due(
    s: &PauseSchedule,
    now: DateTime<Utc>,
    last_mark: Option<&str>,
) -> Option<(Edge, String)> {
    let (edge, at) = latest_edge(s, now)?;
    if now - at > FIRE_WITHIN {
        return None;
    }
    let m = mark(edge, at);
    (last_mark != Some(m.as_str())).then_some((edge, m))
}

/// The key remembered for a fired edge.
pub fn mark(edge: Edge, at: DateTime<Utc>) -> String {
    format!("{}@{}", edge.as_str(), at.format("%Y-%m-%dT%H:%MZ"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(p: &str, r: &str, days: &[i64]) -> PauseSchedule {
        PauseSchedule {
            pause_at: p.into(),
            resume_at: r.into(),
            days: days.to_vec(),
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn window_across_midnight() {
        // 2026-04-15 is a Wednesday (3).
        let s = sched("22:00", "06:00", &[3]);
        assert_eq!(
            latest_edge(&s, t("2026-04-15T23:00:00Z")),
            Some((Edge::Pause, t("2026-04-15T22:00:00Z")))
        );
        // Thursday is not listed, but the Wednesday window ends on Thursday morning.
        assert_eq!(
            latest_edge(&s, t("2026-04-16T06:30:00Z")),
            Some((Edge::Resume, t("2026-04-16T06:00:00Z")))
        );
        assert_eq!(
            latest_edge(&s, t("2026-04-16T05:59:00Z")),
            Some((Edge::Pause, t("2026-04-15T22:00:00Z")))
        );
    }

    #[test]
    fn every_day_and_firing_once() {
        let s = sched("12:00", "13:00", &[]);
        let now = t("2026-04-15T12:00:30Z");
        let (edge, m) = due(&s, now, None).unwrap();
        assert_eq!(edge, Edge::Pause);
        assert_eq!(due(&s, now, Some(&m)), None, "fires once");
        assert_eq!(
            due(&s, t("2026-04-15T13:00:00Z"), Some(&m)).map(|d| d.0),
            Some(Edge::Resume)
        );
        // An edge older than FIRE_WITHIN does not fire.
        assert_eq!(due(&s, t("2026-04-15T15:00:00Z"), None), None);
    }

    #[test]
    fn unlisted_days_do_not_fire() {
        let s = sched("12:00", "13:00", &[0]); // Sundays only
        assert_eq!(due(&s, t("2026-04-15T12:01:00Z"), None), None);
        assert_eq!(
            due(&s, t("2026-04-19T12:01:00Z"), None).map(|d| d.0),
            Some(Edge::Pause)
        );
    }
}
