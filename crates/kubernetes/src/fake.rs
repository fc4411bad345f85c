//! [`FakeApiServer`]: a **test double** of the Kubernetes API server — not a cluster.
//!
//! An axum router that stores objects as JSON in memory and answers the REST calls the driver
//! makes, with the API server's shapes: namespaced create (POST, 409 `AlreadyExists`), get,
//! list (`labelSelector` with `k=v`, `k!=v` and `k`), replace (PUT, 409 `Conflict` on a stale
//! `resourceVersion`), JSON merge patch (strategic merge patch is treated as a merge patch),
//! delete (404 `NotFound`), the `/status` subresource (which alone changes `status`), and pods'
//! `/log`. Every write bumps one global `resourceVersion`; creates set `uid` and
//! `creationTimestamp`; a spec change bumps `metadata.generation`. Errors are `Status` bodies.
//!
//! What it does **not** do: no controllers (no ReplicaSets or pods appear for a Deployment, no
//! garbage collection through ownerReferences, no kubelet), no admission, defaulting or schema
//! validation, no watch, no server-side apply. Tests play the missing parts themselves
//! ([`FakeApiServer::run_pods`] plays the Deployment controller and the kubelet).
//!
//! Use it in process with `kube::Client::new(fake.router(), "default")`, or on a loopback port
//! ([`FakeApiServer::serve`]) through a kubeconfig whose server is `http://127.0.0.1:PORT`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// The in-memory API server. Cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct FakeApiServer {
    inner: Arc<Mutex<Store>>,
}

#[derive(Default)]
struct Store {
    /// (group/version path, resource, namespace, name) → object.
    objects: BTreeMap<(String, String, String, String), Value>,
    /// Pod name → its log text.
    logs: BTreeMap<(String, String), String>,
    version: u64,
    /// Every request as `METHOD path`, for tests that check what was called.
    requests: Vec<String>,
    /// Resources (group/version path, plural) this API server does not serve, like a cluster
    /// without a CRD installed.
    missing: Vec<(String, String)>,
}

/// How [`FakeApiServer::run_pods`] shows a Deployment's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Scheduled, container running, not ready (loading its snapshot).
    NotReady,
    /// Ready, with this IP.
    Ready(String),
    /// Waiting in CrashLoopBackOff after an exit with this code (137 with reason OOMKilled).
    CrashLoop(i32),
    /// Waiting in ImagePullBackOff.
    ImagePullBackOff,
}

