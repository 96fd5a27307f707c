//! A set of resources rendered together (one kustomization's output), with
//! the typed ones parsed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::resources::{
    self, Broker, Ingress, RedisStreamSource, Service, SinkBinding, Trigger, Typed,
};

pub struct Bundle {
    /// Where it came from (a kustomization directory), for messages.
    pub source: String,
    pub dir: PathBuf,
    pub docs: Vec<serde_yaml::Value>,
    pub typed: Vec<Typed>,
}

impl Bundle {
    /// Parses every document; a kind read here that does not parse is an error.
    pub fn new(
        source: String,
        dir: PathBuf,
        docs: Vec<serde_yaml::Value>,
    ) -> anyhow::Result<Bundle> {
        let mut typed = Vec::new();
        let mut errors = Vec::new();
        for doc in &docs {
            match resources::parse(doc) {
                Ok(Some(t)) => typed.push(t),
                Ok(None) => {}
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        if !errors.is_empty() {
            anyhow::bail!("{source}: {}", errors.join("\n"));
        }
        Ok(Bundle {
            source,
            dir,
            docs,
            typed,
        })
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.typed.iter().filter_map(|t| match t {
            Typed::Service(s) => Some(s.as_ref()),
            _ => None,
        })
    }

    pub fn sink_bindings(&self) -> impl Iterator<Item = &SinkBinding> {
        self.typed.iter().filter_map(|t| match t {
            Typed::SinkBinding(s) => Some(s),
            _ => None,
        })
    }

    pub fn brokers(&self) -> impl Iterator<Item = &Broker> {
        self.typed.iter().filter_map(|t| match t {
            Typed::Broker(b) => Some(b),
            _ => None,
        })
    }

    pub fn triggers(&self) -> impl Iterator<Item = &Trigger> {
        self.typed.iter().filter_map(|t| match t {
            Typed::Trigger(b) => Some(b),
            _ => None,
        })
    }

    pub fn redis_stream_sources(&self) -> impl Iterator<Item = &RedisStreamSource> {
        self.typed.iter().filter_map(|t| match t {
            Typed::RedisStreamSource(b) => Some(b),
            _ => None,
        })
    }

    pub fn ingresses(&self) -> impl Iterator<Item = &Ingress> {
        self.typed.iter().filter_map(|t| match t {
            Typed::Ingress(b) => Some(b),
            _ => None,
        })
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services().find(|s| s.metadata.name == name)
    }

    /// ConfigMaps: name -> keys.
    pub fn config_maps(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.data_keys("ConfigMap")
    }

    /// Documents of `kind` (any apiVersion).
    pub fn of_kind<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = &'a serde_yaml::Value> + 'a {
        self.docs
            .iter()
            .filter(move |d| crate::yaml::type_of(d).1 == kind)
    }

    fn data_keys(&self, kind: &str) -> BTreeMap<String, BTreeSet<String>> {
        self.of_kind(kind)
            .map(|d| {
                let keys = ["data", "binaryData", "stringData"]
                    .iter()
                    .filter_map(|f| d.get(*f).and_then(|m| m.as_mapping()))
                    .flat_map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)))
                    .collect();
                (crate::yaml::name_of(d), keys)
            })
            .collect()
    }
}

/// The function a Service runs: the last segment of its image name.
pub fn function_of(service: &Service) -> Option<String> {
    let image = &service.spec.template.spec.containers.first()?.image;
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    Some(last.split(':').next().unwrap_or(last).to_owned())
}
