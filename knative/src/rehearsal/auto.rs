//! The automated rollout rehearsed: the `rollout` command's own loop
//! ([`crate::rollout::analysis`]) with nginx reloads instead of kn, and the
//! load generator through nginx as the measurement, as on a cluster. A
//! healthy v2 is promoted; a v2 broken on purpose (a [`Fault`]: its
//! downstream fails a share of writes) is rolled back at the first step.
//! The final split is then measured once more from outside.

use std::time::Duration;

use anyhow::Context as _;

use super::load::{Load as LoadRun, Observed};
use super::stage::{Fault, Stage};
use super::{BLUE_GREEN, BLUE_GREEN_SWITCH, CANARY_STEPS, Declared, SERVICE, Setup};
use crate::rollout::analysis::{self, Outcome, Plan, Revisions, Router};
use crate::rollout::gates::Gate;
use crate::rollout::kn::Strategy;
use crate::rollout::measure::{Load, Source};
use crate::rollout::prometheus::Prometheus;

use super::prometheus::{LocalPrometheus, SCRAPE_INTERVAL};

/// The share of the broken v2's writes its faulty downstream refuses.
pub const BROKEN_PERCENT: u32 = 30;

/// The rehearsal's latency gate, in place of the default `p99 <= 1.5 *
/// stable + 5ms`: on a shared laptop the p99 of a hundred requests is one
/// scheduling hiccup of another process (hundreds of ms), so the rehearsal
/// compares p90s with room. The broken v2 is caught by the default error
/// gate, kept as it is.
pub const LATENCY_GATE: &str = "p90 <= 2 * stable + 50ms";

/// The plan the rehearsal runs: the default steps, error gate and request
/// minimum, [`LATENCY_GATE`], and `step_time` per measurement.
pub fn plan(step_time: Duration) -> Plan {
    let mut plan = Plan {
        interval: step_time,
        warm_up: Some(step_time / 2),
        ..Plan::default()
    };
    for g in &mut plan.gates.gates {
        if g.expr.starts_with("p99") {
            *g = Gate::parse(LATENCY_GATE).expect("the rehearsal's latency gate parses");
        }
    }
    plan
}

/// One automated rollout rehearsed.
#[derive(Debug, Clone)]
pub struct AutoRun {
    pub strategy: Strategy,
    /// `None`: v2 healthy.
    pub fault: Option<Fault>,
    pub outcome: Outcome,
    /// Every traffic block nginx served, in order (`ingest-grpc-v1 90 %, ...`).
    pub moves: Vec<String>,
    /// A load run on the Service's host after the rollout ended.
    pub after: Observed,
    pub stable: String,
    pub canary: String,
}

/// nginx as the router: each move is a traffic block, served by reload.
struct NginxRouter<'a, 's> {
    stage: &'a mut Stage<'s>,
    /// Canary: the block of overlays/canary/10 (percents replaced per step).
    /// Blue/green: green at 0 % and the switch.
    before: Declared,
    after: Declared,
    strategy: Strategy,
    moves: Vec<String>,
}

impl NginxRouter<'_, '_> {
    /// `before`'s block with the canary (its second revision) at `percent`.
    fn split(&self, percent: u32) -> Declared {
        let mut d = self.before.clone();
        let canary = d.routes[1].revision.clone();
        for r in &mut d.routes {
            r.percent = if r.revision == canary {
                percent
            } else {
                100 - percent
            };
        }
        d.overlay = format!("{} (canary at {percent} %)", self.before.overlay);
        d
    }

    fn serve(&mut self, d: &Declared) -> anyhow::Result<()> {
        self.stage.route(d)?;
        self.moves.push(d.describe());
        Ok(())
    }
}

