//! What an overlay declares: a Service's traffic block as `kubectl
//! kustomize` renders it, with the host names Knative would give it.

use std::path::Path;

use anyhow::{Context as _, bail};

use crate::bundle::Bundle;
use crate::resources::Service;
use crate::{kustomize, paths};

/// One entry of a traffic block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub revision: String,
    pub percent: u32,
    pub tag: Option<String>,
}

/// A Service's traffic block as an overlay renders it, with what is needed
/// to serve it: host names and the function binary.
#[derive(Debug, Clone)]
pub struct Declared {
    /// `knative/overlays/canary/10`.
    pub overlay: String,
    pub service: String,
    pub namespace: String,
    pub domain: String,
    /// The function binary the revisions run (the image name's last segment).
    pub function: String,
    pub routes: Vec<Route>,
}

impl Declared {
    /// `service` of the rendered `overlay` (relative to knative/): its traffic block, host names
    /// from its namespace and the domain in knative/platform.
    pub fn load(kubectl: &Path, overlay: &str, service: &str) -> anyhow::Result<Declared> {
        let dir = paths::knative_dir().join(overlay);
        let source = paths::rel(&dir);
        let docs = crate::yaml::documents(&kustomize::render(kubectl, &dir)?)?;
        let bundle = Bundle::new(source.clone(), dir, docs)?;
        let svc = bundle
            .service(service)
            .with_context(|| format!("{source} has no Service {service}"))?;
        Declared::from_service(&source, svc, &domain(kubectl)?)
    }

    pub fn from_service(overlay: &str, svc: &Service, domain: &str) -> anyhow::Result<Declared> {
        let name = &svc.metadata.name;
        let traffic = svc
            .spec
            .traffic
            .as_ref()
            .with_context(|| format!("{overlay}: Service {name} has no traffic block"))?;
        let mut routes = Vec::new();
        for t in traffic {
            let Some(revision) = t.revision_name.clone() else {
                bail!(
                    "{overlay}: Service {name} sends traffic to latestRevision; a rehearsal needs named revisions (revisionName)"
                )
            };
            routes.push(Route {
                revision,
                percent: t.percent.unwrap_or(0),
                tag: t.tag.clone(),
            });
        }
        let sum: u32 = routes.iter().map(|r| r.percent).sum();
        if sum != 100 {
            bail!("{overlay}: Service {name}'s traffic percents sum to {sum}, not 100");
        }
        Ok(Declared {
            overlay: overlay.to_owned(),
            service: name.clone(),
            namespace: svc
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            domain: domain.to_owned(),
            function: crate::bundle::function_of(svc)
                .with_context(|| format!("{overlay}: Service {name} has no container"))?,
            routes,
        })
    }

    /// `{service}.{namespace}.{domain}`: where the split applies.
    pub fn host(&self) -> String {
        format!("{}.{}.{}", self.service, self.namespace, self.domain)
    }

    /// `{tag}-{service}.{namespace}.{domain}`: the tagged revision alone.
    pub fn tag_host(&self, tag: &str) -> String {
        format!("{tag}-{}", self.host())
    }

