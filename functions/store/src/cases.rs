//! MongoDB `cases`: one document per case, `_id` = the case's event id, so
//! a retried or redelivered write is a no-op reported as a duplicate.
//!
//! A write stores a batch's new cases and its counting record (see
//! [`crate::batch`]) in one transaction: one insert per case and a record
//! per batch. The ids are looked up first only when that fails on a
//! duplicate key (a retry or a redelivery).

use std::collections::HashSet;

use chrono::Utc;
use events::{Case, Reported, StoredCase, WritePath};
use futures::TryStreamExt;
use mongodb::ClientSession;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::ErrorKind;

use crate::batch::{Deltas, Record};
use crate::mongo::{BATCHES, CASES, Mongo};

/// What one bulk write did.
#[derive(Debug, Default, Clone)]
pub struct InsertOutcome {
    /// Newly stored by this write.
    pub stored: Vec<StoredCase>,
    /// Ids that were already stored (a retry or a redelivery).
    pub duplicates: Vec<String>,
    /// The counting record of the newly stored cases (`None` when nothing
    /// was new): the id `case.stored` carries to the aggregate.
    pub batch: Option<String>,
    /// The record's deltas (BSON) when small enough for `case.stored` to
    /// carry ([`crate::batch::CARRIED_MAX_BYTES`]).
    pub carried: Option<Vec<u8>>,
}

/// Whether a write looks its ids up before inserting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// Insert straight away: a duplicate key fails the transaction.
    No,
    /// Find which ids are stored already and insert only the others.
    First,
}

/// A write whose caller's deadline passed before its commit: nothing stored.
#[derive(Debug, thiserror::Error)]
#[error("the caller's deadline passed before the commit: nothing was stored")]
pub struct DeadlinePassed;

/// Whether `e` is [`DeadlinePassed`].
pub fn is_deadline_passed(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, ErrorKind::Custom(c) if c.is::<DeadlinePassed>())
}

#[derive(Clone)]
pub struct CaseStore {
    mongo: Mongo,
}

/// The stored document. Only typed values go in: strings, an integer age,
/// dates; nothing a client sends can become an operator.
fn to_doc(s: &StoredCase) -> Document {
    doc! {
        "_id": &s.id,
        "name": s.case.name.as_str(),
        "location": s.case.location.as_str(),
        "age": i32::from(s.case.age.years()),
        "infectedtype": s.case.infectedtype.as_str(),
        "state": s.case.state.as_str(),
        "path": s.path.as_str(),
        "revision": s.revision.as_deref().map(Bson::from).unwrap_or(Bson::Null),
        "reported_at": DateTime::from_millis(s.reported_ms),
        "stored_at": DateTime::from_millis(s.stored_ms),
    }
}

/// Reads a stored document back; `None` if it is not one of ours.
pub fn from_doc(d: &Document) -> Option<StoredCase> {
    parse_doc(d).ok()
}

/// Reads a stored document back, or says which field makes it not one of ours.
pub fn parse_doc(d: &Document) -> Result<StoredCase, String> {
    let field = |name: &str| format!("field {name:?} is missing or not valid");
    let path = match d.get_str("path").map_err(|_| field("path"))? {
        "grpc" => WritePath::Grpc,
        "redis" => WritePath::Redis,
        "http" => WritePath::Http,
        other => return Err(format!("unknown write path {other:?}")),
    };
    let age = match d.get("age") {
        Some(Bson::Int32(a)) => i64::from(*a),
        Some(Bson::Int64(a)) => *a,
        _ => return Err(field("age")),
    };
    let text = |name: &str| d.get_str(name).map_err(|_| field(name));
    let case = Case::new(
        text("name")?,
        text("location")?,
        age,
        text("infectedtype")?,
        text("state")?,
    )
    .map_err(|e| e.to_string())?;
    let revision = match d.get("revision") {
        None | Some(Bson::Null) => None,
        Some(Bson::String(r)) => {
            events::check_revision(r).map_err(|e| e.0)?;
            Some(r.clone())
        }
        Some(_) => return Err(field("revision")),
    };
    let time = |name: &str| {
        d.get_datetime(name)
            .map(|t| t.timestamp_millis())
            .map_err(|_| field(name))
    };
    Ok(StoredCase {
        id: text("_id")?.to_owned(),
        case,
        path,
        revision,
        reported_ms: time("reported_at")?,
        stored_ms: time("stored_at")?,
    })
}

