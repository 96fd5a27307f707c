//! The `rollout` command: --help, one-line refusals with exit 2, the kn
//! commands of every path of its dry run (accepted by the kn/Serving model),
//! and a real run driving a fake kn.

use std::path::Path;
use std::process::{Command, Output};

use super::{FAKE_KN, IMAGE_V2, applied, roll, stdout, v1_image, with_fake_kn};
use knative_manifests::paths;
use knative_manifests::rollout::serving_model::Cluster;

fn rollout_command(args: &[&str], path: &str, state: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rollout"));
    cmd.args(args).env("PATH", path).env_remove("INGEST_TOKEN");
    if let Some(s) = state {
        cmd.env("FAKE_KN_STATE", s);
    }
    cmd.output().expect("the rollout binary runs")
}

#[test]
fn rollout_help_lists_steps_gates_and_exit_codes() {
    let out = rollout_command(&["--help"], "/usr/bin:/bin", None);
    assert!(out.status.success());
    let text = stdout(&out);
    for needle in [
        "--steps",
        "10,50,100",
        "--step-time",
        "--gate",
        "error_rate <= stable + 1pp",
        "p99 <= 1.5 * stable + 5ms",
        "--min-requests",
        "--prometheus",
        "--dry-run",
        "Exit codes:",
        "0  promoted",
        "1  rolled back",
        "2  a wrong flag or gate expression",
        "3  could not finish",
    ] {
        assert!(text.contains(needle), "--help mentions {needle:?}:\n{text}");
    }
}

#[test]
fn rollout_refuses_a_wrong_flag_or_gate_in_one_line_with_exit_2() {
    for (args, needle) in [
        (
            &["--image", "i", "--dry-run", "--colour", "canary"][..],
            "unknown option --colour",
        ),
        (
            &[
                "--image",
                "i",
                "--dry-run",
                "--gate",
                "p99 > 1.5 * stable",
                "canary",
            ],
            "bad gate \"p99 > 1.5 * stable\"",
        ),
        (
            &[
                "--image",
                "i",
                "--dry-run",
                "--gate",
                "errors <= stable + 1pp",
                "canary",
            ],
            "unknown metric \"errors\"",
        ),
        (
            &[
                "--image",
                "i",
                "--dry-run",
                "--steps",
                "50,10,100",
                "canary",
            ],
            "not increasing",
        ),
    ] {
        let out = rollout_command(args, "/usr/bin:/bin", None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "nothing ran: {}", stdout(&out));
    }
}

/// The rollout command's --dry-run: the kn lines under each `#` heading.
fn sections(lines: &[String]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for l in lines {
        if let Some(h) = l.strip_prefix("# ") {
            out.push((h.to_owned(), Vec::new()));
        } else {
            let last = out.last_mut().expect("a heading before any kn command");
            assert!(l.starts_with("kn "), "{l}");
            last.1.push(l.clone());
        }
    }
    out
}

/// Every path of the automated rollout on a cluster in `cluster`'s state:
/// the way up (start, steps, promotion) and, after the start and after
/// each step, the rollback; each command accepted by kn and Serving.
fn check_rollout_dry_run(cluster: &Cluster, strategy: &str) {
    let args = ["--dry-run", "--image", IMAGE_V2, strategy];
    let lines = with_fake_kn(cluster, |path, state| {
        rollout_command(&args, path, Some(state))
    })
    .unwrap_or_else(|o| panic!("rollout {args:?}: {}", String::from_utf8_lossy(&o.stderr)));
    let sections = sections(&lines);
    let (rollback_heading, rollback) = sections.last().expect("a rollback section");
    assert!(rollback_heading.contains("roll back"), "{lines:?}");
    let up = &sections[..sections.len() - 1];
    let mut state = cluster.clone();
    for (heading, cmds) in up {
        for c in cmds {
            state
                .apply(c)
                .unwrap_or_else(|why| panic!("{heading}: {c}\n  refused: {why}"));
        }
        // A failure here: the rollback must be accepted too, and restore stable.
        let mut back = state.clone();
        for c in rollback {
            back.apply(c)
                .unwrap_or_else(|why| panic!("rollback after {heading}: {c}\n  refused: {why}"));
        }
        assert_eq!(back.split()["ingest-grpc-v1"], 100, "after {heading}");
    }
    assert_eq!(
        state.split()["ingest-grpc-v2"],
        100,
        "the way up ends with v2 at 100 %: {lines:?}"
    );
    if strategy == "canary" {
        let steps: Vec<&str> = up.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(
            steps,
            [
                "start",
                "step: canary 10%, then measure",
                "step: canary 50%, then measure",
                "every step passed: promote"
            ],
            "the default steps"
        );
    }
}

