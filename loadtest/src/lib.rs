//! loadtest: the covid-realtime load generator. See the README for usage
//! and the report format.
//!
//! One file per concern: [`cli`] (flags), [`target`] (where requests go),
//! [`traffic`] and [`generate`] (what is sent), [`client`] (one HTTP/1.1
//! connection per user), [`schedule`] (when requests are due), [`run`] (the
//! users), [`stats`] (what is measured), [`threshold`] (pass/fail),
//! [`report`] (table, JSON, CSV) and [`progress`] (live line on stderr).

pub mod cli;
pub mod client;
pub mod generate;
pub mod progress;
pub mod report;
pub mod run;
pub mod schedule;
pub mod stats;
pub mod target;
pub mod threshold;
pub mod traffic;
pub mod units;

use std::io::Write as _;
use std::process::ExitCode;

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::Parser as _;
use http::HeaderValue;
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;

use cli::{Cli, Command, GenArgs, RunArgs};
use report::Report;
use run::{Model, Plan, Shared};
use threshold::Threshold;
use traffic::{BodyPool, Shape};

/// Exit code when a `--fail-if` threshold failed.
pub const EXIT_THRESHOLD_FAILED: u8 = 3;

/// A run without --duration or --requests lasts this long.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Gen(args)) => gen_command(&args),
        Some(Command::Run(args)) => run_command(*args),
        None => run_command(cli.run),
    };
    result.unwrap_or_else(|e| {
        eprintln!("loadtest: {e:#}");
        ExitCode::FAILURE
    })
}

fn gen_command(args: &GenArgs) -> anyhow::Result<ExitCode> {
    let cases = generate::cases(args.count, args.seed);
    match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            generate::write_json(&cases, &mut out)
                .and_then(|()| out.flush())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} cases to {}", cases.len(), path.display());
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            generate::write_json(&cases, &mut out).and_then(|()| out.flush())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_command(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (plan, thresholds) = plan(&args)?;
    let runtime = tokio_runtime(args.threads)?;
    let started_at_unix_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (shared, outcome) = runtime.block_on(async {
        let mut plan = plan;
        for t in &mut plan.targets {
            // IPv4 first: "localhost" often resolves to ::1 first while
            // local servers listen on 127.0.0.1 only.
            let addrs: Vec<_> = tokio::net::lookup_host(&t.authority)
                .await
                .map(Iterator::collect)
                .unwrap_or_default();
            let addr = addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or(addrs.first())
                .copied();
            t.addr = Some(addr.with_context(|| {
                format!(
                    "cannot resolve the host of --target {}={} ({}); check the URL",
                    t.name, t.url, t.authority
                )
            })?);
        }
        let stop = CancellationToken::new();
        tokio::spawn(stop_on_ctrl_c(stop.clone()));
        let shared = Shared::new(plan, stop);
        let done = CancellationToken::new();
        let progress =
            (!args.quiet).then(|| tokio::spawn(progress::show(shared.clone(), done.clone())));
        let outcome = run::run(shared.clone()).await;
        done.cancel();
        if let Some(p) = progress {
            let _ = p.await;
        }
        anyhow::Ok((shared, outcome))
    })?;
    // Connections still open belong to finished users; do not wait for them.
    runtime.shutdown_background();

    let report = Report::new(shared.plan(), &outcome, &thresholds, started_at_unix_ms);
    print!("{}", report.tables());
    if let Some(path) = &args.report {
        report.write_json(path)?;
        eprintln!("report written to {}", path.display());
    }
    if let Some(prefix) = &args.csv {
        eprintln!("stats written to {}", report.write_csv(prefix)?.display());
    }
    for verdict in &report.thresholds {
        eprintln!("{verdict}");
    }
    if !report.passed {
        let failed = report.thresholds.iter().filter(|v| v.failed).count();
        eprintln!(
            "loadtest: {failed} of {} thresholds failed",
            report.thresholds.len()
        );
        return Ok(ExitCode::from(EXIT_THRESHOLD_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks the flags and builds everything the run needs, before any request.
fn plan(args: &RunArgs) -> anyhow::Result<(Plan, Vec<Threshold>)> {
    let targets = target::resolve(&args.targets, &args.host_headers, &args.path)
        .map_err(anyhow::Error::msg)?;
    for t in &args.fail_if {
        if let Some(name) = &t.target
            && !targets.iter().any(|x| &x.name == name)
        {
            let names: Vec<_> = targets.iter().map(|t| t.name.as_str()).collect();
            anyhow::bail!(
                "--fail-if {:?} names no target; the targets are: {}",
                t.expr,
                names.join(", ")
            );
        }
    }
    let cases = traffic::load(args.file.as_deref())?;
    let shape = Shape {
        batch: args.batch,
        ndjson: args.ndjson,
    };
    let pool = BodyPool::build(
        &cases,
        shape,
        &mut rand::rngs::SmallRng::from_rng(&mut rand::rng()),
    );
    let authorization = match &args.token {
        Some(token) => {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", token.trim())).context(
                "--token has characters that cannot go in an HTTP header; pass the bare token",
            )?;
            v.set_sensitive(true);
            Some(v)
        }
        None => None,
    };
    let model = match args.rate {
        Some(rate) => Model::Open {
            rate,
            max_in_flight: args.max_in_flight,
        },
        None => Model::Closed {
            users: args.users,
            spawn_rate: args.spawn_rate,
        },
    };
    let duration = match (args.duration, args.requests) {
        (None, None) => Some(DEFAULT_DURATION),
        (d, _) => d,
    };
    let plan = Plan {
        targets,
        model,
        duration,
        requests: args.requests,
        timeout: args.timeout,
        pool,
        authorization,
    };
    Ok((plan, args.fail_if.clone()))
}

fn tokio_runtime(threads: Option<u32>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        // One thread: no work stealing, no cross-thread wake-ups.
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n as usize);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// First Ctrl-C: stop sending and let requests in flight finish, so the
/// report still adds up. Second Ctrl-C: quit at once.
async fn stop_on_ctrl_c(stop: CancellationToken) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!("\nstopping: waiting for requests in flight (Ctrl-C again to quit now)");
    stop.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}
