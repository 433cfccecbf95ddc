//! A real Prometheus server for the end-to-end tests: Debian's `prometheus` binary on a
//! loopback port, exemplar storage on, scraping a target of the test process every second (and
//! evaluating rule files every second), queried through its HTTP API. The binary must be
//! installed (`apt-get install prometheus`; `.ci/run` installs it): without it a test fails,
//! saying so.
#![allow(dead_code, unreachable_pub)]

use std::fmt::Write as _;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::http_client::{self, encode};

/// The Prometheus process; killed and reaped when dropped, its log printed if the test failed.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- prometheus log ---\n{log}");
        }
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// Starts Prometheus in `dir`, scraping `target` as job `instrument` and evaluating
/// `rule_files`; returns once it is ready.
pub fn start(dir: &Path, target: SocketAddr, rule_files: &[&Path]) -> Prometheus {
    let config = dir.join("prometheus.yml");
    let mut text = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
    );
    if !rule_files.is_empty() {
        text.push_str("rule_files:\n");
        for file in rule_files {
            let _ = writeln!(text, "  - '{}'", file.display());
        }
    }
    let _ = write!(
        text,
        "scrape_configs:\n  - job_name: instrument\n    static_configs:\n      - targets: ['{target}']\n"
    );
    std::fs::write(&config, text).unwrap();
    let addr = free_port();
    let log = dir.join("prometheus.log");
    let out = File::create(&log).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--enable-feature=exemplar-storage")
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the `prometheus` binary is not installed: install Debian's `prometheus` package \
             (`apt-get install prometheus`; `.ci/run` installs it)"
        ),
        Err(e) => panic!("cannot start prometheus: {e}"),
    };
    let prometheus = Prometheus { child, addr, log };
    eventually("Prometheus to be ready", || {
        http_client::try_get(prometheus.addr, "/-/ready", &[])
            .ok()
            .filter(|r| r.status == 200)
    });
    prometheus
}

/// Polls `check` every 250 ms until it returns `Some`, panicking with `what` after 90 s (a
/// guard against waiting for ever, not a timing assertion).
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(250));
    }
}

impl Prometheus {
    /// `GET path` on the API; its `data`, after checking `status` is `success`.
    pub fn api(&self, path: &str) -> Value {
        let response = http_client::get(self.addr, path, &[]);
        let json: Value = serde_json::from_slice(&response.body)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", response.text()));
        assert_eq!(json["status"], "success", "{path}: {json}");
        json["data"].clone()
    }

    /// An instant query's result vector.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        self.api(&format!("/api/v1/query?query={}", encode(promql)))["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The exemplars stored for what `promql` selects over the last and next ten minutes.
    pub fn exemplars(&self, promql: &str) -> Vec<Value> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let data = self.api(&format!(
            "/api/v1/query_exemplars?query={}&start={}&end={}",
            encode(promql),
            now - 600,
            now + 600
        ));
        data.as_array()
            .into_iter()
            .flatten()
            .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}
