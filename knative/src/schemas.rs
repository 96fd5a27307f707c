//! Every rendered resource checked against its upstream schema, strictly (an
//! unknown field is an error), by `knative/schemas/validate.py` in the
//! virtualenv `scripts/setup.sh` makes: Kubernetes' own schemas
//! (`kubernetes-validate`, at [`KUBERNETES_VERSION`]) for core kinds, and the
//! models cloudcoil generates from Knative Serving's, Knative Eventing's and
//! the Prometheus Operator's published CRDs for theirs. The versions are
//! pinned in `scripts/setup.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// The Kubernetes version core kinds are validated against.
pub const KUBERNETES_VERSION: &str = "1.32.0";

/// Kinds whose project publishes no schema in a package registry, and why.
/// They are checked by this project's own rules only.
pub const NO_PUBLISHED_SCHEMA: &[(&str, &str, &str)] = &[(
    "sources.knative.dev/v1alpha1",
    "RedisStreamSource",
    "eventing-redis ships its CRD only in its release manifests, in no PyPI or npm package",
)];

/// What the validator says about one resource.
#[derive(Debug, Clone, Deserialize)]
pub struct Verdict {
    pub file: String,
    pub index: usize,
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// `ok`, `invalid` or `no-schema`.
    pub status: String,
    /// The package (and version) whose schema was used.
    pub schema: Option<String>,
    pub errors: Vec<String>,
}

/// The virtualenv's Python: `$SCHEMA_PYTHON`, else
/// `$COVID_TOOLS_DIR/schema-venv/bin/python` (default `/opt/covid-realtime`).
pub fn python() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SCHEMA_PYTHON").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let tools = std::env::var_os("COVID_TOOLS_DIR")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("/opt/covid-realtime"), PathBuf::from);
    let python = tools.join("schema-venv/bin/python");
    if !python.is_file() {
        bail!(
            "{} is missing: the schema checks need the virtualenv with kubernetes-validate and \
             cloudcoil's Knative models; run scripts/setup.sh (or set SCHEMA_PYTHON)",
            python.display()
        );
    }
    Ok(python)
}

/// Validates every resource of the multi-document YAML `files`.
pub fn validate(files: &[PathBuf]) -> anyhow::Result<Vec<Verdict>> {
    let script = crate::paths::knative_dir().join("schemas/validate.py");
    let out = Command::new(python()?)
        .arg(&script)
        .args(["--kubernetes", KUBERNETES_VERSION])
        .args(files)
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}",
            crate::paths::rel(&script),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not a verdict: {l}")))
        .collect()
}

/// Writes `docs` as one multi-document YAML file at `path`, each document as
/// JSON: the validator's YAML 1.1 reader would take a plain `yes` for a bool.
pub fn write_documents(path: &Path, docs: &[serde_yaml::Value]) -> anyhow::Result<()> {
    let mut text = String::new();
    for d in docs {
        text.push_str("---\n");
        text.push_str(&serde_json::to_string(d)?);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The problems in `verdicts`: invalid resources, and kinds with no schema
/// that [`NO_PUBLISHED_SCHEMA`] does not explain.
pub fn problems(verdicts: &[Verdict]) -> crate::Problems {
    let mut p = crate::Problems::new();
    for v in verdicts {
        let what = format!("{} {} ({})", v.kind, v.name, v.api_version);
        match v.status.as_str() {
            "ok" => {}
            "invalid" => p.push(format!(
                "{}: {what} does not match {}: {}",
                v.file,
                v.schema.as_deref().unwrap_or("its schema"),
                v.errors.join("; ")
            )),
            _ if NO_PUBLISHED_SCHEMA
                .iter()
                .any(|(a, k, _)| *a == v.api_version && *k == v.kind) => {}
            other => p.push(format!(
                "{}: {what}: {other}: no upstream schema knows this apiVersion and kind (a typo, or \
                 a kind whose published schema the validator does not load yet)",
                v.file
            )),
        }
    }
    p
}
