//! The shipped manifests: every kustomization renders with kubectl, validates strictly against the Kubernetes
//! schemas (kubernetes-validate), and agrees with the code it deploys.
//!
//! CRD kinds (ServiceMonitor, PrometheusRule, cert-manager Certificate/Issuer) are checked structurally
//! (tests/manifest_checks), plus `promtool check rules` for the alert expressions.

mod manifest_checks;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use clap::Parser;
use manifest_checks::*;
use serde_json::Value;

/// The kustomizations we ship, relative to the repository root.
const KUSTOMIZATIONS: [&str; 5] = [
    "apiservice",
    "deploy/base",
    "deploy/overlays/dev",
    "deploy/overlays/production",
    "deploy/examples/gpu-inference",
];

#[test]
fn every_kustomization_passes_strict_schema_validation() {
    for dir in KUSTOMIZATIONS {
        validate_objects(dir, &render_yaml(dir), &render(dir));
    }
}

#[test]
fn strict_validation_rejects_what_a_cluster_would_reject() {
    let typo = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: 443, targetPortt: 6443}]\n";
    let report = validate_strict("typo", typo).expect_err("an unknown field must fail validation");
    assert!(report.contains("targetPortt"), "{report}");
    let bad_type = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: two\n  \
                    selector: {}\n  template: {spec: {containers: []}}\n";
    validate_strict("bad_type", bad_type).expect_err("a string replica count must fail validation");

    let servicemonitor: Value = serde_json::json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"},
        "spec": {"selector": {}, "endpoints": [{"port": "admin", "intervall": "30s"}]}
    });
    let error = check_custom_resource(&servicemonitor).expect_err("a typo in a CRD field must fail");
    assert!(error.contains("intervall"), "{error}");
}

#[test]
fn alert_rules_pass_promtool() {
    let objects = render("deploy/base");
    let rule = find(&objects, "PrometheusRule", "prescale");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    // JSON is YAML: promtool reads the spec as a rule file.
    std::fs::write(&file, serde_json::to_string(&rule["spec"]).unwrap()).unwrap();
    let report = run(Command::new(promtool()).args(["check", "rules"]).arg(&file));
    assert!(report.contains("SUCCESS: 11 rules found"), "{report}");
}

/// The SLO alerts against made-up series, with `promtool test rules`: a missed SLO, an unreachable one, a fast and
/// steady burn fire; a workload within its SLO and the one-off step of a restarted replica adopting its replayed
/// record do not. `prescale_slo_reachable` is exported by default only while 0 (with `--metrics-detail` as 1 too):
/// an SLO one replica of two cannot meet does not fire. Annotations are left out (promtool compares them whole;
/// `check rules` checks their templates).
#[test]
fn the_slo_alerts_fire_when_they_should() {
    let dir = shipped_rules_without_annotations();
    let mut input = String::new();
    // workload, error budget left, reachable (None: not exported, as by default while reachable): 3 h at one sample
    // a minute.
    for (workload, budget, reachable) in [
        ("ok", "0.5x180", Some("1x180")),
        ("missed", "-0.2x180", None),
        ("unreachable", "0.2x180", Some("0x180")),
        // 0.2% of the budget a minute (12% an hour), still within the SLO.
        ("burning", "1-0.002x180", None),
        // A restarted replica adopts its replayed record after 30 minutes: one step, then steady.
        ("restarted", "1x30 0.6x150", Some("1x180")),
    ] {
        input += &series("prescale_served_replicas", workload, "5x180");
        input += &series("prescale_slo_error_budget_remaining_ratio", workload, budget);
        if let Some(reachable) = reachable {
            input += &series("prescale_slo_reachable", workload, reachable);
        }
    }
    // Two replicas: one finds the SLO cannot be met, the other exports nothing (it can).
    for (replica, reachable) in [("a", Some("0x180")), ("b", None)] {
        let on = |text: String| text.replace("workload=", &format!("instance=\"{replica}\",workload="));
        input += &on(series("prescale_served_replicas", "split", "5x180"));
        input += &on(series("prescale_slo_error_budget_remaining_ratio", "split", "0.5x180"));
        if let Some(reachable) = reachable {
            input += &on(series("prescale_slo_reachable", "split", reachable));
        }
    }
    let alert = |name: &str, at: &str, firing: &[(&str, &str)]| {
        let mut out = format!("      - eval_time: {at}\n        alertname: {name}\n        exp_alerts:");
        if firing.is_empty() {
            out += " []\n";
        } else {
            out += "\n";
            for (workload, severity) in firing {
                out += &format!(
                    "          - exp_labels: {{namespace: shop, workload: {workload}, severity: {severity}}}\n"
                );
            }
        }
        out
    };
    let checks = [
        alert("PrescaleSLOErrorBudgetExhausted", "50m", &[]),
        alert("PrescaleSLOErrorBudgetExhausted", "2h", &[("missed", "warning")]),
        alert("PrescaleSLOUnreachable", "50m", &[]),
        alert("PrescaleSLOUnreachable", "2h", &[("unreachable", "warning")]),
        alert("PrescaleSLOBudgetBurnFast", "20m", &[]),
        // Minutes after the restarted replica's step: its short window still sees it, the hold keeps it quiet.
        alert("PrescaleSLOBudgetBurnFast", "33m", &[]),
        alert("PrescaleSLOBudgetBurnFast", "1h", &[("burning", "warning")]),
        alert("PrescaleSLOBudgetBurnFast", "2h", &[("burning", "warning")]),
        alert("PrescaleSLOBudgetBurnSlow", "55m", &[]),
        alert("PrescaleSLOBudgetBurnSlow", "2h30m", &[("burning", "info")]),
    ]
    .concat();
    let tests = format!(
        "rule_files: [rules.yaml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{input}    alert_rule_test:\n{checks}"
    );
    std::fs::write(dir.path().join("tests.yaml"), tests).unwrap();
    let report = run(Command::new(promtool())
        .current_dir(dir.path())
        .args(["test", "rules", "tests.yaml"]));
    assert!(report.contains("SUCCESS"), "{report}");
}

