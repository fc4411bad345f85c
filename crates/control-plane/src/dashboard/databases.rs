//! Databases: the list, a database's page (status, `lastError`, live progress, actions from the
//! action matrix, instance, events, builds, query keys, pause schedule, tags) and its actions.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::common::{page, wire_choice, DashState, Nav, PageError, Posted, Signed};
use crate::api::{Database, PauseSchedule, Status, Tag, TagColor, UpdateDatabaseRequest};
use crate::error::ApiError;
use crate::lifecycle::matrix::Action;
use crate::lifecycle::types::{EventsQuery, InstanceStatusResponse};
use crate::lifecycle::ActionParams;

/// A path id; one that is not a UUID is a 404 like an unknown or foreign one.
pub fn path_id(s: &str, what: &str) -> Result<Uuid, PageError> {
    Uuid::parse_str(s).map_err(|_| PageError::NotFound(format!("{what} not found")))
}

/// The badge class of a status.
pub fn badge(status: Status) -> &'static str {
    match status {
        Status::Running => "ok",
        Status::Failed => "bad",
        Status::Paused | Status::Stopped | Status::Terminated | Status::Registered => "idle",
        _ => "busy",
    }
}

/// A status that changes by itself (the page polls while it lasts).
pub fn transitional(status: Status) -> bool {
    badge(status) == "busy"
}

/// A database row of the list.
pub struct DbRow {
    id: String,
    name: String,
    status: String,
    badge: &'static str,
    sync_mode: String,
    size: String,
    endpoint: String,
    schema: String,
}

fn row(d: &Database) -> DbRow {
    DbRow {
        id: d.id.to_string(),
        name: d.name.clone(),
        status: d.status.to_string(),
        badge: badge(d.status),
        sync_mode: d.sync_mode.to_string(),
        size: d.instance_size.to_string(),
        endpoint: d.endpoint_url.clone().unwrap_or_default(),
        schema: d.schema.clone(),
    }
}

#[derive(Template)]
#[template(path = "dashboard/databases.html")]
struct ListPage {
    nav: Nav,
    rows: Vec<DbRow>,
    has_connections: bool,
}

/// `GET /ui/`: the databases of the account.
pub async fn list(State(s): State<DashState>, me: Signed) -> Result<Response, PageError> {
    let dbs = s
        .service
        .list_databases(&me.principal, Default::default())
        .await?;
    let has_connections = !s.service.list_connections(&me.principal).await?.is_empty();
    page(&ListPage {
        nav: me.nav("databases"),
        rows: dbs.iter().map(|d| row(d)).collect(),
        has_connections,
    })
}

/// One action button of the matrix.
pub struct ActionRow {
    path: &'static str,
    label: &'static str,
    allowed: bool,
    reason: String,
    queued: bool,
    confirm: &'static str,
}

/// One line of the instance's facts.
pub struct Fact {
    label: &'static str,
    value: String,
}

/// The part of a database's page that changes by itself (polled).
pub struct StatusView {
    id: String,
    status: String,
    badge: &'static str,
    poll: &'static str,
    last_error: Option<String>,
    advice: Option<&'static str>,
    operation: Option<String>,
    desired: Option<String>,
    actions: Vec<ActionRow>,
    facts: Vec<Fact>,
    rows: Vec<(String, String)>,
    /// Inline SVG built from numbers only (`charts.rs`).
    chart: String,
}

const ACTIONS: [(Action, &str, &str); 11] = [
    (Action::Provision, "Provision", ""),
    (Action::Pause, "Pause", ""),
    (Action::Resume, "Resume", ""),
    (Action::Reload, "Reload data", ""),
    (Action::Rebuild, "Rebuild", ""),
    (Action::Reconfigure, "Apply settings", ""),
    (Action::PauseSync, "Pause sync", ""),
    (Action::ResumeSync, "Resume sync", ""),
    (
        Action::Terminate,
        "Terminate",
        "Terminate this database? Its engine stops.",
    ),
    (
        Action::Delete,
        "Delete",
        "Delete this database? This cannot be undone.",
    ),
    (Action::Resize, "Resize", ""),
];

fn ms(v: i64) -> String {
    if v < 1000 {
        format!("{v} ms")
    } else if v < 120_000 {
        format!("{:.1} s", v as f64 / 1000.0)
    } else {
        format!("{} min", v / 60_000)
    }
}

