//! Event type names and the typed events of the pipeline, with conversion to
//! and from CloudEvents.

use chrono::{DateTime, Utc};
use cloudevents::event::{AttributesReader, Data, ExtensionValue};
use cloudevents::{Event, EventBuilder, EventBuilderV10};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::case::{Case, InternalCase};

/// CloudEvent `type` attributes. Triggers and filters match on these.
pub mod types {
    /// A case accepted by ingest, on its way to a writer. Data: the case.
    pub const CASE_REPORTED: &str = "io.covidrealtime.case.reported.v1";
    /// Cases newly stored in MongoDB by a writer. Data: [`super::StoredBatch`].
    pub const CASE_STORED: &str = "io.covidrealtime.case.stored.v2";
    /// The materialised statistics changed. Data: [`super::StatsUpdated`].
    pub const STATS_UPDATED: &str = "io.covidrealtime.stats.updated.v1";
}

/// Extension attribute carrying the W3C trace context across hops.
pub const EXT_TRACEPARENT: &str = "traceparent";
/// Extension attribute naming the ingest revision that accepted the case.
pub const EXT_REVISION: &str = "revision";

const JSON: &str = "application/json";

/// Which write path stored a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WritePath {
    Grpc,
    Redis,
    /// Stored by a writer reached through a plain Knative sink (HTTP CloudEvent).
    Http,
}

impl WritePath {
    pub const ALL: [WritePath; 3] = [WritePath::Grpc, WritePath::Redis, WritePath::Http];

    pub fn as_str(self) -> &'static str {
        match self {
            WritePath::Grpc => "grpc",
            WritePath::Redis => "redis",
            WritePath::Http => "http",
        }
    }
}

impl std::fmt::Display for WritePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an incoming CloudEvent is not one this pipeline accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EventError(pub String);

impl EventError {
    fn new(msg: impl Into<String>) -> Self {
        EventError(msg.into())
    }
}

/// A case accepted at ingest: `case.reported`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    /// The case's one id for its whole life (the CloudEvent id).
    pub id: String,
    pub case: Case,
    pub time: DateTime<Utc>,
    /// Serving revision of the ingest function that accepted it.
    pub revision: Option<String>,
    pub traceparent: Option<String>,
}

impl Reported {
    /// A new id: UUIDv7, so ids sort by acceptance time.
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    /// A UUIDv7 with the given time and the given 74 "random" bits (taken
    /// from `bits`). Deterministic: ingest derives `bits` from a client's
    /// `Idempotency-Key`, so a retried request gets the same ids, and passes
    /// the key's first-seen time, so the ids still sort by acceptance time.
    pub fn id_at(unix_ms: u64, bits: &[u8; 10]) -> String {
        uuid::Builder::from_unix_timestamp_millis(unix_ms, bits)
            .into_uuid()
            .to_string()
    }

    pub fn to_event(&self, source: &str) -> Event {
        let mut b = EventBuilderV10::new()
            .id(self.id.clone())
            .source(source.to_owned())
            .ty(types::CASE_REPORTED)
            .time(self.time)
            .data(
                JSON,
                serde_json::to_value(&self.case).expect("a case serializes"),
            );
        if let Some(r) = &self.revision {
            b = b.extension(EXT_REVISION, r.clone());
        }
        if let Some(t) = &self.traceparent {
            b = b.extension(EXT_TRACEPARENT, t.clone());
        }
        b.build().expect("every required attribute is set")
    }

    pub fn from_event(event: &Event) -> Result<Reported, EventError> {
        expect_type(event, types::CASE_REPORTED)?;
        // Tolerant of fields added by a newer sender (see `InternalCase`).
        let case: Case = json_data::<InternalCase>(event)?.into();
        Ok(Reported {
            id: event.id().to_owned(),
            case,
            time: event.time().copied().unwrap_or_else(Utc::now),
            revision: string_extension(event, EXT_REVISION),
            traceparent: string_extension(event, EXT_TRACEPARENT),
        })
    }
}

/// A case as stored in MongoDB `cases` and as carried by `case.stored`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCase {
    pub id: String,
    #[serde(flatten)]
    pub case: Case,
    pub path: WritePath,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// When ingest accepted it (milliseconds since the epoch).
    pub reported_ms: i64,
    /// When the writer stored it (milliseconds since the epoch).
    pub stored_ms: i64,
}

