//! knative/rollout.sh: shellcheck-clean, --help, and a dry run of every
//! command printing kn commands whose traffic adds up and whose tags match
//! the rollout overlays; and, against modelled cluster states (a fake `kn`
//! on PATH answers `kn revision describe` from a fixture), kn commands that
//! kn and Serving accept when the script is repeated or follows
//! `kubectl apply -k` of a rollout overlay (knative_manifests::rollout::serving_model).

use std::path::Path;
use std::process::{Command, Output};

use knative_manifests::rollout::serving_model::Cluster;
use knative_manifests::{kustomize, paths, tools, yaml};

fn script() -> std::path::PathBuf {
    paths::knative_dir().join("rollout.sh")
}

fn run(args: &[&str]) -> Output {
    run_with_path(args, "/usr/bin:/bin")
}

fn run_with_path(args: &[&str], path: &str) -> Output {
    run_with_env(args, path, &[])
}

fn run_with_env(args: &[&str], path: &str, env: &[(&str, &Path)]) -> Output {
    let bash = tools::find(&tools::BASH).unwrap_or_else(|e| panic!("{e}"));
    Command::new(bash)
        .arg(script())
        .args(args)
        .env("PATH", path)
        .envs(env.iter().map(|(k, v)| (k, v.as_os_str())))
        .output()
        .expect("bash runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn shellcheck_is_clean() {
    let shellcheck = tools::find(&tools::SHELLCHECK).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(shellcheck)
        .arg(script())
        .output()
        .expect("shellcheck runs");
    assert!(
        out.status.success(),
        "shellcheck knative/rollout.sh:\n{}",
        stdout(&out)
    );
}

#[test]
fn help_lists_every_command() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for cmd in [
        "canary IMAGE",
        "create IMAGE",
        "step PERCENT",
        "promote",
        "blue-green IMAGE",
        "switch",
        "rollback canary",
        "rollback blue-green",
        "--dry-run",
        "loadtest",
        "--bin rollout",
    ] {
        assert!(text.contains(cmd), "--help mentions {cmd}");
    }
}

/// The --traffic pairs of one printed kn command.
fn traffic(line: &str) -> Vec<(String, u32)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "--traffic")
        .map(|w| {
            let (target, pct) = w[1].split_once('=').expect("--traffic target=percent");
            (target.to_owned(), pct.parse().expect("a whole percent"))
        })
        .collect()
}

