//! End to end: the real `prescale demo` binary, queried by real kubectl clients (the oldest and the newest installed
//! release), as a user or the aggregator would, and by the official Python client (`tests/python_client.py`).
//!
//! Needs `kubectl` on PATH with versioned siblings `kubectl.1.NN` beside the resolved binary (the Google Cloud SDK
//! layout; at least two releases). The test fails, saying what to install, when they are missing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prescale::k8s::quantity;
use serde_json::Value;

const GROUP_VERSION: &str = "/apis/external.metrics.k8s.io/v1beta1";
const DEMO_WORKLOADS: [&str; 3] = ["embeddings", "llm-chat", "web-frontend"];
const READY_WITHIN: Duration = Duration::from_secs(120);

/// The running demo (or `serve`); killed when dropped, so a failing assertion never leaves it behind.
struct Demo {
    child: Child,
    api: String,
    admin: String,
    log: PathBuf,
    /// Lines of stdout after the `api:` and `admin:` lines.
    lines: mpsc::Receiver<String>,
}

impl Demo {
    fn start(dir: &Path) -> Demo {
        Self::run(
            dir,
            &["demo", "--api-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"],
        )
    }

    /// Runs `prescale` with `args`, which must print `api: <url>` and `admin: <url>`.
    fn run(dir: &Path, args: &[&str]) -> Demo {
        let log = dir.join("prescale.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_prescale"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("create the demo log file"))
            .spawn()
            .expect("start `prescale demo`");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Keeps draining stdout for the child's whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut demo = Demo {
            child,
            api: String::new(),
            admin: String::new(),
            log,
            lines: rx,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while demo.api.is_empty() || demo.admin.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match demo.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("api: ") {
                        demo.api = url.trim().to_owned();
                    } else if let Some(url) = line.strip_prefix("admin: ") {
                        demo.admin = url.trim().to_owned();
                    }
                }
                Err(_) => panic!(
                    "`prescale demo` did not print `api: <url>` and `admin: <url>` within 60 s (exit: {:?})\n{}",
                    demo.child.try_wait(),
                    demo.log_tail()
                ),
            }
        }
        for url in [&demo.api, &demo.admin] {
            assert!(
                url.starts_with("http://") || url.starts_with("https://"),
                "not a URL: {url:?}"
            );
        }
        demo
    }

    /// The next stdout line that starts with `prefix` (after trimming), skipping others.
    fn line_starting(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.trim_start().starts_with(prefix) => return line.trim().to_owned(),
                Ok(_) => {}
                Err(_) => panic!("no line starting with {prefix:?} within 30 s\n{}", self.log_tail()),
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- last lines of the prescale log ---\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A kubectl release and the kubeconfigs pointing it at the demo.
struct Kubectl {
    binary: PathBuf,
    home: PathBuf,
}

impl Kubectl {
    fn run(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--request-timeout=20s")
            .args(args)
            // A private HOME keeps kubectl's discovery cache out of the user's.
            .env("HOME", &self.home)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.binary.display()))
    }

    fn name(&self) -> String {
        self.binary.file_name().unwrap().to_string_lossy().into_owned()
    }
}

fn kubeconfig(dir: &Path, name: &str, server: &str) -> PathBuf {
    let insecure = if server.starts_with("https://") {
        "\n    insecure-skip-tls-verify: true"
    } else {
        ""
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: prescale\n  cluster:\n    server: {server}{insecure}\n\
         users:\n- name: prescale\n  user: {{}}\ncontexts:\n- name: prescale\n  context:\n    cluster: prescale\n    \
         user: prescale\ncurrent-context: prescale\n"
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// The oldest and newest `kubectl.1.NN` beside the `kubectl` found on PATH.
fn kubectl_releases() -> Vec<PathBuf> {
    const INSTALL: &str = "install kubectl with its versioned releases (e.g. Debian/Ubuntu: `apt-get install \
                           google-cloud-cli-kubectl` from the Google Cloud SDK, which ships kubectl.1.27 ... kubectl.1.33)";
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kubectl = std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`kubectl` is not on PATH: {INSTALL}"));
    let resolved = std::fs::canonicalize(&kubectl).expect("resolve kubectl");
    let dir = resolved.parent().expect("kubectl has a parent directory");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .expect("list kubectl's directory")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let minor = name.strip_prefix("kubectl.1.")?.parse().ok()?;
            Some((minor, e.path()))
        })
        .collect();
    versions.sort();
    assert!(
        versions.len() >= 2,
        "found {} versioned kubectl release(s) beside {} (need at least two kubectl.1.NN): {INSTALL}",
        versions.len(),
        resolved.display()
    );
    vec![versions[0].1.clone(), versions[versions.len() - 1].1.clone()]
}