/// One page of the stored collection, newest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page {
    pub cases: Vec<StoredCase>,
    /// Cursor for the next page (the last id of this one), `None` at the end.
    pub next: Option<String>,
}

impl CaseStore {
    pub fn new(mongo: Mongo) -> CaseStore {
        CaseStore { mongo }
    }

    /// Stores every case not stored yet and the batch's counting record, in
    /// one transaction: either both are stored or neither is. A concurrent
    /// writer of the same ids makes the transaction fail with a duplicate
    /// key or a write conflict; the caller retries, and the retry finds them.
    pub async fn insert(
        &self,
        reported: &[Reported],
        path: WritePath,
    ) -> mongodb::error::Result<InsertOutcome> {
        self.insert_by(reported, path, None).await
    }

    /// [`CaseStore::insert`], committed only if `commit_by` has not passed:
    /// past it the transaction is aborted and the error is
    /// [`DeadlinePassed`], so the caller, whose own caller has given up, can
    /// say for certain that nothing was stored.
    pub async fn insert_by(
        &self,
        reported: &[Reported],
        path: WritePath,
        commit_by: Option<tokio::time::Instant>,
    ) -> mongodb::error::Result<InsertOutcome> {
        if reported.is_empty() {
            return Ok(InsertOutcome::default());
        }
        self.mongo.ensure_indexes().await?;
        let now = Utc::now();
        // An id repeated within the request is stored once; the repeats are
        // reported as duplicates.
        let distinct = || {
            let mut seen = HashSet::new();
            let (mut cases, mut repeated) = (Vec::new(), Vec::new());
            for r in reported {
                if seen.insert(r.id.as_str()) {
                    cases.push(StoredCase::from_reported(r, path, now));
                } else {
                    repeated.push(r.id.clone());
                }
            }
            (cases, repeated)
        };
        let (cases, repeated) = distinct();
        // The first attempt assumes every case is new (a retry or a
        // redelivery is the exception): it inserts them and the record
        // straight away, a round trip and an index lookup per case fewer.
        // A duplicate key aborts that transaction, and the second attempt
        // looks the ids up first and stores only the new ones.
        let (mut session, mut outcome) = match self.attempt(cases, Lookup::No, commit_by).await {
            Err(e) if crate::mongo::is_duplicate_key(&e) => {
                self.attempt(distinct().0, Lookup::First, commit_by).await?
            }
            r => r?,
        };
        if outcome.stored.is_empty() {
            let _ = session.abort_transaction().await;
        } else if commit_by.is_some_and(|t| tokio::time::Instant::now() >= t) {
            return Err(mongodb::error::Error::custom(DeadlinePassed));
        } else {
            session.commit_transaction().await?;
        }
        outcome.duplicates.extend(repeated);
        Ok(outcome)
    }

    /// One transaction, up to (not including) its commit, within the
    /// caller's deadline. Past it the session is dropped with its transaction
    /// uncommitted (the driver aborts it), even while MongoDB does not
    /// answer at all.
    async fn attempt(
        &self,
        cases: Vec<StoredCase>,
        lookup: Lookup,
        commit_by: Option<tokio::time::Instant>,
    ) -> mongodb::error::Result<(ClientSession, InsertOutcome)> {
        let attempt = async {
            let mut session = self.mongo.client().start_session().await?;
            session.start_transaction().await?;
            let outcome = self.insert_in(&mut session, cases, lookup).await?;
            Ok::<_, mongodb::error::Error>((session, outcome))
        };
        match commit_by {
            Some(t) => tokio::time::timeout_at(t, attempt)
                .await
                .unwrap_or_else(|_| Err(mongodb::error::Error::custom(DeadlinePassed))),
            None => attempt.await,
        }
    }

