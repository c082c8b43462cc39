//! The composition root: the only place that builds clients, listeners and tasks, and where process-wide settings
//! (the TLS crypto provider) are made, once, by [`init`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::apiserver::api::{self, ApiState};
use crate::apiserver::http::{self, HttpSettings};
use crate::apiserver::{auth, keda, tls};
use crate::backtest::publish::{ConfigMapRef, PublishedBacktests};
use crate::clock::Clock;
use crate::config::{self, Config, DemandSource, WorkloadConfig};
use crate::control::policy::Policy;
use crate::forecast::Seasonality;
use crate::history::prometheus::{PromQuery, PrometheusClient, PrometheusSettings};
use crate::history::synthetic::{Generator, Profile};
use crate::history::trace::{self, Replay};
use crate::history::History;
use crate::k8s::{controller, leader, members};
use crate::peers;
use crate::pipeline::{self, Workload};
use crate::sre::admin::{self, AdminState};
use crate::sre::telemetry;
use crate::store::{PlanStore, WorkloadId};

/// Overrides of what the servers listen on and serve, from the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ListenArgs {
    /// Address of the external metrics API (overrides the config's apiAddr).
    #[arg(long, env = "PRESCALE_API_ADDR")]
    pub api_addr: Option<SocketAddr>,
    /// Address of the admin/SRE HTTP server (overrides the config's adminAddr).
    #[arg(long, env = "PRESCALE_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Address of the KEDA external scaler (gRPC). `serve`: off unless given, TLS; `demo`: plain gRPC, on an
    /// ephemeral loopback port unless given.
    #[arg(long, env = "PRESCALE_KEDA_ADDR")]
    pub keda_addr: Option<SocketAddr>,
    /// Export every per-workload series on /metrics (forecast levels, quality scores, cost ratios, a fit-duration
    /// histogram per workload, nightly backtest scores: about 50 series a workload), not only the 5 (9 at most)
    /// that alerts and the dashboard use (turns on the config's metricsDetail).
    #[arg(long, env = "PRESCALE_METRICS_DETAIL")]
    pub metrics_detail: bool,
    /// Keep what each workload learned (SLO record, quality gate, last plan) in this directory, one small JSON file
    /// a workload, saved every few minutes and adopted at start: a restarted process serves its last plans and its
    /// warm SLO choices at once instead of replaying history. Use a volume that outlives the container.
    #[arg(long, env = "PRESCALE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Keep what each workload learned in ConfigMaps `PREFIX-0` … `PREFIX-<N-1>` (N = --state-shards) of
    /// NAMESPACE (default: the pod's own), where every replica reads them and they outlive any pod: one gzipped key
    /// a workload, each ConfigMap written at most once per --state-save-interval. Needs get, create and update on
    /// configmaps there (deploy/base/state-rbac.yaml). Not with --state-dir.
    #[arg(
        long,
        env = "PRESCALE_STATE_CONFIGMAPS",
        value_name = "[NAMESPACE/]PREFIX",
        conflicts_with = "state_dir"
    )]
    pub state_configmaps: Option<crate::k8s::states::StateConfigMaps>,
    /// How many ConfigMaps --state-configmaps spreads the states over (1 to 4096): each holds up to 1 MiB, ~250
    /// workloads. Changing it starts most workloads afresh once.
    #[arg(long, env = "PRESCALE_STATE_SHARDS", default_value_t = crate::k8s::states::DEFAULT_SHARDS,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub state_shards: u32,
    /// How often each workload saves its state (1s to 1h); with --state-configmaps, also how often each ConfigMap
    /// is written at most.
    #[arg(long, env = "PRESCALE_STATE_SAVE_INTERVAL", value_name = "DURATION", default_value = "5m", value_parser = save_interval)]
    pub state_save_interval: TimeDelta,
}

/// A save interval: from 1 s to an hour.
fn save_interval(s: &str) -> Result<TimeDelta, String> {
    let d = crate::duration::parse(s).map_err(|e| format!("{e}; write e.g. 5m"))?;
    if d < TimeDelta::seconds(1) || d > TimeDelta::hours(1) {
        return Err(format!("{s} is outside 1s to 1h; write e.g. 5m"));
    }
    Ok(d)
}

/// How the external metrics API is secured.
#[derive(Debug, Clone, clap::Args)]
pub struct SecurityArgs {
    #[command(flatten)]
    tls: tls::TlsArgs,
    #[command(flatten)]
    auth: auth::AuthArgs,
    #[command(flatten)]
    keda: keda::KedaTlsArgs,
    /// Serve the API over TLS without authentication or authorization (local trials only; never in a cluster).
    #[arg(long, env = "PRESCALE_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
    /// Serve the nightly backtests published in this ConfigMap (NAMESPACE/NAME) at /api/v1/backtests and as metrics.
    #[arg(long, env = "PRESCALE_BACKTEST_CONFIGMAP")]
    backtest_configmap: Option<ConfigMapRef>,
}

