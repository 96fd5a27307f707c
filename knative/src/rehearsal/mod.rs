//! A rollout rehearsed on one machine, with real processes: the revisions a
//! Knative traffic block names run as local processes of the function's
//! binary (`K_REVISION` = the revision name), a real nginx in front splits
//! the traffic with upstream weights generated from that same traffic block
//! (rendered from the overlay with `kubectl kustomize` and parsed into
//! [`crate::resources::Service`]), every tag answers on its own host like
//! Knative's tag URLs, and the project's load generator measures the split
//! from outside through the `x-revision` header. A rollout step is a new
//! configuration from the next overlay and a graceful `nginx -s reload`.
//!
//! One file per concern: [`declared`] (an overlay's traffic block),
//! [`stage`] (the processes), [`nginx`] (its configurations), [`load`] (the
//! load generator's report), [`results`] (what a step observed, the tables),
//! [`auto`] (the `rollout` command's loop with nginx as the router, v2
//! healthy or broken on purpose) and [`prometheus`] (a real Prometheus for
//! its PromQL gates). This file runs the overlays' steps.
//!
//! `make rollout-demo` (the `rollout-rehearsal` binary) prints the tables;
//! `knative/tests/rehearsal.rs` holds the same runs to their numbers.

pub mod auto;
pub mod declared;
pub mod load;
pub mod nginx;
pub mod prometheus;
pub mod results;
pub mod stage;

use std::time::{Duration, Instant};

use anyhow::bail;

pub use declared::{Declared, Route, domain};
use load::Load;
pub use results::{BlueGreen, Reload, Row, Step, Switch, TagCheck};
use stage::Stage;
pub use stage::{Fault, Setup, built_binary, target_dir};

/// The Service whose rollouts the overlays describe.
pub const SERVICE: &str = "ingest-grpc";

/// The canary steps, in the order a rollout applies them (knative/ relative).
pub const CANARY_STEPS: &[&str] = &[
    "overlays/canary/10",
    "overlays/canary/50",
    "overlays/canary/100",
    "overlays/canary/rollback",
];

/// Blue/green: green deployed at 0 % on its tag host, then the switch.
pub const BLUE_GREEN: &str = "overlays/bluegreen/green";
pub const BLUE_GREEN_SWITCH: &str = "overlays/bluegreen/switch";

/// How far an observed share may be from a declared split strictly between
/// 0 % and 100 %, in percentage points. 0 % and 100 % must hold exactly.
pub const TOLERANCE_PP: f64 = 3.0;

/// The command that builds what the rehearsal runs.
pub const BUILD: &str = "cargo build --bins -p ingest -p loadtest";

// ------------------------------------------------------------------ the rehearsals

/// How much load each part sends.
#[derive(Debug, Clone)]
pub struct Options {
    /// Requests on the Service's host per step.
    pub requests: u64,
    /// Requests on each tag host per step.
    pub tag_requests: u64,
    /// How long the load runs across the blue/green switch (the reload comes at a third of it).
    pub switch_load: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            requests: 2000,
            tag_requests: 200,
            switch_load: Duration::from_secs(6),
        }
    }
}

/// The canary steps `overlays` (knative/ relative) one after another: each
/// step's nginx configuration comes from its overlay's traffic block, loaded
/// with `nginx -s reload`.
pub fn canary(setup: &Setup, overlays: &[&str], opts: &Options) -> anyhow::Result<Vec<Step>> {
    let declared: Vec<Declared> = overlays
        .iter()
        .map(|o| Declared::load(&setup.kubectl, o, SERVICE))
        .collect::<anyhow::Result<_>>()?;
    let mut stage = Stage::start(setup, &declared, None)?;
    let mut steps = Vec::new();
    for (i, d) in declared.iter().enumerate() {
        let reload = if i == 0 { None } else { Some(stage.route(d)?) };
        steps.push(stage.step(d, opts, reload)?);
    }
    Ok(steps)
}

/// Blue/green: `green` (blue 100 %, green 0 % on its tag host) is checked,
/// then load runs while nginx is reloaded with the traffic block of
/// `switch`, then the switched routes are checked.
pub fn blue_green(
    setup: &Setup,
    green: &str,
    switch: &str,
    opts: &Options,
) -> anyhow::Result<BlueGreen> {
    let before = Declared::load(&setup.kubectl, green, SERVICE)?;
    let after = Declared::load(&setup.kubectl, switch, SERVICE)?;
    if before.host() != after.host() {
        bail!(
            "{} and {} serve different hosts",
            before.overlay,
            after.overlay
        );
    }
    let mut stage = Stage::start(setup, &[before.clone(), after.clone()], None)?;
    let before_step = stage.step(&before, opts, None)?;

    let running = stage.spawn_load(&before.host(), Load::lasting(opts.switch_load))?;
    let load_started = Instant::now();
    std::thread::sleep(opts.switch_load / 3);
    let reload_at = load_started.elapsed();
    let reload = stage.route(&after);
    let observed = running.wait()?;
    let switch = Switch {
        from: before.clone(),
        to: after.clone(),
        observed,
        reload_at,
        reload: reload?,
    };

    let after_step = stage.step(&after, opts, None)?;
    Ok(BlueGreen {
        before: before_step,
        switch,
        after: after_step,
    })
}
