//! prescale: a predictive autoscaler for Kubernetes.
//!
//! The tree follows the data path:
//!
//! ```text
//! Prometheus ─► history ─► forecast ─► control ─► store ─► apiserver (external.metrics.k8s.io) ─► HPA
//!   (or a recorded trace,                                 ├─► apiserver::keda (gRPC external scaler) ─► KEDA
//!    or the demo generator)                               └─► sre (admin JSON, page, explain, /metrics)
//! backtest = the same forecast + control + the HPA's arithmetic and a pod model (k8s::hpa), fed a recorded trace
//! ```
//!
//! - [`series`], [`clock`], [`duration`]: regular time series with explicit gaps, time as an argument, durations.
//! - [`k8s`]: Kubernetes semantics: quantities, label selectors, the HPA controller's arithmetic.
//! - [`history`]: the [`history::History`] seam and its sources (trace, generator, Prometheus).
//! - [`forecast`]: seasonal models, calibrated quantiles, fallbacks.
//! - [`control`]: from a forecast to a replica target: policy, planner, SLO controller, live quality, and the
//!   per-workload engine that runs them (shared by production and the backtest).
//! - [`store`]: the latest published snapshot per workload.
//! - [`pipeline`]: the loop that fetches, fits, plans and publishes to the store.
//! - [`apiserver`]: the `external.metrics.k8s.io/v1beta1` API as an aggregated API server (routes, auth, TLS), and
//!   the same plans as a KEDA external scaler over gRPC.
//! - [`sre`]: what an SRE reads: admin JSON API, page with charts, "why N?", `/metrics`.
//! - [`backtest`]: replay a trace through policies and score them.
//! - [`config`]: the YAML workload file, and the one validation of a workload (file entry or object).
//! - [`workload`]: the one type of a workload's settings: the PredictiveAutoscaler custom resource's spec and the
//!   workload file's entries.
//! - [`peers`]: sharded replicas pull each other's plans, so every replica serves every workload the same value.
//! - [`app`]: the composition root (wires everything; the only place clients are built).

pub mod apiserver;
pub mod app;
pub mod backtest;
pub mod clock;
pub mod config;
pub mod control;
pub mod duration;
pub mod error;
pub mod forecast;
pub mod history;
pub mod k8s;
pub mod peers;
pub mod pipeline;
pub mod series;
pub mod sre;
pub mod state;
pub mod store;
pub mod workload;
