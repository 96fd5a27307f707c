//! Results for people (a table on stdout) and for programs (`--report`
//! JSON, `--csv` Locust-style stats). Field names of the JSON report are
//! stable; they are listed in the README.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use comfy_table::{CellAlignment, Table, presets};
use serde::Serialize;

use crate::run::{Model, Outcome, Plan};
use crate::stats::{RevisionShare, Stats};
use crate::threshold::{Threshold, Verdict, per_second};
use crate::units::format_micros;

/// Version of the report format; bumped only on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format_version: u32,
    /// When the run started, Unix time in milliseconds.
    pub started_at_unix_ms: u64,
    /// From the first request to the last response, in seconds.
    pub duration_s: f64,
    /// True when Ctrl-C ended the run early.
    pub interrupted: bool,
    pub model: ModelReport,
    /// Cases in each request body.
    pub cases_per_request: u64,
    pub content_type: String,
    pub targets: Vec<TargetReport>,
    /// All targets together.
    pub total: Summary,
    pub thresholds: Vec<Verdict>,
    /// False when any threshold failed.
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelReport {
    Closed { users: u32, spawn_rate: Option<f64> },
    Open { rate: f64, max_in_flight: u32 },
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub name: String,
    pub url: String,
    /// The Host header sent.
    pub host: String,
    #[serde(flatten)]
    pub summary: Summary,
}

/// The numbers of one target, or of all together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Completed requests: with a response or a transport error.
    pub requests: u64,
    /// Requests that got an HTTP response (any status).
    pub responses: u64,
    /// Non-2xx responses plus transport errors.
    pub errors: u64,
    /// `errors / requests`, 0..=1.
    pub error_rate: f64,
    pub cases_sent: u64,
    /// Sum of `accepted` in 2xx response bodies.
    pub cases_accepted: u64,
    pub requests_per_s: f64,
    pub cases_accepted_per_s: f64,
    /// Response body bytes received.
    pub body_bytes: u64,
    /// Latency of requests with a response, in microseconds.
    pub latency_us: Latency,
    /// Responses per HTTP status code ("202": n).
    pub status: BTreeMap<String, u64>,
    /// Requests without a response, per reason ("connect_refused": n).
    pub transport_errors: BTreeMap<String, u64>,
    /// Responses per `x-revision` header, largest share first.
    pub revisions: Vec<RevisionShare>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p66: u64,
    pub p75: u64,
    pub p80: u64,
    pub p90: u64,
    pub p95: u64,
    pub p98: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
}

impl Summary {
    pub fn new(s: &Stats, elapsed: Duration) -> Summary {
        let q = |p: f64| s.latency_at(p);
        Summary {
            requests: s.requests,
            responses: s.responses(),
            errors: s.errors(),
            error_rate: s.error_rate(),
            cases_sent: s.cases_sent,
            cases_accepted: s.cases_accepted,
            requests_per_s: per_second(s.requests, elapsed),
            cases_accepted_per_s: per_second(s.cases_accepted, elapsed),
            body_bytes: s.body_bytes,
            latency_us: Latency {
                min: s.latency_min(),
                mean: s.latency_mean(),
                p50: q(0.50),
                p66: q(0.66),
                p75: q(0.75),
                p80: q(0.80),
                p90: q(0.90),
                p95: q(0.95),
                p98: q(0.98),
                p99: q(0.99),
                p999: q(0.999),
                p9999: q(0.9999),
                max: s.latency_max(),
            },
            status: s
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            transport_errors: s
                .transport_errors
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), *v))
                .collect(),
            revisions: s.revision_shares(),
        }
    }
}

