//! What ingest answers at the edge of its promises: keys scoped by
//! credential, the rate limit per client behind trusted proxies, `/readyz`
//! without internal error text, malformed JSON located by line and column,
//! and a `413` that reaches a client which sends its whole body first.
//! Against a real HTTP sink and real Redis.

use crate::helpers;

use std::io::{Read, Write};
use std::time::Duration;

use axum::http::StatusCode;
use helpers::*;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

const JWT_SECRET: &str = "jwt-hs256-secret-for-edge-tests-0123456789";

async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.expect("a JSON body")
}

async fn post(app: &TestApp, headers: &[(&str, &str)], body: &str) -> reqwest::Response {
    let mut rb = app
        .client
        .post(format!("{}/cases", app.url))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.expect("ingest answers")
}

fn bearer_jwt(sub: &str) -> String {
    let claims = json!({"sub": sub, "exp": jsonwebtoken::get_current_timestamp() + 60});
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    format!("Bearer {token}")
}

#[tokio::test]
async fn one_client_cannot_preclaim_another_clients_idempotency_key() {
    let servers = stack::testing::servers();
    let prefix = format!("{}:", stack::testing::unique("idem_scope"));
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    let app = spawn_ingest(&[
        ("K_SINK", &sink.url),
        ("REDIS_URL", &servers.redis_url),
        ("REDIS_KEY_PREFIX", &prefix),
        ("JWT_HS256_SECRET", JWT_SECRET),
    ])
    .await;
    let key = "order-42";
    let (alice, mallory) = (bearer_jwt("alice"), bearer_jwt("mallory"));
    // Mallory uses Alice's key first, for other cases.
    let squatted = post(
        &app,
        &[("authorization", &mallory), ("idempotency-key", key)],
        &case_json("Squat", 1),
    )
    .await;
    assert_eq!(squatted.status(), StatusCode::ACCEPTED);
    let squatted = json_of(squatted).await;
    let first = post(
        &app,
        &[("authorization", &alice), ("idempotency-key", key)],
        &case_json("Alice", 30),
    )
    .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED, "Alice's key is hers");
    let first = json_of(first).await;
    assert_ne!(first["ids"], squatted["ids"]);
    // Alice's retry (a refreshed token, same subject) gets her ids.
    let retry = post(
        &app,
        &[
            ("authorization", &bearer_jwt("alice")),
            ("idempotency-key", key),
        ],
        &case_json("Alice", 30),
    )
    .await;
    assert_eq!(json_of(retry).await["ids"], first["ids"]);
    let ids: std::collections::HashSet<String> = sink
        .events()
        .iter()
        .map(|e| events::cloudevents::AttributesReader::id(e).to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "two cases, one of them sent twice");
}

#[tokio::test]
async fn behind_trusted_proxies_the_rate_limit_is_per_forwarded_client() {
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    // One proxy in front (queue-proxy): it appends the address it saw.
    let app = spawn_ingest(&[
        ("K_SINK", &sink.url),
        ("RATE_LIMIT_RPS", "0.01"),
        ("RATE_LIMIT_BURST", "1"),
        ("RATE_LIMIT_TRUSTED_HOPS", "1"),
    ])
    .await;
    let from = |client: &'static str| [("x-forwarded-for", client)];
    let status = |r: reqwest::Response| r.status();
    assert_eq!(
        status(post(&app, &from("203.0.113.1"), &case_json("A", 1)).await),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        status(post(&app, &from("203.0.113.1"), &case_json("A", 1)).await),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status(post(&app, &from("203.0.113.2"), &case_json("B", 1)).await),
        StatusCode::ACCEPTED,
        "another client behind the same proxy has its own bucket"
    );
    // What the client itself put in front of the proxy's entry is ignored.
    assert_eq!(
        status(post(&app, &from("198.51.100.7, 203.0.113.1"), &case_json("A", 1)).await),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn readyz_names_the_failing_dependency_without_its_error_text() {
    let closed = format!("http://127.0.0.1:{}", stack::free_port().unwrap());
    let app = spawn_ingest(&[("INGEST_ROUTE", "grpc"), ("GRPC_WRITER_URL", &closed)]).await;
    let resp = app
        .client
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json_of(resp).await;
    assert_eq!(
        body,
        json!({"status": "not ready", "failing": ["next hop"]})
    );
}

#[tokio::test]
async fn malformed_json_is_located_by_line_and_column_not_a_bogus_field() {
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    let app = spawn_ingest(&[("K_SINK", &sink.url)]).await;
    // traffic.json's example as people paste it: the commas are missing.
    let body = "[\n  {\n    \"name\": \"Francisco Arévalo Sánchez\"\n    \"location\": \"Guatemala\"\n  }\n]\n";
    let resp = post(&app, &[], body).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let e = json_of(resp).await;
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(4), Some(5)),
        "{e}"
    );
    assert!(e.get("field").is_none() && e.get("index").is_none(), "{e}");
    let msg = e["error"].as_str().unwrap();
    assert!(msg.contains("line 4 column 5"), "{msg}");
    assert!(sink.events().is_empty());
}

/// Sends a whole oversized body before reading, as Python's `urllib` does,
/// and returns the status line (or why there is none).
fn post_all_then_read(addr: &str, body_len: usize) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /cases HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n"
    );
    s.write_all(head.as_bytes())
        .map_err(|e| format!("sending the head failed: {e}"))?;
    // In pieces, as a client on a real network does: the body is still
    // arriving when ingest has already decided on 413.
    let piece = vec![b' '; 64 << 10];
    for _ in 0..body_len / piece.len() {
        s.write_all(&piece)
            .map_err(|e| format!("sending the body failed: {e}"))?;
        std::thread::sleep(Duration::from_millis(2));
    }
    // The status line is enough (a drained connection may stay open).
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut chunk) {
            Ok(0) => return Err(format!("closed after {} bytes", answer.len())),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the answer failed: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or("").to_owned())
}

#[tokio::test]
async fn an_oversized_body_sent_whole_before_reading_still_gets_its_413() {
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    let app = spawn_ingest(&[("K_SINK", &sink.url), ("MAX_BODY_BYTES", "65536")]).await;
    let addr = app.url.trim_start_matches("http://").to_owned();
    for attempt in 0..3 {
        let addr = addr.clone();
        let status = tokio::task::spawn_blocking(move || post_all_then_read(&addr, 3 << 20))
            .await
            .unwrap();
        assert_eq!(
            status.as_deref(),
            Ok("HTTP/1.1 413 Payload Too Large"),
            "attempt {attempt}"
        );
    }
    assert!(sink.events().is_empty());
}
