//! What every dashboard handler shares: the state ([`DashState`]), the signed-in caller
//! ([`Signed`]), CSRF-checked form bodies ([`Posted`]), HTML error pages ([`PageError`]) and the
//! layer that adds security headers and turns internal errors into a page with the request id.

use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::session::{self, Sessions};
use crate::error::ApiError;
use crate::service::{Principal, Service};

/// A form body is at most this big (the biggest form, a connection with a CA certificate, is
/// well under it); the API's own 2 MB limit stays in force for `/v1`.
pub const MAX_FORM_BYTES: usize = 96 * 1024;

/// A form's choice (a `<select>`, or a word typed in a field) read as its `/v1` wire enum; a
/// value the enum lacks is the API's own 400 for it, naming the field (`sslMode: unknown variant
/// …`), so a form is refused exactly as the same request body would be.
pub fn wire_choice<T: DeserializeOwned>(field: &str, value: &str) -> Result<T, PageError> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|e| PageError::from(ApiError::invalid(format!("{field}: {e}"))))
}

/// [`wire_choice`] of an optional form field: empty (after trimming) is not given.
pub fn wire_choice_opt<T: DeserializeOwned>(
    field: &str,
    value: &str,
) -> Result<Option<T>, PageError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    wire_choice(field, value).map(Some)
}

/// State of the dashboard's handlers.
#[derive(Clone)]
pub struct DashState {
    /// The control plane's logic (every read and write goes through it and its tenant checks).
    pub service: Service,
    /// Live sessions.
    pub sessions: Sessions,
    /// The managed `/api/v1` router, called in-process with the session's key (its own auth
    /// and tenant checks apply), when managed servers are served.
    pub managed: Option<axum::Router>,
    /// Client of engines (the playground's queries, chart samples).
    pub http: reqwest::Client,
    /// Chart samples of the databases watched.
    pub samples: super::charts::Samples,
}

/// Navigation and CSRF data every full page renders.
pub struct Nav {
    /// CSRF token of the session (empty when signed out).
    pub csrf: String,
    /// The customer's name (empty when signed out).
    pub who: String,
    /// The active section (`databases`, `connections`, `keys`, `servers`).
    pub active: &'static str,
}

impl Nav {
    /// Navigation of a signed-out page.
    pub fn signed_out() -> Self {
        Nav {
            csrf: String::new(),
            who: String::new(),
            active: "",
        }
    }
}

/// The signed-in caller of a dashboard request.
pub struct Signed {
    /// As the API sees it.
    pub principal: Principal,
    /// Session id (cookie value).
    pub id: String,
    /// The session (its CSRF token, playground keys).
    pub session: session::Session,
}

impl Signed {
    /// Navigation data for section `active`.
    pub fn nav(&self, active: &'static str) -> Nav {
        Nav {
            csrf: self.session.csrf.clone(),
            who: self.principal.customer.name.clone(),
            active,
        }
    }
}

impl FromRequestParts<DashState> for Signed {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &DashState) -> Result<Self, PageError> {
        let id = session::cookie_id(&parts.headers).ok_or(PageError::SignIn)?;
        let session = state.sessions.get(&id).ok_or(PageError::SignIn)?;
        // The key is checked on every request: revoked or expired, the session ends now.
        let principal = match state.service.authenticate(&session.key).await {
            Ok(p) => p,
            Err(ApiError::Unauthorized(_)) => {
                state.sessions.remove(&id);
                return Err(PageError::SignIn);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Signed {
            principal,
            id,
            session,
        })
    }
}

/// A state-changing request of a signed-in caller: same origin, the session's CSRF token, and a
/// form body of at most [`MAX_FORM_BYTES`] parsed into `T`.
pub struct Posted<T> {
    /// The caller.
    pub me: Signed,
    /// The form.
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<DashState> for Posted<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &DashState) -> Result<Self, PageError> {
        let (mut parts, body) = req.into_parts();
        let me = Signed::from_request_parts(&mut parts, state).await?;
        if !session::same_origin(&parts.headers) {
            return Err(PageError::Forbidden(
                "this request did not come from a page of this dashboard".into(),
            ));
        }
        let req = Request::from_parts(parts, body);
        let header_token = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_form(req, state).await?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| PageError::Bad(format!("malformed form: {e}")))?;
        let sent = header_token.or_else(|| {
            fields
                .iter()
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v.clone())
        });
        let ok = sent.is_some_and(|t| {
            crate::keys::constant_time_eq(&crate::keys::sha256_hex(&t), &{
                crate::keys::sha256_hex(&me.session.csrf)
            })
        });
        if !ok {
            return Err(PageError::Forbidden(
                "the form's security token is missing or stale: reload the page and try again"
                    .into(),
            ));
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| PageError::Bad(format!("malformed form: {e}")))?;
        Ok(Posted { me, form })
    }
}

