//! The runtime's guards on a real listener: who may write (internal token by
//! default, a function's own credentials when it names them), and clients
//! that are too slow to be allowed to hold a connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use runtime::{Context, Routes, Secret, Verifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INTERNAL: &str = "internal-token-0123456789abcdef";

struct Spawned {
    url: String,
    port: u16,
    writes: Arc<AtomicUsize>,
    ctx: Context,
}

/// A function with one write route (`POST /`, counting its calls) and a read
/// route (`GET /`), with `env` and whatever `wrap` does to its `Routes`.
async fn spawn(env: &[(&str, &str)], wrap: impl FnOnce(Routes) -> Routes) -> Spawned {
    let writes = Arc::new(AtomicUsize::new(0));
    let counter = writes.clone();
    let router = Router::new().route(
        "/",
        // Takes the body, so the handler runs only once the body is in.
        post(move |_body: axum::body::Bytes| {
            let c = counter.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                StatusCode::ACCEPTED
            }
        })
        .get(|| async { "read" }),
    );
    let app =
        runtime::testing::spawn_routes(
            "test-fn",
            env,
            |_| async move { Ok(wrap(Routes::new(router))) },
        )
        .await;
    Spawned {
        url: app.url,
        port: app.port,
        writes,
        ctx: app.ctx,
    }
}

fn client() -> reqwest::Client {
    runtime::install_crypto_provider();
    reqwest::Client::new()
}

