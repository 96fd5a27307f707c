//! The project's load generator (`loadtest`) against the rehearsal's nginx,
//! and what its `--report` JSON says: requests, failures, and responses per
//! serving revision (the `x-revision` header every function sends).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// How much load one run sends (closed model: `users` keep one request each in flight).
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub users: u32,
    /// Stop after this many requests...
    pub requests: Option<u64>,
    /// ...or after this long, whichever comes first (at least one is set).
    pub duration: Option<Duration>,
}

impl Load {
    pub fn requests(n: u64) -> Load {
        Load {
            users: 8,
            requests: Some(n),
            duration: Some(Duration::from_secs(30)),
        }
    }

    pub fn lasting(d: Duration) -> Load {
        Load {
            users: 8,
            requests: None,
            duration: Some(d),
        }
    }
}

/// What one run observed.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Requests completed (with a response or a transport error).
    pub requests: u64,
    /// Non-2xx responses plus transport errors.
    pub failed: u64,
    /// Responses per `x-revision` (`None`: no header).
    pub by_revision: BTreeMap<Option<String>, u64>,
    /// `HTTP 202`, `connection_reset`, ... with their counts.
    pub outcomes: BTreeMap<String, u64>,
    pub duration_s: f64,
}

impl Observed {
    /// Responses from `revision`, in percent of all requests.
    pub fn percent(&self, revision: &str) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        let n = self
            .by_revision
            .get(&Some(revision.to_owned()))
            .copied()
            .unwrap_or(0);
        100.0 * n as f64 / self.requests as f64
    }

    pub fn responses_from(&self, revision: &str) -> u64 {
        self.by_revision
            .get(&Some(revision.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// `HTTP 202: 2000`, for messages.
    pub fn outcomes_text(&self) -> String {
        self.outcomes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// loadtest's report, read by the one reader of it ([`crate::rollout::measure::parse_report`]).
fn parse_report(text: &str) -> anyhow::Result<Observed> {
    let r = crate::rollout::measure::parse_report(text)?;
    let mut outcomes: BTreeMap<String, u64> = r
        .total
        .status
        .into_iter()
        .map(|(s, n)| (format!("HTTP {s}"), n))
        .collect();
    outcomes.extend(r.total.transport_errors.into_iter().filter(|(_, n)| *n > 0));
    Ok(Observed {
        requests: r.total.requests,
        failed: r.total.errors,
        by_revision: r
            .total
            .revisions
            .into_iter()
            .map(|s| (s.revision, s.responses))
            .collect(),
        outcomes,
        duration_s: r.duration_s,
    })
}

/// A loadtest process sending to one host through the rehearsal's nginx.
pub struct Running {
    child: Option<Child>,
    report: PathBuf,
    what: String,
}

/// Starts `loadtest` against `http://127.0.0.1:port` with `Host: host`; the
/// report goes to `report`.
pub fn spawn(
    loadtest: &Path,
    port: u16,
    host: &str,
    load: Load,
    report: &Path,
) -> anyhow::Result<Running> {
    let mut cmd = Command::new(loadtest);
    cmd.args(["--quiet", "--threads", "1", "--users"])
        .arg(load.users.to_string())
        .arg("--target")
        .arg(format!("rehearsal=http://127.0.0.1:{port}"))
        .arg("--host-header")
        .arg(format!("rehearsal={host}"))
        .arg("--report")
        .arg(report);
    if let Some(n) = load.requests {
        cmd.arg("--requests").arg(n.to_string());
    }
    if let Some(d) = load.duration {
        cmd.arg("--duration").arg(format!("{}ms", d.as_millis()));
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", loadtest.display()))?;
    Ok(Running {
        child: Some(child),
        report: report.to_owned(),
        what: format!("loadtest on {host}"),
    })
}

impl Running {
    /// Waits for the run to end and reads its report.
    pub fn wait(mut self) -> anyhow::Result<Observed> {
        let out = self.child.take().expect("waited once").wait_with_output()?;
        // Exit 3 would be a failed --fail-if threshold; none is given, so anything but 0 is an error.
        if !out.status.success() {
            bail!(
                "{} failed ({}):\n{}",
                self.what,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = std::fs::read_to_string(&self.report)
            .with_context(|| format!("{} wrote no report", self.what))?;
        parse_report(&text)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_read() {
        let lat = r#"{"p50":1,"p90":2,"p99":3,"max":4}"#;
        let text = format!(
            r#"{{"format_version":1,"duration_s":0.5,"interrupted":false,"targets":[],
            "total":{{"requests":10,"responses":9,"errors":2,"status":{{"202":8,"503":1}},
            "latency_us":{lat},"transport_errors":{{"connection_reset":1}},
            "revisions":[{{"revision":"a","responses":6,"share":0.66,"errors":0,"latency_us":{lat}}},
                         {{"revision":null,"responses":3,"share":0.33,"errors":1,"latency_us":{lat}}}]}}}}"#
        );
        let o = parse_report(&text).unwrap();
        assert_eq!((o.requests, o.failed), (10, 2));
        assert_eq!(o.responses_from("a"), 6);
        assert!((o.percent("a") - 60.0).abs() < 1e-9);
        assert_eq!(o.by_revision.get(&None), Some(&3));
        assert_eq!(
            o.outcomes_text(),
            "HTTP 202: 8, HTTP 503: 1, connection_reset: 1"
        );
    }

    #[test]
    fn another_report_version_is_refused() {
        let text = r#"{"format_version":2,"duration_s":0.5,"total":{"requests":0,"errors":0}}"#;
        assert!(
            parse_report(text)
                .unwrap_err()
                .to_string()
                .contains("format_version is 2")
        );
    }
}
