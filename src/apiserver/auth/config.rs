//! Where authentication settings come from: the `kube-system/extension-apiserver-authentication` ConfigMap that
//! kube-apiserver publishes (read at startup, then watched), overridden item by item by flags and files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher;
use kube::Api;
use tracing::{info, warn};

use super::{Auth, AuthError, AuthSettings};
use crate::apiserver::tls::{CaPool, CaPools};

/// Namespace of the ConfigMap kube-apiserver publishes its authentication settings in.
pub const CONFIG_MAP_NAMESPACE: &str = "kube-system";
/// Name of that ConfigMap.
pub const CONFIG_MAP_NAME: &str = "extension-apiserver-authentication";

/// Authentication and authorization flags, meant to be flattened into the `serve` command.
#[derive(clap::Args, Debug, Clone)]
pub struct AuthArgs {
    /// Don't read kube-system/extension-apiserver-authentication; use only the flags below.
    #[arg(long, env = "PRESCALE_AUTHENTICATION_SKIP_LOOKUP")]
    pub authentication_skip_lookup: bool,
    /// PEM CA bundle for client certificates (user = CN, groups = O). Overrides the ConfigMap's client-ca-file.
    #[arg(long, env = "PRESCALE_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// PEM CA bundle of the front proxy allowed to assert identities in request headers. Overrides the ConfigMap.
    #[arg(long, env = "PRESCALE_REQUESTHEADER_CLIENT_CA_FILE")]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Headers carrying the user name, first non-empty wins (e.g. X-Remote-User). Overrides the ConfigMap.
    #[arg(long, env = "PRESCALE_REQUESTHEADER_USERNAME_HEADERS", value_delimiter = ',')]
    pub requestheader_username_headers: Option<Vec<String>>,
    /// Headers carrying the user's UID (e.g. X-Remote-Uid). Overrides the ConfigMap.
    #[arg(long, env = "PRESCALE_REQUESTHEADER_UID_HEADERS", value_delimiter = ',')]
    pub requestheader_uid_headers: Option<Vec<String>>,
    /// Headers carrying group names (e.g. X-Remote-Group). Overrides the ConfigMap.
    #[arg(long, env = "PRESCALE_REQUESTHEADER_GROUP_HEADERS", value_delimiter = ',')]
    pub requestheader_group_headers: Option<Vec<String>>,
    /// Header prefixes carrying extra user attributes (e.g. X-Remote-Extra-). Overrides the ConfigMap.
    #[arg(long, env = "PRESCALE_REQUESTHEADER_EXTRA_HEADERS_PREFIX", value_delimiter = ',')]
    pub requestheader_extra_headers_prefix: Option<Vec<String>>,
    /// Front-proxy certificate CNs allowed to assert identities; empty allows any CN the CA signed. Overrides the
    /// ConfigMap.
    #[arg(long, env = "PRESCALE_REQUESTHEADER_ALLOWED_NAMES", value_delimiter = ',')]
    pub requestheader_allowed_names: Option<Vec<String>>,
    /// Audiences requested in TokenReviews; empty means the API server's own.
    #[arg(long, env = "PRESCALE_AUTHENTICATION_TOKEN_AUDIENCES", value_delimiter = ',')]
    pub authentication_token_audiences: Vec<String>,
    /// Seconds a TokenReview or SubjectAccessReview answer is reused.
    #[arg(long, env = "PRESCALE_AUTH_CACHE_TTL_SECONDS", default_value_t = 10)]
    pub auth_cache_ttl_seconds: u64,
    /// Seconds to wait for a review before failing closed.
    #[arg(long, env = "PRESCALE_AUTH_REVIEW_TIMEOUT_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub auth_review_timeout_seconds: u64,
    /// Paths served without authentication or authorization.
    #[arg(
        long,
        env = "PRESCALE_AUTHORIZATION_ALWAYS_ALLOW_PATHS",
        value_delimiter = ',',
        default_value = "/healthz,/livez,/readyz"
    )]
    pub authorization_always_allow_paths: Vec<String>,
    /// Groups authorized without a SubjectAccessReview.
    #[arg(
        long,
        env = "PRESCALE_AUTHORIZATION_ALWAYS_ALLOW_GROUPS",
        value_delimiter = ',',
        default_value = "system:masters"
    )]
    pub authorization_always_allow_groups: Vec<String>,
}