fn status_body(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

/// Parsed request path: `/api/v1/namespaces/NS/RES[/NAME[/SUB]]` or
/// `/apis/GROUP/VERSION/namespaces/NS/RES[/NAME[/SUB]]`.
struct Target {
    gv: String,
    ns: String,
    resource: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (gv, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => (v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    match rest {
        ["namespaces", ns, res, tail @ ..] if tail.len() <= 2 => Some(Target {
            gv,
            ns: ns.to_string(),
            resource: res.to_string(),
            name: tail.first().map(|s| s.to_string()),
            sub: tail.get(1).map(|s| s.to_string()),
        }),
        _ => None,
    }
}

fn query_param(query: &str, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Whether `labels` match a selector `k=v,k!=v,k`.
pub fn selector_matches(selector: &str, labels: Option<&Value>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            get(k) != Some(v)
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            get(k) == Some(v)
        } else {
            get(term).is_some()
        }
    })
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn kind_of_list(resource: &str) -> String {
    match resource {
        "deployments" => "DeploymentList",
        "pods" => "PodList",
        "services" => "ServiceList",
        "secrets" => "SecretList",
        "configmaps" => "ConfigMapList",
        "events" => "EventList",
        "statefulsets" => "StatefulSetList",
        _ => "List",
    }
    .to_string()
}

impl FakeApiServer {
    /// An empty API server.
    pub fn new() -> Self {
        Self::default()
    }

    /// An API server without resource `resource` of `gv` (e.g. `postgresql.cnpg.io/v1`
    /// `clusters`: CloudNativePG not installed): every request to it answers 404.
    pub fn without_resource(self, gv: &str, resource: &str) -> Self {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .missing
            .push((gv.into(), resource.into()));
        self
    }

    /// The router (a tower `Service`): hand it to `kube::Client::new`.
    pub fn router(&self) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    /// Serves the router on `127.0.0.1:0`; returns `http://127.0.0.1:PORT` (for a kubeconfig).
    pub async fn serve(&self) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let router = self.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(format!("http://{addr}"))
    }

    /// A kubeconfig (YAML) pointing at `server` with namespace `ns`.
    pub fn kubeconfig(server: &str, ns: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {ns}\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
        )
    }

    /// The stored object, if any (`gv`: `v1`, `apps/v1`; `resource`: plural, `deployments`).
    pub fn get(&self, gv: &str, resource: &str, ns: &str, name: &str) -> Option<Value> {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.objects
            .get(&(gv.into(), resource.into(), ns.into(), name.into()))
            .cloned()
    }

    /// Every stored object of `resource` in `ns`, sorted by name.
    pub fn list(&self, gv: &str, resource: &str, ns: &str) -> Vec<Value> {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.objects
            .iter()
            .filter(|((g, r, n, _), _)| g == gv && r == resource && n == ns)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Names of every stored object, as `resource/name`.
    pub fn names(&self, ns: &str) -> Vec<String> {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.objects
            .keys()
            .filter(|(_, _, n, _)| n == ns)
            .map(|(_, r, _, name)| format!("{r}/{name}"))
            .collect()
    }

    /// The requests served so far (`METHOD /path`).
    pub fn requests(&self) -> Vec<String> {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.requests.clone()
    }

    /// Sets what `GET …/pods/NAME/log` answers.
    pub fn set_log(&self, ns: &str, pod: &str, text: &str) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.logs.insert((ns.into(), pod.into()), text.into());
    }

    /// Stores (or replaces) an object as is, `status` included: what a controller or the kubelet
    /// would have written.
    pub fn put(&self, gv: &str, resource: &str, ns: &str, mut obj: Value) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.version += 1;
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        obj["metadata"]["namespace"] = json!(ns);
        obj["metadata"]["resourceVersion"] = json!(s.version.to_string());
        if obj["metadata"]["uid"].is_null() {
            obj["metadata"]["uid"] = json!(format!("uid-{}", s.version));
        }
        s.objects
            .insert((gv.into(), resource.into(), ns.into(), name), obj);
    }

    /// Removes an object as a controller or the garbage collector would (e.g. the pods of a
    /// deleted StatefulSet); whether it existed.
    pub fn remove(&self, gv: &str, resource: &str, ns: &str, name: &str) -> bool {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.objects
            .remove(&(gv.into(), resource.into(), ns.into(), name.into()))
            .is_some()
    }

    /// Plays the Deployment controller and the kubelet for Deployment `name`: replaces its pods
    /// with `spec.replicas` pods from its template, in `state` (no pods when scaled to 0), and
    /// writes the Deployment's `status` to match. Returns the pods' names.
    pub fn run_pods(&self, ns: &str, name: &str, state: PodState) -> Vec<String> {
        self.run_pods_of("deployments", ns, name, state)
    }

    /// [`FakeApiServer::run_pods`] for StatefulSet `name` (a managed server's): plays the
    /// StatefulSet controller and the kubelet, with its pods named `<name>-<ordinal>`.
    pub fn run_statefulset_pods(&self, ns: &str, name: &str, state: PodState) -> Vec<String> {
        self.run_pods_of("statefulsets", ns, name, state)
    }

    fn run_pods_of(&self, resource: &str, ns: &str, name: &str, state: PodState) -> Vec<String> {
        let Some(d) = self.get("apps/v1", resource, ns, name) else {
            return Vec::new();
        };
        let pod_prefix = if resource == "statefulsets" {
            format!("{name}-")
        } else {
            format!("{name}-pod-")
        };
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let labels = d["spec"]["template"]["metadata"]["labels"].clone();
        // Old pods of this Deployment go.
        let old: Vec<String> = self
            .list("v1", "pods", ns)
            .into_iter()
            .filter(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&pod_prefix))
            })
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        {
            let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            for o in &old {
                s.objects
                    .remove(&("v1".into(), "pods".into(), ns.into(), o.clone()));
            }
        }
        let mut names = Vec::new();
        let ready = matches!(state, PodState::Ready(_));
        let finished = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        for i in 0..replicas {
            let pname = format!("{pod_prefix}{i}");
            let (ip, container) = match &state {
                PodState::NotReady => (
                    json!("10.1.0.9"),
                    json!({"name": "engine", "ready": false, "restartCount": 0, "image": "", "imageID": "", "state": {"running": {}}}),
                ),
                PodState::Ready(ip) => (
                    json!(ip),
                    json!({"name": "engine", "ready": true, "restartCount": 0, "image": "", "imageID": "", "state": {"running": {}}}),
                ),
                PodState::CrashLoop(code) => {
                    let reason = if *code == 137 { "OOMKilled" } else { "Error" };
                    (
                        json!("10.1.0.9"),
                        json!({"name": "engine", "ready": false, "restartCount": 4, "image": "", "imageID": "",
                               "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
                               "lastState": {"terminated": {"exitCode": code, "reason": reason, "finishedAt": finished}}}),
                    )
                }
                PodState::ImagePullBackOff => (
                    Value::Null,
                    json!({"name": "engine", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                           "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}),
                ),
            };
            let pod = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pname, "labels": labels},
                "spec": d["spec"]["template"]["spec"],
                "status": {
                    "phase": if ready { "Running" } else { "Pending" },
                    "podIP": ip,
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                    "containerStatuses": [container],
                },
            });
            self.put("v1", "pods", ns, pod);
            names.push(pname);
        }
        let ready_n = if ready { replicas } else { 0 };
        if let Some(mut d) = self.get("apps/v1", resource, ns, name) {
            d["status"] = json!({
                "observedGeneration": d["metadata"]["generation"],
                "replicas": replicas,
                "readyReplicas": ready_n,
                "availableReplicas": ready_n,
                "updatedReplicas": replicas,
            });
            self.put("apps/v1", resource, ns, d);
        }
        names
    }
}

