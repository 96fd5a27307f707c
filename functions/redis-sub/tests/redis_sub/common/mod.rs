//! Shared by redis-sub's tests: a fresh database and key prefix per test,
//! on the real Redis and MongoDB-compatible servers, and the function itself.

pub mod stream_source;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use events::{Case, Reported, WritePath};
use runtime::testing::Spawned;
use store::testing::Stores;
use store::{CaseStore, Keys};

pub struct Env {
    pub keys: Keys,
    /// The variables that point redis-sub at this test's stores.
    pub env: HashMap<String, String>,
    pub redis: redis::aio::ConnectionManager,
    pub cases: CaseStore,
}

pub async fn env() -> Env {
    let stores = Stores::new("sub").await;
    Env {
        keys: stores.keys.clone(),
        env: stores
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        redis: stores.redis.clone(),
        cases: stores.cases(),
    }
}

/// redis-sub running in this process with `env`, then `extra`.
pub async fn spawn(env: &HashMap<String, String>, extra: &[(&str, &str)]) -> Spawned {
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.extend_from_slice(extra);
    runtime::testing::spawn::<redis_sub::Function>(&all).await
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