/// The freshness alerts, with `promtool test rules`: they follow prescale's own refusal (`prescale_serving_refused`,
/// present while the API refuses a plan), so a plan older than its workload's maxForecastAge (10 min here, not a
/// fixed 5), data older than maxDataAge while plans keep coming, and a workload never planned fire; a fresh workload
/// and one within its bounds do not. Prometheus unreachable: plans and samples stop while prescale's requests to
/// Prometheus fail; stale plans from fresh data, and the same workload while Prometheus answers, do not fire it.
#[test]
fn the_freshness_alerts_follow_the_configured_bounds() {
    let dir = shipped_rules_without_annotations();
    let mut input = String::new();
    // workload, forecast age, data age, refused (and why): an hour at one sample a minute.
    for (workload, forecast_age, data_age, refused) in [
        ("fresh", "20x60", "60x60", None),
        // 7 minutes old, then older: past its 600 s maxForecastAge at minute 4, refused from then on.
        ("slow", "420+60x60", "60x60", Some(("stale_forecast", "_x4 1x55"))),
        // Past its 1800 s maxDataAge at minute 21.
        ("dead-exporter", "20x60", "600+60x60", Some(("stale_data", "_x21 1x38"))),
        ("broken", "_x60", "_x60", Some(("not_planned", "1x60"))),
        // Queries fail from the start: past 600 s at minute 10, stale_forecast (5 min bound) from minute 5.
        ("cut-off", "20+60x60", "80+60x60", Some(("stale_forecast", "_x5 1x54"))),
    ] {
        input += &series("prescale_forecast_age_seconds", workload, forecast_age);
        input += &series("prescale_history_data_age_seconds", workload, data_age);
        if let Some((reason, values)) = refused {
            input += &series("prescale_serving_refused", workload, values)
                .replace("workload=", &format!("reason=\"{reason}\",workload="));
        }
    }
    let alert = |name: &str, at: &str, firing: &[&str]| {
        let mut out = format!("      - eval_time: {at}\n        alertname: {name}\n        exp_alerts:");
        if firing.is_empty() {
            out += " []\n";
        } else {
            out += "\n";
            for workload in firing {
                out +=
                    &format!("          - exp_labels: {{namespace: shop, workload: {workload}, severity: warning}}\n");
            }
        }
        out
    };
    let checks = [
        // slow is refused from minute 4 (past its 600 s) and fires five minutes later; cut-off, refused from minute 5,
        // too. At a 300 s bound slow would have been refused from the start.
        alert("PrescaleForecastStale", "6m", &[]),
        alert("PrescaleForecastStale", "10m", &["slow", "cut-off"]),
        // dead-exporter is refused from minute 21 (past 1800 s).
        alert("PrescaleDataStale", "22m", &[]),
        alert("PrescaleDataStale", "30m", &["dead-exporter"]),
        alert("PrescaleWorkloadNotPlanned", "5m", &[]),
        alert("PrescaleWorkloadNotPlanned", "15m", &["broken"]),
        // cut-off passes 600 s at minute 10 and fires five minutes later; slow is as old, from fresh data.
        alert("PrescalePrometheusUnreachable", "13m", &[]),
        alert("PrescalePrometheusUnreachable", "20m", &["cut-off"]),
    ]
    .concat();
    // Prescale's requests to Prometheus (per process, no workload labels): failing, then all answered.
    let failing =
        "      - series: 'prescale_prometheus_requests_total{outcome=\"unreachable\"}'\n        values: '0+2x60'\n";
    let answered = "      - series: 'prescale_prometheus_requests_total{outcome=\"ok\"}'\n        values: '0+2x60'\n";
    let tests = format!(
        "rule_files: [rules.yaml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{input}{failing}    alert_rule_test:\n{checks}  - interval: 1m\n    input_series:\n{input}{answered}    alert_rule_test:\n{}",
        alert("PrescalePrometheusUnreachable", "20m", &[])
    );
    std::fs::write(dir.path().join("tests.yaml"), tests).unwrap();
    let report = run(Command::new(promtool())
        .current_dir(dir.path())
        .args(["test", "rules", "tests.yaml"]));
    assert!(report.contains("SUCCESS"), "{report}");
}

