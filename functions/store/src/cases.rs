//! MongoDB `cases`: one document per case, `_id` = the case's event id, so
//! a retried or redelivered write is a no-op reported as a duplicate.

use chrono::Utc;
use events::{Case, Reported, StoredCase, WritePath};
use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::ErrorKind;

use crate::mongo::{CASES, Mongo, is_duplicate_key};

/// What one bulk write did.
#[derive(Debug, Default, Clone)]
pub struct InsertOutcome {
    /// Newly stored by this write.
    pub stored: Vec<StoredCase>,
    /// Ids that were already stored (a retry or a redelivery).
    pub duplicates: Vec<String>,
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
        "counted": false,
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

    /// Stores every case not stored yet, in one unordered bulk insert.
    pub async fn insert(
        &self,
        reported: &[Reported],
        path: WritePath,
    ) -> mongodb::error::Result<InsertOutcome> {
        if reported.is_empty() {
            return Ok(InsertOutcome::default());
        }
        self.mongo.ensure_indexes().await?;
        let now = Utc::now();
        let cases: Vec<StoredCase> = reported
            .iter()
            .map(|r| StoredCase::from_reported(r, path, now))
            .collect();
        let docs: Vec<Document> = cases.iter().map(to_doc).collect();
        let result = self
            .mongo
            .collection(CASES)
            .insert_many(docs)
            .ordered(false)
            .await;
        let dup_indexes: Vec<usize> = match result {
            Ok(_) => Vec::new(),
            Err(e) => match *e.kind {
                ErrorKind::InsertMany(ref ime)
                    if ime.write_concern_error.is_none()
                        && ime
                            .write_errors
                            .as_ref()
                            .is_some_and(|w| w.iter().all(|we| is_duplicate_key(we.code))) =>
                {
                    ime.write_errors
                        .as_ref()
                        .map(|w| w.iter().map(|we| we.index).collect())
                        .unwrap_or_default()
                }
                _ => return Err(e),
            },
        };
        let mut outcome = InsertOutcome::default();
        for (i, c) in cases.into_iter().enumerate() {
            if dup_indexes.contains(&i) {
                outcome.duplicates.push(c.id);
            } else {
                outcome.stored.push(c);
            }
        }
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