impl Report {
    /// Summarizes a finished run and checks the thresholds.
    pub fn new(
        plan: &Plan,
        outcome: &Outcome,
        thresholds: &[Threshold],
        started_at_unix_ms: u64,
    ) -> Report {
        let mut total = Stats::default();
        for s in &outcome.per_target {
            total.merge(s);
        }
        let thresholds: Vec<Verdict> = thresholds
            .iter()
            .map(|t| {
                let stats = match &t.target {
                    Some(name) => {
                        let i = plan.targets.iter().position(|x| &x.name == name);
                        &outcome.per_target
                            [i.expect("threshold targets are checked before the run")]
                    }
                    None => &total,
                };
                t.evaluate(stats, outcome.elapsed)
            })
            .collect();
        Report {
            format_version: FORMAT_VERSION,
            started_at_unix_ms,
            duration_s: outcome.elapsed.as_secs_f64(),
            interrupted: outcome.interrupted,
            model: match plan.model {
                Model::Closed { users, spawn_rate } => ModelReport::Closed { users, spawn_rate },
                Model::Open {
                    rate,
                    max_in_flight,
                } => ModelReport::Open {
                    rate,
                    max_in_flight,
                },
            },
            cases_per_request: plan.pool.cases_per_body,
            content_type: plan
                .pool
                .content_type
                .to_str()
                .unwrap_or_default()
                .to_owned(),
            targets: plan
                .targets
                .iter()
                .zip(&outcome.per_target)
                .map(|(t, s)| TargetReport {
                    name: t.name.clone(),
                    url: t.url.clone(),
                    host: t.host.to_str().unwrap_or_default().to_owned(),
                    summary: Summary::new(s, outcome.elapsed),
                })
                .collect(),
            total: Summary::new(&total, outcome.elapsed),
            passed: thresholds.iter().all(|v| !v.failed),
            thresholds,
        }
    }

    /// Rows of (name, summary): each target, then "total" when there are several.
    fn rows(&self) -> Vec<(&str, &Summary)> {
        let mut rows: Vec<_> = self
            .targets
            .iter()
            .map(|t| (t.name.as_str(), &t.summary))
            .collect();
        if self.targets.len() > 1 {
            rows.push(("total", &self.total));
        }
        rows
    }

