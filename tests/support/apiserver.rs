//! A stand-in for kube-apiserver, because none can run here: an in-memory API server on loopback (axum) speaking
//! the real JSON of kube and k8s-openapi types, for the resources the PredictiveAutoscaler controller uses.
//!
//! - `predictiveautoscalers` (prescale.dev/v1alpha1, all namespaces or one): list (with the current
//!   `resourceVersion`), watch (`?watch=true&resourceVersion=N`: the events after N, then live ones, newline
//!   delimited; an `ERROR` event with code 410 Gone for a resourceVersion older than the last compaction), get, and
//!   merge patch of `/status` (which, as on a real server, never bumps `metadata.generation`).
//! - `horizontalpodautoscalers` (autoscaling/v2): list (all namespaces or one), get, create, replace (409 Conflict
//!   when the `resourceVersion` it carries is not the stored one), merge patch, delete.
//! - `leases` (coordination.k8s.io/v1) and `configmaps` (v1): list (equality `labelSelector`), get, create (409
//!   AlreadyExists), replace (409 Conflict unless it carries the stored `resourceVersion`), delete (409 when its
//!   `preconditions.resourceVersion` is not the stored one); ConfigMaps over 1 MiB of data are refused (422), as
//!   on a real server.
//!
//! Tests change objects directly ([`ApiServer::apply`], [`ApiServer::delete`], [`ApiServer::put_hpa`],
//! [`ApiServer::delete_hpa`]); knobs drop
//! every open watch ([`ApiServer::drop_watches`]), hold events back from open watches ([`ApiServer::freeze`]) and
//! forget history ([`ApiServer::compact`]) so a resuming watch gets 410 and relists, or fail every list and watch
//! ([`ApiServer::fail_lists`]), every Lease request ([`ApiServer::fail_leases`]) or forbid every ConfigMap
//! request ([`ApiServer::forbid_configmaps`]), or cut one client's door off ([`ApiServer::cut_off`]), make its
//! requests hang ([`ApiServer::hang`]) or its lists fail ([`ApiServer::cut_off_lists`]); every write is counted
//! ([`ApiServer::writes`]), and by the door it came through when clients have their own
//! ([`ApiServer::client_as`], [`ApiServer::writes_via`]).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

/// The resources served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// prescale.dev/v1alpha1 PredictiveAutoscaler.
    Pa,
    /// autoscaling/v2 HorizontalPodAutoscaler.
    Hpa,
    /// coordination.k8s.io/v1 Lease.
    Lease,
    /// v1 ConfigMap.
    ConfigMap,
}

impl Kind {
    fn plural(self) -> &'static str {
        match self {
            Kind::Pa => "predictiveautoscalers",
            Kind::Hpa => "horizontalpodautoscalers",
            Kind::Lease => "leases",
            Kind::ConfigMap => "configmaps",
        }
    }
    fn api_version(self) -> &'static str {
        match self {
            Kind::Pa => "prescale.dev/v1alpha1",
            Kind::Hpa => "autoscaling/v2",
            Kind::Lease => "coordination.k8s.io/v1",
            Kind::ConfigMap => "v1",
        }
    }
    fn kind(self) -> &'static str {
        match self {
            Kind::Pa => "PredictiveAutoscaler",
            Kind::Hpa => "HorizontalPodAutoscaler",
            Kind::Lease => "Lease",
            Kind::ConfigMap => "ConfigMap",
        }
    }
}

#[derive(Debug, Clone)]
struct Event {
    rv: u64,
    kind: Kind,
    namespace: String,
    type_: &'static str,
    object: Value,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    /// Watches from a resourceVersion below this get 410 Gone.
    floor: u64,
    uids: u64,
    objects: BTreeMap<(Kind, String, String), Value>,
    log: Vec<Event>,
    frozen: bool,
    /// Lists and watches are answered 503, as by an API server that is down.
    unavailable: bool,
    /// Lease requests are answered 503.
    leases_unavailable: bool,
    /// ConfigMap requests are answered 403.
    configmaps_forbidden: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
    drops: watch::Sender<u64>,
    writes: Mutex<BTreeMap<String, usize>>,
    watches: Mutex<usize>,
    /// Requests other than GET by the door they came through ([`ApiServer::client_as`]) and `METHOD path`.
    door_writes: Mutex<BTreeMap<(String, String), usize>>,
    /// Doors cut off from the API ([`ApiServer::cut_off`]).
    cut: Mutex<std::collections::BTreeSet<String>>,
    /// Doors whose requests hang ([`ApiServer::hang`]).
    hung: Mutex<std::collections::BTreeSet<String>>,
    /// Doors whose lists fail ([`ApiServer::cut_off_lists`]).
    lists_cut: Mutex<std::collections::BTreeSet<String>>,
}

