//! `make rollout-demo`: rehearses the canary and blue/green rollouts of
//! knative/overlays on this machine (local revisions behind a real nginx
//! whose weights come from the overlays' traffic blocks) and prints, per
//! step, the declared and the observed split. The same code runs in
//! `knative/tests/rehearsal.rs`; see knative/src/rehearsal.

use std::process::ExitCode;

use knative_manifests::rehearsal::{self, Options, Setup};
use knative_manifests::{paths, scrape};

const USAGE: &str = "usage: rollout-rehearsal [--requests N]

Rehearses knative/overlays/canary/{10,50,100,rollback} and the blue/green switch
(knative/overlays/bluegreen/green -> switch) with local processes: one per
revision of ingest-grpc, nginx in front with upstream weights from each
overlay's traffic block, and loadtest measuring the split from x-revision.

  --requests N   requests per step on the Service's host (default 2000)

Needs nginx and kubectl (scripts/setup.sh); builds ingest and loadtest if missing.";

fn main() -> ExitCode {
    let mut opts = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--requests" => match args.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0) {
                Some(n) => opts.requests = n,
                None => return usage_error("--requests needs a positive number"),
            },
            other => return usage_error(&format!("unknown argument {other:?}")),
        }
    }
    match run(&opts) {
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
fn run(opts: &Options) -> anyhow::Result<bool> {
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

    println!(
        "== canary: {} (one nginx, reloaded between steps)\n",
        rehearsal::CANARY_STEPS.join(" -> ")
    );
    for step in rehearsal::canary(&setup, rehearsal::CANARY_STEPS, opts)? {
        println!("{step}");
        problems.extend(step.problems());
    }

    println!(
        "== blue/green: {} -> {}\n",
        rehearsal::BLUE_GREEN,
        rehearsal::BLUE_GREEN_SWITCH
    );
    let bg = rehearsal::blue_green(
        &setup,
        rehearsal::BLUE_GREEN,
        rehearsal::BLUE_GREEN_SWITCH,
        opts,
    )?;
    println!("{bg}");
    problems.extend(bg.problems());

    if problems.is_empty() {
        println!("Every split as declared; no request failed, the switch included.");
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
