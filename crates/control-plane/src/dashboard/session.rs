//! Dashboard sessions: a random id in an `HttpOnly; SameSite=Strict` cookie, everything else on
//! the server. The management key a user signed in with stays in this process's memory (it is
//! checked again on every request, so a revoked or expired key ends the session at once); the
//! browser never holds it. Each session has a CSRF token that every state-changing request must
//! carry (form field `csrf` or header `X-CSRF-Token`), and a deadline.
//!
//! With several control-plane replicas on one PostgreSQL store, a session must work on every
//! replica (a load balancer need not be sticky) and a sign-out must end it on all of them: each
//! session is then also a row of the secret store (sealed like every secret, named by the hash of
//! its id), read on every request instead of this process's map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};
use rand::RngCore;
use uuid::Uuid;

use crate::secrets::SecretStore;

/// Name of the session cookie.
pub const COOKIE: &str = "refract_session";

/// A session lasts this long from sign-in, whatever happens.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// At most this many sessions at once: memory stays bounded (a sign-in past it is refused).
const MAX_SESSIONS: usize = 10_000;

/// At most this many sessions of one management key (its oldest goes first).
const SESSIONS_PER_KEY: usize = 20;

/// A query key the session created for its playground (revoked at sign-out).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct SessionQueryKey {
    /// The database.
    pub database: Uuid,
    /// Record id (for the revocation).
    pub record: Uuid,
    /// The full `rxk_…` token (server memory only).
    pub token: String,
}

/// One signed-in browser.
#[derive(Clone)]
pub struct Session {
    /// The management key (server memory only).
    pub key: String,
    /// The CSRF token rendered into its pages.
    pub csrf: String,
    /// When it ends.
    pub expires: Instant,
    /// Wall-clock end, for query keys' `expiresAt`.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Playground query keys by database.
    pub query_keys: Vec<SessionQueryKey>,
}

impl Session {
    /// A fresh session of `key`, ending [`LIFETIME`] from now.
    fn new(key: String) -> Session {
        Session {
            key,
            csrf: random_token(),
            expires: Instant::now() + LIFETIME,
            expires_at: chrono::Utc::now()
                + chrono::TimeDelta::from_std(LIFETIME).unwrap_or_default(),
            query_keys: Vec::new(),
        }
    }
}

/// Every live session of one dashboard router.
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
    /// Several replicas: sessions live in the shared secret store (see the module doc).
    shared: Option<Arc<SecretStore>>,
}

/// What the secret store keeps of a session.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    key: String,
    csrf: String,
    expires_at: chrono::DateTime<chrono::Utc>,
    query_keys: Vec<SessionQueryKey>,
}

impl Stored {
    fn of(s: &Session) -> Stored {
        Stored {
            key: s.key.clone(),
            csrf: s.csrf.clone(),
            expires_at: s.expires_at,
            query_keys: s.query_keys.clone(),
        }
    }

    fn session(self) -> Session {
        let left = (self.expires_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        Session {
            key: self.key,
            csrf: self.csrf,
            expires: Instant::now() + left,
            expires_at: self.expires_at,
            query_keys: self.query_keys,
        }
    }
}

/// The secret-store name of session `id` (its hash: the table never holds a usable cookie).
fn shared_name(id: &str) -> String {
    format!("{SHARED_PREFIX}{}", crate::keys::sha256_hex(id))
}

/// Prefix of the sessions' names in the secret store.
const SHARED_PREFIX: &str = "dashboard/session/";

/// 32 random bytes as 64 hex digits.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl Sessions {
    /// Sessions shared by every replica through `secrets` (the PostgreSQL store's).
    pub fn shared(secrets: Arc<SecretStore>) -> Self {
        Sessions {
            inner: Default::default(),
            shared: Some(secrets),
        }
    }

    fn load(&self, secrets: &SecretStore, id: &str) -> Option<Session> {
        let text = secrets.get(&shared_name(id))?;
        let stored: Stored = serde_json::from_str(&text).ok()?;
        Some(stored.session())
    }