fn stdout_json(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn wait_ready(demo: &mut Demo, kubectl: &Kubectl, admin: &Path) {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        // Ready, and every workload served from its own model (none warming up any more).
        let out = kubectl.run(admin, &["get", "--raw", "/readyz?verbose"]);
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text.contains("readyz check passed") && !text.contains("(warming up") {
            return;
        }
        if let Ok(Some(status)) = demo.child.try_wait() {
            panic!(
                "`prescale demo` exited ({status}) before it was ready\n{}",
                demo.log_tail()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{}/readyz did not answer ok within {READY_WITHIN:?}: {}\n{}",
            demo.admin,
            String::from_utf8_lossy(&out.stderr),
            demo.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn kubectl_reads_the_external_metrics_api() {
    let releases = kubectl_releases();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut demo = Demo::start(dir.path());
    let api = kubeconfig(dir.path(), "api.yaml", &demo.api);
    let admin = kubeconfig(dir.path(), "admin.yaml", &demo.admin);
    let clients: Vec<Kubectl> = releases
        .into_iter()
        .map(|binary| Kubectl {
            binary,
            home: dir.path().into(),
        })
        .collect();
    wait_ready(&mut demo, &clients[clients.len() - 1], &admin);

    for kubectl in &clients {
        let who = kubectl.name();

        let discovery = stdout_json(
            &kubectl.run(&api, &["get", "--raw", GROUP_VERSION]),
            &format!("{who} discovery"),
        );
        assert_eq!(discovery["kind"], "APIResourceList", "{who}: {discovery}");
        assert_eq!(discovery["groupVersion"], "external.metrics.k8s.io/v1beta1");
        let names: Vec<&str> = discovery["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        for metric in ["prescale_replicas", "prescale_demand_planned", "prescale_demand_median"] {
            assert!(names.contains(&metric), "{who}: discovery lacks {metric}: {names:?}");
        }

        let path = format!("{GROUP_VERSION}/namespaces/default/prescale_replicas?labelSelector=workload%3Dllm-chat");
        let list = stdout_json(&kubectl.run(&api, &["get", "--raw", &path]), &format!("{who} {path}"));
        assert_eq!(list["kind"], "ExternalMetricValueList", "{who}: {list}");
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{who}: {list}");
        let item = &items[0];
        assert_eq!(item["metricName"], "prescale_replicas");
        assert_eq!(item["metricLabels"]["workload"], "llm-chat");
        let value = item["value"].as_str().unwrap();
        let milli = quantity::parse_milli(value).unwrap_or_else(|e| panic!("{who}: value {value:?}: {e}"));
        // The HPA scales to the ceiling: a count of at least 1, served within (count − 1, count].
        assert!(milli >= 1, "{who}: replicas must ask for at least 1, got {value:?}");
        assert_eq!(
            quantity::format(milli as f64 / 1000.0).unwrap(),
            value,
            "{who}: not canonical: {value:?}"
        );
        let stamp: DateTime<Utc> = item["timestamp"].as_str().unwrap().parse().unwrap();
        let age = Utc::now() - stamp;
        assert!(
            age.num_seconds() >= -5 && age.num_minutes() < 10,
            "{who}: timestamp {stamp} is not recent"
        );

        // Spaces in the selector travel `+`-encoded, as the aggregator re-encodes them.
        let path = format!("{GROUP_VERSION}/namespaces/default/prescale_demand_planned?labelSelector=workload+in+%28llm-chat%2Cweb-frontend%2Cembeddings%29");
        let list = stdout_json(&kubectl.run(&api, &["get", "--raw", &path]), &format!("{who} {path}"));
        let mut seen: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["metricLabels"]["workload"].as_str())
            .collect();
        seen.sort();
        assert_eq!(seen, DEMO_WORKLOADS, "{who}: {list}");
        for item in list["items"].as_array().unwrap() {
            let v = item["value"].as_str().unwrap();
            assert!(
                quantity::parse_milli(v).is_ok_and(|m| m >= 0),
                "{who}: bad demand quantity {v:?}"
            );
        }

        let path =
            format!("{GROUP_VERSION}/namespaces/default/prescale_replicas?labelSelector=workload+in+%28llm-chat");
        let out = kubectl.run(&api, &["get", "--raw", &path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{who}: a bad selector was accepted: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            stderr.contains("BadRequest") && stderr.contains("invalid labelSelector"),
            "{who}: {stderr}"
        );

        let path = format!("{GROUP_VERSION}/namespaces/default/http_requests_total");
        let out = kubectl.run(&api, &["get", "--raw", &path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{who}: an unknown metric was served: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            stderr.contains("NotFound") && stderr.contains("could not find the metric"),
            "{who}: {stderr}"
        );
    }
}

/// The `kubectl get --raw` line `prescale serve` prints, run exactly as printed by the oldest and newest kubectl
/// with no kubeconfig and stdin closed: it must answer without asking for a username.
#[test]
fn the_kubectl_line_serve_prints_works_as_pasted() {
    let releases = kubectl_releases();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("prescale.yaml");
    std::fs::write(
        &config,
        "workloads:\n  - name: web\n    namespace: shop\n    demand: {generator: {profile: embeddings, seed: 1}}\n    \
         capacityPerReplica: 20\n    maxReplicas: 20\n",
    )
    .expect("write the config");
    let mut serve = Demo::run(
        dir.path(),
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--insecure-no-auth",
            "--api-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ],
    );
    assert!(serve.api.starts_with("https://"), "{}", serve.api);
    let line = serve.line_starting("kubectl ");
    assert!(line.contains(&serve.api), "{line}");
    let admin = kubeconfig(dir.path(), "admin.yaml", &serve.admin);
    let home = dir.path().join("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    let newest = Kubectl {
        binary: releases[releases.len() - 1].clone(),
        home: dir.path().into(),
    };
    wait_ready(&mut serve, &newest, &admin);

    for release in releases {
        let who = release.file_name().unwrap().to_string_lossy().into_owned();
        let bin = dir.path().join(format!("bin-{who}"));
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(&release, bin.join("kubectl")).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .env("PATH", path)
            .env("HOME", &home)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sh");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait for kubectl").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{who}: `{line}` did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = child.wait_with_output().expect("kubectl output");
        // kubectl prints its prompt on stdout and fails with `error: EOF` on the closed stdin.
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!said.contains("Username"), "{who} prompted: {said}");
        let list = stdout_json(&out, &format!("{who}: {line}"));
        assert_eq!(list["kind"], "ExternalMetricValueList", "{who}: {list}");
        assert_eq!(list["items"][0]["metricLabels"]["workload"], "web", "{who}: {list}");
    }
}

/// The official Python client (`kubernetes` on PyPI, pydantic models) reads the group, its resources and every demo
/// workload's value, and parses each refusal (unknown workload or metric, a bad selector, an unacceptable media type)
/// as its own `V1Status`.
#[test]
fn the_python_kubernetes_client_reads_values_and_refusals() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(dir.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python_client.py");
    let output = Command::new("python3")
        .arg(&script)
        .args([demo.api.as_str(), "default", &DEMO_WORKLOADS.join(",")])
        .output()
        .expect("running python3 (the Python client: python3 -m pip install -r .ci/requirements.txt)");
    assert!(
        output.status.success(),
        "the Python Kubernetes client failed (python3 -m pip install -r .ci/requirements.txt if `kubernetes` is \
         missing):\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        demo.log_tail()
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("the script prints JSON");

    assert_eq!(seen["group"][0]["name"], "external.metrics.k8s.io", "{seen}");
    assert_eq!(seen["group"][0]["preferred"], "external.metrics.k8s.io/v1beta1");
    let resources: Vec<&str> = seen["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(
        resources,
        ["prescale_replicas", "prescale_demand_planned", "prescale_demand_median"]
    );
    assert!(seen["resources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["namespaced"] == true && r["verbs"] == serde_json::json!(["get"])));

    for workload in DEMO_WORKLOADS {
        let list = &seen["values"][workload];
        assert_eq!(list["kind"], "ExternalMetricValueList", "{workload}: {list}");
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{workload}: {list}");
        assert_eq!(items[0]["metricLabels"]["workload"], workload);
        let value = items[0]["value"].as_str().unwrap();
        let milli = quantity::parse_milli(value).unwrap_or_else(|e| panic!("{workload}: {value:?}: {e}"));
        // The HPA scales to the value's ceiling: at least one replica. (A count held or lowered is served at the
        // bottom of its range, `replicas − 1 + 0.001`: one replica is `1m`.)
        assert!(milli >= 1, "{workload}: at least one replica, got {value}");
        let at: DateTime<Utc> = items[0]["timestamp"].as_str().unwrap().parse().unwrap();
        assert!(
            (Utc::now() - at).num_seconds() < 120,
            "{workload}: a fresh value, stamped {at}"
        );
    }

    for (case, code, reason, words) in [
        ("unknown_workload", 404, "NotFound", "no-such-workload"),
        ("unknown_metric", 404, "NotFound", "no_such_metric"),
        ("bad_selector", 400, "BadRequest", "workload in (a"),
        ("unacceptable", 406, "NotAcceptable", "application/json"),
    ] {
        let r = &seen["refusals"][case];
        assert_eq!(r["http"], code, "{case}: {r}");
        assert_eq!(r["code"], code, "{case}: {r}");
        assert_eq!(r["kind"], "Status", "{case}: {r}");
        assert_eq!(r["apiVersion"], "v1", "{case}: {r}");
        assert_eq!(r["status"], "Failure", "{case}: {r}");
        assert_eq!(r["reason"], reason, "{case}: {r}");
        assert!(r["message"].as_str().unwrap().contains(words), "{case}: {r}");
        assert_eq!(r["content_type"], "application/json", "{case}: {r}");
    }
}
