//! Runs the project's load generator and reads its JSON report; reads
//! wrk's summary for the suites that compare against wrk.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// The fields of `loadtest --report` the benchmarks use.
#[derive(Debug, Clone, Deserialize)]
pub struct Report {
    pub duration_s: f64,
    pub total: Summary,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Summary {
    pub requests: u64,
    pub errors: u64,
    pub cases_accepted: u64,
    pub requests_per_s: f64,
    pub cases_accepted_per_s: f64,
    pub latency_us: Latency,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
}

pub struct Loadtest {
    pub bin: PathBuf,
    pub dir: PathBuf,
}

impl Loadtest {
    /// Runs `loadtest <args> --quiet --report <tmp>` and returns the report.
    pub fn run(&self, args: &[String]) -> anyhow::Result<Report> {
        let report = self.dir.join(format!(
            "report-{}.json",
            std::process::id() as u64 * 1000 + rand_suffix()
        ));
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--quiet")
            .arg("--report")
            .arg(&report)
            .output()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "loadtest {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let r = std::fs::read(&report)
            .with_context(|| format!("loadtest wrote no report at {}", report.display()))?;
        let _ = std::fs::remove_file(&report);
        Ok(serde_json::from_slice(&r)?)
    }

    /// The arguments of one run: `secs` long, against `target`
    /// (`NAME=URL`), on one generator thread, plus `extra` (the load model).
    pub fn args(secs: u64, target: &str, extra: &[&str]) -> Vec<String> {
        let duration = format!("{secs}s");
        [
            "--duration",
            &duration,
            "--target",
            target,
            "--threads",
            "1",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    }

    /// The command line a person can paste to reproduce a run.
    pub fn command(args: &[String]) -> String {
        format!("target/release/loadtest {}", args.join(" "))
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The `Requests/sec:` figure of wrk's summary output.
pub fn wrk_requests_per_sec(stdout: &str) -> anyhow::Result<f64> {
    stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("Requests/sec:")
                .map(|v| v.trim().parse::<f64>())
        })
        .context("wrk printed no Requests/sec")?
        .map_err(Into::into)
}

#[cfg(test)]
mod wrk_tests {
    #[test]
    fn reads_the_requests_per_second_line() {
        let out = "Running 1s test @ http://127.0.0.1:1/\n  50 connections\nRequests/sec:   1234.56\nTransfer/sec:      1.00MB\n";
        assert_eq!(super::wrk_requests_per_sec(out).unwrap(), 1234.56);
        assert!(super::wrk_requests_per_sec("no summary").is_err());
    }
}
