//! Authentication and authorization of an aggregated API server, delegated to kube-apiserver.
//!
//! Authenticators run in kube-apiserver's order; the first that recognises the request decides:
//! 1. front-proxy request headers (`X-Remote-User`, `X-Remote-Group`, `X-Remote-Extra-*`), trusted only when the
//!    connection's client certificate verifies against the requestheader CA, lists the clientAuth EKU and (when
//!    allowed names are configured) has an allowed CN; the headers are stripped afterwards;
//! 2. a client certificate verifying against the client CA: user = CN, groups = O;
//! 3. a bearer token, via TokenReview (cached).
//!
//! Every authenticated user gets `system:authenticated`. A request with no credentials is `system:anonymous`; one
//! with credentials that don't verify gets 401. Identity headers that arrive without a trusted front-proxy
//! certificate are also answered 401: kube-apiserver would silently ignore them, but nobody but an attacker or a
//! misconfigured proxy sends them, and a loud failure is the safer answer.
//!
//! Authorization asks SubjectAccessReview (allow and deny cached), except for the always-allowed paths (probes) and
//! groups (`system:masters`). Errors and timeouts fail closed. Denials are a 403 metav1.Status naming the group and
//! resource, never data.

mod config;
mod review;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use k8s_openapi::api::authentication::v1::TokenReviewSpec;
use k8s_openapi::api::authorization::v1::{NonResourceAttributes, ResourceAttributes, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusDetails;
use kube::Api;
use tracing::{debug, warn};

pub use config::{
    parse_config_map, read_config_map, watch_config_map, AuthArgs, AuthConfig, ConfigOverrides, RequestHeaderConfig,
    CONFIG_MAP_NAME, CONFIG_MAP_NAMESPACE,
};
pub use review::{BoxFuture, KubeReviewer, ReviewError, Reviewer};

use crate::apiserver::status::{self, echo};
use crate::apiserver::tls::{ClientCas, PeerIdentity, TlsError};
use review::TtlCache;

/// The name kube-apiserver gives unauthenticated requests.
pub const ANONYMOUS: &str = "system:anonymous";
/// The group of unauthenticated requests.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The group every authenticated user is added to.
pub const AUTHENTICATED: &str = "system:authenticated";

/// Errors of setting up authentication.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A CA bundle (file or ConfigMap key) is unusable.
    #[error(transparent)]
    Ca(TlsError),
    /// A list value in the ConfigMap is not a JSON string array.
    #[error("{CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME} key {key}: expected a JSON string array like [\"X-Remote-User\"]: {source}")]
    ConfigMapList {
        /// The ConfigMap key.
        key: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The ConfigMap could not be read.
    #[error(
        "reading {CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME}: {source}; bind the Role \
         'extension-apiserver-authentication-reader' in kube-system to this ServiceAccount (see apiservice/), \
         or pass --authentication-skip-lookup with --client-ca-file/--requestheader-client-ca-file"
    )]
    ConfigMapRead {
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// Settings that don't come from the ConfigMap.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Audiences for TokenReview; empty means the API server's own.
    pub token_audiences: Vec<String>,
    /// How long review answers are reused.
    pub cache_ttl: Duration,
    /// How long to wait for a review before failing closed.
    pub review_timeout: Duration,
    /// Paths served without authentication or authorization (exact match).
    pub always_allow_paths: Vec<String>,
    /// Groups authorized without a review.
    pub always_allow_groups: Vec<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            token_audiences: vec![],
            cache_ttl: Duration::from_secs(10),
            review_timeout: Duration::from_secs(5),
            always_allow_paths: vec!["/healthz".into(), "/livez".into(), "/readyz".into()],
            always_allow_groups: vec!["system:masters".into()],
        }
    }
}

/// An authenticated (or anonymous) caller, added to each request's extensions for handlers that care.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct User {
    /// User name.
    pub name: String,
    /// UID, when the authenticator knows one.
    pub uid: Option<String>,
    /// Groups, including `system:authenticated` or `system:unauthenticated`.
    pub groups: Vec<String>,
    /// Extra attributes (keys lowercased).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    fn anonymous() -> Self {
        Self {
            name: ANONYMOUS.into(),
            groups: vec![UNAUTHENTICATED.into()],
            ..Self::default()
        }
    }

    fn authenticated(mut self) -> Self {
        if !self.groups.iter().any(|g| g == AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.into());
        }
        self
    }
}

