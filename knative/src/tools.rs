//! The external tools the checks run. A missing tool fails the check with the
//! command that installs it; nothing is skipped.

use std::path::PathBuf;

use anyhow::bail;

/// A tool the checks need, and how to get it on Debian 12.
pub struct Tool {
    pub name: &'static str,
    /// Environment variable that may name the executable instead of `PATH`.
    pub override_var: &'static str,
    pub install: &'static str,
}

pub const KUBECTL: Tool = Tool {
    name: "kubectl",
    override_var: "KUBECTL",
    install: "kubectl 1.21 or newer (kustomize v4+, for `patches`): https://kubernetes.io/docs/tasks/tools/ \
              (Debian 12's kubernetes-client is kubectl 1.20, too old)",
};

pub const SHELLCHECK: Tool = Tool {
    name: "shellcheck",
    override_var: "SHELLCHECK",
    install: "apt-get install -y shellcheck",
};

pub const REDIS_SERVER: Tool = Tool {
    name: "redis-server",
    override_var: "REDIS_SERVER",
    install: "apt-get install -y redis-server   (scripts/setup.sh does)",
};

pub const PROMTOOL: Tool = Tool {
    name: "promtool",
    override_var: "PROMTOOL",
    install: "apt-get install -y prometheus   (Prometheus' promtool; scripts/setup.sh installs it and keeps the service off)",
};

pub const BASH: Tool = Tool {
    name: "bash",
    override_var: "BASH_FOR_TESTS",
    install: "apt-get install -y bash",
};

/// The executable of `tool`: `$OVERRIDE_VAR` if set, else the first match on `PATH`.
pub fn find(tool: &Tool) -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(tool.override_var).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!(
            "{}={} is not a file; unset it or point it at a {} executable",
            tool.override_var,
            p.display(),
            tool.name
        );
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool.name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{} is needed by these checks and is not on PATH. Install it: {} (or set {} to its path)",
        tool.name,
        tool.install,
        tool.override_var
    )
}