/// The PredictiveAutoscaler controller (`serve` only).
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Also plan for every PredictiveAutoscaler object (prescale.dev/v1alpha1): watch them, report their status,
    /// and manage their HPAs. Needs the controller's RBAC (deploy/base/controller-rbac.yaml).
    #[arg(long, env = "PRESCALE_WATCH_OBJECTS")]
    pub watch_objects: bool,
    /// Watch this namespace's objects only (default: every namespace).
    #[arg(long, env = "PRESCALE_WATCH_NAMESPACE", requires = "watch_objects")]
    pub watch_namespace: Option<String>,
    /// With --watch-objects: of several replicas, only the holder of a coordination.k8s.io Lease writes status and
    /// managed HPAs (every replica still plans and serves every object). `--leader-elect=false` when one replica
    /// runs.
    #[arg(
        long,
        env = "PRESCALE_LEADER_ELECT",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub leader_elect: bool,
    /// The Lease's name.
    #[arg(long, env = "PRESCALE_LEADER_ELECT_LEASE", default_value = leader::DEFAULT_LEASE_NAME, value_parser = dns_subdomain)]
    pub leader_elect_lease: String,
    /// The Lease's namespace: the pod's (POD_NAMESPACE, from the downward API); default: the Kubernetes client's
    /// namespace (in a pod, its ServiceAccount's).
    #[arg(long, env = "POD_NAMESPACE", value_parser = dns_label)]
    pub leader_elect_namespace: Option<String>,
    /// This replica's holder identity in the Lease, unique among the replicas: the pod's name (POD_NAME, from the
    /// downward API); default: the host name (a pod's name).
    #[arg(long, env = "POD_NAME", value_parser = identity)]
    pub leader_elect_identity: Option<String>,
    /// How long the Lease lasts unrenewed: the longest status and HPA writes pause when the leader dies (whole
    /// seconds, 2s to 5m).
    #[arg(long, env = "PRESCALE_LEADER_ELECT_LEASE_DURATION", default_value = "15s", value_parser = lease_duration)]
    pub leader_elect_lease_duration: std::time::Duration,
    /// Shard the workloads among the replicas: each holds the Lease `<PREFIX>-<identity>` in the pod's namespace
    /// (renewed every third of --leader-elect-lease-duration), each workload is planned by one live replica
    /// (rendezvous hashing), and every replica serves every workload from its owner's plan, pulled from the
    /// owner's admin listener every cycle (docs/deploy.md, "Sharded replicas"). Needs get, list, create, update
    /// and delete on leases in that namespace. With --watch-objects, each replica writes the status and managed
    /// HPA of the objects it owns, with no leader election.
    #[arg(long, env = "PRESCALE_SHARD_MEMBERS", value_parser = dns_subdomain)]
    pub shard_members: Option<String>,
    /// With --shard-members: HOST:PORT where peers reach this replica's admin listener; default: the pod's IP
    /// (POD_IP, from the downward API) and the admin port.
    #[arg(long, env = "PRESCALE_PEER_ADDRESS", requires = "shard_members")]
    pub peer_address: Option<String>,
}

/// A DNS subdomain, as Kubernetes object names are.
fn dns_subdomain(s: &str) -> Result<String, String> {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if s.len() <= 253 && s.split('.').all(label) {
        Ok(s.to_owned())
    } else {
        Err("must be a DNS subdomain: lowercase letters, digits, '-' and '.', e.g. prescale-controller".into())
    }
}

/// A DNS label, as namespace names are.
fn dns_label(s: &str) -> Result<String, String> {
    match dns_subdomain(s) {
        Ok(s) if !s.contains('.') => Ok(s),
        _ => Err("must be a namespace name: lowercase letters, digits and '-', e.g. prescale".into()),
    }
}

/// A holder identity: any text but none, no longer than a Lease accepts.
fn identity(s: &str) -> Result<String, String> {
    if s.trim().is_empty() || s.len() > 253 {
        Err("must be this replica's unique name (the pod's), 1 to 253 characters".into())
    } else {
        Ok(s.to_owned())
    }
}

/// A Lease duration: whole seconds from 2s to 5m (the leader renews every third of it).
fn lease_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::duration::parse(s).map_err(|e| format!("{e}; write e.g. 15s"))?;
    let ms = d.num_milliseconds();
    if ms % 1000 != 0 || !(2..=300).contains(&(ms / 1000)) {
        return Err(format!(
            "{s} must be whole seconds from 2s to 5m (leaseDurationSeconds is a whole number), e.g. 15s"
        ));
    }
    Ok(std::time::Duration::from_secs((ms / 1000) as u64))
}

/// This host's name (in a pod, the pod's), for a holder identity when POD_NAME is not set.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Process-wide setup every command needs, done once before anything else: ring as rustls's crypto provider (the
/// HTTP and Kubernetes clients are built without a default one).
pub fn init() {
    tls::install_crypto_provider();
}

/// The clients a backtest of configured workloads uses, built here like every other client.
pub struct Connector;

impl crate::backtest::Connect for Connector {
    fn prometheus(&self, settings: &PrometheusSettings) -> anyhow::Result<PrometheusClient> {
        PrometheusClient::new(settings).context("building the Prometheus client")
    }

    fn kubernetes(&self) -> futures::future::BoxFuture<'_, anyhow::Result<kube::Client>> {
        Box::pin(async { Ok(kube::Client::try_default().await?) })
    }
}

/// `prescale backtest`.
pub fn backtest(args: crate::backtest::BacktestArgs) -> anyhow::Result<()> {
    crate::backtest::run_cli(args, &Connector)
}

/// `prescale explain`: asks a running server's admin endpoint.
pub async fn explain(args: crate::sre::explain::ExplainArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    crate::sre::explain::run_cli(args, &client).await
}

