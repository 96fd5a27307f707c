//! Measuring a canary and its stable revision over one interval, the same
//! way for both: the project's load generator (`loadtest`) under one shared
//! load, split by the `x-revision` header every function sends; on tag URLs
//! for blue/green; or, on a cluster with Prometheus, the functions' own
//! `/metrics` through PromQL ([`super::prometheus`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// One revision over one interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub requests: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
}

impl Sample {
    pub fn error_rate_percent(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            100.0 * self.errors as f64 / self.requests as f64
        }
    }
}

/// Stable and canary over the same interval. Requests the load generator
/// cannot attribute to either (a transport error, an answer without
/// `x-revision`, another revision) are counted as the canary's, failures
/// included: a rollout moves on evidence, not on the benefit of the doubt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurement {
    pub stable: Sample,
    pub canary: Sample,
}

impl Measurement {
    /// The canary's share of all requests, in percent.
    pub fn canary_share(&self) -> f64 {
        let all = self.stable.requests + self.canary.requests;
        if all == 0 {
            0.0
        } else {
            100.0 * self.canary.requests as f64 / all as f64
        }
    }
}

/// Where measurements come from.
pub trait Source {
    /// Load on the Service's host for `window`; each revision's part.
    fn split(
        &mut self,
        stable: &str,
        canary: &str,
        window: Duration,
    ) -> anyhow::Result<Measurement>;
    /// Load on each revision's tag host for `window` (blue/green before the
    /// switch: green has no share of the Service's host yet).
    fn tags(
        &mut self,
        stable_tag: &str,
        canary_tag: &str,
        window: Duration,
    ) -> anyhow::Result<Measurement>;
}

/// The load generator against an ingress: `loadtest --target
/// rollout=URL --host-header rollout=HOST`, a closed model of `users`.
pub struct Load {
    pub loadtest: PathBuf,
    /// The ingress, e.g. `http://127.0.0.1:8080` or `http://ENVOY_IP`.
    pub url: String,
    /// The Service's host; a tag's host is `{tag}-{host}`.
    pub host: String,
    pub users: u32,
    /// `--token` for an ingest that wants a bearer token.
    pub token: Option<String>,
    reports: tempfile::TempDir,
    runs: u32,
}

impl Load {
    pub fn new(loadtest: &Path, url: &str, host: &str, users: u32) -> anyhow::Result<Load> {
        Ok(Load {
            loadtest: loadtest.to_owned(),
            url: url.trim_end_matches('/').to_owned(),
            host: host.to_owned(),
            users,
            token: None,
            reports: tempfile::Builder::new().prefix("rollout-load-").tempdir()?,
            runs: 0,
        })
    }

    /// One run with `targets` (name, host) for `window`; its report.
    fn run(&mut self, targets: &[(&str, String)], window: Duration) -> anyhow::Result<Report> {
        self.runs += 1;
        let report = self.reports.path().join(format!("{}.json", self.runs));
        let mut cmd = Command::new(&self.loadtest);
        cmd.args(["--quiet", "--threads", "1", "--users"])
            .arg(self.users.to_string())
            .arg("--duration")
            .arg(format!("{}ms", window.as_millis()))
            .arg("--report")
            .arg(&report);
        for (name, host) in targets {
            cmd.arg("--target")
                .arg(format!("{name}={}", self.url))
                .arg("--host-header")
                .arg(format!("{name}={host}"));
        }
        if let Some(t) = &self.token {
            cmd.arg("--token").arg(t);
        }
        let out = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("cannot start {}", self.loadtest.display()))?;
        if !out.status.success() {
            bail!(
                "loadtest failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = std::fs::read_to_string(&report).context("loadtest wrote no report")?;
        parse_report(&text)
    }
}

impl Source for Load {
    fn split(
        &mut self,
        stable: &str,
        canary: &str,
        window: Duration,
    ) -> anyhow::Result<Measurement> {
        let host = self.host.clone();
        let r = self.run(&[("rollout", host)], window)?;
        Ok(r.total.split(stable, canary))
    }

    fn tags(
        &mut self,
        stable_tag: &str,
        canary_tag: &str,
        window: Duration,
    ) -> anyhow::Result<Measurement> {
        let hosts = [
            (stable_tag, format!("{stable_tag}-{}", self.host)),
            (canary_tag, format!("{canary_tag}-{}", self.host)),
        ];
        let r = self.run(&hosts, window)?;
        let of = |name: &str| -> anyhow::Result<Sample> {
            r.targets
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.summary.sample())
                .with_context(|| format!("loadtest's report has no target {name}"))
        };
        Ok(Measurement {
            stable: of(stable_tag)?,
            canary: of(canary_tag)?,
        })
    }
}

