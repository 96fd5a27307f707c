//! The MongoDB half of the statistics and the aggregation that keeps both
//! halves exactly once.
//!
//! A writer stores each batch with a counting record (see [`crate::batch`]).
//! A flush counts a set of those records in one MongoDB transaction: it
//! reads them, deletes them (the deletion is the "counted" mark, so a
//! redelivered `case.stored` finds nothing), adds their merged deltas to the
//! per-area, per-state and total counters, and writes an outbox record of
//! the Redis update. After the commit the Redis update is applied (at most
//! once, by flush id) and the outbox record deleted. A crash between the two
//! leaves the outbox record, which the next sweep replays. Records whose
//! `case.stored` event never arrived are found by the sweep too, so the
//! counters always converge to the stored documents, in O(batches). A
//! record whose event carried its deltas is deleted by id and digest instead
//! of being read (see [`crate::batch`]).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use futures::TryStreamExt;
use mongodb::ClientSession;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::{TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};
use serde::Serialize;

use crate::batch::{Carried, Deltas, field_safe};
use crate::mongo::{AREA_STATS, BATCHES, DEAD_BATCHES, Mongo, OUTBOX, STATE_STATS, TOTALS};
use crate::redis_stats::{Ranking, RedisStats};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AreaCount {
    pub location: String,
    pub cases: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateCount {
    pub state: String,
    pub cases: u64,
    /// The entry that sums every state past the top ones (`state: "other"`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub other: bool,
}

/// Most states listed by name; the rest are summed into one "other" entry,
/// so a list sent to every dashboard stays small whatever clients invent.
pub const STATES_LISTED: u32 = 10;

/// The materialised totals (MongoDB).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub total: u64,
    pub by_path: BTreeMap<String, u64>,
    pub by_revision: BTreeMap<String, u64>,
}

#[derive(Clone)]
pub struct Aggregator {
    mongo: Mongo,
    redis: RedisStats,
}

fn as_u64(b: Option<&Bson>) -> u64 {
    match b {
        Some(Bson::Int32(v)) => (*v).max(0) as u64,
        Some(Bson::Int64(v)) => (*v).max(0) as u64,
        Some(Bson::Double(v)) => v.max(0.0) as u64,
        _ => 0,
    }
}

impl Aggregator {
    pub fn new(mongo: Mongo, redis: RedisStats) -> Aggregator {
        Aggregator { mongo, redis }
    }

    pub fn redis(&self) -> &RedisStats {
        &self.redis
    }

    /// Counts the batches with these record ids exactly once; returns what
    /// this call counted (records already counted, or unknown, add nothing).
    pub async fn count_batches(&self, batch_ids: &[String]) -> anyhow::Result<Counted> {
        let batches: Vec<ToCount> = batch_ids
            .iter()
            .map(|id| ToCount {
                id: id.clone(),
                carried: None,
            })
            .collect();
        self.count(batches).await
    }

    /// [`Aggregator::count_batches`] for records named by their events, some
    /// with the deltas the event carried: those records are deleted by id
    /// and digest, not read. If any of them is not deleted so (counted
    /// already, or the deltas are not its own), the flush reads every record
    /// instead, so what is counted is always what the records hold.
    pub async fn count(&self, mut batches: Vec<ToCount>) -> anyhow::Result<Counted> {
        batches.sort_by(|a, b| a.id.cmp(&b.id));
        batches.dedup_by(|a, b| a.id == b.id);
        if batches.is_empty() {
            return Ok(Counted::default());
        }
        self.mongo.ensure_indexes().await?;
        let flush_id = uuid::Uuid::now_v7().to_string();
        let mut attempt = 0;
        let mut use_carried = true;
        let counted = loop {
            attempt += 1;
            let mut session = self.mongo.client().start_session().await?;
            match self
                .count_in(&mut session, &batches, use_carried, &flush_id)
                .await
            {
                Ok(c) => break c,
                Err(e) if is_carried_mismatch(&e) => {
                    let _ = session.abort_transaction().await;
                    metrics::counter!("aggregate_carried_refused_total").increment(1);
                    use_carried = false;
                    attempt -= 1;
                }
                Err(e)
                    if attempt < 8
                        && (e.contains_label(TRANSIENT_TRANSACTION_ERROR)
                            || e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                            || is_write_conflict(&e)) =>
                {
                    let _ = session.abort_transaction().await;
                    tokio::time::sleep(Duration::from_millis(5 * attempt)).await;
                }
                Err(e) => {
                    let _ = session.abort_transaction().await;
                    return Err(e.into());
                }
            }
        };
        if counted.deltas.cases > 0 {
            self.apply_redis(&flush_id, &counted.deltas).await?;
        }
        Ok(counted)
    }

