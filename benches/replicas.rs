//! The replicas harness: several `prescale serve` processes sharing N generated workloads through Lease membership
//! (`--shard-members`) on the in-memory kube-apiserver stand-in (tests/support/apiserver.rs: no real one can run
//! here), read from the HPAs' side while replicas are killed, restarted, cut off from the API and stopped.
//!
//! ```sh
//! cargo build --release
//! cargo bench --bench replicas -- --workloads 3000
//! ```
//!
//! Each replica reaches the stand-in through a door of its own (so one can be cut off), keeps states in the
//! stand-in's ConfigMaps, and pulls its peers' plans from their admin listeners. Every `--round` the harness reads
//! every workload's `prescale_replicas` from every replica in the Service (alive and ready), as an HPA would, and
//! checks:
//!
//! - **valid**: every read answers every workload with a finite value ≥ 0; the longest run of failed reads of one
//!   replica in the Service is reported, with the first errors;
//! - **agreeing within a cycle**: each read is compared with the freshest plan any replica served for the
//!   workload in the same round (the external metric's `timestamp` is when its owner published it); reads that
//!   differ are counted, and those more than one cycle behind the freshest;
//! - **no scale-down a plan did not ask for**: an HPA reading one replica in the Service each round, in turn,
//!   scales to the value's ceiling (target `AverageValue: 1`) and down only to the highest recommendation of its
//!   stabilization window (`--stabilization`, 300 s as the HPA's default); a scale-down is asked for by a plan when
//!   no freshest plan of that window wanted more. Scale-downs and unasked ones are counted per phase, and the first
//!   unasked ones are printed with the rounds whose plan they missed, as each replica answered them.
//!
//! Phases, `--phase` seconds each: calm; `r1` killed (SIGKILL: its Lease is left to expire); `r1` started again;
//! `r2` cut off from the API (its Lease expires, it goes on serving); `r2` back; `r0` stopped (SIGTERM: it
//! releases its Lease). It also reports each replica's memory and CPU, and its writes to the API per second.
//!
//! Flags: `--workloads N` (3000), `--replicas N` (3), `--binary PATH` (`target/release/prescale`), `--interval DUR`
//! (`10s`), `--history DUR` (`2d`), `--step DUR` (`5m`), `--lease SECONDS` (6), `--phase SECONDS` (60), `--round
//! MILLISECONDS` (1000), `--stabilization SECONDS` (300). The replicas' logs stay in the directory printed at the
//! end.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

#[path = "../tests/support/apiserver.rs"]
mod apiserver;
mod harness;
use apiserver::ApiServer;
use harness::{cpu_seconds, free_port, rss_kib, tail, Guard, NAMESPACES};

#[derive(Debug, Clone)]
struct Args {
    workloads: usize,
    replicas: usize,
    binary: PathBuf,
    interval: String,
    history: String,
    step: String,
    lease: u64,
    phase: u64,
    round: u64,
    stabilization: u64,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut args = Self {
            workloads: 3000,
            replicas: 3,
            binary: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/prescale"),
            interval: "10s".into(),
            history: "2d".into(),
            step: "5m".into(),
            lease: 6,
            phase: 60,
            round: 1000,
            stabilization: 300,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            if flag == "--bench" {
                continue;
            }
            let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--workloads" => args.workloads = value()?.parse().context("--workloads: a whole number")?,
                "--replicas" => args.replicas = value()?.parse().context("--replicas: a whole number")?,
                "--binary" => args.binary = PathBuf::from(value()?),
                "--interval" => args.interval = value()?,
                "--history" => args.history = value()?,
                "--step" => args.step = value()?,
                "--lease" => args.lease = value()?.parse().context("--lease: whole seconds")?,
                "--phase" => args.phase = value()?.parse().context("--phase: seconds")?,
                "--round" => args.round = value()?.parse().context("--round: milliseconds")?,
                "--stabilization" => args.stabilization = value()?.parse().context("--stabilization: seconds")?,
                other => bail!("unknown flag {other}: see the module documentation of benches/replicas.rs"),
            }
        }
        if args.workloads == 0 || args.replicas < 3 {
            bail!("--workloads must be at least 1 and --replicas at least 3 (the phases kill r1 and cut r2 off)");
        }
        Ok(args)
    }
}

