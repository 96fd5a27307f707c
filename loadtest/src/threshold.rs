//! Pass/fail thresholds, k6-style but written as the failure condition:
//! `--fail-if 'p99>50ms'` fails the run when the p99 latency is over 50ms.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::stats::Stats;
use crate::units::{format_micros, parse_duration};

/// One `--fail-if` expression: `[TARGET:]METRIC OP VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The expression as written.
    pub expr: String,
    /// Checked on this target only; `None` means all targets together.
    pub target: Option<String>,
    pub metric: Metric,
    pub op: Op,
    /// In the metric's unit: µs for latencies, a count or a 0..=1 rate for
    /// errors, requests/s for rps.
    pub limit: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// Latency percentile, e.g. 99.9 for p999.
    Percentile(f64),
    MinLatency,
    MaxLatency,
    MeanLatency,
    /// Number of failed requests (non-2xx or transport error).
    Errors,
    /// Failed requests over all requests.
    ErrorRate,
    RequestsPerSecond,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
        }
    }
}

/// The outcome of one threshold, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The expression as written.
    pub expr: String,
    /// The target it was checked on; `null` for all targets together.
    pub target: Option<String>,
    /// The measured value, in the metric's unit (µs, count, 0..=1 rate, req/s).
    pub observed: f64,
    /// The measured value for people, e.g. "73.2ms" or "0.25%".
    pub observed_text: String,
    /// True when the failure condition held.
    pub failed: bool,
}

const HELP: &str = "write [TARGET:]METRIC OP VALUE, e.g. 'p99>50ms', 'errors>0.1%', 'rps<1000', 'grpc:p50>5ms'; \
                    metrics: p50 p90 p95 p99 p999 (any pNN) min max avg errors rps; OP: > >= < <=";

impl Threshold {
    pub fn parse(raw: &str) -> Result<Threshold, String> {
        let expr = raw.trim();
        let bad = |why: String| format!("bad --fail-if {raw:?}: {why}; {HELP}");
        let op_at = expr
            .find(['<', '>'])
            .ok_or_else(|| bad("no comparison (< or >)".into()))?;
        let (lhs, rest) = expr.split_at(op_at);
        let (op, value) = if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix('>') {
            (Op::Gt, v)
        } else {
            (Op::Lt, &rest[1..])
        };
        let (target, metric_name) = match lhs.split_once(':') {
            Some((t, m)) if !t.trim().is_empty() => (Some(t.trim().to_owned()), m.trim()),
            Some(_) => return Err(bad("empty target name before ':'".into())),
            None => (None, lhs.trim()),
        };
        let value = value.trim();
        let metric = parse_metric(metric_name).map_err(bad)?;
        let (metric, limit) = match metric {
            Metric::Percentile(_)
            | Metric::MinLatency
            | Metric::MaxLatency
            | Metric::MeanLatency => {
                let d = parse_duration(value)
                    .map_err(|e| bad(format!("{metric_name} needs a duration: {e}")))?;
                (metric, d.as_secs_f64() * 1e6)
            }
            Metric::Errors | Metric::ErrorRate => match value.strip_suffix('%') {
                Some(pct) => (Metric::ErrorRate, number(pct.trim()).map_err(bad)? / 100.0),
                None => (Metric::Errors, number(value).map_err(bad)?),
            },
            Metric::RequestsPerSecond => (metric, number(value).map_err(bad)?),
        };
        Ok(Threshold {
            expr: expr.to_owned(),
            target,
            metric,
            op,
            limit,
        })
    }

    /// The metric's value on `stats` gathered over `elapsed`.
    pub fn observe(&self, stats: &Stats, elapsed: Duration) -> f64 {
        match self.metric {
            Metric::Percentile(p) => stats.latency_at(p / 100.0) as f64,
            Metric::MinLatency => stats.latency_min() as f64,
            Metric::MaxLatency => stats.latency_max() as f64,
            Metric::MeanLatency => stats.latency_mean(),
            Metric::Errors => stats.errors() as f64,
            Metric::ErrorRate => stats.error_rate(),
            Metric::RequestsPerSecond => per_second(stats.requests, elapsed),
        }
    }

    /// Checks the threshold on `stats`.
    pub fn evaluate(&self, stats: &Stats, elapsed: Duration) -> Verdict {
        let observed = self.observe(stats, elapsed);
        Verdict {
            expr: self.expr.clone(),
            target: self.target.clone(),
            observed,
            observed_text: self.metric.format(observed),
            failed: self.op.holds(observed, self.limit),
        }
    }
}