/// The stand-in; dropping it does not stop the server (tests end the process).
#[derive(Clone)]
pub struct ApiServer {
    shared: Arc<Shared>,
    url: String,
}

impl ApiServer {
    /// Serves an empty API on a loopback port.
    pub async fn start() -> Self {
        let (events, _) = broadcast::channel(16_384);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            events,
            drops: watch::channel(0).0,
            writes: Mutex::new(BTreeMap::new()),
            watches: Mutex::new(0),
            door_writes: Mutex::new(BTreeMap::new()),
            cut: Mutex::new(Default::default()),
            hung: Mutex::new(Default::default()),
            lists_cut: Mutex::new(Default::default()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = router(shared.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { shared, url }
    }

    /// A real kube client pointed at the stand-in through a door of its own, named `door`: the same API, with
    /// every write through it counted under that name ([`ApiServer::writes_via`]), so a test with several clients
    /// (replicas) can tell who wrote.
    pub async fn client_as(&self, door: &str) -> kube::Client {
        let url = self.door_url(door).await;
        kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap()
    }

    /// The address of a door of its own named `door` ([`ApiServer::client_as`]), for a kubeconfig.
    pub async fn door_url(&self, door: &str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (shared, door) = (self.shared.clone(), door.to_owned());
        let router = router(self.shared.clone()).layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let (shared, door) = (shared.clone(), door.clone());
                async move {
                    while shared.hung.lock().unwrap().contains(&door) {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                    if shared.cut.lock().unwrap().contains(&door) {
                        // Not a 503: kube's client retries those for minutes, which a real partition does not.
                        return status(500, "InternalError", "the API server cannot be reached from this door");
                    }
                    if request.method() == Method::GET
                        && is_list(request.uri().path())
                        && shared.lists_cut.lock().unwrap().contains(&door)
                    {
                        return status(500, "InternalError", "lists fail through this door");
                    }
                    if request.method() != Method::GET {
                        let key = (door, format!("{} {}", request.method(), request.uri().path()));
                        *shared.door_writes.lock().unwrap().entry(key).or_default() += 1;
                    }
                    next.run(request).await
                }
            },
        ));
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        url
    }

    /// Cuts the door `door` off from the API (every request through it is answered 500 at once), or opens it
    /// again: a replica that cannot reach the API server while the others can.
    pub fn cut_off(&self, door: &str, cut: bool) {
        toggle(&self.shared.cut, door, cut);
    }

    /// Makes every request through `door` hang until the door is opened again (`false`), then be answered: an API
    /// server that accepts connections and never answers.
    pub fn hang(&self, door: &str, hung: bool) {
        toggle(&self.shared.hung, door, hung);
    }

    /// Makes every list through `door` fail with a 500 (gets and writes still work), or work again.
    pub fn cut_off_lists(&self, door: &str, cut: bool) {
        toggle(&self.shared.lists_cut, door, cut);
    }

    /// Every request other than GET that came through `door`.
    pub fn writes_through(&self, door: &str) -> usize {
        let writes = self.shared.door_writes.lock().unwrap();
        writes.iter().filter(|((d, _), _)| d == door).map(|(_, n)| n).sum()
    }