// ---------------------------------------------------------------------------------------------------------------
// Agreement with the code.

#[test]
fn the_apiservice_registers_the_group_version_the_api_serves() {
    use prescale::apiserver::api::{GROUP, VERSION};
    for dir in ["deploy/overlays/dev", "deploy/overlays/production"] {
        let objects = render(dir);
        let apiservices: Vec<_> = of_kind(&objects, "APIService").collect();
        assert_eq!(apiservices.len(), 1, "{dir}: exactly one APIService");
        let apiservice = apiservices[0];
        assert_eq!(apiservice["metadata"]["name"], format!("{VERSION}.{GROUP}"), "{dir}");
        let spec = &apiservice["spec"];
        assert_eq!(
            (spec["group"].as_str(), spec["version"].as_str()),
            (Some(GROUP), Some(VERSION)),
            "{dir}"
        );
        let (namespace, name) = (
            spec["service"]["namespace"].as_str().unwrap(),
            spec["service"]["name"].as_str().unwrap(),
        );
        let service = find(&objects, "Service", name);
        assert_eq!(
            service["metadata"]["namespace"], namespace,
            "{dir}: APIService points at another namespace"
        );
        let port = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["port"] == spec["service"]["port"]);
        let port = port.unwrap_or_else(|| panic!("{dir}: the Service has no port {}", spec["service"]["port"]));
        let deployment = find(&objects, "Deployment", "prescale");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let target = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == port["targetPort"]);
        assert_eq!(
            target.unwrap_or_else(|| panic!("{dir}: no container port {}", port["targetPort"]))["containerPort"],
            6443
        );

        // The name kube-aggregator verifies must be in the serving certificate.
        let dns_name = format!("{name}.{namespace}.svc");
        if dir.ends_with("production") {
            assert!(
                spec.get("insecureSkipTLSVerify").is_none(),
                "production must verify the serving certificate"
            );
            let inject = apiservice["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
                .as_str()
                .unwrap();
            let (cert_namespace, cert_name) = inject.split_once('/').unwrap();
            let certificate = find(&objects, "Certificate", cert_name);
            assert_eq!(certificate["metadata"]["namespace"], cert_namespace);
            let dns_names: Vec<&str> = certificate["spec"]["dnsNames"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(dns_names.contains(&dns_name.as_str()), "{dns_names:?} lacks {dns_name}");
            let secret = certificate["spec"]["secretName"].as_str().unwrap();
            let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
            assert!(
                volumes.iter().any(|v| v["secret"]["secretName"] == secret),
                "{secret} is not mounted"
            );
        } else {
            assert_eq!(
                spec["insecureSkipTLSVerify"], true,
                "{dir}: the self-signed certificate can't be verified"
            );
            #[derive(Parser)]
            struct Cli {
                #[command(flatten)]
                tls: prescale::apiserver::tls::TlsArgs,
            }
            let defaults = Cli::try_parse_from(["prescale"]).unwrap().tls.tls_self_signed_names;
            assert!(
                defaults.contains(&dns_name),
                "self-signed SAN defaults {defaults:?} lack {dns_name}"
            );
        }
    }
}

