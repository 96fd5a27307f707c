//! What a user sets for aggregate, with defaults.

use std::time::Duration;

use runtime::config::var;

#[derive(Debug, Clone)]
pub struct AggregateConfig {
    pub mongo: store::MongoConfig,
    /// `REDIS_URL` (default `redis://127.0.0.1:6379/`).
    pub redis_url: String,
    /// `REDIS_KEY_PREFIX` (default `covid:`).
    pub key_prefix: String,
    /// `AGGREGATE_FLUSH_MS` (default 20): events arriving within this window
    /// are counted in one transaction.
    pub flush_wait: Duration,
    /// `SWEEP_INTERVAL_MS` (default 1000): how often stored cases with no
    /// `case.stored` event yet, and interrupted Redis updates, are caught up.
    pub sweep_interval: Duration,
    /// `NOTIFY_MIN_INTERVAL_MS` (default 200): at most one `stats.updated`
    /// notice per interval, however many updates happen.
    pub notify_interval: Duration,
}

impl AggregateConfig {
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<AggregateConfig> {
        Ok(AggregateConfig {
            mongo: store::MongoConfig::from_lookup(lookup)?,
            redis_url: var(lookup, "REDIS_URL", "redis://127.0.0.1:6379/".to_owned())?,
            key_prefix: var(lookup, "REDIS_KEY_PREFIX", "covid:".to_owned())?,
            flush_wait: Duration::from_millis(var(lookup, "AGGREGATE_FLUSH_MS", 20u64)?),
            sweep_interval: Duration::from_millis(
                var(lookup, "SWEEP_INTERVAL_MS", 1000u64)?.max(10),
            ),
            notify_interval: Duration::from_millis(var(lookup, "NOTIFY_MIN_INTERVAL_MS", 200u64)?),
        })
    }
}
