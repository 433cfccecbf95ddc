//! A server of the Prometheus family (Debian's `prometheus`, `prometheus-alertmanager`) run as
//! a child process of a test: on a free loopback port, its output in a log file, killed and
//! reaped when dropped. Both binaries take `--web.listen-address` and answer `GET /-/ready`
//! once they are ready. A test file using it also has `mod http_client;` and `mod support;`.
#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::http_client;
use crate::support::{eventually, free_port};

/// The server process; killed and reaped when dropped, its log printed if the test failed.
pub struct ServerProcess {
    child: Child,
    program: &'static str,
    /// The loopback address it listens on.
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- {} log ---\n{log}", self.program);
        }
    }
}

/// Starts `program` (a binary of the Debian package of the same name) with `args` and
/// `--web.listen-address` on a free loopback port, its output going to `{program}.log` in `dir`;
/// returns once `GET /-/ready` answers 200.
pub fn start(program: &'static str, dir: &Path, args: &[String]) -> ServerProcess {
    let addr = free_port();
    let log = dir.join(format!("{program}.log"));
    let out = File::create(&log).unwrap();
    let child = Command::new(program)
        .args(args)
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the `{program}` binary is not installed: install Debian's `{program}` package \
             (`apt-get install {program}`; `.ci/prerequisites` installs it)"
        ),
        Err(e) => panic!("cannot start {program}: {e}"),
    };
    let server = ServerProcess {
        child,
        program,
        addr,
        log,
    };
    eventually(
        &format!("{program} to be ready"),
        Duration::from_millis(100),
        || {
            http_client::try_get(server.addr, "/-/ready", &[])
                .ok()
                .filter(|r| r.status == 200)
        },
    );
    server
}
