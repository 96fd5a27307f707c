//! The Redis encodings: stream entries of the Redis write path. Where they
//! live (the key layout) is `store::Keys`.

use cloudevents::Event;

use crate::event::{EventError, Reported};

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

/// Reads a stream entry's [`STREAM_FIELD`] value as a `case.reported` event:
/// what redis-sub does with every entry, however it learns of it (its own
/// consumer group, eventing-redis' push, the reconciling pass, a replay).
pub fn decode_case_entry(value: Option<&[u8]>) -> Result<Reported, EventError> {
    let raw = value.ok_or_else(|| EventError(format!("entry has no {STREAM_FIELD:?} field")))?;
    Reported::from_event(&decode(raw)?)
}

/// CloudEvent type of eventing-redis' RedisStreamSource adapter
/// (`RedisStreamSourceEventType` in its `pkg/source/adapter/adapter.go`).
pub const STREAM_SOURCE_TYPE: &str = "dev.knative.sources.redisstream";

/// One stream entry as eventing-redis' RedisStreamSource delivers it. Its
/// adapter does not forward the entry's own event: it sends a new CloudEvent
/// of type [`STREAM_SOURCE_TYPE`] whose id is the entry id, whose source is
/// `<address>/<stream>`, and whose `application/json` data is the entry's
/// field/value pairs as one array of strings (`["ce", "<event JSON>"]` for
/// this project's entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedEntry {
    /// The stream entry id (`<milliseconds>-<sequence>`).
    pub id: String,
    /// The source attribute: `<Redis address>/<stream name>`.
    pub source: String,
    /// The entry's field/value pairs, in order.
    pub fields: Vec<(String, String)>,
}

impl SourcedEntry {
    pub fn from_event(event: &Event) -> Result<SourcedEntry, EventError> {
        use cloudevents::event::AttributesReader;
        if event.ty() != STREAM_SOURCE_TYPE {
            return Err(EventError(format!(
                "unexpected CloudEvent type {:?}: expected {STREAM_SOURCE_TYPE:?}",
                event.ty()
            )));
        }
        if !is_stream_id(event.id()) {
            return Err(EventError(format!(
                "CloudEvent id {:?} is not a stream entry id (<milliseconds>-<sequence>)",
                event.id()
            )));
        }
        let flat: Vec<String> = crate::event::json_data(event)?;
        if !flat.len().is_multiple_of(2) {
            return Err(EventError(format!(
                "CloudEvent {} data has {} strings: expected field/value pairs",
                event.id(),
                flat.len()
            )));
        }
        let mut it = flat.into_iter();
        let mut fields = Vec::new();
        while let (Some(f), Some(v)) = (it.next(), it.next()) {
            fields.push((f, v));
        }
        Ok(SourcedEntry {
            id: event.id().to_owned(),
            source: event.source().to_string(),
            fields,
        })
    }

    /// Whether the event names `stream` as its stream (the adapter's source
    /// ends with `/<stream>`).
    pub fn is_from(&self, stream: &str) -> bool {
        self.source
            .strip_suffix(stream)
            .is_some_and(|head| head.ends_with('/'))
    }

    /// The value of `field`, if the entry has it.
    pub fn field(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether `id` is a complete stream entry id: `<milliseconds>-<sequence>`,
/// both decimal u64.
pub fn is_stream_id(id: &str) -> bool {
    let Some((ms, seq)) = id.split_once('-') else {
        return false;
    };
    ms.parse::<u64>().is_ok()
        && seq.parse::<u64>().is_ok()
        && ms.bytes().chain(seq.bytes()).all(|b| b.is_ascii_digit())
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

    #[test]
    fn stream_ids_are_milliseconds_dash_sequence() {
        for good in [
            "0-0",
            "1764626400123-0",
            "18446744073709551615-18446744073709551615",
        ] {
            assert!(is_stream_id(good), "{good}");
        }
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "1-2-3",
            "+1-2",
            "1- 2",
            "18446744073709551616-0",
            "*",
            "$",
        ] {
            assert!(!is_stream_id(bad), "{bad}");
        }
    }
}
