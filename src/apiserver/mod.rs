//! Serving `external.metrics.k8s.io/v1beta1` as an aggregated API server: the routes, who may call them, and TLS.

pub mod api;
pub mod auth;
pub mod tls;
