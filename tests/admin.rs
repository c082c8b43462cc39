//! The admin/SRE server: its JSON API against golden files (router `oneshot`), `/metrics` checked by a real
//! `promtool` and fetched gzip-encoded by a real `curl`, the explain client against a real listener, and the real
//! pipeline feeding the API.
//!
//! `UPDATE_GOLDEN=1 cargo test --test admin` rewrites the golden files from the current output.
//! `promtool` comes from the Debian package `prometheus` (`apt-get install -y prometheus`), `curl` from `curl`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::BodyExt;
use prescale::clock::Clock;
use prescale::config::{DemandSource, ServingConfig, WorkloadConfig};
use prescale::control::engine::{self, Mode, Serving};
use prescale::control::planner;
use prescale::control::policy::Policy;
use prescale::control::quality::{self, Tracker};
use prescale::forecast::{Forecast, Seasonality};
use prescale::history::prometheus::{PromQuery, PrometheusClient, PrometheusSettings};
use prescale::history::synthetic::{Generator, Profile};
use prescale::history::History as _;
use prescale::pipeline::{Cycle, Workload};
use prescale::series::Series;
use prescale::sre::admin::{self, AdminState};
use prescale::sre::explain::{self, Explanation};
use prescale::sre::telemetry;
use prescale::store::{
    Insight, PlanStore, Publication, ReplayState, ReplayStatus, Snapshot, WorkloadId, WorkloadStatus,
};
use serde_json::Value;
use tower::ServiceExt;

const NOW: &str = "2026-03-02T12:00:00Z";

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn policy(capacity: f64) -> Policy {
    Policy {
        replicas: prescale::control::policy::Replicas::new(2, 20).unwrap(),
        ..Policy::new(capacity, 20)
    }
}

const CANDIDATES: usize =
    prescale::control::service_level::LEVELS.len() + prescale::control::service_level::UTILIZATIONS.len();

/// The SLO controller after a week, SLO 0.5% over 7d: p80 is the cheapest candidate within the budget (0.47%, the
/// served record a little over the SLO), 0.94× the pods of reactive@55%, the cheapest HPA target that met the SLO;
/// the whole window scored at 0.35% unserved.
fn adaptive_report() -> prescale::control::service_level::Report {
    use prescale::control::service_level::{CandidateScore, Report, ServedScore, WindowScore, LEVELS, UTILIZATIONS};
    let budget = 0.0047;
    // Counted from p80 as the ninth level: p80 leaves 0.4%, each level above 0.1% less, each below 0.1% more.
    let p80 = LEVELS.iter().position(|&q| q == 0.8).expect("p80 is a level");
    let levels = LEVELS.iter().enumerate().map(|(k, &q)| {
        let j = k as f64 + 8.0 - p80 as f64;
        let unserved = (0.012 - 0.001 * j).max(0.0);
        CandidateScore {
            quantile: Some(q),
            utilization: None,
            unserved_fraction: unserved,
            unserved_fraction_total: unserved,
            unserved_fraction_steady: unserved,
            pods_vs_reactive: 0.7 + 0.03 * j,
            qualifies: unserved <= budget,
        }
    });
    // From 35% (i = 0) to 100%: more unserved, fewer pods; up to 55% (i = 4, 0.46%) within the SLO and the budget.
    let reactive = UTILIZATIONS.iter().enumerate().map(|(i, &u)| {
        let unserved = 0.0014 + 0.0008 * i as f64;
        CandidateScore {
            quantile: None,
            utilization: Some(u),
            unserved_fraction: unserved,
            unserved_fraction_total: unserved,
            unserved_fraction_steady: unserved,
            pods_vs_reactive: 1.0 + 0.08 * (4.0 - i as f64),
            qualifies: unserved <= budget,
        }
    });
    Report {
        warmed_up: true,
        scored_seconds: 7.0 * 86_400.0,
        slo_max_unserved: 0.005,
        slo_window_seconds: 7 * 86_400,
        chosen_quantile: Some(LEVELS[p80]),
        chosen_utilization: None,
        reactive_chosen: false,
        slo_reachable: true,
        unserved_budget: budget,
        window: Some(WindowScore {
            unserved_fraction: 0.0035,
            covered_seconds: 7.0 * 86_400.0,
            error_budget_left: 0.3,
            met: true,
        }),
        reactive_at_slo: Some(UTILIZATIONS[4]),
        cost_vs_reactive_at_slo: Some(0.94),
        candidates: levels.chain(reactive).collect(),
        served: Some(ServedScore {
            unserved_fraction: 0.0035,
            unserved_fraction_total: 0.0038,
            pods_vs_reactive: 0.93,
        }),
        kept: None,
    }
}

/// An SLO nothing meets: 0.01% over 1d, every candidate left at least 0.2%; reactive@35% left the least and is
/// chosen. 20 hours of the window scored at 0.04% unserved: missed, the budget overspent three times over.
fn unreachable_report() -> prescale::control::service_level::Report {
    use prescale::control::service_level::{CandidateScore, Report, WindowScore, LEVELS, UTILIZATIONS};
    let levels = LEVELS.iter().map(|&q| CandidateScore {
        quantile: Some(q),
        utilization: None,
        unserved_fraction: 0.004,
        unserved_fraction_total: 0.004,
        unserved_fraction_steady: 0.004,
        pods_vs_reactive: 0.8,
        qualifies: false,
    });
    let reactive = UTILIZATIONS.iter().enumerate().map(|(i, &u)| CandidateScore {
        quantile: None,
        utilization: Some(u),
        unserved_fraction: 0.002 + 0.001 * i as f64,
        unserved_fraction_total: 0.002 + 0.001 * i as f64,
        unserved_fraction_steady: 0.002 + 0.001 * i as f64,
        pods_vs_reactive: 1.0 - 0.05 * i as f64,
        qualifies: false,
    });
    Report {
        warmed_up: true,
        scored_seconds: 3.0 * 86_400.0,
        slo_max_unserved: 0.0001,
        slo_window_seconds: 86_400,
        chosen_quantile: None,
        chosen_utilization: Some(UTILIZATIONS[0]),
        reactive_chosen: true,
        slo_reachable: false,
        unserved_budget: 0.00005,
        window: Some(WindowScore {
            unserved_fraction: 0.0004,
            covered_seconds: 20.0 * 3600.0,
            error_budget_left: -3.0,
            met: false,
        }),
        reactive_at_slo: None,
        cost_vs_reactive_at_slo: Some(1.0),
        candidates: levels.chain(reactive).collect(),
        served: None,
        kept: None,
    }
}

