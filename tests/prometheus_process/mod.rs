//! A real Prometheus server for the end-to-end tests: Debian's `prometheus` binary on a
//! loopback port, exemplar storage on, scraping a target of the test process every second (and
//! evaluating rule files every second), queried through its HTTP API. The binary must be
//! installed (`apt-get install prometheus`; `.ci/prerequisites` installs it): without it a test
//! fails, saying so. A test file using it also has `mod http_client;`, `mod server_process;`
//! and `mod support;`.
#![allow(dead_code, unreachable_pub)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::http_client::{self, encode};
use crate::server_process::{self, ServerProcess};

/// The Prometheus process; killed and reaped when dropped, its log printed if the test failed.
pub struct Prometheus(ServerProcess);

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
    Prometheus(server_process::start(
        "prometheus",
        dir,
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            "--enable-feature=exemplar-storage".to_owned(),
        ],
    ))
}

impl Prometheus {
    /// `GET path` on the API; its `data`, after checking `status` is `success`.
    pub fn api(&self, path: &str) -> Value {
        let response = http_client::get(self.0.addr, path, &[]);
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