    async fn count_in(
        &self,
        session: &mut ClientSession,
        batches: &[ToCount],
        use_carried: bool,
        flush_id: &str,
    ) -> mongodb::error::Result<Counted> {
        session.start_transaction().await?;
        let records = self.mongo.collection(BATCHES);
        let (carried, read): (Vec<&ToCount>, Vec<&ToCount>) = batches
            .iter()
            .partition(|b| use_carried && b.carried.is_some());
        let mut deltas = Deltas::default();
        let mut counted = 0;
        // Carried deltas: the record is deleted only with its own digest.
        let carried: Vec<(&str, &Carried)> = carried
            .iter()
            .filter_map(|b| Some((b.id.as_str(), b.carried.as_ref()?)))
            .collect();
        if !carried.is_empty() {
            let clauses: Vec<Document> = carried
                .iter()
                .map(|(id, c)| doc! {"_id": *id, "digest": &c.digest})
                .collect();
            let deleted = records
                .delete_many(doc! {"$or": clauses})
                .session(&mut *session)
                .await?;
            if deleted.deleted_count != carried.len() as u64 {
                session.abort_transaction().await?;
                return Err(mongodb::error::Error::custom(CarriedMismatch));
            }
            for (_, c) in &carried {
                deltas.merge(c.deltas.clone());
            }
            counted += carried.len();
        }
        // The others: read, then deleted.
        let ids: Vec<&str> = read.iter().map(|b| b.id.as_str()).collect();
        if !ids.is_empty() {
            let found: Vec<Document> = records
                .find(doc! {"_id": {"$in": &ids}})
                .session(&mut *session)
                .await?
                .stream(&mut *session)
                .try_collect()
                .await?;
            let found_ids: Vec<String> = found
                .iter()
                .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
                .collect();
            if !found_ids.is_empty() {
                let deleted = records
                    .delete_many(doc! {"_id": {"$in": &found_ids}})
                    .session(&mut *session)
                    .await?;
                if deleted.deleted_count != found_ids.len() as u64 {
                    // Another aggregator counted some of them meanwhile: start over.
                    session.abort_transaction().await?;
                    return Err(mongodb::error::Error::custom(WriteConflict));
                }
            }
            counted += found_ids.len();
            for r in found {
                match Deltas::from_doc(&r) {
                    Some(d) => deltas.merge(d),
                    None => self.dead_letter(session, r).await?,
                }
            }
        }
        if counted == 0 {
            session.abort_transaction().await?;
            return Ok(Counted::default());
        }
        self.apply_mongo(session, &deltas).await?;
        let mut outbox = deltas.to_doc();
        outbox.insert("_id", flush_id);
        outbox.insert("created", DateTime::now());
        self.mongo
            .collection(OUTBOX)
            .insert_one(outbox)
            .session(&mut *session)
            .await?;
        session.commit_transaction().await?;
        Ok(Counted {
            batches: counted,
            deltas,
        })
    }

    /// One `$inc` per area and state, and one for the totals.
    async fn apply_mongo(
        &self,
        session: &mut ClientSession,
        d: &Deltas,
    ) -> mongodb::error::Result<()> {
        for (coll, counts) in [(AREA_STATS, &d.areas), (STATE_STATS, &d.states)] {
            let c = self.mongo.collection(coll);
            for (k, n) in counts {
                c.update_one(doc! {"_id": k}, doc! {"$inc": {"cases": *n}})
                    .upsert(true)
                    .session(&mut *session)
                    .await?;
            }
        }
        let mut inc = doc! {"cases": d.cases};
        for (p, n) in d.by_path() {
            inc.insert(format!("by_path.{}", field_safe(p)), n);
        }
        for (r, n) in d.by_revision() {
            let key = format!("by_revision.{}", field_safe(r));
            let sum = inc.get_i64(&key).unwrap_or(0) + n;
            inc.insert(key, sum);
        }
        self.mongo
            .collection(TOTALS)
            .update_one(
                doc! {"_id": "totals"},
                doc! {"$inc": inc, "$set": {"updated_at": DateTime::now()}},
            )
            .upsert(true)
            .session(&mut *session)
            .await?;
        Ok(())
    }

