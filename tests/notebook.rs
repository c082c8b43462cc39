//! The backtest notebook runs headless against a fresh backtest output, as a reader would run it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn traces_dir() -> PathBuf {
    std::env::var_os("PRESCALE_TRACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/traces"))
}

#[test]
fn backtest_notebook_executes_on_a_fresh_run() {
    let out = tempfile::tempdir().unwrap();
    let trace = traces_dir().join("azure_llm_conv_2023.csv");
    let run = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(["backtest", "--quiet", "--lead", "2m,5m", "--trace"])
        .arg(&trace)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "backtest failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary = String::from_utf8_lossy(&run.stdout);
    assert!(
        summary.contains("predictive") && summary.contains("reactive-70"),
        "{summary}"
    );
    assert!(out.path().join("report.json").is_file());

    let executed = out.path().join("executed.ipynb");
    let script = r#"
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": sys.argv[3]}}).execute()
nbformat.write(nb, sys.argv[2])
images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
texts = [o.get("data", {}).get("text/plain", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
slo_tables = sum(1 for t in texts if "savings at equal service" in t)
print(f"slo_tables={slo_tables} errors={len(errors)} images={images}")
"#;
    let notebook = Path::new(env!("CARGO_MANIFEST_DIR")).join("notebooks/backtest.ipynb");
    let result = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&notebook)
        .arg(&executed)
        .arg(notebook.parent().unwrap())
        .env("PRESCALE_BACKTEST_OUT", out.path())
        .env("PRESCALE_BACKTEST_LEAD", "5m")
        .output()
        .expect("python3 runs (install the notebook packages: pip install -r .ci/requirements.txt)");
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "the notebook failed (pip install -r .ci/requirements.txt installs nbclient, ipykernel, matplotlib, pandas):\n{}\n{}",
        stdout,
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(stdout.contains("errors=0"), "{stdout}");
    assert!(stdout.contains("slo_tables=1 "), "the per-SLO table: {stdout}");
    let images: usize = stdout
        .trim()
        .rsplit("images=")
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        images >= 3,
        "the notebook draws the reactive frontier, the adaptive choice and demand vs capacity: {stdout}"
    );
}
