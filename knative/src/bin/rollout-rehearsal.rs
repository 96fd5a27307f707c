//! `make rollout-demo`: rehearses the canary and blue/green rollouts of
//! knative/overlays on this machine (local revisions behind a real nginx
//! whose weights come from the overlays' traffic blocks) and prints, per
//! step, the declared and the observed split; then the automated canary of
//! the `rollout` command twice, with v2 healthy (promoted) and broken on
//! purpose (rolled back), printing both timelines. The same code runs in
//! `knative/tests/rehearsal.rs`; see knative/src/rehearsal.

use std::process::ExitCode;
use std::time::Duration;

use knative_manifests::rehearsal::{self, Options, Setup, auto};
use knative_manifests::rollout::analysis::Verdict;
use knative_manifests::rollout::cli::parse_duration;
use knative_manifests::rollout::kn::Strategy;
use knative_manifests::{paths, scrape, tools};

const USAGE: &str = "usage: rollout-rehearsal [--requests N] [--step-time DUR] [--auto-only]

Rehearses knative/overlays/canary/{10,50,100,rollback} and the blue/green switch
(knative/overlays/bluegreen/green -> switch) with local processes: one per
revision of ingest-grpc, nginx in front with upstream weights from each
overlay's traffic block, and loadtest measuring the split from x-revision.
Then the automated canary (the rollout command's loop, nginx reloads instead
of kn): a healthy v2 promoted, a v2 whose downstream refuses 30% of writes
rolled back at the first step.

  --requests N      requests per step on the Service's host (default 2000)
  --step-time DUR   each automated measurement (default 2s)
  --auto-only       only the automated canary

Needs nginx and kubectl (scripts/setup.sh); builds ingest and loadtest if missing.";

struct Flags {
    opts: Options,
    step_time: Duration,
    auto_only: bool,
}

fn main() -> ExitCode {
    let mut flags = Flags {
        opts: Options::default(),
        step_time: Duration::from_secs(2),
        auto_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--requests" => match args.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0) {
                Some(n) => flags.opts.requests = n,
                None => return usage_error("--requests needs a positive number"),
            },
            "--step-time" => match args.next().map(|d| parse_duration(&d)) {
                Some(Ok(d)) => flags.step_time = d,
                Some(Err(e)) => return usage_error(&format!("--step-time {e}")),
                None => return usage_error("--step-time needs a duration"),
            },
            "--auto-only" => flags.auto_only = true,
            other => return usage_error(&format!("unknown argument {other:?}")),
        }
    }
    match run(&flags) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("rollout-rehearsal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("rollout-rehearsal: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}

/// Prints every table; false when a check does not hold.
fn run(flags: &Flags) -> anyhow::Result<bool> {
    build_if_missing()?;
    let setup = Setup::find()?;
    let binary = rehearsal::built_binary(scrape::CASES[0].function)?;
    println!(
        "Rollout rehearsal of {} on 127.0.0.1: one {} process per revision, nginx ({}) weighted from each overlay's traffic block,\n\
         load from {}. Tolerance: ±{} pp for a split; 0 % and 100 % exactly.\n",
        rehearsal::SERVICE,
        paths::rel(&binary),
        setup.nginx.display(),
        paths::rel(&setup.loadtest),
        rehearsal::TOLERANCE_PP
    );
    let mut problems = Vec::new();
    if !flags.auto_only {
        manual(&setup, &flags.opts, &mut problems)?;
    }
    automated(&setup, flags.step_time, &mut problems)?;

    if problems.is_empty() {
        println!(
            "Every split as declared; no request failed, the switch included; the healthy canary promoted, the broken one rolled back."
        );
        Ok(true)
    } else {
        println!(
            "{} problem(s):\n  - {}",
            problems.len(),
            problems.join("\n  - ")
        );
        Ok(false)
    }
}

