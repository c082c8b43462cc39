//! The real binary's command line: flags are checked by the parser, not read loosely later.

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