/// `prescale serve`: run from a config file.
pub async fn serve(
    config_path: &Path,
    listen: ListenArgs,
    security: SecurityArgs,
    objects: WatchArgs,
) -> anyhow::Result<()> {
    let mut config = config::load(config_path)?;
    anyhow::ensure!(
        objects.watch_objects || !config.workloads.is_empty(),
        "{}: workloads: none listed, so there is nothing to plan: list at least one workload (see the README's \
         config reference), or pass --watch-objects to plan for PredictiveAutoscaler objects",
        config_path.display()
    );
    apply_listen(&mut config, &listen);
    let now = Utc::now();
    let prometheus = match &config.prometheus {
        Some(settings) => Some(PrometheusClient::new(settings).context("building the Prometheus client")?),
        None => None,
    };
    let workloads = config
        .workloads
        .iter()
        .map(|w| {
            Ok(Workload {
                config: w.clone(),
                history: history_for(w, prometheus.as_ref(), now)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let SecurityArgs {
        tls: tls_args,
        auth: auth_args,
        keda: keda_tls,
        insecure_no_auth,
        backtest_configmap,
    } = security;
    // The KEDA listener's certificate and client CA are checked before anything listens, like the API's.
    let keda = match listen.keda_addr {
        Some(addr) => Some(KedaListener {
            addr,
            transport: keda_tls
                .into_transport(&tls_args)
                .context("the KEDA listener's TLS (--keda-tls-cert-file, --keda-client-ca-file) cannot be used")?,
        }),
        None => None,
    };
    let tls_key_path = tls_args.tls_key_file.clone();
    // Sharded replicas sign their plans with the serving key every replica shares: checked before anything else.
    let signing = match objects.shard_members {
        Some(_) => Some(match (&tls_key_path, insecure_no_auth) {
            (Some(key), _) => crate::peers::Signing::from_file(key).with_context(|| {
                format!(
                    "--tls-key-file {}: reading the key peers' plans are signed with",
                    key.display()
                )
            })?,
            (None, true) => crate::peers::Signing::None,
            (None, false) => anyhow::bail!(
                "--shard-members: peers' plans are signed with the serving key, which every replica must share: \
                 pass --tls-key-file (and --tls-cert-file) from one Secret mounted by every replica"
            ),
        }),
        None => None,
    };
    // The serving certificate is checked before anything listens: a pod whose API cannot come up must not start.
    if let (Some(cert), Some(key)) = (&tls_args.tls_cert_file, &tls_args.tls_key_file) {
        tls::load_certified_key(cert, key).with_context(|| {
            format!(
                "--tls-cert-file {} / --tls-key-file {}: the serving certificate cannot be used; give a PEM \
                 certificate chain and its private key",
                cert.display(),
                key.display()
            )
        })?;
    }
    let (secure, watch) = if insecure_no_auth {
        warn!(
            "--insecure-no-auth: the external metrics API answers anyone who can reach it; never use this in a cluster"
        );
        (
            ApiSecurity::Tls {
                settings: tls_args.into_settings(Default::default()),
                auth: None,
            },
            None,
        )
    } else {
        let client = kube::Client::try_default()
            .await
            .context("building the Kubernetes client for delegated authentication (or pass --insecure-no-auth)")?;
        let (auth, watch) = auth::from_args(&auth_args, client).await?;
        let settings = tls_args.into_settings(auth.client_cas());
        (
            ApiSecurity::Tls {
                settings,
                auth: Some(auth),
            },
            watch,
        )
    };
    let WatchArgs {
        watch_objects,
        watch_namespace,
        leader_elect,
        leader_elect_lease,
        leader_elect_namespace,
        leader_elect_identity,
        leader_elect_lease_duration,
        shard_members,
        peer_address,
    } = objects;
    let sharding = match shard_members.zip(signing) {
        Some((prefix, signing)) => {
            let client = kube::Client::try_default()
                .await
                .context("building the Kubernetes client for --shard-members")?;
            let identity = leader_elect_identity.clone().or_else(host_name).context(
                "--leader-elect-identity: this replica has no name to hold its member Lease as: set POD_NAME (the \
                 downward API's metadata.name) or --leader-elect-identity",
            )?;
            let namespace = leader_elect_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned());
            Some(ShardSetup {
                client,
                prefix,
                namespace,
                identity,
                address: peer_address,
                duration: leader_elect_lease_duration,
                signing,
            })
        }
        None => None,
    };
    let controller = if watch_objects {
        let client = kube::Client::try_default()
            .await
            .context("building the Kubernetes client for --watch-objects")?;
        // Sharded replicas each write the objects they own: no election.
        let election = if leader_elect && sharding.is_none() {
            let identity = leader_elect_identity.or_else(host_name).context(
                "--leader-elect-identity: this replica has no name to hold the Lease as: set POD_NAME (the \
                 downward API's metadata.name) or --leader-elect-identity, or pass --leader-elect=false when one \
                 replica runs",
            )?;
            Some(leader::Settings {
                name: leader_elect_lease,
                namespace: leader_elect_namespace.unwrap_or_else(|| client.default_namespace().to_owned()),
                identity,
                duration: leader_elect_lease_duration,
                failure_limit: controller::DEFAULT_FAILURE_LIMIT,
            })
        } else {
            None
        };
        Some(ControllerSetup {
            client,
            settings: controller::Settings {
                namespace: watch_namespace,
                election,
                ..Default::default()
            },
        })
    } else {
        None
    };
    let result = run(
        config,
        workloads,
        Clock::system(),
        secure,
        Extras {
            prometheus,
            backtest_configmap,
            keda,
            controller,
            states: state_store(&listen).await?,
            save_interval: listen.state_save_interval,
            sharding,
        },
    )
    .await;
    if let Some(w) = watch {
        w.abort();
    }
    result
}

/// Transport and access control of the API listener.
enum ApiSecurity {
    /// Plain HTTP, no authentication: the demo only.
    PlainHttp,
    /// TLS, with delegated authentication and authorization unless explicitly disabled.
    Tls {
        settings: tls::TlsSettings,
        auth: Option<auth::Auth>,
    },
}

/// `prescale demo`: the built-in generator (or recorded traces) with no Prometheus and no cluster.
pub async fn demo(traces: &[PathBuf], listen: ListenArgs) -> anyhow::Result<()> {
    let now = Utc::now();
    let mut workloads = Vec::new();
    if traces.is_empty() {
        for (profile, capacity, seed) in [
            (Profile::LlmChat, 10.0, 1),
            (Profile::WebFrontend, 25.0, 2),
            (Profile::Embeddings, 20.0, 3),
        ] {
            let generator = Generator::new(profile, seed);
            let step = generator.step;
            let config = demo_workload(
                profile.name(),
                DemandSource::Generator(generator.clone()),
                capacity,
                step,
            );
            workloads.push(Workload {
                config,
                history: Arc::new(generator),
            });
        }
    } else {
        for path in traces {
            let series = trace::load(path)?;
            let name = workload_name(path);
            let capacity = p99(series.points().map(|p| p.1).collect()) / 20.0;
            anyhow::ensure!(
                capacity > 0.0,
                "{}: the trace's p99 demand is zero; nothing to scale",
                path.display()
            );
            let step = series.step();
            let mut config = demo_workload(&name, DemandSource::Trace { path: path.clone() }, capacity, step);
            config.history = config.history.min(TimeDelta::days(14));
            let replay = Replay::at_warmup_end(series, path.clone(), now);
            workloads.push(Workload {
                config,
                history: Arc::new(replay),
            });
        }
    }
    let mut config = Config {
        api_addr: "127.0.0.1:8443".parse()?,
        admin_addr: "127.0.0.1:8080".parse()?,
        max_forecast_age: TimeDelta::minutes(5),
        interval: config::DEFAULT_INTERVAL,
        workloads: workloads.iter().map(|w| w.config.clone()).collect(),
        prometheus: None,
        metrics_detail: false,
    };
    apply_listen(&mut config, &listen);
    let keda = KedaListener {
        addr: listen.keda_addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
        transport: keda::Transport::Plain,
    };
    run(
        config,
        workloads,
        Clock::system(),
        ApiSecurity::PlainHttp,
        Extras {
            keda: Some(keda),
            states: state_store(&listen).await?,
            save_interval: listen.state_save_interval,
            ..Extras::default()
        },
    )
    .await
}

fn demo_workload(name: &str, demand: DemandSource, capacity: f64, step: TimeDelta) -> WorkloadConfig {
    let policy = Policy::new(capacity, 40);
    WorkloadConfig {
        id: WorkloadId {
            namespace: "default".into(),
            name: name.into(),
        },
        demand,
        unit: "requests/s".into(),
        max_data_age: crate::config::default_max_data_age(policy.lead, step),
        policy,
        seasonality: Seasonality::Auto,
        refit_interval: TimeDelta::hours(1),
        history: TimeDelta::days(14),
        serving: Default::default(),
        scale_target: None,
    }
}

/// A DNS-label workload name from a trace file name (`nasa_http_1995.csv` → `nasa-http-1995`).
fn workload_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("trace")
        .to_ascii_lowercase();
    let name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-');
    let name: String = name.chars().take(63).collect();
    if name.is_empty() {
        "trace".into()
    } else {
        name.trim_end_matches('-').to_string()
    }
}

fn p99(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    crate::series::percentile(&v, 0.99)
}

/// The state store `--state-dir` or `--state-configmaps` names, if any.
async fn state_store(listen: &ListenArgs) -> anyhow::Result<Option<StateSetup>> {
    if let Some(dir) = &listen.state_dir {
        return Ok(Some(StateSetup {
            store: Arc::new(crate::state::DirStore::new(dir.clone())),
            metrics: None,
        }));
    }
    let Some(target) = &listen.state_configmaps else {
        return Ok(None);
    };
    let client = kube::Client::try_default()
        .await
        .context("Kubernetes client for --state-configmaps")?;
    let namespace = target
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let store = crate::k8s::states::ConfigMapStore::start(
        client,
        &namespace,
        &target.prefix,
        listen.state_shards,
        listen.state_save_interval,
        Clock::system(),
    );
    Ok(Some(StateSetup {
        store: Arc::new(store.clone()),
        metrics: Some(store),
    }))
}

/// Where workload states are kept, and the store whose metrics join `/metrics`, if it has any.
struct StateSetup {
    store: Arc<dyn crate::state::StateStore>,
    metrics: Option<crate::k8s::states::ConfigMapStore>,
}

fn apply_listen(config: &mut Config, listen: &ListenArgs) {
    if let Some(a) = listen.api_addr {
        config.api_addr = a;
    }
    if let Some(a) = listen.admin_addr {
        config.admin_addr = a;
    }
    config.metrics_detail |= listen.metrics_detail;
}

/// The demand source of workload `w`: its generator, its trace replayed to end at `now`, or its PromQL query on
/// `prometheus`. The one construction of sources, for the workload file's workloads and the controller's objects.
pub fn history_for(
    w: &WorkloadConfig,
    prometheus: Option<&PrometheusClient>,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<Arc<dyn History>> {
    Ok(match &w.demand {
        DemandSource::Generator(g) => Arc::new(g.clone()),
        DemandSource::Trace { path } => {
            let series = trace::load(path).with_context(|| format!("workload {}", w.id))?;
            Arc::new(Replay::at_warmup_end(series, path.clone(), now))
        }
        DemandSource::Promql { query, step, combine } => {
            let client = prometheus.with_context(|| {
                format!(
                    "workload {}: PromQL sources need the `prometheus:` section of the config",
                    w.id
                )
            })?;
            Arc::new(
                PromQuery::new(client, query.clone(), *step)
                    .with_context(|| format!("workload {}", w.id))?
                    .combine(*combine),
            )
        }
    })
}

/// What `serve` adds to a run beyond the config itself.
#[derive(Default)]
struct Extras {
    /// The shared Prometheus client, whose query metrics join `/metrics`.
    prometheus: Option<PrometheusClient>,
    /// Where the scheduled backtests publish their results.
    backtest_configmap: Option<ConfigMapRef>,
    /// The KEDA external scaler's listener, when it is on.
    keda: Option<KedaListener>,
    /// The PredictiveAutoscaler controller, when it is on.
    controller: Option<ControllerSetup>,
    /// Where workload states are kept across restarts.
    states: Option<StateSetup>,
    /// How often each workload saves its state.
    save_interval: TimeDelta,
    /// Sharding among replicas, when it is on.
    sharding: Option<ShardSetup>,
}

/// How this replica joins the members that share the workloads.
struct ShardSetup {
    client: kube::Client,
    prefix: String,
    namespace: String,
    identity: String,
    /// Where peers reach the admin listener; `None`: POD_IP and the admin port.
    address: Option<String>,
    duration: std::time::Duration,
    signing: crate::peers::Signing,
}

impl ShardSetup {
    /// The address peers reach this replica at, given where the admin listener is bound.
    fn peer_address(&self, admin: SocketAddr) -> anyhow::Result<String> {
        if let Some(address) = &self.address {
            return Ok(address.clone());
        }
        if let Ok(ip) = std::env::var("POD_IP") {
            let ip: std::net::IpAddr = ip
                .trim()
                .parse()
                .with_context(|| format!("POD_IP `{ip}` is not an IP address; set it from status.podIP"))?;
            return Ok(SocketAddr::new(ip, admin.port()).to_string());
        }
        anyhow::ensure!(
            !admin.ip().is_unspecified(),
            "--shard-members: peers cannot reach this replica at {admin}: set POD_IP (the downward API's \
             status.podIP) or --peer-address HOST:PORT"
        );
        Ok(admin.to_string())
    }
}

/// The controller's client and settings.
struct ControllerSetup {
    client: kube::Client,
    settings: controller::Settings,
}

/// Where and how the KEDA external scaler listens.
struct KedaListener {
    addr: SocketAddr,
    transport: keda::Transport,
}

async fn run(
    config: Config,
    workloads: Vec<Workload>,
    clock: Clock,
    security: ApiSecurity,
    extras: Extras,
) -> anyhow::Result<()> {
    let store = Arc::new(PlanStore::new().with_max_forecast_age(config.max_forecast_age));
    let api_listener = TcpListener::bind(config.api_addr)
        .await
        .with_context(|| format!("binding the API to {}", config.api_addr))?;
    let admin_listener = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("binding the admin server to {}", config.admin_addr))?;
    let access = match &security {
        ApiSecurity::PlainHttp => ApiAccess::PlainHttp,
        ApiSecurity::Tls { auth: None, .. } => ApiAccess::TlsWithoutAuth,
        ApiSecurity::Tls { auth: Some(_), .. } => ApiAccess::TlsWithAuth,
    };
    let scheme = if access == ApiAccess::PlainHttp {
        "http"
    } else {
        "https"
    };
    let keda_listener = match extras.keda {
        Some(KedaListener { addr, transport }) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the KEDA external scaler to {addr}"))?;
            Some((listener, transport))
        }
        None => None,
    };
    let api_url = format!("{scheme}://{}", api_listener.local_addr()?);
    let admin_url = format!("http://{}", admin_listener.local_addr()?);
    let keda_banner = match &keda_listener {
        Some((listener, transport)) => Some(KedaBanner {
            addr: listener.local_addr()?.to_string(),
            tls: matches!(transport, keda::Transport::Tls { .. }),
        }),
        None => None,
    };
    let watched = extras.controller.as_ref().map(|c| match &c.settings.namespace {
        Some(ns) => format!("the PredictiveAutoscaler objects of namespace {ns}"),
        None => "the PredictiveAutoscaler objects of every namespace".to_owned(),
    });
    print_banner(
        &config,
        &api_url,
        &admin_url,
        access,
        keda_banner.as_ref(),
        watched.as_deref(),
    );

    let telemetry = telemetry::Registry::with_detail(
        store.clone(),
        clock.clone(),
        telemetry::Detail::full_if(config.metrics_detail),
    );
    if let Some(client) = &extras.prometheus {
        telemetry.register_with(|r| client.register_metrics(r));
    }
    let api_state = ApiState {
        store: store.clone(),
        clock: clock.clone(),
    };
    let api_router = api::router(api_state.clone());
    // Instrumentation goes outside the auth layer, so 401 and 403 answers are counted too.
    let api_metrics = telemetry.http("api");
    let admin_router = telemetry::instrument(
        admin::router(AdminState {
            store: store.clone(),
            clock: clock.clone(),
        }),
        telemetry.http("admin"),
    )
    .merge(telemetry.router());
    let mut background = Vec::new();
    let admin_router = match extras.backtest_configmap {
        Some(target) => {
            let client = kube::Client::try_default()
                .await
                .context("Kubernetes client for --backtest-configmap")?;
            let published = PublishedBacktests::new();
            let detail = telemetry.detail();
            telemetry.register_with(|r| published.register_metrics(r, detail));
            // Re-read every minute: the nightly job writes once a day, and the page should show it soon after.
            let poll = published.clone().poll(
                client,
                target.namespace,
                target.name,
                std::time::Duration::from_secs(60),
            );
            background.push(tokio::spawn(poll));
            admin_router.merge(published.router())
        }
        None => admin_router,
    };
    let states = extras.states.map(|setup| {
        info!(
            states = setup.store.describe(),
            "workload states are kept across restarts"
        );
        if let Some(store) = setup.metrics {
            telemetry.register_with(|r| store.register_metrics(r));
        }
        setup.store
    });
    let options = pipeline::Options {
        metrics: telemetry.pipeline(),
        states: states.clone(),
        save_interval: extras.save_interval,
    };
    let mut sharded = None;
    let mut pipelines = pipeline::Pipelines::new(store.clone(), clock.clone(), config.interval, options);
    let admin_router = match extras.sharding {
        Some(setup) => {
            let address = setup.peer_address(admin_listener.local_addr()?)?;
            let mut settings = members::Settings::new(&setup.prefix, &setup.namespace, &setup.identity, &address);
            settings.duration = setup.duration;
            let (members, membership) = members::members(setup.client.clone(), settings);
            telemetry.register_with(|r| membership.register_metrics(r));
            info!(
                lease = %format!("{}/{}-{}", setup.namespace, setup.prefix, setup.identity),
                peer_address = %address,
                "sharding the workloads among the replicas"
            );
            pipelines = pipelines.with_membership(membership.clone());
            let router = admin_router.merge(peers::router(peers::PeerState {
                store: store.clone(),
                membership: membership.clone(),
                signing: setup.signing.clone(),
            }));
            sharded = Some((members, membership, setup.signing));
            router
        }
        None => admin_router,
    };
    let pipelines = Arc::new(pipelines);
    let reserved = workloads.iter().map(|w| w.config.id.clone()).collect();
    for workload in workloads {
        pipelines.apply(workload).await;
    }
    let controller = extras.controller.map(|setup| {
        let prometheus = extras.prometheus.clone();
        let sources = clock.clone();
        let history: controller::HistoryFactory =
            Arc::new(move |w: &WorkloadConfig| history_for(w, prometheus.as_ref(), sources.now()));
        let controller = controller::Controller::new(
            setup.client,
            pipelines.clone(),
            store.clone(),
            clock.clone(),
            reserved,
            history,
            setup.settings,
        );
        let controller = match &sharded {
            Some((_, membership, _)) => controller.with_membership(membership.clone()),
            None => controller,
        };
        if let Some(leadership) = controller.leadership() {
            telemetry.register_with(|r| leadership.register_metrics(r));
        }
        tokio::spawn(controller.run())
    });
    // Sharded: the membership task (its end, but for a shutdown, ends the process), the workloads following the
    // members, and the pulls of the peers' plans.
    let mut sharding_tasks = Vec::new();
    let membership_task = match sharded {
        Some((members, membership, signing)) => {
            let wanted = Arc::downgrade(&pipelines);
            let wanted: Arc<dyn Fn(&WorkloadId) -> bool + Send + Sync> =
                Arc::new(move |id: &WorkloadId| wanted.upgrade().is_some_and(|p| p.wants(id)));
            let every = config.interval.to_std().unwrap_or(std::time::Duration::from_secs(30));
            let puller = peers::Puller::new(
                store.clone(),
                membership,
                signing,
                clock.clone(),
                wanted,
                (every / 2).min(std::time::Duration::from_secs(10)),
            )
            .context("building the HTTP client for peers' plans")?;
            telemetry.register_with(|r| puller.register_metrics(r));
            // Twice a cycle: a replica serves a peer's plan at most about a cycle after the peer published it.
            sharding_tasks.push(tokio::spawn(puller.run(every / 2)));
            sharding_tasks.push(tokio::spawn(pipelines.clone().follow()));
            let (release, released) = tokio::sync::watch::channel(false);
            let mut shutting_down = released.clone();
            let task = tokio::spawn(members.run(async move {
                let _ = shutting_down.wait_for(|s| *s).await;
            }));
            Some((task, release))
        }
        None => None,
    };

    // One shutdown signal for every server.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let keda_stopping = stopping.clone();
    tokio::spawn(async move {
        shutdown().await;
        let _ = stop.send(true);
    });
    let stopped = move || {
        let mut stopping = stopping.clone();
        async move {
            let _ = stopping.wait_for(|s| *s).await;
        }
    };
    let api_stopped = stopped();
    let admin_stopped = stopped();
    let keda = keda_listener.map(|(listener, transport)| {
        let state = keda::KedaState {
            api: api_state,
            stopping: keda_stopping,
        };
        let require_client_ca = matches!(
            &transport,
            keda::Transport::Tls {
                client_ca_file: Some(_),
                ..
            }
        );
        let router = keda::router(state, telemetry.grpc("keda"), require_client_ca);
        let stopped = stopped();
        tokio::spawn(async move {
            keda::serve(listener, router, transport, stopped)
                .await
                .map_err(anyhow::Error::from)
        })
    });
    let api = tokio::spawn(async move {
        match security {
            ApiSecurity::PlainHttp => http::serve_plain(
                api_listener,
                http::limits(telemetry::instrument(api_router, api_metrics)),
                HttpSettings::default(),
                api_stopped,
            )
            .await
            .map_err(anyhow::Error::from),
            ApiSecurity::Tls { settings, auth } => {
                let router = match auth {
                    Some(auth) => auth.layer(api_router),
                    None => api_router,
                };
                tls::serve(
                    api_listener,
                    telemetry::instrument(router, api_metrics),
                    settings,
                    api_stopped,
                )
                .await
                .map_err(anyhow::Error::from)
            }
        }
    });
    let admin = tokio::spawn(http::serve_plain(
        admin_listener,
        admin_router,
        HttpSettings::default(),
        admin_stopped,
    ));
    let servers = async move {
        let mut others = vec![api.abort_handle(), admin.abort_handle()];
        let servers: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>> = match keda {
            Some(keda) => {
                let two = [api.abort_handle(), admin.abort_handle()];
                others.push(keda.abort_handle());
                Box::pin(supervise_keda(supervise(api, admin), keda, two))
            }
            None => Box::pin(supervise(api, admin)),
        };
        match controller {
            Some(controller) => supervise_controller(servers, controller, others).await,
            None => servers.await,
        }
    };
    // Each server bounds its own drain (http::DRAIN_TIMEOUT).
    let result = match membership_task {
        Some((task, release)) => {
            let result = supervise_membership(servers, task, &release, stopped()).await;
            for t in sharding_tasks {
                t.abort();
            }
            result
        }
        None => servers.await,
    };
    drop(pipelines);
    if let Some(states) = states {
        // What was learned since the last write is written before the process ends, within the pod's grace period.
        match tokio::time::timeout(std::time::Duration::from_secs(10), states.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, "writing workload states at shutdown failed"),
            Err(_) => warn!("writing workload states at shutdown took over 10 s; the rest are not written"),
        }
    }
    for t in background {
        t.abort();
    }
    result?;
    info!("stopped");
    Ok(())
}

