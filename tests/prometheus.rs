//! Prometheus as the history source, against a real `prometheus` process loaded with recorded traces.
//!
//! One shared Prometheus serves the read-only tests; tests that kill, pause or start Prometheus late get their own.

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use prescale::history::prometheus::{BasicAuth, Combine, PromQuery, PrometheusClient, PrometheusSettings, Secret};
use prescale::history::{align_down, History, HistoryError};
use prescale::series::Series;
use prometheus_client::registry::Registry;
use support::{demand_query, load_trace, shift_to_end_before, OpenMetrics, Prometheus};

const MINUTE: TimeDelta = TimeDelta::minutes(1);

struct Shared {
    prometheus: Prometheus,
    nasa: Series,
    servegen: Series,
    /// Start of the two-hour window holding the `requests` and `glitchy` series.
    recent: DateTime<Utc>,
}

/// The shared Prometheus: two traces shifted to end near now, two `requests` pods and a series with NaN/±Inf.
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let now = Utc::now();
        let nasa = shift_to_end_before(&load_trace("nasa_http_1995.csv"), now);
        let servegen = shift_to_end_before(&load_trace("servegen_lang_m_small.csv"), now);
        let recent = align_down(now, TimeDelta::hours(1)) - TimeDelta::hours(3);
        let mut om = OpenMetrics::new();
        om.demand("demand", &[("trace", "nasa")], &nasa);
        om.demand("demand", &[("trace", "servegen")], &servegen);
        om.demand("requests", &[("pod", "a")], &ramp(recent, 120, |i| i as f64));
        om.demand("requests", &[("pod", "b")], &ramp(recent, 120, |i| 100.0 - i as f64));
        let glitches = [1.5, f64::NAN, 2.5, f64::INFINITY, 3.5, f64::NEG_INFINITY, 4.5];
        om.gauge(
            "glitchy",
            &[],
            glitches
                .iter()
                .enumerate()
                .map(|(i, v)| (recent + MINUTE * (i as i32 + 1), *v)),
        );
        Shared {
            prometheus: Prometheus::start(&om),
            nasa,
            servegen,
            recent,
        }
    })
}

/// `n` one-minute slots from `start` with values `f(i)`.
fn ramp(start: DateTime<Utc>, n: usize, f: impl Fn(usize) -> f64) -> Series {
    Series::from_values(start, MINUTE, (0..n).map(|i| Some(f(i))).collect())
}

fn settings(url: &str) -> PrometheusSettings {
    let mut s = PrometheusSettings::new(url);
    s.timeout = Duration::from_secs(5);
    s.retry_backoff = Duration::from_millis(50);
    s.max_retry_backoff = Duration::from_millis(50);
    s
}

fn client(settings: &PrometheusSettings) -> (PrometheusClient, Registry) {
    prescale::app::init();
    let client = PrometheusClient::new(settings).expect("valid settings");
    let mut registry = Registry::default();
    client.register_metrics(&mut registry);
    (client, registry)
}

/// The value of one sample line of the registry's text exposition (0 when the line is absent).
fn metric(registry: &Registry, series: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encoding metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(0.0)
}

fn requests(registry: &Registry, outcome: &str) -> f64 {
    metric(registry, &format!("prometheus_requests_total{{outcome=\"{outcome}\"}}"))
}

fn query(client: &PrometheusClient, promql: &str, step: TimeDelta) -> PromQuery {
    PromQuery::new(client, promql, step).expect("valid query")
}

#[tokio::test]
async fn one_minute_trace_reads_back_exactly_with_its_gaps() {
    let shared = shared();
    let (client, registry) = client(&settings(&shared.prometheus.url()));
    let nasa = &shared.nasa;
    let q = query(&client, &demand_query("demand{trace=\"nasa\"}", MINUTE), MINUTE);

    let got = q.fetch(nasa.start(), nasa.end()).await.expect("fetch");

    assert_eq!(nasa.len(), 89_279);
    assert_eq!(nasa.missing(), 7_564);
    assert!(got == *nasa, "fetched series differs from the CSV");
    // 89,279 points at most 11,000 per request.
    assert_eq!(requests(&registry, "ok"), 9.0);
}

#[tokio::test]
async fn ten_minute_trace_reads_back_exactly_with_its_gaps() {
    let shared = shared();
    let (client, registry) = client(&settings(&shared.prometheus.url()));
    let servegen = &shared.servegen;
    let step = TimeDelta::minutes(10);
    let q = query(&client, &demand_query("demand{trace=\"servegen\"}", step), step);

    let got = q.fetch(servegen.start(), servegen.end()).await.expect("fetch");

    assert_eq!(servegen.missing(), 37);
    assert!(got == *servegen, "fetched series differs from the CSV");
    assert_eq!(requests(&registry, "ok"), 1.0);
}

