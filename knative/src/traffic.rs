//! Traffic blocks: percents sum to 100, tags are unique, and every
//! revisionName is a BYO revision name (`spec.template.metadata.name`)
//! defined by the same kustomization or one it builds on.

use std::collections::{BTreeMap, BTreeSet};

use crate::Problems;
use crate::resources::Service;

/// BYO revision names of `services`, by Service name.
pub fn revision_names<'a>(
    services: impl Iterator<Item = &'a Service>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in services {
        if let Some(n) = &s.spec.template.metadata.name {
            out.entry(s.metadata.name.clone())
                .or_default()
                .insert(n.clone());
        }
    }
    out
}

/// Checks the traffic block of every Service in `services`; `defined` holds
/// the revision names defined in the same overlay set, by Service.
pub fn check<'a>(
    services: impl Iterator<Item = &'a Service>,
    defined: &BTreeMap<String, BTreeSet<String>>,
) -> Problems {
    let mut p = Problems::new();
    for s in services {
        let name = &s.metadata.name;
        let Some(traffic) = &s.spec.traffic else {
            continue;
        };
        if traffic.is_empty() {
            p.push(format!("Service {name}: an empty traffic block routes nothing; leave it out or list targets"));
            continue;
        }
        let sum: u32 = traffic.iter().map(|t| t.percent.unwrap_or(0)).sum();
        if sum != 100 {
            p.push(format!(
                "Service {name}: traffic percents sum to {sum}, not 100"
            ));
        }
        let mut tags = BTreeSet::new();
        let mut targets = BTreeSet::new();
        for t in traffic {
            if let Some(tag) = &t.tag {
                if !tags.insert(tag.clone()) {
                    p.push(format!("Service {name}: tag {tag} is used twice"));
                }
                if !is_dns_label(tag) {
                    p.push(format!("Service {name}: tag {tag:?} must be a DNS label (it becomes {tag}-{name}.<namespace>.<domain>)"));
                }
            }
            match (&t.revision_name, t.latest_revision) {
                (Some(rev), None | Some(false)) => {
                    if !defined.get(name).is_some_and(|d| d.contains(rev)) {
                        p.push(format!(
                            "Service {name}: traffic goes to revision {rev}, which no template in this overlay or its bases names"
                        ));
                    }
                    if !targets.insert(rev.clone()) && t.tag.is_none() {
                        p.push(format!("Service {name}: revision {rev} appears twice without a tag"));
                    }
                }
                (None, Some(true)) => {}
                _ => p.push(format!("Service {name}: each traffic target names a revisionName or sets latestRevision: true, not both")),
            }
        }
    }
    p
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(traffic: &str) -> Service {
        serde_yaml::from_str(&format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  template:\n    metadata:\n      name: s-v2\n    spec:\n      containers: []\n  traffic:\n{traffic}"
        ))
        .unwrap()
    }

    fn problems(traffic: &str) -> Problems {
        let s = svc(traffic);
        let defined = BTreeMap::from([(
            "s".to_owned(),
            BTreeSet::from(["s-v1".to_owned(), "s-v2".to_owned()]),
        )]);
        check(std::iter::once(&s), &defined)
    }

    #[test]
    fn a_good_split_passes() {
        let p = problems(
            "    - {revisionName: s-v1, percent: 90, tag: stable}\n    - {revisionName: s-v2, percent: 10, tag: canary}\n",
        );
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn a_bad_sum_is_caught() {
        let p = problems(
            "    - {revisionName: s-v1, percent: 90}\n    - {revisionName: s-v2, percent: 20}\n",
        );
        assert!(p.iter().any(|m| m.contains("sum to 110")), "{p:?}");
    }

    #[test]
    fn a_duplicate_tag_is_caught() {
        let p = problems(
            "    - {revisionName: s-v1, percent: 50, tag: a}\n    - {revisionName: s-v2, percent: 50, tag: a}\n",
        );
        assert!(p.iter().any(|m| m.contains("tag a is used twice")), "{p:?}");
    }

    #[test]
    fn an_unknown_revision_is_caught() {
        let p = problems("    - {revisionName: s-v3, percent: 100}\n");
        assert!(p.iter().any(|m| m.contains("s-v3")), "{p:?}");
    }
}
