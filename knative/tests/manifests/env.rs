//! Every variable a function reads is set in its Service or has a default
//! that works on a cluster; nothing a function does not read is set; the
//! catalogue matches what the code reads and exports.

use std::collections::BTreeSet;

use knative_manifests::catalogue::{self, Default};
use knative_manifests::{assert_no_problems, env, source_scan};

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

/// The catalogue is written by hand from the design; the code is scanned to
/// keep them in step. A function's own crate is held to its own list; a
/// shared crate (runtime, store) may read a variable that only some functions
/// use (ingest's JWT settings live in runtime), so there it is enough that
/// some function lists it.
#[test]
fn the_catalogue_matches_the_code() {
    let meta = common::metadata();
    let every_listed: BTreeSet<&str> = catalogue::FUNCTIONS
        .iter()
        .flat_map(|f| f.all_vars().map(|v| v.name))
        .collect();
    let mut problems = Vec::new();
    for f in catalogue::FUNCTIONS {
        let Some(package) = meta.package_of_binary(f.name) else {
            problems.push(format!(
                "{}: no binary of that name in the workspace",
                f.name
            ));
            continue;
        };
        let own_dir = package.dir().join("src");
        let shared_dirs: Vec<_> = meta
            .source_dirs(package)
            .into_iter()
            .filter(|d| *d != own_dir)
            .collect();
        let own = source_scan::scan(std::slice::from_ref(&own_dir));
        let shared = source_scan::scan(&shared_dirs);
        let listed: BTreeSet<&str> = f.all_vars().map(|v| v.name).collect();
        for var in &own.env {
            if !listed.contains(var.as_str()) {
                problems.push(format!("{}: the code reads {var}, which the catalogue (knative/src/catalogue.rs) does not list for it; add it with its default", f.name));
            }
        }
        for var in &shared.env {
            if !every_listed.contains(var.as_str()) {
                problems.push(format!("{}: a crate it uses reads {var}, which no function of the catalogue (knative/src/catalogue.rs) lists", f.name));
            }
        }
        for var in f.all_vars() {
            let pending = catalogue::NOT_YET_IMPLEMENTED.contains(&(f.name, var.name));
            let read = own.env.contains(var.name) || shared.env.contains(var.name);
            if pending && read {
                problems.push(format!(
                    "{}: {} is read by the code now: remove it from NOT_YET_IMPLEMENTED",
                    f.name, var.name
                ));
            } else if !pending && !read && var.default != Default::Platform {
                problems.push(format!(
                    "{}: the catalogue lists {}, which the code never reads",
                    f.name, var.name
                ));
            }
        }
        for m in f.all_metrics() {
            if !own.metrics.contains(m) && !shared.metrics.contains(m) {
                problems.push(format!(
                    "{}: the catalogue lists metric {m}, which the code never registers",
                    f.name
                ));
            }
        }
    }
    assert_no_problems("catalogue vs code", &problems);
}
