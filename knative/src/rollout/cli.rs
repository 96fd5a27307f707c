//! The `rollout` command's flags: parsed once into [`Args`], every mistake
//! a one-line reason (the binary exits 2 with it).

use std::time::Duration;

use super::analysis::Plan;
use super::gates::{DEFAULT_GATES, DEFAULT_MIN_REQUESTS, GATE_SYNTAX, Gate};
use super::kn::Strategy;

pub const EXIT_PROMOTED: u8 = 0;
pub const EXIT_ROLLED_BACK: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_ERROR: u8 = 3;

pub fn usage() -> String {
    format!(
        "Usage: rollout [OPTIONS] canary|blue-green

Rolls a new revision of a Knative Service out and decides by itself: at each
step the canary and the stable revision are measured over the same interval
(the load generator under one shared load, split by the x-revision header,
or Prometheus), the gates are checked, and the rollout goes on, promotes, or
rolls back. Blue/green measures green and blue on their tag URLs and switches
only if green passes. Traffic moves with knative/rollout.sh (kn).

Strategy:
  canary              steps of --steps, then promote (rollout.sh create, step, promote)
  blue-green          green at 0% on its tag URL, judged, then switch (rollout.sh blue-green, switch)

Steps:
      --steps LIST        canary percents, increasing, ending at 100 (default 10,50,100)
      --step-time DUR     how long each measurement runs (default 60s; 500ms, 10s, 2m)
      --max-waits N       extra measurements at a step while too few requests came (default 2),
                          then the rollout counts as failed

Gates (the canary against stable over the same interval):
      --gate EXPR         repeatable; replaces the defaults: {gates}
                          {syntax}
      --min-requests N    requests each revision must serve in an interval before it is
                          judged (default {min}); failing writes are judged earlier

Measurement:
      --target URL        the ingress the load generator sends to (e.g. http://ENVOY_IP)
      --host HOST         the Service's host (default SERVICE.NAMESPACE.covid.example.com);
                          tag URLs are TAG-HOST
      --users N           load generator users (default 8)
      --token TOKEN       bearer token for ingest (default: $INGEST_TOKEN)
      --prometheus URL    judge the canary from Prometheus (the functions' own /metrics,
                          labelled knative_revision by the PodMonitor) instead of the load
                          generator, e.g. http://prometheus.monitoring:9090
      --loadtest PATH     the load generator (default: target/release or target/debug, then PATH)

Service (as knative/rollout.sh):
      --image IMAGE       the new revision's image (required)
  -n, --namespace NS      (default covid-realtime)
  -s, --service NAME      (default ingest-grpc)
      --from REVISION     stable (default SERVICE-v1)
      --to REVISION       canary / green (default SERVICE-v2)
      --dry-run           print the kn commands of the way up and of the rollback; measure nothing
  -h, --help              this text

Exit codes:
  {EXIT_PROMOTED}  promoted (canary at 100%, or switched to green)
  {EXIT_ROLLED_BACK}  rolled back by a gate (or too few requests)
  {EXIT_USAGE}  a wrong flag or gate expression (one-line reason on stderr)
  {EXIT_ERROR}  could not finish (kn, the load generator or Prometheus failed); traffic moved
     back to stable when the rollout had moved any

Example:
  rollout --image dev.local/covid-realtime/ingest:0.2.0 --target http://$ENVOY_IP canary
  rollout --dry-run --image dev.local/covid-realtime/ingest:0.2.0 canary",
        gates = DEFAULT_GATES
            .iter()
            .map(|g| format!("'{g}'"))
            .collect::<Vec<_>>()
            .join(", "),
        syntax = GATE_SYNTAX,
        min = DEFAULT_MIN_REQUESTS,
    )
}

/// Everything the command was told.
#[derive(Debug, Clone)]
pub struct Args {
    pub strategy: Strategy,
    pub plan: Plan,
    pub image: String,
    pub namespace: String,
    pub service: String,
    pub from: String,
    pub to: String,
    pub target: Option<String>,
    pub host: Option<String>,
    pub users: u32,
    pub token: Option<String>,
    pub prometheus: Option<String>,
    pub loadtest: Option<std::path::PathBuf>,
    pub dry_run: bool,
}

/// What the command line asks for: help, or a rollout.
#[derive(Debug)]
pub enum Parsed {
    Help,
    Run(Box<Args>),
}

/// `500ms`, `10s`, `1.5s`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: write e.g. 500ms, 10s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => {
            return Err(format!(
                "{text:?} is not a duration: write e.g. 500ms, 10s or 2m"
            ));
        }
    };
    if secs <= 0.0 {
        return Err(format!("{text:?}: a duration must be above zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut plan = Plan::default();
    let mut gates: Vec<Gate> = Vec::new();
    let mut strategy = None;
    let mut a = Args {
        strategy: Strategy::Canary,
        plan: Plan::default(),
        image: String::new(),
        namespace: "covid-realtime".into(),
        service: "ingest-grpc".into(),
        from: String::new(),
        to: String::new(),
        target: None,
        host: None,
        users: 8,
        token: std::env::var("INGEST_TOKEN").ok().filter(|t| !t.is_empty()),
        prometheus: None,
        loadtest: None,
        dry_run: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |v: String| -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("{flag} takes a whole number, not {v:?}"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--steps" => plan.steps = Plan::parse_steps(&value()?)?,
            "--step-time" => {
                plan.interval = parse_duration(&value()?).map_err(|e| format!("--step-time {e}"))?
            }
            "--max-waits" => plan.max_waits = number(value()?)? as u32,
            "--gate" => gates.push(Gate::parse(&value()?)?),
            "--min-requests" => plan.gates.min_requests = number(value()?)?.max(1),
            "--target" => a.target = Some(url(&value()?, flag)?),
            "--host" => a.host = Some(value()?),
            "--users" => a.users = number(value()?)?.clamp(1, 10_000) as u32,
            "--token" => a.token = Some(value()?),
            "--prometheus" => a.prometheus = Some(url(&value()?, flag)?),
            "--loadtest" => a.loadtest = Some(value()?.into()),
            "--image" => a.image = value()?,
            "-n" | "--namespace" => a.namespace = value()?,
            "-s" | "--service" => a.service = value()?,
            "--from" => a.from = value()?,
            "--to" => a.to = value()?,
            "--dry-run" => a.dry_run = true,
            "canary" | "blue-green" if strategy.is_none() => {
                strategy = Some(if flag == "canary" {
                    Strategy::Canary
                } else {
                    Strategy::BlueGreen
                })
            }
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other => {
                return Err(format!(
                    "unexpected {other:?}: the strategy is canary or blue-green, given once"
                ));
            }
        }
    }
    a.strategy = strategy.ok_or("name the strategy: canary or blue-green")?;
    if !gates.is_empty() {
        plan.gates.gates = gates;
    }
    // The warm-up loads the tag URLs: only with the load generator.
    plan.warm_up = a
        .target
        .as_ref()
        .map(|_| plan.interval.min(super::analysis::DEFAULT_WARM_UP));
    a.plan = plan;
    if a.image.is_empty() {
        return Err("--image is required (the new revision's image; an existing revision of that name and image is reused)".into());
    }
    if a.from.is_empty() {
        a.from = format!("{}-v1", a.service);
    }
    if a.to.is_empty() {
        a.to = format!("{}-v2", a.service);
    }
    if !a.dry_run && a.target.is_none() && a.prometheus.is_none() {
        return Err(
            "say where to measure: --target URL (the ingress, for the load generator) or --prometheus URL".into(),
        );
    }
    if a.strategy == Strategy::BlueGreen && a.target.is_none() && !a.dry_run {
        return Err(
            "blue-green measures green on its tag URL with the load generator: give --target URL"
                .into(),
        );
    }
    Ok(Parsed::Run(Box::new(a)))
}

fn url(v: &str, flag: &str) -> Result<String, String> {
    if v.starts_with("http://") && v.len() > "http://".len() {
        Ok(v.trim_end_matches('/').to_owned())
    } else {
        Err(format!(
            "{flag} {v:?}: write an http:// URL, e.g. http://10.0.0.5 (https is not supported)"
        ))
    }
}

impl Args {
    /// The Service's host on the ingress.
    pub fn host(&self) -> String {
        self.host
            .clone()
            .unwrap_or_else(|| format!("{}.{}.covid.example.com", self.service, self.namespace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Parsed, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_become_a_plan() {
        let Parsed::Run(a) = p(&[
            "--image",
            "i:2",
            "--target",
            "http://127.0.0.1:8080",
            "--steps",
            "5,25,100",
            "--step-time",
            "2s",
            "--gate",
            "p99 < 300ms",
            "canary",
        ])
        .unwrap() else {
            panic!("not a run")
        };
        assert_eq!(a.plan.steps, vec![5, 25, 100]);
        assert_eq!(a.plan.interval, Duration::from_secs(2));
        assert_eq!(a.plan.gates.gates.len(), 1, "--gate replaces the defaults");
        assert_eq!(
            (a.from.as_str(), a.to.as_str()),
            ("ingest-grpc-v1", "ingest-grpc-v2")
        );
        assert_eq!(a.host(), "ingest-grpc.covid-realtime.covid.example.com");
    }

    #[test]
    fn mistakes_get_one_line() {
        for (args, why) in [
            (
                &["--image", "i", "--dry-run", "--frobnicate", "canary"][..],
                "unknown option --frobnicate",
            ),
            (
                &[
                    "--image",
                    "i",
                    "--dry-run",
                    "--gate",
                    "p99 >= 1ms",
                    "canary",
                ],
                "bad gate",
            ),
            (
                &["--image", "i", "--dry-run", "--steps", "10,50", "canary"],
                "bad --steps",
            ),
            (
                &["--image", "i", "--dry-run", "--step-time", "soon", "canary"],
                "not a duration",
            ),
            (&["--image", "i", "--dry-run"], "name the strategy"),
            (&["--dry-run", "canary"], "--image is required"),
            (&["--image", "i", "canary"], "say where to measure"),
            (
                &["--image", "i", "--target", "10.0.0.5", "canary"],
                "http:// URL",
            ),
        ] {
            let e = p(args).unwrap_err();
            assert!(e.contains(why), "{args:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
