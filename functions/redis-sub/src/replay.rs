//! `redis-sub replay-dead-letters`: after a fix (a newer redis-sub that
//! reads what an older one refused), appends each dead letter's payload to
//! the case Stream again, where the consumer (or the source and the
//! reconciling pass) stores it like any entry. A dead letter leaves its
//! stream only in the same transaction that re-adds its payload, and only
//! when this build reads it as a case; the others stay, with their reasons
//! printed.

use events::redis::STREAM_FIELD;
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use store::Keys;

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Payloads appended to the Stream again (their dead letters deleted).
    pub replayed: usize,
    /// Dead letters this build still cannot read: id and reason; kept.
    pub still_refused: Vec<(String, String)>,
    /// Dead letters with no payload (an entry without a `ce` field); kept.
    pub without_payload: usize,
}

/// Replays at most `limit` dead letters, oldest first. With `dry_run`,
/// only reports what it would do.
pub async fn replay_dead_letters(
    conn: &mut ConnectionManager,
    keys: &Keys,
    limit: usize,
    dry_run: bool,
) -> redis::RedisResult<Replayed> {
    let mut out = Replayed::default();
    let mut start = "-".to_owned();
    let mut seen = 0;
    while seen < limit {
        let page: StreamRangeReply = redis::cmd("XRANGE")
            .arg(keys.dead_letters())
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg((limit - seen).min(500))
            .query_async(conn)
            .await?;
        let Some(last) = page.ids.last() else { break };
        start = format!("({}", last.id);
        seen += page.ids.len();
        for dead in &page.ids {
            let Some(payload) = dead.get::<Vec<u8>>(STREAM_FIELD) else {
                out.without_payload += 1;
                continue;
            };
            if let Err(e) = events::redis::decode_case_entry(Some(&payload)) {
                out.still_refused.push((dead.id.clone(), e.0));
                continue;
            }
            if !dry_run {
                redis::pipe()
                    .atomic()
                    .cmd("XADD")
                    .arg(keys.stream())
                    .arg("*")
                    .arg(STREAM_FIELD)
                    .arg(payload)
                    .ignore()
                    .cmd("XDEL")
                    .arg(keys.dead_letters())
                    .arg(&dead.id)
                    .ignore()
                    .query_async::<()>(conn)
                    .await?;
            }
            out.replayed += 1;
        }
    }
    Ok(out)
}
