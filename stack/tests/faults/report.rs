//! The faults report: one table row per fault, then each fault's notes and
//! problems, in Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::audit::Audit;
use super::load::{Answer, Sent};

/// One fault's line in the report.
#[derive(Debug)]
pub struct Row {
    pub fault: String,
    pub audit: Audit,
    /// From the end of the (last) injection until both paths answered 202 again.
    pub back_after: Option<Duration>,
    /// From the end of the (last) injection until everything accepted was
    /// stored and every counter agreed with the stored documents; `None`
    /// if that never happened.
    pub recovery: Option<Duration>,
    /// Facts worth reading beside the numbers (restarts, memory, backlog).
    pub notes: Vec<String>,
    /// Broken guarantees found outside the audit (e.g. counters never agreed).
    pub problems: Vec<String>,
}

impl Row {
    pub fn holds(&self) -> bool {
        self.audit.holds()
            && self.problems.is_empty()
            && self.recovery.is_some()
            && self.back_after.is_some()
    }
}

/// Peak memory per function, for a note: `aggregate 21.3 MiB, ...`.
pub fn format_rss(peaks: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = peaks
        .iter()
        .map(|(n, kib)| format!("{n} {:.1} MiB", *kib as f64 / 1024.0))
        .collect();
    parts.join(", ")
}

/// The report as Markdown: a table, then each fault's notes and problems.
pub fn report(title: &str, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## {title}\n");
    let _ = writeln!(
        out,
        "| fault | cases sent | accepted (202) | refused (503) | stored though refused | outcome unknown (504, no answer) | stored of those | stored | duplicates | lost | serving again after | recovery | ok |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|"
    );
    let secs = |d: Option<Duration>| {
        d.map(|d| format!("{:.1} s", d.as_secs_f64()))
            .unwrap_or_else(|| "never".to_owned())
    };
    for r in rows {
        let a = &r.audit;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.fault,
            a.sent,
            a.accepted,
            a.refused,
            a.stored_refused,
            a.failed - a.refused,
            a.stored_failed,
            a.stored,
            a.duplicates,
            a.lost,
            secs(r.back_after),
            secs(r.recovery),
            if r.holds() { "yes" } else { "**NO**" }
        );
    }
    let _ = writeln!(out);
    for r in rows {
        let problems: Vec<&String> = r.audit.problems.iter().chain(&r.problems).collect();
        if r.notes.is_empty() && problems.is_empty() {
            continue;
        }
        let _ = writeln!(out, "- **{}**: {}", r.fault, r.notes.join("; "));
        for p in problems {
            let _ = writeln!(out, "  - PROBLEM: {p}");
        }
    }
    out
}

/// How many requests went unanswered and why the first did (reset, refused,
/// timed out): the lead when a path never came back.
pub fn unanswered(requests: &[Sent]) -> Option<String> {
    let why: Vec<&str> = requests
        .iter()
        .filter_map(|r| match &r.answer {
            Answer::Unanswered(why) => Some(why.as_str()),
            _ => None,
        })
        .collect();
    let first = why.first()?;
    Some(format!("{} requests not answered, e.g. {first}", why.len()))
}