/// Runs the API and admin servers until both have stopped, and ends the process's serving as soon as either stops
/// on its own: a pod must never look healthy (the admin server answering `/readyz`) while its API listener is dead,
/// or keep an API up that nobody can observe. The first to end with an error (or without a shutdown) ends the other.
async fn supervise(
    mut api: tokio::task::JoinHandle<anyhow::Result<()>>,
    mut admin: tokio::task::JoinHandle<std::io::Result<()>>,
) -> anyhow::Result<()> {
    let admin_result = |r: Result<std::io::Result<()>, tokio::task::JoinError>| -> anyhow::Result<()> {
        r.context("the admin server panicked")?
            .context("the admin server stopped")
    };
    let api_result = |r: Result<anyhow::Result<()>, tokio::task::JoinError>| -> anyhow::Result<()> {
        r.context("the external metrics API server panicked")?
            .context("the external metrics API server stopped")
    };
    tokio::select! {
        r = &mut api => match api_result(r) {
            // A clean end is a shutdown: the admin server is draining too.
            Ok(()) => admin_result(admin.await),
            Err(error) => {
                admin.abort();
                error!("{error:#}; stopping");
                Err(error)
            }
        },
        r = &mut admin => match admin_result(r) {
            Ok(()) => api_result(api.await),
            Err(error) => {
                api.abort();
                error!("{error:#}; stopping");
                Err(error)
            }
        },
    }
}

