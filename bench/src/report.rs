//! Results: one JSON file per suite in bench/results/, and the suite's
//! table in BENCHMARKS.md between `<!-- bench:NAME -->` markers.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub rustc: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kb: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let cmd = |c: &str, a: &[&str]| {
            std::process::Command::new(c)
                .args(a)
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        };
        Machine {
            cpu,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_gib: (mem_kb / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: cmd("uname", &["-r"]),
            rustc: cmd("rustc", &["--version"]),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} cores ({}), {} GiB, Linux {}, {}",
            self.cores, self.cpu, self.memory_gib, self.kernel, self.rustc
        )
    }
}

/// A markdown table from a header and rows.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!(
        "| {} |\n|{}|\n",
        header.join(" | "),
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for r in rows {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    s
}

/// Writes `bench/results/<name>.json`.
pub fn write_json(results_dir: &Path, name: &str, value: &impl Serialize) -> anyhow::Result<()> {
    std::fs::create_dir_all(results_dir)?;
    let path = results_dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Replaces the section `name` of BENCHMARKS.md (appending it if new).
pub fn update_markdown(path: &Path, name: &str, body: &str) -> anyhow::Result<()> {
    let start = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->");
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{start}\n{}\n{end}", body.trim_end());
    let new = match (doc.find(&start), doc.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{section}{}", &doc[..a], &doc[b + end.len()..]),
        _ => format!("{}\n{section}\n", doc.trim_end()),
    };
    std::fs::write(path, new).with_context(|| format!("cannot write {}", path.display()))?;
    println!("updated {} ({name})", path.display());
    Ok(())
}

/// `1234.5` → `1,235`.
pub fn int(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Microseconds as milliseconds with two decimals.
pub fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(int(1234567.4), "1,234,567");
        assert_eq!(int(999.0), "999");
        assert_eq!(ms(1500.0), "1.50 ms");
    }

    #[test]
    fn replaces_a_section_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("B.md");
        std::fs::write(
            &p,
            "# B\n\n<!-- bench:a -->\nold\n<!-- /bench:a -->\n\ntail\n",
        )
        .unwrap();
        update_markdown(&p, "a", "new").unwrap();
        update_markdown(&p, "b", "bee").unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains("<!-- bench:a -->\nnew\n<!-- /bench:a -->\n\ntail"));
        assert!(s.ends_with("<!-- bench:b -->\nbee\n<!-- /bench:b -->\n"));
    }
}
