//! What the functions' Rust sources read and export, found by scanning them:
//! environment variables (any call given the env lookup and a name,
//! `var(lookup, "X", ...)` or `token_var(lookup, "X")`; `lookup("X")`;
//! `env::var("X")`; `RUST_LOG` through tracing's `EnvFilter`) and metrics (`counter!("x"`, `gauge!(`, `histogram!(`).
//! Used to keep the catalogue in step with the code.

use std::collections::BTreeSet;
use std::path::Path;

const ENV_READS: &[&str] = &["lookup, \"", "lookup(\"", "env::var(\"", "env::var_os(\""];
const METRIC_MACROS: &[&str] = &["counter!(\"", "gauge!(\"", "histogram!(\""];

/// Variables and metrics found in the `.rs` files under `dirs`.
#[derive(Debug, Default)]
pub struct Found {
    pub env: BTreeSet<String>,
    pub metrics: BTreeSet<String>,
}

pub fn scan(dirs: &[std::path::PathBuf]) -> Found {
    let mut found = Found::default();
    for dir in dirs {
        crate::yaml::walk(dir, &mut |p: &Path| {
            if p.extension().is_some_and(|e| e == "rs")
                && let Ok(text) = std::fs::read_to_string(p)
            {
                scan_text(&text, &mut found);
            }
        });
    }
    found
}

/// Variables read by a library on the function's behalf: (call, variable).
const LIBRARY_READS: &[(&str, &str)] = &[("from_default_env", "RUST_LOG")];

/// Every run of whitespace as one space, and none right after `(`.
fn fold_whitespace(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut pending_space = false;
    for c in code.chars() {
        if c.is_whitespace() {
            pending_space = true;
            continue;
        }
        if pending_space && !out.ends_with('(') && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

pub fn scan_text(text: &str, found: &mut Found) {
    // Unit tests at the bottom of a file may name variables they do not read.
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    // rustfmt may break a call over lines: match on whitespace-folded code.
    let code = &fold_whitespace(code);
    for (call, var) in LIBRARY_READS {
        if code.contains(call) {
            found.env.insert((*var).to_owned());
        }
    }
    for (patterns, set, is_env) in [
        (ENV_READS, &mut found.env, true),
        (METRIC_MACROS, &mut found.metrics, false),
    ] {
        for pat in patterns {
            for (at, _) in code.match_indices(pat) {
                let rest = &code[at + pat.len()..];
                let word: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let looks_right = if is_env {
                    word.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                } else {
                    word.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                };
                if !word.is_empty() && looks_right && rest[word.len()..].starts_with('"') {
                    set.insert(word);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_reads_and_metrics() {
        let mut f = Found::default();
        scan_text(
            "let a = var(lookup, \"READ_COUNT\", 500usize)?; let b = lookup(\"K_SINK\"); std::env::var(\"HOSTNAME\");\n\
             let c = var(\n    lookup,\n    \"GRPC_WRITER_URL\",\n    x,\n)?; metrics::counter!(\n  \"split_total\"\n);\n\
             metrics::counter!(\"writer_cases_stored_total\", \"path\" => p); metrics::gauge!(\"x_y\").set(1.0);\n\
             #[cfg(test)] mod tests { cfg(&[(\"PORT\", \"1\")]); lookup(\"TEST_ONLY\"); }",
            &mut f,
        );
        assert_eq!(
            f.env.into_iter().collect::<Vec<_>>(),
            ["GRPC_WRITER_URL", "HOSTNAME", "K_SINK", "READ_COUNT"]
        );
        assert_eq!(
            f.metrics.into_iter().collect::<Vec<_>>(),
            ["split_total", "writer_cases_stored_total", "x_y"]
        );
    }
}