/// How the external metrics API is reached, for the banner's kubectl line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAccess {
    /// Plain HTTP (the demo).
    PlainHttp,
    /// TLS with `--insecure-no-auth`: credentials are ignored.
    TlsWithoutAuth,
    /// TLS with delegated authentication and authorization.
    TlsWithAuth,
}

/// A `kubectl get --raw` command for `path` that works as pasted, with or without a kubeconfig, and a line saying
/// what its credential is.
///
/// Over https with no credential from a kubeconfig, kubectl asks for a username; `--token` prevents that. With
/// authentication on, the token is the HPA controller's own ServiceAccount's, so the read is the HPA's.
pub fn kubectl_get_raw(api_url: &str, path: &str, access: ApiAccess) -> (String, Option<&'static str>) {
    match access {
        ApiAccess::PlainHttp => (format!("kubectl --server={api_url} get --raw \"{path}\""), None),
        ApiAccess::TlsWithoutAuth => (
            format!("kubectl --server={api_url} --insecure-skip-tls-verify --token=unused get --raw \"{path}\""),
            Some("(--insecure-no-auth ignores the token; without one kubectl would ask for a username)"),
        ),
        ApiAccess::TlsWithAuth => (
            format!(
                "kubectl --server={api_url} --insecure-skip-tls-verify \
                 --token=\"$(kubectl create token horizontal-pod-autoscaler -n kube-system)\" get --raw \"{path}\""
            ),
            Some(
                "(reads as the HPA controller's ServiceAccount, checked by your cluster's TokenReview and \
                 SubjectAccessReview; any token allowed to list external.metrics.k8s.io will do)",
            ),
        ),
    }
}

