//! The whole pipeline under the supervisor for one test: every function as
//! its own process from `bin_dir`, its own database and key prefix, and the
//! store readers the checks use.

use std::path::PathBuf;
use std::time::Duration;

use stack::{Ports, StackConfig, Supervisor};
use store::testing::Stores;
use store::{Aggregator, CaseStore, Keys};

pub struct Pipeline {
    pub sup: Supervisor,
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
    let stores = Stores::on(s.name, s.redis_url, s.mongodb_uri).await;
    let config = StackConfig {
        bin_dir: s.bin_dir,
        redis_url: stores.redis_url.clone(),
        mongodb_uri: stores.mongodb_uri.clone(),
        database: stores.database.clone(),
        key_prefix: stores.key_prefix.clone(),
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
    Pipeline {
        sup,
        cases: stores.cases(),
        agg: stores.aggregator(),
        keys: stores.keys.clone(),
        redis: stores.redis.clone(),
    }
}
