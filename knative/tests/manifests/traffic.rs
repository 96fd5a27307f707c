//! Traffic blocks after kustomize: percents sum to 100, tags are unique, and
//! every revisionName is a BYO revision name defined by the same overlay or
//! one it builds on. The rollout overlays split the way their names say.

use std::collections::{BTreeMap, BTreeSet};

use knative_manifests::{assert_no_problems, kustomize, traffic};

use crate::common;

#[test]
fn traffic_blocks_are_consistent() {
    let bundles = common::bundles();
    let mut problems = Vec::new();
    for b in bundles {
        // Revision names defined by this kustomization and everything it builds on.
        let lineage = kustomize::with_ancestors(&b.dir).unwrap();
        let mut defined: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for other in bundles.iter().filter(|o| lineage.contains(&o.dir)) {
            for (svc, names) in traffic::revision_names(other.services()) {
                defined.entry(svc).or_default().extend(names);
            }
        }
        problems.extend(
            traffic::check(b.services(), &defined)
                .into_iter()
                .map(|p| format!("{}: {p}", b.source)),
        );
    }
    assert_no_problems("traffic", &problems);
}

/// ingest-grpc's traffic block: (revision, percent, tag).
type Split = &'static [(&'static str, u32, Option<&'static str>)];

/// (overlay, template revision, traffic) of ingest-grpc.
const ROLLOUT_STEPS: &[(&str, &str, Split)] = &[
    (
        "overlays/default",
        "ingest-grpc-v1",
        &[("ingest-grpc-v1", 100, None)],
    ),
    (
        "overlays/ingest-grpc-v2",
        "ingest-grpc-v2",
        &[("ingest-grpc-v1", 100, None)],
    ),
    (
        "overlays/canary/10",
        "ingest-grpc-v2",
        &[
            ("ingest-grpc-v1", 90, Some("stable")),
            ("ingest-grpc-v2", 10, Some("canary")),
        ],
    ),
    (
        "overlays/canary/50",
        "ingest-grpc-v2",
        &[
            ("ingest-grpc-v1", 50, Some("stable")),
            ("ingest-grpc-v2", 50, Some("canary")),
        ],
    ),
    (
        "overlays/canary/100",
        "ingest-grpc-v2",
        &[
            ("ingest-grpc-v1", 0, Some("stable")),
            ("ingest-grpc-v2", 100, Some("canary")),
        ],
    ),
    (
        "overlays/canary/rollback",
        "ingest-grpc-v2",
        &[
            ("ingest-grpc-v1", 100, Some("stable")),
            ("ingest-grpc-v2", 0, Some("canary")),
        ],
    ),
    (
        "overlays/bluegreen/green",
        "ingest-grpc-v2",
        &[
            ("ingest-grpc-v1", 100, Some("blue")),
            ("ingest-grpc-v2", 0, Some("green")),
        ],
    ),
    (
        "overlays/bluegreen/switch",
        "ingest-grpc-v2",
        &[
            ("ingest-grpc-v1", 0, Some("blue")),
            ("ingest-grpc-v2", 100, Some("green")),
        ],
    ),
];

#[test]
fn rollout_overlays_split_as_named() {
    for (overlay, template, expected) in ROLLOUT_STEPS {
        let s = common::bundle(overlay)
            .service("ingest-grpc")
            .expect("ingest-grpc");
        assert_eq!(
            s.spec.template.metadata.name.as_deref(),
            Some(*template),
            "{overlay}: template name"
        );
        let got: Vec<(String, u32, Option<String>)> = s
            .spec
            .traffic
            .as_ref()
            .expect("a traffic block")
            .iter()
            .map(|t| {
                (
                    t.revision_name.clone().unwrap_or_default(),
                    t.percent.unwrap_or(0),
                    t.tag.clone(),
                )
            })
            .collect();
        let want: Vec<(String, u32, Option<String>)> = expected
            .iter()
            .map(|(r, p, t)| (r.to_string(), *p, t.map(str::to_owned)))
            .collect();
        assert_eq!(got, want, "{overlay}: ingest-grpc traffic");
    }
}

#[test]
fn only_ingest_grpc_changes_between_rollout_steps() {
    let base = common::bundle("overlays/default");
    for (overlay, _, _) in ROLLOUT_STEPS {
        let b = common::bundle(overlay);
        assert_eq!(
            b.docs.len(),
            base.docs.len(),
            "{overlay}: same resources as overlays/default"
        );
        for s in b.services().filter(|s| s.metadata.name != "ingest-grpc") {
            let before = base.service(&s.metadata.name).expect("same Services");
            assert_eq!(
                format!("{:?}", s.spec),
                format!("{:?}", before.spec),
                "{overlay}: {} is untouched",
                s.metadata.name
            );
        }
    }
}
