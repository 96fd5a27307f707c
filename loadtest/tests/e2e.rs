//! The real `loadtest` binary against in-test servers that count what they
//! receive: what is sent, received and reported must agree exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// Every `REV_B_EVERY`th request is served by "rev-b", the others by "rev-a".
const REV_B_EVERY: u64 = 10;

/// What a test server saw, and how it behaves.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    cases: AtomicU64,
    accepted: AtomicU64,
    rev_b: AtomicU64,
    failed: AtomicU64,
    hosts: Mutex<BTreeSet<String>>,
    authorizations: Mutex<BTreeSet<String>>,
    content_types: Mutex<BTreeSet<String>>,
    /// Answer 503 to every Nth request.
    fail_every: Option<u64>,
    /// Hold the first request this long.
    stall_first: Option<Duration>,
}

async fn cases(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> Response {
    let n = seen.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if let (1, Some(stall)) = (n, seen.stall_first) {
        tokio::time::sleep(stall).await;
    }
    let header = |name| {
        headers
            .get(name)
            .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    seen.hosts.lock().unwrap().extend(header(header::HOST));
    seen.authorizations
        .lock()
        .unwrap()
        .extend(header(header::AUTHORIZATION));
    let content_type = header(header::CONTENT_TYPE).unwrap_or_default();
    seen.content_types
        .lock()
        .unwrap()
        .insert(content_type.clone());
    let parsed = if content_type == "application/x-ndjson" {
        events::parse_ndjson_body(&body)
    } else {
        events::parse_json_body(&body)
    };
    let count = parsed.expect("loadtest sends valid cases").len() as u64;
    seen.cases.fetch_add(count, Ordering::SeqCst);
    let revision = if n % REV_B_EVERY == 0 {
        seen.rev_b.fetch_add(1, Ordering::SeqCst);
        "rev-b"
    } else {
        "rev-a"
    };
    let rev = [(events::REVISION_HEADER, revision)];
    if seen.fail_every.is_some_and(|k| n % k == 0) {
        seen.failed.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            rev,
            r#"{"error":"try again"}"#,
        )
            .into_response();
    }
    seen.accepted.fetch_add(count, Ordering::SeqCst);
    let ids: Vec<String> = (0..count).map(|i| format!("{n}-{i}")).collect();
    let body = axum::Json(json!({"accepted": count, "ids": ids}));
    (StatusCode::ACCEPTED, rev, body).into_response()
}

/// Starts a counting server on 127.0.0.1:0; returns its base URL.
async fn serve(seen: Seen) -> (String, Arc<Seen>) {
    let seen = Arc::new(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/cases", post(cases))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

async fn server() -> (String, Arc<Seen>) {
    serve(Seen::default()).await
}

/// Runs the binary with a command line split on spaces (test paths have none).
async fn loadtest(command_line: &str) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(command_line.split_whitespace())
        .env_remove("LOADTEST_TOKEN")
        .output()
        .await
        .expect("the loadtest binary runs")
}

fn read_report(path: &Path) -> Value {
    let bytes = std::fs::read(path).expect("the report was written");
    serde_json::from_slice(&bytes).expect("the report is JSON")
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn revisions(summary: &Value) -> BTreeMap<String, u64> {
    let shares = summary["revisions"].as_array().unwrap().iter();
    shares
        .map(|r| {
            (
                r["revision"].as_str().unwrap().to_owned(),
                n(&r["responses"]),
            )
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_received_and_reported_agree() {
    let (url, seen) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let (report, csv) = (dir.path().join("r.json"), dir.path().join("run"));
    let out = loadtest(&format!(
        "--users 8 --spawn-rate 100 --requests 500 --batch 3 --target local={url} --quiet \
         --report {} --csv {} --fail-if errors>0 --fail-if p99>1h",
        report.display(),
        csv.display()
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));

    let r = read_report(&report);
    let total = &r["total"];
    assert_eq!(seen.requests.load(Ordering::SeqCst), 500);
    assert_eq!(n(&total["requests"]), 500);
    assert_eq!(seen.cases.load(Ordering::SeqCst), 1500);
    assert_eq!(n(&total["cases_sent"]), 1500);
    assert_eq!(n(&total["cases_accepted"]), 1500);
    assert_eq!(n(&total["errors"]), 0);
    assert_eq!(total["status"], json!({"202": 500}));
    let served = BTreeMap::from([("rev-a".into(), 450), ("rev-b".into(), 50)]);
    assert_eq!(revisions(total), served);
    assert_eq!(seen.rev_b.load(Ordering::SeqCst), 50);
    assert_eq!(total["revisions"][1]["share"], 0.1);
    assert_eq!(r["targets"][0]["name"], "local");
    assert_eq!(r["targets"][0]["requests"], total["requests"]);
    let model = json!({"kind": "closed", "users": 8, "spawn_rate": 100.0});
    assert_eq!(r["model"], model);
    assert_eq!(r["passed"], true);
    assert_eq!(r["thresholds"].as_array().unwrap().len(), 2);
    assert!(n(&total["latency_us"]["p50"]) <= n(&total["latency_us"]["max"]));
    assert_eq!(
        *seen.content_types.lock().unwrap(),
        set(&["application/json"])
    );

    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("rev-b") && table.contains("HTTP 202"),
        "{table}"
    );

    let mut rows = csv::Reader::from_path(dir.path().join("run_stats.csv")).unwrap();
    assert_eq!(rows.headers().unwrap().len(), 22);
    assert_eq!(&rows.headers().unwrap()[10], "Failures/s");
    let rows: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (&rows[0][0], &rows[0][1], &rows[0][2]),
        ("POST", "local", "500")
    );
    assert_eq!(
        (&rows[1][1], &rows[1][2], &rows[1][3]),
        ("Aggregated", "500", "0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_broken_down_and_thresholds_set_the_exit_code() {
    let (url, seen) = serve(Seen {
        fail_every: Some(4),
        ..Seen::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let run = |fail_if: &str| {
        let line = format!(
            "--users 5 --requests 200 -q --target local={url} --report {} --fail-if {fail_if}",
            report.display()
        );
        async move { loadtest(&line).await }
    };

    let out = run("errors>10%").await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("FAILED: errors>10% (measured 25.000%)"),
        "{}",
        stderr(&out)
    );
    let r = read_report(&report);
    assert_eq!(r["passed"], false);
    assert_eq!(r["thresholds"][0]["failed"], true);
    assert_eq!(r["total"]["status"], json!({"202": 150, "503": 50}));
    assert_eq!(n(&r["total"]["errors"]), 50);
    assert_eq!(n(&r["total"]["cases_sent"]), 200);
    assert_eq!(n(&r["total"]["cases_accepted"]), 150);
    assert_eq!(seen.failed.load(Ordering::SeqCst), 50);

    let out = run("errors>30%").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("passed: errors>30%"),
        "{}",
        stderr(&out)
    );

    // No machine sends a billion requests a second: this always fails.
    let out = run("rps<1000000000").await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(seen.requests.load(Ordering::SeqCst), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_targets_with_host_headers_and_a_token() {
    let (grpc_url, grpc) = server().await;
    let (redis_url, redis) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let out = loadtest(&format!(
        "--users 4 --duration 500ms -q --target grpc={grpc_url} --target redis={redis_url} \
         --host-header grpc=ingest-grpc.example.com --token s3cret --report {}",
        report.display()
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));

    assert_eq!(
        *grpc.hosts.lock().unwrap(),
        set(&["ingest-grpc.example.com"])
    );
    let redis_host = redis_url.trim_start_matches("http://");
    assert_eq!(*redis.hosts.lock().unwrap(), set(&[redis_host]));
    for seen in [&grpc, &redis] {
        assert_eq!(
            *seen.authorizations.lock().unwrap(),
            set(&["Bearer s3cret"])
        );
    }

    let r = read_report(&report);
    let (g, rd) = (&r["targets"][0], &r["targets"][1]);
    assert_eq!(g["name"], "grpc");
    assert_eq!(g["host"], "ingest-grpc.example.com");
    assert_eq!(n(&g["requests"]), grpc.requests.load(Ordering::SeqCst));
    assert_eq!(n(&rd["requests"]), redis.requests.load(Ordering::SeqCst));
    assert!(
        n(&g["requests"]) > 0 && n(&rd["requests"]) > 0,
        "both targets get users"
    );
    assert_eq!(
        n(&r["total"]["requests"]),
        n(&g["requests"]) + n(&rd["requests"])
    );
    assert_eq!(n(&g["cases_accepted"]), grpc.cases.load(Ordering::SeqCst));
    assert_eq!(revisions(g)["rev-b"], grpc.rev_b.load(Ordering::SeqCst));
    assert_eq!(revisions(rd)["rev-b"], redis.rev_b.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_model_sends_every_arrival() {
    let (url, seen) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let out = loadtest(&format!(
        "--rate 400 --duration 500ms --max-in-flight 16 --batch 2 --ndjson -q \
         --target local={url} --report {}",
        report.display()
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r = read_report(&report);
    // 400/s for 0.5s: arrivals at 0, 2.5ms, ..., 497.5ms.
    assert_eq!(n(&r["total"]["requests"]), 200);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 200);
    assert_eq!(seen.cases.load(Ordering::SeqCst), 400);
    assert_eq!(n(&r["total"]["cases_accepted"]), 400);
    assert_eq!(
        r["model"],
        json!({"kind": "open", "rate": 400.0, "max_in_flight": 16})
    );
    assert_eq!(r["content_type"], "application/x-ndjson");
    assert_eq!(
        *seen.content_types.lock().unwrap(),
        set(&["application/x-ndjson"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_model_latency_includes_the_wait_behind_a_stall() {
    // The first request is held 300ms; with one request in flight, the
    // arrivals due at 0, 10, ... 200ms cannot complete before 300ms, so 21
    // of the 100 latencies are at least 100ms when measured from the
    // intended time, and p80 is one of them (measured from the send, only
    // the first would be).
    let stall = Some(Duration::from_millis(300));
    let (url, seen) = serve(Seen {
        stall_first: stall,
        ..Seen::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let out = loadtest(&format!(
        "--rate 100 --requests 100 --max-in-flight 1 -q --target l={url} --report {} \
         --fail-if p80<100ms",
        report.display()
    ))
    .await;
    assert!(
        out.status.success(),
        "p80 must include the stall: {}",
        stderr(&out)
    );
    let r = read_report(&report);
    assert_eq!(n(&r["total"]["requests"]), 100);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 100);
    assert!(r["thresholds"][0]["observed"].as_f64().unwrap() >= 100_000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_not_yet_spawned_do_not_prolong_the_run() {
    let (url, seen) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    // At 1 user/s, user 49 would start after 49s: both ends must come first.
    for end in ["--duration 1s", "--requests 30"] {
        let out = loadtest(&format!(
            "--users 50 --spawn-rate 1 {end} -q --target l={url} --report {}",
            report.display()
        ))
        .await;
        assert!(out.status.success(), "{}", stderr(&out));
        let secs = read_report(&report)["duration_s"].as_f64().unwrap();
        assert!(
            secs < 20.0,
            "{end}: the run waited for users that could not send ({secs}s)"
        );
    }
    assert!(seen.requests.load(Ordering::SeqCst) >= 30);
}

#[tokio::test]
async fn refused_connections_are_transport_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let target = format!("down=http://127.0.0.1:{port}");
    let out = loadtest(&format!(
        "--users 2 --requests 20 -q --target {target} --report {}",
        report.display()
    ))
    .await;
    assert!(
        out.status.success(),
        "no threshold, no failure: {}",
        stderr(&out)
    );
    let total = &read_report(&report)["total"];
    assert_eq!(total["transport_errors"], json!({"connect_refused": 20}));
    assert_eq!(n(&total["requests"]), 20);
    assert_eq!(n(&total["errors"]), 20);
    assert_eq!(n(&total["responses"]), 0);

    let out = loadtest(&format!(
        "--requests 5 -q --target {target} --fail-if errors>0"
    ))
    .await;
    assert_eq!(out.status.code(), Some(3));
}

#[tokio::test]
async fn bad_flags_explain_themselves() {
    let out = loadtest("--target http://127.0.0.1:8081").await;
    assert_eq!(out.status.code(), Some(2));
    let want = "NAME=VALUE, e.g. --target grpc=http://127.0.0.1:8081";
    assert!(stderr(&out).contains(want), "{}", stderr(&out));

    let out = loadtest("--target a=http://127.0.0.1:1 --host-header b=x.example.com").await;
    assert_eq!(out.status.code(), Some(1));
    let want = "names no target; the targets are: a";
    assert!(stderr(&out).contains(want), "{}", stderr(&out));

    let out = loadtest("--target a=http://127.0.0.1:1 --fail-if p99>50").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("add a unit"), "{}", stderr(&out));

    let out = loadtest("--help").await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--fail-if"));
}

#[tokio::test]
async fn gen_writes_valid_reproducible_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    for path in [&a, &b] {
        let out = loadtest(&format!(
            "gen --count 300 --seed 9 --out {}",
            path.display()
        ))
        .await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let text = std::fs::read(&a).unwrap();
    assert_eq!(text, std::fs::read(&b).unwrap(), "same seed, same file");
    assert_eq!(events::parse_json_body(&text).unwrap().len(), 300);

    // The file is usable as --file.
    let (url, seen) = server().await;
    let out = loadtest(&format!(
        "--file {} --requests 10 -q --target l={url}",
        a.display()
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(seen.requests.load(Ordering::SeqCst), 10);
}

#[test]
fn committed_traffic_json_is_valid_cases() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("traffic.json");
    let text = std::fs::read(path).unwrap();
    let cases =
        events::parse_json_body(&text).expect("every entry of traffic.json is an events::Case");
    assert!(cases.len() >= 150, "{}", cases.len());
}

#[test]
fn locust_file_is_valid_python() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("traffic.py");
    let source = std::fs::read_to_string(&file).unwrap();
    assert!(source.contains("FastHttpUser") && source.contains("traffic.json"));
    let check = "import ast, sys; ast.parse(open(sys.argv[1]).read())";
    match std::process::Command::new("python3")
        .args(["-c", check])
        .arg(&file)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("python3 is not installed ({e}): checked traffic.py's content only"),
    }
}
