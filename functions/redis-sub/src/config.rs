//! What a user sets for redis-sub, with defaults.

use std::time::Duration;

use anyhow::bail;
use runtime::config::var;

#[derive(Debug, Clone)]
pub struct SubConfig {
    pub mongo: store::MongoConfig,
    /// `REDIS_URL` (default `redis://127.0.0.1:6379/`).
    pub redis_url: String,
    /// `REDIS_KEY_PREFIX` (default `covid:`).
    pub key_prefix: String,
    /// `STREAM_CONSUMER` (default `true`): run the always-on consumer loop.
    /// `false` when a RedisStreamSource pushes events by HTTP instead.
    pub stream_consumer: bool,
    /// `CONSUMER_NAME` (default `<K_REVISION>-<host name>`): this consumer's
    /// name in the group; a restarted consumer with the same name resumes its
    /// own pending entries first.
    pub consumer_name: String,
    /// `READ_COUNT` (default 500): most entries read (and written) at once.
    pub read_count: usize,
    /// `READ_WAIT_MS` (default 5): after a read that found fewer than
    /// `READ_COUNT` entries, the next starts this long after it, so one write
    /// carries that long's cases. Bounds the latency grouping adds.
    pub read_wait: Duration,
    /// `CLAIM_IDLE_MS` (default 30000): entries pending this long on another
    /// (crashed) consumer are claimed by this one.
    pub claim_idle: Duration,
    /// `SOURCE_GROUP` (default `redis-stream-source`): the consumer group of
    /// eventing-redis' RedisStreamSource (its `spec.group`). Push mode
    /// acknowledges an entry in it when deleting the entry, so the source never
    /// re-reads a deleted entry it still held pending.
    pub source_group: String,
    /// `RECONCILE_AFTER_MS` (default 30000): push mode stores entries older
    /// than this itself, whether or not the source delivered them (it
    /// acknowledges refused deliveries and skips entries added while it was
    /// down).
    pub reconcile_after: Duration,
    /// `RECONCILE_INTERVAL_MS` (default 10000): how often push mode looks for them.
    pub reconcile_interval: Duration,
    /// `WRITE_DEADLINE_MS` (default 4000): how long one write retries MongoDB
    /// before the batch is retried from the top (the entries stay pending).
    pub write_deadline: Duration,
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_owned())
}

impl SubConfig {
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<SubConfig> {
        let revision = var(lookup, "K_REVISION", "redis-sub-local".to_owned())?;
        let read_count = var(lookup, "READ_COUNT", 500usize)?;
        // One read is one write and one counting record (see store::batch).
        let max = store::batch::RECORD_MAX_CASES;
        if !(1..=max).contains(&read_count) {
            bail!("READ_COUNT must be between 1 and {max}");
        }
        let reconcile_interval =
            Duration::from_millis(var(lookup, "RECONCILE_INTERVAL_MS", 10_000u64)?);
        if reconcile_interval.is_zero() {
            bail!("RECONCILE_INTERVAL_MS must be at least 1");
        }
        Ok(SubConfig {
            mongo: store::MongoConfig::from_lookup(lookup)?,
            redis_url: var(lookup, "REDIS_URL", "redis://127.0.0.1:6379/".to_owned())?,
            key_prefix: var(lookup, "REDIS_KEY_PREFIX", "covid:".to_owned())?,
            stream_consumer: var(lookup, "STREAM_CONSUMER", true)?,
            consumer_name: var(
                lookup,
                "CONSUMER_NAME",
                format!("{revision}-{}", host_name()),
            )?,
            read_count,
            read_wait: Duration::from_millis(var(lookup, "READ_WAIT_MS", 5u64)?),
            claim_idle: Duration::from_millis(var(lookup, "CLAIM_IDLE_MS", 30_000u64)?),
            source_group: var(lookup, "SOURCE_GROUP", "redis-stream-source".to_owned())?,
            reconcile_after: Duration::from_millis(var(lookup, "RECONCILE_AFTER_MS", 30_000u64)?),
            reconcile_interval,
            write_deadline: Duration::from_millis(var(lookup, "WRITE_DEADLINE_MS", 4000u64)?),
        })
    }
}
