//! Each function in the scrape table starts from its debug binary with no
//! reachable dependencies, takes a few requests, and its /metrics shows every
//! metric of its own that the dashboards query.

use std::collections::BTreeSet;
use std::time::Duration;

use knative_manifests::{assert_no_problems, catalogue, paths, scrape};

use crate::dashboards::used_metrics;

#[test]
fn dashboard_metrics_appear_in_a_live_scrape() {
    let used = used_metrics();
    let mut problems = Vec::new();
    for case in scrape::CASES {
        let function = catalogue::function(case.function)
            .unwrap_or_else(|| panic!("scrape case {} is not a catalogue function", case.function));
        let binary = paths::function_binary(case.function).unwrap_or_else(|e| panic!("{e:#}"));
        let exposed =
            scrape::run(case, &binary).unwrap_or_else(|e| panic!("{}: {e:#}", case.function));
        let own: BTreeSet<&str> = function.all_metrics().collect();
        for m in used.iter().filter(|m| own.contains(m.as_str())) {
            if !exposed.contains(m) {
                problems.push(format!(
                    "{}: the dashboards query {m}, which /metrics does not show",
                    case.function
                ));
            }
        }
    }
    assert_no_problems("live scrape", &problems);
}

#[test]
fn the_scrape_table_covers_ingest() {
    assert!(scrape::CASES.iter().any(|c| c.function == "ingest"));
}

/// Prometheus' own linter accepts every function's `/metrics` (HELP text on
/// every metric, counter and unit naming; issue 13, item 6), read after cases
/// went through the whole pipeline, so each function's own metrics are there:
/// every function as its own process under the local stack's supervisor, with
/// the wiring Knative would give it, real Redis and the MongoDB-compatible server.
/// Every metric the catalogue lists for a function is in its `/metrics` then.
#[tokio::test]
async fn promtool_accepts_every_functions_metrics_after_cases_flowed() {
    let promtool = knative_manifests::tools::find(&knative_manifests::tools::PROMTOOL)
        .unwrap_or_else(|e| panic!("{e}"));
    paths::function_binary("ingest").unwrap_or_else(|e| panic!("{e:#}"));
    let servers = stack::testing::servers();
    let config = stack::StackConfig {
        bin_dir: paths::debug_bin_dir(),
        redis_url: servers.redis_url.clone(),
        mongodb_uri: servers.mongodb_uri.clone(),
        database: stack::testing::unique("knative_promtool"),
        key_prefix: format!("{}:", stack::testing::unique("knative_promtool")),
        ports: stack::Ports::free().unwrap(),
        dashboard_dir: "/nonexistent".into(),
        extra_env: vec![("RUST_LOG".into(), "warn".into())],
        echo_logs: false,
    };
    let sup = stack::Supervisor::start(&config).unwrap();
    sup.wait_ready(Duration::from_secs(60)).await.unwrap();
    let http = stack::testing::http_client();
    let case = serde_json::json!({"name": "Lint", "location": "Petén", "age": 41, "infectedtype": "community", "state": "active"});
    let ingests: Vec<String> = sup
        .names()
        .into_iter()
        .filter(|n| n.starts_with("ingest"))
        .collect();
    assert!(
        ingests.len() >= 2,
        "both ingest routes run: {:?}",
        sup.names()
    );
    for ingest in &ingests {
        let resp = http
            .post(format!("{}/cases", sup.url(ingest)))
            .json(&serde_json::json!([case, case]))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            202,
            "{ingest}: {}",
            resp.text().await.unwrap()
        );
    }
    // Counted by aggregate: every hop has run (both writers, the sink, aggregate).
    let want = 2 * ingests.len() as u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let summary: serde_json::Value = http
            .get(format!("{}/api/summary", sup.url("dashboard-api")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if summary["total"].as_u64() == Some(want) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "total is {} after 60 s, expected {want}",
            summary["total"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One refused request per ingest, so its refusal counter exists too.
    for ingest in &ingests {
        let resp = http
            .post(format!("{}/cases", sup.url(ingest)))
            .json(&serde_json::json!({"name": ""}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{ingest}");
    }
    let mut problems = Vec::new();
    let mut linted = BTreeSet::new();
    // Metric names each binary's /metrics shows (over all its Services).
    let mut shown: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for name in sup.names() {
        let text = http
            .get(format!("{}/metrics", sup.url(&name)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let complaints = scrape::promtool_check(&promtool, &text).unwrap();
        if !complaints.is_empty() {
            problems.push(format!("{name}: {complaints}"));
        }
        let binary = sup.spec(&name).expect("a spec").binary.clone();
        shown
            .entry(binary.clone())
            .or_default()
            .extend(text.lines().filter_map(|l| {
                l.strip_prefix("# TYPE ")
                    .and_then(|t| t.split(' ').next())
                    .map(str::to_owned)
            }));
        linted.insert(binary);
    }
    sup.stop().await;
    // The catalogue's metrics are what the running code exports.
    for (binary, names) in &shown {
        let function = catalogue::function(binary).expect("a catalogue function");
        for m in function.all_metrics().filter(|m| !names.contains(*m)) {
            problems.push(format!("{binary}: the catalogue lists metric {m}, which its /metrics does not show after cases flowed"));
        }
    }
    assert_no_problems("promtool check metrics", &problems);
    let all: BTreeSet<String> = catalogue::FUNCTIONS
        .iter()
        .map(|f| f.name.to_owned())
        .collect();
    assert_eq!(linted, all, "every function binary was linted");
}

#[test]
fn promtool_rejects_a_metric_without_help() {
    let promtool = knative_manifests::tools::find(&knative_manifests::tools::PROMTOOL)
        .unwrap_or_else(|e| panic!("{e}"));
    let complaints = scrape::promtool_check(
        &promtool,
        "# TYPE ingest_cases_accepted_total counter\ningest_cases_accepted_total 1\n",
    )
    .unwrap();
    assert!(complaints.contains("no help text"), "{complaints}");
}