/// `lastError` in plain words: the stored text is already a sentence (cause and fix); a person
/// gets a lead-in saying what it means for them.
fn plain_error(d: &Database) -> Option<String> {
    let e = d.last_error.as_ref()?;
    let lead = match d.status {
        Status::Failed => "The last operation failed and nothing is served",
        Status::Running => "It serves queries, but the last check found a problem",
        _ => "The last attempt ran into a problem",
    };
    Some(format!("{lead}: {e}"))
}

/// Samples the charts of a running database and renders them.
async fn chart(s: &DashState, v: &InstanceStatusResponse) -> String {
    let Some(i) = v
        .instance
        .as_ref()
        .filter(|_| v.database.status == Status::Running)
    else {
        return String::new();
    };
    if let Some(e) = &i.endpoint_url {
        let lag = i
            .replication
            .as_ref()
            .and_then(|r| r.lag_ms)
            .map(|l| l as f64);
        s.samples.sample(&s.http, v.database.id, e, lag).await;
    }
    s.samples.render(v.database.id)
}

/// What a person can do about a `lastError`, from the kinds of failure seen in practice; `None`
/// when the message itself is the best advice.
pub fn advice(error: &str) -> Option<&'static str> {
    let e = error.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| e.contains(w));
    if has(&[
        "access denied",
        "password authentication failed",
        "authentication failed",
    ]) {
        Some("The source refused the user name or password: correct them on the connection's page (Edit), test it, then provision again.")
    } else if has(&["replication", "grant", "privilege", "permission denied"]) {
        Some("The source user lacks a grant that this sync mode needs (docs/engine.md, \"Source users and grants\"): add it on the source, or switch the database to poll under Runtime settings, then provision again.")
    } else if has(&[
        "connection refused",
        "timed out",
        "could not connect",
        "no route to host",
        "name or service not known",
    ]) {
        Some("The source server could not be reached: check that it runs and that the connection's host and port are right (Test stored credentials), then provision again.")
    } else if has(&["unknown database", "does not exist"]) {
        Some("The schema or table named does not exist on the source: pick another schema, or create it, then provision again.")
    } else if e.contains("port") && has(&["taken", "in use", "no free"]) {
        Some("The engine's port is held by another program on this host: stop that program, then provision again.")
    } else if has(&["crash", "exited", "gave up", "restarts"]) {
        Some("The engine kept stopping: the events below and the build log say why; provision again once the cause is fixed.")
    } else {
        None
    }
}

fn status_view(v: &InstanceStatusResponse, chart: String) -> StatusView {
    let d = &v.database;
    let a = &v.actions;
    let info = |act: Action| match act {
        Action::Provision => &a.provision,
        Action::Rebuild => &a.rebuild,
        Action::Reconfigure => &a.reconfigure,
        Action::Redeploy => &a.redeploy,
        Action::Resize => &a.resize,
        Action::Pause => &a.pause,
        Action::Resume => &a.resume,
        Action::Terminate => &a.terminate,
        Action::Delete => &a.delete,
        Action::Reload => &a.reload,
        Action::PauseSync => &a.pause_sync,
        Action::ResumeSync => &a.resume_sync,
    };
    let actions = ACTIONS
        .iter()
        .filter(|(act, _, _)| *act != Action::Resize)
        .map(|(act, label, confirm)| {
            let i = info(*act);
            ActionRow {
                path: act.path(),
                label,
                allowed: i.allowed,
                reason: i.reason.clone().unwrap_or_default(),
                queued: matches!(i.mode, Some(crate::lifecycle::matrix::Mode::Queued)),
                confirm,
            }
        })
        .collect();
    let operation = v.operation.as_ref().map(|o| {
        let since = o
            .started_at
            .map(|t| {
                format!(
                    ", for {}",
                    ms((chrono::Utc::now() - t).num_milliseconds().max(0))
                )
            })
            .unwrap_or_default();
        match &o.step {
            Some(step) => format!("{} in progress: {step}{since}", o.kind),
            None => format!("{} in progress{since}", o.kind),
        }
    });
    let mut facts = Vec::new();
    let mut rows = Vec::new();
    if let Some(i) = &v.instance {
        if let Some(e) = &i.endpoint_url {
            facts.push(Fact {
                label: "Endpoint",
                value: format!("{e}/query"),
            });
        }
        if let Some(h) = i.health_status {
            facts.push(Fact {
                label: "Health",
                value: h.to_string(),
            });
        }
        if let Some(age) = i.snapshot_age_ms {
            facts.push(Fact {
                label: "Snapshot age",
                value: ms(age),
            });
        }
        if let Some(r) = &i.replication {
            let lag = r
                .lag_ms
                .map(|l| format!(", lag {}", ms(l as i64)))
                .unwrap_or_default();
            facts.push(Fact {
                label: "Replication",
                value: format!("{}, {}{lag}", r.mode, r.state),
            });
            if let Some(e) = &r.error {
                facts.push(Fact {
                    label: "Replication error",
                    value: e.to_string(),
                });
            }
        }
        if let Some(Value::Object(m)) = &i.row_counts {
            rows = m.iter().map(|(k, n)| (k.clone(), n.to_string())).collect();
        }
    }
    let busy = transitional(d.status) || v.operation.is_some();
    StatusView {
        id: d.id.to_string(),
        status: d.status.to_string(),
        badge: badge(d.status),
        poll: if busy {
            "every 1s"
        } else if d.status == Status::Running {
            "every 2s"
        } else {
            "every 10s"
        },
        last_error: plain_error(d),
        advice: d.last_error.as_deref().and_then(advice),
        operation,
        desired: d.desired_state.map(|s| s.to_string()),
        actions,
        facts,
        rows,
        chart,
    }
}

