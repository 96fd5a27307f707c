//! What a rehearsed step observed, checked against what it declared, and
//! the tables `make rollout-demo` prints.

use std::fmt;
use std::time::Duration;

use super::load::Observed;
use super::{Declared, TOLERANCE_PP};
use crate::Problems;

/// How a `nginx -s reload` went, from the moment it was sent.
#[derive(Debug, Clone, Copy)]
pub struct Reload {
    /// The new workers answer.
    pub live: Duration,
    /// The old workers have exited: no connection gets the old routes any more.
    pub old_workers_gone: Duration,
}

impl fmt::Display for Reload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "new workers answering in {} ms, old workers gone in {} ms",
            self.live.as_millis(),
            self.old_workers_gone.as_millis()
        )
    }
}

/// A tag host's run: every response should come from the tagged revision.
#[derive(Debug, Clone)]
pub struct TagCheck {
    pub tag: String,
    pub host: String,
    pub revision: String,
    pub observed: Observed,
}

/// One traffic block served and measured.
#[derive(Debug, Clone)]
pub struct Step {
    pub declared: Declared,
    pub observed: Observed,
    pub tags: Vec<TagCheck>,
    /// The reload into this step (None: nginx started with it).
    pub reload: Option<Reload>,
    pub min_requests: u64,
}

/// A row of a split table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub revision: String,
    pub tags: String,
    pub declared: f64,
    pub observed: f64,
}

impl Row {
    pub fn difference(&self) -> f64 {
        self.observed - self.declared
    }
}

impl Step {
    /// Declared and observed percent per revision, plus any revision that
    /// answered without being declared (and responses without `x-revision`).
    pub fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .declared
            .split()
            .into_iter()
            .map(|(rev, p)| Row {
                tags: self.declared.tags_of(&rev),
                observed: self.observed.percent(&rev),
                revision: rev,
                declared: p as f64,
            })
            .collect();
        for (rev, n) in &self.observed.by_revision {
            let name = rev.clone().unwrap_or_else(|| "(no x-revision)".to_owned());
            if rows.iter().any(|r| r.revision == name) {
                continue;
            }
            let observed = if self.observed.requests == 0 {
                0.0
            } else {
                100.0 * *n as f64 / self.observed.requests as f64
            };
            rows.push(Row {
                revision: name,
                tags: "-".to_owned(),
                declared: 0.0,
                observed,
            });
        }
        rows
    }

    /// What does not hold: too few requests, a failure, a share off by more
    /// than [`TOLERANCE_PP`] (or at all, for 0 % and 100 %), a tag host
    /// answering from another revision.
    pub fn problems(&self) -> Problems {
        let mut p = Problems::new();
        let at = format!("{} ({})", self.declared.overlay, self.declared.host());
        if self.observed.requests < self.min_requests {
            p.push(format!(
                "{at}: {} requests, fewer than the {} asked for",
                self.observed.requests, self.min_requests
            ));
        }
        if self.observed.failed > 0 {
            p.push(format!(
                "{at}: {} of {} requests failed ({})",
                self.observed.failed,
                self.observed.requests,
                self.observed.outcomes_text()
            ));
        }
        for r in self.rows() {
            let exact = r.declared == 0.0 || r.declared == 100.0;
            let off = r.difference().abs();
            if (exact && off > 0.0) || off > TOLERANCE_PP {
                let rule = if exact {
                    "0 % and 100 % must hold exactly".to_owned()
                } else {
                    format!("more than {TOLERANCE_PP} percentage points off")
                };
                p.push(format!(
                    "{at}: {} declared {:.0} %, observed {:.2} % ({rule})",
                    r.revision, r.declared, r.observed
                ));
            }
        }
        for t in &self.tags {
            if t.observed.failed > 0
                || t.observed.requests == 0
                || t.observed.responses_from(&t.revision) != t.observed.requests
            {
                p.push(format!(
                    "{}: tag host {} should answer from {} only; observed {} requests: {} ({})",
                    self.declared.overlay,
                    t.host,
                    t.revision,
                    t.observed.requests,
                    revisions_text(&t.observed),
                    t.observed.outcomes_text()
                ));
            }
        }
        p
    }
}