#[tokio::test]
async fn write_routes_need_the_internal_token_and_reads_stay_public() {
    let f = spawn(&[("INTERNAL_TOKEN", INTERNAL)], |r| r).await;
    let http = client();
    let resp = http.post(&f.url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Bearer realm="covid-realtime""#
    );
    assert!(
        resp.headers().contains_key("x-revision"),
        "refusals still carry the contract headers"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{body}"
    );
    for bad in [
        "Bearer wrong-token-0123456789abcdef",
        "Basic aW50ZXJuYWw6eA==",
        INTERNAL,
    ] {
        let resp = http
            .post(&f.url)
            .header("authorization", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{bad}");
        assert!(
            resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    // Every write-like method is guarded, not only POST.
    for method in [
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let resp = http.request(method.clone(), &f.url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method}");
    }
    assert_eq!(
        f.writes.load(Ordering::SeqCst),
        0,
        "no refused request reached the handler"
    );
    let resp = http
        .post(&f.url)
        .bearer_auth(INTERNAL)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(f.writes.load(Ordering::SeqCst), 1);
    for path in ["/", "/healthz", "/readyz", "/metrics"] {
        let resp = http.get(format!("{}{path}", f.url)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "GET {path} is public");
    }
    // Unknown paths stay 404 (the guard only covers routes that exist).
    assert_eq!(
        http.post(format!("{}/nope", f.url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn grpc_callers_get_a_grpc_status() {
    let f = spawn(&[("INTERNAL_TOKEN", INTERNAL)], |r| r).await;
    let resp = client()
        .post(&f.url)
        .header("content-type", "application/grpc")
        .body(vec![0u8; 5])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "gRPC puts the status in headers"
    );
    assert_eq!(resp.headers()["grpc-status"], "16", "UNAUTHENTICATED");
    assert!(
        resp.headers()["grpc-message"]
            .to_str()
            .unwrap()
            .contains("Bearer")
    );
    assert_eq!(f.writes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn without_a_token_writes_are_open() {
    let f = spawn(&[], |r| r).await;
    assert_eq!(
        client().post(&f.url).send().await.unwrap().status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_function_can_name_its_own_credentials() {
    let public = Secret::new("public-token-0123456789abcdef");
    let p = public.clone();
    let f = spawn(&[("INTERNAL_TOKEN", INTERNAL)], move |r| {
        r.writes_need(Verifier::open().token("PUBLIC_TOKEN", Some(&p)))
    })
    .await;
    let http = client();
    assert_eq!(
        http.post(&f.url)
            .bearer_auth(INTERNAL)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED,
        "the internal token is not a public credential"
    );
    assert_eq!(
        http.post(&f.url)
            .bearer_auth(public.expose())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn layers_before_auth_see_refused_requests() {
    let layer = tower_http::set_header::SetResponseHeaderLayer::overriding(
        axum::http::HeaderName::from_static("x-before-auth"),
        axum::http::HeaderValue::from_static("yes"),
    );
    let f = spawn(&[("INTERNAL_TOKEN", INTERNAL)], move |r| {
        r.before_auth(layer)
    })
    .await;
    let resp = client().post(&f.url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["x-before-auth"], "yes");
}

/// The sink the runtime builds for `K_SINK` sends the internal token, so
/// one function's output reaches the next through its guard.
#[tokio::test]
async fn the_sink_sends_the_internal_token() {
    let receiver = spawn(&[("INTERNAL_TOKEN", INTERNAL)], |r| r).await;
    let event = events::StatsUpdated { total: 1, at_ms: 0 }.to_event("/test");
    let sender = spawn(
        &[
            ("INTERNAL_TOKEN", INTERNAL),
            ("K_SINK", &format!("{}/", receiver.url)),
        ],
        |r| r,
    )
    .await;
    sender.ctx.sink().unwrap().send(&event, None).await.unwrap();
    assert_eq!(receiver.writes.load(Ordering::SeqCst), 1);
    let stranger = spawn(&[], |r| r).await;
    let err = stranger
        .ctx
        .sink_to(&format!("{}/", receiver.url))
        .send(&event, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(receiver.writes.load(Ordering::SeqCst), 1);
}

/// Reads until the server closes the connection; returns what it sent.
/// Fails if the server keeps the connection open for far longer than it should.
async fn read_until_closed(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept a slow connection open: {:?}",
        String::from_utf8_lossy(&got)
    );
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn slow_request_heads_and_silent_clients_are_cut_off() {
    let f = spawn(&[("HEADER_READ_TIMEOUT_MS", "300")], |r| r).await;
    // Half a request head, then nothing.
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", f.port))
        .await
        .unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le")
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // Connected, silent.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", f.port))
        .await
        .unwrap();
    assert_eq!(read_until_closed(&mut silent).await, "");
    // Half an HTTP/2 preface (it would keep hyper's protocol detection waiting).
    let mut half = tokio::net::TcpStream::connect(("127.0.0.1", f.port))
        .await
        .unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert_eq!(read_until_closed(&mut half).await, "");
    // An idle keep-alive connection is closed after its last answer.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", f.port))
        .await
        .unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(f.writes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_body_dribbled_slower_than_the_request_timeout_gets_408() {
    let f = spawn(&[("REQUEST_TIMEOUT_MS", "400")], |r| r).await;
    let s = tokio::net::TcpStream::connect(("127.0.0.1", f.port))
        .await
        .unwrap();
    let (mut reader, mut s) = s.into_split();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n").await.unwrap();
    // One byte every 100 ms: 100 bytes would take 10 s.
    let dribble = async {
        for _ in 0..100 {
            if s.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let answer = tokio::select! {
        a = read_until_closed(&mut reader) => a,
        _ = dribble => panic!("the whole body went in without a timeout"),
    };
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(f.writes.load(Ordering::SeqCst), 0, "the handler never ran");
}

/// Starts a function with one write route, in an environment.
async fn build(
    env: &[(&str, &str)],
    wrap: impl FnOnce(Routes) -> Routes,
) -> anyhow::Result<runtime::testing::Spawned> {
    let router = Router::new().route("/", post(|| async { StatusCode::ACCEPTED }));
    runtime::testing::try_spawn_routes(
        "test-fn",
        env,
        |_| async move { Ok(wrap(Routes::new(router))) },
    )
    .await
}

#[tokio::test]
async fn deployed_with_no_write_credential_it_refuses_to_start() {
    const KUBERNETES: (&str, &str) = ("KUBERNETES_SERVICE_HOST", "10.96.0.1");
    // An empty Secret key (the example's) is no credential.
    let err = build(&[KUBERNETES, ("INTERNAL_TOKEN", "")], |r| r)
        .await
        .err()
        .expect("an open write route under Kubernetes must not start");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("KUBERNETES_SERVICE_HOST")
            && msg.contains("set INTERNAL_TOKEN")
            && msg.contains("ALLOW_OPEN_WRITES=true"),
        "{msg}"
    );
    // A function's own credentials count: ingest's static token, named by its variable.
    let ingest_like = |r: Routes| r.writes_need(Verifier::open().enabled_by("INGEST_TOKEN"));
    let err = build(&[KUBERNETES], ingest_like)
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("set INGEST_TOKEN"), "{err:#}");

    // Started: with a credential, when told explicitly, read-only, or on a laptop.
    assert!(
        build(&[KUBERNETES, ("INTERNAL_TOKEN", INTERNAL)], |r| r)
            .await
            .is_ok()
    );
    assert!(
        build(&[KUBERNETES, ("ALLOW_OPEN_WRITES", "true")], |r| r)
            .await
            .is_ok()
    );
    assert!(build(&[KUBERNETES], Routes::read_only).await.is_ok());
    assert!(build(&[], |r| r).await.is_ok());
}
