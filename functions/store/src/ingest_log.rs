//! The ingest log: what ingest answered, summed per second. Ingest reports
//! every request (path, result and reason, cases, bytes, revision) off the
//! request path; the writer adds up the requests alike within a second and
//! writes one record per kind ([`LogRecord`]: how many requests, cases and
//! bytes). One write per request would cost MongoDB a document per
//! single-case POST, as much as the case itself. Records expire by a TTL
//! index (`INGEST_LOG_TTL_S`), so the log cannot grow without bound.
//!
//! Ingest, the log's one writer, owns that index: it creates it, and when
//! `INGEST_LOG_TTL_S` changes it changes the TTL in place with `collMod`
//! (creating it again with other options is MongoDB's IndexOptionsConflict).
//! No case write, count or sweep touches it.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{IndexModel, error::ErrorKind};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::mongo::{INGEST_LOG, Mongo};

/// One ingest request, as ingest reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub time_ms: i64,
    /// The ingest route: `grpc`, `redis` or `sink`.
    pub path: String,
    /// `accepted`, `refused`, `unavailable` or `outcome_unknown`.
    pub result: String,
    pub reason: String,
    pub cases: u32,
    pub bytes: u64,
    pub revision: String,
}

/// The requests of one kind (path, result, reason, revision) within one
/// second: what the log stores and `GET /api/ingest-log` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// The newest request's time.
    pub time_ms: i64,
    pub path: String,
    pub result: String,
    pub reason: String,
    pub requests: u64,
    pub cases: u64,
    pub bytes: u64,
    pub revision: String,
}

impl LogRecord {
    fn of(entry: LogEntry) -> LogRecord {
        LogRecord {
            time_ms: entry.time_ms,
            path: entry.path,
            result: entry.result,
            reason: entry.reason,
            requests: 1,
            cases: u64::from(entry.cases),
            bytes: entry.bytes,
            revision: entry.revision,
        }
    }

    fn add(&mut self, entry: &LogEntry) {
        self.time_ms = self.time_ms.max(entry.time_ms);
        self.requests += 1;
        self.cases += u64::from(entry.cases);
        self.bytes += entry.bytes;
    }

    fn to_doc(&self) -> Document {
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        doc! {
            "time": DateTime::from_millis(self.time_ms),
            "path": &self.path,
            "result": &self.result,
            "reason": &self.reason,
            "requests": int(self.requests),
            "cases": int(self.cases),
            "bytes": int(self.bytes),
            "revision": &self.revision,
        }
    }

    fn from_doc(d: &Document) -> Option<LogRecord> {
        let count = |k: &str| d.get_i64(k).ok().and_then(|n| u64::try_from(n).ok());
        Some(LogRecord {
            time_ms: d.get_datetime("time").ok()?.timestamp_millis(),
            path: d.get_str("path").ok()?.to_owned(),
            result: d.get_str("result").ok()?.to_owned(),
            reason: d.get_str("reason").unwrap_or("").to_owned(),
            // Records written before the log was summed stood for one request.
            requests: count("requests").unwrap_or(1),
            cases: count("cases")?,
            bytes: count("bytes")?,
            revision: d.get_str("revision").unwrap_or("").to_owned(),
        })
    }
}

/// How long the writer sums requests before it writes their records.
pub const LOG_WINDOW: Duration = Duration::from_secs(1);
/// Most kinds of request summed in one window; the requests of further kinds
/// (reasons vary with the input) are dropped and counted.
pub const LOG_MAX_KINDS: usize = 1000;

type Kind = (String, String, String, String);

/// The requests of one window, summed per kind.
#[derive(Default)]
struct Window {
    records: std::collections::HashMap<Kind, LogRecord>,
    dropped: u64,
}

impl Window {
    fn add(&mut self, entry: LogEntry) {
        let kind = (
            entry.path.clone(),
            entry.result.clone(),
            entry.reason.clone(),
            entry.revision.clone(),
        );
        if let Some(record) = self.records.get_mut(&kind) {
            record.add(&entry);
        } else if self.records.len() < LOG_MAX_KINDS {
            self.records.insert(kind, LogRecord::of(entry));
        } else {
            self.dropped += 1;
        }
    }

    fn take(&mut self) -> (Vec<LogRecord>, u64) {
        let mut records: Vec<LogRecord> = self.records.drain().map(|(_, r)| r).collect();
        records.sort_by_key(|r| r.time_ms);
        (records, std::mem::take(&mut self.dropped))
    }
}

#[derive(Clone)]
pub struct IngestLog {
    mongo: Mongo,
    /// Set for the log's owner (ingest): the TTL its index must have.
    ttl: Option<Duration>,
    indexed: std::sync::Arc<tokio::sync::OnceCell<()>>,
}

/// The TTL index's key and name.
const TTL_INDEX: &str = "time_1";
/// MongoDB's IndexOptionsConflict and IndexKeySpecsConflict codes.
const INDEX_CONFLICT: [i32; 2] = [85, 86];

/// Hands entries to the background writer; never waits.
#[derive(Clone)]
pub struct LogSender(mpsc::Sender<LogEntry>);

impl LogSender {
    /// Queues an entry; when the queue is full (MongoDB slow or gone) the
    /// entry is dropped and counted, so the log never slows ingest down.
    pub fn log(&self, entry: LogEntry) {
        if self.0.try_send(entry).is_err() {
            metrics::counter!("ingest_log_dropped_total").increment(1);
        }
    }
}

