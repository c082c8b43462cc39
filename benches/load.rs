//! The load harness: the real `prescale serve` binary with N generated workloads, measured from outside the way a
//! platform team would measure it.
//!
//! ```sh
//! cargo build --release
//! cargo bench --bench load -- --workloads 1000
//! ```
//!
//! It writes a workload file of N generator-fed workloads (three profiles, one seed each), starts the binary on
//! loopback, and reports:
//!
//! - **time until all are served, and until all are planned**: from the process start until `/readyz?verbose`
//!   lists every workload served (the reactive target while its first model is fitted counts: warming up), then
//!   until every one is planned from its own model (none warming up any more); a workload waiting for its source
//!   counts as done in both: the generator drops 5–20 slots now and then, and a workload whose newest sample is
//!   older than its `maxDataAge` is rightly held until samples return (counted and reported apart)
//!   (a progress line every few seconds meanwhile);
//! - **memory**: the process's resident set (VmRSS) once all are planned and after the steady window, per workload;
//! - **CPU**: cores used on average over the steady window (every cycle's decisions and the refits due in it);
//! - **`/metrics`**: bytes and series of the exposition, per workload;
//! - **API latency** under a fixed-rate (open-loop, as wrk2) load of external-metrics GETs over TLS keep-alive
//!   connections, each latency measured from the moment the request was due, not sent, so a stalled server cannot
//!   hide its queue (no coordinated omission); answers that are not 2xx are counted by status (a workload whose
//!   source is in an outage is rightly refused: 503). The same load runs against a trivial axum handler behind the same TLS listener code, in its own
//!   process, in the same run: compare the ratio between runs, not the absolute numbers.
//!
//! Flags: `--workloads N` (1000), `--binary PATH` (`target/release/prescale`), `--history DUR` (`15d`),
//! `--step DUR` (`1m`), `--replay DUR` (`0s`: the SLO controller's startup replay off; `3d` is the default of a
//! workload file), `--interval DUR` (`30s`), `--steady SECONDS` (60), `--rate REQ_PER_S` (5000),
//! `--load SECONDS` (10), `--connections N` (32), `--ready-timeout SECONDS` (1800), `--refit-interval DUR` (`1h`,
//! the default of a workload file; with a shorter one the steady window holds refits too, but only those whose
//! due time, next cycle and turn all fall inside it: make the window several intervals long to average them),
//! `--restart` (also run with
//! `--state-configmaps` on an in-memory stand-in for kube-apiserver, tests/support/apiserver.rs, through a
//! kubeconfig, or with `--state-dir` given `--state-dir`, and a 20 s save interval; after the API load, once every
//! workload has saved its state, stop the server with SIGTERM, start it again on the same states and report the
//! second start: until all are served, how many with their restored last plan, and until all are planned).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use prescale::sre::admin::{RESTORED_NOTE, WARMING_NOTE};

#[path = "../tests/support/apiserver.rs"]
mod apiserver;
mod harness;
use apiserver::{ApiServer, Kind};
use harness::{cpu_seconds, free_port, rss_kib, tail, wait_for_port, Guard};