/// One replica process and where it listens.
struct Replica {
    name: String,
    api: u16,
    admin: u16,
    kubeconfig: PathBuf,
    log: PathBuf,
    process: Option<Guard>,
}

/// What one round read from one replica: every workload's value and its timestamp (when its plan was published,
/// whole seconds), or why the read failed.
type Read = Result<BTreeMap<String, (f64, i64)>, String>;

/// One round: the phase, and per replica in the Service what it answered (`None`: not in the Service).
struct Round {
    at: f64,
    /// Unix seconds when the round's reads were back.
    wall: i64,
    phase: usize,
    reads: Vec<Option<Read>>,
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
    // Kept after the run: the replicas' logs are read afterwards.
    let dir = tempfile::tempdir()?.keep();
    let config = harness::write_workloads(
        dir.as_path(),
        &harness::Workloads {
            count: args.workloads,
            interval: &args.interval,
            step: &args.step,
            history: &args.history,
            refit_interval: "1h",
            replay: "0s",
            // The generator drops up to 20 slots now and then; a workload refused for old data would fail the
            // whole namespace's list, which this harness reads.
            max_data_age: Some("2h"),
        },
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let cluster = rt.block_on(ApiServer::start());
    let mut replicas = Vec::new();
    for i in 0..args.replicas {
        let name = format!("r{i}");
        let url = rt.block_on(cluster.door_url(&name));
        let kubeconfig = dir.as_path().join(format!("{name}.kubeconfig"));
        harness::write_kubeconfig(&kubeconfig, &url)?;
        replicas.push(Replica {
            log: dir.as_path().join(format!("{name}.log")),
            name,
            api: free_port()?,
            admin: free_port()?,
            kubeconfig,
            process: None,
        });
    }
    println!(
        "replicas harness: {} replicas, {} workloads, history {} at {}, interval {}, member Lease {} s, phases of {} s",
        args.replicas, args.workloads, args.history, args.step, args.interval, args.lease, args.phase
    );
    let launch = |r: &Replica| -> anyhow::Result<Guard> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&r.log)?;
        let child = Command::new(&args.binary)
            .args(["--log", "info", "serve", "--config"])
            .arg(&config)
            .args(["--api-addr", &format!("127.0.0.1:{}", r.api)])
            .args(["--admin-addr", &format!("127.0.0.1:{}", r.admin)])
            .args(["--insecure-no-auth", "--authentication-skip-lookup"])
            .args(["--shard-members", "prescale-member", "--leader-elect-identity", &r.name])
            .args(["--leader-elect-lease-duration", &format!("{}s", args.lease)])
            .args(["--peer-address", &format!("127.0.0.1:{}", r.admin)])
            .args(["--state-configmaps", "prescale-state", "--state-save-interval", "20s"])
            .env("KUBECONFIG", &r.kubeconfig)
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .env_remove("POD_IP")
            .env_remove("PRESCALE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", args.binary.display()))?;
        Ok(Guard(child))
    };
    let started = Instant::now();
    for r in &mut replicas {
        r.process = Some(launch(r)?);
    }
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()?;
    // Ready: every replica's readiness (its own workloads' first cycles and every other workload's first plan
    // pulled from its owner).
    loop {
        let ready = rt.block_on(async {
            let checks = replicas.iter().map(|r| ready(&http, r));
            futures::future::join_all(checks).await
        });
        if ready.iter().all(|r| *r) {
            break;
        }
        for r in &replicas {
            if let Some(exited) = r.process.as_ref().and_then(Guard::exited) {
                bail!("{} exited ({exited}): {}", r.name, tail(&r.log));
            }
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("not every replica is ready after 900 s: {ready:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "all {} replicas ready after {:.1} s",
        args.replicas,
        started.elapsed().as_secs_f64()
    );

    let phases = [
        "calm",
        "r1 killed (SIGKILL)",
        "r1 started again",
        "r2 cut off from the API",
        "r2 reaches the API again",
        "r0 stopped (SIGTERM)",
    ];
    let phase = Arc::new(Mutex::new(0usize));
    let rounds = Arc::new(Mutex::new(Vec::<Round>::new()));
    let in_service: Arc<Mutex<Vec<bool>>> = Arc::new(Mutex::new(vec![true; args.replicas]));
    let observer = {
        let (phase, rounds, in_service, http) = (phase.clone(), rounds.clone(), in_service.clone(), http.clone());
        let targets: Vec<(u16, u16)> = replicas.iter().map(|r| (r.api, r.admin)).collect();
        let every = Duration::from_millis(args.round);
        let t0 = Instant::now();
        rt.spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticker.tick().await;
                let alive = in_service.lock().unwrap().clone();
                let reads = targets.iter().zip(alive).map(|(&(api, admin), alive)| {
                    let http = http.clone();
                    async move {
                        if !alive || !is_ready(&http, admin).await {
                            return None;
                        }
                        Some(read_all(&http, api).await)
                    }
                });
                let reads = futures::future::join_all(reads).await;
                let round = Round {
                    at: t0.elapsed().as_secs_f64(),
                    wall: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64),
                    phase: *phase.lock().unwrap(),
                    reads,
                };
                rounds.lock().unwrap().push(round);
            }
        })
    };
    let (cpu0, t0): (Vec<f64>, Instant) = (
        replicas
            .iter()
            .map(|r| r.process.as_ref().map_or(0.0, |p| cpu_seconds(p.0.id()).unwrap_or(0.0)))
            .collect(),
        Instant::now(),
    );
    let writes0: Vec<usize> = replicas.iter().map(|r| cluster.writes_through(&r.name)).collect();
    let hold = Duration::from_secs(args.phase);
    for (k, name) in phases.iter().enumerate() {
        *phase.lock().unwrap() = k;
        println!("[{:>6.1} s] phase {k}: {name}", started.elapsed().as_secs_f64());
        match k {
            1 => {
                in_service.lock().unwrap()[1] = false;
                if let Some(p) = &replicas[1].process {
                    p.signal("KILL");
                }
                replicas[1].process = None;
            }
            2 => {
                replicas[1].process = Some(launch(&replicas[1])?);
                in_service.lock().unwrap()[1] = true;
            }
            3 => cluster.cut_off("r2", true),
            4 => cluster.cut_off("r2", false),
            5 => {
                if let Some(p) = &replicas[0].process {
                    p.signal("TERM");
                }
                std::thread::sleep(Duration::from_secs(1));
                in_service.lock().unwrap()[0] = false;
            }
            _ => {}
        }
        if k == 0 {
            // Memory and CPU at the calm phase's end, every replica running.
            std::thread::sleep(hold);
            let elapsed = t0.elapsed().as_secs_f64();
            for (r, before) in replicas.iter().zip(&cpu0) {
                let pid = r.process.as_ref().map(|p| p.0.id()).context("a replica is running")?;
                println!(
                    "  {}: rss {:.1} MiB ({:.0} KiB per workload of all {}), {:.2} cores over the phase, {:.2} API \
                     writes/s",
                    r.name,
                    rss_kib(pid)? as f64 / 1024.0,
                    rss_kib(pid)? as f64 / args.workloads as f64,
                    args.workloads,
                    (cpu_seconds(pid)? - before) / elapsed,
                    (cluster.writes_through(&r.name) - writes0[replicas.iter().position(|x| x.name == r.name).unwrap()])
                        as f64
                        / elapsed
                );
            }
        } else {
            std::thread::sleep(hold);
        }
    }
    observer.abort();
    let rounds = std::mem::take(&mut *rounds.lock().unwrap());
    report(&args, &phases, &rounds, &replicas);
    Ok(())
}

