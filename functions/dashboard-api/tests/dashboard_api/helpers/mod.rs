//! One dashboard-api on a free port over its own Redis key prefix and
//! MongoDB database, with the stores the tests seed through (the real write
//! and aggregation code).

use store::Keys;
use store::testing::Stores;
use store::{Aggregator, CaseStore};

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
    let stores = Stores::new("dash").await;
    let mut env = stores.env_with(&[
        ("DASHBOARD_DIR", "/nonexistent"),
        ("SSE_MIN_INTERVAL_MS", "50"),
    ]);
    env.extend_from_slice(extra);
    let app = runtime::testing::spawn::<dashboard_api::Function>(&env).await;
    Env {
        url: app.url,
        http: stack::testing::http_client(),
        cases: stores.cases(),
        agg: stores.aggregator(),
        keys: stores.keys.clone(),
        redis: stores.redis.clone(),
    }
}
