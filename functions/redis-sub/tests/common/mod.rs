//! Shared by redis-sub's tests: a fresh database and key prefix per test,
//! on the real Redis and MongoDB-compatible servers, and the function itself.
#![allow(dead_code)]

pub mod stream_source;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use events::{Case, Reported, WritePath};
use runtime::{App, Config};
use store::Keys;
use store::{CaseStore, Mongo, MongoConfig};

pub struct Env {
    pub keys: Keys,
    pub env: HashMap<String, String>,
    pub redis: redis::aio::ConnectionManager,
    pub cases: CaseStore,
}

pub async fn env() -> Env {
    let s = stack::testing::servers();
    let prefix = format!("{}:", stack::testing::unique("sub"));
    let db = stack::testing::unique("sub");
    let env: HashMap<String, String> = [
        ("REDIS_URL", s.redis_url.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
        ("MONGODB_URI", s.mongodb_uri.as_str()),
        ("MONGODB_DATABASE", db.as_str()),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mongo = Mongo::connect_lazy(&MongoConfig {
        uri: s.mongodb_uri.clone(),
        database: db,
    })
    .await
    .unwrap();
    Env {
        keys: Keys::new(prefix),
        env,
        redis: runtime::redis::connect_lazy(&s.redis_url).unwrap(),
        cases: CaseStore::new(mongo),
    }
}

/// redis-sub running in this process.
pub struct Running {
    pub url: String,
    pub ctx: runtime::Context,
    stopped: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops it as SIGTERM would and waits until it has.
    pub async fn stop(self) {
        self.ctx.shutdown.cancel();
        self.stopped.await.unwrap().unwrap();
    }
}

pub async fn spawn(env: &HashMap<String, String>, extra: &[(&str, &str)]) -> Running {
    let mut env = env.clone();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let lookup = move |k: &str| env.get(k).cloned();
    let config = redis_sub::SubConfig::from_lookup(&lookup).unwrap();
    let app = App::build(Config::from_lookup("redis-sub", &lookup).unwrap(), |ctx| {
        redis_sub::routes_with(ctx, config)
    })
    .await
    .unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    let ctx = app.context().clone();
    let stopped = tokio::spawn(app.run_until_stopped());
    Running { url, ctx, stopped }
}

pub fn reported(i: usize) -> Reported {
    Reported {
        id: Reported::new_id(),
        case: Case::new(&format!("C{i}"), "Retalhuleu", 33, "communitary", "active").unwrap(),
        time: chrono::Utc::now(),
        revision: Some("ingest-redis-00001".into()),
        traceparent: None,
    }
}

pub async fn xadd(conn: &mut redis::aio::ConnectionManager, keys: &Keys, r: &Reported) {
    let _: String = redis::cmd("XADD")
        .arg(keys.stream())
        .arg("*")
        .arg(events::redis::STREAM_FIELD)
        .arg(events::redis::encode(&r.to_event("/test")))
        .query_async(conn)
        .await
        .unwrap();
}

pub async fn wait_stored(cases: &CaseStore, n: u64, within: Duration) {
    let start = Instant::now();
    while cases.count(Some(WritePath::Redis)).await.unwrap() < n {
        assert!(
            start.elapsed() < within,
            "only {} of {n} stored",
            cases.count(None).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every stored case, by id.
pub async fn stored(cases: &CaseStore) -> HashMap<String, events::StoredCase> {
    let page = cases.page(1000, None, None, None).await.unwrap();
    assert!(page.next.is_none(), "tests store fewer than 1000 cases");
    page.cases.into_iter().map(|c| (c.id.clone(), c)).collect()
}
