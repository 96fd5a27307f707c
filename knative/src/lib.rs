//! Offline checks of everything under `knative/`: no cluster, no Docker
//! engine, real tools (`kubectl kustomize`, `shellcheck`, `promtool`,
//! `redis-server`, the function binaries) and upstream schemas
//! ([`schemas`]: whether a resource is valid at all). The library holds this
//! project's own rules (the contract, the environment, the traffic
//! arithmetic, the wiring) and the few fields they read; the tests in
//! `tests/manifests/` run them over the repository, one module per concern.
//!
//! [`rehearsal`] goes one step further for rollouts: the traffic blocks of
//! the canary and blue/green overlays served by a real nginx in front of
//! local revisions, measured with the load generator (`make rollout-demo`).
//!
//! The facts the checks hold the manifests to (functions, their environment
//! with defaults, their metrics, the CloudEvent types) are in [`catalogue`];
//! the environment comes from each function's own declaration.

pub mod bundle;
pub mod catalogue;
pub mod dockerfile;
pub mod env;
pub mod grafana;
pub mod kustomize;
pub mod paths;
pub mod promql;
pub mod rehearsal;
pub mod resources;
pub mod rollout;
pub mod schemas;
pub mod scrape;
pub mod services;
pub mod tools;
pub mod traffic;
pub mod workspace;
pub mod yaml;

/// A list of problems, each a sentence naming the file or resource and what
/// to change; empty when everything holds.
pub type Problems = Vec<String>;

/// Fails with every problem on its own line, or passes when there is none.
pub fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}
