//! What `kn service update` does to a Knative Service, and whether Knative
//! Serving accepts the result: enough of both to check offline that the kn
//! commands knative/rollout.sh prints (and the `rollout` command runs) would
//! be accepted by a cluster in a given state, one after another.
//!
//! Every rule is ported from its source and quoted where it applies:
//! - kn (knative/client): `ConfigurationEditFlags.Apply` in
//!   pkg/commands/service/configuration_edit_flags.go (what a revision-making
//!   flag does to the template) and `Compute` in pkg/traffic/compute.go
//!   (tags, then traffic).
//! - Serving (knative/serving): `VerifyNameChange` in
//!   pkg/apis/serving/v1/revision_validation.go, `CheckNameAvailability` in
//!   pkg/reconciler/configuration/configuration.go, and the traffic rules of
//!   pkg/apis/serving/v1/route_validation.go.

use std::collections::BTreeMap;

/// The Service's revision template, as far as the rules look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// `spec.template.metadata.name`; `None` lets Serving generate one.
    pub name: Option<String>,
    pub image: String,
    pub annotations: BTreeMap<String, String>,
}

/// One entry of `spec.traffic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub revision: String,
    pub percent: u32,
    pub tag: Option<String>,
}

/// A Service and its revisions on a modelled cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub namespace: String,
    pub service: String,
    pub template: Template,
    pub traffic: Vec<Target>,
    /// Revision name -> image.
    pub revisions: BTreeMap<String, String>,
    /// kn's updateTimestamp has a one-second resolution; each update here is a new second.
    clock: u64,
}

/// kn's annotations (knative/client pkg/serving/config_changes.go).
pub const UPDATE_TIMESTAMP: &str = "client.knative.dev/updateTimestamp";
pub const USER_IMAGE: &str = "client.knative.dev/user-image";

