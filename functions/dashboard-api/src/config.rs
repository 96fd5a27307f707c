//! What a user sets for dashboard-api: its variables, declared once.

use std::path::PathBuf;
use std::time::Duration;

use runtime::settings::{Default, Settings, Var};
use runtime::{Config, Env};
use store::config::{MONGODB_DATABASE, MONGODB_URI, REDIS_KEY_PREFIX, REDIS_URL};

/// A path relative to the working directory: right for `make up`, not in the image.
const DASHBOARD_DIR: Var = Var::new(
    "DASHBOARD_DIR",
    Default::Local("dashboard/dist"),
    "the built page",
);
const CORS_ORIGIN: Var = Var::new(
    "CORS_ORIGIN",
    Default::Unset,
    "one other origin allowed to read the API; unset: same origin only",
);
const SSE_MIN_INTERVAL_MS: Var = Var::new(
    "SSE_MIN_INTERVAL_MS",
    Default::Value("250"),
    "at most one pushed snapshot per interval, shared by all clients",
);
const SSE_REFRESH_MS: Var = Var::new(
    "SSE_REFRESH_MS",
    Default::Value("5000"),
    "a snapshot is pushed at least this often",
);
const SSE_MAX_CLIENTS: Var = Var::new(
    "SSE_MAX_CLIENTS",
    Default::Value("1000"),
    "most open `/api/stream` connections; past it `503` with `Retry-After` (streams are public and unauthenticated, like every read)",
);

#[derive(Debug, Clone)]
pub struct DashboardConfig {
    pub mongo: store::MongoConfig,
    pub redis: store::RedisConfig,
    /// [`DASHBOARD_DIR`].
    pub dashboard_dir: PathBuf,
    /// [`CORS_ORIGIN`].
    pub cors_origin: Option<String>,
    /// [`SSE_MIN_INTERVAL_MS`].
    pub sse_min_interval: Duration,
    /// [`SSE_REFRESH_MS`]: rates decay on screen even when nothing arrives.
    pub sse_refresh: Duration,
    /// [`SSE_MAX_CLIENTS`].
    pub sse_max_clients: usize,
}

impl Settings for DashboardConfig {
    const VARS: &'static [Var] = &[
        MONGODB_URI,
        MONGODB_DATABASE,
        REDIS_URL,
        REDIS_KEY_PREFIX,
        DASHBOARD_DIR,
        CORS_ORIGIN,
        SSE_MIN_INTERVAL_MS,
        SSE_REFRESH_MS,
        SSE_MAX_CLIENTS,
    ];

    fn read(env: &Env, _: &Config) -> anyhow::Result<DashboardConfig> {
        let millis = |var: &Var| env.parse(var).map(Duration::from_millis);
        Ok(DashboardConfig {
            mongo: store::MongoConfig::read(env)?,
            redis: store::RedisConfig::read(env)?,
            dashboard_dir: env.parse(&DASHBOARD_DIR)?,
            cors_origin: env.raw(&CORS_ORIGIN),
            sse_min_interval: millis(&SSE_MIN_INTERVAL_MS)?,
            sse_refresh: millis(&SSE_REFRESH_MS)?.max(Duration::from_millis(100)),
            sse_max_clients: env.parse(&SSE_MAX_CLIENTS)?,
        })
    }
}

#[cfg(test)]
#[test]
fn the_declaration_matches_the_parser() {
    let problems = runtime::testing::declaration_problems::<crate::Function>(&[]);
    assert!(problems.is_empty(), "{problems:#?}");
}