/// Runs the API and admin servers (`servers`: [`supervise`]) alongside the KEDA external scaler, under the same rule:
/// the first to stop on its own ends the others, so a dead gRPC listener takes the process down with it.
async fn supervise_keda(
    servers: impl std::future::Future<Output = anyhow::Result<()>>,
    mut keda: tokio::task::JoinHandle<anyhow::Result<()>>,
    others: [tokio::task::AbortHandle; 2],
) -> anyhow::Result<()> {
    let keda_result = |r: Result<anyhow::Result<()>, tokio::task::JoinError>| -> anyhow::Result<()> {
        r.context("the KEDA external scaler panicked")?
            .context("the KEDA external scaler stopped")
    };
    let mut servers = std::pin::pin!(servers);
    tokio::select! {
        r = &mut servers => match r {
            Ok(()) => keda_result(keda.await),
            Err(error) => {
                keda.abort();
                Err(error)
            }
        },
        r = &mut keda => match keda_result(r) {
            Ok(()) => servers.await,
            Err(error) => {
                for other in others {
                    other.abort();
                }
                error!("{error:#}; stopping");
                Err(error)
            }
        },
    }
}

/// Runs the servers (`servers`) alongside the PredictiveAutoscaler controller: a controller that ends (it ends only
/// when its watch has failed for good, or it panicked) stops the servers, so the pod is restarted instead of serving
/// stale objects while looking healthy; a shutdown stops the controller.
async fn supervise_controller(
    servers: impl std::future::Future<Output = anyhow::Result<()>>,
    mut controller: tokio::task::JoinHandle<anyhow::Result<()>>,
    others: Vec<tokio::task::AbortHandle>,
) -> anyhow::Result<()> {
    let mut servers = std::pin::pin!(servers);
    tokio::select! {
        r = &mut servers => {
            controller.abort();
            r
        }
        r = &mut controller => {
            let error = match r {
                Ok(Ok(())) => anyhow::anyhow!("the PredictiveAutoscaler controller stopped"),
                Ok(Err(e)) => e.context("the PredictiveAutoscaler controller stopped"),
                Err(e) => anyhow::Error::from(e).context("the PredictiveAutoscaler controller panicked"),
            };
            for other in others {
                other.abort();
            }
            error!("{error:#}; stopping");
            Err(error)
        }
    }
}

