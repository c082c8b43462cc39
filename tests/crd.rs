//! The PredictiveAutoscaler CRD: the committed YAML is what the code generates, it passes Kubernetes' own schema for
//! CRDs, its spec has exactly the fields the workload validator reads, and objects are admitted or refused by its
//! schema and CEL rules (checked with jsonschema and a CEL interpreter, `tests/crd_validate.py`) as the validator
//! accepts or refuses them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use prescale::config::{self, ConfigError};
use serde_json::{json, Value};

const CRD_FILE: &str = "deploy/crd/prescale.dev_predictiveautoscalers.yaml";
/// The Helm chart's copy (Helm installs what `crds/` holds before anything else).
const CHART_CRD_FILE: &str = "deploy/helm/prescale/crds/prescale.dev_predictiveautoscalers.yaml";
const EXAMPLE: &str = "deploy/examples/gpu-inference/predictiveautoscaler.yaml";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn crd() -> Value {
    serde_json::to_value(<prescale::workload::PredictiveAutoscaler as kube::CustomResourceExt>::crd()).unwrap()
}

fn spec_schema() -> Value {
    crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

#[test]
fn the_committed_crd_is_what_the_code_generates() {
    let generated = prescale::workload::crd_yaml();
    for file in [CRD_FILE, CHART_CRD_FILE] {
        let committed = std::fs::read_to_string(repo().join(file)).unwrap();
        assert!(
            committed == generated,
            "{file} is out of date with src/workload.rs; regenerate both copies with\n  \
             cargo run -- crd > {CRD_FILE} && cp {CRD_FILE} {CHART_CRD_FILE}"
        );
    }
    let committed = std::fs::read_to_string(repo().join(CRD_FILE)).unwrap();
    let parsed: Value = serde_saphyr::from_str(&committed).unwrap();
    assert_eq!(parsed, crd(), "the YAML reads back as the CRD");
}

#[test]
fn the_crd_passes_strict_kubernetes_validation() {
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .arg(repo().join(CRD_FILE))
        .output()
        .expect("kubernetes-validate runs (pip install -r .ci/requirements.txt)");
    let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    assert!(
        report.contains("passed for resource customresourcedefinition/predictiveautoscalers.prescale.dev"),
        "{report}"
    );
}

/// Dotted paths of every property under a schema (a list's items' properties after the list's name).
fn schema_fields(schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let schema = if schema["type"] == "array" {
        &schema["items"]
    } else {
        schema
    };
    if let Some(properties) = schema["properties"].as_object() {
        for (name, sub) in properties {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            out.insert(path.clone());
            schema_fields(sub, &path, out);
        }
    }
}

#[test]
fn the_spec_has_exactly_the_fields_the_validator_reads() {
    let mut crd_fields = BTreeSet::new();
    schema_fields(&spec_schema(), "", &mut crd_fields);
    let file_only: BTreeSet<String> = prescale::workload::FILE_ONLY_FIELDS
        .iter()
        .map(|f| f.to_string())
        .collect();
    let validator: BTreeSet<String> = config::workload_fields().into_iter().collect();
    let expected: BTreeSet<String> = crd_fields.union(&file_only).cloned().collect();
    assert_eq!(
        validator.difference(&expected).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "fields the workload file accepts that the PredictiveAutoscaler spec lacks (add them to src/workload.rs or \
         FILE_ONLY_FIELDS)"
    );
    assert_eq!(
        expected.difference(&validator).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "fields of the PredictiveAutoscaler spec the validator does not accept (read them in src/config.rs)"
    );
    for field in [
        "leadTime",
        "demand.step",
        "hpa.behavior.scaleDown.policies.periodSeconds",
        "scaleTargetRef.name",
    ] {
        assert!(crd_fields.contains(field), "{field}");
    }
}

/// A valid spec, as JSON.
fn good_spec() -> Value {
    json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "demand": {"promql": "sum(rate(requests_total[1m]))"},
        "capacityPerReplica": 12,
        "maxReplicas": 10,
    })
}

