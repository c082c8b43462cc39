//! What the manifest tests share (`mod manifest_checks;`): the tools (kubectl, kubernetes-validate, promtool), the
//! strict schema validation of rendered objects, the structural checks of the custom resources we ship, and the
//! string literals of the sources.
//!
//! CRD kinds (ServiceMonitor, PrometheusRule, cert-manager Certificate/Issuer) have no schema in
//! kubernetes-validate and their CRDs can't be fetched here, so they are checked structurally: deserialized into
//! typed structs that mirror the subset of each CRD's schema we use, with unknown fields rejected.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn tool(name: &str, install: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} not found on PATH: {install}"))
}

pub fn kubectl() -> PathBuf {
    tool(
        "kubectl",
        "install kubectl (Debian: `apt-get install -y kubectl`, or the Kubernetes apt repository)",
    )
}

pub fn kubernetes_validate() -> PathBuf {
    tool(
        "kubernetes-validate",
        "install it with `pip install kubernetes-validate` (see .ci/requirements.txt)",
    )
}

pub fn promtool() -> PathBuf {
    tool(
        "promtool",
        "install Prometheus's promtool (Debian: `apt-get install -y prometheus`)",
    )
}

pub fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout + &stderr
}

/// `kubectl kustomize <dir>` as YAML text.
pub fn render_yaml(dir: &str) -> String {
    let output = Command::new(kubectl())
        .arg("kustomize")
        .arg(repo().join(dir))
        .output()
        .expect("running kubectl");
    assert!(
        output.status.success(),
        "kubectl kustomize {dir} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The rendered objects of a kustomization.
pub fn render(dir: &str) -> Vec<Value> {
    let yaml = render_yaml(dir);
    serde_saphyr::from_multiple::<Value>(&yaml).unwrap_or_else(|e| panic!("{dir}: rendered YAML does not parse: {e}"))
}

pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

pub fn of_kind<'a>(objects: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    objects.iter().filter(move |o| o["kind"] == kind)
}

pub fn api_group(object: &Value) -> &str {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    api_version.split_once('/').map_or("", |(group, _)| group)
}

/// The API groups served by CRDs rather than by Kubernetes itself.
pub const CRD_GROUPS: [&str; 2] = ["monitoring.coreos.com", "cert-manager.io"];

// ---------------------------------------------------------------------------------------------------------------
// Schema validation.

/// Runs kubernetes-validate strictly; returns its report.
pub fn validate_strict(name: &str, yaml: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{}.yaml", name.replace('/', "_")));
    std::fs::write(&file, yaml).unwrap();
    let output = Command::new(kubernetes_validate())
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .arg(&file)
        .output()
        .expect("running kubernetes-validate");
    let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    if output.status.success() && !report.contains("ERROR") && !report.contains("failed") {
        Ok(report)
    } else {
        Err(report)
    }
}

/// Validates rendered objects (`yaml`, parsed as `objects`) strictly: every built-in object must pass
/// kubernetes-validate, and every custom resource must be of a group in [`CRD_GROUPS`] and pass
/// [`check_custom_resource`]. `name` names the rendering in failures.
pub fn validate_objects(name: &str, yaml: &str, objects: &[Value]) {
    assert!(!objects.is_empty(), "{name} renders nothing");
    let report = validate_strict(name, yaml).unwrap_or_else(|report| panic!("{name}:\n{report}"));
    let built_in = objects.iter().filter(|o| !CRD_GROUPS.contains(&api_group(o))).count();
    let passed = report.matches("passed for resource").count();
    assert_eq!(
        passed, built_in,
        "{name}: every built-in object must be schema-checked:\n{report}"
    );
    for line in report.lines().filter(|l| l.contains("Couldn't find schema")) {
        assert!(
            CRD_GROUPS.iter().any(|g| line.contains(g)),
            "{name}: object without a schema: {line}"
        );
    }
    for object in objects.iter().filter(|o| CRD_GROUPS.contains(&api_group(o))) {
        check_custom_resource(object).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

// Typed mirrors of the CRD schema subsets we use. Unknown fields are errors, as the API server's structural
// pruning would silently drop them (or reject them with kubectl --validate=strict).

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Object<Spec> {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Metadata {
    name: String,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct LabelSelector {
    match_labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct ServiceMonitorSpec {
    selector: LabelSelector,
    namespace_selector: Option<NamespaceSelector>,
    endpoints: Vec<Endpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct NamespaceSelector {
    match_names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Endpoint {
    port: String,
    path: Option<String>,
    interval: Option<String>,
    scrape_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrometheusRuleSpec {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Rule {
    alert: String,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct CertificateSpec {
    secret_name: String,
    common_name: Option<String>,
    dns_names: Option<Vec<String>>,
    duration: Option<String>,
    renew_before: Option<String>,
    usages: Option<Vec<String>>,
    #[serde(rename = "isCA")]
    is_ca: Option<bool>,
    private_key: Option<PrivateKey>,
    issuer_ref: IssuerRef,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct PrivateKey {
    algorithm: String,
    size: u32,
    rotation_policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct IssuerRef {
    kind: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct IssuerSpec {
    self_signed: Option<BTreeMap<String, Value>>,
    ca: Option<CaIssuer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct CaIssuer {
    secret_name: String,
}

/// Go duration strings as the CRDs expect them (e.g. `30s`, `2160h`, `1h30m`).
fn check_duration(field: &str, value: &Option<String>) -> Result<(), String> {
    let Some(value) = value else { return Ok(()) };
    let valid = !value.is_empty()
        && value.split_inclusive(|c: char| c.is_ascii_alphabetic()).all(|part| {
            part.len() > 1 && part[..part.len() - 1].parse::<u64>().is_ok() && part.ends_with(['h', 'm', 's'])
        });
    if valid {
        Ok(())
    } else {
        Err(format!("{field}: {value:?} is not a duration like 30s or 2160h"))
    }
}

fn parse<T: serde::de::DeserializeOwned>(object: &Value) -> Result<Object<T>, String> {
    let name = format!("{} {}", object["kind"], object["metadata"]["name"]);
    serde_json::from_value(object.clone()).map_err(|e| format!("{name}: {e}"))
}

/// Structural validation of the custom resources we ship.
pub fn check_custom_resource(object: &Value) -> Result<(), String> {
    match (
        object["apiVersion"].as_str().unwrap_or_default(),
        object["kind"].as_str().unwrap_or_default(),
    ) {
        ("monitoring.coreos.com/v1", "ServiceMonitor") => {
            let monitor = parse::<ServiceMonitorSpec>(object)?;
            for endpoint in &monitor.spec.endpoints {
                check_duration("interval", &endpoint.interval)?;
                check_duration("scrapeTimeout", &endpoint.scrape_timeout)?;
                if let Some(path) = &endpoint.path {
                    assert!(path.starts_with('/'), "endpoint {} path {path}", endpoint.port);
                }
            }
            Ok(())
        }
        ("monitoring.coreos.com/v1", "PrometheusRule") => {
            let rule = parse::<PrometheusRuleSpec>(object)?;
            rule.spec
                .groups
                .iter()
                .flat_map(|g| &g.rules)
                .try_for_each(|r| check_duration("for", &r.for_))
        }
        ("cert-manager.io/v1", "Certificate") => {
            let certificate = parse::<CertificateSpec>(object)?;
            check_duration("duration", &certificate.spec.duration)?;
            check_duration("renewBefore", &certificate.spec.renew_before)
        }
        ("cert-manager.io/v1", "Issuer") => {
            let issuer = parse::<IssuerSpec>(object)?;
            match (&issuer.spec.self_signed, &issuer.spec.ca) {
                (Some(_), None) | (None, Some(_)) => Ok(()),
                _ => Err(format!(
                    "Issuer {}: exactly one of selfSigned and ca",
                    issuer.metadata.name
                )),
            }
        }
        (api_version, kind) => Err(format!(
            "{kind} {api_version}: no structural check for this custom resource"
        )),
    }
}

/// Every string literal `"..."` in the crate's sources, for checking that names in the manifests exist in code.
pub fn source_literals() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.extend(text.split('"').skip(1).step_by(2).map(str::to_owned));
            }
        }
    }
    let mut literals = BTreeSet::new();
    walk(&repo().join("src"), &mut literals);
    literals
}
