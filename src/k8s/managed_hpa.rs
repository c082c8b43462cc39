//! The HPA prescale manages for a PredictiveAutoscaler (`spec.hpa.managed`, default true): named after the object,
//! scaling its `scaleTargetRef` on the external metric `prescale_replicas{workload=<name>}` with an `AverageValue`
//! target of 1 (the served value is the replica count, so the HPA lands on it), the object's min and max replicas,
//! and a `behavior`: the object's `hpa.behavior` over [`default_behavior`].
//!
//! The HPA carries a controller ownerReference to the object, so deleting the object garbage-collects it. An HPA
//! prescale does not own — one with the same name, or any HPA targeting the same object — is never touched; the
//! object's `HPAManaged` condition says why (`HPAConflict`). What to do is decided by one pure function,
//! [`decide`], from what the API server holds; [`reconcile`] reads it for one object (on a change of the object),
//! the controller's periodic pass lists it for all: prescale's HPA follows the object (created, restored after an
//! edit or a deletion, deleted when the object sets `hpa.managed: false`) and yields to an HPA someone else makes
//! for the same target later (prescale's is deleted).

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, ExternalMetricSource, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricIdentifier, MetricSpec, MetricTarget,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams};

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

/// What to do about one object's HPA, decided by [`decide`] from what the API server holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing to write: the HPA is as it should be, or it is not prescale's to touch.
    Keep(HpaState),
    /// Create this HPA.
    Create(Box<HorizontalPodAutoscaler>),
    /// Replace prescale's HPA with this one (it carries the `resourceVersion` read, so a concurrent edit fails).
    Replace(Box<HorizontalPodAutoscaler>),
    /// Delete prescale's HPA `name`; the object's state is `then` once it is gone.
    Delete {
        /// The HPA's name (the object's).
        name: String,
        /// The state after the deletion.
        then: HpaState,
    },
}

/// What the API server holds that bears on one object's HPA.
#[derive(Debug, Clone, Copy, Default)]
pub struct Found<'a> {
    /// The HPA with the object's name, in its namespace.
    pub named: Option<&'a HorizontalPodAutoscaler>,
    /// Another HPA scaling the object's `scaleTargetRef` ([`rival`]), when one was looked for and found.
    pub rival: Option<&'a HorizontalPodAutoscaler>,
}

/// What to do about the HPA of the object `owner`, named `name`, which should be `want` (`None`: the object asks
/// for no managed HPA).
///
/// - No managed HPA wanted: prescale's (the one named after the object, with a controller ownerReference to it) is
///   deleted; any other, the user's own HPA of that name included, is left alone.
/// - An HPA of that name that is not prescale's is never touched (`HPAConflict`).
/// - Another HPA scaling the same target (a `rival`, made before or after prescale's): prescale's is deleted, or
///   not created, and the object says which HPA it yields to (`HPAConflict`).
/// - Otherwise prescale's is created, replaced if its spec or labels drifted from `want`, or kept.
pub fn decide(want: Option<HorizontalPodAutoscaler>, owner: &Owner, name: &str, found: Found<'_>) -> Step {
    let ours = found.named.filter(|h| owned_by(h, &owner.uid));
    let Some(want) = want else {
        return match ours {
            Some(_) => Step::Delete {
                name: name.to_owned(),
                then: HpaState::Unmanaged,
            },
            None => Step::Keep(HpaState::Unmanaged),
        };
    };
    if found.named.is_some() && ours.is_none() {
        return Step::Keep(HpaState::Conflict(format!(
            "HorizontalPodAutoscaler {name} exists and is not prescale's (no controller ownerReference to this \
             object); prescale leaves it alone: delete it to let prescale manage one, or set hpa.managed: false"
        )));
    }
    if let Some(rival) = found.rival {
        let target = want.spec.as_ref().map(|s| &s.scale_target_ref);
        let conflict = HpaState::Conflict(format!(
            "HorizontalPodAutoscaler {} already scales {}; prescale leaves it alone and manages none: point it at \
             prescale_replicas (selector workload={name}) yourself and set hpa.managed: false, or delete it",
            rival.metadata.name.clone().unwrap_or_default(),
            target.map(|t| format!("{}/{}", t.kind, t.name)).unwrap_or_default()
        ));
        return match ours {
            Some(_) => Step::Delete {
                name: name.to_owned(),
                then: conflict,
            },
            None => Step::Keep(conflict),
        };
    }
    match ours {
        None => Step::Create(Box::new(want)),
        Some(existing) if existing.spec == want.spec && existing.metadata.labels == want.metadata.labels => {
            Step::Keep(HpaState::Managed(name.to_owned()))
        }
        Some(existing) => {
            let mut replacement = want;
            replacement.metadata.resource_version = existing.metadata.resource_version.clone();
            Step::Replace(Box::new(replacement))
        }
    }
}

