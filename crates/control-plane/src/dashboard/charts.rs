//! Small inline-SVG charts of a running database: queries/s, p99 latency and replication lag.
//!
//! Sampled on the server while someone watches: each render of a database's status (the page
//! polls it) reads the engine's Prometheus `/metrics` (at most every 2 s per database) and keeps
//! the last [`KEEP`] samples in memory; rates come from the differences between samples. Nothing
//! is stored: a restart starts the charts empty.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Samples kept per database (2 minutes at one every 2 s).
const KEEP: usize = 60;
/// Samples are kept for at most this many databases.
const MAX_DATABASES: usize = 1000;
/// At most one sample per database this often.
const EVERY: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Sample {
    at: Instant,
    queries: f64,
    /// Cumulative `refract_query_duration_seconds_bucket` counts by upper bound.
    buckets: Vec<(f64, f64)>,
    lag_ms: Option<f64>,
}

/// The samples of every database watched.
#[derive(Clone, Default)]
pub struct Samples {
    inner: Arc<Mutex<HashMap<Uuid, VecDeque<Sample>>>>,
}

/// Reads `refract_queries_total` (every status) and the query-duration buckets from a
/// Prometheus text exposition.
fn parse(text: &str) -> (f64, Vec<(f64, f64)>) {
    let mut queries = 0.0;
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        if series.starts_with("refract_queries_total") {
            queries += value;
        } else if series.starts_with("refract_query_duration_seconds_bucket") {
            let le = series
                .split("le=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|v| {
                    v.parse::<f64>()
                        .ok()
                        .or((v == "+Inf").then_some(f64::INFINITY))
                });
            if let Some(le) = le {
                match buckets.iter_mut().find(|(b, _)| *b == le) {
                    Some((_, n)) => *n += value,
                    None => buckets.push((le, value)),
                }
            }
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    (queries, buckets)
}

impl Samples {
    /// Takes a sample of `endpoint` when the last one is older than [`EVERY`].
    pub async fn sample(
        &self,
        http: &reqwest::Client,
        id: Uuid,
        endpoint: &str,
        lag_ms: Option<f64>,
    ) {
        {
            let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if map
                .get(&id)
                .and_then(|q| q.back())
                .is_some_and(|s| s.at.elapsed() < EVERY)
            {
                return;
            }
        }
        let text = match http
            .get(format!("{endpoint}/metrics"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
            _ => return,
        };
        let (queries, buckets) = parse(&text);
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: the database watched longest ago makes room.
        if map.len() >= MAX_DATABASES && !map.contains_key(&id) {
            let oldest = map
                .iter()
                .min_by_key(|(_, q)| q.back().map(|s| s.at))
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        let q = map.entry(id).or_default();
        // An engine restarted (counters went down): start over.
        if q.back().is_some_and(|s| s.queries > queries) {
            q.clear();
        }
        q.push_back(Sample {
            at: Instant::now(),
            queries,
            buckets,
            lag_ms,
        });
        while q.len() > KEEP {
            q.pop_front();
        }
    }

    /// The chart block (inline SVG; only numbers, no user text), empty before three samples
    /// (two rates make the first line).
    pub fn render(&self, id: Uuid) -> String {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = map.get(&id).filter(|q| q.len() >= 3) else {
            return String::new();
        };
        let samples: Vec<&Sample> = q.iter().collect();
        let mut qps = Vec::new();
        let mut p99 = Vec::new();
        let mut lag = Vec::new();
        for w in samples.windows(2) {
            let (a, b) = (w[0], w[1]);
            let dt = b.at.duration_since(a.at).as_secs_f64().max(0.001);
            let dq = (b.queries - a.queries).max(0.0);
            qps.push(dq / dt);
            p99.push(percentile(&a.buckets, &b.buckets, 0.99).map(|s| s * 1000.0));
            lag.push(b.lag_ms);
        }
        let p99: Vec<f64> = p99.into_iter().map(|v| v.unwrap_or(0.0)).collect();
        let lag_known = lag.iter().any(Option::is_some);
        let lag: Vec<f64> = lag.into_iter().map(|v| v.unwrap_or(0.0)).collect();
        let mut out = String::from(
            "<div class=\"charts\" id=\"charts\"><h3>Last minutes (sampled while this page is open)</h3>",
        );
        out.push_str(&chart("Queries per second", "qps", &qps, "/s"));
        out.push_str(&chart("p99 latency", "p99", &p99, " ms"));
        if lag_known {
            out.push_str(&chart("Replication lag", "lag", &lag, " ms"));
        }
        out.push_str("</div>");
        out
    }
}

/// The `q` quantile (seconds) of the queries between two cumulative bucket sets.
fn percentile(a: &[(f64, f64)], b: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = b
        .iter()
        .map(|(le, n)| {
            let before = a
                .iter()
                .find(|(l, _)| l == le)
                .map(|(_, n)| *n)
                .unwrap_or(0.0);
            (*le, (n - before).max(0.0))
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map(|(le, _)| if le.is_finite() { *le } else { 2.5 })
}

fn chart(title: &str, id: &str, values: &[f64], unit: &str) -> String {
    const W: f64 = 240.0;
    const H: f64 = 48.0;
    let max = values.iter().copied().fold(0.0f64, f64::max);
    let scale = if max > 0.0 { H / max } else { 0.0 };
    let step = W / (values.len().max(2) - 1) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * step, H - v * scale))
        .collect();
    let last = values.last().copied().unwrap_or(0.0);
    format!(
        "<figure class=\"chart\" id=\"chart-{id}\"><figcaption>{title}: {last:.1}{unit} now, max {max:.1}{unit}</figcaption>\
         <svg class=\"chart\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{title}\">\
         <polyline fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"1.5\" points=\"{}\"/></svg></figure>",
        points.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_and_buckets_and_finds_p99() {
        let text = "# TYPE x counter\nrefract_queries_total{status=\"ok\"} 10\nrefract_queries_total{status=\"query_error\"} 2\n\
                    refract_query_duration_seconds_bucket{le=\"0.001\"} 9\nrefract_query_duration_seconds_bucket{le=\"0.01\"} 12\n\
                    refract_query_duration_seconds_bucket{le=\"+Inf\"} 12\n";
        let (q, b) = parse(text);
        assert_eq!(q, 12.0);
        assert_eq!(b.len(), 3);
        assert_eq!(percentile(&[], &b, 0.99), Some(0.01));
        assert_eq!(percentile(&[], &b, 0.5), Some(0.001));
        assert_eq!(percentile(&b, &b, 0.99), None);
    }
}
