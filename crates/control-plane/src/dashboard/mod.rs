//! The web dashboard served by `refract serve` at `/` (pages under `/ui/`): server-rendered HTML
//! from askama templates checked at compile time (`templates/dashboard/`), a little vendored
//! JavaScript (htmx 2.0.4 for live status and the playground, `dashboard.js` for copy buttons and
//! confirmations), no build step and nothing loaded from elsewhere.
//!
//! **Architecture invariant:** the dashboard reads and writes only through [`crate::Service`]
//! (and the managed router, in-process), as the signed-in customer: it sees exactly what the API
//! shows that customer's key, never the store around the tenant checks.
//!
//! - `session.rs`: server-side sessions (cookie, CSRF token, deadline); the key stays here.
//! - `common.rs`: state, the [`common::Signed`] and [`common::Posted`] extractors, error pages.
//! - `databases.rs`, `playground.rs`, `connections.rs`, `account.rs`, `servers.rs` (managed
//!   servers, through the managed router in-process), `charts.rs`: the pages.
//!
//! See `docs/dashboard.md`.

mod account;
mod charts;
mod common;
mod connections;
mod databases;
mod playground;
mod servers;
mod session;
#[cfg(test)]
mod tests;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::Service;
use common::{error_page, DashState, MAX_FORM_BYTES};

const HTMX: &str = include_str!("../../assets/htmx-2.0.4.min.js");
const HTMX_LICENSE: &str = include_str!("../../assets/htmx-LICENSE");
const SCRIPT: &str = include_str!("../../assets/dashboard.js");
const STYLE: &str = include_str!("../../assets/dashboard.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The dashboard's routes (`/`, `/ui/…`), with their own state, body limit and error pages.
/// `managed` is the managed `/api/v1` router when managed servers are served.
pub fn router(service: Service, managed: Option<Router>) -> Router {
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .no_proxy()
        .build()
        .unwrap_or_default();
    // Several replicas on one store: sessions are shared through its secret store.
    let sessions = match &service.postgres {
        Some(_) => session::Sessions::shared(service.secrets.clone()),
        None => Default::default(),
    };
    let state = DashState {
        service,
        sessions,
        managed,
        http,
        samples: Default::default(),
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(databases::list))
        .route(
            "/ui/sign-in",
            get(account::sign_in_page).post(account::sign_in),
        )
        .route("/ui/sign-in/link/{token}", get(account::link_page))
        .route("/ui/sign-out", post(account::sign_out))
        .route("/ui/databases/{id}", get(databases::detail))
        .route("/ui/databases/{id}/status", get(databases::status))
        .route("/ui/databases/{id}/actions/{action}", post(databases::act))
        .route("/ui/databases/{id}/settings", post(databases::settings))
        .route("/ui/databases/{id}/runtime", post(databases::runtime))
        .route(
            "/ui/databases/{id}/builds/{build}",
            get(databases::build_log),
        )
        .route(
            "/ui/databases/{id}/query",
            get(playground::show).post(playground::run),
        )
        .route("/ui/databases/{id}/keys", post(account::create_query_key))
        .route(
            "/ui/databases/{id}/keys/{key}/revoke",
            post(account::revoke_query_key),
        )
        .route("/ui/keys", get(account::keys).post(account::create_key))
        .route("/ui/keys/{id}/revoke", post(account::revoke_key))
        .route(
            "/ui/connections",
            get(connections::list).post(connections::create),
        )
        .route("/ui/connections/test", post(connections::test))
        .route(
            "/ui/connections/{id}",
            get(connections::show).post(connections::update),
        )
        .route("/ui/connections/{id}/test", post(connections::test_stored))
        .route("/ui/connections/{id}/delete", post(connections::delete))
        .route(
            "/ui/connections/{id}/databases",
            post(connections::add_database),
        )
        .route("/ui/servers", get(servers::list).post(servers::create))
        .route("/ui/servers/{id}", get(servers::show))
        .route("/ui/servers/{id}/status", get(servers::status))
        .route("/ui/servers/{id}/credentials", post(servers::credentials))
        .route("/ui/servers/{id}/actions/{action}", post(servers::action))
        .route("/ui/servers/{id}/delete", post(servers::delete))
        .route("/ui/servers/{id}/connection", post(servers::serve))
        .route(
            "/ui/assets/htmx-2.0.4.min.js",
            get(|| async { asset("text/javascript; charset=utf-8", HTMX) }),
        )
        .route(
            "/ui/assets/htmx-LICENSE.txt",
            get(|| async { asset("text/plain; charset=utf-8", HTMX_LICENSE) }),
        )
        .route(
            "/ui/assets/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/assets/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/ui/{*rest}", get(not_found).post(not_found))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn(common::layer))
        .with_state(state)
}

/// A one-time sign-in link for `key` (15 minutes, one use): the path to append to the
/// control plane's URL. `refract quickstart` prints it.
pub fn sign_in_link(key: &str) -> String {
    session::create_link(key)
}

/// Whether `path` is one of the dashboard's (`/`, `/ui…`).
pub fn is_page(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// The 405 page (the main router's method fallback answers it for the dashboard's paths).
pub fn method_not_allowed() -> Response {
    let mut resp = error_page(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "this page does not take that kind of request",
    );
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    resp
}

async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "there is no such page in this dashboard",
    )
}