    /// Percent per revision (a revision listed twice counts once, summed), in
    /// traffic-block order, 0 % included.
    pub fn split(&self) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = Vec::new();
        for r in &self.routes {
            match out.iter_mut().find(|(rev, _)| *rev == r.revision) {
                Some((_, p)) => *p += r.percent,
                None => out.push((r.revision.clone(), r.percent)),
            }
        }
        out
    }

    /// The revisions with traffic and their percent: nginx upstream weights
    /// (nginx has no weight 0; a 0 % revision is reachable on its tag host only).
    pub fn weights(&self) -> Vec<(String, u32)> {
        self.split().into_iter().filter(|(_, p)| *p > 0).collect()
    }

    /// Every revision named, with or without traffic.
    pub fn revisions(&self) -> Vec<String> {
        self.split().into_iter().map(|(r, _)| r).collect()
    }

    pub(crate) fn tags_of(&self, revision: &str) -> String {
        let tags: Vec<&str> = self
            .routes
            .iter()
            .filter(|r| r.revision == revision)
            .filter_map(|r| r.tag.as_deref())
            .collect();
        if tags.is_empty() {
            "-".to_owned()
        } else {
            tags.join(",")
        }
    }

    /// `ingest-grpc-v1 90 % (stable), ingest-grpc-v2 10 % (canary)`.
    pub fn describe(&self) -> String {
        self.routes
            .iter()
            .map(|r| match &r.tag {
                Some(t) => format!("{} {} % (tag {t})", r.revision, r.percent),
                None => format!("{} {} %", r.revision, r.percent),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The domain of knative/platform's config-domain (one key).
pub fn domain(kubectl: &Path) -> anyhow::Result<String> {
    let dir = paths::knative_dir().join("platform");
    let docs = crate::yaml::documents(&kustomize::render(kubectl, &dir)?)?;
    let cm = docs
        .iter()
        .find(|d| {
            crate::yaml::type_of(d).1 == "ConfigMap" && crate::yaml::name_of(d) == "config-domain"
        })
        .context("knative/platform has no ConfigMap config-domain")?;
    let domains: Vec<String> = cm["data"]
        .as_mapping()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    match domains.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("knative/platform's config-domain should name one domain, not {domains:?}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::rehearsal::nginx;

    pub(crate) fn declared(traffic: &str) -> Declared {
        let svc: Service = serde_yaml::from_str(&format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: s\n  namespace: ns\nspec:\n  template:\n    spec:\n      containers:\n        - name: f\n          image: dev.local/x/ingest:0.2.0\n  traffic:\n{traffic}"
        ))
        .unwrap();
        Declared::from_service("knative/overlays/x", &svc, "example.com").unwrap()
    }

    #[test]
    fn weights_hosts_and_tags_come_from_the_traffic_block() {
        let d = declared(
            "    - {revisionName: s-v1, percent: 0, tag: blue}\n    - {revisionName: s-v2, percent: 100, tag: green}\n",
        );
        assert_eq!(d.function, "ingest");
        assert_eq!(d.host(), "s.ns.example.com");
        assert_eq!(d.tag_host("blue"), "blue-s.ns.example.com");
        assert_eq!(d.weights(), vec![("s-v2".to_owned(), 100)]);
        assert_eq!(d.revisions(), vec!["s-v1".to_owned(), "s-v2".to_owned()]);

        let backends = BTreeMap::from([("s-v1".to_owned(), 7001), ("s-v2".to_owned(), 7002)]);
        let conf = nginx::front_conf(&d, &backends, 7000, Path::new("/p"), 3).unwrap();
        assert!(
            conf.contains("upstream s {\n        server 127.0.0.1:7002 weight=100;  # s-v2\n"),
            "{conf}"
        );
        assert!(
            !conf.contains("7001 weight"),
            "a 0 % revision gets no weight: {conf}"
        );
        assert!(
            conf.contains("upstream s__tag_blue {\n        server 127.0.0.1:7001;"),
            "{conf}"
        );
        assert!(conf.contains("server_name blue-s.ns.example.com;\n        location / { proxy_pass http://s__tag_blue; }"), "{conf}");
        assert!(
            conf.contains(
                "server_name s.ns.example.com;\n        location / { proxy_pass http://s; }"
            ),
            "{conf}"
        );
        assert!(conf.contains("return 200 \"3\\n\""), "{conf}");
        assert!(conf.contains("keepalive_timeout 0;"), "{conf}");
    }

    #[test]
    fn a_split_is_weighted_by_percent() {
        let d = declared(
            "    - {revisionName: s-v1, percent: 90, tag: stable}\n    - {revisionName: s-v2, percent: 10, tag: canary}\n",
        );
        let backends = BTreeMap::from([("s-v1".to_owned(), 7001), ("s-v2".to_owned(), 7002)]);
        let conf = nginx::front_conf(&d, &backends, 7000, Path::new("/p"), 1).unwrap();
        assert!(
            conf.contains("server 127.0.0.1:7001 weight=90;")
                && conf.contains("server 127.0.0.1:7002 weight=10;"),
            "{conf}"
        );
        let missing =
            nginx::front_conf(&d, &BTreeMap::new(), 7000, Path::new("/p"), 1).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("no local process runs revision s-v1"),
            "{missing}"
        );
    }

    #[test]
    fn latest_revision_and_bad_sums_are_refused() {
        let svc = |traffic: &str| -> Service {
            serde_yaml::from_str(&format!(
                "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  template:\n    spec:\n      containers:\n        - name: f\n          image: i\n  traffic:\n{traffic}"
            ))
            .unwrap()
        };
        let e = Declared::from_service(
            "o",
            &svc("    - {latestRevision: true, percent: 100}\n"),
            "d",
        )
        .unwrap_err();
        assert!(e.to_string().contains("latestRevision"), "{e}");
        let e = Declared::from_service("o", &svc("    - {revisionName: a, percent: 90}\n"), "d")
            .unwrap_err();
        assert!(e.to_string().contains("sum to 90"), "{e}");
    }
}
