//! What redis-sub does with stream entries, however it learns of them (its
//! consumer group, eventing-redis' push, the reconciling pass): decode each
//! into a case, and once the cases are stored, acknowledge and delete the
//! entries in one transaction. An entry that cannot be decoded is moved to
//! the dead-letter stream with its raw payload and the reason, so it can be
//! replayed after a fix (`redis-sub replay-dead-letters`).

use events::Reported;
use events::redis::STREAM_FIELD;
use redis::aio::ConnectionManager;
use redis::streams::StreamId;
use store::Keys;

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

/// Acknowledges (in each group), deletes, and dead-letters entries in one
/// atomic step. A dead letter is added only by the call that deletes its
/// entry, so two settles of one entry (a push racing the reconciling pass, or
/// a consumer) leave one dead letter, not two. A dead letter's fields:
/// `entry` (its id in the Stream), `error` (why), `ce` (the raw
/// [`STREAM_FIELD`] value, when it had one: a replay appends it as it was).
/// KEYS: the Stream, the dead-letter stream. ARGV: the number of groups, the
/// groups, then per entry: id, error (empty when stored), "1" if a payload
/// follows else "0", payload.
const SETTLE: &str = r#"
local ngroups = tonumber(ARGV[1])
local i = ngroups + 2
local dead = 0
while i <= #ARGV do
  local id, err = ARGV[i], ARGV[i + 1]
  for g = 2, ngroups + 1 do redis.call('XACK', KEYS[1], ARGV[g], id) end
  if redis.call('XDEL', KEYS[1], id) == 1 and err ~= '' then
    if ARGV[i + 2] == '1' then
      redis.call('XADD', KEYS[2], '*', 'entry', id, 'error', err, 'ce', ARGV[i + 3])
    else
      redis.call('XADD', KEYS[2], '*', 'entry', id, 'error', err)
    end
    dead = dead + 1
  end
  i = i + 4
end
return dead
"#;

/// After the cases of `decoded` are stored: acknowledges its entries in each
/// of `groups` (a group that does not exist is left alone), deletes them
/// from the Stream, and adds its dead letters, atomically.
pub async fn settle(
    conn: &mut ConnectionManager,
    keys: &Keys,
    groups: &[String],
    decoded: &Decoded,
) -> redis::RedisResult<()> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(SETTLE));
    if decoded.ids.is_empty() {
        return Ok(());
    }
    let mut inv = SCRIPT.key(keys.stream());
    inv.key(keys.dead_letters()).arg(groups.len()).arg(groups);
    let mut dead = decoded.dead.iter().peekable();
    for id in &decoded.ids {
        match dead.next_if(|d| &d.entry == id) {
            Some(d) => {
                tracing::warn!(entry = %d.entry, error = %d.error, "undecodable stream entry moved to the dead-letter stream");
                // Not trimmed: these are cases ingest answered 202 for, kept
                // until replayed (`redis_sub_dead_letters` shows how many wait).
                let error = if d.error.is_empty() {
                    "unreadable entry"
                } else {
                    &d.error
                };
                inv.arg(id).arg(error);
                match &d.payload {
                    Some(p) => inv.arg("1").arg(p.as_slice()),
                    None => inv.arg("0").arg(""),
                };
            }
            None => {
                inv.arg(id).arg("").arg("0").arg("");
            }
        }
    }
    let added: u64 = inv.invoke_async(conn).await?;
    metrics::counter!("redis_sub_entries_total").increment(decoded.ids.len() as u64);
    if added > 0 {
        metrics::counter!("redis_sub_dead_letters_total").increment(added);
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
