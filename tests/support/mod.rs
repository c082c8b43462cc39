//! A real Prometheus process loaded with recorded demand, for tests (`mod support;`).
//!
//! Data is written as OpenMetrics, turned into TSDB blocks with `promtool tsdb create-blocks-from openmetrics`, and
//! served by `prometheus` on a free loopback port. Each process runs under a small `sh` supervisor that reads
//! commands on its stdin; when the test process exits for any reason, stdin closes and the supervisor kills
//! Prometheus and removes its directory, so even a Prometheus kept in a `static` does not outlive the tests.
//!
//! Both tools come from the Debian package `prometheus` (`apt-get install -y prometheus`).
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use prescale::series::Series;

pub mod apiserver;

/// The directory of recorded traces: `$PRESCALE_TRACES_DIR`, else `../shared/traces` next to the repository.
pub fn traces_dir() -> PathBuf {
    match std::env::var_os("PRESCALE_TRACES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/traces"),
    }
}

/// Reads a recorded trace by file name (e.g. `nasa_http_1995.csv`) with prescale's own CSV reader.
pub fn load_trace(name: &str) -> Series {
    let path = traces_dir().join(name);
    prescale::history::trace::load(&path)
        .unwrap_or_else(|e| panic!("{e} (set PRESCALE_TRACES_DIR to the directory holding the trace CSVs)"))
}

/// `series` moved later by whole days so that its last slot ends before `now`, no more than a day before.
///
/// Whole days keep every step that divides a day aligned, and the data looks recent to Prometheus.
pub fn shift_to_end_before(series: &Series, now: DateTime<Utc>) -> Series {
    let days = (now - series.end()).num_days();
    Series::from_values(
        series.start() + TimeDelta::days(days),
        series.step(),
        series.values().collect(),
    )
}

/// Samples to load into Prometheus, written as an OpenMetrics text file.
#[derive(Default, Clone)]
pub struct OpenMetrics {
    // family name → series lines; OpenMetrics wants each family's lines together.
    families: BTreeMap<String, String>,
}

impl OpenMetrics {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one gauge series: each sample `(t, v)` is written at timestamp `t` (milliseconds are kept).
    pub fn gauge(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        samples: impl IntoIterator<Item = (DateTime<Utc>, f64)>,
    ) {
        let lines = self.families.entry(name.to_owned()).or_default();
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let labels = labels.join(",");
        for (t, v) in samples {
            // `{}` prints the shortest text that parses back to the same f64, so values survive exactly.
            let value = if v.is_nan() {
                "NaN".to_owned()
            } else if v.is_infinite() {
                if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
            } else {
                format!("{v}")
            };
            let ms = t.timestamp_millis();
            writeln!(
                lines,
                "{name}{{{labels}}} {value} {}.{:03}",
                ms.div_euclid(1000),
                ms.rem_euclid(1000)
            )
            .expect("writing to a String");
        }
    }

    /// Adds a demand series the way prescale reads it back: each slot's value at the slot's **end**, so that the
    /// evaluation at `T` of `last_over_time(name{..}[step - 1s])` answers the slot `[T - step, T)` and a missing slot
    /// stays missing.
    pub fn demand(&mut self, name: &str, labels: &[(&str, &str)], series: &Series) {
        let step = series.step();
        self.gauge(name, labels, series.points().map(|(t, v)| (t + step, v)));
    }

    /// The file's text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (name, lines) in &self.families {
            out.push_str(&format!("# TYPE {name} gauge\n"));
            out.push_str(lines);
        }
        out.push_str("# EOF\n");
        out
    }
}

/// The PromQL that reads back a series written with [`OpenMetrics::demand`] at its own step.
pub fn demand_query(selector: &str, step: TimeDelta) -> String {
    format!("last_over_time({selector}[{}s])", step.num_seconds() - 1)
}

static INSTANCES: AtomicUsize = AtomicUsize::new(0);

/// A Prometheus process under test control. Dropping it kills Prometheus and removes its data.
pub struct Prometheus {
    supervisor: Child,
    commands: Option<ChildStdin>,
    replies: BufReader<ChildStdout>,
    pid: Option<u32>,
    port: u16,
    /// Whether Prometheus has been up once: restarts keep the port (clients hold the URL).
    launched: bool,
    dir: PathBuf,
    authorization: Option<String>,
}

impl Prometheus {
    /// Loads `data` and starts Prometheus; returns once it answers `/-/ready`.
    pub fn start(data: &OpenMetrics) -> Self {
        let mut prometheus = Self::prepare(data);
        prometheus.launch();
        prometheus
    }

    /// Like [`Prometheus::start`], with a `--web.config.file` holding `web_config` (TLS, basic auth);
    /// `authorization` is the `Authorization` header value the readiness check sends.
    pub fn start_with_web_config(data: &OpenMetrics, web_config: &str, authorization: &str) -> Self {
        let mut prometheus = Self::prepare_with(data, Some(web_config));
        prometheus.authorization = Some(authorization.to_owned());
        prometheus.launch();
        prometheus
    }

    /// Loads `data` and reserves a port, without starting Prometheus (see [`Prometheus::launch`]).
    pub fn prepare(data: &OpenMetrics) -> Self {
        Self::prepare_with(data, None)
    }

