//! The loop: move a step, measure the canary against the stable revision,
//! judge by the gates, then go on, wait for more requests, or roll back.
//! Blue/green is the same judgement on the tag URLs before the switch.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::gates::{Gates, Judgement};
use super::measure::{Measurement, Source};
use super::timeline::{Row, Timeline};

/// Moves traffic: kn on a cluster ([`super::kn::Kn`]), nginx in the rehearsal.
pub trait Router {
    /// Makes the new revision exist with no traffic (blue/green: reachable
    /// on its tag URL).
    fn start(&mut self) -> anyhow::Result<()>;
    /// The canary gets `percent` of the Service's traffic.
    fn step(&mut self, percent: u32) -> anyhow::Result<()>;
    /// The new revision gets everything (canary: promote; blue/green: switch).
    fn promote(&mut self) -> anyhow::Result<()>;
    /// The stable revision gets everything back.
    fn rollback(&mut self) -> anyhow::Result<()>;
}

/// Default steps: the canary's percent at each step; 100 promotes.
pub const DEFAULT_STEPS: &[u32] = &[10, 50, 100];
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_WARM_UP: Duration = Duration::from_secs(10);
/// Extra intervals a step may take when too few requests came.
pub const DEFAULT_MAX_WAITS: u32 = 2;

/// What a rollout does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Increasing percents in 1..=100, the last one 100.
    pub steps: Vec<u32>,
    /// How long each measurement runs.
    pub interval: Duration,
    pub max_waits: u32,
    pub gates: Gates,
    /// Measure the final split once more after promoting or rolling back.
    pub confirm: bool,
    /// Load on both tag URLs before the first step, not judged: the new
    /// revision's first requests (scale from zero, lazy connections) are
    /// not what it will serve at the first step.
    pub warm_up: Option<Duration>,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            steps: DEFAULT_STEPS.to_vec(),
            interval: DEFAULT_INTERVAL,
            max_waits: DEFAULT_MAX_WAITS,
            gates: Gates::default(),
            confirm: true,
            warm_up: Some(DEFAULT_WARM_UP),
        }
    }
}

impl Plan {
    /// `10,50,100`: increasing whole percents from 1, ending at 100.
    pub fn parse_steps(text: &str) -> Result<Vec<u32>, String> {
        let bad = |why: &str| {
            format!(
                "bad --steps {text:?}: {why}; write increasing percents ending at 100, e.g. 10,50,100"
            )
        };
        let steps: Vec<u32> = text
            .split(',')
            .map(|s| s.trim().trim_end_matches('%').parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad("not whole numbers"))?;
        if steps.first().is_some_and(|s| *s == 0) {
            return Err(bad("a step of 0 sends the canary nothing"));
        }
        if steps.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("not increasing"));
        }
        if steps.last() != Some(&100) {
            return Err(bad("the last step must be 100 (the promotion)"));
        }
        Ok(steps)
    }
}

/// Which way it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Promoted,
    RolledBack,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    /// Why: the failed gates, or that every step passed.
    pub reason: String,
    pub timeline: Timeline,
    /// The split measured after promoting or rolling back (with `confirm`).
    pub final_split: Option<Measurement>,
    /// The largest canary percent the rollout ever set on the Service's host.
    pub max_canary_percent: u32,
}

/// The revisions and tags a rollout is about.
#[derive(Debug, Clone)]
pub struct Revisions {
    pub stable: String,
    pub canary: String,
    /// Tags of stable and canary (blue/green: `blue`, `green`).
    pub stable_tag: String,
    pub canary_tag: String,
}

/// One rollout in progress: prints each row as it is measured.
struct Run<'a> {
    plan: &'a Plan,
    router: &'a mut dyn Router,
    source: &'a mut dyn Source,
    revs: &'a Revisions,
    out: &'a mut dyn FnMut(&str),
    started: Instant,
    timeline: Timeline,
    max_canary_percent: u32,
}

