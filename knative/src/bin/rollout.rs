//! `rollout`: an automated canary or blue/green rollout of a Knative
//! Service, judged on measured health (see knative/src/rollout and `--help`).

use std::io::Write as _;
use std::process::ExitCode;

use knative_manifests::rollout::analysis::{self, Revisions, Verdict};
use knative_manifests::rollout::cli::{self, Args, Parsed};
use knative_manifests::rollout::kn::{self, Kn, Strategy};
use knative_manifests::rollout::measure::{Load, Source};
use knative_manifests::rollout::prometheus::Prometheus;
use knative_manifests::{paths, rehearsal};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = match cli::parse(&args) {
        Ok(Parsed::Help) => {
            println!("{}", cli::usage());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(a)) => a,
        Err(why) => {
            eprintln!("rollout: {why} (rollout --help lists the flags)");
            return ExitCode::from(cli::EXIT_USAGE);
        }
    };
    match run(&a) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("rollout: {e:#}");
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}

fn print(line: &str) {
    print!("{line}");
    let _ = std::io::stdout().flush();
}

fn run(a: &Args) -> anyhow::Result<u8> {
    let kn = Kn {
        script: paths::knative_dir().join("rollout.sh"),
        namespace: a.namespace.clone(),
        service: a.service.clone(),
        from: a.from.clone(),
        to: a.to.clone(),
        image: a.image.clone(),
        strategy: a.strategy,
        dry_run: a.dry_run,
    };
    if a.dry_run {
        kn::dry_run(&kn, &a.plan.steps, &mut print)?;
        return Ok(cli::EXIT_PROMOTED);
    }
    let load = match &a.target {
        Some(url) => {
            let loadtest = match &a.loadtest {
                Some(p) => p.clone(),
                None => rehearsal::built_binary("loadtest").unwrap_or_else(|_| "loadtest".into()),
            };
            let mut l = Load::new(&loadtest, url, &a.host(), a.users)?;
            l.token = a.token.clone();
            Some(l)
        }
        None => None,
    };
    let mut source: Box<dyn Source> = match (&a.prometheus, load) {
        (Some(url), load) => Box::new(Prometheus {
            url: url.clone(),
            load,
            // Two of the PodMonitor's 15 s scrapes: every request of the interval is in.
            settle: std::time::Duration::from_secs(30),
        }),
        (None, Some(load)) => Box::new(load),
        (None, None) => anyhow::bail!("nothing to measure with"),
    };
    let (stable_tag, canary_tag) = match a.strategy {
        Strategy::Canary => ("stable", "canary"),
        Strategy::BlueGreen => ("blue", "green"),
    };
    let revs = Revisions {
        stable: a.from.clone(),
        canary: a.to.clone(),
        stable_tag: stable_tag.into(),
        canary_tag: canary_tag.into(),
    };
    let mut router = kn;
    let outcome = match a.strategy {
        Strategy::Canary => {
            analysis::canary(&a.plan, &mut router, source.as_mut(), &revs, &mut print)?
        }
        Strategy::BlueGreen => {
            analysis::blue_green(&a.plan, &mut router, source.as_mut(), &revs, &mut print)?
        }
    };
    match outcome.verdict {
        Verdict::Promoted => {
            println!("promoted {}: {}", a.to, outcome.reason);
            Ok(cli::EXIT_PROMOTED)
        }
        Verdict::RolledBack => {
            println!("rolled back to {}: {}", a.from, outcome.reason);
            Ok(cli::EXIT_ROLLED_BACK)
        }
    }
}