#[tokio::test]
async fn ranges_are_split_at_11000_points() {
    let shared = shared();
    let nasa = &shared.nasa;
    for (slots, expected_requests) in [(11_000, 1.0), (11_001, 2.0), (22_000, 2.0), (22_001, 3.0)] {
        let (client, registry) = client(&settings(&shared.prometheus.url()));
        let q = query(&client, &demand_query("demand{trace=\"nasa\"}", MINUTE), MINUTE);
        let (from, to) = (nasa.start(), nasa.start() + MINUTE * slots);

        let got = q.fetch(from, to).await.expect("fetch");

        assert!(got == nasa.window(from, to), "{slots} slots differ from the CSV");
        assert_eq!(got.len(), slots as usize);
        assert_eq!(
            requests(&registry, "ok"),
            expected_requests,
            "requests for {slots} slots"
        );
    }
}

#[tokio::test]
async fn unaligned_ranges_keep_only_whole_slots() {
    let shared = shared();
    let (client, _registry) = client(&settings(&shared.prometheus.url()));
    let nasa = &shared.nasa;
    let q = query(&client, &demand_query("demand{trace=\"nasa\"}", MINUTE), MINUTE);
    let from = nasa.start() + TimeDelta::seconds(90);
    let to = nasa.start() + TimeDelta::seconds(330);

    let got = q.fetch(from, to).await.expect("fetch");

    // Slots starting at 2, 3 and 4 minutes; the slot starting at 5 minutes has not ended by 5m30s.
    assert_eq!(got.start(), nasa.start() + MINUTE * 2);
    assert!(got.values().eq(nasa.slots(2..5)));
}