impl StoredCase {
    pub fn from_reported(r: &Reported, path: WritePath, stored_at: DateTime<Utc>) -> StoredCase {
        StoredCase {
            id: r.id.clone(),
            case: r.case.clone(),
            path,
            revision: r.revision.clone(),
            reported_ms: r.time.timestamp_millis(),
            stored_ms: stored_at.timestamp_millis(),
        }
    }
}

/// Data of `case.stored`: one write's newly stored cases, named by the id of
/// the counting record the writer stored with them, with the record's deltas
/// when they are small (a few KiB for a normal write, whatever its size; a
/// larger record is read by the aggregate, so the event stays small).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBatch {
    /// Id of the batch's counting record.
    pub batch: String,
    /// How many cases the batch newly stored.
    pub cases: u64,
    /// The record's deltas (BSON, standard base64) when small. The aggregate
    /// applies them only if they are the stored record's own (their SHA-256
    /// is the record's `digest`); absent or not matching, it reads the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

impl StoredBatch {
    /// One event for the batch; its id is derived from the record's, so a
    /// redelivered batch keeps its id.
    pub fn to_event(&self, source: &str, traceparent: Option<&str>) -> Event {
        let mut b = EventBuilderV10::new()
            .id(format!("stored-{}", self.batch))
            .source(source.to_owned())
            .ty(types::CASE_STORED)
            .time(Utc::now())
            .data(
                JSON,
                serde_json::to_value(self).expect("a batch serializes"),
            );
        if let Some(t) = traceparent {
            b = b.extension(EXT_TRACEPARENT, t.to_owned());
        }
        b.build().expect("every required attribute is set")
    }

    pub fn from_event(event: &Event) -> Result<StoredBatch, EventError> {
        expect_type(event, types::CASE_STORED)?;
        json_data(event)
    }
}

/// Data of `stats.updated`: a small notice; readers fetch the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsUpdated {
    /// Total stored cases after the update.
    pub total: u64,
    /// When the update was applied (milliseconds since the epoch).
    pub at_ms: i64,
}

impl StatsUpdated {
    pub fn to_event(&self, source: &str) -> Event {
        EventBuilderV10::new()
            .id(Reported::new_id())
            .source(source.to_owned())
            .ty(types::STATS_UPDATED)
            .time(Utc::now())
            .data(
                JSON,
                serde_json::to_value(self).expect("a notice serializes"),
            )
            .build()
            .expect("every required attribute is set")
    }

    pub fn from_event(event: &Event) -> Result<StatsUpdated, EventError> {
        expect_type(event, types::STATS_UPDATED)?;
        json_data(event)
    }
}

/// Longest event id accepted: ids become MongoDB `_id`s, and ours are 36
/// characters.
pub const MAX_ID_CHARS: usize = 256;

/// What every received CloudEvent must be, whichever encoding brought it
/// (HTTP, Redis, protobuf): spec version 1.0 (the protobuf format and Knative
/// speak only 1.0, and a 0.3 event does not survive re-encoding), with a
/// non-empty id of at most [`MAX_ID_CHARS`], a source and a type. Found by
/// fuzzing: the SDK's HTTP and JSON decoders accept 0.3 and empty attributes.
pub fn check_received(event: &Event) -> Result<(), EventError> {
    if event.specversion() != cloudevents::event::SpecVersion::V10 {
        return Err(EventError::new(format!(
            "unsupported CloudEvents specversion {:?}: send 1.0",
            event.specversion().as_str()
        )));
    }
    for (name, value) in [
        ("id", event.id()),
        ("source", event.source().as_str()),
        ("type", event.ty()),
    ] {
        if value.trim().is_empty() {
            return Err(EventError::new(format!(
                "the CloudEvent has an empty {name}"
            )));
        }
    }
    if event.id().chars().count() > MAX_ID_CHARS {
        return Err(EventError::new(format!(
            "the CloudEvent id is over {MAX_ID_CHARS} characters"
        )));
    }
    if event.id().chars().any(char::is_control) {
        return Err(EventError::new(
            "the CloudEvent id contains a control character (NUL, newline...)",
        ));
    }
    if let Some(t) = event.time()
        && !(0..=9999).contains(&chrono::Datelike::year(t))
    {
        // RFC 3339, the HTTP and JSON encodings' format, has 4-digit years.
        return Err(EventError::new(format!(
            "the CloudEvent time {t} is out of range (years 0 to 9999)"
        )));
    }
    for (name, value) in event.iter_extensions() {
        check_extension_name(name)?;
        check_extension_value(name, value)?;
    }
    if let Some(r) = string_extension(event, EXT_REVISION) {
        check_revision(&r)?;
    }
    Ok(())
}