/// What a request asks to do, in SubjectAccessReview terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attributes {
    /// An API resource request.
    Resource {
        /// get, list, watch, create, update, patch, delete, deletecollection.
        verb: String,
        /// API group ("" for the core group).
        group: String,
        /// API version.
        version: String,
        /// Resource (for us: the metric name).
        resource: String,
        /// Subresource, if any.
        subresource: String,
        /// Namespace, empty for cluster scope.
        namespace: String,
        /// Object name, empty for collections.
        name: String,
    },
    /// Anything else (discovery, OpenAPI, /metrics).
    NonResource {
        /// Lowercased HTTP method.
        verb: String,
        /// Request path.
        path: String,
    },
}

impl Attributes {
    /// Classifies a request the way kube-apiserver's RequestInfo does for the paths we serve.
    pub fn of(method: &Method, path: &str, query: Option<&str>) -> Self {
        let non_resource = || Self::NonResource {
            verb: method.as_str().to_ascii_lowercase(),
            path: path.to_owned(),
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match parts.as_slice() {
            ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
            ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
            _ => return non_resource(),
        };
        let (namespace, rest) = match rest {
            ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (*namespace, rest),
            // `/namespaces/x` alone is the namespace object itself.
            ["namespaces", namespace] => ("", &["namespaces", namespace][..]),
            _ => ("", rest),
        };
        let (resource, name, subresource) = match rest {
            [resource] => (*resource, "", ""),
            [resource, name] => (*resource, *name, ""),
            [resource, name, subresource, ..] => (*resource, *name, *subresource),
            [] => return non_resource(),
        };
        let watch = query.is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
        });
        let verb = match *method {
            Method::GET | Method::HEAD if watch => "watch",
            Method::GET | Method::HEAD if name.is_empty() => "list",
            Method::GET | Method::HEAD => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if name.is_empty() => "deletecollection",
            Method::DELETE => "delete",
            _ => return non_resource(),
        };
        Self::Resource {
            verb: verb.into(),
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn review_spec(&self, user: &User) -> SubjectAccessReviewSpec {
        let mut spec = SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            uid: user.uid.clone(),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            ..Default::default()
        };
        let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
        match self {
            Self::Resource {
                verb,
                group,
                version,
                resource,
                subresource,
                namespace,
                name,
            } => {
                spec.resource_attributes = Some(ResourceAttributes {
                    verb: Some(verb.clone()),
                    group: Some(group.clone()),
                    version: Some(version.clone()),
                    resource: Some(resource.clone()),
                    subresource: non_empty(subresource),
                    namespace: non_empty(namespace),
                    name: non_empty(name),
                    ..Default::default()
                })
            }
            Self::NonResource { verb, path } => {
                spec.non_resource_attributes = Some(NonResourceAttributes {
                    verb: Some(verb.clone()),
                    path: Some(path.clone()),
                })
            }
        }
        spec
    }

    fn forbidden_message(&self, user: &User) -> String {
        match self {
            Self::Resource {
                verb,
                group,
                resource,
                namespace,
                ..
            } => {
                // Namespace and resource come from the request path: repeat them only in part.
                let (resource, namespace) = (echo(resource), echo(namespace));
                let scope = if namespace.is_empty() {
                    "at the cluster scope".to_owned()
                } else {
                    format!("in the namespace \"{namespace}\"")
                };
                format!(
                    "{resource}.{group} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}",
                    user.name
                )
            }
            Self::NonResource { verb, path } => {
                format!(
                    "forbidden: User \"{}\" cannot {verb} path \"{}\"",
                    user.name,
                    echo(path)
                )
            }
        }
    }
}

/// The outcome of a TokenReview, as cached.
#[derive(Debug, Clone)]
enum TokenOutcome {
    Authenticated(User),
    Rejected,
}

/// Request authentication and authorization, shared by all connections. Cheap to clone.
#[derive(Clone)]
pub struct Auth(Arc<Inner>);

struct Inner {
    settings: AuthSettings,
    client_cas: ClientCas,
    request_header: RwLock<Arc<RequestHeaderConfig>>,
    reviewer: Arc<dyn Reviewer>,
    tokens: TtlCache<String, TokenOutcome>,
    decisions: TtlCache<(User, Attributes), bool>,
}

impl Auth {
    /// Authentication with `config` in force, delegating reviews to `reviewer`.
    pub fn new(settings: AuthSettings, config: AuthConfig, reviewer: Arc<dyn Reviewer>) -> Self {
        let AuthConfig { cas, request_header } = config;
        Self(Arc::new(Inner {
            tokens: TtlCache::new(settings.cache_ttl),
            decisions: TtlCache::new(settings.cache_ttl),
            settings,
            client_cas: ClientCas::new(cas),
            request_header: RwLock::new(Arc::new(request_header)),
            reviewer,
        }))
    }