    /// Requests other than GET that came through `door` ([`ApiServer::client_as`]) with `method` and a path
    /// containing `path`, e.g. `writes_via("a", "PATCH", "/status")`.
    pub fn writes_via(&self, door: &str, method: &str, path: &str) -> usize {
        let writes = self.shared.door_writes.lock().unwrap();
        writes
            .iter()
            .filter(|((d, what), _)| {
                d == door
                    && what
                        .split_once(' ')
                        .is_some_and(|(m, p)| m == method && p.contains(path))
            })
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests other than GET that came through `door`, Lease requests left out: what a replica wrote to the
    /// objects and HPAs.
    pub fn object_writes_via(&self, door: &str) -> usize {
        let writes = self.shared.door_writes.lock().unwrap();
        writes
            .iter()
            .filter(|((d, what), _)| d == door && !what.contains("/leases"))
            .map(|(_, n)| n)
            .sum()
    }

    /// Answers every Lease request with 503 Service Unavailable (`true`), or serves them again.
    pub fn fail_leases(&self, failing: bool) {
        self.shared.inner.lock().unwrap().leases_unavailable = failing;
    }

    /// Answers every ConfigMap request 403 Forbidden while `forbidden`, as for a ServiceAccount without the Role
    /// (a 503 would be retried by the kube client for minutes).
    pub fn forbid_configmaps(&self, forbidden: bool) {
        self.shared.inner.lock().unwrap().configmaps_forbidden = forbidden;
    }

    /// The stand-in's address, for a kubeconfig.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Answers every list and watch with 503 Service Unavailable (`true`), or serves them again.
    pub fn fail_lists(&self, failing: bool) {
        self.shared.inner.lock().unwrap().unavailable = failing;
    }

    /// A real kube client pointed at the stand-in.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(kube::Config::new(self.url.parse().unwrap())).unwrap()
    }

