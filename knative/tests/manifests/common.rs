//! What the checks share: the tools, and every kustomization rendered once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use knative_manifests::bundle::Bundle;
use knative_manifests::{env, kustomize, paths, tools, workspace};

pub fn kubectl() -> PathBuf {
    tools::find(&tools::KUBECTL).unwrap_or_else(|e| panic!("{e}"))
}

/// The kustomization directories under knative/ (relative names for messages).
pub fn kustomization_dirs() -> Vec<PathBuf> {
    kustomize::find_all(&paths::knative_dir())
}

/// A fingerprint of the kustomize inputs (every file under knative/ but the
/// test crate's own code) and of the kubectl binary.
fn inputs_fingerprint(kubectl: &Path) -> String {
    static FINGERPRINT: OnceLock<String> = OnceLock::new();
    FINGERPRINT
        .get_or_init(|| {
            use std::hash::{Hash as _, Hasher as _};
            let root = paths::knative_dir();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            knative_manifests::yaml::walk(&root, &mut |p| {
                let rel = p.strip_prefix(&root).unwrap_or(p);
                if !(rel.starts_with("src") || rel.starts_with("tests")) {
                    rel.hash(&mut h);
                    std::fs::read(p).unwrap_or_default().hash(&mut h);
                }
            });
            kubectl.hash(&mut h);
            std::fs::metadata(kubectl)
                .and_then(|m| m.modified())
                .ok()
                .hash(&mut h);
            format!("{:016x}", h.finish())
        })
        .clone()
}

/// `kubectl kustomize`, remembered in the target directory for unchanged
/// inputs: nextest runs each test in its own process, and only the first
/// one needs to pay for the renders.
fn render_cached(kubectl: &Path, dir: &Path) -> anyhow::Result<String> {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("kustomize-cache")
        .join(inputs_fingerprint(kubectl));
    let file = cache.join(format!("{}.yaml", paths::rel(dir).replace('/', "_")));
    if let Ok(text) = std::fs::read_to_string(&file) {
        return Ok(text);
    }
    let text = render_dir(kubectl, dir)?;
    if !cache.is_dir() {
        // Renders of older inputs are of no more use.
        if let Ok(old) = std::fs::read_dir(cache.parent().expect("the cache has a parent")) {
            for entry in old.flatten() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    std::fs::create_dir_all(&cache)?;
    let tmp = tempfile::NamedTempFile::new_in(&cache)?;
    std::fs::write(tmp.path(), &text)?;
    tmp.persist(&file)?;
    Ok(text)
}

/// knative/secrets reads a gitignored secrets.env: it is rendered from a
/// copy with the committed example in its place.
fn render_dir(kubectl: &Path, dir: &Path) -> anyhow::Result<String> {
    let example = dir.join("secrets.env.example");
    if !example.is_file() {
        return kustomize::render(kubectl, dir);
    }
    let tmp = tempfile::tempdir()?;
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_file() {
            std::fs::copy(
                &p,
                tmp.path().join(p.file_name().expect("a file has a name")),
            )?;
        }
    }
    std::fs::copy(&example, tmp.path().join("secrets.env"))?;
    kustomize::render(kubectl, tmp.path())
}

/// Every kustomization, rendered and parsed (typed resources strictly).
/// Panics listing every one that fails.
pub fn bundles() -> &'static Vec<Bundle> {
    static BUNDLES: OnceLock<Vec<Bundle>> = OnceLock::new();
    BUNDLES.get_or_init(|| {
        let kubectl = kubectl();
        let dirs = kustomization_dirs();
        // kubectl is the slow part: render in parallel (nextest runs every
        // test in its own process, so each one that needs these renders them).
        let results: Vec<(PathBuf, anyhow::Result<Bundle>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = dirs
                .iter()
                .map(|dir| {
                    let kubectl = &kubectl;
                    scope.spawn(move || {
                        let source = paths::rel(dir);
                        let bundle = render_cached(kubectl, dir).and_then(|text| {
                            let docs = knative_manifests::yaml::documents(&text)?;
                            Bundle::new(source, dir.clone(), docs)
                        });
                        (dir.clone(), bundle)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a render thread panicked"))
                .collect()
        });
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for (dir, result) in results {
            match result {
                Ok(b) => out.push(b),
                Err(e) => failures.push(format!("{}: {e:#}", paths::rel(&dir))),
            }
        }
        assert!(
            failures.is_empty(),
            "kustomizations that do not render or parse (kubectl: {}):\n{}",
            kustomize::kubectl_version(&kubectl),
            failures.join("\n")
        );
        out
    })
}

pub fn bundle(rel: &str) -> &'static Bundle {
    bundles()
        .iter()
        .find(|b| b.source == format!("knative/{rel}"))
        .unwrap_or_else(|| panic!("no kustomization knative/{rel}"))
}

/// Bundles of the kustomizations under knative/overlays/ (each a deployable set).
pub fn overlays() -> impl Iterator<Item = &'static Bundle> {
    bundles()
        .iter()
        .filter(|b| b.source.starts_with("knative/overlays/"))
}

/// Keys of the project's Secret(s), from the committed example env file.
pub fn secret_keys() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(paths::knative_dir().join("secrets/secrets.env.example"))
        .expect("knative/secrets/secrets.env.example exists");
    BTreeMap::from([(
        "covid-realtime-secrets".to_owned(),
        env::env_file_keys(&text),
    )])
}

pub fn metadata() -> &'static workspace::Metadata {
    static META: OnceLock<workspace::Metadata> = OnceLock::new();
    META.get_or_init(|| workspace::load().unwrap_or_else(|e| panic!("{e:#}")))
}