/// A workload published the way the pipeline does, from hand-made numbers: twelve minutes of history, a forecast
/// rising from `level`, and a quality tracker fed forecasts of `level` against the history (so `actual_boost`
/// above 1 makes it under-predict).
fn publish(store: &PlanStore, name: &str, mode: Mode, level: f64, actual_boost: f64, observed: f64) {
    let id = WorkloadId {
        namespace: "default".into(),
        name: name.into(),
    };
    let now = at(NOW);
    let published_at = now - TimeDelta::seconds(20);
    let step = TimeDelta::minutes(1);
    let start = now - TimeDelta::minutes(40);
    // Minute 30 is missing: a gap, never zero. A boosted workload also wobbles, so its misses differ in size.
    let wobble = |i: usize| {
        if actual_boost == 1.0 {
            1.0
        } else {
            1.0 + 0.01 * (i % 5) as f64
        }
    };
    let values: Vec<Option<f64>> = (0..40)
        .map(|i| (i != 30).then(|| level * actual_boost * wobble(i)))
        .collect();
    let history = Series::from_values(start, step, values);
    let policy = policy(10.0);
    let bounds = quality::Bounds {
        window: 20,
        min_samples: 10,
        ..Default::default()
    };
    let mut tracker = Tracker::new(bounds, policy.quantile);
    for m in 0..=40 {
        let t = start + step * m;
        tracker.observe(&history.visible_at(t), t);
        let f = Forecast::from_median(t, step, vec![level; 10], t);
        tracker.record(&f, policy.lead, t);
    }
    let forecast = Forecast::from_median(
        now,
        step,
        (0..10).map(|i| level + 2.0 * i as f64).collect(),
        now - TimeDelta::minutes(7),
    );
    let forecast_plan = planner::plan(&forecast, Some(observed), &policy, published_at);
    let reactive_plan = engine::reactive_plan(Some(observed), &policy, published_at, None);
    let serving = match (mode, tracker.is_demoted()) {
        (Mode::ForecastOnly, _) => Serving::ForecastOnly,
        (_, true) => Serving::Demoted,
        _ => Serving::Forecast,
    };
    let plan = if serving.is_reactive() {
        reactive_plan.clone()
    } else {
        forecast_plan.clone()
    };
    let insight = Insight {
        policy,
        unit: "requests/s".into(),
        mode,
        serving,
        forecast_plan,
        reactive_plan,
        history,
        targets: vec![
            (published_at - TimeDelta::seconds(15), plan.replicas),
            (published_at, plan.replicas),
        ],
        quality: tracker.report(),
        scored: tracker.recent().copied().collect(),
        adaptive: match name {
            "llm-chat" => Some(adaptive_report()),
            "web" => Some(unreachable_report()),
            _ => None,
        },
    };
    store.set_insight(&id, insight);
    store.publish(Snapshot {
        id: id.clone(),
        published_at,
        data_until: Some(now - TimeDelta::seconds(60)),
        forecast: Arc::new(forecast),
        plan,
    });
    store.set_status(
        &id,
        WorkloadStatus {
            source: format!("trace {name}.csv"),
            last_attempt: Some(published_at),
            last_success: Some(published_at),
            slots: 40,
            missing: 1,
            fits: 3,
            last_fit_seconds: 0.25,
            ..Default::default()
        },
    );
}

/// Three workloads: one trusted, one forecast-only, one demoted; plus one configured but not yet planned.
fn filled_store() -> Arc<PlanStore> {
    let store = PlanStore::new();
    publish(&store, "llm-chat", Mode::Serve, 40.0, 1.0, 38.0);
    publish(&store, "batch", Mode::ForecastOnly, 40.0, 1.0, 61.0);
    publish(&store, "web", Mode::Serve, 40.0, 1.5, 62.5);
    // web is still replaying its history at startup.
    let web = WorkloadId {
        namespace: "default".into(),
        name: "web".into(),
    };
    let mut status = store.status(&web).unwrap();
    status.replay = Some(ReplayStatus {
        state: ReplayState::Running,
        from: at(NOW) - TimeDelta::days(3),
        to: at(NOW) - TimeDelta::minutes(1),
        replayed: Default::default(),
        seconds: 0.0,
    });
    store.set_status(&web, status);
    store.set_status(
        &WorkloadId {
            namespace: "default".into(),
            name: "waiting".into(),
        },
        WorkloadStatus {
            source: "promql up".into(),
            error: Some("no data: the source returned no samples".into()),
            problem: Some(prescale::store::Problem::NoData),
            ..Default::default()
        },
    );
    Arc::new(store)
}

fn app(store: Arc<PlanStore>) -> Router {
    admin::router(AdminState {
        store,
        clock: Clock::fixed(at(NOW)),
    })
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: String,
}

async fn send(router: Router, uri: &str) -> Reply {
    let response = router
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Reply {
        status,
        content_type,
        body,
    }
}

async fn get_json(uri: &str) -> (StatusCode, Value) {
    let r = send(app(filled_store()), uri).await;
    let v = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {}", r.body));
    (r.status, v)
}

/// Compares `actual` with `tests/golden/<name>.json` as parsed JSON; `UPDATE_GOLDEN=1` rewrites the file.
fn golden(name: &str, actual: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); run `UPDATE_GOLDEN=1 cargo test --test admin` to create it",
            path.display()
        )
    });
    let expected: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        actual,
        &expected,
        "response differs from {}; if the change is intended, run `UPDATE_GOLDEN=1 cargo test --test admin`",
        path.display()
    );
}

