//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! same checks the cargo-fuzz targets run (`events::fuzz`), so every seed and
//! every crash input committed after a fix is exercised by `cargo test`,
//! with no nightly compiler. Longer runs: `fuzz/run.sh` (see the README).

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {} cannot be read: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "the corpus {} has only {} inputs",
        dir.display(),
        files.len()
    );
    files
}

/// Runs `check` on every input of `target`, naming the input that fails.
/// Runs on a thread with the stack size of a tokio worker (2 MiB), so deep
/// nesting that would overflow a function's stack overflows here too.
fn replay(target: &str, check: fn(&[u8])) {
    for file in corpus(target) {
        let data = std::fs::read(&file).unwrap();
        let name = file.display().to_string();
        let result = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || check(&data))
            .unwrap()
            .join();
        assert!(
            result.is_ok(),
            "{target}: {name} broke an invariant (see the panic above)"
        );
    }
}

#[test]
fn case_bodies() {
    replay("case_body", events::fuzz::case_body);
}

#[test]
fn cloudevents_over_http() {
    replay("http_event", events::fuzz::http_event);
}

#[test]
fn cloudevents_from_redis() {
    replay("redis_event", events::fuzz::redis_event);
}

#[test]
fn cloudevents_over_protobuf() {
    replay("proto_event", events::fuzz::proto_event);
}
