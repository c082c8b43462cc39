//! prescale: a predictive autoscaler for Kubernetes.
//!
//! ```text
//! Prometheus ─► history ─► forecast ─► planner ─► store ─► api (external.metrics.k8s.io) ─► HPA
//!   (or a recorded trace,                               └─► admin (SRE HTTP, /metrics)
//!    or the demo generator)
//! backtest = the same forecast + planner + an HPA/pod simulator (hpa), fed a recorded trace
//! ```
//!
//! - [`series`]: regular time series with explicit gaps.
//! - [`history`]: the [`history::History`] seam and its sources (trace, generator, Prometheus).
//! - [`forecast`]: seasonal models, calibrated quantiles, fallbacks.
//! - [`planner`]: forecast + policy + now → replica target.
//! - [`engine`]: one workload's refit → forecast → plan step, shared by production and the backtest.
//! - [`quality`]: live scoring of forecasts against what happened; demotion to reactive and back.
//! - [`store`]: latest published snapshot per workload.
//! - [`clock`]: time as an argument.
//! - [`quantity`], [`selector`]: Kubernetes wire formats.
//! - [`api`]: the `external.metrics.k8s.io/v1beta1` router.
//! - [`tls`], [`auth`]: serving as an aggregated API server.
//! - [`admin`], [`web`], [`explain`], [`telemetry`]: the SRE view: JSON API, page with charts, "why N?", `/metrics`.
//! - [`hpa`]: the HPA controller's arithmetic and a pod model, for simulation.
//! - [`backtest`]: replay a trace through policies and score them.
//! - [`config`]: the YAML workload file.
//! - [`pipeline`]: the loop that fetches, fits, plans and publishes.
//! - [`app`]: the composition root (wires everything; the only place clients are built).

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod backtest;
pub mod clock;
pub mod config;
pub mod engine;
pub mod explain;
pub mod forecast;
pub mod history;
pub mod hpa;
pub mod pipeline;
pub mod planner;
pub mod quality;
pub mod quantity;
pub mod selector;
pub mod series;
pub mod service_level;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod web;