fn revisions_text(o: &Observed) -> String {
    o.by_revision
        .iter()
        .map(|(r, n)| format!("{} {n}", r.as_deref().unwrap_or("(no x-revision)")))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.declared;
        writeln!(
            f,
            "{}  (Service {}, host {})",
            d.overlay,
            d.service,
            d.host()
        )?;
        let reload = match self.reload {
            Some(r) => format!(", after nginx -s reload ({r})"),
            None => String::new(),
        };
        writeln!(
            f,
            "  {} requests, {} failed, {:.1} s{reload}",
            self.observed.requests, self.observed.failed, self.observed.duration_s
        )?;
        let rows = self.rows();
        let w = rows
            .iter()
            .map(|r| r.revision.len())
            .max()
            .unwrap_or(8)
            .max(8);
        let tw = rows.iter().map(|r| r.tags.len()).max().unwrap_or(3).max(3);
        writeln!(
            f,
            "  {:<w$}  {:<tw$}  {:>9}  {:>9}  {:>11}",
            "revision", "tag", "declared", "observed", "difference"
        )?;
        for r in &rows {
            writeln!(
                f,
                "  {:<w$}  {:<tw$}  {:>7.2} %  {:>7.2} %  {:>+8.2} pp",
                r.revision,
                r.tags,
                r.declared,
                r.observed,
                r.difference()
            )?;
        }
        for t in &self.tags {
            writeln!(
                f,
                "  tag host {} -> {}: {} of {} requests ({} failed)",
                t.host,
                t.revision,
                t.observed.responses_from(&t.revision),
                t.observed.requests,
                t.observed.failed
            )?;
        }
        Ok(())
    }
}

/// Load running while nginx switches from one traffic block to another.
#[derive(Debug, Clone)]
pub struct Switch {
    pub from: Declared,
    pub to: Declared,
    pub observed: Observed,
    /// When the reload was sent, from the start of the load.
    pub reload_at: Duration,
    pub reload: Reload,
}

impl Switch {
    /// Every request answered, and the load spanned the switch: responses
    /// came from a revision only the old block routes to and from one only
    /// the new block routes to. Nothing came from a revision neither routes to.
    pub fn problems(&self) -> Problems {
        let mut p = Problems::new();
        let at = format!("switch {} -> {}", self.from.overlay, self.to.overlay);
        let o = &self.observed;
        if o.requests == 0 || o.failed > 0 {
            p.push(format!(
                "{at}: {} of {} requests failed across the reload ({})",
                o.failed,
                o.requests,
                o.outcomes_text()
            ));
        }
        let old: Vec<String> = self.from.weights().into_iter().map(|(r, _)| r).collect();
        let new: Vec<String> = self.to.weights().into_iter().map(|(r, _)| r).collect();
        let old_only: Vec<&String> = old.iter().filter(|r| !new.contains(r)).collect();
        let new_only: Vec<&String> = new.iter().filter(|r| !old.contains(r)).collect();
        if !old_only.is_empty() && old_only.iter().all(|r| o.responses_from(r) == 0) {
            p.push(format!(
                "{at}: no response from {old_only:?} before the switch: the load did not span it"
            ));
        }
        if !new_only.is_empty() && new_only.iter().all(|r| o.responses_from(r) == 0) {
            p.push(format!("{at}: no response from {new_only:?} after the switch: the reload did not take effect under load"));
        }
        for (rev, n) in &o.by_revision {
            if !rev
                .as_ref()
                .is_some_and(|r| old.contains(r) || new.contains(r))
            {
                p.push(format!(
                    "{at}: {n} responses from {}, which neither traffic block routes to",
                    rev.as_deref().unwrap_or("(no x-revision)")
                ));
            }
        }
        p
    }
}

impl fmt::Display for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.observed;
        writeln!(
            f,
            "switch under load: {} -> {}  (host {})",
            self.from.overlay,
            self.to.overlay,
            self.to.host()
        )?;
        writeln!(
            f,
            "  {} requests in {:.1} s, {} failed ({}); nginx -s reload at {:.1} s ({})",
            o.requests,
            o.duration_s,
            o.failed,
            o.outcomes_text(),
            self.reload_at.as_secs_f64(),
            self.reload
        )?;
        writeln!(f, "  responses by revision: {}", revisions_text(o))
    }
}

