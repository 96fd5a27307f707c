//! On a cluster, traffic moves with knative/rollout.sh, the one place that
//! writes the kn commands (`create`, `step`, `promote`, `rollback`,
//! `blue-green`, `switch`): the automated rollout runs the same commands a
//! person would, and `--dry-run` prints them.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

use super::analysis::Router;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Canary,
    BlueGreen,
}

/// knative/rollout.sh with the Service, namespace and revisions of one rollout.
#[derive(Debug, Clone)]
pub struct Kn {
    pub script: PathBuf,
    pub namespace: String,
    pub service: String,
    pub from: String,
    pub to: String,
    pub image: String,
    pub strategy: Strategy,
    /// Passed on to rollout.sh: the kn commands are printed, not run.
    pub dry_run: bool,
}

impl Kn {
    /// The rollout.sh command of each move.
    fn args(&self, what: Move) -> anyhow::Result<Vec<String>> {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Ok(match (self.strategy, what) {
            (Strategy::Canary, Move::Start) => v(&["create", &self.image]),
            (Strategy::Canary, Move::Step(p)) => vec!["step".into(), p.to_string()],
            (Strategy::Canary, Move::Promote) => v(&["promote"]),
            (Strategy::Canary, Move::Rollback) => v(&["rollback", "canary"]),
            (Strategy::BlueGreen, Move::Start) => v(&["blue-green", &self.image]),
            (Strategy::BlueGreen, Move::Step(p)) => {
                bail!("blue/green has no partial split (asked for green at {p}%)")
            }
            (Strategy::BlueGreen, Move::Promote) => v(&["switch"]),
            (Strategy::BlueGreen, Move::Rollback) => v(&["rollback", "blue-green"]),
        })
    }

    /// Runs rollout.sh for `what`; its output (the kn commands) goes to ours.
    pub fn run(&self, what: Move) -> anyhow::Result<()> {
        let args = self.args(what)?;
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script);
        if self.dry_run {
            cmd.arg("--dry-run");
        }
        cmd.args(["--namespace", &self.namespace, "--service", &self.service])
            .args(["--from", &self.from, "--to", &self.to])
            .args(&args);
        let status = cmd
            .status()
            .with_context(|| format!("cannot run {}", self.script.display()))?;
        if !status.success() {
            bail!(
                "{} {} failed ({status})",
                self.script.display(),
                args.join(" ")
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Start,
    Step(u32),
    Promote,
    Rollback,
}

impl Router for Kn {
    fn start(&mut self) -> anyhow::Result<()> {
        self.run(Move::Start)
    }
    fn step(&mut self, percent: u32) -> anyhow::Result<()> {
        self.run(Move::Step(percent))
    }
    fn promote(&mut self) -> anyhow::Result<()> {
        self.run(Move::Promote)
    }
    fn rollback(&mut self) -> anyhow::Result<()> {
        self.run(Move::Rollback)
    }
}

/// What `--dry-run` prints: every kn command of the way up (start, each
/// step, the promotion), and the rollback that would follow a failure at
/// any step, each preceded by a `#` line saying when it runs.
pub fn dry_run(kn: &Kn, steps: &[u32], out: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    let kn = Kn {
        dry_run: true,
        ..kn.clone()
    };
    out("# start\n");
    kn.run(Move::Start)?;
    match kn.strategy {
        Strategy::Canary => {
            for &p in steps {
                if p == 100 {
                    out("# every step passed: promote\n");
                    kn.run(Move::Promote)?;
                } else {
                    out(&format!("# step: canary {p}%, then measure\n"));
                    kn.run(Move::Step(p))?;
                }
            }
        }
        Strategy::BlueGreen => {
            out("# green passed on its tag URL: switch\n");
            kn.run(Move::Promote)?;
        }
    }
    out("# a gate failed at any step: roll back\n");
    kn.run(Move::Rollback)
}
