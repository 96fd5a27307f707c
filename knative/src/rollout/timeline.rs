//! The table a rollout prints, one row per measured interval: time, split,
//! each revision's requests, errors and p99, and the verdict.

use std::fmt;
use std::time::Duration;

use super::gates::format_us;
use super::measure::{Measurement, Sample};

/// One measured interval.
#[derive(Debug, Clone)]
pub struct Row {
    /// From the start of the rollout to the end of the interval.
    pub at: Duration,
    /// What was measured: `90/10` (stable/canary on the Service's host) or
    /// `tags` (each on its tag URL).
    pub split: String,
    pub measured: Measurement,
    pub verdict: String,
}

/// The rows of one rollout, and the names of its two revisions.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub stable: String,
    pub canary: String,
    pub rows: Vec<Row>,
}

const WIDTHS: [usize; 8] = [7, 9, 9, 7, 8, 9, 7, 8];

impl Timeline {
    /// The two header lines (printed once, before the first row).
    pub fn header(&self) -> String {
        let w = WIDTHS;
        let stable = format!("stable {}", self.stable);
        let canary = format!("canary {}", self.canary);
        let group = w[2] + w[3] + w[4] + 4;
        format!(
            "{:<a$}  {:<b$}  {stable:<group$}  {canary:<group$}  verdict\n{:<a$}  {:<b$}  {:>c$}  {:>d$}  {:>e$}  {:>f$}  {:>g$}  {:>h$}\n",
            "",
            "",
            "time",
            "split",
            "requests",
            "errors",
            "p99",
            "requests",
            "errors",
            "p99",
            a = w[0],
            b = w[1],
            c = w[2],
            d = w[3],
            e = w[4],
            f = w[5],
            g = w[6],
            h = w[7],
        )
    }

    /// One row as a line.
    pub fn line(row: &Row) -> String {
        let w = WIDTHS;
        let cells = |s: &Sample| {
            (
                s.requests.to_string(),
                s.errors.to_string(),
                if s.requests == 0 {
                    "-".to_owned()
                } else {
                    format_us(s.p99_us as f64)
                },
            )
        };
        let (sr, se, sp) = cells(&row.measured.stable);
        let (cr, ce, cp) = cells(&row.measured.canary);
        let secs = row.at.as_secs();
        let time = format!("{}:{:02}", secs / 60, secs % 60);
        format!(
            "{time:>a$}  {:<b$}  {sr:>c$}  {se:>d$}  {sp:>e$}  {cr:>f$}  {ce:>g$}  {cp:>h$}  {}\n",
            row.split,
            row.verdict,
            a = w[0],
            b = w[1],
            c = w[2],
            d = w[3],
            e = w[4],
            f = w[5],
            g = w[6],
            h = w[7],
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
