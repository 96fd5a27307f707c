//! The rollout rehearsal (knative/src/rehearsal, `make rollout-demo`) with
//! real processes: each revision of ingest-grpc runs as a local ingest
//! process, a real nginx splits the traffic with weights generated from the
//! overlay's traffic block, and loadtest measures the split from the
//! `x-revision` header. Needs nginx and kubectl (scripts/setup.sh) and the
//! ingest and loadtest binaries (`cargo build --bins`); a missing one fails
//! the test with the command that provides it.

use std::time::Duration;

use knative_manifests::assert_no_problems;
use knative_manifests::rehearsal::{self, Options, Setup, auto};
use knative_manifests::rollout::analysis::Verdict;
use knative_manifests::rollout::kn::Strategy;

fn setup() -> Setup {
    Setup::find().unwrap_or_else(|e| panic!("{e:#}"))
}

/// Every canary step: the split observed through nginx over at least 2,000
/// requests is within 3 percentage points of the declared one (0 % and
/// 100 % exactly), and every tag host answers from its revision only.
#[test]
fn canary_steps_split_as_their_traffic_blocks_declare() {
    let opts = Options::default();
    assert!(opts.requests >= 2000);
    let steps = rehearsal::canary(&setup(), rehearsal::CANARY_STEPS, &opts)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut problems = Vec::new();
    for step in &steps {
        eprintln!("{step}");
        problems.extend(step.problems());
    }
    assert_eq!(steps.len(), rehearsal::CANARY_STEPS.len());
    // The first step is a real split (neither 0 % nor 100 %), so the tolerance is exercised.
    let first = &steps[0];
    assert!(
        first.declared.weights().len() >= 2,
        "{}: expected a split, got {}",
        first.declared.overlay,
        first.declared.describe()
    );
    assert!(
        first.observed.requests >= 2000,
        "{}",
        first.observed.requests
    );
    assert!(
        steps[1..].iter().all(|s| s.reload.is_some()),
        "later steps come by nginx -s reload"
    );
    assert_no_problems("canary rehearsal", &problems);
}

