//! Every function binary is deployed, and every Service follows the contract.

use std::collections::BTreeSet;

use knative_manifests::bundle::function_of;
use knative_manifests::{assert_no_problems, catalogue, services};

use crate::common;

#[test]
fn every_function_binary_has_a_service() {
    let binaries = common::metadata().function_binaries();
    let catalogued: BTreeSet<String> = catalogue::FUNCTIONS
        .iter()
        .map(|f| f.name.to_owned())
        .collect();
    assert_eq!(
        binaries, catalogued,
        "the binaries under functions/ and the catalogue (knative/src/catalogue.rs) must list the same functions"
    );
    let default = common::bundle("overlays/default");
    let deployed: BTreeSet<String> = default.services().filter_map(function_of).collect();
    let missing: Vec<_> = binaries.difference(&deployed).collect();
    assert!(
        missing.is_empty(),
        "function binaries with no Knative Service in overlays/default: {missing:?}"
    );
}

#[test]
fn ingest_is_deployed_twice_one_per_route() {
    let default = common::bundle("overlays/default");
    for (service, route) in [("ingest-grpc", "grpc"), ("ingest-redis", "redis")] {
        let s = default
            .service(service)
            .unwrap_or_else(|| panic!("Service {service}"));
        assert_eq!(function_of(s).as_deref(), Some("ingest"));
        let env = &s.spec.template.spec.containers[0].env;
        let value = env
            .iter()
            .find(|e| e.name == "INGEST_ROUTE")
            .and_then(|e| e.value.as_deref());
        assert_eq!(value, Some(route), "{service} sets INGEST_ROUTE={route}");
    }
    let images: BTreeSet<_> = ["ingest-grpc", "ingest-redis"]
        .iter()
        .map(|n| {
            default.service(n).unwrap().spec.template.spec.containers[0]
                .image
                .clone()
        })
        .collect();
    assert_eq!(
        images.len(),
        1,
        "both ingest Services run the same image: {images:?}"
    );
}

#[test]
fn every_service_follows_the_contract() {
    let mut problems = Vec::new();
    for b in common::bundles() {
        problems.extend(
            services::check(b)
                .into_iter()
                .map(|p| format!("{}: {p}", b.source)),
        );
    }
    assert_no_problems("Knative Services", &problems);
}

#[test]
fn grpc_writer_speaks_h2c() {
    let s = common::bundle("overlays/default")
        .service("grpc-writer")
        .expect("grpc-writer");
    assert_eq!(
        s.spec.template.spec.containers[0].ports[0].name.as_deref(),
        Some("h2c")
    );
}

#[test]
fn redis_sub_is_always_on_unless_a_source_pushes_to_it() {
    let annotation = |b: &str, k: &str| {
        common::bundle(b)
            .service("redis-sub")
            .unwrap()
            .spec
            .template
            .metadata
            .annotations
            .get(k)
            .cloned()
    };
    let stream_consumer = |b: &str| {
        common::bundle(b)
            .service("redis-sub")
            .unwrap()
            .spec
            .template
            .spec
            .containers[0]
            .env
            .iter()
            .find(|e| e.name == "STREAM_CONSUMER")
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        annotation("overlays/default", "autoscaling.knative.dev/min-scale").as_deref(),
        Some("1")
    );
    assert_eq!(stream_consumer("overlays/default").as_deref(), Some("true"));
    assert_eq!(
        annotation("overlays/redis-source", "autoscaling.knative.dev/min-scale").as_deref(),
        Some("0")
    );
    assert_eq!(
        stream_consumer("overlays/redis-source").as_deref(),
        Some("false")
    );
    assert_eq!(
        annotation("overlays/redis-source", "autoscaling.knative.dev/class"),
        None,
        "push mode scales on requests (KPA)"
    );
}

#[test]
fn only_the_entry_points_are_public() {
    let default = common::bundle("overlays/default");
    for s in default.services() {
        let local = s
            .metadata
            .labels
            .get("networking.knative.dev/visibility")
            .map(String::as_str)
            == Some("cluster-local");
        let public =
            ["ingest-grpc", "ingest-redis", "dashboard-api"].contains(&s.metadata.name.as_str());
        assert_eq!(
            local, !public,
            "Service {}: cluster-local={local}",
            s.metadata.name
        );
    }
}

#[test]
fn the_contract_check_catches_mistakes() {
    let default = common::bundle("overlays/default");
    let mut docs = default.docs.clone();
    let svc = docs
        .iter_mut()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "grpc-writer")
        .unwrap();
    svc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] = "http1".into();
    svc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] =
        false.into();
    let broken =
        knative_manifests::bundle::Bundle::new("broken".into(), default.dir.clone(), docs).unwrap();
    let p = services::check(&broken);
    assert!(p.iter().any(|m| m.contains("h2c")), "{p:?}");
    assert!(
        p.iter().any(|m| m.contains("readOnlyRootFilesystem")),
        "{p:?}"
    );
}
