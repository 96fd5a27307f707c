//! What a user sets for grpc-writer: its variables, declared once.

use std::time::Duration;

use anyhow::bail;
use runtime::settings::{Default, Settings, Var};
use runtime::{Config, Env};
use store::config::{MONGODB_DATABASE, MONGODB_URI};

const WRITE_BATCH_MAX: Var = Var::new(
    "WRITE_BATCH_MAX",
    Default::Value("1000"),
    "most cases in one bulk insert (at most 10,000: one write is one counting record)",
);
const WRITE_BATCH_WAIT_MS: Var = Var::new(
    "WRITE_BATCH_WAIT_MS",
    Default::Value("5"),
    "after a write that was not full, the next starts this long after it, so one insert carries that long's requests (a request after a quiet spell is written at once)",
);
const WRITES_IN_FLIGHT: Var = Var::new(
    "WRITES_IN_FLIGHT",
    Default::Value("2"),
    "bulk inserts running at once (1 to 64); requests arriving meanwhile join the next",
);
const WRITE_DEADLINE_MS: Var = Var::new(
    "WRITE_DEADLINE_MS",
    Default::Value("4000"),
    "how long a write retries MongoDB before answering UNAVAILABLE",
);
const WRITE_MAX_EVENTS: Var = Var::new(
    "WRITE_MAX_EVENTS",
    Default::Value("10000"),
    "most events in one `Write` call or one whole `WriteStream` (at most 10,000), counted before any is decoded; past it `RESOURCE_EXHAUSTED`",
);

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub mongo: store::MongoConfig,
    /// [`WRITE_BATCH_MAX`].
    pub batch_max: usize,
    /// [`WRITE_BATCH_WAIT_MS`]: bounds the latency grouping adds.
    pub batch_wait: Duration,
    /// [`WRITES_IN_FLIGHT`]: two by default. Once a write no longer looks
    /// its ids up first, two measured as fast as one at full load on one
    /// machine, and one transaction MongoDB holds up no longer holds up the
    /// next. When the whole server stalls, more in flight only start writes
    /// sooner: their callers still wait for the stall (BENCHMARKS.md).
    pub writes_in_flight: usize,
    /// [`WRITE_DEADLINE_MS`]: below ingest's 5 s `FORWARD_TIMEOUT_MS`.
    pub write_deadline: Duration,
    /// [`WRITE_MAX_EVENTS`]: ingest sends at most 1000 per call.
    pub max_events: usize,
}

impl Settings for WriterConfig {
    const VARS: &'static [Var] = &[
        MONGODB_URI,
        MONGODB_DATABASE,
        WRITE_BATCH_MAX,
        WRITE_BATCH_WAIT_MS,
        WRITES_IN_FLIGHT,
        WRITE_DEADLINE_MS,
        WRITE_MAX_EVENTS,
    ];

    fn read(env: &Env, _: &Config) -> anyhow::Result<WriterConfig> {
        let batch_max = env.parse(&WRITE_BATCH_MAX)?;
        // One write's counting record holds an entry per distinct area and
        // state: past RECORD_MAX_CASES it could near MongoDB's 16 MiB limit.
        let max = store::batch::RECORD_MAX_CASES;
        if !(1..=max).contains(&batch_max) {
            bail!("WRITE_BATCH_MAX must be between 1 and {max}");
        }
        let max_events = env.parse(&WRITE_MAX_EVENTS)?;
        if !(1..=max).contains(&max_events) {
            bail!("WRITE_MAX_EVENTS must be between 1 and {max}");
        }
        let writes_in_flight = env.parse(&WRITES_IN_FLIGHT)?;
        if !(1..=64).contains(&writes_in_flight) {
            bail!("WRITES_IN_FLIGHT must be between 1 and 64");
        }
        Ok(WriterConfig {
            mongo: store::MongoConfig::read(env)?,
            batch_max,
            batch_wait: Duration::from_millis(env.parse(&WRITE_BATCH_WAIT_MS)?),
            writes_in_flight,
            write_deadline: Duration::from_millis(env.parse(&WRITE_DEADLINE_MS)?),
            max_events,
        })
    }
}

#[cfg(test)]
#[test]
fn the_declaration_matches_the_parser() {
    let problems = runtime::testing::declaration_problems::<crate::Function>(&[]);
    assert!(problems.is_empty(), "{problems:#?}");
}