    /// Moves a counting record this version cannot read into
    /// [`DEAD_BATCHES`] with the reason, inside the counting transaction
    /// (which has already deleted it from the outbox), so it never holds
    /// back the batches counted with it. Replay: fix the record and insert
    /// it back into `stats_batches`; the sweep counts it.
    async fn dead_letter(
        &self,
        session: &mut ClientSession,
        record: Document,
    ) -> mongodb::error::Result<()> {
        let id = record.get("_id").cloned().unwrap_or(Bson::Null);
        let reason = "a counting record this version cannot read";
        tracing::warn!(record = %id, reason, "moved to the dead letters");
        metrics::counter!("aggregate_batches_dead_lettered_total").increment(1);
        self.mongo
            .collection(DEAD_BATCHES)
            .replace_one(
                doc! {"_id": &id},
                doc! {"_id": &id, "reason": reason, "at": DateTime::now(), "record": record},
            )
            .upsert(true)
            .session(&mut *session)
            .await?;
        Ok(())
    }

    /// The newest `limit` dead-lettered counting records: `(id, reason)`.
    pub async fn dead_letters(&self, limit: i64) -> mongodb::error::Result<Vec<(String, String)>> {
        let docs: Vec<Document> = self
            .mongo
            .collection(DEAD_BATCHES)
            .find(doc! {})
            .sort(doc! {"at": -1})
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        Ok(docs
            .iter()
            .map(|d| {
                let id = match d.get("_id") {
                    Some(Bson::String(s)) => s.clone(),
                    other => format!("{other:?}"),
                };
                (id, d.get_str("reason").unwrap_or("").to_owned())
            })
            .collect())
    }

    async fn apply_redis(&self, flush_id: &str, deltas: &Deltas) -> anyhow::Result<()> {
        self.redis
            .apply(flush_id, deltas, Utc::now().timestamp_millis())
            .await?;
        self.mongo
            .collection(OUTBOX)
            .delete_one(doc! {"_id": flush_id})
            .await?;
        Ok(())
    }

    /// Catches up: replays Redis updates a crash interrupted, then counts
    /// batch records older than `older_than` that no event told us about, at
    /// most `limit` records. Returns how many cases it counted. (aggregate
    /// itself hands the records to its flusher instead, so one task counts.)
    pub async fn sweep(&self, older_than: Duration, limit: i64) -> anyhow::Result<u64> {
        self.replay_interrupted(older_than, limit).await?;
        let ids: Vec<String> = self
            .uncounted_batches(older_than, limit)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let mut cases = 0;
        // A bounded number of records per transaction.
        for chunk in ids.chunks(SWEEP_RECORDS_PER_FLUSH) {
            cases += self.count_batches(chunk).await?.deltas.cases.max(0) as u64;
        }
        Ok(cases)
    }

    /// Applies the Redis half of flushes a crash interrupted (outbox records
    /// older than `older_than`, at most `limit`).
    pub async fn replay_interrupted(&self, older_than: Duration, limit: i64) -> anyhow::Result<()> {
        self.mongo.ensure_indexes().await?;
        let pending: Vec<Document> = self
            .mongo
            .collection(OUTBOX)
            .find(doc! {"created": {"$lt": cutoff(older_than)}})
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        for d in pending {
            let (Ok(id), Some(deltas)) = (d.get_str("_id"), Deltas::from_doc(&d)) else {
                continue;
            };
            tracing::info!(
                flush = id,
                cases = deltas.cases,
                "replaying an interrupted statistics update"
            );
            self.apply_redis(id, &deltas).await?;
        }
        Ok(())
    }