/// Sets `path` (dotted; a segment naming a list sets its first item) in `spec` to `value`, creating what is missing.
fn set(spec: &mut Value, schema: &Value, path: &str, value: Value) -> String {
    let mut node = spec;
    let mut schema = schema;
    let mut written = String::from("spec");
    let segments: Vec<&str> = path.split('.').collect();
    for (i, segment) in segments.iter().enumerate() {
        schema = &schema["properties"][*segment];
        written += &format!(".{segment}");
        let last = i + 1 == segments.len();
        if last {
            node[*segment] = value;
            break;
        }
        if schema["type"] == "array" {
            if !node[*segment].is_array() {
                node[*segment] = json!([{"type": "Pods", "value": 1, "periodSeconds": 60}]);
            }
            node = &mut node[*segment][0];
            schema = &schema["items"];
            written += "[0]";
        } else {
            if !node[*segment].is_object() {
                node[*segment] = json!({});
            }
            node = &mut node[*segment];
        }
    }
    written
}

/// Every field of the spec is read by the validator: a mapping where the field's value goes is refused, at that
/// field.
#[test]
fn every_spec_field_is_read_by_the_validator() {
    let schema = spec_schema();
    let mut fields = BTreeSet::new();
    schema_fields(&schema, "", &mut fields);
    let mut checked = 0;
    for field in &fields {
        let mut spec = good_spec();
        let path = set(&mut spec, &schema, field, json!({"not": "this"}));
        let problems = config::check_spec("shop", "web", &spec).expect_err(field);
        assert!(
            problems.iter().any(|p| p.field == path),
            "{field}: no problem at {path}: {problems:#?}"
        );
        checked += 1;
    }
    assert!(checked > 40, "{checked} fields");
    assert!(config::check_spec("shop", "web", &good_spec()).is_ok());
}

fn python_validate(files: &[PathBuf]) -> Vec<Value> {
    let output = Command::new("python3")
        .arg(repo().join("tests/crd_validate.py"))
        .arg(repo().join(CRD_FILE))
        .args(files)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "tests/crd_validate.py failed (pip install -r .ci/requirements.txt installs jsonschema and cel-python):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn object(name: &str, spec: &Value) -> Value {
    json!({
        "apiVersion": "prescale.dev/v1alpha1",
        "kind": "PredictiveAutoscaler",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": spec,
    })
}