/// The polled fragment; builds and events ride along as out-of-band swaps (`oob`).
#[derive(Template)]
#[template(path = "dashboard/db_status.html")]
struct StatusFragment {
    csrf: String,
    st: StatusView,
    oob: bool,
    id: String,
    builds: Vec<BuildRow>,
    events: Vec<EventRow>,
    redeploy_allowed: bool,
    resize_allowed: bool,
    resize_reason: String,
}

struct EventRow {
    at: String,
    change: String,
    cause: String,
    message: String,
}

struct BuildRow {
    id: String,
    status: String,
    created: String,
    duration: String,
    error: String,
    deployable: bool,
    active: bool,
}

struct KeyRow {
    id: String,
    name: String,
    key_id: String,
    created: String,
    revoked: String,
}

#[derive(Template)]
#[template(path = "dashboard/database.html")]
struct DetailPage {
    nav: Nav,
    csrf: String,
    st: StatusView,
    id: String,
    name: String,
    schema: String,
    sync_mode: String,
    size: String,
    sizes: Vec<(&'static str, bool)>,
    resize_allowed: bool,
    resize_reason: String,
    sync_modes: Vec<(String, bool)>,
    sync_interval: String,
    min_sync_interval: String,
    log_levels: Vec<(&'static str, bool)>,
    pending: bool,
    redeploy_allowed: bool,
    running: bool,
    events: Vec<EventRow>,
    builds: Vec<BuildRow>,
    oob: bool,
    keys: Vec<KeyRow>,
    pause_at: String,
    resume_at: String,
    days: String,
    tags: Vec<(String, String)>,
    tags_text: String,
    colors: Vec<&'static str>,
}

fn sizes(d: &Database) -> Vec<(&'static str, bool)> {
    crate::api::InstanceSize::ALL
        .iter()
        .map(|z| (z.as_str(), *z == d.instance_size))
        .collect()
}

fn fmt_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The events (newest 50) and builds of a database, as rows.
async fn history(
    s: &DashState,
    p: &crate::Principal,
    id: Uuid,
) -> Result<(Vec<EventRow>, Vec<BuildRow>), PageError> {
    let events = s
        .service
        .list_events(
            p,
            id,
            EventsQuery {
                limit: Some(50),
                before: None,
            },
        )
        .await?;
    let builds = s.service.list_builds(p, id).await?;
    let events = events
        .events
        .iter()
        .map(|e| EventRow {
            at: fmt_time(e.at),
            change: match e.from {
                Some(f) => format!("{f} → {}", e.to),
                None => e.to.to_string(),
            },
            cause: e.cause.clone(),
            message: e.message.clone(),
        })
        .collect();
    let builds = builds
        .builds
        .iter()
        .map(|b| BuildRow {
            id: b.id.to_string(),
            status: serde_json::to_value(b.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            created: fmt_time(b.created_at),
            duration: b
                .build_duration_seconds
                .map(|s| format!("{s:.1} s"))
                .unwrap_or_default(),
            error: b.error.clone().unwrap_or_default(),
            deployable: b.deployable,
            active: builds.active_build_id == Some(b.id),
        })
        .collect();
    Ok((events, builds))
}

/// `GET /ui/databases/{id}`.
pub async fn detail(
    State(s): State<DashState>,
    me: Signed,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "database")?;
    let svc = &s.service;
    let p = &me.principal;
    let v = svc.instance_status(p, id).await?;
    let (events, builds) = history(&s, p, id).await?;
    let keys = svc.list_query_keys(p, id).await?;
    let d = &v.database;
    let sched = d.pause_schedule.as_ref();
    let page_view = DetailPage {
        nav: me.nav("databases"),
        csrf: me.session.csrf.clone(),
        id: d.id.to_string(),
        name: d.name.clone(),
        schema: d.schema.clone(),
        sync_mode: d.sync_mode.to_string(),
        size: d.instance_size.to_string(),
        sizes: sizes(d),
        sync_modes: v
            .connection
            .allowed_sync_modes
            .iter()
            .map(|m| (m.to_string(), *m == d.sync_mode))
            .collect(),
        sync_interval: d.sync_interval.to_string(),
        min_sync_interval: v.connection.min_sync_interval.to_string(),
        log_levels: crate::api::LogLevel::ALL
            .iter()
            .map(|l| (l.as_str(), *l == d.log_level))
            .collect(),
        pending: v.has_pending_changes,
        resize_allowed: v.actions.resize.allowed,
        resize_reason: v.actions.resize.reason.clone().unwrap_or_default(),
        redeploy_allowed: v.actions.redeploy.allowed,
        running: d.status == Status::Running,
        events,
        builds,
        oob: false,
        keys: keys
            .iter()
            .map(|k| KeyRow {
                id: k.id.to_string(),
                name: k.name.clone(),
                key_id: k.key_id.clone(),
                created: fmt_time(k.created_at),
                revoked: k.revoked_at.map(fmt_time).unwrap_or_default(),
            })
            .collect(),
        pause_at: sched.map(|s| s.pause_at.clone()).unwrap_or_default(),
        resume_at: sched.map(|s| s.resume_at.clone()).unwrap_or_default(),
        days: sched
            .map(|s| {
                s.days
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        tags: d
            .tags
            .iter()
            .map(|t| (t.label.clone(), t.color.to_string()))
            .collect(),
        tags_text: d
            .tags
            .iter()
            .map(|t| format!("{}:{}", t.label, t.color))
            .collect::<Vec<_>>()
            .join(", "),
        colors: crate::api::TagColor::ALL
            .iter()
            .map(|c| c.as_str())
            .collect(),
        st: status_view(&v, chart(&s, &v).await),
    };
    page(&page_view)
}

/// `GET /ui/databases/{id}/status`: the polled fragment.
pub async fn status(
    State(s): State<DashState>,
    me: Signed,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "database")?;
    let v = s.service.instance_status(&me.principal, id).await?;
    let (events, builds) = history(&s, &me.principal, id).await?;
    page(&StatusFragment {
        csrf: me.session.csrf.clone(),
        st: status_view(&v, chart(&s, &v).await),
        oob: true,
        id: id.to_string(),
        builds,
        events,
        redeploy_allowed: v.actions.redeploy.allowed,
        resize_allowed: v.actions.resize.allowed,
        resize_reason: v.actions.resize.reason.clone().unwrap_or_default(),
    })
}

/// Form of an action (`resize` and `redeploy` take one field).
#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    instance_size: Option<String>,
    #[serde(default)]
    build_id: Option<String>,
}

/// `POST /ui/databases/{id}/actions/{action}`: one path for every action, through the
/// service's `database_action` (the matrix decides; a refusal is a 409 page with the reason).
pub async fn act(
    State(s): State<DashState>,
    Path((id, action)): Path<(String, String)>,
    Posted { me, form }: Posted<ActionForm>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "database")?;
    let action = Action::ALL
        .into_iter()
        .find(|a| a.path() == action)
        .ok_or_else(|| PageError::NotFound("no such action".into()))?;
    let mut params = ActionParams::default();
    if let Some(z) = form.instance_size.filter(|z| !z.is_empty()) {
        params.instance_size = Some(
            serde_json::from_value(Value::String(z.clone()))
                .map_err(|_| PageError::Bad(format!("unknown instance size {z:?}")))?,
        );
    }
    if let Some(b) = form.build_id.filter(|b| !b.is_empty()) {
        params.build_id =
            Some(Uuid::parse_str(&b).map_err(|_| PageError::Bad("build id is not a UUID".into()))?);
    }
    s.service
        .database_action(&me.principal, id, action, params)
        .await?;
    if action == Action::Delete {
        return Ok(Redirect::to("/ui/").into_response());
    }
    Ok(Redirect::to(&format!("/ui/databases/{id}")).into_response())
}

#[derive(Template)]
#[template(path = "dashboard/build_log.html")]
struct LogPage {
    nav: Nav,
    id: String,
    build: String,
    log: String,
}

/// `GET /ui/databases/{id}/builds/{build}`: a build's log.
pub async fn build_log(
    State(s): State<DashState>,
    me: Signed,
    Path((id, build)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "database")?;
    let b = path_id(&build, "build")?;
    let log = s.service.build_log(&me.principal, id, b).await?;
    page(&LogPage {
        nav: me.nav("databases"),
        id: id.to_string(),
        build: b.to_string(),
        log,
    })
}

/// The runtime settings form.
#[derive(Deserialize)]
pub struct RuntimeForm {
    sync_mode: String,
    sync_interval: String,
    log_level: String,
}

/// `POST /ui/databases/{id}/runtime`: sync mode, interval and log level through
/// `update_database` (validated as `PATCH /v1/databases/{id}`); "Apply settings" (reconfigure)
/// deploys them to a running engine.
pub async fn runtime(
    State(s): State<DashState>,
    Path(id): Path<String>,
    Posted { me, form }: Posted<RuntimeForm>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "database")?;
    let interval: i64 = form
        .sync_interval
        .trim()
        .parse()
        .map_err(|_| PageError::Bad("sync interval must be a number of seconds".into()))?;
    let req = UpdateDatabaseRequest {
        sync_mode: Some(wire_choice("syncMode", &form.sync_mode)?),
        sync_interval: Some(interval),
        log_level: Some(wire_choice("logLevel", &form.log_level)?),
        ..UpdateDatabaseRequest::default()
    };
    s.service.update_database(&me.principal, id, req).await?;
    Ok(Redirect::to(&format!("/ui/databases/{id}")).into_response())
}

