//! The Grafana dashboards parse, query only metrics the functions export,
//! and cover what they promise.

use std::collections::BTreeSet;

use knative_manifests::{assert_no_problems, catalogue, grafana, paths};

pub fn dashboards() -> Vec<(String, serde_json::Value)> {
    let dir = paths::knative_dir().join("observability/grafana");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("knative/observability/grafana") {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&p).unwrap();
            let v = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", paths::rel(&p)));
            out.push((p.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every metric name the dashboards use (histogram series folded).
pub fn used_metrics() -> BTreeSet<String> {
    dashboards()
        .iter()
        .flat_map(|(_, d)| grafana::metric_names(d))
        .collect()
}

#[test]
fn dashboards_parse_and_are_complete() {
    let ds = dashboards();
    assert_eq!(
        ds.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["business.json", "infrastructure.json"]
    );
    let mut problems = Vec::new();
    for (name, d) in &ds {
        problems.extend(grafana::check_structure(name, d));
    }
    assert_no_problems("dashboards", &problems);
}

#[test]
fn every_queried_metric_is_exported() {
    let known = catalogue::all_metric_names();
    let mut problems = Vec::new();
    for (name, d) in dashboards() {
        for q in grafana::queries(&d) {
            let metrics = knative_manifests::promql::metric_names(&q.expr);
            if metrics.is_empty() {
                problems.push(format!("{name}: {} queries no metric: {}", q.place, q.expr));
            }
            for m in metrics {
                let base = knative_manifests::promql::base_name(&m);
                if !known.contains(base) {
                    problems.push(format!(
                        "{name}: {} uses {m}, which no function exports",
                        q.place
                    ));
                }
            }
        }
    }
    assert_no_problems("dashboard metrics", &problems);
}

#[test]
fn the_dashboards_show_what_they_promise() {
    let business: BTreeSet<String> = grafana::metric_names(&dashboards()[0].1);
    for m in [
        "ingest_cases_accepted_total",
        "writer_cases_stored_total",
        "aggregate_cases_counted_total",
    ] {
        assert!(business.contains(m), "business.json shows {m}");
    }
    let infra: BTreeSet<String> = grafana::metric_names(&dashboards()[1].1);
    for m in catalogue::COMMON_METRICS {
        assert!(infra.contains(*m), "infrastructure.json shows {m}");
    }
    let text = serde_json::to_string(&dashboards()[1].1).unwrap();
    for q in [
        "histogram_quantile(0.5,",
        "histogram_quantile(0.99,",
        "knative_revision",
    ] {
        assert!(text.contains(q), "infrastructure.json has {q}");
    }
}
