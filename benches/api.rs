//! The external-metrics GET handler under load, measured against the discovery handler as an in-run baseline.
//!
//! The store is filled by the real pipeline (generator history, real fits), so the handler reads exactly what it
//! reads in production. `cargo bench --bench api`.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use tower::ServiceExt;

use prescale::apiserver::api::{self, ApiState};
use prescale::clock::Clock;
use prescale::history::synthetic::{Generator, Profile};
use prescale::pipeline::{Cycle, Workload};
use prescale::store::PlanStore;

fn store_with(workloads: usize, now: DateTime<Utc>, rt: &tokio::runtime::Runtime) -> Arc<PlanStore> {
    let mut yaml = String::from("workloads:\n");
    for i in 0..workloads {
        yaml.push_str(&format!(
            "  - name: w{i}\n    namespace: ns{}\n    demand: {{generator: {{profile: llm-chat, seed: {i}}}}}\n    capacityPerReplica: 10\n    maxReplicas: 40\n    history: 2d\n",
            i % 4
        ));
    }
    let config = prescale::config::parse(&yaml, Path::new("bench.yaml")).expect("bench config is valid");
    let store = Arc::new(PlanStore::new());
    for w in config.workloads {
        let history = Arc::new(Generator::new(Profile::LlmChat, 1));
        let mut cycle = Cycle::new(Workload { config: w, history });
        rt.block_on(cycle.run_once(&store, now)).expect("a plan is published");
    }
    store
}

fn get(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = DateTime::parse_from_rfc3339("2026-03-04T12:00:30Z")
        .unwrap()
        .with_timezone(&Utc);
    for workloads in [4, 64] {
        let store = store_with(workloads, now, &rt);
        let router = api::router(ApiState {
            store,
            clock: Clock::fixed(now),
        });
        let mut group = c.benchmark_group(format!("api/{workloads}-workloads"));
        let call = |uri: &'static str| {
            let router = router.clone();
            move || {
                let router = router.clone();
                async move {
                    let response = router
                        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                        .await
                        .unwrap();
                    assert!(response.status().is_success(), "{uri}: {}", response.status());
                    axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap()
                }
            }
        };
        group.bench_function("discovery (baseline)", |b| {
            b.to_async(&rt).iter(call("/apis/external.metrics.k8s.io/v1beta1"))
        });
        group.bench_function("metric, selector on one workload", |b| {
            b.to_async(&rt).iter(call(
                "/apis/external.metrics.k8s.io/v1beta1/namespaces/ns0/prescale_replicas?labelSelector=workload%3Dw0",
            ))
        });
        group.bench_function("metric, whole namespace", |b| {
            b.to_async(&rt).iter(call(
                "/apis/external.metrics.k8s.io/v1beta1/namespaces/ns0/prescale_demand_planned",
            ))
        });
        group.finish();
    }
}

criterion_group!(benches, get);
criterion_main!(benches);
