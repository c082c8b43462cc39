//! The HPA prescale manages for a PredictiveAutoscaler (`spec.hpa.managed`, default true): named after the object,
//! scaling its `scaleTargetRef` on the external metric `prescale_replicas{workload=<name>}` with an `AverageValue`
//! target of 1 (the served value is the replica count, so the HPA lands on it), the object's min and max replicas,
//! and a `behavior`: the object's `hpa.behavior` over [`default_behavior`].
//!
//! The HPA carries a controller ownerReference to the object, so deleting the object garbage-collects it. An HPA
//! prescale does not own — one with the same name, or any HPA targeting the same object — is never touched; the
//! object's `HPAManaged` condition says why (`HPAConflict`).

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, ExternalMetricSource, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricIdentifier, MetricSpec, MetricTarget,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};

use crate::apiserver::api::METRIC_REPLICAS;
use crate::config::WorkloadConfig;
use crate::k8s::hpa;
use crate::k8s::status::HpaState;
use crate::workload::{GROUP, VERSION};

/// The label on every HPA prescale manages.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "prescale");

/// The behavior of a managed HPA whose object sets no `hpa.behavior`: the HPA's own defaults (scale up at once by
/// up to 4 pods or 100% every 15 s, whichever is more; scale down by up to 100% every 15 s), with the scale-down
/// hold prescale plans for (`hpaScaleDownStabilization`, default 5m) as the scale-down stabilization window.
pub fn default_behavior(config: &WorkloadConfig) -> HorizontalPodAutoscalerBehavior {
    let policies = |defaults: &[hpa::ScalingPolicy]| {
        defaults
            .iter()
            .map(|p| HPAScalingPolicy {
                type_: match p.kind {
                    hpa::PolicyKind::Pods => "Pods",
                    hpa::PolicyKind::Percent => "Percent",
                }
                .into(),
                value: p.value,
                period_seconds: p.period_seconds,
            })
            .collect()
    };
    HorizontalPodAutoscalerBehavior {
        scale_up: Some(HPAScalingRules {
            stabilization_window_seconds: Some(0),
            select_policy: Some("Max".into()),
            policies: Some(policies(&hpa::DEFAULT_SCALE_UP_POLICIES)),
            tolerance: None,
        }),
        scale_down: Some(HPAScalingRules {
            stabilization_window_seconds: Some(config.policy.downscale_stabilization.num_seconds() as i32),
            select_policy: Some("Max".into()),
            policies: Some(policies(&hpa::DEFAULT_SCALE_DOWN_POLICIES)),
            tolerance: None,
        }),
    }
}

/// The behavior of `config`'s managed HPA: each field the object's `hpa.behavior` sets, else the default's.
pub fn behavior(config: &WorkloadConfig) -> HorizontalPodAutoscalerBehavior {
    let default = default_behavior(config);
    let set = config.scale_target.as_ref().and_then(|t| t.hpa_behavior.clone());
    let Some(set) = set else { return default };
    let merge = |d: Option<HPAScalingRules>, s: Option<HPAScalingRules>| match (d, s) {
        (d, None) => d,
        (None, s) => s,
        (Some(d), Some(s)) => Some(HPAScalingRules {
            stabilization_window_seconds: s.stabilization_window_seconds.or(d.stabilization_window_seconds),
            select_policy: s.select_policy.or(d.select_policy),
            policies: s.policies.or(d.policies),
            tolerance: s.tolerance.or(d.tolerance),
        }),
    };
    HorizontalPodAutoscalerBehavior {
        scale_up: merge(default.scale_up, set.scale_up),
        scale_down: merge(default.scale_down, set.scale_down),
    }
}

