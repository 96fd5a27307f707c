//! The Redis key layout: where the pipeline's data lives in Redis.

/// Every Redis key the pipeline uses, under one prefix (`REDIS_KEY_PREFIX`),
/// so several stacks or tests can share one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Keys {
        Keys {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Stream ingest appends `case.reported` events to (Redis path).
    pub fn stream(&self) -> String {
        format!("{}cases:stream", self.prefix)
    }

    /// Consumer group of redis-sub on [`Keys::stream`].
    pub fn consumer_group(&self) -> String {
        "redis-sub".to_owned()
    }

    /// Pub/Sub channel of `stats.updated` notices for live dashboards.
    pub fn stats_channel(&self) -> String {
        format!("{}stats:updated", self.prefix)
    }

    /// Capped list of the last cases (JSON, newest first).
    pub fn recent_cases(&self) -> String {
        format!("{}cases:recent", self.prefix)
    }

    /// Hash of age-bucket label to count.
    pub fn age_buckets(&self) -> String {
        format!("{}stats:ages", self.prefix)
    }

    /// Hash of counters: totals, per path, per revision.
    pub fn totals(&self) -> String {
        format!("{}stats:totals", self.prefix)
    }

    /// Per-second counters (`cases`, `path:<p>`, `rev:<r>`) for live rates.
    pub fn rate(&self, unix_second: i64) -> String {
        format!("{}stats:rate:{unix_second}", self.prefix)
    }

    /// Marker that one aggregation flush was applied (idempotent replays).
    pub fn applied(&self, flush_id: &str) -> String {
        format!("{}stats:applied:{flush_id}", self.prefix)
    }

    /// Dead-letter stream: entries redis-sub could not decode, each with its
    /// raw [`events::redis::STREAM_FIELD`] value and the reason, kept until replayed.
    pub fn dead_letters(&self) -> String {
        format!("{}cases:dead", self.prefix)
    }
}

impl Default for Keys {
    fn default() -> Keys {
        Keys::new("covid:")
    }
}
