//! What the harnesses that run the real binary share: child processes, ports, /proc readings, the workload file and
//! the kubeconfig that points a process at the in-memory kube-apiserver stand-in.
#![allow(dead_code)]

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A child process killed when dropped.
pub struct Guard(pub Child);

impl Guard {
    /// How the process ended, if it has (without reaping it).
    pub fn exited(&self) -> Option<String> {
        // `try_wait` needs `&mut`; a fresh handle on the pid would too, so read /proc instead.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).ok()?;
        let state = stat.rsplit(')').next()?.split_whitespace().next()?;
        (state == "Z" || state == "X").then(|| format!("state {state}"))
    }

    /// Sends `signal` (`TERM`, `KILL`, `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.0.id().to_string()])
            .status();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The generated workloads of a harness's workload file.
pub struct Workloads<'a> {
    /// How many (named `w<i>`, in namespaces `ns0`..`ns3`).
    pub count: usize,
    /// The pipeline's cycle.
    pub interval: &'a str,
    /// The generator's sample step.
    pub step: &'a str,
    /// The history window.
    pub history: &'a str,
    /// The refit interval.
    pub refit_interval: &'a str,
    /// The SLO controller's startup replay.
    pub replay: &'a str,
    /// `maxDataAge`, when not the default (`max(lead, 3 × step, 2m)`).
    pub max_data_age: Option<&'a str>,
}

/// Namespaces the workloads are spread over.
pub const NAMESPACES: usize = 4;

/// Writes the workload file `dir/workloads.yaml`: `count` generator-fed workloads (three profiles, one seed each).
pub fn write_workloads(dir: &Path, w: &Workloads) -> anyhow::Result<PathBuf> {
    let path = dir.join("workloads.yaml");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
    writeln!(f, "interval: {}\nworkloads:", w.interval)?;
    let profiles = ["llm-chat", "web-frontend", "embeddings"];
    for i in 0..w.count {
        writeln!(
            f,
            "  - name: w{i}\n    namespace: ns{}\n    demand: {{generator: {{profile: {}, seed: {i}}}, step: {}}}\n    \
             capacityPerReplica: 10\n    maxReplicas: 200\n    history: {}\n    refitInterval: {}\n    \
             adaptiveQuantile: {{replay: {}}}",
            i % NAMESPACES,
            profiles[i % profiles.len()],
            w.step,
            w.history,
            w.refit_interval,
            w.replay
        )?;
        if let Some(age) = w.max_data_age {
            writeln!(f, "    maxDataAge: {age}")?;
        }
    }
    f.flush()?;
    Ok(path)
}

/// Writes a kubeconfig at `path` for the API server at `url` (namespace `prescale`, a dummy token).
pub fn write_kubeconfig(path: &Path, url: &str) -> anyhow::Result<()> {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: {url}\n\
             users:\n- name: prescale\n  user:\n    token: t\ncontexts:\n- name: stand-in\n  context:\n    \
             cluster: stand-in\n    user: prescale\n    namespace: prescale\ncurrent-context: stand-in\n"
        ),
    )?;
    Ok(())
}

/// Waits until something accepts connections on loopback `port` (10 s at most).
pub fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A loopback port nothing listens on now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Resident set of `pid`, KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// User + system CPU time of `pid`, seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("malformed /proc/PID/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The last ten lines of the log at `path`.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
