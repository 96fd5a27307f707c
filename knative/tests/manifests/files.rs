//! Every YAML file parses, and every manifest is used by a kustomization.

use std::collections::BTreeSet;

use knative_manifests::{assert_no_problems, kustomize, paths, yaml};

#[test]
fn every_yaml_file_parses() {
    let files = yaml::yaml_files(&paths::knative_dir());
    assert!(
        files.len() > 20,
        "expected the manifests under knative/, found {}",
        files.len()
    );
    let problems: Vec<String> = files
        .iter()
        .filter_map(|f| {
            yaml::file_documents(f)
                .err()
                .map(|e| format!("{}: {e:#}", paths::rel(f)))
        })
        .collect();
    assert_no_problems("YAML files", &problems);
}

#[test]
fn every_manifest_is_used_by_a_kustomization() {
    let mut used = BTreeSet::new();
    for dir in kustomize::find_all(&paths::knative_dir()) {
        used.insert(dir.join("kustomization.yaml"));
        let k = kustomize::Kustomization::load(&dir).unwrap();
        for f in k.files(&dir) {
            assert!(
                f.is_file() || f.ends_with("secrets.env"),
                "{} names {}, which does not exist",
                paths::rel(&dir),
                paths::rel(&f)
            );
            used.insert(f);
        }
    }
    let mut problems = Vec::new();
    yaml::walk(&paths::knative_dir(), &mut |p| {
        let manifest = p
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
        if manifest && !used.contains(p) {
            problems.push(format!(
                "{} is not used by any kustomization: add it to one or delete it",
                paths::rel(p)
            ));
        }
    });
    assert_no_problems("orphan manifests", &problems);
}
