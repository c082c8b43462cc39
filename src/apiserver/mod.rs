//! Serving `external.metrics.k8s.io/v1beta1` as an aggregated API server: the routes, who may call them, TLS, and
//! the limits and timeouts of every connection; and the same plans to KEDA as an external scaler over gRPC.

pub mod api;
pub mod auth;
pub mod http;
pub mod keda;
pub mod status;
pub mod tls;