/// The overlays' steps, each measured against its declared split.
fn manual(setup: &Setup, opts: &Options, problems: &mut Vec<String>) -> anyhow::Result<()> {
    println!(
        "== canary: {} (one nginx, reloaded between steps)\n",
        rehearsal::CANARY_STEPS.join(" -> ")
    );
    for step in rehearsal::canary(setup, rehearsal::CANARY_STEPS, opts)? {
        println!("{step}");
        problems.extend(step.problems());
    }

    println!(
        "== blue/green: {} -> {}\n",
        rehearsal::BLUE_GREEN,
        rehearsal::BLUE_GREEN_SWITCH
    );
    let bg = rehearsal::blue_green(
        setup,
        rehearsal::BLUE_GREEN,
        rehearsal::BLUE_GREEN_SWITCH,
        opts,
    )?;
    println!("{bg}");
    problems.extend(bg.problems());
    Ok(())
}

/// The automated canary with a healthy and a broken v2, judged by the load
/// generator; then the broken one again, judged by a real Prometheus.
fn automated(setup: &Setup, step_time: Duration, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let plan = auto::plan(step_time);
    let gates: Vec<&str> = plan.gates.gates.iter().map(|g| g.expr.as_str()).collect();
    let prometheus = auto::Judge::Prometheus(
        tools::find(&rehearsal::prometheus::PROMETHEUS).map_err(|e| anyhow::anyhow!("{e:#}"))?,
    );
    let broken = "v2 broken on purpose: its downstream refuses 30% of writes";
    let by_prometheus =
        format!("{broken}; judged by Prometheus (PromQL over the revisions' /metrics)");
    for (v2_broken, title, judge, want) in [
        (
            false,
            "v2 healthy",
            &auto::Judge::LoadGenerator,
            Verdict::Promoted,
        ),
        (
            true,
            broken,
            &auto::Judge::LoadGenerator,
            Verdict::RolledBack,
        ),
        (
            true,
            by_prometheus.as_str(),
            &prometheus,
            Verdict::RolledBack,
        ),
    ] {
        println!(
            "== automated canary, {title}\n   steps {:?} %, {} s per measurement, gates: {}; at least {} requests per revision\n",
            plan.steps,
            step_time.as_secs_f64(),
            gates.join(", "),
            plan.gates.min_requests
        );
        let run = auto::rehearse(setup, Strategy::Canary, v2_broken, judge, &plan, &mut |l| {
            print!("{l}")
        })?;
        let (final_rev, word) = match run.outcome.verdict {
            Verdict::Promoted => (&run.canary, "promoted"),
            Verdict::RolledBack => (&run.stable, "rolled back"),
        };
        println!(
            "-> {word} ({}); afterwards {} of {} requests answered by {final_rev}\n",
            run.outcome.reason,
            run.after.responses_from(final_rev),
            run.after.requests
        );
        if run.outcome.verdict != want {
            problems.push(format!(
                "automated canary, {title}: expected {want:?}, got {:?} ({})",
                run.outcome.verdict, run.outcome.reason
            ));
        }
        if run.after.responses_from(final_rev) != run.after.requests || run.after.failed > 0 {
            problems.push(format!(
                "automated canary, {title}: after the rollout {} of {} requests came from {final_rev} ({} failed)",
                run.after.responses_from(final_rev),
                run.after.requests,
                run.after.failed
            ));
        }
    }
    Ok(())
}

/// `cargo build --bins -p ingest -p loadtest` when either binary is in
/// neither target/release nor target/debug.
fn build_if_missing() -> anyhow::Result<()> {
    if rehearsal::built_binary("ingest").is_ok() && rehearsal::built_binary("loadtest").is_ok() {
        return Ok(());
    }
    eprintln!("building: {}", rehearsal::BUILD);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--bins", "-p", "ingest", "-p", "loadtest"])
        .current_dir(paths::repo_root())
        .status()?;
    anyhow::ensure!(status.success(), "`{}` failed ({status})", rehearsal::BUILD);
    Ok(())
}
