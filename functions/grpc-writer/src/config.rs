//! What a user sets for grpc-writer, with defaults.

use std::time::Duration;

use anyhow::bail;
use runtime::config::var;

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub mongo: store::MongoConfig,
    /// `WRITE_BATCH_MAX` (default 1000): most cases in one bulk insert.
    pub batch_max: usize,
    /// `WRITE_BATCH_WAIT_MS` (default 2): how long the first request of a
    /// batch waits for others to join it. Bounds the latency grouping adds.
    pub batch_wait: Duration,
    /// `WRITES_IN_FLIGHT` (default 2): bulk inserts running at once. With
    /// one, requests wait for the previous commit before their batch starts.
    pub writes_in_flight: usize,
    /// `WRITE_DEADLINE_MS` (default 4000): how long a write keeps retrying
    /// MongoDB before the caller is told UNAVAILABLE (below ingest's 5 s).
    pub write_deadline: Duration,
    /// `WRITE_MAX_EVENTS` (default 10000): most events in one `Write` call or
    /// one whole `WriteStream`, counted before they are decoded; past it the
    /// call ends with `RESOURCE_EXHAUSTED`. Ingest sends at most 1000 per call.
    pub max_events: usize,
}

impl WriterConfig {
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<WriterConfig> {
        let batch_max = var(lookup, "WRITE_BATCH_MAX", 1000usize)?;
        // One write's counting record holds an entry per distinct area and
        // state: past RECORD_MAX_CASES it could near MongoDB's 16 MiB limit.
        let max = store::batch::RECORD_MAX_CASES;
        if !(1..=max).contains(&batch_max) {
            bail!("WRITE_BATCH_MAX must be between 1 and {max}");
        }
        let max_events = var(lookup, "WRITE_MAX_EVENTS", 10_000usize)?;
        if !(1..=max).contains(&max_events) {
            bail!("WRITE_MAX_EVENTS must be between 1 and {max}");
        }
        let writes_in_flight = var(lookup, "WRITES_IN_FLIGHT", 2usize)?;
        if !(1..=64).contains(&writes_in_flight) {
            bail!("WRITES_IN_FLIGHT must be between 1 and 64");
        }
        Ok(WriterConfig {
            mongo: store::MongoConfig::from_lookup(lookup)?,
            batch_max,
            batch_wait: Duration::from_millis(var(lookup, "WRITE_BATCH_WAIT_MS", 2u64)?),
            writes_in_flight,
            write_deadline: Duration::from_millis(var(lookup, "WRITE_DEADLINE_MS", 4000u64)?),
            max_events,
        })
    }
}
