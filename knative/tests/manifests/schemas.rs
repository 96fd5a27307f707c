//! Every rendered resource of every kustomization against its upstream
//! schema, strictly (issue 13, item 7): Kubernetes 1.32's own schemas for
//! core kinds, Knative Serving's, Eventing's and the Prometheus Operator's
//! published CRDs (through cloudcoil's generated models) for theirs.

use knative_manifests::{assert_no_problems, schemas};

use crate::common;

#[test]
fn every_rendered_resource_matches_its_upstream_schema() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut total = 0;
    for b in common::bundles() {
        let file = dir
            .path()
            .join(format!("{}.yaml", b.source.replace('/', "_")));
        schemas::write_documents(&file, &b.docs).unwrap();
        files.push(file);
        total += b.docs.len();
    }
    let verdicts = schemas::validate(&files).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(verdicts.len(), total, "a verdict per rendered resource");
    let problems: Vec<String> = schemas::problems(&verdicts)
        .into_iter()
        .map(|p| p.replace(&format!("{}/", dir.path().display()), ""))
        .collect();
    assert_no_problems("upstream schemas", &problems);
    // Each family of kinds really went through its schema.
    for (kind, package) in [
        ("Service", "cloudcoil-models-knative-serving"),
        ("Trigger", "cloudcoil-models-knative-eventing"),
        ("PodMonitor", "cloudcoil-models-prometheus-operator"),
        ("NetworkPolicy", "kubernetes-validate"),
    ] {
        assert!(
            verdicts
                .iter()
                .any(|v| v.kind == kind
                    && v.schema.as_deref().is_some_and(|s| s.starts_with(package))),
            "no {kind} was checked against {package}"
        );
    }
}

#[test]
fn an_unknown_field_fails_the_schema_check() {
    let mut docs = common::bundle("overlays/broker").docs.clone();
    for d in &mut docs {
        let name = d["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match (d["kind"].as_str().unwrap_or_default(), name.as_str()) {
            ("Service", "grpc-writer") if d["apiVersion"] == "serving.knative.dev/v1" => {
                let spec = &mut d["spec"]["template"]["spec"];
                spec["containerconcurrency"] = 0.into();
                spec["containers"][0]["readinesProbe"] =
                    serde_yaml::from_str("{httpGet: {path: /readyz}}").unwrap();
            }
            ("Trigger", _) => {
                d["spec"]["filter"]["attribute"] = serde_yaml::from_str("{type: x}").unwrap()
            }
            ("Broker", _) => d["apiVersion"] = "eventing.knative.dev/v2".into(),
            ("NetworkPolicy", "aggregate-callers") => {
                d["spec"]["podselector"] = serde_yaml::Value::Null
            }
            _ => {}
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    schemas::write_documents(&file, &docs).unwrap();
    let problems = schemas::problems(&schemas::validate(&[file]).unwrap());
    for needle in [
        "'containerconcurrency' was unexpected",
        "'readinesProbe' was unexpected",
        "'attribute' was unexpected",
        "podselector",
        "Broker covid-realtime (eventing.knative.dev/v2): no-schema",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "expected {needle:?} in {problems:#?}"
        );
    }
}
