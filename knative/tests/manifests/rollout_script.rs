//! knative/rollout.sh: shellcheck-clean, --help, and a dry run of every
//! command printing kn commands whose traffic adds up and whose tags match
//! the rollout overlays.

use std::process::{Command, Output};

use knative_manifests::{paths, tools};

fn script() -> std::path::PathBuf {
    paths::knative_dir().join("rollout.sh")
}

fn run(args: &[&str]) -> Output {
    run_with_path(args, "/usr/bin:/bin")
}

fn run_with_path(args: &[&str], path: &str) -> Output {
    let bash = tools::find(&tools::BASH).unwrap_or_else(|e| panic!("{e}"));
    Command::new(bash)
        .arg(script())
        .args(args)
        .env("PATH", path)
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
        "step PERCENT",
        "promote",
        "blue-green IMAGE",
        "switch",
        "rollback canary",
        "rollback blue-green",
        "--dry-run",
        "loadtest",
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
