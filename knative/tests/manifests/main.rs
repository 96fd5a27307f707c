//! The offline checks of knative/, one module per concern. They need
//! `kubectl` (for `kubectl kustomize`), `shellcheck`, and the workspace's
//! debug binaries (`cargo build --bins`); a missing one fails with the
//! command that provides it.

mod common;

mod access;
mod dashboards;
mod dockerfile;
mod env;
mod eventing;
mod files;
mod ingress;
mod kustomizations;
mod platform;
mod readme;
mod rollout_script;
mod schemas;
mod scrape;
mod services;
mod stores;
mod traffic;