    fn prepare_with(data: &OpenMetrics, web_config: Option<&str>) -> Self {
        require_tool("promtool");
        require_tool("prometheus");
        let n = INSTANCES.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("prescale-prometheus-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("creating the Prometheus directory");
        let om = dir.join("data.om");
        std::fs::write(&om, data.text()).expect("writing the OpenMetrics file");
        std::fs::write(
            dir.join("prometheus.yml"),
            "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
        )
        .expect("writing prometheus.yml");
        // One block per ~83 days instead of promtool's default of one per 2 hours: hundreds of small blocks take
        // a minute to write and slow every start.
        let out = Command::new("promtool")
            .args([
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--quiet",
                "--max-block-duration=2000h",
            ])
            .arg(&om)
            .arg(dir.join("data"))
            .output()
            .expect("running promtool");
        assert!(
            out.status.success(),
            "promtool could not load the test data: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut args = vec![
            "--config.file=prometheus.yml".to_owned(),
            "--storage.tsdb.path=data".to_owned(),
            "--storage.tsdb.retention.time=3650d".to_owned(),
        ];
        if let Some(web_config) = web_config {
            std::fs::write(dir.join("web.yml"), web_config).expect("writing web.yml");
            args.push("--web.config.file=web.yml".to_owned());
        }
        let port = free_port();
        let script = r#"
dir=$1; shift
pid=
start() { prometheus "$@" --web.listen-address="127.0.0.1:$port" >>"$dir/prometheus.log" 2>&1 & pid=$!; echo "$pid"; }
while read -r cmd port; do
  case $cmd in
    start) start "$@" ;;
    kill) kill -9 "$pid"; wait "$pid"; echo killed ;;
    stop) kill -STOP "$pid"; echo stopped ;;
    cont) kill -CONT "$pid"; echo continued ;;
  esac
done
[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
rm -rf "$dir"
"#;
        let mut supervisor = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&dir)
            .args(&args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting sh");
        let commands = supervisor.stdin.take();
        let replies = BufReader::new(supervisor.stdout.take().expect("piped stdout"));
        Self {
            supervisor,
            commands,
            replies,
            pid: None,
            launched: false,
            port,
            dir,
            authorization: None,
        }
    }

    /// Starts (or restarts) Prometheus on this instance's port and data; returns once it is ready.
    ///
    /// The port was free when it was reserved, but another process may bind it before Prometheus does. Readiness
    /// therefore also requires this process's own log to say it is listening (a `/-/ready` answer could come from
    /// whoever took the port); on a first launch that lost its port, Prometheus starts again on a new one.
    pub fn launch(&mut self) {
        assert!(self.pid.is_none(), "Prometheus is already running");
        let first = !self.launched;
        for _ in 0..5 {
            let logged = self.log().len();
            let reply = self.command(&format!("start {}", self.port));
            self.pid = Some(
                reply
                    .parse()
                    .unwrap_or_else(|_| panic!("supervisor answered {reply:?}")),
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let log = self.log();
                let ours = log.get(logged..).unwrap_or_default();
                if ours.contains("address already in use") && first {
                    self.kill();
                    self.port = free_port();
                    break;
                }
                if ours.contains("msg=\"Listening on\"") && self.ready() {
                    self.launched = true;
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "Prometheus not ready on port {} after 30 s; its log:\n{log}",
                    self.port
                );
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        panic!("Prometheus found no free port in five tries; its log:\n{}", self.log());
    }

    /// Kills Prometheus with SIGKILL and waits until it is gone; [`Prometheus::launch`] brings it back.
    pub fn kill(&mut self) {
        assert!(self.pid.is_some(), "Prometheus is not running");
        assert_eq!(self.command("kill"), "killed");
        self.pid = None;
    }

    /// Freezes Prometheus with SIGSTOP: connections are still accepted by the kernel but nothing answers.
    pub fn pause(&mut self) {
        assert!(self.pid.is_some(), "Prometheus is not running");
        assert_eq!(self.command("stop"), "stopped");
    }

    /// Thaws Prometheus after [`Prometheus::pause`].
    pub fn resume(&mut self) {
        assert_eq!(self.command("cont"), "continued");
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Prometheus's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    fn command(&mut self, command: &str) -> String {
        let stdin = self.commands.as_mut().expect("supervisor stdin");
        writeln!(stdin, "{command}")
            .and_then(|_| stdin.flush())
            .expect("talking to the supervisor");
        let mut reply = String::new();
        self.replies.read_line(&mut reply).expect("reading from the supervisor");
        reply.trim().to_owned()
    }

    fn ready(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let authorization = match &self.authorization {
            Some(value) => format!("Authorization: {value}\r\n"),
            None => String::new(),
        };
        let request = format!("GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n{authorization}\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.get(9..12) == Some("200")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Closing stdin tells the supervisor to kill Prometheus and remove the directory.
        drop(self.commands.take());
        let _ = self.supervisor.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().expect("local address").port()
}

fn require_tool(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(found, Ok(status) if status.success()),
        "`{tool}` is not installed or not on PATH: these tests run a real Prometheus; install the Debian package \
         `prometheus` (apt-get install -y prometheus), which provides both `prometheus` and `promtool`"
    );
}

/// `prescale demo` of the real binary on ephemeral loopback ports, logging at info into the file `log`, its stdin
/// closed: add flags and spawn.
pub fn demo_command(log: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_prescale"));
    command
        .args([
            "--log",
            "info",
            "demo",
            "--api-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .env_remove("PRESCALE_LOG")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(log).expect("the log file can be created"));
    command
}

/// Stops `child` as Kubernetes stops a pod (SIGTERM) and waits for it to exit.
pub fn terminate(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// Waits until the `demo` logging into `log` has adopted `n` saved states (60 s at most), then asserts that none of
/// its workloads was replayed: a restored workload starts warm.
pub fn wait_for_adoptions(child: &mut Child, log: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches("adopted the saved state").count() == n {
            assert!(
                !text.contains("replaying recent history"),
                "a workload with a state is not replayed:\n{text}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not every state adopted within 60 s:\n{text}"
        );
        assert!(child.try_wait().unwrap().is_none(), "the demo exited early:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
