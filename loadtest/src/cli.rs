//! Command line: `loadtest [run] --target NAME=URL ...` and `loadtest gen`.
//! Run flags also work without the `run` word, as Locust's do.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::threshold::Threshold;
use crate::units::parse_duration;

/// Load generator for covid-realtime's `POST /cases`: Locust's user model
/// (and an open arrival-rate model) at Rust speed, with HDR latencies, the
/// share of each serving revision, and k6-style pass/fail thresholds.
#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

const EXAMPLES: &str = "\
Examples:
  loadtest --users 50 --spawn-rate 10 --duration 10s \\
    --target grpc=http://127.0.0.1:8081 --target redis=http://127.0.0.1:8082 --report r.json
  loadtest --target grpc=http://$CONTOUR_IP --host-header grpc=ingest-grpc.example.com \\
    --target redis=http://$NGINX_IP --host-header redis=ingest-redis.example.com --duration 2m
  loadtest --target local=http://127.0.0.1:8080 --rate 2000 --duration 30s --fail-if 'p99>50ms'
  loadtest gen --count 100000 --out big.json

Exit codes: 0 passed, 1 error, 2 bad flags, 3 a --fail-if threshold failed.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a load test (the default: the same flags work without `run`).
    Run(Box<RunArgs>),
    /// Write a traffic file of realistic random cases (a JSON array).
    Gen(GenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// A service to load, as NAME=URL (repeatable). URL is the base, e.g.
    /// http://127.0.0.1:8081; requests go to URL + --path. Users (or arrivals)
    /// are spread evenly across targets.
    #[arg(long = "target", value_name = "NAME=URL", required = true, value_parser = parse_target)]
    pub targets: Vec<TargetArg>,

    /// Host header for one target, as NAME=HOST (repeatable), for ingresses
    /// that route by host (Contour, nginx) while you connect to their address.
    #[arg(long = "host-header", value_name = "NAME=HOST", value_parser = parse_host_header)]
    pub host_headers: Vec<HostHeaderArg>,

    /// Path appended to every target URL.
    #[arg(long, default_value = "/cases")]
    pub path: String,

    /// Traffic file: a JSON array of cases [default: the built-in traffic.json].
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Cases per request: sends a JSON array of N random cases instead of one case object.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: Option<u32>,

    /// Send bodies as application/x-ndjson (one case a line) instead of JSON.
    #[arg(long)]
    pub ndjson: bool,

    /// Closed model: concurrent virtual users, each looping request -> response.
    #[arg(long, short = 'u', default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub users: u32,

    /// Users started per second [default: all at once].
    #[arg(long, short = 'r', value_name = "USERS_PER_S", value_parser = parse_positive)]
    pub spawn_rate: Option<f64>,

    /// Open model: constant arrival rate in requests/s across all targets,
    /// sent at their intended times whatever the responses; latency counts
    /// from the intended time, so server stalls are not hidden.
    #[arg(long, value_name = "REQ_PER_S", value_parser = parse_positive, conflicts_with_all = ["users", "spawn_rate"])]
    pub rate: Option<f64>,

    /// Open model: most requests waiting for a response at once; arrivals
    /// beyond it wait (and that wait shows in their latency).
    #[arg(long, value_name = "N", default_value_t = 512, requires = "rate", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,

    /// How long to send, e.g. 30s, 2m, 1m30s [default: 10s unless --requests is given].
    #[arg(long, short = 't', value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many requests in total (with --duration: whichever comes first).
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Give up on a request (connect, send and response) after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Bearer token sent as `Authorization: Bearer TOKEN`.
    #[arg(long, env = "LOADTEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Tokio worker threads; 1 runs everything on one thread [default: all cores].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,

    /// No live progress on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Write the results as JSON (per target and total) to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Write Locust-style PREFIX_stats.csv (one row per target plus Aggregated).
    #[arg(long, value_name = "PREFIX")]
    pub csv: Option<PathBuf>,

    /// Fail (exit code 3) when the condition holds, e.g. 'p99>50ms',
    /// 'errors>0.1%', 'errors>0', 'rps<1000'. Metrics: p50 p90 p95 p99 p999
    /// max min avg, errors (count, or rate with %), rps. Prefix with NAME: to
    /// check one target ('grpc:p99>20ms'); otherwise all targets together.
    /// Repeatable.
    #[arg(long = "fail-if", value_name = "EXPR", value_parser = Threshold::parse)]
    pub fail_if: Vec<Threshold>,
}