/// Bad objects are refused at admission by the rule that says why, and by the validator `check-config` runs, at the
/// same field.
#[test]
fn bad_objects_are_refused_at_admission_and_by_the_validator() {
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut spec = good_spec();
        edit(&mut spec);
        spec
    };
    // name, spec, what admission says, the validator's field and message.
    let cases: Vec<(&str, Value, &str, &str, &str)> = vec![
        (
            "min-above-max",
            with(&|s| s["minReplicas"] = json!(12)),
            "spec: minReplicas must not exceed maxReplicas",
            "spec.maxReplicas",
            "(10) is below minReplicas (12)",
        ),
        (
            "quantile",
            with(&|s| s["quantile"] = json!(1.5)),
            "spec.quantile: quantile must be strictly between 0 and 1",
            "spec.quantile",
            "quantile must be strictly between 0 and 1, got 1.5",
        ),
        (
            "bad-duration",
            with(&|s| s["leadTime"] = json!("5 minutes")),
            "spec.leadTime: '5 minutes' does not match",
            "spec.leadTime",
            "`5 minutes` is not a duration",
        ),
        (
            "long-lead",
            with(&|s| s["leadTime"] = json!("2h")),
            "spec.leadTime: must be at most 1h",
            "spec.leadTime",
            "2h is longer than 1h",
        ),
        (
            "lead-in-days",
            with(&|s| s["leadTime"] = json!("1d")),
            "spec.leadTime: must be at most 1h: write it in h, m, s or ms",
            "spec.leadTime",
            "1d is longer than 1h",
        ),
        (
            "step",
            with(&|s| s["demand"]["step"] = json!("0s")),
            "spec.demand.step: must be between 1s and 1h",
            "spec.demand.step",
            "0s must be between 1s and 1h",
        ),
        (
            "unknown-field",
            with(&|s| s["capcity"] = json!(3)),
            "spec: Additional properties are not allowed ('capcity' was unexpected)",
            "spec",
            "unknown field `capcity`",
        ),
        (
            "no-target",
            with(&|s| {
                s.as_object_mut().unwrap().remove("scaleTargetRef");
            }),
            "spec: scaleTargetRef is required",
            "spec.scaleTargetRef",
            "is required",
        ),
        (
            "no-promql",
            with(&|s| s["demand"] = json!({"step": "1m"})),
            "spec.demand: demand.promql is required",
            "spec.demand.promql",
            "is required",
        ),
        (
            "capacity",
            with(&|s| s["capacityPerReplica"] = json!(0)),
            "spec.capacityPerReplica: capacityPerReplica must be from 0.001 to 1e12",
            "spec.capacityPerReplica",
            "must be a positive number",
        ),
        (
            "behavior-unmanaged",
            with(&|s| {
                s["hpa"] = json!({"managed": false, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}})
            }),
            "spec.hpa: hpa.behavior applies only to a managed HPA",
            "spec.hpa.behavior",
            "applies only to a managed HPA",
        ),
        (
            "policy-period",
            with(&|s| {
                s["hpa"] = json!({"behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 4, "periodSeconds": 3600}]}}})
            }),
            "spec.hpa.behavior.scaleUp.policies.0.periodSeconds: 3600 is greater than the maximum of 1800",
            "spec.hpa.behavior.scaleUp.policies[0].periodSeconds",
            "3600 must be a whole number from 1 to 1800",
        ),
        (
            "target-kind",
            with(&|s| s["scaleTargetRef"]["kind"] = json!("deployment")),
            "spec.scaleTargetRef.kind: 'deployment' does not match",
            "spec.scaleTargetRef.kind",
            "`deployment` is not a kind",
        ),
        (
            "seasonality-word",
            with(&|s| s["seasonality"] = json!(["1d", "daily"])),
            "spec.seasonality.1: 'daily' does not match",
            "spec.seasonality[1]",
            "`daily` is not a duration",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = cases
        .iter()
        .map(|(name, spec, ..)| {
            let file = dir.path().join(format!("{name}.yaml"));
            std::fs::write(&file, serde_json::to_string(&object(name, spec)).unwrap()).unwrap();
            file
        })
        .collect();
    let reports = python_validate(&files);
    assert_eq!(reports.len(), cases.len());
    for ((name, spec, admission, field, message), report) in cases.iter().zip(&reports) {
        assert_eq!(report["name"], *name);
        let errors: Vec<&str> = report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            errors.iter().any(|e| e.starts_with(admission)),
            "{name}: admission should say {admission:?}, said {errors:#?}"
        );
        let problems = config::check_spec("shop", name, spec).expect_err(name);
        assert!(
            problems
                .iter()
                .any(|p| p.field == *field && p.message.contains(message)),
            "{name}: the validator should say {field}: {message}, said {problems:#?}"
        );
    }
    // A valid name the rule accepts; an invalid one is refused by both.
    let bad_name = dir.path().join("bad-name.yaml");
    std::fs::write(
        &bad_name,
        serde_json::to_string(&object("Web_1", &good_spec())).unwrap(),
    )
    .unwrap();
    let report = &python_validate(std::slice::from_ref(&bad_name))[0];
    assert!(
        report["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("<object>: metadata.name must be a DNS label"),
        "{report}"
    );
    assert!(config::check_spec("shop", "Web_1", &good_spec()).is_err());
}

/// Every PredictiveAutoscaler shipped in deploy/ or shown in the docs: YAML files, and ```yaml blocks in Markdown.
fn shipped_objects(dir: &Path) -> Vec<(String, String)> {
    fn walk(path: &Path, out: &mut Vec<(String, String)>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                walk(&entry.unwrap().path(), out);
            }
            return;
        }
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let name = path.display().to_string();
        // At the top level of a document, not inside the CRD's `names:`.
        let holds = |text: &str| {
            text.starts_with("kind: PredictiveAutoscaler\n") || text.contains("\nkind: PredictiveAutoscaler\n")
        };
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml") if holds(&text) => out.push((name, text)),
            Some("md") => {
                for (i, block) in text.split("```yaml\n").skip(1).enumerate() {
                    let block = block.split("```").next().unwrap();
                    if holds(block) {
                        out.push((format!("{name} (yaml block {})", i + 1), block.to_owned()));
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for sub in ["deploy", "docs", "README.md"] {
        walk(&dir.join(sub), &mut out);
    }
    out
}

#[test]
fn shipped_and_documented_objects_pass_admission_and_the_validator() {
    let objects = shipped_objects(&repo());
    let names: Vec<&str> = objects.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.iter().any(|n| n.ends_with(EXAMPLE)), "{names:?}");
    assert!(
        names.iter().any(|n| n.contains("README.md")),
        "the README shows an object: {names:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, (name, text)) in objects.iter().enumerate() {
        if let Err(e) = config::parse_objects(text, Path::new(name)) {
            panic!("{name} is refused by the validator:\n{e}");
        }
        let file = dir.path().join(format!("{i}.yaml"));
        std::fs::write(&file, text).unwrap();
        files.push(file);
    }
    let reports = python_validate(&files);
    assert!(reports.len() >= objects.len());
    for report in reports {
        let index: usize = Path::new(report["file"].as_str().unwrap())
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            report["errors"],
            json!([]),
            "{} is refused at admission",
            objects[index].0
        );
    }
}

/// The example object is the gpu-inference example's workload: its Deployment, its HPA's bounds, and the settings
/// of the same workload in deploy/base/config.yaml.
#[test]
fn the_example_object_matches_the_example_and_its_workload_file_entry() {
    let objects = config::load_objects(repo().join(EXAMPLE)).unwrap();
    assert_eq!(objects.len(), 1);
    let object = &objects[0];
    let read =
        |file: &str| -> Value { serde_saphyr::from_str(&std::fs::read_to_string(repo().join(file)).unwrap()).unwrap() };
    let deployment = read("deploy/examples/gpu-inference/deployment.yaml");
    let hpa = read("deploy/examples/gpu-inference/hpa.yaml");
    let target = object.scale_target.as_ref().unwrap();
    assert_eq!(target.reference.name, deployment["metadata"]["name"].as_str().unwrap());
    assert_eq!(target.reference.kind, "Deployment");
    assert_eq!(
        object.id.namespace,
        deployment["metadata"]["namespace"].as_str().unwrap()
    );
    assert!(!target.managed_hpa, "the example ships its own HPA");
    assert_eq!(
        i64::from(object.policy.replicas.min()),
        hpa["spec"]["minReplicas"].as_i64().unwrap()
    );
    assert_eq!(
        i64::from(object.policy.replicas.max()),
        hpa["spec"]["maxReplicas"].as_i64().unwrap()
    );
    assert_eq!(
        object.policy.downscale_stabilization.num_seconds(),
        hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
            .as_i64()
            .unwrap()
    );
    let file = config::load(repo().join("deploy/base/config.yaml")).unwrap();
    let entry = file
        .workloads
        .iter()
        .find(|w| w.id == object.id)
        .expect("the same workload in config.yaml");
    let mut entry = entry.clone();
    entry.scale_target = object.scale_target.clone();
    assert_eq!(
        &entry, object,
        "the object and the file entry configure the same workload"
    );
}

/// The file's entries are the spec type: every entry of the shipped workload files reads into it with no field lost.
#[test]
fn workload_file_entries_read_into_the_spec_type() {
    for file in ["examples/prescale.yaml", "deploy/base/config.yaml"] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let top: Value = serde_saphyr::from_str(&text).unwrap();
        for entry in top["workloads"].as_array().unwrap() {
            let typed: prescale::workload::WorkloadEntry = serde_json::from_value(entry.clone())
                .unwrap_or_else(|e| panic!("{file}: {entry} does not read as a workload entry: {e}"));
            let back = serde_json::to_value(&typed).unwrap();
            let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<BTreeSet<_>>();
            assert_eq!(keys(&back), keys(entry), "{file}: fields lost reading {entry}");
        }
    }
}

/// `check-config --objects` refuses what the validator refuses, each problem at its line and column.
#[test]
fn objects_from_a_file_are_located() {
    let text = "\
apiVersion: prescale.dev/v1alpha1
kind: PredictiveAutoscaler
metadata: {name: web, namespace: shop}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  demand: {promql: up, trace: x.csv}
  capacityPerReplica: 3
  maxReplicas: 4
  leadTime: 2h
---
apiVersion: prescale.dev/v1
kind: PredictiveAutoscaler
metadata: {name: api}
spec:
  demand: {promql: up}
  capacityPerReplica: 3
  maxReplicas: 4
";
    let err = match config::parse_objects(text, Path::new("o.yaml")) {
        Err(ConfigError::Invalid(problems)) => problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
        other => panic!("{other:?}"),
    };
    for expect in [
        "o.yaml:6:31: spec.demand.trace: is for the workload file only",
        "o.yaml:9:13: spec.leadTime: 2h is longer than 1h",
        "o.yaml:11:13: apiVersion: text `prescale.dev/v1` is not `prescale.dev/v1alpha1`",
        "o.yaml:15:3: spec.scaleTargetRef: is required",
    ] {
        assert!(err.contains(expect), "missing {expect}:\n{err}");
    }
}