#[test]
fn rbac_grants_what_delegated_authentication_needs() {
    let objects = render("deploy/overlays/production");
    let deployment = find(&objects, "Deployment", "prescale");
    let account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap();
    let namespace = deployment["metadata"]["namespace"].as_str().unwrap();
    find(&objects, "ServiceAccount", account);
    let subject = serde_json::json!({"kind": "ServiceAccount", "name": account, "namespace": namespace});
    let bound = |kind: &str, role: &str| {
        of_kind(&objects, kind)
            .any(|b| b["roleRef"]["name"] == role && b["subjects"].as_array().is_some_and(|s| s.contains(&subject)))
    };
    assert!(
        bound("ClusterRoleBinding", "system:auth-delegator"),
        "TokenReview/SubjectAccessReview need auth-delegator"
    );
    let reader = of_kind(&objects, "RoleBinding")
        .find(|b| b["roleRef"]["name"] == "extension-apiserver-authentication-reader")
        .expect("a RoleBinding to extension-apiserver-authentication-reader");
    assert_eq!(
        reader["metadata"]["namespace"],
        prescale::apiserver::auth::CONFIG_MAP_NAMESPACE
    );
    assert_eq!(reader["roleRef"]["kind"], "Role");
    assert!(reader["subjects"].as_array().unwrap().contains(&subject));

    let hpa =
        serde_json::json!({"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"});
    let reader_role = of_kind(&objects, "ClusterRoleBinding")
        .find(|b| b["subjects"].as_array().is_some_and(|s| s.contains(&hpa)))
        .expect("the HPA controller is bound to an external metrics reader role");
    let role = find(
        &objects,
        "ClusterRole",
        reader_role["roleRef"]["name"].as_str().unwrap(),
    );
    let rule = &role["rules"][0];
    assert_eq!(rule["apiGroups"], serde_json::json!([prescale::apiserver::api::GROUP]));
    assert_eq!(rule["verbs"], serde_json::json!(["get", "list"]));

    // The controller reads PredictiveAutoscalers, writes their status, and manages their HPAs.
    let binding = of_kind(&objects, "ClusterRoleBinding")
        .find(|b| b["roleRef"]["name"] == "prescale:controller")
        .expect("a binding of the controller role");
    assert!(binding["subjects"].as_array().unwrap().contains(&subject));
    let role = find(&objects, "ClusterRole", "prescale:controller");
    let grants = |group: &str, resource: &str| -> BTreeSet<String> {
        role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["apiGroups"].as_array().unwrap().iter().any(|g| g == group)
                    && r["resources"].as_array().unwrap().iter().any(|x| x == resource)
            })
            .flat_map(|r| {
                r["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
            })
            .collect()
    };
    let set = |verbs: &[&str]| verbs.iter().map(|v| v.to_string()).collect::<BTreeSet<_>>();
    let group = prescale::workload::GROUP;
    assert_eq!(grants(group, "predictiveautoscalers"), set(&["get", "list", "watch"]));
    assert_eq!(grants(group, "predictiveautoscalers/status"), set(&["patch", "update"]));
    assert_eq!(
        grants("autoscaling", "horizontalpodautoscalers"),
        set(&["get", "list", "watch", "create", "update", "patch", "delete"])
    );
    // Of several replicas one writes: the holder of the Lease (--leader-elect-lease's default) in prescale's
    // namespace, which it may read, renew and create, and nothing else.
    let lease = prescale::k8s::leader::DEFAULT_LEASE_NAME;
    assert!(bound("RoleBinding", "prescale:leader-election"));
    let election = find(&objects, "Role", "prescale:leader-election");
    assert_eq!(election["metadata"]["namespace"], namespace);
    let rules = election["rules"].as_array().unwrap();
    assert!(rules
        .iter()
        .all(|r| r["apiGroups"] == serde_json::json!(["coordination.k8s.io"])
            && r["resources"] == serde_json::json!(["leases"])));
    let verbs = |names: Option<&[&str]>| -> BTreeSet<String> {
        rules
            .iter()
            .filter(|r| match names {
                Some(names) => r["resourceNames"] == serde_json::json!(names),
                None => r.get("resourceNames").is_none(),
            })
            .flat_map(|r| {
                r["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
            })
            .collect()
    };
    assert_eq!(verbs(Some(&[lease])), set(&["get", "update"]));
    assert_eq!(verbs(None), set(&["create"]), "create cannot be restricted by name");
    // The CRD the role names is deployed with it.
    let crd = find(
        &objects,
        "CustomResourceDefinition",
        "predictiveautoscalers.prescale.dev",
    );
    assert_eq!(crd["spec"]["group"], group);
}