    async fn insert_in(
        &self,
        session: &mut ClientSession,
        cases: Vec<StoredCase>,
        lookup: Lookup,
    ) -> mongodb::error::Result<InsertOutcome> {
        let collection = self.mongo.collection(CASES);
        if lookup == Lookup::No {
            return self.insert_new(session, cases).await;
        }
        let ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        let existing: HashSet<String> = collection
            .find(doc! {"_id": {"$in": &ids}})
            .projection(doc! {"_id": 1})
            .session(&mut *session)
            .await?
            .stream(&mut *session)
            .try_collect::<Vec<Document>>()
            .await?
            .iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect();
        let mut outcome = InsertOutcome::default();
        for c in cases {
            if existing.contains(&c.id) {
                outcome.duplicates.push(c.id);
            } else {
                outcome.stored.push(c);
            }
        }
        let duplicates = std::mem::take(&mut outcome.duplicates);
        let mut outcome = self.insert_new(session, outcome.stored).await?;
        outcome.duplicates = duplicates;
        Ok(outcome)
    }

    /// Inserts `cases`, all taken to be new, and their counting record.
    async fn insert_new(
        &self,
        session: &mut ClientSession,
        cases: Vec<StoredCase>,
    ) -> mongodb::error::Result<InsertOutcome> {
        let mut outcome = InsertOutcome {
            stored: cases,
            ..InsertOutcome::default()
        };
        if outcome.stored.is_empty() {
            return Ok(outcome);
        }
        self.mongo
            .collection(CASES)
            .insert_many(outcome.stored.iter().map(to_doc))
            .session(&mut *session)
            .await?;
        let batch_id = format!("b-{}", uuid::Uuid::now_v7());
        let record = Record::new(&batch_id, &Deltas::of(&outcome.stored));
        self.mongo
            .collection(BATCHES)
            .insert_one(record.doc)
            .session(&mut *session)
            .await?;
        outcome.batch = Some(batch_id);
        outcome.carried = record.carried;
        Ok(outcome)
    }

    /// A page of at most `limit` cases older than the cursor `after`,
    /// optionally only one area and/or one state. Uses the `_id` order
    /// (UUIDv7 ids sort by acceptance time), never `skip`.
    pub async fn page(
        &self,
        limit: u32,
        after: Option<&str>,
        location: Option<&str>,
        state: Option<&str>,
    ) -> mongodb::error::Result<Page> {
        let mut filter = Document::new();
        if let Some(a) = after {
            filter.insert("_id", doc! {"$lt": a});
        }
        if let Some(l) = location {
            filter.insert("location", l);
        }
        if let Some(s) = state {
            filter.insert("state", s);
        }
        let docs: Vec<Document> = self
            .mongo
            .collection(CASES)
            .find(filter)
            .sort(doc! {"_id": -1})
            .limit(i64::from(limit) + 1)
            .await?
            .try_collect()
            .await?;
        let more = docs.len() > limit as usize;
        let cases: Vec<StoredCase> = docs
            .iter()
            .take(limit as usize)
            .filter_map(from_doc)
            .collect();
        let next = if more {
            cases.last().map(|c| c.id.clone())
        } else {
            None
        };
        Ok(Page { cases, next })
    }

    /// Number of stored cases, optionally on one path (tests and checks only:
    /// the dashboard reads the materialised totals instead).
    pub async fn count(&self, path: Option<WritePath>) -> mongodb::error::Result<u64> {
        let filter = match path {
            Some(p) => doc! {"path": p.as_str()},
            None => doc! {},
        };
        self.mongo.collection(CASES).count_documents(filter).await
    }
}
