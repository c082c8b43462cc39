//! From a forecast to a replica target.
//!
//! - [`policy`]: how a workload is to be scaled (capacity, lead time, bounds, the SLO).
//! - [`planner`]: forecast + policy + now → replica target.
//! - [`service_level`]: the SLO controller that picks the forecast quantile or reactive target to serve.
//! - [`quality`]: live scoring of forecasts against what happened; demotion to reactive and back.
//! - [`engine`]: one workload's refit → forecast → plan step, shared by production and the backtest.

pub mod engine;
pub mod planner;
pub mod policy;
pub mod quality;
pub mod service_level;