#[test]
fn the_deployment_is_hardened_and_highly_available() {
    for (dir, min_replicas) in [("deploy/overlays/dev", 1), ("deploy/overlays/production", 2)] {
        let objects = render(dir);
        let deployment = find(&objects, "Deployment", "prescale");
        let replicas = deployment["spec"]["replicas"].as_u64().unwrap();
        assert!(replicas >= min_replicas, "{dir}: {replicas} replicas");
        let pod = &deployment["spec"]["template"]["spec"];
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{dir}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{dir}"
        );
        assert!(
            pod["affinity"]["podAntiAffinity"].is_object() && pod["topologySpreadConstraints"].is_array(),
            "{dir}"
        );
        for container in pod["containers"].as_array().unwrap() {
            let security = &container["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], true, "{dir}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{dir}");
            assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]), "{dir}");
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                assert!(container[probe]["httpGet"]["path"].is_string(), "{dir}: {probe}");
            }
            for kind in ["requests", "limits"] {
                assert!(
                    container["resources"][kind]["memory"].is_string(),
                    "{dir}: memory {kind}"
                );
            }
        }
        let pdb = find(&objects, "PodDisruptionBudget", "prescale");
        for (key, value) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&labels[key], value, "{dir}: the PDB does not select the pods");
        }
        if replicas > 1 {
            assert!(
                pdb["spec"]["maxUnavailable"].as_u64().is_some_and(|m| m < replicas),
                "{dir}"
            );
        }
        let policy = find(&objects, "NetworkPolicy", "prescale");
        assert_eq!(
            policy["spec"]["policyTypes"],
            serde_json::json!(["Ingress", "Egress"]),
            "{dir}"
        );
        let ingress_ports: BTreeSet<u64> = policy["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["port"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(
            ingress_ports,
            BTreeSet::from([6443, 8080]),
            "{dir}: ingress only to the API and admin ports"
        );
    }
}

#[test]
fn the_controller_component_gives_each_pod_its_name_and_namespace_for_the_lease() {
    let objects = render("deploy/overlays/dev");
    let literals = source_literals();
    let deployment = find(&objects, "Deployment", "prescale");
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let var = |name: &str| env.iter().find(|e| e["name"] == name);
    assert_eq!(var("PRESCALE_WATCH_OBJECTS").unwrap()["value"], "true");
    for (name, field) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
        let var = var(name).unwrap_or_else(|| panic!("{name} is not set"));
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], field, "{var}");
        assert!(literals.contains(name), "env {name} is not read by any flag in src/");
    }
}

