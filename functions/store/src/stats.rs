//! The MongoDB half of the statistics and the aggregation that keeps both
//! halves exactly once.
//!
//! A flush counts a set of case ids. In one MongoDB transaction it finds
//! which of them are stored and not yet counted, marks them counted, adds
//! them to the per-area, per-state and total counters, and writes an outbox
//! record of the Redis update. After the commit the Redis update is applied
//! (at most once, by flush id) and the outbox record deleted. A crash
//! between the two leaves the outbox record, which the next sweep replays.
//! Cases whose `case.stored` event never arrived are found by the sweep too
//! (`counted: false`), so the counters always converge to the stored documents.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use events::StoredCase;
use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::{TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};
use serde::Serialize;

use crate::cases::parse_doc;
use crate::mongo::{AREA_STATS, CASES, DEAD_CASES, Mongo, OUTBOX, STATE_STATS, TOTALS};
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

/// A revision name as a MongoDB field name: no `.` or `$`.
fn field_safe(s: &str) -> String {
    s.replace(['.', '$'], "_")
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

    /// Counts the cases with these ids exactly once; returns the ones this
    /// call counted (already counted or unknown ids are left out).
    pub async fn count(&self, ids: &[String]) -> anyhow::Result<Vec<StoredCase>> {
        let mut ids: Vec<String> = ids.to_vec();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.mongo.ensure_indexes().await?;
        let flush_id = uuid::Uuid::now_v7().to_string();
        let mut attempt = 0;
        let counted = loop {
            attempt += 1;
            match self.count_in_transaction(&ids, &flush_id).await {
                Ok(c) => break c,
                Err(e)
                    if attempt < 8
                        && (e.contains_label(TRANSIENT_TRANSACTION_ERROR)
                            || e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                            || is_write_conflict(&e)) =>
                {
                    tokio::time::sleep(Duration::from_millis(5 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if !counted.is_empty() {
            self.apply_redis(&flush_id, &counted).await?;
        }
        Ok(counted)
    }

    async fn count_in_transaction(
        &self,
        ids: &[String],
        flush_id: &str,
    ) -> mongodb::error::Result<Vec<StoredCase>> {
        let mut session = self.mongo.client().start_session().await?;
        session.start_transaction().await?;
        let cases = self.mongo.collection(CASES);
        let docs: Vec<Document> = cases
            .find(doc! {"_id": {"$in": ids}, "counted": false})
            .session(&mut session)
            .await?
            .stream(&mut session)
            .try_collect()
            .await?;
        let mut found = Vec::with_capacity(docs.len());
        let mut dead = Vec::new();
        for d in docs {
            match parse_doc(&d) {
                Ok(c) => found.push(c),
                Err(reason) => dead.push((d, reason)),
            }
        }
        if found.is_empty() && dead.is_empty() {
            session.abort_transaction().await?;
            return Ok(found);
        }
        self.dead_letter(&mut session, dead).await?;
        if found.is_empty() {
            session.commit_transaction().await?;
            return Ok(found);
        }
        let found_ids: Vec<&str> = found.iter().map(|c| c.id.as_str()).collect();
        let marked = cases
            .update_many(
                doc! {"_id": {"$in": &found_ids}, "counted": false},
                doc! {"$set": {"counted": true}},
            )
            .session(&mut session)
            .await?;
        if marked.modified_count != found.len() as u64 {
            // Another aggregator counted some of them meanwhile: start over.
            session.abort_transaction().await?;
            return Err(mongodb::error::Error::custom(WriteConflict));
        }
        let mut areas: BTreeMap<&str, i64> = BTreeMap::new();
        let mut states: BTreeMap<&str, i64> = BTreeMap::new();
        let mut inc = Document::new();
        inc.insert("cases", found.len() as i64);
        for c in &found {
            *areas.entry(c.case.location.as_str()).or_default() += 1;
            *states.entry(c.case.state.as_str()).or_default() += 1;
            bump(&mut inc, &format!("by_path.{}", c.path));
            if let Some(r) = &c.revision {
                bump(&mut inc, &format!("by_revision.{}", field_safe(r)));
            }
        }
        for (coll, counts) in [(AREA_STATS, &areas), (STATE_STATS, &states)] {
            let c = self.mongo.collection(coll);
            for (k, n) in counts {
                c.update_one(doc! {"_id": *k}, doc! {"$inc": {"cases": *n}})
                    .upsert(true)
                    .session(&mut session)
                    .await?;
            }
        }
        self.mongo
            .collection(TOTALS)
            .update_one(
                doc! {"_id": "totals"},
                doc! {"$inc": inc, "$set": {"updated_at": DateTime::now()}},
            )
            .upsert(true)
            .session(&mut session)
            .await?;
        let outbox_cases: Vec<Bson> = found
            .iter()
            .map(|c| Bson::String(serde_json::to_string(c).expect("a case serializes")))
            .collect();
        self.mongo
            .collection(OUTBOX)
            .insert_one(doc! {"_id": flush_id, "created": DateTime::now(), "cases": outbox_cases})
            .session(&mut session)
            .await?;
        session.commit_transaction().await?;
        Ok(found)
    }

    /// Moves stored cases that cannot be counted (a document this version
    /// cannot read, a revision that cannot be a field name) out of `cases`
    /// into [`DEAD_CASES`] with the reason, in the counting transaction, so
    /// one bad case never holds back the cases counted with it and the
    /// counters keep agreeing with `cases`. Replay: fix the document and
    /// insert it back into `cases` with `counted: false`.
    async fn dead_letter(
        &self,
        session: &mut mongodb::ClientSession,
        dead: Vec<(Document, String)>,
    ) -> mongodb::error::Result<()> {
        for (d, reason) in dead {
            let id = d.get("_id").cloned().unwrap_or(Bson::Null);
            tracing::warn!(case = %id, reason = %reason, "a stored case cannot be counted; moved to the dead letters");
            metrics::counter!("aggregate_cases_dead_lettered_total").increment(1);
            self.mongo
                .collection(CASES)
                .delete_one(doc! {"_id": &id, "counted": false})
                .session(&mut *session)
                .await?;
            self.mongo
                .collection(DEAD_CASES)
                .replace_one(
                    doc! {"_id": &id},
                    doc! {"_id": &id, "reason": reason, "at": DateTime::now(), "case": d},
                )
                .upsert(true)
                .session(&mut *session)
                .await?;
        }
        Ok(())
    }

    /// The newest `limit` dead-lettered cases: `(id, reason)`.
    pub async fn dead_letters(&self, limit: i64) -> mongodb::error::Result<Vec<(String, String)>> {
        let docs: Vec<Document> = self
            .mongo
            .collection(DEAD_CASES)
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

    async fn apply_redis(&self, flush_id: &str, cases: &[StoredCase]) -> anyhow::Result<()> {
        self.redis
            .apply(flush_id, cases, Utc::now().timestamp_millis())
            .await?;
        self.mongo
            .collection(OUTBOX)
            .delete_one(doc! {"_id": flush_id})
            .await?;
        Ok(())
    }

    /// Catches up: counts stored cases no event told us about, and replays
    /// Redis updates a crash interrupted. Returns how many cases it counted.
    pub async fn sweep(&self, older_than: Duration, limit: i64) -> anyhow::Result<usize> {
        self.mongo.ensure_indexes().await?;
        let cutoff =
            DateTime::from_millis(Utc::now().timestamp_millis() - older_than.as_millis() as i64);
        let pending: Vec<Document> = self
            .mongo
            .collection(OUTBOX)
            .find(doc! {"created": {"$lt": cutoff}})
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        for d in pending {
            let (Ok(id), Ok(raw)) = (d.get_str("_id"), d.get_array("cases")) else {
                continue;
            };
            let cases: Vec<StoredCase> = raw
                .iter()
                .filter_map(|b| b.as_str())
                .filter_map(|s| serde_json::from_str(s).ok())
                .collect();
            tracing::info!(
                flush = id,
                cases = cases.len(),
                "replaying an interrupted statistics update"
            );
            self.apply_redis(id, &cases).await?;
        }
        let ids: Vec<String> = self
            .mongo
            .collection(CASES)
            .find(doc! {"counted": false, "stored_at": {"$lt": cutoff}})
            .projection(doc! {"_id": 1})
            .limit(limit)
            .await?
            .try_collect::<Vec<Document>>()
            .await?
            .iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(self.count(&ids).await?.len())
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

fn bump(inc: &mut Document, key: &str) {
    let n = match inc.get(key) {
        Some(Bson::Int64(n)) => *n,
        _ => 0,
    };
    inc.insert(key, n + 1);
}

#[derive(Debug, thiserror::Error)]
#[error("write conflict: another aggregator counted some of these cases")]
struct WriteConflict;

fn is_write_conflict(e: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    match &*e.kind {
        ErrorKind::Custom(c) => c.is::<WriteConflict>(),
        ErrorKind::Command(c) => c.code == 112,
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => w.code == 112,
        _ => false,
    }
}