/// The blue/green rehearsal: before the switch, across it, after it.
#[derive(Debug, Clone)]
pub struct BlueGreen {
    pub before: Step,
    pub switch: Switch,
    pub after: Step,
}

impl BlueGreen {
    pub fn problems(&self) -> Problems {
        let mut p = self.before.problems();
        p.extend(self.switch.problems());
        p.extend(self.after.problems());
        p
    }
}

impl fmt::Display for BlueGreen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.before)?;
        writeln!(f, "{}", self.switch)?;
        write!(f, "{}", self.after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rehearsal::declared::tests::declared;

    fn observed(requests: u64, failed: u64, by: &[(&str, u64)]) -> Observed {
        Observed {
            requests,
            failed,
            by_revision: by.iter().map(|(r, n)| (Some(r.to_string()), *n)).collect(),
            ..Observed::default()
        }
    }

    #[test]
    fn a_step_holds_splits_within_the_tolerance_and_extremes_exactly() {
        let d = declared(
            "    - {revisionName: s-v1, percent: 90, tag: stable}\n    - {revisionName: s-v2, percent: 10, tag: canary}\n",
        );
        let step = |o: Observed| Step {
            declared: d.clone(),
            observed: o,
            tags: vec![],
            reload: None,
            min_requests: 2000,
        };
        assert!(
            step(observed(2000, 0, &[("s-v1", 1820), ("s-v2", 180)]))
                .problems()
                .is_empty()
        );
        let off = step(observed(2000, 0, &[("s-v1", 1700), ("s-v2", 300)])).problems();
        assert!(
            off.iter()
                .any(|p| p.contains("s-v2 declared 10 %, observed 15.00 %")),
            "{off:?}"
        );
        let few = step(observed(100, 0, &[("s-v1", 90), ("s-v2", 10)])).problems();
        assert!(
            few.iter().any(|p| p.contains("fewer than the 2000")),
            "{few:?}"
        );
        let stray = step(observed(
            2000,
            0,
            &[("s-v1", 1800), ("s-v2", 199), ("s-v3", 1)],
        ))
        .problems();
        assert!(
            stray.iter().any(|p| p.contains("s-v3 declared 0 %")),
            "{stray:?}"
        );

        let all = declared(
            "    - {revisionName: s-v1, percent: 0, tag: blue}\n    - {revisionName: s-v2, percent: 100, tag: green}\n",
        );
        let s = Step {
            declared: all,
            observed: observed(2000, 0, &[("s-v2", 1999), ("s-v1", 1)]),
            tags: vec![],
            reload: None,
            min_requests: 1,
        };
        assert!(
            s.problems().iter().any(|p| p.contains("must hold exactly")),
            "{:?}",
            s.problems()
        );
    }

    #[test]
    fn a_switch_must_lose_nothing_and_span_the_reload() {
        let from = declared(
            "    - {revisionName: s-v1, percent: 100, tag: blue}\n    - {revisionName: s-v2, percent: 0, tag: green}\n",
        );
        let to = declared(
            "    - {revisionName: s-v1, percent: 0, tag: blue}\n    - {revisionName: s-v2, percent: 100, tag: green}\n",
        );
        let switch = |o: Observed| Switch {
            from: from.clone(),
            to: to.clone(),
            observed: o,
            reload_at: Duration::ZERO,
            reload: Reload {
                live: Duration::ZERO,
                old_workers_gone: Duration::ZERO,
            },
        };
        assert!(
            switch(observed(100, 0, &[("s-v1", 40), ("s-v2", 60)]))
                .problems()
                .is_empty()
        );
        assert!(
            switch(observed(100, 1, &[("s-v1", 40), ("s-v2", 59)]))
                .problems()
                .iter()
                .any(|p| p.contains("1 of 100 requests failed"))
        );
        assert!(
            switch(observed(100, 0, &[("s-v2", 100)]))
                .problems()
                .iter()
                .any(|p| p.contains("did not span"))
        );
        assert!(
            switch(observed(100, 0, &[("s-v1", 100)]))
                .problems()
                .iter()
                .any(|p| p.contains("did not take effect"))
        );
    }
}
