//! Environment rules: every variable a function needs reaches it (set in its
//! Service, from a ConfigMap or Secret that exists with that key, or by
//! Knative), and nothing else does.

use std::collections::{BTreeMap, BTreeSet};

use crate::Problems;
use crate::bundle::{Bundle, function_of};
use crate::catalogue::{self, Default, KNATIVE_RESERVED};
use crate::resources::Service;

/// Where a variable of a Service's container comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Literal(String),
    ConfigMap {
        name: String,
        key: String,
    },
    Secret {
        name: String,
        key: String,
        optional: bool,
    },
    FieldRef(String),
}

/// The variables a Service's first container receives, by name. ConfigMaps
/// given whole (`envFrom`) are looked up in `config_maps`.
pub fn effective_env(
    service: &Service,
    config_maps: &BTreeMap<String, BTreeSet<String>>,
    problems: &mut Problems,
) -> BTreeMap<String, Source> {
    let name = &service.metadata.name;
    let mut env = BTreeMap::new();
    let Some(c) = service.spec.template.spec.containers.first() else {
        problems.push(format!("Service {name} has no container"));
        return env;
    };
    for from in &c.env_from {
        if let Some(cm) = &from.config_map_ref {
            match config_maps.get(&cm.name) {
                Some(keys) => {
                    for k in keys {
                        let key = format!("{}{k}", from.prefix.clone().unwrap_or_default());
                        env.insert(key, Source::ConfigMap { name: cm.name.clone(), key: k.clone() });
                    }
                }
                None => problems.push(format!(
                    "Service {name}: envFrom names ConfigMap {} which is not rendered with it: add it to the base",
                    cm.name
                )),
            }
        }
        if let Some(s) = &from.secret_ref {
            problems.push(format!(
                "Service {name}: envFrom secretRef {} hands over every key unchecked; use one secretKeyRef per variable",
                s.name
            ));
        }
    }
    for e in &c.env {
        let source = match (&e.value, &e.value_from) {
            (Some(v), None) => Source::Literal(v.clone()),
            (None, Some(from)) => match (
                &from.config_map_key_ref,
                &from.secret_key_ref,
                &from.field_ref,
            ) {
                (Some(r), None, None) => {
                    match config_maps.get(&r.name) {
                        Some(keys) if keys.contains(&r.key) => {}
                        Some(_) => problems.push(format!(
                            "Service {name}: {} reads key {} of ConfigMap {}, which has no such key",
                            e.name, r.key, r.name
                        )),
                        None => problems.push(format!(
                            "Service {name}: {} reads ConfigMap {}, which is not rendered with it",
                            e.name, r.name
                        )),
                    }
                    Source::ConfigMap {
                        name: r.name.clone(),
                        key: r.key.clone(),
                    }
                }
                (None, Some(r), None) => Source::Secret {
                    name: r.name.clone(),
                    key: r.key.clone(),
                    optional: r.optional.unwrap_or(false),
                },
                (None, None, Some(f)) => Source::FieldRef(f.field_path.clone()),
                _ => {
                    problems.push(format!("Service {name}: {} needs exactly one of configMapKeyRef, secretKeyRef, fieldRef", e.name));
                    continue;
                }
            },
            (None, None) => Source::Literal(String::new()),
            (Some(_), Some(_)) => {
                problems.push(format!(
                    "Service {name}: {} has both value and valueFrom",
                    e.name
                ));
                continue;
            }
        };
        if env.insert(e.name.clone(), source).is_some() {
            problems.push(format!(
                "Service {name}: {} is set twice (env and envFrom, or env twice)",
                e.name
            ));
        }
    }
    env
}

/// Checks every Service of `bundle` against the catalogue. `secret_keys`:
/// the keys the project's Secret has (from secrets.env.example), by Secret name.
pub fn check(bundle: &Bundle, secret_keys: &BTreeMap<String, BTreeSet<String>>) -> Problems {
    let mut problems = Problems::new();
    let config_maps = bundle.config_maps();
    for service in bundle.services() {
        let sname = &service.metadata.name;
        let Some(fname) = function_of(service) else {
            continue;
        };
        let Some(function) = catalogue::function(&fname) else {
            problems.push(format!(
                "Service {sname}: its image names function {fname:?}, which is not in the catalogue"
            ));
            continue;
        };
        let env = effective_env(service, &config_maps, &mut problems);
        let literal = |var: &str| match env.get(var) {
            Some(Source::Literal(v)) => Some(v.clone()),
            _ => None,
        };
        for (var, source) in &env {
            if KNATIVE_RESERVED.contains(&var.as_str()) {
                problems.push(format!(
                    "Service {sname}: {var} is set by Knative and may not be set in the Service"
                ));
                continue;
            }
            let Some(spec) = function.var(var) else {
                problems.push(format!(
                    "Service {sname}: {var} is set but {fname} does not read it (a typo, or a variable for another function)"
                ));
                continue;
            };
            match catalogue::on_cluster(spec) {
                Default::Platform => problems.push(format!("Service {sname}: {var} is set by the platform; do not set it")),
                Default::Binding => problems.push(format!(
                    "Service {sname}: {var} is injected by a SinkBinding; setting it in the Service hard-wires the pipeline"
                )),
                _ => {}
            }
            if let Some((cond, value)) = spec.when
                && literal(cond).as_deref() != Some(value)
            {
                problems.push(format!(
                    "Service {sname}: {var} is set but {fname} only reads it when {cond}={value}"
                ));
            }
            if catalogue::is_secret(var) && !matches!(source, Source::Secret { .. }) {
                problems.push(format!("Service {sname}: {var} carries credentials: read it from a Secret (secretKeyRef), never inline"));
            }
            if let Source::Secret { name, key, .. } = source {
                match secret_keys.get(name) {
                    Some(keys) if keys.contains(key) => {}
                    Some(_) => problems.push(format!("Service {sname}: {var} reads key {key} of Secret {name}, which the example Secret does not have")),
                    None => problems.push(format!("Service {sname}: {var} reads Secret {name}, which knative/secrets/ does not generate")),
                }
            }
        }
        for spec in function.all_vars() {
            let default = catalogue::on_cluster(spec);
            let needed = matches!(default, Default::Required | Default::Local(_));
            let applies = spec
                .when
                .is_none_or(|(cond, value)| literal(cond).as_deref() == Some(value));
            if needed && applies && !env.contains_key(spec.name) {
                let why = match default {
                    Default::Local(d) => format!("its default {d} only works on a laptop"),
                    _ => "it has no default".to_owned(),
                };
                problems.push(format!("Service {sname}: {} must be set: {why}", spec.name));
            }
            if let Some(Source::Secret { optional: true, .. }) = env.get(spec.name)
                && needed
                && applies
            {
                problems.push(format!(
                    "Service {sname}: {} is required, so its secretKeyRef may not be optional",
                    spec.name
                ));
            }
        }
    }
    problems
}

/// `KEY` names of an env file (`KEY=value` lines; comments and blanks skipped).
pub fn env_file_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .collect()
}