    /// The tables printed at the end of a run.
    pub fn tables(&self) -> String {
        let mut main = new_table([
            "target",
            "requests",
            "errors",
            "cases sent",
            "accepted",
            "req/s",
            "min",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
        ]);
        for (name, s) in self.rows() {
            let l = &s.latency_us;
            let mut row = vec![
                name.to_owned(),
                s.requests.to_string(),
                format!("{} ({:.2}%)", s.errors, s.error_rate * 100.0),
                s.cases_sent.to_string(),
                s.cases_accepted.to_string(),
                format!("{:.1}", s.requests_per_s),
            ];
            row.extend(
                [l.min, l.p50, l.p90, l.p99, l.p999, l.max].map(|us| format_micros(us as f64)),
            );
            main.add_row(row);
        }
        let mut outcomes = new_table(["target", "outcome", "count", "share"]);
        let mut revisions =
            new_table(["target", "revision", "responses", "share", "errors", "p99"]);
        for (name, s) in self.rows() {
            let statuses = s.status.iter().map(|(k, v)| (format!("HTTP {k}"), *v));
            let errors = s.transport_errors.iter().map(|(k, v)| (k.clone(), *v));
            for (what, n) in statuses.chain(errors) {
                outcomes.add_row(vec![
                    name.to_owned(),
                    what,
                    n.to_string(),
                    percent(n, s.requests),
                ]);
            }
            for r in &s.revisions {
                let rev = r
                    .revision
                    .clone()
                    .unwrap_or_else(|| "(no x-revision header)".into());
                revisions.add_row(vec![
                    name.to_owned(),
                    rev,
                    r.responses.to_string(),
                    format!("{:.2}%", r.share * 100.0),
                    r.errors.to_string(),
                    format_micros(r.latency_us.p99 as f64),
                ]);
            }
        }
        let mut out = format!("{main}\n{outcomes}\n");
        if self.total.responses > 0 {
            out.push_str(&format!("{revisions}\n"));
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("the report always serializes");
        std::fs::write(path, json)
            .with_context(|| format!("cannot write the report to {}", path.display()))
    }

    /// Writes `PREFIX_stats.csv`; returns its path.
    pub fn write_csv(&self, prefix: &Path) -> anyhow::Result<PathBuf> {
        let mut name = prefix.as_os_str().to_owned();
        name.push("_stats.csv");
        let path = PathBuf::from(name);
        let mut w = csv::Writer::from_path(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        w.write_record(CSV_HEADER)?;
        for row in self.csv_rows() {
            w.write_record(&row)?;
        }
        w.flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    /// Locust's `_stats.csv` rows: one per target, then `Aggregated`.
    /// Times are in milliseconds (with microsecond decimals).
    pub fn csv_rows(&self) -> Vec<Vec<String>> {
        let elapsed = self.duration_s;
        let mut rows: Vec<Vec<String>> = self
            .targets
            .iter()
            .map(|t| csv_row("POST", &t.name, &t.summary, elapsed))
            .collect();
        rows.push(csv_row("", "Aggregated", &self.total, elapsed));
        rows
    }
}

pub const CSV_HEADER: [&str; 22] = [
    "Type",
    "Name",
    "Request Count",
    "Failure Count",
    "Median Response Time",
    "Average Response Time",
    "Min Response Time",
    "Max Response Time",
    "Average Content Size",
    "Requests/s",
    "Failures/s",
    "50%",
    "66%",
    "75%",
    "80%",
    "90%",
    "95%",
    "98%",
    "99%",
    "99.9%",
    "99.99%",
    "100%",
];

fn csv_row(kind: &str, name: &str, s: &Summary, elapsed_s: f64) -> Vec<String> {
    let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
    let rate = |n: u64| {
        if elapsed_s > 0.0 {
            format!("{:.3}", n as f64 / elapsed_s)
        } else {
            "0.000".into()
        }
    };
    let l = &s.latency_us;
    let avg_size = if s.responses > 0 {
        s.body_bytes as f64 / s.responses as f64
    } else {
        0.0
    };
    let mut row = vec![
        kind.to_owned(),
        name.to_owned(),
        s.requests.to_string(),
        s.errors.to_string(),
        ms(l.p50),
        format!("{:.3}", l.mean / 1000.0),
        ms(l.min),
        ms(l.max),
        format!("{avg_size:.2}"),
        rate(s.requests),
        rate(s.errors),
    ];
    row.extend(
        [
            l.p50, l.p66, l.p75, l.p80, l.p90, l.p95, l.p98, l.p99, l.p999, l.p9999, l.max,
        ]
        .map(ms),
    );
    row
}

fn new_table<const N: usize>(header: [&str; N]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    for i in 1..N {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

fn percent(n: u64, of: u64) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{:.2}%", n as f64 * 100.0 / of as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Response, TransportError};

    fn summary() -> Summary {
        let mut s = Stats::default();
        let ok = Response {
            status: 202,
            revision: Some("rev-a"),
            accepted: 2,
            body_bytes: 30,
        };
        for us in [1_000, 2_000, 3_000] {
            s.record_response(Duration::from_micros(us), 2, ok);
        }
        s.record_response(
            Duration::from_micros(1_500),
            2,
            Response {
                status: 503,
                accepted: 0,
                body_bytes: 50,
                ..ok
            },
        );
        s.record_error(2, TransportError::ConnectRefused);
        Summary::new(&s, Duration::from_secs(2))
    }

    #[test]
    fn summary_of_known_stats() {
        let s = summary();
        assert_eq!(
            (
                s.requests,
                s.responses,
                s.errors,
                s.cases_sent,
                s.cases_accepted
            ),
            (5, 4, 2, 10, 6)
        );
        assert_eq!(s.requests_per_s, 2.5);
        assert_eq!(s.cases_accepted_per_s, 3.0);
        assert_eq!(
            (s.latency_us.min, s.latency_us.p50, s.latency_us.max),
            (1_000, 1_500, 3_000)
        );
        assert_eq!(
            s.status,
            BTreeMap::from([("202".into(), 3), ("503".into(), 1)])
        );
        assert_eq!(
            s.transport_errors,
            BTreeMap::from([("connect_refused".into(), 1)])
        );
        assert_eq!(s.revisions[0].responses, 4);
    }

    #[test]
    fn csv_row_has_locust_columns_in_milliseconds() {
        let row = csv_row("POST", "grpc", &summary(), 2.0);
        assert_eq!(row.len(), CSV_HEADER.len());
        let get = |col: &str| row[CSV_HEADER.iter().position(|h| *h == col).unwrap()].as_str();
        assert_eq!(get("Type"), "POST");
        assert_eq!(get("Name"), "grpc");
        assert_eq!(get("Request Count"), "5");
        assert_eq!(get("Failure Count"), "2");
        assert_eq!(get("Median Response Time"), "1.500");
        assert_eq!(get("Average Response Time"), "1.875");
        assert_eq!(get("Min Response Time"), "1.000");
        assert_eq!(get("Max Response Time"), "3.000");
        assert_eq!(get("Average Content Size"), "35.00");
        assert_eq!(get("Requests/s"), "2.500");
        assert_eq!(get("Failures/s"), "1.000");
        assert_eq!(get("50%"), "1.500");
        assert_eq!(get("100%"), "3.000");
        assert_eq!(get("99.99%"), "3.000");
    }
}
