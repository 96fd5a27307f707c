//! What a user sets for dashboard-api, with defaults.

use std::path::PathBuf;
use std::time::Duration;

use runtime::config::var;

#[derive(Debug, Clone)]
pub struct DashboardConfig {
    pub mongo: store::MongoConfig,
    /// `REDIS_URL` (default `redis://127.0.0.1:6379/`).
    pub redis_url: String,
    /// `REDIS_KEY_PREFIX` (default `covid:`).
    pub key_prefix: String,
    /// `DASHBOARD_DIR` (default `dashboard/dist`): the built browser page.
    pub dashboard_dir: PathBuf,
    /// `CORS_ORIGIN` (default unset: same origin only): the one other origin
    /// allowed to read the API from a browser.
    pub cors_origin: Option<String>,
    /// `SSE_MIN_INTERVAL_MS` (default 250): at most one pushed snapshot per
    /// interval, shared by every client.
    pub sse_min_interval: Duration,
    /// `SSE_REFRESH_MS` (default 5000): a snapshot is pushed at least this
    /// often, so rates decay on screen even when nothing arrives.
    pub sse_refresh: Duration,
    /// `SSE_MAX_CLIENTS` (default 1000): most open `/api/stream`
    /// connections; past it `503` with `Retry-After`.
    pub sse_max_clients: usize,
}

impl DashboardConfig {
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<DashboardConfig> {
        Ok(DashboardConfig {
            mongo: store::MongoConfig::from_lookup(lookup)?,
            redis_url: var(lookup, "REDIS_URL", "redis://127.0.0.1:6379/".to_owned())?,
            key_prefix: var(lookup, "REDIS_KEY_PREFIX", "covid:".to_owned())?,
            dashboard_dir: PathBuf::from(var(
                lookup,
                "DASHBOARD_DIR",
                "dashboard/dist".to_owned(),
            )?),
            cors_origin: lookup("CORS_ORIGIN").filter(|s| !s.trim().is_empty()),
            sse_min_interval: Duration::from_millis(var(lookup, "SSE_MIN_INTERVAL_MS", 250u64)?),
            sse_refresh: Duration::from_millis(var(lookup, "SSE_REFRESH_MS", 5000u64)?.max(100)),
            sse_max_clients: var(lookup, "SSE_MAX_CLIENTS", 1000usize)?,
        })
    }
}