#[tokio::test]
async fn workload_list_matches_golden() {
    let (status, v) = get_json("/api/v1/workloads").await;
    assert_eq!(status, StatusCode::OK);
    golden("admin_workloads", &v);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["batch", "llm-chat", "waiting", "web"]);
    let web = &v[3];
    assert_eq!(web["serving"], "demoted");
    assert_eq!(web["quality"]["health"], "demoted");
    assert_eq!(
        web["replicas"], 9,
        "ceil(62.5 / (10 × 0.7)): the reactive target at 70% utilization"
    );
    assert_eq!(web["forecast_age_seconds"], 20);
    assert_eq!(web["data_age_seconds"], 60);
    assert_eq!(v[0]["serving"], "forecast_only");
    assert_eq!(v[0]["replicas"], 9, "forecast-only serves ceil(61 / (10 × 0.7))");
    assert_eq!(
        v[0]["forecast_replicas"], 5,
        "the forecast peaks at 48 within the lead window: ceil(48 / 10)"
    );
    assert_eq!(
        v[2]["replicas"],
        Value::Null,
        "not planned yet: no number is better than a made-up one"
    );
}

#[tokio::test]
async fn workload_detail_matches_golden() {
    let (status, v) = get_json("/api/v1/workloads/default/llm-chat").await;
    assert_eq!(status, StatusCode::OK);
    golden("admin_workload_detail", &v);
    let history = v["history"].as_array().unwrap();
    assert_eq!(history.len(), 40);
    assert_eq!(history[30]["v"], Value::Null, "a gap stays a gap");
    let points = v["forecast"]["points"].as_array().unwrap();
    assert_eq!(points.len(), 10);
    assert_eq!(
        v["plan"].as_array().unwrap().len(),
        10,
        "a replica count for every forecast slot"
    );
    assert_eq!(v["explanation"]["replicas"], 5);
    assert_eq!(v["explanation"]["serving"], "forecast");
}

#[tokio::test]
async fn explanations_match_golden() {
    for name in ["llm-chat", "batch", "web"] {
        let (status, v) = get_json(&format!("/api/v1/workloads/default/{name}/explain")).await;
        assert_eq!(status, StatusCode::OK);
        golden(&format!("admin_explain_{name}"), &v);
        let e: Explanation = serde_json::from_value(v).expect("the JSON reads back as an Explanation");
        assert_eq!(e.version, env!("CARGO_PKG_VERSION"));
    }
    let (_, v) = get_json("/api/v1/workloads/default/web/explain").await;
    let summary = v["summary"].as_str().unwrap();
    assert!(summary.starts_with("Demoted to reactive scaling: "), "{summary}");
    assert!(
        summary.contains("9 replicas: observed demand of 62.5 requests/s needs 9 at 70% of 10 requests/s per replica"),
        "{summary}"
    );
}

#[tokio::test]
async fn unknown_workloads_are_404_with_a_reason() {
    let (status, v) = get_json("/api/v1/workloads/default/nope/explain").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    golden("admin_not_found", &v);
    let (status, v) = get_json("/api/v1/workloads/default/waiting").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        v["message"],
        "workload default/waiting has no plan, so the API answers an error and the HPA holds its current scale: the \
         demand query returns no samples; the latest cycle reported: no data: the source returned no samples"
    );
}