async fn handle(State(fake): State<FakeApiServer>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body: Bytes = match axum::body::to_bytes(req.into_body(), 16 << 20).await {
        Ok(b) => b,
        Err(e) => return status_body(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
    };
    let mut s = fake.inner.lock().unwrap_or_else(|p| p.into_inner());
    s.requests.push(format!("{method} {path}"));
    let Some(t) = parse_path(&path) else {
        return status_body(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the fake API server does not serve {path}"),
        );
    };
    if s.missing.contains(&(t.gv.clone(), t.resource.clone())) {
        // What a real API server answers for a resource type it does not know.
        return status_body(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
    }
    let key = |name: &str| {
        (
            t.gv.clone(),
            t.resource.clone(),
            t.ns.clone(),
            name.to_string(),
        )
    };
    let not_found = |name: &str| {
        status_body(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", t.resource),
        )
    };
    let parse = |b: &Bytes| serde_json::from_slice::<Value>(b);
    match (&method, t.name.as_deref(), t.sub.as_deref()) {
        (&Method::GET, None, None) => {
            let sel = query_param(&query, "labelSelector").unwrap_or_default();
            let items: Vec<Value> = s
                .objects
                .iter()
                .filter(|((g, r, n, _), _)| *g == t.gv && *r == t.resource && *n == t.ns)
                .map(|(_, v)| v)
                .filter(|v| selector_matches(&sel, v["metadata"].get("labels")))
                .cloned()
                .collect();
            let body = json!({
                "apiVersion": t.gv,
                "kind": kind_of_list(&t.resource),
                "metadata": {"resourceVersion": s.version.to_string()},
                "items": items,
            });
            axum::Json(body).into_response()
        }
        (&Method::POST, None, None) => {
            let mut obj = match parse(&body) {
                Ok(v) => v,
                Err(e) => return status_body(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
            };
            let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string) else {
                return status_body(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name: Required value".into(),
                );
            };
            if s.objects.contains_key(&key(&name)) {
                return status_body(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", t.resource),
                );
            }
            s.version += 1;
            let v = s.version;
            let m = &mut obj["metadata"];
            m["namespace"] = json!(t.ns);
            m["uid"] = json!(format!("uid-{v}"));
            m["resourceVersion"] = json!(v.to_string());
            m["generation"] = json!(1);
            m["creationTimestamp"] =
                json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
            s.objects.insert(key(&name), obj.clone());
            (StatusCode::CREATED, axum::Json(obj)).into_response()
        }
        (&Method::GET, Some(name), sub) if sub.is_none() || sub == Some("status") => {
            match s.objects.get(&key(name)) {
                Some(v) => axum::Json(v.clone()).into_response(),
                None => not_found(name),
            }
        }
        (&Method::GET, Some(name), Some("log")) if t.resource == "pods" => {
            if !s.objects.contains_key(&key(name)) {
                return not_found(name);
            }
            let text = s
                .logs
                .get(&(t.ns.clone(), name.to_string()))
                .cloned()
                .unwrap_or_default();
            let tail = query_param(&query, "tailLines").and_then(|n| n.parse::<usize>().ok());
            let lines: Vec<&str> = text.lines().collect();
            let from = tail.map_or(0, |n| lines.len().saturating_sub(n));
            let mut out = lines[from..].join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            out.into_response()
        }
        (&Method::PUT, Some(name), sub) if sub.is_none() || sub == Some("status") => {
            let mut obj = match parse(&body) {
                Ok(v) => v,
                Err(e) => return status_body(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
            };
            let Some(old) = s.objects.get(&key(name)).cloned() else {
                return not_found(name);
            };
            let sent = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
            if !sent.is_empty() && Some(sent) != old["metadata"]["resourceVersion"].as_str() {
                return status_body(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                        t.resource
                    ),
                );
            }
            let new = if sub == Some("status") {
                let mut n = old.clone();
                n["status"] = obj["status"].take();
                n
            } else {
                obj["status"] = old["status"].clone();
                obj["metadata"]["uid"] = old["metadata"]["uid"].clone();
                obj["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                let changed = obj["spec"] != old["spec"];
                obj["metadata"]["generation"] = json!(if changed { g + 1 } else { g });
                if obj.get("status").is_some_and(Value::is_null) {
                    obj.as_object_mut().map(|o| o.remove("status"));
                }
                obj
            };
            store_write(&mut s, key(name), new, &t.ns)
        }
        (&Method::PATCH, Some(name), sub) if sub.is_none() || sub == Some("status") => {
            if content_type.contains("apply-patch") {
                return status_body(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    "the fake API server does not implement server-side apply".into(),
                );
            }
            let patch = match parse(&body) {
                Ok(v) => v,
                Err(e) => return status_body(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
            };
            let Some(old) = s.objects.get(&key(name)).cloned() else {
                return not_found(name);
            };
            let mut new = old.clone();
            if sub == Some("status") {
                merge_patch(&mut new["status"], &patch["status"]);
            } else {
                let mut p = patch.clone();
                if let Some(o) = p.as_object_mut() {
                    o.remove("status");
                }
                merge_patch(&mut new, &p);
                if new["spec"] != old["spec"] {
                    let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                    new["metadata"]["generation"] = json!(g + 1);
                }
            }
            store_write(&mut s, key(name), new, &t.ns)
        }
        (&Method::DELETE, Some(name), None) => match s.objects.remove(&key(name)) {
            Some(v) => {
                s.version += 1;
                axum::Json(v).into_response()
            }
            None => not_found(name),
        },
        _ => status_body(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("the fake API server does not serve {method} {path}"),
        ),
    }
}

fn store_write(
    s: &mut Store,
    key: (String, String, String, String),
    mut obj: Value,
    ns: &str,
) -> Response {
    s.version += 1;
    obj["metadata"]["resourceVersion"] = json!(s.version.to_string());
    obj["metadata"]["namespace"] = json!(ns);
    s.objects.insert(key, obj.clone());
    axum::Json(obj).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let l = json!({"a": "1", "b": "2"});
        assert!(selector_matches("a=1,b=2", Some(&l)));
        assert!(selector_matches("a==1,c!=3,b", Some(&l)));
        assert!(!selector_matches("a=2", Some(&l)));
        assert!(!selector_matches("c", Some(&l)));
        assert!(selector_matches("", None));
    }

    #[test]
    fn merge_patches() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge_patch(&mut v, &json!({"a": {"b": null, "e": 3}, "d": [2]}));
        assert_eq!(v, json!({"a": {"c": 2, "e": 3}, "d": [2]}));
    }

    #[test]
    fn paths() {
        let t = parse_path("/apis/apps/v1/namespaces/ns/deployments/x/status").unwrap();
        assert_eq!(
            (t.gv.as_str(), t.resource.as_str()),
            ("apps/v1", "deployments")
        );
        assert_eq!(
            (t.name.as_deref(), t.sub.as_deref()),
            (Some("x"), Some("status"))
        );
        assert!(parse_path("/api/v1/pods").is_none());
    }
}
