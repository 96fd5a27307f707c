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