    /// The CA handle to pass to [`crate::apiserver::tls::TlsSettings`], so TLS verifies against the CAs in force.
    pub fn client_cas(&self) -> ClientCas {
        self.0.client_cas.clone()
    }

    /// Puts `config` in force for new connections and requests; returns true when anything changed.
    pub fn apply(&self, config: AuthConfig) -> bool {
        let AuthConfig { cas, request_header } = config;
        let cas_changed = self.0.client_cas.set(cas);
        let mut current = self.0.request_header.write().unwrap_or_else(|e| e.into_inner());
        let headers_changed = **current != request_header;
        if headers_changed {
            *current = Arc::new(request_header);
        }
        cas_changed || headers_changed
    }

    /// Wraps `router` so every request is authenticated and authorized first.
    pub fn layer(&self, router: Router) -> Router {
        Router::new()
            .fallback_service(router)
            .layer(axum::middleware::from_fn_with_state(self.clone(), middleware))
    }

    fn request_header(&self) -> Arc<RequestHeaderConfig> {
        self.0.request_header.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Identifies the caller. `Err` is the 401 message.
    async fn authenticate(&self, headers: &mut HeaderMap, peer: Option<&PeerIdentity>) -> Result<User, &'static str> {
        let config = self.request_header();
        let identity_headers = identity_header_names(headers, &config);
        let proxy_trusted = peer.is_some_and(|p| p.requestheader_ca_verified && front_proxy_allowed(p, &config));
        if proxy_trusted {
            let user = user_from_headers(headers, &config);
            strip(headers, &identity_headers);
            if let Some(user) = user {
                return Ok(user.authenticated());
            }
        } else if !identity_headers.is_empty() {
            return Err("identity headers are only accepted from the authenticating front proxy");
        }

        let mut bad_certificate = false;
        if let Some(peer) = peer.filter(|p| p.presented_certificate()) {
            if peer.client_ca_verified {
                if let Some(user) = user_from_certificate(peer) {
                    return Ok(user.authenticated());
                }
            }
            // A certificate that is neither a client certificate nor the trusted front proxy's is an invalid
            // credential (kube-apiserver's x509 authenticator errors too); the front proxy without a user header
            // is simply anonymous.
            bad_certificate = !proxy_trusted;
        }

        if let Some(token) = bearer_token(headers) {
            return match self.review_token(token).await {
                Ok(TokenOutcome::Authenticated(user)) => Ok(user.authenticated()),
                Ok(TokenOutcome::Rejected) => Err("invalid bearer token"),
                Err(error) => {
                    warn!(%error, "token review failed; rejecting the request");
                    Err("the bearer token could not be verified")
                }
            };
        }
        if bad_certificate {
            return Err("client certificate is not signed by a trusted CA for client authentication");
        }
        Ok(User::anonymous())
    }

    async fn review_token(&self, token: String) -> Result<TokenOutcome, ReviewError> {
        if let Some(outcome) = self.0.tokens.get(&token) {
            return Ok(outcome);
        }
        let spec = TokenReviewSpec {
            token: Some(token.clone()),
            audiences: (!self.0.settings.token_audiences.is_empty()).then(|| self.0.settings.token_audiences.clone()),
        };
        let after = self.0.settings.review_timeout;
        let status = tokio::time::timeout(after, self.0.reviewer.review_token(spec))
            .await
            .map_err(|_| ReviewError::Timeout {
                kind: "TokenReview",
                after,
            })??;
        let outcome = match (status.authenticated, status.user) {
            (Some(true), Some(info)) if info.username.as_deref().is_some_and(|n| !n.is_empty()) => {
                TokenOutcome::Authenticated(User {
                    name: info.username.unwrap_or_default(),
                    uid: info.uid.filter(|u| !u.is_empty()),
                    groups: info.groups.unwrap_or_default(),
                    extra: info.extra.unwrap_or_default(),
                })
            }
            _ => {
                debug!(error = ?status.error, "token rejected by TokenReview");
                TokenOutcome::Rejected
            }
        };
        self.0.tokens.insert(token, outcome.clone());
        Ok(outcome)
    }