    /// Creates or updates a PredictiveAutoscaler with `spec` (its generation grows when the spec changes).
    pub fn apply(&self, namespace: &str, name: &str, spec: Value) -> Value {
        let mut inner = self.shared.inner.lock().unwrap();
        let key = (Kind::Pa, namespace.to_owned(), name.to_owned());
        let object = match inner.objects.get(&key).cloned() {
            Some(mut old) => {
                if old["spec"] != spec {
                    old["spec"] = spec;
                    let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                    old["metadata"]["generation"] = json!(generation);
                }
                old
            }
            None => {
                inner.uids += 1;
                json!({
                    "apiVersion": Kind::Pa.api_version(),
                    "kind": Kind::Pa.kind(),
                    "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{}", inner.uids), "generation": 1,
                                 "creationTimestamp": "2026-01-01T00:00:00Z"},
                    "spec": spec,
                })
            }
        };
        let type_ = if inner.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.shared.store(&mut inner, key, object, type_)
    }

    /// Deletes a PredictiveAutoscaler (its HPA stays: there is no garbage collector here).
    pub fn delete(&self, namespace: &str, name: &str) {
        let mut inner = self.shared.inner.lock().unwrap();
        let key = (Kind::Pa, namespace.to_owned(), name.to_owned());
        let mut object = inner.objects.remove(&key).expect("the object exists");
        inner.rv += 1;
        object["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        let rv = inner.rv;
        self.shared.emit(
            &mut inner,
            Event {
                rv,
                kind: Kind::Pa,
                namespace: namespace.to_owned(),
                type_: "DELETED",
                object,
            },
        );
    }

    /// Stores an HPA as someone else would create it.
    pub fn put_hpa(&self, hpa: Value) {
        let mut inner = self.shared.inner.lock().unwrap();
        let ns = hpa["metadata"]["namespace"].as_str().unwrap().to_owned();
        let name = hpa["metadata"]["name"].as_str().unwrap().to_owned();
        let mut hpa = hpa;
        hpa["apiVersion"] = json!(Kind::Hpa.api_version());
        hpa["kind"] = json!(Kind::Hpa.kind());
        self.shared.store(&mut inner, (Kind::Hpa, ns, name), hpa, "ADDED");
    }

    /// Deletes an HPA, as someone else would.
    pub fn delete_hpa(&self, namespace: &str, name: &str) {
        let mut inner = self.shared.inner.lock().unwrap();
        let key = (Kind::Hpa, namespace.to_owned(), name.to_owned());
        let object = inner.objects.remove(&key).expect("the HPA exists");
        inner.rv += 1;
        let rv = inner.rv;
        self.shared.emit(
            &mut inner,
            Event {
                rv,
                kind: Kind::Hpa,
                namespace: namespace.to_owned(),
                type_: "DELETED",
                object,
            },
        );
    }

    /// An object as stored now.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .objects
            .get(&(kind, namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Ends every open watch, as a restarted API server or a dropped connection does.
    pub fn drop_watches(&self) {
        self.shared.drops.send_modify(|n| *n += 1);
    }

    /// Holds events back from open watches (they are still logged for watches that resume), or lets them through.
    pub fn freeze(&self, frozen: bool) {
        self.shared.inner.lock().unwrap().frozen = frozen;
    }

    /// Forgets every event so far: a watch resuming from an older resourceVersion gets 410 Gone and must relist.
    pub fn compact(&self) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.floor = inner.rv;
        inner.log.clear();
    }

    /// Writes so far whose description starts with `prefix`: `PATCH predictiveautoscalers/status NS/NAME`,
    /// `POST horizontalpodautoscalers NS/NAME`, `PUT ...`, `PATCH ...`, `DELETE ...`.
    pub fn writes(&self, prefix: &str) -> usize {
        let writes = self.shared.writes.lock().unwrap();
        writes
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Watch requests received so far.
    pub fn watches(&self) -> usize {
        *self.shared.watches.lock().unwrap()
    }
}

impl Shared {
    fn store(&self, inner: &mut Inner, key: (Kind, String, String), mut object: Value, type_: &'static str) -> Value {
        inner.rv += 1;
        object["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        inner.objects.insert(key.clone(), object.clone());
        let rv = inner.rv;
        self.emit(
            inner,
            Event {
                rv,
                kind: key.0,
                namespace: key.1,
                type_,
                object: object.clone(),
            },
        );
        object
    }

    fn emit(&self, inner: &mut Inner, event: Event) {
        inner.log.push(event.clone());
        if !inner.frozen {
            let _ = self.events.send(event);
        }
    }

    fn count(&self, method: &Method, what: &str) {
        *self
            .writes
            .lock()
            .unwrap()
            .entry(format!("{method} {what}"))
            .or_default() += 1;
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                      "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

fn line(value: &Value) -> Bytes {
    Bytes::from(value.to_string() + "\n")
}

async fn pa_all(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    list_or_watch(s, Kind::Pa, None, q)
}

async fn pa_in(
    State(s): State<Arc<Shared>>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_or_watch(s, Kind::Pa, Some(ns), q)
}

async fn hpa_all(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    list_or_watch(s, Kind::Hpa, None, q)
}

async fn hpa_list(
    State(s): State<Arc<Shared>>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_or_watch(s, Kind::Hpa, Some(ns), q)
}

fn list_or_watch(s: Arc<Shared>, kind: Kind, ns: Option<String>, q: HashMap<String, String>) -> Response {
    let matches = move |k: Kind, namespace: &str| k == kind && ns.as_deref().is_none_or(|n| n == namespace);
    let inner = s.inner.lock().unwrap();
    if inner.unavailable {
        return status(503, "ServiceUnavailable", "the API server is unavailable");
    }
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        *s.watches.lock().unwrap() += 1;
        let from: u64 = q.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        if from < inner.floor {
            let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": format!("too old resource version: {from} ({})", inner.floor),
                "reason": "Expired", "code": 410}});
            return Body::from(line(&gone)).into_response();
        }
        let backlog: VecDeque<Event> = inner
            .log
            .iter()
            .filter(|e| e.rv > from && matches(e.kind, &e.namespace))
            .cloned()
            .collect();
        // Subscribed under the lock that sends: no event is missed or seen twice.
        let live = s.events.subscribe();
        let drops = s.drops.subscribe();
        drop(inner);
        let events = futures::stream::unfold(
            (backlog, live, drops, matches),
            |(mut backlog, mut live, mut drops, matches)| async move {
                let event = match backlog.pop_front() {
                    Some(e) => e,
                    None => loop {
                        tokio::select! {
                            _ = drops.changed() => return None,
                            e = live.recv() => match e {
                                Ok(e) if matches(e.kind, &e.namespace) => break e,
                                Ok(_) => continue,
                                Err(_) => return None,
                            },
                        }
                    },
                };
                let body = line(&json!({"type": event.type_, "object": event.object}));
                Some((Ok::<_, std::convert::Infallible>(body), (backlog, live, drops, matches)))
            },
        );
        return ([("content-type", "application/json")], Body::from_stream(events)).into_response();
    }
    let items: Vec<Value> = inner
        .objects
        .iter()
        .filter(|((k, namespace, _), _)| matches(*k, namespace))
        .map(|(_, o)| o.clone())
        .collect();
    Json(
        json!({"apiVersion": kind.api_version(), "kind": format!("{}List", kind.kind()),
                "metadata": {"resourceVersion": inner.rv.to_string()}, "items": items}),
    )
    .into_response()
}

fn get_one(s: &Shared, kind: Kind, ns: &str, name: &str) -> Response {
    match s
        .inner
        .lock()
        .unwrap()
        .objects
        .get(&(kind, ns.to_owned(), name.to_owned()))
    {
        Some(o) => Json(o.clone()).into_response(),
        None => status(404, "NotFound", &format!("{} \"{name}\" not found", kind.plural())),
    }
}

async fn pa_get(State(s): State<Arc<Shared>>, Path((ns, name)): Path<(String, String)>) -> Response {
    get_one(&s, Kind::Pa, &ns, &name)
}

async fn hpa_get(State(s): State<Arc<Shared>>, Path((ns, name)): Path<(String, String)>) -> Response {
    get_one(&s, Kind::Hpa, &ns, &name)
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in fields {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

async fn pa_status(State(s): State<Arc<Shared>>, Path((ns, name)): Path<(String, String)>, body: Bytes) -> Response {
    s.count(&Method::PATCH, &format!("predictiveautoscalers/status {ns}/{name}"));
    let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
        return status(400, "BadRequest", "the body is not JSON");
    };
    let mut inner = s.inner.lock().unwrap();
    let key = (Kind::Pa, ns, name.clone());
    let Some(mut object) = inner.objects.get(&key).cloned() else {
        return status(404, "NotFound", &format!("predictiveautoscalers \"{name}\" not found"));
    };
    // Only the status subresource changes.
    if let Some(st) = patch.get("status") {
        merge(&mut object["status"], st);
    }
    Json(s.store(&mut inner, key, object, "MODIFIED")).into_response()
}

async fn hpa_create(State(s): State<Arc<Shared>>, Path(ns): Path<String>, body: Bytes) -> Response {
    let Ok(mut hpa) = serde_json::from_slice::<Value>(&body) else {
        return status(400, "BadRequest", "the body is not JSON");
    };
    let name = hpa["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    s.count(&Method::POST, &format!("horizontalpodautoscalers {ns}/{name}"));
    let mut inner = s.inner.lock().unwrap();
    let key = (Kind::Hpa, ns, name.clone());
    if inner.objects.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            &format!("horizontalpodautoscalers \"{name}\" already exists"),
        );
    }
    inner.uids += 1;
    hpa["metadata"]["uid"] = json!(format!("uid-{}", inner.uids));
    hpa["apiVersion"] = json!(Kind::Hpa.api_version());
    hpa["kind"] = json!(Kind::Hpa.kind());
    let stored = s.store(&mut inner, key, hpa, "ADDED");
    (StatusCode::CREATED, Json(stored)).into_response()
}

async fn hpa_write(
    State(s): State<Arc<Shared>>,
    method: Method,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    s.count(&method, &format!("horizontalpodautoscalers {ns}/{name}"));
    let mut inner = s.inner.lock().unwrap();
    let key = (Kind::Hpa, ns.clone(), name.clone());
    let Some(old) = inner.objects.get(&key).cloned() else {
        return status(
            404,
            "NotFound",
            &format!("horizontalpodautoscalers \"{name}\" not found"),
        );
    };
    if method == Method::DELETE {
        inner.objects.remove(&key);
        inner.rv += 1;
        let rv = inner.rv;
        s.emit(
            &mut inner,
            Event {
                rv,
                kind: Kind::Hpa,
                namespace: ns,
                type_: "DELETED",
                object: old.clone(),
            },
        );
        return Json(old).into_response();
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return status(400, "BadRequest", "the body is not JSON");
    };
    let object = if method == Method::PUT {
        // A replace names the version it read; another write since then is a conflict, as on a real server.
        let read = &body["metadata"]["resourceVersion"];
        if !read.is_null() && *read != old["metadata"]["resourceVersion"] {
            return status(
                409,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on horizontalpodautoscalers \"{name}\": the object has been \
                     modified; please apply your changes to the latest version and try again"
                ),
            );
        }
        let mut new = body;
        new["metadata"]["uid"] = old["metadata"]["uid"].clone();
        new["apiVersion"] = json!(Kind::Hpa.api_version());
        new["kind"] = json!(Kind::Hpa.kind());
        new
    } else {
        let mut new = old;
        merge(&mut new, &body);
        new
    };
    Json(s.store(&mut inner, key, object, "MODIFIED")).into_response()
}

