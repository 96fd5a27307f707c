//! A real Prometheus of the rehearsal's own (loopback port, temporary
//! storage, `daemon`-free child process) scraping every revision's
//! `/metrics` each second with the `knative_revision` label the cluster's
//! PodMonitor adds: the automated rollout's PromQL gates are rehearsed
//! against Prometheus itself, not against a model of it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::tools::Tool;

pub const PROMETHEUS: Tool = Tool {
    name: "prometheus",
    override_var: "PROMETHEUS",
    install: "scripts/setup.sh   (it runs apt-get install -y prometheus; the rehearsal starts its own prometheus \
              process on a loopback port, never the system service)",
};

/// How often the revisions are scraped.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// A running Prometheus; stopped when dropped.
pub struct LocalPrometheus {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// The configuration: one static target per revision, labelled with it.
pub fn config(revisions: &BTreeMap<String, u16>) -> String {
    let mut out = format!(
        "# The rollout rehearsal's Prometheus: every revision's /metrics, labelled like the PodMonitor does.\n\
         global:\n  scrape_interval: {0}s\n  evaluation_interval: {0}s\nscrape_configs:\n  - job_name: rehearsal\n    static_configs:\n",
        SCRAPE_INTERVAL.as_secs()
    );
    for (rev, port) in revisions {
        let _ = writeln!(
            out,
            "      - targets: ['127.0.0.1:{port}']\n        labels: {{knative_service: ingest-grpc, knative_revision: {rev}}}"
        );
    }
    out
}

impl LocalPrometheus {
    /// Starts `exe` scraping `revisions` (name -> port) and waits until it
    /// is ready and has scraped every revision once.
    pub fn start(exe: &Path, revisions: &BTreeMap<String, u16>) -> anyhow::Result<LocalPrometheus> {
        let dir = tempfile::Builder::new()
            .prefix("rollout-prometheus-")
            .tempdir()?;
        let conf = dir.path().join("prometheus.yml");
        std::fs::write(&conf, config(revisions))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new(exe)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let mut p = LocalPrometheus { child, port, dir };
        p.wait_until_scraped(revisions.len())?;
        Ok(p)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_until_scraped(&mut self, targets: usize) -> anyhow::Result<()> {
        let probe = crate::rollout::prometheus::Prometheus {
            url: self.url(),
            load: None,
            settle: Duration::ZERO,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("prometheus exited with {status} at start:\n{}", self.logs());
            }
            if let Ok(up) = probe.query("count(up == 1)")
                && up as usize == targets
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "prometheus did not scrape the {targets} revisions within 30 s:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for LocalPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
