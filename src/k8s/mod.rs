//! Kubernetes semantics prescale must reproduce exactly: resource quantities, label selectors, and the HPA
//! controller's arithmetic (with a pod model, for simulation); and the PredictiveAutoscaler controller: the watch
//! of the objects, their status, the HPAs prescale manages for them, and the leader election that lets one replica
//! of several write; and the Lease membership that shards workloads among replicas.

pub mod controller;
pub mod hpa;
pub mod leader;
pub mod managed_hpa;
pub mod members;
pub mod quantity;
pub mod selector;
pub mod states;
pub mod status;