impl Run<'_> {
    fn record(&mut self, split: String, measured: Measurement, verdict: String) {
        let row = Row {
            at: self.started.elapsed(),
            split,
            measured,
            verdict,
        };
        (self.out)(&Timeline::line(&row));
        self.timeline.rows.push(row);
    }

    /// Measures (the Service's host at `percent`, or the tag URLs when
    /// `None`) until the gates pass or fail; too few requests more than
    /// `max_waits` times is a failure.
    fn judge(&mut self, percent: Option<u32>) -> anyhow::Result<Result<(), String>> {
        let mut waits = 0;
        loop {
            let (split, m) = match percent {
                Some(p) => (
                    format!("{}/{}", 100 - p, p),
                    self.source
                        .split(&self.revs.stable, &self.revs.canary, self.plan.interval)?,
                ),
                None => (
                    "tag URLs".to_owned(),
                    self.source.tags(
                        &self.revs.stable_tag,
                        &self.revs.canary_tag,
                        self.plan.interval,
                    )?,
                ),
            };
            let j = self.plan.gates.judge(&m);
            let mut verdict = j.to_string();
            let result = match j {
                Judgement::Pass => Some(Ok(())),
                Judgement::Fail(why) => Some(Err(why.join("; "))),
                Judgement::Wait(why) if waits >= self.plan.max_waits => {
                    verdict = format!("fail: still too few requests ({why})");
                    Some(Err(format!(
                        "too few requests after {} intervals: {why}",
                        waits + 1
                    )))
                }
                Judgement::Wait(_) => None,
            };
            self.record(split, m, verdict);
            if let Some(r) = result {
                return Ok(r);
            }
            waits += 1;
        }
    }

    /// Load on both tag URLs, recorded but not judged.
    fn warm_up(&mut self) -> anyhow::Result<()> {
        if let Some(w) = self.plan.warm_up {
            let m = self
                .source
                .tags(&self.revs.stable_tag, &self.revs.canary_tag, w)?;
            self.record(
                "warm-up".to_owned(),
                m,
                "not judged: each revision on its tag URL".to_owned(),
            );
        }
        Ok(())
    }

    fn finish(mut self, verdict: Verdict, reason: String) -> anyhow::Result<Outcome> {
        let final_split = if self.plan.confirm {
            let m = self
                .source
                .split(&self.revs.stable, &self.revs.canary, self.plan.interval)?;
            let (split, what) = match verdict {
                Verdict::Promoted => ("0/100", "promoted"),
                Verdict::RolledBack => ("100/0", "rolled back"),
            };
            let text = format!(
                "{what}: {} served {:.2}%",
                self.revs.canary,
                m.canary_share()
            );
            self.record(split.to_owned(), m.clone(), text);
            Some(m)
        } else {
            None
        };
        Ok(Outcome {
            verdict,
            reason,
            timeline: self.timeline,
            final_split,
            max_canary_percent: self.max_canary_percent,
        })
    }

    /// Rolls back after an error, then returns the error.
    fn abort(&mut self, e: anyhow::Error) -> anyhow::Error {
        match self.router.rollback() {
            Ok(()) => e.context("the rollout stopped and rolled back"),
            Err(r) => e.context(format!(
                "the rollout stopped; the rollback failed too: {r:#}"
            )),
        }
    }
}

fn run<'a>(
    plan: &'a Plan,
    router: &'a mut dyn Router,
    source: &'a mut dyn Source,
    revs: &'a Revisions,
    out: &'a mut dyn FnMut(&str),
) -> Run<'a> {
    let timeline = Timeline {
        stable: (revs.stable_tag.clone(), revs.stable.clone()),
        canary: (revs.canary_tag.clone(), revs.canary.clone()),
        rows: Vec::new(),
    };
    out(&timeline.header());
    Run {
        plan,
        router,
        source,
        revs,
        out,
        started: Instant::now(),
        timeline,
        max_canary_percent: 0,
    }
}

/// A canary: each step of `plan` in turn, judged; promoted after the last
/// passing step, rolled back at the first failing one.
pub fn canary(
    plan: &Plan,
    router: &mut dyn Router,
    source: &mut dyn Source,
    revs: &Revisions,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        plan.steps.last() == Some(&100),
        "the steps {:?} do not end at 100 (the promotion)",
        plan.steps
    );
    let mut r = run(plan, router, source, revs, out);
    r.router.start().context("creating the canary")?;
    if let Err(e) = r.warm_up() {
        return Err(r.abort(e.context("warming up")));
    }
    for &percent in &plan.steps {
        if percent == 100 {
            if let Err(e) = r.router.promote() {
                return Err(r.abort(e.context("promoting")));
            }
            r.max_canary_percent = 100;
            return r.finish(
                Verdict::Promoted,
                format!("every step passed: {}", steps_text(&plan.steps)),
            );
        }
        if let Err(e) = r.router.step(percent) {
            return Err(r.abort(e.context(format!("moving the canary to {percent}%"))));
        }
        r.max_canary_percent = percent;
        match r.judge(Some(percent)) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                r.router.rollback().context("rolling back")?;
                return r.finish(Verdict::RolledBack, format!("at {percent}%: {why}"));
            }
            Err(e) => return Err(r.abort(e)),
        }
    }
    // Ensured above: the last step is 100 and returns from the loop.
    Err(anyhow::anyhow!("the steps ended without a promotion"))
}