/// Blue/green: green answers on its tag host before the switch while blue
/// takes all traffic; the switch (nginx reload under load) fails no request;
/// afterwards every response comes from green.
#[test]
fn blue_green_switch_under_load_fails_no_request() {
    let opts = Options::default();
    let bg = rehearsal::blue_green(
        &setup(),
        rehearsal::BLUE_GREEN,
        rehearsal::BLUE_GREEN_SWITCH,
        &opts,
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{bg}");
    let green = bg.after.declared.weights();
    assert_eq!(
        green.len(),
        1,
        "after the switch one revision takes all traffic: {}",
        bg.after.declared.describe()
    );
    let green = &green[0].0;
    assert!(
        bg.before.tags.iter().any(
            |t| &t.revision == green && t.observed.responses_from(green) == t.observed.requests
        ),
        "before the switch, green's tag host answers from {green}"
    );
    assert_eq!(bg.switch.observed.failed, 0, "{}", bg.switch);
    assert_eq!(
        bg.after.observed.responses_from(green),
        bg.after.observed.requests,
        "{}",
        bg.after
    );
    assert_no_problems("blue/green rehearsal", &bg.problems());
}

/// The automated canary (the `rollout` command's loop, nginx as the router)
/// with a healthy v2: every step passes and v2 is promoted; afterwards the
/// load generator sees every response come from v2.
#[test]
fn automated_canary_promotes_a_healthy_v2() {
    let plan = auto::plan(Duration::from_secs(2));
    let mut timeline = String::new();
    let run = auto::rehearse(
        &setup(),
        Strategy::Canary,
        false,
        &auto::Judge::LoadGenerator,
        &plan,
        &mut |l| timeline.push_str(l),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{timeline}");
    assert_eq!(
        run.outcome.verdict,
        Verdict::Promoted,
        "{}\n{timeline}",
        run.outcome.reason
    );
    assert_eq!(run.outcome.max_canary_percent, 100);
    assert!(run.after.requests > 0);
    assert_eq!(
        (run.after.responses_from(&run.canary), run.after.failed),
        (run.after.requests, 0),
        "after the promotion every response comes from {}: {:?}",
        run.canary,
        run.after
    );
}

/// A v2 broken on purpose (its downstream refuses 30 % of writes, a
/// rehearsal-only sink): the error gate fails at the first step, the canary
/// is rolled back having never had more than that step's share, and the
/// load generator then sees every response come from v1 again.
#[test]
fn automated_canary_rolls_a_broken_v2_back_at_the_first_step() {
    let plan = auto::plan(Duration::from_secs(2));
    let mut timeline = String::new();
    let run = auto::rehearse(
        &setup(),
        Strategy::Canary,
        true,
        &auto::Judge::LoadGenerator,
        &plan,
        &mut |l| timeline.push_str(l),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{timeline}");
    assert_eq!(
        run.outcome.verdict,
        Verdict::RolledBack,
        "{}\n{timeline}",
        run.outcome.reason
    );
    assert!(
        run.outcome.reason.contains("error_rate"),
        "rolled back by the error gate: {}",
        run.outcome.reason
    );
    assert_eq!(run.outcome.max_canary_percent, plan.steps[0]);
    assert!(run.after.requests > 0);
    assert_eq!(
        (run.after.responses_from(&run.stable), run.after.failed),
        (run.after.requests, 0),
        "after the rollback every response comes from {}: {:?}",
        run.stable,
        run.after
    );
}

/// The broken v2 again, judged from a real Prometheus scraping the
/// revisions' own `/metrics` (the `--prometheus` gates: PromQL over
/// `http_requests_total` and `http_request_duration_seconds`): rolled back
/// at the first step, with the refused writes counted by Prometheus.
#[test]
fn automated_canary_judged_by_prometheus_rolls_a_broken_v2_back() {
    let prometheus = knative_manifests::tools::find(&rehearsal::prometheus::PROMETHEUS)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let plan = auto::plan(Duration::from_secs(2));
    let mut timeline = String::new();
    let run = auto::rehearse(
        &setup(),
        Strategy::Canary,
        true,
        &auto::Judge::Prometheus(prometheus),
        &plan,
        &mut |l| timeline.push_str(l),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{timeline}");
    assert_eq!(
        run.outcome.verdict,
        Verdict::RolledBack,
        "{}\n{timeline}",
        run.outcome.reason
    );
    assert!(
        run.outcome.reason.contains("error_rate"),
        "{}",
        run.outcome.reason
    );
    assert_eq!(run.outcome.max_canary_percent, plan.steps[0]);
    let judged = run
        .outcome
        .timeline
        .rows
        .iter()
        .find(|r| r.split == "90/10")
        .expect("a row at the first step");
    assert!(
        judged.measured.canary.errors > 0 && judged.measured.stable.requests > 0,
        "Prometheus counted the canary's refused writes: {judged:?}"
    );
    assert_eq!(
        (run.after.responses_from(&run.stable), run.after.failed),
        (run.after.requests, 0),
        "{:?}",
        run.after
    );
}

/// Blue/green, automated: green is judged on its tag URL against blue on
/// its own before any switch. A healthy green is switched to; a broken one
/// (the same rehearsal-only faulty downstream) is never switched to, and
/// blue keeps every request.
#[test]
fn automated_blue_green_switches_only_to_a_healthy_green() {
    let plan = auto::plan(Duration::from_secs(2));
    for (broken, verdict) in [(false, Verdict::Promoted), (true, Verdict::RolledBack)] {
        let mut timeline = String::new();
        let run = auto::rehearse(
            &setup(),
            Strategy::BlueGreen,
            broken,
            &auto::Judge::LoadGenerator,
            &plan,
            &mut |l| timeline.push_str(l),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        eprintln!("{timeline}");
        assert_eq!(
            run.outcome.verdict, verdict,
            "green broken: {broken}; {}\n{timeline}",
            run.outcome.reason
        );
        assert!(
            run.outcome
                .timeline
                .rows
                .iter()
                .any(|r| r.split == "tag URLs"),
            "green was judged on its tag URL:\n{timeline}"
        );
        let (winner, max_percent) = if broken {
            (&run.stable, 0)
        } else {
            (&run.canary, 100)
        };
        assert_eq!(run.outcome.max_canary_percent, max_percent);
        assert_eq!(
            (run.after.responses_from(winner), run.after.failed),
            (run.after.requests, 0),
            "after the rollout every response comes from {winner}: {:?}",
            run.after
        );
    }
}