fn unavailable(s: &Shared, kind: Kind) -> Option<Response> {
    let inner = s.inner.lock().unwrap();
    if kind == Kind::Lease && inner.leases_unavailable {
        return Some(status(503, "ServiceUnavailable", "the API server is unavailable"));
    }
    (kind == Kind::ConfigMap && inner.configmaps_forbidden).then(|| {
        status(
            403,
            "Forbidden",
            "configmaps is forbidden: User \"system:serviceaccount:prescale:prescale\" cannot access resource \
             \"configmaps\" in API group \"\" in the namespace",
        )
    })
}

/// The routes of a namespaced `kind` that is read, created and replaced whole (Leases, ConfigMaps): the collection
/// (GET: list, with an equality `labelSelector`; POST: create) and one object (GET; PUT: replace; DELETE, with a
/// `preconditions.resourceVersion` checked when the body carries one).
fn whole_object_routes(kind: Kind) -> (MethodRouter<Arc<Shared>>, MethodRouter<Arc<Shared>>) {
    let collection = post(
        move |State(s): State<Arc<Shared>>, Path(ns): Path<String>, body: Bytes| async move { create(&s, kind, ns, body) },
    )
    .get(
        move |State(s): State<Arc<Shared>>, Path(ns): Path<String>, Query(q): Query<HashMap<String, String>>| async move {
            match unavailable(&s, kind) {
                Some(refused) => refused,
                None => list_labelled(&s, kind, &ns, q.get("labelSelector").map(String::as_str)),
            }
        },
    );
    let one = get(
        move |State(s): State<Arc<Shared>>, Path((ns, name)): Path<(String, String)>| async move {
            match unavailable(&s, kind) {
                Some(refused) => refused,
                None => get_one(&s, kind, &ns, &name),
            }
        },
    )
    .put(
        move |State(s): State<Arc<Shared>>, Path((ns, name)): Path<(String, String)>, body: Bytes| async move {
            replace(&s, kind, ns, name, body)
        },
    )
    .delete(
        move |State(s): State<Arc<Shared>>, Path((ns, name)): Path<(String, String)>, body: Bytes| async move {
            delete_one(&s, kind, ns, name, body)
        },
    );
    (collection, one)
}

