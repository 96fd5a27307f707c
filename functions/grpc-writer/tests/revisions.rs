//! Revisions that cannot be field names, Redis fields or labels are refused
//! where grpc-writer receives them, so counting never stalls on them:
//! grpc-writer and aggregate run in-process against the real Redis and
//! MongoDB-compatible server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use events::proto::writer::case_writer_client::CaseWriterClient;
use events::proto::writer::{WriteRequest, WriteStatus};
use events::{Case, Reported, WritePath};
use runtime::{App, Config};
use store::{Aggregator, CaseStore, Mongo, MongoConfig, RedisStats};

async fn spawn(
    name: &str,
    env: &HashMap<String, String>,
    routes: impl AsyncFnOnce(
        runtime::Context,
        &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<runtime::Routes>,
) -> String {
    let mut env = env.clone();
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

fn reported(name: &str, revision: &str) -> Reported {
    Reported {
        id: Reported::new_id(),
        case: Case::new(name, "Escuintla", 30, "communitary", "active").unwrap(),
        time: Utc::now(),
        revision: Some(revision.to_owned()),
        traceparent: None,
    }
}

#[tokio::test]
async fn events_with_unusable_revisions_are_rejected_and_counting_keeps_up_with_the_documents() {
    let s = stack::testing::servers();
    let db = stack::testing::unique("revisions");
    let prefix = format!("{}:", stack::testing::unique("revisions"));
    let mut env: HashMap<String, String> = [
        ("REDIS_URL", s.redis_url.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
        ("MONGODB_URI", s.mongodb_uri.as_str()),
        ("MONGODB_DATABASE", db.as_str()),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("AGGREGATE_FLUSH_MS", "5"),
        ("SWEEP_INTERVAL_MS", "100"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let aggregate = spawn("aggregate", &env, async |ctx, l| {
        aggregate::routes_with(ctx, aggregate::AggregateConfig::from_lookup(l)?).await
    })
    .await;
    env.insert("K_SINK".into(), format!("{aggregate}/"));
    let writer = spawn("grpc-writer", &env, async |ctx, l| {
        grpc_writer::routes_with(ctx, grpc_writer::WriterConfig::from_lookup(l)?).await
    })
    .await;
    let mut client = CaseWriterClient::connect(writer).await.unwrap();

    let poison = [
        reported("Eva", ""),
        reported("Juan", "bad\u{0}rev"),
        reported("Rosa", "a.b$c"),
    ];
    let events = poison
        .iter()
        .map(|r| events::proto::to_proto(&r.to_event("/test")))
        .collect();
    let results = client
        .write(WriteRequest { events })
        .await
        .unwrap()
        .into_inner()
        .results;
    for r in &results {
        assert_eq!(r.status, WriteStatus::Rejected as i32, "{r:?}");
        assert!(
            r.error.contains("revision"),
            "the error names the revision: {r:?}"
        );
    }

    let good: Vec<Reported> = (0..5)
        .map(|i| reported(&format!("Ana {i}"), "ingest-00001"))
        .collect();
    let events = good
        .iter()
        .map(|r| events::proto::to_proto(&r.to_event("/test")))
        .collect();
    let results = client
        .write(WriteRequest { events })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(
        results
            .iter()
            .all(|r| r.status == WriteStatus::Stored as i32),
        "{results:?}"
    );

    let mongo = Mongo::connect_lazy(&MongoConfig {
        uri: s.mongodb_uri.clone(),
        database: db,
    })
    .await
    .unwrap();
    let redis = runtime::redis::connect_lazy(&s.redis_url).unwrap();
    let cases = CaseStore::new(mongo.clone());
    let agg = Aggregator::new(
        mongo,
        RedisStats::new(redis, events::redis::Keys::new(prefix)),
    );
    let start = Instant::now();
    loop {
        let (documents, counted) = (
            cases.count(Some(WritePath::Grpc)).await.unwrap(),
            agg.totals().await.unwrap().total,
        );
        if documents == 5 && counted == 5 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "counters {counted} and documents {documents} did not both reach 5"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
