//! What a user sets for aggregate: its variables, declared once.

use std::time::Duration;

use runtime::settings::{Default, Settings, Var};
use runtime::{Config, Env};
use store::config::{MONGODB_DATABASE, MONGODB_URI, REDIS_KEY_PREFIX, REDIS_URL};

const AGGREGATE_FLUSH_MS: Var = Var::new(
    "AGGREGATE_FLUSH_MS",
    Default::Value("200"),
    "after a flush that was not full, the next starts this long after it, so one transaction counts that long's events (at most 200 batches); an event after a quiet spell is counted at once",
);
const SWEEP_INTERVAL_MS: Var = Var::new(
    "SWEEP_INTERVAL_MS",
    Default::Value("1000"),
    "how often batches with no `case.stored` event yet are caught up (up to 2,000 batches a pass)",
);
const NOTIFY_MIN_INTERVAL_MS: Var = Var::new(
    "NOTIFY_MIN_INTERVAL_MS",
    Default::Value("200"),
    "at most one `stats.updated` notice per interval",
);

#[derive(Debug, Clone)]
pub struct AggregateConfig {
    pub mongo: store::MongoConfig,
    pub redis: store::RedisConfig,
    /// [`AGGREGATE_FLUSH_MS`]: the same interval as the `stats.updated`
    /// notices by default, since a dashboard hears of flushes no more often.
    pub flush_pace: Duration,
    /// [`SWEEP_INTERVAL_MS`]: also catches up interrupted Redis updates.
    pub sweep_interval: Duration,
    /// [`NOTIFY_MIN_INTERVAL_MS`], however many updates happen.
    pub notify_interval: Duration,
}

impl Settings for AggregateConfig {
    const VARS: &'static [Var] = &[
        MONGODB_URI,
        MONGODB_DATABASE,
        REDIS_URL,
        REDIS_KEY_PREFIX,
        AGGREGATE_FLUSH_MS,
        SWEEP_INTERVAL_MS,
        NOTIFY_MIN_INTERVAL_MS,
    ];

    fn read(env: &Env, _: &Config) -> anyhow::Result<AggregateConfig> {
        let millis = |var: &Var| env.parse(var).map(Duration::from_millis);
        Ok(AggregateConfig {
            mongo: store::MongoConfig::read(env)?,
            redis: store::RedisConfig::read(env)?,
            flush_pace: millis(&AGGREGATE_FLUSH_MS)?,
            sweep_interval: millis(&SWEEP_INTERVAL_MS)?.max(Duration::from_millis(10)),
            notify_interval: millis(&NOTIFY_MIN_INTERVAL_MS)?,
        })
    }
}

#[cfg(test)]
#[test]
fn the_declaration_matches_the_parser() {
    let problems = runtime::testing::declaration_problems::<crate::Function>(&[]);
    assert!(problems.is_empty(), "{problems:#?}");
}
