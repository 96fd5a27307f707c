//! Where the stores are: the variables every function that uses them reads,
//! declared once (see `runtime::settings`).

use runtime::Env;
use runtime::settings::{Default, Var};

pub const MONGODB_URI: Var = Var::new(
    "MONGODB_URI",
    Default::Local("mongodb://127.0.0.1:27017/?directConnection=true"),
    "MongoDB",
)
.secret();
pub const MONGODB_DATABASE: Var = Var::new("MONGODB_DATABASE", Default::Value("covid"), "database");
pub const REDIS_URL: Var = Var::new(
    "REDIS_URL",
    Default::Local("redis://127.0.0.1:6379/"),
    "Redis",
);
pub const REDIS_KEY_PREFIX: Var = Var::new(
    "REDIS_KEY_PREFIX",
    Default::Value("covid:"),
    "prefix of every Redis key",
);

/// Where MongoDB is: [`MONGODB_URI`] and [`MONGODB_DATABASE`].
#[derive(Debug, Clone)]
pub struct MongoConfig {
    pub uri: String,
    pub database: String,
}

impl MongoConfig {
    pub fn read(env: &Env) -> anyhow::Result<MongoConfig> {
        Ok(MongoConfig {
            uri: env.parse(&MONGODB_URI)?,
            database: env.parse(&MONGODB_DATABASE)?,
        })
    }
}

/// Where Redis is: [`REDIS_URL`] and [`REDIS_KEY_PREFIX`].
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: String,
    pub key_prefix: String,
}

impl RedisConfig {
    pub fn read(env: &Env) -> anyhow::Result<RedisConfig> {
        Ok(RedisConfig {
            url: env.parse(&REDIS_URL)?,
            key_prefix: env.parse(&REDIS_KEY_PREFIX)?,
        })
    }

    /// The Redis keys under this prefix.
    pub fn keys(&self) -> crate::Keys {
        crate::Keys::new(self.key_prefix.clone())
    }
}