#[test]
fn rollout_dry_run_prints_kn_commands_serving_accepts_on_every_path() {
    let v1 = v1_image();
    for strategy in ["canary", "blue-green"] {
        check_rollout_dry_run(&applied("overlays/default", &[]), strategy);
        check_rollout_dry_run(
            &applied("overlays/ingest-grpc-v2", &[("ingest-grpc-v1", &v1)]),
            strategy,
        );
    }
    let mut after_canary = applied("overlays/default", &[]);
    roll(&mut after_canary, &["canary", IMAGE_V2]);
    check_rollout_dry_run(&after_canary, "canary");
}

/// The rollout command without --dry-run, on a "cluster" whose kn is the
/// fake (recording each `kn service update`) and whose ingress is one local
/// ingest answering as ingest-grpc-v1 only: the canary never gets a
/// request, so after its waits the rollout rolls back and exits 1. Every kn
/// command it ran is accepted by the model and leaves v1 at 100 %.
#[test]
fn rollout_on_a_cluster_drives_kn_and_rolls_back_without_evidence() {
    use std::os::unix::fs::PermissionsExt as _;
    let ingest = paths::function_binary("ingest").unwrap_or_else(|e| panic!("{e:#}"));
    let sink = knative_manifests::scrape::spawn_stand_in_sink().unwrap();
    let env: Vec<(String, String)> = [("K_SINK", sink.as_str()), ("K_REVISION", "ingest-grpc-v1")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let v1 = knative_manifests::scrape::start(&ingest, &env).unwrap_or_else(|e| panic!("{e:#}"));

    let cluster = applied("overlays/default", &[]);
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(state.join(&cluster.namespace)).unwrap();
    std::fs::write(bin.join("kn"), FAKE_KN).unwrap();
    std::fs::set_permissions(bin.join("kn"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let updates = dir.path().join("updates.log");
    let loadtest =
        knative_manifests::rehearsal::built_binary("loadtest").unwrap_or_else(|e| panic!("{e:#}"));

    let out = Command::new(env!("CARGO_BIN_EXE_rollout"))
        .args([
            "--image",
            IMAGE_V2,
            "--step-time",
            "500ms",
            "--max-waits",
            "1",
        ])
        .arg("--target")
        .arg(format!("http://127.0.0.1:{}", v1.port))
        .arg("--loadtest")
        .arg(&loadtest)
        .arg("canary")
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("FAKE_KN_STATE", &state)
        .env("FAKE_KN_UPDATES", &updates)
        .env_remove("INGEST_TOKEN")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rolled back: exit 1\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("still too few requests"), "{text}");
    assert!(text.contains("rolled back to ingest-grpc-v1"), "{text}");

    let ran = std::fs::read_to_string(&updates).unwrap();
    let ran: Vec<&str> = ran.lines().collect();
    assert_eq!(
        ran.len(),
        4,
        "create (2 commands), step 10, rollback: {ran:?}"
    );
    assert!(
        ran[2].contains("--traffic stable=90 --traffic canary=10"),
        "{ran:?}"
    );
    let mut model = cluster.clone();
    for c in &ran {
        model
            .apply(c)
            .unwrap_or_else(|why| panic!("{c}\n  refused: {why}"));
    }
    assert_eq!(model.split()["ingest-grpc-v1"], 100);
    assert_eq!(model.tagged("canary"), Some("ingest-grpc-v2"));
}
