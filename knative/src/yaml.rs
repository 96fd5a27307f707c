//! Multi-document YAML, as Kubernetes writes it.

use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize as _;

/// Every non-empty document of `text`.
pub fn documents(text: &str) -> anyhow::Result<Vec<serde_yaml::Value>> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(de)
            .with_context(|| format!("document {} is not valid YAML", i + 1))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// Every non-empty document of the file at `path`.
pub fn file_documents(path: &Path) -> anyhow::Result<Vec<serde_yaml::Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    documents(&text).with_context(|| format!("{} does not parse", path.display()))
}

/// `apiVersion` and `kind` of a resource document.
pub fn type_of(doc: &serde_yaml::Value) -> (String, String) {
    let s = |k: &str| {
        doc.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    (s("apiVersion"), s("kind"))
}

/// `metadata.name` of a resource document.
pub fn name_of(doc: &serde_yaml::Value) -> String {
    doc.get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Every YAML file under `dir` (recursively), sorted.
pub fn yaml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    walk(dir, &mut |p| {
        if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p.to_path_buf());
        }
    });
    out.sort();
    out
}

/// Calls `f` for every file under `dir`, skipping `target/` and hidden folders.
pub fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                walk(&p, f);
            }
        } else {
            f(&p);
        }
    }
}