/// The object an HPA is owned by.
#[derive(Debug, Clone)]
pub struct Owner {
    /// The PredictiveAutoscaler's name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

/// The HPA `config`'s object (`owner`) should have; `None` when `config` has no managed HPA.
pub fn desired(config: &WorkloadConfig, owner: &Owner) -> Option<HorizontalPodAutoscaler> {
    let target = config.scale_target.as_ref().filter(|t| t.managed_hpa)?;
    let replicas = config.policy.replicas;
    Some(HorizontalPodAutoscaler {
        metadata: ObjectMeta {
            name: Some(config.id.name.clone()),
            namespace: Some(config.id.namespace.clone()),
            labels: Some([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())].into()),
            owner_references: Some(vec![OwnerReference {
                api_version: format!("{GROUP}/{VERSION}"),
                kind: "PredictiveAutoscaler".into(),
                name: owner.name.clone(),
                uid: owner.uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(target.reference.api_version.clone()),
                kind: target.reference.kind.clone(),
                name: target.reference.name.clone(),
            },
            // The HPA refuses minReplicas 0 unless a feature gate is on; prescale's plan still goes to 0 only when
            // the HPA allows it.
            min_replicas: Some(replicas.min().max(1) as i32),
            max_replicas: replicas.max() as i32,
            metrics: Some(vec![MetricSpec {
                type_: "External".into(),
                external: Some(ExternalMetricSource {
                    metric: MetricIdentifier {
                        name: METRIC_REPLICAS.into(),
                        selector: Some(LabelSelector {
                            match_labels: Some([("workload".to_owned(), config.id.name.clone())].into()),
                            match_expressions: None,
                        }),
                    },
                    target: MetricTarget {
                        type_: "AverageValue".into(),
                        average_value: Some(Quantity("1".into())),
                        average_utilization: None,
                        value: None,
                    },
                }),
                ..Default::default()
            }]),
            behavior: Some(behavior(config)),
        }),
        status: None,
    })
}

/// Whether `hpa` is owned, as controller, by the object with `uid`.
pub fn owned_by(hpa: &HorizontalPodAutoscaler, uid: &str) -> bool {
    hpa.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == uid && r.kind == "PredictiveAutoscaler")
}

/// Brings the HPA of `config`'s object in step: creates it, replaces a spec that drifted, or leaves someone else's
/// HPA alone and says so.
pub async fn reconcile(client: &kube::Client, config: &WorkloadConfig, owner: &Owner) -> HpaState {
    let Some(want) = desired(config, owner) else {
        return HpaState::Unmanaged;
    };
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &config.id.namespace);
    let name = config.id.name.clone();
    let failed = |what: &str, e: kube::Error| HpaState::Failed(format!("{what} HorizontalPodAutoscaler {name}: {e}"));
    match api.get_opt(&name).await {
        Err(e) => failed("reading", e),
        Ok(Some(existing)) if !owned_by(&existing, &owner.uid) => HpaState::Conflict(format!(
            "HorizontalPodAutoscaler {name} exists and is not prescale's (no controller ownerReference to this \
             object); prescale leaves it alone: delete it to let prescale manage one, or set hpa.managed: false"
        )),
        Ok(Some(existing)) if existing.spec == want.spec && existing.metadata.labels == want.metadata.labels => {
            HpaState::Managed(name)
        }
        Ok(Some(existing)) => {
            let mut replacement = want;
            replacement.metadata.resource_version = existing.metadata.resource_version.clone();
            match api.replace(&name, &PostParams::default(), &replacement).await {
                Ok(_) => HpaState::Managed(name),
                Err(e) => failed("updating", e),
            }
        }
        // None yet: one is created unless another HPA already scales the same object (listed only here, so an
        // object whose HPA exists costs one read per reconcile).
        Ok(None) => {
            let target = want.spec.as_ref().map(|s| s.scale_target_ref.clone());
            let all = match api.list(&Default::default()).await {
                Ok(list) => list.items,
                Err(e) => return failed("listing to check before creating", e),
            };
            let other = all.iter().find(|h| {
                h.spec
                    .as_ref()
                    .is_some_and(|s| same_target(&s.scale_target_ref, target.as_ref()))
            });
            match other {
                Some(other) => HpaState::Conflict(format!(
                    "HorizontalPodAutoscaler {} already scales {}; prescale leaves it alone and manages none: point \
                     it at prescale_replicas (selector workload={name}) yourself and set hpa.managed: false, or \
                     delete it",
                    other.metadata.name.clone().unwrap_or_default(),
                    target.map(|t| format!("{}/{}", t.kind, t.name)).unwrap_or_default()
                )),
                None => match api.create(&PostParams::default(), &want).await {
                    Ok(_) => HpaState::Managed(name),
                    Err(e) => failed("creating", e),
                },
            }
        }
    }
}

fn same_target(a: &CrossVersionObjectReference, b: Option<&CrossVersionObjectReference>) -> bool {
    let group = |v: &Option<String>| {
        v.as_deref()
            .map(|v| v.rsplit_once('/').map_or("", |(g, _)| g).to_owned())
    };
    b.is_some_and(|b| a.kind == b.kind && a.name == b.name && group(&a.api_version) == group(&b.api_version))
}
