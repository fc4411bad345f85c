//! Pure mapping of what the cluster reports (a Deployment and its pods) to the driver's
//! [`InstanceStatus`], table-tested below.

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};

use crate::objects::ANNOTATION_STOPPED_AT;

/// Waiting reasons that will not clear by themselves: the instance is reported `Exited` (the
/// caller's crash handling and `logs` take over) rather than `Starting` until a deploy timeout.
pub const STUCK_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// The status of an instance from its Deployment (`None`: not found) and its pods.
/// Running = every desired replica ready, with the control address of the ready pod whose name
/// sorts first.
pub fn instance_status(
    deployment: Option<&Deployment>,
    pods: &[Pod],
    control_port: u16,
    now: DateTime<Utc>,
) -> refract_runtime::InstanceStatus {
    use refract_runtime::InstanceStatus as S;
    let Some(d) = deployment else {
        return S::NotFound;
    };
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if desired == 0 {
        let at = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_STOPPED_AT))
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now);
        return S::Exited {
            code: None,
            signal: None,
            at,
        };
    }
    // A container that keeps failing (or cannot start at all) ends the instance. `at` is when
    // it last ended (or the pod's creation): the same on every observation of one failure, so
    // the caller counts it once.
    // Pods on their way out (a rolling restart's old ones, stopped by SIGTERM) and finished ones
    // (evicted: their ReplicaSet replaces them) are not the instance failing.
    let current = pods.iter().filter(|p| {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        p.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Failed" | "Succeeded"))
    });
    for p in current {
        if let Some((code, signal)) = failed(p) {
            let at = ended_at(p)
                .or_else(|| p.metadata.creation_timestamp.as_ref().map(to_chrono))
                .unwrap_or(now);
            return S::Exited { code, signal, at };
        }
    }
    // Sorted by name: the control address stays the same pod's while it lives.
    let mut ready: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
        .collect();
    ready.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    if ready.len() as i32 >= desired {
        if let Some(ip) = ready
            .iter()
            .filter_map(|p| p.status.as_ref()?.pod_ip.as_deref())
            .find(|ip| !ip.is_empty())
        {
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            };
            return S::Running {
                endpoint: format!("http://{host}:{control_port}"),
            };
        }
    }
    S::Starting
}

/// Whether the pod's `Ready` condition is true.
pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `(exit code, signal)` when a container of the pod is stuck failing: waiting in one of
/// [`STUCK_REASONS`], or terminated (its last termination tells how). A signal comes from the
/// termination's `signal`, or from an exit code above 128 (137 = 128 + 9, `OOMKilled`).
pub fn failed(p: &Pod) -> Option<(Option<i32>, Option<i32>)> {
    let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
    for c in statuses {
        let state = c.state.as_ref();
        let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
            return Some(exit_of(t));
        }
        if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            if STUCK_REASONS.contains(&w.reason.as_deref().unwrap_or("")) {
                return Some(last.map(exit_of).unwrap_or((None, None)));
            }
        }
    }
    None
}

