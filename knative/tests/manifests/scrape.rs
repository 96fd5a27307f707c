//! Each function in the scrape table starts from its debug binary with no
//! reachable dependencies, takes a few requests, and its /metrics shows every
//! metric of its own that the dashboards query.

use std::collections::BTreeSet;

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

/// Prometheus' own linter accepts every function's `/metrics`: HELP text on
/// every metric, counter and unit naming (issue 13, item 6).
#[test]
fn promtool_accepts_every_functions_metrics() {
    let promtool = knative_manifests::tools::find(&knative_manifests::tools::PROMTOOL)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut problems = Vec::new();
    for case in scrape::every_function() {
        let binary = paths::function_binary(case.function).unwrap_or_else(|e| panic!("{e:#}"));
        let text =
            scrape::scrape(case, &binary).unwrap_or_else(|e| panic!("{}: {e:#}", case.function));
        assert!(
            text.contains("# TYPE function_info gauge"),
            "{}: /metrics shows no function_info:\n{text}",
            case.function
        );
        let complaints = scrape::promtool_check(&promtool, &text).unwrap();
        if !complaints.is_empty() {
            problems.push(format!("{}: {complaints}", case.function));
        }
    }
    assert_no_problems("promtool check metrics", &problems);
}

#[test]
fn every_function_is_linted() {
    let linted: BTreeSet<&str> = scrape::every_function().map(|c| c.function).collect();
    let all: BTreeSet<&str> = catalogue::FUNCTIONS.iter().map(|f| f.name).collect();
    assert_eq!(linted, all, "a row per function in knative/src/scrape.rs");
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
