//! `POST /`: the push form of the Redis path, for when redis-sub scales to
//! zero behind eventing-redis' RedisStreamSource (`STREAM_CONSUMER=false`).
//!
//! That source's adapter sends each entry as a `dev.knative.sources.redisstream`
//! event (see `events::redis::SourcedEntry`), then XACKs the entry in its own
//! group whatever the answer, and never deletes it. So redis-sub treats a
//! delivery as a notice that one entry is ready: it stores the case the
//! Stream holds under that id (not what the request claims), then
//! acknowledges (in the source's group too) and deletes the entry. Entries
//! the source never delivers are found by the reconciling pass (`reconcile`).
//!
//! A plain `case.reported` event (a Broker or SinkBinding delivery) is
//! stored as it is.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use events::http::CloudEvent;
use events::redis::{STREAM_FIELD, STREAM_SOURCE_TYPE, SourcedEntry};
use events::{Event, Reported};
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use runtime::ApiError;
use store::Keys;

use crate::entries;

pub struct Push {
    pub writer: store::Writer,
    pub deadline: Duration,
    pub conn: ConnectionManager,
    pub keys: Keys,
    /// Groups an entry is acknowledged in when it is deleted.
    pub groups: Vec<String>,
}

/// 202 once stored (or already stored), 200 when the entry is no longer in
/// the Stream (already stored), 400 for an event that is neither form or an
/// entry moved to the dead-letter stream, 409 when the delivery does not
/// match the Stream's entry (another Redis, say: nothing is done), 503 if
/// MongoDB or Redis is away.
pub async fn push(
    State(s): State<Arc<Push>>,
    CloudEvent(event): CloudEvent,
) -> Result<StatusCode, ApiError> {
    use events::cloudevents::AttributesReader;
    if event.ty() == STREAM_SOURCE_TYPE {
        return push_entry(&s, &event).await;
    }
    let r = Reported::from_event(&event).map_err(|e| ApiError::bad_request(e.0))?;
    let tp = r.traceparent.clone();
    s.writer
        .write(&[r], tp.as_deref(), s.deadline)
        .await
        .map_err(not_stored)?;
    Ok(StatusCode::ACCEPTED)
}

async fn push_entry(s: &Push, event: &Event) -> Result<StatusCode, ApiError> {
    let sourced = SourcedEntry::from_event(event).map_err(|e| ApiError::bad_request(e.0))?;
    let stream = s.keys.stream();
    if !sourced.is_from(&stream) {
        return Err(ApiError::bad_request(format!(
            "the event's source {:?} is not the stream {stream:?} this redis-sub stores: \
             point the RedisStreamSource's spec.stream at it (REDIS_KEY_PREFIX + \"cases:stream\")",
            sourced.source
        )));
    }
    let mut conn = s.conn.clone();
    let found: StreamRangeReply = redis::cmd("XRANGE")
        .arg(&stream)
        .arg(&sourced.id)
        .arg(&sourced.id)
        .query_async(&mut conn)
        .await
        .map_err(redis_away)?;
    let Some(entry) = found.ids.into_iter().next() else {
        // Deleted only once stored (an earlier delivery, the reconciling
        // pass) or dead-lettered: nothing left to do.
        return Ok(StatusCode::OK);
    };
    let held: Option<Vec<u8>> = entry.get(STREAM_FIELD);
    // The adapter carries values as JSON strings: bytes that are not UTF-8
    // (never a case; they get dead-lettered) cannot arrive as they are.
    let comparable = held
        .as_deref()
        .is_none_or(|h| std::str::from_utf8(h).is_ok());
    if comparable && sourced.field(STREAM_FIELD).map(str::as_bytes) != held.as_deref() {
        // Left in place: the reconciling pass stores what the Stream holds.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the delivered {STREAM_FIELD:?} field differs from the Stream's entry {}: nothing done",
                sourced.id
            ),
        ));
    }
    let decoded = entries::decode(std::slice::from_ref(&entry));
    s.writer
        .write(&decoded.cases, decoded.traceparent.as_deref(), s.deadline)
        .await
        .map_err(not_stored)?;
    entries::settle(&mut conn, &s.keys, &s.groups, &decoded)
        .await
        .map_err(redis_away)?;
    match decoded.dead.first() {
        Some(d) => Err(ApiError::bad_request(format!(
            "entry {} moved to the dead-letter stream: {}",
            d.entry, d.error
        ))),
        None => Ok(StatusCode::ACCEPTED),
    }
}

fn not_stored(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("not stored, retry: {e}"), Duration::from_secs(1))
}

fn redis_away(e: redis::RedisError) -> ApiError {
    ApiError::unavailable(
        format!("Redis unavailable, retry: {e}"),
        Duration::from_secs(1),
    )
}
