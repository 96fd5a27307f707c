//! Where things are: the repository, `knative/`, and the Cargo target
//! directory the function binaries were built into.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The repository root (the workspace), one level above this crate.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("knative/ has a parent directory")
        .to_path_buf()
}

/// `knative/`.
pub fn knative_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path relative to the repository root, for messages.
pub fn rel(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The directory holding the debug binaries (`target/debug`): found by
/// walking up from the running test executable (`target/debug/deps/...`),
/// else from `CARGO_TARGET_DIR`, else `target/` at the repository root.
pub fn debug_bin_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            if dir.file_name().is_some_and(|n| n == "deps")
                && let Some(profile) = dir.parent()
            {
                return profile.to_path_buf();
            }
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("debug")
}

/// A function binary built by `cargo build --bins`, or an error saying so.
pub fn function_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = debug_bin_dir().join(name);
    if !path.is_file() {
        bail!(
            "the {name} binary is not at {}: build the workspace binaries first \
             (`cargo build --bins`, as `make test` does) and run the tests again",
            path.display()
        );
    }
    std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(path)
}
