//! The `prescale` command: parses arguments and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Predictive autoscaling for Kubernetes: forecast demand, serve replica targets to the HPA before the spike.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `prescale=debug`.
    #[arg(long, global = true, env = "PRESCALE_LOG", default_value = "info", value_parser = log_filter)]
    log: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run with built-in demand (or recorded traces): no Prometheus, no cluster needed.
    Demo {
        /// Replay a recorded trace CSV (`timestamp,value`) instead of the generator; repeatable.
        #[arg(long = "trace", env = "PRESCALE_DEMO_TRACES", value_delimiter = ',')]
        traces: Vec<PathBuf>,
        #[command(flatten)]
        listen: prescale::app::ListenArgs,
    },
    /// Run from a config file.
    Serve {
        /// The workload config (YAML).
        #[arg(long, env = "PRESCALE_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        listen: prescale::app::ListenArgs,
        #[command(flatten)]
        security: Box<prescale::app::SecurityArgs>,
        #[command(flatten)]
        watch: prescale::app::WatchArgs,
    },
    /// Backtest a recorded trace, or the configured workloads' history, through every policy and the HPA's arithmetic.
    Backtest(Box<prescale::backtest::BacktestArgs>),
    /// Explain a running server's replica target for one workload: why N replicas now?
    Explain(prescale::sre::explain::ExplainArgs),
    /// Validate a config file; lists every problem and exits non-zero when there is one.
    CheckConfig {
        /// The workload config (YAML), or with `--objects` a file of PredictiveAutoscaler objects.
        file: PathBuf,
        /// Check PredictiveAutoscaler objects (YAML documents, or `kubectl get pas -o yaml`) with the same rules.
        #[arg(long)]
        objects: bool,
    },
    /// Print the PredictiveAutoscaler CustomResourceDefinition (YAML), generated from the workload type.
    Crd,
}

/// The allocator: jemalloc returns freed pages to the system a few seconds after a burst. With glibc's malloc, the
/// fits' large transient buffers, allocated on many blocking threads, stayed resident in per-thread arenas: at 1,000
/// workloads of 15 days of 1-minute history, 517 KiB of RSS per workload with glibc against 366 KiB with jemalloc
/// (mimalloc: 626 KiB), the same planning time and API latency (`BENCHMARKS.md`).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Cli { command, log } = cli;
    init_tracing(&log);
    prescale::app::init();
    let result = match command {
        Command::CheckConfig { file, objects } => {
            let workloads = if objects {
                prescale::config::load_objects(&file)
            } else {
                prescale::config::load(&file).map(|config| config.workloads)
            };
            match workloads {
                Ok(workloads) => {
                    println!("{}: ok ({} workload(s))", file.display(), workloads.len());
                    for w in &workloads {
                        println!("{}", w.describe());
                    }
                    if workloads.is_empty() && !objects {
                        println!(
                            "no workloads: `prescale serve` runs with this file only with --watch-objects, planning \
                             for PredictiveAutoscaler objects; `prescale backtest --config` has nothing to replay"
                        );
                    }
                    Ok(())
                }
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            }
        }
        Command::Crd => {
            print!("{}", prescale::workload::crd_yaml());
            Ok(())
        }
        Command::Explain(args) => run_async(prescale::app::explain(args)),
        Command::Backtest(args) => prescale::app::backtest(*args),
        Command::Demo { traces, listen } => run_async(prescale::app::demo(&traces, listen)),
        Command::Serve {
            config,
            listen,
            security,
            watch,
        } => run_async(prescale::app::serve(&config, listen, *security, watch)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// How long work still running when a command ends (fits and startup replays on blocking threads) may delay the
/// exit. Fits cannot be interrupted and a replay holds minutes of them; their results are not needed once the
/// servers have stopped, so the process leaves them behind instead of waiting (Kubernetes would SIGKILL it after
/// the grace period anyway).
const ABANDON_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

fn run_async(command: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let result = runtime.block_on(command);
    runtime.shutdown_timeout(ABANDON_AFTER);
    result
}

/// A `--log` value that tracing accepts; anything else is refused with tracing's reason, not silently read as `info`.
fn log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{e}; write e.g. info, debug or prescale=debug,warn"))
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).expect("checked by log_filter");
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}