impl IngestLog {
    /// A reader of the log (or a writer that leaves its index alone).
    pub fn new(mongo: Mongo) -> IngestLog {
        IngestLog {
            mongo,
            ttl: None,
            indexed: Default::default(),
        }
    }

    /// The log's owner: its writes keep the TTL index at `ttl`.
    pub fn owner(mongo: Mongo, ttl: Duration) -> IngestLog {
        IngestLog {
            ttl: Some(ttl),
            ..IngestLog::new(mongo)
        }
    }

    /// Makes the TTL index expire records after `ttl`: creates it, or
    /// changes an existing one's TTL with `collMod`. Idempotent.
    pub async fn ensure_ttl_index(&self, ttl: Duration) -> mongodb::error::Result<()> {
        let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        match self.ttl_seconds().await? {
            Some(s) if s == seconds => return Ok(()),
            Some(_) => return self.change_ttl(seconds).await,
            None => {}
        }
        let index = IndexModel::builder()
            .keys(doc! {"time": 1})
            .options(
                IndexOptions::builder()
                    .name(TTL_INDEX.to_owned())
                    .expire_after(ttl)
                    .build(),
            )
            .build();
        match self.mongo.collection(INGEST_LOG).create_index(index).await {
            Ok(_) => Ok(()),
            // Another ingest created it meanwhile, with another TTL.
            Err(e) if matches!(&*e.kind, ErrorKind::Command(c) if INDEX_CONFLICT.contains(&c.code)) => {
                self.change_ttl(seconds).await
            }
            Err(e) => Err(e),
        }
    }

    /// The TTL index's `expireAfterSeconds`; `None` when there is no index.
    pub async fn ttl_seconds(&self) -> mongodb::error::Result<Option<i64>> {
        let indexes: Vec<IndexModel> = match self.mongo.collection(INGEST_LOG).list_indexes().await
        {
            Ok(cursor) => cursor.try_collect().await?,
            // No collection yet (NamespaceNotFound): no index either.
            Err(e) if matches!(&*e.kind, ErrorKind::Command(c) if c.code == 26) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(indexes
            .iter()
            .find(|i| i.keys == doc! {"time": 1})
            .map(|i| {
                i.options
                    .as_ref()
                    .and_then(|o| o.expire_after)
                    .map_or(0, |d| d.as_secs() as i64)
            }))
    }

    async fn change_ttl(&self, seconds: i64) -> mongodb::error::Result<()> {
        self.mongo
            .db()
            .run_command(doc! {
                "collMod": INGEST_LOG,
                "index": {"keyPattern": {"time": 1}, "expireAfterSeconds": Bson::Int64(seconds)},
            })
            .await
            .map(|_| ())
    }

    /// Starts the summing writer: every [`LOG_WINDOW`] it writes one record
    /// per kind of request seen. It ends after `shutdown`, once what is
    /// queued is written.
    pub fn start_writer(&self, capacity: usize, ctx: &runtime::Context) -> LogSender {
        metrics::describe_counter!(
            "ingest_log_dropped_total",
            "Ingest-log entries dropped because MongoDB could not keep up"
        );
        let shutdown = ctx.shutdown.clone();
        let (tx, mut rx) = mpsc::channel::<LogEntry>(capacity);
        let log = self.clone();
        ctx.tasks.spawn(async move {
            let mut window = Window::default();
            let mut tick = tokio::time::interval(LOG_WINDOW);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut open = true;
            while open {
                tokio::select! {
                    entry = rx.recv() => match entry {
                        Some(entry) => { window.add(entry); continue; }
                        None => open = false,
                    },
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled(), if !rx.is_closed() => {
                        rx.close();
                        continue;
                    }
                }
                let (records, dropped) = window.take();
                let mut lost = dropped;
                if let Err(e) = log.write(&records).await {
                    tracing::warn!(error = %e, records = records.len(), "could not write the ingest log");
                    lost += records.iter().map(|r| r.requests).sum::<u64>();
                }
                if lost > 0 {
                    metrics::counter!("ingest_log_dropped_total").increment(lost);
                }
            }
        });
        LogSender(tx)
    }

    pub async fn write(&self, records: &[LogRecord]) -> mongodb::error::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        if let Some(ttl) = self.ttl {
            // Retried with the next batch; the entries are written either way.
            let indexed = self
                .indexed
                .get_or_try_init(|| self.ensure_ttl_index(ttl))
                .await;
            if let Err(e) = indexed {
                tracing::warn!(error = %e, "could not set the ingest log's TTL index; will retry");
            }
        }
        self.mongo
            .collection(INGEST_LOG)
            .insert_many(records.iter().map(LogRecord::to_doc))
            .ordered(false)
            .await?;
        Ok(())
    }

    /// The newest `limit` records, newest first.
    pub async fn latest(&self, limit: u32) -> mongodb::error::Result<Vec<LogRecord>> {
        let docs: Vec<Document> = self
            .mongo
            .collection(INGEST_LOG)
            .find(doc! {})
            .sort(doc! {"time": -1})
            .limit(i64::from(limit))
            .await?
            .try_collect()
            .await?;
        Ok(docs.iter().filter_map(LogRecord::from_doc).collect())
    }
}
