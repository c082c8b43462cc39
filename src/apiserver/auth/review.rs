//! Delegated reviews: the [`Reviewer`] seam onto kube-apiserver's TokenReview and SubjectAccessReview APIs, its kube
//! implementation, and the short-lived cache that keeps the HPA's steady polling from turning into review traffic.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::authorization::v1::{SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus};
use kube::api::PostParams;
use kube::Api;
use tokio::time::Instant;

/// A boxed, sendable future, so [`Reviewer`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Errors of a delegated review.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The Kubernetes API call failed (network, TLS, RBAC, 5xx).
    #[error("{kind} request failed: {source}")]
    Api {
        /// "TokenReview" or "SubjectAccessReview".
        kind: &'static str,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The API server answered without a status.
    #[error("{kind} response has no status")]
    NoStatus {
        /// "TokenReview" or "SubjectAccessReview".
        kind: &'static str,
    },
    /// No answer within the review timeout.
    #[error("{kind} timed out after {after:?}")]
    Timeout {
        /// "TokenReview" or "SubjectAccessReview".
        kind: &'static str,
        /// The timeout that elapsed.
        after: Duration,
    },
}

/// kube-apiserver's review APIs, the one outside system authentication and authorization delegate to.
pub trait Reviewer: Send + Sync + 'static {
    /// Asks who holds `spec.token` (authentication.k8s.io/v1 TokenReview).
    fn review_token(&self, spec: TokenReviewSpec) -> BoxFuture<'_, Result<TokenReviewStatus, ReviewError>>;
    /// Asks whether `spec.user` may do what `spec` describes (authorization.k8s.io/v1 SubjectAccessReview).
    fn review_access(
        &self,
        spec: SubjectAccessReviewSpec,
    ) -> BoxFuture<'_, Result<SubjectAccessReviewStatus, ReviewError>>;
}

/// [`Reviewer`] backed by a kube client (needs the `system:auth-delegator` ClusterRole).
#[derive(Clone)]
pub struct KubeReviewer {
    tokens: Api<TokenReview>,
    access: Api<SubjectAccessReview>,
}

impl KubeReviewer {
    /// A reviewer using `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            tokens: Api::all(client.clone()),
            access: Api::all(client),
        }
    }
}

impl Reviewer for KubeReviewer {
    fn review_token(&self, spec: TokenReviewSpec) -> BoxFuture<'_, Result<TokenReviewStatus, ReviewError>> {
        Box::pin(async move {
            let review = TokenReview {
                spec,
                ..Default::default()
            };
            let answer = self
                .tokens
                .create(&PostParams::default(), &review)
                .await
                .map_err(|source| ReviewError::Api {
                    kind: "TokenReview",
                    source,
                })?;
            answer.status.ok_or(ReviewError::NoStatus { kind: "TokenReview" })
        })
    }

    fn review_access(
        &self,
        spec: SubjectAccessReviewSpec,
    ) -> BoxFuture<'_, Result<SubjectAccessReviewStatus, ReviewError>> {
        Box::pin(async move {
            let review = SubjectAccessReview {
                spec,
                ..Default::default()
            };
            let answer = self
                .access
                .create(&PostParams::default(), &review)
                .await
                .map_err(|source| ReviewError::Api {
                    kind: "SubjectAccessReview",
                    source,
                })?;
            answer.status.ok_or(ReviewError::NoStatus {
                kind: "SubjectAccessReview",
            })
        })
    }
}

/// Bounds the cache so a flood of distinct tokens cannot grow memory without limit.
const MAX_ENTRIES: usize = 4096;

/// A small map whose entries expire after a fixed time to live.
#[derive(Debug)]
pub(crate) struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, v)| v.clone())
    }

    pub(crate) fn insert(&self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (now + self.ttl, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let cache = TtlCache::new(Duration::from_secs(10));
        cache.insert("a", true);
        assert_eq!(cache.get(&"a"), Some(true));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(cache.get(&"a"), None);
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let cache = TtlCache::new(Duration::ZERO);
        cache.insert("a", 1);
        assert_eq!(cache.get(&"a"), None);
    }
}