    /// Ids and case counts of the oldest batch records older than
    /// `older_than` (at most `limit`): batches whose `case.stored` event
    /// never arrived, or has not yet.
    pub async fn uncounted_batches(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> mongodb::error::Result<Vec<(String, u64)>> {
        self.mongo.ensure_indexes().await?;
        Ok(self
            .mongo
            .collection(BATCHES)
            .find(doc! {"created": {"$lt": cutoff(older_than)}})
            .projection(doc! {"_id": 1, "cases": 1})
            .sort(doc! {"created": 1})
            .limit(limit)
            .await?
            .try_collect::<Vec<Document>>()
            .await?
            .iter()
            .filter_map(|d| {
                let id = d.get_str("_id").ok()?.to_owned();
                Some((id, as_u64(d.get("cases"))))
            })
            .collect())
    }

    /// How many counting records wait (a gauge of how far counting trails).
    pub async fn pending_batches(&self) -> mongodb::error::Result<u64> {
        self.mongo
            .collection(BATCHES)
            .estimated_document_count()
            .await
    }

    /// Top `n` areas by cases (ties by name), from the Redis ranking: the
    /// read costs the same for 22 areas as for 100,000 invented ones.
    pub async fn top_areas(&self, n: u32) -> redis::RedisResult<Vec<AreaCount>> {
        Ok(self
            .redis
            .top(Ranking::Areas, n as usize)
            .await?
            .into_iter()
            .map(|(location, cases)| AreaCount { location, cases })
            .collect())
    }

    /// The [`STATES_LISTED`] states with most cases, largest first, then
    /// one `other` entry with the cases of all the rest (when there are
    /// any): the Redis total minus those listed, so the read costs the same
    /// for 4 states as for 100,000.
    pub async fn states(&self) -> redis::RedisResult<Vec<StateCount>> {
        let (top, totals) = tokio::join!(
            self.redis.top(Ranking::States, STATES_LISTED as usize),
            self.redis.totals()
        );
        let mut states: Vec<StateCount> = top?
            .into_iter()
            .map(|(state, cases)| StateCount {
                state,
                cases,
                other: false,
            })
            .collect();
        let listed: u64 = states.iter().map(|s| s.cases).sum();
        let total = totals?.get("cases").copied().unwrap_or(0).max(0) as u64;
        let rest = total.saturating_sub(listed);
        if rest > 0 {
            states.push(StateCount {
                state: "other".to_owned(),
                cases: rest,
                other: true,
            });
        }
        Ok(states)
    }

    /// The totals document (zeros before the first case).
    pub async fn totals(&self) -> mongodb::error::Result<Totals> {
        let Some(d) = self
            .mongo
            .collection(TOTALS)
            .find_one(doc! {"_id": "totals"})
            .await?
        else {
            return Ok(Totals::default());
        };
        let map = |key: &str| -> BTreeMap<String, u64> {
            d.get_document(key)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), as_u64(Some(v))))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Totals {
            total: as_u64(d.get("cases")),
            by_path: map("by_path"),
            by_revision: map("by_revision"),
        })
    }
}

/// What one flush counted.
#[derive(Debug, Clone, Default)]
pub struct Counted {
    /// Batch records counted (and deleted) by this flush.
    pub batches: usize,
    /// What they added.
    pub deltas: Deltas,
}

/// The time `older_than` ago, as a MongoDB date.
fn cutoff(older_than: Duration) -> DateTime {
    DateTime::from_millis(Utc::now().timestamp_millis() - older_than.as_millis() as i64)
}

/// Records counted in one sweep transaction.
const SWEEP_RECORDS_PER_FLUSH: usize = 100;

#[derive(Debug, thiserror::Error)]
#[error("write conflict: another aggregator counted some of these cases")]
struct WriteConflict;

/// A record to count, as a `case.stored` event (or the sweep) names it.
#[derive(Debug, Clone)]
pub struct ToCount {
    /// The record's id.
    pub id: String,
    /// The deltas the event carried, if any.
    pub carried: Option<Carried>,
}

#[derive(Debug, thiserror::Error)]
#[error("carried deltas not applied: a record was counted already or holds other deltas")]
struct CarriedMismatch;

fn is_carried_mismatch(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, mongodb::error::ErrorKind::Custom(c) if c.is::<CarriedMismatch>())
}

fn is_write_conflict(e: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    match &*e.kind {
        ErrorKind::Custom(c) => c.is::<WriteConflict>(),
        ErrorKind::Command(c) => c.code == 112,
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => w.code == 112,
        _ => false,
    }
}