/// The settings form: pause schedule and tags.
#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    pause_at: String,
    #[serde(default)]
    resume_at: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    tags: String,
}

/// `POST /ui/databases/{id}/settings`: pause schedule and tags through `update_database`
/// (validated exactly as `PATCH /v1/databases/{id}`).
pub async fn settings(
    State(s): State<DashState>,
    Path(id): Path<String>,
    Posted { me, form }: Posted<SettingsForm>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "database")?;
    let pause_schedule = if form.pause_at.trim().is_empty() && form.resume_at.trim().is_empty() {
        None
    } else {
        let days = form
            .days
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| {
                d.parse::<i64>().map_err(|_| {
                    PageError::from(ApiError::invalid(format!(
                        "pauseSchedule.days: {d:?} is not a day number (0 = Sunday … 6 = Saturday)"
                    )))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Some(PauseSchedule {
            pause_at: form.pause_at.trim().to_string(),
            resume_at: form.resume_at.trim().to_string(),
            days,
        })
    };
    let tags = form
        .tags
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .enumerate()
        .map(|(i, t)| match t.rsplit_once(':') {
            Some((label, color)) => Ok(Tag {
                label: label.trim().to_string(),
                color: wire_choice(&format!("tags[{i}].color"), color.trim())?,
            }),
            None => Ok(Tag {
                label: t.to_string(),
                color: TagColor::Gray,
            }),
        })
        .collect::<Result<Vec<_>, PageError>>()?;
    let req = UpdateDatabaseRequest {
        pause_schedule: Some(pause_schedule),
        tags: Some(tags),
        ..UpdateDatabaseRequest::default()
    };
    s.service.update_database(&me.principal, id, req).await?;
    Ok(Redirect::to(&format!("/ui/databases/{id}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::advice;

    #[test]
    fn common_failures_get_advice_in_plain_words() {
        assert!(
            advice("checking the source failed: Access denied for user 'x'@'h'")
                .unwrap()
                .contains("user name or password")
        );
        assert!(
            advice("the source may not be read: missing REPLICATION SLAVE")
                .unwrap()
                .contains("grant")
        );
        assert!(
            advice("checking the source failed: Connection refused (os error 111)")
                .unwrap()
                .contains("could not be reached")
        );
        assert!(advice("engine exited 5 times; gave up")
            .unwrap()
            .contains("kept stopping"));
        assert_eq!(advice("something new"), None);
    }
}