impl AuthArgs {
    /// The settings that don't come from the ConfigMap.
    pub fn settings(&self) -> AuthSettings {
        AuthSettings {
            token_audiences: self.authentication_token_audiences.clone(),
            cache_ttl: Duration::from_secs(self.auth_cache_ttl_seconds),
            review_timeout: Duration::from_secs(self.auth_review_timeout_seconds),
            always_allow_paths: self.authorization_always_allow_paths.clone(),
            always_allow_groups: self.authorization_always_allow_groups.clone(),
        }
    }

    /// The flag values that override the ConfigMap, with CA files read and parsed.
    pub fn overrides(&self) -> Result<ConfigOverrides, AuthError> {
        let Self {
            authentication_skip_lookup: _,
            client_ca_file,
            requestheader_client_ca_file,
            requestheader_username_headers,
            requestheader_uid_headers,
            requestheader_group_headers,
            requestheader_extra_headers_prefix,
            requestheader_allowed_names,
            authentication_token_audiences: _,
            auth_cache_ttl_seconds: _,
            auth_review_timeout_seconds: _,
            authorization_always_allow_paths: _,
            authorization_always_allow_groups: _,
        } = self;
        let read = |path: &Option<PathBuf>| {
            path.as_deref()
                .map(CaPool::from_file)
                .transpose()
                .map_err(AuthError::Ca)
        };
        Ok(ConfigOverrides {
            client_ca: read(client_ca_file)?,
            requestheader_ca: read(requestheader_client_ca_file)?,
            username_headers: requestheader_username_headers.clone(),
            uid_headers: requestheader_uid_headers.clone(),
            group_headers: requestheader_group_headers.clone(),
            extra_headers_prefix: requestheader_extra_headers_prefix.clone(),
            allowed_names: requestheader_allowed_names.clone(),
        })
    }
}

/// How the front proxy (kube-aggregator) passes the caller's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaderConfig {
    /// User name headers, first non-empty wins.
    pub username_headers: Vec<String>,
    /// UID headers, first non-empty wins.
    pub uid_headers: Vec<String>,
    /// Group headers, all values of all of them.
    pub group_headers: Vec<String>,
    /// Extra-attribute header prefixes.
    pub extra_headers_prefix: Vec<String>,
    /// Allowed front-proxy certificate CNs; empty allows any.
    pub allowed_names: Vec<String>,
}

impl Default for RequestHeaderConfig {
    /// kube-apiserver's usual values (kubeadm), used when neither ConfigMap nor flags say otherwise.
    fn default() -> Self {
        Self {
            username_headers: vec!["X-Remote-User".into()],
            uid_headers: vec![],
            group_headers: vec!["X-Remote-Group".into()],
            extra_headers_prefix: vec!["X-Remote-Extra-".into()],
            allowed_names: vec![],
        }
    }
}

/// Everything authentication reads from the ConfigMap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthConfig {
    /// Client and front-proxy CAs.
    pub cas: CaPools,
    /// Front-proxy header names.
    pub request_header: RequestHeaderConfig,
}

/// Flag values that take precedence over the ConfigMap, item by item.
#[derive(Debug, Clone, Default)]
pub struct ConfigOverrides {
    /// From --client-ca-file.
    pub client_ca: Option<CaPool>,
    /// From --requestheader-client-ca-file.
    pub requestheader_ca: Option<CaPool>,
    /// From --requestheader-username-headers.
    pub username_headers: Option<Vec<String>>,
    /// From --requestheader-uid-headers.
    pub uid_headers: Option<Vec<String>>,
    /// From --requestheader-group-headers.
    pub group_headers: Option<Vec<String>>,
    /// From --requestheader-extra-headers-prefix.
    pub extra_headers_prefix: Option<Vec<String>>,
    /// From --requestheader-allowed-names.
    pub allowed_names: Option<Vec<String>>,
}

impl ConfigOverrides {
    /// `base` with every item given on the command line replaced.
    pub fn apply(&self, base: AuthConfig) -> AuthConfig {
        let AuthConfig {
            cas,
            request_header: rh,
        } = base;
        let pick = |flag: &Option<Vec<String>>, base: Vec<String>| flag.clone().unwrap_or(base);
        AuthConfig {
            cas: CaPools {
                client_ca: self.client_ca.clone().or(cas.client_ca),
                requestheader_ca: self.requestheader_ca.clone().or(cas.requestheader_ca),
            },
            request_header: RequestHeaderConfig {
                username_headers: pick(&self.username_headers, rh.username_headers),
                uid_headers: pick(&self.uid_headers, rh.uid_headers),
                group_headers: pick(&self.group_headers, rh.group_headers),
                extra_headers_prefix: pick(&self.extra_headers_prefix, rh.extra_headers_prefix),
                allowed_names: pick(&self.allowed_names, rh.allowed_names),
            },
        }
    }
}

