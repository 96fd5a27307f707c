//! Every variable a function reads is set in its Service or has a default
//! that works on a cluster; nothing a function does not read is set; the
//! catalogue's variables (the functions' declarations) fit together.

use std::collections::BTreeSet;

use knative_manifests::catalogue;
use knative_manifests::{assert_no_problems, env};

use crate::common;

#[test]
fn every_variable_reaches_its_function() {
    let secret_keys = common::secret_keys();
    let mut problems = Vec::new();
    for b in common::bundles() {
        problems.extend(
            env::check(b, &secret_keys)
                .into_iter()
                .map(|p| format!("{}: {p}", b.source)),
        );
    }
    assert_no_problems("environment", &problems);
}

#[test]
fn the_env_check_catches_mistakes() {
    let default = common::bundle("overlays/default");
    let mut docs = default.docs.clone();
    let svc = docs
        .iter_mut()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "ingest-redis")
        .unwrap();
    let env = svc["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence_mut()
        .unwrap();
    // A typo, a variable for the other route, and no REDIS_URL at all.
    env.retain(|e| e["name"] != "REDIS_URL");
    env.push(serde_yaml::from_str("{name: MONGO_URI, value: x}").unwrap());
    env.push(serde_yaml::from_str("{name: GRPC_WRITER_URL, value: http://x}").unwrap());
    env.push(serde_yaml::from_str("{name: PORT, value: '9000'}").unwrap());
    env.retain(|e| e["name"] != "MONGODB_URI");
    env.push(serde_yaml::from_str("{name: MONGODB_URI, value: 'mongodb://user:pw@db/'}").unwrap());
    let broken =
        knative_manifests::bundle::Bundle::new("broken".into(), default.dir.clone(), docs).unwrap();
    let p = env::check(&broken, &common::secret_keys());
    for needle in [
        "MONGO_URI is set but ingest does not read it",
        "GRPC_WRITER_URL is set but ingest only reads it when INGEST_ROUTE=grpc",
        "REDIS_URL must be set",
        "PORT is set by Knative",
        "MONGODB_URI carries credentials",
    ] {
        assert!(
            p.iter().any(|m| m.contains(needle)),
            "expected {needle:?} in {p:#?}"
        );
    }
}

/// The catalogue's variables are the functions' own declarations, so they
/// cannot drift from the code; what is left is that they fit together: a
/// binary per function, no variable declared twice for one function, every
/// variable explained, and each `when` naming a variable the function reads.
#[test]
fn the_catalogue_is_the_functions_declarations() {
    let meta = common::metadata();
    let mut problems = Vec::new();
    for f in catalogue::FUNCTIONS {
        if meta.package_of_binary(f.name).is_none() {
            problems.push(format!(
                "{}: no binary of that name in the workspace",
                f.name
            ));
        }
        let mut seen = BTreeSet::new();
        for var in f.all_vars() {
            if !seen.insert(var.name) {
                problems.push(format!(
                    "{}: {} is declared twice (the runtime's Config::VARS and the function's own, or twice in one)",
                    f.name, var.name
                ));
            }
            if var.meaning.trim().is_empty() {
                problems.push(format!(
                    "{}: {} has no meaning; say what it does",
                    f.name, var.name
                ));
            }
            if let Some((cond, _)) = var.when
                && f.var(cond).is_none()
            {
                problems.push(format!(
                    "{}: {} is read when {cond} is set, which {} does not declare",
                    f.name, var.name, f.name
                ));
            }
        }
    }
    assert_no_problems("catalogue vs declarations", &problems);
}
