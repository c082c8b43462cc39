//! The real binary refusing what it cannot run: `prescale check-config` on the shipped example and on a broken file,
//! and `prescale serve` on a serving certificate it cannot use.

use std::process::Command;

fn check_config(path: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_prescale"))
        .arg("check-config")
        .arg(path)
        .output()
        .expect("the prescale binary runs")
}

#[test]
fn the_example_passes_and_its_effective_settings_are_listed() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prescale.yaml");
    let out = check_config(&example);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(": ok (2 workload(s))"), "{stdout}");
    // Defaults the file does not state are shown as applied.
    assert!(
        stdout.contains("inference/embeddings: generator embeddings (seed 3), history 15d, seasonality 1d"),
        "{stdout}"
    );
    assert!(stdout.contains("fallback at 70% utilization"), "{stdout}");
    assert!(stdout.contains("HPA: sync 15s, scale-down hold 5m"), "{stdout}");
}

#[test]
fn a_broken_file_fails_with_every_problem_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "workloads:\n  - name: a\n    demand: {generator: {profile: embeddings}}\n    capacityPerReplica: 3\n    maxReplicas: 4\n    \
         fallbackUtilization: 1.5\n    hpaScaleDownStabilization: 2h\n",
    )
    .unwrap();
    let out = check_config(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing is reported as ok");
    assert!(
        stderr.contains("broken.yaml:6:26: workloads[0].fallbackUtilization: must be in (0, 1]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("broken.yaml:7:32: workloads[0].hpaScaleDownStabilization: must be at most 1h"),
        "{stderr}"
    );
}

#[test]
fn objects_are_checked_with_the_same_rules() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/examples/gpu-inference/predictiveautoscaler.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(["check-config", "--objects"])
        .arg(&example)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(": ok (1 workload(s))"), "{stdout}");
    assert!(
        stdout.contains("target: Deployment llm-inference (apps/v1), HPA not managed by prescale"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pas.yaml");
    std::fs::write(
        &path,
        "apiVersion: prescale.dev/v1alpha1\nkind: PredictiveAutoscaler\nmetadata: {name: web}\nspec:\n  \
         scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  demand: {promql: up}\n  \
         capacityPerReplica: 3\n  maxReplicas: 4\n  quantile: 1.5\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(["check-config", "--objects"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pas.yaml:9:13: spec.quantile: quantile must be strictly between 0 and 1"),
        "{stderr}"
    );
}

#[test]
fn crd_prints_the_committed_definition() {
    let out = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(out.status.success());
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crd/prescale.dev_predictiveautoscalers.yaml"),
    )
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        committed,
        "regenerate with: cargo run -- crd > deploy/crd/prescale.dev_predictiveautoscalers.yaml"
    );
}

/// A workload file may list no workloads: `check-config` accepts it and says what it is good for; `serve` without
/// the controller refuses it at once, naming the two fixes, before anything listens.
#[test]
fn a_file_without_workloads_is_for_the_controller_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("objects-only.yaml");
    std::fs::write(&config, "interval: 30s\nworkloads: []\n").unwrap();
    let out = check_config(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(": ok (0 workload(s))"), "{stdout}");
    assert!(stdout.contains("only with --watch-objects"), "{stdout}");

    let out = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args([
            "serve",
            "--insecure-no-auth",
            "--api-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&config)
        .env_remove("PRESCALE_WATCH_OBJECTS")
        .output()
        .expect("the prescale binary runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("{}: workloads: none listed", config.display()))
            && stderr.contains("list at least one workload")
            && stderr.contains("pass --watch-objects"),
        "{stderr}"
    );
    assert!(!stdout.contains("admin: "), "nothing listened: {stdout}");

    // The backtest of the file's workloads has nothing to replay, and says so.
    let out = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(["backtest", "--from", "-7d", "--config"])
        .arg(&config)
        .output()
        .expect("the prescale binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("workloads: none listed, so there is nothing to backtest") && stderr.contains("--trace"),
        "{stderr}"
    );
}

/// A garbage certificate ends `serve` at once with a message naming the files, before any listener (the admin
/// server's `/readyz` included) comes up: never a pod that looks ready with a dead API listener.
#[test]
fn serve_refuses_an_unusable_serving_certificate_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prescale.yaml");
    std::fs::write(
        &config,
        "workloads:\n  - name: a\n    demand: {generator: {profile: embeddings}}\n    capacityPerReplica: 3\n    \
         maxReplicas: 4\n",
    )
    .unwrap();
    let garbage = dir.path().join("tls.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args([
            "serve",
            "--insecure-no-auth",
            "--api-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--tls-cert-file")
        .arg(&garbage)
        .arg("--tls-key-file")
        .arg(&garbage)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the prescale binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve kept running with an unusable certificate:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("--tls-cert-file {}", garbage.display()))
            && stderr.contains("the serving certificate cannot be used")
            && stderr.contains("no CERTIFICATE block found"),
        "{stderr}"
    );
    assert!(!stdout.contains("admin: "), "nothing listened: {stdout}");
}

/// What `serve` refuses or cannot run is refused here too, every problem at once: a Prometheus it cannot reach, a
/// query it cannot parse, a trace that is not there, a step that never yields a sample, a `.nan`, a type error.
#[test]
fn check_config_refuses_what_serve_cannot_run_and_lists_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "prometheus: {url: 'ftp://x', timeout: 0s, maxConcurrentQueries: 0}
workloads:
  - name: a
    demand: {promql: 'sum(rate(x[1m])'}
    capacityPerReplica: .nan
    maxReplicas: many
  - name: b
    demand: {promql: up, step: 1000w}
    capacityPerReplica: 3
    maxReplicas: 4
    seasonality: [1000w]
  - name: c
    demand: {trace: missing.csv}
    capacityPerReplica: 3
    maxReplicas: 4
",
    )
    .unwrap();
    let out = check_config(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expect in [
        "bad.yaml:1:19: prometheus.url: `ftp://x` must start with http:// or https://",
        "bad.yaml:1:39: prometheus.timeout: 0s must be longer than 0s and at most 5m",
        "bad.yaml:1:65: prometheus.maxConcurrentQueries: 0 must be a whole number from 1 to 1024",
        "bad.yaml:4:22: workloads[0].demand.promql: is not valid PromQL: unclosed left parenthesis",
        "bad.yaml:5:25: workloads[0].capacityPerReplica: expected a number, found `.nan`",
        "bad.yaml:6:18: workloads[0].maxReplicas: expected a number, found text `many`",
        "bad.yaml:8:32: workloads[1].demand.step: 1000w must be between 1s and 1h",
        "bad.yaml:11:19: workloads[1].seasonality[0]: period 1000w is longer than half the history a fit sees",
        "bad.yaml:13:21: workloads[2].demand.trace:",
    ] {
        assert!(stderr.contains(expect), "missing {expect}:\n{stderr}");
    }
    assert!(stderr.contains("missing.csv: cannot read trace"), "{stderr}");
    assert!(stderr.contains("9 problem(s)"), "{stderr}");
}