/// Parses the data of `kube-system/extension-apiserver-authentication`. List values are JSON string arrays.
pub fn parse_config_map(data: &BTreeMap<String, String>) -> Result<AuthConfig, AuthError> {
    let ca = |key: &str| {
        data.get(key)
            .filter(|pem| !pem.trim().is_empty())
            .map(|pem| CaPool::from_pem(&format!("{CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME} key {key}"), pem))
            .transpose()
            .map_err(AuthError::Ca)
    };
    let list = |key: &str| -> Result<Vec<String>, AuthError> {
        match data.get(key).map(|raw| raw.trim()).filter(|raw| !raw.is_empty()) {
            None => Ok(vec![]),
            Some(raw) => serde_json::from_str(raw).map_err(|source| AuthError::ConfigMapList {
                key: key.to_owned(),
                source,
            }),
        }
    };
    Ok(AuthConfig {
        cas: CaPools {
            client_ca: ca("client-ca-file")?,
            requestheader_ca: ca("requestheader-client-ca-file")?,
        },
        request_header: RequestHeaderConfig {
            username_headers: list("requestheader-username-headers")?,
            uid_headers: list("requestheader-uid-headers")?,
            group_headers: list("requestheader-group-headers")?,
            extra_headers_prefix: list("requestheader-extra-headers-prefix")?,
            allowed_names: list("requestheader-allowed-names")?,
        },
    })
}

/// Reads the ConfigMap once; an error names the RBAC that grants access.
pub async fn read_config_map(api: &Api<ConfigMap>) -> Result<AuthConfig, AuthError> {
    let config_map = api
        .get(CONFIG_MAP_NAME)
        .await
        .map_err(|source| AuthError::ConfigMapRead { source })?;
    parse_config_map(&config_map.data.unwrap_or_default())
}

/// Applies every change of the ConfigMap to `auth` until the task is dropped. A change that does not parse is
/// logged and the settings in force are kept; so is a deletion.
pub async fn watch_config_map(api: Api<ConfigMap>, auth: Auth, overrides: ConfigOverrides) {
    let stream = watcher::watch_object(api, CONFIG_MAP_NAME);
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(Some(config_map)) => match parse_config_map(&config_map.data.unwrap_or_default()) {
                Ok(config) => {
                    if auth.apply(overrides.apply(config)) {
                        info!("authentication configuration updated from {CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME}");
                    }
                }
                Err(error) => warn!(%error, "ignoring an unusable {CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME}"),
            },
            Ok(None) => warn!("{CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME} deleted; keeping the last configuration"),
            // The watcher retries by itself; a pause avoids a hot loop while the API server is away.
            Err(error) => {
                warn!(%error, "watching {CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME} failed; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn lists_are_json_string_arrays() {
        let config = parse_config_map(&data(&[
            ("requestheader-username-headers", r#"["X-Remote-User"]"#),
            ("requestheader-group-headers", r#"["X-Remote-Group"]"#),
            ("requestheader-extra-headers-prefix", r#"["X-Remote-Extra-"]"#),
            ("requestheader-allowed-names", r#"["front-proxy-client"]"#),
        ]))
        .unwrap();
        assert_eq!(config.request_header.username_headers, ["X-Remote-User"]);
        assert_eq!(config.request_header.allowed_names, ["front-proxy-client"]);
        assert!(config.request_header.uid_headers.is_empty());
        assert!(config.cas.client_ca.is_none());
    }

    #[test]
    fn a_malformed_list_names_its_key() {
        let error = parse_config_map(&data(&[("requestheader-allowed-names", "front-proxy-client")])).unwrap_err();
        assert!(error.to_string().contains("requestheader-allowed-names"), "{error}");
    }

    #[test]
    fn flags_override_item_by_item() {
        let base = parse_config_map(&data(&[
            ("requestheader-username-headers", r#"["X-Remote-User"]"#),
            ("requestheader-allowed-names", r#"["front-proxy-client"]"#),
        ]))
        .unwrap();
        let overrides = ConfigOverrides {
            allowed_names: Some(vec!["aggregator".into()]),
            ..Default::default()
        };
        let config = overrides.apply(base);
        assert_eq!(config.request_header.allowed_names, ["aggregator"]);
        assert_eq!(config.request_header.username_headers, ["X-Remote-User"]);
    }
}