fn to_chrono(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

/// When a container of the pod last terminated (its current or last state's `finishedAt`).
fn ended_at(p: &Pod) -> Option<DateTime<Utc>> {
    let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
    statuses
        .iter()
        .filter_map(|c| {
            let state = c.state.as_ref().and_then(|s| s.terminated.as_ref());
            let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            state.or(last)?.finished_at.as_ref().map(to_chrono)
        })
        .max()
}

fn exit_of(t: &ContainerStateTerminated) -> (Option<i32>, Option<i32>) {
    if let Some(sig) = t.signal.filter(|s| *s > 0) {
        return (None, Some(sig));
    }
    if t.reason.as_deref() == Some("OOMKilled") {
        return (None, Some(9));
    }
    if t.exit_code > 128 {
        return (None, Some(t.exit_code - 128));
    }
    (Some(t.exit_code), None)
}

/// One line per pod condition worth a human's attention: a waiting or terminated container's
/// reason and message (for `logs`, hence `lastError`).
pub fn pod_problems(p: &Pod) -> Vec<String> {
    let name = p.metadata.name.as_deref().unwrap_or("?");
    let mut out = Vec::new();
    let Some(st) = p.status.as_ref() else {
        return out;
    };
    for c in st.container_statuses.iter().flatten() {
        let state = c.state.as_ref();
        if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            out.push(format!(
                "pod {name}: container {} waiting: {} {}",
                c.name,
                w.reason.as_deref().unwrap_or(""),
                w.message.as_deref().unwrap_or("")
            ));
        }
        let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        if let Some(t) = state.and_then(|s| s.terminated.as_ref()).or(last) {
            out.push(format!(
                "pod {name}: container {} terminated: {} (exit code {}) {}",
                c.name,
                t.reason.as_deref().unwrap_or(""),
                t.exit_code,
                t.message.as_deref().unwrap_or("")
            ));
        }
    }
    for c in st.conditions.iter().flatten() {
        if c.status != "True" && c.reason.is_some() {
            out.push(format!(
                "pod {name}: {} {}: {}",
                c.type_,
                c.reason.as_deref().unwrap_or(""),
                c.message.as_deref().unwrap_or("")
            ));
        }
    }
    out.iter_mut().for_each(|l| *l = l.trim_end().to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use refract_runtime::InstanceStatus as S;
    use serde_json::json;

    fn deployment(replicas: i32) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "refract-e-a"},
            "spec": {"replicas": replicas, "selector": {}, "template": {}}
        }))
        .unwrap()
    }

    fn pod(ip: &str, ready: bool, container: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "refract-e-a-1"},
            "status": {
                "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": [container],
            }
        }))
        .unwrap()
    }

    fn running() -> serde_json::Value {
        json!({"name": "engine", "ready": true, "restartCount": 0, "image": "i", "imageID": "",
               "state": {"running": {}}})
    }

    fn waiting(reason: &str, last: Option<serde_json::Value>) -> serde_json::Value {
        let mut c = json!({"name": "engine", "ready": false, "restartCount": 3, "image": "i",
                           "imageID": "", "state": {"waiting": {"reason": reason, "message": "m"}}});
        if let Some(t) = last {
            c["lastState"] = json!({"terminated": t});
        }
        c
    }

    /// The table: what the cluster shows → what the lifecycle sees.
    #[test]
    fn cluster_states_map_to_driver_states() {
        let now = Utc::now();
        let ep = |ip: &str| S::Running {
            endpoint: format!("http://{ip}:8081"),
        };
        let exited = |code, signal| S::Exited {
            code,
            signal,
            at: now,
        };
        let oom = json!({"exitCode": 137, "reason": "OOMKilled"});
        let cases: Vec<(&str, Option<Deployment>, Vec<Pod>, S)> = vec![
            ("no deployment", None, vec![], S::NotFound),
            ("no pods yet", Some(deployment(1)), vec![], S::Starting),
            (
                "pending, not ready",
                Some(deployment(1)),
                vec![pod("", false, waiting("ContainerCreating", None))],
                S::Starting,
            ),
            (
                "loading the snapshot (not ready)",
                Some(deployment(1)),
                vec![pod("10.0.0.5", false, running())],
                S::Starting,
            ),
            (
                "ready",
                Some(deployment(1)),
                vec![pod("10.0.0.5", true, running())],
                ep("10.0.0.5"),
            ),
            (
                "2 of 3 ready",
                Some(deployment(3)),
                vec![
                    pod("10.0.0.5", true, running()),
                    pod("10.0.0.6", true, running()),
                ],
                S::Starting,
            ),
            (
                "3 of 3 ready",
                Some(deployment(3)),
                vec![
                    pod("10.0.0.5", true, running()),
                    pod("10.0.0.6", true, running()),
                    pod("10.0.0.7", true, running()),
                ],
                ep("10.0.0.5"),
            ),
            (
                "CrashLoopBackOff after exit 1",
                Some(deployment(1)),
                vec![pod(
                    "10.0.0.5",
                    false,
                    waiting(
                        "CrashLoopBackOff",
                        Some(json!({"exitCode": 1, "reason": "Error"})),
                    ),
                )],
                exited(Some(1), None),
            ),
            (
                "OOMKilled (137)",
                Some(deployment(1)),
                vec![pod(
                    "10.0.0.5",
                    false,
                    waiting("CrashLoopBackOff", Some(oom.clone())),
                )],
                exited(None, Some(9)),
            ),
            (
                "terminated now by SIGTERM (143)",
                Some(deployment(1)),
                vec![pod(
                    "10.0.0.5",
                    false,
                    json!({"name": "engine", "ready": false, "restartCount": 0, "image": "i",
                           "imageID": "", "state": {"terminated": {"exitCode": 143}}}),
                )],
                exited(None, Some(15)),
            ),
            (
                "an old pod terminating after SIGTERM, a new one ready",
                Some(deployment(1)),
                vec![
                    {
                        let mut p = pod(
                            "10.0.0.4",
                            false,
                            json!({"name": "engine", "ready": false, "restartCount": 0, "image": "i",
                                   "imageID": "", "state": {"terminated": {"exitCode": 143}}}),
                        );
                        p.metadata.deletion_timestamp =
                            Some(serde_json::from_value(json!("2026-12-04T10:00:00Z")).unwrap());
                        p
                    },
                    pod("10.0.0.5", true, running()),
                ],
                ep("10.0.0.5"),
            ),
            (
                "an evicted pod beside a ready one",
                Some(deployment(1)),
                vec![
                    {
                        let mut p = pod(
                            "",
                            false,
                            waiting("ContainerStatusUnknown", Some(json!({"exitCode": 137}))),
                        );
                        p.status.as_mut().unwrap().phase = Some("Failed".into());
                        p
                    },
                    pod("10.0.0.5", true, running()),
                ],
                ep("10.0.0.5"),
            ),
            (
                "image pull error",
                Some(deployment(1)),
                vec![pod("10.0.0.5", false, waiting("ImagePullBackOff", None))],
                exited(None, None),
            ),
            (
                "one replica crash-looping among ready ones",
                Some(deployment(2)),
                vec![
                    pod("10.0.0.5", true, running()),
                    pod("10.0.0.6", false, waiting("CrashLoopBackOff", Some(oom))),
                ],
                exited(None, Some(9)),
            ),
        ];
        for (what, d, pods, want) in cases {
            assert_eq!(
                instance_status(d.as_ref(), &pods, 8081, now),
                want,
                "{what}"
            );
        }
    }

    /// One failure reads the same on every observation (the lifecycle counts crashes by it).
    #[test]
    fn a_crash_is_dated_by_its_termination() {
        let last =
            json!({"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2026-12-04T10:00:05Z"});
        let p = pod("10.0.0.5", false, waiting("CrashLoopBackOff", Some(last)));
        let d = deployment(1);
        let a = instance_status(Some(&d), std::slice::from_ref(&p), 8081, Utc::now());
        let b = instance_status(
            Some(&d),
            &[p],
            8081,
            Utc::now() + chrono::Duration::seconds(3),
        );
        assert_eq!(a, b);
        let S::Exited { at, .. } = a else {
            panic!("{a:?}")
        };
        assert_eq!(at.to_rfc3339(), "2026-12-04T10:00:05+00:00");
    }

    #[test]
    fn scaled_to_zero_is_exited_when_stopped() {
        let mut d = deployment(0);
        d.metadata.annotations = Some(
            [(
                ANNOTATION_STOPPED_AT.to_string(),
                "2026-12-04T10:00:00Z".to_string(),
            )]
            .into_iter()
            .collect(),
        );
        let st = instance_status(Some(&d), &[], 8081, Utc::now());
        let S::Exited { code, signal, at } = st else {
            panic!("{st:?}")
        };
        assert_eq!((code, signal), (None, None));
        assert_eq!(at.to_rfc3339(), "2026-12-04T10:00:00+00:00");
    }

    #[test]
    fn problems_name_the_reason() {
        let p = pod("", false, waiting("ImagePullBackOff", None));
        assert_eq!(
            pod_problems(&p),
            vec!["pod refract-e-a-1: container engine waiting: ImagePullBackOff m".to_string()]
        );
    }
}