/// The --traffic pairs each printed kn command should carry, in order.
type Steps = &'static [&'static [(&'static str, u32)]];

#[test]
fn dry_runs_print_kn_commands_that_add_up() {
    let image = "dev.local/covid-realtime/ingest:0.2.0";
    let cases: &[(&[&str], Steps)] = &[
        (
            &["canary", image],
            &[
                &[("ingest-grpc-v1", 100)],
                &[("stable", 90), ("canary", 10)],
            ],
        ),
        (&["step", "50"], &[&[("stable", 50), ("canary", 50)]]),
        (&["promote"], &[&[("stable", 0), ("canary", 100)]]),
        (
            &["rollback", "canary"],
            &[&[("stable", 100), ("canary", 0)]],
        ),
        (
            &["blue-green", image],
            &[&[("ingest-grpc-v1", 100)], &[("blue", 100), ("green", 0)]],
        ),
        (&["switch"], &[&[("blue", 0), ("green", 100)]]),
        (
            &["rollback", "blue-green"],
            &[&[("blue", 100), ("green", 0)]],
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["--dry-run"];
        full.extend_from_slice(args);
        let out = run(&full);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            expected.len(),
            "{args:?} prints one kn command per step:\n{text}"
        );
        for (line, want) in lines.iter().zip(expected.iter()) {
            assert!(
                line.starts_with("kn service update ingest-grpc --namespace covid-realtime"),
                "{line}"
            );
            let got = traffic(line);
            let want: Vec<(String, u32)> = want.iter().map(|(t, p)| (t.to_string(), *p)).collect();
            assert_eq!(got, want, "{args:?}: {line}");
            assert_eq!(got.iter().map(|(_, p)| p).sum::<u32>(), 100, "{line}");
        }
    }
    let canary = stdout(&run(&["--dry-run", "canary", image]));
    assert!(
        canary.contains("--revision-name ingest-grpc-v2")
            && canary.contains("--tag ingest-grpc-v1=stable --tag ingest-grpc-v2=canary"),
        "{canary}"
    );
    let bg = stdout(&run(&["--dry-run", "blue-green", image]));
    assert!(
        bg.contains("--tag ingest-grpc-v1=blue --tag ingest-grpc-v2=green"),
        "{bg}"
    );
}

#[test]
fn without_dry_run_kn_is_required() {
    // An empty PATH: whatever is installed here, no kn (and no cluster) is reached.
    let empty = tempfile::tempdir().unwrap();
    let out = run_with_path(&["promote"], empty.path().to_str().unwrap());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kn is not installed"));
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    for (args, needle) in [
        (&["--dry-run", "step", "101"][..], "PERCENT"),
        (&["--dry-run", "rollback"][..], "canary or blue-green"),
        (&["--dry-run", "launch"][..], "unknown command"),
        (
            &["--dry-run", "--to", "other-v2", "promote"][..],
            "must start with",
        ),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?} exits 2");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ------------------------------------------------------------------ against a modelled cluster

/// A `kn` that answers `kn revision describe NAME --namespace NS -o
/// jsonpath={.spec.containers[0].image}` from `$FAKE_KN_STATE/NS/NAME` (the
/// image), and "not found" as kn does (the Kubernetes status message, exit
/// 1), with a warning on stderr each time. With `$FAKE_KN_UPDATES` set, `kn service update ...` is appended to
/// that file (the test applies it to the model). Anything else is refused:
/// in --dry-run the script must ask nothing more.
const FAKE_KN: &str = r#"#!/bin/bash
if [[ -n "${FAKE_KN_UNREACHABLE:-}" ]]; then
  echo "Warning: kn is about to fail" >&2
  echo "Error: Get \"https://127.0.0.1:6443/apis/serving.knative.dev/v1\": dial tcp 127.0.0.1:6443: connect: connection refused" >&2
  exit 1
fi
if [[ -n "${FAKE_KN_UPDATES:-}" && "$1 $2" == "service update" ]]; then
  echo "kn $*" >> "$FAKE_KN_UPDATES"
  exit 0
fi
if ! [[ $# -eq 7 && "$1 $2" == "revision describe" && "$4" == "--namespace" && "$6" == "-o" && "$7" == "jsonpath={.spec.containers[0].image}" ]]; then
  echo "fake kn: not a query this fake answers: $*" >&2
  exit 64
fi
f="$FAKE_KN_STATE/$5/$3"
# kn may warn on stderr (client-go does); that is never the answer.
echo "Warning: this fake kn warns on stderr" >&2
if [[ -f "$f" ]]; then
  printf '%s' "$(cat "$f")"
  exit 0
fi
echo "Error: revisions.serving.knative.dev \"$3\" not found" >&2
echo "Run 'kn --help' for usage" >&2
exit 1
"#;

/// The script in --dry-run against `cluster`: the fake kn answers from its
/// revisions; returns the printed kn commands (or the failed output).
fn dry_run_against(cluster: &Cluster, args: &[&str]) -> Result<Vec<String>, Output> {
    with_fake_kn(cluster, |path, state| {
        let mut full = vec!["--dry-run"];
        full.extend_from_slice(args);
        run_with_env(&full, path, &[("FAKE_KN_STATE", state)])
    })
}

/// Runs `f` with a PATH whose `kn` answers from `cluster`; the output's
/// lines when it succeeded.
fn with_fake_kn(
    cluster: &Cluster,
    f: impl FnOnce(&str, &Path) -> Output,
) -> Result<Vec<String>, Output> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    let state = dir.path().join("state").join(&cluster.namespace);
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let kn = bin.join("kn");
    std::fs::write(&kn, FAKE_KN).unwrap();
    std::fs::set_permissions(&kn, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (rev, image) in &cluster.revisions {
        std::fs::write(state.join(rev), image).unwrap();
    }
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let out = f(&path, &dir.path().join("state"));
    if !out.status.success() {
        return Err(out);
    }
    Ok(stdout(&out).lines().map(str::to_owned).collect())
}

/// Runs `args` against `cluster` and applies every printed command to it,
/// failing with kn's or Serving's reason when one would be refused.
fn roll(cluster: &mut Cluster, args: &[&str]) -> Vec<String> {
    let lines = dry_run_against(cluster, args).unwrap_or_else(|o| {
        panic!(
            "rollout.sh {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    assert!(!lines.is_empty(), "{args:?} printed no kn command");
    for line in &lines {
        if let Err(why) = cluster.apply(line) {
            panic!("rollout.sh {args:?} printed a command the cluster refuses:\n  {line}\n  {why}");
        }
    }
    lines
}

/// The ingest-grpc Service as `kubectl apply -k OVERLAY` leaves it.
fn applied(overlay: &str, earlier: &[(&str, &str)]) -> Cluster {
    let kubectl = tools::find(&tools::KUBECTL).unwrap_or_else(|e| panic!("{e}"));
    let text = kustomize::render(&kubectl, &paths::knative_dir().join(overlay))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let docs = yaml::documents(&text).unwrap();
    let svc = docs
        .iter()
        .find(|d| yaml::type_of(d).1 == "Service" && yaml::name_of(d) == "ingest-grpc")
        .unwrap_or_else(|| panic!("{overlay} renders no Service ingest-grpc"));
    Cluster::applied(svc, earlier).unwrap_or_else(|e| panic!("{overlay}: {e:#}"))
}

const IMAGE_V2: &str = "dev.local/covid-realtime/ingest:0.2.0";

/// The image overlays/default runs as ingest-grpc-v1.
fn v1_image() -> String {
    applied("overlays/default", &[]).template.image
}

#[test]
fn canary_twice_is_accepted_by_kn_and_serving() {
    let mut cluster = applied("overlays/default", &[]);
    let first = roll(&mut cluster, &["canary", IMAGE_V2]);
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(cluster.image_of("ingest-grpc-v2"), Some(IMAGE_V2));
    let second = roll(&mut cluster, &["canary", IMAGE_V2]);
    assert_eq!(
        second.len(),
        1,
        "the second run only moves traffic: {second:?}"
    );
    assert!(!second[0].contains("--image"), "{second:?}");
    assert_eq!(cluster.split()["ingest-grpc-v2"], 10);
    assert_eq!(cluster.tagged("canary"), Some("ingest-grpc-v2"));
    // And the rest of the canary, each command twice.
    for args in [
        &["step", "50"][..],
        &["step", "50"],
        &["promote"],
        &["promote"],
        &["rollback", "canary"],
        &["rollback", "canary"],
    ] {
        roll(&mut cluster, args);
    }
    assert_eq!(cluster.split()["ingest-grpc-v1"], 100);
}

#[test]
fn canary_after_kubectl_apply_of_the_v2_overlay_only_moves_traffic() {
    let v1 = v1_image();
    let mut cluster = applied("overlays/ingest-grpc-v2", &[("ingest-grpc-v1", &v1)]);
    assert_eq!(
        cluster.template.name.as_deref(),
        Some("ingest-grpc-v2"),
        "the overlay names the template"
    );
    let lines = roll(&mut cluster, &["canary", IMAGE_V2]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(cluster.split()["ingest-grpc-v2"], 10);
    roll(&mut cluster, &["step", "50"]);
    assert_eq!(cluster.split()["ingest-grpc-v2"], 50);

    // Mid-rollout by kubectl (tags stable and canary from the overlay), then kn.
    let mut cluster = applied(
        "overlays/canary/10",
        &[("ingest-grpc-v1", &v1), ("ingest-grpc-v2", IMAGE_V2)],
    );
    roll(&mut cluster, &["canary", IMAGE_V2]);
    roll(&mut cluster, &["promote"]);
    assert_eq!(cluster.split()["ingest-grpc-v2"], 100);

    // Blue/green by kubectl, switched by kn, and the green step repeated.
    let mut cluster = applied(
        "overlays/bluegreen/green",
        &[("ingest-grpc-v1", &v1), ("ingest-grpc-v2", IMAGE_V2)],
    );
    roll(&mut cluster, &["blue-green", IMAGE_V2]);
    roll(&mut cluster, &["switch"]);
    roll(&mut cluster, &["switch"]);
    assert_eq!(cluster.split()["ingest-grpc-v2"], 100);
    assert_eq!(cluster.tagged("blue"), Some("ingest-grpc-v1"));
}

#[test]
fn the_old_create_step_is_what_serving_refuses() {
    // The model is not lenient: the create command run twice is refused by VerifyNameChange.
    let mut cluster = applied("overlays/default", &[]);
    let create = format!(
        "kn service update ingest-grpc --namespace covid-realtime --image {IMAGE_V2} --revision-name ingest-grpc-v2 --traffic ingest-grpc-v1=100"
    );
    cluster.apply(&create).unwrap();
    let why = cluster.apply(&create).unwrap_err();
    assert!(
        why.contains("Saw the following changes without a name change"),
        "{why}"
    );
}

#[test]
fn a_cluster_kn_cannot_reach_stops_the_script_with_kn_s_reason() {
    let cluster = applied("overlays/default", &[]);
    let out = with_fake_kn(&cluster, |path, state| {
        run_with_env(
            &["--dry-run", "canary", IMAGE_V2],
            path,
            &[
                ("FAKE_KN_STATE", state),
                ("FAKE_KN_UNREACHABLE", Path::new("1")),
            ],
        )
    })
    .expect_err("kn failed");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot tell whether revision ingest-grpc-v2 exists")
            && err.contains("connection refused"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "no kn command printed: {}",
        stdout(&out)
    );
}

#[test]
fn an_existing_revision_with_another_image_is_refused_with_a_reason() {
    let mut cluster = applied("overlays/default", &[]);
    roll(&mut cluster, &["canary", IMAGE_V2]);
    let out = dry_run_against(
        &cluster,
        &["canary", "dev.local/covid-realtime/ingest:0.3.0"],
    )
    .expect_err("another image under the same revision name");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exists with image dev.local/covid-realtime/ingest:0.2.0")
            && err.contains("--to"),
        "{err}"
    );
}

/// The `rollout` command (knative/src/rollout) on the same modelled clusters.
mod command;
