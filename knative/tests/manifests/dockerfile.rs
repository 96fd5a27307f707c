//! The Dockerfile, read statically: stages, pinned bases, the cargo build of
//! one workspace binary, a distroless non-root runtime whose ENTRYPOINT is
//! that binary; the bake file builds every function; .dockerignore keeps the
//! context small.

use std::collections::BTreeSet;

use knative_manifests::{assert_no_problems, dockerfile, paths};

use crate::common;

fn rust_version() -> (u32, u32) {
    let text = std::fs::read_to_string(paths::repo_root().join("Cargo.toml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("rust-version"))
        .expect("rust-version in Cargo.toml");
    let v = line.split('"').nth(1).expect("rust-version = \"x.y\"");
    let mut it = v.split('.').map(|n| n.parse::<u32>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

fn bake_args() -> Vec<std::collections::BTreeMap<String, String>> {
    let hcl = std::fs::read_to_string(paths::knative_dir().join("docker-bake.hcl"))
        .expect("knative/docker-bake.hcl");
    dockerfile::bake_args(&hcl)
}

#[test]
fn the_dockerfile_builds_a_real_binary_into_a_locked_down_image() {
    let text = std::fs::read_to_string(paths::repo_root().join("Dockerfile"))
        .expect("Dockerfile at the repository root");
    let df = dockerfile::parse(&text).unwrap_or_else(|e| panic!("Dockerfile: {e:#}"));
    let binaries = common::metadata().binaries();
    let bake = bake_args();
    let problems = dockerfile::check(
        &df,
        &dockerfile::Context {
            binaries: &binaries,
            rust_version: rust_version(),
            bake_args: &bake,
        },
    );
    assert_no_problems("Dockerfile", &problems);
}

#[test]
fn the_bake_file_builds_every_function() {
    let built: BTreeSet<String> = bake_args()
        .iter()
        .filter_map(|a| a.get("FUNCTION").cloned())
        .collect();
    let functions = common::metadata().function_binaries();
    assert_eq!(
        built, functions,
        "docker-bake.hcl targets vs the binaries under functions/"
    );
    let hcl = std::fs::read_to_string(paths::knative_dir().join("docker-bake.hcl")).unwrap();
    for f in &functions {
        assert!(
            hcl.contains(&format!("\"${{REGISTRY}}/{f}:${{TAG}}\"")),
            "the {f} image is tagged REGISTRY/{f}:TAG, the name the Services use"
        );
    }
    let default_image = common::bundle("overlays/default")
        .service("ingest-grpc")
        .unwrap()
        .spec
        .template
        .spec
        .containers[0]
        .image
        .clone();
    assert!(
        hcl.contains("default = \"dev.local/covid-realtime\"")
            && hcl.contains("default = \"0.1.0\""),
        "bake defaults give {default_image}"
    );
}

#[test]
fn the_build_context_leaves_out_build_output() {
    let text =
        std::fs::read_to_string(paths::repo_root().join(".dockerignore")).expect(".dockerignore");
    let lines: BTreeSet<&str> = text.lines().map(str::trim).collect();
    for entry in ["target/", "node_modules/", ".git/"] {
        assert!(lines.contains(entry), ".dockerignore lists {entry}");
    }
}
