//! The Cargo workspace as `cargo metadata --no-deps` describes it: packages,
//! their binaries.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub packages: Vec<Package>,
    pub workspace_root: PathBuf,
}

#[derive(Debug, Deserialize)]
pub struct Package {
    pub name: String,
    pub manifest_path: PathBuf,
    pub targets: Vec<Target>,
}

#[derive(Debug, Deserialize)]
pub struct Target {
    pub name: String,
    pub kind: Vec<String>,
    pub src_path: PathBuf,
}

/// Runs `cargo metadata --format-version 1 --no-deps` in the repository.
pub fn load() -> anyhow::Result<Metadata> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(crate::paths::repo_root())
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("cargo metadata printed unexpected JSON")
}

impl Package {
    pub fn binaries(&self) -> impl Iterator<Item = &str> {
        self.targets
            .iter()
            .filter(|t| t.kind.iter().any(|k| k == "bin"))
            .map(|t| t.name.as_str())
    }
}

impl Metadata {
    /// Every binary target of the workspace.
    pub fn binaries(&self) -> BTreeSet<String> {
        self.packages
            .iter()
            .flat_map(|p| p.binaries())
            .map(str::to_owned)
            .collect()
    }

    /// Binaries of packages under `functions/`: the deployable functions.
    pub fn function_binaries(&self) -> BTreeSet<String> {
        let functions = self.workspace_root.join("functions");
        self.packages
            .iter()
            .filter(|p| p.manifest_path.starts_with(&functions))
            .flat_map(|p| p.binaries())
            .map(str::to_owned)
            .collect()
    }

    /// The package that builds binary `bin`.
    pub fn package_of_binary(&self, bin: &str) -> Option<&Package> {
        self.packages
            .iter()
            .find(|p| p.binaries().any(|b| b == bin))
    }
}