async fn ready(http: &reqwest::Client, r: &Replica) -> bool {
    is_ready(http, r.admin).await
}

async fn is_ready(http: &reqwest::Client, admin: u16) -> bool {
    let url = format!("http://127.0.0.1:{admin}/readyz");
    matches!(
        tokio::time::timeout(Duration::from_secs(1), http.get(&url).send()).await,
        Ok(Ok(r)) if r.status().is_success()
    )
}

/// Every workload's `prescale_replicas` from the replica whose API listens on `api`: one list per namespace.
async fn read_all(http: &reqwest::Client, api: u16) -> Read {
    let mut values = BTreeMap::new();
    for ns in 0..NAMESPACES {
        let url =
            format!("https://127.0.0.1:{api}/apis/external.metrics.k8s.io/v1beta1/namespaces/ns{ns}/prescale_replicas");
        let response = http.get(&url).send().await.map_err(|e| format!("ns{ns}: {e}"))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.map_err(|e| format!("ns{ns}: {e}"))?;
        if !status.is_success() {
            return Err(format!("ns{ns}: {status}: {}", body["message"]));
        }
        for item in body["items"].as_array().into_iter().flatten() {
            let workload = item["metricLabels"]["workload"].as_str().unwrap_or_default();
            let value = parse_quantity(item["value"].as_str().unwrap_or_default())
                .ok_or_else(|| format!("ns{ns}/{workload}: value {} is not a quantity", item["value"]))?;
            if !value.is_finite() || value < 0.0 {
                return Err(format!("ns{ns}/{workload}: value {value}"));
            }
            let published = item["timestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp())
                .ok_or_else(|| format!("ns{ns}/{workload}: timestamp {} is not RFC 3339", item["timestamp"]))?;
            values.insert(format!("ns{ns}/{workload}"), (value, published));
        }
    }
    Ok(values)
}

/// A Kubernetes quantity as the API serves ours: a decimal number, or milli-units (`1500m`).
fn parse_quantity(text: &str) -> Option<f64> {
    match text.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|v| v / 1000.0),
        None => text.parse().ok(),
    }
}