#[test]
fn the_workload_config_and_environment_match_the_code() {
    let objects = render("deploy/overlays/production");
    let literals = source_literals();
    let deployment = find(&objects, "Deployment", "prescale");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    for env in container["env"].as_array().unwrap() {
        let name = env["name"].as_str().unwrap();
        assert!(
            literals.contains(name),
            "env {name} is not read by any flag (`env = \"{name}\"`) in src/"
        );
    }

    let config_map = of_kind(&objects, "ConfigMap")
        .find(|c| {
            c["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("prescale-config"))
        })
        .expect("the prescale-config ConfigMap");
    let text = config_map["data"]["config.yaml"].as_str().unwrap();
    let config = prescale::config::parse(text, Path::new("deploy/base/config.yaml"))
        .unwrap_or_else(|e| panic!("the shipped workload config is rejected by the code:\n{e}"));
    let ports: BTreeSet<u64> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    assert!(
        ports.contains(&u64::from(config.api_addr.port())),
        "apiAddr port not exposed"
    );
    assert!(
        ports.contains(&u64::from(config.admin_addr.port())),
        "adminAddr port not exposed"
    );

    // The example HPA reads a metric and workload that the config serves, in the workload's namespace.
    let example = render("deploy/examples/gpu-inference");
    let hpa = of_kind(&example, "HorizontalPodAutoscaler")
        .next()
        .expect("an example HPA");
    let external = &hpa["spec"]["metrics"][0]["external"];
    assert_eq!(external["metric"]["name"], prescale::apiserver::api::METRIC_REPLICAS);
    assert_eq!(
        external["target"],
        serde_json::json!({"type": "AverageValue", "averageValue": "1"})
    );
    let workload = external["metric"]["selector"]["matchLabels"][prescale::apiserver::api::WORKLOAD_LABEL]
        .as_str()
        .unwrap();
    let served = config.workloads.iter().find(|w| w.id.to_string().ends_with(workload));
    let served = served.unwrap_or_else(|| panic!("no workload {workload} in the shipped config"));
    let hpa_namespace = hpa["metadata"]["namespace"].as_str().unwrap();
    assert!(
        served.id.to_string().contains(hpa_namespace),
        "workload {} is not in namespace {hpa_namespace}",
        served.id
    );
    assert!(
        hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
            .as_u64()
            .unwrap()
            <= 3600
    );
}

#[test]
fn alerts_use_metrics_the_code_exports() {
    let objects = render("deploy/base");
    let rule = find(&objects, "PrometheusRule", "prescale");
    let literals = source_literals();
    let mut checked = 0;
    for expr in rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        let expr = expr["expr"].as_str().unwrap();
        for metric in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|t| t.starts_with("prescale_"))
        {
            assert!(
                exported(metric, &literals),
                "alert metric {metric} is not exported by the code (src/ registers no such name)"
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "expected the alerts to use prescale's own metrics");
    assert!(
        !exported("prescale_no_such_metric_total", &literals),
        "the lookup must be able to fail"
    );
}

/// Whether the sources register `metric`. prometheus-client builds exposed names from the registry prefix
/// (`prescale`), sub-registry prefixes (e.g. `api`) and the registered name, and appends `_total` to counters, so
/// the name is looked for whole, without those, and split into a sub-registry prefix and a name.
fn exported(metric: &str, literals: &BTreeSet<String>) -> bool {
    let bare = metric.strip_prefix("prescale_").unwrap_or(metric);
    let bare = bare.strip_suffix("_total").unwrap_or(bare);
    if [metric, bare].iter().any(|name| literals.contains(*name)) {
        return true;
    }
    bare.match_indices('_')
        .any(|(at, _)| literals.contains(&bare[..at]) && literals.contains(&bare[at + 1..]))
}

/// The shipped PrometheusRule's groups as `rules.yaml` in a new directory, annotations left out (promtool compares
/// them whole; `check rules` checks their templates).
fn shipped_rules_without_annotations() -> tempfile::TempDir {
    let objects = render("deploy/base");
    let rule = find(&objects, "PrometheusRule", "prescale");
    let mut spec = rule["spec"].clone();
    for group in spec["groups"].as_array_mut().unwrap() {
        for r in group["rules"].as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("annotations");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), serde_json::to_string(&spec).unwrap()).unwrap();
    dir
}

/// One input series of a `promtool test rules` case, for a workload in namespace `shop`.
fn series(name: &str, workload: &str, values: &str) -> String {
    format!("      - series: '{name}{{namespace=\"shop\",workload=\"{workload}\"}}'\n        values: '{values}'\n")
}
