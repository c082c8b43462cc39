//! Serving `external.metrics.k8s.io/v1beta1` as an aggregated API server: the routes, who may call them, TLS, and
//! the limits and timeouts of every connection.

pub mod api;
pub mod auth;
pub mod http;
pub mod status;
pub mod tls;
