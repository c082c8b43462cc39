//! The real binary's command line: flags are checked by the parser, not read loosely later.

mod support;

use std::process::Command;

fn prescale(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(args)
        .env_remove("PRESCALE_LOG")
        .output()
        .expect("the prescale binary runs")
}

#[test]
fn a_log_filter_tracing_cannot_read_is_refused_with_the_reason() {
    for bad in ["prescale=[bad", "foo=bar=baz"] {
        let out = prescale(&["--log", bad, "check-config", "deploy/base/config.yaml"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains("--log") && stderr.contains(bad) && stderr.contains("write e.g. info"),
            "{bad}: {stderr}"
        );
    }
}

#[test]
fn a_good_log_filter_is_accepted() {
    let out = prescale(&[
        "--log",
        "prescale=debug,warn",
        "check-config",
        "deploy/base/config.yaml",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// SIGTERM while the startup replays (minutes of fits on blocking threads) are running: the process must exit well
/// inside Kubernetes' grace period, abandoning that work, not wait for it.
#[test]
fn sigterm_during_the_startup_replay_exits_promptly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("demo.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(["demo", "--api-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .env_remove("PRESCALE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start `prescale demo`");
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(stdout).lines().map_while(Result::ok) {});
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("replaying recent history") {
            break;
        }
        assert!(Instant::now() < deadline, "no replay started within 60 s:\n{text}");
        assert!(child.try_wait().unwrap().is_none(), "the demo exited early:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the replays get well into their blocking fits.
    std::thread::sleep(Duration::from_secs(2));
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("still running 30 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = sent.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{status}:\n{text}");
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} to exit after SIGTERM:\n{text}"
    );
}

#[test]
fn a_watched_namespace_needs_the_controller_on() {
    let out = prescale(&[
        "serve",
        "--config",
        "deploy/base/config.yaml",
        "--watch-namespace",
        "inference",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--watch-objects"), "{stderr}");
}

#[test]
fn sharded_replicas_need_a_shared_serving_key() {
    let serve = ["serve", "--config", "deploy/base/config.yaml", "--shard-members"];
    for (extra, code, says) in [
        // Without --tls-key-file each replica would sign its peers' plans with a key of its own.
        (&["prescale-member"][..], 1, &["--shard-members", "--tls-key-file"][..]),
        (&["Bad_Prefix"][..], 2, &["DNS subdomain"][..]),
    ] {
        let out = prescale(&[&serve[..], extra].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {stderr}");
        assert!(says.iter().all(|s| stderr.contains(s)), "{extra:?}: {stderr}");
    }
}

#[test]
fn a_lease_duration_the_lease_cannot_hold_is_refused_with_the_fix() {
    for bad in ["1500ms", "1s", "10m", "soon"] {
        let out = prescale(&[
            "serve",
            "--config",
            "deploy/base/config.yaml",
            "--watch-objects",
            "--leader-elect-lease-duration",
            bad,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains("--leader-elect-lease-duration") && stderr.contains("e.g. 15s"),
            "{bad}: {stderr}"
        );
    }
    // `--leader-elect` takes its value after `=` only, so a bare flag never swallows the next argument.
    let out = prescale(&["serve", "--config", "deploy/base/config.yaml", "--leader-elect=maybe"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--leader-elect"), "{stderr}");
}

/// A restart with `--state-dir` adopts what every workload learned: the first process saves each workload's state,
/// the second adopts all of them (no startup replay) and serves from its first cycle.
#[test]
fn a_restarted_process_adopts_every_workload_s_saved_state() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let states = dir.path().join("states");
    let start = |log: &std::path::Path| {
        let mut child = support::demo_command(log)
            .arg("--state-dir")
            .arg(&states)
            .args(["--state-save-interval", "1s"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start `prescale demo`");
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(stdout).lines().map_while(Result::ok) {});
        child
    };
    let saved = || -> Vec<std::path::PathBuf> {
        let Ok(namespaces) = std::fs::read_dir(&states) else {
            return Vec::new();
        };
        namespaces
            .flatten()
            .flat_map(|ns| std::fs::read_dir(ns.path()).into_iter().flatten().flatten())
            .map(|f| f.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect()
    };

    let first_log = dir.path().join("first.log");
    let mut first = start(&first_log);
    let deadline = Instant::now() + Duration::from_secs(180);
    // The demo plans three workloads; each saves once its first model is in.
    while saved().len() < 3 {
        let text = std::fs::read_to_string(&first_log).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "{} states saved within 180 s:\n{text}",
            saved().len()
        );
        assert!(first.try_wait().unwrap().is_none(), "the demo exited early:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    support::terminate(&mut first);
    for file in saved() {
        let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(state["version"], 1, "{}", file.display());
        assert!(state["learned"]["lastPlan"]["replicas"].as_u64().is_some(), "{state}");
        assert!(state["model"]["method"].is_string(), "{state}");
    }

    let second_log = dir.path().join("second.log");
    let mut second = start(&second_log);
    support::wait_for_adoptions(&mut second, &second_log, 3);
    support::terminate(&mut second);
}

#[test]
fn a_save_interval_out_of_range_is_refused_with_the_fix() {
    for bad in ["0s", "2h", "soon"] {
        let out = prescale(&["demo", "--state-save-interval", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains("--state-save-interval") && stderr.contains("e.g. 5m"),
            "{bad}: {stderr}"
        );
    }
}
