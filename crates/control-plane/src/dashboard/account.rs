//! Sign-in and sign-out, management keys and query keys (secrets shown once, with copy).

use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::common::{page, read_form, DashState, Nav, PageError, Posted, Signed};
use super::databases::path_id;
use super::session::{self, Session};
use crate::error::ApiError;

#[derive(Template)]
#[template(path = "dashboard/sign_in.html")]
struct SignInPage {
    nav: Nav,
    error: String,
}

/// `GET /ui/sign-in`.
pub async fn sign_in_page(State(s): State<DashState>, headers: HeaderMap) -> Response {
    if let Some(id) = session::cookie_id(&headers) {
        if s.sessions.get(&id).is_some() {
            return Redirect::to("/ui/").into_response();
        }
    }
    page(&SignInPage {
        nav: Nav::signed_out(),
        error: String::new(),
    })
    .into_response()
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    key: String,
    /// A one-time sign-in link's token instead of a key.
    #[serde(default)]
    link: String,
}

#[derive(Template)]
#[template(path = "dashboard/sign_in_link.html")]
struct LinkPage {
    nav: Nav,
    token: String,
}

/// `GET /ui/sign-in/link/{token}`: a page with one button that uses the link (a `GET` never
/// signs in, so a link previewer cannot use it up).
pub async fn link_page(Path(token): Path<String>) -> Result<Response, PageError> {
    if !session::link_exists(&token) {
        return Err(PageError::NotFound(
            "this sign-in link was used already or has expired: sign in with your key".into(),
        ));
    }
    page(&LinkPage {
        nav: Nav::signed_out(),
        token,
    })
}

/// `POST /ui/sign-in`: the management key becomes a server-side session.
pub async fn sign_in(State(s): State<DashState>, req: Request) -> Result<Response, PageError> {
    if !session::same_origin(req.headers()) {
        return Err(PageError::Forbidden(
            "sign-in must come from this dashboard's own page".into(),
        ));
    }
    let secure = session::over_tls(req.headers(), req.uri());
    let bytes = read_form(req, &s).await?;
    let form: SignInForm = serde_urlencoded::from_bytes(&bytes)
        .map_err(|_| PageError::Bad("the sign-in form needs a key".into()))?;
    let key = if form.link.is_empty() {
        form.key.trim().to_string()
    } else {
        session::take_link(&form.link).ok_or_else(|| {
            PageError::NotFound(
                "this sign-in link was used already or has expired: sign in with your key".into(),
            )
        })?
    };
    match s.service.authenticate(&key).await {
        Ok(_) => {}
        Err(ApiError::Unauthorized(_)) => {
            let html = SignInPage {
                nav: Nav::signed_out(),
                error: "That key is not a valid management key (it may be revoked or expired)."
                    .into(),
            }
            .render()?;
            return Ok((StatusCode::UNAUTHORIZED, Html(html)).into_response());
        }
        Err(e) => return Err(e.into()),
    }
    let (id, expired) = s
        .sessions
        .create(key)
        .map_err(|e| PageError::from(ApiError::Unavailable(format!("{e:#}"))))?;
    revoke_session_keys(&s, expired.into_iter().map(|(s, _)| s).collect());
    let mut resp = Redirect::to("/ui/").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session::set_cookie(&id, secure));
    Ok(resp)
}

/// Revokes the playground query keys of ended sessions (in the background, best effort: they
/// expire with their session anyway).
fn revoke_session_keys(s: &DashState, ended: Vec<Session>) {
    for sess in ended {
        if sess.query_keys.is_empty() {
            continue;
        }
        let service = s.service.clone();
        tokio::spawn(async move {
            let Ok(p) = service.authenticate(&sess.key).await else {
                return;
            };
            for k in sess.query_keys {
                if let Err(e) = service
                    .revoke_query_key(&p, k.database, &k.record.to_string())
                    .await
                {
                    tracing::warn!(error = %e, "could not revoke a dashboard session's query key");
                }
            }
        });
    }
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize)]
pub struct Empty {}

/// `POST /ui/sign-out`: ends the session and revokes its playground query keys.
pub async fn sign_out(
    State(s): State<DashState>,
    headers: HeaderMap,
    uri: Uri,
    Posted { me, .. }: Posted<Empty>,
) -> Result<Response, PageError> {
    if let Some(sess) = s.sessions.remove(&me.id) {
        for k in &sess.query_keys {
            // Revoked before the answer, so the key is dead when the user sees the sign-in page.
            let _ = s
                .service
                .revoke_query_key(&me.principal, k.database, &k.record.to_string())
                .await;
        }
    }
    let mut resp = Redirect::to("/ui/sign-in").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session::clear_cookie(session::over_tls(&headers, &uri)),
    );
    Ok(resp)
}