#[tokio::test]
async fn several_series_are_an_error_naming_the_query_and_series() {
    let shared = shared();
    let (client, _registry) = client(&settings(&shared.prometheus.url()));
    let promql = demand_query("requests", MINUTE);
    let (from, to) = (shared.recent, shared.recent + MINUTE * 120);

    let err = query(&client, &promql, MINUTE)
        .fetch(from, to)
        .await
        .expect_err("two series");

    assert!(matches!(err, HistoryError::Unusable(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "history query returned unusable data: query `last_over_time(requests[59s])` returned 2 series \
         (requests{pod=\"a\"}, requests{pod=\"b\"}); it must return one: aggregate it, e.g. sum(...), or set `combine: sum` or \
         `combine: max`"
    );

    let sum = query(&client, &promql, MINUTE)
        .combine(Combine::Sum)
        .fetch(from, to)
        .await
        .expect("sum");
    assert!(sum == ramp(from, 120, |_| 100.0), "sum of i and 100 - i: {sum:?}");
    let max = query(&client, &promql, MINUTE)
        .combine(Combine::Max)
        .fetch(from, to)
        .await
        .expect("max");
    assert!(max == ramp(from, 120, |i| (i as f64).max(100.0 - i as f64)), "{max:?}");
}

#[tokio::test]
async fn no_data_is_an_empty_series_not_zeros() {
    let shared = shared();
    let (client, registry) = client(&settings(&shared.prometheus.url()));
    let q = query(&client, "demand{trace=\"absent\"}", MINUTE);
    let from = shared.recent + TimeDelta::seconds(1);

    let got = q
        .fetch(from, from + TimeDelta::hours(1))
        .await
        .expect("an empty answer is not an error");

    assert!(got.is_empty());
    assert_eq!(got.points().count(), 0);
    assert_eq!(got.start(), shared.recent + MINUTE);
    assert_eq!(requests(&registry, "ok"), 1.0);
}

#[tokio::test]
async fn promql_syntax_errors_carry_prometheus_message_and_are_not_retried() {
    let shared = shared();
    let (client, registry) = client(&settings(&shared.prometheus.url()));
    let q = query(&client, "sum(rate(demand[5m])", MINUTE);

    let err = q
        .fetch(shared.recent, shared.recent + TimeDelta::hours(1))
        .await
        .expect_err("bad PromQL");

    let HistoryError::Unavailable { message, .. } = &err else {
        panic!("expected Unavailable, got {err:?}")
    };
    assert!(message.contains("prometheus answered bad_data"), "{message}");
    assert!(message.contains("parse error"), "{message}");
    assert!(message.contains("unclosed left parenthesis"), "{message}");
    assert_eq!(requests(&registry, "query_error"), 1.0);
    assert_eq!(requests(&registry, "ok"), 0.0);
}

#[tokio::test]
async fn nan_and_infinite_samples_are_dropped_and_counted() {
    let shared = shared();
    let (client, registry) = client(&settings(&shared.prometheus.url()));
    let q = query(&client, &demand_query("glitchy", MINUTE), MINUTE);

    let got = q
        .fetch(shared.recent, shared.recent + TimeDelta::hours(1))
        .await
        .expect("fetch");

    let expected = vec![Some(1.5), None, Some(2.5), None, Some(3.5), None, Some(4.5)];
    assert!(got == Series::from_values(shared.recent, MINUTE, expected), "{got:?}");
    assert_eq!(
        metric(&registry, "prometheus_samples_dropped_total{reason=\"non_finite\"}"),
        3.0
    );
}

/// A private Prometheus with one hour of one-minute demand ending before now.
fn private_prometheus() -> (Prometheus, Series) {
    let start = align_down(Utc::now(), MINUTE) - TimeDelta::hours(2);
    let series = ramp(start, 60, |i| 10.0 + i as f64 / 4.0);
    let mut om = OpenMetrics::new();
    om.demand("demand", &[], &series);
    (Prometheus::prepare(&om), series)
}

const PRIVATE_QUERY: &str = "last_over_time(demand[59s])";

#[tokio::test]
async fn prometheus_killed_then_restarted_fails_then_recovers() {
    let (mut prometheus, expected) = private_prometheus();
    prometheus.launch();
    let (client, registry) = client(&settings(&prometheus.url()));
    let q = query(&client, PRIVATE_QUERY, MINUTE);
    let (from, to) = (expected.start(), expected.end());
    assert!(q.fetch(from, to).await.expect("before the kill") == expected);

    prometheus.kill();
    let began = Instant::now();
    let err = q.fetch(from, to).await.expect_err("Prometheus is down");
    let elapsed = began.elapsed();

    let HistoryError::Unavailable { message, .. } = &err else {
        panic!("expected Unavailable, got {err:?}")
    };
    assert!(message.contains("Connection refused"), "{message}");
    assert!(message.contains("after 3 attempts"), "{message}");
    // A first attempt and two retries, 50 ms apart.
    assert_eq!(requests(&registry, "unreachable"), 3.0);
    assert!(
        elapsed >= Duration::from_millis(100) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );

    prometheus.launch();
    assert!(q.fetch(from, to).await.expect("after the restart") == expected);
    assert_eq!(requests(&registry, "ok"), 2.0);
}

#[tokio::test]
async fn prometheus_started_late_is_picked_up_by_retries() {
    let (prometheus, expected) = private_prometheus();
    let (from, to) = (expected.start(), expected.end());
    let mut no_retries = settings(&prometheus.url());
    no_retries.retries = 0;
    let (client_once, registry_once) = client(&no_retries);
    let err = query(&client_once, PRIVATE_QUERY, MINUTE)
        .fetch(from, to)
        .await
        .expect_err("not started yet");
    assert!(matches!(err, HistoryError::Unavailable { .. }), "{err:?}");
    assert_eq!(requests(&registry_once, "unreachable"), 1.0);

    let mut patient = settings(&prometheus.url());
    // The most retries a config may ask for, backing off up to 2 s: about 11 s for Prometheus to come up.
    patient.retries = 10;
    patient.max_retry_backoff = Duration::from_secs(2);
    let (client, registry) = client(&patient);
    let q = query(&client, PRIVATE_QUERY, MINUTE);
    let starter = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut prometheus = prometheus;
        prometheus.launch();
        prometheus
    });

    let got = q.fetch(from, to).await.expect("retries reach Prometheus once it is up");
    let _prometheus = starter.await.expect("launch");

    assert!(got == expected);
    assert_eq!(requests(&registry, "ok"), 1.0);
    // At 50 ms between attempts, 300 ms of downtime takes several failed attempts.
    assert!(
        requests(&registry, "unreachable") >= 3.0,
        "{}",
        requests(&registry, "unreachable")
    );
}

