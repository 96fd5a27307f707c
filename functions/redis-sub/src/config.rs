//! What a user sets for redis-sub: its variables, declared once.

use std::time::Duration;

use anyhow::bail;
use runtime::settings::{Default, SetBy, Settings, Var};
use runtime::{Config, Env};
use store::config::{MONGODB_DATABASE, MONGODB_URI, REDIS_KEY_PREFIX, REDIS_URL};

const STREAM_CONSUMER: Var = Var::new(
    "STREAM_CONSUMER",
    Default::Value("true"),
    "run the always-on consumer; `false` when a RedisStreamSource pushes by HTTP",
);
const CONSUMER_NAME: Var = Var::new(
    "CONSUMER_NAME",
    Default::Computed("`<K_REVISION>-<HOSTNAME>`"),
    "name in the consumer group; a restarted consumer with the same name resumes its own pending entries first",
);
const STREAM_READERS: Var = Var::new(
    "STREAM_READERS",
    Default::Value("2"),
    "readers in the consumer group per process (1 to 16), each reading and storing its own batches as `CONSUMER_NAME`, `CONSUMER_NAME-2`, …, so a write MongoDB holds up does not hold up the Stream",
);
const READ_COUNT: Var = Var::new(
    "READ_COUNT",
    Default::Value("500"),
    "entries read and stored at once (at most 10,000)",
);
const READ_WAIT_MS: Var = Var::new(
    "READ_WAIT_MS",
    Default::Value("5"),
    "after a read that found fewer than `READ_COUNT` entries, the next starts this long after it, so one write carries that long's cases (a quiet Stream is read at once)",
);
const CLAIM_IDLE_MS: Var = Var::new(
    "CLAIM_IDLE_MS",
    Default::Value("30000"),
    "entries idle this long on a crashed consumer are claimed",
);
const WRITE_DEADLINE_MS: Var = Var::new(
    "WRITE_DEADLINE_MS",
    Default::Value("4000"),
    "one write's retry budget before the batch is retried",
);
const SOURCE_GROUP: Var = Var::new(
    "SOURCE_GROUP",
    Default::Value("redis-stream-source"),
    "push mode: the RedisStreamSource's consumer group (its `spec.group`); an entry redis-sub deletes is acknowledged there too",
);
const RECONCILE_AFTER_MS: Var = Var::new(
    "RECONCILE_AFTER_MS",
    Default::Value("30000"),
    "push mode: entries still in the Stream this long after they were added are stored by redis-sub itself, delivered or not",
);
const RECONCILE_INTERVAL_MS: Var = Var::new(
    "RECONCILE_INTERVAL_MS",
    Default::Value("10000"),
    "push mode: how often it looks for them",
);
const HOSTNAME: Var = Var::new(
    "HOSTNAME",
    Default::Computed("`/etc/hostname`, else `local`"),
    "this machine's (pod's) name, part of `CONSUMER_NAME`",
)
.set_by(SetBy::Platform);

#[derive(Debug, Clone)]
pub struct SubConfig {
    pub mongo: store::MongoConfig,
    /// The Stream is `<prefix>cases:stream`.
    pub redis: store::RedisConfig,
    /// [`STREAM_CONSUMER`].
    pub stream_consumer: bool,
    /// [`CONSUMER_NAME`].
    pub consumer_name: String,
    /// [`STREAM_READERS`].
    pub readers: usize,
    /// [`READ_COUNT`].
    pub read_count: usize,
    /// [`READ_WAIT_MS`]: bounds the latency grouping adds.
    pub read_wait: Duration,
    /// [`CLAIM_IDLE_MS`].
    pub claim_idle: Duration,
    /// [`SOURCE_GROUP`]: push mode acknowledges an entry in it when deleting
    /// the entry, so the source never re-reads a deleted entry it still held pending.
    pub source_group: String,
    /// [`RECONCILE_AFTER_MS`]: the source acknowledges refused deliveries and
    /// skips entries added while it was down.
    pub reconcile_after: Duration,
    /// [`RECONCILE_INTERVAL_MS`].
    pub reconcile_interval: Duration,
    /// [`WRITE_DEADLINE_MS`]: the entries stay pending while it is retried.
    pub write_deadline: Duration,
}

impl Settings for SubConfig {
    const VARS: &'static [Var] = &[
        REDIS_URL.used_as(
            REDIS_URL.default,
            "Redis; the Stream is `<REDIS_KEY_PREFIX>cases:stream`",
        ),
        REDIS_KEY_PREFIX,
        MONGODB_URI,
        MONGODB_DATABASE,
        STREAM_CONSUMER,
        CONSUMER_NAME,
        STREAM_READERS,
        READ_COUNT,
        READ_WAIT_MS,
        CLAIM_IDLE_MS,
        WRITE_DEADLINE_MS,
        SOURCE_GROUP,
        RECONCILE_AFTER_MS,
        RECONCILE_INTERVAL_MS,
        HOSTNAME,
    ];

    fn read(env: &Env, runtime: &Config) -> anyhow::Result<SubConfig> {
        let read_count = env.parse(&READ_COUNT)?;
        // One read is one write and one counting record (see store::batch).
        let max = store::batch::RECORD_MAX_CASES;
        if !(1..=max).contains(&read_count) {
            bail!("READ_COUNT must be between 1 and {max}");
        }
        let readers = env.parse(&STREAM_READERS)?;
        if !(1..=16).contains(&readers) {
            bail!("STREAM_READERS must be between 1 and 16");
        }
        let millis = |var: &Var| env.parse(var).map(Duration::from_millis);
        let reconcile_interval = millis(&RECONCILE_INTERVAL_MS)?;
        if reconcile_interval.is_zero() {
            bail!("RECONCILE_INTERVAL_MS must be at least 1");
        }
        let consumer_name = match env.raw(&CONSUMER_NAME) {
            Some(name) => name,
            None => format!("{}-{}", runtime.revision, host_name(env)),
        };
        Ok(SubConfig {
            mongo: store::MongoConfig::read(env)?,
            redis: store::RedisConfig::read(env)?,
            stream_consumer: env.parse(&STREAM_CONSUMER)?,
            consumer_name,
            readers,
            read_count,
            read_wait: millis(&READ_WAIT_MS)?,
            claim_idle: millis(&CLAIM_IDLE_MS)?,
            source_group: env.parse(&SOURCE_GROUP)?,
            reconcile_after: millis(&RECONCILE_AFTER_MS)?,
            reconcile_interval,
            write_deadline: millis(&WRITE_DEADLINE_MS)?,
        })
    }
}

fn host_name(env: &Env) -> String {
    env.raw(&HOSTNAME)
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_owned())
}

#[cfg(test)]
#[test]
fn the_declaration_matches_the_parser() {
    let problems = runtime::testing::declaration_problems::<crate::Function>(&[]);
    assert!(problems.is_empty(), "{problems:#?}");
}