#[derive(Debug, Clone, Args)]
pub struct GenArgs {
    /// Number of cases to write.
    #[arg(long, short = 'n', default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub count: u64,

    /// Random seed: the same seed writes the same file.
    #[arg(long, default_value_t = 2020)]
    pub seed: u64,

    /// Output file [default: stdout].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `--target NAME=URL`, checked for shape only; [`crate::target`] resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetArg {
    pub name: String,
    pub url: String,
}

/// `--host-header NAME=HOST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostHeaderArg {
    pub name: String,
    pub host: String,
}

fn split_pair<'a>(raw: &'a str, flag: &str, example: &str) -> Result<(&'a str, &'a str), String> {
    let (name, value) = raw
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, e.g. {flag} {example}"))?;
    let (name, value) = (name.trim(), value.trim());
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(format!(
            "the name {name:?} must be letters, digits, '-', '_' or '.', e.g. {flag} {example}"
        ));
    }
    if value.is_empty() {
        return Err(format!("nothing after '=', e.g. {flag} {example}"));
    }
    Ok((name, value))
}

fn parse_target(raw: &str) -> Result<TargetArg, String> {
    let (name, url) = split_pair(raw, "--target", "grpc=http://127.0.0.1:8081")?;
    Ok(TargetArg {
        name: name.to_owned(),
        url: url.to_owned(),
    })
}

fn parse_host_header(raw: &str) -> Result<HostHeaderArg, String> {
    let (name, host) = split_pair(raw, "--host-header", "grpc=ingest-grpc.example.com")?;
    Ok(HostHeaderArg {
        name: name.to_owned(),
        host: host.to_owned(),
    })
}

fn parse_positive(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{raw:?} is not a positive number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags_work_without_subcommand() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "--users",
            "50",
            "--spawn-rate",
            "10",
            "--duration",
            "10s",
            "--target",
            "grpc=http://127.0.0.1:8081",
            "--target",
            "redis=http://127.0.0.1:8082",
            "--report",
            "r.json",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.users, 50);
        assert_eq!(cli.run.targets.len(), 2);
        assert_eq!(
            cli.run.targets[1],
            TargetArg {
                name: "redis".into(),
                url: "http://127.0.0.1:8082".into()
            }
        );
        assert_eq!(cli.run.duration, Some(Duration::from_secs(10)));
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from(["loadtest", "gen", "--count", "5"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Gen(GenArgs { count: 5, .. }))
        ));
        let cli =
            Cli::try_parse_from(["loadtest", "run", "--target", "a=http://x", "--rate", "100"])
                .unwrap();
        assert!(matches!(cli.command, Some(Command::Run(args)) if args.rate == Some(100.0)));
    }

    #[test]
    fn bad_flags_say_what_to_do() {
        let err =
            Cli::try_parse_from(["loadtest", "--target", "http://127.0.0.1:8081"]).unwrap_err();
        assert!(err.to_string().contains("NAME=VALUE"), "{err}");
        let err = Cli::try_parse_from([
            "loadtest",
            "--target",
            "a=http://x",
            "--rate",
            "10",
            "--users",
            "3",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("cannot be used with"), "{err}");
        assert!(Cli::try_parse_from(["loadtest", "--target", "a b=http://x"]).is_err());
        assert!(Cli::try_parse_from(["loadtest"]).is_err());
    }
}
