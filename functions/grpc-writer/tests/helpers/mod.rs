//! grpc-writer with aggregate as its sink, both in-process on free ports
//! over their own database and key prefix, plus the stores the checks read.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::time::{Duration, Instant};

use events::WritePath;
use runtime::{App, Config};
use store::{Aggregator, CaseStore, Mongo, MongoConfig, RedisStats};

pub struct Pair {
    pub writer: String,
    pub aggregate: String,
    pub cases: CaseStore,
    pub agg: Aggregator,
}

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

/// grpc-writer alone (no sink) over `mongodb_uri`; its URL.
pub async fn start_writer(mongodb_uri: &str) -> String {
    let env: HashMap<String, String> = [
        ("MONGODB_URI", mongodb_uri),
        ("MONGODB_DATABASE", "writer"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    spawn("grpc-writer", &env, async |ctx, l| {
        grpc_writer::routes_with(ctx, grpc_writer::WriterConfig::from_lookup(l)?).await
    })
    .await
}

pub async fn start(name: &str) -> Pair {
    let s = stack::testing::servers();
    let db = stack::testing::unique(name);
    let prefix = format!("{}:", stack::testing::unique(name));
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
    let mongo = Mongo::connect_lazy(&MongoConfig {
        uri: s.mongodb_uri.clone(),
        database: db,
    })
    .await
    .unwrap();
    let redis = runtime::redis::connect_lazy(&s.redis_url).unwrap();
    Pair {
        writer,
        aggregate,
        cases: CaseStore::new(mongo.clone()),
        agg: Aggregator::new(mongo, RedisStats::new(redis, store::Keys::new(prefix))),
    }
}

impl Pair {
    /// Waits (at most 20 s) until `n` documents are stored and counted.
    pub async fn wait_stored_and_counted(&self, n: u64) {
        let start = Instant::now();
        loop {
            let documents = self.cases.count(Some(WritePath::Grpc)).await.unwrap();
            let counted = self.agg.totals().await.unwrap().total;
            if documents == n && counted == n {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "expected {n} documents, all counted: {documents} documents, {counted} counted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