/// Blue/green: green measured on its tag URL against blue on its own; the
/// switch only when green passes.
pub fn blue_green(
    plan: &Plan,
    router: &mut dyn Router,
    source: &mut dyn Source,
    revs: &Revisions,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<Outcome> {
    let mut r = run(plan, router, source, revs, out);
    r.router.start().context("deploying green at 0%")?;
    if let Err(e) = r.warm_up() {
        return Err(r.abort(e.context("warming up")));
    }
    match r.judge(None) {
        Ok(Ok(())) => {
            if let Err(e) = r.router.promote() {
                return Err(r.abort(e.context("switching")));
            }
            r.max_canary_percent = 100;
            r.finish(
                Verdict::Promoted,
                "green passed on its tag URL; switched".to_owned(),
            )
        }
        Ok(Err(why)) => {
            r.router.rollback().context("keeping blue")?;
            r.finish(
                Verdict::RolledBack,
                format!("green failed on its tag URL: {why}"),
            )
        }
        Err(e) => Err(r.abort(e)),
    }
}

fn steps_text(steps: &[u32]) -> String {
    steps
        .iter()
        .map(|s| format!("{s}%"))
        .collect::<Vec<_>>()
        .join(" -> ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::measure::Sample;

    #[test]
    fn steps_are_increasing_and_end_at_100() {
        assert_eq!(Plan::parse_steps("10,50,100").unwrap(), vec![10, 50, 100]);
        assert_eq!(Plan::parse_steps("5%, 100").unwrap(), vec![5, 100]);
        for (bad, why) in [
            ("10,50", "must be 100"),
            ("50,10,100", "not increasing"),
            ("0,100", "sends the canary nothing"),
            ("ten", "not whole numbers"),
        ] {
            let e = Plan::parse_steps(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    /// Records what the loop asked for.
    struct Script {
        calls: Vec<String>,
    }

    impl Router for Script {
        fn start(&mut self) -> anyhow::Result<()> {
            self.calls.push("start".into());
            Ok(())
        }
        fn step(&mut self, p: u32) -> anyhow::Result<()> {
            self.calls.push(format!("step {p}"));
            Ok(())
        }
        fn promote(&mut self) -> anyhow::Result<()> {
            self.calls.push("promote".into());
            Ok(())
        }
        fn rollback(&mut self) -> anyhow::Result<()> {
            self.calls.push("rollback".into());
            Ok(())
        }
    }

    /// The same numbers every interval: 900 stable requests, 100 canary
    /// requests with this many errors.
    struct Fixed(u64);

    impl Source for Fixed {
        fn split(&mut self, _: &str, _: &str, _: Duration) -> anyhow::Result<Measurement> {
            Ok(Measurement {
                stable: Sample {
                    requests: 900,
                    p99_us: 1000,
                    ..Sample::default()
                },
                canary: Sample {
                    requests: 100,
                    errors: self.0,
                    p99_us: 1000,
                    ..Sample::default()
                },
            })
        }
        fn tags(&mut self, a: &str, b: &str, w: Duration) -> anyhow::Result<Measurement> {
            self.split(a, b, w)
        }
    }

    fn revs() -> Revisions {
        Revisions {
            stable: "v1".into(),
            canary: "v2".into(),
            stable_tag: "stable".into(),
            canary_tag: "canary".into(),
        }
    }

    #[test]
    fn a_passing_canary_is_promoted_and_a_failing_one_rolled_back_at_the_first_step() {
        let plan = Plan {
            interval: Duration::ZERO,
            warm_up: None,
            ..Plan::default()
        };
        for (errors, verdict, calls) in [
            (
                0,
                Verdict::Promoted,
                &["start", "step 10", "step 50", "promote"][..],
            ),
            (
                30,
                Verdict::RolledBack,
                &["start", "step 10", "rollback"][..],
            ),
        ] {
            let mut router = Script { calls: vec![] };
            let mut lines = String::new();
            let outcome = canary(&plan, &mut router, &mut Fixed(errors), &revs(), &mut |l| {
                lines.push_str(l)
            })
            .unwrap();
            assert_eq!(outcome.verdict, verdict, "{lines}");
            assert_eq!(router.calls, calls);
            assert!(lines.contains("verdict"), "{lines}");
        }
    }
}