/// The first HPA of `hpas` other than `name` that scales `want`'s target and is not being deleted.
pub fn rival<'a>(
    hpas: impl IntoIterator<Item = &'a HorizontalPodAutoscaler>,
    name: &str,
    want: &HorizontalPodAutoscaler,
) -> Option<&'a HorizontalPodAutoscaler> {
    let target = want.spec.as_ref().map(|s| &s.scale_target_ref);
    hpas.into_iter().find(|h| {
        h.metadata.name.as_deref() != Some(name)
            && h.metadata.deletion_timestamp.is_none()
            && h.spec
                .as_ref()
                .is_some_and(|s| same_target(&s.scale_target_ref, target))
    })
}

/// Makes `step` in `namespace`; the object's HPA state after it.
pub async fn apply(client: &kube::Client, namespace: &str, step: Step) -> HpaState {
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), namespace);
    let failed = |what: &str, name: &str, e: kube::Error| {
        HpaState::Failed(format!("{what} HorizontalPodAutoscaler {name}: {e}"))
    };
    match step {
        Step::Keep(state) => state,
        Step::Create(hpa) => {
            let name = hpa.metadata.name.clone().unwrap_or_default();
            match api.create(&PostParams::default(), &hpa).await {
                Ok(_) => HpaState::Managed(name),
                Err(e) => failed("creating", &name, e),
            }
        }
        Step::Replace(hpa) => {
            let name = hpa.metadata.name.clone().unwrap_or_default();
            match api.replace(&name, &PostParams::default(), &hpa).await {
                Ok(_) => HpaState::Managed(name),
                Err(e) => failed("updating", &name, e),
            }
        }
        Step::Delete { name, then } => match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => then,
            // Gone already (the garbage collector, or a person): what was wanted.
            Err(kube::Error::Api(status)) if status.code == 404 => then,
            Err(e) => failed("deleting", &name, e),
        },
    }
}

/// Brings the HPA of `config`'s object (`owner`) in step, on a change of the object: reads the HPA of its name
/// (and, before creating one or pointing it at another target, the namespace's HPAs, to find a rival), then
/// [`decide`]s and [`apply`]s. An object whose HPA exists and keeps its target costs one read; a rival appearing
/// later is found by the controller's periodic pass, which lists every HPA at once.
pub async fn reconcile(client: &kube::Client, config: &WorkloadConfig, owner: &Owner) -> HpaState {
    let want = desired(config, owner);
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &config.id.namespace);
    let name = config.id.name.clone();
    let named = match api.get_opt(&name).await {
        Ok(named) => named,
        Err(e) => return HpaState::Failed(format!("reading HorizontalPodAutoscaler {name}: {e}")),
    };
    let ours = named.as_ref().filter(|h| owned_by(h, &owner.uid));
    let retargeted = |h: &HorizontalPodAutoscaler, want: &HorizontalPodAutoscaler| {
        h.spec.as_ref().map(|s| &s.scale_target_ref) != want.spec.as_ref().map(|s| &s.scale_target_ref)
    };
    let look_for_rival = match (&want, &named) {
        (Some(_), None) => true,
        (Some(want), Some(_)) => ours.is_some_and(|h| retargeted(h, want)),
        (None, _) => false,
    };
    let all = if look_for_rival {
        match api.list(&Default::default()).await {
            Ok(list) => list.items,
            Err(e) => {
                return HpaState::Failed(format!(
                    "listing to check before creating HorizontalPodAutoscaler {name}: {e}"
                ))
            }
        }
    } else {
        Vec::new()
    };
    let rival = want.as_ref().and_then(|w| rival(&all, &name, w));
    let step = decide(
        want,
        owner,
        &name,
        Found {
            named: named.as_ref(),
            rival,
        },
    );
    apply(client, &config.id.namespace, step).await
}

