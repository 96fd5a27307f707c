//! The table a rollout prints, one row per measured interval: time, split,
//! each revision's requests, errors, p90 and p99, and the verdict.

use std::fmt;
use std::time::Duration;

use super::gates::format_us;
use super::measure::{Measurement, Sample};

/// One measured interval.
#[derive(Debug, Clone)]
pub struct Row {
    /// From the start of the rollout to the end of the interval.
    pub at: Duration,
    /// What was measured: `90/10` (stable/canary on the Service's host),
    /// `tag URLs` or `warm-up` (each revision on its tag URL).
    pub split: String,
    pub measured: Measurement,
    pub verdict: String,
}

/// The rows of one rollout, and its two revisions: `(label, name)`, the
/// label being the tag (`stable`/`canary`, `blue`/`green`).
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub stable: (String, String),
    pub canary: (String, String),
    pub rows: Vec<Row>,
}

/// Time, split, then requests, errors, p90, p99 per revision.
const TIME: usize = 6;
const SPLIT: usize = 8;
const CELLS: [usize; 4] = [8, 6, 8, 8];

fn group_width() -> usize {
    CELLS.iter().sum::<usize>() + 2 * (CELLS.len() - 1)
}

fn cells(values: [String; 4]) -> String {
    values
        .iter()
        .zip(CELLS)
        .map(|(v, w)| format!("{v:>w$}"))
        .collect::<Vec<_>>()
        .join("  ")
}

impl Timeline {
    /// The two header lines (printed once, before the first row).
    pub fn header(&self) -> String {
        let g = group_width();
        let names = ["requests", "errors", "p90", "p99"].map(str::to_owned);
        let stable = format!("{} {}", self.stable.0, self.stable.1);
        let groups = format!(
            "{:TIME$}  {:SPLIT$}  {stable:<g$}  {} {}",
            "", "", self.canary.0, self.canary.1
        );
        format!(
            "{}\n{:>TIME$}  {:<SPLIT$}  {}  {}  verdict\n",
            groups.trim_end(),
            "time",
            "split",
            cells(names.clone()),
            cells(names),
        )
    }

    /// One row as a line.
    pub fn line(row: &Row) -> String {
        let of = |s: &Sample| {
            let us = |v: u64| {
                if s.requests == 0 {
                    "-".to_owned()
                } else {
                    format_us(v as f64)
                }
            };
            cells([
                s.requests.to_string(),
                s.errors.to_string(),
                us(s.p90_us),
                us(s.p99_us),
            ])
        };
        let secs = row.at.as_secs();
        format!(
            "{:>TIME$}  {:<SPLIT$}  {}  {}  {}\n",
            format!("{}:{:02}", secs / 60, secs % 60),
            row.split,
            of(&row.measured.stable),
            of(&row.measured.canary),
            row.verdict,
        )
    }
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header())?;
        for r in &self.rows {
            f.write_str(&Timeline::line(r))?;
        }
        Ok(())
    }
}