#[tokio::test]
async fn paused_prometheus_times_out_within_the_bound_then_recovers() {
    let (mut prometheus, expected) = private_prometheus();
    prometheus.launch();
    let mut s = settings(&prometheus.url());
    s.timeout = Duration::from_millis(300);
    s.retries = 1;
    s.retry_backoff = Duration::from_millis(100);
    s.max_retry_backoff = Duration::from_millis(100);
    let (client, registry) = client(&s);
    let q = query(&client, PRIVATE_QUERY, MINUTE);
    let (from, to) = (expected.start(), expected.end());

    prometheus.pause();
    let began = Instant::now();
    let err = q.fetch(from, to).await.expect_err("Prometheus is frozen");
    let elapsed = began.elapsed();
    prometheus.resume();

    let HistoryError::Unavailable { message, .. } = &err else {
        panic!("expected Unavailable, got {err:?}")
    };
    assert!(
        message.contains("no answer within the 300ms timeout (after 2 attempts)"),
        "{message}"
    );
    assert_eq!(requests(&registry, "timeout"), 2.0);
    // Two 300 ms attempts and one 100 ms wait.
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    assert!(q.fetch(from, to).await.expect("after SIGCONT") == expected);
}

#[tokio::test]
async fn concurrent_queries_are_limited_across_workloads() {
    let (mut prometheus, expected) = private_prometheus();
    prometheus.launch();
    let (from, to) = (expected.start(), expected.end());
    prometheus.pause();
    let mut elapsed = Vec::new();
    for limit in [1, 3] {
        let mut s = settings(&prometheus.url());
        s.timeout = Duration::from_millis(300);
        s.retries = 0;
        s.max_concurrent_queries = limit;
        let (client, registry) = client(&s);
        let workloads: Vec<PromQuery> = (0..3).map(|_| query(&client, PRIVATE_QUERY, MINUTE)).collect();
        let began = Instant::now();
        let results = futures_join3(&workloads, from, to).await;
        elapsed.push(began.elapsed());
        assert!(results.iter().all(Result::is_err));
        assert_eq!(requests(&registry, "timeout"), 3.0);
    }
    prometheus.resume();
    // One at a time, three 300 ms timeouts queue up; three at a time they overlap.
    assert!(elapsed[0] >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed[1] < Duration::from_millis(600), "{elapsed:?}");
}

async fn futures_join3(w: &[PromQuery], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Result<Series, HistoryError>> {
    let (a, b, c) = tokio::join!(w[0].fetch(from, to), w[1].fetch(from, to), w[2].fetch(from, to));
    vec![a, b, c]
}

/// Prometheus's web config with one basic-auth user, `prescale`, password `s3cret` (bcrypt at cost 4, so the
/// check stays fast).
const WEB_CONFIG: &str =
    "basic_auth_users:\n  prescale: '$2b$04$ubkFG0CWAoxPss/XWzfFUe3RwA0diwievGU2KzAEFliq9qgr9ILae'\n";

#[tokio::test]
async fn basic_auth_is_sent_and_a_refusal_is_not_retried() {
    let start = align_down(Utc::now(), MINUTE) - TimeDelta::hours(2);
    let expected = ramp(start, 30, |i| i as f64 * 0.5);
    let mut om = OpenMetrics::new();
    om.demand("demand", &[], &expected);
    let prometheus = Prometheus::start_with_web_config(&om, WEB_CONFIG, "Basic cHJlc2NhbGU6czNjcmV0");
    let dir = tempfile::tempdir().expect("temp dir");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "s3cret\n").expect("writing the password file");
    let (from, to) = (expected.start(), expected.end());

    let mut s = settings(&prometheus.url());
    s.basic_auth = Some(BasicAuth {
        username: "prescale".into(),
        password: None,
        password_file: Some(password_file),
    });
    let (client_ok, registry_ok) = client(&s);
    let got = query(&client_ok, PRIVATE_QUERY, MINUTE)
        .fetch(from, to)
        .await
        .expect("authorised");
    assert!(got == expected);
    assert_eq!(requests(&registry_ok, "ok"), 1.0);

    let mut s = settings(&prometheus.url());
    s.basic_auth = Some(BasicAuth {
        username: "prescale".into(),
        password: Some(Secret::new("wrong")),
        password_file: None,
    });
    let (client_bad, registry_bad) = client(&s);
    let err = query(&client_bad, PRIVATE_QUERY, MINUTE)
        .fetch(from, to)
        .await
        .expect_err("refused");
    let HistoryError::Unavailable { message, .. } = &err else {
        panic!("expected Unavailable, got {err:?}")
    };
    assert!(message.contains("HTTP 401 Unauthorized"), "{message}");
    assert_eq!(requests(&registry_bad, "http_error"), 1.0);
}
