//! Serving `external.metrics.k8s.io/v1beta1` as an aggregated API server: the routes, who may call them, and TLS;
//! and the same plans to KEDA as an external scaler over gRPC.

pub mod api;
pub mod auth;
pub mod keda;
pub mod tls;
