//! The wiring: every function that sends events on gets a K_SINK from exactly
//! one SinkBinding whose sink exists; Triggers filter on the pipeline's
//! CloudEvent types and deliver to a Service that takes CloudEvents; the
//! RedisStreamSource reads the stream redis-sub would.

use knative_manifests::bundle::{Bundle, function_of};
use knative_manifests::resources::{Destination, KReference, Service};
use knative_manifests::{assert_no_problems, catalogue};

use crate::common;

/// Services that accept CloudEvents by HTTP POST /.
const EVENT_RECEIVERS: &[&str] = &["aggregate", "redis-sub"];

fn selects(subject: &KReference, s: &Service) -> bool {
    subject.kind == "Service"
        && subject.api_version == "serving.knative.dev/v1"
        && match (&subject.name, &subject.selector) {
            (Some(n), None) => *n == s.metadata.name,
            (None, Some(sel)) => {
                sel.match_expressions.is_empty()
                    && !sel.match_labels.is_empty()
                    && sel
                        .match_labels
                        .iter()
                        .all(|(k, v)| s.metadata.labels.get(k) == Some(v))
            }
            _ => false,
        }
}

/// What a destination points at, if it exists in the bundle.
fn resolve(b: &Bundle, d: &Destination) -> Result<String, String> {
    match (&d.ref_, &d.uri) {
        (Some(r), None) => {
            let name = r.name.clone().unwrap_or_default();
            let found = match (r.api_version.as_str(), r.kind.as_str()) {
                ("serving.knative.dev/v1", "Service") => b.service(&name).is_some(),
                ("eventing.knative.dev/v1", "Broker") => {
                    b.brokers().any(|x| x.metadata.name == name)
                }
                _ => false,
            };
            if found {
                Ok(format!("{} {name}", r.kind))
            } else {
                Err(format!(
                    "{} {name} ({}) is not in this overlay",
                    r.kind, r.api_version
                ))
            }
        }
        (None, Some(uri)) => Ok(uri.clone()),
        _ => Err("a destination needs exactly one of ref and uri".into()),
    }
}

fn check(b: &Bundle) -> Vec<String> {
    let mut p = Vec::new();
    for s in b.services() {
        let Some(f) = function_of(s).and_then(|f| catalogue::function(&f)) else {
            continue;
        };
        let bindings: Vec<_> = b
            .sink_bindings()
            .filter(|sb| selects(&sb.spec.subject, s))
            .collect();
        if bindings.len() > 1 {
            p.push(format!(
                "Service {} is the subject of {} SinkBindings; K_SINK would be ambiguous",
                s.metadata.name,
                bindings.len()
            ));
        }
        if f.needs_sink && bindings.is_empty() {
            p.push(format!(
                "Service {} ({}) sends events on but no SinkBinding gives it K_SINK",
                s.metadata.name, f.name
            ));
        }
    }
    for sb in b.sink_bindings() {
        if !b.services().any(|s| selects(&sb.spec.subject, s)) {
            p.push(format!(
                "SinkBinding {} selects no Service",
                sb.metadata.name
            ));
        }
        if let Err(e) = resolve(b, &sb.spec.sink) {
            p.push(format!("SinkBinding {}: sink {e}", sb.metadata.name));
        }
    }
    for t in b.triggers() {
        let name = &t.metadata.name;
        if !b.brokers().any(|br| br.metadata.name == t.spec.broker) {
            p.push(format!(
                "Trigger {name}: Broker {} is not in this overlay",
                t.spec.broker
            ));
        }
        match t.spec.filter.as_ref().and_then(|f| f.attributes.get("type")) {
            Some(ty) if catalogue::EVENT_TYPES.contains(&ty.as_str()) => {}
            Some(ty) => p.push(format!("Trigger {name}: type {ty} is not one of the pipeline's {:?}", catalogue::EVENT_TYPES)),
            None => p.push(format!("Trigger {name}: filter on the CloudEvent type, or every event reaches the subscriber")),
        }
        match resolve(b, &t.spec.subscriber) {
            Ok(_) => {
                let target = t
                    .spec
                    .subscriber
                    .ref_
                    .as_ref()
                    .and_then(|r| r.name.clone())
                    .unwrap_or_default();
                let f = b.service(&target).and_then(function_of).unwrap_or_default();
                if !EVENT_RECEIVERS.contains(&f.as_str()) {
                    p.push(format!(
                        "Trigger {name}: {target} runs {f}, which does not take CloudEvents"
                    ));
                }
            }
            Err(e) => p.push(format!("Trigger {name}: subscriber {e}")),
        }
    }
    for src in b.redis_stream_sources() {
        let name = &src.metadata.name;
        let prefix = b
            .of_kind("ConfigMap")
            .find_map(|c| c["data"]["REDIS_KEY_PREFIX"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if src.spec.stream != format!("{prefix}cases:stream") {
            p.push(format!(
                "RedisStreamSource {name}: stream {} is not {prefix}cases:stream",
                src.spec.stream
            ));
        }
        if let Err(e) = resolve(b, &src.spec.sink) {
            p.push(format!("RedisStreamSource {name}: sink {e}"));
        }
        let consumer_loop = b.service("redis-sub").and_then(|s| {
            s.spec.template.spec.containers[0]
                .env
                .iter()
                .find(|e| e.name == "STREAM_CONSUMER")
                .and_then(|e| e.value.clone())
        });
        if consumer_loop.as_deref() != Some("false") {
            p.push(format!(
                "RedisStreamSource {name}: redis-sub must run with STREAM_CONSUMER=false beside it"
            ));
        }
    }
    p
}

#[test]
fn every_overlay_is_wired() {
    let mut problems = Vec::new();
    for b in common::overlays() {
        problems.extend(check(b).into_iter().map(|p| format!("{}: {p}", b.source)));
    }
    assert_no_problems("eventing", &problems);
}

#[test]
fn the_default_wiring_is_point_to_point_and_the_broker_one_is_not() {
    let default = common::bundle("overlays/default");
    let sink = |b: &Bundle| {
        b.sink_bindings()
            .map(|sb| {
                sb.spec
                    .sink
                    .ref_
                    .as_ref()
                    .map(|r| r.kind.clone())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(sink(default), ["Service"]);
    assert_eq!(default.triggers().count(), 0);
    let broker = common::bundle("overlays/broker");
    assert_eq!(sink(broker), ["Broker"]);
    assert!(broker.triggers().any(|t| {
        t.spec
            .filter
            .as_ref()
            .and_then(|f| f.attributes.get("type"))
            .map(String::as_str)
            == Some("io.covidrealtime.case.stored.v2")
    }));
}

#[test]
fn the_wiring_check_catches_a_missing_binding() {
    let default = common::bundle("overlays/default");
    let docs: Vec<_> = default
        .docs
        .iter()
        .filter(|d| d["kind"] != "SinkBinding")
        .cloned()
        .collect();
    let broken = Bundle::new("broken".into(), default.dir.clone(), docs).unwrap();
    let p = check(&broken);
    assert!(
        p.iter()
            .any(|m| m.contains("grpc-writer") && m.contains("K_SINK")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.contains("redis-sub") && m.contains("K_SINK")),
        "{p:?}"
    );
}
