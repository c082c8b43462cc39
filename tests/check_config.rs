//! `prescale check-config`: the real binary on the shipped example and on a broken file.

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
        "workloads:\n  - name: a\n    demand: {trace: a.csv}\n    capacityPerReplica: 3\n    maxReplicas: 4\n    \
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
