//! A client retry with an `Idempotency-Key`, through both real write paths:
//! ingest (gRPC route) → grpc-writer, and ingest (Redis route) → Redis
//! Stream → redis-sub, both → MongoDB and → aggregate. Every function runs
//! in-process against the real Redis and MongoDB-compatible server, with
//! the internal token required on every hop and the ingest token on ingest.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use events::WritePath;
use runtime::{App, Config, Context, Routes};
use serde_json::Value;
use store::{Aggregator, CaseStore, Mongo, MongoConfig, RedisStats};

const INGEST_TOKEN: &str = "e2e-ingest-token-0123456789";
const INTERNAL_TOKEN: &str = "e2e-internal-token-0123456789";

struct Stack {
    env: HashMap<String, String>,
    cases: CaseStore,
    agg: Aggregator,
    http: reqwest::Client,
}

async fn spawn<F, Fut>(
    name: &str,
    env: &HashMap<String, String>,
    extra: &[(&str, &str)],
    routes: F,
) -> String
where
    F: FnOnce(Context, &dyn Fn(&str) -> Option<String>) -> Fut,
    Fut: Future<Output = anyhow::Result<Routes>>,
{
    let mut env = env.clone();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env.insert("K_SERVICE".into(), name.into());
    let lookup = move |k: &str| env.get(k).cloned();
    let config = Config::from_lookup(name, &lookup).unwrap();
    let app = App::build(config, |ctx| routes(ctx, &lookup))
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    url
}

/// Every function of the pipeline, wired as `make up` wires them.
async fn start() -> (Stack, String, String) {
    let s = stack::testing::servers();
    let db = stack::testing::unique("e2e_idem");
    let prefix = format!("{}:", stack::testing::unique("e2e_idem"));
    let env: HashMap<String, String> = [
        ("REDIS_URL", s.redis_url.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
        ("MONGODB_URI", s.mongodb_uri.as_str()),
        ("MONGODB_DATABASE", db.as_str()),
        ("INTERNAL_TOKEN", INTERNAL_TOKEN),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("AGGREGATE_FLUSH_MS", "5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let aggregate = spawn("aggregate", &env, &[], |ctx, l| {
        let config = aggregate::AggregateConfig::from_lookup(l);
        async move { aggregate::routes_with(ctx, config?).await }
    })
    .await;
    let sink = format!("{aggregate}/");
    let writer = spawn("grpc-writer", &env, &[("K_SINK", &sink)], |ctx, l| {
        let config = grpc_writer::WriterConfig::from_lookup(l);
        async move { grpc_writer::routes_with(ctx, config?).await }
    })
    .await;
    let _sub = spawn("redis-sub", &env, &[("K_SINK", &sink)], |ctx, l| {
        let config = redis_sub::SubConfig::from_lookup(l);
        async move { redis_sub::routes_with(ctx, config?).await }
    })
    .await;
    let ingest = |route: &'static str| {
        let env = env.clone();
        let writer = writer.clone();
        async move {
            let extra = [
                ("INGEST_ROUTE", route),
                ("GRPC_WRITER_URL", writer.as_str()),
                ("INGEST_TOKEN", INGEST_TOKEN),
            ];
            spawn(&format!("ingest-{route}"), &env, &extra, |ctx, l| {
                let config = ingest::IngestConfig::from_lookup(l);
                async move { ingest::routes_with(ctx, config?).await }
            })
            .await
        }
    };
    let (grpc, redis) = (ingest("grpc").await, ingest("redis").await);
    let mongo = Mongo::connect_lazy(&MongoConfig {
        uri: s.mongodb_uri.clone(),
        database: db,
    })
    .await
    .unwrap();
    let redis_conn = runtime::redis::connect_lazy(&s.redis_url).unwrap();
    let stack = Stack {
        env,
        cases: CaseStore::new(mongo.clone()),
        agg: Aggregator::new(mongo, RedisStats::new(redis_conn, store::Keys::new(prefix))),
        http: stack::testing::http_client(),
    };
    (stack, grpc, redis)
}