/// The fields of loadtest's `--report` read here and by the rehearsal
/// (format_version 1). Per-revision `errors` and `latency_us` are required:
/// a loadtest too old to report them must not pass a canary as error-free.
#[derive(Debug, Deserialize)]
pub struct Report {
    #[serde(default)]
    pub duration_s: f64,
    #[serde(default)]
    targets: Vec<Target>,
    pub total: Summary,
}

#[derive(Debug, Deserialize)]
struct Target {
    name: String,
    #[serde(flatten)]
    summary: Summary,
}

#[derive(Debug, Deserialize)]
pub struct Summary {
    pub requests: u64,
    pub errors: u64,
    latency_us: Latency,
    /// Responses per HTTP status ("202": n).
    #[serde(default)]
    pub status: BTreeMap<String, u64>,
    /// Requests without a response, per reason.
    #[serde(default)]
    pub transport_errors: BTreeMap<String, u64>,
    #[serde(default)]
    pub revisions: Vec<Revision>,
}

#[derive(Debug, Deserialize)]
struct Latency {
    p50: u64,
    p90: u64,
    p99: u64,
}

/// One `x-revision` value's responses (`revision: None`: no header).
#[derive(Debug, Deserialize)]
pub struct Revision {
    pub revision: Option<String>,
    pub responses: u64,
    pub errors: u64,
    latency_us: Latency,
}

impl Summary {
    fn sample(&self) -> Sample {
        Sample {
            requests: self.requests,
            errors: self.errors,
            p50_us: self.latency_us.p50,
            p90_us: self.latency_us.p90,
            p99_us: self.latency_us.p99,
        }
    }

    /// Stable's and canary's responses; everything else goes to the canary
    /// (see [`Measurement`]).
    fn split(&self, stable: &str, canary: &str) -> Measurement {
        let of = |name: &str| {
            self.revisions
                .iter()
                .find(|r| r.revision.as_deref() == Some(name))
                .map(|r| Sample {
                    requests: r.responses,
                    errors: r.errors,
                    p50_us: r.latency_us.p50,
                    p90_us: r.latency_us.p90,
                    p99_us: r.latency_us.p99,
                })
                .unwrap_or_default()
        };
        let stable = of(stable);
        let mut canary = of(canary);
        canary.requests = self.requests - stable.requests;
        canary.errors = self.errors - stable.errors;
        Measurement { stable, canary }
    }
}

pub fn parse_report(text: &str) -> anyhow::Result<Report> {
    // The version first: another format may not have the fields read below.
    #[derive(Deserialize)]
    struct Version {
        format_version: u32,
    }
    let v: Version =
        serde_json::from_str(text).context("loadtest's --report is not a loadtest report")?;
    if v.format_version != 1 {
        bail!(
            "loadtest's report format_version is {}; the rollout reads version 1",
            v.format_version
        );
    }
    serde_json::from_str(text).context(
        "loadtest's --report lacks what the rollout reads (per-revision errors and latency_us): rebuild loadtest",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unattributed_failures_count_against_the_canary() {
        let text = r#"{"format_version":1,"targets":[],
          "total":{"requests":1010,"errors":7,"latency_us":{"p50":1,"p90":2,"p99":3},
            "revisions":[
              {"revision":"v1","responses":900,"share":0.9,"errors":1,"latency_us":{"p50":100,"p90":200,"p99":300,"max":400}},
              {"revision":"v2","responses":100,"share":0.1,"errors":2,"latency_us":{"p50":110,"p90":210,"p99":310,"max":410}},
              {"revision":null,"responses":5,"share":0.0,"errors":2,"latency_us":{"p50":1,"p90":1,"p99":1,"max":1}}]}}"#;
        let m = parse_report(text).unwrap().total.split("v1", "v2");
        assert_eq!(
            (m.stable.requests, m.stable.errors, m.stable.p99_us),
            (900, 1, 300)
        );
        // 100 + 5 without x-revision + 5 transport errors; 2 + 2 + 2 failures.
        assert_eq!(
            (m.canary.requests, m.canary.errors, m.canary.p99_us),
            (110, 6, 310)
        );
    }
}