    fn save(&self, secrets: &SecretStore, id: &str, s: &Session) -> anyhow::Result<()> {
        let text = serde_json::to_string(&Stored::of(s))?;
        secrets.put(&shared_name(id), &text)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for `key`; returns its id. Expired sessions are dropped on the way
    /// (their query keys are returned, to be revoked by the caller).
    pub fn create(&self, key: String) -> anyhow::Result<(String, Vec<(Session, String)>)> {
        let id = random_token();
        if let Some(secrets) = &self.shared {
            let session = Session::new(key);
            self.save(secrets, &id, &session)?;
            // Sessions nobody signed out of: gone once they cannot be live any more.
            if let Err(e) = secrets.purge_older(SHARED_PREFIX, LIFETIME) {
                tracing::warn!(error = %format!("{e:#}"), "could not purge old dashboard sessions");
            }
            return Ok((id, Vec::new()));
        }
        let now = Instant::now();
        let mut map = self.lock();
        let expired: Vec<String> = map
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut gone: Vec<(Session, String)> = expired
            .into_iter()
            .filter_map(|k| map.remove(&k).map(|s| (s, k)))
            .collect();
        // One key's sessions make room for each other, never another user's: signing in over
        // and over evicts only that key's oldest session.
        let of_key: Vec<(String, Instant)> = map
            .iter()
            .filter(|(_, s)| s.key == key)
            .map(|(k, s)| (k.clone(), s.expires))
            .collect();
        if of_key.len() >= SESSIONS_PER_KEY {
            if let Some((oldest, _)) = of_key.into_iter().min_by_key(|(_, e)| *e) {
                if let Some(s) = map.remove(&oldest) {
                    gone.push((s, oldest));
                }
            }
        }
        if map.len() >= MAX_SESSIONS {
            anyhow::bail!("too many dashboard sessions at once: try again later");
        }
        map.insert(id.clone(), Session::new(key));
        Ok((id, gone))
    }

    /// The live session of `id`.
    pub fn get(&self, id: &str) -> Option<Session> {
        if let Some(secrets) = &self.shared {
            let s = self.load(secrets, id)?;
            if s.expires > Instant::now() {
                return Some(s);
            }
            let _ = secrets.delete(&shared_name(id));
            return None;
        }
        let mut map = self.lock();
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session; returns it (for its query keys).
    pub fn remove(&self, id: &str) -> Option<Session> {
        if let Some(secrets) = &self.shared {
            let s = self.load(secrets, id);
            if let Err(e) = secrets.delete(&shared_name(id)) {
                tracing::warn!(error = %format!("{e:#}"), "could not end a dashboard session");
            }
            return s;
        }
        self.lock().remove(id)
    }

    /// Remembers a playground query key of session `id`.
    pub fn add_query_key(&self, id: &str, key: SessionQueryKey) {
        if let Some(secrets) = &self.shared {
            if let Some(mut s) = self.load(secrets, id) {
                s.query_keys.push(key);
                if let Err(e) = self.save(secrets, id, &s) {
                    tracing::warn!(error = %format!("{e:#}"), "could not record a session's query key");
                }
            }
            return;
        }
        if let Some(s) = self.lock().get_mut(id) {
            s.query_keys.push(key);
        }
    }
}

/// A one-time sign-in link lasts this long.
pub const LINK_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// One-time sign-in links (`refract quickstart` prints one): token → (management key, deadline).
/// Process-wide, as the quickstart creates the link beside the router; the key is still
/// checked by `authenticate` when the link is used, and the link works once.
fn links() -> &'static Mutex<HashMap<String, (String, Instant)>> {
    static LINKS: std::sync::OnceLock<Mutex<HashMap<String, (String, Instant)>>> =
        std::sync::OnceLock::new();
    LINKS.get_or_init(Default::default)
}

/// Registers a one-time sign-in link for `key`; returns its path (`/ui/sign-in/link/<token>`).
pub fn create_link(key: &str) -> String {
    let token = random_token();
    let mut map = links().lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    map.retain(|_, (_, until)| *until > now);
    map.insert(token.clone(), (key.to_string(), now + LINK_LIFETIME));
    format!("/ui/sign-in/link/{token}")
}

/// Whether `token` is a live link (without using it).
pub fn link_exists(token: &str) -> bool {
    let map = links().lock().unwrap_or_else(|p| p.into_inner());
    map.get(token)
        .is_some_and(|(_, until)| *until > Instant::now())
}

/// Uses a link: its key, once.
pub fn take_link(token: &str) -> Option<String> {
    let mut map = links().lock().unwrap_or_else(|p| p.into_inner());
    match map.remove(token) {
        Some((key, until)) if until > Instant::now() => Some(key),
        _ => None,
    }
}

/// The session id from the request's cookies.
pub fn cookie_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the request reached us over TLS (directly or, as `refract serve` speaks plain HTTP,
/// through a TLS-terminating proxy that says so in `X-Forwarded-Proto`).
pub fn over_tls(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    uri.scheme_str() == Some("https")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// `Set-Cookie` of a new session.
pub fn set_cookie(id: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        LIFETIME.as_secs()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    let v = if secure {
        "refract_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure"
    } else {
        "refract_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
    };
    HeaderValue::from_static(v)
}

/// A state-changing request must come from our own pages: a browser that sends `Origin` (or
/// `Sec-Fetch-Site`) must name this host. Checked beside the CSRF token, and alone on sign-in
/// (no session yet).
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    // The host the browser used: `Host`, or what a reverse proxy says it was.
    [header::HOST.as_str(), "x-forwarded-host"]
        .iter()
        .filter_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .any(|host| !host.is_empty() && origin_host == host.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_id_reads_only_a_well_formed_session_cookie() {
        let id = random_token();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE}={id}")).unwrap(),
        );
        assert_eq!(cookie_id(&h), Some(id));
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE}=../x")).unwrap(),
        );
        assert_eq!(cookie_id(&h), None);
    }

    #[test]
    fn cookie_is_httponly_strict_and_secure_over_tls() {
        let c = set_cookie("ab", true);
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie("ab", false).to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn cross_origin_posts_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7700"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7700"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn sign_in_links_work_once() {
        let path = create_link("rmk_a.b");
        let token = path.rsplit('/').next().unwrap();
        assert!(link_exists(token));
        assert_eq!(take_link(token).as_deref(), Some("rmk_a.b"));
        assert!(take_link(token).is_none());
        assert!(!link_exists(token));
    }

    #[test]
    fn sessions_expire_and_end() {
        let s = Sessions::default();
        let (id, _) = s.create("rmk_x.y".into()).unwrap();
        assert!(s.get(&id).is_some());
        s.remove(&id);
        assert!(s.get(&id).is_none());
    }
}