fn batch(tag: &str) -> String {
    let cases: Vec<String> = (0..5)
        .map(|i| format!(r#"{{"name":"{tag} {i}","location":"Escuintla","age":{},"infectedtype":"communitary","state":"active"}}"#, 20 + i))
        .collect();
    format!("[{}]", cases.join(","))
}

impl Stack {
    async fn post(&self, ingest: &str, key: &str, body: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{ingest}/cases"))
            .bearer_auth(INGEST_TOKEN)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap())
    }

    /// Waits (bounded) until `check` holds for the stored state.
    async fn wait_for(&self, what: &str, check: impl AsyncFn(&Stack) -> bool) {
        let start = Instant::now();
        while !check(self).await {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{what}: not reached within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_retried_batch_is_stored_and_counted_once_on_both_paths() {
    let (p, grpc, redis) = start().await;
    let mut accepted = HashSet::new();
    for (ingest, path) in [(&grpc, WritePath::Grpc), (&redis, WritePath::Redis)] {
        let body = batch(path.as_str());
        let key = format!("retry-{path}-0197");
        let (status, first) = p.post(ingest, &key, &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{first}");
        // The client timed out and retries: same key, same cases.
        let (status, retry) = p.post(ingest, &key, &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{retry}");
        assert_eq!(first, retry, "the retry gets the same ids");
        let ids: HashSet<String> = first["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 5);
        p.wait_for(
            &format!("5 cases stored on the {path} path"),
            async |p: &Stack| p.cases.count(Some(path)).await.unwrap() == 5,
        )
        .await;
        accepted.extend(ids);
    }
    p.wait_for("10 cases counted", async |p: &Stack| {
        p.agg.totals().await.unwrap().total == 10
    })
    .await;
    // Nothing more arrives later: the retries were no-ops end to end.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.cases.count(None).await.unwrap(), 10);
    let totals = p.agg.totals().await.unwrap();
    assert_eq!(
        (
            totals.total,
            totals.by_path.get("grpc").copied(),
            totals.by_path.get("redis").copied()
        ),
        (10, Some(5), Some(5))
    );
    let stored: HashSet<String> = p
        .cases
        .page(100, None, None, None)
        .await
        .unwrap()
        .cases
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(stored, accepted, "exactly the answered ids are stored");
}

#[tokio::test]
async fn internal_hops_refuse_callers_without_the_internal_token() {
    let (p, _grpc, _redis) = start().await;
    // Function URLs are not kept by `start`; build fresh ones from the same environment.
    let writer = spawn("grpc-writer", &p.env, &[], |ctx, l| {
        let config = grpc_writer::WriterConfig::from_lookup(l);
        async move { grpc_writer::routes_with(ctx, config?).await }
    })
    .await;
    let sub = spawn(
        "redis-sub",
        &p.env,
        &[("STREAM_CONSUMER", "false")],
        |ctx, l| {
            let config = redis_sub::SubConfig::from_lookup(l);
            async move { redis_sub::routes_with(ctx, config?).await }
        },
    )
    .await;
    let aggregate = spawn("aggregate", &p.env, &[], |ctx, l| {
        let config = aggregate::AggregateConfig::from_lookup(l);
        async move { aggregate::routes_with(ctx, config?).await }
    })
    .await;
    let reported = events::Reported {
        id: events::Reported::new_id(),
        case: events::Case::new("Intruder", "Mixco", 40, "imported", "active").unwrap(),
        time: chrono::Utc::now(),
        revision: None,
        traceparent: None,
    };
    let event = reported.to_event("/intruder");

    // gRPC: UNAUTHENTICATED without the token, stored with it.
    let mut client =
        events::proto::writer::case_writer_client::CaseWriterClient::connect(writer.clone())
            .await
            .unwrap();
    let request = || events::proto::writer::WriteRequest {
        events: vec![events::proto::to_proto(&event)],
    };
    let status = client.write(request()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let mut wrong = tonic::Request::new(request());
    wrong.metadata_mut().insert(
        "authorization",
        "Bearer not-the-internal-token-0123".parse().unwrap(),
    );
    assert_eq!(
        client.write(wrong).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    assert_eq!(p.cases.count(None).await.unwrap(), 0, "nothing stored");

    // HTTP receivers: 401 without the token.
    for url in [format!("{sub}/"), format!("{aggregate}/")] {
        let resp = events::http::binary_request(&p.http, &url, event.clone(), &[])
            .unwrap()
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{url}");
    }
    assert_eq!(p.cases.count(None).await.unwrap(), 0, "nothing stored");
    let auth = format!("Bearer {INTERNAL_TOKEN}");
    let resp = events::http::binary_request(
        &p.http,
        &format!("{sub}/"),
        event.clone(),
        &[("authorization", &auth)],
    )
    .unwrap()
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(p.cases.count(None).await.unwrap(), 1);
    let mut with_token = tonic::Request::new(request());
    with_token
        .metadata_mut()
        .insert("authorization", auth.parse().unwrap());
    let results = client.write(with_token).await.unwrap().into_inner().results;
    assert_eq!(
        results[0].status,
        events::proto::writer::WriteStatus::Duplicate as i32,
        "already stored through redis-sub"
    );
}
