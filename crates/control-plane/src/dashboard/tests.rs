//! `oneshot` tests of the dashboard's sessions, CSRF, tenancy and error pages (the browser
//! scenarios are `crates/refract/tests/it/dashboard.rs`).

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::api::{
    CreateConnectionRequest, CreateConnectionResponse, CreateCustomerRequest,
    CreateCustomerResponse, CreateInstanceRequest, Plan,
};
use crate::{open, router, AppState};

struct H {
    _dir: tempfile::TempDir,
    app: axum::Router,
    admin: String,
}

async fn harness() -> H {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::tests::test_config(dir.path());
    let service = open(&config).await.unwrap();
    let admin = std::fs::read_to_string(config.data_dir.join("admin-key"))
        .unwrap()
        .trim()
        .to_string();
    H {
        app: router(AppState { service }),
        admin,
        _dir: dir,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl H {
    async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut req = Request::get(path);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, form: &str) -> Answer {
        let mut req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::HOST, "127.0.0.1:7700");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::from(form.to_string())).unwrap())
            .await
    }

    /// Signs in with `key`: the cookie and the CSRF token of the session.
    async fn sign_in(&self, key: &str) -> (String, String) {
        let form = serde_urlencoded::to_string([("key", key)]).unwrap();
        let a = self.post("/ui/sign-in", None, &form).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        let cookie = a.headers[header::SET_COOKIE].to_str().unwrap().to_string();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(!cookie.contains(key));
        let cookie = cookie.split(';').next().unwrap().to_string();
        let page = self.get("/ui/keys", Some(&cookie)).await;
        let csrf = page
            .body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        (cookie, csrf)
    }

    /// A `/v1` call with a wire request body, its answer read as its wire type.
    async fn api<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: &B,
    ) -> T {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_string(body).unwrap()))
            .unwrap();
        let a = self.send(req).await;
        serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {}", a.body))
    }
}

fn is_html(a: &Answer) -> bool {
    a.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html")
}

#[tokio::test]
async fn sign_in_session_and_sign_out() {
    let h = harness().await;
    let a = h.get("/", None).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers[header::LOCATION], "/ui/");
    let a = h.get("/ui/", None).await;
    assert_eq!(a.headers[header::LOCATION], "/ui/sign-in");
    let a = h.post("/ui/sign-in", None, "key=rmk_bad.key").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(is_html(&a) && a.body.contains("not a valid management key"));

    let (cookie, csrf) = h.sign_in(&h.admin).await;
    let a = h.get("/ui/", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
    assert!(!a.body.contains(&h.admin));

    // Sign-out needs the token too; then the cookie is worthless.
    let a = h.post("/ui/sign-out", Some(&cookie), "").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = h
        .post("/ui/sign-out", Some(&cookie), &format!("csrf={csrf}"))
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(a.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let a = h.get("/ui/", Some(&cookie)).await;
    assert_eq!(a.headers[header::LOCATION], "/ui/sign-in");
}

#[tokio::test]
async fn state_changes_need_the_csrf_token_and_the_same_origin() {
    let h = harness().await;
    let (cookie, csrf) = h.sign_in(&h.admin).await;
    let a = h.post("/ui/keys", Some(&cookie), "name=k").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(is_html(&a));
    let a = h.post("/ui/keys", Some(&cookie), "name=k&csrf=00").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let req = Request::post("/ui/keys")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, "127.0.0.1:7700")
        .header(header::ORIGIN, "http://evil.example")
        .header(header::COOKIE, &cookie)
        .body(Body::from(format!("name=k&csrf={csrf}")))
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::FORBIDDEN);
    let a = h
        .post("/ui/keys", Some(&cookie), &format!("name=k&csrf={csrf}"))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("rmk_") && a.body.contains("shown only this once"));
    // Too big a form: a 413 page.
    let big = format!("name={}&csrf={csrf}", "x".repeat(200 * 1024));
    let a = h.post("/ui/keys", Some(&cookie), &big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(is_html(&a));
}

#[tokio::test]
async fn foreign_and_unknown_ids_are_404_pages_and_the_api_is_unchanged() {
    let h = harness().await;
    let c: CreateCustomerResponse = h
        .api(
            "POST",
            "/v1/admin/customers",
            &h.admin,
            &CreateCustomerRequest {
                name: "other".into(),
                plan: Some(Plan::Free),
            },
        )
        .await;
    let other = c.management_key.key.unwrap();
    let v: CreateConnectionResponse = h
        .api(
            "POST",
            "/v1/connections",
            &other,
            &CreateConnectionRequest {
                backend: None,
                name: "c".into(),
                host: "127.0.0.1".into(),
                port: Some(1),
                available_schemas: Some(vec!["s".into()]),
                user: Some("u".into()),
                password: Some("p".into()),
                ssl_mode: None,
                ssl_root_cert: None,
                sync_mode: None,
                sync_interval: None,
                instance: Some(CreateInstanceRequest {
                    name: "d".into(),
                    schema: "s".into(),
                    instance_size: None,
                    log_level: None,
                    binlog_server_id: None,
                    replicas: None,
                }),
            },
        )
        .await;
    let theirs = v.database.unwrap().id.to_string();
    let conn = v.connection.id.to_string();
    let (cookie, _) = h.sign_in(&h.admin).await;
    for path in [
        format!("/ui/databases/{theirs}"),
        format!("/ui/databases/{theirs}/query"),
        format!("/ui/connections/{conn}"),
        "/ui/databases/nope".to_string(),
        "/ui/no-such-page".to_string(),
    ] {
        let a = h.get(&path, Some(&cookie)).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert!(is_html(&a) && a.body.contains("Not found"), "{path}");
        assert!(!a.body.contains("\"d\""));
    }
    // Their own session sees it.
    let (theirs_cookie, _) = h.sign_in(&other).await;
    let a = h
        .get(&format!("/ui/databases/{theirs}"), Some(&theirs_cookie))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    // The API still answers JSON errors.
    let a = h.get("/v1/connections", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("\"error\":\"unauthorized\""));
    let req = Request::put("/ui/").body(Body::empty()).unwrap();
    let a = h.send(req).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(is_html(&a));
    let req = Request::put("/v1/connections").body(Body::empty()).unwrap();
    let a = h.send(req).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(a.body.contains("\"error\":\"method_not_allowed\""));
    let a = h.get("/no-such-route", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body.contains("\"error\":\"not_found\""));
}

#[tokio::test]
async fn a_sign_in_link_works_once() {
    let h = harness().await;
    let path = crate::sign_in_link(&h.admin);
    let a = h.get(&path, None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(!a.body.contains(&h.admin));
    let token = path.rsplit('/').next().unwrap();
    let a = h.post("/ui/sign-in", None, &format!("link={token}")).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(a.headers.contains_key(header::SET_COOKIE));
    let a = h.post("/ui/sign-in", None, &format!("link={token}")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}
