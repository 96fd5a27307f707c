//! The function contract as ingest shows it: health, revision header,
//! metrics, SIGTERM drain and the Lambda runtime. Its own test binary (and so
//! its own process), because metrics are process-wide.

use crate::helpers;

use std::time::Duration;

use axum::http::StatusCode;
use helpers::*;

#[tokio::test]
async fn contract_routes_and_metrics() {
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    let app = spawn_ingest(&[("K_SINK", &sink.url), ("K_REVISION", "ingest-00042")]).await;
    for _ in 0..3 {
        assert_eq!(
            app.post_json(&case_json("A", 1)).await.status(),
            StatusCode::ACCEPTED
        );
    }
    assert_eq!(
        app.post(Some("text/plain"), "x").await.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let health = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.headers()["x-revision"], "ingest-00042");
    let nf = app
        .client
        .get(format!("{}/nope", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(nf.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        nf.headers()["x-revision"],
        "ingest-00042",
        "every response names the revision"
    );
    let metrics = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |needle: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(needle) && !l.starts_with('#'))
            .map(str::to_owned)
    };
    let accepted =
        line(r#"http_requests_total{route="/cases",method="POST",status="202"}"#).expect(&metrics);
    assert!(accepted.ends_with(" 3"), "{accepted}");
    assert!(
        line(r#"http_requests_total{route="/cases",method="POST",status="415"}"#)
            .unwrap()
            .ends_with(" 1")
    );
    assert!(line("ingest_cases_accepted_total").unwrap().ends_with(" 3"));
    assert!(metrics.contains("http_request_duration_seconds_bucket"));
    assert!(metrics.contains("http_requests_in_flight"));
    assert!(metrics.contains(r#"function_info{service="ingest",revision="ingest-00042""#));
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_binary(env: &[(&str, &str)]) -> Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ingest"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Child(cmd.spawn().expect("the ingest binary starts"))
}

async fn wait_until_listening(port: u16) {
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("ingest did not listen on {port}");
}

#[tokio::test]
async fn sigterm_completes_in_flight_requests_and_exits_zero() {
    let sink = spawn_sink(StatusCode::OK, Duration::from_millis(800)).await;
    let port = stack::free_port().unwrap();
    let mut child = spawn_binary(&[
        ("PORT", &port.to_string()),
        ("HOST", "127.0.0.1"),
        ("K_SINK", &sink.url),
    ]);
    wait_until_listening(port).await;
    let client = stack::testing::http_client();
    let url = format!("http://127.0.0.1:{port}/cases");
    let requests: Vec<_> = (0..5)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(case_json("Drain", i))
                    .send()
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.events().is_empty(), "the requests are still in flight");
    stack::process::send_signal(child.0.id(), libc::SIGTERM).unwrap();
    for r in requests {
        let resp = r.await.unwrap().expect("an in-flight request is answered");
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    assert_eq!(sink.events().len(), 5);
    let status = tokio::task::spawn_blocking(move || child.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "clean exit after the drain");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "no longer listening"
    );
}

/// A local stand-in for the AWS Lambda runtime API: hands out one API
/// Gateway (HTTP API v2) event and records the function's answer.
mod lambda_api {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::{Path, State};
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    use axum::routing::{get, post};

    #[derive(Default)]
    pub struct Recorded {
        pub handed_out: bool,
        pub responses: Vec<(String, String)>,
        pub errors: Vec<String>,
    }

    pub async fn spawn(event: serde_json::Value) -> (String, Arc<Mutex<Recorded>>) {
        let rec = Arc::new(Mutex::new(Recorded::default()));
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state((rec.clone(), Arc::new(event)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, rec)
    }

    type St = (Arc<Mutex<Recorded>>, Arc<serde_json::Value>);

    async fn next(State((rec, event)): State<St>) -> impl IntoResponse {
        let first = !std::mem::replace(&mut rec.lock().unwrap().handed_out, true);
        if !first {
            // Like the real API: no further invocation, the call just waits.
            std::future::pending::<()>().await;
        }
        let deadline = (chrono_now_ms() + 30_000).to_string();
        let mut h = HeaderMap::new();
        h.insert("lambda-runtime-aws-request-id", "req-1".parse().unwrap());
        h.insert("lambda-runtime-deadline-ms", deadline.parse().unwrap());
        h.insert(
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:ingest"
                .parse()
                .unwrap(),
        );
        h.insert(
            "lambda-runtime-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
                .parse()
                .unwrap(),
        );
        h.insert("content-type", "application/json".parse().unwrap());
        (h, event.to_string())
    }

    async fn response(
        State((rec, _)): State<St>,
        Path(id): Path<String>,
        body: String,
    ) -> impl IntoResponse {
        rec.lock().unwrap().responses.push((id, body));
        axum::http::StatusCode::ACCEPTED
    }

    async fn error(State((rec, _)): State<St>, body: String) -> impl IntoResponse {
        rec.lock().unwrap().errors.push(body);
        axum::http::StatusCode::ACCEPTED
    }

    async fn init_error(State((rec, _)): State<St>, body: String) -> impl IntoResponse {
        rec.lock().unwrap().errors.push(format!("init: {body}"));
        axum::http::StatusCode::ACCEPTED
    }

    fn chrono_now_ms() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    }
}

#[tokio::test]
async fn lambda_runtime_serves_the_same_router() {
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    let event = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/cases",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com", "domainPrefix": "abc123",
            "http": {"method": "POST", "path": "/cases", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
            "requestId": "r-1", "routeKey": "$default", "stage": "$default",
            "time": "23/Nov/2026:18:00:00 +0000", "timeEpoch": 1795428000000i64
        },
        "body": case_json("Lambda", 41),
        "isBase64Encoded": false
    });
    let (api, rec) = lambda_api::spawn(event).await;
    let _child = spawn_binary(&[
        ("AWS_LAMBDA_RUNTIME_API", &api),
        ("AWS_LAMBDA_FUNCTION_NAME", "ingest"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("K_SINK", &sink.url),
        ("K_REVISION", "ingest-lambda-1"),
    ]);
    let mut answer = None;
    for _ in 0..500 {
        if let Some(r) = rec.lock().unwrap().responses.first().cloned() {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (id, body) = answer.unwrap_or_else(|| {
        panic!(
            "no Lambda response; errors: {:?}",
            rec.lock().unwrap().errors
        )
    });
    assert_eq!(id, "req-1");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["statusCode"], 202, "{v}");
    assert_eq!(v["headers"]["x-revision"], "ingest-lambda-1", "{v}");
    let inner: serde_json::Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(inner["accepted"], 1);
    assert_eq!(sink.events().len(), 1);
}