/// Runs `servers` while the membership `task` runs; a membership that ends with an error ends the process (a
/// replica that cannot hold its Lease must not go on planning workloads the others take over). At a shutdown
/// (`stopping`), or when the servers end, the membership releases this replica's Lease (`release`), so the others
/// take its workloads over at once.
async fn supervise_membership(
    servers: impl std::future::Future<Output = anyhow::Result<()>>,
    mut task: tokio::task::JoinHandle<anyhow::Result<()>>,
    release: &tokio::sync::watch::Sender<bool>,
    stopping: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut servers = std::pin::pin!(servers);
    let mut stopping = std::pin::pin!(stopping);
    let mut released = false;
    loop {
        tokio::select! {
            r = &mut servers => {
                let _ = release.send(true);
                match tokio::time::timeout(std::time::Duration::from_secs(3), &mut task).await {
                    Ok(Ok(Err(error))) => warn!("{error:#}"),
                    Ok(_) => {}
                    Err(_) => task.abort(),
                }
                return r;
            }
            // A shutdown hands the workloads over at once (the Lease released, the others take over at their next
            // list) while the servers drain, instead of after they have stopped answering.
            () = &mut stopping, if !released => {
                released = true;
                let _ = release.send(true);
            }
            r = &mut task, if !released => {
                let error = match r {
                    Ok(Ok(())) => anyhow::anyhow!("the shard membership ended"),
                    Ok(Err(e)) => e.context("the shard membership stopped"),
                    Err(e) => anyhow::Error::from(e).context("the shard membership panicked"),
                };
                error!("{error:#}; stopping");
                return Err(error);
            }
        }
    }
}

/// What the banner says about the KEDA listener.
struct KedaBanner {
    addr: String,
    tls: bool,
}

