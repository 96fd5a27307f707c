//! `bench`: the project's benchmark suite. `make bench` runs every suite on
//! this machine, writes bench/results/<suite>.json and rewrites the tables of
//! BENCHMARKS.md. Every figure is a median over `--runs` runs, printed with
//! the command that reproduces it.

mod coldstart;
mod dashboard;
mod generator;
mod ingest;
mod loadgen;
mod paths;
mod procs;
mod report;
mod sink;
mod stats;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Parser)]
#[command(
    name = "bench",
    about = "covid-realtime benchmarks: writes bench/results/*.json and BENCHMARKS.md"
)]
struct Cli {
    /// Which suites to run.
    #[arg(value_enum, default_values_t = [Suite::All])]
    suites: Vec<Suite>,
    /// Runs per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds per load run.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Directory of the release binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench/results")]
    results: PathBuf,
    /// The markdown file whose tables are rewritten.
    #[arg(long, default_value = "BENCHMARKS.md")]
    markdown: PathBuf,
    /// Stored cases for the large dashboard read benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    large: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Suite {
    All,
    Ingest,
    Paths,
    Dashboard,
    /// Dashboard reads with 100,000 distinct locations and states.
    DashboardStrings,
    Generator,
    Coldstart,
}

/// What every suite needs.
pub struct Ctx {
    pub bins: PathBuf,
    pub results: PathBuf,
    pub markdown: PathBuf,
    pub runs: usize,
    pub secs: u64,
    pub large: u64,
    pub machine: report::Machine,
    pub loadtest: loadgen::Loadtest,
    pub work: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Ctx {
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bins.join(name)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    runtime::install_crypto_provider();
    let only_strings = cli.suites == [Suite::DashboardStrings];
    let needed: &[&str] = if only_strings {
        &["dashboard-api"]
    } else {
        &[
            "ingest",
            "grpc-writer",
            "redis-sub",
            "aggregate",
            "dashboard-api",
            "loadtest",
        ]
    };
    for b in needed {
        anyhow::ensure!(
            cli.bin_dir.join(b).exists(),
            "{} is not built in {}: run `make release`",
            b,
            cli.bin_dir.display()
        );
    }
    let work = tempfile::tempdir()?;
    let ctx = Ctx {
        loadtest: loadgen::Loadtest {
            bin: cli.bin_dir.join("loadtest"),
            dir: work.path().to_owned(),
        },
        bins: cli.bin_dir,
        results: cli.results,
        markdown: cli.markdown,
        runs: cli.runs.max(1),
        secs: cli.secs.max(1),
        large: cli.large,
        machine: report::Machine::read(),
        work,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .build()?,
    };
    println!("machine: {}", ctx.machine.line());
    let all = cli.suites.contains(&Suite::All);
    let want = |s: Suite| all || cli.suites.contains(&s);
    if want(Suite::Generator) {
        generator::run(&ctx).await?;
    }
    if want(Suite::Coldstart) {
        coldstart::run(&ctx).await?;
    }
    if want(Suite::Ingest) {
        ingest::run(&ctx).await?;
    }
    if want(Suite::Paths) {
        paths::run(&ctx).await?;
    }
    if want(Suite::Dashboard) {
        dashboard::run(&ctx).await?;
    }
    if want(Suite::DashboardStrings) {
        dashboard::run_strings(&ctx).await?;
    }
    let when = chrono::Utc::now().format("%Y-%m-%d");
    report::update_markdown(
        &ctx.markdown,
        "machine",
        &format!("Last run {when} on {}.", ctx.machine.line()),
    )?;
    Ok(())
}
