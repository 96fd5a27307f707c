//! The Redis encodings: stream entries of the Redis write path, and the key
//! layout every function shares under one prefix.

use cloudevents::Event;

use crate::event::EventError;

/// Field of a stream entry holding the CloudEvent in structured JSON mode
/// (the CloudEvents JSON format), so every attribute and extension, the
/// trace context included, survives the hop.
pub const STREAM_FIELD: &str = "ce";

/// Encodes an event as the value of [`STREAM_FIELD`].
pub fn encode(event: &Event) -> Vec<u8> {
    serde_json::to_vec(event).expect("a CloudEvent serializes")
}

/// Decodes a stream entry value written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Event, EventError> {
    let event: Event = serde_json::from_slice(bytes).map_err(|e| {
        EventError(format!(
            "stream entry is not a CloudEvent in JSON format: {e}"
        ))
    })?;
    crate::event::check_received(&event)?;
    Ok(event)
}

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

    /// Dead-letter stream: entries redis-sub could not decode, kept for a look.
    pub fn dead_letters(&self) -> String {
        format!("{}cases:dead", self.prefix)
    }
}

impl Default for Keys {
    fn default() -> Keys {
        Keys::new("covid:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Case, Reported};

    #[test]
    fn stream_payload_round_trips() {
        let r = Reported {
            id: Reported::new_id(),
            case: Case::new("Ana", "Peten", 40, "imported", "active").unwrap(),
            time: chrono::Utc::now(),
            revision: Some("r1".into()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        };
        let back = Reported::from_event(&decode(&encode(&r.to_event("/ingest"))).unwrap()).unwrap();
        assert_eq!(back.case, r.case);
        assert_eq!(back.traceparent, r.traceparent);
        assert!(decode(b"{\"id\":1}").is_err());
    }
}
