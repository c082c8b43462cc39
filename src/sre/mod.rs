//! What an SRE reads: the admin JSON API, the page with charts, "why N?" and `/metrics`.

pub mod admin;
pub mod explain;
pub mod telemetry;
pub mod views;
pub mod web;