impl Cluster {
    /// A Service as `kubectl apply` leaves it: the template of `svc` (a
    /// rendered Knative Service) and its traffic block, with the revision the
    /// template names created, plus `earlier` revisions (name, image) that
    /// earlier applies created.
    pub fn applied(svc: &serde_yaml::Value, earlier: &[(&str, &str)]) -> anyhow::Result<Cluster> {
        use anyhow::Context as _;
        let name = svc["metadata"]["name"]
            .as_str()
            .context("Service without metadata.name")?;
        let t = &svc["spec"]["template"];
        let image = t["spec"]["containers"][0]["image"]
            .as_str()
            .context("Service template without an image")?;
        let annotations = t["metadata"]["annotations"]
            .as_mapping()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
            .collect();
        let template_name = t["metadata"]["name"].as_str().map(str::to_owned);
        let mut revisions: BTreeMap<String, String> = earlier
            .iter()
            .map(|(n, i)| (n.to_string(), i.to_string()))
            .collect();
        let created = template_name
            .clone()
            .context("the model needs a named template (metadata.name)")?;
        revisions.insert(created, image.to_owned());
        let traffic = svc["spec"]["traffic"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|t| {
                Ok(Target {
                    revision: t["revisionName"]
                        .as_str()
                        .context("a traffic target without revisionName")?
                        .to_owned(),
                    percent: t["percent"].as_u64().unwrap_or(0) as u32,
                    tag: t["tag"].as_str().map(str::to_owned),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let cluster = Cluster {
            namespace: svc["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned(),
            service: name.to_owned(),
            template: Template {
                name: template_name,
                image: image.to_owned(),
                annotations,
            },
            traffic,
            revisions,
            clock: 0,
        };
        cluster.check_route().map_err(anyhow::Error::msg)?;
        Ok(cluster)
    }

    /// The image of `revision`, as `kn revision describe REV -o
    /// jsonpath={.spec.containers[0].image}` prints it.
    pub fn image_of(&self, revision: &str) -> Option<&str> {
        self.revisions.get(revision).map(String::as_str)
    }

    /// Applies one printed `kn service update` command, or says why kn or
    /// Serving refuses it (the state is unchanged then).
    pub fn apply(&mut self, command: &str) -> Result<(), String> {
        let update = Update::parse(command)?;
        if update.service != self.service || update.namespace != self.namespace {
            return Err(format!(
                "{command}: the cluster has Service {}/{}",
                self.namespace, self.service
            ));
        }
        let mut next = self.clone();
        next.clock += 1;
        next.edit_template(&update)?;
        next.compute_traffic(&update)?;
        next.check_route()?;
        *self = next;
        Ok(())
    }

    /// kn's `Apply`, then Serving's admission and Configuration reconciler.
    fn edit_template(&mut self, u: &Update) -> Result<(), String> {
        // kn: every flag marked "makes revision" (--image, --revision-name, ...) is a mutation.
        let mutation = u.image.is_some() || u.revision_name.is_some();
        if !mutation {
            return Ok(());
        }
        let old = self.template.clone();
        let mut new = old.clone();
        if let Some(image) = &u.image {
            new.image = image.clone();
        }
        // kn: `if p.RevisionName != "" { name := GenerateRevisionName(...); if p.AnyMutation(cmd) { template.Name = name } }`
        if let Some(name) = &u.revision_name {
            let prefix = format!("{}-", self.service);
            new.name = Some(if name.starts_with(&prefix) {
                name.clone()
            } else {
                format!("{prefix}{name}")
            });
        }
        // kn: `if p.AnyMutation(cmd) && cmd.Name() != "apply" { UpdateTimestampAnnotation(template) }`
        new.annotations.insert(
            UPDATE_TIMESTAMP.to_owned(),
            format!("2026-01-01T00:00:{:02}Z", self.clock % 60),
        );
        // kn: shouldPinToImageDigest holds when the user-image annotation is
        // already there (lock-to-digest is on by default); then UpdateUserImageAnnotation.
        if new.annotations.contains_key(USER_IMAGE) {
            new.annotations
                .insert(USER_IMAGE.to_owned(), new.image.clone());
        }
        verify_name_change(&new, &old)?;
        if new == old {
            return Ok(());
        }
        let name = new
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{:05}", self.service, self.clock));
        // Serving's CheckNameAvailability: a template name that an existing
        // revision (of another generation) already has is a conflict:
        // `errConflict := errors.NewAlreadyExists(v1.Resource("revisions"), name)`.
        if self.revisions.contains_key(&name) {
            return Err(format!(
                "revisions.serving.knative.dev \"{name}\" already exists (CheckNameAvailability: the template \
                 names a revision of another generation; the Configuration fails with RevisionFailed)"
            ));
        }
        self.revisions.insert(name, new.image.clone());
        self.template = new;
        Ok(())
    }

    /// kn's `Compute`: untag, tag, then (with --traffic) reset every percent
    /// and set each reference by tag first, then by revision name.
    fn compute_traffic(&mut self, u: &Update) -> Result<(), String> {
        if u.tags.is_empty() && u.traffic.is_empty() {
            return Ok(());
        }
        let sum: u32 = u.traffic.iter().map(|(_, p)| p).sum();
        // kn's verifyInput: `if sum > 100 { return errorSumGreaterThan100(sum) }`; below
        // 100 kn guesses where the rest goes, which these scripts never rely on.
        if !u.traffic.is_empty() && sum != 100 {
            return Err(format!(
                "given traffic percents sum to {sum}; the model (and the scripts) state all 100"
            ));
        }
        let t = &mut self.traffic;
        for (revision, tag) in &u.tags {
            // "dont throw error if the tag present == requested tag"
            if t.iter()
                .any(|x| x.tag.as_deref() == Some(tag) && &x.revision == revision)
            {
                continue;
            }
            if t.iter().any(|x| x.tag.as_deref() == Some(tag)) {
                return Err(format!(
                    "refusing to overwrite existing tag in service, add flag '--untag {tag}' in command to untag it"
                ));
            }
            // TagRevision: tag the revision's untagged entry, else add an entry at 0 %.
            match t
                .iter_mut()
                .find(|x| &x.revision == revision)
                .filter(|x| x.tag.is_none())
            {
                Some(x) => x.tag = Some(tag.clone()),
                None => t.push(Target {
                    revision: revision.clone(),
                    percent: 0,
                    tag: Some(tag.clone()),
                }),
            }
        }
        if !u.traffic.is_empty() {
            for x in t.iter_mut() {
                x.percent = 0;
            }
            for (reference, percent) in &u.traffic {
                if let Some(x) = t.iter_mut().find(|x| x.tag.as_deref() == Some(reference)) {
                    x.percent = *percent;
                } else if let Some(x) = t.iter_mut().find(|x| &x.revision == reference) {
                    x.percent = *percent;
                } else {
                    t.push(Target {
                        revision: reference.clone(),
                        percent: *percent,
                        tag: None,
                    });
                }
            }
        }
        // RemoveNullTargets: no tag and 0 % goes.
        t.retain(|x| x.tag.is_some() || x.percent > 0);
        Ok(())
    }

    /// route_validation.go (sum 100, one definition per tag) and the Route
    /// reconciler (every target names a revision that exists).
    fn check_route(&self) -> Result<(), String> {
        let sum: u32 = self.traffic.iter().map(|t| t.percent).sum();
        if sum != 100 {
            return Err(format!("Traffic targets sum to {sum}, want 100"));
        }
        let mut tags = std::collections::BTreeSet::new();
        for t in &self.traffic {
            if let Some(tag) = &t.tag
                && !tags.insert(tag)
            {
                return Err(format!("Multiple definitions for {tag:?}"));
            }
            if !self.revisions.contains_key(&t.revision) {
                return Err(format!(
                    "Revision {:?} referenced in traffic not found",
                    t.revision
                ));
            }
        }
        Ok(())
    }

    /// Percent per revision (summed over its entries).
    pub fn split(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for t in &self.traffic {
            *out.entry(t.revision.clone()).or_default() += t.percent;
        }
        out
    }

    /// The revision a tag routes to.
    pub fn tagged(&self, tag: &str) -> Option<&str> {
        self.traffic
            .iter()
            .find(|t| t.tag.as_deref() == Some(tag))
            .map(|t| t.revision.as_str())
    }
}

/// Serving's rule, ported from `VerifyNameChange`
/// (pkg/apis/serving/v1/revision_validation.go):
///
/// ```go
/// if rts.Name == "" {
///     // We only check that Name changes when the RevisionTemplate changes.
///     return nil
/// }
/// if rts.Name != og.Name {
///     // The name changed, so we're good.
///     return nil
/// }
/// diff, err := kmp.ShortDiff(og, rts)
/// ...
/// if diff != "" {
///     return &apis.FieldError{
///         Message: "Saw the following changes without a name change (-old +new)",
///         Paths:   []string{"metadata.name"},
/// ```
pub fn verify_name_change(new: &Template, old: &Template) -> Result<(), String> {
    let Some(name) = &new.name else {
        return Ok(());
    };
    if new.name != old.name || new == old {
        return Ok(());
    }
    let mut diff = Vec::new();
    if new.image != old.image {
        diff.push(format!("image: -{} +{}", old.image, new.image));
    }
    let keys: std::collections::BTreeSet<&String> = new
        .annotations
        .keys()
        .chain(old.annotations.keys())
        .collect();
    for k in keys {
        let (o, n) = (old.annotations.get(k), new.annotations.get(k));
        if o != n {
            diff.push(format!("annotations[{k}]: -{o:?} +{n:?}"));
        }
    }
    Err(format!(
        "admission webhook \"validation.webhook.serving.knative.dev\" denied the request: validation failed: \
         Saw the following changes without a name change (-old +new): spec.template.metadata.name ({name}): {}",
        diff.join("; ")
    ))
}

/// One parsed `kn service update NAME --namespace NS ...`.
#[derive(Debug, Default)]
struct Update {
    service: String,
    namespace: String,
    image: Option<String>,
    revision_name: Option<String>,
    /// `--tag REVISION=TAG`.
    tags: Vec<(String, String)>,
    /// `--traffic REF=PERCENT`.
    traffic: Vec<(String, u32)>,
}

impl Update {
    fn parse(command: &str) -> Result<Update, String> {
        let words: Vec<&str> = command.split_whitespace().collect();
        let ["kn", "service", "update", service, rest @ ..] = words.as_slice() else {
            return Err(format!(
                "{command}: the model knows `kn service update NAME ...` only"
            ));
        };
        let mut u = Update {
            service: service.to_string(),
            namespace: "default".to_owned(),
            ..Update::default()
        };
        let mut it = rest.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| format!("{command}: {flag} without a value"))?
                .to_string();
            let pair = |v: &str| -> Result<(String, String), String> {
                v.split_once('=')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| format!("{command}: {flag} {v} is not A=B"))
            };
            match *flag {
                "--namespace" | "-n" => u.namespace = value,
                "--image" => u.image = Some(value),
                "--revision-name" => u.revision_name = Some(value),
                "--tag" => u.tags.push(pair(&value)?),
                "--traffic" => {
                    let (r, p) = pair(&value)?;
                    let p = p.trim_end_matches('%').parse().map_err(|_| {
                        format!("{command}: --traffic {value}: not a whole percent")
                    })?;
                    u.traffic.push((r, p));
                }
                other => return Err(format!("{command}: the model does not know flag {other}")),
            }
        }
        Ok(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        let svc: serde_yaml::Value = serde_yaml::from_str(
            "metadata: {name: s, namespace: ns}\nspec:\n  template:\n    metadata: {name: s-v1}\n    spec: {containers: [{image: i:1}]}\n  traffic: [{revisionName: s-v1, percent: 100}]\n",
        )
        .unwrap();
        Cluster::applied(&svc, &[]).unwrap()
    }

    #[test]
    fn a_changed_template_under_the_same_name_is_refused() {
        let mut c = cluster();
        let create = "kn service update s --namespace ns --image i:2 --revision-name s-v2 --traffic s-v1=100";
        c.apply(create).unwrap();
        assert_eq!(c.image_of("s-v2"), Some("i:2"));
        // The same command again: kn's new updateTimestamp under the name s-v2.
        let e = c.apply(create).unwrap_err();
        assert!(
            e.contains("Saw the following changes without a name change"),
            "{e}"
        );
        assert!(e.contains(UPDATE_TIMESTAMP), "{e}");
    }

    #[test]
    fn tags_are_kept_added_or_refused_as_kn_does() {
        let mut c = cluster();
        c.apply("kn service update s --namespace ns --image i:2 --revision-name s-v2 --traffic s-v1=100")
            .unwrap();
        let split = "kn service update s --namespace ns --tag s-v1=stable --tag s-v2=canary --traffic stable=90 --traffic canary=10";
        c.apply(split).unwrap();
        c.apply(split).unwrap();
        assert_eq!(c.split()["s-v2"], 10);
        assert_eq!(c.tagged("canary"), Some("s-v2"));
        let e = c
            .apply("kn service update s --namespace ns --tag s-v1=canary --traffic s-v1=100")
            .unwrap_err();
        assert!(e.contains("refusing to overwrite existing tag"), "{e}");
        let e = c
            .apply("kn service update s --namespace ns --traffic s-v9=100")
            .unwrap_err();
        assert!(e.contains("not found"), "{e}");
    }
}
