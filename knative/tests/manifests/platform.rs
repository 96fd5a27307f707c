//! Knative Serving's own ConfigMaps are changed with `kubectl patch`, never
//! with client-side `kubectl apply`: apply's three-way merge would drop
//! Serving's keys and labels, and the next apply of serving-core.yaml would
//! remove ingress-class (issue 13, item 3).

use knative_manifests::{assert_no_problems, paths, yaml};

use crate::common;

/// Files that document or run an install.
fn install_texts() -> Vec<(String, String)> {
    let root = paths::repo_root();
    let mut files = vec![
        root.join("README.md"),
        root.join("knative/README.md"),
        root.join("Makefile"),
    ];
    yaml::walk(&root.join("scripts"), &mut |p| files.push(p.to_path_buf()));
    yaml::walk(&root.join("knative"), &mut |p| {
        if p.extension().is_some_and(|e| e == "yaml" || e == "sh") {
            files.push(p.to_path_buf());
        }
    });
    files
        .into_iter()
        .filter_map(|f| {
            std::fs::read_to_string(&f)
                .ok()
                .map(|t| (paths::rel(&f), t))
        })
        .collect()
}

/// `kubectl apply` of knative/platform without its own field manager, in
/// any line of `text` (comments included: they are copied into shells).
fn unsafe_applies(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("kubectl apply") && l.contains("knative/platform"))
        .filter(|l| !(l.contains("--server-side") && l.contains("--field-manager=")))
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn the_install_path_patches_knatives_config_maps() {
    let readme = std::fs::read_to_string(paths::knative_dir().join("README.md")).unwrap();
    let install = readme
        .split("## 2. From an empty cluster to a running pipeline")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("knative/README.md has its install section");
    let mut problems = Vec::new();
    for cm in common::bundle("platform").of_kind("ConfigMap") {
        let name = yaml::name_of(cm);
        let patch = format!(
            "kubectl patch configmap/{name} -n knative-serving --type merge --patch-file knative/platform/{name}.yaml"
        );
        if !install.contains(&patch) {
            problems.push(format!(
                "knative/README.md's install path does not run `{patch}`"
            ));
        }
        // A merge patch that carried labels or annotations would replace Serving's.
        let keys: Vec<_> = cm["metadata"]
            .as_mapping()
            .map(|m| m.keys().filter_map(|k| k.as_str()).collect())
            .unwrap_or_default();
        if keys.iter().any(|k| !["name", "namespace"].contains(k)) {
            problems.push(format!(
                "knative/platform/{name}.yaml: a patch of Serving's ConfigMap carries only data, not metadata {keys:?}"
            ));
        }
    }
    for (file, text) in install_texts() {
        for line in unsafe_applies(&text) {
            problems.push(format!(
                "{file}: `{line}`: client-side apply breaks Serving's ConfigMaps; use kubectl patch \
                 (or --server-side --field-manager=covid-realtime-platform)"
            ));
        }
    }
    assert_no_problems("Knative's ConfigMaps", &problems);
}

#[test]
fn a_plain_apply_of_the_platform_is_caught() {
    assert_eq!(
        unsafe_applies("kubectl apply -k knative/platform   # ingress-class"),
        ["kubectl apply -k knative/platform   # ingress-class"]
    );
    assert!(
        unsafe_applies(
            "kubectl apply --server-side --field-manager=covid-realtime-platform -k knative/platform"
        )
        .is_empty()
    );
}
