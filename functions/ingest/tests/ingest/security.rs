//! Who may post, from where, how often and how slowly; retried requests
//! with an `Idempotency-Key`; and secrets kept out of logs. Against real
//! receivers (an HTTP sink) and real Redis (for the keys).

use crate::helpers;

use std::time::Duration;

use axum::http::StatusCode;
use helpers::*;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "ingest-token-for-tests-0123456789";
const INTERNAL: &str = "internal-token-for-tests-0123456789";
const JWT_SECRET: &str = "jwt-hs256-secret-for-tests-0123456789";

async fn json(resp: reqwest::Response) -> Value {
    resp.json().await.expect("a JSON body")
}

fn cases_url(app: &TestApp) -> String {
    format!("{}/cases", app.url)
}

async fn post_with(app: &TestApp, headers: &[(&str, &str)], body: &str) -> reqwest::Response {
    let mut rb = app
        .client
        .post(cases_url(app))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.expect("ingest answers")
}

fn jwt(claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn in_a_minute() -> u64 {
    jsonwebtoken::get_current_timestamp() + 60
}

#[tokio::test]
async fn posting_needs_the_ingest_token_when_it_is_set() {
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    let app = spawn_ingest(&[
        ("K_SINK", &sink.url),
        ("INGEST_TOKEN", TOKEN),
        ("INTERNAL_TOKEN", INTERNAL),
    ])
    .await;
    let resp = app.post_json(&case_json("A", 1)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Bearer realm="covid-realtime""#
    );
    assert!(
        json(resp).await["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    for bad in [
        "Bearer nope-nope-nope-nope-nope",
        &format!("Bearer {INTERNAL}"),
        &format!("Basic {TOKEN}"),
    ] {
        let resp = post_with(&app, &[("authorization", bad)], &case_json("A", 1)).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{bad}");
    }
    assert!(sink.events().is_empty(), "nothing refused was forwarded");
    let resp = post_with(
        &app,
        &[("authorization", &format!("Bearer {TOKEN}"))],
        &case_json("A", 1),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(sink.events().len(), 1);
    // Reads stay public.
    let health = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn jwts_are_checked_when_configured() {
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    let app = spawn_ingest(&[
        ("K_SINK", &sink.url),
        ("JWT_HS256_SECRET", JWT_SECRET),
        ("JWT_ISSUER", "https://auth.example.org"),
        ("JWT_AUDIENCE", "covid-ingest"),
        ("JWT_REQUIRED_SCOPE", "cases:write"),
    ])
    .await;
    let good = json!({"iss": "https://auth.example.org", "aud": "covid-ingest", "scope": "cases:write", "exp": in_a_minute()});
    let resp = post_with(
        &app,
        &[("authorization", &format!("Bearer {}", jwt(good.clone())))],
        &case_json("A", 1),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let mut read_only = good.clone();
    read_only["scope"] = json!("cases:read");
    let resp = post_with(
        &app,
        &[("authorization", &format!("Bearer {}", jwt(read_only)))],
        &case_json("A", 1),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    let mut expired = good.clone();
    expired["exp"] = json!(jsonwebtoken::get_current_timestamp() - 3600);
    let resp = post_with(
        &app,
        &[("authorization", &format!("Bearer {}", jwt(expired)))],
        &case_json("A", 1),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        json(resp).await["error"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    let mut other_audience = good;
    other_audience["aud"] = json!("dashboard");
    let resp = post_with(
        &app,
        &[("authorization", &format!("Bearer {}", jwt(other_audience)))],
        &case_json("A", 1),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        sink.events().len(),
        1,
        "only the valid token's case went on"
    );
}

#[tokio::test]
async fn browsers_cannot_post_cross_origin_unless_cors_origin_allows_it() {
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    let closed = spawn_ingest(&[("K_SINK", &sink.url)]).await;
    let preflight = |app: &TestApp, origin: &str| {
        app.client
            .request(reqwest::Method::OPTIONS, cases_url(app))
            .header("origin", origin.to_owned())
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization,idempotency-key",
            )
            .send()
    };
    let resp = preflight(&closed, "https://evil.example").await.unwrap();
    assert!(
        !resp.headers().contains_key("access-control-allow-origin"),
        "no CORS without CORS_ORIGIN"
    );
    // A "simple" cross-origin request needs no preflight; it is refused anyway.
    for ct in ["application/json", "text/plain"] {
        let resp = closed
            .client
            .post(cases_url(&closed))
            .header("origin", "https://evil.example")
            .header("content-type", ct)
            .body(case_json("A", 1))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{ct}");
        assert_eq!(json(resp).await["field"], "Origin");
    }
    assert!(sink.events().is_empty());

    let open = spawn_ingest(&[
        ("K_SINK", &sink.url),
        ("CORS_ORIGIN", "https://lab.example.org"),
    ])
    .await;
    let resp = preflight(&open, "https://lab.example.org").await.unwrap();
    assert!(resp.status().is_success());
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://lab.example.org"
    );
    let allowed = resp.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("idempotency-key"),
        "{allowed}"
    );
    let resp = open
        .client
        .post(cases_url(&open))
        .header("origin", "https://lab.example.org")
        .header("content-type", "application/json")
        .body(case_json("A", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://lab.example.org"
    );
    // CORS names the one allowed origin; a browser on another origin blocks the call.
    let resp = preflight(&open, "https://evil.example").await.unwrap();
    assert_eq!(
        resp.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://lab.example.org")
    );
    let resp = open
        .client
        .post(cases_url(&open))
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .body(case_json("A", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(sink.events().len(), 1);
    // Clients that are not browsers send no Origin and are not affected.
    assert_eq!(
        open.post_json(&case_json("B", 2)).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    // One request per 100 s after a burst of 2: the third request is over
    // the rate however slowly this test runs.
    let app = spawn_ingest(&[
        ("K_SINK", &sink.url),
        ("RATE_LIMIT_RPS", "0.01"),
        ("RATE_LIMIT_BURST", "2"),
        ("INGEST_TOKEN", TOKEN),
    ])
    .await;
    let auth = format!("Bearer {TOKEN}");
    for _ in 0..2 {
        assert_eq!(
            post_with(&app, &[("authorization", &auth)], &case_json("A", 1))
                .await
                .status(),
            StatusCode::ACCEPTED
        );
    }
    let resp = post_with(&app, &[("authorization", &auth)], &case_json("A", 1)).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=100).contains(&retry), "{retry}");
    assert!(
        json(resp).await["error"]
            .as_str()
            .unwrap()
            .contains("too many requests")
    );
    // The limit runs before the credential check: guessing tokens is limited too.
    assert_eq!(
        app.post_json(&case_json("A", 1)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(sink.events().len(), 2);
    // Health checks are not limited.
    assert_eq!(
        app.client
            .get(format!("{}/healthz", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// A slowloris-style body: headers promptly, then a byte every 100 ms.
#[tokio::test]
async fn a_body_dribbled_slower_than_the_request_timeout_gets_408() {
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    let app = spawn_ingest(&[("K_SINK", &sink.url), ("REQUEST_TIMEOUT_MS", "500")]).await;
    let addr = app.url.trim_start_matches("http://").to_owned();
    let body = case_json("Slow", 30);
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /cases HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let dribble = async {
        for b in body.bytes() {
            if writer.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::future::pending::<()>().await
    };
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    tokio::select! {
        _ = read => {}
        _ = dribble => {}
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        sink.events().is_empty(),
        "nothing of a timed-out request is forwarded"
    );
}

#[tokio::test]
async fn an_idempotency_key_gives_a_retry_the_same_ids() {
    let servers = stack::testing::servers();
    let prefix = format!("{}:", stack::testing::unique("idem"));
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    let app = spawn_ingest(&[
        ("K_SINK", &sink.url),
        ("REDIS_URL", &servers.redis_url),
        ("REDIS_KEY_PREFIX", &prefix),
    ])
    .await;
    let batch = format!(
        "[{},{},{}]",
        case_json("A", 1),
        case_json("B", 2),
        case_json("C", 3)
    );
    let key = "0197f1c2-client-retry-1";
    let first = json(post_with(&app, &[("idempotency-key", key)], &batch).await).await;
    let before = events::Reported::new_id();
    // The retry comes later, as NDJSON, and still gets the same ids.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let nd = format!(
        "{}\n{}\n{}\n",
        case_json("A", 1),
        case_json("B", 2),
        case_json("C", 3)
    );
    let resp = app
        .client
        .post(cases_url(&app))
        .header("content-type", "application/x-ndjson")
        .header("idempotency-key", key)
        .body(nd)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let second = json(resp).await;
    assert_eq!(first, second, "same response, same ids");
    let ids: Vec<&str> = first["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(
        ids.iter().all(|id| id.as_bytes()[14] == b'7'),
        "UUIDv7 ids: {ids:?}"
    );
    assert!(
        ids.iter().all(|id| *id < before.as_str()),
        "ids carry the first attempt's time"
    );
    // Both attempts were forwarded (at-least-once); storage dedupes on the id.
    let forwarded: Vec<String> = sink
        .events()
        .iter()
        .map(|e| events::cloudevents::AttributesReader::id(e).to_owned())
        .collect();
    assert_eq!(forwarded.len(), 6);
    assert_eq!(
        forwarded
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        3
    );
    // Another key, other ids; no key, new ids every time.
    let other = json(post_with(&app, &[("idempotency-key", "another-key")], &batch).await).await;
    assert_ne!(other["ids"], first["ids"]);
    let a = json(app.post_json(&batch).await).await;
    let b = json(app.post_json(&batch).await).await;
    assert_ne!(a["ids"], b["ids"]);
}

#[tokio::test]
async fn a_key_reused_for_other_cases_or_malformed_is_refused() {
    let servers = stack::testing::servers();
    let prefix = format!("{}:", stack::testing::unique("idem"));
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    let app = spawn_ingest(&[
        ("K_SINK", &sink.url),
        ("REDIS_URL", &servers.redis_url),
        ("REDIS_KEY_PREFIX", &prefix),
    ])
    .await;
    assert_eq!(
        post_with(&app, &[("idempotency-key", "k-1")], &case_json("A", 1))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let resp = post_with(&app, &[("idempotency-key", "k-1")], &case_json("A", 2)).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v = json(resp).await;
    assert_eq!(v["field"], "Idempotency-Key");
    assert!(
        v["error"].as_str().unwrap().contains("different cases"),
        "{v}"
    );
    let long = "k".repeat(129);
    for bad in ["", "has space", long.as_str()] {
        let resp = post_with(&app, &[("idempotency-key", bad)], &case_json("A", 1)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(json(resp).await["field"], "Idempotency-Key");
    }
    assert_eq!(sink.events().len(), 1, "only the first request went on");
}

#[tokio::test]
async fn keyed_requests_need_redis_and_say_so() {
    let closed = stack::free_port().unwrap();
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    let app = spawn_ingest(&[
        ("K_SINK", &sink.url),
        ("REDIS_URL", &format!("redis://127.0.0.1:{closed}/")),
    ])
    .await;
    let resp = post_with(&app, &[("idempotency-key", "k-1")], &case_json("A", 1)).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(
        json(resp).await["error"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key store")
    );
    assert!(sink.events().is_empty());
    // Requests without a key do not need Redis.
    assert_eq!(
        app.post_json(&case_json("A", 1)).await.status(),
        StatusCode::ACCEPTED
    );
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the ingest binary with `env` until it logs `until` (or exits), and
/// returns everything it logged and whether it is still running.
fn run_binary(env: &[(&str, &str)], until: &str) -> (String, Option<i32>) {
    use std::io::{BufRead, BufReader};
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ingest"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "debug");
    cmd.envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = Child(cmd.spawn().expect("the ingest binary starts"));
    let stdout = child.0.stdout.take().unwrap();
    let mut logged = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        logged.push_str(&line);
        logged.push('\n');
        if line.contains(until) {
            return (logged, None);
        }
    }
    let status = child.0.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (logged + &stderr, status.code())
}

#[test]
fn secrets_never_reach_the_start_up_logs() {
    let port = stack::free_port().unwrap().to_string();
    let env = [
        ("PORT", port.as_str()),
        ("HOST", "127.0.0.1"),
        ("INGEST_ROUTE", "grpc"),
        ("INGEST_TOKEN", TOKEN),
        ("INTERNAL_TOKEN", INTERNAL),
        ("JWT_HS256_SECRET", JWT_SECRET),
    ];
    let (logs, exited) = run_binary(&env, "\"listening\"");
    assert_eq!(exited, None, "ingest started: {logs}");
    assert!(
        logs.contains("write routes need INGEST_TOKEN or a JWT (HS256)"),
        "{logs}"
    );
    for secret in [TOKEN, INTERNAL, JWT_SECRET] {
        assert!(!logs.contains(secret), "a secret is in the logs:\n{logs}");
    }
    // The configs a function holds print without them too.
    let lookup = |k: &str| {
        env.iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.to_string())
    };
    let (runtime_config, ingest_config) =
        runtime::settings::read::<ingest::Function>(&lookup).unwrap();
    let debug = format!("{runtime_config:?} {ingest_config:?}");
    for secret in [TOKEN, INTERNAL, JWT_SECRET] {
        assert!(
            !debug.contains(secret),
            "a secret is in a Debug output: {debug}"
        );
    }
}

#[test]
fn without_credentials_ingest_says_once_that_auth_is_off() {
    let port = stack::free_port().unwrap().to_string();
    let (logs, exited) = run_binary(
        &[
            ("PORT", &port),
            ("HOST", "127.0.0.1"),
            ("INGEST_ROUTE", "grpc"),
        ],
        "\"listening\"",
    );
    assert_eq!(exited, None, "ingest started: {logs}");
    assert_eq!(logs.matches("auth is off").count(), 1, "{logs}");
    assert!(
        logs.contains("set INGEST_TOKEN, JWT_HS256_SECRET or JWT_RS256_PUBLIC_KEY"),
        "{logs}"
    );
}

#[test]
fn a_bad_token_setting_stops_start_up_without_echoing_it() {
    let (logs, exited) = run_binary(
        &[
            ("INGEST_ROUTE", "grpc"),
            ("INGEST_TOKEN", "tooshort-secret"),
        ],
        "\"listening\"",
    );
    assert!(
        exited.is_some_and(|code| code != 0),
        "bad configuration stops ingest: {logs}"
    );
    assert!(
        logs.contains("INGEST_TOKEN") && logs.contains("at least 16"),
        "{logs}"
    );
    assert!(!logs.contains("tooshort-secret"), "{logs}");
}