/// The objects of `kind` in `ns` whose labels match every `key=value` of `selector`.
fn list_labelled(s: &Shared, kind: Kind, ns: &str, selector: Option<&str>) -> Response {
    let wanted: Vec<(&str, &str)> = selector
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.is_empty())
        .filter_map(|t| t.split_once('='))
        .collect();
    let inner = s.inner.lock().unwrap();
    let items: Vec<Value> = inner
        .objects
        .iter()
        .filter(|((k, namespace, _), _)| *k == kind && namespace == ns)
        .filter(|(_, o)| {
            wanted
                .iter()
                .all(|(k, v)| o["metadata"]["labels"][*k].as_str() == Some(*v))
        })
        .map(|(_, o)| o.clone())
        .collect();
    Json(
        json!({"apiVersion": kind.api_version(), "kind": format!("{}List", kind.kind()),
        "metadata": {"resourceVersion": inner.rv.to_string()}, "items": items}),
    )
    .into_response()
}

/// A delete: 404 when there is none, 409 Conflict when the body's `preconditions.resourceVersion` is not the
/// stored one.
fn delete_one(s: &Shared, kind: Kind, ns: String, name: String, body: Bytes) -> Response {
    s.count(&Method::DELETE, &format!("{} {ns}/{name}", kind.plural()));
    if let Some(refused) = unavailable(s, kind) {
        return refused;
    }
    let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut inner = s.inner.lock().unwrap();
    let key = (kind, ns, name.clone());
    let Some(old) = inner.objects.get(&key).cloned() else {
        return status(404, "NotFound", &format!("{} \"{name}\" not found", kind.plural()));
    };
    let expected = &options["preconditions"]["resourceVersion"];
    if !expected.is_null() && *expected != old["metadata"]["resourceVersion"] {
        return status(
            409,
            "Conflict",
            &format!("Operation cannot be fulfilled on {} \"{name}\": the ResourceVersion in the precondition does not match", kind.plural()),
        );
    }
    inner.objects.remove(&key);
    Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})).into_response()
}

