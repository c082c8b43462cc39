//! Kubernetes semantics prescale must reproduce exactly: resource quantities, label selectors, and the HPA
//! controller's arithmetic (with a pod model, for simulation).

pub mod hpa;
pub mod quantity;
pub mod selector;