/// Longest extension value accepted (a traceparent is 55 characters).
pub const MAX_EXTENSION_CHARS: usize = 512;

/// An extension value is carried into logs, stores and other encodings: at
/// most [`MAX_EXTENSION_CHARS`], and no control characters (a NUL cannot be
/// part of a BSON key, and no encoding carries it unchanged).
fn check_extension_value(name: &str, value: &ExtensionValue) -> Result<(), EventError> {
    let ExtensionValue::String(s) = value else {
        return Ok(());
    };
    if s.chars().count() > MAX_EXTENSION_CHARS {
        return Err(EventError::new(format!(
            "CloudEvent extension {name:?} is over {MAX_EXTENSION_CHARS} characters"
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(EventError::new(format!(
            "CloudEvent extension {name:?} contains a control character (NUL, newline...)"
        )));
    }
    Ok(())
}

/// Longest revision name: a Kubernetes object name that is a DNS label.
pub const MAX_REVISION_CHARS: usize = 63;

/// A revision name (the `revision` extension, `K_REVISION`) becomes a
/// MongoDB field name, a Redis hash field and a metric label, so it must be
/// a DNS-label-like token: 1 to [`MAX_REVISION_CHARS`] ASCII letters,
/// digits, `-` or `_`. Knative's own revision names (`ingest-00001`) are.
pub fn check_revision(revision: &str) -> Result<(), EventError> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if revision.is_empty() || revision.len() > MAX_REVISION_CHARS || !revision.bytes().all(token) {
        return Err(EventError::new(format!(
            "revision {revision:?} is not a revision name: use 1 to {MAX_REVISION_CHARS} ASCII \
             letters, digits, '-' or '_' (like Knative's ingest-00001)"
        )));
    }
    Ok(())
}

/// Attribute names the CloudEvents formats reserve: an extension by one of
/// these names (`ce-data` in binary mode, say) would collide with them.
const RESERVED: [&str; 11] = [
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "schemaurl",
    "datacontentencoding",
];

/// An extension name must be lowercase ASCII letters and digits (CloudEvents
/// 1.0, as Knative validates `ceOverrides`) and not a reserved name.
pub fn check_extension_name(name: &str) -> Result<(), EventError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(EventError::new(format!(
            "CloudEvent extension {name:?} is not a valid attribute name: use lowercase letters and digits only"
        )));
    }
    if RESERVED.contains(&name) {
        return Err(EventError::new(format!(
            "CloudEvent extension {name:?} uses a reserved attribute name"
        )));
    }
    Ok(())
}

fn expect_type(event: &Event, ty: &str) -> Result<(), EventError> {
    if event.ty() != ty {
        return Err(EventError::new(format!(
            "unexpected CloudEvent type {:?}: expected {ty:?}",
            event.ty()
        )));
    }
    Ok(())
}

/// The event's data parsed as JSON, whichever way it arrived: binary-mode
/// HTTP delivers bytes even for JSON, structured mode a JSON value.
pub fn json_data<T: DeserializeOwned>(event: &Event) -> Result<T, EventError> {
    let parsed = match event.data() {
        Some(Data::Json(v)) => serde_json::from_value(v.clone()),
        Some(Data::Binary(b)) => serde_json::from_slice(b),
        Some(Data::String(s)) => serde_json::from_str(s),
        None => return Err(EventError::new("the CloudEvent has no data")),
    };
    parsed.map_err(|e| EventError::new(format!("CloudEvent {} has invalid data: {e}", event.id())))
}

