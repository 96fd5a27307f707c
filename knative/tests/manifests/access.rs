//! No deployed write endpoint is open by accident (issue 13, item 4): in every
//! overlay, each function that receives writes has a credential from a
//! non-optional Secret key (or says `ALLOW_OPEN_WRITES=true` on purpose, and
//! never for a public ingest), and a NetworkPolicy that admits only Knative's
//! data plane and Prometheus.

use knative_manifests::bundle::{Bundle, function_of};
use knative_manifests::env::{Source, effective_env};
use knative_manifests::{Problems, assert_no_problems};

use crate::common;

/// Functions whose routes accept writes, with the variable that holds their credential.
const WRITE_RECEIVERS: &[(&str, &str)] = &[
    ("ingest", "INGEST_TOKEN"),
    ("grpc-writer", "INTERNAL_TOKEN"),
    ("redis-sub", "INTERNAL_TOKEN"),
    ("aggregate", "INTERNAL_TOKEN"),
];

/// Namespaces whose pods may call a function's pod: the activator and
/// autoscaler, and net-contour's envoys (the external one for public Services only).
const DATA_PLANE: &[&str] = &["knative-serving", "contour-internal"];
const PUBLIC_ENVOY: &str = "contour-external";

fn is_public(b: &Bundle, service: &str) -> bool {
    b.service(service).is_some_and(|s| {
        !s.metadata
            .labels
            .contains_key("networking.knative.dev/visibility")
    })
}

/// What is wrong with the callers a NetworkPolicy peer admits, if anything.
fn peer_problem(peer: &serde_yaml::Value, public: bool) -> Option<String> {
    let ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].as_str();
    let pod = peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"].as_str();
    match (ns, pod) {
        (Some(ns), None) if DATA_PLANE.contains(&ns) => None,
        (Some(PUBLIC_ENVOY), None) if public => None,
        (Some(PUBLIC_ENVOY), None) => {
            Some("admits contour-external, but the Service is cluster-local".into())
        }
        // Prometheus, wherever it runs: only on the scraped ports (checked by the caller).
        (None, Some("prometheus")) => None,
        _ => Some(format!(
            "admits {peer:?}, which is neither Knative's data plane nor Prometheus"
        )),
    }
}

fn check(b: &Bundle) -> Problems {
    let mut p = Problems::new();
    let config_maps = b.config_maps();
    for s in b.services() {
        let name = &s.metadata.name;
        let function = function_of(s).unwrap_or_default();
        let Some((_, credential)) = WRITE_RECEIVERS.iter().find(|(f, _)| *f == function) else {
            continue;
        };
        let public = is_public(b, name);
        let env = effective_env(s, &config_maps, &mut Vec::new());
        let allow_open = env.get("ALLOW_OPEN_WRITES") == Some(&Source::Literal("true".to_owned()));
        match env.get(*credential) {
            Some(Source::Secret { optional: false, .. }) if !allow_open => {}
            Some(Source::Secret { optional: true, .. }) => p.push(format!(
                "Service {name}: {credential}'s secretKeyRef is optional: a Secret without the key would start it open"
            )),
            Some(_) if !allow_open => p.push(format!(
                "Service {name}: {credential} must come from the Secret (secretKeyRef), never inline"
            )),
            Some(_) => p.push(format!(
                "Service {name}: ALLOW_OPEN_WRITES=true beside {credential}: choose one"
            )),
            None if allow_open && public => p.push(format!(
                "Service {name} is public: it may not be open (ALLOW_OPEN_WRITES=true); give it {credential}"
            )),
            None if allow_open => {}
            None => p.push(format!(
                "Service {name}: no {credential} and no ALLOW_OPEN_WRITES=true: it would refuse to start on a cluster"
            )),
        }
        let policies: Vec<_> = b
            .of_kind("NetworkPolicy")
            .filter(|np| {
                np["spec"]["podSelector"]["matchLabels"]["serving.knative.dev/service"]
                    == name.as_str()
            })
            .collect();
        if policies.is_empty() {
            p.push(format!(
                "Service {name} receives writes but no NetworkPolicy selects its pods (serving.knative.dev/service: {name})"
            ));
        }
        for np in policies {
            let np_name = knative_manifests::yaml::name_of(np);
            let types = np["spec"]["policyTypes"].as_sequence();
            if !types.is_some_and(|t| t.iter().any(|x| x == "Ingress")) {
                p.push(format!(
                    "NetworkPolicy {np_name}: policyTypes must include Ingress"
                ));
            }
            for rule in np["spec"]["ingress"].as_sequence().into_iter().flatten() {
                let peers = rule["from"].as_sequence().filter(|f| !f.is_empty());
                let Some(peers) = peers else {
                    p.push(format!(
                        "NetworkPolicy {np_name}: a rule without `from` admits every pod"
                    ));
                    continue;
                };
                for peer in peers {
                    if let Some(why) = peer_problem(peer, public) {
                        p.push(format!("NetworkPolicy {np_name}: {why}"));
                    }
                    let prometheus = peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                        == "prometheus";
                    let ports: Vec<_> = rule["ports"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p["port"].as_u64())
                        .collect();
                    if prometheus
                        && (ports.is_empty() || ports.iter().any(|p| ![8080, 9091].contains(p)))
                    {
                        p.push(format!("NetworkPolicy {np_name}: Prometheus only on the scraped ports 8080 and 9091, not {ports:?}"));
                    }
                }
            }
        }
    }
    p
}

#[test]
fn every_write_receiver_restricts_its_callers_in_every_overlay() {
    let mut problems = Vec::new();
    for b in common::overlays() {
        problems.extend(check(b).into_iter().map(|m| format!("{}: {m}", b.source)));
    }
    assert_no_problems("write receivers", &problems);
}

#[test]
fn the_caller_check_catches_an_open_receiver() {
    let default = common::bundle("overlays/default");
    let mut docs: Vec<_> = default
        .docs
        .iter()
        .filter(|d| !(d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == "aggregate-callers"))
        .cloned()
        .collect();
    for d in &mut docs {
        let name = d["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if d["kind"] == "Service" && name == "ingest-grpc" {
            let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_sequence_mut()
                .unwrap();
            for e in env.iter_mut().filter(|e| e["name"] == "INGEST_TOKEN") {
                e["valueFrom"]["secretKeyRef"]["optional"] = true.into();
            }
        }
        if d["kind"] == "Service" && name == "ingest-redis" {
            let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_sequence_mut()
                .unwrap();
            env.retain(|e| e["name"] != "INGEST_TOKEN");
            env.push(serde_yaml::from_str("{name: ALLOW_OPEN_WRITES, value: 'true'}").unwrap());
        }
        if d["kind"] == "NetworkPolicy" && name == "grpc-writer-callers" {
            d["spec"]["ingress"][0]["from"] = serde_yaml::Value::Sequence(vec![]);
        }
    }
    let broken = Bundle::new("broken".into(), default.dir.clone(), docs).unwrap();
    let p = check(&broken);
    for needle in [
        "Service aggregate receives writes but no NetworkPolicy",
        "Service ingest-grpc: INGEST_TOKEN's secretKeyRef is optional",
        "Service ingest-redis is public: it may not be open",
        "NetworkPolicy grpc-writer-callers: a rule without `from` admits every pod",
    ] {
        assert!(
            p.iter().any(|m| m.contains(needle)),
            "expected {needle:?} in {p:#?}"
        );
    }
}