struct MgmtKeyRow {
    id: String,
    name: String,
    key_id: String,
    created: String,
    last_used: String,
    expires: String,
    revoked: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "dashboard/keys.html")]
struct KeysPage {
    nav: Nav,
    keys: Vec<MgmtKeyRow>,
}

fn fmt(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// `GET /ui/keys`: management keys.
pub async fn keys(State(s): State<DashState>, me: Signed) -> Result<Response, PageError> {
    let keys = s.service.list_management_keys(&me.principal).await?;
    page(&KeysPage {
        nav: me.nav("keys"),
        keys: keys
            .iter()
            .map(|k| MgmtKeyRow {
                id: k.id.to_string(),
                name: k.name.clone(),
                key_id: k.key_id.clone(),
                created: fmt(Some(k.created_at)),
                last_used: fmt(k.last_used_at),
                expires: fmt(k.expires_at),
                revoked: fmt(k.revoked_at),
                current: k.id == me.principal.key_record_id,
            })
            .collect(),
    })
}

#[derive(Template)]
#[template(path = "dashboard/secret.html")]
struct SecretPage {
    nav: Nav,
    what: String,
    name: String,
    secret: String,
    back: String,
}

fn secret_page(nav: Nav, what: &str, name: &str, secret: String, back: String) -> Response {
    match (SecretPage {
        nav,
        what: what.into(),
        name: name.into(),
        secret,
        back,
    })
    .render()
    {
        Ok(html) => Html(html).into_response(),
        Err(e) => PageError::from(e).into_response(),
    }
}

/// The create-key form (management and query keys).
#[derive(Deserialize)]
pub struct KeyForm {
    name: String,
    /// Days until expiry; empty = never.
    #[serde(default)]
    expires_days: String,
}

/// The expiry the form asks for (whole seconds, as the API writes times), or none.
fn key_expiry(form: &KeyForm) -> Result<Option<chrono::DateTime<chrono::Utc>>, PageError> {
    let days = form.expires_days.trim();
    if days.is_empty() {
        return Ok(None);
    }
    let n: i64 = days
        .parse()
        .ok()
        .filter(|n| (1..=3650).contains(n))
        .ok_or_else(|| PageError::Bad("expiry must be a number of days, 1 to 3650".into()))?;
    let at = chrono::Utc::now() + chrono::TimeDelta::days(n);
    Ok(chrono::DateTime::from_timestamp(at.timestamp(), 0))
}

/// `POST /ui/keys`: creates a management key; its secret is on this answer only.
pub async fn create_key(
    State(s): State<DashState>,
    Posted { me, form }: Posted<KeyForm>,
) -> Result<Response, PageError> {
    let req = crate::api::CreateManagementKeyRequest {
        expires_at: key_expiry(&form)?,
        name: form.name,
    };
    let k = s.service.create_management_key(&me.principal, req).await?;
    Ok(secret_page(
        me.nav("keys"),
        "management key",
        &k.name,
        k.key.clone().unwrap_or_default(),
        "/ui/keys".into(),
    ))
}

/// `POST /ui/keys/{id}/revoke`.
pub async fn revoke_key(
    State(s): State<DashState>,
    Path(id): Path<String>,
    Posted { me, .. }: Posted<Empty>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "management key")?;
    s.service.revoke_management_key(&me.principal, id).await?;
    Ok(Redirect::to("/ui/keys").into_response())
}

/// `POST /ui/databases/{id}/keys`: creates a query key; its secret is on this answer only.
pub async fn create_query_key(
    State(s): State<DashState>,
    Path(id): Path<String>,
    Posted { me, form }: Posted<KeyForm>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "database")?;
    let req = crate::api::CreateQueryKeyRequest {
        expires_at: key_expiry(&form)?,
        name: form.name,
    };
    let k = s.service.create_query_key(&me.principal, id, req).await?;
    Ok(secret_page(
        me.nav("databases"),
        "query key",
        &k.name,
        k.key.unwrap_or_default(),
        format!("/ui/databases/{id}"),
    ))
}

/// `POST /ui/databases/{id}/keys/{key}/revoke`.
pub async fn revoke_query_key(
    State(s): State<DashState>,
    Path((id, key)): Path<(String, String)>,
    Posted { me, .. }: Posted<Empty>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "database")?;
    let key = path_id(&key, "query key")?;
    s.service
        .revoke_query_key(&me.principal, id, &key.to_string())
        .await?;
    Ok(Redirect::to(&format!("/ui/databases/{id}")).into_response())
}