pub fn string_extension(event: &Event, name: &str) -> Option<String> {
    match event.extension(name)? {
        ExtensionValue::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Reported {
        Reported {
            id: Reported::new_id(),
            case: Case::new("Ana", "Peten", 40, "imported", "active").unwrap(),
            time: Utc::now(),
            revision: Some("ingest-00001".into()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        }
    }

    #[test]
    fn ids_at_a_time_are_deterministic_v7_and_sort_by_time() {
        let a = Reported::id_at(1_700_000_000_000, &[7; 10]);
        assert_eq!(a, Reported::id_at(1_700_000_000_000, &[7; 10]));
        assert_ne!(a, Reported::id_at(1_700_000_000_000, &[8; 10]));
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 7);
        assert_eq!(u.get_timestamp().unwrap().to_unix().0, 1_700_000_000);
        assert!(
            Reported::id_at(1_700_000_000_001, &[0; 10])
                > Reported::id_at(1_700_000_000_000, &[255; 10])
        );
        assert!(
            Reported::new_id() > a,
            "a keyed id sorts among new ids by its time"
        );
    }

    #[test]
    fn reported_round_trips() {
        let r = sample();
        let back = Reported::from_event(&r.to_event("/covid-realtime/ingest")).unwrap();
        assert_eq!(back.id, r.id);
        assert_eq!(back.case, r.case);
        assert_eq!(back.revision, r.revision);
        assert_eq!(back.traceparent, r.traceparent);
    }

    #[test]
    fn binary_data_is_parsed_as_json() {
        let r = sample();
        let mut e = r.to_event("/x");
        e.set_data(JSON, serde_json::to_vec(&r.case).unwrap());
        assert_eq!(Reported::from_event(&e).unwrap().case, r.case);
    }

    #[test]
    fn a_case_with_a_field_added_by_a_newer_sender_is_read_and_the_field_ignored() {
        let r = sample();
        let mut e = r.to_event("/x");
        let mut data = serde_json::to_value(&r.case).unwrap();
        data["vaccinated"] = serde_json::json!(true);
        e.set_data(JSON, data.clone());
        assert_eq!(Reported::from_event(&e).unwrap().case, r.case);
        // Still typed and checked: a known field with a bad value is refused.
        data["age"] = serde_json::json!(400);
        e.set_data(JSON, data);
        assert!(Reported::from_event(&e).is_err());
        // The public edge stays strict.
        let body = serde_json::json!({"name": "A", "location": "L", "age": 3,
            "infectedtype": "x", "state": "y", "vaccinated": true});
        assert!(crate::parse_case(body.to_string().as_bytes()).is_err());
    }

    #[test]
    fn revisions_that_cannot_be_field_names_or_labels_are_refused_on_receipt() {
        for bad in [
            "",
            "bad\u{0}rev",
            "a.b$c",
            "x".repeat(64).as_str(),
            "rev ision",
        ] {
            let mut r = sample();
            r.revision = Some(bad.to_owned());
            let err = check_received(&r.to_event("/x")).unwrap_err();
            assert!(err.0.contains("revision"), "{bad:?}: {err}");
        }
        for good in ["ingest-00001", "ingest-grpc-local", "R_1"] {
            assert_eq!(check_revision(good), Ok(()));
        }
        let mut r = sample();
        r.traceparent = Some("00-\u{0}".into());
        assert!(check_received(&r.to_event("/x")).is_err());
        r = sample();
        r.id = "id\u{0}".into();
        assert!(check_received(&r.to_event("/x")).is_err());
    }

    #[test]
    fn wrong_type_and_bad_data_are_errors() {
        let r = sample();
        let batch = StoredBatch {
            batch: "b-0197".to_owned(),
            cases: 3,
            record: None,
        };
        let e = batch.to_event("/w", None);
        assert!(
            Reported::from_event(&e)
                .unwrap_err()
                .0
                .contains("unexpected CloudEvent type")
        );
        let mut bad = r.to_event("/x");
        bad.set_data(JSON, serde_json::json!({"name": {"$gt": ""}}));
        assert!(Reported::from_event(&bad).is_err());
        assert_eq!(StoredBatch::from_event(&e).unwrap(), batch);
    }
}