#[tokio::test]
async fn the_page_is_self_contained_and_tells_the_same_numbers() {
    let r = send(app(filled_store()), "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type.starts_with("text/html"), "{}", r.content_type);
    let html = &r.body;
    for forbidden in ["<script", "http://", "https://", "<link"] {
        assert!(
            !html.contains(forbidden),
            "the page loads nothing from elsewhere, found {forbidden}"
        );
    }
    assert_eq!(
        html.matches("<svg").count(),
        5,
        "one chart per planned workload, and the SLO controller's scatter of llm-chat and web"
    );
    assert_eq!(html.matches(r#"<svg class="frontier""#).count(), 2);
    assert_eq!(html.matches(r#"class="cand "#).count(), 2 * CANDIDATES);
    assert!(html.contains(r#"data-chosen="p80""#), "the chosen quantile is ringed");
    assert!(
        html.contains(r#"data-chosen="reactive@35%""#),
        "and the chosen reactive target"
    );
    assert_eq!(
        html.matches(r#"class="cand ok""#).count(),
        7,
        "p80 … p99 are under the budget line"
    );
    assert_eq!(
        html.matches(r#"class="cand reactive ok""#).count(),
        5,
        "reactive@35% … reactive@55% too"
    );
    assert!(html.contains(
        r#"<dd data-line="slo">at most 0.5% of demand unserved over 7d: 0.35% over the whole window, error budget 30% left; met</dd>"#
    ));
    assert!(html.contains(r#"<dd data-line="choice">p80: the fewest pods of the candidates within the budget"#));
    assert!(html.contains(r#"<dd data-line="record">what was served left 0.35%"#));
    // The scatter's caption says what is drawn, and against which HPA target.
    for words in [
        "forecast quantile</span>",
        "reactive HPA target</span>",
        "SLO 0.5%</span>",
        "budget</span>",
        "chosen</span>",
        "served</span>",
        "relative to reactive@55%, the cheapest HPA target that met the SLO",
        "relative to the HPA target that left the least unserved (none met the SLO)",
    ] {
        assert!(html.contains(words), "the scatter's caption has `{words}`");
    }
    // The overview: the SLO's state per workload, and loud badges where it is missed or cannot be met.
    let row = |name: &str| {
        let at = html.find(&format!(r#"<tr data-workload="default/{name}">"#)).unwrap();
        &html[at..at + html[at..].find("</tr>").unwrap()]
    };
    let chat = row("llm-chat");
    assert!(
        chat.contains(r#"<b data-field="slo-unserved">0.35%</b> <span class="muted">/ <span data-field="slo-max">0.5%</span></span><small>7d · <span data-field="slo-budget">30%</span> budget left</small></td>"#),
        "{chat}"
    );
    assert!(!chat.contains("badge slo-"), "{chat}");
    let web = row("web");
    assert!(web.contains(r#"<b data-field="slo-unserved">0.04%</b>"#), "{web}");
    assert!(
        web.contains(r#"<span class="stale" data-field="slo-budget">-300%</span>"#),
        "{web}"
    );
    assert!(web.contains(r#"<span class="badge slo-missed""#), "{web}");
    assert!(web.contains(r#"<span class="badge slo-unreachable""#), "{web}");
    assert!(
        web.contains("reactive@35% is served, the one that left the least"),
        "{web}"
    );
    assert!(!row("batch").contains("slo-"), "adaptation off: no SLO to show");
    assert_eq!(
        html.matches(r#"<span class="badge slo-unreachable""#).count(),
        2,
        "in the overview and on web's card"
    );
    assert_eq!(
        html.matches(r#"<span class="badge replay""#).count(),
        1,
        "web is marked as warming up while it replays"
    );
    assert!(
        html.contains("replaying 2d23h59m of history (2026-02-27 12:00 UTC to 2026-03-02 11:59 UTC)"),
        "{html}"
    );
    assert_eq!(
        html.matches(r#"<rect class="served""#).count(),
        1,
        "what was served is marked on the scatter"
    );
    assert!(html.contains(r#"<path class="history""#));
    assert!(
        html.contains(r#"data-points="39""#),
        "39 present history points (one gap)"
    );
    assert!(html.contains(r#"<span class="replicas" data-field="replicas">5</span>"#));
    assert!(html.contains("DEMOTED since"));
}

/// Runs `promtool check metrics` on `text`; returns its output. Fails when promtool is missing.
fn promtool_check(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}): install it with `apt-get install -y prometheus`"));
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{report}\n--- exposition ---\n{text}"
    );
    report
}

#[tokio::test]
async fn metrics_pass_promtool_and_carry_the_served_numbers() {
    let store = filled_store();
    let clock = Clock::fixed(at(NOW));
    let registry = telemetry::Registry::new(store.clone(), clock.clone());
    let chat = WorkloadId {
        namespace: "default".into(),
        name: "llm-chat".into(),
    };
    registry.pipeline().fit(&chat, 0.25);
    let router = telemetry::instrument(
        admin::router(AdminState {
            store: store.clone(),
            clock: clock.clone(),
        }),
        registry.http("admin"),
    )
    .merge(registry.router());
    for uri in [
        "/api/v1/workloads",
        "/api/v1/workloads",
        "/api/v1/workloads/default/nope",
    ] {
        send(router.clone(), uri).await;
    }
    let r = send(router, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type, telemetry::CONTENT_TYPE);
    let report = promtool_check(&r.body);
    assert!(!report.contains("error"), "{report}");
    let text = &r.body;
    for line in [
        r#"prescale_served_replicas{namespace="default",workload="llm-chat"} 5.0"#,
        r#"prescale_served_replicas{namespace="default",workload="web"} 9.0"#,
        r#"prescale_observed_demand{namespace="default",workload="web"} 62.5"#,
        r#"prescale_forecast_age_seconds{namespace="default",workload="web"} 20.0"#,
        r#"prescale_history_data_age_seconds{namespace="default",workload="web"} 60.0"#,
        r#"prescale_serving{namespace="default",workload="batch",state="forecast_only"} 1.0"#,
        r#"prescale_serving{namespace="default",workload="web",state="demoted"} 1.0"#,
        r#"prescale_serving_refused{namespace="default",workload="waiting",reason="not_planned"} 1.0"#,
        r#"prescale_slo_error_budget_remaining_ratio{namespace="default",workload="llm-chat"} 0.3"#,
        r#"prescale_slo_error_budget_remaining_ratio{namespace="default",workload="web"} -3.0"#,
        r#"prescale_slo_reachable{namespace="default",workload="web"} 0.0"#,
        "prescale_forecast_max_age_seconds 300.0",
        "prescale_forecast_fit_duration_seconds_count 1",
        r#"prescale_admin_requests_total{method="GET",route="/api/v1/workloads",code="200"} 2"#,
        r#"prescale_admin_requests_total{method="GET",route="/api/v1/workloads/{namespace}/{name}",code="404"} 1"#,
        r#"prescale_admin_request_duration_seconds_count{method="GET",route="/api/v1/workloads"} 2"#,
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(!text.contains("NaN"), "never export NaN:\n{text}");
    for gone in ["prescale_served_unserved_ratio", "prescale_reactive_unserved_ratio"] {
        assert!(!text.contains(gone), "{gone} is replaced by the SLO series:\n{text}");
    }
    assert!(
        !text.contains(r#"prescale_slo_error_budget_remaining_ratio{namespace="default",workload="batch"}"#),
        "no SLO series for a workload without the controller"
    );
    assert!(
        !text.contains(r#"workload="waiting",state"#),
        "no serving state for an unplanned workload"
    );
    assert!(
        !text.contains(r#"prescale_serving_refused{namespace="default",workload="web""#),
        "no refusal while the plan is served"
    );
    assert_eq!(
        text.matches(r#"prescale_serving{namespace="default",workload="web""#)
            .count(),
        1,
        "one state series: the current one"
    );
    // Flags are there by default only in the state alerts look for: llm-chat follows its forecast and meets its SLO.
    for quiet in [
        r#"prescale_serving{namespace="default",workload="llm-chat""#,
        r#"prescale_slo_reachable{namespace="default",workload="llm-chat"}"#,
        r#"prescale_fallback_active{namespace="default",workload="llm-chat"}"#,
    ] {
        assert!(!text.contains(quiet), "{quiet} is not flagged:\n{text}");
    }
    for detail in [
        "prescale_forecast_replicas",
        "prescale_forecast_demand",
        "prescale_served_demand",
        "prescale_reactive_replicas",
        "prescale_quality_demoted",
        "prescale_quality_coverage_ratio",
        "prescale_slo_max_unserved_ratio",
        "prescale_slo_unserved_ratio",
        "prescale_slo_cost_vs_reactive_ratio",
        "prescale_history_query_errors_total",
        "prescale_forecast_workload_fit_duration_seconds",
        "prescale_history_max_data_age_seconds",
    ] {
        assert!(!text.contains(detail), "{detail} is detail:\n{text}");
    }

    // With detail on: every per-workload series.
    let registry = telemetry::Registry::with_detail(store, clock, telemetry::Detail::Full);
    registry.pipeline().fit(&chat, 0.25);
    let text = registry.encode();
    promtool_check(&text);
    for line in [
        r#"prescale_served_replicas{namespace="default",workload="llm-chat"} 5.0"#,
        r#"prescale_served_demand{namespace="default",workload="llm-chat"}"#,
        r#"prescale_reactive_replicas{namespace="default",workload="batch"} 9.0"#,
        r#"prescale_serving{namespace="default",workload="llm-chat",state="forecast"} 1.0"#,
        r#"prescale_fallback_active{namespace="default",workload="llm-chat"} 0.0"#,
        r#"prescale_quality_demoted{namespace="default",workload="web"} 1.0"#,
        r#"prescale_quality_demoted{namespace="default",workload="llm-chat"} 0.0"#,
        r#"prescale_slo_max_unserved_ratio{namespace="default",workload="llm-chat"} 0.005"#,
        r#"prescale_slo_unserved_ratio{namespace="default",workload="llm-chat"} 0.0035"#,
        r#"prescale_slo_reachable{namespace="default",workload="llm-chat"} 1.0"#,
        r#"prescale_slo_reachable{namespace="default",workload="web"} 0.0"#,
        r#"prescale_history_query_errors_total{namespace="default",workload="web"} 0"#,
        "# TYPE prescale_history_query_errors_total counter",
        r#"prescale_forecast_replicas{namespace="default",workload="batch"} 5.0"#,
        r#"prescale_forecast_only{namespace="default",workload="batch"} 1.0"#,
        r#"prescale_slo_cost_vs_reactive_ratio{namespace="default",workload="llm-chat"} 0.94"#,
        r#"prescale_served_pods_vs_reactive_ratio{namespace="default",workload="llm-chat"} 0.93"#,
        r#"prescale_quality_demotions_total{namespace="default",workload="web"} 1"#,
        r#"prescale_forecast_demand{namespace="default",workload="llm-chat",level="0.9"}"#,
        r#"prescale_history_missing_ratio{namespace="default",workload="web"} 0.025"#,
        r#"prescale_history_last_success_timestamp_seconds{namespace="default",workload="web"}"#,
        r#"prescale_forecast_workload_fit_duration_seconds_count{namespace="default",workload="llm-chat"} 1"#,
        "prescale_forecast_fit_duration_seconds_count 1",
        "prescale_forecast_max_age_seconds 300.0",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(!text.contains("NaN"), "never export NaN:\n{text}");
    assert!(
        !text.contains(r#"prescale_served_pods_vs_reactive_ratio{namespace="default",workload="web"}"#),
        "nothing served scored, no record"
    );
}

/// `n` copies of llm-chat (served, under an SLO, every score known) as `team-NN/workload-NNNNN`, each with one fit:
/// the store and registry of a replica planning `n` workloads.
fn many_workloads(n: usize, now: DateTime<Utc>, detail: telemetry::Detail) -> telemetry::Registry {
    let template = PlanStore::new();
    publish(&template, "llm-chat", Mode::Serve, 40.0, 1.0, 38.0);
    let entry = template
        .entry(&WorkloadId {
            namespace: "default".into(),
            name: "llm-chat".into(),
        })
        .unwrap();
    let snapshot = entry.snapshot.clone().unwrap();
    let insight = entry.insight.clone().unwrap();
    let status = entry.status.clone().unwrap();
    let store = Arc::new(PlanStore::new());
    let registry = telemetry::Registry::with_detail(store.clone(), Clock::fixed(now), detail);
    for i in 0..n {
        let id = WorkloadId {
            namespace: format!("team-{:02}", i % 100),
            name: format!("workload-{i:05}"),
        };
        store.limit_data_age(&id, TimeDelta::minutes(5));
        let snapshot = Snapshot {
            id: id.clone(),
            ..Snapshot::clone(&snapshot)
        };
        store.record(
            &id,
            Publication {
                status: status.clone(),
                plan: Some((Arc::new(snapshot), insight.clone())),
            },
        );
        registry.pipeline().fit(&id, 0.2);
    }
    registry
}

/// The metric names of each workload's series in `text` (histogram buckets and sums count as series), by workload.
fn series_by_workload(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, rest)) = line.split_once("workload=\"") else {
            continue;
        };
        let workload = rest.split('"').next().unwrap().to_owned();
        let name = line.split(['{', ' ']).next().unwrap().to_owned();
        out.entry(workload).or_default().push(name);
    }
    out
}

#[tokio::test]
async fn metrics_carry_five_series_per_workload_and_flags_unless_detail_is_on() {
    const N: usize = 40;
    // A workload served from its forecast, within its SLO: no flag raised.
    let default_set = [
        "prescale_served_replicas",
        "prescale_observed_demand",
        "prescale_forecast_age_seconds",
        "prescale_history_data_age_seconds",
        "prescale_slo_error_budget_remaining_ratio",
    ];
    // Served now; an hour later every plan is refused (its data is past maxDataAge): one series more.
    for (now, extra) in [
        (at(NOW), None),
        (at(NOW) + TimeDelta::hours(1), Some("prescale_serving_refused")),
    ] {
        let text = many_workloads(N, now, telemetry::Detail::Default).encode();
        promtool_check(&text);
        let by_workload = series_by_workload(&text);
        assert_eq!(by_workload.len(), N);
        let mut expected: Vec<&str> = default_set.iter().copied().chain(extra).collect();
        expected.sort_unstable();
        for (workload, names) in &by_workload {
            assert!(
                names.len() <= telemetry::DEFAULT_SERIES_PER_WORKLOAD,
                "{workload}: {} series: {names:#?}",
                names.len()
            );
            let mut names = names.clone();
            names.sort_unstable();
            assert_eq!(names, expected, "{workload}: one series of each, the default set only");
        }
        assert!(
            text.contains(&format!("\nprescale_forecast_fit_duration_seconds_count {N}\n")),
            "{text}"
        );
        assert!(text.contains("\nprescale_forecast_max_age_seconds 300.0\n"), "{text}");
    }

    // Detail adds the rest: the flags in every state, levels, scores, ratios, the model, counters, a histogram per
    // workload.
    let text = many_workloads(N, at(NOW), telemetry::Detail::Full).encode();
    promtool_check(&text);
    let by_workload = series_by_workload(&text);
    assert_eq!(by_workload.len(), N);
    for (workload, names) in &by_workload {
        for name in default_set.iter().chain(&[
            "prescale_serving",
            "prescale_fallback_active",
            "prescale_slo_reachable",
            "prescale_served_demand",
            "prescale_reactive_replicas",
            "prescale_quality_demoted",
            "prescale_slo_max_unserved_ratio",
            "prescale_slo_unserved_ratio",
            "prescale_history_query_errors_total",
            "prescale_forecast_demand",
            "prescale_forecast_replicas",
            "prescale_planning_quantile",
            "prescale_forecast_model_info",
            "prescale_forecast_only",
            "prescale_slo_cost_vs_reactive_ratio",
            "prescale_served_pods_vs_reactive_ratio",
            "prescale_quality_coverage_ratio",
            "prescale_quality_nominal_coverage_ratio",
            "prescale_quality_under_prediction_ratio",
            "prescale_quality_window_samples",
            "prescale_quality_scored_total",
            "prescale_quality_demotions_total",
            "prescale_quality_promotions_total",
            "prescale_history_last_success_timestamp_seconds",
            "prescale_history_missing_ratio",
            "prescale_history_max_data_age_seconds",
            "prescale_forecast_fits_total",
            "prescale_forecast_workload_fit_duration_seconds_count",
        ]) {
            assert!(names.iter().any(|n| n == name), "{workload}: no {name} with detail on");
        }
        assert!(names.len() > 45, "{workload}: {} series with detail on", names.len());
    }
    assert!(
        text.contains(&format!("\nprescale_forecast_fit_duration_seconds_count {N}\n")),
        "{text}"
    );
}

/// The most bytes `/metrics` may take at 10,000 workloads by default, identity-encoded: five series a workload at
/// about 83 bytes each (name, `namespace` and `workload` labels, value) and a flag while something is wrong. Every
/// workload's full set took 52.8 MB, the default set before it was cut to what the alerts read 11.3 MB.
const METRICS_BYTES_AT_10000: usize = 5_000_000;

/// `bytes` gunzipped.
fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

/// The lines of an exposition, sorted: two encodings of one store list each family's series in their own order.
fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

/// `GET /metrics` through the registry's router, with `accept_encoding` if given.
async fn scrape(registry: &telemetry::Registry, accept_encoding: Option<&str>) -> axum::response::Response {
    let mut request = Request::get("/metrics");
    if let Some(value) = accept_encoding {
        request = request.header(header::ACCEPT_ENCODING, value);
    }
    registry
        .router()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// The exposition at 10,000 workloads, by default and with detail on, identity and gzip-encoded (sizes in
/// BENCHMARKS.md): `cargo test --test admin metrics_at_10000_workloads -- --nocapture`.
#[tokio::test]
async fn metrics_at_10000_workloads() {
    const N: usize = 10_000;
    for detail in [telemetry::Detail::Default, telemetry::Detail::Full] {
        let registry = many_workloads(N, at(NOW), detail);
        let started = std::time::Instant::now();
        let text = registry.encode();
        let encoded_in = started.elapsed();
        let started = std::time::Instant::now();
        let gzipped = telemetry::gzip(text.as_bytes());
        let gzipped_in = started.elapsed();
        assert!(
            gunzip(&gzipped) == text.as_bytes(),
            "the gzip body decodes to the identity body"
        );
        let by_workload = series_by_workload(&text);
        assert_eq!(by_workload.len(), N);
        let series: usize = by_workload.values().map(Vec::len).sum();
        let most = by_workload.values().map(Vec::len).max().unwrap();
        println!(
            "{detail:?}: {N} workloads, {series} per-workload series ({most} at most per workload), identity {} bytes \
             ({:.2} MB) encoded in {encoded_in:.2?}, gzip {} bytes ({:.2} MB, {:.1}x smaller) in {gzipped_in:.2?} more \
             (debug build)",
            text.len(),
            text.len() as f64 / 1e6,
            gzipped.len(),
            gzipped.len() as f64 / 1e6,
            text.len() as f64 / gzipped.len() as f64,
        );
        // The levels `/metrics` does not use, for comparison.
        for level in [1, 9] {
            use std::io::Write as _;
            let started = std::time::Instant::now();
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            encoder.write_all(text.as_bytes()).unwrap();
            let other = encoder.finish().unwrap();
            println!(
                "{detail:?}: gzip level {level} would be {} bytes ({:.1}x smaller) in {:.2?}",
                other.len(),
                text.len() as f64 / other.len() as f64,
                started.elapsed()
            );
        }
        if detail == telemetry::Detail::Default {
            assert!(most <= telemetry::DEFAULT_SERIES_PER_WORKLOAD);
            assert!(text.len() < METRICS_BYTES_AT_10000, "{} bytes", text.len());
            assert!(gzipped.len() < text.len() / 10, "{} bytes gzipped", gzipped.len());
            // Served: gzip when asked for, decoding to the same series.
            let started = std::time::Instant::now();
            let response = scrape(&registry, Some("gzip")).await;
            assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let served_in = started.elapsed();
            let served = String::from_utf8(gunzip(&body)).unwrap();
            assert_eq!(sorted_lines(&served), sorted_lines(&text));
            println!(
                "{detail:?}: served gzip-encoded, {} bytes, in {served_in:.2?} (encoded and gzipped on a blocking thread)",
                body.len()
            );
        }
    }
    // An hour later every plan is refused (its data is past maxDataAge): a flag more on every workload.
    let text = many_workloads(N, at(NOW) + TimeDelta::hours(1), telemetry::Detail::Default).encode();
    let by_workload = series_by_workload(&text);
    let most = by_workload.values().map(Vec::len).max().unwrap();
    assert!(most <= telemetry::DEFAULT_SERIES_PER_WORKLOAD);
    println!(
        "Default, every plan refused: {most} series per workload, identity {} bytes ({:.2} MB), gzip {} bytes",
        text.len(),
        text.len() as f64 / 1e6,
        telemetry::gzip(text.as_bytes()).len()
    );
}

/// `/metrics` answers a scraper that accepts gzip (Prometheus does by default) gzip-encoded, and any other
/// identity-encoded: content negotiation on the router, then `curl` against a real listener.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_gzip_encoded_for_scrapers_that_accept_it() {
    let registry = many_workloads(200, at(NOW), telemetry::Detail::Default);
    let identity = registry.encode();
    for (accept, gzip) in [
        (None, false),
        (Some("gzip"), true),
        (Some("gzip, deflate, br"), true),
        (Some("GZIP;q=0.5, identity"), true),
        (Some("x-gzip"), true),
        (Some("*"), true),
        (Some("identity"), false),
        (Some("br, deflate"), false),
        (Some("gzip;q=0, identity"), false),
        (Some("*;q=0.1, gzip;q=0"), false),
    ] {
        let response = scrape(&registry, accept).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], telemetry::CONTENT_TYPE, "{accept:?}");
        assert_eq!(headers[header::VARY], "Accept-Encoding", "{accept:?}");
        assert_eq!(
            headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap()),
            gzip.then_some("gzip"),
            "{accept:?}"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        let text = String::from_utf8(if gzip { gunzip(&body) } else { body }).unwrap();
        assert_eq!(sorted_lines(&text), sorted_lines(&identity), "{accept:?}");
    }

    // A real client over a real socket: curl decodes what it asked for, and without --compressed shows the raw
    // bytes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let router = registry.router();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let dir = tempfile::tempdir().unwrap();
    let curl = |args: &[&str]| {
        let headers = dir.path().join("headers");
        let body = dir.path().join("body");
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "-D"])
            .arg(&headers)
            .arg("-o")
            .arg(&body)
            .args(args)
            .arg(&url)
            .output()
            .unwrap_or_else(|e| panic!("cannot run curl ({e}): install it with `apt-get install -y curl`"));
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let headers = std::fs::read_to_string(headers).unwrap().to_ascii_lowercase();
        (headers, std::fs::read(body).unwrap())
    };
    let identity_lines = sorted_lines(&identity);
    let (headers, body) = tokio::task::block_in_place(|| curl(&["--compressed", "-H", "Accept-Encoding: gzip"]));
    assert!(headers.contains("\r\ncontent-encoding: gzip\r\n"), "{headers}");
    assert!(headers.contains("\r\nvary: accept-encoding\r\n"), "{headers}");
    assert_eq!(sorted_lines(std::str::from_utf8(&body).unwrap()), identity_lines);
    let (headers, raw) = tokio::task::block_in_place(|| curl(&["-H", "Accept-Encoding: gzip"]));
    assert!(headers.contains("\r\ncontent-encoding: gzip\r\n"), "{headers}");
    assert_eq!(raw[..2], [0x1f, 0x8b], "the gzip magic number");
    assert!(
        raw.len() < identity.len() / 5,
        "{} bytes gzipped, {} identity",
        raw.len(),
        identity.len()
    );
    assert_eq!(sorted_lines(&String::from_utf8(gunzip(&raw)).unwrap()), identity_lines);
    let (headers, body) = tokio::task::block_in_place(|| curl(&[]));
    assert!(!headers.contains("content-encoding"), "{headers}");
    assert!(headers.contains("\r\nvary: accept-encoding\r\n"), "{headers}");
    assert_eq!(sorted_lines(std::str::from_utf8(&body).unwrap()), identity_lines);
    server.abort();
}

/// The real pipeline (generator history, real model fits) feeds the same API: the explanation's numbers are the
/// served plan's, and a forecast-only workload serves the reactive target.
#[tokio::test]
async fn the_pipeline_publishes_what_the_api_explains() {
    let store = Arc::new(PlanStore::new());
    let now = at(NOW);
    let registry = telemetry::Registry::new(store.clone(), Clock::fixed(now));
    let generator = Generator::new(Profile::WebFrontend, 7);
    let config = WorkloadConfig {
        id: WorkloadId {
            namespace: "shop".into(),
            name: "web".into(),
        },
        demand: DemandSource::Generator(generator.clone()),
        unit: "requests/s".into(),
        policy: policy(25.0),
        seasonality: Seasonality::Auto,
        refit_interval: TimeDelta::hours(1),
        history: TimeDelta::days(3),
        max_data_age: TimeDelta::minutes(5),
        serving: ServingConfig {
            mode: Mode::ForecastOnly,
            ..Default::default()
        },
        scale_target: None,
    };
    let mut cycle = Cycle::with_metrics(
        Workload {
            config,
            history: Arc::new(generator),
        },
        registry.pipeline(),
    );
    for k in 0..8 {
        cycle
            .run_once(&store, now + TimeDelta::minutes(k))
            .await
            .expect("a plan is published");
    }
    let later = now + TimeDelta::minutes(7);
    let app = admin::router(AdminState {
        store: store.clone(),
        clock: Clock::fixed(later),
    });
    let r = send(app.clone(), "/api/v1/workloads/shop/web").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let e: Explanation = serde_json::from_value(v["explanation"].clone()).unwrap();
    let snap = store
        .get(&WorkloadId {
            namespace: "shop".into(),
            name: "web".into(),
        })
        .unwrap();
    assert_eq!(e.replicas, snap.plan.replicas);
    assert_eq!(e.serving, Serving::ForecastOnly);
    assert_eq!(
        e.replicas, e.reactive.replicas,
        "forecast-only serves the reactive target"
    );
    assert_eq!(e.forecast.quantile, 0.9);
    assert!(e.forecast.peak_demand > 0.0);
    assert!(
        e.quality.scored_total >= 1,
        "forecasts are scored in forecast-only mode too: {:?}",
        e.quality
    );
    assert!(
        v["forecast"]["points"].as_array().unwrap().len() >= 60,
        "an hour of forecast to show"
    );
    assert!(v["history"].as_array().unwrap().len() >= 300, "hours of recent history");
    let metrics = registry.encode();
    promtool_check(&metrics);
    assert!(
        metrics.contains("\nprescale_forecast_fit_duration_seconds_count 1\n"),
        "{metrics}"
    );
}

/// `prescale explain`'s client against a real listener: the text carries the JSON's numbers.
#[tokio::test]
async fn the_explain_client_reads_a_running_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app(filled_store())).await });
    let e = explain::fetch(&client(), &url, "default", "web").await.unwrap();
    assert_eq!((e.replicas, e.serving), (9, Serving::Demoted));
    let text = e.to_text();
    assert!(text.starts_with("default/web: 9 replicas\n"), "{text}");
    assert!(
        text.contains("observed 62.5 requests/s now → floor 7 replicas; reactive target 9 at 70% utilization"),
        "{text}"
    );
    assert!(text.contains("DEMOTED since"), "{text}");
    assert!(
        text.contains(&format!("prescale {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(
        text.contains(
            "decided by reactive floor (demoted to reactive at 70% utilization; the forecast plan would be 7)\n"
        ),
        "{text}"
    );
    // web's SLO cannot be met: the slo line, the choice line and the summary say so.
    assert!(
        text.contains(
            "slo        at most 0.01% of demand unserved over 1d: 0.04% over the first 20h, error budget overspent by \
             300%; MISSED; CANNOT BE MET NOW: no candidate left at most 0.01% unserved both recently and over the \
             window; reactive@35% left the least over the window (0.2%) of the candidates holding no more pods than \
             reactive@35% and is chosen\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "choice     reactive@35%: the least demand unserved over the SLO's window of the candidates holding no \
             more pods than reactive@35% (0.2% over it, 0.2% recently; the SLO allows 0.01%); it is the HPA target \
             that left the least unserved (none met the SLO)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "The SLO (at most 0.01% of demand unserved over 1d) cannot be met now: no candidate left so little demand \
             unserved both recently and over the SLO's window."
        ),
        "{text}"
    );
    assert!(!text.contains("record "), "nothing served scored, no record: {text}");
    let chat = explain::fetch(&client(), &url, "default", "llm-chat")
        .await
        .unwrap()
        .to_text();
    for line in [
        "slo        at most 0.5% of demand unserved over 7d: 0.35% over the whole window, error budget 30% left; met\n",
        "choice     p80: the fewest pods of the candidates within the budget (0.4% unserved recently vs 0.47%); 0.94× \
         the pods of reactive@55%, the cheapest HPA target that met the SLO\n",
        "record     what was served left 0.35% of demand unserved recently, 0.38% since start, with 0.93× the pods of \
         reactive@55%\n",
    ] {
        assert!(chat.contains(line), "missing `{line}` in:\n{chat}");
    }
    assert!(!chat.contains("CANNOT"), "{chat}");
    let batch = explain::fetch(&client(), &url, "default", "batch")
        .await
        .unwrap()
        .to_text();
    assert!(
        !batch.contains("slo ") && !batch.contains("choice ") && !batch.contains("record "),
        "no SLO controller, no SLO lines: {batch}"
    );
    let missing = explain::fetch(&client(), &url, "default", "nope")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("no workload default/nope is configured") && missing.contains("/api/v1/workloads"),
        "{missing}"
    );
    server.abort();
    let down = explain::fetch(&client(), "http://127.0.0.1:9", "default", "web")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        down.contains("cannot reach the prescale admin server") && down.contains("--admin"),
        "{down}"
    );
}

/// The exposition of the filled store with `detail`, as `serve` makes it: the pipeline's fit histogram, the API's
/// request metrics and the Prometheus history client's.
async fn exposition(detail: telemetry::Detail) -> String {
    let store = filled_store();
    let registry = telemetry::Registry::with_detail(store.clone(), Clock::fixed(at(NOW)), detail);
    registry.pipeline().fit(
        &WorkloadId {
            namespace: "default".into(),
            name: "web".into(),
        },
        0.1,
    );
    prescale::app::init();
    let settings = PrometheusSettings {
        retries: 0,
        ..PrometheusSettings::new("http://127.0.0.1:9")
    };
    let prometheus = PrometheusClient::new(&settings).unwrap();
    registry.register_with(|r| prometheus.register_metrics(r));
    // One query that finds no Prometheus (nothing listens on port 9): the client's request counter gets a series.
    let query = PromQuery::new(&prometheus, "up", TimeDelta::minutes(1)).unwrap();
    assert!(query.fetch(at(NOW) - TimeDelta::hours(1), at(NOW)).await.is_err());
    let api = telemetry::instrument(
        admin::router(AdminState {
            store,
            clock: Clock::fixed(at(NOW)),
        }),
        registry.http("api"),
    );
    send(api, "/api/v1/workloads").await;
    registry.encode()
}

/// The metric names `expr` reads (histogram series by their family's name).
fn prescale_metrics(expr: &str) -> Vec<&str> {
    expr.match_indices("prescale_")
        .map(|(i, _)| {
            let name = &expr[i..];
            let name = &name[..name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(name.len())];
            ["_bucket", "_count", "_sum"]
                .iter()
                .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n))
        })
        .collect()
}

/// Every alert of the shipped PrometheusRule reads only series prescale exports by default: they work without
/// `--metrics-detail`.
#[tokio::test]
async fn the_alerts_read_only_default_metrics() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/base/prometheusrule.yaml");
    let rule: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let default = exposition(telemetry::Detail::Default).await;
    let mut checked = 0;
    for r in rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        for family in prescale_metrics(r["expr"].as_str().unwrap()) {
            assert!(
                default.contains(&format!("# TYPE {family} ")),
                "alert {} reads {family}, which is not in prescale's default metrics",
                r["alert"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "{checked} metric references checked");
}

/// Every `prescale_*` metric the Grafana dashboard queries is one prescale exports: by default outside its Detail
/// row, with `--metrics-detail` inside it.
#[tokio::test]
async fn the_grafana_dashboard_queries_exported_metrics() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/prescale.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    let default = exposition(telemetry::Detail::Default).await;
    let detail = exposition(telemetry::Detail::Full).await;
    let mut checked = 0;
    let mut check = |panel: &Value, exposition: &str, set: &str| {
        for target in panel["targets"].as_array().unwrap() {
            for family in prescale_metrics(target["expr"].as_str().unwrap()) {
                assert!(
                    exposition.contains(&format!("# TYPE {family} ")),
                    "panel `{}` queries {family}, which is not in prescale's {set} metrics",
                    panel["title"]
                );
                checked += 1;
            }
        }
    };
    let mut rows = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            assert!(
                panel["title"].as_str().unwrap().contains("--metrics-detail"),
                "{}",
                panel["title"]
            );
            for panel in panel["panels"].as_array().unwrap() {
                check(panel, &detail, "detail");
            }
            rows += 1;
        } else {
            check(panel, &default, "default");
        }
    }
    assert_eq!(rows, 1, "one Detail row");
    assert!(checked >= 25, "{checked} metric references checked");
}

/// The client `prescale explain` reads the admin server with, as the composition root builds it.
fn client() -> reqwest::Client {
    prescale::app::init();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}
