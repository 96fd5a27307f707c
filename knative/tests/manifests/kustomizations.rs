//! `kubectl kustomize` renders every kustomization (base, eventing, ingress,
//! stores, secrets, observability, platform, every overlay), the output
//! parses, and the Knative resources in it parse strictly.

use knative_manifests::assert_no_problems;

use crate::common;

#[test]
fn every_kustomization_renders_and_parses() {
    let bundles = common::bundles();
    assert_eq!(bundles.len(), common::kustomization_dirs().len());
    for b in bundles {
        assert!(!b.docs.is_empty(), "{} renders nothing", b.source);
    }
}

#[test]
fn the_overlays_render_the_whole_pipeline() {
    let mut problems = Vec::new();
    for b in common::overlays() {
        for name in [
            "ingest-grpc",
            "ingest-redis",
            "grpc-writer",
            "redis-sub",
            "aggregate",
            "dashboard-api",
        ] {
            if b.service(name).is_none() {
                problems.push(format!("{}: no Service {name}", b.source));
            }
        }
    }
    assert_no_problems("overlays", &problems);
}

#[test]
fn everything_lands_in_its_namespace() {
    let mut problems = Vec::new();
    for b in common::bundles() {
        let expected = if b.source == "knative/platform" {
            "knative-serving"
        } else {
            "covid-realtime"
        };
        for d in &b.docs {
            let (_, kind) = knative_manifests::yaml::type_of(d);
            if kind == "Namespace" {
                continue;
            }
            let ns = d["metadata"]["namespace"].as_str().unwrap_or("");
            if ns != expected {
                problems.push(format!(
                    "{}: {kind} {} is in namespace {ns:?}, not {expected}",
                    b.source,
                    knative_manifests::yaml::name_of(d)
                ));
            }
        }
    }
    assert_no_problems("namespaces", &problems);
}

#[test]
fn generated_config_has_stable_names() {
    // The Services refer to these by name (kustomize does not rewrite
    // references inside Knative Services), so no content-hash suffix.
    let secrets = common::bundle("secrets");
    assert!(
        secrets
            .of_kind("Secret")
            .any(|s| s["metadata"]["name"] == "covid-realtime-secrets")
    );
    let obs = common::bundle("observability");
    let cm = obs
        .of_kind("ConfigMap")
        .find(|c| c["metadata"]["name"] == "covid-realtime-grafana-dashboards")
        .expect("the dashboards ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    for f in ["business.json", "infrastructure.json"] {
        assert!(
            cm["data"][f]
                .as_str()
                .is_some_and(|s| s.contains("\"panels\"")),
            "{f} is in the ConfigMap"
        );
    }
}

#[test]
fn a_deprecated_kustomize_field_fails_the_render() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: v\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "resources:\n  - cm.yaml\npatchesStrategicMerge:\n  - cm.yaml\n",
    )
    .unwrap();
    let err = knative_manifests::kustomize::render(&common::kubectl(), dir.path())
        .expect_err("kustomize warns about patchesStrategicMerge");
    assert!(format!("{err:#}").contains("patches"), "{err:#}");
}