fn same_target(a: &CrossVersionObjectReference, b: Option<&CrossVersionObjectReference>) -> bool {
    let group = |v: &Option<String>| {
        v.as_deref()
            .map(|v| v.rsplit_once('/').map_or("", |(g, _)| g).to_owned())
    };
    b.is_some_and(|b| a.kind == b.kind && a.name == b.name && group(&a.api_version) == group(&b.api_version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(managed: bool) -> WorkloadConfig {
        crate::config::check_spec(
            "shop",
            "web",
            &json!({
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "demand": {"promql": "sum(rate(requests_total[2m]))"},
                "capacityPerReplica": 10,
                "maxReplicas": 20,
                "hpa": {"managed": managed},
            }),
        )
        .unwrap()
    }

    fn owner() -> Owner {
        Owner {
            name: "web".into(),
            uid: "uid-web".into(),
        }
    }

    /// prescale's HPA as stored, at resourceVersion 7.
    fn ours() -> HorizontalPodAutoscaler {
        let mut hpa = desired(&config(true), &owner()).unwrap();
        hpa.metadata.resource_version = Some("7".into());
        hpa
    }

    /// Someone else's HPA `name` scaling Deployment `target`.
    fn theirs(name: &str, target: &str) -> HorizontalPodAutoscaler {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                     "maxReplicas": 5},
        }))
        .unwrap()
    }

    fn decide_with(
        managed: bool,
        named: Option<&HorizontalPodAutoscaler>,
        rival: Option<&HorizontalPodAutoscaler>,
    ) -> Step {
        decide(
            desired(&config(managed), &owner()),
            &owner(),
            "web",
            Found { named, rival },
        )
    }

    #[test]
    fn an_object_that_no_longer_asks_for_an_hpa_has_only_prescale_s_deleted() {
        assert_eq!(
            decide_with(false, Some(&ours()), None),
            Step::Delete {
                name: "web".into(),
                then: HpaState::Unmanaged
            }
        );
        // The user's own HPA of the object's name, the usual companion of `managed: false`, stays.
        assert_eq!(
            decide_with(false, Some(&theirs("web", "web")), None),
            Step::Keep(HpaState::Unmanaged)
        );
        // Owned by another object (same name, another uid): not this object's to delete.
        let mut other = ours();
        other.metadata.owner_references.as_mut().unwrap()[0].uid = "uid-other".into();
        assert_eq!(decide_with(false, Some(&other), None), Step::Keep(HpaState::Unmanaged));
        assert_eq!(decide_with(false, None, None), Step::Keep(HpaState::Unmanaged));
    }

    #[test]
    fn prescale_s_hpa_is_created_restored_and_kept_in_step() {
        assert!(matches!(decide_with(true, None, None), Step::Create(h) if h.metadata.name.as_deref() == Some("web")));
        assert_eq!(
            decide_with(true, Some(&ours()), None),
            Step::Keep(HpaState::Managed("web".into()))
        );
        // Edited by someone: replaced with what prescale writes, at the resourceVersion read.
        let mut edited = ours();
        edited.spec.as_mut().unwrap().max_replicas = 99;
        match decide_with(true, Some(&edited), None) {
            Step::Replace(h) => {
                assert_eq!(h.spec.as_ref().unwrap().max_replicas, 20);
                assert_eq!(h.metadata.resource_version.as_deref(), Some("7"));
            }
            other => panic!("{other:?}"),
        }
        // A label removed is drift too.
        let mut relabelled = ours();
        relabelled.metadata.labels = None;
        assert!(matches!(decide_with(true, Some(&relabelled), None), Step::Replace(_)));
    }

    #[test]
    fn someone_else_s_hpa_is_never_touched_and_a_rival_takes_over() {
        match decide_with(true, Some(&theirs("web", "other")), None) {
            Step::Keep(HpaState::Conflict(message)) => {
                assert!(
                    message.contains("HorizontalPodAutoscaler web exists and is not prescale's"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        // A rival made before prescale's: none is created.
        let rival = theirs("web-hpa", "web");
        let conflict = match decide_with(true, None, Some(&rival)) {
            Step::Keep(HpaState::Conflict(message)) => message,
            other => panic!("{other:?}"),
        };
        assert!(
            conflict.contains("HorizontalPodAutoscaler web-hpa already scales Deployment/web"),
            "{conflict}"
        );
        // Made after: prescale's is deleted, and the object says the same.
        assert_eq!(
            decide_with(true, Some(&ours()), Some(&rival)),
            Step::Delete {
                name: "web".into(),
                then: HpaState::Conflict(conflict)
            }
        );
    }

    #[test]
    fn a_rival_scales_the_same_target_under_another_name() {
        let want = ours();
        let same = theirs("web-hpa", "web");
        let mut other_version = theirs("web-v2", "web");
        other_version.spec.as_mut().unwrap().scale_target_ref.api_version = Some("apps/v1beta2".into());
        let mut going = theirs("web-old", "web");
        going.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        let elsewhere = theirs("api-hpa", "api");
        let itself = theirs("web", "web");
        assert!(rival([&itself, &elsewhere, &going], "web", &want).is_none());
        let hpas = [
            itself.clone(),
            elsewhere.clone(),
            going.clone(),
            other_version.clone(),
            same.clone(),
        ];
        // The same group in another version is the same target.
        assert_eq!(
            rival(&hpas, "web", &want).and_then(|h| h.metadata.name.as_deref()),
            Some("web-v2")
        );
        assert_eq!(
            rival([&same], "web", &want).and_then(|h| h.metadata.name.as_deref()),
            Some("web-hpa")
        );
    }
}
