//! Prometheus metrics: one recorder per process, per-route HTTP metrics
//! recorded by a middleware, and the functions' own counters through the
//! `metrics` macros.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use metrics::{Counter, Gauge, Histogram};
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
        describe();
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

/// HELP texts of the metrics every function exports (the runtime's own).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "http_requests_total",
        "HTTP and gRPC requests answered, by route pattern, method and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from request to response head, by route pattern and method"
    );
    describe_gauge!(
        "http_requests_in_flight",
        "Requests being handled now, by route pattern"
    );
    describe_counter!(
        "http_request_errors_total",
        "Requests answered with a 5xx status, by route pattern"
    );
    describe_gauge!(
        "function_info",
        "Always 1; labels name the Knative service, revision and configuration serving"
    );
    describe_gauge!(
        "function_start_to_listen_seconds",
        metrics::Unit::Seconds,
        "Time from process start to the port accepting connections (cold start)"
    );
    describe_counter!(
        "auth_denied_total",
        "Write requests refused for credentials, by reason (missing, invalid, scope)"
    );
    describe_counter!(
        "http_requests_rate_limited_total",
        "Requests refused with 429 by the per-client rate limit"
    );
}

/// Prometheus text exposition of every metric of this process.
pub fn render() -> String {
    handle().render()
}

/// Per-route HTTP metrics: request count, errors, latency and in-flight.
/// The route is the matched pattern (`/cases`, a gRPC method path), never the
/// raw URI, so label cardinality stays bounded. The handles are looked up in
/// the recorder once per route, method and status and then kept per worker
/// thread: a request costs a few atomic updates, not a registry lookup with
/// freshly allocated labels.
pub(crate) struct RequestMetrics {
    route: Option<MatchedPath>,
    method: Method,
    start: Instant,
    done: bool,
}

struct RouteHandles {
    route: Box<str>,
    method: Method,
    in_flight: Gauge,
    duration: Histogram,
    errors: Counter,
    by_status: Vec<(StatusCode, Counter)>,
}

thread_local! {
    static ROUTES: RefCell<Vec<RouteHandles>> = const { RefCell::new(Vec::new()) };
}

/// Methods outside the standard set share one label value.
fn method_label(m: &Method) -> Method {
    match *m {
        Method::GET
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::HEAD
        | Method::OPTIONS
        | Method::PATCH => m.clone(),
        _ => Method::from_bytes(b"OTHER").expect("a valid method token"),
    }
}

fn with_route<R>(route: &str, method: &Method, f: impl FnOnce(&mut RouteHandles) -> R) -> R {
    ROUTES.with_borrow_mut(|routes| {
        let i = match routes
            .iter()
            .position(|h| h.method == *method && &*h.route == route)
        {
            Some(i) => i,
            None => {
                let r = route.to_owned();
                routes.push(RouteHandles {
                    route: route.into(),
                    method: method.clone(),
                    in_flight: metrics::gauge!("http_requests_in_flight", "route" => r.clone()),
                    duration: metrics::histogram!("http_request_duration_seconds", "route" => r.clone(), "method" => method.as_str().to_owned()),
                    errors: metrics::counter!("http_request_errors_total", "route" => r),
                    by_status: Vec::new(),
                });
                routes.len() - 1
            }
        };
        f(&mut routes[i])
    })
}

impl RequestMetrics {
    /// Counts `req` as in flight.
    pub(crate) fn start(req: &Request) -> RequestMetrics {
        let m = RequestMetrics {
            route: req.extensions().get::<MatchedPath>().cloned(),
            method: method_label(req.method()),
            start: Instant::now(),
            done: false,
        };
        with_route(m.route(), &m.method, |h| h.in_flight.increment(1.0));
        m
    }

    fn route(&self) -> &str {
        self.route.as_ref().map_or("unmatched", |r| r.as_str())
    }

    /// Records the answer: latency, status, errors; no longer in flight.
    pub(crate) fn finish(mut self, status: StatusCode) {
        self.record(Some(status));
        self.done = true;
    }

    fn record(&self, status: Option<StatusCode>) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let route = self.route();
        with_route(route, &self.method, |h| {
            h.in_flight.decrement(1.0);
            // A request whose client went away has no answer to count.
            let Some(status) = status else { return };
            h.duration.record(elapsed);
            let counter = match h.by_status.iter().find(|(s, _)| *s == status) {
                Some((_, c)) => c,
                None => {
                    let c = metrics::counter!("http_requests_total", "route" => route.to_owned(), "method" => h.method.as_str().to_owned(), "status" => status.as_str().to_owned());
                    h.by_status.push((status, c));
                    &h.by_status.last().expect("just pushed").1
                }
            };
            counter.increment(1);
            if status.is_server_error() {
                h.errors.increment(1);
            }
        });
    }
}

impl Drop for RequestMetrics {
    /// The request was dropped before it was answered (the client left).
    fn drop(&mut self) {
        if !self.done {
            self.record(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn answered_and_abandoned_requests_are_counted_once_each() {
        handle();
        let req = || {
            Request::builder()
                .method("POST")
                .uri("/unit")
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let answered = RequestMetrics::start(&req());
        let abandoned = RequestMetrics::start(&req());
        let text = render();
        assert!(
            line(&text, r#"http_requests_in_flight{route="unmatched"} 2"#).is_some(),
            "{text}"
        );
        answered.finish(StatusCode::SERVICE_UNAVAILABLE);
        drop(abandoned);
        let text = render();
        assert!(
            line(&text, r#"http_requests_in_flight{route="unmatched"} 0"#).is_some(),
            "{text}"
        );
        assert!(
            line(
                &text,
                r#"http_requests_total{route="unmatched",method="POST",status="503"} 1"#
            )
            .is_some(),
            "{text}"
        );
        assert!(
            line(&text, r#"http_request_errors_total{route="unmatched"} 1"#).is_some(),
            "{text}"
        );
        // Methods outside the standard set share one label value.
        let odd = Request::builder()
            .method("BREW")
            .body(axum::body::Body::empty())
            .unwrap();
        RequestMetrics::start(&odd).finish(StatusCode::NOT_FOUND);
        assert!(render().contains(r#"method="OTHER",status="404"} 1"#));
    }
}
