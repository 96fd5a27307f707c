//! The canary's and stable's numbers from Prometheus: the functions' own
//! `/metrics` (`http_requests_total`, `http_request_duration_seconds`), with
//! the `knative_revision` label the PodMonitor in knative/observability
//! adds, read with PromQL over the interval just measured.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::measure::{Load, Measurement, Sample, Source};

/// Health probes and scrapes are not user traffic.
const NOT_PROBES: &str = r#"route!~"/healthz|/readyz|/metrics""#;

/// A Prometheus at `url` (`http://host:port`, optionally with a path prefix).
pub struct Prometheus {
    pub url: String,
    /// Load sent while an interval runs; without it the interval judges
    /// whatever traffic the Service has.
    pub load: Option<Load>,
    /// How long to wait after an interval for the last scrape to land.
    pub settle: Duration,
}

impl Prometheus {
    /// The PromQL of one number of one revision over `window`.
    pub fn queries(revision: &str, window: Duration) -> [(&'static str, String); 5] {
        let w = format!("{}s", window.as_secs().max(1));
        let sel = format!(r#"knative_revision="{revision}",{NOT_PROBES}"#);
        let q = |quantile: &str| {
            format!(
                "histogram_quantile({quantile}, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[{w}])))"
            )
        };
        [
            (
                "requests",
                format!("sum(increase(http_requests_total{{{sel}}}[{w}]))"),
            ),
            (
                "errors",
                format!(r#"sum(increase(http_requests_total{{{sel},status=~"5.."}}[{w}]))"#),
            ),
            ("p50", q("0.5")),
            ("p90", q("0.9")),
            ("p99", q("0.99")),
        ]
    }

    fn sample(&self, revision: &str, window: Duration) -> anyhow::Result<Sample> {
        let mut v = [0.0; 5];
        for (i, (what, q)) in Prometheus::queries(revision, window).iter().enumerate() {
            v[i] = self
                .query(q)
                .with_context(|| format!("{what} of {revision} from {}", self.url))?;
        }
        let us = |s: f64| (s * 1_000_000.0).round() as u64;
        Ok(Sample {
            requests: v[0].round() as u64,
            errors: v[1].round() as u64,
            p50_us: us(v[2]),
            p90_us: us(v[3]),
            p99_us: us(v[4]),
        })
    }

    /// `/api/v1/query?query=...`: the one value of an instant vector (0
    /// when it is empty or NaN: no requests in the window).
    pub fn query(&self, promql: &str) -> anyhow::Result<f64> {
        let body = get(&format!(
            "{}/api/v1/query?query={}",
            self.url,
            encode(promql)
        ))?;
        let json: serde_json::Value = serde_json::from_str(&body)
            .context("Prometheus answered something that is not JSON")?;
        if json["status"] != "success" {
            bail!(
                "Prometheus refused {promql}: {}",
                json["error"].as_str().unwrap_or("(no error text)")
            );
        }
        let result = json["data"]["result"]
            .as_array()
            .context("no data.result in Prometheus' answer")?;
        match result.as_slice() {
            [] => Ok(0.0),
            [one] => {
                let v: f64 = one["value"][1]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .context("a sample value that is not a number")?;
                Ok(if v.is_finite() { v } else { 0.0 })
            }
            many => bail!("{promql} gave {} series, not one", many.len()),
        }
    }
}

impl Source for Prometheus {
    fn split(
        &mut self,
        stable: &str,
        canary: &str,
        window: Duration,
    ) -> anyhow::Result<Measurement> {
        match &mut self.load {
            Some(load) => {
                load.split(stable, canary, window)?;
            }
            None => std::thread::sleep(window),
        }
        std::thread::sleep(self.settle);
        let span = window + self.settle;
        Ok(Measurement {
            stable: self.sample(stable, span)?,
            canary: self.sample(canary, span)?,
        })
    }

    fn tags(
        &mut self,
        stable_tag: &str,
        canary_tag: &str,
        window: Duration,
    ) -> anyhow::Result<Measurement> {
        match &mut self.load {
            Some(load) => load.tags(stable_tag, canary_tag, window),
            None => bail!(
                "blue/green measures green on its tag URL with the load generator: give --target"
            ),
        }
    }
}

/// A plain HTTP/1.1 GET (Prometheus' API is plain HTTP inside a cluster).
fn get(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut s = TcpStream::connect(&addr).with_context(|| format!("cannot connect to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("an HTTP answer without a header end")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    // 400 and 422 carry Prometheus' own error JSON.
    if !matches!(status, "200" | "400" | "422") {
        bail!("GET {url}: HTTP {status}");
    }
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Ok(dechunk(body));
    }
    Ok(body.to_owned())
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Percent-encoding of a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_select_the_revision_and_leave_probes_out() {
        let q = Prometheus::queries("ingest-grpc-v2", Duration::from_secs(30));
        assert_eq!(
            q[0].1,
            r#"sum(increase(http_requests_total{knative_revision="ingest-grpc-v2",route!~"/healthz|/readyz|/metrics"}[30s]))"#
        );
        assert!(q[1].1.contains(r#"status=~"5..""#));
        assert!(q[4].1.starts_with(
            "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{"
        ));
        assert_eq!(encode("a b{\"}"), "a%20b%7B%22%7D");
    }
}