/// The harness's settings, from its flags.
#[derive(Debug, Clone)]
struct Args {
    workloads: usize,
    binary: PathBuf,
    history: String,
    step: String,
    replay: String,
    interval: String,
    steady: u64,
    rate: u64,
    load: u64,
    connections: usize,
    ready_timeout: u64,
    restart: bool,
    /// `--state-dir` (true) or `--state-configmaps` on the stand-in API server (false) for `--restart`.
    state_dir: bool,
    refit_interval: String,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut args = Self {
            workloads: 1000,
            binary: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/prescale"),
            history: "15d".into(),
            step: "1m".into(),
            replay: "0s".into(),
            interval: "30s".into(),
            steady: 60,
            rate: 5000,
            load: 10,
            connections: 32,
            ready_timeout: 1800,
            restart: false,
            state_dir: false,
            refit_interval: "1h".into(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            // `cargo bench` passes `--bench` to every bench binary.
            if flag == "--bench" {
                continue;
            }
            let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--workloads" => args.workloads = value()?.parse().context("--workloads: a whole number")?,
                "--binary" => args.binary = PathBuf::from(value()?),
                "--history" => args.history = value()?,
                "--step" => args.step = value()?,
                "--replay" => args.replay = value()?,
                "--interval" => args.interval = value()?,
                "--steady" => args.steady = value()?.parse().context("--steady: seconds")?,
                "--rate" => args.rate = value()?.parse().context("--rate: requests per second")?,
                "--load" => args.load = value()?.parse().context("--load: seconds")?,
                "--connections" => args.connections = value()?.parse().context("--connections: a whole number")?,
                "--ready-timeout" => args.ready_timeout = value()?.parse().context("--ready-timeout: seconds")?,
                "--restart" => args.restart = true,
                "--state-dir" => args.state_dir = true,
                "--refit-interval" => args.refit_interval = value()?,
                "--serve-baseline" => {
                    let addr: SocketAddr = value()?.parse().context("--serve-baseline: an address")?;
                    serve_baseline(addr)?;
                    std::process::exit(0);
                }
                other => bail!("unknown flag {other}: see the module documentation of benches/load.rs"),
            }
        }
        if args.workloads == 0 || args.rate == 0 || args.connections == 0 {
            bail!("--workloads, --rate and --connections must be at least 1");
        }
        Ok(args)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    prescale::apiserver::tls::install_crypto_provider();
    if !args.binary.is_file() {
        bail!(
            "{} not found: run `cargo build --release` first, or pass --binary",
            args.binary.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let config = harness::write_workloads(
        dir.path(),
        &harness::Workloads {
            count: args.workloads,
            interval: &args.interval,
            step: &args.step,
            history: &args.history,
            refit_interval: &args.refit_interval,
            replay: &args.replay,
            max_data_age: None,
        },
    )?;
    let (api, admin) = (free_port()?, free_port()?);
    println!(
        "load harness: {} workloads, history {} at {}, replay {}, interval {}, refit interval {}",
        args.workloads, args.history, args.step, args.replay, args.interval, args.refit_interval
    );
    let states = dir.path().join("states");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // With --restart, states go to ConfigMaps on the in-memory stand-in for kube-apiserver (no real one can run
    // here), reached through a kubeconfig, unless --state-dir.
    let cluster = (args.restart && !args.state_dir).then(|| rt.block_on(ApiServer::start()));
    let kubeconfig = dir.path().join("kubeconfig");
    if let Some(cluster) = &cluster {
        harness::write_kubeconfig(&kubeconfig, cluster.url())?;
    }
    let launch = |log_name: &str| -> anyhow::Result<Guard> {
        let log = std::fs::File::create(dir.path().join(log_name))?;
        let mut command = Command::new(&args.binary);
        command
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--api-addr", &format!("127.0.0.1:{api}")])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .args(["--insecure-no-auth", "--authentication-skip-lookup", "--log", "warn"]);
        if args.restart {
            command.args(["--state-save-interval", "20s"]);
            if cluster.is_some() {
                command
                    .args(["--state-configmaps", "prescale-state"])
                    .env("KUBECONFIG", &kubeconfig)
                    .env_remove("POD_NAMESPACE");
            } else {
                command.arg("--state-dir").arg(&states);
            }
        }
        Ok(Guard(
            command
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", args.binary.display()))?,
        ))
    };
    let started = Instant::now();
    let mut server = launch("prescale.log")?;
    let pid = server.0.id();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let readyz = format!("http://127.0.0.1:{admin}/readyz?verbose");
    let log_path = dir.path().join("prescale.log");
    let Startup {
        served_after,
        planned_after,
        in_outage,
        ..
    } = wait_planned(&rt, &http, &readyz, &args, &server, started, &log_path)?;
    let rss_planned = rss_kib(pid)?;
    println!(
        "all {} planned after {:.1} s ({in_outage} of them waiting for their source's outage to end, not planned); rss \
         {:.1} MiB ({:.0} KiB per workload)",
        args.workloads,
        planned_after.as_secs_f64(),
        rss_planned as f64 / 1024.0,
        rss_planned as f64 / args.workloads as f64
    );

    // The steady state: cycles and the refits due in the window.
    let (cpu0, t0) = (cpu_seconds(pid)?, Instant::now());
    std::thread::sleep(Duration::from_secs(args.steady));
    let cores = (cpu_seconds(pid)? - cpu0) / t0.elapsed().as_secs_f64();
    let rss_steady = rss_kib(pid)?;
    println!(
        "steady {} s: {:.2} cores on average; rss {:.1} MiB ({:.0} KiB per workload)",
        args.steady,
        cores,
        rss_steady as f64 / 1024.0,
        rss_steady as f64 / args.workloads as f64
    );

    let exposition = rt.block_on(async {
        http.get(format!("http://127.0.0.1:{admin}/metrics"))
            .send()
            .await?
            .text()
            .await
    })?;
    let series = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let per_workload = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("workload=\""))
        .count();
    println!(
        "/metrics: {:.2} MB, {series} series ({:.1} per workload carry a workload label)",
        exposition.len() as f64 / 1e6,
        per_workload as f64 / args.workloads as f64
    );

    // API latency, against a trivial handler behind the same TLS code in its own process.
    let base_port = free_port()?;
    let baseline = Guard(
        Command::new(std::env::current_exe()?)
            .args(["--serve-baseline", &format!("127.0.0.1:{base_port}")])
            .stdout(Stdio::null())
            .spawn()?,
    );
    wait_for_port(base_port)?;
    let path = "/apis/external.metrics.k8s.io/v1beta1/namespaces";
    let base_urls = vec![format!(
        "https://127.0.0.1:{base_port}{path}/ns0/prescale_replicas?labelSelector=workload%3Dw0"
    )];
    let api_urls: Vec<String> = (0..args.workloads.min(1000))
        .map(|i| {
            format!(
                "https://127.0.0.1:{api}{path}/ns{}/prescale_replicas?labelSelector=workload%3Dw{i}",
                i % 4
            )
        })
        .collect();
    let mut rows = Vec::new();
    for (name, urls) in [
        ("trivial handler (baseline)", &base_urls),
        ("prescale_replicas", &api_urls),
    ] {
        let stats = rt.block_on(fixed_rate(
            urls,
            args.rate,
            Duration::from_secs(args.load),
            args.connections,
        ))?;
        rows.push((name, stats));
    }
    drop(baseline);
    println!(
        "\nAPI under a fixed {} req/s for {} s over {} TLS connections:",
        args.rate, args.load, args.connections
    );
    println!("| handler | sent/s | not 2xx | p50 | p99 | p99.9 | max | p99 ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    let base_p99 = rows[0].1.quantile(0.99);
    for (name, s) in &rows {
        println!(
            "| {name} | {:.0} | {} | {} | {} | {} | {} | {:.2} |",
            s.sent as f64 / s.elapsed.as_secs_f64(),
            s.failures(),
            ms(s.quantile(0.5)),
            ms(s.quantile(0.99)),
            ms(s.quantile(0.999)),
            ms(s.quantile(1.0)),
            s.quantile(0.99).as_secs_f64() / base_p99.as_secs_f64().max(1e-9)
        );
    }
    if let Some(status) = server.exited() {
        bail!(
            "prescale exited during the run ({status}): {}",
            tail(&dir.path().join("prescale.log"))
        );
    }
    let restart = if args.restart {
        Some(restart(
            &rt,
            &http,
            &readyz,
            &args,
            &mut server,
            &|| match &cluster {
                Some(cluster) => saved_in_configmaps(cluster),
                None => saved_in(&states),
            },
            &launch,
            dir.path(),
        )?)
    } else {
        None
    };
    if let Some(r) = &restart {
        println!(
            "\nrestart: all {} served after {:.1} s ({} restored: their last plan and SLO record; {} warming \
             up: the reactive target); all planned after {:.1} s",
            args.workloads,
            r.served_after.as_secs_f64(),
            r.restored,
            r.warming,
            r.planned_after.as_secs_f64()
        );
    }
    println!(
        "\nsummary | workloads {} | served after {:.0} s | planned after {:.0} s | rss {:.0} KiB/workload | {:.2} cores steady | /metrics {:.2} MB, {:.1} series/workload | API p99 {} (trivial {})",
        args.workloads,
        served_after.as_secs_f64(),
        planned_after.as_secs_f64(),
        rss_steady as f64 / args.workloads as f64,
        cores,
        exposition.len() as f64 / 1e6,
        per_workload as f64 / args.workloads as f64,
        ms(rows[1].1.quantile(0.99)),
        ms(base_p99),
    );
    Ok(())
}

/// How a start went, read from `/readyz?verbose`.
struct Startup {
    /// Until every workload was served (warming up counts).
    served_after: Duration,
    /// Until every workload was planned from its own model.
    planned_after: Duration,
    /// Workloads waiting for their source's outage to end.
    in_outage: usize,
    /// When all were first served: how many served their restored last plan.
    restored: usize,
    /// When all were first served: how many served the reactive target while warming up.
    warming: usize,
}

/// Polls `/readyz?verbose` until every workload is served, then until every one is planned from its own model,
/// printing progress every few seconds.
fn wait_planned(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    readyz: &str,
    args: &Args,
    server: &Guard,
    started: Instant,
    log: &Path,
) -> anyhow::Result<Startup> {
    let pid = server.0.id();
    let restored_note = format!("({RESTORED_NOTE})");
    let warming_note = format!("({WARMING_NOTE})");
    let mut last_print = Instant::now();
    let mut first_served: Option<(Duration, usize, usize)> = None;
    loop {
        let text = rt
            .block_on(async { http.get(readyz).send().await?.text().await })
            .unwrap_or_default();
        let served = text.lines().filter(|l| l.starts_with("[+]workload ")).count();
        let restored = text.lines().filter(|l| l.ends_with(&restored_note)).count();
        let warming = restored + text.lines().filter(|l| l.ends_with(&warming_note)).count();
        // The generator drops 5–20 slots now and then (an outage of its scrape); a workload whose newest sample is
        // older than its maxDataAge is rightly not planned from it until samples return. Those are the source's
        // wait, not prescale's: counted apart.
        let outage = text
            .lines()
            .filter(|l| l.starts_with("[-]workload ") && STALE.iter().any(|s| l.ends_with(s)))
            .count();
        // Why the first workload still waiting (on prescale) is not served, for the progress line.
        let waiting = text
            .lines()
            .find(|l| l.starts_with("[-]") && !STALE.iter().any(|s| l.ends_with(s)))
            .unwrap_or("");
        if served + outage >= args.workloads && first_served.is_none() {
            first_served = Some((started.elapsed(), restored, warming - restored));
            println!(
                "all {} served after {:.1} s ({restored} restored with their last plan, {} warming up: the reactive \
                 target until their first model is in)",
                args.workloads,
                started.elapsed().as_secs_f64(),
                warming - restored
            );
        }
        if served + outage >= args.workloads && warming == 0 {
            let (served_after, restored, warming) = first_served.unwrap_or((started.elapsed(), 0, 0));
            return Ok(Startup {
                served_after,
                planned_after: started.elapsed(),
                in_outage: outage,
                restored,
                warming,
            });
        }
        if started.elapsed() > Duration::from_secs(args.ready_timeout) {
            bail!(
                "{served} of {} workloads planned after {} s (--ready-timeout); log: {}",
                args.workloads,
                args.ready_timeout,
                tail(log)
            );
        }
        if let Some(status) = server.exited() {
            bail!("prescale exited ({status}): {}", tail(log));
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            println!(
                "  {:>6.0} s  served {served:>6} / {}, {warming:>6} of them warming up ({restored} restored)  \
                 ({outage} in a source outage)  rss {:.0} MiB  {waiting}",
                started.elapsed().as_secs_f64(),
                args.workloads,
                rss_kib(pid)? as f64 / 1024.0
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `--restart`: waits until every workload has saved its state, stops the server (SIGTERM, as a rollout does),
/// starts it again on the same state directory and measures the second start.
#[allow(clippy::too_many_arguments)]
fn restart(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    readyz: &str,
    args: &Args,
    server: &mut Guard,
    count: &dyn Fn() -> usize,
    launch: &dyn Fn(&str) -> anyhow::Result<Guard>,
    dir: &Path,
) -> anyhow::Result<Startup> {
    let deadline = Instant::now() + Duration::from_secs(120);
    // A workload in a source outage saves too (it has a model); allow for one that never fitted.
    while count() + args.workloads / 100 < args.workloads {
        if Instant::now() > deadline {
            bail!("{} of {} states saved after 120 s", count(), args.workloads);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("\n{} states saved; restarting", count());
    let _ = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status();
    let _ = server.0.wait();
    let started = Instant::now();
    *server = launch("prescale-restart.log")?;
    wait_planned(
        rt,
        http,
        readyz,
        args,
        server,
        started,
        &dir.join("prescale-restart.log"),
    )
}

/// States saved as files under `states`.
fn saved_in(states: &Path) -> usize {
    std::fs::read_dir(states)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|ns| std::fs::read_dir(ns.path()).into_iter().flatten().flatten())
        .filter(|f| f.path().extension().is_some_and(|e| e == "json"))
        .count()
}

/// States saved in the ConfigMaps `prescale-state-<k>` of the stand-in (the default 64 shards).
fn saved_in_configmaps(cluster: &ApiServer) -> usize {
    (0..prescale::k8s::states::DEFAULT_SHARDS)
        .filter_map(|k| cluster.get(Kind::ConfigMap, "prescale", &format!("prescale-state-{k}")))
        .map(|cm| cm["binaryData"].as_object().map_or(0, |m| m.len()))
        .sum()
}

/// How `/readyz?verbose` ends the line of a workload whose newest sample is older than its maxDataAge: before its
/// first plan, and with a plan that is no longer served.
const STALE: [&str; 2] = [
    "the demand query returns only old samples",
    "(the source stopped reporting)",
];

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Latencies of one fixed-rate run.
struct Stats {
    /// Of every answered request, 2xx or not.
    latencies: Vec<Duration>,
    sent: u64,
    /// Answers that were not 2xx, by status (`transport` for no answer at all).
    errors: BTreeMap<String, u64>,
    elapsed: Duration,
}

impl Stats {
    /// The answers that were not 2xx, by status: `0`, or e.g. `350 (503: 350)`.
    fn failures(&self) -> String {
        let total: u64 = self.errors.values().sum();
        if total == 0 {
            return "0".into();
        }
        let by: Vec<String> = self.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("{total} ({})", by.join(", "))
    }

    fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::MAX;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i]
    }
}

/// Sends GETs to `urls` (round robin) at `rate` per second for `length` over `connections` keep-alive connections,
/// open loop (as wrk2 does): request `k` is due at `k / rate`; whichever connection is free takes the next due request
/// and its latency counts from when it was due, so a slow server shows its queue instead of slowing the schedule.
async fn fixed_rate(urls: &[String], rate: u64, length: Duration, connections: usize) -> anyhow::Result<Stats> {
    let urls: Arc<Vec<String>> = Arc::new(urls.to_vec());
    let total = rate * length.as_secs();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::with_capacity(connections);
    // Each worker owns one client holding one connection, opened (and warmed) before the clock starts.
    let mut clients = Vec::with_capacity(connections);
    for i in 0..connections {
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .pool_max_idle_per_host(1)
            .http1_only()
            .timeout(Duration::from_secs(10))
            .build()?;
        let r = client
            .get(&urls[i % urls.len()])
            .send()
            .await
            .context("warming a connection")?;
        if !r.status().is_success() {
            bail!("{} answered {}", r.url(), r.status());
        }
        r.bytes().await?;
        clients.push(client);
    }
    let start = tokio::time::Instant::now();
    for client in clients {
        let (urls, next) = (urls.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), BTreeMap::<String, u64>::new());
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if k >= total {
                    break;
                }
                let due = start + Duration::from_secs_f64(k as f64 / rate as f64);
                tokio::time::sleep_until(due).await;
                let failure = match client.get(&urls[k as usize % urls.len()]).send().await {
                    Ok(r) => {
                        let status = r.status();
                        match r.bytes().await {
                            Ok(_) => {
                                latencies.push(due.elapsed());
                                (!status.is_success()).then(|| status.as_u16().to_string())
                            }
                            Err(_) => Some("transport".to_owned()),
                        }
                    }
                    Err(_) => Some("transport".to_owned()),
                };
                if let Some(key) = failure {
                    *errors.entry(key).or_insert(0) += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::with_capacity(total as usize);
    let mut errors = BTreeMap::new();
    for worker in workers {
        let (l, e) = worker.await?;
        latencies.extend(l);
        for (k, v) in e {
            *errors.entry(k).or_insert(0) += v;
        }
    }
    latencies.sort();
    Ok(Stats {
        latencies,
        sent: total,
        errors,
        elapsed: start.elapsed(),
    })
}

/// `--serve-baseline ADDR`: a trivial axum handler behind prescale's own TLS listener code, until killed.
fn serve_baseline(addr: SocketAddr) -> anyhow::Result<()> {
    use prescale::apiserver::tls::{self, CertSource, ClientCas, TlsSettings};
    tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let router = axum::Router::new().fallback(|| async {
            axum::Json(BTreeMap::from([
                ("kind", "ExternalMetricValueList"),
                ("apiVersion", "external.metrics.k8s.io/v1beta1"),
            ]))
        });
        let settings = TlsSettings {
            certificate: CertSource::SelfSigned {
                names: vec!["127.0.0.1".into()],
            },
            reload_interval: Duration::from_secs(3600),
            client_cas: ClientCas::default(),
            http: Default::default(),
        };
        tls::serve(listener, router, settings, std::future::pending()).await?;
        anyhow::Ok(())
    })
}
