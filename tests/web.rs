//! The SRE page in a real headless Chromium against a running `prescale demo`: the page loads, every workload's
//! chart has data, the explain panel shows the numbers the JSON API gives, the overview shows each workload's SLO
//! state and a warmed-up workload's candidate scatter is drawn and captioned. A screenshot is saved to
//! `target/artifacts/sre-page.png`.
//!
//! Needs Chromium (Debian: `apt-get install -y chromium`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prescale::sre::explain::{num, pct, share, Explanation};
use serde_json::Value;

/// The demo process; killed (by its own pid) when dropped.
struct Demo {
    child: Child,
    admin: String,
    workloads: usize,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo() -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(["demo", "--api-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .env("PRESCALE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the prescale binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut admin = None;
    let mut workloads = None;
    for line in lines.by_ref() {
        let line = line.expect("reading the demo's stdout");
        if let Some(url) = line.strip_prefix("admin: ") {
            admin = Some(url.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("prescale is planning ") {
            workloads = rest.split(' ').next().and_then(|n| n.parse().ok());
            break;
        }
    }
    // Keep draining stdout so the demo never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let admin = admin.expect("the demo prints `admin: URL`");
    let workloads = workloads.expect("the demo prints `prescale is planning N workload(s)`");
    Demo {
        child,
        admin,
        workloads,
    }
}

async fn get_json(url: &str) -> Option<Value> {
    let r = reqwest::get(url).await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Waits until `/readyz` is ok and every workload has a published plan from its own model (none warming up).
async fn wait_until_planned(admin: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let ready = reqwest::get(format!("{admin}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            if let Some(Value::Array(ws)) = get_json(&format!("{admin}/api/v1/workloads")).await {
                if ws.len() == count && ws.iter().all(|w| w["replicas"].is_u64() && w["serving"] != "warming") {
                    return ws
                        .iter()
                        .map(|w| {
                            format!(
                                "{}/{}",
                                w["id"]["namespace"].as_str().unwrap(),
                                w["id"]["name"].as_str().unwrap()
                            )
                        })
                        .collect();
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the demo published no plan for every workload within 180 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the startup replay has warmed the SLO controller of at least one workload; returns its name.
async fn wait_until_warm(admin: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(420);
    loop {
        if let Some(Value::Array(ws)) = get_json(&format!("{admin}/api/v1/workloads")).await {
            if let Some(w) = ws.iter().find(|w| w["slo"]["warmed_up"] == true) {
                return format!(
                    "{}/{}",
                    w["id"]["namespace"].as_str().unwrap(),
                    w["id"]["name"].as_str().unwrap()
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "no workload's SLO controller warmed up within 420 s of its first plan"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(name).output() {
            if out.status.success() {
                return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            }
        }
    }
    panic!("Chromium is needed for the page test: install it with `apt-get install -y chromium`");
}

/// Runs headless Chromium on `url` with a fresh profile and `extra` arguments; returns its stdout.
fn run_chromium(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The overview's row of one workload in the DOM.
fn row<'a>(dom: &'a str, workload: &str) -> &'a str {
    let start = dom
        .find(&format!(r#"<tr data-workload="{workload}">"#))
        .unwrap_or_else(|| panic!("no overview row for {workload}"));
    &dom[start..start + dom[start..].find("</tr>").unwrap()]
}

/// The overview's SLO cell of `row` shows the API's `slo` view: the realised share, the SLO, the error budget left,
/// and a badge exactly when the SLO is missed or unreachable.
fn check_slo_cell(w: &str, row: &str, slo: &Value) {
    let unserved = slo["unserved_fraction"].as_f64();
    assert_eq!(
        field(row, "slo-unserved"),
        unserved.map_or("–".into(), share),
        "{w}: {row}"
    );
    assert_eq!(
        field(row, "slo-max"),
        share(slo["max_unserved"].as_f64().unwrap()),
        "{w}"
    );
    assert_eq!(
        field(row, "slo-budget"),
        slo["error_budget_left"].as_f64().map_or("–".into(), |b| pct(Some(b))),
        "{w}"
    );
    assert_eq!(
        row.contains(r#"class="badge slo-missed""#),
        slo["met"] == false,
        "{w}: a missed SLO is badged, a met one is not: {row}"
    );
    assert_eq!(
        row.contains(r#"class="badge slo-unreachable""#),
        slo["reachable"] == false,
        "{w}: {row}"
    );
}

/// The `<section>` of one workload in the DOM.
fn section<'a>(dom: &'a str, workload: &str) -> &'a str {
    let start = dom
        .find(&format!(r#"data-workload="{workload}" data-published-at"#))
        .unwrap_or_else(|| panic!("no section for {workload} in the page"));
    let end = dom[start..].find("</section>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

/// The value of `attr` on the first element carrying `marker` in `html`.
fn attr<'a>(html: &'a str, marker: &str, attr: &str) -> &'a str {
    let at = html.find(marker).unwrap_or_else(|| panic!("no `{marker}` in {html}"));
    let tag_end = html[at..].find('>').map_or(html.len(), |e| at + e);
    let tag = &html[at..tag_end];
    let key = format!(r#"{attr}=""#);
    let v = tag.find(&key).unwrap_or_else(|| panic!("no {attr} on `{tag}`")) + key.len();
    &tag[v..v + tag[v..].find('"').unwrap()]
}

/// The text of the element with `data-field="name"`.
fn field<'a>(html: &'a str, name: &str) -> &'a str {
    let key = format!(r#"data-field="{name}">"#);
    let at = html.find(&key).unwrap_or_else(|| panic!("no field {name}")) + key.len();
    &html[at..at + html[at..].find('<').unwrap()]
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_charts_and_the_api_numbers_in_a_real_browser() {
    // reqwest is built without a default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let demo = start_demo();
    let workloads = wait_until_planned(&demo.admin, demo.workloads).await;
    assert_eq!(workloads.len(), 3, "{workloads:?}");
    let warm = wait_until_warm(&demo.admin).await;
    let page = format!("{}/", demo.admin);

    // A cycle may publish between the page and the API reads: retry until both saw the same plan.
    let mut checked = false;
    let mut drawn = Vec::new();
    for _attempt in 0..6 {
        let dom = tokio::task::spawn_blocking({
            let page = page.clone();
            move || run_chromium(&page, &["--dump-dom"])
        })
        .await
        .unwrap();
        assert!(dom.contains("<table class=\"overview\""), "the page rendered: {dom}");
        let views = get_json(&format!("{}/api/v1/workloads", demo.admin))
            .await
            .expect("the workload list answers");
        let mut explanations = Vec::new();
        for w in &workloads {
            let v = get_json(&format!("{}/api/v1/workloads/{w}/explain", demo.admin))
                .await
                .expect("explain answers");
            explanations.push(serde_json::from_value::<Explanation>(v).unwrap());
        }
        let same_plan = workloads.iter().zip(&explanations).all(|(w, e)| {
            attr(section(&dom, w), "data-workload", "data-published-at")
                == e.published_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        });
        if !same_plan {
            continue;
        }
        for (w, e) in workloads.iter().zip(&explanations) {
            let s = section(&dom, w);
            // The chart has data: demand history, the forecast band and the planned capacity.
            let history: usize = attr(s, r#"<path class="history""#, "data-points").parse().unwrap();
            assert!(history >= 100, "{w}: {history} history points");
            assert!(
                attr(s, r#"<path class="history""#, "d").matches('L').count() >= 100,
                "{w}: the line is drawn"
            );
            let band: usize = attr(s, r#"<path class="band""#, "data-points").parse().unwrap();
            assert!(band >= 60, "{w}: {band} forecast slots");
            let plan: usize = attr(s, r#"<path class="plan""#, "data-points").parse().unwrap();
            assert_eq!(plan, band, "{w}: a planned replica count per forecast slot");
            // The explain panel shows the API's numbers.
            assert_eq!(field(s, "replicas"), e.replicas.to_string(), "{w}");
            assert_eq!(field(s, "bound"), e.bound.replace('_', " "), "{w}");
            assert_eq!(field(s, "forecast-peak"), num(e.forecast.peak_demand), "{w}");
            assert_eq!(field(s, "forecast-replicas"), e.forecast.replicas.to_string(), "{w}");
            assert_eq!(
                field(s, "observed"),
                e.reactive.observed_demand.map_or("–".into(), num),
                "{w}"
            );
            assert_eq!(field(s, "reactive-floor"), e.reactive.floor.to_string(), "{w}");
            assert_eq!(field(s, "summary"), e.summary, "{w}");
            for (label, text) in e.lines() {
                if label == "freshness" || label == "model" {
                    continue; // ages tick between the two reads
                }
                let shown = field_line(s, label);
                assert_eq!(shown, text, "{w}: {label}");
            }
            // The demo's workloads aim at the default SLO: its lines are there, and the overview shows its state.
            let a = e.adaptive.as_ref().expect("the SLO controller runs in the demo");
            let labels: Vec<_> = e.lines().into_iter().map(|(l, _)| l).collect();
            assert!(labels.contains(&"slo") && labels.contains(&"choice"), "{w}: {labels:?}");
            assert!(
                field_line(s, "slo").starts_with("at most 1% of demand unserved over 7d"),
                "{w}"
            );
            let view = views
                .as_array()
                .unwrap()
                .iter()
                .find(|v| {
                    format!(
                        "{}/{}",
                        v["id"]["namespace"].as_str().unwrap(),
                        v["id"]["name"].as_str().unwrap()
                    ) == *w
                })
                .unwrap();
            check_slo_cell(w, row(&dom, w), &view["slo"]);
            assert_eq!(
                s.contains("badge slo-unreachable"),
                a.warmed_up && !a.slo_reachable,
                "{w}: the card says so when the SLO cannot be met"
            );
            // A warmed-up controller's candidates are drawn: every candidate, the choice ringed, and a caption that
            // names what the pods are counted against.
            if a.warmed_up {
                drawn.push(w.clone());
                let svg = &s[s
                    .find(r#"<svg class="frontier""#)
                    .unwrap_or_else(|| panic!("{w}: no scatter"))..];
                assert_eq!(svg.matches(r#"<circle class="cand"#).count(), a.candidates.len(), "{w}");
                assert_eq!(a.candidates.len(), 31, "{w}: 17 quantiles and 14 reactive targets");
                assert_eq!(attr(svg, "data-chosen", "data-chosen"), a.chosen_label(), "{w}");
                let yardstick = a.reactive_at_slo.map_or(
                    "the HPA target that left the least unserved (none met the SLO)".to_string(),
                    |u| {
                        format!(
                            "reactive@{}%, the cheapest HPA target that met the SLO",
                            (u * 100.0).round()
                        )
                    },
                );
                for words in [
                    "forecast quantile</span>",
                    "reactive HPA target</span>",
                    "SLO 1%</span>",
                    "chosen</span>",
                    &format!("relative to {yardstick}"),
                ] {
                    assert!(svg.contains(words), "{w}: the caption has `{words}`");
                }
            } else {
                assert!(
                    !s.contains(r#"<svg class="frontier""#),
                    "{w}: nothing to draw before warm-up"
                );
            }
        }
        checked = true;
        break;
    }
    assert!(checked, "the page and the API never showed the same plan in 6 tries");
    assert!(
        drawn.contains(&warm),
        "{warm} was warm, its scatter was checked: {drawn:?}"
    );

    let shot = artifacts().join("sre-page.png");
    let _ = std::fs::remove_file(&shot);
    let page_for_shot = page.clone();
    let shot_arg = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || run_chromium(&page_for_shot, &["--window-size=1366,2300", &shot_arg]))
        .await
        .unwrap();
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert!(png.len() > 50_000, "a screenshot with content ({} bytes)", png.len());
}

/// The text of the explain line `label` (`<dd data-line="label">`), with HTML entities undone.
fn field_line(html: &str, label: &str) -> String {
    let key = format!(r#"data-line="{label}">"#);
    let at = html.find(&key).unwrap_or_else(|| panic!("no explain line {label}")) + key.len();
    let raw = &html[at..at + html[at..].find('<').unwrap()];
    raw.replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}
