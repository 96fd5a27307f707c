//! The whole pipeline under the supervisor for one test: every function as
//! its own process from `bin_dir`, its own database and key prefix, and the
//! store readers the checks use.
#![allow(dead_code)] // each test binary uses a different part

use std::path::PathBuf;
use std::time::Duration;

use stack::{Ports, StackConfig, Supervisor};
use store::Keys;
use store::{Aggregator, CaseStore, Mongo, MongoConfig, RedisStats};

pub struct Pipeline {
    pub sup: Supervisor,
    pub http: reqwest::Client,
    pub cases: CaseStore,
    pub agg: Aggregator,
    pub keys: Keys,
    pub redis: redis::aio::ConnectionManager,
}

pub struct Start<'a> {
    /// Where the function binaries are.
    pub bin_dir: PathBuf,
    pub redis_url: &'a str,
    pub mongodb_uri: &'a str,
    /// Prefix of the database and key-prefix names (made unique).
    pub name: &'a str,
    pub extra_env: &'a [(&'a str, &'a str)],
    /// Echo the functions' logs to the test's output.
    pub echo_logs: bool,
}

pub async fn start(s: Start<'_>) -> Pipeline {
    let database = stack::testing::unique(s.name);
    let key_prefix = format!("{}:", stack::testing::unique(s.name));
    let config = StackConfig {
        bin_dir: s.bin_dir,
        redis_url: s.redis_url.to_owned(),
        mongodb_uri: s.mongodb_uri.to_owned(),
        database: database.clone(),
        key_prefix: key_prefix.clone(),
        ports: Ports::free().unwrap(),
        dashboard_dir: PathBuf::from("/nonexistent"),
        extra_env: s
            .extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("RUST_LOG".to_owned(), "warn".to_owned())])
            .collect(),
        echo_logs: s.echo_logs,
    };
    let sup = Supervisor::start(&config).unwrap();
    sup.wait_ready(Duration::from_secs(30)).await.unwrap();
    let mongo = Mongo::connect_lazy(&MongoConfig {
        uri: s.mongodb_uri.to_owned(),
        database,
    })
    .await
    .unwrap();
    let keys = Keys::new(key_prefix);
    let redis = runtime::redis::connect_lazy(s.redis_url).unwrap();
    Pipeline {
        sup,
        http: stack::testing::http_client(),
        cases: CaseStore::new(mongo.clone()),
        agg: Aggregator::new(mongo, RedisStats::new(redis.clone(), keys.clone())),
        keys,
        redis,
    }
}
