//! Kustomizations: finding them, what files they use, which bases they build
//! on, and rendering them with `kubectl kustomize`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// The fields of a kustomization.yaml that name files or directories
/// (kustomize's current names: [`render`] refuses the deprecated ones).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Kustomization {
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub patches: Vec<PatchRef>,
    #[serde(default)]
    pub config_map_generator: Vec<Generator>,
    #[serde(default)]
    pub secret_generator: Vec<Generator>,
}

/// A `patches` entry: a file (`path`) or an inline patch.
#[derive(Debug, Deserialize)]
pub struct PatchRef {
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Generator {
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub envs: Vec<String>,
}

impl Kustomization {
    pub fn load(dir: &Path) -> anyhow::Result<Kustomization> {
        let path = dir.join("kustomization.yaml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not a kustomization", path.display()))
    }

    /// Files this kustomization reads (resources, patches, generator inputs),
    /// resolved against `dir`.
    pub fn files(&self, dir: &Path) -> Vec<PathBuf> {
        let mut out: Vec<String> = self.resources.clone();
        out.extend(self.patches.iter().filter_map(|p| p.path.clone()));
        for g in self
            .config_map_generator
            .iter()
            .chain(&self.secret_generator)
        {
            // `files` entries may be `key=path`.
            out.extend(
                g.files
                    .iter()
                    .map(|f| f.rsplit('=').next().unwrap_or(f).to_owned()),
            );
            out.extend(g.env.iter().cloned());
            out.extend(g.envs.iter().cloned());
        }
        out.into_iter()
            .map(|f| normalize(&dir.join(f)))
            .filter(|p| !p.is_dir())
            .collect()
    }

    /// Directories this kustomization builds on.
    pub fn bases(&self, dir: &Path) -> Vec<PathBuf> {
        self.resources
            .iter()
            .map(|b| normalize(&dir.join(b)))
            .filter(|p| p.is_dir())
            .collect()
    }
}

/// `a/b/../c` -> `a/c`, without touching the file system.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Every directory under `root` holding a kustomization.yaml, sorted.
pub fn find_all(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    crate::yaml::walk(root, &mut |p| {
        if p.file_name().is_some_and(|n| n == "kustomization.yaml") {
            dirs.push(p.parent().expect("a file has a parent").to_path_buf());
        }
    });
    dirs.sort();
    dirs
}

/// `dir` and every kustomization it builds on, transitively.
pub fn with_ancestors(dir: &Path) -> anyhow::Result<BTreeSet<PathBuf>> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![normalize(dir)];
    while let Some(d) = todo.pop() {
        if seen.insert(d.clone()) {
            todo.extend(Kustomization::load(&d)?.bases(&d));
        }
    }
    Ok(seen)
}

/// `kubectl kustomize dir`: the rendered YAML. A warning on stderr (such as
/// kustomize's for the deprecated `bases`, `patchesJson6902`,
/// `patchesStrategicMerge`) is an error: the next kustomize may drop the field.
pub fn render(kubectl: &Path, dir: &Path) -> anyhow::Result<String> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .with_context(|| format!("cannot run {}", kubectl.display()))?;
    if !out.status.success() {
        bail!(
            "`kubectl kustomize {}` failed ({}):\n{}",
            crate::paths::rel(dir),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Warning") {
        bail!(
            "`kubectl kustomize {}` warns; use kustomize's current field names (`resources`, `patches`):\n{stderr}",
            crate::paths::rel(dir)
        );
    }
    String::from_utf8(out.stdout).context("kubectl kustomize printed something that is not UTF-8")
}

/// `kubectl version --client`, for messages.
pub fn kubectl_version(kubectl: &Path) -> String {
    Command::new(kubectl)
        .args(["version", "--client"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .replace('\n', "; ")
        })
        .unwrap_or_else(|e| format!("unknown ({e})"))
}