    /// Decides whether `user` may do `attributes`.
    async fn authorize(&self, user: &User, attributes: &Attributes) -> Result<bool, ReviewError> {
        if user
            .groups
            .iter()
            .any(|g| self.0.settings.always_allow_groups.contains(g))
        {
            return Ok(true);
        }
        let key = (user.clone(), attributes.clone());
        if let Some(allowed) = self.0.decisions.get(&key) {
            return Ok(allowed);
        }
        let after = self.0.settings.review_timeout;
        let status = tokio::time::timeout(after, self.0.reviewer.review_access(attributes.review_spec(user)))
            .await
            .map_err(|_| ReviewError::Timeout {
                kind: "SubjectAccessReview",
                after,
            })??;
        let allowed = status.allowed && !status.denied.unwrap_or(false);
        self.0.decisions.insert(key, allowed);
        Ok(allowed)
    }
}

/// Builds [`Auth`] from flags for a cluster: reads the ConfigMap (unless lookup is skipped) and returns a task
/// that keeps watching it. Fails when the ConfigMap cannot be read, naming the RBAC that is missing.
pub async fn from_args(
    args: &AuthArgs,
    client: kube::Client,
) -> Result<(Auth, Option<tokio::task::JoinHandle<()>>), AuthError> {
    let overrides = args.overrides()?;
    let reviewer = Arc::new(KubeReviewer::new(client.clone()));
    if args.authentication_skip_lookup {
        let config = overrides.apply(AuthConfig::default());
        return Ok((Auth::new(args.settings(), config, reviewer), None));
    }
    let api: Api<ConfigMap> = Api::namespaced(client, CONFIG_MAP_NAMESPACE);
    let config = overrides.apply(read_config_map(&api).await?);
    let auth = Auth::new(args.settings(), config, reviewer);
    let watch = tokio::spawn(watch_config_map(api, auth.clone(), overrides));
    Ok((auth, Some(watch)))
}

async fn middleware(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if auth.0.settings.always_allow_paths.contains(&path) {
        return next.run(request).await;
    }
    let peer = request.extensions().get::<PeerIdentity>().cloned();
    let user = match auth.authenticate(request.headers_mut(), peer.as_ref()).await {
        Ok(user) => user,
        Err(message) => {
            debug!(%path, remote = ?peer.map(|p| p.remote_addr), message, "authentication failed");
            return status_response(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized", None);
        }
    };
    // kube-apiserver drops the credential once it has been used; handlers never need it.
    request.headers_mut().remove(header::AUTHORIZATION);
    let attributes = Attributes::of(request.method(), &path, request.uri().query());
    match auth.authorize(&user, &attributes).await {
        Ok(true) => {
            request.extensions_mut().insert(user);
            next.run(request).await
        }
        Ok(false) => {
            debug!(user = %user.name, ?attributes, "access denied");
            let details = match &attributes {
                Attributes::Resource {
                    group, resource, name, ..
                } => StatusDetails {
                    group: Some(echo(group).into_owned()),
                    kind: Some(echo(resource).into_owned()),
                    name: (!name.is_empty()).then(|| echo(name).into_owned()),
                    ..Default::default()
                },
                Attributes::NonResource { .. } => StatusDetails {
                    group: Some(String::new()),
                    kind: Some(String::new()),
                    ..Default::default()
                },
            };
            status_response(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &attributes.forbidden_message(&user),
                Some(details),
            )
        }
        Err(error) => {
            warn!(%error, user = %user.name, "authorization review failed; denying the request");
            status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "Internal error occurred: the request could not be authorized",
                None,
            )
        }
    }
}

/// A metav1.Status error response.
fn status_response(code: StatusCode, reason: &str, message: &str, details: Option<StatusDetails>) -> Response {
    status::failure(code, reason, message, details)
}

/// Names of the identity headers present in `headers`.
fn identity_header_names(headers: &HeaderMap, config: &RequestHeaderConfig) -> Vec<header::HeaderName> {
    let listed = |name: &str| {
        let lower = name.to_ascii_lowercase();
        config
            .username_headers
            .iter()
            .chain(&config.uid_headers)
            .chain(&config.group_headers)
            .any(|h| h.eq_ignore_ascii_case(&lower))
            || config
                .extra_headers_prefix
                .iter()
                .any(|p| lower.starts_with(&p.to_ascii_lowercase()))
    };
    let mut names: Vec<_> = headers.keys().filter(|name| listed(name.as_str())).cloned().collect();
    names.dedup();
    names
}

fn strip(headers: &mut HeaderMap, names: &[header::HeaderName]) {
    for name in names {
        headers.remove(name);
    }
}

