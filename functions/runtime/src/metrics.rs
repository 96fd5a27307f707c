//! Prometheus metrics: one recorder per process, per-route HTTP metrics
//! recorded by a middleware, and the functions' own counters through the
//! `metrics` macros.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: fine-grained below 10 ms, where these functions live.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let h = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        // Histograms are folded into their buckets on upkeep; keep memory flat.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let h2 = h.clone();
            rt.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    h2.run_upkeep();
                }
            });
        }
        h
    })
}

/// Prometheus text exposition of every metric of this process.
pub fn render() -> String {
    handle().render()
}

/// Middleware: request count, errors, latency and in-flight, per route.
/// The route is the matched pattern (`/cases`, a gRPC method path), never the
/// raw URI, so label cardinality stays bounded.
pub async fn layer(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let in_flight = metrics::gauge!("http_requests_in_flight", "route" => route.clone());
    in_flight.increment(1.0);
    let start = Instant::now();
    let resp = next.run(req).await;
    in_flight.decrement(1.0);
    let status = resp.status();
    metrics::histogram!("http_request_duration_seconds", "route" => route.clone(), "method" => method.clone())
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("http_requests_total", "route" => route.clone(), "method" => method, "status" => status.as_str().to_owned())
        .increment(1);
    if status.is_server_error() {
        metrics::counter!("http_request_errors_total", "route" => route).increment(1);
    }
    resp
}
