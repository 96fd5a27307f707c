//! The store fixture every crate's tests use: the shared test servers
//! (`stack::testing::servers`: `COVID_TEST_REDIS_URL` / `COVID_TEST_MONGODB_URI`,
//! or servers started for this process), with a database and a key prefix
//! no other test uses, and the readers the checks need.

use crate::Keys;
use redis::aio::ConnectionManager;

use crate::{Aggregator, CaseStore, Mongo, MongoConfig, RedisStats};

pub struct Stores {
    pub redis_url: String,
    pub mongodb_uri: String,
    pub database: String,
    pub key_prefix: String,
    pub keys: Keys,
    pub mongo: Mongo,
    pub redis: ConnectionManager,
}

impl Stores {
    /// Fresh names starting with `name`, on the shared servers.
    pub async fn new(name: &str) -> Stores {
        let s = stack::testing::servers();
        Stores::on(name, &s.redis_url, &s.mongodb_uri).await
    }

    /// Fresh names starting with `name`, on these servers (a test that
    /// stops or freezes its own).
    pub async fn on(name: &str, redis_url: &str, mongodb_uri: &str) -> Stores {
        let database = stack::testing::unique(name);
        let key_prefix = format!("{}:", stack::testing::unique(name));
        let mongo = Mongo::connect_lazy(&MongoConfig {
            uri: mongodb_uri.to_owned(),
            database: database.clone(),
        })
        .await
        .expect("the test MongoDB URI is valid");
        Stores {
            redis_url: redis_url.to_owned(),
            mongodb_uri: mongodb_uri.to_owned(),
            keys: Keys::new(key_prefix.clone()),
            redis: runtime::redis::connect_lazy(redis_url).expect("the test Redis URL is valid"),
            database,
            key_prefix,
            mongo,
        }
    }

    /// The variables that point a function at these stores.
    pub fn env(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("REDIS_URL", &self.redis_url),
            ("REDIS_KEY_PREFIX", &self.key_prefix),
            ("MONGODB_URI", &self.mongodb_uri),
            ("MONGODB_DATABASE", &self.database),
        ]
    }

    /// [`Stores::env`] followed by `extra` (which may override it).
    pub fn env_with<'a>(
        &'a self,
        extra: &[(&'static str, &'a str)],
    ) -> Vec<(&'static str, &'a str)> {
        let mut env = self.env();
        env.extend_from_slice(extra);
        env
    }

    pub fn cases(&self) -> CaseStore {
        CaseStore::new(self.mongo.clone())
    }

    pub fn aggregator(&self) -> Aggregator {
        Aggregator::new(
            self.mongo.clone(),
            RedisStats::new(self.redis.clone(), self.keys.clone()),
        )
    }
}