/// The body of a form, bounded by the router's `DefaultBodyLimit` of [`MAX_FORM_BYTES`].
pub async fn read_form(req: Request, state: &DashState) -> Result<Bytes, PageError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            PageError::TooLarge
        } else {
            PageError::Bad(format!("cannot read the form: {}", e.body_text()))
        }
    })
}

/// Every failure of a dashboard request, answered as an HTML page (never the API's JSON).
#[derive(Debug)]
pub enum PageError {
    /// No or no longer a session: to the sign-in page.
    SignIn,
    /// 404 page.
    NotFound(String),
    /// 403 page.
    Forbidden(String),
    /// 400 page.
    Bad(String),
    /// 413 page.
    TooLarge,
    /// An API error, with its status and message.
    Api(ApiError),
    /// Another status with its message (the managed API's answers).
    Status(StatusCode, String),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unauthorized(_) => PageError::SignIn,
            other => PageError::Api(other),
        }
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        PageError::Api(ApiError::Internal(anyhow::anyhow!("render a page: {e}")))
    }
}

/// The cause of a 500 of a page; the dashboard layer logs it with the request id.
#[derive(Clone, Debug)]
pub struct PageInternal(pub String);

#[derive(Template)]
#[template(path = "dashboard/error.html")]
struct ErrorPage {
    nav: Nav,
    status: u16,
    title: String,
    message: String,
}

/// The heading of an error page.
fn title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "Invalid request",
        401 => "Signed out",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method not allowed",
        409 => "Not possible now",
        413 => "Too large",
        _ if status.is_server_error() => "Internal error",
        _ => "Error",
    }
}

/// An error page with `status`.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let page = ErrorPage {
        nav: Nav::signed_out(),
        status: status.as_u16(),
        title: title.to_string(),
        message: message.to_string(),
    };
    let html = page
        .render()
        .unwrap_or_else(|_| format!("<!doctype html><title>{}</title>", status.as_u16()));
    (status, Html(html)).into_response()
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn => Redirect::to("/ui/sign-in").into_response(),
            PageError::NotFound(m) => error_page(StatusCode::NOT_FOUND, "Not found", &m),
            PageError::Forbidden(m) => error_page(StatusCode::FORBIDDEN, "Forbidden", &m),
            PageError::Bad(m) => error_page(StatusCode::BAD_REQUEST, "Invalid request", &m),
            PageError::TooLarge => error_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "the form is over the size limit",
            ),
            PageError::Api(ApiError::Internal(e)) => {
                let mut resp = error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    "something went wrong on the server",
                );
                resp.extensions_mut().insert(PageInternal(format!("{e:#}")));
                resp
            }
            PageError::Status(status, m) => error_page(status, title(status), &m),
            PageError::Api(e) => {
                let (status, _) = e.status_and_code();
                error_page(status, title(status), &e.to_string())
            }
        }
    }
}

/// Renders a template as a 200 page.
pub fn page<T: Template>(t: &T) -> Result<Response, PageError> {
    Ok(Html(t.render()?).into_response())
}

/// Security headers on every dashboard answer; a sign-in redirect of an htmx request becomes
/// `HX-Redirect` (htmx would otherwise swap the sign-in page into a fragment); a 500's cause is
/// logged here with the request id, which the page then shows.
pub async fn layer(req: Request, next: Next) -> Response {
    let rid = crate::extract::request_id(&req);
    let htmx = req.headers().contains_key("hx-request");
    let mut resp = next.run(req).await;
    if let Some(PageInternal(cause)) = resp.extensions_mut().remove::<PageInternal>() {
        tracing::error!(request_id = %rid, cause = %cause, "internal error (dashboard)");
        resp = error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            &format!("something went wrong on the server (request id {rid})"),
        );
    }
    // Errors answered by axum itself (405, a rejected path) get a page too.
    let status = resp.status();
    let html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if (status.is_client_error() || status.is_server_error()) && !html {
        let t = title(status);
        resp = error_page(status, t, &t.to_lowercase());
    }
    if htmx && resp.status() == StatusCode::SEE_OTHER {
        if let Some(loc) = resp.headers().get(header::LOCATION).cloned() {
            resp = (StatusCode::OK, [("hx-redirect", loc)]).into_response();
        }
    }
    let h = resp.headers_mut();
    set_security_headers(h);
    resp
}

fn set_security_headers(h: &mut HeaderMap) {
    let pairs: [(&str, &str); 6] = [
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
        ("cross-origin-opener-policy", "same-origin"),
    ];
    for (k, v) in pairs {
        if k == "cache-control" && h.contains_key(header::CACHE_CONTROL) {
            continue;
        }
        h.insert(k, HeaderValue::from_static(v));
    }
}
