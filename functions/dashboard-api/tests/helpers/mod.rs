//! One dashboard-api on a free port over its own Redis key prefix and
//! MongoDB database, with the stores the tests seed through (the real write
//! and aggregation code).
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;

use runtime::{App, Config};
use store::Keys;
use store::{Aggregator, CaseStore, Mongo, MongoConfig, RedisStats};

pub struct Env {
    pub url: String,
    pub http: reqwest::Client,
    pub cases: CaseStore,
    pub agg: Aggregator,
    pub keys: Keys,
    pub redis: redis::aio::ConnectionManager,
}

/// Starts dashboard-api; `extra` adds or overrides environment variables.
pub async fn env(extra: &[(&str, &str)]) -> Env {
    let s = stack::testing::servers();
    let prefix = format!("{}:", stack::testing::unique("dash"));
    let db = stack::testing::unique("dash");
    let mut map: HashMap<String, String> = [
        ("REDIS_URL", s.redis_url.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
        ("MONGODB_URI", s.mongodb_uri.as_str()),
        ("MONGODB_DATABASE", db.as_str()),
        ("DASHBOARD_DIR", "/nonexistent"),
        ("SSE_MIN_INTERVAL_MS", "50"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    map.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let lookup = move |k: &str| map.get(k).cloned();
    let config = dashboard_api::DashboardConfig::from_lookup(&lookup).unwrap();
    let app = App::build(
        Config::from_lookup("dashboard-api", &lookup).unwrap(),
        |ctx| dashboard_api::routes_with(ctx, config),
    )
    .await
    .unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let mongo = Mongo::connect_lazy(&MongoConfig {
        uri: s.mongodb_uri.clone(),
        database: db,
    })
    .await
    .unwrap();
    let keys = Keys::new(prefix);
    let redis = runtime::redis::connect_lazy(&s.redis_url).unwrap();
    Env {
        url,
        http: stack::testing::http_client(),
        cases: CaseStore::new(mongo.clone()),
        agg: Aggregator::new(mongo, RedisStats::new(redis.clone(), keys.clone())),
        keys,
        redis,
    }
}