impl Router for NginxRouter<'_, '_> {
    fn start(&mut self) -> anyhow::Result<()> {
        let d = match self.strategy {
            Strategy::Canary => self.split(0),
            Strategy::BlueGreen => self.before.clone(),
        };
        self.serve(&d)
    }
    fn step(&mut self, percent: u32) -> anyhow::Result<()> {
        let d = self.split(percent);
        self.serve(&d)
    }
    fn promote(&mut self) -> anyhow::Result<()> {
        let d = match self.strategy {
            Strategy::Canary => self.split(100),
            Strategy::BlueGreen => self.after.clone(),
        };
        self.serve(&d)
    }
    fn rollback(&mut self) -> anyhow::Result<()> {
        let d = match self.strategy {
            Strategy::Canary => self.split(0),
            Strategy::BlueGreen => self.before.clone(),
        };
        self.serve(&d)
    }
}

/// Where the gates' numbers come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Judge {
    /// The load generator's own report, split by `x-revision`.
    LoadGenerator,
    /// A real Prometheus (this executable) scraping the revisions; the load
    /// generator only sends the load.
    Prometheus(std::path::PathBuf),
}

/// Rehearses `strategy` with v2 healthy (`broken` false) or broken, running
/// `plan` with numbers from `judge`; prints the timeline through `out` as it goes.
pub fn rehearse(
    setup: &Setup,
    strategy: Strategy,
    broken: bool,
    judge: &Judge,
    plan: &Plan,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<AutoRun> {
    let (before, after) = match strategy {
        Strategy::Canary => {
            let d = Declared::load(&setup.kubectl, CANARY_STEPS[0], SERVICE)?;
            (d.clone(), d)
        }
        Strategy::BlueGreen => (
            Declared::load(&setup.kubectl, BLUE_GREEN, SERVICE)?,
            Declared::load(&setup.kubectl, BLUE_GREEN_SWITCH, SERVICE)?,
        ),
    };
    anyhow::ensure!(
        before.routes.len() == 2,
        "{}: the rehearsal expects two revisions (stable, canary), not {}",
        before.overlay,
        before.describe()
    );
    let stable = before.routes[0].clone();
    let canary = before.routes[1].clone();
    let fault = broken.then(|| Fault {
        revision: canary.revision.clone(),
        percent: BROKEN_PERCENT,
    });
    let mut stage = Stage::start(setup, std::slice::from_ref(&before), fault.as_ref())?;
    let load = Load::new(
        &setup.loadtest,
        &format!("http://127.0.0.1:{}", stage.port()),
        &before.host(),
        8,
    )?;
    // Declared before the stage's borrow below; stopped after the rollout.
    let local_prometheus;
    let mut source: Box<dyn Source> = match judge {
        Judge::LoadGenerator => Box::new(load),
        Judge::Prometheus(exe) => {
            local_prometheus = LocalPrometheus::start(exe, &stage.revision_ports())?;
            Box::new(Prometheus {
                url: local_prometheus.url(),
                load: Some(load),
                // Two scrapes after the load ends: every request is in.
                settle: 2 * SCRAPE_INTERVAL,
            })
        }
    };
    let revs = Revisions {
        stable: stable.revision.clone(),
        canary: canary.revision.clone(),
        stable_tag: stable.tag.clone().context("the stable route has no tag")?,
        canary_tag: canary.tag.clone().context("the canary route has no tag")?,
    };
    let mut router = NginxRouter {
        stage: &mut stage,
        before: before.clone(),
        after,
        strategy,
        moves: Vec::new(),
    };
    let outcome = match strategy {
        Strategy::Canary => analysis::canary(plan, &mut router, source.as_mut(), &revs, out)?,
        Strategy::BlueGreen => {
            analysis::blue_green(plan, &mut router, source.as_mut(), &revs, out)?
        }
    };
    let moves = router.moves;
    let after = stage.load(&before.host(), LoadRun::requests(1000))?;
    Ok(AutoRun {
        strategy,
        fault,
        outcome,
        moves,
        after,
        stable: stable.revision,
        canary: canary.revision,
    })
}