/// `watched` says which objects the controller plans for, when it is on.
fn print_banner(
    config: &Config,
    api_url: &str,
    admin_url: &str,
    access: ApiAccess,
    keda: Option<&KedaBanner>,
    watched: Option<&str>,
) {
    println!("api: {api_url}");
    println!("admin: {admin_url}");
    if let Some(k) = keda {
        println!("keda: {}", k.addr);
    }
    println!();
    match watched {
        Some(objects) => println!(
            "prescale is planning {} workload(s) of the workload file, and {objects}:",
            config.workloads.len()
        ),
        None => println!("prescale is planning {} workload(s):", config.workloads.len()),
    }
    for w in &config.workloads {
        println!(
            "  {:<28} capacity {:>8.3} {}/replica, lead {}, p{:.0}, replicas {}..{}",
            w.id.to_string(),
            w.policy.capacity_per_replica,
            w.unit,
            crate::duration::format(w.policy.lead),
            w.policy.quantile.get() * 100.0,
            w.policy.replicas.min(),
            w.policy.replicas.max()
        );
    }
    if let Some(w) = config.workloads.first() {
        let path = format!(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/{}/{}?labelSelector=workload%3D{}",
            w.id.namespace,
            api::METRIC_REPLICAS,
            w.id.name
        );
        let (kubectl, note) = kubectl_get_raw(api_url, &path, access);
        println!();
        println!("Ready to paste once the first forecast is published ({admin_url}/readyz says ok):");
        println!("  {kubectl}");
        if let Some(note) = note {
            println!("    {note}");
        }
        println!("  curl -s {admin_url}/api/v1/workloads");
        println!(
            "  prescale explain {} --namespace {} --admin {admin_url}",
            w.id.name, w.id.namespace
        );
        println!("  open {admin_url}/ for charts, {admin_url}/metrics for Prometheus");
        if let Some(k) = keda {
            println!();
            println!("KEDA (external scaler at {}): a ScaledObject for {}:", k.addr, w.id);
            for line in keda::scaled_object(&k.addr, &w.id, k.tls).lines() {
                println!("  {line}");
            }
        }
    }
}

async fn shutdown() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_server_to_fail_stops_the_other() {
        // The API listener dies; the admin server would answer /readyz forever: supervise ends both, with the error.
        let admin = tokio::spawn(async { std::future::pending::<std::io::Result<()>>().await });
        let watch = admin.abort_handle();
        let api = tokio::spawn(async { Err(anyhow::anyhow!("listener closed")) });
        let error = supervise(api, admin).await.unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "the external metrics API server stopped: listener closed"
        );
        tokio::task::yield_now().await;
        assert!(watch.is_finished(), "the admin server was stopped");
        // The admin server dies: the same, the other way round.
        let api = tokio::spawn(async { std::future::pending::<anyhow::Result<()>>().await });
        let watch = api.abort_handle();
        let admin = tokio::spawn(async { Err(std::io::Error::other("accept failed")) });
        let error = supervise(api, admin).await.unwrap_err();
        assert_eq!(format!("{error:#}"), "the admin server stopped: accept failed");
        tokio::task::yield_now().await;
        assert!(watch.is_finished());
        // A shutdown: both end cleanly.
        let api = tokio::spawn(async { anyhow::Ok(()) });
        let admin = tokio::spawn(async { std::io::Result::Ok(()) });
        supervise(api, admin).await.unwrap();
    }

    #[tokio::test]
    async fn a_failing_controller_stops_the_servers_and_a_shutdown_stops_the_controller() {
        let api = tokio::spawn(async { std::future::pending::<anyhow::Result<()>>().await });
        let admin = tokio::spawn(async { std::future::pending::<std::io::Result<()>>().await });
        let others = vec![api.abort_handle(), admin.abort_handle()];
        let watch = others.clone();
        let controller = tokio::spawn(async { Err(anyhow::anyhow!("the watch failed for 600s")) });
        let error = supervise_controller(supervise(api, admin), controller, others)
            .await
            .unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "the PredictiveAutoscaler controller stopped: the watch failed for 600s"
        );
        tokio::task::yield_now().await;
        assert!(watch.iter().all(tokio::task::AbortHandle::is_finished));
        // A shutdown: the servers end cleanly and the controller, which never ends by itself, is stopped.
        let api = tokio::spawn(async { anyhow::Ok(()) });
        let admin = tokio::spawn(async { std::io::Result::Ok(()) });
        let controller = tokio::spawn(async { std::future::pending::<anyhow::Result<()>>().await });
        let watch = controller.abort_handle();
        supervise_controller(supervise(api, admin), controller, vec![])
            .await
            .unwrap();
        tokio::task::yield_now().await;
        assert!(watch.is_finished());
    }

    #[tokio::test]
    async fn a_failing_keda_listener_stops_the_other_servers() {
        let api = tokio::spawn(async { std::future::pending::<anyhow::Result<()>>().await });
        let admin = tokio::spawn(async { std::future::pending::<std::io::Result<()>>().await });
        let others = [api.abort_handle(), admin.abort_handle()];
        let watch = others.clone();
        let keda = tokio::spawn(async { Err(anyhow::anyhow!("accept failed")) });
        let error = supervise_keda(supervise(api, admin), keda, others).await.unwrap_err();
        assert_eq!(format!("{error:#}"), "the KEDA external scaler stopped: accept failed");
        tokio::task::yield_now().await;
        assert!(watch.iter().all(tokio::task::AbortHandle::is_finished));
        // The API dies: the KEDA listener is stopped too.
        let api = tokio::spawn(async { Err(anyhow::anyhow!("listener closed")) });
        let admin = tokio::spawn(async { std::future::pending::<std::io::Result<()>>().await });
        let keda = tokio::spawn(async { std::future::pending::<anyhow::Result<()>>().await });
        let watch = keda.abort_handle();
        let others = [api.abort_handle(), admin.abort_handle()];
        let error = supervise_keda(supervise(api, admin), keda, others).await.unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "the external metrics API server stopped: listener closed"
        );
        tokio::task::yield_now().await;
        assert!(watch.is_finished());
        // A shutdown: all end cleanly.
        let api = tokio::spawn(async { anyhow::Ok(()) });
        let admin = tokio::spawn(async { std::io::Result::Ok(()) });
        let keda = tokio::spawn(async { anyhow::Ok(()) });
        let others = [api.abort_handle(), admin.abort_handle()];
        supervise_keda(supervise(api, admin), keda, others).await.unwrap();
    }
}
