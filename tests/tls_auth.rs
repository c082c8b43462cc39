//! The aggregated-API security stack end to end: real TLS sockets, certificates from a test CA, a loopback stand-in of
//! kube-apiserver's TokenReview/SubjectAccessReview endpoints reached through the real kube client, and kubectl.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewStatus, UserInfo};
use k8s_openapi::api::authorization::v1::{SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus};
use k8s_openapi::api::core::v1::ConfigMap;
use prescale::apiserver::auth::{self, Auth, AuthConfig, AuthSettings, KubeReviewer, RequestHeaderConfig, User};
use prescale::apiserver::http::{self, HttpSettings};
use prescale::apiserver::tls::{self, CaPool, CaPools, CertSource, TlsSettings};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const METRIC_PATH: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/prescale_replicas";

// ---------------------------------------------------------------------------------------------------------------
// A test PKI made with rcgen.

/// A CA that issues leaf certificates.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A leaf certificate with its key, as PEM.
struct Leaf {
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn pool(&self, name: &str) -> CaPool {
        CaPool::from_pem(name, &self.pem).unwrap()
    }

    fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap()
    }

    /// A client certificate: CN, O entries and (optionally) the clientAuth EKU.
    fn client(&self, cn: &str, orgs: &[&str], client_auth_eku: bool) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        for org in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *org);
        }
        if client_auth_eku {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        }
        self.sign(params)
    }

    /// A serving certificate for localhost / 127.0.0.1.
    fn server(&self, cn: &str) -> Leaf {
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Leaf {
    fn write(&self, dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    fn identity(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        (chain, PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// A stand-in for kube-apiserver's review endpoints, speaking the real JSON.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    Allow,
    Deny,
    /// HTTP 500 with a metav1.Status.
    Fail,
    /// Never answers within any test's review timeout.
    Hang,
}

struct StandIn {
    tokens: Mutex<HashMap<String, UserInfo>>,
    access: Mutex<Answer>,
    token_calls: AtomicUsize,
    access_calls: AtomicUsize,
    last_access: Mutex<Option<SubjectAccessReviewSpec>>,
    config_map: Mutex<Option<ConfigMap>>,
    /// Wakes open watches of the ConfigMap after [`StandIn::update_config_map`].
    config_map_changed: tokio::sync::Notify,
    /// Watch requests received.
    watches: AtomicUsize,
}

impl StandIn {
    fn new(access: Answer) -> Arc<Self> {
        Arc::new(Self {
            tokens: Mutex::new(HashMap::new()),
            access: Mutex::new(access),
            token_calls: AtomicUsize::new(0),
            access_calls: AtomicUsize::new(0),
            last_access: Mutex::new(None),
            config_map: Mutex::new(None),
            config_map_changed: tokio::sync::Notify::new(),
            watches: AtomicUsize::new(0),
        })
    }

    fn token(self: &Arc<Self>, token: &str, user: &str, groups: &[&str]) -> Arc<Self> {
        let info = UserInfo {
            username: Some(user.into()),
            uid: Some(format!("uid-{user}")),
            groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            extra: None,
        };
        self.tokens.lock().unwrap().insert(token.into(), info);
        self.clone()
    }

    fn answer(&self, answer: Answer) {
        *self.access.lock().unwrap() = answer;
    }

    fn calls(&self) -> (usize, usize) {
        (
            self.token_calls.load(Ordering::SeqCst),
            self.access_calls.load(Ordering::SeqCst),
        )
    }

    fn last_access(&self) -> SubjectAccessReviewSpec {
        self.last_access
            .lock()
            .unwrap()
            .clone()
            .expect("a SubjectAccessReview was made")
    }

    /// Serves the stand-in on loopback; returns a real kube client pointed at it.
    async fn client(self: &Arc<Self>) -> kube::Client {
        let router = Router::new()
            .route("/apis/authentication.k8s.io/v1/tokenreviews", post(token_review))
            .route(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                post(access_review),
            )
            .route(
                "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication",
                get(config_map),
            )
            .route(
                "/api/v1/namespaces/kube-system/configmaps",
                get(config_map_list_or_watch),
            )
            .with_state(self.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }
}

fn failure(code: u16, message: &str) -> (StatusCode, Json<Value>) {
    let body =
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":message,"code":code});
    (StatusCode::from_u16(code).unwrap(), Json(body))
}

async fn token_review(State(s): State<Arc<StandIn>>, Json(review): Json<TokenReview>) -> Json<TokenReview> {
    s.token_calls.fetch_add(1, Ordering::SeqCst);
    let token = review.spec.token.clone().unwrap_or_default();
    let user = s.tokens.lock().unwrap().get(&token).cloned();
    let status = TokenReviewStatus {
        authenticated: Some(user.is_some()),
        error: user.is_none().then(|| "token not recognised".to_owned()),
        user,
        ..Default::default()
    };
    Json(TokenReview {
        status: Some(status),
        ..review
    })
}

async fn access_review(
    State(s): State<Arc<StandIn>>,
    Json(review): Json<SubjectAccessReview>,
) -> Result<Json<SubjectAccessReview>, (StatusCode, Json<Value>)> {
    s.access_calls.fetch_add(1, Ordering::SeqCst);
    *s.last_access.lock().unwrap() = Some(review.spec.clone());
    let answer = *s.access.lock().unwrap();
    let allowed = match answer {
        Answer::Allow => true,
        Answer::Deny => false,
        Answer::Fail => return Err(failure(500, "etcdserver: request timed out")),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            true
        }
    };
    let status = SubjectAccessReviewStatus {
        allowed,
        denied: Some(!allowed),
        ..Default::default()
    };
    Ok(Json(SubjectAccessReview {
        status: Some(status),
        ..review
    }))
}

impl StandIn {
    fn set_config_map(&self, resource_version: &str, data: &[(&str, &str)]) {
        *self.config_map.lock().unwrap() = Some(ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(auth::CONFIG_MAP_NAME.into()),
                namespace: Some(auth::CONFIG_MAP_NAMESPACE.into()),
                resource_version: Some(resource_version.into()),
                ..Default::default()
            },
            data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        });
    }

    /// Replaces the ConfigMap and sends a MODIFIED event to open watches.
    fn update_config_map(&self, resource_version: &str, data: &[(&str, &str)]) {
        self.set_config_map(resource_version, data);
        self.config_map_changed.notify_waiters();
    }
}

/// The list and watch kube's watcher makes (`?fieldSelector=metadata.name=...`, then `?watch=true`).
async fn config_map_list_or_watch(
    State(s): State<Arc<StandIn>>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        s.watches.fetch_add(1, Ordering::SeqCst);
        let events = futures::stream::unfold(s, |s| async move {
            s.config_map_changed.notified().await;
            let object = s.config_map.lock().unwrap().clone();
            let line = json!({"type": "MODIFIED", "object": object}).to_string() + "\n";
            Some((Ok::<_, std::convert::Infallible>(line), s))
        });
        return (
            [("content-type", "application/json")],
            axum::body::Body::from_stream(events),
        )
            .into_response();
    }
    let object = s.config_map.lock().unwrap().clone();
    let rv = object
        .as_ref()
        .and_then(|o| o.metadata.resource_version.clone())
        .unwrap_or_else(|| "1".into());
    Json(json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": rv}, "items": object.into_iter().collect::<Vec<_>>()}))
        .into_response()
}

async fn config_map(State(s): State<Arc<StandIn>>) -> Result<Json<ConfigMap>, (StatusCode, Json<Value>)> {
    s.config_map
        .lock()
        .unwrap()
        .clone()
        .map(Json)
        .ok_or_else(|| failure(403, "configmaps is forbidden"))
}

// ---------------------------------------------------------------------------------------------------------------
// The server under test.

/// Echoes the authenticated user and what is left of the identity headers.
async fn echo(Extension(user): Extension<User>, headers: HeaderMap) -> Json<Value> {
    let remote: Vec<&str> = headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("x-remote-"))
        .collect();
    Json(json!({
        "user": user.name,
        "uid": user.uid,
        "groups": user.groups,
        "extra": user.extra,
        "remoteHeaders": remote,
        "authorization": headers.contains_key("authorization"),
    }))
}

fn echo_router() -> Router {
    Router::new()
        .route("/echo", get(echo))
        .route(METRIC_PATH, get(echo))
        .route("/healthz", get(|| async { "ok" }))
}

struct Server {
    addr: SocketAddr,
    ca: CertificateDer<'static>,
    ca_pem: String,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tls::TlsError>>,
}

impl Server {
    /// Serves `router` wrapped in `auth` over TLS with a certificate from a fresh serving CA.
    async fn start(router: Router, auth: &Auth) -> Self {
        Self::start_with(router, auth, HttpSettings::default()).await
    }

    /// Like [`Server::start`], with the given connection timeouts.
    async fn start_with(router: Router, auth: &Auth, http: HttpSettings) -> Self {
        let serving = Ca::new("serving-ca");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = serving.server("prescale").write(dir.path());
        let settings = TlsSettings {
            certificate: CertSource::Files { cert, key },
            reload_interval: Duration::from_millis(200),
            client_cas: auth.client_cas(),
            http,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(tls::serve(listener, auth.layer(router), settings, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            ca: serving.der(),
            ca_pem: serving.pem.clone(),
            _dir: dir,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn client_config(ca: &CertificateDer<'static>, identity: Option<&Leaf>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => {
            let (chain, key) = leaf.identity();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

fn http(server: &Server, identity: Option<&Leaf>) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_config(&server.ca, identity, &[b"h2", b"http/1.1"]))
        .build()
        .unwrap()
}

async fn get_json(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("request reaches the server");
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let body = response.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

fn settings() -> AuthSettings {
    AuthSettings {
        review_timeout: Duration::from_millis(500),
        ..AuthSettings::default()
    }
}

struct Fixture {
    front_proxy_ca: Ca,
    client_ca: Ca,
    stand_in: Arc<StandIn>,
    auth: Auth,
}

/// Auth with a front-proxy CA (allowed CN `front-proxy-client`), a client CA, and the stand-in as reviewer.
async fn fixture(access: Answer, settings: AuthSettings) -> Fixture {
    tls::install_crypto_provider();
    let front_proxy_ca = Ca::new("front-proxy-ca");
    let client_ca = Ca::new("client-ca");
    let stand_in = StandIn::new(access).token("good-token", "carol", &["readers"]);
    let reviewer = Arc::new(KubeReviewer::new(stand_in.client().await));
    let config = AuthConfig {
        cas: CaPools {
            client_ca: Some(client_ca.pool("client-ca-file")),
            requestheader_ca: Some(front_proxy_ca.pool("requestheader-client-ca-file")),
        },
        request_header: RequestHeaderConfig {
            uid_headers: vec!["X-Remote-Uid".into()],
            allowed_names: vec!["front-proxy-client".into()],
            ..RequestHeaderConfig::default()
        },
    };
    let auth = Auth::new(settings, config, reviewer);
    Fixture {
        front_proxy_ca,
        client_ca,
        stand_in,
        auth,
    }
}

fn with_identity_headers(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request
        .header(
            "X-Remote-User",
            "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
        )
        .header("X-Remote-Uid", "1234")
        .header("X-Remote-Group", "system:serviceaccounts")
        .header("X-Remote-Group", "system:serviceaccounts:kube-system")
        .header("X-Remote-Extra-Authentication.kubernetes.io%2fpod-name", "hpa-0")
}

fn assert_status(body: &Value, code: u16, reason: &str) {
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["apiVersion"], "v1", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
}

// ---------------------------------------------------------------------------------------------------------------
// Front proxy (request headers).

#[tokio::test]
async fn front_proxy_identity_is_trusted_behind_its_certificate_and_headers_are_stripped() {
    let f = fixture(Answer::Allow, settings()).await;
    let server = Server::start(echo_router(), &f.auth).await;
    let proxy = f.front_proxy_ca.client("front-proxy-client", &[], true);
    let (status, body) = get_json(with_identity_headers(
        http(&server, Some(&proxy)).get(server.url(METRIC_PATH)),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["user"],
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
    );
    assert_eq!(body["uid"], "1234");
    assert_eq!(
        body["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system",
            "system:authenticated"
        ])
    );
    assert_eq!(
        body["extra"],
        json!({"authentication.kubernetes.io/pod-name": ["hpa-0"]})
    );
    assert_eq!(
        body["remoteHeaders"],
        json!([]),
        "identity headers must not reach handlers"
    );

    // The HPA's read is authorized as a namespaced list of the metric resource.
    let spec = f.stand_in.last_access();
    assert_eq!(
        spec.user.as_deref(),
        Some("system:serviceaccount:kube-system:horizontal-pod-autoscaler")
    );
    assert!(spec.groups.unwrap().contains(&"system:authenticated".to_owned()));
    let attributes = spec.resource_attributes.expect("resourceAttributes");
    assert_eq!(attributes.verb.as_deref(), Some("list"));
    assert_eq!(attributes.group.as_deref(), Some("external.metrics.k8s.io"));
    assert_eq!(attributes.version.as_deref(), Some("v1beta1"));
    assert_eq!(attributes.resource.as_deref(), Some("prescale_replicas"));
    assert_eq!(attributes.namespace.as_deref(), Some("shop"));
    assert!(spec.non_resource_attributes.is_none());
    server.stop().await;
}

#[tokio::test]
async fn identity_headers_without_a_trusted_front_proxy_certificate_are_rejected() {
    let f = fixture(Answer::Allow, settings()).await;
    let server = Server::start(echo_router(), &f.auth).await;
    let other_ca = Ca::new("front-proxy-ca");
    let cases = [
        ("no certificate", None),
        (
            "certificate from another CA with the same name",
            Some(other_ca.client("front-proxy-client", &[], true)),
        ),
        (
            "CN not in allowed names",
            Some(f.front_proxy_ca.client("someone-else", &[], true)),
        ),
        (
            "no clientAuth EKU",
            Some(f.front_proxy_ca.client("front-proxy-client", &[], false)),
        ),
        // A valid client-CA certificate authenticates its holder, but not the identities it claims in headers.
        (
            "client CA certificate",
            Some(f.client_ca.client("bob", &["system:masters"], true)),
        ),
    ];
    for (case, identity) in &cases {
        let (status, body) = get_json(with_identity_headers(
            http(&server, identity.as_ref()).get(server.url("/echo")),
        ))
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_status(&body, 401, "Unauthorized");
        assert!(
            !body.to_string().contains("horizontal-pod-autoscaler"),
            "{case}: the claimed user leaked: {body}"
        );
    }
    assert_eq!(
        f.stand_in.calls(),
        (0, 0),
        "an untrusted identity must never reach authorization"
    );

    // Without headers, a front-proxy CA certificate with a CN not allowed authenticates nobody: still 401.
    let stranger = f.front_proxy_ca.client("someone-else", &[], true);
    let (status, body) = get_json(http(&server, Some(&stranger)).get(server.url("/echo"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Client certificates.

#[tokio::test]
async fn client_certificates_authenticate_as_cn_with_o_as_groups() {
    let f = fixture(Answer::Allow, settings()).await;
    let server = Server::start(echo_router(), &f.auth).await;
    // rcgen keeps one value per attribute type, so one O here; each O of a certificate becomes a group.
    let bob = f.client_ca.client("bob", &["team-a"], true);
    let (status, body) = get_json(http(&server, Some(&bob)).get(server.url("/echo"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"], "bob");
    assert_eq!(body["groups"], json!(["team-a", "system:authenticated"]));
    let spec = f.stand_in.last_access();
    assert_eq!(spec.user.as_deref(), Some("bob"));
    let non_resource = spec
        .non_resource_attributes
        .expect("nonResourceAttributes for a non-API path");
    assert_eq!(
        (non_resource.verb.as_deref(), non_resource.path.as_deref()),
        (Some("get"), Some("/echo"))
    );

    // A certificate from a CA we don't trust is an invalid credential, not anonymity.
    let mallory = Ca::new("client-ca").client("bob", &["system:masters"], true);
    let (status, body) = get_json(http(&server, Some(&mallory)).get(server.url("/echo"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_status(&body, 401, "Unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn system_masters_and_health_paths_skip_the_review() {
    let f = fixture(Answer::Deny, settings()).await;
    let server = Server::start(echo_router(), &f.auth).await;
    let admin = f.client_ca.client("admin", &["system:masters"], true);
    let (status, body) = get_json(http(&server, Some(&admin)).get(server.url(METRIC_PATH))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response = http(&server, None).get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
    assert_eq!(f.stand_in.calls(), (0, 0));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Tokens and SubjectAccessReview through the real kube client.

#[tokio::test]
async fn bearer_tokens_are_reviewed_and_the_credential_is_dropped() {
    let f = fixture(Answer::Allow, settings()).await;
    let server = Server::start(echo_router(), &f.auth).await;
    let client = http(&server, None);
    let (status, body) = get_json(client.get(server.url("/echo")).bearer_auth("good-token")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"], "carol");
    assert_eq!(body["uid"], "uid-carol");
    assert_eq!(body["groups"], json!(["readers", "system:authenticated"]));
    assert_eq!(
        body["authorization"], false,
        "the Authorization header must not reach handlers"
    );

    let (status, body) = get_json(client.get(server.url("/echo")).bearer_auth("stolen-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_status(&body, 401, "Unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn no_credentials_is_anonymous_and_subject_to_review() {
    let f = fixture(Answer::Allow, settings()).await;
    let server = Server::start(echo_router(), &f.auth).await;
    let (status, body) = get_json(http(&server, None).get(server.url("/echo"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"], "system:anonymous");
    assert_eq!(body["groups"], json!(["system:unauthenticated"]));
    assert_eq!(f.stand_in.last_access().user.as_deref(), Some("system:anonymous"));
    server.stop().await;
}

#[tokio::test]
async fn a_denied_review_is_a_403_status_naming_group_and_resource_without_data() {
    let f = fixture(Answer::Deny, settings()).await;
    let server = Server::start(echo_router(), &f.auth).await;
    let bob = f.client_ca.client("bob", &[], true);
    let (status, body) = get_json(http(&server, Some(&bob)).get(server.url(METRIC_PATH))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_status(&body, 403, "Forbidden");
    assert_eq!(body["details"]["group"], "external.metrics.k8s.io");
    assert_eq!(body["details"]["kind"], "prescale_replicas");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("\"bob\"") && message.contains("namespace \"shop\""),
        "{message}"
    );
    assert!(
        body.get("items").is_none() && body.get("user").is_none(),
        "a denial must carry no data: {body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn review_errors_and_timeouts_fail_closed() {
    let f = fixture(Answer::Fail, settings()).await;
    let server = Server::start(echo_router(), &f.auth).await;
    let bob = f.client_ca.client("bob", &[], true);
    let client = http(&server, Some(&bob));
    let (status, body) = get_json(client.get(server.url(METRIC_PATH))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_status(&body, 500, "InternalError");
    assert!(
        !body.to_string().contains("etcdserver"),
        "backend error text leaked: {body}"
    );

    f.stand_in.answer(Answer::Hang);
    let started = std::time::Instant::now();
    let (status, body) = get_json(client.get(server.url(METRIC_PATH))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the review timeout was not applied"
    );

    // Errors are not cached: once the API server answers again, so do we.
    f.stand_in.answer(Answer::Allow);
    let (status, body) = get_json(client.get(server.url(METRIC_PATH))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn token_review_errors_fail_closed() {
    tls::install_crypto_provider();
    // A reviewer whose API server is gone: the port is closed by the time we ask.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let client = kube::Client::try_from(kube::Config::new(format!("http://{dead}").parse().unwrap())).unwrap();
    let auth = Auth::new(settings(), AuthConfig::default(), Arc::new(KubeReviewer::new(client)));
    let server = Server::start(echo_router(), &auth).await;
    let (status, body) = get_json(http(&server, None).get(server.url("/echo")).bearer_auth("any")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_status(&body, 401, "Unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn review_answers_are_cached_for_the_ttl() {
    let f = fixture(
        Answer::Allow,
        AuthSettings {
            cache_ttl: Duration::from_millis(1500),
            ..settings()
        },
    )
    .await;
    let server = Server::start(echo_router(), &f.auth).await;
    let client = http(&server, None);
    for _ in 0..5 {
        let (status, body) = get_json(client.get(server.url(METRIC_PATH)).bearer_auth("good-token")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(
        f.stand_in.calls(),
        (1, 1),
        "five requests within the TTL, one review each"
    );

    // Denials are cached too.
    f.stand_in.answer(Answer::Deny);
    let other = "/apis/external.metrics.k8s.io/v1beta1/namespaces/other/prescale_replicas";
    for _ in 0..3 {
        let (status, _) = get_json(client.get(server.url(other)).bearer_auth("good-token")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    assert_eq!(f.stand_in.calls(), (1, 2));

    tokio::time::sleep(Duration::from_millis(1700)).await;
    let (status, _) = get_json(client.get(server.url(METRIC_PATH)).bearer_auth("good-token")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "after the TTL the new answer applies");
    assert_eq!(f.stand_in.calls(), (2, 3));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Configuration from the ConfigMap, via the real kube client.

#[tokio::test]
async fn the_config_map_is_read_and_applied() {
    tls::install_crypto_provider();
    let front_proxy_ca = Ca::new("front-proxy-ca");
    let stand_in = StandIn::new(Answer::Allow);
    let client = stand_in.client().await;
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), auth::CONFIG_MAP_NAMESPACE);

    let error = auth::read_config_map(&api).await.unwrap_err();
    assert!(
        error.to_string().contains("extension-apiserver-authentication-reader"),
        "{error}"
    );

    let data = [
        ("requestheader-client-ca-file", front_proxy_ca.pem.as_str()),
        ("requestheader-username-headers", r#"["X-Remote-User"]"#),
        ("requestheader-group-headers", r#"["X-Remote-Group"]"#),
        ("requestheader-extra-headers-prefix", r#"["X-Remote-Extra-"]"#),
        ("requestheader-allowed-names", r#"["front-proxy-client"]"#),
    ];
    stand_in.set_config_map("1", &data);
    let config = auth::read_config_map(&api).await.unwrap();
    let auth = Auth::new(settings(), config, Arc::new(KubeReviewer::new(client)));
    let server = Server::start(echo_router(), &auth).await;
    let proxy = front_proxy_ca.client("front-proxy-client", &[], true);
    let (status, body) = get_json(with_identity_headers(
        http(&server, Some(&proxy)).get(server.url("/echo")),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["user"],
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
    );

    // The ConfigMap is watched: a rotated front-proxy CA applies without a restart, and the old one stops working.
    let watch = tokio::spawn(auth::watch_config_map(
        api,
        auth.clone(),
        auth::ConfigOverrides::default(),
    ));
    let rotated_ca = Ca::new("front-proxy-ca-2");
    let rotated_proxy = rotated_ca.client("front-proxy-client", &[], true);
    let mut rotated = data;
    rotated[0].1 = rotated_ca.pem.as_str();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // Change the ConfigMap only once the watcher has listed it and opened its watch, so the MODIFIED event is
    // what carries the change.
    while stand_in.watches.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher never opened a watch"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    loop {
        // Repeat the update until the watch (started concurrently) has seen one.
        stand_in.update_config_map("2", &rotated);
        let request = with_identity_headers(http(&server, Some(&rotated_proxy)).get(server.url("/echo")));
        if get_json(request).await.0 == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated CA was not applied from the watch"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = get_json(with_identity_headers(
        http(&server, Some(&proxy)).get(server.url("/echo")),
    ))
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the replaced CA must no longer be trusted"
    );
    watch.abort();
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// TLS: ALPN and certificate reload.

#[tokio::test]
async fn http2_and_http1_are_negotiated_by_alpn() {
    let f = fixture(Answer::Allow, settings()).await;
    let server = Server::start(echo_router(), &f.auth).await;
    let h2 = http(&server, None).get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    let h1 = reqwest::Client::builder()
        .use_preconfigured_tls(client_config(&server.ca, None, &[b"http/1.1"]))
        .http1_only()
        .build()
        .unwrap()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    assert_eq!(h1.text().await.unwrap(), "ok");
    server.stop().await;
}

/// The CN of the certificate the server presents in a fresh handshake.
async fn served_cn(addr: SocketAddr, ca: &CertificateDer<'static>) -> String {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca, None, &[b"http/1.1"])));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("handshake");
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    cn
}

#[tokio::test]
async fn the_serving_certificate_is_reloaded_and_a_broken_one_is_ignored() {
    tls::install_crypto_provider();
    let ca = Ca::new("serving-ca");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.server("first").write(dir.path());
    let auth = Auth::new(
        settings(),
        AuthConfig::default(),
        Arc::new(KubeReviewer::new(StandIn::new(Answer::Allow).client().await)),
    );
    let settings = TlsSettings {
        certificate: CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        reload_interval: Duration::from_millis(100),
        client_cas: auth.client_cas(),
        http: HttpSettings::default(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(tls::serve(listener, auth.layer(echo_router()), settings, async {
        let _ = stopped.await;
    }));
    assert_eq!(served_cn(addr, &ca.der()).await, "first");

    ca.server("second").write(dir.path());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while served_cn(addr, &ca.der()).await != "second" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A half-written or mismatched pair is rejected and the last good certificate stays.
    std::fs::write(&cert, ca.server("third").cert_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served_cn(addr, &ca.der()).await, "second");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served_cn(addr, &ca.der()).await, "second");

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_certificate_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.crt");
    let settings = TlsSettings {
        certificate: CertSource::Files {
            cert: missing.clone(),
            key: dir.path().join("absent.key"),
        },
        reload_interval: Duration::from_secs(1),
        client_cas: Default::default(),
        http: HttpSettings::default(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = tls::serve(listener, Router::new(), settings, std::future::pending())
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&missing.display().to_string()), "{error}");
}

// ---------------------------------------------------------------------------------------------------------------
// Real clients: kubectl with a client-certificate kubeconfig, against the real external metrics router.

fn kubectl() -> std::path::PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("kubectl"))
        .find(|candidate| candidate.is_file());
    found.expect("kubectl not found on PATH: install it (e.g. `apt-get install -y kubectl` from the Kubernetes apt repository, or the `kubernetes-client` package)")
}

#[tokio::test]
async fn kubectl_reads_discovery_over_tls_with_a_client_certificate() {
    let kubectl = kubectl();
    let f = fixture(Answer::Allow, settings()).await;
    let state = prescale::apiserver::api::ApiState {
        store: Arc::new(prescale::store::PlanStore::new()),
        clock: prescale::clock::Clock::system(),
    };
    let server = Server::start(prescale::apiserver::api::router(state), &f.auth).await;
    let dir = tempfile::tempdir().unwrap();
    let user = f.client_ca.client("dave", &["ops"], true);
    std::fs::write(dir.path().join("ca.crt"), &server.ca_pem).unwrap();
    std::fs::write(dir.path().join("user.crt"), &user.cert_pem).unwrap();
    std::fs::write(dir.path().join("user.key"), &user.key_pem).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
             users:\n- name: dave\n  user:\n    client-certificate: {}\n    client-key: {}\n\
             contexts:\n- name: test\n  context: {{cluster: test, user: dave}}\ncurrent-context: test\n",
            server.url(""),
            dir.path().join("ca.crt").display(),
            dir.path().join("user.crt").display(),
            dir.path().join("user.key").display(),
        ),
    )
    .unwrap();
    let output = tokio::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "--raw", "/apis/external.metrics.k8s.io/v1beta1"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let discovery: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(discovery["kind"], "APIResourceList", "{discovery}");
    assert_eq!(discovery["groupVersion"], "external.metrics.k8s.io/v1beta1");
    let spec = f.stand_in.last_access();
    assert_eq!(
        spec.user.as_deref(),
        Some("dave"),
        "kubectl's certificate identity was reviewed"
    );
    assert_eq!(spec.groups.unwrap(), ["ops", "system:authenticated"]);

    // The same read by a user the cluster denies: kubectl shows our 403 Status message.
    f.stand_in.answer(Answer::Deny);
    let output = tokio::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "--raw", METRIC_PATH])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("forbidden") && stderr.contains("dave"), "{stderr}");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Request limits and connection timeouts: the same on HTTP/1.1 and HTTP/2, refusals as metav1.Status.

const BOTH: [reqwest::Version; 2] = [reqwest::Version::HTTP_11, reqwest::Version::HTTP_2];

/// A client that offers only `version` by ALPN.
fn http_only(server: &Server, identity: Option<&Leaf>, version: reqwest::Version) -> reqwest::Client {
    let builder = reqwest::Client::builder();
    let builder = if version == reqwest::Version::HTTP_2 {
        builder.use_preconfigured_tls(client_config(&server.ca, identity, &[b"h2"]))
    } else {
        builder
            .use_preconfigured_tls(client_config(&server.ca, identity, &[b"http/1.1"]))
            .http1_only()
    };
    builder.build().unwrap()
}

/// Sends `request` over `version` and returns the code and the body, which must be a JSON Status.
async fn refused(request: reqwest::RequestBuilder, version: reqwest::Version) -> (u16, Value) {
    let response = request.send().await.expect("an answer");
    assert_eq!(response.version(), version);
    let code = response.status().as_u16();
    let content_type = response.headers().get("content-type").cloned();
    let body = response.text().await.unwrap();
    assert_eq!(
        content_type.as_ref().map(|v| v.to_str().unwrap()),
        Some("application/json"),
        "{version:?} {code}: {body:?}"
    );
    let body: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{version:?} {code}: not JSON ({e}): {body:?}"));
    (code, body)
}

#[tokio::test]
async fn a_front_proxy_sending_97_groups_gets_a_431_status_on_http1_and_http2() {
    let f = fixture(Answer::Allow, settings()).await;
    let server = Server::start(echo_router(), &f.auth).await;
    let proxy = f.front_proxy_ca.client("front-proxy-client", &[], true);
    for version in BOTH {
        let client = http_only(&server, Some(&proxy), version);
        let with_groups = |n: usize| {
            let mut request = client.get(server.url("/echo")).header("X-Remote-User", "alice");
            for i in 0..n {
                request = request.header("X-Remote-Group", format!("group-{i}"));
            }
            request
        };
        let (code, body) = refused(with_groups(97), version).await;
        assert_eq!(code, 431, "{version:?}: {body}");
        assert_status(&body, 431, "BadRequest");
        assert!(body["message"].as_str().unwrap().contains("header fields"), "{body}");

        let (code, body) = get_json(with_groups(80)).await;
        assert_eq!(code, StatusCode::OK, "{version:?}: {body}");
        assert_eq!(body["groups"].as_array().unwrap().len(), 81, "{body}");

        let padded = client
            .get(server.url("/healthz"))
            .header("X-Padding", "x".repeat(40 * 1024));
        let (code, body) = refused(padded, version).await;
        assert_eq!(code, 431, "{version:?}: {body}");
        assert_status(&body, 431, "BadRequest");
    }
    // Past hyper's own HTTP/1 read buffer the transport refuses the head itself, still with a Status body.
    let mut huge = http_only(&server, None, reqwest::Version::HTTP_11).get(server.url("/healthz"));
    for i in 0..8 {
        huge = huge.header(format!("x-padding-{i}"), "x".repeat(20 * 1024));
    }
    let (code, body) = refused(huge, reqwest::Version::HTTP_11).await;
    assert_eq!(code, 431, "{body}");
    assert_status(&body, 431, "BadRequest");
    server.stop().await;
}

#[tokio::test]
async fn an_overlong_uri_is_a_414_status_and_a_large_body_a_413_on_http1_and_http2() {
    let f = fixture(Answer::Allow, settings()).await;
    let server = Server::start(echo_router(), &f.auth).await;
    let long = format!("{METRIC_PATH}?labelSelector={}", "a".repeat(62 * 1024));
    for version in BOTH {
        let client = http_only(&server, None, version);
        let (code, body) = refused(client.get(server.url(&long)), version).await;
        assert_eq!(code, 414, "{version:?}: {body}");
        assert_status(&body, 414, "BadRequest");
        assert!(body.to_string().len() < 2048, "{body}");
        let upload = client.post(server.url(METRIC_PATH)).body(vec![b'x'; 100 * 1024]);
        let (code, body) = refused(upload, version).await;
        assert_eq!(code, 413, "{version:?}: {body}");
        assert_status(&body, 413, "RequestEntityTooLarge");
    }
    // Past what hyper holds (65 534 bytes) hyper refuses the head itself on HTTP/1.1, still with a Status body.
    let head = format!(
        "GET {METRIC_PATH}?{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let answer = raw_http1(&server, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 414 "), "{answer}");
    assert!(answer.contains("content-type: application/json\r\n"), "{answer}");
    let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_status(&body, 414, "BadRequest");
    server.stop().await;
}

/// Writes `bytes` on a fresh HTTP/1.1 TLS connection and reads until the server closes it.
async fn raw_http1(server: &Server, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&server.ca, None, &[b"http/1.1"])));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    // The server may answer and close before it has read everything.
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Waits for the peer to close `stream`, reading whatever it sends; returns how long that took.
async fn closed_after(stream: &mut (impl tokio::io::AsyncRead + Unpin), limit: Duration) -> Duration {
    use tokio::io::AsyncReadExt;
    let start = tokio::time::Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(start + limit, stream.read(&mut buf)).await {
            Err(_) => panic!("the connection is still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

fn quick_timeouts() -> HttpSettings {
    HttpSettings {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        keep_alive_interval: Duration::from_secs(30),
        keep_alive_timeout: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn slow_request_heads_and_idle_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let f = fixture(Answer::Allow, settings()).await;
    let server = Server::start_with(echo_router(), &f.auth, quick_timeouts()).await;
    // A partial HTTP/1.1 head, and an HTTP/2 client that never finishes its preface.
    let partial: [(&[u8], &[u8]); 2] = [
        (b"http/1.1", b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: "),
        (b"h2", b"PRI * HTTP/2.0\r\n"),
    ];
    for (alpn, bytes) in partial {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&server.ca, None, &[alpn])));
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut stream = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("handshake");
        stream.write_all(bytes).await.unwrap();
        stream.flush().await.unwrap();
        let took = closed_after(&mut stream, Duration::from_secs(5)).await;
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(4),
            "{}: closed after {took:?}",
            String::from_utf8_lossy(alpn)
        );
    }
    // An HTTP/2 connection that served a request and then idles is closed after the idle timeout: the preface, an
    // empty SETTINGS frame and `GET /healthz` as one HEADERS frame (HPACK: :method GET, :scheme https, then :path
    // as a literal), nothing after.
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&server.ca, None, &[b"h2"])));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let block = [&[0x82u8, 0x87, 0x04, 8][..], b"/healthz"].concat();
    bytes.extend([0, 0, block.len() as u8, 1, 0x5, 0, 0, 0, 1]);
    bytes.extend(&block);
    stream.write_all(&bytes).await.unwrap();
    stream.flush().await.unwrap();
    let took = closed_after(&mut stream, Duration::from_secs(6)).await;
    assert!(took >= Duration::from_millis(1800), "closed after {took:?}");
    server.stop().await;
}

#[tokio::test]
async fn the_plain_http_listener_closes_slow_request_heads_too() {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(http::serve_plain(listener, echo_router(), quick_timeouts(), async {
        let _ = stopped.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let took = closed_after(&mut stream, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_kubectl_line_printed_for_an_authenticated_server_works_as_pasted() {
    let f = fixture(Answer::Allow, settings()).await;
    let state = prescale::apiserver::api::ApiState {
        store: Arc::new(prescale::store::PlanStore::new()),
        clock: prescale::clock::Clock::system(),
    };
    let server = Server::start(prescale::apiserver::api::router(state), &f.auth).await;
    let (line, note) = prescale::app::kubectl_get_raw(
        &server.url(""),
        "/apis/external.metrics.k8s.io/v1beta1",
        prescale::app::ApiAccess::TlsWithAuth,
    );
    assert!(note.is_some_and(|n| n.contains("token")), "{note:?}");
    // `kubectl create token …` answers with a token the stand-in TokenReview accepts; the rest is the real kubectl.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(dir.path().join("home")).unwrap();
    let shim = bin.join("kubectl");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nif [ \"$1\" = create ] && [ \"$2\" = token ]; then echo good-token; exit 0; fi\nexec '{}' \"$@\"\n",
            kubectl().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let run = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&line)
        .env("PATH", path)
        .env("HOME", dir.path().join("home"))
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("kubectl finished (it did not wait for input)")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = format!("{}{stderr}", String::from_utf8_lossy(&output.stdout));
    assert!(!said.contains("Username"), "kubectl prompted: {said}");
    assert!(output.status.success(), "{line}\n{stderr}");
    let discovery: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(discovery["kind"], "APIResourceList", "{discovery}");
    assert_eq!(f.stand_in.last_access().user.as_deref(), Some("carol"));
    server.stop().await;
}
