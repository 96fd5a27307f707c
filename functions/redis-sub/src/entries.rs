//! What redis-sub does with stream entries, however it learns of them (its
//! consumer group, eventing-redis' push, the reconciling pass): decode each
//! into a case, and once the cases are stored, acknowledge and delete the
//! entries in one transaction. An entry that cannot be decoded is moved to
//! the dead-letter stream with its raw payload and the reason, so it can be
//! replayed after a fix (`redis-sub replay-dead-letters`).

use events::Reported;
use events::redis::{Keys, STREAM_FIELD};
use redis::aio::ConnectionManager;
use redis::streams::StreamId;

/// Fields of a dead-letter entry.
pub mod dead_letter {
    /// The id the entry had in the case Stream.
    pub const ENTRY: &str = "entry";
    /// Why it could not be read.
    pub const ERROR: &str = "error";
    /// Its raw [`events::redis::STREAM_FIELD`] value, when it had one: the
    /// same field name, so a replay appends it to the Stream as it was.
    pub const PAYLOAD: &str = events::redis::STREAM_FIELD;
}

/// An entry that is not a case event (retrying it would never succeed).
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub entry: String,
    pub error: String,
    pub payload: Option<Vec<u8>>,
}

/// Entries read as cases, and the ones that are not.
#[derive(Debug, Default)]
pub struct Decoded {
    pub ids: Vec<String>,
    pub cases: Vec<Reported>,
    pub dead: Vec<DeadLetter>,
    /// The first case's trace context, carried by the batch's write.
    pub traceparent: Option<String>,
}

pub fn decode(entries: &[StreamId]) -> Decoded {
    let mut out = Decoded::default();
    for e in entries {
        out.ids.push(e.id.clone());
        let payload: Option<Vec<u8>> = e.get(STREAM_FIELD);
        match events::redis::decode_case_entry(payload.as_deref()) {
            Ok(r) => {
                if out.traceparent.is_none() {
                    out.traceparent = r.traceparent.clone();
                }
                out.cases.push(r);
            }
            Err(err) => out.dead.push(DeadLetter {
                entry: e.id.clone(),
                error: err.0,
                payload,
            }),
        }
    }
    out
}

/// After the cases of `decoded` are stored: in one transaction, adds its dead
/// letters, acknowledges its entries in each of `groups` (a group that does
/// not exist is left alone) and deletes them from the Stream.
pub async fn settle(
    conn: &mut ConnectionManager,
    keys: &Keys,
    groups: &[String],
    decoded: &Decoded,
) -> redis::RedisResult<()> {
    if decoded.ids.is_empty() {
        return Ok(());
    }
    let stream = keys.stream();
    let mut pipe = redis::pipe();
    pipe.atomic();
    for d in &decoded.dead {
        tracing::warn!(entry = %d.entry, error = %d.error, "undecodable stream entry moved to the dead-letter stream");
        // Not trimmed: these are cases ingest answered 202 for, kept until
        // replayed (`redis_sub_dead_letters` shows how many wait).
        let cmd = pipe
            .cmd("XADD")
            .arg(keys.dead_letters())
            .arg("*")
            .arg(dead_letter::ENTRY)
            .arg(&d.entry)
            .arg(dead_letter::ERROR)
            .arg(&d.error);
        if let Some(p) = &d.payload {
            cmd.arg(dead_letter::PAYLOAD).arg(p.as_slice());
        }
        cmd.ignore();
    }
    for group in groups {
        // XACK of a group that does not exist answers 0, not an error.
        pipe.cmd("XACK")
            .arg(&stream)
            .arg(group)
            .arg(&decoded.ids)
            .ignore();
    }
    pipe.cmd("XDEL").arg(&stream).arg(&decoded.ids).ignore();
    pipe.query_async::<()>(conn).await?;
    metrics::counter!("redis_sub_entries_total").increment(decoded.ids.len() as u64);
    if !decoded.dead.is_empty() {
        metrics::counter!("redis_sub_dead_letters_total").increment(decoded.dead.len() as u64);
    }
    Ok(())
}

/// Sets the `redis_sub_dead_letters` gauge: dead letters waiting for a replay.
pub async fn observe_dead_letters(conn: &mut ConnectionManager, keys: &Keys) {
    let len: redis::RedisResult<u64> = redis::cmd("XLEN")
        .arg(keys.dead_letters())
        .query_async(conn)
        .await;
    if let Ok(n) = len {
        metrics::gauge!("redis_sub_dead_letters").set(n as f64);
    }
}