/// What the HPA of one workload read in one round: when (harness seconds), the phase, the ceiling of the value read
/// and of the freshest plan, and the round's index.
type HpaRead = (f64, usize, u64, u64, usize);

/// What one phase looked like from the HPAs' side.
#[derive(Default)]
struct PhaseReport {
    rounds: usize,
    reads: usize,
    failed: usize,
    incomplete: usize,
    longest_failing: f64,
    errors: std::collections::BTreeSet<String>,
    compared: usize,
    differing: usize,
    stale: usize,
    worst_lag: i64,
    scale_downs: usize,
    unasked: usize,
}

fn report(args: &Args, phases: &[&str], rounds: &[Round], replicas: &[Replica]) {
    let n = args.workloads;
    let cycle = harness_seconds(&args.interval);
    let mut per_phase: Vec<PhaseReport> = phases.iter().map(|_| PhaseReport::default()).collect();
    let mut failing_since: Vec<Option<f64>> = vec![None; replicas.len()];
    // Per workload: the HPA's reads (one replica in the Service in turn) and the freshest plan any replica served.
    let mut reads: BTreeMap<String, Vec<HpaRead>> = BTreeMap::new();
    for (i, round) in rounds.iter().enumerate() {
        let p = &mut per_phase[round.phase];
        p.rounds += 1;
        for (r, read) in round.reads.iter().enumerate() {
            match read {
                None => failing_since[r] = None,
                Some(Ok(values)) if values.len() == n => {
                    p.reads += 1;
                    failing_since[r] = None;
                }
                Some(other) => {
                    p.reads += 1;
                    match other {
                        Ok(v) => {
                            p.incomplete += 1;
                            if p.errors.len() < 3 {
                                p.errors
                                    .insert(format!("{}: {} of {n} workloads", replicas[r].name, v.len()));
                            }
                        }
                        Err(e) => {
                            p.failed += 1;
                            if p.errors.len() < 3 {
                                p.errors.insert(format!(
                                    "{}: {}",
                                    replicas[r].name,
                                    e.chars().take(160).collect::<String>()
                                ));
                            }
                        }
                    }
                    let since = *failing_since[r].get_or_insert(round.at);
                    p.longest_failing = p.longest_failing.max(round.at - since);
                }
            }
        }
        let answers: Vec<&BTreeMap<String, (f64, i64)>> = round.reads.iter().flatten().flatten().collect();
        if answers.is_empty() {
            continue;
        }
        let mut keys: Vec<&String> = answers.iter().flat_map(|a| a.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let values: Vec<(f64, i64)> = answers.iter().filter_map(|a| a.get(key).copied()).collect();
            let freshest = values.iter().copied().max_by_key(|(_, t)| *t).expect("one at least");
            for (v, t) in &values {
                p.compared += 1;
                if (v - freshest.0).abs() > 1e-9 {
                    p.differing += 1;
                    let lag = freshest.1 - t;
                    p.worst_lag = p.worst_lag.max(lag);
                    if lag > cycle + 1 {
                        p.stale += 1;
                    }
                }
            }
            let pick = answers[i % answers.len()].get(key).map_or(freshest.0, |(v, _)| *v);
            reads.entry(key.clone()).or_default().push((
                round.at,
                round.phase,
                pick.ceil() as u64,
                freshest.0.ceil() as u64,
                i,
            ));
        }
    }
    // The HPA: desired replicas = the value's ceiling (target AverageValue 1), scaled down only to the highest
    // recommendation of the stabilization window. A scale-down is asked for by a plan when no fresh plan of the
    // window wanted more.
    let window = args.stabilization as f64;
    let mut examples = Vec::new();
    for (key, series) in &reads {
        let mut previous: Option<u64> = None;
        for (j, &(at, phase, ..)) in series.iter().enumerate() {
            let in_window = || series[..=j].iter().rev().take_while(|(t, ..)| *t > at - window);
            let (hpa, asked) = in_window().fold((0, 0), |(h, a), &(_, _, read, fresh, _)| (h.max(read), a.max(fresh)));
            if let Some(before) = previous {
                if hpa < before {
                    per_phase[phase].scale_downs += 1;
                    if hpa < asked {
                        per_phase[phase].unasked += 1;
                        // The rounds whose freshest plan wanted more than every read of the window, as each
                        // replica answered them: value, and seconds between its plan and the round.
                        let missed: Vec<String> = in_window()
                            .filter(|&&(_, _, _, fresh, _)| fresh > hpa)
                            .map(|&(t, p, read, fresh, i)| {
                                let answers: Vec<String> = rounds[i]
                                    .reads
                                    .iter()
                                    .enumerate()
                                    .map(|(r, read)| match read {
                                        Some(Ok(values)) => values.get(key).map_or(format!("r{r}: -"), |(v, ts)| {
                                            format!("r{r}: {v:.3} {}s old", rounds[i].wall - ts)
                                        }),
                                        Some(Err(_)) => format!("r{r}: failed"),
                                        None => format!("r{r}: out"),
                                    })
                                    .collect();
                                format!(
                                    "    {t:.0} s ({}) read {read} fresh {fresh}: {}",
                                    phases[p],
                                    answers.join(", ")
                                )
                            })
                            .collect();
                        examples.push(format!(
                            "{key} at {at:.0} s: {before} -> {hpa}, a plan asked {asked}\n{}",
                            missed.into_iter().rev().take(6).collect::<Vec<_>>().join("\n")
                        ));
                    }
                }
            }
            previous = Some(hpa);
        }
    }
    println!(
        "\n| phase | rounds | reads | failed (incomplete) | longest failing run of a replica in the Service | \
         reads differing from the freshest plan | of them more than a cycle ({cycle} s) behind | worst lag | HPA \
         scale-downs ({} s window) | not asked for by a plan |",
        args.stabilization
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, p) in phases.iter().zip(&per_phase) {
        println!(
            "| {name} | {} | {} | {} ({}) | {:.1} s | {} of {} ({:.2}%) | {} | {} s | {} | {} |",
            p.rounds,
            p.reads,
            p.failed + p.incomplete,
            p.incomplete,
            p.longest_failing,
            p.differing,
            p.compared,
            100.0 * p.differing as f64 / p.compared.max(1) as f64,
            p.stale,
            p.worst_lag,
            p.scale_downs,
            p.unasked
        );
    }
    for (name, p) in phases.iter().zip(&per_phase) {
        for e in &p.errors {
            println!("{name}: {e}");
        }
    }
    if !examples.is_empty() {
        println!(
            "\nScale-downs not asked for by a plan ({} in all; the first 20, the missed rounds latest first):",
            examples.len()
        );
        for e in examples.iter().take(20) {
            println!("{e}");
        }
    }
    for r in replicas {
        let log = std::fs::read_to_string(&r.log).unwrap_or_default();
        println!(
            "{}: {} 'workloads moved' lines, {} warnings, {} errors; log {}",
            r.name,
            log.matches("workloads moved").count(),
            log.matches(" WARN ").count(),
            log.matches(" ERROR ").count(),
            r.log.display()
        );
    }
}

/// Whole seconds of a duration flag such as `10s` or `1m`.
fn harness_seconds(text: &str) -> i64 {
    prescale::duration::parse(text).map_or(30, |d| d.num_seconds())
}
