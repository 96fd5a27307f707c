//! The one crate that knows where data lives: MongoDB collections and Redis
//! keys, the idempotent writes every writer shares, the aggregation that
//! keeps the materialised statistics, and the reads behind the dashboard.
//! Every read the dashboard makes is O(number of areas), never O(cases).

pub mod batch;
pub mod cases;
pub mod config;
pub mod ingest_log;
pub mod keys;
pub mod mongo;
pub mod redis_stats;
pub mod stats;
#[cfg(feature = "testing")]
pub mod testing;
pub mod writer;

pub use cases::{CaseStore, InsertOutcome};
pub use config::{MongoConfig, RedisConfig};
pub use ingest_log::{IngestLog, LogEntry, LogRecord};
pub use keys::Keys;
pub use mongo::Mongo;
pub use redis_stats::RedisStats;
pub use stats::{Aggregator, AreaCount, StateCount, Totals};
pub use writer::Writer;