/// 422 for a ConfigMap whose `data` and `binaryData` values exceed 1 MiB, as the API server's validation answers.
fn too_large(kind: Kind, object: &Value) -> Option<Response> {
    use base64::Engine as _;
    if kind != Kind::ConfigMap {
        return None;
    }
    let text: usize = object["data"]
        .as_object()
        .map_or(0, |m| m.values().map(|v| v.as_str().map_or(0, str::len)).sum());
    let binary: usize = object["binaryData"].as_object().map_or(0, |m| {
        m.values()
            .map(|v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap_or_default())
                    .map_or(0, |b| b.len())
            })
            .sum()
    });
    (text + binary > 1024 * 1024).then(|| {
        status(
            422,
            "Invalid",
            "ConfigMap is invalid: []: Too long: must have at most 1048576 bytes",
        )
    })
}

fn create(s: &Shared, kind: Kind, ns: String, body: Bytes) -> Response {
    let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
        return status(400, "BadRequest", "the body is not JSON");
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    s.count(&Method::POST, &format!("{} {ns}/{name}", kind.plural()));
    if let Some(refused) = unavailable(s, kind) {
        return refused;
    }
    if let Some(refused) = too_large(kind, &object) {
        return refused;
    }
    let mut inner = s.inner.lock().unwrap();
    let key = (kind, ns, name.clone());
    if inner.objects.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", kind.plural()),
        );
    }
    inner.uids += 1;
    object["metadata"]["uid"] = json!(format!("uid-{}", inner.uids));
    object["apiVersion"] = json!(kind.api_version());
    object["kind"] = json!(kind.kind());
    let stored = s.store(&mut inner, key, object, "ADDED");
    (StatusCode::CREATED, Json(stored)).into_response()
}

/// A replace: 409 Conflict unless it carries the stored `resourceVersion`, as on a real server (the election's
/// safety, and replicas sharing a ConfigMap, rest on it).
fn replace(s: &Shared, kind: Kind, ns: String, name: String, body: Bytes) -> Response {
    s.count(&Method::PUT, &format!("{} {ns}/{name}", kind.plural()));
    let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
        return status(400, "BadRequest", "the body is not JSON");
    };
    if let Some(refused) = unavailable(s, kind) {
        return refused;
    }
    if let Some(refused) = too_large(kind, &object) {
        return refused;
    }
    let mut inner = s.inner.lock().unwrap();
    let key = (kind, ns, name.clone());
    let Some(old) = inner.objects.get(&key).cloned() else {
        return status(404, "NotFound", &format!("{} \"{name}\" not found", kind.plural()));
    };
    if object["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] {
        return status(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your \
                 changes to the latest version and try again",
                kind.plural()
            ),
        );
    }
    object["metadata"]["uid"] = old["metadata"]["uid"].clone();
    object["apiVersion"] = json!(kind.api_version());
    object["kind"] = json!(kind.kind());
    Json(s.store(&mut inner, key, object, "MODIFIED")).into_response()
}

/// The routes, on `shared`.
fn router(shared: Arc<Shared>) -> Router {
    let (leases, lease) = whole_object_routes(Kind::Lease);
    let (configmaps, configmap) = whole_object_routes(Kind::ConfigMap);
    Router::new()
        .route("/apis/prescale.dev/v1alpha1/predictiveautoscalers", get(pa_all))
        .route(
            "/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictiveautoscalers",
            get(pa_in),
        )
        .route(
            "/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictiveautoscalers/{name}",
            get(pa_get),
        )
        .route(
            "/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictiveautoscalers/{name}/status",
            get(pa_get).patch(pa_status),
        )
        .route("/apis/autoscaling/v2/horizontalpodautoscalers", get(hpa_all))
        .route(
            "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
            get(hpa_list).post(hpa_create),
        )
        .route(
            "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{name}",
            get(hpa_get).put(hpa_write).patch(hpa_write).delete(hpa_write),
        )
        .route("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", leases)
        .route("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}", lease)
        .route("/api/v1/namespaces/{ns}/configmaps", configmaps)
        .route("/api/v1/namespaces/{ns}/configmaps/{name}", configmap)
        .with_state(shared)
}

/// Adds `door` to `doors` (`on`) or takes it out.
fn toggle(doors: &Mutex<std::collections::BTreeSet<String>>, door: &str, on: bool) {
    let mut doors = doors.lock().unwrap();
    if on {
        doors.insert(door.to_owned());
    } else {
        doors.remove(door);
    }
}

/// True when `path` names a namespaced collection (`.../namespaces/<ns>/<resource>`): a list.
fn is_list(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    segments.len() >= 3 && segments[segments.len() - 3] == "namespaces"
}