/// The front-proxy certificate has the clientAuth EKU and, when names are configured, an allowed CN.
fn front_proxy_allowed(peer: &PeerIdentity, config: &RequestHeaderConfig) -> bool {
    let Some(leaf) = peer.chain.first() else { return false };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
        return false;
    };
    let client_auth = matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth);
    if !client_auth {
        warn!(remote = %peer.remote_addr, "front-proxy certificate lacks the clientAuth extended key usage; not trusting its headers");
        return false;
    }
    if config.allowed_names.is_empty() {
        return true;
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default();
    let allowed = config.allowed_names.iter().any(|n| n == cn);
    if !allowed {
        warn!(remote = %peer.remote_addr, cn, "front-proxy certificate CN is not in requestheader-allowed-names; not trusting its headers");
    }
    allowed
}

fn header_values<'a>(headers: &'a HeaderMap, names: &'a [String]) -> impl Iterator<Item = String> + 'a {
    names.iter().flat_map(move |name| {
        headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
    })
}

/// The user asserted by the front proxy; None when no user name header is set.
fn user_from_headers(headers: &HeaderMap, config: &RequestHeaderConfig) -> Option<User> {
    let name = header_values(headers, &config.username_headers).find(|v| !v.is_empty())?;
    let uid = header_values(headers, &config.uid_headers).find(|v| !v.is_empty());
    let groups = header_values(headers, &config.group_headers).collect();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (header_name, value) in headers {
        let lower = header_name.as_str();
        let Some(prefix) = config
            .extra_headers_prefix
            .iter()
            .find(|p| lower.starts_with(&p.to_ascii_lowercase()))
        else {
            continue;
        };
        let key = percent_encoding::percent_decode_str(&lower[prefix.len()..])
            .decode_utf8_lossy()
            .to_lowercase();
        if let Ok(value) = value.to_str() {
            extra.entry(key).or_default().push(value.to_owned());
        }
    }
    Some(User {
        name,
        uid,
        groups,
        extra,
    })
}

fn user_from_certificate(peer: &PeerIdentity) -> Option<User> {
    let leaf = peer.chain.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let name = cert.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
    if name.is_empty() {
        return None;
    }
    let groups = cert
        .subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_owned)
        .collect();
    Some(User {
        name,
        groups,
        ..User::default()
    })
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_hpa_metric_read_is_a_namespaced_list() {
        let attributes = Attributes::of(
            &Method::GET,
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/prescale_replicas",
            Some("labelSelector=workload%3Dweb"),
        );
        assert_eq!(
            attributes,
            Attributes::Resource {
                verb: "list".into(),
                group: "external.metrics.k8s.io".into(),
                version: "v1beta1".into(),
                resource: "prescale_replicas".into(),
                subresource: String::new(),
                namespace: "shop".into(),
                name: String::new(),
            }
        );
    }

    #[test]
    fn discovery_is_a_non_resource_get() {
        let attributes = Attributes::of(&Method::GET, "/apis/external.metrics.k8s.io/v1beta1", None);
        assert_eq!(
            attributes,
            Attributes::NonResource {
                verb: "get".into(),
                path: "/apis/external.metrics.k8s.io/v1beta1".into()
            }
        );
        assert!(matches!(
            Attributes::of(&Method::GET, "/openapi/v2", None),
            Attributes::NonResource { .. }
        ));
    }

    #[test]
    fn a_named_get_and_a_watch_have_their_verbs() {
        let get = Attributes::of(&Method::GET, "/api/v1/namespaces/a/pods/p", None);
        assert!(matches!(get, Attributes::Resource { ref verb, ref name, .. } if verb == "get" && name == "p"));
        let watch = Attributes::of(&Method::GET, "/api/v1/namespaces/a/pods", Some("watch=true"));
        assert!(matches!(watch, Attributes::Resource { ref verb, .. } if verb == "watch"));
    }

    #[test]
    fn bearer_tokens_need_the_scheme() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer_token(&headers).as_deref(), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn extra_keys_are_lowercased_and_unescaped() {
        let mut headers = HeaderMap::new();
        headers.insert("x-remote-user", HeaderValue::from_static("alice"));
        headers.append("x-remote-group", HeaderValue::from_static("a"));
        headers.append("x-remote-group", HeaderValue::from_static("b"));
        headers.insert("x-remote-extra-Scopes%2Fread", HeaderValue::from_static("yes"));
        let user = user_from_headers(&headers, &RequestHeaderConfig::default()).unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, ["a", "b"]);
        assert_eq!(user.extra.get("scopes/read").unwrap(), &["yes"]);
    }

    #[test]
    fn status_bodies_are_metav1_status() {
        let response = status_response(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized", None);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