impl Metric {
    fn format(self, v: f64) -> String {
        match self {
            Metric::Percentile(_)
            | Metric::MinLatency
            | Metric::MaxLatency
            | Metric::MeanLatency => format_micros(v),
            Metric::Errors => format!("{v:.0}"),
            Metric::ErrorRate => format!("{:.3}%", v * 100.0),
            Metric::RequestsPerSecond => format!("{v:.1} req/s"),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = self
            .target
            .as_deref()
            .map(|t| format!(" on {t}"))
            .unwrap_or_default();
        let state = if self.failed { "FAILED" } else { "passed" };
        write!(
            f,
            "{state}: {}{scope} (measured {})",
            self.expr, self.observed_text
        )
    }
}

/// Requests per second; 0 for an empty run.
pub fn per_second(n: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

fn parse_metric(name: &str) -> Result<Metric, String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "min" => Metric::MinLatency,
        "max" | "p100" => Metric::MaxLatency,
        "avg" | "mean" => Metric::MeanLatency,
        "errors" | "error" | "failures" => Metric::Errors,
        "rps" => Metric::RequestsPerSecond,
        p if p.starts_with('p') && p.len() > 1 => Metric::Percentile(percentile(&p[1..])?),
        "" => return Err("no metric before the comparison".into()),
        other => return Err(format!("unknown metric {other:?}")),
    })
}

/// `50` -> 50, `999` -> 99.9, `9999` -> 99.99, `99.9` -> 99.9: digits after
/// the first two are decimals, as in the usual p999 spelling.
fn percentile(digits: &str) -> Result<f64, String> {
    let value = if digits.contains('.') || digits.len() <= 2 {
        digits.parse::<f64>().ok()
    } else {
        format!("{}.{}", &digits[..2], &digits[2..])
            .parse::<f64>()
            .ok()
    };
    match value {
        Some(v)
            if v > 0.0 && v < 100.0 && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.') =>
        {
            Ok(v)
        }
        _ => Err(format!(
            "p{digits} is not a percentile; use p50, p90, p99, p999..."
        )),
    }
}

fn number(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{raw:?} is not a non-negative number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Response, TransportError};

    fn t(s: &str) -> Threshold {
        Threshold::parse(s).unwrap()
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(
            (t("p99>50ms").metric, t("p99>50ms").op, t("p99>50ms").limit),
            (Metric::Percentile(99.0), Op::Gt, 50_000.0)
        );
        assert_eq!(t("p999 > 1s").metric, Metric::Percentile(99.9));
        assert_eq!(t("p99.9>1s").metric, Metric::Percentile(99.9));
        assert_eq!(t("p9999>1s").metric, Metric::Percentile(99.99));
        assert_eq!(t("p50>=2ms").op, Op::Ge);
        assert_eq!(t("max<=250us").limit, 250.0);
        let e = t("errors>0.1%");
        assert_eq!(e.metric, Metric::ErrorRate);
        assert!((e.limit - 0.001).abs() < 1e-12);
        assert_eq!(
            (t("errors>0").metric, t("errors>0").limit),
            (Metric::Errors, 0.0)
        );
        let r = t("rps<1000");
        assert_eq!(
            (r.metric, r.op, r.limit, r.target),
            (Metric::RequestsPerSecond, Op::Lt, 1000.0, None)
        );
        assert_eq!(t("grpc:p50>5ms").target.as_deref(), Some("grpc"));
    }

    #[test]
    fn refuses_with_a_reason() {
        for (raw, why) in [
            ("p99 50ms", "no comparison"),
            ("p99>50", "needs a duration"),
            ("p0>1ms", "not a percentile"),
            ("p1x>1ms", "not a percentile"),
            ("latency>1ms", "unknown metric"),
            (">1ms", "no metric"),
            ("rps<lots", "not a non-negative number"),
            (":p99>1ms", "empty target"),
        ] {
            let e = Threshold::parse(raw).unwrap_err();
            assert!(e.contains(why), "{raw}: {e}");
            assert!(e.contains("e.g. 'p99>50ms'"), "{raw}: {e}");
        }
    }

    fn sample() -> Stats {
        // 98 fast 202s, one slow 202, one 503 and one refused connection.
        let mut s = Stats::default();
        let ok = Response {
            status: 202,
            revision: None,
            accepted: 1,
            body_bytes: 20,
        };
        for _ in 0..98 {
            s.record_response(Duration::from_micros(1_000), 1, ok);
        }
        s.record_response(Duration::from_millis(64), 1, ok);
        s.record_response(
            Duration::from_micros(1_000),
            1,
            Response { status: 503, ..ok },
        );
        s.record_error(1, TransportError::ConnectRefused);
        s
    }

    #[test]
    fn evaluates_on_known_stats() {
        let s = sample();
        let secs = Duration::from_secs(2);
        let failed = |e: &str| t(e).evaluate(&s, secs).failed;
        assert!(!failed("p50>1ms"), "p50 is exactly 1ms");
        assert!(failed("p50>=1ms"));
        assert!(failed("p999>50ms"));
        assert!(!failed("p99>50ms"), "only 1 of 100 responses is slow");
        assert!(failed("max>50ms"));
        assert!(failed("errors>0"));
        assert!(!failed("errors>2"));
        assert!(failed("errors>1.9%"), "2 of 101 is 1.98%");
        assert!(!failed("errors>2%"));
        assert!(failed("rps<51"), "101 requests in 2s");
        assert!(!failed("rps<50"));
        let v = t("p999>50ms").evaluate(&s, secs);
        assert_eq!(v.observed_text, "64.0ms");
        assert_eq!(v.to_string(), "FAILED: p999>50ms (measured 64.0ms)");
        assert_eq!(t("errors>1%").evaluate(&s, secs).observed_text, "1.980%");
    }
}
