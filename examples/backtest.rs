//! Runs `prescale backtest` without the rest of the binary: `cargo run --release --example backtest -- --trace FILE`.

use clap::Parser;

/// Replay a trace through the backtest protocol and write the report.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: prescale::backtest::BacktestArgs,
}

fn main() -> anyhow::Result<()> {
    prescale::backtest::run_cli(Cli::parse().args)
}
